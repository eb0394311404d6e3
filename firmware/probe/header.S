# Setup part of the bzImage: the first (SETUP_SECTS+1)*512 bytes of the file.
#
# The first 4 KiB are laid out exactly like boot_params (the "zero page"):
# everything is zero except the setup header at 0x1f1, which a loader reads
# and patches (cmd_line_ptr, type_of_loader, ...).  Because of that the
# real-mode path does not need to build a separate zero page: it only fills
# e820_entries (0x1e8) and e820_table (0x2d0) in place and hands the setup's
# own linear address to the 32-bit entry in ESI.  Real-mode code therefore
# starts at 0x1000, after the e820 table.

.include "defs.inc"

	.section .setup, "ax"
	.code16
setup_start:

	.org 0x1f1
hdr_setup_sects:	.byte SETUP_SECTS
hdr_root_flags:		.word 0
hdr_syssize:		.long _syssize		# linker: file size of pm part / 16
hdr_ram_size:		.word 0
hdr_vid_mode:		.word 0xffff
hdr_root_dev:		.word 0
hdr_boot_flag:		.word 0xaa55
	# 0x200: real-mode entry (CS = setup segment + 0x20, IP = 0).
	.byte 0xeb, rm_jump - 1f		# jmp short over the header
1:	.ascii "HdrS"				# 0x202
hdr_version:		.word 0x020f		# 0x206
hdr_realmode_swtch:	.long 0			# 0x208
hdr_start_sys_seg:	.word 0x1000		# 0x20c
hdr_kernel_version:	.word kver - setup_start - 0x200	# 0x20e
hdr_type_of_loader:	.byte 0			# 0x210
hdr_loadflags:		.byte 0x01		# 0x211 LOADED_HIGH
hdr_setup_move_size:	.word 0x8000		# 0x212
hdr_code32_start:	.long KERNEL_BASE	# 0x214
hdr_ramdisk_image:	.long 0			# 0x218
hdr_ramdisk_size:	.long 0			# 0x21c
hdr_bootsect_kludge:	.long 0			# 0x220
hdr_heap_end_ptr:	.word 0			# 0x224
hdr_ext_loader_ver:	.byte 0			# 0x226
hdr_ext_loader_type:	.byte 0			# 0x227
hdr_cmd_line_ptr:	.long 0			# 0x228
hdr_initrd_addr_max:	.long 0x7fffffff	# 0x22c
hdr_kernel_alignment:	.long 0x1000		# 0x230
hdr_relocatable:	.byte 0			# 0x234 not relocatable
hdr_min_alignment:	.byte 12		# 0x235
hdr_xloadflags:		.word 0x0001		# 0x236 XLF_KERNEL_64 (entry at +0x200)
hdr_cmdline_size:	.long 4095		# 0x238
hdr_hardware_subarch:	.long 0			# 0x23c
hdr_hardware_subarch_data: .quad 0		# 0x240
hdr_payload_offset:	.long 0			# 0x248
hdr_payload_length:	.long 0			# 0x24c
hdr_setup_data:		.quad 0			# 0x250
hdr_pref_address:	.quad KERNEL_BASE	# 0x258
hdr_init_size:		.long _init_size	# 0x260 linker: image + bss
hdr_handover_offset:	.long 0			# 0x264
hdr_kernel_info_offset:	.long kernel_info - KERNEL_BASE	# 0x268
rm_jump:						# 0x26c
	jmp rm_start

	# 0x2d0..0xcd0 is e820_table: must stay zero in the file.
	.org 0x1000
rm_start:
	cli
	cld
	mov	%cs, %ax
	sub	$0x20, %ax		# segment of the setup start = zero page
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0xe000, %sp		# below QEMU's cmdline (setup seg + 0x10000)

	# A20 via the "fast A20" port; QEMU has it on already, this is cheap.
	in	$0x92, %al
	or	$0x02, %al
	and	$0xfe, %al
	out	%al, $0x92

	# INT 15h/E820 straight into the zero page's e820_table.
	xor	%ebx, %ebx
	mov	$ZP_E820_TABLE, %di
	xor	%bp, %bp
1:	mov	$0xe820, %eax
	mov	$0x534d4150, %edx	# 'SMAP'
	mov	$20, %ecx
	int	$0x15
	jc	2f
	cmp	$0x534d4150, %eax
	jne	2f
	inc	%bp
	add	$20, %di
	test	%ebx, %ebx
	jz	2f
	cmp	$E820_MAX, %bp
	jb	1b
2:	mov	%bp, %ax
	mov	%al, ZP_E820_NR

	# Protected mode with the probe's own GDT (it lives in the pm image at
	# 1 MiB; lgdtl takes a 32-bit base even in real mode).
	xor	%esi, %esi
	mov	%ds, %si
	shl	$4, %esi		# ESI = linear address of the zero page
	lgdtl	rm_gdtr
	mov	%cr0, %eax
	or	$1, %al
	mov	%eax, %cr0
	mov	$KDATA, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	ljmpl	$KCODE32, $KERNEL_BASE	# 32-bit boot-protocol entry

	.balign 4
rm_gdtr:
	.word	GDT_LIMIT
	.long	gdt

kver:	.asciz	"godwit-probe"

	.org (SETUP_SECTS + 1) * 512
