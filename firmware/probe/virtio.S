# Modern (virtio 1.x) virtio-blk driver over PCI, polled, ring 3.
#
# One split virtqueue (queue 0) with 16 descriptors (fewer if the device
# allows fewer, at least 8).  Descriptor chains are fixed, so a request
# only fills its header and is made available:
#   0 -> 1 -> 2   write: header, the 4 KiB block (wbuf), status
#   3 -> 4 -> 5   read:  header, rbuf (up to 32 KiB, device-writable), status
#   6 -> 7        flush: header, status
# No MSI-X vectors (0xffff), VIRTQ_AVAIL_F_NO_INTERRUPT, INTx off in the
# PCI command register: completions are found by polling the used ring.
#
# Every MMIO access is a plain 1/2/4-byte mov of the register's width (each
# one is a VM exit); the BAR pages are mapped uncached (pci.S).

.include "defs.inc"

.set F_BLK_RO,      5		# feature bits (low word)
.set F_BLK_FLUSH,   9
.set F_VERSION_1,   0		# bit 32: bit 0 of the high word

.include "virtio.inc"

	.text

# vio_init: resets and initialises the virtio-blk function set up by
# vio_pci_setup, sets up queue 0 and reads the capacity.  rax = 0, or a
# reason string.
	.globl vio_init
vio_init:
	push	%rbx
	push	%r12
	mov	vio_caps + 8(%rip), %rbx	# common configuration
	call	vio_reset_ack		# reset, then ACKNOWLEDGE | DRIVER
	test	%rax, %rax
	jnz	99f

	# Features: VERSION_1 is required; FLUSH is taken only when it is
	# offered and probe.diskflush=1; nothing else is accepted.
	movl	$0, CC_DFSELECT(%rbx)
	mov	CC_DF(%rbx), %eax
	mov	%eax, vio_feat_lo(%rip)
	movl	$1, CC_DFSELECT(%rbx)
	mov	CC_DF(%rbx), %eax
	mov	%eax, vio_feat_hi(%rip)
	bt	$F_VERSION_1, %eax
	lea	str_features(%rip), %rax
	jnc	98f
	btl	$F_BLK_RO, vio_feat_lo(%rip)
	lea	str_readonly(%rip), %rax
	jc	98f
	xor	%ecx, %ecx
	cmpq	$0, disk_flush(%rip)
	je	3f
	btl	$F_BLK_FLUSH, vio_feat_lo(%rip)
	jnc	3f
	mov	$1 << F_BLK_FLUSH, %ecx
3:	mov	%ecx, vio_accept_lo(%rip)
	movl	$0, CC_GFSELECT(%rbx)
	mov	%ecx, CC_GF(%rbx)
	movl	$1, CC_GFSELECT(%rbx)
	movl	$1 << F_VERSION_1, CC_GF(%rbx)
	movb	$ST_ACK | ST_DRIVER | ST_FEATURES_OK, CC_STATUS(%rbx)
	movzbl	CC_STATUS(%rbx), %eax
	test	$ST_FEATURES_OK, %al
	lea	str_features(%rip), %rax
	jz	98f

	# Queue 0.
	movw	$0xffff, CC_MSIX(%rbx)	# no config-change vector
	movw	$0, CC_Q_SELECT(%rbx)
	movzwl	CC_Q_SIZE(%rbx), %eax
	lea	str_queue(%rip), %rcx
	cmp	$8, %eax
	jb	97f
	mov	$VQ_MAX, %ecx
	cmp	%ecx, %eax
	jae	4f
	mov	$8, %ecx		# 8..15: use 8 (a power of two)
4:	mov	%ecx, vq_size(%rip)
	dec	%ecx
	mov	%ecx, vq_mask(%rip)
	movzwl	CC_Q_ENABLE(%rbx), %eax
	test	%eax, %eax
	lea	str_queue(%rip), %rcx
	jnz	97f			# enabled right after a reset?

	# Rings: fixed descriptors, empty avail/used rings.
	lea	vq_mem(%rip), %rdi
	xor	%eax, %eax
	mov	$VQ_HDR_W, %ecx
	rep stosb
	lea	vq_desc_init(%rip), %rsi
	lea	vq_mem + VQ_DESC(%rip), %rdi
	mov	$8 * 16, %ecx
	rep movsb
	movw	$1, vq_mem + VQ_AVAIL(%rip)	# VIRTQ_AVAIL_F_NO_INTERRUPT
	movl	$0, vq_avail_idx(%rip)
	movl	$0, vq_used_last(%rip)

	mov	vq_size(%rip), %eax
	mov	%ax, CC_Q_SIZE(%rbx)
	movw	$0xffff, CC_Q_MSIX(%rbx)
	lea	vq_mem + VQ_DESC(%rip), %rax
	mov	%eax, CC_Q_DESCLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_DESCHI(%rbx)
	lea	vq_mem + VQ_AVAIL(%rip), %rax
	mov	%eax, CC_Q_AVAILLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_AVAILHI(%rbx)
	lea	vq_mem + VQ_USED(%rip), %rax
	mov	%eax, CC_Q_USEDLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_USEDHI(%rbx)
	movzwl	CC_Q_NOFF(%rbx), %eax
	imul	vio_notify_mult(%rip), %eax
	add	vio_caps + 16(%rip), %rax	# notify base
	mov	%rax, vq_notify(%rip)
	movw	$1, CC_Q_ENABLE(%rbx)

	movb	$ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK, CC_STATUS(%rbx)
	movzbl	CC_STATUS(%rbx), %eax
	test	$ST_NEEDS_RESET | ST_FAILED, %al
	lea	str_status(%rip), %rax
	jnz	98f

	# Capacity (512-byte sectors, le64 at device config offset 0), read as
	# two dwords under an unchanged config_generation.
	mov	vio_caps + 32(%rip), %rsi
	mov	$10, %ecx
