/* SPDX-License-Identifier: MIT */
/* What the manager gives every station (station-env.h): counters, budget, sequence numbers, the drain. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
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

/* --- the issuance guard --------------------------------------------------------- */

static void budget_advance(struct manager *m, uint64_t min) {
        if (min <= m->budget_ring_min)
                return;         /* the clock went back: keep counting in the current minute */
        if (min - m->budget_ring_min >= BUDGET_MINUTES) {
                memset(m->budget_ring, 0, sizeof m->budget_ring);
                m->budget_in_ring = 0;
        } else
                for (uint64_t t = m->budget_ring_min + 1; t <= min; t++) {
                        m->budget_in_ring -= m->budget_ring[t % BUDGET_MINUTES];
                        m->budget_ring[t % BUDGET_MINUTES] = 0;
                }
        m->budget_ring_min = min;
}

uint64_t manager_budget_used(struct manager *m) {
        budget_advance(m, (uint64_t)wallclock_msec() / 60000);
        return m->budget_in_ring;
}

static struct port_rate *port_rate(struct manager *m, const char *path, bool create) {
        struct port_rate *p;

        for (size_t i = 0; i < m->n_port_rates; i++)
                if (streq(m->port_rates[i].path, path))
                        return &m->port_rates[i];
        if (!create)
                return NULL;
        /* Bounded: ports whose bucket is full again hold nothing worth keeping. */
        if (m->n_port_rates >= 2 * (size_t)m->conf.max_ports) {
                size_t k = 0;
                double cap = m->conf.max_certs_per_port_per_minute;
                uint64_t now = now_usec();
                for (size_t i = 0; i < m->n_port_rates; i++) {
                        struct port_rate *q = &m->port_rates[i];
                        if (q->tokens + (double)(now - q->last_us) * cap / 6e7 >= cap)
                                free(q->path);
                        else
                                m->port_rates[k++] = *q;
                }
                m->n_port_rates = k;
                if (k >= 2 * (size_t)m->conf.max_ports)
                        return NULL;
        }
        p = realloc(m->port_rates, (m->n_port_rates + 1) * sizeof *p);
        if (!p)
                return NULL;
        m->port_rates = p;
        p = &m->port_rates[m->n_port_rates];
        *p = (struct port_rate) { .path = strdup(path), .tokens = m->conf.max_certs_per_port_per_minute,
                                  .last_us = now_usec() };
        if (!p->path)
                return NULL;
        m->n_port_rates++;
        return p;
}

/* The port's tokens now (refilled continuously at max_certs_per_port_per_minute, up to that many). */
static double port_tokens(const struct manager *m, struct port_rate *p) {
        double cap = m->conf.max_certs_per_port_per_minute;
        uint64_t now = now_usec();

        p->tokens = MIN(cap, p->tokens + (double)(now - p->last_us) * cap / 6e7);
        p->last_us = now;
        return p->tokens;
}

static int guard(struct manager *m, const struct station *st, bool take, char *why, size_t whylen) {
        const struct conf *c = &m->conf;
        struct port_rate *p = NULL;
        uint64_t min = (uint64_t)wallclock_msec() / 60000;

        if (!conf_serial_allowed(c, station_serial(st))) {
                snprintf(why, whylen, "serial %s is not on the allow-list %s", station_serial(st),
                         c->serial_allowlist);
                return -EACCES;
        }
        budget_advance(m, min);
        if (c->max_certs_per_hour && m->budget_in_ring >= c->max_certs_per_hour) {
                snprintf(why, whylen, "issuance budget of %u certificates per hour is spent ([profile] "
                         "max_certs_per_hour)", c->max_certs_per_hour);
                return -EDQUOT;
        }
        if (c->max_certs_per_port_per_minute) {
                p = port_rate(m, station_path(st), true);
                if (!p || port_tokens(m, p) < 1.0) {
                        snprintf(why, whylen, "issuance rate of this port is spent: %u certificates per minute "
                                 "([profile] max_certs_per_port_per_minute)", c->max_certs_per_port_per_minute);
                        return -EDQUOT;
                }
        }
        if (!take)
                return 0;
        if (p)
                p->tokens -= 1.0;
        m->budget_ring[min % BUDGET_MINUTES]++;
        m->budget_in_ring++;
        return 0;
}

static int issuance_check(void *userdata, const struct station *st, char *why, size_t whylen) {
        return guard(userdata, st, false, why, whylen);
}

static int take_issuance_token(void *userdata, const struct station *st, char *why, size_t whylen) {
        return guard(userdata, st, true, why, whylen);
}

struct budget_job {
        struct db_req req;
        struct manager *m;
        void (*ready)(struct manager *m);
};

static void on_budget_loaded(struct db_req *req) {
        struct budget_job *j = container_of(req, struct budget_job, req);
        struct manager *m = j->m;
        void (*ready)(struct manager *m) = j->ready;
        const struct db_query_issued *q = &req->issued;
        bool ok = req->result >= 0;

        if (!ok) {
                /* Without the count, the budget would be a full one: refuse rather than guess. */
                log_error("cannot count the certificates of the last hour (issuance budget): %s", req->errmsg);
                m->exit_code = 1;
                manager_stop(m);
        } else if (!m->stopping) {
                budget_advance(m, (uint64_t)wallclock_msec() / 60000);
                for (unsigned i = 0; i < BUDGET_MINUTES; i++)
                        m->budget_ring[i] += q->per_minute[i];
                m->budget_in_ring += q->count;
                log_info("issuance budget: %" PRIu64 " certificate(s) issued in the last hour, %u per hour allowed",
                         q->count, m->conf.max_certs_per_hour);
        }
        free(j);
        if (ok && !m->stopping)
                ready(m);
        manager_job_end(m);
}

void manager_budget_load(struct manager *m, void (*ready)(struct manager *m)) {
        uint64_t min = (uint64_t)wallclock_msec() / 60000;
        struct budget_job *j;

        m->budget_ring_min = min;
        /* Unlimited: counted from now on (a reload that sets a budget counts from the start). */
        if (m->conf.max_certs_per_hour == 0) {
                ready(m);
                return;
        }
        j = calloc(1, sizeof *j);
        if (!j) {
                log_oom();
                m->exit_code = 1;
                manager_stop(m);
                return;
        }
        j->m = m;
        j->ready = ready;
        j->req.type = DB_QUERY_ISSUED;
        /* The 60 minutes of the ring: this one and the 59 before it. */
        j->req.issued.since_ms = (int64_t)(min - (BUDGET_MINUTES - 1)) * 60000;
        /* Past the budget the count changes nothing. */
        j->req.issued.max_rows = m->conf.max_certs_per_hour;
        j->req.done = on_budget_loaded;
        j->req.userdata = j;
        manager_job_begin(m);
        db_submit(m->db, &j->req);
}

void manager_env_done(struct manager *m) {
        for (size_t i = 0; i < m->n_port_rates; i++)
                free(m->port_rates[i].path);
        m->port_rates = (free(m->port_rates), NULL);
        m->n_port_rates = 0;
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
        .issuance_check = issuance_check,
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
