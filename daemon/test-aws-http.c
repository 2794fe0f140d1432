/* SPDX-License-Identifier: MIT */
/* Unit tests: the libcurl-on-libuv client against a scripted HTTP server on 127.0.0.1 (limits, timeouts, headers, reuse, proxy). */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aws-http.h"

/* ---- the server: one thread, connections one after another, keep-alive ---- */

struct server {
        int fd;
        int port;
        pthread_t thread;
        pthread_mutex_t lock;
        unsigned connections;
        unsigned requests;
        char last_head[8192];
        char last_body[1024];
        volatile bool stop;
};

static struct server srv, proxy;

static void send_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
                if (w <= 0)
                        return;
                s += w, n -= (size_t)w;
        }
}

static void respond(int fd, const char *target) {
        char buf[512];
        const char *path = strstr(target, "://") ? strchr(strstr(target, "://") + 3, '/') : target;

        if (!path)
                path = "/";
        if (strncmp(path, "/big-cl", 7) == 0) {
                static char body[100000];
                memset(body, 'x', sizeof body);
                snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof body);
                send_all(fd, buf, strlen(buf));
                send_all(fd, body, sizeof body);
        } else if (strncmp(path, "/big-chunked", 12) == 0) {
                static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                char chunk[4096 + 16];
                send_all(fd, head, sizeof head - 1);
                for (int i = 0; i < 25; i++) {
                        int n = snprintf(chunk, sizeof chunk, "1000\r\n");
                        memset(chunk + n, '{', 4096);
                        memcpy(chunk + n + 4096, "\r\n", 2);
                        send_all(fd, chunk, (size_t)n + 4098);
                }
                send_all(fd, "0\r\n\r\n", 5);
        } else if (strncmp(path, "/slow", 5) == 0) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                poll(&p, 1, 5000);      /* until the client gives up and closes */
        } else if (strncmp(path, "/throttle", 9) == 0) {
                static const char r[] = "HTTP/1.1 400 Bad Request\r\nX-AMZN-ERRORTYPE: ThrottlingException:http://x/\r\n"
                                        "Content-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>";
                send_all(fd, r, sizeof r - 1);
        } else {
                static const char body[] = "{\"registrationCode\":\"abc123\"}";
                snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%s", sizeof body - 1, body);
                send_all(fd, buf, strlen(buf));
        }
}

static void serve_connection(struct server *s, int fd) {
        char buf[16384];
        size_t len = 0;

        for (;;) {
                char *end = memmem(buf, len, "\r\n\r\n", 4);
                if (!end) {
                        struct pollfd p = { .fd = fd, .events = POLLIN };
                        if (len == sizeof buf || poll(&p, 1, 200) < 0)
                                return;
                        if (s->stop)
                                return;
                        if (!(p.revents & (POLLIN | POLLHUP)))
                                continue;
                        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
                        if (n <= 0)
                                return;
                        len += (size_t)n;
                        continue;
                }
                size_t head = (size_t)(end - buf) + 4, clen = 0;
                const char *cl = strcasestr(buf, "\r\ncontent-length:");
                if (cl && cl < end)
                        clen = strtoul(cl + 17, NULL, 10);
                while (len < head + clen && len < sizeof buf) {
                        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
                        if (n <= 0)
                                return;
                        len += (size_t)n;
                }
                char target[2048] = "";
                sscanf(buf, "%*s %2047s", target);
                pthread_mutex_lock(&s->lock);
                s->requests++;
                snprintf(s->last_head, sizeof s->last_head, "%.*s", (int)head, buf);
                snprintf(s->last_body, sizeof s->last_body, "%.*s", (int)clen, buf + head);
                pthread_mutex_unlock(&s->lock);
                respond(fd, target);
                memmove(buf, buf + head + clen, len - head - clen);
                len -= head + clen;
        }
}

static void *server_main(void *userdata) {
        struct server *s = userdata;

        while (!s->stop) {
                struct pollfd p = { .fd = s->fd, .events = POLLIN };
                if (poll(&p, 1, 100) <= 0)
                        continue;
                int c = accept(s->fd, NULL, NULL);
                if (c < 0)
                        continue;
                pthread_mutex_lock(&s->lock);
                s->connections++;
                pthread_mutex_unlock(&s->lock);
                serve_connection(s, c);
                close(c);
        }
        return NULL;
}

static void server_start(struct server *s) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;

        memset(s, 0, sizeof *s);
        pthread_mutex_init(&s->lock, NULL);
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->fd >= 0);
        assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(s->fd, 8), 0);
        getsockname(s->fd, (struct sockaddr *)&a, &l);
        s->port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s) {
        s->stop = true;
        pthread_join(s->thread, NULL);
        close(s->fd);
}

/* ---- the client side ---- */

struct result {
        bool called;
        struct aws_response r;
};

static void on_done(const struct aws_response *r, void *userdata) {
        struct result *res = userdata;
        res->called = true;
        res->r = *r;
}

