/* SPDX-License-Identifier: MIT */
/* Fuzz target: a station's session state machine on a socketpair, the board's answers chosen by the input. */

/*
 * The station is the real one (station*.c) with a stub environment and a stub
 * database (as in test-station-harness.c, without cmocka); the issuer is real
 * (a CA made once with ca_init()), so is the board behind the far end:
 * provd-boardsim's secure element and the board library.
 *
 * Input: cfg(1), then one record per request the station sends:
 *   op(1) % 6: 0 the real board answers
 *              1 a frame the harness encodes with the request's seq:
 *                type(1) (0 = the request's response type) flags(1) len(1) payload(len)
 *              2 raw bytes: len(1) bytes(len)
 *              3 silence (the request times out)
 *              4 the real answer with one byte changed: pos(2) xor(1)
 *              5 the real answer twice, then the next record's bytes as noise
 * cfg: bit 0 the hourly budget is spent, bit 1 the serial is busy on another
 * port, bit 2 the issuance record fails, bit 3 [profile] lock, bit 4 one
 * retry instead of none, bits 5-6 which board identity.
 * When the input runs out the board falls silent. Checks: the session ends
 * (done or failed) before the session limit plus a margin, one outcome is
 * recorded, every job and database request has ended when the station is
 * gone, and nothing leaks.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "board.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/signer.h"
#include "conf.h"
#include "db.h"
#include "log.h"
#include "seed.h"
#include "signing-ctx.h"
#include "station.h"
#include "station-proto/sp-board.h"
#include "station-proto/sp.h"
#include "util.h"

#define MAX_REQS 16
#define SESSION_MS 400
#define GUARD_MS (SESSION_MS + 5000)    /* a session still running then never ends */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fx {
        uv_loop_t loop;
        struct conf conf;
        struct station_env env;
        struct station *st;
        unsigned jobs, sessions, outcomes;
        bool budget_empty, serial_busy, gone;
        int fail_issuance;

        uv_async_t db_async;
        struct db_req *queue[MAX_REQS];
        size_t n_queue;
        unsigned n_outcome_records;

        int board_fd;
        uv_poll_t board_poll;
        struct board board;
        struct spb_board spb;
        uint8_t rx[SPB_RX_BUF(4096)], tx[SPB_TX_BUF(4096)], work[4096];
        struct sp_parser *req_parser;
        uint16_t req_seq;
        uint8_t req_type;
        bool have_req;
        uint8_t *capture;               /* NULL: the board writes to the socket */
        size_t capture_len;

        const uint8_t *in;
        size_t in_len, in_off;

        uv_timer_t guard;
        bool guard_fired;
};

static struct seed seed;
static struct signing_ctx *ctx;

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-station: %s\n", what);
                abort();
        }
}

/* --- stub environment -------------------------------------------------------- */

static void h_job_begin(void *u) {
        ((struct fx *)u)->jobs++;
}

static void h_job_end(void *u) {
        struct fx *f = u;
        check(f->jobs > 0, "job_end without job_begin");
        f->jobs--;
}

static uint16_t h_session_seq(void *u) {
        ((struct fx *)u)->sessions++;
        return 0x4000;
}

static void h_session_done(void *u, enum outcome o) {
        check(o < _OUTCOME_MAX, "bad outcome");
        ((struct fx *)u)->outcomes++;
}

static int h_take_token(void *u, const struct station *st, char *why, size_t whylen) {
        if (!((struct fx *)u)->budget_empty)
                return 0;
        snprintf(why, whylen, "issuance budget spent (fuzz)");
        return -EDQUOT;
}

static struct signing_ctx *h_signing_ctx(void *u) {
        return ctx;
}

static void h_cert_issued(void *u) {
}

static void h_latency(void *u, uint64_t usec) {
}

static bool h_serial_in_use(void *u, struct station *self) {
        return ((struct fx *)u)->serial_busy;
}

static bool h_rdev_in_use(void *u, dev_t rdev) {
        return false;
}

