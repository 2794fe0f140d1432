/* SPDX-License-Identifier: MIT */
/* A station's port: writing requests, timeouts and retransmission, reading frames, opening and closing. */

#include <inttypes.h>
#include <stdio.h>

#include "conf.h"
#include "serial-port.h"
#include "signing-ctx.h"
#include "station-internal.h"

#define READS_PER_WAKEUP 16
#define RESULT_TIMEOUT_MS 1000
/* Wire bytes of the answers the transfer term (PROTOCOL.md §8.3) counts: a CSR, and anything else. */
#define CSR_ANSWER_WIRE SP_ENCODED_MAX(1024u)
#define ANSWER_WIRE SP_ENCODED_MAX(256u)

const char *station_path(const struct station *st) {
        return st->path;
}

dev_t station_rdev(const struct station *st) {
        return st->rdev;
}

const char *station_serial(const struct station *st) {
        return st->serial;
}

const char *station_claimed_serial(const struct station *st) {
        return st->claimed_serial;
}

void station_set_claimed_serial(struct station *st, const char *serial) {
        snprintf(st->claimed_serial, sizeof st->claimed_serial, "%s", serial);
}

bool station_is_active(const struct station *st) {
        return st->state != STATION_DONE && st->state != STATION_FAILED;
}

bool station_is_closing(const struct station *st) {
        return st->closing;
}

/* --- output ------------------------------------------------------------ */

static void poll_update(struct station *st);

static int flush_tx(struct station *st) {
        while (st->tx_off < st->client.len) {
                ssize_t n = write(st->fd, st->client.buf + st->tx_off, st->client.len - st->tx_off);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                st->tx_off += (size_t)n;
        }
        st->tx_pending = st->tx_off < st->client.len;
        poll_update(st);
        return 0;
}

static void on_timeout(uv_timer_t *t);

static void arm_timeout(struct station *st, unsigned ms) {
        uint64_t deadline = st->session_start_us + (uint64_t)st->env->conf->session_ms * 1000;
        uint64_t now = now_usec();

        /* Never wait past the whole-session limit ([timeouts] session_ms), RESULT included: every run ends. */
        if (station_is_active(st))
                ms = (unsigned)MIN((uint64_t)ms, now < deadline ? (deadline - now + 999) / 1000 : 0);
        (void)uv_timer_start(&st->timer, on_timeout, ms, 0);
}

/*
 * PROTOCOL.md §8.3's table: [timeouts] hello_ms (HELLO, PING), request_ms
 * (GET_CSR with the existing key, PROVE), keygen_ms (GET_CSR NEW_KEY=1),
 * write_ms (PUT_CERT, PUT_CONFIG, LOCK), result_ms (RESULT). The older
 * single key response_ms stands for each of them a configuration leaves out.
 */
static unsigned step_timeout(const struct station *st) {
        const struct conf *c = st->env->conf;

        switch (st->client.type) {
        case SP_MSG_HELLO:
        case SP_MSG_PING:
                return c->hello_ms ?: c->response_ms ?: 300;
        case SP_MSG_GET_CSR:
                if (!st->ident.has_pubkey)
                        return c->keygen_ms;
                return c->request_ms ?: c->response_ms ?: 1000;
        case SP_MSG_PROVE:
                return c->request_ms ?: c->response_ms ?: 1000;
        case SP_MSG_RESULT:
                return c->result_ms ?: (c->response_ms ? MIN(c->response_ms, RESULT_TIMEOUT_MS) : 500);
        default:
                return c->write_ms ?: c->response_ms ?: 2000;
        }
}

/*
 * Plus the time both frames take on the line at the configured baud rate:
 * 2 × 10 bits × (request + answer) / baud (PROTOCOL.md §8.3). Only on a tty;
 * a socketpair has no line.
 */
static unsigned request_timeout(const struct station *st) {
        uint64_t wire = st->client.len + (st->client.type == SP_MSG_GET_CSR ? CSR_ANSWER_WIRE : ANSWER_WIRE);
        unsigned baud = st->env->conf->baud;

        if (!st->wire_timed || baud == 0)
                return step_timeout(st);
        return step_timeout(st) + (unsigned)((2 * 10 * wire * 1000 + baud - 1) / baud);
}

/*
 * The encoded PUT_CONFIG carries the Wi-Fi PSK; a later, shorter request
 * would overwrite only its front, and a retransmission decodes it in place.
 */
static void forget_tx(struct station *st) {
        if (st->client.type == SP_MSG_PUT_CONFIG)
                explicit_bzero(st->client.buf, st->client.cap);
}

/* Encodes st->payload[0..len) as a new request and starts sending it. */
void station_send_request(struct station *st, uint8_t type, size_t payload_len) {
        ssize_t n;
        int r;

        forget_tx(st);
        n = sp_client_request(&st->client, type, st->payload, payload_len);
        if (n < 0) {
                station_fail(st, OUTCOME_FAILED, "cannot encode %s: %s", sp_msg_type_to_string(type),
                             strerror((int)-n));
                return;
        }
        if (st->rx_us) {
                env_hook(st, record_latency, now_usec() - st->rx_us);
                st->rx_us = 0;
        }
        st->tx_off = 0;
        st->retries_left = st->env->conf->retries;
        st->step_bad_frames = 0;
        r = flush_tx(st);
        if (r < 0) {
                station_close(st, "write failed");
                return;
        }
        arm_timeout(st, request_timeout(st));
}


/* The step's tries are spent: say what the board sent, if anything. */
static void fail_tries(struct station *st) {
        if (st->step_bad_frames > 0)
                station_fail(st, OUTCOME_FAILED, "%u corrupted answer%s to %s in %u tries; check the cable and hub",
                             st->step_bad_frames, st->step_bad_frames == 1 ? "" : "s",
                             sp_msg_type_to_string(st->client.type), st->env->conf->retries + 1);
        else
                station_fail(st, OUTCOME_FAILED, "board did not answer %s after %u tries; reseat it",
                             sp_msg_type_to_string(st->client.type), st->env->conf->retries + 1);
}

/* Sends the outstanding request again (one of its retries is already counted). */
static void retransmit(struct station *st) {
        ssize_t n;

        if (st->tx_pending) {
                /*
                 * The request has not even left yet (a full line): re-encoding
                 * it now would change the bytes under the part already written.
                 * Give it another timeout, counted as a try.
                 */
                arm_timeout(st, request_timeout(st));
                return;
        }
        n = sp_client_retransmit(&st->client);
        if (n < 0) {
                station_fail(st, OUTCOME_FAILED, "cannot retransmit %s: %s", sp_msg_type_to_string(st->client.type),
                             strerror((int)-n));
                return;
        }
        slog(st, LOG_DEBUG, 0, "retransmitting %s (seq %u)", sp_msg_type_to_string(st->client.type),
             st->client.seq);
        st->tx_off = 0;
        if (flush_tx(st) < 0) {
                station_close(st, "write failed");
                return;
        }
        arm_timeout(st, request_timeout(st));
}

static bool session_expired(const struct station *st) {
        return now_usec() >= st->session_start_us + (uint64_t)st->env->conf->session_ms * 1000;
}

static void on_timeout(uv_timer_t *t) {
        struct station *st = t->data;

        if (st->state == STATION_RESULT) {
                /* The verdict is recorded; telling the board is best effort. */
                st->client.pending = false;
                station_result_delivered(st);
                return;
        }
        if (!st->client.pending)
                return;
        if (session_expired(st)) {
                station_fail(st, OUTCOME_FAILED, "session exceeded %u ms at step %s; reseat the board",
                             st->env->conf->session_ms, station_state_names[st->state]);
                return;
        }
        if (st->retries_left == 0) {
                fail_tries(st);
                return;
        }
        st->retries_left--;
        retransmit(st);
}

/*
 * A frame failed the framing checks (PROTOCOL.md §2.3, §8.3). Up to
 * SP_BOOT_TEXT_MAX bytes before the board's first good frame are boot text
 * (ROM banners), not noise; anything else is line noise, and while a request
 * is outstanding most likely its corrupted answer: retransmit at once rather
 * than wait out the timeout, counted as one of the step's retries.
 */
static void on_bad_frame(struct station *st, int error) {
        const struct sp_parser_stats *ps = sp_parser_stats(st->parser);

        if (!st->seen_good_frame && ps->discarded_bytes <= SP_BOOT_TEXT_MAX) {
                slog(st, LOG_DEBUG, 0, "skipped %" PRIu64 " bytes of boot text", ps->discarded_bytes);
                return;
        }
        st->frame_errors++;
        if (!station_is_active(st) || st->state == STATION_COMMIT)
                return;
        if (st->frame_errors > st->env->conf->max_errors) {
                station_fail(st, OUTCOME_FAILED, "line noise: %u bad frames; check the cable and hub",
                             st->frame_errors);
                return;
        }
        if (!st->client.pending)
                return;
        st->step_bad_frames++;
        slog(st, LOG_DEBUG, 0, "%s answer to %s (seq %u)", error == -EMSGSIZE ? "oversize" : "corrupted",
             sp_msg_type_to_string(st->client.type), st->client.seq);
        if (st->state == STATION_RESULT) {
                /* RESULT is never retried: any answer, even a broken one, ends the run. */
                (void)uv_timer_stop(&st->timer);
                st->client.pending = false;
                station_result_delivered(st);
                return;
        }
        if (session_expired(st))
                return;         /* the timer, due now, says so */
        if (st->retries_left == 0) {
                (void)uv_timer_stop(&st->timer);
                fail_tries(st);
                return;
        }
        st->retries_left--;
        retransmit(st);
}
static int on_frame(const struct sp_frame *f, int error, void *userdata) {
        struct station *st = userdata;
        int r;

        if (st->closing)
                return -ECANCELED;      /* the rest of this read belongs to no session */
        if (error < 0) {
                on_bad_frame(st, error);
                return 0;
        }
        st->seen_good_frame = true;
        if (!st->client.pending)
                return 0;               /* nothing asked: late duplicate or noise */
        r = sp_client_match(&st->client, f);
        if (r == 0)
                return 0;               /* stale or replayed answer to an earlier request */
        (void)uv_timer_stop(&st->timer);
        st->rx_us = now_usec();
        if (r < 0 && st->state == STATION_RESULT) {
                /* PROTOCOL.md §6.8: whatever answers RESULT ends the run. */
                st->client.pending = false;
                slog(st, LOG_DEBUG, 0, "board answered RESULT with %s (version %u)",
                     sp_msg_type_to_string(f->type) ?: "an unknown message", f->version);
                station_result_delivered(st);
                return 0;
        }
        if (r < 0 && f->version != SP_PROTO_VERSION) {
                station_fail(st, OUTCOME_FAILED, "board answered %s with header version %u (station speaks %u)",
                             sp_msg_type_to_string(st->client.type), f->version, SP_PROTO_VERSION);
                return 0;
        }
        if (r < 0) {
                station_fail(st, OUTCOME_FAILED, "board answered %s with %s",
                             sp_msg_type_to_string(st->client.type),
                             sp_msg_type_to_string(f->type) ?: "an unknown message");
                return 0;
        }
        station_on_response(st, f);
        return 0;
}

