/* SPDX-License-Identifier: MIT */
/* A session's database steps: lookup, issuance record, outcome record (db.h requests). */

#include <inttypes.h>
#include <stdio.h>

#include "conf.h"
#include "json-writer.h"
#include "signing-ctx.h"
#include "station-internal.h"

/* --- database steps ------------------------------------------------------ */


static void db_submit_station(struct station *st, db_done_cb done) {
        st->req.done = done;
        st->req.userdata = st;
        st->busy++;
        env_hook(st, job_begin);
        if (st->env->ops->db_submit)
                env_hook(st, db_submit, &st->req);
        else
                db_submit(st->env->db, &st->req);
}

/*
 * A worker job or database request returned. True when its callback must stop
 * there: the port is closing, or the session ended while it ran (its outcome
 * is submitted now).
 */
bool station_job_returned(struct station *st) {
        st->busy--;
        env_hook(st, job_end);
        st->rx_us = now_usec();
        if (st->closing) {
                station_closing_progress(st);
                return true;
        }
        return station_ended_meanwhile(st);
}

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t)v;
        }
        return hex[2 * n] == 0 ? 0 : -EINVAL;
}

/*
 * A known board with the same key: have it prove it still holds the recorded
 * certificate (PROVE), and rewrite that same certificate if it does not.
 * No second certificate is issued for a board that is merely replugged or
 * whose earlier session was interrupted after the issuance was recorded.
 */
static void start_existing(struct station *st, const struct db_lookup_device *l, uint8_t *der) {
        struct issued_cert *c = &st->job.cert;

        issued_cert_done(c);
        *c = (struct issued_cert) { .der = der, .der_len = l->cert_der_len };
        if (hex_to_bytes(l->cert_sha256, c->sha256, sizeof c->sha256) < 0) {
                issued_cert_done(c);
                station_fail(st, OUTCOME_FAILED, "database holds a malformed certificate hash");
                return;
        }
        snprintf(c->sha256_hex, sizeof c->sha256_hex, "%s", l->cert_sha256);
        memcpy(c->pubkey, l->pubkey, SP_PUBKEY_LEN);
        snprintf(st->thing_name, sizeof st->thing_name, "%s", l->thing_name);
        st->cert_id = l->cert_id;
        st->existing = true;
        st->was_provisioned = l->state == DB_DEVICE_PROVISIONED;
        station_send_prove(st);
}

/* A certificate to issue (a new board, or a reissue): its CSR, if the database has room to record it. */
static void ask_csr(struct station *st) {
        if (station_db_has_room(st, "session refused, nothing signed"))
                station_send_get_csr(st);
}

static void on_lookup_done(struct db_req *req) {
        struct station *st = req->userdata;
        const struct db_lookup_device *l = &req->lookup;
        _cleanup_free_ uint8_t *der = TAKE_PTR(req->lookup.cert_der);
        bool same_key;

        if (station_job_returned(st))
                return;
        if (req->result < 0) {
                station_fail(st, OUTCOME_FAILED, "database lookup failed: %s", req->errmsg);
                return;
        }
        if (!l->found) {
                ask_csr(st);
                return;
        }
        same_key = st->ident.has_pubkey && memcmp(l->pubkey, st->ident.pubkey, SP_PUBKEY_LEN) == 0;
        if (!same_key) {
                station_fail(st, OUTCOME_CLONE_SUSPECTED,
                             st->ident.has_pubkey
                                     ? "serial already provisioned with another key; suspected clone, nothing signed"
                                     : "serial already provisioned but this board has no key; suspected clone");
                return;
        }
        if (l->state == DB_DEVICE_CLONE_SUSPECTED && !l->reissue_requested) {
                station_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial is flagged as a suspected clone; `provctl reissue` clears it");
                return;
        }
        if (l->reissue_requested || st->env->conf->reissue || !der || l->cert_status == DB_CERT_REVOKED) {
                st->reissue = true;
                ask_csr(st);
                return;
        }
        /*
         * A board with a recorded certificate is finished whatever the free space: nothing
         * is signed, and it may hold that certificate already (an interrupted session).
         */
        start_existing(st, l, TAKE_PTR(der));
}

/*
 * Issue 14, point 5: below [database] min_free_mb on the database's
 * filesystem no session that would sign starts and nothing is signed, so
 * every certificate signed can be recorded (the issuance record is committed
 * before PUT_CERT) and the outcomes of sessions in flight still fit. One statvfs(), no SQLite:
 * fine on the loop. An unknown free space (no database: tests) refuses nothing.
 */
