# Working set: a writer that rewrites pages round-robin at probe.rate and a
# verifier that re-reads every page, both driven one page at a time from
# the main loop so heartbeats are never held up by more than a few us.
#
# Layout (one E820 RAM range, at or above 16 MiB, 2 MiB aligned):
#   ws_base .. +pages*4096        the pages
#   then pages*8 (rounded to 4K)  gen[page], the generation last written
# Word w of page p with generation g is  seed(p, g) + w * WORD_K  where
# seed is a splitmix64 finaliser of p * PAGE_K + g.  A page that is lost,
# stale (older g), moved or partly written therefore mismatches, and so
# does a stale gen[] page (it disagrees with the page contents).

.include "defs.inc"

.set MAX_MISMATCH_LINES, 4		# per verify pass

.macro PUTS label
	lea	\label(%rip), %rsi
	call	puts
.endm

	.text
	.globl ws_setup
ws_setup:
	push	%rbx
	push	%r12
	mov	ws_mib(%rip), %rax
	test	%rax, %rax
	jz	9f
	shl	$8, %rax
	mov	%rax, %r12		# r12 = pages
	lea	0xfff(, %rax, 8), %rbx
	and	$~0xfff, %rbx
	mov	%rax, %rcx
	shl	$12, %rcx
	add	%rcx, %rbx		# rbx = bytes needed
	lea	e820_copy(%rip), %rsi
	mov	e820_nr(%rip), %ecx
1:	test	%ecx, %ecx
	jz	8f
	cmpl	$E820_RAM, 16(%rsi)
	jne	2f
	mov	(%rsi), %rdi		# start
	mov	8(%rsi), %rdx
	add	%rdi, %rdx		# end
	cmp	map_limit(%rip), %rdx
	cmova	map_limit(%rip), %rdx
	mov	$WS_MIN_BASE, %eax
	cmp	%rax, %rdi
	cmovb	%rax, %rdi
	add	$0x1fffff, %rdi
	and	$~0x1fffff, %rdi
	cmp	%rdx, %rdi
	jae	2f
	mov	%rdx, %rax
	sub	%rdi, %rax
	cmp	%rbx, %rax
	jae	3f
2:	add	$20, %rsi
	dec	%ecx
	jmp	1b

3:	mov	%rdi, ws_base(%rip)
	mov	%r12, %rax
	shl	$12, %rax
	add	%rdi, %rax
	mov	%rax, ws_gen(%rip)
	# Generation 1 everywhere before the first heartbeat.
	xor	%ebx, %ebx
4:	mov	ws_gen(%rip), %rax
	movq	$1, (%rax, %rbx, 8)
	mov	%rbx, %rax
	mov	$1, %edx
	call	fill_page
	inc	%rbx
	cmp	%r12, %rbx
	jb	4b

	mov	%r12, ws_pages(%rip)
	mov	ws_rate(%rip), %rax
	shl	$20, %rax		# MiB/s -> bytes per 10 ms slice
	xor	%edx, %edx
	mov	$100, %ecx
	div	%rcx
	mov	%rax, w_slice_bytes(%rip)
	add	%rax, %rax
	cmp	$8192, %rax
	jae	5f
	mov	$8192, %eax
