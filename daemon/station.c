/* SPDX-License-Identifier: MIT */
/* One port and the provisioning session of the board on it. */

/*
 * Threads: everything here runs on the loop thread except the bodies of the
 * two worker jobs (CSR validation + issuance, proof verification), which
 * only touch st->job. Database requests run on the writer thread and come
 * back through their done() callback on the loop thread.
 *
 * Lifetime: a station is freed when its poll and timer handles are closed
 * and no worker job or database request refers to it (st->busy == 0).
 *
 * Durability rule (docs/ARCHITECTURE.md): PUT_CERT is sent only from the done()
 * callback of the issuance record, i.e. after its transaction committed.
 */

#include <openssl/rand.h>
#include <stdio.h>

#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/proof.h"
#include "conf.h"
#include "db.h"
#include "json-writer.h"
#include "log.h"
#include "serial-port.h"
#include "signing-ctx.h"
#include "station-proto/sp.h"
#include "station.h"
#include "util.h"

#define READS_PER_WAKEUP 16
#define RESULT_TIMEOUT_MS 1000
#define SERIAL_HEX_MAX (2 * 32)

struct job {
        uv_work_t work;
        int result;
        /* ISSUE */
        uint8_t *csr_der;               /* max_frame bytes, allocated with the station */
        size_t csr_len;
        char cn[SERIAL_HEX_MAX + 1];
        bool expect_pubkey;
        uint8_t pubkey[SP_PUBKEY_LEN];  /* the key IDENT reported */
        struct csr_info csr;
        bool csr_accepted;              /* the CSR passed every check: a later failure is provd's own */
        struct issued_cert cert;
        struct issuer *issuer;          /* borrowed from the session's signing context */
        /* VERIFY */
        struct sp_proof proof;
        uint8_t nonce[SP_NONCE_LEN];
};

struct station {
        const struct station_env *env;
        char *path;
        char *slot;
        char *usb_location;
        dev_t rdev;
        int fd;
        uv_poll_t poll;
        uv_timer_t timer;
        bool poll_open, timer_open;
        int poll_events;
        unsigned busy;                  /* worker jobs + DB requests in flight */
        bool closing;
        bool shutting_down;

        struct sp_parser *parser;
        struct sp_client client;
        uint8_t *txbuf;                 /* encoded request, owned by client */
        size_t tx_off;                  /* bytes of client.buf already written */
        bool tx_pending;
        uint8_t *payload;               /* scratch for building request payloads */
        size_t payload_cap;
        uint8_t rbuf[4096];

        enum station_state state;
        unsigned retries_left;
        uint64_t session_start_us;
        uint64_t session_end_us;        /* 0 while the session runs */
        int64_t session_start_ms;       /* wall clock, for the attempt record */
        uint64_t step_start_us;
        uint64_t rx_us;                 /* when the last response arrived */
        uint32_t step_ms[_STATION_STATE_MAX];
        unsigned frame_errors;
        char last_error[256];
        enum outcome outcome;
        enum station_state last_step;   /* the step a failure happened in */
        bool session_recorded;
        bool abort_pending;             /* record "aborted" once nothing is in flight */
        bool end_pending;               /* record the outcome once nothing is in flight */
        char timings[512];

        struct sp_ident ident;
        bool have_ident;
        char serial[SERIAL_HEX_MAX + 1];
        char claimed_serial[SERIAL_HEX_MAX + 1];        /* its key in the manager's serial index; "" = none */
        bool reissue;                   /* DB asked for a new certificate */
        bool existing;                  /* proving/rewriting the recorded certificate, no issuance */
        bool was_provisioned;           /* existing: the DB already had it provisioned */
        bool rewritten;                 /* existing: PUT_CERT of the recorded certificate was needed */
        int64_t cert_id;
        /* Held from the start of issuance (or of a rewrite) until RESULT: what PUT_CERT and the record use. */
        struct signing_ctx *sign;
        char thing_name[CERT_THING_NAME_MAX + 1];

        struct job job;
        struct db_req req;
};

/* The session outcome is recorded as is: one spelling, the database's. */
_Static_assert((int)OUTCOME_PROVISIONED == (int)DB_OUTCOME_PROVISIONED &&
               (int)OUTCOME_ALREADY_PROVISIONED == (int)DB_OUTCOME_ALREADY_PROVISIONED &&
               (int)OUTCOME_FAILED == (int)DB_OUTCOME_FAILED && (int)OUTCOME_REJECTED == (int)DB_OUTCOME_REJECTED &&
               (int)OUTCOME_CLONE_SUSPECTED == (int)DB_OUTCOME_CLONE_SUSPECTED &&
               (int)OUTCOME_ABORTED == (int)DB_OUTCOME_ABORTED && (int)_OUTCOME_MAX == (int)_DB_OUTCOME_MAX,
               "enum outcome and enum db_outcome must agree");

const char *outcome_to_string(enum outcome o) {
        return o < _OUTCOME_MAX ? db_outcome_to_string((enum db_outcome)o) : "?";
}

static const char *const state_names[_STATION_STATE_MAX] = {
        [STATION_HELLO] = "hello",
        [STATION_LOOKUP] = "lookup",
        [STATION_CSR] = "csr",
        [STATION_ISSUE] = "issue",
        [STATION_RECORD] = "record",
        [STATION_PUT_CERT] = "cert",
        [STATION_PUT_CONFIG] = "config",
        [STATION_PROVE] = "prove",
        [STATION_VERIFY] = "verify",
        [STATION_LOCK] = "lock",
        [STATION_COMMIT] = "commit",
        [STATION_RESULT] = "result",
        [STATION_DONE] = "done",
        [STATION_FAILED] = "failed",
};

/* Keys of the per-step timings stored with each attempt (attempts.timings). */
static const char *const state_ms_keys[STATION_DONE] = {
        [STATION_HELLO] = "hello_ms",
        [STATION_LOOKUP] = "lookup_ms",
        [STATION_CSR] = "csr_ms",
        [STATION_ISSUE] = "issue_ms",
        [STATION_RECORD] = "record_ms",
        [STATION_PUT_CERT] = "cert_ms",
        [STATION_PUT_CONFIG] = "config_ms",
        [STATION_PROVE] = "prove_ms",
        [STATION_VERIFY] = "verify_ms",
        [STATION_LOCK] = "lock_ms",
        [STATION_COMMIT] = "commit_ms",
        [STATION_RESULT] = "result_ms",
};

/* Calls the environment's hook @hook (station-env.h). */
#define E(st, hook, ...) ((st)->env->ops->hook((st)->env->userdata, ##__VA_ARGS__))

#define slog(st, level, error, ...)                                                                     \
        ({                                                                                              \
                int _lvl = (level);                                                                     \
                _lvl <= log_get_max_level()                                                             \
                        ? log_internal(_lvl, error, (st)->slot, (st)->serial[0] ? (st)->serial : NULL,  \
                                       __VA_ARGS__)                                                     \
                        : 0;                                                                            \
        })

static void session_fail(struct station *st, enum outcome o, const char *fmt, ...) _printf_(3, 4);
static void send_request(struct station *st, uint8_t type, size_t payload_len);
static void submit_outcome(struct station *st);
static void submit_lookup(struct station *st);
static void submit_issuance(struct station *st);
static void closing_progress(struct station *st);
static bool job_returned(struct station *st);
static void maybe_free(struct station *st);

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

/* --- time keeping -------------------------------------------------------- */

static void enter(struct station *st, enum station_state s) {
        uint64_t now = now_usec();

        if (!CHECK_FAILED(st->state < _STATION_STATE_MAX))
                st->step_ms[st->state] += (uint32_t)((now - st->step_start_us) / 1000);
        if (s == STATION_COMMIT && st->state < STATION_COMMIT)
                st->last_step = st->state;
        st->state = s;
        st->step_start_us = now;
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

        /* Never wait past the whole-session limit ([timeouts] session_ms). */
        if (station_is_active(st) && st->state != STATION_RESULT)
                ms = (unsigned)MIN((uint64_t)ms, now < deadline ? (deadline - now + 999) / 1000 : 0);
        (void)uv_timer_start(&st->timer, on_timeout, ms, 0);
}

