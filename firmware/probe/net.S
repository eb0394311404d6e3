# Polled virtio-net (virtio 1.x, PCI) and a minimal IPv4 responder, ring 3.
#
# With probe.ip=A.B.C.D[/N] on the command line: the first virtio-net
# function on bus 0 is set up (pci.S: vio_pci_setup), one receive queue
# (0) and one transmit queue (1) of up to NQ_MAX entries each, no
# interrupts, and the main loop calls net_step, which
#   - takes back the transmit buffers the device has used,
#   - handles every received frame and gives its buffer straight back:
#       ARP request for our address        -> ARP reply
#       ICMP echo request to our address   -> echo reply (same id/seq/data)
#       UDP datagram to our address port 7 -> the same payload back to the
#                                             sender's address and port
#     anything else (other MACs or addresses, IP options, fragments, bad
#     checksums, other protocols) is dropped;
#   - publishes the replies with one notify (none while the device says
#     VIRTQ_USED_F_NO_NOTIFY).
# Replies go to the Ethernet source of the request (no ARP cache).
#
# Every buffer is one descriptor of NBUF bytes: the 12-byte
# virtio_net_hdr_v1 then the frame (no offloads negotiated, so the header
# is all zeroes on transmit and ignored on receive).  Descriptor i always
# points at buffer i of its queue.  All state is in .data / .bss (guest
# RAM), so a migration or snapshot restore continues where it was.

.include "defs.inc"
.include "virtio.inc"

.set NQ_MAX,      32		# entries per queue (fewer if the device allows fewer)
.set NBUF,        2048		# bytes per buffer (header + frame up to 1514 + VLAN)
.set NBUF_SHIFT,  11
.set NHDR,        12		# struct virtio_net_hdr_v1
.set NQ_AVAIL,    512		# ring page: descriptors at 0, avail, used
.set NQ_USED,     1024
.set F_NET_MAC,   5		# VIRTIO_NET_F_MAC (low feature word)
.set ETH_HLEN,    14
.set ETH_ZLEN,    60		# minimum frame (without FCS): shorter ones are padded
.set ARP_LEN,     ETH_HLEN + 28
.set STATS_HB,    100		# probe.netstats=1: a NET line every 100 heartbeats
.set TXKICK_HB,   10		# transmit stuck for 10 heartbeats: notify again

# Per-queue state (nrx_st, ntx_st).
.set NQS_NOTIFY,  0		# notify address
.set NQS_RING,    8		# ring page (static)
.set NQS_BUF,     16		# buffers (static)
.set NQS_SIZE,    24
.set NQS_MASK,    28
.set NQS_AVAIL,   32		# avail entries published (16-bit counter)
.set NQS_USED,    36		# used entries consumed (16-bit counter)
.set NQS_DFLAGS,  40		# descriptor flags (static: 2 = device-writable)
.set NQS_INDEX,   44		# queue index (static)

# Network-order 16-bit values as little-endian loads see them.
.set ETHERTYPE_IP,  0x0008
.set ETHERTYPE_ARP, 0x0608
.set ARP_HW_IP,     0x00080100	# htype 1 (Ethernet), ptype 0x0800
.set ARP_LENS,      0x0406	# hlen 6, plen 4
.set ARP_REQUEST,   0x0100
.set ARP_REPLY,     0x0200
.set PORT_ECHO,     0x0700	# UDP port 7
.set IP_FRAG_MASK,  0xff3f	# MF flag + fragment offset

.macro PUTS label
	lea	\label(%rip), %rsi
	call	puts
.endm

	.text

# net_setup: with probe.ip=...: find, set up and start the device, print
# the NET line and send a gratuitous ARP.
	.globl net_setup
net_setup:
	push	%rbx
	push	%r12
	lea	word_ip(%rip), %rdi
	call	cmdline_value
	test	%rax, %rax
	jz	9f			# no probe.ip: no network, no PCI access
	mov	%rax, %rsi
	call	parse_ip
	cmp	$-1, %edx
	lea	str_badip(%rip), %rbx
	je	90f
	mov	%eax, net_ip(%rip)
	mov	%edx, net_prefix(%rip)
	call	pci_find_vnet
	cmp	$-1, %eax
	je	80f
	mov	%eax, %edi
	call	vio_pci_setup
	mov	%rax, %rbx
	test	%rax, %rax
	jnz	90f
	call	vnet_init
	mov	%rax, %rbx
	test	%rax, %rax
	jnz	90f

	call	out_lock		# NET eth0 mac=xx:..:xx ip=a.b.c.d/n
	PUTS	str_net_eth0
	xor	%r12d, %r12d
1:	test	%r12d, %r12d
	jz	2f
	mov	$':', %al
	call	putc