5:	mov	%rax, w_budget_cap(%rip)
	lea	9(%r12), %rax		# verify >= 1/10 of the set per slice,
	xor	%edx, %edx		# i.e. at most ~10 VERIFY lines a second
	mov	$10, %ecx
	div	%rcx
	mov	%rax, v_slice_pages(%rip)
	call	rdtsc64
	mov	%rax, w_deadline(%rip)
	mov	%rax, v_deadline(%rip)

	call	out_lock
	PUTS	str_ws_base
	mov	ws_base(%rip), %rax
	call	puthex
	PUTS	str_ws_mib
	mov	ws_mib(%rip), %rax
	call	putdec
	PUTS	str_ws_rate
	mov	ws_rate(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
	jmp	9f

8:	call	out_lock
	PUTS	str_ws_too_big
	call	out_unlock
9:	pop	%r12
	pop	%rbx
	ret

# page_seed: rax = page, rdx = generation -> rax = value of word 0.
# Only rcx is clobbered.  disk.S uses it for its blocks too.
	.globl page_seed
page_seed:
	movabs	$0x9e3779b97f4a7c15, %rcx
	imul	%rcx, %rax
	add	%rdx, %rax
	mov	%rax, %rcx
	shr	$30, %rcx
	xor	%rcx, %rax
	movabs	$0xbf58476d1ce4e5b9, %rcx
	imul	%rcx, %rax
	mov	%rax, %rcx
	shr	$27, %rcx
	xor	%rcx, %rax
	movabs	$0x94d049bb133111eb, %rcx
	imul	%rcx, %rax
	mov	%rax, %rcx
	shr	$31, %rcx
	xor	%rcx, %rax
	ret

# fill_page: rax = page, rdx = generation.
fill_page:
	mov	%rax, %rdi
	shl	$12, %rdi
	add	ws_base(%rip), %rdi
	call	page_seed
	movabs	$0xd6e8feb86659fd93, %rdx	# WORD_K
	mov	$512, %ecx
1:	mov	%rax, (%rdi)
	add	%rdx, %rax
	add	$8, %rdi
	dec	%ecx
	jnz	1b
	ret

# ws_step (r15 = now): maybe rewrite one page, maybe verify one page.
	.globl ws_step
ws_step:
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14

	cmpq	$0, ws_rate(%rip)
	je	2f			# rate 0: write every iteration
	lea	w_deadline(%rip), %rdi
	call	period_due
	test	%eax, %eax
	jz	1f
	mov	w_budget(%rip), %rax
	add	w_slice_bytes(%rip), %rax
	cmp	w_budget_cap(%rip), %rax
	cmova	w_budget_cap(%rip), %rax
	mov	%rax, w_budget(%rip)
1:	mov	w_budget(%rip), %rax
	sub	$4096, %rax
	jb	3f
	mov	%rax, w_budget(%rip)
2:	mov	w_next(%rip), %rbx
	mov	ws_gen(%rip), %rcx
	mov	(%rcx, %rbx, 8), %rdx
	inc	%rdx
	mov	%rdx, (%rcx, %rbx, 8)
	mov	%rbx, %rax
	call	fill_page
	inc	%rbx
	cmp	ws_pages(%rip), %rbx
	jb	21f
	xor	%ebx, %ebx
21:	mov	%rbx, w_next(%rip)

3:	lea	v_deadline(%rip), %rdi
	call	period_due
	test	%eax, %eax
	jz	4f
	mov	v_slice_pages(%rip), %rax
	mov	%rax, v_budget(%rip)
4:	cmpq	$0, v_budget(%rip)
	je	9f
	decq	v_budget(%rip)
	mov	v_next(%rip), %r12
	call	verify_page
	inc	%r12
	cmp	ws_pages(%rip), %r12
	jb	8f
	call	end_pass
	xor	%r12d, %r12d
8:	mov	%r12, v_next(%rip)

9:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
	ret

# verify_page: r12 = page.  Counts bad words in v_bad, prints the first
# few of each pass.  Uses rbx, rbp, r13, r14 (saved by ws_step).
verify_page:
	mov	ws_gen(%rip), %rax
	mov	(%rax, %r12, 8), %rdx
	mov	%r12, %rax
	call	page_seed
	mov	%rax, %rbx		# expected value
	mov	%r12, %r13
	shl	$12, %r13
	add	ws_base(%rip), %r13
	movabs	$0xd6e8feb86659fd93, %r14	# WORD_K
	xor	%ebp, %ebp
1:	cmp	(%r13, %rbp, 8), %rbx
	jne	3f
2:	add	%r14, %rbx
	inc	%ebp
	cmp	$512, %ebp
	jb	1b
	ret
3:	incq	v_bad(%rip)
	cmpq	$MAX_MISMATCH_LINES, v_printed(%rip)
	jae	2b
	incq	v_printed(%rip)
	call	out_lock
	PUTS	str_mm_page
	mov	%r12, %rax
	call	putdec
	PUTS	str_mm_word
	mov	%rbp, %rax
	call	putdec
	PUTS	str_mm_want
	mov	%rbx, %rax
	call	puthex
	PUTS	str_mm_got
	mov	(%r13, %rbp, 8), %rax
	call	puthex
	PUTS	str_crlf
	call	out_unlock
	jmp	2b

# "VERIFY <pass> ok" or "VERIFY <pass> bad=<words>".
end_pass:
	call	out_lock
	PUTS	str_verify
	mov	v_pass(%rip), %rax
	call	putdec
	mov	v_bad(%rip), %rax
	test	%rax, %rax
	jnz	1f
	PUTS	str_ok
	jmp	2f
1:	PUTS	str_bad
	mov	v_bad(%rip), %rax
	call	putdec
	PUTS	str_crlf
2:	call	out_unlock
	incq	v_pass(%rip)
	movq	$0, v_bad(%rip)
	movq	$0, v_printed(%rip)
	ret

	.section .rodata
str_ws_base:	.asciz "WS base=0x"
str_ws_mib:	.asciz " mib="
str_ws_rate:	.asciz " rate="
str_ws_too_big:	.asciz "PROBE WS TOO BIG\r\n"
str_mm_page:	.asciz "MISMATCH page="
str_mm_word:	.asciz " word="
str_mm_want:	.asciz " want=0x"
str_mm_got:	.asciz " got=0x"
str_verify:	.asciz "VERIFY "
str_ok:		.asciz " ok\r\n"
str_bad:	.asciz " bad="

	.data
	.balign 8
	.globl ws_pages, ws_gen
ws_pages:	.quad 0			# 0 = no working set
ws_base:	.quad 0
ws_gen:		.quad 0
w_next:		.quad 0
w_budget:	.quad 0
w_budget_cap:	.quad 0
w_slice_bytes:	.quad 0
w_deadline:	.quad 0
v_next:		.quad 0
v_budget:	.quad 0
v_slice_pages:	.quad 0
v_deadline:	.quad 0
v_pass:		.quad 1
v_bad:		.quad 0
v_printed:	.quad 0
