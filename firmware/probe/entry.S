# Entry points at 0x100000 (32-bit) and 0x100200 (64-bit), the ring-0
# set-up they share, and the descriptor tables.
#
# Ring 0 is emulated (slow) under PVM, so this file is deliberately short:
# everything that can be a prebuilt table is one, and ring 0 only loads
# registers and drops to ring 3 (main.S), where port I/O is allowed (IOPL=3
# and an all-zero TSS I/O bitmap).

.include "defs.inc"

	.section .text.entry, "ax"

# --- 32-bit boot-protocol entry: protected mode, paging off, ESI = zero page.
	.code32
	.globl entry32
entry32:
	cli
	cld
	lgdt	gdt_desc		# 6-byte form: limit + low 32 bits of base
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
	ljmp	$KCODE, $1f
	.code64
1:	mov	%esi, %esi		# upper halves are undefined after the switch
	jmp	common64

# --- 64-bit entry (linux-loader / godwit): long mode, RSI = zero page.
# Only these few bytes and gdt_desc must be mapped by the loader's tables:
# the probe switches to its own GDT and page tables immediately.
	.org 0x200
	.globl entry64
entry64:
	cli
	cld
	lgdt	gdt_desc(%rip)
	mov	$pml4, %eax
	mov	%rax, %cr3		# PCID 0, so clearing CR4.PCIDE below is legal
	mov	$CR4_VALUE, %eax
	mov	%rax, %cr4		# SMEP/SMAP must be off: every page is U=1
	pushq	$KCODE
	pushq	$common64
	lretq

# --- Common ring-0 set-up for the BSP (about 40 instructions).
common64:
	mov	$KDATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	xor	%eax, %eax
	mov	%eax, %fs
	mov	%eax, %gs
	mov	$bsp_kstack_top, %esp
	mov	%rsi, boot_params_ptr(%rip)
	lidt	idt_desc(%rip)
	mov	$TSS_SEL, %eax
	ltr	%ax

	# CPUID is done here, in ring 0: under PVM a ring-3 CPUID may not be
	# intercepted and would report the host's values.
	mov	$1, %eax
	cpuid
	shr	$24, %ebx
	mov	%ebx, bsp_apic_id(%rip)
	mov	$0x80000000, %eax
	cpuid
	cmp	$0x80000001, %eax
	jb	1f
	mov	$0x80000001, %eax
	cpuid
	shr	$26, %edx		# Page1GB
	and	$1, %edx
	mov	%edx, have_1g_pages(%rip)
1:
	# Drop to ring 3 with IOPL=3 and IF=0 (everything is polled).
	pushq	$(UDATA | 3)
	pushq	$user_stack_top
	pushq	$0x3002
	pushq	$(UCODE | 3)
	pushq	$ring3_main
	iretq

# --- Exception stubs: 32 of them, 16 bytes apart, so the IDT below can be
# a static table (the linker computes exc_lo16/exc_hi16 from exc_stubs).
	.balign 16
	.globl exc_stubs
exc_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	.if !((vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30))
	pushq	$0			# no CPU error code: push a dummy one
	.endif
	pushq	$vec
	jmp	exc_common
	.set vec, vec + 1
	.endr

# Print "PROBE FAULT vec=<n> err=<hex> rip=<hex>" and stop this CPU.  No
# lock is taken: the faulting code may hold it.
exc_common:
	mov	(%rsp), %rbx		# vector
	mov	8(%rsp), %r12		# error code
	mov	16(%rsp), %r13		# rip
	lea	str_fault(%rip), %rsi
	call	puts
	mov	%rbx, %rax
	call	putdec
	lea	str_err(%rip), %rsi
	call	puts
	mov	%r12, %rax
	call	puthex
	lea	str_rip(%rip), %rsi
	call	puts
	mov	%r13, %rax
	call	puthex
	lea	str_crlf(%rip), %rsi
	call	puts
2:	cli
	hlt
	jmp	2b

	.section .rodata
str_fault:	.asciz "PROBE FAULT vec="
str_err:	.asciz " err="
str_rip:	.asciz " rip="

	.section .data
	.balign 16
	.globl gdt
gdt:
	.quad	0
	.quad	0x00af9a000000ffff	# 0x08 KCODE   64-bit, DPL0
	.quad	0x00cf92000000ffff	# 0x10 KDATA   flat, DPL0
	.quad	0x00cf9a000000ffff	# 0x18 KCODE32 flat 32-bit, DPL0
	.quad	0x00cff2000000ffff	# 0x20 UDATA   flat, DPL3
	.quad	0x00affa000000ffff	# 0x28 UCODE   64-bit, DPL3
	# 0x30 TSS: base bytes come from linker-computed symbols.
	.word	tss64_end - tss64 - 1
	.word	tss_lo16
	.byte	tss_b16
	.byte	0x89			# present, 64-bit available TSS
	.byte	0
	.byte	tss_b24
	.long	0
	.long	0
	.globl gdt_end
gdt_end:

	.balign 8
	.word	0, 0, 0
gdt_desc:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.balign 16
idt:
	.set vec, 0
	.rept 32
	.word	exc_lo16 + 16 * vec	# offset 15:0
	.word	KCODE
	.byte	0, 0x8e			# present interrupt gate, DPL0
	.word	exc_hi16		# offset 31:16
	.long	0			# offset 63:32
	.long	0
	.set vec, vec + 1
	.endr
idt_end:

	.balign 8
	.word	0, 0, 0
	.globl idt_desc
idt_desc:
	.word	idt_end - idt - 1
	.quad	idt

	.balign 16
	.globl tss64
tss64:
	.long	0
	.quad	bsp_kstack_top		# RSP0: stack for exceptions from ring 3
	.quad	0, 0			# RSP1, RSP2
	.quad	0
	.quad	0, 0, 0, 0, 0, 0, 0	# IST1-7 (unused)
	.quad	0
	.word	0
	.word	iobitmap - tss64	# I/O bitmap: every port allowed (see below)
# PVM does not honour RFLAGS.IOPL=3 in guest ring 3 (the iretq'd RFLAGS come
# back with IOPL=0 and IN/OUT raise #GP) but it does honour this bitmap.
# IOPL=3 is still set for hypervisors that do.  The 0xff byte terminates it.
iobitmap:
	.fill	8192, 1, 0
	.byte	0xff
tss64_end:

# Linux boot protocol 2.15 kernel_info (header.S points at it).
	.balign 4
	.globl kernel_info
kernel_info:
	.ascii	"LToP"
	.long	kernel_info_end - kernel_info
	.long	kernel_info_end - kernel_info
	.long	0			# setup_type_max
kernel_info_end:

	.section .bss
	.balign 4096
bsp_kstack:
	.skip	4096
bsp_kstack_top:
