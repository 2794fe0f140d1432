/* SPDX-License-Identifier: MIT */
/* Benchmark of the DB writer: durable (synchronous=FULL) commits, single-row vs. group commit. */

/*
 * Usage: bench-db [DIR] [SCALE] [FILTER]
 *        bench-db --make-db PATH DEVICES
 *   --make-db  builds a provd database of DEVICES provisioned boards at PATH (a
 *          new file) for the measurements on a large database (bench.py
 *          --db-from, docs/PERFORMANCE.md): each board has its device row, an
 *          active 560-byte certificate, a provisioned attempt and a done
 *          register_cert outbox row, written straight with SQL in transactions
 *          of 10,000 boards (no audit rows). The totals are counted at the end.
 *   DIR    where the scratch databases go (default /var/tmp). Use a real disk:
 *          on tmpfs fsync is free and the numbers mean nothing.
 *   SCALE  multiplies the request counts (default 1).
 *   FILTER runs only the cases whose name contains it.
 *
 * Environment, for experiments:
 *   BENCH_DB_SQL     SQL run on each fresh database before a case (e.g. "DROP INDEX x")
 *   BENCH_DB_BOARDS  boards for the "like provd" case (default 20,000 x SCALE)
 *   BENCH_DB_DELAY   batch_delay_us for the "like provd" case (default 0)
 * Instructions per board (steady, unlike CPU time on a shared VM):
 *   BENCH_DB_BOARDS=3000 valgrind --tool=callgrind bench-db /var/tmp 1 "like provd"
 *   and divide the summary by 3000.
 *
 * Prints one line per case: units (requests, or boards), commits, average
 * batch, requests/s, rows/s, process CPU time (both threads) per unit and,
 * for the per-board cases, boards/s. On a shared or virtual disk fsync time
 * varies a lot from run to run; CPU per unit is the steadier figure. "rows" counts the table rows each request
 * writes (an attempts row = 1; issuance = device + certificate + audit = 3;
 * provisioned outcome = certificate + device + outbox + attempt = 4),
 * not index or counter updates.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <uv.h>

#include "db.h"
#include "schema/schema.h"
#include "util.h"

#define TMPFS_MAGIC_ 0x01021994

struct bench;

struct slot {
        struct db_req req;
        uint64_t submitted_ns;
        struct bench *b;
        uint8_t der[560];
        int64_t cert_id;
        int phase;                      /* per board: 0 lookup, 1 issuance, 2 outcome */
        struct db_record_issuance issuance;     /* the board's issuance, kept for the later phases */
        uv_timer_t board_time;          /* the board's own time between two steps */
};

struct bench {
        uv_loop_t *loop;
        struct db *db;
        unsigned in_flight;
        unsigned long target;           /* boards or requests to complete */
        unsigned long submitted, completed;
        unsigned long errors;
        bool per_board;                 /* issuance + outcome per unit */
        bool like_provd;                /* lookup + issuance + outcome, random keys, board time */
        unsigned board_ms;              /* like_provd: time the board takes between two steps */
        uint64_t next_serial;
        uint64_t rng;
        int64_t signer_id;
        struct slot *slots;
        uint32_t *latency_us;           /* submit -> done() of every request */
        size_t n_latency, cap_latency;
};

static void submit_timed(struct slot *s) {
        s->submitted_ns = uv_hrtime();
        db_submit(s->b->db, &s->req);
}

static uint64_t now_ns(void) {
        return uv_hrtime();
}

static double cpu_now(void) {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_closed(struct db *db, void *userdata) {
        *(bool *)userdata = true;
}

static void on_done(struct db_req *req);

static void fill_attempt(struct slot *s) {
        memset(&s->req, 0, sizeof(s->req));
        s->req.type = DB_RECORD_OUTCOME;
        snprintf(s->req.outcome.port, sizeof(s->req.outcome.port), "/dev/ttyACM%u", (unsigned)(s - s->b->slots));
        snprintf(s->req.outcome.slot, sizeof(s->req.outcome.slot), "hub-%u", (unsigned)(s - s->b->slots));
        s->req.outcome.outcome = DB_OUTCOME_FAILED;
        snprintf(s->req.outcome.step, sizeof(s->req.outcome.step), "hello");
        snprintf(s->req.outcome.error, sizeof(s->req.outcome.error), "board did not answer");
        s->req.outcome.timings_json = "{\"hello_ms\":1000}";
}

static uint64_t rnd(struct bench *b) {
        /* xorshift64*: deterministic, spread like real serials and fingerprints */
        b->rng ^= b->rng >> 12;
        b->rng ^= b->rng << 25;
        b->rng ^= b->rng >> 27;
        return b->rng * 2685821657736338717ULL;
}

static void fill_issuance(struct slot *s) {
        struct bench *b = s->b;
        uint64_t n = b->next_serial++, k = b->like_provd ? rnd(b) : n, c = b->like_provd ? rnd(b) : n;

        memset(&s->req, 0, sizeof(s->req));
        s->req.type = DB_RECORD_ISSUANCE;
        snprintf(s->req.issuance.serial, sizeof(s->req.issuance.serial), "01%016llx", (unsigned long long)k);
        snprintf(s->req.issuance.model, sizeof(s->req.issuance.model), "ATECC608B");
        snprintf(s->req.issuance.fw_version, sizeof(s->req.issuance.fw_version), "1.0.0");
        s->req.issuance.pubkey[0] = 0x04;
        memcpy(s->req.issuance.pubkey + 1, &n, sizeof(n));
        memset(s->der, 0x30, sizeof(s->der));
        memcpy(s->der + 8, &n, sizeof(n));
        memcpy(s->der + 16, &c, sizeof(c));
        s->req.issuance.cert_der = s->der;
        s->req.issuance.cert_der_len = b->like_provd ? sizeof(s->der) : 64;
        snprintf(s->req.issuance.cert_serial, sizeof(s->req.issuance.cert_serial), "7f%016llx%014llx",
                 (unsigned long long)c, (unsigned long long)(n & 0xffffffffffffffULL));
        s->req.issuance.not_before_ms = 1700000000000;
        s->req.issuance.not_after_ms = 253402300799000;
        s->req.issuance.signer_id = b->signer_id;
        snprintf(s->req.issuance.thing_name, sizeof(s->req.issuance.thing_name), "%s", s->req.issuance.serial);
        snprintf(s->req.issuance.port, sizeof(s->req.issuance.port), "/dev/ttyACM%u", (unsigned)(s - b->slots));
        snprintf(s->req.issuance.slot, sizeof(s->req.issuance.slot), "hub-%u", (unsigned)(s - b->slots));
}

static void fill_provisioned(struct slot *s) {
        char serial[DB_SERIAL_MAX];
        int64_t cert_id = s->issuance.cert_id;

        memcpy(serial, s->issuance.serial, sizeof(serial));
        fill_attempt(s);
        memcpy(s->req.outcome.serial, serial, sizeof(serial));
        s->req.outcome.outcome = DB_OUTCOME_PROVISIONED;
        s->req.outcome.cert_id = cert_id;
        snprintf(s->req.outcome.step, sizeof(s->req.outcome.step), "done");
        s->req.outcome.error[0] = 0;
        s->req.outcome.timings_json = "{\"hello_ms\":3,\"csr_ms\":100,\"write_ms\":40,\"prove_ms\":20}";
}

static void next(struct slot *s) {
        struct bench *b = s->b;

        if (b->submitted >= b->target)
                return;
        b->submitted++;
        s->phase = 1;
        if (b->per_board) {
                fill_issuance(s);
                s->issuance = s->req.issuance;
        } else
                fill_attempt(s);
        if (b->like_provd) {
                /* HELLO answered: the station looks the serial up first */
                s->phase = 0;
                memset(&s->req, 0, sizeof(s->req));
                s->req.type = DB_LOOKUP_DEVICE;
                memcpy(s->req.lookup.serial, s->issuance.serial, sizeof(s->req.lookup.serial));
        }
        s->req.done = on_done;
        s->req.userdata = s;
        submit_timed(s);
}

static void submit_phase(struct slot *s) {
        if (s->phase == 1) {
                memset(&s->req, 0, sizeof(s->req));
                s->req.type = DB_RECORD_ISSUANCE;
                s->req.issuance = s->issuance;
        } else
                fill_provisioned(s);
        s->req.done = on_done;
        s->req.userdata = s;
        submit_timed(s);
}

static void on_board_time(uv_timer_t *t) {
        submit_phase(t->data);
}

static void on_done(struct db_req *req) {
        struct slot *s = req->userdata;
        struct bench *b = s->b;

        if (b->n_latency < b->cap_latency)
                b->latency_us[b->n_latency++] = (uint32_t)((uv_hrtime() - s->submitted_ns) / 1000);

        if (req->result < 0) {
                if (b->errors++ < 5)
                        fprintf(stderr, "request failed: %s\n", req->errmsg);
        } else if (b->per_board && s->phase < 2) {
                if (s->phase == 0 && req->lookup.found && b->errors++ < 5)
                        fprintf(stderr, "random serial %s already known\n", req->lookup.serial);
                if (s->phase == 1)
                        s->issuance.cert_id = req->issuance.cert_id;
                s->phase++;
                if (b->board_ms) {
                        s->board_time.data = s;
                        uv_timer_start(&s->board_time, on_board_time, b->board_ms, 0);
                } else
                        submit_phase(s);
                return;
        }
        b->completed++;
        next(s);
}

static void on_signer(struct db_req *req) {
        *(bool *)req->userdata = true;
}

/* A throwaway self-signed signer certificate, recorded through DB_SIGNER_ENSURE. */
static int ensure_signer(struct bench *b) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        unsigned char *der = NULL;
        bool done = false;
        struct db_req req = { .type = DB_SIGNER_ENSURE, .done = on_signer, .userdata = &done };
        int len;

        if (!key || !x)
                return -ENOMEM;
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"bench signer", -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, key);
        if (X509_sign(x, key, EVP_sha256()) <= 0 || (len = i2d_X509(x, &der)) <= 0)
                return -EIO;

        snprintf(req.signer.name, sizeof(req.signer.name), "bench");
        req.signer.key_uri = "file:/etc/provd/bench.key";
        req.signer.cert_der = der;
        req.signer.cert_der_len = (size_t)len;
        db_submit(b->db, &req);
        while (!done)
                uv_run(b->loop, UV_RUN_ONCE);
        b->signer_id = req.signer.signer_id;
        OPENSSL_free(der);
        X509_free(x);
        EVP_PKEY_free(key);
        return req.result;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

