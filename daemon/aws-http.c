/* SPDX-License-Identifier: MIT */
/* HTTPS client for the AWS IoT control plane: libcurl multi driven by the libuv loop, SigV4 by libcurl. */

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "aws-http.h"
#include "util.h"

#define ERROR_TYPE_MAX 256

/*
 * Easy handles kept for reuse: a new one per call costs its allocation, its
 * setup and, at a reconnection, a full TLS handshake (the session cache is
 * the handle's). curl_easy_reset() keeps the session cache and drops every
 * option, credentials included.
 */
#define IDLE_EASY_MAX 32

struct aws_http {
        uv_loop_t *loop;
        CURLM *multi;
        uv_timer_t timer;
        unsigned open_handles;          /* timer + socket polls not yet closed */
        struct aws_http_call *calls;    /* in flight, doubly linked */
        size_t n_calls;
        bool closing;
        unsigned dispatching;           /* > 0 while callbacks run: close is deferred */
        bool close_pending;
        void (*done)(void *userdata);
        void *done_userdata;

        char *endpoint;
        char sigv4[128];
        char *ca_file;
        char *proxy;
        unsigned timeout_ms, connect_timeout_ms;
        size_t max_body;
        struct aws_creds *creds;

        /* Easy handles of finished calls, reset, for the next calls (see take_easy()). */
        CURL *idle_easy[IDLE_EASY_MAX];
        unsigned n_idle_easy;
};

struct aws_http_call {
        struct aws_http *h;
        struct aws_http_call *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        enum aws_op op;
        char *url;
        char *body;
        size_t body_len, body_cap;
        bool too_large;
        char error_type[ERROR_TYPE_MAX + 1];
        char errbuf[CURL_ERROR_SIZE];
        aws_http_cb cb;
        void *userdata;
};

