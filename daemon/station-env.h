/* SPDX-License-Identifier: MIT */
/* What a station's session may use of the daemon: loop, database, configuration and a few hooks. */
#ifndef PROVD_STATION_ENV_H
#define PROVD_STATION_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct conf;
struct db;
struct db_req;
struct signing_ctx;
struct station;

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

/*
 * Every hook is called on the loop thread with the environment's userdata.
 * The manager provides them (manager-env.c); tests provide stubs.
 */
struct station_env_ops {
        /*
         * Shutdown drain: a worker job or database request on behalf of a
         * station starts / has returned. The daemon exits only when every
         * begun job has ended (bounded by [timeouts] shutdown_ms).
         */
        void (*job_begin)(void *userdata);
        void (*job_end)(void *userdata);
        /* Optional: replaces db_submit(env->db, req) (a test's stub database). */
        void (*db_submit)(void *userdata, struct db_req *req);
        /* A new session starts on a port (counted): its first sequence number (PROTOCOL.md §8.1). */
        uint16_t (*session_seq)(void *userdata);
        /* A session's verdict is recorded (counters, rate). */
        void (*session_done)(void *userdata, enum outcome o);
        /*
         * The issuance guard for @st's board (serial allow-list, the port's
         * rate, the hourly budget). issuance_check(): may its CSR be validated
         * and signed now (nothing counted)? take_issuance_token(): its CSR
         * passed validation and was signed, count it, so a bad CSR spends
         * nothing. Both return 0, or -EACCES (the serial is not allowed) or
         * -EDQUOT (a budget is spent) with the reason in @why.
         */
        int (*issuance_check)(void *userdata, const struct station *st, char *why, size_t whylen);
        int (*take_issuance_token)(void *userdata, const struct station *st, char *why, size_t whylen);
        /* The current signing context, borrowed: the session takes its own reference. */
        struct signing_ctx *(*signing_ctx)(void *userdata);
        /* A certificate was signed and its issuance recorded (counter). */
        void (*cert_issued)(void *userdata);
        /* One "time added by provd" sample: response received → next request sent. */
        void (*record_latency)(void *userdata, uint64_t usec);
        /*
         * Is @self's serial in an active session on another port? Also indexes
         * @self under that serial (once per IDENT, station_serial() set).
         */
        bool (*serial_in_use)(void *userdata, struct station *self);
        /* Is the device @rdev open on a port that is not closing? */
        bool (*rdev_in_use)(void *userdata, dev_t rdev);
        /* The station's handles are closed and its jobs ended: the owner frees it (station_free()). */
        void (*station_gone)(void *userdata, struct station *st);
};

struct station_env {
        uv_loop_t *loop;
        struct db *db;
        /* Read live: a reload replaces the values, never the object. */
        const struct conf *conf;
        const struct station_env_ops *ops;
        void *userdata;
};

#endif