2:	lea	net_mac(%rip), %rax
	movzbl	(%rax, %r12), %eax
	call	put_hex2
	inc	%r12d
	cmp	$6, %r12d
	jb	1b
	PUTS	str_ipeq
	xor	%r12d, %r12d
3:	test	%r12d, %r12d
	jz	4f
	mov	$'.', %al
	call	putc
4:	lea	net_ip(%rip), %rax
	movzbl	(%rax, %r12), %eax
	call	putdec
	inc	%r12d
	cmp	$4, %r12d
	jb	3b
	mov	$'/', %al
	call	putc
	mov	net_prefix(%rip), %eax
	call	putdec
	PUTS	str_crlf
	call	out_unlock

	movq	$1, net_active(%rip)
	call	send_garp
	call	ntx_flush
	jmp	9f

80:	call	out_lock
	PUTS	str_net_none
	call	out_unlock
	jmp	9f
90:	call	out_lock
	PUTS	str_net_error
	mov	%rbx, %rsi
	call	puts
	PUTS	str_crlf
	call	out_unlock
9:	pop	%r12
	pop	%rbx
	ret

# vnet_init: resets and initialises the function set up by vio_pci_setup:
# features VERSION_1 + MAC, queues 0 (receive, every buffer posted) and 1
# (transmit), DRIVER_OK, the MAC from the device configuration, then one
# notify of the receive queue.  rax = 0, or a reason string.
vnet_init:
	push	%rbx
	push	%r12
	mov	vio_caps + 8(%rip), %rbx	# common configuration
	call	vio_reset_ack		# reset, then ACKNOWLEDGE | DRIVER
	test	%rax, %rax
	jnz	99f

	# Features: VERSION_1 and MAC are required, nothing else is taken
	# (no offloads, no mergeable buffers, no control queue).
	movl	$1, CC_DFSELECT(%rbx)
	mov	CC_DF(%rbx), %eax
	test	$1, %al			# VIRTIO_F_VERSION_1 (bit 32)
	lea	str_features(%rip), %rax
	jz	98f
	movl	$0, CC_DFSELECT(%rbx)
	mov	CC_DF(%rbx), %eax
	bt	$F_NET_MAC, %eax
	lea	str_nomac(%rip), %rax
	jnc	98f
	movl	$0, CC_GFSELECT(%rbx)
	movl	$1 << F_NET_MAC, CC_GF(%rbx)
	movl	$1, CC_GFSELECT(%rbx)
	movl	$1, CC_GF(%rbx)
	movb	$ST_ACK | ST_DRIVER | ST_FEATURES_OK, CC_STATUS(%rbx)
	movzbl	CC_STATUS(%rbx), %eax
	test	$ST_FEATURES_OK, %al
	lea	str_features(%rip), %rax
	jz	98f

	movw	$0xffff, CC_MSIX(%rbx)	# no config-change vector
	lea	nrx_st(%rip), %r8
	call	nq_setup
	test	%eax, %eax
	jnz	97f
	lea	ntx_st(%rip), %r8
	call	nq_setup
	test	%eax, %eax
	jnz	97f

	# Receive: every buffer available (ring[i] = i).
	lea	net_rxq(%rip), %rsi
	mov	nrx_st + NQS_SIZE(%rip), %ecx
	xor	%eax, %eax
3:	mov	%ax, NQ_AVAIL + 4(%rsi, %rax, 2)
	inc	%eax
	cmp	%ecx, %eax
	jb	3b
	mov	%ecx, nrx_st + NQS_AVAIL(%rip)
	mov	%cx, NQ_AVAIL + 2(%rsi)
	# Transmit: every buffer free.
	mov	ntx_st + NQS_SIZE(%rip), %ecx
	mov	$1, %eax
	shl	%cl, %rax
	dec	%rax
	mov	%eax, ntx_free(%rip)
	mov	%eax, ntx_all(%rip)

	movb	$ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK, CC_STATUS(%rbx)
	movzbl	CC_STATUS(%rbx), %eax
	test	$ST_NEEDS_RESET | ST_FAILED, %al
	lea	str_status(%rip), %rax
	jnz	98f

	# MAC: device configuration bytes 0..5, under an unchanged
	# config_generation (10 tries).
	mov	vio_caps + 32(%rip), %rsi
	lea	net_mac(%rip), %rdi
	mov	$10, %ecx
4:	movzbl	CC_CFGGEN(%rbx), %r8d
	xor	%edx, %edx
5:	movzbl	(%rsi, %rdx), %eax
	mov	%al, (%rdi, %rdx)
	inc	%edx
	cmp	$6, %edx
	jb	5b
	movzbl	CC_CFGGEN(%rbx), %r9d
	cmp	%r8d, %r9d
	je	6f
	dec	%ecx
	jnz	4b
