# Disk workload on the first virtio-blk device: a writer that rewrites 4 KiB
# blocks round-robin at probe.diskrate and a verifier that re-reads them,
# both driven from the main loop one request at a time (at most one write
# or flush and one read in flight), so heartbeats are held up by a few
# notifies at most.
#
# Block b (sectors 8b .. 8b+7) with generation g >= 1 holds 512 le64 words:
#   word 0  "PROBEBLK" (BLOCK_MAGIC)
#   word 1  b
#   word 2  g
#   word w  seed(b, g) + w * WORD_K   for w = 3 .. 511
# with the working set's seed (ws.S: page_seed).  Generation 0 means "never
# written": the block reads as all zeroes.  dgen[b], the generation last
# written (or adopted), lives in guest RAM, so RAM and disk must agree after
# any migration or snapshot restore.

.include "defs.inc"
.include "virtio.inc"

.set BLOCK_MAGIC, 0x4b4c4245424f5250	# "PROBEBLK" as a le64
.set WORD_K,      0xd6e8feb86659fd93	# as in ws.S
.set READ_MAX,    8		# blocks per verify read (rbuf)
.set TIMEOUT_HB,  1000		# a request not done after 1000 heartbeats (10 s)
.set MAX_MISMATCH_LINES, 4	# per verify pass

.macro PUTS label
	lea	\label(%rip), %rsi
	call	puts
.endm

	.text

# disk_setup: with probe.disk=<MiB> > 0: find the device, initialise it,
# place the generation table and print the DISK line.
	.globl disk_setup
disk_setup:
	cmpq	$0, disk_mib(%rip)
	jne	1f
	ret
1:	push	%rbx
	lea	word_persist(%rip), %rdi
	call	cmdline_has_word
	mov	%rax, disk_persist(%rip)
	call	pci_find_vblk
	cmp	$-1, %eax
	je	80f
	mov	%eax, %edi
	call	vio_pci_setup
	test	%rax, %rax
	jnz	90f
	call	vio_init
	test	%rax, %rax
	jnz	90f
	mov	vio_capacity(%rip), %rax
	shr	$11, %rax		# whole MiB on the disk
	mov	disk_mib(%rip), %rcx
	cmp	%rax, %rcx
	cmova	%rax, %rcx
	lea	str_small(%rip), %rax
	test	%rcx, %rcx
	jz	90f
	mov	%rcx, d_mib(%rip)
	shl	$8, %rcx
	mov	%rcx, d_blocks(%rip)
	call	alloc_gen
	test	%rax, %rax
	lea	str_nomem(%rip), %rax
	jz	90f
	mov	d_gen(%rip), %rdi	# every block: generation 0 (zeroes)
	mov	d_blocks(%rip), %rcx
	xor	%eax, %eax
	rep stosq

	# Pacing, per 10 ms slice.  Writer: diskrate KiB/s (0 = whenever the
	# previous write is done).  Verifier: diskverify KiB/s (0 = no limit)
	# but never more than a tenth of the region per slice.
	mov	disk_rate(%rip), %rax
	shl	$10, %rax
	xor	%edx, %edx
	mov	$100, %ecx
	div	%rcx
	mov	%rax, dw_slice(%rip)
	add	%rax, %rax
	cmp	$8192, %rax
	jae	2f
	mov	$8192, %eax
2:	mov	%rax, dw_cap(%rip)
	mov	d_blocks(%rip), %rax
	add	$9, %rax
	xor	%edx, %edx
	mov	$10, %ecx
	div	%rcx
	shl	$12, %rax		# a tenth of the region, in bytes
	mov	%rax, %rbx
	mov	disk_verify(%rip), %rax
	test	%rax, %rax
	jz	3f
	shl	$10, %rax
	xor	%edx, %edx
	mov	$100, %ecx
	div	%rcx
	cmp	%rbx, %rax
	cmovb	%rax, %rbx
3:	mov	%rbx, dv_slice(%rip)
	add	%rbx, %rbx
	cmp	$READ_MAX * 4096, %rbx
	jae	4f
	mov	$READ_MAX * 4096, %ebx
