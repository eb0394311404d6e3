# Ring-3 main program of the BSP (entered from common64 with IOPL=3, IF=0).
#
# Order: serial, E820 copy, map RAM above 4 GiB, command line, BSP UP line,
# TSC calibration, APs, RAM check, READY, working set, disk, network, then
# the polled loop that prints heartbeats and drives the network (net.S),
# the working set (ws.S) and the disk workload (disk.S).

.include "defs.inc"

.set PIT_HZ,    1193182
.set PIT_COUNT, 11932			# ~10 ms on PIT channel 2

.macro PUTS label
	lea	\label(%rip), %rsi
	call	puts
.endm

	.text
	.globl ring3_main
ring3_main:
	call	serial_init
	call	copy_e820
	call	scan_e820
	call	map_high
	call	copy_cmdline
	call	parse_cmdline

	call	out_lock
	PUTS	str_cpu
	mov	bsp_apic_id(%rip), %eax
	call	putdec
	PUTS	str_up
	call	out_unlock

	call	calibrate_tsc
	call	start_aps
	call	ram_check

	call	out_lock
	PUTS	str_ready
	mov	aps_up(%rip), %eax
	inc	%eax
	call	putdec
	PUTS	str_ram_mib
	mov	ram_bytes(%rip), %rax
	shr	$20, %rax
	call	putdec
	PUTS	str_top
	mov	ram_top(%rip), %rax
	call	puthex
	PUTS	str_crlf
	call	out_unlock

	call	ws_setup
	call	disk_setup		# disk.S: only with probe.disk=<MiB>
	call	net_setup		# net.S: only with probe.ip=<a.b.c.d/n>

	call	rdtsc64
	add	tsc_period(%rip), %rax
	mov	%rax, hb_deadline(%rip)

# The main loop: r15 = TSC "now" for everything called from here.
main_loop:
	call	rdtsc64
	mov	%rax, %r15
	lea	hb_deadline(%rip), %rdi
	call	period_due
	test	%eax, %eax
	jz	1f
	call	heartbeat
1:	cmpq	$0, net_active(%rip)
	je	12f
	call	net_step		# received frames answered, replies sent
12:	cmpq	$0, disk_active(%rip)
	je	11f
	call	disk_step		# at most one write/flush + one read submitted
11:	cmpq	$0, ws_pages(%rip)
	je	2f
	call	ws_step			# at most one page written + one verified
	jmp	main_loop
2:	pause
	jmp	main_loop