static unsigned request_timeout(const struct station *st) {
        const struct conf *c = st->env->conf;

        if (st->state == STATION_CSR)
                return c->keygen_ms;
        if (st->state == STATION_RESULT)
                return MIN(c->response_ms, RESULT_TIMEOUT_MS);
        return c->response_ms;
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
static void send_request(struct station *st, uint8_t type, size_t payload_len) {
        ssize_t n;
        int r;

        forget_tx(st);
        n = sp_client_request(&st->client, type, st->payload, payload_len);
        if (n < 0) {
                session_fail(st, OUTCOME_FAILED, "cannot encode %s: %s", sp_msg_type_to_string(type),
                             strerror((int)-n));
                return;
        }
        if (st->rx_us) {
                E(st, record_latency, now_usec() - st->rx_us);
                st->rx_us = 0;
        }
        st->tx_off = 0;
        st->retries_left = st->env->conf->retries;
        r = flush_tx(st);
        if (r < 0) {
                station_close(st, "write failed");
                return;
        }
        arm_timeout(st, request_timeout(st));
}

/* The session is over: green or red until the board is unplugged. */
static void result_delivered(struct station *st) {
        enter(st, st->outcome == OUTCOME_PROVISIONED || st->outcome == OUTCOME_ALREADY_PROVISIONED
                          ? STATION_DONE : STATION_FAILED);
        st->sign = signing_ctx_unref(st->sign);
        if (st->shutting_down)
                station_close(st, "shutting down");
}

static void on_timeout(uv_timer_t *t) {
        struct station *st = t->data;
        ssize_t n;

        if (st->state == STATION_RESULT) {
                /* The verdict is recorded; telling the board is best effort. */
                st->client.pending = false;
                result_delivered(st);
                return;
        }
        if (!st->client.pending)
                return;
        if (now_usec() >= st->session_start_us + (uint64_t)st->env->conf->session_ms * 1000) {
                session_fail(st, OUTCOME_FAILED, "session exceeded %u ms at step %s; reseat the board",
                             st->env->conf->session_ms, state_names[st->state]);
                return;
        }
        if (st->retries_left == 0) {
                session_fail(st, OUTCOME_FAILED, "board did not answer %s after %u tries; reseat it",
                             sp_msg_type_to_string(st->client.type), st->env->conf->retries + 1);
                return;
        }
        st->retries_left--;
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
                session_fail(st, OUTCOME_FAILED, "cannot retransmit %s: %s", sp_msg_type_to_string(st->client.type),
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

/* --- session steps ------------------------------------------------------- */

static void send_hello(struct station *st) {
        struct sp_tlv_writer w;
        uint8_t versions[] = { SP_PROTO_VERSION };

        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put(&w, SP_TAG_PROTO_VERSION, versions, sizeof versions);
        sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, (uint16_t)st->env->conf->max_frame);
        send_request(st, SP_MSG_HELLO, w.len);
}

static void send_result(struct station *st) {
        struct sp_tlv_writer w;
        uint8_t res = st->outcome == OUTCOME_PROVISIONED ? SP_RESULT_PROVISIONED :
                      st->outcome == OUTCOME_ALREADY_PROVISIONED ? SP_RESULT_ALREADY_PROVISIONED :
                      SP_RESULT_FAILED;

        enter(st, STATION_RESULT);
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put_u8(&w, SP_TAG_RESULT, res);
        if (res == SP_RESULT_FAILED && st->last_error[0])
                sp_tlv_put(&w, SP_TAG_ERROR_TEXT, st->last_error, MIN(strlen(st->last_error), 128));
        send_request(st, SP_MSG_RESULT, w.error ? 0 : w.len);
}

static void session_end(struct station *st, enum outcome o) {
        st->outcome = o;
        enter(st, STATION_COMMIT);
        (void)uv_timer_stop(&st->timer);
        st->client.pending = false;
        if (st->busy > 0) {
                /* A worker job or DB request owns st->job/st->req: record when it returns. */
                st->end_pending = true;
                return;
        }
        submit_outcome(st);
}

/* A worker job or DB request returned: true when the session already ended meanwhile. */
static bool ended_meanwhile(struct station *st) {
        if (!st->end_pending)
                return false;
        st->end_pending = false;
        submit_outcome(st);
        return true;
}

static void session_fail(struct station *st, enum outcome o, const char *fmt, ...) {
        va_list ap;

        /* The session already has its verdict: keep the first reason. */
        if (st->state == STATION_COMMIT || st->state == STATION_RESULT ||
            st->state == STATION_DONE || st->state == STATION_FAILED)
                return;
        va_start(ap, fmt);
        vsnprintf(st->last_error, sizeof st->last_error, fmt, ap);
        va_end(ap);
        slog(st, o == OUTCOME_CLONE_SUSPECTED ? LOG_WARNING : LOG_ERR, 0, "%s: %s",
             outcome_to_string(o), st->last_error);
        session_end(st, o);
}

static void send_get_csr(struct station *st) {
        struct sp_tlv_writer w;

        enter(st, STATION_CSR);
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        if (!st->ident.has_pubkey)
                sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        sp_tlv_put_str(&w, SP_TAG_SUBJECT_CN, st->serial);
        send_request(st, SP_MSG_GET_CSR, w.len);
}

static void work_issue(uv_work_t *w) {
        struct job *j = container_of(w, struct job, work);
        int r;

        j->csr_accepted = false;
        r = csr_parse_validate(j->csr_der, j->csr_len, j->cn, &j->csr);
        if (r < 0) {
                j->result = r;
                return;
        }
        if (j->csr.requested_ca) {
                j->result = -EPERM;
                return;
        }
        if (j->expect_pubkey && memcmp(j->csr.pubkey, j->pubkey, SP_PUBKEY_LEN) != 0) {
                j->result = -EKEYREJECTED;
                return;
        }
        j->csr_accepted = true;
        j->result = issuer_issue(j->issuer, &j->csr, j->cn, &j->cert);
}

static void after_issue(uv_work_t *w, int status) {
        struct job *j = container_of(w, struct job, work);
        struct station *st = container_of(j, struct station, job);
        int r = status < 0 ? status : j->result;

        j->issuer = NULL;
        /* The certificate and key of a discarded result go with the station (station_free()). */
        if (job_returned(st))
                return;
        if (r < 0 && (j->csr_accepted || r == -EIO || r == -ENOMEM)) {
                /* Not the board's fault: the signer (HSM, key) or OpenSSL failed. */
                csr_info_done(&j->csr);
                slog(st, LOG_ERR, r, "%s: %m", j->csr_accepted ? "signing the certificate failed"
                                                              : "checking the CSR failed");
                session_fail(st, OUTCOME_FAILED, "%s failed in provd (%s); nothing issued",
                             j->csr_accepted ? "signing" : "the CSR check", strerror(-r));
                return;
        }
        if (r < 0) {
                const char *why;
                if (r == -EPERM && j->csr.requested_ca)
                        why = "CSR asks for a CA certificate (CA:TRUE); refused, nothing signed";
                else if (r == -EKEYREJECTED && j->expect_pubkey && j->csr.key)
                        why = "CSR key differs from the key the board reported; nothing signed";
                else
                        why = csr_strerror(r);
                csr_info_done(&j->csr);
                session_fail(st, OUTCOME_REJECTED, "bad CSR: %s", why);
                return;
        }
        E(st, cert_issued);
        r = cert_thing_name(st->env->conf->thing_name == THING_NAME_SKI ? CERT_THING_SKI : CERT_THING_CN,
                            &j->cert, st->serial, st->thing_name, sizeof st->thing_name);
        if (r < 0) {
                session_fail(st, OUTCOME_FAILED, "cannot derive a thing name: %s", strerror(-r));
                return;
        }
        enter(st, STATION_RECORD);
        submit_issuance(st);
}

/*
 * The session keeps the signing context current when its issuance (or the
 * rewrite of its recorded certificate) starts: a rotation meanwhile changes
 * neither the chain it writes nor the signer its record names.
 */
static bool hold_signing_ctx(struct station *st) {
        if (st->sign)
                return true;
        st->sign = signing_ctx_ref(E(st, signing_ctx));
        if (!st->sign) {
                session_fail(st, OUTCOME_FAILED, "no signer is set up in provd");
                return false;
        }
        return true;
}

static void start_issue(struct station *st, const uint8_t *der, size_t len) {
        struct job *j = &st->job;
        int r;

        if (len > st->payload_cap) {
                session_fail(st, OUTCOME_REJECTED, "CSR of %zu bytes is too large", len);
                return;
        }
        if (!E(st, take_issuance_token)) {
                session_fail(st, OUTCOME_FAILED, "issuance budget of %u certificates per hour is spent",
                             st->env->conf->max_certs_per_hour);
                return;
        }
        memcpy(j->csr_der, der, len);
        j->csr_len = len;
        strcpy(j->cn, st->serial);
        j->expect_pubkey = st->ident.has_pubkey;
        memcpy(j->pubkey, st->ident.pubkey, SP_PUBKEY_LEN);
        j->csr = (struct csr_info) {};
        j->cert = (struct issued_cert) {};
        if (!hold_signing_ctx(st))
                return;
        j->issuer = st->sign->issuer;
        enter(st, STATION_ISSUE);
        r = uv_queue_work(st->env->loop, &j->work, work_issue, after_issue);
        if (r < 0) {
                j->issuer = NULL;
                session_fail(st, OUTCOME_FAILED, "cannot queue issuance: %s", uv_strerror(r));
                return;
        }
        st->busy++;
        E(st, job_begin);
}

/*
 * Payload bytes one request may carry: what provd's buffers take and what the
 * board announced in IDENT (PROTOCOL.md §5.3: a board discards a larger frame
 * and cannot even answer it; an IDENT without MAX_FRAME means 4096).
 */
static size_t request_cap(const struct station *st) {
        size_t frame = st->ident.max_frame ? st->ident.max_frame : SP_MAX_FRAME_DEFAULT;

        return MIN(st->payload_cap, frame > SP_FRAME_OVERHEAD ? frame - SP_FRAME_OVERHEAD : 0);
}

static unsigned board_max_frame(const struct station *st) {
        return st->ident.max_frame ? st->ident.max_frame : SP_MAX_FRAME_DEFAULT;
}

static void send_put_cert(struct station *st) {
        struct sp_tlv_writer w;
        const struct signing_ctx *sc;

        enter(st, STATION_PUT_CERT);
        if (!hold_signing_ctx(st))
                return;
        sc = st->sign;
        sp_tlv_writer_init(&w, st->payload, request_cap(st));
        sp_tlv_put(&w, SP_TAG_DEVICE_CERT, st->job.cert.der, st->job.cert.der_len);
        sp_tlv_put(&w, SP_TAG_SIGNER_CERT, sc->chain_der, sc->chain_len);
        if ((st->ident.caps & SP_CAP_ROOT_PUBKEY) && sc->have_root_pubkey)
                sp_tlv_put(&w, SP_TAG_ROOT_PUBKEY, sc->root_pubkey, sizeof sc->root_pubkey);
        if (w.error) {
                session_fail(st, OUTCOME_FAILED, "certificates do not fit in one frame (board max frame %u, "
                             "provd max_frame %u)", board_max_frame(st), st->env->conf->max_frame);
                return;
        }
        send_request(st, SP_MSG_PUT_CERT, w.len);
}

static void send_put_config(struct station *st) {
        const struct conf *c = st->env->conf;
        struct sp_tlv_writer w;

        enter(st, STATION_PUT_CONFIG);
        sp_tlv_writer_init(&w, st->payload, request_cap(st));
        if (c->aws_endpoint) {
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "aws_endpoint");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, c->aws_endpoint);
        }
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "thing_name");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, st->thing_name);
        if (c->wifi_ssid && (st->ident.caps & SP_CAP_WIFI)) {
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_ssid");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, c->wifi_ssid);
                if (c->wifi_psk) {
                        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_psk");
                        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, c->wifi_psk);
                }
        }
        if (w.error) {
                explicit_bzero(st->payload, st->payload_cap);
                session_fail(st, OUTCOME_FAILED, "configuration does not fit in one frame (board max frame %u, "
                             "provd max_frame %u)", board_max_frame(st), st->env->conf->max_frame);
                return;
        }
        send_request(st, SP_MSG_PUT_CONFIG, w.len);
        /* The PSK stays only in the encoded request, for retransmission: see forget_tx(). */
        explicit_bzero(st->payload, w.len);
}