struct result {
        uint32_t p50_us, p99_us, max_us;        /* request latency, submit -> done() */
        double seconds;
        double cpu_seconds;             /* user + system, all threads */
        unsigned long units;
        struct db_metrics m;
};

static void on_timer_closed(uv_handle_t *h) {
        (void)h;
}

static int run_db_case(const char *dir, unsigned in_flight, unsigned max_batch, unsigned delay_us,
                       bool per_board, unsigned board_ms, unsigned long units, struct result *ret) {
        char path[512], err[600] = "";
        uv_loop_t loop;
        struct bench b = { .loop = &loop, .in_flight = in_flight, .target = units, .per_board = per_board,
                           .like_provd = per_board && board_ms > 0, .board_ms = board_ms,
                           .rng = 0x9e3779b97f4a7c15ULL };
        struct db_metrics m0;
        bool closed = false;
        uint64_t t0;
        double cpu0;
        int r;

        snprintf(path, sizeof(path), "%s/bench-db-%d.sqlite", dir, (int)getpid());
        unlink(path);
        uv_loop_init(&loop);
        r = db_open(&b.db, &loop, path, &(struct db_options){ .max_batch = max_batch, .batch_delay_us = delay_us,
                                                            .errbuf = err, .errbuf_size = sizeof(err) });
        if (r < 0) {
                fprintf(stderr, "db_open %s: %s\n", path, err);
                return r;
        }
        if (getenv("BENCH_DB_SQL")) {
                sqlite3 *c;
                char *e = NULL;
                sqlite3_open(path, &c);
                if (sqlite3_exec(c, getenv("BENCH_DB_SQL"), NULL, NULL, &e) != SQLITE_OK)
                        fprintf(stderr, "BENCH_DB_SQL: %s\n", e);
                sqlite3_close(c);
        }
        r = ensure_signer(&b);
        if (r < 0) {
                fprintf(stderr, "signer: %s\n", strerror(-r));
                return r;
        }
        db_get_metrics(b.db, &m0);

        b.slots = calloc(in_flight, sizeof(*b.slots));
        b.cap_latency = units * 3;      /* "like provd": lookup, issuance and outcome per board */
        b.latency_us = calloc(b.cap_latency, sizeof(*b.latency_us));
        if (!b.slots || !b.latency_us)
                return -ENOMEM;
        t0 = now_ns();
        cpu0 = cpu_now();
        for (unsigned i = 0; i < in_flight; i++) {
                b.slots[i].b = &b;
                uv_timer_init(&loop, &b.slots[i].board_time);
                next(&b.slots[i]);
        }
        while (b.completed < b.target)
                uv_run(&loop, UV_RUN_ONCE);
        ret->seconds = (double)(now_ns() - t0) / 1e9;
        ret->cpu_seconds = cpu_now() - cpu0;
        ret->units = b.completed;
        qsort(b.latency_us, b.n_latency, sizeof(*b.latency_us), cmp_u32);
        ret->p50_us = b.n_latency ? b.latency_us[b.n_latency / 2] : 0;
        ret->p99_us = b.n_latency ? b.latency_us[b.n_latency * 99 / 100] : 0;
        ret->max_us = b.n_latency ? b.latency_us[b.n_latency - 1] : 0;
        free(b.latency_us);
        db_get_metrics(b.db, &ret->m);
        ret->m.batches -= m0.batches;
        ret->m.requests -= m0.requests;
        ret->m.reads -= m0.reads;

        for (unsigned i = 0; i < in_flight; i++)
                uv_close((uv_handle_t *)&b.slots[i].board_time, on_timer_closed);
        db_close(b.db, on_closed, &closed);
        while (!closed)
                uv_run(&loop, UV_RUN_ONCE);
        uv_loop_close(&loop);
        free(b.slots);
        unlink(path);
        snprintf(err, sizeof(err), "%s-wal", path);
        unlink(err);
        snprintf(err, sizeof(err), "%s-shm", path);
        unlink(err);
        if (b.errors) {
                fprintf(stderr, "%lu requests failed\n", b.errors);
                return -EIO;
        }
        return 0;
}