6:	mov	nrx_st + NQS_NOTIFY(%rip), %rdi
	movw	$0, (%rdi)		# buffers for queue 0
	xor	%eax, %eax
	jmp	99f

97:	lea	str_queue(%rip), %rax
98:	orb	$ST_FAILED, CC_STATUS(%rbx)
99:	pop	%r12
	pop	%rbx
	ret

# nq_setup: rbx = common configuration, r8 = queue state (nrx_st/ntx_st).
# Sizes the queue (the largest power of two <= NQ_MAX the device allows,
# at least 8), builds the fixed descriptors (descriptor i -> buffer i,
# NBUF bytes), empty rings, gives the device the addresses, computes the
# notify address and enables the queue.  eax = 0, or -1 (queue too small
# or already enabled).
nq_setup:
	mov	NQS_INDEX(%r8), %eax
	mov	%ax, CC_Q_SELECT(%rbx)
	movzwl	CC_Q_SIZE(%rbx), %eax
	cmp	$8, %eax
	jb	9f
	mov	$NQ_MAX, %r9d
1:	cmp	%r9d, %eax
	jae	2f
	shr	%r9d
	jmp	1b
2:	movzwl	CC_Q_ENABLE(%rbx), %eax
	test	%eax, %eax
	jnz	9f
	mov	%r9d, NQS_SIZE(%r8)
	lea	-1(%r9), %eax
	mov	%eax, NQS_MASK(%r8)
	movl	$0, NQS_AVAIL(%r8)
	movl	$0, NQS_USED(%r8)
	mov	NQS_RING(%r8), %rdi	# the ring page: all zero
	xor	%eax, %eax
	mov	$4096 / 8, %ecx
	rep stosq
	mov	NQS_RING(%r8), %rdi
	mov	NQS_BUF(%r8), %rdx
	mov	NQS_DFLAGS(%r8), %r10d
	xor	%ecx, %ecx
3:	mov	%ecx, %eax
	shl	$4, %eax
	mov	%rdx, (%rdi, %rax)	# addr
	movl	$NBUF, 8(%rdi, %rax)	# len (transmit: set per frame)
	mov	%r10w, 12(%rdi, %rax)	# flags; next = 0
	add	$NBUF, %rdx
	inc	%ecx
	cmp	%r9d, %ecx
	jb	3b
	movw	$VIRTQ_AVAIL_F_NO_INTERRUPT, NQ_AVAIL(%rdi)

	mov	%r9w, CC_Q_SIZE(%rbx)
	movw	$0xffff, CC_Q_MSIX(%rbx)
	mov	%rdi, %rax
	mov	%eax, CC_Q_DESCLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_DESCHI(%rbx)
	lea	NQ_AVAIL(%rdi), %rax
	mov	%eax, CC_Q_AVAILLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_AVAILHI(%rbx)
	lea	NQ_USED(%rdi), %rax
	mov	%eax, CC_Q_USEDLO(%rbx)
	shr	$32, %rax
	mov	%eax, CC_Q_USEDHI(%rbx)
	movzwl	CC_Q_NOFF(%rbx), %eax
	imul	vio_notify_mult(%rip), %eax
	add	vio_caps + 16(%rip), %rax	# notify base
	mov	%rax, NQS_NOTIFY(%r8)
	movw	$1, CC_Q_ENABLE(%rbx)
	xor	%eax, %eax
	ret
9:	mov	$-1, %eax
	ret

# net_step (main loop, r15 = now): transmit completions, then the received
# frames (at most NQ_MAX per call), their buffers given back with one
# notify if the device wants one, the replies sent, the transmit watchdog
# and the optional statistics line.  A received frame is handled only
# while a transmit buffer is free (else it waits in the used ring and the
# device runs out of receive buffers: back-pressure instead of loss).
	.globl net_step
net_step:
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	call	ntx_reap
	xor	%r13d, %r13d		# receive buffers given back
	mov	$NQ_MAX, %r14d		# frames left for this call
1:	lea	net_rxq + NQ_USED(%rip), %rsi
	movzwl	2(%rsi), %eax		# used idx (written by the device)
	mov	nrx_st + NQS_USED(%rip), %ecx
	cmp	%cx, %ax
	je	5f
	cmpl	$0, ntx_free(%rip)
	jne	2f
	call	ntx_reap
	cmpl	$0, ntx_free(%rip)
	je	5f			# no transmit buffer: later
	lea	net_rxq + NQ_USED(%rip), %rsi
	mov	nrx_st + NQS_USED(%rip), %ecx
