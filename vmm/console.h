/* The guest's serial console on this process's terminal: stdin feeds the
 * UART (raw mode when it is a terminal; Ctrl-A x quits), the UART's output
 * goes to stdout. */
#ifndef MINIVMM_CONSOLE_H
#define MINIVMM_CONSOLE_H

#include <stdbool.h>
#include <termios.h>

#include "vmm/evloop.h"

struct vm;

struct console {
	struct vm *vm;
	struct evloop *loop;
	struct ev_handler in;
	bool registered; /* stdin is in the loop */
	bool eof;
	bool raw;
	bool escape; /* Ctrl-A seen */
	struct termios saved;
};

int console_open(struct console *c, struct vm *vm, struct evloop *loop);
/* Called from the main loop when the UART may have room again. */
void console_poll(struct console *c);
void console_close(struct console *c);

#endif
