/* SPDX-License-Identifier: MIT */
/* The station tests' harness (test-station-harness.h). */

/*
 * Seams: the station environment's hooks (station-env.h) are the stubs. The
 * database is the env's db_submit hook: requests are answered on the loop
 * (never inside db_submit(), as the real writer does), automatically or by
 * the test. The issuer is real (two CAs made with ca_init(), file signers);
 * the board is provd-boardsim's secure element behind the project's board
 * library (spb_*), so every CSR, certificate and proof is real crypto.
 */

#include "test-station-harness.h"

struct seed test_seed;
struct signing_ctx *ctx_a, *ctx_b;
static char *tmpdir;

/* --- stub environment -------------------------------------------------------- */

static void h_job_begin(void *u) {
        struct fx *f = u;
        f->jobs++;
        f->jobs_max = MAX(f->jobs_max, f->jobs);
}

static void h_job_end(void *u) {
        struct fx *f = u;
        assert_true(f->jobs > 0);
        f->jobs--;
}

static uint16_t h_session_seq(void *u) {
        struct fx *f = u;
        f->sessions++;
        return 0x4000;
}

static void h_session_done(void *u, enum outcome o) {
        struct fx *f = u;
        assert_true(o < _OUTCOME_MAX);
        f->outcomes[o]++;
}

static int h_check_issuance(void *u, const struct station *st, char *why, size_t whylen) {
        return 0;
}

static int h_take_token(void *u, const struct station *st, char *why, size_t whylen) {
        struct fx *f = u;

        if (!f->budget_empty)
                return 0;
        snprintf(why, whylen, "issuance budget is spent");
        return -EDQUOT;
}

static struct signing_ctx *h_signing_ctx(void *u) {
        struct fx *f = u;
        return f->current;
}

static void h_cert_issued(void *u) {
        struct fx *f = u;
        f->certs_issued++;
}

static void h_latency(void *u, uint64_t usec) {
        struct fx *f = u;
        f->latency_samples++;
}

static bool h_serial_in_use(void *u, struct station *self) {
        struct fx *f = u;
        return f->serial_busy;
}

static bool h_rdev_in_use(void *u, dev_t rdev) {
        return false;
}

static void h_station_gone(void *u, struct station *st) {
        struct fx *f = u;
        assert_ptr_equal(st, f->st);
        assert_int_equal(f->jobs, 0);   /* nothing in flight refers to it any more */
        station_free(st);
        f->st = NULL;
        f->gone = true;
}

/* --- stub database ----------------------------------------------------------- */

static void h_db_submit(void *u, struct db_req *req) {
        struct fx *f = u;

        assert_true(f->n_queue < MAX_REQS && f->n_seen < MAX_REQS);
        f->queue[f->n_queue++] = req;
        f->seen[f->n_seen++] = req->type;
        if (!f->db_manual)
                uv_async_send(&f->db_async);
}

