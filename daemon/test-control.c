/* SPDX-License-Identifier: MIT */
/* Unit tests: control request parsing and the socket's access check over a real Unix socket. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "control.h"
#include "log.h"

static int parse(const char *s, struct control_request *req) {
        char err[160];
        return control_parse_request(s, strlen(s), req, err, sizeof err);
}

static void test_parse(void **state) {
        struct control_request r;

        assert_int_equal(parse("{\"cmd\":\"status\"}", &r), 0);
        assert_int_equal(r.cmd, CONTROL_STATUS);
        assert_int_equal(parse("{\"cmd\":\"devices\",\"since\":1700000000000,\"pem\":true,\"limit\":5}", &r), 0);
        assert_int_equal(r.cmd, CONTROL_DEVICES);
        assert_true(r.pem);
        assert_int_equal(r.limit, 5);
        assert_true(r.since_ms == 1700000000000LL);
        assert_int_equal(parse("{\"cmd\":\"reissue\",\"serial\":\"0123A1B2C3D4E5F6EE\"}", &r), 0);
        assert_string_equal(r.serial, "0123A1B2C3D4E5F6EE");
        assert_int_equal(r.cmd, CONTROL_REISSUE);
        assert_int_equal(parse("{\"cmd\":\"reissue\",\"serial\":\"0123a1b2c3d4e5f6ee\"}", &r), 0);
        assert_int_equal(parse("{\"cmd\":\"devices\",\"since\":5,\"after\":\"0a0B\"}", &r), 0);
        assert_string_equal(r.after, "0a0B");
        assert_int_equal(parse("{\"cmd\":\"devices\",\"after\":\"xyz\"}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"devices\",\"after\":5}", &r), -EINVAL);

        assert_int_equal(parse("", &r), -EBADMSG);
        assert_int_equal(parse("[]", &r), -EBADMSG);
        assert_int_equal(parse("{\"cmd\":", &r), -EBADMSG);
        assert_int_equal(parse("{}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":7}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"format-disk\"}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"devices\",\"since\":-1}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"devices\",\"pem\":1}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"reissue\"}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"reissue\",\"serial\":\"01g3\"}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"reissue\",\"serial\":\"abc\"}", &r), -EINVAL);
        assert_int_equal(parse("{\"cmd\":\"reissue\",\"serial\":\"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF00\"}", &r), -EINVAL);
}

struct ctx {
        uv_loop_t loop;
        struct control *ctl;
        unsigned handled;
        char path[108];
};

static void handler(struct control_client *c, const struct control_peer *peer,
                    const struct control_request *req, void *userdata) {
        struct ctx *x = userdata;
        cJSON *o = cJSON_CreateObject();

        x->handled++;
        cJSON_AddBoolToObject(o, "ok", true);
        cJSON_AddNumberToObject(o, "uid", peer->uid);
        control_reply(c, o);
}

static void test_socket_access(void **state) {
        struct ctx x = {};
        char dir[] = "/tmp/provd-test-ctl-XXXXXX";
        struct stat st;

        assert_non_null(mkdtemp(dir));
        chmod(dir, 0755);
        snprintf(x.path, sizeof x.path, "%s/s", dir);
        assert_int_equal(uv_loop_init(&x.loop), 0);
        assert_int_equal(control_new(&x.ctl, &x.loop, x.path, (gid_t)-1, handler, &x), 0);
        assert_int_equal(stat(x.path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0660);

        /* Clients run in children; the loop runs here until each one is done. */
        struct { uid_t uid; mode_t mode; const char *line; const char *expect; } cases[] = {
                { 0, 0660, "{\"cmd\":\"status\"}\n", "\"ok\":true" },
                { 0, 0660, "garbage\n", "not a JSON object" },
                { 0, 0660, "{\"cmd\":\"nope\"}\n", "unknown command" },
                { 65534, 0660, "{\"cmd\":\"status\"}\n", "CONNECT-FAILED" },       /* file mode */
                /* Even if someone loosens the mode, SO_PEERCRED keeps nobody out. */
                { 65534, 0666, "{\"cmd\":\"status\"}\n", "permission denied" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                int p[2];
                pid_t pid;
                char buf[4096] = "";
                ssize_t len = 0;

                assert_int_equal(chmod(x.path, cases[i].mode), 0);
                assert_int_equal(pipe(p), 0);
                pid = fork();
                if (pid == 0) {
                        struct sockaddr_un sa = { .sun_family = AF_UNIX };
                        char b[4096];
                        ssize_t n, l = 0;
                        int fd;

                        close(p[0]);
                        if (cases[i].uid && (setgroups(0, NULL) < 0 || setgid(cases[i].uid) < 0 || setuid(cases[i].uid) < 0))
                                _exit(3);
                        fd = socket(AF_UNIX, SOCK_STREAM, 0);
                        strcpy(sa.sun_path, x.path);
                        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                                (void)!write(p[1], "CONNECT-FAILED", 14);
                                _exit(0);
                        }
                        (void)!write(fd, cases[i].line, strlen(cases[i].line));
                        while ((n = read(fd, b + l, sizeof b - 1 - l)) > 0) {
                                l += n;
                                if (memchr(b, '\n', l))
                                        break;
                        }
                        (void)!write(p[1], b, l);
                        _exit(0);
                }
                close(p[1]);
                for (;;) {
                        int status;
                        uv_run(&x.loop, UV_RUN_NOWAIT);
                        if (waitpid(pid, &status, WNOHANG) == pid)
                                break;
                        usleep(1000);
                }
                len = read(p[0], buf, sizeof buf - 1);
                close(p[0]);
                buf[len > 0 ? len : 0] = 0;
                if (!strstr(buf, cases[i].expect))
                        fail_msg("case %zu: reply '%s' lacks '%s'", i, buf, cases[i].expect);
        }
        assert_int_equal(x.handled, 1);
        control_free(x.ctl);
        uv_run(&x.loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&x.loop), 0);
        assert_int_equal(access(x.path, F_OK), -1);
        rmdir(dir);
}

