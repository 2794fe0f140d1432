/* SPDX-License-Identifier: MIT */
/* The station tests' harness: stub environment and database, a simulated board on a socketpair. */
#ifndef PROVD_TEST_STATION_HARNESS_H
#define PROVD_TEST_STATION_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "board.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/signer.h"
#include "conf.h"
#include "db.h"
#include "seed.h"
#include "signing-ctx.h"
#include "station.h"
#include "station-proto/sp-board.h"
#include "station-proto/sp.h"
#include "util.h"

#define MAX_REQS 64
#define GUARD_MS 20000          /* a hung test fails instead of hanging; no timing is asserted */

struct fx;

/* One response of the board, decoded, that a test may change before it goes on the wire. */
struct tamper {
        unsigned request;               /* the board's request count when it answered (1-based) */
        uint8_t version, type, flags;
        uint16_t seq;
        uint8_t payload[4096];
        size_t len;
        long len_field;                 /* header length field to write; -1: the real one */
        bool bad_crc;                   /* flip the CRC */
        bool drop;                      /* send nothing */
};

struct fx {
        uv_loop_t loop;
        struct conf conf;
        struct station_env env;
        struct station *st;

        /* stub environment */
        unsigned jobs;
        unsigned jobs_max;
        uint64_t outcomes[_OUTCOME_MAX];
        unsigned sessions;
        unsigned certs_issued;
        unsigned latency_samples;
        bool serial_busy;
        bool budget_empty;
        bool gone;
        struct signing_ctx *current;

        /* stub database */
        uv_async_t db_async;
        bool db_manual;                 /* the test answers requests itself */
        struct db_req *queue[MAX_REQS];
        size_t n_queue;
        enum db_req_type seen[MAX_REQS];
        size_t n_seen;
        int fail_issuance;              /* result for DB_RECORD_ISSUANCE ... */
        unsigned fail_issuance_times;   /* ... the first that many times (0 = every time) */
        unsigned issuance_runs;
        int fail_outcome;               /* result for the first fail_outcome_times DB_RECORD_OUTCOMEs */
        unsigned fail_outcome_times;
        unsigned outcome_runs;          /* DB_RECORD_OUTCOME requests answered */
        int64_t issuance_signer_id;
        enum db_outcome recorded;
        bool have_recorded;
        char recorded_error[256];
        char recorded_step[64];
        struct db_lookup_device lookup;  /* answer for DB_LOOKUP_DEVICE (found = false by default) */
        uint8_t issued_der[4096];       /* the last DB_RECORD_ISSUANCE's certificate */
        size_t issued_len;
        char issued_sha256[DB_SHA256_HEX_MAX];
        char issued_thing[DB_NAME_MAX];

        /* the board */
        int board_fd;
        uv_poll_t board_poll;
        struct board board;
        struct spb_board spb;
        uint8_t rx[SPB_RX_BUF(4096)], tx[SPB_TX_BUF(4096)], work[4096];
        unsigned requests;              /* chunks read: one request each on a socketpair */
        unsigned drop_request;          /* 1-based: ignore that one request (0 = none) */
        unsigned mute_from;             /* 1-based: ignore that request and every later one */
        bool have_result;
        uint8_t result;
        uint32_t caps_clear;            /* CAPS bits the board's IDENT leaves out */
        void (*tamper)(struct fx *f, struct tamper *t);  /* NULL: responses as the board library wrote them */
        struct sp_parser *tamper_parser;
        struct tamper t;
        unsigned tampered;              /* responses passed to tamper() */

        /* close the station when it reaches this step (from a check handle) */
        bool board_closed;
        uv_check_t check;
        const char *close_at_step;
        bool closed_at_step;

        uv_timer_t guard;
        bool guard_fired;
};


extern struct seed test_seed;
/* Two signing contexts from two CAs: signer ids 11 and 22. */
extern struct signing_ctx *ctx_a, *ctx_b;

int group_setup(void **state);
int group_teardown(void **state);
int setup(void **state);
int teardown(void **state);
/* Plugs the board in: a socketpair, one end to the station (station_new_fd()), the other to the board library. */
void plug(struct fx *f);
/* Unplugs the board (the station closes and is gone) and plugs it, or a new one with identity @idx, back. */
void replug_board(struct fx *f, uint32_t idx, bool same);
void replug(struct fx *f, uint32_t idx);
/* The board's frame buffers hold @max_frame bytes (its IDENT's MAX_FRAME); before plug(). */
void board_frame(struct fx *f, size_t max_frame);
/* Writes @len raw bytes from the board's end (boot text, noise). */
void board_raw(struct fx *f, const void *buf, size_t len);
/* Encodes @t as it says (length field, CRC) and writes it from the board's end. */
void board_send(struct fx *f, const struct tamper *t);
/* Runs the loop until @cond holds (or the guard fires: then false). */
bool run_until(struct fx *f, bool (*cond)(struct fx *f));
bool is_recorded(struct fx *f);
bool is_over(struct fx *f);
bool is_gone(struct fx *f);
bool has_queued(struct fx *f);
/* Answers the oldest queued database request as the database would. */
void db_answer(struct fx *f, int result);
/* The station's current step, as `provctl status` shows it. */
const char *station_step(struct fx *f);
/* The database request types seen so far, in order. */
void assert_seen(struct fx *f, size_t n, ...);

#endif
