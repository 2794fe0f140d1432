/* SPDX-License-Identifier: MIT */
/* Cortex-M3 start-up for the QEMU reference port: vector table, .data copy, .bss zeroing, then main(). */

#include <stdint.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void reset_handler(void);

static void fault_handler(void) {
        /* A real port records the fault and resets; here the test sees a board that stopped answering. */
        for (;;)
                ;
}

void reset_handler(void) {
        memcpy(&_sdata, &_sidata, (size_t)((char *)&_edata - (char *)&_sdata));
        memset(&_sbss, 0, (size_t)((char *)&_ebss - (char *)&_sbss));
        main();
        for (;;)
                ;
}

/* Initial stack pointer, reset, NMI, HardFault, MemManage, BusFault, UsageFault. */
__attribute__((section(".vectors"), used)) static void (*const vectors[7])(void) = {
        (void (*)(void))(uintptr_t)&_estack,
        reset_handler,
        fault_handler,
        fault_handler,
        fault_handler,
        fault_handler,
        fault_handler,
};
