# Prebuilt identity-map page tables (part of the image, so no ring-0 code
# has to fill them).  Every entry is user + writable: the probe does all its
# work in ring 3, including finishing the map above 4 GiB (main.S writes
# PDPT entries 4.. and, without 1G pages, the run-time PDs in high_pds).
#
#   pml4[0]      -> pdpt
#   pdpt[0..3]   -> pd0..pd3: 2048 x 2 MiB pages = 0..4 GiB (MMIO included)
#   pdpt[4..511] not present until ring 3 maps the E820 RAM there

.include "defs.inc"

	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4, pdpt
pml4:
	.quad	pdpt + PTE_PWU
	.fill	511, 8, 0

pdpt:
	.quad	pd0 + PTE_PWU
	.quad	pd0 + 0x1000 + PTE_PWU
	.quad	pd0 + 0x2000 + PTE_PWU
	.quad	pd0 + 0x3000 + PTE_PWU
	.fill	508, 8, 0

pd0:
	.set i, 0
	.rept 2048
	.if (i << 21) == LAPIC_BASE
	.quad	(i << 21) | PTE_LARGE | PTE_PCDPWT	# 0xfee00000: local APIC
	.else
	.quad	(i << 21) | PTE_LARGE
	.endif
	.set i, i + 1
	.endr

	.section .bss
	.balign 4096
	.globl high_pds
high_pds:				# PDs for 4..64 GiB when there are no 1G pages
	.skip	HIGH_PD_GIB * 4096