static void h_station_gone(void *u, struct station *st) {
        struct fx *f = u;
        check(st == f->st, "another station gone");
        check(f->jobs == 0, "station gone with jobs in flight");
        station_free(st);
        f->st = NULL;
        f->gone = true;
}

static void h_db_submit(void *u, struct db_req *req) {
        struct fx *f = u;
        check(f->n_queue < MAX_REQS, "too many database requests at once");
        f->queue[f->n_queue++] = req;
        uv_async_send(&f->db_async);
}

/* Answers every queued request as the database would (never inside db_submit()). */
static void on_db_async(uv_async_t *a) {
        struct fx *f = a->data;

        while (f->n_queue > 0) {
                struct db_req *req = f->queue[0];
                memmove(f->queue, f->queue + 1, --f->n_queue * sizeof(*f->queue));
                req->result = 0;
                switch (req->type) {
                case DB_LOOKUP_DEVICE: {
                        char serial[DB_SERIAL_MAX];
                        memcpy(serial, req->lookup.serial, sizeof serial);
                        req->lookup = (struct db_lookup_device) {};
                        memcpy(req->lookup.serial, serial, sizeof serial);
                        break;
                }
                case DB_RECORD_ISSUANCE:
                        req->result = f->fail_issuance;
                        if (req->result == 0)
                                req->issuance.cert_id = 7;
                        break;
                case DB_RECORD_OUTCOME:
                        f->n_outcome_records++;
                        break;
                default:
                        check(false, "unexpected database request");
                }
                if (req->result < 0)
                        snprintf(req->errmsg, sizeof req->errmsg, "stub database error");
                req->done(req);
        }
}

/* --- the board ------------------------------------------------------------------ */

static int op_identify(void *c, struct spb_identity *ret) {
        return board_identify(&((struct fx *)c)->board, ret);
}

static int op_get_csr(void *c, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                      size_t *ret_len) {
        return board_get_csr(&((struct fx *)c)->board, new_key, cn, cn_len, der, cap, ret_len);
}

static int op_store_certs(void *c, const struct spb_certs *certs) {
        return board_store_certs(&((struct fx *)c)->board, certs);
}

static int op_store_config(void *c, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        return board_store_config(&((struct fx *)c)->board, key, key_len, value, value_len);
}

static int op_prove(void *c, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                    uint8_t ret_sig[SP_SIG_LEN]) {
        return board_prove(&((struct fx *)c)->board, nonce, ret_hash, ret_sig);
}

static int op_lock(void *c) {
        return board_lock(&((struct fx *)c)->board);
}

static void op_result(void *c, uint8_t result) {
}

static void send_bytes(struct fx *f, const uint8_t *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(f->board_fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;         /* the station closed, or its buffer is full: bytes lost on the line */
                buf += n;
                len -= (size_t)n;
        }
}

static void op_write(void *c, const uint8_t *buf, size_t len) {
        struct fx *f = c;

        if (!f->capture) {
                send_bytes(f, buf, len);
                return;
        }
        if (len > SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD) - f->capture_len)
                len = SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD) - f->capture_len;
        memcpy(f->capture + f->capture_len, buf, len);
        f->capture_len += len;
}

static const struct spb_ops board_ops = {
        .identify = op_identify,
        .get_csr = op_get_csr,
        .store_certs = op_store_certs,
        .store_config = op_store_config,
        .prove = op_prove,
        .lock = op_lock,
        .result = op_result,
        .write = op_write,
};

static int on_request(const struct sp_frame *fr, int error, void *userdata) {
        struct fx *f = userdata;

        if (fr && error == 0) {
                f->req_seq = fr->seq;
                f->req_type = fr->type;
                f->have_req = true;
        }
        return 0;
}

static bool take(struct fx *f, size_t n, const uint8_t **ret) {
        if (f->in_len - f->in_off < n)
                return false;
        *ret = f->in + f->in_off;
        f->in_off += n;
        return true;
}

static uint8_t wire[SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD)], captured[SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD)];

static void real_answer(struct fx *f, const uint8_t *req, size_t len) {
        f->capture = captured;
        f->capture_len = 0;
        spb_feed(&f->spb, req, len);
        f->capture = NULL;
}

