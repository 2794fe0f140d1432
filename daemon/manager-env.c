/* SPDX-License-Identifier: MIT */
/* What the manager gives every station (station-env.h): counters, budget, sequence numbers, the drain. */

#include <string.h>

#include "manager-internal.h"
#include "signing-ctx.h"
#include "station.h"
#include "util.h"

static void rate_advance(struct manager *m, uint64_t sec) {
        if (sec - m->rate_ring_sec >= RATE_WINDOW_S)
                memset(m->rate_ring, 0, sizeof m->rate_ring);
        else
                for (uint64_t s = m->rate_ring_sec + 1; s <= sec; s++)
                        m->rate_ring[s % RATE_WINDOW_S] = 0;
        m->rate_ring_sec = sec;
}

static void session_done(void *userdata, enum outcome o) {
        struct manager *m = userdata;

        if (o >= _OUTCOME_MAX)
                return;
        m->outcomes[o]++;
        if (o == OUTCOME_PROVISIONED) {
                uint64_t sec = now_usec() / 1000000;
                rate_advance(m, sec);
                m->rate_ring[sec % RATE_WINDOW_S]++;
        }
}

unsigned manager_rate_per_minute(struct manager *m) {
        unsigned n = 0;

        rate_advance(m, now_usec() / 1000000);
        for (unsigned i = 0; i < RATE_WINDOW_S; i++)
                n += m->rate_ring[i];
        return n;
}

static void record_latency(void *userdata, uint64_t usec) {
        struct manager *m = userdata;
        uint64_t b = usec / 10;

        if (!m->latency)
                return;
        m->latency[b < LATENCY_BUCKETS - 1 ? b : LATENCY_BUCKETS - 1]++;
        m->latency_count++;
}

double manager_latency_percentile(const struct manager *m, double p) {
        uint64_t want, seen = 0;

        if (!m->latency || m->latency_count == 0)
                return 0;
        want = (uint64_t)(p * (double)m->latency_count);
        if (want >= m->latency_count)
                want = m->latency_count - 1;
        for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
                seen += m->latency[i];
                if (seen > want)
                        return (double)(i + 1) * 10.0;  /* upper edge of the bucket, µs */
        }
        return 1e5;
}

static bool take_issuance_token(void *userdata) {
        struct manager *m = userdata;
        double cap = m->conf.max_certs_per_hour;
        uint64_t now = now_usec();

        if (m->conf.max_certs_per_hour == 0)
                return true;
        if (m->budget_last_us == 0)
                m->budget_tokens = cap;
        else
                m->budget_tokens = MIN(cap, m->budget_tokens + (double)(now - m->budget_last_us) * cap / 3.6e9);
        m->budget_last_us = now;
        if (m->budget_tokens < 1.0)
                return false;
        m->budget_tokens -= 1.0;
        return true;
}

/*
 * splitmix64 (Steele, Lea, Flood 2014), seeded from the CSPRNG in
 * manager_new(). PROTOCOL.md §8.1 wants a random first seq per session so a
 * board's response cache is unlikely to match a stale (seq, type) after a
 * reconnection; nothing depends on it being unpredictable, so it does not
 * cost a trip through the DRBG (and its fork check) on every port open.
 */
static uint16_t session_seq(void *userdata) {
        struct manager *m = userdata;
        uint64_t z = (m->seq_state += UINT64_C(0x9e3779b97f4a7c15));

        m->sessions_started++;
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (uint16_t)((z ^ (z >> 31)) >> 48);
}

static void cert_issued(void *userdata) {
        struct manager *m = userdata;

        m->certs_issued++;
}

static struct signing_ctx *current_signing_ctx(void *userdata) {
        return manager_signing_ctx(userdata);
}

void manager_set_signing_ctx(struct manager *m, struct signing_ctx *ctx) {
        struct signing_ctx *old = m->signing;

        m->signing = signing_ctx_ref(ctx);
        signing_ctx_unref(old);
}

struct signing_ctx *manager_signing_ctx(const struct manager *m) {
        return m->signing;
}

void manager_job_begin(struct manager *m) {
        m->jobs_in_flight++;
}

void manager_job_end(struct manager *m) {
        if (CHECK_FAILED(m->jobs_in_flight > 0))
                return;
        m->jobs_in_flight--;
        if (m->stopping)
                manager_stop(m);        /* re-evaluate: maybe everything is done now */
}

static void job_begin(void *userdata) {
        manager_job_begin(userdata);
}

static void job_end(void *userdata) {
        manager_job_end(userdata);
}

static const struct station_env_ops ops = {
        .job_begin = job_begin,
        .job_end = job_end,
        .session_seq = session_seq,
        .session_done = session_done,
        .take_issuance_token = take_issuance_token,
        .signing_ctx = current_signing_ctx,
        .cert_issued = cert_issued,
        .record_latency = record_latency,
        .serial_in_use = manager_serial_in_use,
        .rdev_in_use = manager_rdev_in_use,
        .station_gone = manager_station_gone,
};

void manager_env_init(struct manager *m) {
        m->env = (struct station_env) {
                .loop = m->loop,
                .db = m->db,
                .conf = &m->conf,
                .ops = &ops,
                .userdata = m,
        };
}
