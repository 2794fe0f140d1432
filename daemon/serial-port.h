/* SPDX-License-Identifier: MIT */
/* Opening and configuring a serial port (USB CDC-ACM, USB-serial or pty) through one code path. */
#ifndef PROVD_SERIAL_PORT_H
#define PROVD_SERIAL_PORT_H

#include <stddef.h>
#include <sys/types.h>

/**
 * Opens @path non-blocking, close-on-exec, without becoming its controlling
 * terminal, takes exclusive use (TIOCEXCL), and sets raw 8N1 at @baud with
 * no flow control; pending input and output are discarded. Ptys and real
 * ttys take exactly this path. Returns the fd, or -errno (-ENOTTY when @path
 * is not a terminal, -EINVAL for an unsupported baud rate).
 * @ret_rdev receives the device number, so one device reached through two
 * paths (a symlink) is opened once.
 */
int serial_port_open(const char *path, unsigned baud, dev_t *ret_rdev);

/** Discards output not yet sent (a board that was unplugged will never take it) and closes @fd. */
void serial_port_close(int fd);

/** Maps a baud rate to its termios speed constant, or returns 0 if unsupported. */
unsigned serial_port_speed(unsigned baud);

#endif