static void send_prove(struct station *st) {
        struct sp_tlv_writer w;

        enter(st, STATION_PROVE);
        if (RAND_bytes(st->job.nonce, sizeof st->job.nonce) != 1) {
                session_fail(st, OUTCOME_FAILED, "no randomness for the proof nonce");
                return;
        }
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put(&w, SP_TAG_NONCE, st->job.nonce, sizeof st->job.nonce);
        send_request(st, SP_MSG_PROVE, w.len);
}

static void work_verify(uv_work_t *w) {
        struct job *j = container_of(w, struct job, work);

        if (memcmp(j->proof.cert_hash, j->cert.sha256, SP_SHA256_LEN) != 0) {
                j->result = -ENOKEY;
                return;
        }
        if (j->csr.key)
                j->result = proof_verify_csr(&j->csr, j->nonce, j->proof.cert_hash, j->proof.signature);
        else
                j->result = proof_verify(j->cert.pubkey, j->nonce, j->proof.cert_hash, j->proof.signature);
}

/* A known, proven board that needed nothing written is "already provisioned". */
static enum outcome proven_outcome(const struct station *st) {
        if (st->existing && st->was_provisioned && !st->rewritten) {
                return OUTCOME_ALREADY_PROVISIONED;
        }
        return OUTCOME_PROVISIONED;
}