static void on_poll(uv_poll_t *p, int status, int events) {
        struct station *st = p->data;

        if (status < 0) {
                station_close(st, "port error");
                return;
        }
        if (events & UV_WRITABLE) {
                if (flush_tx(st) < 0) {
                        station_close(st, "write failed");
                        return;
                }
        }
        if (events & (UV_READABLE | UV_DISCONNECT)) {
                for (int i = 0; i < READS_PER_WAKEUP && !st->closing; i++) {
                        ssize_t n = read(st->fd, st->rbuf, sizeof st->rbuf);
                        if (n > 0) {
                                sp_parser_feed(st->parser, st->rbuf, (size_t)n, on_frame, st);
                                if ((size_t)n < sizeof st->rbuf)
                                        break;
                                continue;
                        }
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        /* 0 or EIO: the board was unplugged (or the pty master closed). */
                        station_close(st, "unplugged");
                        return;
                }
        }
}

static void poll_update(struct station *st) {
        int ev = UV_READABLE | UV_DISCONNECT | (st->tx_pending ? UV_WRITABLE : 0);

        if (!st->poll_open || st->closing || ev == st->poll_events)
                return;
        st->poll_events = ev;
        (void)uv_poll_start(&st->poll, ev, on_poll);
}

/* --- life cycle ----------------------------------------------------------- */

void station_free(struct station *st) {
        if (!st)
                return;
        signing_ctx_unref(st->sign);
        issued_cert_done(&st->job.cert);
        csr_info_done(&st->job.csr);
        sp_parser_free(st->parser);
        if (st->txbuf)
                forget_tx(st);
        free(st->txbuf);
        free(st->payload);
        free(st->job.csr_der);
        free(st->path);
        free(st->slot);
        free(st->usb_location);
        free(st);
}

static void on_handle_closed(uv_handle_t *h) {
        struct station *st = h->data;

        if (h == (uv_handle_t *)&st->poll)
                st->poll_open = false;
        else
                st->timer_open = false;
        station_maybe_free(st);
}

void station_maybe_free(struct station *st) {
        if (!st->closing || st->poll_open || st->timer_open || st->busy > 0)
                return;
        if (st->fd >= 0) {
                serial_port_close(st->fd);
                st->fd = -1;
        }
        env_hook(st, station_gone, st);
}

void station_close(struct station *st, const char *why) {
        if (st->closing)
                return;
        if (station_is_active(st) && st->state != STATION_COMMIT && st->have_ident)
                snprintf(st->last_error, sizeof st->last_error, "session aborted at step %s: %s",
                         station_state_names[st->state], why);
        slog(st, station_is_active(st) && st->have_ident ? LOG_WARNING : LOG_DEBUG, 0, "port %s closed: %s",
             st->path, why);
        st->closing = true;
        if (station_is_active(st) && st->state != STATION_COMMIT && st->state != STATION_RESULT &&
            st->have_ident && !st->session_recorded) {
                st->outcome = OUTCOME_ABORTED;
                station_enter(st, STATION_COMMIT);
                st->abort_pending = true;       /* after the job or request in flight returns */
                station_closing_progress(st);
        }
        if (st->poll_open)
                uv_close((uv_handle_t *)&st->poll, on_handle_closed);
        if (st->timer_open)
                uv_close((uv_handle_t *)&st->timer, on_handle_closed);
        /* Handles already closed (failed start): free now if nothing is in flight. */
        station_maybe_free(st);
}

void station_shutdown(struct station *st) {
        st->shutting_down = true;
        if (!station_is_active(st) || (st->state == STATION_HELLO && !st->have_ident))
                station_close(st, "shutting down");
}

/* A station with its buffers and parser, no port yet. */
static int station_alloc(struct station **ret, const struct station_env *env, const struct station_info *info) {
        struct station *st;
        int r;

        st = calloc(1, sizeof *st);
        if (!st)
                return -ENOMEM;
        st->env = env;
        st->fd = -1;
        st->path = strdup(info->path);
        st->slot = strdup(info->slot);
        st->usb_location = info->usb_location ? strdup(info->usb_location) : NULL;
        st->payload_cap = env->conf->max_frame;
        st->payload = malloc(st->payload_cap);
        st->job.csr_der = malloc(st->payload_cap);
        st->txbuf = malloc(sp_frame_encoded_max(st->payload_cap));
        if (!st->path || !st->slot || (info->usb_location && !st->usb_location) ||
            !st->payload || !st->job.csr_der || !st->txbuf) {
                station_free(st);
                return -ENOMEM;
        }
        r = sp_parser_new(&st->parser, &(struct sp_limits) { .max_frame = env->conf->max_frame });
        if (r < 0) {
                station_free(st);
                return r;
        }
        *ret = st;
        return 0;
}