static struct aws_http *client(unsigned timeout_ms, size_t max_body, const char *proxy_opt, int port) {
        struct aws_http *h = NULL;
        char ep[64], err[256];

        snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
        struct aws_http_opts o = { .endpoint = ep, .region = "eu-west-1", .timeout_ms = timeout_ms,
                                   .connect_timeout_ms = 2000, .max_body = max_body, .proxy = proxy_opt };
        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), 0);
        struct aws_creds c = { .access_key_id = "AKIDEXAMPLE00000001", .secret_access_key = "secret" };
        c.session_token = "session-token-value";
        assert_int_equal(aws_http_set_creds(h, &c), 0);
        return h;
}

static struct aws_response call(struct aws_http *h, const char *method, const char *path, enum aws_op op) {
        struct result res = {};
        struct aws_request req = { .op = op, .method = method };

        snprintf(req.path, sizeof req.path, "%s", path);
        assert_int_equal(aws_http_send(h, &req, on_done, &res), 0);
        assert_false(res.called);              /* never from inside send */
        while (!res.called)
                uv_run(uv_default_loop(), UV_RUN_ONCE);
        return res.r;
}

static void closed(void *userdata) {
        *(bool *)userdata = true;
}

static void close_client(struct aws_http *h) {
        bool done = false;
        aws_http_close(h, closed, &done);
        while (!done)
                uv_run(uv_default_loop(), UV_RUN_ONCE);
}

