/* Entry point of the bare-metal console scripts: set up a stack, clear .bss, call main().
 * QEMU's -kernel enters here at EL2 (virtualization=on) or EL1, MMU and caches off. */
    .section .text.start, "ax"
    .global _start
_start:
    ldr     x0, =__stack_top
    mov     sp, x0
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  bl      main
3:  wfe
    b       3b

/* PSCI SYSTEM_OFF: through SMC at EL2 (QEMU virt's conduit with virtualization=on), else HVC. */
    .global psci_system_off
psci_system_off:
    ldr     x0, =0x84000008
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #2
    b.lo    4f
    smc     #0
    b       5f
4:  hvc     #0
5:  wfe
    b       5b
