/* SPDX-License-Identifier: MIT */
/* Control socket: JSON lines over a Unix socket, for root and the provd group only. */

#include <grp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "basic/hex.h"
#include "control.h"
#include "log.h"
#include "util.h"

struct control {
        uv_loop_t *loop;
        uv_pipe_t server;
        char *path;
        gid_t gid;
        control_handler handler;
        void *userdata;
        struct control_client *clients;
        unsigned n_clients;
        bool closing;
        uint64_t max_queued;
        uint64_t idle_closed;
        uint64_t refused;
};

struct control_client {
        struct control *control;
        struct control_client *next, *prev;
        uv_pipe_t pipe;
        uv_timer_t idle;                /* CONTROL_IDLE_MS without a request or a written reply */
        bool idle_open;
        uint64_t active_us;             /* last request read or reply written */
        struct control_peer peer;
        unsigned refs;
        bool closed;
        /*
         * A request is being served (its reply not sent yet): the next line
         * waits, and reading stops while one waits. One client cannot queue
         * more than one request for the database writer.
         */
        bool busy;
        bool reading;
        bool in_lines;                  /* handle_lines() is on the stack */
        char *line;                     /* CONTROL_MAX_LINE + 1 bytes */
        size_t line_len;
};

static void handle_lines(struct control_client *c);

static const char *const cmd_names[_CONTROL_CMD_MAX] = {
        [CONTROL_PING] = "ping",
        [CONTROL_STATUS] = "status",
        [CONTROL_DEVICES] = "devices",
        [CONTROL_REISSUE] = "reissue",
        [CONTROL_STATS] = "stats",
        [CONTROL_RELOAD] = "reload",
        [CONTROL_AWS_STATUS] = "aws-status",
        [CONTROL_AWS_RETRY] = "aws-retry",
        [CONTROL_AWS_DRAIN] = "aws-drain",
};

static bool valid_serial(const char *s) {
        return hex_valid(s, strlen(s), 1, CONTROL_SERIAL_MAX / 2);
}

int control_parse_request(const char *line, size_t len, struct control_request *ret, char *err, size_t errlen) {
        struct control_request req = {};
        cJSON *root, *cmd, *v;
        int r = -EINVAL;

        if (len > CONTROL_MAX_LINE) {
                snprintf(err, errlen, "request longer than %d bytes", CONTROL_MAX_LINE);
                return -E2BIG;
        }
        root = cJSON_ParseWithLength(line, len);
        if (!root || !cJSON_IsObject(root)) {
                snprintf(err, errlen, "request is not a JSON object");
                cJSON_Delete(root);
                return -EBADMSG;
        }
        cmd = cJSON_GetObjectItemCaseSensitive(root, "cmd");
        if (!cJSON_IsString(cmd)) {
                snprintf(err, errlen, "missing string field \"cmd\"");
                goto out;
        }
        req.cmd = _CONTROL_CMD_MAX;
        for (unsigned i = 0; i < _CONTROL_CMD_MAX; i++)
                if (streq(cmd->valuestring, cmd_names[i]))
                        req.cmd = i;
        if (req.cmd == _CONTROL_CMD_MAX) {
                snprintf(err, errlen, "unknown command");
                goto out;
        }

        switch (req.cmd) {
        case CONTROL_DEVICES:
                v = cJSON_GetObjectItemCaseSensitive(root, "since");
                if (v) {
                        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15) {
                                snprintf(err, errlen, "\"since\" must be a time in ms since the epoch");
                                goto out;
                        }
                        req.since_ms = (int64_t)v->valuedouble;
                }
                v = cJSON_GetObjectItemCaseSensitive(root, "limit");
                if (v) {
                        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 10000000) {
                                snprintf(err, errlen, "\"limit\" must be a count");
                                goto out;
                        }
                        req.limit = (unsigned)v->valuedouble;
                }
                v = cJSON_GetObjectItemCaseSensitive(root, "pem");
                if (v) {
                        if (!cJSON_IsBool(v)) {
                                snprintf(err, errlen, "\"pem\" must be true or false");
                                goto out;
                        }
                        req.pem = cJSON_IsTrue(v);
                }
                v = cJSON_GetObjectItemCaseSensitive(root, "after");
                if (v) {
                        if (!cJSON_IsString(v) || !valid_serial(v->valuestring)) {
                                snprintf(err, errlen, "\"after\" must be a board serial in hex");
                                goto out;
                        }
                        strcpy(req.after, v->valuestring);
                }
                break;
        case CONTROL_REISSUE:
                v = cJSON_GetObjectItemCaseSensitive(root, "serial");
                if (!cJSON_IsString(v) || !valid_serial(v->valuestring)) {
                        snprintf(err, errlen, "\"serial\" must be the board serial in hex");
                        goto out;
                }
                strcpy(req.serial, v->valuestring);
                break;
        case CONTROL_AWS_RETRY:
                v = cJSON_GetObjectItemCaseSensitive(root, "failed");
                if (v) {
                        if (!cJSON_IsBool(v)) {
                                snprintf(err, errlen, "\"failed\" must be true or false");
                                goto out;
                        }
                        req.all_failed = cJSON_IsTrue(v);
                }
                v = cJSON_GetObjectItemCaseSensitive(root, "id");
                if (v && (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 9007199254740991.0 ||
                          v->valuedouble != (double)(int64_t)v->valuedouble)) {
                        snprintf(err, errlen, "\"id\" must be an outbox row id");
                        goto out;
                }
                if (!v == !req.all_failed) {
                        snprintf(err, errlen, "aws-retry takes \"id\" or \"failed\": true");
                        goto out;
                }
                if (v)
                        req.id = (int64_t)v->valuedouble;
                break;
        default:
                break;
        }
        *ret = req;
        r = 0;
