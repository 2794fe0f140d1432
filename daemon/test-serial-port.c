/* SPDX-License-Identifier: MIT */
/* Unit tests: serial_port_open() on a real pseudo-terminal, read back through glibc's termios. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <cmocka.h>

#include "serial-port.h"

struct pty {
        int master, slave;
        char name[64];
};

static void pty_open(struct pty *p) {
        struct termios cooked;

        assert_int_equal(openpty(&p->master, &p->slave, p->name, NULL, NULL), 0);
        /* Start from a cooked terminal, so every flag provd must clear is set. */
        assert_int_equal(tcgetattr(p->slave, &cooked), 0);
        cooked.c_iflag |= ICRNL | IXON | IXOFF | INLCR | ISTRIP;
        cooked.c_oflag |= OPOST | ONLCR;
        cooked.c_lflag |= ICANON | ECHO | ISIG | IEXTEN;
        cooked.c_cflag |= PARENB | CSTOPB | CRTSCTS;
        cfsetspeed(&cooked, B9600);
        assert_int_equal(tcsetattr(p->slave, TCSANOW, &cooked), 0);
}

static void pty_close(struct pty *p) {
        close(p->master);
        close(p->slave);
}

/* Reads until @want bytes arrived or a second passed without them (the cap only turns a hang into a failure). */
static size_t read_up_to(int fd, uint8_t *buf, size_t cap, size_t want) {
        size_t got = 0;

        for (int tries = 0; got < want && tries < 1000; tries++) {
                ssize_t n = read(fd, buf + got, cap - got);
                if (n > 0)
                        got += (size_t)n;
                else
                        usleep(1000);
        }
        return got;
}

static void test_raw_8n1(void **state) {
        struct pty p;
        struct termios t;
        struct stat st;
        dev_t rdev = 0;
        int fd, excl = 0;

        pty_open(&p);
        fd = serial_port_open(p.name, 115200, &rdev);
        assert_true(fd >= 0);
        assert_int_equal(stat(p.name, &st), 0);
        assert_int_equal(rdev, st.st_rdev);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        assert_int_equal(tcgetattr(fd, &t), 0);
        assert_int_equal(cfgetospeed(&t), B115200);
        assert_int_equal(cfgetispeed(&t), B115200);
        assert_int_equal(t.c_cflag & CSIZE, CS8);
        assert_int_equal(t.c_cflag & (CLOCAL | CREAD), CLOCAL | CREAD);
        assert_int_equal(t.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0);
        assert_int_equal(t.c_iflag & (ICRNL | IXON | IXOFF | INLCR | ISTRIP | IGNCR | BRKINT | PARMRK), 0);
        assert_int_equal(t.c_oflag & OPOST, 0);
        assert_int_equal(t.c_lflag & (ICANON | ECHO | ECHONL | ISIG | IEXTEN), 0);
        assert_int_equal(t.c_cc[VMIN], 1);
        assert_int_equal(t.c_cc[VTIME], 0);
        assert_int_equal(ioctl(fd, TIOCGEXCL, &excl), 0);
        assert_int_equal(excl, 1);

        /* Bytes pass untouched both ways: no CR/LF mapping, no flow control, no echo. */
        uint8_t out[256], in[512];
        for (int i = 0; i < 256; i++)
                out[i] = (uint8_t)i;
        assert_int_equal(write(p.master, out, sizeof out), sizeof out);
        assert_int_equal(read_up_to(fd, in, sizeof in, sizeof out), sizeof out);
        assert_memory_equal(in, out, sizeof out);
        assert_int_equal(write(fd, out, sizeof out), sizeof out);
        assert_int_equal(read_up_to(p.master, in, sizeof in, sizeof out), sizeof out);
        assert_memory_equal(in, out, sizeof out);
        /* Nothing echoed back to the board. */
        assert_int_equal(read(fd, in, sizeof in), -1);
        assert_int_equal(errno, EAGAIN);

        close(fd);
        pty_close(&p);
}

static void test_pending_input_discarded(void **state) {
        struct pty p;
        struct pollfd pfd;
        uint8_t buf[64];
        int fd, queued = 0;

        pty_open(&p);
        /* Raw first, so the stale bytes are readable input, not an unfinished line. */
        fd = serial_port_open(p.name, 9600, NULL);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(write(p.master, "stale bytes", 11), 11);
        /* Wait until the pty has pushed them to the slave side, so there is input to discard
         * (the 5 s cap only turns a hang into a failure). */
        pfd = (struct pollfd){ .fd = p.slave, .events = POLLIN };
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        assert_true(pfd.revents & POLLIN);
        assert_int_equal(ioctl(p.slave, FIONREAD, &queued), 0);
        assert_int_equal(queued, 11);
        fd = serial_port_open(p.name, 9600, NULL);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof buf), -1);
        assert_int_equal(errno, EAGAIN);
        close(fd);
        pty_close(&p);
}

static void test_refused(void **state) {
        char path[] = "/tmp/test-serial-port-XXXXXX";
        struct pty p;
        int fd;

        pty_open(&p);
        assert_int_equal(serial_port_open(p.name, 12345, NULL), -EINVAL);
        assert_int_equal(serial_port_open(p.name, 0, NULL), -EINVAL);
        pty_close(&p);

        assert_int_equal(serial_port_open("/nonexistent/ttyACM0", 115200, NULL), -ENOENT);
        /* A character device that is not a terminal. */
        assert_int_equal(serial_port_open("/dev/null", 115200, NULL), -ENOTTY);
        /* A regular file. */
        fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(serial_port_open(path, 115200, NULL), -ENOTTY);
        unlink(path);
}

static void test_every_listed_speed(void **state) {
        static const struct { unsigned baud; speed_t speed; } bauds[] = {
                { 1200, B1200 }, { 9600, B9600 }, { 57600, B57600 }, { 115200, B115200 }, { 230400, B230400 },
                { 921600, B921600 }, { 1000000, B1000000 }, { 4000000, B4000000 },
        };
        struct termios t;
        struct pty p;

        pty_open(&p);
        for (size_t i = 0; i < sizeof bauds / sizeof bauds[0]; i++) {
                int fd = serial_port_open(p.name, bauds[i].baud, NULL);
                assert_true(fd >= 0);
                assert_int_equal(tcgetattr(fd, &t), 0);
                assert_int_equal(cfgetospeed(&t), bauds[i].speed);
                assert_int_equal(cfgetispeed(&t), bauds[i].speed);
                close(fd);
        }
        pty_close(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_raw_8n1),
                cmocka_unit_test(test_pending_input_discarded),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_every_listed_speed),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