/* Reference: the same attempts row straight through SQLite, no thread, no savepoints. */
static int run_raw_case(const char *dir, unsigned rows_per_commit, unsigned long rows, struct result *ret) {
        char path[512];
        sqlite3 *db = NULL;
        sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
        uint64_t t0;
        double cpu0;
        int r;

        snprintf(path, sizeof(path), "%s/bench-raw-%d.sqlite", dir, (int)getpid());
        unlink(path);
        r = schema_open(&db, path, NULL, NULL, 0);
        if (r < 0)
                return r;
        sqlite3_prepare_v2(db, "INSERT INTO attempts (port, slot, started_at, finished_at, outcome, step, error, "
                               "timings) VALUES ('/dev/ttyACM0', 'hub-0', 1, 2, 'failed', 'hello', "
                               "'board did not answer', '{\"hello_ms\":1000}')", -1, &ins, NULL);
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL);
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL);
        t0 = now_ns();
        cpu0 = cpu_now();
        for (unsigned long done = 0; done < rows;) {
                sqlite3_step(begin);
                sqlite3_reset(begin);
                for (unsigned i = 0; i < rows_per_commit && done < rows; i++, done++) {
                        if (sqlite3_step(ins) != SQLITE_DONE)
                                return -EIO;
                        sqlite3_reset(ins);
                }
                if (sqlite3_step(commit) != SQLITE_DONE)
                        return -EIO;
                sqlite3_reset(commit);
        }
        ret->seconds = (double)(now_ns() - t0) / 1e9;
        ret->cpu_seconds = cpu_now() - cpu0;
        ret->units = rows;
        ret->m = (struct db_metrics){ .batches = (rows + rows_per_commit - 1) / rows_per_commit, .requests = rows };
        sqlite3_finalize(ins);
        sqlite3_finalize(begin);
        sqlite3_finalize(commit);
        sqlite3_close(db);
        unlink(path);
        return 0;
}

