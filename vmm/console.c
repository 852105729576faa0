#include "vmm/console.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "devices/uart.h"
#include "vmm/core/status.h"
#include "vmm/core/vm.h"

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A */

static void console_input(struct ev_handler *h, uint32_t events)
{
	struct console *c = h->opaque;
	struct vm *vm = c->vm;
	uint8_t buf[UART_FIFO_LEN], out[UART_FIFO_LEN];
	size_t space, n_out = 0;
	ssize_t n;

	(void)events;
	device_list_lock(&vm->devices);
	space = uart_rx_space(vm->com1);
	device_list_unlock(&vm->devices);
	if (space == 0) {
		/* The guest is not reading: stop polling stdin until it does. */
		evloop_del(c->loop, &c->in);
		c->registered = false;
		return;
	}
	n = read(c->in.fd, buf, space);
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		evloop_del(c->loop, &c->in);
		c->registered = false;
		c->eof = true;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (c->raw && c->escape) {
			c->escape = false;
			if (buf[i] == 'x') {
				vm_request_stop(vm, VM_EXIT_QUIT, VMM_STATUS_OK, "quit from the console (Ctrl-A x)");
				return;
			}
			if (buf[i] != CONSOLE_ESCAPE)
				continue;
		} else if (c->raw && buf[i] == CONSOLE_ESCAPE) {
			c->escape = true;
			continue;
		}
		out[n_out++] = buf[i];
	}
	device_list_lock(&vm->devices);
	uart_receive(vm->com1, out, n_out);
	device_list_unlock(&vm->devices);
}

int console_open(struct console *c, struct vm *vm, struct evloop *loop)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->loop = loop;
	c->in = (struct ev_handler){ .fd = STDIN_FILENO, .fn = console_input, .opaque = c };
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved) == 0) {
		struct termios t = c->saved;

		cfmakeraw(&t);
		t.c_oflag |= OPOST | ONLCR; /* guest lines still end properly */
		if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
			c->raw = true;
	}
	ret = evloop_add(loop, &c->in, EPOLLIN);
	if (ret == -EPERM) { /* /dev/null or a regular file: no input */
		c->eof = true;
		return 0;
	}
	if (ret)
		return ret;
	c->registered = true;
	return 0;
}

void console_poll(struct console *c)
{
	size_t space;

	if (c->registered || c->eof)
		return;
	device_list_lock(&c->vm->devices);
	space = uart_rx_space(c->vm->com1);
	device_list_unlock(&c->vm->devices);
	if (space > 0 && evloop_add(c->loop, &c->in, EPOLLIN) == 0)
		c->registered = true;
}

void console_close(struct console *c)
{
	if (c->registered)
		evloop_del(c->loop, &c->in);
	c->registered = false;
	if (c->raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
	c->raw = false;
}