static void on_board(uv_poll_t *p, int status, int events) {
        struct fx *f = p->data;
        uint8_t buf[8192];
        const uint8_t *b;
        ssize_t n;

        n = read(f->board_fd, buf, sizeof buf);
        if (n <= 0) {
                uv_poll_stop(p);        /* the station closed its end */
                return;
        }
        f->have_req = false;
        (void)sp_parser_feed(f->req_parser, buf, (size_t)n, on_request, f);
        if (!take(f, 1, &b))
                return;                 /* the input is spent: silence */
        switch (b[0] % 6) {
        case 0:
                spb_feed(&f->spb, buf, (size_t)n);
                break;
        case 1: {
                const uint8_t *h, *payload;
                struct sp_frame fr = { .version = SP_PROTO_VERSION, .seq = f->req_seq };
                ssize_t w;

                if (!take(f, 3, &h))
                        return;
                if (!take(f, h[2], &payload))
                        payload = NULL;
                fr.type = h[0] ? h[0] : (uint8_t)(f->req_type | SP_MSG_RESPONSE);
                fr.flags = h[1];
                fr.len = payload ? h[2] : 0;
                fr.payload = payload;
                w = sp_frame_encode(&fr, wire, sizeof wire);
                if (w > 0)
                        send_bytes(f, wire, (size_t)w);
                break;
        }
        case 2: {
                const uint8_t *l, *bytes;
                if (take(f, 1, &l) && take(f, l[0], &bytes))
                        send_bytes(f, bytes, l[0]);
                break;
        }
        case 3:
                break;
        case 4: {
                const uint8_t *m;
                real_answer(f, buf, (size_t)n);
                if (take(f, 3, &m) && f->capture_len > 0)
                        captured[((size_t)m[0] << 8 | m[1]) % f->capture_len] ^= m[2] ? m[2] : 1;
                send_bytes(f, captured, f->capture_len);
                break;
        }
        case 5: {
                const uint8_t *l, *bytes;
                real_answer(f, buf, (size_t)n);
                send_bytes(f, captured, f->capture_len);
                send_bytes(f, captured, f->capture_len);
                if (take(f, 1, &l) && take(f, l[0], &bytes))
                        send_bytes(f, bytes, l[0]);
                break;
        }
        }
}

/* --- one session ------------------------------------------------------------------ */

static const struct station_env_ops env_ops = {
        .job_begin = h_job_begin,
        .job_end = h_job_end,
        .db_submit = h_db_submit,
        .session_seq = h_session_seq,
        .session_done = h_session_done,
        .issuance_check = h_take_token,
        .take_issuance_token = h_take_token,
        .signing_ctx = h_signing_ctx,
        .cert_issued = h_cert_issued,
        .record_latency = h_latency,
        .serial_in_use = h_serial_in_use,
        .rdev_in_use = h_rdev_in_use,
        .station_gone = h_station_gone,
};

static void on_guard(uv_timer_t *t) {
        ((struct fx *)t->data)->guard_fired = true;
}

