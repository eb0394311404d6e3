# PCI (ring 3): configuration mechanism #1 on ports 0xCF8/0xCFC (allowed by
# the TSS I/O bitmap, which permits every port), the scan of bus 0 for a
# virtio function (virtio-blk for disk.S, virtio-net for net.S), its virtio
# capabilities and its memory BARs.
#
# Every port access is a VM exit (~26 us under PVM), so a configuration
# read or write costs two of them; all of this runs once, before the first
# heartbeat.
#
# A function is addressed by bdf = bus << 8 | device << 3 | function.

.include "defs.inc"

.set PCI_ADDR,      0xcf8
.set PCI_DATA,      0xcfc
.set PCI_CMD,       0x04
.set PCI_STATUS,    0x06
.set PCI_HDR_TYPE,  0x0e
.set PCI_BAR0,      0x10
.set PCI_CAP_PTR,   0x34
.set CMD_MEM,       0x0002
.set CMD_MASTER,    0x0004
.set CMD_INTX_OFF,  0x0400
.set CAP_VENDOR,    0x09
.set MAX_OCC,       64		# BARs of other functions remembered
.set BAR_WIN_START, 0xc0000000	# where the probe assigns BARs itself
.set BAR_WIN_END,   0xfec00000	# (below the IOAPIC)

	.text

# pci_addr: edi = bdf, esi = register offset.  Latches the address in
# 0xCF8 and returns dx = the data port for that offset (0xCFC + offset & 3).
pci_addr:
	mov	%edi, %eax
	shl	$8, %eax
	or	$0x80000000, %eax
	mov	%esi, %ecx
	and	$0xfc, %ecx
	or	%ecx, %eax
	mov	$PCI_ADDR, %dx
	outl	%eax, %dx
	mov	%esi, %edx
	and	$3, %edx
	add	$PCI_DATA, %edx
	ret

# pci_read32/16/8: edi = bdf, esi = offset -> eax (zero-extended).
	.globl pci_read32, pci_read16, pci_read8
pci_read32:
	call	pci_addr
	inl	%dx, %eax
	ret
pci_read16:
	call	pci_addr
	inw	%dx, %ax
	movzwl	%ax, %eax
	ret
pci_read8:
	call	pci_addr
	inb	%dx, %al
	movzbl	%al, %eax
	ret

# pci_write32/16: edi = bdf, esi = offset, r8d = value.
	.globl pci_write32, pci_write16
pci_write32:
	call	pci_addr
	mov	%r8d, %eax
	outl	%eax, %dx
	ret
pci_write16:
	call	pci_addr
	mov	%r8d, %eax
	outw	%ax, %dx
	ret

# pci_next_fn: ebx = bdf of the previous function (or -1 to start) ->
# ebx = the next present function on bus 0 and eax = its vendor/device
# dword, or ebx = -1 at the end.  Functions 1..7 are looked at only when
# function 0 has the multi-function bit; absent functions read 0xffff.
pci_next_fn:
1:	cmp	$-1, %ebx
	jne	2f
	xor	%ebx, %ebx		# start: device 0 function 0
	jmp	4f
2:	test	$7, %ebx
	jnz	3f
	mov	%ebx, %edi		# function 0 of a device: multi-function?
	mov	$PCI_HDR_TYPE, %esi
	call	pci_read8
	test	$0x80, %al
	jnz	3f
	add	$8, %ebx		# no: next device
	jmp	5f
3:	inc	%ebx			# next function (carries into the device)
5:	cmp	$0x100, %ebx		# past device 31 of bus 0
	jae	9f
4:	mov	%ebx, %edi
	xor	%esi, %esi
	call	pci_read32
	cmp	$0xffff, %ax
	jne	8f
	test	$7, %ebx		# nothing there: function 0 absent means
	jnz	2b			# the whole device is, so skip to the next
	add	$8, %ebx
	jmp	5b
8:	ret
9:	mov	$-1, %ebx
	ret

# pci_find_vblk: eax = bdf of the first virtio-blk function on bus 0
# (vendor 0x1af4, device 0x1042 modern or 0x1001 transitional), or -1.
# pci_find_vnet: the same for virtio-net (0x1041 modern, 0x1000
# transitional).
	.globl pci_find_vblk, pci_find_vnet
pci_find_vblk:
	mov	$0x10421af4, %edi
	mov	$0x10011af4, %esi
	jmp	pci_find_virtio
pci_find_vnet:
	mov	$0x10411af4, %edi
	mov	$0x10001af4, %esi