/* Answers the oldest queued request as a database would. */
void db_answer(struct fx *f, int result) {
        struct db_req *req;

        assert_true(f->n_queue > 0);
        req = f->queue[0];
        memmove(f->queue, f->queue + 1, --f->n_queue * sizeof(*f->queue));
        req->result = result;
        if (result < 0)
                snprintf(req->errmsg, sizeof req->errmsg, "stub database error");
        switch (req->type) {
        case DB_LOOKUP_DEVICE: {
                char serial[DB_SERIAL_MAX];
                memcpy(serial, req->lookup.serial, sizeof serial);
                req->lookup = f->lookup;
                memcpy(req->lookup.serial, serial, sizeof serial);
                if (f->lookup.cert_der_len) {   /* the station takes the DER (malloc()ed) */
                        req->lookup.cert_der = malloc(f->lookup.cert_der_len);
                        assert_non_null(req->lookup.cert_der);
                        memcpy(req->lookup.cert_der, f->issued_der, f->lookup.cert_der_len);
                }
                break;
        }
        case DB_RECORD_ISSUANCE:
                f->issuance_runs++;
                f->issuance_signer_id = req->issuance.signer_id;
                assert_true(req->issuance.cert_der_len <= sizeof f->issued_der);
                memcpy(f->issued_der, req->issuance.cert_der, req->issuance.cert_der_len);
                f->issued_len = req->issuance.cert_der_len;
                snprintf(f->issued_sha256, sizeof f->issued_sha256, "%s", req->issuance.cert_sha256);
                snprintf(f->issued_thing, sizeof f->issued_thing, "%s", req->issuance.thing_name);
                if (result >= 0)
                        req->issuance.cert_id = 7;
                break;
        case DB_RECORD_OUTCOME:
                f->outcome_runs++;
                f->recorded = req->outcome.outcome;
                f->have_recorded = true;
                snprintf(f->recorded_error, sizeof f->recorded_error, "%s", req->outcome.error);
                snprintf(f->recorded_step, sizeof f->recorded_step, "%s", req->outcome.step);
                break;
        default:
                fail_msg("unexpected request type %d", req->type);
        }
        req->done(req);
}

static void on_db_async(uv_async_t *a) {
        struct fx *f = a->data;

        while (!f->db_manual && f->n_queue > 0) {
                enum db_req_type t = f->queue[0]->type;
                int r = 0;

                if (t == DB_RECORD_ISSUANCE &&
                    (f->fail_issuance_times == 0 || f->issuance_runs < f->fail_issuance_times))
                        r = f->fail_issuance;
                else if (t == DB_RECORD_OUTCOME && f->fail_outcome_times > 0) {
                        f->fail_outcome_times--;
                        r = f->fail_outcome;
                }
                db_answer(f, r);
        }
}

/* --- the board ------------------------------------------------------------------ */

static int op_identify(void *ctx, struct spb_identity *ret) {
        struct fx *f = ctx;
        int r = board_identify(&f->board, ret);

        ret->caps &= ~f->caps_clear;
        return r;
}

static int op_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                      size_t *ret_len) {
        struct fx *f = ctx;
        return board_get_csr(&f->board, new_key, cn, cn_len, der, cap, ret_len);
}

static int op_store_certs(void *ctx, const struct spb_certs *certs) {
        struct fx *f = ctx;
        return board_store_certs(&f->board, certs);
}

static int op_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        struct fx *f = ctx;
        return board_store_config(&f->board, key, key_len, value, value_len);
}

static int op_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                    uint8_t ret_sig[SP_SIG_LEN]) {
        struct fx *f = ctx;
        return board_prove(&f->board, nonce, ret_hash, ret_sig);
}

static int op_lock(void *ctx) {
        struct fx *f = ctx;
        return board_lock(&f->board);
}

static void op_result(void *ctx, uint8_t result) {
        struct fx *f = ctx;
        f->have_result = true;
        f->result = result;
}