heartbeat:
	incq	hb_count(%rip)
	call	out_lock
	PUTS	str_hb
	mov	hb_count(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
	mov	exit_at(%rip), %rax
	test	%rax, %rax
	jz	1f
	cmp	hb_count(%rip), %rax
	jbe	probe_exit
1:	ret

probe_exit:
	call	disk_finish		# waits for disk requests, prints DISK END
	call	out_lock
	PUTS	str_exit
	call	out_unlock
	mov	$0xfe, %al		# i8042: pulse the reset line
	out	%al, $0x64
1:	pause				# reset did not take: stop here
	jmp	1b

# period_due: rdi -> deadline (TSC), r15 = now.  Returns eax = 1 and moves
# the deadline one period on if it has passed.  A TSC that jumped (restore
# on another host, long pause) re-synchronises instead of bursting or
# stalling: more than 100 ms late or 2 periods early means deadline = now +
# period.
	.globl period_due
period_due:
	mov	%r15, %rax
	sub	(%rdi), %rax
	js	2f
	mov	tsc_period(%rip), %rcx
	imul	$10, %rcx, %rdx
	cmp	%rdx, %rax
	jae	1f
	add	%rcx, (%rdi)
	mov	$1, %eax
	ret
1:	lea	(%r15, %rcx), %rax
	mov	%rax, (%rdi)
	mov	$1, %eax
	ret
2:	neg	%rax
	mov	tsc_period(%rip), %rcx
	lea	(%rcx, %rcx), %rdx
	cmp	%rdx, %rax
	jbe	3f
	lea	(%r15, %rcx), %rax
	mov	%rax, (%rdi)
3:	xor	%eax, %eax
	ret

	.globl rdtsc64
rdtsc64:
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	ret

# us_to_tsc: rax = microseconds -> rax = TSC ticks.
	.globl us_to_tsc
us_to_tsc:
	mulq	tsc_khz(%rip)
	mov	$1000, %ecx
	div	%rcx
	ret

# delay_us: spin for eax microseconds.
	.globl delay_us
delay_us:
	call	us_to_tsc
	mov	%rax, %r8
	call	rdtsc64
	add	%rax, %r8
1:	pause
	call	rdtsc64
	cmp	%r8, %rax
	jb	1b
	ret

# TSC against PIT channel 2 in mode 0: gate on (port 0x61 bit 0), load the
# count, poll OUT2 (port 0x61 bit 5) until terminal count (~10 ms).
# Every port access is a VM exit (tens of us under PVM, more if the host
# preempts the vCPU), so the start is the midpoint of the OUT that starts
# the count and the end the midpoint between the last two polls.  The
# uncertainty U (width of both windows) is known; a run with U > 1% of the
# interval is repeated, up to 5 runs, and the one with the smallest U wins.
calibrate_tsc:
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	mov	$5, %r12d		# runs left
	mov	$-1, %r13		# best U
	xor	%r14d, %r14d		# khz of the best run
0:	in	$0x61, %al
	and	$0xfc, %al		# speaker off, gate low
	or	$0x01, %al		# gate high
	out	%al, $0x61
	mov	$0xb0, %al		# channel 2, lo/hi byte, mode 0, binary
	out	%al, $0x43
	mov	$(PIT_COUNT & 0xff), %al
	out	%al, $0x42
	call	rdtsc64
	mov	%rax, %r8
	mov	%rax, %rdi		# rdi = start of the previous access
	mov	$(PIT_COUNT >> 8), %al
	out	%al, $0x42		# counting starts here
	call	rdtsc64
	mov	%rax, %rbx
	sub	%r8, %rbx		# rbx = width of the start window
	add	%rax, %r8
	shr	$1, %r8			# r8 = start
	mov	%r8, %r9		# r9 = midpoint of the previous poll
1:	call	rdtsc64
	mov	%rax, %r10
	in	$0x61, %al
	mov	%eax, %r11d
	call	rdtsc64
	mov	%rax, %rsi		# end of this poll
	add	%r10, %rax
	shr	$1, %rax		# midpoint of this poll
	test	$0x20, %r11b
	jnz	2f
	mov	%r10, %rdi
	mov	%rax, %r9
	sub	%r8, %rax
	shr	$33, %rax		# ~3 s at 3 GHz without OUT2: no PIT
	jz	1b
	jmp	5f
2:	sub	%rdi, %rsi
	add	%rsi, %rbx		# U = start window + end window
	add	%r9, %rax
	shr	$1, %rax		# end: between the last two polls
	sub	%r8, %rax		# ticks in PIT_COUNT PIT periods
	mov	%rax, %r10
	mov	$PIT_HZ, %ecx
	mul	%rcx
	mov	$(PIT_COUNT * 1000), %ecx
	div	%rcx
	cmp	%r13, %rbx
	jae	3f
	mov	%rbx, %r13
	mov	%rax, %r14
3:	imul	$100, %rbx, %rax
	cmp	%r10, %rax
	jb	4f			# U < 1%: good enough
	dec	%r12d
	jnz	0b
4:	mov	%r14, %rax
	cmp	$50000, %rax		# < 50 MHz: OUT2 was high at once, no PIT
	jae	6f
5:	call	out_lock
	PUTS	str_pit_bad
	call	out_unlock
	mov	$1000000, %eax		# assume 1 GHz
6:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
3:	mov	%rax, tsc_khz(%rip)
	imul	$10, %rax, %rcx
	mov	%rcx, tsc_period(%rip)
	call	out_lock
	PUTS	str_tsc
	mov	tsc_khz(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
	ret

# Copy the E820 table out of the zero page (the loader's zero page may sit
# where the trampoline or the working set will go).
copy_e820:
	mov	boot_params_ptr(%rip), %rsi
	movzbl	ZP_E820_NR(%rsi), %ecx
	cmp	$E820_MAX, %ecx
	jbe	1f
	mov	$E820_MAX, %ecx
1:	mov	%ecx, e820_nr(%rip)
	imul	$20, %ecx
	add	$ZP_E820_TABLE, %rsi
	lea	e820_copy(%rip), %rdi
	rep movsb
	ret

# ram_bytes = sum of type-1 sizes, ram_top = highest type-1 end,
# first_high = lowest type-1 address >= 4 GiB (0 if none).
scan_e820:
	lea	e820_copy(%rip), %rsi
	mov	e820_nr(%rip), %ecx
	xor	%r8, %r8		# bytes
	xor	%r9, %r9		# top
	mov	$-1, %r10		# first high
	mov	$0x100000000, %r11
1:	test	%ecx, %ecx
	jz	3f
	cmpl	$E820_RAM, 16(%rsi)
	jne	2f
	mov	(%rsi), %rax		# start
	mov	8(%rsi), %rdx		# size
	add	%rdx, %r8
	add	%rax, %rdx		# end
	cmp	%r9, %rdx
	cmova	%rdx, %r9
	cmp	%r11, %rdx
	jbe	2f
	cmp	%r11, %rax
	cmovb	%r11, %rax
	cmp	%r10, %rax
	cmovb	%rax, %r10
2:	add	$20, %rsi
	dec	%ecx
	jmp	1b
3:	mov	%r8, ram_bytes(%rip)
	mov	%r9, ram_top(%rip)
	cmp	$-1, %r10
	jne	4f
	xor	%r10, %r10
4:	mov	%r10, first_high(%rip)
	ret

# ram_overlaps: [rdi, rsi) intersects some E820 RAM entry?  eax = 0/1.
ram_overlaps:
	lea	e820_copy(%rip), %r8
	mov	e820_nr(%rip), %ecx
1:	test	%ecx, %ecx
	jz	3f
	cmpl	$E820_RAM, 16(%r8)
	jne	2f
	mov	(%r8), %rax
	cmp	%rsi, %rax
	jae	2f
	add	8(%r8), %rax
	cmp	%rdi, %rax
	jbe	2f
	mov	$1, %eax
	ret
2:	add	$20, %r8
	dec	%ecx
	jmp	1b
3:	xor	%eax, %eax
	ret

# Identity-map the E820 RAM above 4 GiB, from ring 3 (the page tables are
# themselves mapped user-writable).  Only not-present -> present changes,
# which need no TLB flush.  With 1G pages: up to 512 GiB; without: 2M pages
# in high_pds, up to 64 GiB.
map_high:
	push	%rbx
	push	%r12
	mov	$4 + HIGH_PD_GIB, %ebx
	cmpl	$0, have_1g_pages(%rip)
	je	1f
	mov	$512, %ebx
1:	mov	%rbx, %rax
	shl	$30, %rax
	mov	%rax, map_limit(%rip)
	mov	$4, %r12d		# GiB index
2:	cmp	%rbx, %r12
	jae	6f
	mov	%r12, %rdi
	shl	$30, %rdi
	lea	0x40000000(%rdi), %rsi
	call	ram_overlaps
	test	%eax, %eax
	jz	5f
	mov	%r12, %rdi
	shl	$30, %rdi
	cmpl	$0, have_1g_pages(%rip)
	je	3f
	or	$PTE_LARGE, %rdi	# 1 GiB page
	jmp	4f
3:	lea	-4(%r12), %rax		# fill high_pds[g - 4] with 2M pages
	shl	$12, %rax
	lea	high_pds(%rip), %rdx
	add	%rax, %rdx
	or	$PTE_LARGE, %rdi
	xor	%ecx, %ecx
33:	mov	%rdi, (%rdx, %rcx, 8)
	add	$0x200000, %rdi
	inc	%ecx
	cmp	$512, %ecx
	jb	33b
	mov	%rdx, %rdi
	or	$PTE_PWU, %rdi
4:	lea	pdpt(%rip), %rax
	mov	%rdi, (%rax, %r12, 8)
5:	inc	%r12
	jmp	2b
6:	pop	%r12
	pop	%rbx
	ret

# Copy the command line (cmd_line_ptr | ext_cmd_line_ptr << 32).
copy_cmdline:
	mov	boot_params_ptr(%rip), %rax
	mov	ZP_CMDLINE(%rax), %esi
	mov	ZP_EXT_CMDLINE(%rax), %eax
	shl	$32, %rax
	or	%rax, %rsi
	lea	cmdline_copy(%rip), %rdi
	test	%rsi, %rsi
	jz	2f
	mov	$4095, %ecx
1:	movzbl	(%rsi), %eax
	test	%al, %al
	jz	2f
	mov	%al, (%rdi)
	inc	%rsi
	inc	%rdi
	dec	%ecx
	jnz	1b
2:	movb	$0, (%rdi)
	ret

# Words are separated by blanks; "probe.<key>=<decimal>" for the keys in
# kw_table is stored, anything else is ignored.
parse_cmdline:
	push	%rbx
	lea	cmdline_copy(%rip), %rsi
1:	movzbl	(%rsi), %eax		# skip blanks
	test	%al, %al
	jz	9f
	cmp	$' ', %al
	ja	2f
	inc	%rsi
	jmp	1b
2:	lea	kw_table(%rip), %rbx
3:	mov	(%rbx), %rdi		# keyword
	test	%rdi, %rdi
	jz	7f
	mov	%rsi, %r8
4:	movzbl	(%rdi), %eax
	test	%al, %al
	jz	5f			# whole keyword matched
	cmp	(%r8), %al
	jne	6f
	inc	%rdi
	inc	%r8
	jmp	4b
5:	xor	%eax, %eax		# decimal value
51:	movzbl	(%r8), %ecx
	sub	$'0', %ecx
	cmp	$9, %ecx
	ja	52f
	imul	$10, %rax, %rax
	add	%rcx, %rax
	inc	%r8
	jmp	51b
52:	mov	8(%rbx), %rdx
	mov	%rax, (%rdx)
	jmp	7f
6:	add	$16, %rbx
	jmp	3b
7:	movzbl	(%rsi), %eax		# skip to the end of the word
	cmp	$' ', %al
	jbe	1b
	inc	%rsi
	jmp	7b
9:	pop	%rbx
	ret

# Write and read back one word at the highest RAM page and at the first RAM
# page above 4 GiB (restoring the old contents).
ram_check:
	mov	ram_top(%rip), %rdi
	test	%rdi, %rdi
	jz	1f
	dec	%rdi
	and	$~0xfff, %rdi
	call	check_word
1:	mov	first_high(%rip), %rdi
	test	%rdi, %rdi
	jz	2f
	add	$0xfff, %rdi
	and	$~0xfff, %rdi
	call	check_word
2:	ret

check_word:
	cmp	map_limit(%rip), %rdi
	jae	2f			# beyond what the probe can map
	mov	(%rdi), %r8
	movabs	$0x50524f4245524d43, %rax	# "PROBERMC"
	xor	%rdi, %rax
	mov	%rax, (%rdi)
	mfence
	clflush	(%rdi)
	mfence
	mov	(%rdi), %rdx
	mov	%r8, (%rdi)
	cmp	%rax, %rdx
	je	2f
	push	%rdi
	call	out_lock
	PUTS	str_ramfail
	pop	%rax
	call	puthex
	PUTS	str_crlf
	call	out_unlock
2:	ret

	.section .rodata
str_ready:	.asciz "PROBE READY cpus="
str_ram_mib:	.asciz " ram_mib="
str_top:	.asciz " top=0x"
str_hb:		.asciz "HB "
str_exit:	.asciz "PROBE EXIT\r\n"
str_tsc:	.asciz "PROBE TSC khz="
str_pit_bad:	.asciz "PROBE PIT BAD\r\n"
str_ramfail:	.asciz "PROBE RAMCHECK FAIL addr=0x"
kw_ws:		.asciz "probe.ws="
kw_rate:	.asciz "probe.rate="
kw_exit:	.asciz "probe.exit="
kw_cpus:	.asciz "probe.cpus="
kw_disk:	.asciz "probe.disk="
kw_diskrate:	.asciz "probe.diskrate="
kw_diskflush:	.asciz "probe.diskflush="
kw_diskverify:	.asciz "probe.diskverify="
kw_diskreassign: .asciz "probe.diskreassign="
kw_diskbench:	.asciz "probe.diskbench="
kw_netstats:	.asciz "probe.netstats="

	.data
	.balign 8
kw_table:
	.quad	kw_ws, ws_mib
	.quad	kw_rate, ws_rate
	.quad	kw_exit, exit_at
	.quad	kw_cpus, want_cpus
	.quad	kw_disk, disk_mib	# disk.S
	.quad	kw_diskrate, disk_rate
	.quad	kw_diskflush, disk_flush
	.quad	kw_diskverify, disk_verify
	.quad	kw_diskreassign, disk_reassign
	.quad	kw_diskbench, disk_bench_on	# diskbench.S
	.quad	kw_netstats, net_stats_on	# net.S (probe.ip= is parsed there)
	.quad	0, 0

# Everything the probe keeps across a migration lives here, in guest RAM,
# initialised in the file (nothing relies on a zeroed .bss).
	.globl boot_params_ptr, bsp_apic_id, have_1g_pages, tsc_khz, tsc_period
	.globl ws_mib, ws_rate, exit_at, want_cpus, map_limit, e820_nr
	.globl hb_count
boot_params_ptr: .quad 0
tsc_khz:	.quad 0
tsc_period:	.quad 0			# TSC ticks per 10 ms
hb_count:	.quad 0
hb_deadline:	.quad 0
ws_mib:		.quad 0
ws_rate:	.quad 0
exit_at:	.quad 0
want_cpus:	.quad 0
ram_bytes:	.quad 0
ram_top:	.quad 0
first_high:	.quad 0
map_limit:	.quad 0
e820_nr:	.long 0
bsp_apic_id:	.long 0
have_1g_pages:	.long 0

	.section .bss
	.balign 16
	.globl e820_copy, cmdline_copy
e820_copy:
	.skip	E820_MAX * 20
cmdline_copy:
	.skip	4096
	.balign 4096
user_stack:
	.skip	16384
	.globl user_stack_top
user_stack_top:
