/* SPDX-License-Identifier: MIT */
/* Opening and configuring a serial port (USB CDC-ACM, USB-serial or pty) through one code path. */

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

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
        if (tcgetattr(fd, &t) < 0)
                return -errno;
        /* Nobody else (ModemManager, a second provd) may open it while we own it. */
        if (ioctl(fd, TIOCEXCL) < 0)
                return -errno;
        cfmakeraw(&t);
        t.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS | CSIZE);
        t.c_cflag |= CS8 | CLOCAL | CREAD;
        t.c_iflag &= ~(IXON | IXOFF | IXANY);
        /*
         * VMIN=1, VTIME=0: a non-blocking read() with nothing to read fails
         * with EAGAIN, so read() == 0 means exactly one thing, a hangup (the
         * USB device went away, the pty master closed). With VMIN=0 the
         * kernel returns 0 for "no data" too, and a buffer-sized read followed
         * by an empty one would look like an unplugged board.
         */
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        if (cfsetispeed(&t, speed) < 0 || cfsetospeed(&t, speed) < 0)
                return -errno;
        if (tcsetattr(fd, TCSANOW, &t) < 0)
                return -errno;
        (void)tcflush(fd, TCIOFLUSH);

        if (ret_rdev)
                *ret_rdev = st.st_rdev;
        return TAKE_FD(fd);
}
