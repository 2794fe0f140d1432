/* SPDX-License-Identifier: MIT */
/* The outbox worker's private header: the worker and its jobs, shared by aws-worker.c and aws-worker-job.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "aws-conf.h"
#include "aws-worker.h"
#include "db.h"

/* How often the reader is asked for due rows when nothing is known to be due. */
#define POLL_MS 250
/* Calls per second are counted over this window for the status. */
#define RATE_WINDOW_S 10
/* A free slot is refilled after this long, so that one claim refills several. */
#define REFILL_MS 20
/* A credentials reload at most this often, however many calls were refused. */
#define CREDS_RELOAD_MS 2000

struct job {
        struct aws_worker *w;
        struct job *next, *prev;
        int64_t id;
        enum db_outbox_kind kind;
        int64_t signer_id;
        struct aws_mar_job *mar;
        struct aws_ca_job *ca;
        uint8_t *der;
        size_t der_len;
        char thing[DB_NAME_MAX], serial[DB_SERIAL_MAX], model[DB_NAME_MAX], fw[DB_LABEL_MAX];
        char signer[DB_SHA256_HEX_MAX];
        unsigned step_attempts;
        uv_timer_t timer;
        bool in_call, settling;
        struct db_req req;
        /* What a complete request borrows until its done(). */
        char step_name[64];
        char arn[AWS_ARN_MAX + 1];
        char code[AWS_CODE_MAX + 1];
        char ca_id[AWS_CERT_ID_LEN + 1];
};

struct aws_worker {
        uv_loop_t *loop;
        struct db *db;
        const struct conf *conf;
        enum aws_mode mode;
        struct aws_worker_hooks hooks;
        struct issuer *issuer;
        int64_t signer_id;              /* the signer @issuer is (register_signer) */
        struct aws_http *http;
        struct aws_registrar *reg;
        struct aws_creds_source creds_src;
        char *creds_file, *creds_profile;
        bool have_creds;
        uint64_t creds_loaded_ms;
        char creds_from[96];
        unsigned concurrency;
        unsigned max_attempts;

        struct job *jobs;
        unsigned active;
        uv_timer_t poll_timer;
        bool polling;                   /* a poll or claim request is out */
        bool started, draining, stopping, stopped, http_closing;
        struct db_req poll_req, claim_req;
        struct db_req enqueue_req;
        bool enqueue_busy;
        char enqueue_payload[128];
        void (*stop_done)(void *userdata);
        void *stop_userdata;

        /* Counters for the status. */
        uint64_t calls, ok, retries, throttled, failed_jobs, done_jobs, cancelled;
        uint32_t rate_ring[RATE_WINDOW_S];
        uint64_t rate_sec;
        char last_code[AWS_CODE_MAX + 1];
        char last_message[AWS_MESSAGE_MAX + 1];
        int64_t last_error_ms;
        uint32_t rng;
};

/* aws-worker.c */
uint32_t aws_worker_rnd(struct aws_worker *w);
void aws_worker_count_call(struct aws_worker *w);
int aws_worker_load_creds(struct aws_worker *w, char *err, size_t errlen);
void aws_worker_poll_soon(struct aws_worker *w, uint64_t ms);
void aws_worker_maybe_stopped(struct aws_worker *w);

/* aws-worker-job.c: a claimed row's flow, step by step, then settled. */
void aws_job_settle(struct job *j, enum db_outbox_result result, int64_t retry_at, const char *code,
                    const char *message);
void aws_job_run(struct job *j);
void aws_job_start(struct aws_worker *w, const cJSON *item);