2:	mov	%ecx, %edx
	and	nrx_st + NQS_MASK(%rip), %edx
	mov	4(%rsi, %rdx, 8), %ebx	# id
	mov	8(%rsi, %rdx, 8), %r12d	# bytes written (header + frame)
	inc	%ecx
	movzwl	%cx, %ecx
	mov	%ecx, nrx_st + NQS_USED(%rip)
	cmp	nrx_st + NQS_SIZE(%rip), %ebx
	jae	4f			# not one of our buffers
	incq	net_rx_count(%rip)
	mov	%ebx, %edi
	shl	$NBUF_SHIFT, %rdi
	lea	net_rxbuf(%rip), %rax
	add	%rax, %rdi
	mov	%r12d, %esi
	cmp	$NBUF, %esi
	jbe	3f
	xor	%esi, %esi		# longer than the buffer: drop
3:	call	net_input
	mov	nrx_st + NQS_AVAIL(%rip), %ecx	# the buffer goes back
	mov	%ecx, %edx
	and	nrx_st + NQS_MASK(%rip), %edx
	lea	net_rxq + NQ_AVAIL(%rip), %rsi
	mov	%bx, 4(%rsi, %rdx, 2)
	inc	%ecx
	movzwl	%cx, %ecx
	mov	%ecx, nrx_st + NQS_AVAIL(%rip)
	inc	%r13d
4:	dec	%r14d
	jnz	1b

5:	test	%r13d, %r13d		# publish the receive buffers
	jz	6f
	lea	net_rxq(%rip), %rsi
	mov	nrx_st + NQS_AVAIL(%rip), %eax
	mov	%ax, NQ_AVAIL + 2(%rsi)
	mfence				# idx visible before flags are read
	testw	$VIRTQ_USED_F_NO_NOTIFY, NQ_USED(%rsi)
	jnz	6f
	mov	nrx_st + NQS_NOTIFY(%rip), %rdi
	movw	$0, (%rdi)
6:	call	ntx_flush

	mov	ntx_free(%rip), %eax	# transmit watchdog
	cmp	ntx_all(%rip), %eax
	je	7f
	mov	hb_count(%rip), %rax
	sub	ntx_kick_hb(%rip), %rax
	cmp	$TXKICK_HB, %rax
	jb	7f
	call	ntx_kick

7:	cmpq	$0, net_stats_on(%rip)
	je	8f
	mov	hb_count(%rip), %rax
	cmp	ns_next_hb(%rip), %rax
	jb	8f
	add	$STATS_HB, %rax
	mov	%rax, ns_next_hb(%rip)
	call	out_lock
	PUTS	str_net_rx
	mov	net_rx_count(%rip), %rax
	call	putdec
	PUTS	str_tx
	mov	net_tx_count(%rip), %rax
	call	putdec
	PUTS	str_crlf
	call	out_unlock
8:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

# net_input: rdi = receive buffer, esi = bytes in it (header + frame).
# Registers while the frame is looked at: rbx = frame, r12d = its length,
# r13 = IPv4 header, r14d = IPv4 total length, ebp = ICMP / UDP length,
# then r12d = the transmit buffer of the reply.
net_input:
	sub	$NHDR, %esi
	jb	99f
	cmp	$ETH_HLEN, %esi
	jb	99f
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14
	lea	NHDR(%rdi), %rbx
	mov	%esi, %r12d
	mov	(%rbx), %eax		# destination: ours or broadcast
	movzwl	4(%rbx), %ecx
	cmp	net_mac(%rip), %eax
	jne	1f
	cmp	net_mac + 4(%rip), %cx
	je	2f
1:	cmp	$-1, %eax
	jne	90f
	cmp	$0xffff, %ecx
	jne	90f
2:	movzwl	12(%rbx), %eax
	cmp	$ETHERTYPE_ARP, %eax
	je	10f
	cmp	$ETHERTYPE_IP, %eax
	je	20f
	jmp	90f

	# --- ARP: a request for our address gets a reply.
10:	cmp	$ARP_LEN, %r12d
	jb	90f
	cmpl	$ARP_HW_IP, 14(%rbx)
	jne	90f
	cmpw	$ARP_LENS, 18(%rbx)
	jne	90f
	cmpw	$ARP_REQUEST, 20(%rbx)
	jne	90f
	mov	38(%rbx), %eax		# target protocol address
	cmp	net_ip(%rip), %eax
	jne	90f
	call	ntx_get
	cmp	$-1, %eax
	je	90f
	mov	%eax, %r12d
	call	tx_frame
	mov	$ARP_REPLY, %esi
	lea	22(%rbx), %rdx		# to the requester's hardware address
	mov	%rdx, %rcx
	mov	28(%rbx), %r8d		# and protocol address
	call	arp_build
	mov	%r12d, %eax
	mov	$ARP_LEN, %ecx
	call	ntx_queue
	jmp	90f

	# --- IPv4 to our address: version 4, no options, not a fragment,
	# a sane total length and a good header checksum.
