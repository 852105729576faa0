/*
 * minivmm test guests: Multiboot v1 header, 32-bit entry, switch to long
 * mode, AP trampoline (copied below 1 MiB at run time) and interrupt stubs.
 *
 * Everything here must run inside KVM's instruction emulator: no exceptions,
 * general registers only.
 */
#include "layout.h"

#define MB_MAGIC  0x1BADB002
#define MB_FLAGS  0x00000003          /* page-align modules, want memory info */

/* Flat data segments for long mode; fs/gs are unused (null). */
.macro  load_data_segments
        movw    $SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
.endm

        .section .multiboot, "a"
        .balign 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

/* ------------------------------------------------------------------ */
        .section .text.boot, "ax"
        .code32
        .globl  _start
_start:
        cli
        cld
        movl    %eax, mb_magic
        movl    %ebx, mb_info
        movl    $boot_stack_top, %esp
        lgdt    gdt_ptr
        movw    $SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        ljmp    $SEL_CODE32, $1f
1:
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x20, %eax             /* PAE */
        movl    %eax, %cr4
        movl    $0xC0000080, %ecx       /* EFER */
        rdmsr
        orl     $0x100, %eax            /* LME */
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax       /* PG | PE */
        movl    %eax, %cr0
        ljmp    $SEL_CODE64, $long_entry

        .code64
long_entry:
        load_data_segments
        movq    $boot_stack_top, %rsp
        /* zero .bss (the big no-init arrays live outside it) */
        movq    $__bss_start, %rdi
        movq    $__bss_end, %rcx
        subq    %rdi, %rcx
        shrq    $3, %rcx
        xorl    %eax, %eax
        rep stosq
        movl    mb_magic(%rip), %edi
        movl    mb_info(%rip), %esi
        call    rt_entry
2:      cli
        hlt
        jmp     2b

/* Application processors arrive here from the trampoline, in long mode. */
        .globl  ap_long_entry
ap_long_entry:
        load_data_segments
        movl    $1, %eax
        lock xaddl %eax, ap_stack_next(%rip)
        cmpl    $MAX_CPUS, %eax
        jae     3f
        movl    %eax, %edi              /* stack slot 1..MAX_CPUS-1 */
        movq    %rdi, %rsp
        shlq    $AP_STACK_SHIFT, %rsp
        addq    $ap_stacks, %rsp        /* top of slot (id-1) */
        call    ap_entry
3:      cli
        hlt
        jmp     3b

/* ------------------------------------------------------------------ */
/* Interrupt stubs. Kept tiny: every instruction costs ~0.6 us here.   */

        .globl  isr_timer
isr_timer:
        pushq   %rax
        incq    rt_ticks(%rip)
        movb    $0x20, %al
        outb    %al, $0x20              /* EOI master PIC */
        cmpl    $0, rt_ap_wake(%rip)
        jne     1f
        popq    %rax
        iretq
1:      decl    rt_ap_wake_cnt(%rip)    /* every rt_ap_wake ticks: */
        jnz     2f
        movl    rt_ap_wake(%rip), %eax
        movl    %eax, rt_ap_wake_cnt(%rip)
        movq    rt_lapic_base(%rip), %rax
        movl    $0x000C00F0, 0x300(%rax) /* fixed IPI 0xF0, all excluding self */
2:      popq    %rax
        iretq

        .globl  isr_wake
isr_wake:
        pushq   %rax
        movq    rt_lapic_base(%rip), %rax
        movl    $0, 0xB0(%rax)          /* LAPIC EOI */
        popq    %rax
        iretq

        .globl  isr_spurious
isr_spurious:                           /* LAPIC 0xFF, PIC IRQ7: no EOI */
        iretq

        .globl  isr_pic_master
isr_pic_master:
        pushq   %rax
        movb    $0x20, %al
        outb    %al, $0x20
        popq    %rax
        iretq

        .globl  isr_pic_slave
isr_pic_slave:
        pushq   %rax
        movb    $0x20, %al
        outb    %al, $0xA0
        outb    %al, $0x20
        popq    %rax
        iretq

        .globl  isr_pic_slave_spurious