out:
        cJSON_Delete(root);
        return r;
}

static void on_client_closed(uv_handle_t *h) {
        struct control_client *c = h->data;

        control_client_unref(c);
}

static size_t queued(struct control_client *c) {
        return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

static void idle_restart(struct control_client *c);

static void client_close(struct control_client *c) {
        struct control *ctl = c->control;

        if (c->closed)
                return;
        c->closed = true;
        if (c->prev)
                c->prev->next = c->next;
        else
                ctl->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        ctl->n_clients--;
        if (c->idle_open)
                uv_close((uv_handle_t *)&c->idle, on_client_closed);
        uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

struct control_client *control_client_ref(struct control_client *c) {
        c->refs++;
        return c;
}

struct control_client *control_client_unref(struct control_client *c) {
        if (!c || --c->refs > 0)
                return NULL;
        free(c->line);
        free(c);
        return NULL;
}

struct write_req {
        uv_write_t req;
        char *buf;
};

static void on_written(uv_write_t *w, int status) {
        struct write_req *wr = (struct write_req *)w;
        struct control_client *c = wr->req.handle->data;

        free(wr->buf);
        free(wr);
        if (status < 0 || c->closed)
                return;
        /* The client reads: it is not idle, and it may be served again once under the cap. */
        idle_restart(c);
        if (!c->busy && !c->in_lines && queued(c) <= CONTROL_MAX_QUEUED)
                handle_lines(c);
}

void control_reply(struct control_client *c, cJSON *reply) {
        bool served = c->busy;          /* this reply ends the request being served */
        struct write_req *wr;
        char *text;
        uv_buf_t b;

        c->busy = false;
        if (c->closed || !reply) {
                cJSON_Delete(reply);
                return;
        }
        text = cJSON_PrintUnformatted(reply);
        cJSON_Delete(reply);
        wr = calloc(1, sizeof *wr);
        if (!text || !wr) {
                free(text);
                free(wr);
                client_close(c);
                return;
        }
        size_t n = strlen(text);
        char *line = realloc(text, n + 2);
        if (!line) {
                free(text);
                free(wr);
                client_close(c);
                return;
        }
        line[n] = '\n';
        line[n + 1] = 0;
        wr->buf = line;
        b = uv_buf_init(line, (unsigned)(n + 1));
        if (uv_write(&wr->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
                free(line);
                free(wr);
                client_close(c);
                return;
        }
        if (queued(c) > c->control->max_queued)
                c->control->max_queued = queued(c);
        /* A reply from the handler itself returns into handle_lines(), which goes on there. */
        if (served && !c->in_lines)
                handle_lines(c);
}

void control_reply_error(struct control_client *c, int error, const char *msg) {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddBoolToObject(o, "ok", false);
        cJSON_AddStringToObject(o, "error", msg ? msg : strerror(abs(error)));
        cJSON_AddNumberToObject(o, "errno", abs(error));
        control_reply(c, o);
}

static void handle_line(struct control_client *c, const char *line, size_t len) {
        struct control_request req;
        char err[160];
        int r;

        c->busy = true;
        r = control_parse_request(line, len, &req, err, sizeof err);
        if (r < 0) {
                control_reply_error(c, r, err);
                return;
        }
        c->control->handler(c, &c->peer, &req, c->control->userdata);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        struct control_client *c = h->data;

        /* Read straight into the line buffer: no allocation per read. */
        *buf = uv_buf_init(c->line + c->line_len, (unsigned)(CONTROL_MAX_LINE + 1 - c->line_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Serves the complete lines in the buffer, one at a time; reads more only when none is being served. */
static void handle_lines(struct control_client *c) {
        size_t start = 0;

        control_client_ref(c);
        c->in_lines = true;
        for (size_t i = 0; i < c->line_len && !c->closed && !c->busy && queued(c) <= CONTROL_MAX_QUEUED; i++) {
                if (c->line[i] != '\n')
                        continue;
                handle_line(c, c->line + start, i - start);
                start = i + 1;
        }
        c->in_lines = false;
        if (!c->closed) {
                memmove(c->line, c->line + start, c->line_len - start);
                c->line_len -= start;
                if (c->line_len > CONTROL_MAX_LINE && !c->busy) {
                        control_reply_error(c, -E2BIG, "request line too long");
                        client_close(c);
                } else if ((c->busy || queued(c) > CONTROL_MAX_QUEUED) && c->reading) {
                        /* Serving a request, or its replies are not read: take no more. */
                        c->reading = false;
                        (void)uv_read_stop((uv_stream_t *)&c->pipe);
                } else if (!c->busy && !c->reading && queued(c) <= CONTROL_MAX_QUEUED) {
                        c->reading = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0;
                        if (!c->reading)
                                client_close(c);
                }
        }
        control_client_unref(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
        struct control_client *c = s->data;

        if (n < 0) {
                client_close(c);
                return;
        }
        c->line_len += (size_t)n;
        if (n > 0)
                idle_restart(c);
        handle_lines(c);
}

static void on_idle(uv_timer_t *t) {
        struct control_client *c = t->data;

        /* A request being served is the daemon's wait, not the client's. */
        if (c->busy) {
                idle_restart(c);
                return;
        }
        c->control->idle_closed++;
        log_debug("control: closing connection of pid %d uid %u, idle for %d ms", (int)c->peer.pid,
                  (unsigned)c->peer.uid, CONTROL_IDLE_MS);
        client_close(c);
}

static void idle_restart(struct control_client *c) {
        c->active_us = now_usec();
        if (c->idle_open && !c->closed)
                (void)uv_timer_start(&c->idle, on_idle, CONTROL_IDLE_MS, 0);
}

static unsigned clients_of(struct control *ctl, uid_t uid) {
        unsigned n = 0;

        for (struct control_client *c = ctl->clients; c; c = c->next)
                n += c->peer.uid == uid;
        return n;
}

void control_get_metrics(const struct control *ctl, struct control_metrics *ret) {
        struct control_metrics m = { .clients = ctl->n_clients, .max_queued_bytes = ctl->max_queued,
                                     .idle_closed = ctl->idle_closed, .refused = ctl->refused };

        for (struct control_client *c = ctl->clients; c; c = c->next)
                m.queued_bytes += uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
        *ret = m;
}

static bool peer_allowed(struct control *ctl, int fd, struct control_peer *ret) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        gid_t groups[256];

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return false;
        *ret = (struct control_peer) { .pid = cred.pid, .uid = cred.uid, .gid = cred.gid };
        if (cred.uid == 0 || cred.uid == geteuid())
                return true;
        if (ctl->gid == (gid_t)-1)
                return false;
        if (cred.gid == ctl->gid)
                return true;
        len = sizeof groups;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == ctl->gid)
                        return true;
        return false;
}

static void on_connection(uv_stream_t *server, int status) {
        struct control *ctl = server->data;
        struct control_client *c;
        uv_os_fd_t fd;

        if (status < 0)
                return;
        c = calloc(1, sizeof *c);
        if (!c || !(c->line = malloc(CONTROL_MAX_LINE + 1))) {
                free(c);
                /* Accept and drop, so the listener does not spin on a pending connection. */
                uv_os_fd_t lfd;
                if (uv_fileno((uv_handle_t *)&ctl->server, &lfd) == 0) {
                        int dropped = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (dropped >= 0)
                                close(dropped);
                }
                return;
        }
        c->control = ctl;
        c->refs = 1;
        uv_pipe_init(ctl->loop, &c->pipe, 0);
        c->pipe.data = c;
        if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
            uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0) {
                c->closed = true;
                uv_close((uv_handle_t *)&c->pipe, on_client_closed);
                return;
        }
        c->next = ctl->clients;
        if (c->next)
                c->next->prev = c;
        ctl->clients = c;
        ctl->n_clients++;
        if (!peer_allowed(ctl, fd, &c->peer)) {
                log_warning("control: refused connection from pid %d uid %u gid %u (not root or group %d)",
                            (int)c->peer.pid, (unsigned)c->peer.uid, (unsigned)c->peer.gid, (int)ctl->gid);
                control_reply_error(c, -EACCES, "permission denied");
                client_close(c);
                return;
        }
        /* One operator's connections cannot take every place (root and provd's own uid are not counted). */
        if (c->peer.uid != 0 && c->peer.uid != geteuid() && clients_of(ctl, c->peer.uid) > CONTROL_MAX_PER_UID) {
                ctl->refused++;
                log_warning("control: refused connection from pid %d uid %u: it has %d open already",
                            (int)c->peer.pid, (unsigned)c->peer.uid, CONTROL_MAX_PER_UID);
                control_reply_error(c, -EUSERS, "too many control connections from your uid; close some");
                client_close(c);
                return;
        }
        /*
         * Full: the connection idle the longest (no request being served)
         * makes room, so idle connections cannot lock every operator out.
         */
        if (ctl->n_clients > CONTROL_MAX_CLIENTS) {
                struct control_client *oldest = NULL;
                for (struct control_client *o = ctl->clients; o; o = o->next)
                        if (o != c && !o->busy && (!oldest || o->active_us < oldest->active_us))
                                oldest = o;
                if (oldest) {
                        ctl->idle_closed++;
                        client_close(oldest);
                }
        }
        if (ctl->n_clients > CONTROL_MAX_CLIENTS) {
                ctl->refused++;
                control_reply_error(c, -EBUSY, "too many control connections; try again later");
                client_close(c);
                return;
        }
        uv_timer_init(ctl->loop, &c->idle);
        c->idle.data = c;
        c->idle_open = true;
        control_client_ref(c);          /* the timer's close callback drops it */
        idle_restart(c);
        c->reading = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0;
        if (!c->reading)
                client_close(c);
}

int control_new(struct control **ret, uv_loop_t *loop, const char *path, gid_t gid,
                control_handler handler, void *userdata) {
        struct control *ctl;
        mode_t old;
        int r;

        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return -ENAMETOOLONG;
        ctl = calloc(1, sizeof *ctl);
        if (!ctl)
                return -ENOMEM;
        ctl->loop = loop;
        ctl->gid = gid;
        ctl->handler = handler;
        ctl->userdata = userdata;
        ctl->path = strdup(path);
        if (!ctl->path) {
                free(ctl);
                return -ENOMEM;
        }
        uv_pipe_init(loop, &ctl->server, 0);
        ctl->server.data = ctl;

        (void)unlink(path);
        /* Never a window in which the socket is reachable with a wider mode. */
        old = umask(0117);
        r = uv_pipe_bind(&ctl->server, path);
        umask(old);
        if (r >= 0 && gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0)
                r = -errno;
        if (r >= 0 && chmod(path, 0660) < 0)
                r = -errno;
        if (r >= 0)
                r = uv_listen((uv_stream_t *)&ctl->server, 64, on_connection);
        if (r < 0) {
                control_free(ctl);
                return r;
        }
        *ret = ctl;
        return 0;
}

static void on_server_closed(uv_handle_t *h) {
        struct control *ctl = h->data;

        free(ctl->path);
        free(ctl);
}

void control_free(struct control *ctl) {
        if (!ctl || ctl->closing)
                return;
        ctl->closing = true;
        while (ctl->clients)
                client_close(ctl->clients);
        (void)unlink(ctl->path);
        uv_close((uv_handle_t *)&ctl->server, on_server_closed);
}