void board_raw(struct fx *f, const void *data, size_t len) {
        const uint8_t *buf = data;

        while (len > 0) {
                ssize_t n = write(f->board_fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                assert_true(n > 0);     /* a socketpair's buffer holds any one response */
                buf += n;
                len -= (size_t)n;
        }
}

static int on_tamper_frame(const struct sp_frame *fr, int error, void *userdata) {
        struct fx *f = userdata;
        struct tamper *t = &f->t;

        assert_int_equal(error, 0);     /* the board library writes good frames */
        *t = (struct tamper) {
                .request = f->requests,
                .version = fr->version, .type = fr->type, .flags = fr->flags, .seq = fr->seq,
                .len = fr->len, .len_field = -1,
        };
        memcpy(t->payload, fr->payload, fr->len);
        return 0;
}

/* COBS (PROTOCOL.md §2.1) of @n bytes between two delimiters; returns the wire length. */
static size_t cobs_frame(const uint8_t *in, size_t n, uint8_t *out) {
        size_t o = 2, code_at = 1;
        uint8_t code = 1;

        out[0] = 0;
        for (size_t i = 0; i < n; i++) {
                if (in[i] == 0) {
                        out[code_at] = code;
                        code_at = o++;
                        code = 1;
                        continue;
                }
                out[o++] = in[i];
                if (++code == 0xff) {
                        out[code_at] = code;
                        code_at = o++;
                        code = 1;
                }
        }
        out[code_at] = code;
        out[o++] = 0;
        return o;
}

/* Encodes @t by hand (any length field, version, CRC) and writes it from the board's end. */
void board_send(struct fx *f, const struct tamper *t) {
        static uint8_t frame[4096 + SP_FRAME_OVERHEAD], wire[SP_ENCODED_MAX(sizeof frame)];
        uint16_t lf;
        uint32_t crc;
        size_t n;

        assert_true(t->len <= sizeof t->payload);
        lf = t->len_field < 0 ? (uint16_t)t->len : (uint16_t)t->len_field;
        frame[0] = t->version;
        frame[1] = t->type;
        frame[2] = t->flags;
        frame[3] = (uint8_t)(t->seq >> 8);
        frame[4] = (uint8_t)t->seq;
        frame[5] = (uint8_t)(lf >> 8);
        frame[6] = (uint8_t)lf;
        memcpy(frame + SP_HEADER_LEN, t->payload, t->len);
        n = SP_HEADER_LEN + t->len;
        crc = sp_crc32(0, frame, n) ^ (t->bad_crc ? 1u : 0u);
        frame[n++] = (uint8_t)(crc >> 24);
        frame[n++] = (uint8_t)(crc >> 16);
        frame[n++] = (uint8_t)(crc >> 8);
        frame[n++] = (uint8_t)crc;
        board_raw(f, wire, cobs_frame(frame, n, wire));
}

/* The board's response through the test's tamper(): decoded, changed, encoded again. */
static void tamper_write(struct fx *f, const uint8_t *buf, size_t len) {
        if (!f->tamper_parser)
                assert_int_equal(sp_parser_new(&f->tamper_parser, &(struct sp_limits) { .max_frame = 8192 }), 0);
        assert_int_equal(sp_parser_feed(f->tamper_parser, buf, len, on_tamper_frame, f), (ssize_t)len);
        f->tampered++;
        f->tamper(f, &f->t);
        if (!f->t.drop)
                board_send(f, &f->t);
}

static void op_write(void *ctx, const uint8_t *buf, size_t len) {
        struct fx *f = ctx;

        if (f->tamper)
                tamper_write(f, buf, len);
        else
                board_raw(f, buf, len);
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

static void on_board(uv_poll_t *p, int status, int events) {
        struct fx *f = p->data;
        uint8_t buf[8192];
        ssize_t n;

        n = read(f->board_fd, buf, sizeof buf);
        if (n <= 0) {
                uv_poll_stop(p);        /* the station closed its end */
                return;
        }
        f->requests++;
        if (f->requests == f->drop_request || (f->mute_from && f->requests >= f->mute_from))
                return;
        spb_feed(&f->spb, buf, (size_t)n);
}

/* --- fixture ------------------------------------------------------------------- */

static void on_guard(uv_timer_t *t) {
        struct fx *f = t->data;
        f->guard_fired = true;
}

static void on_check(uv_check_t *c) {
        struct fx *f = c->data;
        cJSON *a, *o;

        if (!f->close_at_step || f->closed_at_step || !f->st)
                return;
        a = cJSON_CreateArray();
        station_status(f->st, a);
        o = cJSON_GetArrayItem(a, 0);
        if (streq(cJSON_GetStringValue(cJSON_GetObjectItem(o, "step")), f->close_at_step)) {
                f->closed_at_step = true;
                station_close(f->st, "unplugged");
        }
        cJSON_Delete(a);
}

static const struct station_env_ops env_ops = {
        .job_begin = h_job_begin,
        .job_end = h_job_end,
        .db_submit = h_db_submit,
        .session_seq = h_session_seq,
        .session_done = h_session_done,
        .issuance_check = h_check_issuance,
        .take_issuance_token = h_take_token,
        .signing_ctx = h_signing_ctx,
        .cert_issued = h_cert_issued,
        .record_latency = h_latency,
        .serial_in_use = h_serial_in_use,
        .rdev_in_use = h_rdev_in_use,
        .station_gone = h_station_gone,
};

int setup(void **state) {
        struct fx *f = calloc(1, sizeof *f);

        assert_non_null(f);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        conf_init(&f->conf);
        /* Short timeouts: the retry paths run in milliseconds. */
        f->conf.response_ms = 40;
        f->conf.keygen_ms = 100;
        f->conf.retries = 2;
        f->conf.session_ms = 60000;
        f->env = (struct station_env) { .loop = &f->loop, .conf = &f->conf, .ops = &env_ops, .userdata = f };
        f->current = ctx_a;
        uv_async_init(&f->loop, &f->db_async, on_db_async);
        f->db_async.data = f;
        uv_timer_init(&f->loop, &f->guard);
        f->guard.data = f;
        uv_timer_start(&f->guard, on_guard, GUARD_MS, 0);
        uv_check_init(&f->loop, &f->check);
        f->check.data = f;
        uv_check_start(&f->check, on_check);
        assert_int_equal(board_init(&f->board, &test_seed, 1, 0, NULL, NULL), 0);
        assert_int_equal(spb_init(&f->spb, &board_ops, f, f->rx, sizeof f->rx, f->tx, sizeof f->tx,
                                  f->work, sizeof f->work), SPB_OK);
        f->board_fd = -1;
        *state = f;
        return 0;
}

void board_frame(struct fx *f, size_t max_frame) {
        assert_true(max_frame <= sizeof f->rx);
        assert_int_equal(spb_init(&f->spb, &board_ops, f, f->rx, max_frame, f->tx, sizeof f->tx,
                                  f->work, max_frame), SPB_OK);
}

/* Plugs the board in: a socketpair, one end to the station, the other to the board library. */
void plug(struct fx *f) {
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        f->board_fd = sv[1];
        uv_poll_init(&f->loop, &f->board_poll, f->board_fd);
        f->board_poll.data = f;
        uv_poll_start(&f->board_poll, UV_READABLE, on_board);
        assert_int_equal(station_new_fd(&f->st, &f->env,
                                        &(struct station_info) { .path = "/dev/test0", .slot = "A1" }, sv[0]), 0);
        f->gone = false;
}

bool run_until(struct fx *f, bool (*cond)(struct fx *f)) {
        while (!cond(f) && !f->guard_fired)
                uv_run(&f->loop, UV_RUN_ONCE);
        return cond(f);
}

bool is_recorded(struct fx *f) {
        return f->have_recorded;
}

bool is_over(struct fx *f) {
        return f->st && !station_is_active(f->st);
}

bool is_gone(struct fx *f) {
        return f->gone;
}

bool has_queued(struct fx *f) {
        return f->n_queue > 0;
}

static void on_board_closed(uv_handle_t *h) {
        struct fx *f = h->data;
        f->board_closed = true;
}

static bool board_is_closed(struct fx *f) {
        return f->board_closed;
}

/* Unplugs the board (the station closes and is gone) and plugs it, or a new one with identity @idx, back. */
void replug_board(struct fx *f, uint32_t idx, bool same) {
        if (f->st) {
                station_close(f->st, "unplugged");
                assert_true(run_until(f, is_gone));
        }
        f->board_closed = false;
        uv_close((uv_handle_t *)&f->board_poll, on_board_closed);
        assert_true(run_until(f, board_is_closed));
        close(f->board_fd);
        f->board_fd = -1;
        if (!same) {
                board_deinit(&f->board);
                assert_int_equal(board_init(&f->board, &test_seed, idx, 0, NULL, NULL), 0);
        }
        spb_reset(&f->spb);
        f->have_recorded = false;
        f->have_result = false;
        f->requests = 0;
        f->n_seen = 0;
        plug(f);
}

void replug(struct fx *f, uint32_t idx) {
        replug_board(f, idx, false);
}

int teardown(void **state) {
        struct fx *f = *state;

        if (f->st) {
                station_close(f->st, "test over");
                f->db_manual = false;
                on_db_async(&f->db_async);
                assert_true(run_until(f, is_gone));
        }
        if (f->board_fd >= 0) {
                uv_close((uv_handle_t *)&f->board_poll, NULL);
                close(f->board_fd);
        }
        uv_close((uv_handle_t *)&f->db_async, NULL);
        uv_close((uv_handle_t *)&f->guard, NULL);
        uv_close((uv_handle_t *)&f->check, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        assert_int_equal(f->jobs, 0);
        board_deinit(&f->board);
        conf_deinit(&f->conf);
        sp_parser_free(f->tamper_parser);
        free(f);
        return 0;
}

const char *station_step(struct fx *f) {
        static char step[32];
        cJSON *a = cJSON_CreateArray(), *o;

        station_status(f->st, a);
        o = cJSON_GetArrayItem(a, 0);
        snprintf(step, sizeof step, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(o, "step")));
        cJSON_Delete(a);
        return step;
}

void assert_seen(struct fx *f, size_t n, ...) {
        va_list ap;

        assert_int_equal(f->n_seen, n);
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(f->seen[i], va_arg(ap, int));
        va_end(ap);
}

int group_setup(void **state) {
        struct signer *s;
        struct issuer *is;
        struct cert_profile prof;
        char dir[2][512];

        seed_from_string(&test_seed, "test-station");
        assert_int_equal(board_crypto_init(), 0);
        tmpdir = strdup("/tmp/provd-test-station-XXXXXX");
        assert_non_null(tmpdir);
        assert_non_null(mkdtemp(tmpdir));
        for (unsigned i = 0; i < 2; i++) {
                char key[1100], cert[1100], root[1100], uri[1120];

                snprintf(dir[i], sizeof dir[i], "%s/ca%u", tmpdir, i);
                assert_int_equal(mkdir(dir[i], 0700), 0);
                assert_int_equal(ca_init(dir[i], NULL), 0);
                snprintf(key, sizeof key, "%s/signer.key", dir[i]);
                snprintf(uri, sizeof uri, "file:%s", key);
                snprintf(cert, sizeof cert, "%s/signer.pem", dir[i]);
                snprintf(root, sizeof root, "%s/root.pem", dir[i]);
                assert_int_equal(signer_open(&s, uri, cert, NULL), 0);
                assert_int_equal(signer_set_root(s, root), 0);
                cert_profile_init(&prof);
                prof.no_expiry = true;
                assert_int_equal(issuer_new(&is, s, &prof), 0);
                assert_int_equal(signing_ctx_new(i == 0 ? &ctx_a : &ctx_b, is, i == 0 ? 11 : 22), 0);
                issuer_free(is);        /* the context holds its own reference */
        }
        assert_true(ctx_a->have_root_pubkey && ctx_b->have_root_pubkey);
        assert_false(ctx_a->chain_len == ctx_b->chain_len &&
                     memcmp(ctx_a->chain_der, ctx_b->chain_der, ctx_a->chain_len) == 0);
        *state = NULL;
        return 0;
}

int group_teardown(void **state) {
        char cmd[600];

        ctx_a = signing_ctx_unref(ctx_a);
        ctx_b = signing_ctx_unref(ctx_b);
        board_crypto_deinit();
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
        free(tmpdir);
        return 0;
}