static void send_lock(struct station *st) {
        enter(st, STATION_LOCK);
        send_request(st, SP_MSG_LOCK, 0);
}

static void after_verify(uv_work_t *w, int status) {
        struct job *j = container_of(w, struct job, work);
        struct station *st = container_of(j, struct station, job);
        int r = status < 0 ? status : j->result;

        if (job_returned(st))
                return;
        if (r == -ENOKEY && st->existing && !st->rewritten) {
                slog(st, LOG_NOTICE, 0, "board does not hold its recorded certificate; writing it again");
                st->rewritten = true;
                send_put_cert(st);
                return;
        }
        if (r == -ENOKEY) {
                session_fail(st, OUTCOME_FAILED, "board reports a stored certificate that is not the one issued");
                return;
        }
        if (r == -EIO || r == -ENOMEM) {
                session_fail(st, OUTCOME_FAILED, "cannot verify the proof of possession in provd (%s)", strerror(-r));
                return;
        }
        if (r < 0) {
                session_fail(st, OUTCOME_FAILED, "proof of possession failed: the board's signature does not verify");
                return;
        }
        if (st->env->conf->lock && (st->ident.caps & SP_CAP_LOCK) && !st->ident.locked) {
                send_lock(st);
                return;
        }
        session_end(st, proven_outcome(st));
}

static void start_verify(struct station *st) {
        int r;

        enter(st, STATION_VERIFY);
        r = uv_queue_work(st->env->loop, &st->job.work, work_verify, after_verify);
        if (r < 0) {
                session_fail(st, OUTCOME_FAILED, "cannot queue proof verification: %s", uv_strerror(r));
                return;
        }
        st->busy++;
        E(st, job_begin);
}

/* --- database steps ------------------------------------------------------ */


static void db_submit_station(struct station *st, db_done_cb done) {
        st->req.done = done;
        st->req.userdata = st;
        st->busy++;
        E(st, job_begin);
        if (st->env->ops->db_submit)
                E(st, db_submit, &st->req);
        else
                db_submit(st->env->db, &st->req);
}

/*
 * A worker job or database request returned. True when its callback must stop
 * there: the port is closing, or the session ended while it ran (its outcome
 * is submitted now).
 */
static bool job_returned(struct station *st) {
        st->busy--;
        E(st, job_end);
        st->rx_us = now_usec();
        if (st->closing) {
                closing_progress(st);
                return true;
        }
        return ended_meanwhile(st);
}

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t)v;
        }
        return hex[2 * n] == 0 ? 0 : -EINVAL;
}

/*
 * A known board with the same key: have it prove it still holds the recorded
 * certificate (PROVE), and rewrite that same certificate if it does not.
 * No second certificate is issued for a board that is merely replugged or
 * whose earlier session was interrupted after the issuance was recorded.
 */