static void global_setup(void) {
        struct signer *s;
        struct issuer *is;
        struct cert_profile prof;
        char dir[] = "/tmp/provd-fuzz-station-XXXXXX", key[80], cert[80], root[80], uri[90], cmd[120];

        log_set_max_level(-1);  /* quiet: the station logs every failure the fuzzer provokes */
        seed_from_string(&seed, "fuzz-station");
        check(board_crypto_init() == 0, "board_crypto_init");
        check(mkdtemp(dir) != NULL, "mkdtemp");
        check(ca_init(dir, NULL) == 0, "ca_init");
        snprintf(key, sizeof key, "%s/signer.key", dir);
        snprintf(uri, sizeof uri, "file:%s", key);
        snprintf(cert, sizeof cert, "%s/signer.pem", dir);
        snprintf(root, sizeof root, "%s/root.pem", dir);
        check(signer_open(&s, uri, cert, NULL) == 0, "signer_open");
        check(signer_set_root(s, root) == 0, "signer_set_root");
        cert_profile_init(&prof);
        prof.no_expiry = true;
        check(issuer_new(&is, s, &prof) == 0, "issuer_new");
        check(signing_ctx_new(&ctx, is, 11) == 0, "signing_ctx_new");
        issuer_free(is);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        check(system(cmd) == 0, "rm");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct fx *f;
        uint8_t cfg;
        int sv[2];

        if (size < 1 || size > 8192)
                return 0;
        if (!ctx)
                global_setup();
        cfg = data[0];
        f = calloc(1, sizeof *f);
        check(f != NULL, "calloc");
        f->in = data + 1;
        f->in_len = size - 1;
        f->budget_empty = cfg & 1;
        f->serial_busy = cfg & 2;
        f->fail_issuance = (cfg & 4) ? -EIO : 0;

        check(uv_loop_init(&f->loop) == 0, "uv_loop_init");
        conf_init(&f->conf);
        /* Short timeouts: an unanswered request costs milliseconds. */
        f->conf.response_ms = 5;
        f->conf.keygen_ms = 20;
        f->conf.retries = (cfg & 16) ? 1 : 0;
        f->conf.session_ms = SESSION_MS;
        f->conf.lock = cfg & 8;
        f->env = (struct station_env) { .loop = &f->loop, .conf = &f->conf, .ops = &env_ops, .userdata = f };
        uv_async_init(&f->loop, &f->db_async, on_db_async);
        f->db_async.data = f;
        uv_timer_init(&f->loop, &f->guard);
        f->guard.data = f;
        uv_timer_start(&f->guard, on_guard, GUARD_MS, 0);
        check(board_init(&f->board, &seed, 1 + ((cfg >> 5) & 3), 0, NULL, NULL) == 0, "board_init");
        check(spb_init(&f->spb, &board_ops, f, f->rx, sizeof f->rx, f->tx, sizeof f->tx, f->work,
                       sizeof f->work) == SPB_OK, "spb_init");
        check(sp_parser_new(&f->req_parser, &(struct sp_limits) { .max_frame = 4096 }) == 0, "parser");

        check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        f->board_fd = sv[1];
        uv_poll_init(&f->loop, &f->board_poll, f->board_fd);
        f->board_poll.data = f;
        uv_poll_start(&f->board_poll, UV_READABLE, on_board);
        check(station_new_fd(&f->st, &f->env, &(struct station_info) { .path = "/dev/fuzz0", .slot = "F1" },
                             sv[0]) == 0, "station_new_fd");

        /* The session must end on its own: done, failed, or at the session limit. */
        while (f->st && station_is_active(f->st) && !f->guard_fired)
                uv_run(&f->loop, UV_RUN_ONCE);
        if (f->guard_fired && f->st) {
                cJSON *a = cJSON_CreateArray();
                char *t;
                station_status(f->st, a);
                t = cJSON_PrintUnformatted(a);
                fprintf(stderr, "fuzz-station: still running: %s\n", t);
                free(t);
                cJSON_Delete(a);
        }
        check(!f->guard_fired, "the session did not end");
        if (f->st)
                station_close(f->st, "unplugged");
        while (!f->gone && !f->guard_fired)
                uv_run(&f->loop, UV_RUN_ONCE);
        check(f->gone, "the station did not go");
        check(f->jobs == 0 && f->n_queue == 0, "work left in flight");
        check(f->sessions == 1 && f->outcomes == 1, "not exactly one outcome for the session");
        check(f->n_outcome_records <= 1, "outcome recorded twice");

        uv_close((uv_handle_t *)&f->board_poll, NULL);
        uv_close((uv_handle_t *)&f->db_async, NULL);
        uv_close((uv_handle_t *)&f->guard, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        check(uv_loop_close(&f->loop) == 0, "uv_loop_close");
        close(f->board_fd);
        sp_parser_free(f->req_parser);
        board_deinit(&f->board);
        conf_deinit(&f->conf);
        free(f);
        f = NULL;
        return 0;
}