20:	cmp	$ETH_HLEN + 20, %r12d
	jb	90f
	lea	ETH_HLEN(%rbx), %r13
	cmpb	$0x45, (%r13)
	jne	90f
	movzwl	2(%r13), %r14d
	rol	$8, %r14w		# total length
	cmp	$20, %r14d
	jb	90f
	lea	-ETH_HLEN(%r12), %eax
	cmp	%eax, %r14d
	ja	90f			# longer than the frame
	testw	$IP_FRAG_MASK, 6(%r13)
	jnz	90f
	mov	16(%r13), %eax
	cmp	net_ip(%rip), %eax
	jne	90f
	mov	%r13, %rsi
	mov	$20, %ecx
	xor	%eax, %eax
	call	csum_part
	call	csum_fold
	test	%eax, %eax
	jnz	90f
	lea	-20(%r14), %ebp		# payload length
	movzbl	9(%r13), %eax		# protocol
	cmp	$1, %eax
	je	30f
	cmp	$17, %eax
	je	40f
	jmp	90f

	# --- ICMP echo request (type 8, code 0) with a good checksum: the
	# same message back as an echo reply (type 0).
30:	cmp	$8, %ebp
	jb	90f
	cmpw	$0x0008, 20(%r13)	# type 8, code 0
	jne	90f
	lea	20(%r13), %rsi
	mov	%ebp, %ecx
	xor	%eax, %eax
	call	csum_part
	call	csum_fold
	test	%eax, %eax
	jnz	90f
	call	ntx_get
	cmp	$-1, %eax
	je	90f
	mov	%eax, %r12d
	call	reply_copy		# rdi = reply frame
	call	ip_finish
	lea	ETH_HLEN + 20(%rdi), %r9
	movb	$0, (%r9)		# echo reply
	movw	$0, 2(%r9)
	mov	%r9, %rsi
	mov	%ebp, %ecx
	xor	%eax, %eax
	call	csum_part
	call	csum_fold
	mov	%ax, 2(%r9)
	mov	%r12d, %eax
	lea	ETH_HLEN(%r14), %ecx
	call	ntx_queue
	jmp	90f

	# --- UDP to port 7 from a non-zero port, with a sane length and a
	# good (or no) checksum: the same payload back, ports swapped.
40:	cmp	$8, %ebp
	jb	90f
	cmpw	$PORT_ECHO, 22(%r13)	# destination port
	jne	90f
	cmpw	$0, 20(%r13)		# source port 0: nowhere to answer
	je	90f
	movzwl	24(%r13), %eax
	rol	$8, %ax			# UDP length
	cmp	$8, %eax
	jb	90f
	cmp	%ebp, %eax
	ja	90f
	mov	%eax, %ebp		# the datagram (IP padding left out)
	cmpw	$0, 26(%r13)
	je	41f			# sent without a checksum
	mov	%r13, %rsi
	mov	%ebp, %ecx
	call	udp_csum
	test	%eax, %eax
	jnz	90f
41:	call	ntx_get
	cmp	$-1, %eax
	je	90f
	mov	%eax, %r12d
	lea	20(%rbp), %r14d		# the reply's IP total length
	call	reply_copy
	call	ip_finish
	lea	ETH_HLEN(%rdi), %r9	# IP header of the reply
	movzwl	20(%r9), %eax
	mov	%ax, 22(%r9)		# to the sender's port
	movw	$PORT_ECHO, 20(%r9)	# from port 7
	movw	$0, 26(%r9)
	mov	%r9, %rsi
	mov	%ebp, %ecx
	call	udp_csum
	test	%eax, %eax
	jnz	42f
	mov	$0xffff, %eax		# a computed 0 is sent as 0xffff
42:	mov	%ax, 26(%r9)
	mov	%r12d, %eax
	lea	ETH_HLEN(%r14), %ecx
	call	ntx_queue

90:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
99:	ret

# tx_frame: eax = transmit buffer -> rdi = where its frame starts.
tx_frame:
	mov	%eax, %edi
	shl	$NBUF_SHIFT, %rdi
	lea	net_txbuf + NHDR(%rip), %rax
	add	%rax, %rdi
	ret

# reply_copy: eax = transmit buffer, rbx = received frame, r14d = bytes of
# its IP packet to copy.  Writes the Ethernet header (back to the frame's
# source, from our MAC, IPv4) and the copy.  rdi = the reply frame.
reply_copy:
	call	tx_frame
	mov	6(%rbx), %eax
	mov	%eax, (%rdi)
	movzwl	10(%rbx), %eax
	mov	%ax, 4(%rdi)
	mov	net_mac(%rip), %eax
	mov	%eax, 6(%rdi)
	movzwl	net_mac + 4(%rip), %eax
	mov	%ax, 10(%rdi)
	movw	$ETHERTYPE_IP, 12(%rdi)
	mov	%rdi, %rdx
	lea	ETH_HLEN(%rbx), %rsi
	add	$ETH_HLEN, %rdi
	mov	%r14d, %ecx
	rep movsb
	mov	%rdx, %rdi
	ret