5:	movzbl	CC_CFGGEN(%rbx), %r8d
	mov	(%rsi), %eax
	mov	4(%rsi), %edx
	movzbl	CC_CFGGEN(%rbx), %r9d
	cmp	%r8d, %r9d
	je	6f
	dec	%ecx
	jnz	5b
6:	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, vio_capacity(%rip)
	xor	%eax, %eax
	jmp	99f

97:	mov	%rcx, %rax
98:	orb	$ST_FAILED, CC_STATUS(%rbx)
99:	pop	%r12
	pop	%rbx
	ret

# vq_submit: eax = head descriptor (0 write, 3 read, 6 flush).  Puts it in
# the avail ring, publishes the new index and notifies queue 0 (a 16-bit
# write of the queue index at the queue's notify address).  x86 keeps
# stores in order, so the ring entry is visible before the index, and the
# index before the notify (a trapping access).
	.globl vq_submit
vq_submit:
	mov	vq_avail_idx(%rip), %ecx
	mov	%ecx, %edx
	and	vq_mask(%rip), %edx
	lea	vq_mem + VQ_AVAIL(%rip), %rsi
	mov	%ax, 4(%rsi, %rdx, 2)
	inc	%ecx
	movzwl	%cx, %ecx
	mov	%ecx, vq_avail_idx(%rip)
	mov	%cx, 2(%rsi)
	mov	vq_notify(%rip), %rdi
	movw	$0, (%rdi)
	ret

# vq_reap: eax = the head id of the next used element, or -1 if the device
# has not used anything new.
	.globl vq_reap
vq_reap:
	lea	vq_mem + VQ_USED(%rip), %rsi
	movzwl	2(%rsi), %eax		# used idx (written by the device)
	mov	vq_used_last(%rip), %ecx
	cmp	%cx, %ax
	je	1f
	mov	%ecx, %edx
	and	vq_mask(%rip), %edx
	mov	4(%rsi, %rdx, 8), %eax	# id
	inc	%ecx
	movzwl	%cx, %ecx
	mov	%ecx, vq_used_last(%rip)
	ret
1:	mov	$-1, %eax
	ret

	.section .rodata
	.balign 8
# The fixed descriptors: addr, len, flags (1 NEXT, 2 WRITE), next.
vq_desc_init:
	.quad	vq_mem + VQ_HDR_W
	.long	16
	.word	1, 1
	.quad	wbuf
	.long	4096
	.word	1, 2
	.quad	vq_mem + VQ_ST_W
	.long	1
	.word	2, 0
	.quad	vq_mem + VQ_HDR_R
	.long	16
	.word	1, 4
	.quad	rbuf
	.long	4096			# set per request
	.word	3, 5
	.quad	vq_mem + VQ_ST_R
	.long	1
	.word	2, 0
	.quad	vq_mem + VQ_HDR_F
	.long	16
	.word	1, 7
	.quad	vq_mem + VQ_ST_F
	.long	1
	.word	2, 0
str_reset:	.asciz "reset"
str_features:	.asciz "features"
str_readonly:	.asciz "readonly"
str_queue:	.asciz "queue"
str_status:	.asciz "status"

	.data
	.balign 8
	.globl vio_capacity, vio_accept_lo, vq_size
vio_capacity:	.quad 0
vq_notify:	.quad 0
vio_feat_lo:	.long 0
vio_feat_hi:	.long 0
vio_accept_lo:	.long 0
vq_size:	.long 0
vq_mask:	.long 0
vq_avail_idx:	.long 0			# next free avail slot (16-bit counter)
vq_used_last:	.long 0			# used elements consumed (16-bit counter)

	.section .bss
	.balign 4096
	.globl vq_mem, wbuf, rbuf
vq_mem:
	.skip	4096
wbuf:					# the block being written
	.skip	4096
rbuf:					# up to 8 blocks being verified
	.skip	32768

	.text
# vio_reset_ack: resets the virtio function whose common configuration is at
# rbx, waits (up to 1 s) for its status to read back 0, then sets ACKNOWLEDGE
# and DRIVER.  rax = 0, or the reason string str_reset.
	.globl vio_reset_ack
vio_reset_ack:
	push	%r12
	movb	$0, CC_STATUS(%rbx)	# reset
	mov	$1000000, %eax		# wait up to 1 s for it to read back 0
	call	us_to_tsc
	mov	%rax, %r12
	call	rdtsc64
	add	%rax, %r12
1:	movzbl	CC_STATUS(%rbx), %eax
	test	%eax, %eax
	jz	2f
	pause
	call	rdtsc64
	cmp	%r12, %rax
	jb	1b
	lea	str_reset(%rip), %rax
	pop	%r12
	ret
2:	movb	$ST_ACK, CC_STATUS(%rbx)
	movb	$ST_ACK | ST_DRIVER, CC_STATUS(%rbx)
	xor	%eax, %eax
	pop	%r12
	ret