static void start_existing(struct station *st, const struct db_lookup_device *l, uint8_t *der) {
        struct issued_cert *c = &st->job.cert;

        issued_cert_done(c);
        *c = (struct issued_cert) { .der = der, .der_len = l->cert_der_len };
        if (hex_to_bytes(l->cert_sha256, c->sha256, sizeof c->sha256) < 0) {
                issued_cert_done(c);
                session_fail(st, OUTCOME_FAILED, "database holds a malformed certificate hash");
                return;
        }
        snprintf(c->sha256_hex, sizeof c->sha256_hex, "%s", l->cert_sha256);
        memcpy(c->pubkey, l->pubkey, SP_PUBKEY_LEN);
        snprintf(st->thing_name, sizeof st->thing_name, "%s", l->thing_name);
        st->cert_id = l->cert_id;
        st->existing = true;
        st->was_provisioned = l->state == DB_DEVICE_PROVISIONED;
        send_prove(st);
}

static void on_lookup_done(struct db_req *req) {
        struct station *st = req->userdata;
        const struct db_lookup_device *l = &req->lookup;
        _cleanup_free_ uint8_t *der = TAKE_PTR(req->lookup.cert_der);
        bool same_key;

        if (job_returned(st))
                return;
        if (req->result < 0) {
                session_fail(st, OUTCOME_FAILED, "database lookup failed: %s", req->errmsg);
                return;
        }
        if (!l->found) {
                send_get_csr(st);
                return;
        }
        same_key = st->ident.has_pubkey && memcmp(l->pubkey, st->ident.pubkey, SP_PUBKEY_LEN) == 0;
        if (!same_key) {
                session_fail(st, OUTCOME_CLONE_SUSPECTED,
                             st->ident.has_pubkey
                                     ? "serial already provisioned with another key; suspected clone, nothing signed"
                                     : "serial already provisioned but this board has no key; suspected clone");
                return;
        }
        if (l->state == DB_DEVICE_CLONE_SUSPECTED && !l->reissue_requested) {
                session_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial is flagged as a suspected clone; `provctl reissue` clears it");
                return;
        }
        if (l->reissue_requested || st->env->conf->reissue || !der || l->cert_status == DB_CERT_REVOKED) {
                st->reissue = true;
                send_get_csr(st);
                return;
        }
        start_existing(st, l, TAKE_PTR(der));
}

static void submit_lookup(struct station *st) {
        st->req = (struct db_req) { .type = DB_LOOKUP_DEVICE };
        strcpy(st->req.lookup.serial, st->serial);
        st->req.lookup.want_der = true;
        db_submit_station(st, on_lookup_done);
}

static void on_issuance_done(struct db_req *req) {
        struct station *st = req->userdata;

        if (req->result >= 0)
                st->cert_id = req->issuance.cert_id;
        if (job_returned(st))
                return;
        if (req->result == -EKEYREJECTED) {
                session_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial is recorded with another key; suspected clone, certificate withheld");
                return;
        }
        if (req->result < 0) {
                session_fail(st, OUTCOME_FAILED, "cannot record the issuance, certificate withheld: %s",
                             req->errmsg);
                return;
        }
        slog(st, LOG_DEBUG, 0, "certificate %s recorded%s", st->job.cert.sha256_hex,
             req->issuance.superseded_cert_id ? " (supersedes the previous one)" : "");
        send_put_cert(st);
}