bool station_db_has_room(struct station *st, const char *refused) {
        unsigned min_mb = st->env->conf->min_free_mb;
        uint64_t bytes;

        if (min_mb == 0 || !st->env->db || db_free_space(st->env->db, &bytes) < 0)
                return true;
        if (bytes >= (uint64_t)min_mb << 20)
                return true;
        station_fail(st, OUTCOME_FAILED, "database disk nearly full (%" PRIu64 " MB free, min_free_mb %u): %s",
                     bytes >> 20, min_mb, refused);
        return false;
}

void station_submit_lookup(struct station *st) {
        /*
         * A serial the database cannot hold (db_device_maybe_known()): what the
         * lookup would answer, without it. A stub database (ops->db_submit) is
         * always asked.
         */
        if (!st->env->ops->db_submit && st->env->db && !db_device_maybe_known(st->env->db, st->serial)) {
                ask_csr(st);
                return;
        }
        st->req = (struct db_req) { .type = DB_LOOKUP_DEVICE };
        strcpy(st->req.lookup.serial, st->serial);
        st->req.lookup.want_der = true;
        db_submit_station(st, on_lookup_done);
}

/*
 * Retries (issue 14, point 3). A database that is full, locked by another
 * process or failing I/O for a while does not make a session's verdict
 * false: the issuance or outcome request (a failed run leaves its inputs as
 * they were) is submitted again with backoff until it commits. PUT_CERT
 * waits for the issuance, RESULT for the outcome, so a board is never told
 * "failed" while it holds its certificate, and a certificate signed is not
 * thrown away because of a lock. Each board retries its own request, so its
 * records stay in order and no other board waits for it. Not retried: a
 * request the database refuses (-EINVAL, -ESTALE, -EKEYREJECTED, ...: it
 * would fail again) and -ESHUTDOWN; after the shutdown deadline closed the
 * port, the next retry gives up.
 *
 * A restart finishes a board whose verdict was never committed from what is
 * durable: its device is `issued` with the certificate it was sent, so the
 * next session on its port (at once after a restart: the board, never told a
 * RESULT, is still plugged in) looks it up, has it PROVE that certificate and
 * records it provisioned; nothing is signed twice. A durable "proven" mark
 * before LOCK/RESULT would not close the one window left (provd killed after
 * the proof, before any commit, while the board is unplugged): that board is
 * finished when it is plugged in again.
 */
#define DB_RETRY_FIRST_MS 50
#define DB_RETRY_MAX_MS 2000

static bool retryable(int r) {
        return r == -ENOSPC || r == -EDQUOT || r == -EBUSY || r == -EIO || r == -ENOMEM || r == -EAGAIN ||
               r == -EINTR;
}

/*
 * The open timer counts in st->busy, so the station is not freed under it; a
 * verdict reached meanwhile (session_end() saw busy) is recorded from here.
 */
static void on_retry_timer_closed(uv_handle_t *h) {
        struct station *st = h->data;

        st->retry_timer_open = false;
        st->busy--;
        if (st->closing)
                station_closing_progress(st);
        else if (st->busy == 0)
                (void)station_ended_meanwhile(st);
}

/* The request in st->req is settled (committed, refused or given up): the next one starts afresh. */
static void close_retry_timer(struct station *st) {
        st->db_tries = 0;
        if (st->retry_timer_open && !uv_is_closing((uv_handle_t *)&st->retry_timer))
                uv_close((uv_handle_t *)&st->retry_timer, on_retry_timer_closed);
}

/* The request committed after retries. */
static void retried_done(struct station *st, const char *what) {
        if (st->db_tries == 0)
                return;
        slog(st, LOG_NOTICE, 0, "%s recorded after %u retries", what, st->db_tries);
        if (!strncmp(st->last_error, "recording the ", 14))
                st->last_error[0] = 0;
}

static void resubmit(struct station *st) {
        st->db_tries++;
        st->req.result = 0;
        st->req.errmsg[0] = 0;
        if (st->env->ops->db_submit)
                env_hook(st, db_submit, &st->req);
        else
                db_submit(st->env->db, &st->req);
}

static void on_retry_timer(uv_timer_t *t) {
        struct station *st = t->data;

        /* The shutdown deadline closed the port: done() again with the last error, which gives up. */
        if (st->shutting_down && st->closing) {
                st->req.done(&st->req);
                return;
        }
        resubmit(st);
}

