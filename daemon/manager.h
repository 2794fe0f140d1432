/* SPDX-License-Identifier: MIT */
/* The daemon's top object: configuration, ports, signer, database, control socket, counters. */
#ifndef PROVD_MANAGER_H
#define PROVD_MANAGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "conf.h"
#include "station-map.h"

struct station;
struct db;
struct issuer;
struct control;

enum outcome {
        OUTCOME_PROVISIONED,
        OUTCOME_ALREADY_PROVISIONED,
        OUTCOME_FAILED,
        OUTCOME_REJECTED,               /* bad CSR: nothing signed */
        OUTCOME_CLONE_SUSPECTED,
        OUTCOME_ABORTED,                /* unplugged or shut down mid-session */
        _OUTCOME_MAX,
};

const char *outcome_to_string(enum outcome o);

#define RATE_WINDOW_S 60

struct manager {
        uv_loop_t *loop;
        char *config_path;
        struct conf conf;
        bool usb_labels;                /* some [slots] label is keyed by USB bus location */
        struct db *db;
        struct issuer *issuer;
        char *signer_uri_public;        /* the URI without any PIN: safe to log and store */
        int64_t signer_id;
        uint8_t root_pubkey[65];
        bool have_root_pubkey;
        struct control *control;

        /* Ports, sorted by path for O(log n) lookups during rescans. */
        struct station **stations;
        size_t n_stations;
        size_t cap_stations;
        /* The same stations by device number and by the serial of their board:
         * the in-use checks on every port open and every HELLO are O(1). */
        struct station_map by_rdev;
        struct station_map by_serial;

        uv_timer_t rescan_timer;
        uv_timer_t rescan_soon;         /* debounces directory events */
        uv_fs_event_t **watches;
        size_t n_watches;
        uv_timer_t watchdog_timer;
        uv_timer_t shutdown_timer;
        uv_signal_t sig_term, sig_int, sig_hup;

        /* Issuance budget: token bucket, refilled continuously. */
        double budget_tokens;
        uint64_t budget_last_us;

        /* Counters since start. */
        uint64_t outcomes[_OUTCOME_MAX];
        uint64_t certs_issued;
        uint64_t sessions_started;
        uint32_t rate_ring[RATE_WINDOW_S];      /* provisioned per second, ring */
        uint64_t rate_ring_sec;
        uint64_t started_us;

        /* Time added by provd per step, 10 µs buckets up to 100 ms, then one overflow bucket. */
#define LATENCY_BUCKETS 10001
        uint32_t *latency;
        uint64_t latency_count;

        uint64_t seq_state;             /* manager_session_seq() */
        unsigned jobs_in_flight;        /* worker jobs + DB requests, for shutdown */
        bool stopping;
        bool db_closing;
        bool db_closed;
        int exit_code;
};

int manager_new(struct manager **ret, uv_loop_t *loop, const char *config_path);
struct manager *manager_free(struct manager *m);
int manager_start(struct manager *m);
/** Starts an orderly shutdown: no new sessions, in-flight steps get conf.shutdown_ms. */
void manager_stop(struct manager *m);
/** Re-reads the configuration; on error logs it and keeps the current one. */
int manager_reload(struct manager *m);

/** Called by a station when a session ends (for counters and the rate). */
void manager_session_done(struct manager *m, enum outcome o);
/** Takes one issuance token; false when the hourly budget is spent. */
bool manager_take_issuance_token(struct manager *m);
/** Called by a station after its handles closed and its jobs finished. */
void manager_station_gone(struct manager *m, struct station *st);
/** Adds one "time added by provd" sample (response received → next request sent). */
void manager_record_latency(struct manager *m, uint64_t usec);
/**
 * Is @self's serial in an active session on another port? Also indexes @self
 * under that serial (called once per IDENT, with station_serial() set).
 */
bool manager_serial_in_use(struct manager *m, struct station *self);
/** Is the device @rdev open on a port that is not closing? */
bool manager_rdev_in_use(struct manager *m, dev_t rdev);
/** A first sequence number for a new session (PROTOCOL.md §8.1): random, not secret. */
uint16_t manager_session_seq(struct manager *m);
/** Boards provisioned in the last minute. */
unsigned manager_rate_per_minute(struct manager *m);

#endif