4:	mov	%rbx, dv_cap(%rip)
	call	rdtsc64
	mov	%rax, dw_deadline(%rip)
	mov	%rax, dv_deadline(%rip)
	movq	$1, disk_active(%rip)

	call	out_lock
	PUTS	str_disk_vda
	mov	vio_capacity(%rip), %rax
	call	putdec
	PUTS	str_mib
	mov	d_mib(%rip), %rax
	call	putdec
	PUTS	str_rate
	mov	disk_rate(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
	cmpq	$0, disk_bench_on(%rip)	# probe.diskbench=1 (diskbench.S)
	je	5f
	call	disk_bench
5:	pop	%rbx
	ret

80:	call	out_lock
	PUTS	str_disk_none
	call	out_unlock
	pop	%rbx
	ret
90:	mov	%rax, %rbx
	call	out_lock
	PUTS	str_disk_error
	mov	%rbx, %rsi
	call	puts
	PUTS	str_crlf
	call	out_unlock
	pop	%rbx
	ret

# alloc_gen: d_gen = d_blocks * 8 bytes (4 KiB rounded) of E820 RAM at or
# above 16 MiB and above the working set, below the mapped limit: the first
# E820 RAM entry (in table order) with room.  rax = address or 0.
alloc_gen:
	mov	d_blocks(%rip), %r9
	lea	0xfff(, %r9, 8), %r9
	and	$~0xfff, %r9		# bytes
	mov	$WS_MIN_BASE, %r10d	# lowest address
	mov	ws_pages(%rip), %rax
	test	%rax, %rax
	jz	1f
	lea	0xfff(, %rax, 8), %rax	# above ws_gen[]
	and	$~0xfff, %rax
	add	ws_gen(%rip), %rax
	cmp	%r10, %rax
	cmova	%rax, %r10
1:	lea	e820_copy(%rip), %rsi
	mov	e820_nr(%rip), %ecx
2:	test	%ecx, %ecx
	jz	8f
	cmpl	$E820_RAM, 16(%rsi)
	jne	3f
	mov	(%rsi), %rdi		# start
	mov	8(%rsi), %rdx
	add	%rdi, %rdx		# end
	cmp	map_limit(%rip), %rdx
	cmova	map_limit(%rip), %rdx
	cmp	%r10, %rdi
	cmovb	%r10, %rdi
	add	$0xfff, %rdi
	and	$~0xfff, %rdi
	cmp	%rdx, %rdi
	jae	3f
	mov	%rdx, %rax
	sub	%rdi, %rax
	cmp	%r9, %rax
	jae	4f
3:	add	$20, %rsi
	dec	%ecx
	jmp	2b
4:	mov	%rdi, d_gen(%rip)
	mov	%rdi, %rax
	ret
8:	xor	%eax, %eax
	ret

# cmdline_has_word: rdi = NUL-terminated word.  eax = 1 if the command line
# holds exactly that word (blank-separated).
cmdline_has_word:
	lea	cmdline_copy(%rip), %rsi
1:	movzbl	(%rsi), %eax
	test	%al, %al
	jz	8f
	cmp	$' ', %al
	ja	2f
	inc	%rsi
	jmp	1b
2:	mov	%rdi, %r8
	mov	%rsi, %r9
3:	movzbl	(%r8), %eax
	test	%al, %al
	jz	4f
	cmp	(%r9), %al
	jne	5f
	inc	%r8
	inc	%r9
	jmp	3b
4:	cmpb	$' ', (%r9)		# the word ends here too?
	jbe	7f
5:	movzbl	(%rsi), %eax		# skip the rest of this word
	cmp	$' ', %al
	jbe	1b
	inc	%rsi
	jmp	5b
7:	mov	$1, %eax
	ret
8:	xor	%eax, %eax
	ret

# fill_block: rdi = buffer, rsi = block, rdx = generation.
	.globl fill_block
fill_block:
	movabs	$BLOCK_MAGIC, %rax
	mov	%rax, (%rdi)
	mov	%rsi, 8(%rdi)
	mov	%rdx, 16(%rdi)
	mov	%rsi, %rax
	call	page_seed		# rax = seed(block, gen); only rcx clobbered
	movabs	$WORD_K, %rdx
	lea	(%rdx, %rdx, 2), %rcx
	add	%rcx, %rax		# word 3
	mov	$3, %ecx
1:	mov	%rax, (%rdi, %rcx, 8)
	add	%rdx, %rax
	inc	%ecx
	cmp	$512, %ecx
	jb	1b
	ret

# block_gen: rdi = buffer, rsi = block -> rax = the generation the buffer
# holds for that block: g >= 1 for a complete, valid block, 0 for all
# zeroes, -1 for anything else (other magic or block, a wrong word).
	.globl block_gen
block_gen:
	movabs	$BLOCK_MAGIC, %rax
	cmp	%rax, (%rdi)
	jne	5f
	cmp	%rsi, 8(%rdi)
	jne	8f
	mov	16(%rdi), %r8		# generation
	test	%r8, %r8
	jz	8f
	mov	%rsi, %rax
	mov	%r8, %rdx
	call	page_seed
	movabs	$WORD_K, %rdx
	lea	(%rdx, %rdx, 2), %rcx
	add	%rcx, %rax
	mov	$3, %ecx
1:	cmp	%rax, (%rdi, %rcx, 8)
	jne	8f
	add	%rdx, %rax
	inc	%ecx
	cmp	$512, %ecx
	jb	1b
	mov	%r8, %rax
	ret
5:	xor	%ecx, %ecx		# all zeroes?
6:	cmpq	$0, (%rdi, %rcx, 8)
	jne	8f
	inc	%ecx
	cmp	$512, %ecx
	jb	6b
	xor	%eax, %eax
	ret
8:	mov	$-1, %rax
	ret

# disk_step (r15 = now): completions, timeouts, then at most one new write
# (or flush) and one new read.
	.globl disk_step
disk_step:
	push	%rbx
	push	%r12
	call	disk_reap
	cmpq	$0, disk_active(%rip)
	je	9f

	mov	hb_count(%rip), %rbx	# timeouts, in heartbeats (a TSC jump
	cmpq	$0, dw_state(%rip)	# cannot fake one)
	je	1f
	mov	%rbx, %rax
	sub	dw_hb(%rip), %rax
	cmp	$TIMEOUT_HB, %rax
	jbe	1f
	call	fail_timeout_w
	jmp	9f
1:	cmpq	$0, dr_state(%rip)
	je	2f
	mov	%rbx, %rax
	sub	dr_hb(%rip), %rax
	cmp	$TIMEOUT_HB, %rax
	jbe	2f
	call	fail_timeout_r
	jmp	9f

2:	lea	dw_deadline(%rip), %rdi	# budgets
	call	period_due
	test	%eax, %eax
	jz	3f
	mov	dw_budget(%rip), %rax
	add	dw_slice(%rip), %rax
	cmp	dw_cap(%rip), %rax
	cmova	dw_cap(%rip), %rax
	mov	%rax, dw_budget(%rip)
3:	lea	dv_deadline(%rip), %rdi
	call	period_due
	test	%eax, %eax
	jz	4f
	mov	dv_budget(%rip), %rax
	add	dv_slice(%rip), %rax
	cmp	dv_cap(%rip), %rax
	cmova	dv_cap(%rip), %rax
	mov	%rax, dv_budget(%rip)
4:	call	try_write
	call	try_read
9:	pop	%r12
	pop	%rbx
	ret

# disk_reap: handles every completion the device has posted.
disk_reap:
1:	cmpq	$0, disk_active(%rip)
	je	9f
	call	vq_reap
	cmp	$-1, %eax
	je	9f
	cmp	$HEAD_WRITE, %eax
	jne	2f
	call	write_done
	jmp	1b
2:	cmp	$HEAD_READ, %eax
	jne	3f
	call	read_done
	jmp	1b
3:	cmp	$HEAD_FLUSH, %eax
	jne	1b			# not ours: ignored
	call	flush_done
	jmp	1b
9:	ret

# try_write: the next block round-robin, when the writer is idle, the
# budget allows, and no read of that block is in flight.  With
# probe.diskcheck=persist the writer waits for the first verify pass (which
# adopts the generations found on the disk).
try_write:
	cmpq	$0, dw_state(%rip)
	jne	9f
	cmpq	$0, disk_persist(%rip)
	je	1f
	cmpq	$1, dv_pass(%rip)
	jbe	9f
1:	mov	dw_next(%rip), %rbx
	cmpq	$0, dr_state(%rip)
	je	2f
	mov	%rbx, %rax
	sub	dr_first(%rip), %rax
	cmp	dr_count(%rip), %rax
	jb	9f			# being read: wait
2:	cmpq	$0, disk_rate(%rip)
	je	3f
	mov	dw_budget(%rip), %rax
	sub	$4096, %rax
	jb	9f
	mov	%rax, dw_budget(%rip)
3:	mov	d_gen(%rip), %rcx
	mov	(%rcx, %rbx, 8), %rdx
	inc	%rdx
	mov	%rdx, dw_newgen(%rip)
	lea	wbuf(%rip), %rdi
	mov	%rbx, %rsi
	call	fill_block
	lea	vq_mem(%rip), %rdi
	movl	$BLK_T_OUT, VQ_HDR_W(%rdi)
	movl	$0, VQ_HDR_W + 4(%rdi)
	lea	(, %rbx, 8), %rax
	mov	%rax, VQ_HDR_W + 8(%rdi)	# sector
	movb	$0xff, VQ_ST_W(%rdi)
	mov	%rbx, dw_block(%rip)
	mov	hb_count(%rip), %rax
	mov	%rax, dw_hb(%rip)
	movq	$1, dw_state(%rip)
	mov	$HEAD_WRITE, %eax
	call	vq_submit
9:	ret

# write_done: the block now holds dw_newgen: record it, then flush if
# VIRTIO_BLK_F_FLUSH was negotiated (probe.diskflush=1).
write_done:
	movzbl	vq_mem + VQ_ST_W(%rip), %eax
	test	%eax, %eax
	jz	1f
	lea	str_write(%rip), %rsi
	mov	dw_block(%rip), %rdx
	jmp	fail_io
1:	mov	dw_block(%rip), %rax
	mov	dw_newgen(%rip), %rdx
	mov	d_gen(%rip), %rcx
	mov	%rdx, (%rcx, %rax, 8)
	incq	d_writes(%rip)
	inc	%rax
	cmp	d_blocks(%rip), %rax
	jb	2f
	xor	%eax, %eax
2:	mov	%rax, dw_next(%rip)
	testl	$1 << 9, vio_accept_lo(%rip)	# VIRTIO_BLK_F_FLUSH
	jnz	3f
	movq	$0, dw_state(%rip)
	ret
3:	lea	vq_mem(%rip), %rdi
	movl	$BLK_T_FLUSH, VQ_HDR_F(%rdi)
	movl	$0, VQ_HDR_F + 4(%rdi)
	movq	$0, VQ_HDR_F + 8(%rdi)
	movb	$0xff, VQ_ST_F(%rdi)
	mov	hb_count(%rip), %rax
	mov	%rax, dw_hb(%rip)
	movq	$2, dw_state(%rip)
	mov	$HEAD_FLUSH, %eax
	jmp	vq_submit

flush_done:
	movzbl	vq_mem + VQ_ST_F(%rip), %eax
	test	%eax, %eax
	jz	1f
	lea	str_flush(%rip), %rsi
	mov	dw_block(%rip), %rdx
	jmp	fail_io
1:	incq	d_flushes(%rip)
	movq	$0, dw_state(%rip)
	ret

# try_read: the next READ_MAX blocks (fewer at the end of the region), when
# the reader is idle, the budget allows and none of them is being written.
try_read:
	cmpq	$0, dr_state(%rip)
	jne	9f
	mov	dv_next(%rip), %rbx
	mov	d_blocks(%rip), %r12
	sub	%rbx, %r12
	cmp	$READ_MAX, %r12
	jbe	1f
	mov	$READ_MAX, %r12d	# r12 = blocks
1:	mov	%r12, %rax
	shl	$12, %rax
	cmp	dv_budget(%rip), %rax
	ja	9f
	cmpq	$1, dw_state(%rip)	# a write (not a flush) in flight?
	jne	2f
	mov	dw_block(%rip), %rcx
	sub	%rbx, %rcx
	cmp	%r12, %rcx
	jb	9f			# into this range: wait
2:	sub	%rax, dv_budget(%rip)
	lea	vq_mem(%rip), %rdi
	mov	%eax, VQ_LEN_R(%rdi)	# descriptor 4: bytes to read
	movl	$BLK_T_IN, VQ_HDR_R(%rdi)
	movl	$0, VQ_HDR_R + 4(%rdi)
	lea	(, %rbx, 8), %rax
	mov	%rax, VQ_HDR_R + 8(%rdi)
	movb	$0xff, VQ_ST_R(%rdi)
	mov	%rbx, dr_first(%rip)
	mov	%r12, dr_count(%rip)
	mov	hb_count(%rip), %rax
	mov	%rax, dr_hb(%rip)
	movq	$1, dr_state(%rip)
	mov	$HEAD_READ, %eax
	call	vq_submit
9:	ret

# read_done: checks each block read against dgen[], adopting generations
# in the first pass of probe.diskcheck=persist, and ends the pass at the
# end of the region.
read_done:
	movzbl	vq_mem + VQ_ST_R(%rip), %eax
	test	%eax, %eax
	jz	1f
	lea	str_read(%rip), %rsi
	mov	dr_first(%rip), %rdx
	jmp	fail_io
1:	push	%rbx
	push	%r12
	push	%r13
	movq	$0, dr_state(%rip)
	mov	dr_first(%rip), %rbx
	lea	rbuf(%rip), %r12
	mov	dr_count(%rip), %r13
2:	mov	%r12, %rdi
	mov	%rbx, %rsi
	call	check_block
	add	$4096, %r12
	inc	%rbx
	dec	%r13
	jnz	2b
	cmp	d_blocks(%rip), %rbx
	jb	3f
	call	end_pass
	xor	%ebx, %ebx
3:	mov	%rbx, dv_next(%rip)
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

# check_block: rdi = buffer, rsi = block.
#   got == want                      fine (got == 0: note the zero block)
#   want == 0, persist, first pass:  adopt a valid block's generation,
#                                    unless a lower block read as zeroes
#                                    (the writer fills the region in order,
#                                    so a hole means a lost write)
#   otherwise                        DISK MISMATCH
check_block:
	push	%rbx
	mov	%rsi, %rbx
	call	block_gen
	mov	d_gen(%rip), %rcx
	mov	(%rcx, %rbx, 8), %rdx	# want
	cmp	%rdx, %rax
	jne	2f
	test	%rax, %rax
	jnz	9f
	movq	$1, dv_zero_seen(%rip)
	jmp	9f
2:	test	%rdx, %rdx
	jnz	5f
	cmpq	$0, disk_persist(%rip)
	je	5f
	cmpq	$1, dv_pass(%rip)
	jne	5f
	cmp	$-1, %rax
	je	5f
	cmpq	$0, dv_zero_seen(%rip)
	jne	5f
	mov	%rax, (%rcx, %rbx, 8)	# adopt
	jmp	9f
5:	incq	dv_bad(%rip)
	cmpq	$MAX_MISMATCH_LINES, dv_printed(%rip)
	jae	9f
	incq	dv_printed(%rip)
	push	%rax
	push	%rdx
	call	out_lock
	PUTS	str_mm_block
	mov	%rbx, %rax
	call	putdec
	PUTS	str_mm_want
	pop	%rax
	call	putdec
	pop	%rax
	cmp	$-1, %rax
	jne	6f
	PUTS	str_mm_gotbad
	jmp	7f
6:	push	%rax
	PUTS	str_mm_got
	pop	%rax
	call	putdec
	PUTS	str_crlf
7:	call	out_unlock
9:	pop	%rbx
	ret

# "DISKVERIFY <pass> ok" or "DISKVERIFY <pass> bad=<blocks>".
end_pass:
	call	out_lock
	PUTS	str_dverify
	mov	dv_pass(%rip), %rax
	call	putdec
	mov	dv_bad(%rip), %rax
	test	%rax, %rax
	jnz	1f
	PUTS	str_ok
	jmp	2f
1:	PUTS	str_bad
	mov	dv_bad(%rip), %rax
	call	putdec
	PUTS	str_crlf
2:	call	out_unlock
	incq	dv_pass(%rip)
	movq	$0, dv_bad(%rip)
	movq	$0, dv_printed(%rip)
	movq	$0, dv_zero_seen(%rip)
	ret

# Errors stop the disk work for good (one line, no flood):
#   DISK ERROR timeout op=<write|flush|read> block=<n>
#   DISK ERROR io op=<write|flush|read> block=<n> status=<s>
fail_timeout_w:
	lea	str_write(%rip), %rsi
	cmpq	$1, dw_state(%rip)
	je	1f
	lea	str_flush(%rip), %rsi
1:	mov	dw_block(%rip), %rdx
	jmp	fail_timeout
fail_timeout_r:
	lea	str_read(%rip), %rsi
	mov	dr_first(%rip), %rdx
	.globl fail_timeout, fail_io		# rsi = op, rdx = block (diskbench.S)
fail_timeout:
	mov	$-1, %eax
	lea	str_timeout(%rip), %rdi
	jmp	fail_op
# fail_io: rsi = op, rdx = block, eax = status.
fail_io:
	lea	str_io(%rip), %rdi
# fail_op: rdi = kind, rsi = op, rdx = block, eax = status (-1: none).
fail_op:
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	mov	%rdi, %rbx
	mov	%rsi, %r12
	mov	%rdx, %r13
	mov	%eax, %r14d
	movq	$0, disk_active(%rip)
	call	out_lock
	PUTS	str_disk_error
	mov	%rbx, %rsi
	call	puts
	PUTS	str_op
	mov	%r12, %rsi
	call	puts
	PUTS	str_block
	mov	%r13, %rax
	call	putdec
	cmp	$-1, %r14d
	je	1f
	PUTS	str_status
	mov	%r14d, %eax
	call	putdec
1:	PUTS	str_crlf
	call	out_unlock
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

# disk_finish (from probe_exit): waits up to 1 s for the requests in flight
# (a write's completion still updates dgen[] and the counters), then prints
# "DISK END writes=<n> flushes=<n>".
	.globl disk_finish
disk_finish:
	cmpq	$0, disk_active(%rip)
	jne	1f
	ret
1:	push	%rbx
	mov	$1000000, %eax
	call	us_to_tsc
	mov	%rax, %rbx
	call	rdtsc64
	add	%rax, %rbx
2:	call	disk_reap
	cmpq	$0, disk_active(%rip)
	je	9f
	cmpq	$0, dw_state(%rip)
	jne	3f
	cmpq	$0, dr_state(%rip)
	je	5f
3:	call	rdtsc64
	cmp	%rbx, %rax
	jae	4f
	pause
	jmp	2b
4:	cmpq	$0, dw_state(%rip)
	je	41f
	call	fail_timeout_w
	jmp	9f
41:	call	fail_timeout_r
	jmp	9f
5:	call	out_lock
	PUTS	str_disk_end
	mov	d_writes(%rip), %rax
	call	putdec
	PUTS	str_flushes
	mov	d_flushes(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
9:	pop	%rbx
	ret

	.section .rodata
	.globl str_write, str_read, str_flush
word_persist:	.asciz "probe.diskcheck=persist"
str_disk_vda:	.asciz "DISK vda cap="
str_mib:	.asciz " mib="
str_rate:	.asciz " rate="
str_disk_none:	.asciz "DISK NONE\r\n"
str_disk_error:	.asciz "DISK ERROR "
str_small:	.asciz "small"
str_nomem:	.asciz "nomem"
str_timeout:	.asciz "timeout"
str_io:		.asciz "io"
str_op:		.asciz " op="
str_block:	.asciz " block="
str_status:	.asciz " status="
str_write:	.asciz "write"
str_read:	.asciz "read"
str_flush:	.asciz "flush"
str_mm_block:	.asciz "DISK MISMATCH block="
str_mm_want:	.asciz " want_gen="
str_mm_got:	.asciz " got_gen="
str_mm_gotbad:	.asciz " got=bad\r\n"
str_dverify:	.asciz "DISKVERIFY "
str_ok:		.asciz " ok\r\n"
str_bad:	.asciz " bad="
str_disk_end:	.asciz "DISK END writes="
str_flushes:	.asciz " flushes="

	.data
	.balign 8
# Command line (main.S: kw_table) and mode.
	.globl disk_mib, disk_rate, disk_flush, disk_verify, disk_reassign
	.globl disk_active, d_blocks, d_gen, dw_state, dw_block
disk_mib:	.quad 0			# probe.disk=<MiB>
disk_rate:	.quad 256		# probe.diskrate=<KiB/s>
disk_flush:	.quad 0			# probe.diskflush=1
disk_verify:	.quad 4096		# probe.diskverify=<KiB/s>
disk_reassign:	.quad 0			# probe.diskreassign=1 (test knob)
disk_persist:	.quad 0			# probe.diskcheck=persist
disk_active:	.quad 0
# Region and generation table.
d_mib:		.quad 0
d_blocks:	.quad 0
d_gen:		.quad 0			# -> dgen[d_blocks] (8 bytes each)
d_writes:	.quad 0
d_flushes:	.quad 0
# Writer: state 0 idle, 1 write in flight, 2 flush in flight.
dw_state:	.quad 0
dw_next:	.quad 0
dw_block:	.quad 0
dw_newgen:	.quad 0
dw_hb:		.quad 0
dw_budget:	.quad 0
dw_slice:	.quad 0
dw_cap:		.quad 0
dw_deadline:	.quad 0
# Verifier: state 0 idle, 1 read in flight.
dr_state:	.quad 0
dr_first:	.quad 0
dr_count:	.quad 0
dr_hb:		.quad 0
dv_next:	.quad 0
dv_budget:	.quad 0
dv_slice:	.quad 0
dv_cap:		.quad 0
dv_deadline:	.quad 0
dv_pass:	.quad 1
dv_bad:		.quad 0
dv_printed:	.quad 0
dv_zero_seen:	.quad 0
