/* SPDX-License-Identifier: MIT */
/* The manager's state, shared by its files (manager*.c) and nobody else. */
#ifndef PROVD_MANAGER_INTERNAL_H
#define PROVD_MANAGER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "conf.h"
#include "manager.h"
#include "port-discovery.h"
#include "station-env.h"
#include "station-map.h"

struct aws_worker;
struct control;
struct db;
struct issuer;
struct signing_ctx;
struct station;

#define RATE_WINDOW_S 60
#define BUDGET_MINUTES 60

struct port_rate {
        char *path;
        double tokens;
        uint64_t last_us;
};
/* Time added by provd per step, 10 µs buckets up to 100 ms, then one overflow bucket. */
#define LATENCY_BUCKETS 10001

struct manager {
        uv_loop_t *loop;
        char *config_path;
        struct conf conf;
        struct db *db;
        struct issuer *issuer;          /* the configured signer's (start-bound) */
        struct signing_ctx *signing;    /* current: what new issuances take */
        char *signer_uri_public;        /* the URI without any PIN: safe to log and store */
        struct control *control;
        struct aws_worker *aws;         /* [aws] mode other than off (aws-worker.c) */
        struct station_env env;         /* what every station gets (manager-env.c) */
        struct port_discovery discovery;
        bool discovery_inited;

        /* Ports, sorted by path for O(log n) lookups during rescans. */
        struct station **stations;
        size_t n_stations;
        size_t cap_stations;
        /* The same stations by device number and by the serial of their board:
         * the in-use checks on every port open and every HELLO are O(1). */
        struct station_map by_rdev;
        struct station_map by_serial;

        uv_timer_t watchdog_timer;
        uv_timer_t shutdown_timer;
        uv_signal_t sig_term, sig_int, sig_hup;

        /*
         * Issuance budget (manager-env.c): certificates signed per minute
         * over the last hour, [minute % 60], loaded from the database at
         * start (DB_QUERY_ISSUED): a restart does not refill it.
         */
        uint32_t budget_ring[BUDGET_MINUTES];
        uint64_t budget_ring_min;
        uint64_t budget_in_ring;
        /* Per port: a token bucket of max_certs_per_port_per_minute, by port path. */
        struct port_rate *port_rates;
        size_t n_port_rates;

        /* Counters since start. */
        uint64_t outcomes[_OUTCOME_MAX];
        uint64_t certs_issued;
        uint64_t sessions_started;
        uint32_t rate_ring[RATE_WINDOW_S];      /* provisioned per second, ring */
        uint64_t rate_ring_sec;
        uint64_t started_us;
        uint32_t *latency;
        uint64_t latency_count;

        uint64_t seq_state;             /* session_seq() */
        unsigned jobs_in_flight;        /* manager_job_begin() − manager_job_end() */
        bool stopping;
        bool rotating;                  /* manager_signer_rotate() in flight */
        bool db_closing;
        bool db_closed;
        int exit_code;
};

/* manager-env.c: the station environment's hooks and the counters behind them. */
void manager_env_init(struct manager *m);
void manager_env_done(struct manager *m);
/* Loads the budget's count from the database, then calls @ready; on error stops provd. */
void manager_budget_load(struct manager *m, void (*ready)(struct manager *m));
/* Certificates counted against the hourly budget now. */
uint64_t manager_budget_used(struct manager *m);
unsigned manager_rate_per_minute(struct manager *m);
double manager_latency_percentile(const struct manager *m, double p);

/* manager-ports.c: the set of open ports. */
void manager_ports_start(struct manager *m);
struct station *manager_find_station(struct manager *m, const char *path);
void manager_ports_free(struct manager *m);
/* Station environment hooks the port set answers (userdata: the manager). */
bool manager_serial_in_use(void *userdata, struct station *self);
bool manager_rdev_in_use(void *userdata, dev_t rdev);
void manager_station_gone(void *userdata, struct station *st);

/* manager-control.c: the control socket's requests. */
int manager_control_open(struct manager *m);

/* manager.c: the AWS outbox worker's start (after the signer is recorded). */
int manager_aws_start(struct manager *m);

/* manager-signer.c: the signer, its record, the signing context, the audit head. */
int manager_signer_open(struct manager *m);
int manager_check_signer_files(const struct conf *c);
int manager_open_issuer(const struct conf *c, struct issuer **ret);

/* manager-rotate.c: live signer rotation (a reload that names another signer). */
typedef void (*manager_rotate_cb)(void *userdata, int r, const char *msg, int64_t old_id, int64_t new_id);
/* Do the [signer] settings of @a and @b name different signers? */
bool manager_signer_differs(const struct conf *a, const struct conf *b);
/* Re-reads the configuration on a worker thread, opens its signer and switches to it; @done once finished. */
int manager_signer_rotate(struct manager *m, const char *actor, manager_rotate_cb done, void *userdata);
/*
 * manager.c: the reload behind SIGHUP and the control command "reload". When
 * the new configuration names another signer, a rotation starts and @done
 * runs when it is over (r = 1: no rotation was needed, done runs at once).
 */
int manager_reload_full(struct manager *m, const char *actor, manager_rotate_cb done, void *userdata);
int manager_signer_record(struct manager *m, void (*ready)(struct manager *m));
void manager_log_audit_head(struct manager *m, const char *when);

#endif