/* True when @req (st->req) is submitted again later: its done() runs again then. */
static bool retry_later(struct station *st, struct db_req *req, const char *what) {
        uint64_t delay = DB_RETRY_FIRST_MS;

        if (!retryable(req->result) || (st->shutting_down && st->closing))
                return false;
        /*
         * An issuance not yet recorded has reached no board (PUT_CERT waits for
         * it): past the session limit the session ends, the certificate is
         * discarded, and the board can simply be tried again. Outcomes are
         * retried on: the board holds its certificate, forgetting it is worse.
         */
        if (req->type == DB_RECORD_ISSUANCE &&
            now_usec() >= st->session_start_us + (uint64_t)st->env->conf->session_ms * 1000)
                return false;
        if (!st->retry_timer_open) {
                if (uv_timer_init(st->env->loop, &st->retry_timer) < 0)
                        return false;
                st->retry_timer.data = st;
                st->retry_timer_open = true;
                st->busy++;             /* the station lives until the timer is closed */
        } else if (uv_is_closing((uv_handle_t *)&st->retry_timer)) {
                /* Closed a moment ago (the previous request committed): once at once, it answers later. */
                resubmit(st);
                return true;
        }
        for (unsigned i = 0; i < st->db_tries && delay < DB_RETRY_MAX_MS; i++)
                delay *= 2;
        delay = MIN(delay, (uint64_t)DB_RETRY_MAX_MS);
        /* One line when it starts and one every ~minute: a full disk must not fill the journal too. */
        if (st->db_tries % 32 == 0)
                slog(st, LOG_WARNING, 0, "cannot record the %s yet (%s); retrying every %u ms at most "
                     "until it commits", what, req->errmsg, DB_RETRY_MAX_MS);
        /* The slot shows it; a failure's own reason stays for the RESULT. */
        if (req->type == DB_RECORD_ISSUANCE || st->outcome == OUTCOME_PROVISIONED ||
            st->outcome == OUTCOME_ALREADY_PROVISIONED)
                snprintf(st->last_error, sizeof st->last_error, "recording the %s: %.200s; retrying", what,
                         req->errmsg);
        (void)uv_timer_start(&st->retry_timer, on_retry_timer, delay, 0);
        return true;
}

static void on_issuance_done(struct db_req *req) {
        struct station *st = req->userdata;

        if (req->result < 0 && retry_later(st, req, "issuance"))
                return;
        if (req->result >= 0)
                retried_done(st, "issuance");
        close_retry_timer(st);
        if (req->result >= 0) {
                st->cert_id = req->issuance.cert_id;
                /* Counted once recorded: a certificate the database refused never leaves provd. */
                env_hook(st, cert_issued);
        }
        if (station_job_returned(st))
                return;
        if (req->result == -EKEYREJECTED) {
                station_fail(st, OUTCOME_CLONE_SUSPECTED,
                             "serial is recorded with another key; suspected clone, certificate withheld");
                return;
        }
        if (req->result < 0) {
                station_fail(st, OUTCOME_FAILED, "cannot record the issuance, certificate withheld: %s",
                             req->errmsg);
                return;
        }
        slog(st, LOG_DEBUG, 0, "certificate %s recorded%s", st->job.cert.sha256_hex,
             req->issuance.superseded_cert_id ? " (supersedes the previous one)" : "");
        station_send_put_cert(st);
}

