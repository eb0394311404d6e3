# Application processors.
#
# The BSP (ring 3) copies the trampoline to TRAMP_ADDR and sends
# INIT-SIPI-SIPI to all-excluding-self through the xAPIC ICR.  An AP runs
# the trampoline in real mode, enters protected mode with the probe's GDT,
# long mode with the prebuilt page tables, prints "PROBE CPU <id> UP" under
# the output lock and parks in ring 0 with interrupts off (cli; hlt), so a
# parked AP costs no host CPU time.  About 320 ring-0 instructions per AP,
# most of them printing the line.

.include "defs.inc"

	.text
	.code16
	.globl tramp_start, tramp_end
tramp_start:				# runs at 0x0800:0000
	cli
	lgdtl	%cs:TRAMP_GDTR_OFF
	mov	%cr0, %eax
	or	$1, %al
	mov	%eax, %cr0
	ljmpl	$KCODE32, $ap_entry32
	.balign 4
tramp_gdtr:
	.word	GDT_LIMIT
	.long	gdt
tramp_end:
	.set TRAMP_GDTR_OFF, tramp_gdtr - tramp_start

	.code32
ap_entry32:
	mov	$KDATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$CR4_VALUE, %eax
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$EFER_MSR, %ecx
	rdmsr
	or	$0x100, %eax		# EFER.LME
	wrmsr
	mov	%cr0, %eax
	or	$0x80000001, %eax	# PG | PE
	mov	%eax, %cr0
	ljmp	$KCODE, $ap_entry64

	.code64
ap_entry64:
	mov	$1, %eax
	lock xadd %eax, ap_seq(%rip)	# 0, 1, 2, ...: picks this AP's stack
	cmp	$MAX_APS, %eax
	jae	ap_park			# no stack left: stay silent
	inc	%eax
	shl	$10, %eax		# * AP_STACK
	lea	ap_stacks(%rip), %rsp
	add	%rax, %rsp
	lidt	idt_desc(%rip)
	mov	$1, %eax
	cpuid
	shr	$24, %ebx		# initial APIC id
	call	out_lock
	lea	str_cpu(%rip), %rsi
	call	puts
	mov	%ebx, %eax
	call	putdec
	lea	str_up(%rip), %rsi
	call	puts
	lock incl aps_up(%rip)
	call	out_unlock
ap_park:
	cli
	hlt
	jmp	ap_park

# start_aps (ring 3): wake the APs and wait for their UP lines.  It stops as
# soon as the expected number of CPUs (BSP included) is up, or after 5 s (only a
# CPU that never comes up costs the wait); the number comes from probe.cpus=N or
# else the MP table.  With neither it waits
# 100 ms after the second SIPI.
	.globl start_aps
start_aps:
	push	%rbx
	lea	tramp_start(%rip), %rsi
	mov	$TRAMP_ADDR, %edi
	mov	$tramp_end - tramp_start, %ecx
	rep movsb

	mov	$LAPIC_BASE, %ebx
	mov	LAPIC_SVR(%rbx), %eax
	or	$0x100, %eax		# software-enable the local APIC
	mov	%eax, LAPIC_SVR(%rbx)

	# Without probe.cpus=N, expect as many CPUs as the MP table lists (godwit and
	# SeaBIOS both provide one), so READY need not wait out a fixed timeout.
	cmpq	$0, want_cpus(%rip)
	jne	5f
	call	mp_cpu_count
	mov	%rax, want_cpus(%rip)
5:
	movl	$0x000c4500, LAPIC_ICR(%rbx)	# INIT, assert, all-excl-self
	mov	$1000, %eax			# KVM's APs need no 10 ms INIT settle time
	call	delay_us
	movl	$(0x000c4600 | (TRAMP_ADDR >> 12)), LAPIC_ICR(%rbx)	# SIPI
	mov	$200, %eax
	call	delay_us
	movl	$(0x000c4600 | (TRAMP_ADDR >> 12)), LAPIC_ICR(%rbx)	# SIPI again

	mov	$100000, %eax
	cmpq	$0, want_cpus(%rip)
	je	1f
	mov	$5000000, %eax
1:	call	us_to_tsc
	mov	%rax, %rbx
	call	rdtsc64
	add	%rax, %rbx		# rbx = deadline
2:	mov	want_cpus(%rip), %rax
	test	%rax, %rax
	jz	3f
	mov	aps_up(%rip), %ecx
	inc	%ecx
	cmp	%rax, %rcx
	jae	4f
3:	pause
	call	rdtsc64
	cmp	%rbx, %rax
	jb	2b
4:	pop	%rbx
	ret

# mp_cpu_count (ring 3): enabled processor entries in the MP configuration table,
# or 0 if there is none. The floating pointer "_MP_" is looked for, 16-byte
# aligned, in the BIOS area 0xF0000-0xFFFFF and the EBDA at 0x9FC00.
mp_cpu_count:
	mov	$0xf0000, %esi
1:	cmpl	$0x5f504d5f, (%rsi)		# "_MP_"
	je	2f
	add	$16, %esi
	cmp	$0x100000, %esi
	jb	1b
	mov	$0x9fc00, %esi
5:	cmpl	$0x5f504d5f, (%rsi)
	je	2f
	add	$16, %esi
	cmp	$0xa0000, %esi
	jb	5b
	jmp	9f
2:	mov	4(%rsi), %esi			# physical address of the "PCMP" table
	test	%esi, %esi
	jz	9f
	cmp	$0xfff00000, %esi		# must lie in the mapped low 4 GiB
	jae	9f
	cmpl	$0x504d4350, (%rsi)		# "PCMP"
	jne	9f
	movzwl	34(%rsi), %ecx			# entry count
	lea	44(%rsi), %rdi
	xor	%eax, %eax
3:	test	%ecx, %ecx
	jz	8f
	dec	%ecx
	cmpb	$0, (%rdi)			# type 0: processor, 20 bytes
	jne	4f
	testb	$1, 3(%rdi)			# CPU enabled flag
	jz	6f
	inc	%eax
6:	add	$20, %rdi
	jmp	3b
4:	add	$8, %rdi			# every other entry type is 8 bytes
	jmp	3b
8:	ret
9:	xor	%eax, %eax
	ret

	.section .rodata
	.globl str_cpu, str_up
str_cpu:	.asciz "PROBE CPU "
str_up:		.asciz " UP\r\n"

	.data
	.balign 4
ap_seq:		.long 0
	.globl aps_up
aps_up:		.long 0

	.section .bss
	.balign 16
ap_stacks:
	.skip	(MAX_APS + 1) * AP_STACK
