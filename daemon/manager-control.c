/* SPDX-License-Identifier: MIT */
/* The control socket's requests: status from memory, the rest from the database. */

#include <grp.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "aws-worker.h"
#include "control.h"
#include "db.h"
#include "log.h"
#include "manager-internal.h"
#include "signing-ctx.h"
#include "station.h"
#include "util.h"

/* --- control requests ----------------------------------------------------- */

static cJSON *status_json(struct manager *m) {
        cJSON *o = cJSON_CreateObject(), *totals, *ports, *lat;

        cJSON_AddBoolToObject(o, "ok", true);
        cJSON_AddStringToObject(o, "station", m->conf.name);
        cJSON_AddStringToObject(o, "version", PROVD_VERSION);
        cJSON_AddNumberToObject(o, "uptime_s", (double)((now_usec() - m->started_us) / 1000000));
        cJSON_AddBoolToObject(o, "stopping", m->stopping);
        cJSON_AddNumberToObject(o, "uid", (double)geteuid());
        {
                struct signing_ctx *sc = manager_signing_ctx(m);
                cJSON *sig = cJSON_AddObjectToObject(o, "signer");

                cJSON_AddNumberToObject(sig, "id", sc ? (double)sc->signer_id : 0);
                cJSON_AddStringToObject(sig, "key_uri", m->signer_uri_public ? m->signer_uri_public : "");
                cJSON_AddBoolToObject(sig, "rotating", m->rotating);
        }
        totals = cJSON_AddObjectToObject(o, "totals");
        for (unsigned i = 0; i < _OUTCOME_MAX; i++)
                cJSON_AddNumberToObject(totals, outcome_to_string(i), (double)m->outcomes[i]);
        cJSON_AddNumberToObject(totals, "certificates_issued", (double)m->certs_issued);
        cJSON_AddNumberToObject(totals, "sessions", (double)m->sessions_started);
        cJSON_AddNumberToObject(o, "per_minute", manager_rate_per_minute(m));
        cJSON *b = cJSON_AddObjectToObject(o, "issuance_budget");
        cJSON_AddNumberToObject(b, "last_hour", (double)manager_budget_used(m));
        cJSON_AddNumberToObject(b, "per_hour", m->conf.max_certs_per_hour);
        cJSON_AddNumberToObject(b, "per_port_per_minute", m->conf.max_certs_per_port_per_minute);
        cJSON_AddNumberToObject(b, "allowed_serials", (double)m->conf.n_allowed_serials);
        lat = cJSON_AddObjectToObject(o, "added_latency_us");
        cJSON_AddNumberToObject(lat, "samples", (double)m->latency_count);
        cJSON_AddNumberToObject(lat, "p50", manager_latency_percentile(m, 0.50));
        cJSON_AddNumberToObject(lat, "p99", manager_latency_percentile(m, 0.99));
        ports = cJSON_AddArrayToObject(o, "ports");
        unsigned active = 0;
        for (size_t i = 0; i < m->n_stations; i++) {
                station_status(m->stations[i], ports);
                active += station_is_active(m->stations[i]);
        }
        cJSON_AddNumberToObject(o, "active", active);
        if (m->control) {
                struct control_metrics cm;
                cJSON *k = cJSON_AddObjectToObject(o, "control");

                control_get_metrics(m->control, &cm);
                cJSON_AddNumberToObject(k, "clients", cm.clients);
                cJSON_AddNumberToObject(k, "queued_bytes", (double)cm.queued_bytes);
                cJSON_AddNumberToObject(k, "max_queued_bytes", (double)cm.max_queued_bytes);
                cJSON_AddNumberToObject(k, "queued_cap", CONTROL_MAX_QUEUED);
                cJSON_AddNumberToObject(k, "idle_closed", (double)cm.idle_closed);
                cJSON_AddNumberToObject(k, "refused", (double)cm.refused);
        }
        if (m->db) {
                struct db_metrics dm;
                cJSON *d = cJSON_AddObjectToObject(o, "database");

                db_get_metrics(m->db, &dm);
                cJSON_AddNumberToObject(d, "batches", (double)dm.batches);
                cJSON_AddNumberToObject(d, "requests", (double)dm.requests);
                cJSON_AddNumberToObject(d, "requests_failed", (double)dm.requests_failed);
                cJSON_AddNumberToObject(d, "isolated_batches", (double)dm.isolated_batches);
                cJSON_AddNumberToObject(d, "commit_failures", (double)dm.commit_failures);
                cJSON_AddNumberToObject(d, "checkpoints", (double)dm.checkpoints);
                cJSON_AddNumberToObject(d, "max_batch", dm.max_batch_seen);
                cJSON_AddNumberToObject(d, "lookups_unread", (double)dm.lookups_unread);
                cJSON_AddBoolToObject(d, "known_filter", dm.known_filter_ready);
                cJSON_AddNumberToObject(d, "known_filter_grown", (double)dm.known_filter_grown);
                cJSON_AddNumberToObject(d, "queued", dm.queued);
        }
        return o;
}