# pci_find_virtio: edi, esi = two vendor/device dwords -> eax = bdf of the
# first function on bus 0 that has either, or -1.
pci_find_virtio:
	push	%rbx
	push	%r12
	push	%r13
	mov	%edi, %r12d
	mov	%esi, %r13d
	mov	$-1, %ebx
1:	call	pci_next_fn
	cmp	$-1, %ebx
	je	2f
	cmp	%r12d, %eax
	je	2f
	cmp	%r13d, %eax
	jne	1b
2:	mov	%ebx, %eax
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

# vio_pci_setup: edi = bdf of a virtio function.  Walks the capability list
# for the virtio vendor capabilities, makes sure the BARs they live in are
# assigned, below 4 GiB and decoded, turns on memory decode + bus mastering
# (INTx off), maps the used ranges uncached and fills vio_caps[] (by
# cfg_type) and vio_notify_mult.  rax = 0, or a reason string for
# "DISK ERROR <reason>" / "NET ERROR <reason>".  vio_caps[] describes the
# function last set up: each driver takes what it needs from it (notify
# addresses, ...) before the next one is set up.
	.globl vio_pci_setup
vio_pci_setup:
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14
	mov	%edi, %ebx
	mov	%edi, vio_bdf(%rip)
	movl	$0, cap_found(%rip)

	# --- capability list: ebp = pointer, r12 = iterations left,
	# r13 = the capability's first dword, r14 = its cfg_type
	mov	%ebx, %edi
	mov	$PCI_STATUS, %esi
	call	pci_read16
	test	$0x10, %al		# capability list present?
	jz	20f
	mov	%ebx, %edi
	mov	$PCI_CAP_PTR, %esi
	call	pci_read8
	mov	%eax, %ebp
	mov	$48, %r12d		# a looping list cannot hang us
10:	and	$0xfc, %ebp
	jz	20f
	dec	%r12d
	js	20f
	mov	%ebx, %edi
	mov	%ebp, %esi
	call	pci_read32		# id, next, len, cfg_type
	mov	%eax, %r13d
	cmp	$CAP_VENDOR, %al
	jne	19f
	mov	%eax, %r14d
	shr	$24, %r14d		# cfg_type: 1 common, 2 notify, 3 isr, 4 device
	cmp	$1, %r14d
	jb	19f
	cmp	$4, %r14d
	ja	19f
	bt	%r14d, cap_found(%rip)	# the first of each type wins
	jc	19f
	mov	%ebx, %edi
	lea	4(%rbp), %esi
	call	pci_read32		# bar, id, padding
	movzbl	%al, %eax
	cmp	$5, %eax
	ja	19f
	lea	cap_bar(%rip), %rdx
	mov	%eax, (%rdx, %r14, 4)
	mov	%ebx, %edi
	lea	8(%rbp), %esi
	call	pci_read32		# offset
	lea	cap_off(%rip), %rdx
	mov	%eax, (%rdx, %r14, 4)
	mov	%ebx, %edi
	lea	12(%rbp), %esi
	call	pci_read32		# length
	lea	cap_len(%rip), %rdx
	mov	%eax, (%rdx, %r14, 4)
	cmp	$2, %r14d
	jne	17f
	mov	%ebx, %edi
	lea	16(%rbp), %esi
	call	pci_read32		# notify_off_multiplier
	mov	%eax, vio_notify_mult(%rip)
17:	bts	%r14d, cap_found(%rip)
19:	mov	%r13d, %ebp
	shr	$8, %ebp		# next pointer
	jmp	10b

20:	mov	cap_found(%rip), %eax	# common, notify and device are needed
	and	$0x16, %eax
	cmp	$0x16, %eax
	lea	str_nomodern(%rip), %rax
	jne	99f

	# --- are the BARs usable as they are?  r12 = bitmask of used BARs
	xor	%r12d, %r12d
	mov	$1, %ecx
21:	bt	%ecx, cap_found(%rip)
	jnc	22f
	lea	cap_bar(%rip), %rdx
	mov	(%rdx, %rcx, 4), %eax
	bts	%eax, %r12d
22:	inc	%ecx
	cmp	$4, %ecx
	jbe	21b
	mov	%ebx, %edi
	mov	$PCI_CMD, %esi
	call	pci_read16
	mov	%eax, %r13d		# r13 = command register
	xor	%r14d, %r14d		# r14 = 1: the probe assigns the BARs
	test	$CMD_MEM, %r13d
	jnz	23f
	mov	$1, %r14d		# memory decode off: not set up by firmware
