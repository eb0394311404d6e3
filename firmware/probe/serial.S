# 8250 UART output on COM1, shared by ring 0 (APs, fault handler) and
# ring 3 (BSP; IOPL=3 makes the port I/O legal there).
#
# Calling convention for every helper here and in main.S/ws.S: arguments
# in rax/rsi/rdi, rax/rcx/rdx/rsi/rdi/r8-r11 clobbered, rbx/rbp/r12-r15 kept.

.include "defs.inc"

	.text

# 115200 8N1, no interrupts, no FIFO.
	.globl serial_init
serial_init:
	mov	$COM1 + 1, %dx
	xor	%al, %al
	out	%al, %dx		# IER = 0
	mov	$COM1 + 3, %dx
	mov	$0x80, %al
	out	%al, %dx		# LCR: DLAB
	mov	$COM1, %dx
	mov	$1, %al
	out	%al, %dx		# DLL = 1 (115200)
	inc	%dx
	xor	%al, %al
	out	%al, %dx		# DLM = 0
	mov	$COM1 + 3, %dx
	mov	$0x03, %al
	out	%al, %dx		# LCR: 8N1
	mov	$COM1 + 4, %dx
	mov	$0x03, %al
	out	%al, %dx		# MCR: DTR | RTS
	lea	str_crlf(%rip), %rsi	# end whatever the BIOS left on the line
	jmp	puts

# putc: byte in al.  Waits for LSR.THRE (bit 5) before each byte.
	.globl putc
putc:
	mov	%eax, %ecx
	mov	$COM1 + 5, %dx
1:	in	%dx, %al
	test	$0x20, %al
	jz	1b
	mov	%ecx, %eax
	mov	$COM1, %dx
	out	%al, %dx
	ret

# puts: NUL-terminated string at rsi.
	.globl puts
puts:
1:	movzbl	(%rsi), %eax
	test	%al, %al
	jz	2f
	call	putc
	inc	%rsi
	jmp	1b
2:	ret

# putdec: unsigned rax in decimal.
	.globl putdec
putdec:
	sub	$32, %rsp
	lea	31(%rsp), %rsi
	movb	$0, (%rsi)
	mov	$10, %ecx
1:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%rsi
	mov	%dl, (%rsi)
	test	%rax, %rax
	jnz	1b
	call	puts
	add	$32, %rsp
	ret

# puthex: rax in lower-case hex, no leading zeros, no "0x".
	.globl puthex
puthex:
	sub	$32, %rsp
	lea	31(%rsp), %rsi
	movb	$0, (%rsi)
1:	mov	%eax, %edx
	and	$15, %edx
	movzbl	hexdigits(%rdx), %edx
	dec	%rsi
	mov	%dl, (%rsi)
	shr	$4, %rax
	jnz	1b
	call	puts
	add	$32, %rsp
	ret

# Whole lines are printed under out_lock so the BSP (ring 3) and the APs
# (ring 0) never interleave.
	.globl out_lock
out_lock:
1:	lock btsl $0, out_lock_word(%rip)
	jnc	3f
2:	pause
	testl	$1, out_lock_word(%rip)
	jnz	2b
	jmp	1b
3:	ret

	.globl out_unlock
out_unlock:
	movl	$0, out_lock_word(%rip)
	ret

	.section .rodata
hexdigits:	.ascii "0123456789abcdef"
	.globl str_crlf
str_crlf:	.asciz "\r\n"

	.data
	.balign 4
out_lock_word:	.long 0