static void test_signed_request_and_reuse(void **state) {
        struct aws_http *h = client(5000, 65536, NULL, srv.port);
        unsigned conns = srv.connections;
        struct aws_request req = { .op = AWS_OP_ATTACH_THING_PRINCIPAL, .method = "PUT" };
        struct result res = {};

        snprintf(req.path, sizeof req.path, "/things/b-1/principals");
        snprintf(req.query, sizeof req.query, "thingPrincipalType=EXCLUSIVE_THING");
        snprintf(req.principal, sizeof req.principal, "arn:aws:iot:eu-west-1:1:cert/ab");
        assert_int_equal(aws_http_send(h, &req, on_done, &res), 0);
        while (!res.called)
                uv_run(uv_default_loop(), UV_RUN_ONCE);
        assert_int_equal(res.r.cls, AWS_OK);
        assert_int_equal(res.r.new_connections, 1);

        pthread_mutex_lock(&srv.lock);
        const char *hd = srv.last_head;
        assert_non_null(strstr(hd, "PUT /things/b-1/principals?thingPrincipalType=EXCLUSIVE_THING HTTP/1.1\r\n"));
        /* An empty PUT body still says JSON: libcurl's form type would be refused. */
        assert_non_null(strcasestr(hd, "\r\nContent-Type: application/json\r\n"));
        assert_null(strcasestr(hd, "x-www-form-urlencoded"));
        assert_non_null(strcasestr(hd, "\r\nx-amzn-principal: arn:aws:iot:eu-west-1:1:cert/ab\r\n"));
        assert_non_null(strcasestr(hd, "\r\nx-amz-security-token: session-token-value\r\n"));
        const char *auth = strcasestr(hd, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE00000001/");
        assert_non_null(auth);
        assert_non_null(strstr(auth, "/eu-west-1/iot/aws4_request"));
        /* The token and the principal are signed, not only sent. */
        const char *sh = strstr(auth, "SignedHeaders=");
        assert_non_null(sh);
        assert_non_null(strstr(sh, "x-amz-security-token"));
        assert_non_null(strstr(sh, "x-amzn-principal"));
        assert_null(strstr(hd, "secret"));
        pthread_mutex_unlock(&srv.lock);

        /* GET: no Content-Type, no body; the same connection. */
        struct aws_response r = call(h, "GET", "/registrationcode", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_OK);
        assert_string_equal(r.registration_code, "abc123");
        assert_int_equal(r.new_connections, 0);
        pthread_mutex_lock(&srv.lock);
        assert_null(strcasestr(srv.last_head, "Content-Type"));
        assert_int_equal(srv.connections, conns + 1);
        pthread_mutex_unlock(&srv.lock);
        close_client(h);
}

static void test_body_limits(void **state) {
        struct aws_http *h = client(5000, 8192, NULL, srv.port);
        struct aws_response r;

        r = call(h, "GET", "/big-cl", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_PERMANENT);
        assert_string_equal(r.code, "ResponseTooLarge");
        r = call(h, "GET", "/big-chunked", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_PERMANENT);
        assert_string_equal(r.code, "ResponseTooLarge");
        /* The client still works afterwards. */
        r = call(h, "GET", "/ok", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_OK);
        close_client(h);
}

static void test_timeout_and_refused(void **state) {
        struct aws_http *h = client(300, 0, NULL, srv.port);
        struct aws_response r = call(h, "POST", "/slow", AWS_OP_ATTACH_POLICY);
        assert_int_equal(r.cls, AWS_RETRY);
        assert_string_equal(r.code, "Timeout");
        close_client(h);

        /* Nothing listens on the closed port: a retryable connection error. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;
        bind(fd, (struct sockaddr *)&a, sizeof a);
        getsockname(fd, (struct sockaddr *)&a, &l);
        close(fd);
        h = client(2000, 0, NULL, ntohs(a.sin_port));
        r = call(h, "GET", "/x", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_RETRY);
        assert_string_equal(r.code, "ConnectionError");
        close_client(h);
}

static void test_error_header_any_case(void **state) {
        struct aws_http *h = client(5000, 0, NULL, srv.port);
        struct aws_response r = call(h, "POST", "/throttle", AWS_OP_CREATE_THING);
        assert_int_equal(r.status, 400);
        assert_string_equal(r.code, "ThrottlingException");
        assert_int_equal(r.cls, AWS_RETRY);
        close_client(h);
}

static void test_close_cancels(void **state) {
        struct aws_http *h = client(5000, 0, NULL, srv.port);
        struct aws_request req = { .op = AWS_OP_ATTACH_POLICY, .method = "POST" };
        struct result res = {};
        bool done = false;

        snprintf(req.path, sizeof req.path, "/slow");
        assert_int_equal(aws_http_send(h, &req, on_done, &res), 0);
        assert_int_equal(aws_http_pending(h), 1);
        aws_http_close(h, closed, &done);
        assert_true(res.called);
        assert_string_equal(res.r.code, "Cancelled");
        assert_int_equal(res.r.cls, AWS_RETRY);
        while (!done)
                uv_run(uv_default_loop(), UV_RUN_ONCE);
}

static void test_refusals(void **state) {
        struct aws_http *h = NULL;
        char err[256];
        struct aws_http_opts o = { .endpoint = "https://iot.eu-west-1.amazonaws.com/path", .region = "eu-west-1" };

        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), -EINVAL);
        o.endpoint = "ftp://x";
        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), -EINVAL);
        o.endpoint = "iot.eu-west-1.amazonaws.com";
        o.region = NULL;
        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), -EINVAL);
        o.region = "eu-west-1";
        o.service = "i o t";
        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), -EINVAL);
        o.service = NULL;
        assert_int_equal(aws_http_new(uv_default_loop(), &o, &h, err, sizeof err), 0);
        struct aws_request req = { .op = AWS_OP_DESCRIBE_CERTIFICATE, .method = "GET", .path = "/certificates/x" };
        struct result res = {};
        assert_int_equal(aws_http_send(h, &req, on_done, &res), -ENOKEY);
        struct aws_creds c = { .access_key_id = "AKIDEXAMPLE00000001", .secret_access_key = "s" };
        aws_http_set_creds(h, &c);
        /* A path needing percent-encoding would be signed differently by libcurl and AWS. */
        snprintf(req.path, sizeof req.path, "/attached-policies/arn%%3Aaws");
        assert_int_equal(aws_http_send(h, &req, on_done, &res), -ENOTSUP);
        assert_false(res.called);
        close_client(h);
}

/* libcurl's own proxy handling: http_proxy from the environment unless a proxy is configured. */
static void test_proxy_from_environment(void **state) {
        char env[64];
        struct aws_response r;

        server_start(&proxy);
        snprintf(env, sizeof env, "http://127.0.0.1:%d", proxy.port);
        setenv("http_proxy", env, 1);
        unsetenv("no_proxy");
        unsetenv("NO_PROXY");
        struct aws_http *h = client(5000, 0, NULL, srv.port);
        r = call(h, "GET", "/via-proxy", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_OK);
        pthread_mutex_lock(&proxy.lock);
        assert_int_equal(proxy.requests, 1);
        char want[96];
        snprintf(want, sizeof want, "GET http://127.0.0.1:%d/via-proxy HTTP/1.1", srv.port);
        assert_non_null(strstr(proxy.last_head, want));
        pthread_mutex_unlock(&proxy.lock);
        close_client(h);

        /* proxy = "" in [aws]: none, whatever the environment says. */
        h = client(5000, 0, "", srv.port);
        r = call(h, "GET", "/direct", AWS_OP_GET_REGISTRATION_CODE);
        assert_int_equal(r.cls, AWS_OK);
        pthread_mutex_lock(&proxy.lock);
        assert_int_equal(proxy.requests, 1);
        pthread_mutex_unlock(&proxy.lock);
        close_client(h);
        unsetenv("http_proxy");
        server_stop(&proxy);
}

static int setup(void **state) {
        unsetenv("http_proxy");
        unsetenv("HTTP_PROXY");
        unsetenv("https_proxy");
        unsetenv("HTTPS_PROXY");
        unsetenv("ALL_PROXY");
        unsetenv("all_proxy");
        server_start(&srv);
        return 0;
}

static int teardown(void **state) {
        server_stop(&srv);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_signed_request_and_reuse),
                cmocka_unit_test(test_body_limits),
                cmocka_unit_test(test_timeout_and_refused),
                cmocka_unit_test(test_error_header_any_case),
                cmocka_unit_test(test_close_cancels),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_proxy_from_environment),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