static void print(const char *name, const struct result *res, unsigned rows_per_unit, bool per_board) {
        double units_s = (double)res->units / res->seconds;

        printf("%-44s %8lu %8llu %7.1f %10.0f %10.0f %9.1f\n", name, res->units,
               (unsigned long long)res->m.batches,
               /* requests per commit: the reads (reader thread) commit nothing */
               res->m.batches ? (double)(res->m.requests - res->m.reads) / (double)res->m.batches : 0.0,
               (double)res->m.requests / res->seconds, units_s * rows_per_unit,
               res->cpu_seconds * 1e6 / (double)res->units);
        if (per_board)
                printf("%-44s %47s %10.0f   (CPU us above is per board)\n", "", "boards/s:", units_s);
        if (res->max_us)
                printf("%-44s request latency p50 %u us, p99 %u us, max %u us\n", "", res->p50_us, res->p99_us,
                       res->max_us);
}

/* The totals of schema 3, recounted from the rows (as the migration 0003 does). */
static const char recount_totals_sql[] =
        "DELETE FROM totals;"
        "INSERT INTO totals (name, n) SELECT 'devices.' || s.column1, "
        "  (SELECT count(*) FROM devices WHERE state = s.column1) "
        "  FROM (VALUES ('issued'), ('provisioned'), ('clone_suspected')) AS s;"
        "INSERT INTO totals (name, n) SELECT 'certificates.total', count(*) FROM certificates;"
        "INSERT INTO totals (name, n) SELECT 'certificates.' || s.column1, "
        "  (SELECT count(*) FROM certificates WHERE status = s.column1) "
        "  FROM (VALUES ('issued'), ('active'), ('superseded'), ('revoked')) AS s;"
        "INSERT INTO totals (name, n) SELECT 'attempts.' || s.column1, "
        "  (SELECT count(*) FROM attempts WHERE outcome = s.column1) "
        "  FROM (VALUES ('provisioned'), ('already_provisioned'), ('failed'), ('rejected'), "
        "  ('clone_suspected'), ('aborted')) AS s;"
        "INSERT INTO totals (name, n) SELECT 'aws_outbox.' || s.column1, "
        "  (SELECT count(*) FROM aws_outbox WHERE state = s.column1) "
        "  FROM (VALUES ('pending'), ('in_flight'), ('done'), ('failed')) AS s;";