23:	cmpq	$0, disk_reassign(%rip)
	je	24f
	mov	$1, %r14d		# probe.diskreassign=1 (test knob)
24:	xor	%ebp, %ebp		# read every used BAR
25:	bt	%ebp, %r12d
	jnc	27f
	mov	%ebp, %edi
	call	read_bar		# rax = base, edx = 0/4, -1 for an I/O BAR
	cmp	$-1, %edx
	je	91f
	lea	bar_base(%rip), %rsi
	mov	%rax, (%rsi, %rbp, 8)
	test	%rax, %rax
	jz	26f			# unassigned
	mov	$0x100000000, %rsi
	cmp	%rsi, %rax
	jb	27f
26:	mov	$1, %r14d		# 0, or above the probe's 4 GiB map
27:	inc	%ebp
	cmp	$6, %ebp
	jb	25b

	test	%r14d, %r14d
	jz	40f
	# --- assign every memory BAR of the function ourselves (an unused one
	# left at 0 would decode at address 0), memory decode off meanwhile
	movl	$1, bar_assigned(%rip)
	mov	%ebx, %edi
	mov	$PCI_CMD, %esi
	mov	%r13d, %r8d
	and	$~CMD_MEM, %r8d
	call	pci_write16
	call	collect_bars		# what the other functions occupy
	xor	%ebp, %ebp		# BAR index
30:	cmp	$6, %ebp
	jae	40f
	mov	%ebp, %edi
	call	read_bar
	cmp	$-1, %edx
	je	38f			# I/O BAR: left as it is
	mov	%edx, %r14d		# 4: 64-bit
	mov	%ebp, %edi
	call	assign_bar		# rax = base, 0 = not implemented, -1 = no room
	cmp	$-1, %rax
	je	92f
	lea	bar_base(%rip), %rsi
	mov	%rax, (%rsi, %rbp, 8)
	cmp	$4, %r14d
	jne	38f
	inc	%ebp			# skip the high half
38:	inc	%ebp
	jmp	30b

40:	# --- memory decode, bus master (the device DMAs), INTx off
	mov	%r13d, %r8d
	or	$CMD_MEM | CMD_MASTER | CMD_INTX_OFF, %r8d
	mov	%ebx, %edi
	mov	$PCI_CMD, %esi
	call	pci_write16

	# --- absolute addresses, mapped uncached
	mov	$1, %ebp
41:	bt	%ebp, cap_found(%rip)
	jnc	42f
	lea	cap_bar(%rip), %rdx
	mov	(%rdx, %rbp, 4), %eax
	lea	bar_base(%rip), %rdx
	mov	(%rdx, %rax, 8), %rdi
	test	%rdi, %rdi
	jz	92f			# a used BAR that is not implemented
	lea	cap_off(%rip), %rdx
	mov	(%rdx, %rbp, 4), %eax
	add	%rax, %rdi
	lea	vio_caps(%rip), %rdx
	mov	%rdi, (%rdx, %rbp, 8)
	lea	cap_len(%rip), %rdx
	mov	(%rdx, %rbp, 4), %esi
	call	map_uncached
42:	inc	%ebp
	cmp	$4, %ebp
	jbe	41b
	xor	%eax, %eax
	jmp	99f

91:	lea	str_iobar(%rip), %rax
	jmp	99f
92:	lea	str_bar(%rip), %rax
99:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
	ret

# read_bar: ebx = bdf, edi = BAR index -> rax = base address (flag bits
# cleared, both halves of a 64-bit BAR), edx = 0 (32-bit), 4 (64-bit) or
# -1 (I/O BAR).
read_bar:
	push	%r12
	push	%r13
	lea	PCI_BAR0(, %rdi, 4), %r12d
	mov	%ebx, %edi
	mov	%r12d, %esi
	call	pci_read32
	mov	%eax, %r13d
	test	$1, %al
	jnz	3f
	and	$~0xf, %eax
	mov	%r13d, %edx
	and	$6, %edx
	cmp	$4, %edx
	jne	1f
	cmp	$PCI_BAR0 + 20, %r12d	# BAR5 cannot be the low half of a 64-bit BAR
	jae	1f
	mov	%ebx, %edi
	lea	4(%r12), %esi
	call	pci_read32
	shl	$32, %rax
	mov	%r13d, %ecx
	and	$~0xf, %ecx
	or	%rcx, %rax
	mov	$4, %edx
	jmp	2f
