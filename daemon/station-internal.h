/* SPDX-License-Identifier: MIT */
/* A station's state, shared by station.c (session), station-port.c (port I/O) and station-db.c. */
#ifndef PROVD_STATION_INTERNAL_H
#define PROVD_STATION_INTERNAL_H

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

#include <stdbool.h>
#include <stdint.h>

#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "db.h"
#include "log.h"
#include "station-proto/sp.h"
#include "station.h"
#include "util.h"

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
        bool have_csr_pubkey;
        uint8_t csr_pubkey[SP_PUBKEY_LEN];      /* the CSR response's PUBKEY: must be the CSR's key */
        bool csr_pubkey_differs;        /* result: the CSR's key is not that PUBKEY */
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
        unsigned frame_errors;          /* line noise of this session (boot text excepted) */
        unsigned step_bad_frames;       /* frames that failed the framing checks while this request was out */
        bool seen_good_frame;
        bool wire_timed;                /* a tty: timeouts add the transfer time at [ports] baud */           /* before it, up to SP_BOOT_TEXT_MAX discarded bytes are boot text */
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

        /*
         * station-db.c: an issuance or outcome the database could not commit
         * (disk full, locked) is submitted again from this timer, with
         * backoff, until it commits; PUT_CERT / RESULT wait for it. The open
         * timer counts in busy; it is closed when the outcome is recorded.
         */
        uv_timer_t retry_timer;
        bool retry_timer_open;
        unsigned db_tries;              /* retries of the request in st->req so far */
};

/* Calls the environment's hook @hook (station-env.h). */
#define env_hook(st, hook, ...) ((st)->env->ops->hook((st)->env->userdata, ##__VA_ARGS__))

#define slog(st, level, error, ...)                                                                     \
        ({                                                                                              \
                int _lvl = (level);                                                                     \
                _lvl <= log_get_max_level()                                                             \
                        ? log_internal(_lvl, error, (st)->slot, (st)->serial[0] ? (st)->serial : NULL,  \
                                       __VA_ARGS__)                                                     \
                        : 0;                                                                            \
        })


extern const char *const station_state_names[_STATION_STATE_MAX];
/* Keys of the per-step timings stored with each attempt (attempts.timings). */
extern const char *const station_state_ms_keys[STATION_DONE];

/* station.c: the session state machine. */
void station_enter(struct station *st, enum station_state s);
void station_fail(struct station *st, enum outcome o, const char *fmt, ...) _printf_(3, 4);
void station_on_response(struct station *st, const struct sp_frame *f);
void station_result_delivered(struct station *st);
bool station_ended_meanwhile(struct station *st);
void station_send_hello(struct station *st);
void station_send_get_csr(struct station *st);
void station_send_put_cert(struct station *st);
void station_send_prove(struct station *st);
void station_send_result(struct station *st);

/* station-port.c: the port, framing out, timeouts and retransmission, life cycle. */
void station_send_request(struct station *st, uint8_t type, size_t payload_len);
void station_maybe_free(struct station *st);

/* station-db.c: the database steps and the bookkeeping of jobs in flight. */
void station_submit_lookup(struct station *st);
void station_submit_issuance(struct station *st);
void station_submit_outcome(struct station *st);
bool station_job_returned(struct station *st);
void station_closing_progress(struct station *st);
/* False (and the session failed with "@refused") when the database's disk is below [database] min_free_mb. */
bool station_db_has_room(struct station *st, const char *refused);

#endif