static int make_db(const char *path, unsigned long devices) {
        static const char *const sql[] = {
                "INSERT INTO devices (serial, model, fw_version, pubkey, state, first_seen, provisioned_at, "
                "updated_at) VALUES (?1, 'ATECC608B-TNGTLS', '1.0.0', ?2, 'provisioned', ?3, ?3, ?3)",
                "INSERT INTO certificates (device_serial, signer_id, serial_hex, sha256, der, thing_name, "
                "not_before, not_after, issued_at, proven_at, status, status_at) "
                "VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?6 + 31536000000, ?6, ?6, 'active', ?6)",
                "UPDATE devices SET current_cert_id = ?2 WHERE serial = ?1",
                "INSERT INTO attempts (port, slot, serial, started_at, finished_at, outcome, step, cert_id) "
                "VALUES ('/dev/ttyACM0', 'A1', ?1, ?2, ?2, 'provisioned', 'done', ?3)",
                "INSERT INTO aws_outbox (kind, cert_id, payload, state, attempts, next_attempt_at, created_at, "
                "done_at) VALUES ('register_cert', ?1, '{}', 'done', 1, ?2, ?2, ?2)",
        };
        sqlite3_stmt *st[5] = {};
        sqlite3 *db = NULL;
        char err[256] = "", sha[DB_SHA256_HEX_MAX], serial[DB_SERIAL_MAX], cs[DB_CERT_SERIAL_MAX], thing[80];
        uint8_t der[560], key[DB_PUBKEY_LEN], signer[300];
        uint64_t rng = 0x9e3779b97f4a7c15ull;
        int64_t t = 1700000000000;
        double t0 = (double)now_ns();
        int r, rc = SQLITE_OK;

        if (access(path, F_OK) == 0) {
                fprintf(stderr, "%s exists; --make-db writes a new file\n", path);
                return -EEXIST;
        }
        r = schema_open(&db, path, NULL, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "%s\n", err);
                return r;
        }
        /* A fixture: nothing is lost if the build is cut short, it is built again. */
        sqlite3_exec(db, "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144", NULL, NULL, NULL);
        for (size_t i = 0; i < sizeof(signer); i++)
                signer[i] = (uint8_t)(i * 7 + 1);
        db_sha256_hex(signer, sizeof(signer), sha);
        {
                sqlite3_stmt *s1 = NULL;

                sqlite3_prepare_v2(db, "INSERT INTO signers (name, key_uri, cert_der, cert_sha256, subject, "
                                       "not_before, not_after, created_at) VALUES ('bench-db', 'file:/nonexistent', "
                                       "?1, ?2, 'CN=bench-db', 0, 1, 0)", -1, &s1, NULL);
                sqlite3_bind_blob(s1, 1, signer, sizeof(signer), SQLITE_STATIC);
                sqlite3_bind_text(s1, 2, sha, -1, SQLITE_STATIC);
                rc = sqlite3_step(s1);
                sqlite3_finalize(s1);
                if (rc != SQLITE_DONE)
                        goto fail;
        }
        for (size_t i = 0; i < 5; i++)
                if ((rc = sqlite3_prepare_v2(db, sql[i], -1, &st[i], NULL)) != SQLITE_OK)
                        goto fail;

        for (unsigned long n = 0; n < devices;) {
                sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
                for (unsigned k = 0; k < 10000 && n < devices; k++, n++, t += 10) {
                        int64_t cert_id;

                        for (size_t i = 0; i < sizeof(der); i += 8) {
                                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                                memcpy(der + i, &rng, MIN(sizeof(rng), sizeof(der) - i));
                        }
                        /* 16 random bytes: never one of the simulator's serials. */
                        hex_encode(der, 16, serial, false);
                        key[0] = 0x04;
                        memcpy(key + 1, der + 16, DB_PUBKEY_LEN - 1);
                        db_sha256_hex(der, sizeof(der), sha);
                        snprintf(cs, sizeof(cs), "01%018lx", n);
                        snprintf(thing, sizeof(thing), "thing-%s", serial);

                        sqlite3_bind_text(st[0], 1, serial, -1, SQLITE_STATIC);
                        sqlite3_bind_blob(st[0], 2, key, sizeof(key), SQLITE_STATIC);
                        sqlite3_bind_int64(st[0], 3, t);
                        sqlite3_bind_text(st[1], 1, serial, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st[1], 2, cs, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st[1], 3, sha, -1, SQLITE_STATIC);
                        sqlite3_bind_blob(st[1], 4, der, sizeof(der), SQLITE_STATIC);
                        sqlite3_bind_text(st[1], 5, thing, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st[1], 6, t);
                        if ((rc = sqlite3_step(st[0])) != SQLITE_DONE || (rc = sqlite3_step(st[1])) != SQLITE_DONE)
                                goto fail;
                        cert_id = sqlite3_last_insert_rowid(db);
                        sqlite3_bind_text(st[2], 1, serial, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st[2], 2, cert_id);
                        sqlite3_bind_text(st[3], 1, serial, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st[3], 2, t);
                        sqlite3_bind_int64(st[3], 3, cert_id);
                        sqlite3_bind_int64(st[4], 1, cert_id);
                        sqlite3_bind_int64(st[4], 2, t);
                        for (size_t i = 2; i < 5; i++)
                                if ((rc = sqlite3_step(st[i])) != SQLITE_DONE)
                                        goto fail;
                        for (size_t i = 0; i < 5; i++)
                                sqlite3_reset(st[i]);
                }
                if ((rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
                        goto fail;
                if (n % 100000 == 0 || n == devices)
                        fprintf(stderr, "%lu devices, %.0f s\n", n, ((double)now_ns() - t0) / 1e9);
        }
        if ((rc = sqlite3_exec(db, recount_totals_sql, NULL, NULL, NULL)) != SQLITE_OK ||
            (rc = sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL)) != SQLITE_OK)
                goto fail;
        for (size_t i = 0; i < 5; i++)
                sqlite3_finalize(st[i]);
        sqlite3_close(db);
        printf("%s: %lu provisioned devices\n", path, devices);
        return 0;
fail:
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        for (size_t i = 0; i < 5; i++)
                sqlite3_finalize(st[i]);
        sqlite3_close(db);
        return -EIO;
}