/* Starts the handles and the session on st->fd; on failure the station is freed (maybe later). */
static int station_begin(struct station *st) {
        const struct station_env *env = st->env;
        int r;

        sp_client_init(&st->client, st->txbuf, sp_frame_encoded_max(st->payload_cap), env_hook(st, session_seq));

        r = uv_poll_init(env->loop, &st->poll, st->fd);
        if (r < 0)
                goto fail;
        st->poll.data = st;
        st->poll_open = true;
        uv_timer_init(env->loop, &st->timer);
        st->timer.data = st;
        st->timer_open = true;
        st->poll_events = 0;
        poll_update(st);

        st->session_start_us = st->step_start_us = now_usec();
        st->session_start_ms = wallclock_msec();
        st->state = STATION_HELLO;
        station_send_hello(st);
        return 0;
fail:
        /* Only the poll handle can fail, before the timer exists. */
        if (st->fd >= 0)
                close(st->fd);
        st->fd = -1;
        station_free(st);
        return r;
}

int station_new(struct station **ret, const struct station_env *env, const struct station_info *info) {
        struct station *st;
        int r;

        r = station_alloc(&st, env, info);
        if (r < 0)
                return r;
        r = serial_port_open(st->path, env->conf->baud, &st->rdev);
        if (r < 0) {
                station_free(st);
                return r;
        }
        st->fd = r;
        /*
         * The path may have been re-pointed between the manager's check and
         * open() (a udev or simulator symlink): talk only to the device that
         * was checked, which no other port holds. A change after open() comes
         * as a directory event; this port keeps the device it opened.
         */
        if (st->rdev != info->rdev || env_hook(st, rdev_in_use, st->rdev)) {
                serial_port_close(st->fd);
                st->fd = -1;
                station_free(st);
                return -ESTALE;
        }
        st->wire_timed = true;          /* serial_port_open() set its termios: a tty */
        r = station_begin(st);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

int station_new_fd(struct station **ret, const struct station_env *env, const struct station_info *info, int fd) {
        struct station *st;
        int r;

        r = station_alloc(&st, env, info);
        if (r < 0) {
                close(fd);
                return r;
        }
        st->fd = fd;
        st->rdev = info->rdev;
        st->wire_timed = isatty(fd);
        r = station_begin(st);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

void station_status(const struct station *st, cJSON *array) {
        cJSON *o = cJSON_CreateObject();
        uint64_t now = now_usec();

        cJSON_AddStringToObject(o, "slot", st->slot);
        cJSON_AddStringToObject(o, "port", st->path);
        cJSON_AddStringToObject(o, "state", station_is_active(st) ? "busy" :
                                            st->state == STATION_DONE ? "done" : "failed");
        cJSON_AddStringToObject(o, "step", station_state_names[st->state]);
        cJSON_AddStringToObject(o, "serial", st->serial);
        if (st->state == STATION_DONE || st->state == STATION_FAILED || st->state == STATION_RESULT ||
            st->state == STATION_COMMIT)
                cJSON_AddStringToObject(o, "outcome", outcome_to_string(st->outcome));
        cJSON_AddNumberToObject(o, "elapsed_ms",
                                (double)(((st->session_end_us ?: now) - st->session_start_us) / 1000));
        cJSON_AddStringToObject(o, "last_error", st->last_error);
        cJSON_AddItemToArray(array, o);
}