struct sock {
        uv_poll_t poll;
        struct aws_http *h;
        curl_socket_t fd;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_FAILED_INIT;

static void global_init(void) {
        global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void handle_closed(uv_handle_t *handle);

static void maybe_free(struct aws_http *h) {
        if (!h->closing || h->open_handles > 0)
                return;
        void (*done)(void *) = h->done;
        void *ud = h->done_userdata;
        free(h->endpoint);
        free(h->ca_file);
        free(h->proxy);
        aws_creds_free(h->creds);
        free(h);
        if (done)
                done(ud);
}

static void handle_closed(uv_handle_t *handle) {
        struct aws_http *h;

        if (handle->type == UV_POLL) {
                struct sock *s = container_of((uv_poll_t *)handle, struct sock, poll);
                h = s->h;
                free(s);
        } else
                h = container_of((uv_timer_t *)handle, struct aws_http, timer);
        h->open_handles--;
        maybe_free(h);
}

static CURL *take_easy(struct aws_http *h) {
        return h->n_idle_easy > 0 ? h->idle_easy[--h->n_idle_easy] : curl_easy_init();
}

static void drop_idle_easy(struct aws_http *h) {
        while (h->n_idle_easy > 0)
                curl_easy_cleanup(h->idle_easy[--h->n_idle_easy]);
}

static void call_free(struct aws_http_call *c) {
        if (!c)
                return;
        if (c->easy && !c->h->closing && c->h->n_idle_easy < IDLE_EASY_MAX) {
                curl_easy_reset(c->easy);
                c->h->idle_easy[c->h->n_idle_easy++] = c->easy;
        } else if (c->easy)
                curl_easy_cleanup(c->easy);
        curl_slist_free_all(c->headers);
        free(c->url);
        free(c->body);
        free(c);
}

static void unlink_call(struct aws_http_call *c) {
        struct aws_http *h = c->h;

        if (c->prev)
                c->prev->next = c->next;
        else
                h->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        h->n_calls--;
}

static void finish_close(struct aws_http *h);

static void deliver(struct aws_http_call *c, const struct aws_response *r) {
        struct aws_http *h = c->h;

        h->dispatching++;
        c->cb(r, c->userdata);
        h->dispatching--;
        if (h->dispatching == 0 && h->close_pending)
                finish_close(h);
}

static void transport_error(struct aws_http_call *c, CURLcode code, struct aws_response *r) {
        const char *msg = c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);

        switch (code) {
        case CURLE_OPERATION_TIMEDOUT:
                aws_response_transport(r, "Timeout", msg, true);
                break;
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                aws_response_transport(r, "ConnectionError", msg, true);
                break;
        case CURLE_WRITE_ERROR:
        case CURLE_FILESIZE_EXCEEDED:
                if (c->too_large || code == CURLE_FILESIZE_EXCEEDED) {
                        aws_response_transport(r, "ResponseTooLarge", "the response body exceeds [aws] max_response",
                                               false);
                        break;
                }
                aws_response_transport(r, "TransportError", msg, false);
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
                aws_response_transport(r, "TLSVerification", msg, false);
                break;
        default:
                aws_response_transport(r, "TransportError", msg, false);
                break;
        }
}

static void check_done(struct aws_http *h) {
        CURLMsg *m;
        int left;

        while (h->multi && (m = curl_multi_info_read(h->multi, &left))) {
                struct aws_http_call *c = NULL;
                struct aws_response r;
                long status = 0, connects = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
                CURLcode code = m->data.result;
                curl_multi_remove_handle(h->multi, c->easy);    /* invalidates @m */
                unlink_call(c);
                curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
                curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
                if (code == CURLE_OK)
                        aws_response_parse(c->op, status, c->error_type[0] ? c->error_type : NULL, c->body,
                                           c->body_len, &r);
                else
                        transport_error(c, code, &r);
                r.new_connections = connects > 0 ? (unsigned)connects : 0;
                deliver(c, &r);
                call_free(c);
        }
}

static void poll_cb(uv_poll_t *handle, int status, int events) {
        struct sock *s = container_of(handle, struct sock, poll);
        struct aws_http *h = s->h;
        int flags = 0, running;

        if (status < 0)
                flags = CURL_CSELECT_ERR;
        if (events & UV_READABLE)
                flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
                flags |= CURL_CSELECT_OUT;
        curl_multi_socket_action(h->multi, s->fd, flags, &running);
        check_done(h);
}

static void timer_cb(uv_timer_t *t) {
        struct aws_http *h = container_of(t, struct aws_http, timer);
        int running;

        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct aws_http *h = userp;
        struct sock *s = socketp;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        uv_poll_stop(&s->poll);
                        if (!h->closing)
                                curl_multi_assign(h->multi, fd, NULL);
                        uv_close((uv_handle_t *)&s->poll, handle_closed);
                }
                return 0;
        }
        if (!s) {
                s = calloc(1, sizeof *s);
                if (!s)
                        return -1;
                s->h = h;
                s->fd = fd;
                if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
                        free(s);
                        return -1;
                }
                h->open_handles++;
                curl_multi_assign(h->multi, fd, s);
        }
        int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
        uv_poll_start(&s->poll, ev, poll_cb);
        return 0;
}

static int timerfunction_cb(CURLM *multi, long timeout_ms, void *userp) {
        struct aws_http *h = userp;

        if (timeout_ms < 0)
                uv_timer_stop(&h->timer);
        else
                /* 0 too goes through the loop: libcurl must not be re-entered from here. */
                uv_timer_start(&h->timer, timer_cb, (uint64_t)timeout_ms, 0);
        return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct aws_http_call *c = userdata;
        size_t n = size * nmemb;

        if (n > c->h->max_body - c->body_len) {
                c->too_large = true;
                return 0;               /* CURLE_WRITE_ERROR */
        }
        if (c->body_len + n + 1 > c->body_cap) {
                size_t cap = MAX(c->body_cap * 2, c->body_len + n + 1);
                cap = MIN(cap, c->h->max_body + 1);
                char *b = realloc(c->body, cap);
                if (!b)
                        return 0;
                c->body = b;
                c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, data, n);
        c->body_len += n;
        c->body[c->body_len] = 0;
        return n;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        static const char name[] = "x-amzn-ErrorType:";
        struct aws_http_call *c = userdata;
        size_t n = size * nmemb;

        /* A new status line (after a 100 Continue) starts a new header block. */
        if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
                c->error_type[0] = 0;
        else if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
                const char *v = data + sizeof name - 1;
                size_t vlen = n - (sizeof name - 1);
                while (vlen > 0 && (*v == ' ' || *v == '\t'))
                        v++, vlen--;
                while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
                        vlen--;
                vlen = MIN(vlen, (size_t)ERROR_TYPE_MAX);
                memcpy(c->error_type, v, vlen);
                c->error_type[vlen] = 0;
        }
        return n;
}