/* --- database -------------------------------------------------------------- */

struct ctl_job {
        struct db_req req;
        struct manager *m;
        struct control_client *client;
};

static void on_ctl_db_done(struct db_req *req) {
        struct ctl_job *j = req->userdata;
        cJSON *o;

        if (req->result < 0) {
                control_reply_error(j->client, req->result, req->errmsg[0] ? req->errmsg : NULL);
                if (req->type == DB_QUERY_DEVICES)
                        cJSON_Delete(req->devices.devices);
                if (req->type == DB_QUERY_OUTBOX)
                        cJSON_Delete(req->outbox.report);
                goto out;
        }
        o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", true);
        switch (req->type) {
        case DB_QUERY_DEVICES: {
                cJSON *list = req->devices.devices ?: cJSON_CreateArray();
                cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);

                cJSON_AddItemToObject(o, "devices", list);
                /* A full page: where the next one starts (the cursor is (updated_at, serial)). */
                if (req->devices.more && last) {
                        cJSON *next = cJSON_AddObjectToObject(o, "next");
                        cJSON_AddItemToObject(next, "since",
                                              cJSON_Duplicate(cJSON_GetObjectItem(last, "updated_at"), false));
                        cJSON_AddItemToObject(next, "after",
                                              cJSON_Duplicate(cJSON_GetObjectItem(last, "serial"), false));
                }
                break;
        }
        case DB_QUERY_STATS: {
                const struct db_stats *s = &req->stats;
                cJSON *d = cJSON_AddObjectToObject(o, "devices");
                for (unsigned i = 0; i < _DB_DEVICE_STATE_MAX; i++)
                        cJSON_AddNumberToObject(d, db_device_state_to_string(i), (double)s->devices[i]);
                cJSON *c = cJSON_AddObjectToObject(o, "certificates");
                cJSON_AddNumberToObject(c, "issued", (double)s->certificates);
                for (unsigned i = 0; i < _DB_CERT_STATUS_MAX; i++)
                        cJSON_AddNumberToObject(c, db_cert_status_to_string(i), (double)s->certificates_by_status[i]);
                cJSON *a = cJSON_AddObjectToObject(o, "attempts");
                for (unsigned i = 0; i < _DB_OUTCOME_MAX; i++)
                        cJSON_AddNumberToObject(a, db_outcome_to_string(i), (double)s->attempts[i]);
                cJSON *x = cJSON_AddObjectToObject(o, "aws_outbox");
                for (unsigned i = 0; i < _DB_OUTBOX_STATE_MAX; i++)
                        cJSON_AddNumberToObject(x, db_outbox_state_to_string(i), (double)s->outbox[i]);
                break;
        }
        case DB_QUERY_OUTBOX: {
                cJSON *rep = req->outbox.report ?: cJSON_CreateObject();

                req->outbox.report = NULL;
                cJSON_AddNumberToObject(rep, "pending_total", (double)req->outbox.pending);
                cJSON_AddNumberToObject(rep, "pending_due", (double)req->outbox.pending_due);
                cJSON_AddItemToObject(o, "outbox", rep);
                cJSON_AddItemToObject(o, "worker", j->m->aws ? aws_worker_status(j->m->aws) : cJSON_CreateNull());
                cJSON_AddStringToObject(o, "mode", aws_mode_to_string(j->m->conf.aws.mode));
                break;
        }
        case DB_OUTBOX_REQUEUE:
                cJSON_AddNumberToObject(o, "requeued", (double)req->requeue.count);
                log_notice("aws: %" PRIu64 " outbox row(s) queued again by %s", req->requeue.count,
                           req->requeue.actor);
                break;
        case DB_REISSUE_REQUEST:
                cJSON_AddStringToObject(o, "serial", req->reissue.serial);
                log_notice("reissue requested for %s by %s", req->reissue.serial, req->reissue.actor);
                break;
        default:
                break;
        }
        control_reply(j->client, o);
out:
        control_client_unref(j->client);
        manager_job_end(j->m);
        free(j);
}

static void control_db_request(struct manager *m, struct control_client *c, const struct control_peer *peer,
                               const struct control_request *req) {
        struct ctl_job *j;

        if (!m->db || m->stopping) {
                control_reply_error(c, -ESHUTDOWN, "provd is shutting down");
                return;
        }
        j = calloc(1, sizeof *j);
        if (!j) {
                control_reply_error(c, -ENOMEM, NULL);
                return;
        }
        j->m = m;
        switch (req->cmd) {
        case CONTROL_DEVICES:
                j->req.type = DB_QUERY_DEVICES;
                j->req.devices.since_ms = req->since_ms;
                j->req.devices.limit = req->limit;     /* the database caps a page */
                snprintf(j->req.devices.after_serial, sizeof j->req.devices.after_serial, "%s", req->after);
                j->req.devices.include_pem = req->pem;
                break;
        case CONTROL_STATS:
                j->req.type = DB_QUERY_STATS;
                break;
        case CONTROL_AWS_STATUS:
                j->req.type = DB_QUERY_OUTBOX;
                break;
        case CONTROL_AWS_RETRY:
                j->req.type = DB_OUTBOX_REQUEUE;
                j->req.requeue.id = req->all_failed ? 0 : req->id;
                snprintf(j->req.requeue.actor, sizeof j->req.requeue.actor, "uid:%u", (unsigned)peer->uid);
                break;
        case CONTROL_REISSUE:
                j->req.type = DB_REISSUE_REQUEST;
                snprintf(j->req.reissue.serial, sizeof j->req.reissue.serial, "%s", req->serial);
                snprintf(j->req.reissue.actor, sizeof j->req.reissue.actor, "uid:%u", (unsigned)peer->uid);
                break;
        default:
                free(j);
                control_reply_error(c, -EOPNOTSUPP, "command not supported");
                return;
        }
        j->client = control_client_ref(c);
        j->req.done = on_ctl_db_done;
        j->req.userdata = j;
        manager_job_begin(m);
        db_submit(m->db, &j->req);
}

static void on_reloaded(void *userdata, int r, const char *msg, int64_t old_id, int64_t new_id) {
        struct control_client *c = userdata;
        cJSON *o;

        if (r < 0) {
                control_reply_error(c, r, msg);
                control_client_unref(c);
                return;
        }
        o = cJSON_CreateObject();
        if (o) {
                cJSON_AddBoolToObject(o, "ok", true);
                cJSON_AddBoolToObject(o, "rotated", new_id != old_id && new_id != 0);
                cJSON_AddNumberToObject(o, "previous_signer_id", (double)old_id);
                cJSON_AddNumberToObject(o, "signer_id", (double)(new_id ? new_id : old_id));
                cJSON_AddStringToObject(o, "message", msg ? msg : "");
                control_reply(c, o);
        } else
                control_reply_error(c, -ENOMEM, NULL);
        control_client_unref(c);
}

/* "reload": SIGHUP's reload, answered when it is over (after a signer rotation, if it named a new signer). */
static void control_reload(struct manager *m, struct control_client *c, const struct control_peer *peer) {
        char actor[32];
        cJSON *o;
        int r;

        if (m->stopping) {
                control_reply_error(c, -ESHUTDOWN, "provd is shutting down");
                return;
        }
        snprintf(actor, sizeof actor, "uid:%u", (unsigned)peer->uid);
        control_client_ref(c);
        r = manager_reload_full(m, actor, on_reloaded, c);
        if (r == 0)
                return;                 /* a rotation runs: on_reloaded() answers */
        control_client_unref(c);
        if (r < 0) {
                control_reply_error(c, r, r == -EBUSY ? "a signer rotation is in progress"
                                                      : "the configuration was not reloaded: see provd's log");
                return;
        }
        o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", true);
        cJSON_AddBoolToObject(o, "rotated", false);
        control_reply(c, o);
}

static void on_control(struct control_client *c, const struct control_peer *peer,
                       const struct control_request *req, void *userdata) {
        struct manager *m = userdata;
        cJSON *o;

        switch (req->cmd) {
        case CONTROL_PING:
                o = cJSON_CreateObject();
                cJSON_AddBoolToObject(o, "ok", true);
                cJSON_AddStringToObject(o, "version", PROVD_VERSION);
                control_reply(c, o);
                return;
        case CONTROL_STATUS:
                control_reply(c, status_json(m));
                return;
        case CONTROL_RELOAD:
                control_reload(m, c, peer);
                return;
        case CONTROL_AWS_DRAIN:
                if (!m->aws) {
                        control_reply_error(c, -EOPNOTSUPP, "AWS registration is off ([aws] mode)");
                        return;
                }
                aws_worker_drain(m->aws);
                log_notice("aws: drain requested by uid %u", (unsigned)peer->uid);
                o = cJSON_CreateObject();
                cJSON_AddBoolToObject(o, "ok", true);
                cJSON_AddBoolToObject(o, "draining", true);
                control_reply(c, o);
                return;
        default:
                control_db_request(m, c, peer, req);
                return;
        }
}

int manager_control_open(struct manager *m) {
        gid_t gid = (gid_t)-1;
        int r;

        if (!isempty(m->conf.control_group)) {
                struct group *g = getgrnam(m->conf.control_group);
                if (g)
                        gid = g->gr_gid;
                else
                        log_warning("control group '%s' does not exist; only root and uid %u may use the socket",
                                    m->conf.control_group, (unsigned)geteuid());
        }
        r = control_new(&m->control, m->loop, m->conf.control_socket, gid, on_control, m);
        if (r < 0)
                return log_error_errno(r, "control socket %s: %m", m->conf.control_socket);
        return 0;
}