# ip_finish: rdi = reply frame whose IP header is a copy of the request's,
# r14d = the reply's total length.  Version 4, no options, TOS 0, a new id,
# no fragment bits, TTL 64, same protocol, from our address to the
# request's source, header checksum.  rdi is kept.
ip_finish:
	lea	ETH_HLEN(%rdi), %r9
	movw	$0x0045, (%r9)		# version 4, IHL 5, TOS 0
	mov	%r14d, %eax
	rol	$8, %ax
	mov	%ax, 2(%r9)
	mov	net_ip_id(%rip), %eax
	inc	%eax
	mov	%eax, net_ip_id(%rip)
	rol	$8, %ax
	mov	%ax, 4(%r9)
	movw	$0, 6(%r9)		# flags, fragment offset
	movb	$64, 8(%r9)		# TTL
	movw	$0, 10(%r9)		# checksum
	mov	12(%r9), %eax
	mov	%eax, 16(%r9)		# destination = the request's source
	mov	net_ip(%rip), %eax
	mov	%eax, 12(%r9)
	mov	%r9, %rsi
	mov	$20, %ecx
	xor	%eax, %eax
	call	csum_part
	call	csum_fold
	mov	%ax, 10(%r9)
	ret

# arp_build: rdi = frame, esi = operation (as stored), rdx -> Ethernet
# destination (6 bytes), rcx -> target hardware address, r8d = target
# protocol address.  Sender = our MAC and address.
arp_build:
	mov	(%rdx), %eax
	mov	%eax, (%rdi)
	movzwl	4(%rdx), %eax
	mov	%ax, 4(%rdi)
	mov	net_mac(%rip), %eax
	mov	%eax, 6(%rdi)
	mov	%eax, 22(%rdi)
	movzwl	net_mac + 4(%rip), %eax
	mov	%ax, 10(%rdi)
	mov	%ax, 26(%rdi)
	movw	$ETHERTYPE_ARP, 12(%rdi)
	movl	$ARP_HW_IP, 14(%rdi)
	movw	$ARP_LENS, 18(%rdi)
	mov	%si, 20(%rdi)
	mov	net_ip(%rip), %eax
	mov	%eax, 28(%rdi)
	mov	(%rcx), %eax
	mov	%eax, 32(%rdi)
	movzwl	4(%rcx), %eax
	mov	%ax, 36(%rdi)
	mov	%r8d, 38(%rdi)
	ret

# send_garp: a gratuitous ARP (a broadcast request for our own address),
# so that a bridge or switch learns our MAC at once.
send_garp:
	call	ntx_get
	cmp	$-1, %eax
	je	9f
	push	%rax
	call	tx_frame
	mov	$ARP_REQUEST, %esi
	lea	mac_bcast(%rip), %rdx
	lea	mac_zero(%rip), %rcx
	mov	net_ip(%rip), %r8d
	call	arp_build
	pop	%rax
	mov	$ARP_LEN, %ecx
	call	ntx_queue
9:	ret

# csum_part: rsi -> data, ecx = length, rax = running sum -> rax = sum of
# the data as little-endian 16-bit words (a last odd byte is the low byte
# of a word), not folded.  Summing little-endian words gives the Internet
# checksum byte-swapped, which a little-endian store puts right.
csum_part:
	mov	%ecx, %edx
	shr	$2, %ecx
	jz	2f
1:	mov	(%rsi), %r8d		# two words at a time (2^16 = 1 mod 0xffff)
	add	%r8, %rax
	add	$4, %rsi
	dec	%ecx
	jnz	1b
2:	test	$2, %dl
	jz	3f
	movzwl	(%rsi), %r8d
	add	%r8, %rax
	add	$2, %rsi
3:	test	$1, %dl
	jz	4f
	movzbl	(%rsi), %r8d
	add	%r8, %rax
4:	ret

# csum_fold: rax = sum -> eax = its one's complement 16-bit checksum (0 for
# data that includes a correct checksum).
csum_fold:
1:	mov	%rax, %rdx
	shr	$16, %rdx
	jz	2f
	movzwl	%ax, %eax
	add	%rdx, %rax
	jmp	1b
2:	not	%eax
	movzwl	%ax, %eax
	ret

# udp_csum: rsi = IPv4 header, ecx = UDP length -> eax = checksum over the
# pseudo-header (addresses, protocol 17, length) and the datagram.
udp_csum:
	mov	12(%rsi), %eax		# source
	mov	16(%rsi), %edx		# destination
	add	%rdx, %rax
	add	$0x1100, %rax		# zero byte, protocol 17
	mov	%ecx, %edx
	rol	$8, %dx
	movzwl	%dx, %edx
	add	%rdx, %rax		# length
	add	$20, %rsi
	call	csum_part
	jmp	csum_fold