static bool url_ok(const char *u) {
        if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
                return false;
        const char *host = strstr(u, "://") + 3;
        if (!*host || strchr(host, '/') || strchr(host, '?') || strchr(host, '#') || strchr(host, '@'))
                return false;
        for (const char *p = u; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                        return false;
        return strlen(u) < 512;
}

int aws_http_new(uv_loop_t *loop, const struct aws_http_opts *opts, struct aws_http **ret, char *err,
                 size_t errlen) {
        struct aws_http *h;
        const char *service = opts->service ? opts->service : "iot";
        char ep[520];

        pthread_once(&global_once, global_init);
        if (global_result != CURLE_OK)
                return snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(global_result)), -EIO;
        if (!opts->endpoint)
                return snprintf(err, errlen, "no endpoint"), -EINVAL;
        /* A bare host name means https. */
        if (!strstr(opts->endpoint, "://"))
                snprintf(ep, sizeof ep, "https://%.500s", opts->endpoint);
        else
                snprintf(ep, sizeof ep, "%.510s", opts->endpoint);
        size_t l = strlen(ep);
        if (l > 8 && ep[l - 1] == '/')
                ep[l - 1] = 0;
        if (!url_ok(ep))
                return snprintf(err, errlen, "endpoint '%.100s' is not an http(s):// URL without path", opts->endpoint),
                       -EINVAL;
        if (!opts->region || !aws_region_valid(opts->region))
                return snprintf(err, errlen, "signing region missing or not a region name"), -EINVAL;
        if (!aws_region_valid(service))
                return snprintf(err, errlen, "signing service '%.40s' is not a service name", service), -EINVAL;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->loop = loop;
        h->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
        h->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
        h->max_body = opts->max_body ? opts->max_body : 65536;
        snprintf(h->sigv4, sizeof h->sigv4, "aws:amz:%s:%s", opts->region, service);
        h->endpoint = strdup(ep);
        h->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
        h->proxy = opts->proxy ? strdup(opts->proxy) : NULL;
        h->multi = curl_multi_init();
        if (!h->endpoint || (opts->ca_file && !h->ca_file) || (opts->proxy && !h->proxy) || !h->multi) {
                if (h->multi)
                        curl_multi_cleanup(h->multi);
                free(h->endpoint);
                free(h->ca_file);
                free(h->proxy);
                free(h);
                return -ENOMEM;
        }
        long maxc = opts->max_connections ? (long)opts->max_connections : 4;
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timerfunction_cb);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxc);
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, maxc);
        uv_timer_init(loop, &h->timer);
        h->open_handles = 1;
        *ret = h;
        return 0;
}

int aws_http_set_creds(struct aws_http *h, const struct aws_creds *creds) {
        struct aws_creds *c = aws_creds_dup(creds);

        if (!c)
                return -ENOMEM;
        aws_creds_free(h->creds);
        h->creds = c;
        return 0;
}

uv_loop_t *aws_http_loop(const struct aws_http *h) {
        return h->loop;
}

size_t aws_http_pending(const struct aws_http *h) {
        return h->n_calls;
}

static int add_header(struct curl_slist **list, const char *name, const char *value) {
        char line[AWS_SESSION_TOKEN_MAX + 64];
        struct curl_slist *n;

        if ((size_t)snprintf(line, sizeof line, "%s: %s", name, value) >= sizeof line)
                return -ENOBUFS;
        n = curl_slist_append(*list, line);
        explicit_bzero(line, sizeof line);
        if (!n)
                return -ENOMEM;
        *list = n;
        return 0;
}

#define SETOPT(opt, val) do { if (curl_easy_setopt(e, opt, val) != CURLE_OK) goto fail; } while (0)