static void copy_label(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

static void submit_issuance(struct station *st) {
        struct db_record_issuance *r;
        const struct issued_cert *c = &st->job.cert;

        st->req = (struct db_req) { .type = DB_RECORD_ISSUANCE };
        r = &st->req.issuance;
        strcpy(r->serial, st->serial);
        copy_label(r->model, sizeof r->model, st->ident.model);
        copy_label(r->fw_version, sizeof r->fw_version, st->ident.fw_version);
        memcpy(r->pubkey, c->pubkey, DB_PUBKEY_LEN);
        r->cert_der = c->der;
        r->cert_der_len = c->der_len;
        hex_encode(c->serial, CERT_SERIAL_LEN, r->cert_serial, false);
        strcpy(r->cert_sha256, c->sha256_hex);
        r->not_before_ms = (int64_t)c->not_before * 1000;
        r->not_after_ms = (int64_t)c->not_after * 1000;
        r->signer_id = st->sign->signer_id;
        copy_label(r->thing_name, sizeof r->thing_name, st->thing_name);
        copy_label(r->port, sizeof r->port, st->path);
        copy_label(r->slot, sizeof r->slot, st->slot);
        db_submit_station(st, on_issuance_done);
}

static void on_outcome_done(struct db_req *req) {
        struct station *st = req->userdata;

        st->session_recorded = true;
        if (req->result < 0) {
                slog(st, LOG_ERR, 0, "cannot record the %s outcome: %s", outcome_to_string(st->outcome), req->errmsg);
                if (st->outcome == OUTCOME_PROVISIONED) {
                        st->outcome = OUTCOME_FAILED;
                        snprintf(st->last_error, sizeof st->last_error, "database error: %.200s", req->errmsg);
                }
        }
        st->session_end_us = now_usec();
        E(st, session_done, st->outcome);
        if (st->outcome == OUTCOME_PROVISIONED)
                slog(st, LOG_NOTICE, 0, "provisioned as %s, certificate %s, in %" PRIu64 " ms", st->thing_name,
                     st->job.cert.sha256_hex, (now_usec() - st->session_start_us + 500) / 1000);
        else if (st->outcome == OUTCOME_ALREADY_PROVISIONED)
                slog(st, LOG_NOTICE, 0, "already provisioned as %s: it proved its certificate %s; nothing issued",
                     st->thing_name, st->job.cert.sha256_hex);
        if (job_returned(st))
                return;
        send_result(st);
}

static void submit_outcome(struct station *st) {
        struct db_record_outcome *o;
        struct json_writer w;

        st->req = (struct db_req) { .type = DB_RECORD_OUTCOME };
        o = &st->req.outcome;
        copy_label(o->port, sizeof o->port, st->path);
        copy_label(o->slot, sizeof o->slot, st->slot);
        strcpy(o->serial, st->serial);
        o->started_ms = st->session_start_ms;
        o->finished_ms = wallclock_msec();
        o->outcome = (enum db_outcome)st->outcome;
        copy_label(o->step, sizeof o->step, state_names[st->last_step]);
        copy_label(o->error, sizeof o->error, st->outcome == OUTCOME_PROVISIONED ? "" : st->last_error);
        o->cert_id = st->cert_id;
        if (st->outcome == OUTCOME_CLONE_SUSPECTED && st->ident.has_pubkey) {
                o->have_presented_pubkey = true;
                memcpy(o->presented_pubkey, st->ident.pubkey, DB_PUBKEY_LEN);
        }
        /* {"hello_ms":3,"csr_ms":120,...}: steps that took time in this session. */
        json_writer_init(&w, st->timings, sizeof st->timings);
        for (unsigned s = 0; s < STATION_DONE; s++)
                if ((st->step_ms[s] || s == STATION_HELLO) && state_ms_keys[s])
                        json_writer_int(&w, state_ms_keys[s], st->step_ms[s]);
        /* Cannot overflow: 12 keys of <= 10 bytes and 10 digits each. */
        o->timings_json = json_writer_finish(&w);
        db_submit_station(st, on_outcome_done);
}

static void closing_progress(struct station *st) {
        /* A verdict (aborted, or a failure reached while a job was in flight) not yet recorded. */
        if (st->busy == 0 && (st->abort_pending || st->end_pending)) {
                st->abort_pending = st->end_pending = false;
                submit_outcome(st);
                return;
        }
        maybe_free(st);
}

/* --- input ---------------------------------------------------------------- */

static bool printable_serial(const struct sp_ident *id, char *out, size_t outlen) {
        if (id->serial_len == 0 || id->serial_len * 2 + 1 > outlen)
                return false;
        hex_encode(id->serial, id->serial_len, out, true);
        return true;
}

static void on_ident(struct station *st, const struct sp_frame *f) {
        struct sp_ident id;
        int r;

        r = sp_ident_parse(f, &id);
        if (r < 0) {
                session_fail(st, OUTCOME_FAILED, "board sent a malformed IDENT; check its firmware");
                return;
        }
        if (id.proto_version != SP_PROTO_VERSION) {
                session_fail(st, OUTCOME_FAILED, "board chose protocol version %u, station speaks %u",
                             id.proto_version, SP_PROTO_VERSION);
                return;
        }
        if (!printable_serial(&id, st->serial, sizeof st->serial)) {
                session_fail(st, OUTCOME_FAILED, "board sent an empty or oversize serial");
                return;
        }
        st->ident = id;
        st->have_ident = true;
        slog(st, LOG_DEBUG, 0, "board %s firmware %s%s", id.model, id.fw_version,
             id.has_pubkey ? ", has a key" : "");
        if (E(st, serial_in_use, st)) {
                session_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial %s is in session on another port at the same time; suspected clone",
                             st->serial);
                return;
        }
        enter(st, STATION_LOOKUP);
        submit_lookup(st);
}