# ntx_get: eax = a free transmit buffer (taken), or -1.
ntx_get:
	mov	ntx_free(%rip), %eax
	test	%eax, %eax
	jnz	1f
	call	ntx_reap
	mov	ntx_free(%rip), %eax
	test	%eax, %eax
	jz	2f
1:	bsf	%eax, %eax
	btr	%eax, ntx_free(%rip)
	ret
2:	mov	$-1, %eax
	ret

# ntx_queue: eax = transmit buffer whose frame is filled in, ecx = frame
# length.  Pads it to 60 bytes, zeroes the header, sets the descriptor's
# length and puts it in the avail ring (published by ntx_flush).
ntx_queue:
	mov	%eax, %edx
	shl	$NBUF_SHIFT, %rdx
	lea	net_txbuf(%rip), %rdi
	add	%rdx, %rdi
	movq	$0, (%rdi)		# virtio_net_hdr_v1: no offloads
	movl	$0, 8(%rdi)
1:	cmp	$ETH_ZLEN, %ecx
	jae	2f
	movb	$0, NHDR(%rdi, %rcx)
	inc	%ecx
	jmp	1b
2:	add	$NHDR, %ecx
	mov	%eax, %edx
	shl	$4, %edx
	lea	net_txq(%rip), %rsi
	mov	%ecx, 8(%rsi, %rdx)	# descriptor length
	mov	ntx_st + NQS_AVAIL(%rip), %ecx
	mov	%ecx, %edx
	and	ntx_st + NQS_MASK(%rip), %edx
	mov	%ax, NQ_AVAIL + 4(%rsi, %rdx, 2)
	inc	%ecx
	movzwl	%cx, %ecx
	mov	%ecx, ntx_st + NQS_AVAIL(%rip)
	movl	$1, ntx_pending(%rip)
	incq	net_tx_count(%rip)
	ret

# ntx_flush: publishes queued frames and notifies queue 1, unless the
# device said it does not need notifies (VIRTQ_USED_F_NO_NOTIFY, read after
# the index is visible).
ntx_flush:
	cmpl	$0, ntx_pending(%rip)
	je	9f
	movl	$0, ntx_pending(%rip)
	lea	net_txq(%rip), %rsi
	mov	ntx_st + NQS_AVAIL(%rip), %eax
	mov	%ax, NQ_AVAIL + 2(%rsi)
	mov	hb_count(%rip), %rax
	mov	%rax, ntx_kick_hb(%rip)
	mfence
	testw	$VIRTQ_USED_F_NO_NOTIFY, NQ_USED(%rsi)
	jnz	9f
ntx_kick:
	mov	hb_count(%rip), %rax
	mov	%rax, ntx_kick_hb(%rip)
	mov	ntx_st + NQS_NOTIFY(%rip), %rdi
	movw	$1, (%rdi)
9:	ret

# ntx_reap: frees the transmit buffers the device has used.
ntx_reap:
	lea	net_txq + NQ_USED(%rip), %rsi
	mov	ntx_st + NQS_USED(%rip), %ecx
	movzwl	2(%rsi), %eax
	cmp	%cx, %ax
	je	9f
	mov	hb_count(%rip), %rax	# progress: the watchdog waits again
	mov	%rax, ntx_kick_hb(%rip)
1:	movzwl	2(%rsi), %eax
	cmp	%cx, %ax
	je	3f
	mov	%ecx, %edx
	and	ntx_st + NQS_MASK(%rip), %edx
	mov	4(%rsi, %rdx, 8), %eax	# id
	cmp	ntx_st + NQS_SIZE(%rip), %eax
	jae	2f
	bts	%eax, ntx_free(%rip)
2:	inc	%ecx
	movzwl	%cx, %ecx
	jmp	1b
3:	mov	%ecx, ntx_st + NQS_USED(%rip)
9:	ret

# cmdline_value: rdi = NUL-terminated prefix ("probe.ip=").  rax -> what
# follows it in the last blank-separated word of the command line that
# starts with it, or 0.
cmdline_value:
	lea	cmdline_copy(%rip), %rsi
	xor	%r9d, %r9d
1:	movzbl	(%rsi), %eax		# skip blanks
	test	%al, %al
	jz	8f
	cmp	$' ', %al
	ja	2f
	inc	%rsi
	jmp	1b
2:	mov	%rdi, %r8
	mov	%rsi, %rdx
3:	movzbl	(%r8), %eax
	test	%al, %al
	jz	4f
	cmp	(%rdx), %al
	jne	5f
	inc	%r8
	inc	%rdx
	jmp	3b