int aws_http_send(struct aws_http *h, const struct aws_request *req, aws_http_cb cb, void *userdata) {
        struct aws_http_call *c;
        CURL *e;
        size_t ulen;

        if (h->closing)
                return -ESHUTDOWN;
        if (!h->creds)
                return -ENOKEY;
        if (!req->method || req->path[0] != '/' || !cb)
                return -EINVAL;
        /* SigV4 for every service but S3 signs the path percent-encoded a
         * second time (%3A -> %253A); libcurl signs it as sent, so AWS would
         * answer 403 InvalidSignatureException: refused here instead. */
        if (strchr(req->path, '%'))
                return -ENOTSUP;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->h = h;
        c->op = req->op;
        c->cb = cb;
        c->userdata = userdata;
        ulen = strlen(h->endpoint) + strlen(req->path) + strlen(req->query) + 2;
        c->url = malloc(ulen);
        if (!c->url)
                goto nomem;
        snprintf(c->url, ulen, "%s%s%s%s", h->endpoint, req->path, req->query[0] ? "?" : "", req->query);
        e = c->easy = take_easy(h);
        if (!e)
                goto nomem;

        /* Content-Type on every body: libcurl's default form type is refused by AWS. */
        bool has_body = !streq(req->method, "GET");
        if (has_body && add_header(&c->headers, "Content-Type", "application/json") < 0)
                goto nomem;
        if (h->creds->session_token && add_header(&c->headers, "x-amz-security-token", h->creds->session_token) < 0)
                goto nomem;
        if (req->principal[0] && add_header(&c->headers, "x-amzn-principal", req->principal) < 0)
                goto nomem;

        SETOPT(CURLOPT_PRIVATE, c);
        SETOPT(CURLOPT_URL, c->url);
        SETOPT(CURLOPT_NOSIGNAL, 1L);
        SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500     /* 7.85: the string form; the bitmask one is deprecated */
        SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_timeout_ms);
        SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(CURLOPT_TCP_KEEPIDLE, 30L);
        SETOPT(CURLOPT_TCP_KEEPINTVL, 15L);
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
        SETOPT(CURLOPT_USERAGENT, "provd/" PROVD_VERSION);
        SETOPT(CURLOPT_AWS_SIGV4, h->sigv4);
        SETOPT(CURLOPT_USERNAME, h->creds->access_key_id);
        SETOPT(CURLOPT_PASSWORD, h->creds->secret_access_key);
        SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(CURLOPT_WRITEDATA, c);
        SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
        SETOPT(CURLOPT_HEADERDATA, c);
        if (h->ca_file)
                SETOPT(CURLOPT_CAINFO, h->ca_file);
        if (h->proxy)
                SETOPT(CURLOPT_PROXY, h->proxy);
        if (c->headers)
                SETOPT(CURLOPT_HTTPHEADER, c->headers);
        if (streq(req->method, "GET"))
                SETOPT(CURLOPT_HTTPGET, 1L);
        else {
                SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
                SETOPT(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
                if (!streq(req->method, "POST"))
                        SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
        }
        if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
                goto fail;
        c->next = h->calls;
        if (h->calls)
                h->calls->prev = c;
        h->calls = c;
        h->n_calls++;
        return 0;

nomem:
        call_free(c);
        return -ENOMEM;
fail:
        call_free(c);
        return -EIO;
}

static void finish_close(struct aws_http *h) {
        h->close_pending = false;
        while (h->calls) {
                struct aws_http_call *c = h->calls;
                struct aws_response r;

                curl_multi_remove_handle(h->multi, c->easy);
                unlink_call(c);
                aws_response_transport(&r, "Cancelled", "the AWS client is shutting down", true);
                c->cb(&r, c->userdata);
                call_free(c);
        }
        drop_idle_easy(h);
        /* Closes cached connections: their sockets' polls are closed from socket_cb. */
        curl_multi_cleanup(h->multi);
        h->multi = NULL;
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *)&h->timer, handle_closed);
}

void aws_http_close(struct aws_http *h, void (*done)(void *userdata), void *userdata) {
        if (!h || h->closing)
                return;
        h->closing = true;
        h->done = done;
        h->done_userdata = userdata;
        if (h->dispatching > 0) {
                h->close_pending = true;
                return;
        }
        finish_close(h);
}