static void on_response(struct station *st, const struct sp_frame *f) {
        const uint8_t *der;
        size_t len;
        int r;

        if (f->type == SP_MSG_ERROR) {
                struct sp_board_error e;
                const char *what;

                if (sp_error_parse(f, &e) < 0)
                        e = (struct sp_board_error) { .code = 0, .text = "" };
                what = sp_error_to_string(e.code);
                if (st->state == STATION_PROVE && st->existing && !st->rewritten &&
                    (e.code == SP_ERR_NO_CERT || e.code == SP_ERR_BAD_STATE)) {
                        slog(st, LOG_NOTICE, 0, "board holds no certificate; writing the recorded one again");
                        st->rewritten = true;
                        send_put_cert(st);
                        return;
                }
                session_fail(st, OUTCOME_FAILED, "board refused %s: %s%s%s",
                             sp_msg_type_to_string(st->client.type), what ? what : "unknown error",
                             e.text[0] ? ": " : "", e.text);
                return;
        }

        switch (st->state) {
        case STATION_HELLO:
                on_ident(st, f);
                break;
        case STATION_CSR:
                r = sp_csr_parse(f, &der, &len);
                if (r < 0) {
                        session_fail(st, OUTCOME_REJECTED, "board sent a CSR message without a CSR");
                        return;
                }
                start_issue(st, der, len);
                break;
        case STATION_PUT_CERT: {
                struct sp_tlv t;
                r = sp_tlv_find(f->payload, f->len, SP_TAG_CERT_HASH, &t);
                if (r < 0 || t.len != SP_SHA256_LEN || memcmp(t.value, st->job.cert.sha256, SP_SHA256_LEN) != 0) {
                        session_fail(st, OUTCOME_FAILED, "board stored a certificate that differs from the one sent");
                        return;
                }
                send_put_config(st);
                break;
        }
        case STATION_PUT_CONFIG:
                send_prove(st);
                break;
        case STATION_PROVE:
                r = sp_proof_parse(f, &st->job.proof);
                if (r < 0) {
                        session_fail(st, OUTCOME_FAILED, "board sent a malformed PROOF");
                        return;
                }
                start_verify(st);
                break;
        case STATION_LOCK:
                session_end(st, proven_outcome(st));
                break;
        case STATION_RESULT:
                result_delivered(st);
                break;
        default:
                break;
        }
}

static int on_frame(const struct sp_frame *f, int error, void *userdata) {
        struct station *st = userdata;
        int r;

        if (st->closing)
                return -ECANCELED;      /* the rest of this read belongs to no session */
        if (error < 0) {
                st->frame_errors++;
                if (error == -EMSGSIZE && station_is_active(st) && st->client.pending) {
                        session_fail(st, OUTCOME_FAILED, "board sent a frame over the %u-byte limit",
                                     st->env->conf->max_frame);
                        return 0;
                }
                if (st->frame_errors > st->env->conf->max_errors && station_is_active(st) &&
                    st->state != STATION_COMMIT) {
                        session_fail(st, OUTCOME_FAILED, "line noise: %u bad frames; check the cable and hub",
                                     st->frame_errors);
                }
                return 0;
        }
        if (!st->client.pending)
                return 0;               /* nothing asked: late duplicate or noise */
        r = sp_client_match(&st->client, f);
        if (r == 0)
                return 0;               /* stale or replayed answer to an earlier request */
        (void)uv_timer_stop(&st->timer);
        st->rx_us = now_usec();
        if (r < 0) {
                session_fail(st, OUTCOME_FAILED, "board answered %s with %s",
                             sp_msg_type_to_string(st->client.type),
                             sp_msg_type_to_string(f->type) ?: "an unknown message");
                return 0;
        }
        on_response(st, f);
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
        maybe_free(st);
}

static void maybe_free(struct station *st) {
        if (!st->closing || st->poll_open || st->timer_open || st->busy > 0)
                return;
        if (st->fd >= 0) {
                serial_port_close(st->fd);
                st->fd = -1;
        }
        E(st, station_gone, st);
}

void station_close(struct station *st, const char *why) {
        if (st->closing)
                return;
        if (station_is_active(st) && st->state != STATION_COMMIT && st->have_ident)
                snprintf(st->last_error, sizeof st->last_error, "session aborted at step %s: %s",
                         state_names[st->state], why);
        slog(st, station_is_active(st) && st->have_ident ? LOG_WARNING : LOG_DEBUG, 0, "port %s closed: %s",
             st->path, why);
        st->closing = true;
        if (station_is_active(st) && st->state != STATION_COMMIT && st->state != STATION_RESULT &&
            st->have_ident && !st->session_recorded) {
                st->outcome = OUTCOME_ABORTED;
                enter(st, STATION_COMMIT);
                st->abort_pending = true;       /* after the job or request in flight returns */
                closing_progress(st);
        }
        if (st->poll_open)
                uv_close((uv_handle_t *)&st->poll, on_handle_closed);
        if (st->timer_open)
                uv_close((uv_handle_t *)&st->timer, on_handle_closed);
        /* Handles already closed (failed start): free now if nothing is in flight. */
        maybe_free(st);
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

        sp_client_init(&st->client, st->txbuf, sp_frame_encoded_max(st->payload_cap), E(st, session_seq));

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
        send_hello(st);
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
        if (st->rdev != info->rdev || E(st, rdev_in_use, st->rdev)) {
                serial_port_close(st->fd);
                st->fd = -1;
                station_free(st);
                return -ESTALE;
        }
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
        cJSON_AddStringToObject(o, "step", state_names[st->state]);
        cJSON_AddStringToObject(o, "serial", st->serial);
        if (st->state == STATION_DONE || st->state == STATION_FAILED || st->state == STATION_RESULT ||
            st->state == STATION_COMMIT)
                cJSON_AddStringToObject(o, "outcome", outcome_to_string(st->outcome));
        cJSON_AddNumberToObject(o, "elapsed_ms",
                                (double)(((st->session_end_us ?: now) - st->session_start_us) / 1000));
        cJSON_AddStringToObject(o, "last_error", st->last_error);
        cJSON_AddItemToArray(array, o);
}