int main(int argc, char **argv) {
        const char *dir = argc > 1 ? argv[1] : "/var/tmp";
        unsigned long scale = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
        const char *filter = argc > 3 ? argv[3] : "";
        struct statfs sfs;
        struct result res = {};

        if (argc == 4 && strcmp(argv[1], "--make-db") == 0)
                return make_db(argv[2], strtoul(argv[3], NULL, 10)) < 0 ? 1 : 0;
        if (scale == 0)
                scale = 1;
        /* as provd's main() does, before SQLite initialises */
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        if (statfs(dir, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC_)
                fprintf(stderr, "warning: %s is tmpfs; fsync costs nothing there\n", dir);

        printf("SQLite %s, synchronous=FULL, WAL, directory %s\n", sqlite3_libversion(), dir);
        printf("%-44s %8s %8s %7s %10s %10s %9s\n", "case", "units", "commits", "batch", "requests/s", "rows/s",
               "CPU us/u");

        if (strstr("raw sqlite: 1 attempts row per commit", filter)) {
                if (run_raw_case(dir, 1, 2000 * scale, &res) < 0)
                        return 1;
                print("raw sqlite: 1 attempts row per commit", &res, 1, false);
        }
        if (strstr("raw sqlite: 64 attempts rows per commit", filter)) {
                if (run_raw_case(dir, 64, 64000 * scale, &res) < 0)
                        return 1;
                print("raw sqlite: 64 attempts rows per commit", &res, 1, false);
        }

        if (strstr("db: attempts row, 1 in flight (1 per commit)", filter)) {
                if (run_db_case(dir, 1, 1, 0, false, 0, 2000 * scale, &res) < 0)
                        return 1;
                print("db: attempts row, 1 in flight (1 per commit)", &res, 1, false);
        }
        if (strstr("db: attempts row, group commit of 64", filter)) {
                if (run_db_case(dir, 64, 64, 5000, false, 0, 64000 * scale, &res) < 0)
                        return 1;
                print("db: attempts row, group commit of 64", &res, 1, false);
        }
        if (strstr("db: attempts row, 256 in flight, natural", filter)) {
                if (run_db_case(dir, 256, 256, 0, false, 0, 128000 * scale, &res) < 0)
                        return 1;
                print("db: attempts row, 256 in flight, natural", &res, 1, false);
        }

        if (strstr("db: board (issue+outcome), 1 in flight", filter)) {
                if (run_db_case(dir, 1, 1, 0, true, 0, 1000 * scale, &res) < 0)
                        return 1;
                print("db: board (issue+outcome), 1 in flight", &res, 7, true);
        }
        if (strstr("db: board, group commit of 64", filter)) {
                if (run_db_case(dir, 64, 64, 5000, true, 0, 32000 * scale, &res) < 0)
                        return 1;
                print("db: board, group commit of 64", &res, 7, true);
        }
        if (strstr("db: board, 256 ports in flight, natural", filter)) {
                if (run_db_case(dir, 256, 256, 0, true, 0, 64000 * scale, &res) < 0)
                        return 1;
                print("db: board, 256 ports in flight, natural", &res, 7, true);
        }
        if (strstr("db: board like provd, 256 ports, 40 ms steps", filter)) {
                /* lookup + issuance + outcome with random serials and fingerprints and a
                 * 560-byte certificate, the board taking 40 ms between two steps (~2,000 boards/s): the
                 * batch sizes provd sees at 256 ports */
                const char *boards = getenv("BENCH_DB_BOARDS"), *delay = getenv("BENCH_DB_DELAY");

                if (run_db_case(dir, 256, 256, delay ? (unsigned)strtoul(delay, NULL, 10) : 0, true, 40,
                                boards ? strtoul(boards, NULL, 10) : 20000 * scale, &res) < 0)
                        return 1;
                print("db: board like provd, 256 ports, 40 ms steps", &res, 7, true);
        }
        return 0;
}