static void copy_label(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

void station_submit_issuance(struct station *st) {
        struct db_record_issuance *r;
        const struct issued_cert *c = &st->job.cert;

        st->req = (struct db_req) { .type = DB_RECORD_ISSUANCE };
        r = &st->req.issuance;
        strcpy(r->serial, st->serial);
        copy_label(r->model, sizeof r->model, st->ident.model);
        copy_label(r->fw_version, sizeof r->fw_version, st->ident.fw_version);
        memcpy(r->pubkey, c->pubkey, DB_PUBKEY_LEN);
        r->cert_der = c->der;
        r->cert_der_len = c->der_len;
        hex_encode(c->serial, CERT_SERIAL_LEN, r->cert_serial, false);
        strcpy(r->cert_sha256, c->sha256_hex);
        r->not_before_ms = (int64_t)c->not_before * 1000;
        r->not_after_ms = (int64_t)c->not_after * 1000;
        r->signer_id = st->sign->signer_id;
        copy_label(r->thing_name, sizeof r->thing_name, st->thing_name);
        copy_label(r->port, sizeof r->port, st->path);
        copy_label(r->slot, sizeof r->slot, st->slot);
        db_submit_station(st, on_issuance_done);
}

static void outcome_recorded(struct station *st, struct db_req *req) {
        bool unrecorded_proof = false;

        st->session_recorded = true;
        if (req->result < 0) {
                slog(st, LOG_ERR, 0, "cannot record the %s outcome: %s", outcome_to_string(st->outcome), req->errmsg);
                if (st->outcome == OUTCOME_PROVISIONED && (req->result == -ESHUTDOWN || st->shutting_down)) {
                        /*
                         * The board proved its certificate; telling it "failed" would be false.
                         * It gets no RESULT: the next start proves it again and records it.
                         */
                        unrecorded_proof = true;
                } else if (st->outcome == OUTCOME_PROVISIONED) {
                        st->outcome = OUTCOME_FAILED;
                        snprintf(st->last_error, sizeof st->last_error, "database error: %.200s", req->errmsg);
                }
        }
        st->session_end_us = now_usec();
        if (!unrecorded_proof)
                env_hook(st, session_done, st->outcome);
        if (unrecorded_proof)
                ;       /* logged above */
        else if (st->outcome == OUTCOME_PROVISIONED)
                slog(st, LOG_NOTICE, 0, "provisioned as %s, certificate %s, in %" PRIu64 " ms", st->thing_name,
                     st->job.cert.sha256_hex, (now_usec() - st->session_start_us + 500) / 1000);
        else if (st->outcome == OUTCOME_ALREADY_PROVISIONED)
                slog(st, LOG_NOTICE, 0, "already provisioned as %s: it proved its certificate %s; nothing issued",
                     st->thing_name, st->job.cert.sha256_hex);
        if (station_job_returned(st))
                return;
        if (unrecorded_proof) {
                station_close(st, "shutting down before its outcome was recorded");
                return;
        }
        /*
         * RESULT needs a session (PROTOCOL.md §6.8): after a HELLO that failed,
         * or with no IDENT at all, the board would answer BAD_STATE.
         */
        if (!st->have_ident) {
                station_result_delivered(st);
                return;
        }
        station_send_result(st);
}

static void on_outcome_done(struct db_req *req) {
        struct station *st = req->userdata;
        char what[48];

        snprintf(what, sizeof what, "%s outcome", outcome_to_string(st->outcome));
        if (req->result < 0 && retry_later(st, req, what))
                return;
        if (req->result >= 0)
                retried_done(st, what);
        close_retry_timer(st);
        outcome_recorded(st, req);
}

void station_submit_outcome(struct station *st) {
        struct db_record_outcome *o;
        struct json_writer w;

        st->req = (struct db_req) { .type = DB_RECORD_OUTCOME };
        o = &st->req.outcome;
        copy_label(o->port, sizeof o->port, st->path);
        copy_label(o->slot, sizeof o->slot, st->slot);
        strcpy(o->serial, st->serial);
        o->started_ms = st->session_start_ms;
        o->finished_ms = wallclock_msec();
        o->outcome = (enum db_outcome)st->outcome;
        copy_label(o->step, sizeof o->step, station_state_names[st->last_step]);
        copy_label(o->error, sizeof o->error, st->outcome == OUTCOME_PROVISIONED ? "" : st->last_error);
        o->cert_id = st->cert_id;
        if (st->outcome == OUTCOME_CLONE_SUSPECTED && st->ident.has_pubkey) {
                o->have_presented_pubkey = true;
                memcpy(o->presented_pubkey, st->ident.pubkey, DB_PUBKEY_LEN);
        }
        /* {"hello_ms":3,"csr_ms":120,...}: steps that took time in this session. */
        json_writer_init(&w, st->timings, sizeof st->timings);
        for (unsigned s = 0; s < STATION_DONE; s++)
                if ((st->step_ms[s] || s == STATION_HELLO) && station_state_ms_keys[s])
                        json_writer_int(&w, station_state_ms_keys[s], st->step_ms[s]);
        /* Cannot overflow: 12 keys of <= 10 bytes and 10 digits each. */
        o->timings_json = json_writer_finish(&w);
        db_submit_station(st, on_outcome_done);
}

void station_closing_progress(struct station *st) {
        /* A verdict (aborted, or a failure reached while a job was in flight) not yet recorded. */
        if (st->busy == 0 && (st->abort_pending || st->end_pending)) {
                st->abort_pending = st->end_pending = false;
                station_submit_outcome(st);
                return;
        }
        station_maybe_free(st);
}
