/* Constants shared by boot.S, the linker script users and the C runtime. */
#ifndef GUESTS_LAYOUT_H
#define GUESTS_LAYOUT_H

#define SEL_CODE32      0x08
#define SEL_DATA        0x10
#define SEL_CODE64      0x18

#define MAX_CPUS        16
#define AP_STACK_SHIFT  13              /* 8 KiB per AP stack */
#define TRAMP_BASE      0x8000          /* real-mode AP trampoline */

#define VMAP_BASE       0x8000000000UL  /* 512 GiB: PML4[1], RAM windows */
#define VMAP_MAX_GB     64
#define MMIO_VBASE      0x10000000000UL /* 1 TiB: PML4[2], device MMIO windows */

#endif
