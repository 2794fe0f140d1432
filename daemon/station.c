/* SPDX-License-Identifier: MIT */
/* The provisioning session's state machine: HELLO → … → RESULT, worker jobs, responses. */

#include <openssl/rand.h>
#include <stdio.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/proof.h"
#include "conf.h"
#include "signing-ctx.h"
#include "station-internal.h"

/*
 * No device certificate is smaller than its P-256 SubjectPublicKeyInfo (91
 * bytes DER), its signature (an ECDSA P-256 signature in DER is never under
 * 64 bytes) and its subject CN: the size PUT_CERT has at least, known before
 * anything is signed.
 */
#define DEVICE_CERT_MIN(cn_len) (91u + 64u + (cn_len))

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

const char *const station_state_names[_STATION_STATE_MAX] = {
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
const char *const station_state_ms_keys[STATION_DONE] = {
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

/* --- time keeping -------------------------------------------------------- */

void station_enter(struct station *st, enum station_state s) {
        uint64_t now = now_usec();

        if (!CHECK_FAILED(st->state < _STATION_STATE_MAX))
                st->step_ms[st->state] += (uint32_t)((now - st->step_start_us) / 1000);
        if (s == STATION_COMMIT && st->state < STATION_COMMIT)
                st->last_step = st->state;
        st->state = s;
        st->step_start_us = now;
}

/* --- session steps ------------------------------------------------------- */

/* The session is over: green or red until the board is unplugged. */
void station_result_delivered(struct station *st) {
        station_enter(st, st->outcome == OUTCOME_PROVISIONED || st->outcome == OUTCOME_ALREADY_PROVISIONED
                          ? STATION_DONE : STATION_FAILED);
        st->sign = signing_ctx_unref(st->sign);
        if (st->shutting_down)
                station_close(st, "shutting down");
}

void station_send_hello(struct station *st) {
        struct sp_tlv_writer w;
        uint8_t versions[] = { SP_PROTO_VERSION };

        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put(&w, SP_TAG_PROTO_VERSION, versions, sizeof versions);
        sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, (uint16_t)st->env->conf->max_frame);
        station_send_request(st, SP_MSG_HELLO, w.len);
}

void station_send_result(struct station *st) {
        struct sp_tlv_writer w;
        uint8_t res = st->outcome == OUTCOME_PROVISIONED ? SP_RESULT_PROVISIONED :
                      st->outcome == OUTCOME_ALREADY_PROVISIONED ? SP_RESULT_ALREADY_PROVISIONED :
                      SP_RESULT_FAILED;

        station_enter(st, STATION_RESULT);
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put_u8(&w, SP_TAG_RESULT, res);
        if (res == SP_RESULT_FAILED && st->last_error[0])
                sp_tlv_put(&w, SP_TAG_ERROR_TEXT, st->last_error, MIN(strlen(st->last_error), 128));
        station_send_request(st, SP_MSG_RESULT, w.error ? 0 : w.len);
}

static void session_end(struct station *st, enum outcome o) {
        st->outcome = o;
        station_enter(st, STATION_COMMIT);
        (void)uv_timer_stop(&st->timer);
        st->client.pending = false;
        if (st->busy > 0) {
                /* A worker job or DB request owns st->job/st->req: record when it returns. */
                st->end_pending = true;
                return;
        }
        station_submit_outcome(st);
}

/* A worker job or DB request returned: true when the session already ended meanwhile. */
bool station_ended_meanwhile(struct station *st) {
        if (!st->end_pending)
                return false;
        st->end_pending = false;
        station_submit_outcome(st);
        return true;
}

void station_fail(struct station *st, enum outcome o, const char *fmt, ...) {
        va_list ap;

        /* The board answered RESULT with an ERROR or another message (its answer stopped the
         * timer): the verdict stands and telling the board was best effort, so the session
         * ends here instead of waiting in RESULT until the board is unplugged. */
        if (st->state == STATION_RESULT) {
                (void)uv_timer_stop(&st->timer);
                st->client.pending = false;
                station_result_delivered(st);
                return;
        }
        /* The session already has its verdict: keep the first reason. */
        if (st->state == STATION_COMMIT || st->state == STATION_DONE || st->state == STATION_FAILED)
                return;
        va_start(ap, fmt);
        vsnprintf(st->last_error, sizeof st->last_error, fmt, ap);
        va_end(ap);
        slog(st, o == OUTCOME_CLONE_SUSPECTED ? LOG_WARNING : LOG_ERR, 0, "%s: %s",
             outcome_to_string(o), st->last_error);
        session_end(st, o);
}

static bool fits_board(struct station *st, size_t device_len, size_t thing_len, const char *when);

void station_send_get_csr(struct station *st) {
        struct sp_tlv_writer w;

        station_enter(st, STATION_CSR);
        /*
         * What IDENT tells decides before anything is signed (PROTOCOL.md §5.3,
         * §6.2, §8.4): a locked board cannot store a new certificate, a board
         * without a key can get one only with KEYGEN, and the certificates and
         * the configuration must fit the board's frames.
         */
        if (st->ident.locked) {
                station_fail(st, OUTCOME_FAILED, "board is locked: it cannot store a new certificate; nothing issued");
                return;
        }
        if (!st->ident.has_pubkey && !(st->ident.caps & SP_CAP_KEYGEN)) {
                station_fail(st, OUTCOME_FAILED, "no device key and no key generation (CAPS without KEYGEN); "
                             "nothing issued");
                return;
        }
        if (!fits_board(st, DEVICE_CERT_MIN(strlen(st->serial)),
                        st->env->conf->thing_name == THING_NAME_SKI ? 2 * CERT_SKI_LEN : strlen(st->serial),
                        "nothing issued"))
                return;
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        if (!st->ident.has_pubkey)
                sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        sp_tlv_put_str(&w, SP_TAG_SUBJECT_CN, st->serial);
        station_send_request(st, SP_MSG_GET_CSR, w.len);
}

static void work_issue(uv_work_t *w) {
        struct job *j = container_of(w, struct job, work);
        int r;

        j->csr_accepted = false;
        j->csr_pubkey_differs = false;
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
        /* PROTOCOL.md §6.2: the CSR response's PUBKEY is the CSR's key, byte for byte. */
        if (j->have_csr_pubkey && memcmp(j->csr.pubkey, j->csr_pubkey, SP_PUBKEY_LEN) != 0) {
                j->csr_pubkey_differs = true;
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
        char refused[160];

        j->issuer = NULL;
        /* The certificate and key of a discarded result go with the station (station_free()). */
        if (station_job_returned(st))
                return;
        if (r < 0 && (j->csr_accepted || r == -EIO || r == -ENOMEM)) {
                /* Not the board's fault: the signer (HSM, key) or OpenSSL failed. */
                csr_info_done(&j->csr);
                slog(st, LOG_ERR, r, "%s: %m", j->csr_accepted ? "signing the certificate failed"
                                                              : "checking the CSR failed");
                station_fail(st, OUTCOME_FAILED, "%s failed in provd (%s); nothing issued",
                             j->csr_accepted ? "signing" : "the CSR check", strerror(-r));
                return;
        }
        if (r < 0) {
                const char *why;
                if (r == -EPERM && j->csr.requested_ca)
                        why = "CSR asks for a CA certificate (CA:TRUE); refused, nothing signed";
                else if (r == -EKEYREJECTED && j->csr_pubkey_differs)
                        why = "CSR key differs from the board's PUBKEY; nothing signed";
                else if (r == -EKEYREJECTED && j->expect_pubkey && j->csr.key)
                        why = "CSR key differs from the key the board reported; nothing signed";
                else
                        why = csr_strerror(r);
                csr_info_done(&j->csr);
                station_fail(st, OUTCOME_REJECTED, "bad CSR: %s", why);
                return;
        }
        r = env_hook(st, take_issuance_token, st, refused, sizeof refused);
        if (r < 0) {
                issued_cert_done(&j->cert);     /* never recorded, never sent */
                csr_info_done(&j->csr);
                station_fail(st, r == -EACCES ? OUTCOME_REJECTED : OUTCOME_FAILED, "%s; the certificate signed "
                             "meanwhile was discarded", refused);
                return;
        }
        r = cert_thing_name(st->env->conf->thing_name == THING_NAME_SKI ? CERT_THING_SKI : CERT_THING_CN,
                            &j->cert, st->serial, st->thing_name, sizeof st->thing_name);
        if (r < 0) {
                station_fail(st, OUTCOME_FAILED, "cannot derive a thing name: %s", strerror(-r));
                return;
        }
        /* The certificate exists only in memory: it is recorded only if the board can take it. */
        if (!fits_board(st, j->cert.der_len, strlen(st->thing_name), "certificate discarded, nothing recorded"))
                return;
        station_enter(st, STATION_RECORD);
        station_submit_issuance(st);
}

/*
 * The session keeps the signing context current when its issuance (or the
 * rewrite of its recorded certificate) starts: a rotation meanwhile changes
 * neither the chain it writes nor the signer its record names.
 */
static bool hold_signing_ctx(struct station *st) {
        if (st->sign)
                return true;
        st->sign = signing_ctx_ref(env_hook(st, signing_ctx));
        if (!st->sign) {
                station_fail(st, OUTCOME_FAILED, "no signer is set up in provd");
                return false;
        }
        return true;
}

static void start_issue(struct station *st, const uint8_t *der, size_t len) {
        struct job *j = &st->job;
        char why[160];
        int r;

        if (len > st->payload_cap) {
                station_fail(st, OUTCOME_REJECTED, "CSR of %zu bytes is too large", len);
                return;
        }
        if (!station_db_has_room(st, "nothing signed"))
                return;
        r = env_hook(st, issuance_check, st, why, sizeof why);
        if (r < 0) {
                station_fail(st, r == -EACCES ? OUTCOME_REJECTED : OUTCOME_FAILED, "%s; nothing signed", why);
                return;
        }
        memcpy(j->csr_der, der, len);
        j->csr_len = len;
        strcpy(j->cn, st->serial);
        j->expect_pubkey = st->ident.has_pubkey;
        memcpy(j->pubkey, st->ident.pubkey, SP_PUBKEY_LEN);
        /* j->have_csr_pubkey and j->csr_pubkey: set by the caller from the same frame. */
        /* Whatever an earlier step of this session left (a recorded certificate it rewrote). */
        csr_info_done(&j->csr);
        issued_cert_done(&j->cert);
        j->csr = (struct csr_info) {};
        j->cert = (struct issued_cert) {};
        if (!hold_signing_ctx(st))
                return;
        j->issuer = st->sign->issuer;
        station_enter(st, STATION_ISSUE);
        r = uv_queue_work(st->env->loop, &j->work, work_issue, after_issue);
        if (r < 0) {
                j->issuer = NULL;
                station_fail(st, OUTCOME_FAILED, "cannot queue issuance: %s", uv_strerror(r));
                return;
        }
        st->busy++;
        env_hook(st, job_begin);
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

static size_t tlv_len(size_t value_len) {
        return SP_TLV_HEADER_LEN + value_len;
}

/* Does the board get the 72-byte compressed form too (CAPS COMPRESSED_CERT, an ATECC profile)? */
static bool wants_compressed(const struct station *st, const struct signing_ctx *sc) {
        return (st->ident.caps & SP_CAP_COMPRESSED_CERT) && issuer_is_atecc(sc->issuer);
}

/* PUT_CERT's payload for a device certificate of @device_len bytes (station_send_put_cert()). */
static size_t put_cert_len(const struct station *st, const struct signing_ctx *sc, size_t device_len) {
        return tlv_len(device_len) + tlv_len(sc->chain_len) +
               ((st->ident.caps & SP_CAP_ROOT_PUBKEY) && sc->have_root_pubkey ? tlv_len(sizeof sc->root_pubkey) : 0) +
               (wants_compressed(st, sc) ? tlv_len(SP_COMPRESSED_CERT_LEN) : 0);
}

/* PUT_CONFIG's payload with a thing name of @thing_len bytes (send_put_config()). */
static size_t put_config_len(const struct station *st, size_t thing_len) {
        const struct conf *c = st->env->conf;
        size_t n = tlv_len(strlen("thing_name")) + tlv_len(thing_len);

        if (c->aws_endpoint)
                n += tlv_len(strlen("aws_endpoint")) + tlv_len(strlen(c->aws_endpoint));
        if (c->wifi_ssid && (st->ident.caps & SP_CAP_WIFI)) {
                n += tlv_len(strlen("wifi_ssid")) + tlv_len(strlen(c->wifi_ssid));
                if (c->wifi_psk)
                        n += tlv_len(strlen("wifi_psk")) + tlv_len(strlen(c->wifi_psk));
        }
        return n;
}

/*
 * Do PUT_CERT (with a device certificate of @device_len bytes; before
 * signing, the least it can be) and PUT_CONFIG fit the board's frames?
 * Fails the session when not.
 */
static bool fits_board(struct station *st, size_t device_len, size_t thing_len, const char *when) {
        const struct signing_ctx *sc = st->sign ? st->sign : env_hook(st, signing_ctx);
        size_t cap = request_cap(st), n;

        if (!sc)
                return true;            /* no signer: start_issue() says so */
        n = put_cert_len(st, sc, device_len);
        if (n > cap) {
                station_fail(st, OUTCOME_FAILED, "certificates (%s%zu bytes) do not fit the board's frames "
                             "(board max frame %u, provd max_frame %u); %s", st->sign ? "" : "at least ", n,
                             board_max_frame(st), st->env->conf->max_frame, when);
                return false;
        }
        n = put_config_len(st, thing_len);
        if (n > cap) {
                station_fail(st, OUTCOME_FAILED, "configuration (%zu bytes) does not fit the board's frames "
                             "(board max frame %u, provd max_frame %u); %s", n, board_max_frame(st),
                             st->env->conf->max_frame, when);
                return false;
        }
        return true;
}

void station_send_put_cert(struct station *st) {
        struct sp_tlv_writer w;
        const struct signing_ctx *sc;

        station_enter(st, STATION_PUT_CERT);
        if (!hold_signing_ctx(st))
                return;
        sc = st->sign;
        sp_tlv_writer_init(&w, st->payload, request_cap(st));
        sp_tlv_put(&w, SP_TAG_DEVICE_CERT, st->job.cert.der, st->job.cert.der_len);
        /* PROTOCOL.md §6.3: an ATECC board stores the compressed form (and rebuilds the DER from
         * it and its template); the DER goes along for boards that keep both. No crypto here:
         * the 72 bytes are the signature and the encoded dates, cut out of the DER. */
        if (wants_compressed(st, sc)) {
                uint8_t comp[CERT_COMPRESSED_LEN];
                int r = issuer_compress(sc->issuer, &st->job.cert, comp);

                if (r < 0) {
                        station_fail(st, OUTCOME_FAILED, "cannot make the compressed certificate: %s",
                                     strerror(-r));
                        return;
                }
                sp_tlv_put(&w, SP_TAG_COMPRESSED_CERT, comp, sizeof comp);
        }
        sp_tlv_put(&w, SP_TAG_SIGNER_CERT, sc->chain_der, sc->chain_len);
        if ((st->ident.caps & SP_CAP_ROOT_PUBKEY) && sc->have_root_pubkey)
                sp_tlv_put(&w, SP_TAG_ROOT_PUBKEY, sc->root_pubkey, sizeof sc->root_pubkey);
        if (w.error) {
                station_fail(st, OUTCOME_FAILED, "certificates do not fit in one frame (board max frame %u, "
                             "provd max_frame %u)", board_max_frame(st), st->env->conf->max_frame);
                return;
        }
        station_send_request(st, SP_MSG_PUT_CERT, w.len);
}

static void send_put_config(struct station *st) {
        const struct conf *c = st->env->conf;
        struct sp_tlv_writer w;

        station_enter(st, STATION_PUT_CONFIG);
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
                station_fail(st, OUTCOME_FAILED, "configuration does not fit in one frame (board max frame %u, "
                             "provd max_frame %u)", board_max_frame(st), st->env->conf->max_frame);
                return;
        }
        station_send_request(st, SP_MSG_PUT_CONFIG, w.len);
        /* The PSK stays only in the encoded request, for retransmission: see forget_tx(). */
        explicit_bzero(st->payload, w.len);
}

void station_send_prove(struct station *st) {
        struct sp_tlv_writer w;

        station_enter(st, STATION_PROVE);
        if (RAND_bytes(st->job.nonce, sizeof st->job.nonce) != 1) {
                station_fail(st, OUTCOME_FAILED, "no randomness for the proof nonce");
                return;
        }
        sp_tlv_writer_init(&w, st->payload, st->payload_cap);
        sp_tlv_put(&w, SP_TAG_NONCE, st->job.nonce, sizeof st->job.nonce);
        station_send_request(st, SP_MSG_PROVE, w.len);
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
        station_enter(st, STATION_LOCK);
        station_send_request(st, SP_MSG_LOCK, 0);
}

static void after_verify(uv_work_t *w, int status) {
        struct job *j = container_of(w, struct job, work);
        struct station *st = container_of(j, struct station, job);
        int r = status < 0 ? status : j->result;

        if (station_job_returned(st))
                return;
        if (r == -ENOKEY && st->existing && !st->rewritten) {
                slog(st, LOG_NOTICE, 0, "board does not hold its recorded certificate; writing it again");
                st->rewritten = true;
                station_send_put_cert(st);
                return;
        }
        if (r == -ENOKEY) {
                station_fail(st, OUTCOME_FAILED, "board reports a stored certificate that is not the one issued");
                return;
        }
        if (r == -EIO || r == -ENOMEM) {
                station_fail(st, OUTCOME_FAILED, "cannot verify the proof of possession in provd (%s)", strerror(-r));
                return;
        }
        if (r < 0) {
                station_fail(st, OUTCOME_FAILED, "proof of possession failed: the board's signature does not verify");
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

        station_enter(st, STATION_VERIFY);
        r = uv_queue_work(st->env->loop, &st->job.work, work_verify, after_verify);
        if (r < 0) {
                station_fail(st, OUTCOME_FAILED, "cannot queue proof verification: %s", uv_strerror(r));
                return;
        }
        st->busy++;
        env_hook(st, job_begin);
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
                station_fail(st, OUTCOME_FAILED, "board sent a malformed IDENT; check its firmware");
                return;
        }
        if (id.proto_version != SP_PROTO_VERSION) {
                station_fail(st, OUTCOME_FAILED, "board chose protocol version %u, station speaks %u",
                             id.proto_version, SP_PROTO_VERSION);
                return;
        }
        if (!printable_serial(&id, st->serial, sizeof st->serial)) {
                station_fail(st, OUTCOME_FAILED, "board sent an empty or oversize serial");
                return;
        }
        st->ident = id;
        st->have_ident = true;
        slog(st, LOG_DEBUG, 0, "board %s firmware %s%s", id.model, id.fw_version,
             id.has_pubkey ? ", has a key" : "");
        if (env_hook(st, serial_in_use, st)) {
                station_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial %s is in session on another port at the same time; suspected clone",
                             st->serial);
                return;
        }
        station_enter(st, STATION_LOOKUP);
        station_submit_lookup(st);
}

void station_on_response(struct station *st, const struct sp_frame *f) {
        const uint8_t *der;
        size_t len;
        int r;

        if (st->state == STATION_RESULT) {
                /* PROTOCOL.md §6.8: whatever answers RESULT ends the run; the verdict is recorded. */
                if (f->type == SP_MSG_ERROR)
                        slog(st, LOG_DEBUG, 0, "board answered RESULT with an ERROR");
                station_result_delivered(st);
                return;
        }
        if (f->type == SP_MSG_ERROR) {
                struct sp_board_error e;
                const char *what;
                char num[48];

                if (sp_error_parse(f, &e) < 0)
                        e = (struct sp_board_error) { .code = 0, .text = "" };
                what = sp_error_to_string(e.code);
                if (!what) {
                        /* PROTOCOL.md §9: a reserved or vendor code is shown as its number. */
                        snprintf(num, sizeof num, "board error %u (0x%04x)", e.code, e.code);
                        what = num;
                }
                if (st->state == STATION_PROVE && st->existing && !st->rewritten &&
                    (e.code == SP_ERR_NO_CERT || e.code == SP_ERR_BAD_STATE)) {
                        slog(st, LOG_NOTICE, 0, "board holds no certificate; writing the recorded one again");
                        st->rewritten = true;
                        station_send_put_cert(st);
                        return;
                }
                station_fail(st, OUTCOME_FAILED, "board refused %s: %s%s%s",
                             sp_msg_type_to_string(st->client.type), what,
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
                        station_fail(st, OUTCOME_REJECTED, "board sent a CSR message without a CSR");
                        return;
                }
                r = sp_csr_pubkey(f, st->job.csr_pubkey);
                if (r < 0 && r != -ENOENT) {
                        station_fail(st, OUTCOME_REJECTED, "bad CSR: the CSR message's PUBKEY is malformed");
                        return;
                }
                st->job.have_csr_pubkey = r == 0;
                start_issue(st, der, len);
                break;
        case STATION_PUT_CERT: {
                uint8_t hash[SP_SHA256_LEN];

                /* PROTOCOL.md §6.3: CERT_HASH is optional; compare it when present (PROVE checks anyway). */
                r = sp_cert_ok_parse(f, hash);
                if (r < 0 && r != -ENOENT) {
                        station_fail(st, OUTCOME_FAILED, "board sent a malformed CERT_OK; check its firmware");
                        return;
                }
                if (r == 0 && memcmp(hash, st->job.cert.sha256, SP_SHA256_LEN) != 0) {
                        station_fail(st, OUTCOME_FAILED, "board stored a certificate that differs from the one sent");
                        return;
                }
                send_put_config(st);
                break;
        }
        case STATION_PUT_CONFIG:
                station_send_prove(st);
                break;
        case STATION_PROVE:
                r = sp_proof_parse(f, &st->job.proof);
                if (r < 0) {
                        station_fail(st, OUTCOME_FAILED, "board sent a malformed PROOF");
                        return;
                }
                start_verify(st);
                break;
        case STATION_LOCK:
                session_end(st, proven_outcome(st));
                break;
        case STATION_RESULT:
                station_result_delivered(st);
                break;
        default:
                break;
        }
}