struct held {
        uv_loop_t loop;
        struct control *ctl;
        struct control_client *client;  /* the request being served, not answered yet */
        unsigned handled;
};

static void holding_handler(struct control_client *c, const struct control_peer *peer,
                            const struct control_request *req, void *userdata) {
        struct held *h = userdata;

        h->handled++;
        h->client = control_client_ref(c);
}

static void answer(struct held *h) {
        struct control_client *c = h->client;
        cJSON *o = cJSON_CreateObject();

        h->client = NULL;
        cJSON_AddBoolToObject(o, "ok", true);
        control_reply(c, o);
        control_client_unref(c);
}

/* Pipelined requests are served one at a time: the next only after the reply to the one before. */
static void test_one_request_at_a_time(void **state) {
        struct held h = {};
        char dir[] = "/tmp/provd-test-ctl-XXXXXX", path[108], buf[512];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *three = "{\"cmd\":\"stats\"}\n{\"cmd\":\"stats\"}\n{\"cmd\":\"stats\"}\n";
        size_t got = 0;
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/s", dir);
        assert_int_equal(uv_loop_init(&h.loop), 0);
        assert_int_equal(control_new(&h.ctl, &h.loop, path, (gid_t)-1, holding_handler, &h), 0);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(write(fd, three, strlen(three)), (ssize_t)strlen(three));

        /* The three lines arrive in one read; only the first is handed over. */
        for (int i = 0; i < 5000 && h.handled == 0; i++) {
                uv_run(&h.loop, UV_RUN_NOWAIT);
                usleep(1000);
        }
        assert_int_equal(h.handled, 1);
        for (int i = 0; i < 20; i++)
                uv_run(&h.loop, UV_RUN_NOWAIT);
        assert_int_equal(h.handled, 1);

        answer(&h);                     /* the reply lets the second one through at once */
        assert_int_equal(h.handled, 2);
        answer(&h);
        assert_int_equal(h.handled, 3);
        answer(&h);
        assert_null(h.client);

        /* Three replies, in order, one line each. */
        for (int i = 0; i < 5000; i++) {
                uv_run(&h.loop, UV_RUN_NOWAIT);
                ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
                if (n > 0)
                        got += (size_t)n;
                buf[got] = 0;
                if (strstr(buf, "}\n{\"ok\":true}\n{\"ok\":true}\n"))
                        break;
                usleep(1000);
        }
        assert_string_equal(buf, "{\"ok\":true}\n{\"ok\":true}\n{\"ok\":true}\n");

        /* And reading went on: a fourth request is served. */
        assert_int_equal(write(fd, "{\"cmd\":\"stats\"}\n", 17), 17);
        for (int i = 0; i < 5000 && h.handled == 3; i++) {
                uv_run(&h.loop, UV_RUN_NOWAIT);
                usleep(1000);
        }
        assert_int_equal(h.handled, 4);
        answer(&h);

        close(fd);
        control_free(h.ctl);
        uv_run(&h.loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&h.loop), 0);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_socket_access),
                cmocka_unit_test(test_one_request_at_a_time),
        };
        log_set_max_level(LOG_ERR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