4:	mov	%rdx, %r9		# matched: remember, keep looking
5:	movzbl	(%rsi), %eax		# skip the rest of the word
	cmp	$' ', %al
	jbe	1b
	inc	%rsi
	jmp	5b
8:	mov	%r9, %rax
	ret

# parse_ip: rsi -> "A.B.C.D" or "A.B.C.D/N" ending the word.  eax = the
# address as stored in a packet (A in the low byte), edx = N (24 if not
# given), or edx = -1 if malformed (an octet > 255 or of more than 3
# digits, N > 32, anything else in the word).
parse_ip:
	xor	%r8d, %r8d		# address
	xor	%r9d, %r9d		# octets done
1:	call	parse_dec
	test	%ecx, %ecx
	jz	8f
	cmp	$3, %ecx
	ja	8f
	cmp	$255, %eax
	ja	8f
	lea	(, %r9, 8), %ecx
	shl	%cl, %eax
	or	%eax, %r8d
	inc	%r9d
	cmp	$4, %r9d
	je	2f
	cmpb	$'.', (%rsi)
	jne	8f
	inc	%rsi
	jmp	1b
2:	mov	$24, %edx
	cmpb	$'/', (%rsi)
	jne	3f
	inc	%rsi
	call	parse_dec
	test	%ecx, %ecx
	jz	8f
	cmp	$2, %ecx
	ja	8f
	cmp	$32, %eax
	ja	8f
	mov	%eax, %edx
3:	cmpb	$' ', (%rsi)		# the word must end here
	ja	8f
	mov	%r8d, %eax
	ret
8:	mov	$-1, %edx
	ret

# parse_dec: rsi -> decimal digits.  eax = value, ecx = digits, rsi past
# them.  Keeps edx, r8, r9.
parse_dec:
	xor	%eax, %eax
	xor	%ecx, %ecx
1:	movzbl	(%rsi), %r10d
	sub	$'0', %r10d
	cmp	$9, %r10d
	ja	2f
	imul	$10, %eax, %eax
	add	%r10d, %eax
	inc	%ecx
	inc	%rsi
	cmp	$10, %ecx		# (the caller rejects long numbers)
	jb	1b
2:	ret

# put_hex2: al as two lower-case hex digits.
put_hex2:
	push	%rbx
	movzbl	%al, %ebx
	mov	%ebx, %eax
	shr	$4, %eax
	call	hexdigit
	call	putc
	mov	%ebx, %eax
	and	$15, %eax
	call	hexdigit
	call	putc
	pop	%rbx
	ret
hexdigit:
	add	$'0', %eax
	cmp	$'9', %eax
	jbe	1f
	add	$'a' - '0' - 10, %eax
1:	ret

	.section .rodata
word_ip:	.asciz "probe.ip="
str_net_eth0:	.asciz "NET eth0 mac="
str_ipeq:	.asciz " ip="
str_net_none:	.asciz "NET NONE\r\n"
str_net_error:	.asciz "NET ERROR "
str_net_rx:	.asciz "NET rx="
str_tx:		.asciz " tx="
str_badip:	.asciz "ip"
str_reset:	.asciz "reset"
str_features:	.asciz "features"
str_nomac:	.asciz "nomac"
str_queue:	.asciz "queue"
str_status:	.asciz "status"
mac_bcast:	.byte 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
mac_zero:	.byte 0, 0, 0, 0, 0, 0

	.data
	.balign 8
	.globl net_active, net_stats_on
net_active:	.quad 0
net_stats_on:	.quad 0			# probe.netstats=1
net_rx_count:	.quad 0			# frames received
net_tx_count:	.quad 0			# frames sent
ns_next_hb:	.quad STATS_HB		# heartbeat of the next NET rx= line
ntx_kick_hb:	.quad 0			# heartbeat of the last notify / progress
nrx_st:		.quad 0, net_rxq, net_rxbuf
		.long 0, 0, 0, 0, 2, 0	# size, mask, avail, used, WRITE, queue 0
ntx_st:		.quad 0, net_txq, net_txbuf
		.long 0, 0, 0, 0, 0, 1	# size, mask, avail, used, flags, queue 1
net_ip:		.long 0			# as in a packet (first octet lowest)
net_prefix:	.long 0
net_mac:	.quad 0			# 6 bytes (+2 zero)
net_ip_id:	.long 0			# IPv4 id of the last reply
ntx_free:	.long 0			# bit i: transmit buffer i is free
ntx_all:	.long 0			# every buffer free
ntx_pending:	.long 0			# queued frames not yet published

	.section .bss
	.balign 4096
net_rxq:				# receive ring page
	.skip	4096
net_txq:				# transmit ring page
	.skip	4096
net_rxbuf:
	.skip	NQ_MAX * NBUF
net_txbuf:
	.skip	NQ_MAX * NBUF
