/* SPDX-License-Identifier: MIT */
/* Opening and configuring a serial port (USB CDC-ACM, USB-serial or pty) through one code path. */

/*
 * The kernel's termios, not glibc's: glibc 2.36's tcsetattr() brackets the
 * TCSETS with two TCGETS of its own, which made four ioctls of what takes
 * two. This file therefore includes <asm/termbits.h> (struct termios as the
 * kernel takes it, the flag and speed constants) and never <termios.h>, whose
 * struct of the same name has another layout.
 */
#include <asm/termbits.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "serial-port.h"
#include "util.h"

unsigned serial_port_speed(unsigned baud) {
        static const struct { unsigned baud, speed; } table[] = {
                { 1200, B1200 }, { 2400, B2400 }, { 4800, B4800 }, { 9600, B9600 },
                { 19200, B19200 }, { 38400, B38400 }, { 57600, B57600 },
                { 115200, B115200 }, { 230400, B230400 }, { 460800, B460800 },
                { 500000, B500000 }, { 576000, B576000 }, { 921600, B921600 },
                { 1000000, B1000000 }, { 1152000, B1152000 }, { 1500000, B1500000 },
                { 2000000, B2000000 }, { 2500000, B2500000 }, { 3000000, B3000000 },
                { 3500000, B3500000 }, { 4000000, B4000000 },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].baud == baud)
                        return table[i].speed;
        return 0;
}

/* What cfmakeraw() does, plus 8N1, no flow control, modem lines ignored, @speed both ways. */
static void make_raw(struct termios *t, unsigned speed) {
        t->c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF | IXANY);
        t->c_oflag &= ~(tcflag_t)OPOST;
        t->c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        t->c_cflag &= ~(tcflag_t)(CSIZE | CSTOPB | PARENB | CRTSCTS | CBAUD | (CBAUD << IBSHIFT));
        /* Input speed 0 in the IBAUD bits means "same as output". */
        t->c_cflag |= CS8 | CLOCAL | CREAD | speed;
        /*
         * VMIN=1, VTIME=0: a non-blocking read() with nothing to read fails
         * with EAGAIN, so read() == 0 means exactly one thing, a hangup (the
         * USB device went away, the pty master closed). With VMIN=0 the
         * kernel returns 0 for "no data" too, and a buffer-sized read followed
         * by an empty one would look like an unplugged board.
         */
        t->c_cc[VMIN] = 1;
        t->c_cc[VTIME] = 0;
}

int serial_port_open(const char *path, unsigned baud, dev_t *ret_rdev) {
        _cleanup_close_ int fd = -EBADF;
        struct termios t;
        struct stat st;
        unsigned speed = serial_port_speed(baud);

        if (!speed)
                return -EINVAL;
        fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISCHR(st.st_mode))
                return -ENOTTY;
        /* Fails with ENOTTY for a character device that is not a terminal. */
        if (ioctl(fd, TCGETS, &t) < 0)
                return -errno;
        /* Nobody else (ModemManager, a second provd) may open it while we own it. */
        if (ioctl(fd, TIOCEXCL) < 0)
                return -errno;
        make_raw(&t, speed);
        if (ioctl(fd, TCSETS, &t) < 0)
                return -errno;
        (void)ioctl(fd, TCFLSH, TCIOFLUSH);

        if (ret_rdev)
                *ret_rdev = st.st_rdev;
        return TAKE_FD(fd);
}

void serial_port_close(int fd) {
        /* Unsent output would make close() wait for the line to drain it (up to closing_wait). */
        (void)ioctl(fd, TCFLSH, TCOFLUSH);
        (void)close(fd);
}