1:	mov	%eax, %eax
	xor	%edx, %edx
2:	pop	%r13
	pop	%r12
	ret
3:	mov	$-1, %edx
	xor	%eax, %eax
	jmp	2b

# size_bar: ebx = bdf, edi = BAR register offset, esi = the BAR's current
# low dword.  Writes all ones, reads the size mask back and restores the
# old value.  rax = size (0 if the BAR is not implemented).
size_bar:
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	mov	%edi, %r12d
	mov	%esi, %r13d
	mov	%ebx, %edi
	mov	%r12d, %esi
	mov	$-1, %r8d
	call	pci_write32
	mov	%ebx, %edi
	mov	%r12d, %esi
	call	pci_read32
	mov	%eax, %r14d		# low mask
	mov	$-1, %r15		# high mask (32-bit BAR: all ones)
	mov	%r13d, %eax
	and	$6, %eax
	cmp	$4, %eax
	jne	1f
	mov	%ebx, %edi		# 64-bit: the high half too
	lea	4(%r12), %esi
	call	pci_read32
	push	%rax			# old high half
	mov	%ebx, %edi
	lea	4(%r12), %esi
	mov	$-1, %r8d
	call	pci_write32
	mov	%ebx, %edi
	lea	4(%r12), %esi
	call	pci_read32
	mov	%eax, %r15d
	mov	%ebx, %edi
	lea	4(%r12), %esi
	pop	%r8
	call	pci_write32
1:	mov	%ebx, %edi		# restore the low half
	mov	%r12d, %esi
	mov	%r13d, %r8d
	call	pci_write32
	mov	%r14d, %eax
	and	$~0xf, %eax
	jz	2f			# no address bits: not implemented
	shl	$32, %r15
	or	%r15, %rax
	neg	%rax			# size = ~mask + 1
2:	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	ret

# collect_bars: occ_table = [start, end) of every assigned memory BAR of
# every other function on bus 0 (sized by writing all ones).  Run only when
# the probe assigns BARs itself.
collect_bars:
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14
	movl	$0, occ_n(%rip)
	mov	$-1, %ebx
1:	call	pci_next_fn
	cmp	$-1, %ebx
	je	9f
	cmp	vio_bdf(%rip), %ebx
	je	1b
	mov	%ebx, %edi
	mov	$PCI_HDR_TYPE, %esi
	call	pci_read8
	and	$0x7f, %eax
	mov	$6, %r13d		# header type 0: six BARs
	cmp	$1, %eax
	jne	2f
	mov	$2, %r13d		# PCI-PCI bridge: two
2:	xor	%ebp, %ebp		# BAR index
3:	cmp	%r13d, %ebp
	jae	1b
	mov	%ebp, %r14d		# this BAR's index
	mov	%ebp, %edi
	call	read_bar
	mov	%rax, %r12		# base
	inc	%ebp
	cmp	$-1, %edx
	je	3b			# I/O BAR
	cmp	$4, %edx
	jne	4f
	inc	%ebp			# 64-bit: skip the high half
4:	test	%r12, %r12
	jz	3b			# unassigned
	cmpl	$MAX_OCC, occ_n(%rip)
	jae	3b
	lea	PCI_BAR0(, %r14, 4), %esi
	mov	%esi, %r14d
	mov	%ebx, %edi
	call	pci_read32		# low dword (for the type bits)
	mov	%r14d, %edi
	mov	%eax, %esi
	call	size_bar
	test	%rax, %rax
	jz	3b
	mov	occ_n(%rip), %ecx
	shl	$4, %ecx
	lea	occ_table(%rip), %rdx
	mov	%r12, (%rdx, %rcx)
	add	%r12, %rax
	mov	%rax, 8(%rdx, %rcx)
	incl	occ_n(%rip)
	jmp	3b
9:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
	ret

# assign_bar: ebx = bdf, edi = BAR index (a memory BAR).  Sizes the BAR,
# finds the lowest size-aligned hole in [BAR_WIN_START, BAR_WIN_END) that
# overlaps no other BAR (occ_table) and no E820 entry of any type, and
# programs it (high half 0).  The range is added to occ_table.  rax = base,
# 0 if the BAR is not implemented, -1 if there is no room.
assign_bar:
	push	%r12
	push	%r13
	push	%r14
	lea	PCI_BAR0(, %rdi, 4), %r12d
	mov	%ebx, %edi
	mov	%r12d, %esi
	call	pci_read32
	mov	%eax, %r14d		# type bits
	mov	%r12d, %edi
	mov	%eax, %esi
	call	size_bar
	test	%rax, %rax
	jz	9f			# not implemented
	mov	%rax, %r13		# size
	mov	$BAR_WIN_START, %eax