isr_pic_slave_spurious:                 /* IRQ15 spurious: EOI master only */
        jmp     isr_pic_master

/*
 * PIC IRQ stubs for handlers attached with rt_irq_attach(): push the IRQ
 * number, save what the C ABI lets a callee clobber, call rt_irq_dispatch
 * (handler and EOI). The CPU aligns RSP to 16 before its 40-byte frame;
 * the IRQ number and nine registers then leave it 8 off, hence the 8-byte
 * pad. cld: the interrupted code may be inside memmove's std window.
 */
        .globl  isr_irq_table
        .balign 8
isr_irq_table:
        .set    irq, 0
        .rept   16
        .balign 8
        pushq   $irq
        jmp     irq_common
        .set    irq, irq + 1
        .endr
irq_common:
        pushq   %rax
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        movq    72(%rsp), %rdi
        subq    $8, %rsp
        cld
        call    rt_irq_dispatch
        addq    $8, %rsp
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rax
        addq    $8, %rsp
        iretq

/* exception stubs: push the vector, never return */
        .globl  isr_exc_table
        .balign 8
isr_exc_table:
        .set    vec, 0
        .rept   32
        .balign 8
        pushq   $vec
        jmp     exc_common
        .set    vec, vec + 1
        .endr
exc_common:
        popq    %rdi
        movq    (%rsp), %rsi            /* rip, or error code */
        andq    $-16, %rsp
        call    rt_exception
4:      cli
        hlt
        jmp     4b

/* ------------------------------------------------------------------ */
        .section .data
        .balign 8
        .globl  mb_magic, mb_info, ap_stack_next
mb_magic:       .long 0
mb_info:        .long 0
ap_stack_next:  .long 1
        .globl  rt_ap_wake_cnt
rt_ap_wake_cnt: .long 1

        .balign 16
        .globl  gdt, gdt_end
gdt:
        .quad   0
        .quad   0x00CF9A000000FFFF      /* 0x08: code32 */
        .quad   0x00CF92000000FFFF      /* 0x10: data */
        .quad   0x00AF9A000000FFFF      /* 0x18: code64 */
gdt_end:
        .balign 8
        .word   0
gdt_ptr:
        .word   gdt_end - gdt - 1
        .long   gdt

/* Identity map of the first 4 GiB with 2 MiB pages, built at link time so
 * the emulator does not have to execute a loop for it. */
        .section .data.pagetables, "aw"
        .balign 4096
        .globl  pml4, pdpt_low
pml4:
        .quad   pdpt_low + 3
        .fill   511, 8, 0
pdpt_low:
        .quad   pd_low + 0x0000 + 3
        .quad   pd_low + 0x1000 + 3
        .quad   pd_low + 0x2000 + 3
        .quad   pd_low + 0x3000 + 3
        .fill   508, 8, 0
pd_low:
        .set    i, 0
        .rept   2048
        .quad   (i << 21) | 0x83        /* P | RW | PS */
        .set    i, i + 1
        .endr

/* ------------------------------------------------------------------ */
/* Real-mode AP trampoline; copied to TRAMP_BASE by smp_start().       */
        .section .rodata.tramp, "a"
        .globl  tramp_start, tramp_end
        .code16
tramp_start:
        cli
        cld
        xorw    %ax, %ax
        movw    %ax, %ds
        lgdtl   TRAMP_BASE + (tramp_gdtr - tramp_start)
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $SEL_CODE32, $(TRAMP_BASE + (tramp32 - tramp_start))
        .code32
tramp32:
        movw    $SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x20, %eax
        movl    %eax, %cr4
        movl    $0xC0000080, %ecx
        rdmsr
        orl     $0x100, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax
        movl    %eax, %cr0
        ljmp    $SEL_CODE64, $ap_long_entry
        .balign 8
tramp_gdtr:
        .word   gdt_end - gdt - 1
        .long   gdt
tramp_end:
        .code64

        .section .note.GNU-stack, "", @progbits

        .section .noinit.bootstack, "aw", @nobits
        .balign 4096
boot_stack:
        .skip   16384
        .globl  boot_stack_top
boot_stack_top:
