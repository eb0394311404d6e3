# probe.diskbench=1: a throughput benchmark of the disk, run once after the
# DISK line and before the first heartbeat.  One 4 KiB request at a time,
# polled, timed with the TSC from its submission to its completion.  The
# region's first half is walked in order, the second half in a scattered
# order (block H + i * step mod H, H = half the region's blocks, step as
# computed by scatter_step), each walk once per phase:
#
#   0 seqwrite     first half, in order, generation 1 (first writes)
#   1 randwrite    second half, scattered, generation 1 (first writes)
#   2 seqrewrite   first half, generation 2
#   3 randrewrite  second half, generation 2
#   4 seqread      first half, each block checked against dgen[]
#   5 randread     second half, checked
#
# After each phase: "DISKBENCH <name> ops=<H> us=<t> flush_us=<f> bad=<n>":
# t = microseconds for the H requests; after a write phase, with
# VIRTIO_BLK_F_FLUSH negotiated (probe.diskflush=1), one flush follows and
# f is its duration (else 0); n = blocks a read phase found not holding
# their dgen[] generation.  The blocks are written in the workload's format
# and dgen[] is kept, so the normal workload (and its verifier) carries on
# afterwards with every block at generation 2.  A failed request ends the
# disk work with the usual DISK ERROR line.

.include "defs.inc"
.include "virtio.inc"

.set BENCH_TIMEOUT_US, 10000000	# a request not done in 10 s
.set PHASES, 6

.macro PUTS label
	lea	\label(%rip), %rsi
	call	puts
.endm

	.text
	.globl disk_bench
disk_bench:
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	mov	d_blocks(%rip), %rax
	shr	$1, %rax
	mov	%rax, db_half(%rip)
	call	scatter_step
	mov	%rax, db_step(%rip)
	xor	%r12d, %r12d		# phase
1:	call	bench_phase
	cmpq	$0, disk_active(%rip)
	je	9f
	inc	%r12d
	cmp	$PHASES, %r12d
	jb	1b
9:	movq	$0, dw_state(%rip)	# the workload's writer starts idle
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

# scatter_step: rax = the step of the scattered walk over db_half blocks:
# the smallest odd number >= H * 0.6180339887 (2654435769 / 2^32) that is
# coprime to H, so that i * step mod H visits every block once.
scatter_step:
	mov	db_half(%rip), %rax
	mov	$2654435769, %ecx
	mul	%rcx
	shrd	$32, %rdx, %rax
	or	$1, %rax
	mov	%rax, %r8		# candidate
1:	mov	%r8, %rax		# gcd(candidate, H)
	mov	db_half(%rip), %rcx
2:	test	%rcx, %rcx
	jz	3f
	xor	%edx, %edx
	div	%rcx
	mov	%rcx, %rax
	mov	%rdx, %rcx
	jmp	2b
3:	cmp	$1, %rax
	je	4f
	add	$2, %r8
	jmp	1b
4:	mov	%r8, %rax
	ret

# bench_phase: r12 = phase (bit 0: scattered second half; phase / 2: 0 first
# write, 1 rewrite, 2 read).  rbx = i, r13 = block, r14 = generation.
bench_phase:
	movq	$0, db_bad(%rip)
	movq	$0, db_tflush(%rip)
	mov	%r12d, %r14d
	shr	$1, %r14d
	inc	%r14d			# generation written: 1, then 2
	call	rdtsc64
	mov	%rax, db_t0(%rip)
	xor	%ebx, %ebx
1:	mov	%rbx, %r13
	test	$1, %r12d
	jz	2f
	mov	%rbx, %rax
	mulq	db_step(%rip)
	divq	db_half(%rip)		# rdx = i * step mod H (i, step < H)
	mov	db_half(%rip), %r13
	add	%rdx, %r13
2:	cmp	$4, %r12d
	jae	5f

	lea	wbuf(%rip), %rdi	# write block r13, generation r14
	mov	%r13, %rsi
	mov	%r14, %rdx
	call	fill_block
	lea	vq_mem(%rip), %rdi
	movl	$BLK_T_OUT, VQ_HDR_W(%rdi)
	movl	$0, VQ_HDR_W + 4(%rdi)
	lea	(, %r13, 8), %rax
	mov	%rax, VQ_HDR_W + 8(%rdi)
	movb	$0xff, VQ_ST_W(%rdi)
	mov	%r13, dw_block(%rip)
	movq	$1, dw_state(%rip)
	mov	$HEAD_WRITE, %eax
	call	bench_request
	test	%eax, %eax
	jnz	9f
	movzbl	vq_mem + VQ_ST_W(%rip), %eax
	test	%eax, %eax
	jnz	8f
	mov	d_gen(%rip), %rcx
	mov	%r14, (%rcx, %r13, 8)
	jmp	6f

5:	lea	vq_mem(%rip), %rdi	# read block r13 and check it
	movl	$4096, VQ_LEN_R(%rdi)
	movl	$BLK_T_IN, VQ_HDR_R(%rdi)
	movl	$0, VQ_HDR_R + 4(%rdi)
	lea	(, %r13, 8), %rax
	mov	%rax, VQ_HDR_R + 8(%rdi)
	movb	$0xff, VQ_ST_R(%rdi)
	mov	$HEAD_READ, %eax
	call	bench_request
	test	%eax, %eax
	jnz	9f
	movzbl	vq_mem + VQ_ST_R(%rip), %eax
	test	%eax, %eax
	jnz	8f
	lea	rbuf(%rip), %rdi
	mov	%r13, %rsi
	call	block_gen
	mov	d_gen(%rip), %rcx
	cmp	(%rcx, %r13, 8), %rax
	je	6f
	incq	db_bad(%rip)

6:	inc	%rbx
	cmp	db_half(%rip), %rbx
	jb	1b
	call	rdtsc64
	mov	%rax, db_t1(%rip)
	cmp	$4, %r12d		# a flush after a write phase
	jae	7f
	testl	$1 << 9, vio_accept_lo(%rip)	# VIRTIO_BLK_F_FLUSH
	jz	7f
	lea	vq_mem(%rip), %rdi
	movl	$BLK_T_FLUSH, VQ_HDR_F(%rdi)
	movl	$0, VQ_HDR_F + 4(%rdi)
	movq	$0, VQ_HDR_F + 8(%rdi)
	movb	$0xff, VQ_ST_F(%rdi)
	movq	$2, dw_state(%rip)
	mov	$HEAD_FLUSH, %eax
	call	bench_request
	test	%eax, %eax
	jnz	9f
	movzbl	vq_mem + VQ_ST_F(%rip), %eax
	test	%eax, %eax
	jnz	8f
	call	rdtsc64
	sub	db_t1(%rip), %rax
	mov	%rax, db_tflush(%rip)
7:	jmp	print_phase

8:	call	op_name			# request failed: status in eax
	mov	%r13, %rdx
	jmp	fail_io
9:	call	op_name			# not completed
	mov	%r13, %rdx
	jmp	fail_timeout

# op_name: rsi = "write", "read" or "flush" for the request in flight
# (eax kept).
op_name:
	lea	str_read(%rip), %rsi
	cmp	$4, %r12d
	jae	1f
	lea	str_write(%rip), %rsi
	cmpq	$2, dw_state(%rip)
	jne	1f
	lea	str_flush(%rip), %rsi
1:	ret

# bench_request: eax = head.  Submits it and polls until the device has
# used it: eax = 0, or 1 after BENCH_TIMEOUT_US.
bench_request:
	push	%rbx
	push	%r12
	mov	%eax, %ebx
	call	vq_submit
	mov	$BENCH_TIMEOUT_US, %eax
	call	us_to_tsc
	mov	%rax, %r12
	call	rdtsc64
	add	%rax, %r12
1:	call	vq_reap
	cmp	%ebx, %eax
	je	2f
	cmp	$-1, %eax
	jne	1b			# not ours: ignored
	call	rdtsc64
	cmp	%r12, %rax
	jae	3f
	pause
	jmp	1b
2:	xor	%eax, %eax
	jmp	4f
3:	mov	$1, %eax
4:	pop	%r12
	pop	%rbx
	ret

# ticks_us: rax = TSC ticks -> rax = microseconds.
ticks_us:
	mov	$1000, %ecx
	mul	%rcx
	divq	tsc_khz(%rip)
	ret

print_phase:
	call	out_lock
	PUTS	str_bench
	lea	phase_names(%rip), %rax
	mov	(%rax, %r12, 8), %rsi
	call	puts
	PUTS	str_ops
	mov	db_half(%rip), %rax
	call	putdec
	PUTS	str_us
	mov	db_t1(%rip), %rax
	sub	db_t0(%rip), %rax
	call	ticks_us
	call	putdec
	PUTS	str_flush_us
	mov	db_tflush(%rip), %rax
	call	ticks_us
	call	putdec
	PUTS	str_bad
	mov	db_bad(%rip), %rax
	call	putdec
	PUTS	str_crlf
	jmp	out_unlock

	.section .rodata
str_bench:	.asciz "DISKBENCH "
str_ops:	.asciz " ops="
str_us:		.asciz " us="
str_flush_us:	.asciz " flush_us="
str_bad:	.asciz " bad="
n_seqwrite:	.asciz "seqwrite"
n_randwrite:	.asciz "randwrite"
n_seqrewrite:	.asciz "seqrewrite"
n_randrewrite:	.asciz "randrewrite"
n_seqread:	.asciz "seqread"
n_randread:	.asciz "randread"
	.balign 8
phase_names:
	.quad	n_seqwrite, n_randwrite, n_seqrewrite, n_randrewrite, n_seqread, n_randread

	.data
	.balign 8
	.globl disk_bench_on
disk_bench_on:	.quad 0			# probe.diskbench=1
db_half:	.quad 0
db_step:	.quad 0
db_bad:		.quad 0
db_t0:		.quad 0
db_t1:		.quad 0
db_tflush:	.quad 0