1:	lea	-1(%r13), %rcx		# align up to the size
	add	%rcx, %rax
	not	%rcx
	and	%rcx, %rax
	lea	(%rax, %r13), %rdx	# [rax, rdx) is the candidate
	mov	$BAR_WIN_END, %ecx
	cmp	%rcx, %rdx
	ja	8f
	lea	occ_table(%rip), %rsi	# clash with another BAR?
	mov	occ_n(%rip), %ecx
2:	test	%ecx, %ecx
	jz	3f
	cmp	8(%rsi), %rax
	jae	21f
	cmp	(%rsi), %rdx
	jbe	21f
	mov	8(%rsi), %rax		# yes: try above it
	jmp	1b
21:	add	$16, %rsi
	dec	%ecx
	jmp	2b
3:	lea	e820_copy(%rip), %rsi	# clash with RAM or a reserved range?
	mov	e820_nr(%rip), %ecx
4:	test	%ecx, %ecx
	jz	5f
	mov	(%rsi), %r8
	mov	8(%rsi), %r9
	add	%r8, %r9
	cmp	%r9, %rax
	jae	41f
	cmp	%r8, %rdx
	jbe	41f
	mov	%r9, %rax
	jmp	1b
41:	add	$20, %rsi
	dec	%ecx
	jmp	4b
5:	push	%rax
	mov	%rax, %r8
	mov	%ebx, %edi
	mov	%r12d, %esi
	call	pci_write32
	and	$6, %r14d
	cmp	$4, %r14d
	jne	6f
	mov	%ebx, %edi
	lea	4(%r12), %esi
	xor	%r8d, %r8d
	call	pci_write32
6:	pop	%rax
	cmpl	$MAX_OCC, occ_n(%rip)
	jae	9f
	mov	occ_n(%rip), %ecx
	shl	$4, %ecx
	lea	occ_table(%rip), %rdx
	mov	%rax, (%rdx, %rcx)
	lea	(%rax, %r13), %rsi
	mov	%rsi, 8(%rdx, %rcx)
	incl	occ_n(%rip)
	jmp	9f
8:	mov	$-1, %rax
9:	pop	%r14
	pop	%r13
	pop	%r12
	ret

# map_uncached: rdi = address, esi = length.  Sets PCD|PWT on the 2 MiB
# pages of the prebuilt 0..4 GiB map that hold [rdi, rdi + rsi), before
# the probe ever touches them (so no TLB entry can be stale; under shadow
# paging the write to the PD is trapped and the shadow entry dropped).
map_uncached:
	mov	%esi, %esi
	lea	(%rdi, %rsi), %rsi	# end
	and	$~0x1fffff, %rdi
	mov	$0x100000000, %rax
	cmp	%rax, %rsi
	cmova	%rax, %rsi
1:	cmp	%rsi, %rdi
	jae	2f
	mov	%rdi, %rax
	shr	$30, %rax
	lea	pdpt(%rip), %rcx
	mov	(%rcx, %rax, 8), %rcx	# -> one of the four PDs
	and	$~0xfff, %rcx
	mov	%rdi, %rax
	shr	$21, %rax
	and	$511, %eax
	orq	$PTE_PCDPWT, (%rcx, %rax, 8)
	add	$0x200000, %rdi
	jmp	1b
2:	ret

	.section .rodata
str_nomodern:	.asciz "nomodern"
str_iobar:	.asciz "iobar"
str_bar:	.asciz "bar"

	.data
	.balign 8
	.globl vio_bdf, vio_caps, vio_notify_mult, bar_assigned, bar_base
vio_caps:	.quad 0, 0, 0, 0, 0	# by cfg_type: -, common, notify, isr, device
bar_base:	.quad 0, 0, 0, 0, 0, 0
cap_bar:	.long 0, 0, 0, 0, 0
cap_off:	.long 0, 0, 0, 0, 0
cap_len:	.long 0, 0, 0, 0, 0
cap_found:	.long 0			# bit n: cfg_type n seen
vio_notify_mult: .long 0
vio_bdf:	.long -1		# the function being set up
bar_assigned:	.long 0			# 1: the probe programmed the BARs
occ_n:		.long 0

	.section .bss
	.balign 16
occ_table:
	.skip	MAX_OCC * 16
