/* SPDX-License-Identifier: MIT */
/* The daemon's top object: configuration, ports, signer, database, control socket, counters. */

#include <fnmatch.h>
#include <glob.h>
#include <inttypes.h>
#include <grp.h>
#include <libgen.h>
#include <libserialport.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/signer.h"
#include "audit.h"
#include "control.h"
#include "db.h"
#include "log.h"
#include "manager.h"
#include "station.h"
#include "util.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define RESCAN_DEBOUNCE_MS 10

/* The session outcome is recorded as is: one spelling, the database's. */
_Static_assert((int)OUTCOME_PROVISIONED == (int)DB_OUTCOME_PROVISIONED &&
               (int)OUTCOME_ALREADY_PROVISIONED == (int)DB_OUTCOME_ALREADY_PROVISIONED &&
               (int)OUTCOME_FAILED == (int)DB_OUTCOME_FAILED && (int)OUTCOME_REJECTED == (int)DB_OUTCOME_REJECTED &&
               (int)OUTCOME_CLONE_SUSPECTED == (int)DB_OUTCOME_CLONE_SUSPECTED &&
               (int)OUTCOME_ABORTED == (int)DB_OUTCOME_ABORTED && (int)_OUTCOME_MAX == (int)_DB_OUTCOME_MAX,
               "enum outcome and enum db_outcome must agree");

const char *outcome_to_string(enum outcome o) {
        return o < _OUTCOME_MAX ? db_outcome_to_string((enum db_outcome)o) : "?";
}

static void notify(const char *what) {
#if HAVE_SYSTEMD
        (void)sd_notify(0, what);
#else
        (void)what;
#endif
}

/* --- counters ------------------------------------------------------------ */

static void rate_advance(struct manager *m, uint64_t sec) {
        if (sec - m->rate_ring_sec >= RATE_WINDOW_S)
                memset(m->rate_ring, 0, sizeof m->rate_ring);
        else
                for (uint64_t s = m->rate_ring_sec + 1; s <= sec; s++)
                        m->rate_ring[s % RATE_WINDOW_S] = 0;
        m->rate_ring_sec = sec;
}

void manager_session_done(struct manager *m, enum outcome o) {
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

void manager_record_latency(struct manager *m, uint64_t usec) {
        uint64_t b = usec / 10;

        if (!m->latency)
                return;
        m->latency[b < LATENCY_BUCKETS - 1 ? b : LATENCY_BUCKETS - 1]++;
        m->latency_count++;
}

static double latency_percentile(const struct manager *m, double p) {
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

bool manager_take_issuance_token(struct manager *m) {
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

/* --- the port set --------------------------------------------------------- */

static ssize_t find_station(struct manager *m, const char *path, size_t *ret_pos) {
        size_t lo = 0, hi = m->n_stations;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(station_path(m->stations[mid]), path);
                if (c == 0)
                        return (ssize_t)mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (ret_pos)
                *ret_pos = lo;
        return -1;
}

static bool claims(const struct station *st, const void *serial) {
        return streq(station_claimed_serial(st), serial);
}

static bool in_session_with(const struct station *st, const void *serial) {
        return claims(st, serial) && !station_is_closing(st) && station_is_active(st) &&
               streq(station_serial(st), serial);
}

static void release_serial(struct manager *m, struct station *st) {
        const char *claimed = station_claimed_serial(st);

        if (!claimed[0])
                return;
        (void)station_map_del(&m->by_serial, station_map_hash_str(claimed), st);
        station_set_claimed_serial(st, "");
}

bool manager_serial_in_use(struct manager *m, struct station *self) {
        const char *serial = station_serial(self);
        uint64_t key = station_map_hash_str(serial);
        bool in_use;

        release_serial(m, self);
        in_use = station_map_find(&m->by_serial, key, in_session_with, serial) != NULL;
        if (station_map_put(&m->by_serial, key, self) >= 0)
                station_set_claimed_serial(self, serial);
        else
                log_warning("port %s: out of memory indexing serial %s", station_path(self), serial);
        return in_use;
}

static void rescan_soon(struct manager *m);
static void consider_path(struct manager *m, const char *path);

static bool not_closing(const struct station *st, const void *arg) {
        return !station_is_closing(st);
}

/*
 * splitmix64 (Steele, Lea, Flood 2014), seeded from the CSPRNG in
 * manager_new(). PROTOCOL.md §8.1 wants a random first seq per session so a
 * board's response cache is unlikely to match a stale (seq, type) after a
 * reconnection; nothing depends on it being unpredictable, so it does not
 * cost a trip through the DRBG (and its fork check) on every port open.
 */
uint16_t manager_session_seq(struct manager *m) {
        uint64_t z = (m->seq_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (uint16_t)((z ^ (z >> 31)) >> 48);
}

bool manager_rdev_in_use(struct manager *m, dev_t rdev) {
        return station_map_find(&m->by_rdev, (uint64_t)rdev, not_closing, NULL) != NULL;
}

void manager_station_gone(struct manager *m, struct station *st) {
        ssize_t i = find_station(m, station_path(st), NULL);

        (void)station_map_del(&m->by_rdev, (uint64_t)station_rdev(st), st);
        release_serial(m, st);
        /* A new station for the same path may already exist only if this one is gone from the set. */
        if (i >= 0 && m->stations[i] == st) {
                memmove(m->stations + i, m->stations + i + 1, (m->n_stations - (size_t)i - 1) * sizeof(*m->stations));
                m->n_stations--;
        }
        char *path = strdup(station_path(st));
        station_free(st);
        if (m->stopping)
                manager_stop(m);        /* re-evaluate: maybe everything is done now */
        else if (path)
                consider_path(m, path); /* it may already name a new board */
        free(path);
}

static void consider_port(struct manager *m, const char *path, const char *usb_location) {
        static uint64_t last_full_warning;
        struct station_info info;
        struct station *st;
        struct stat s;
        size_t pos;
        int r;

        if (find_station(m, path, &pos) >= 0)
                return;
        if (stat(path, &s) < 0 || !S_ISCHR(s.st_mode))
                return;
        /* The same device through another path (a symlink, a reused pty number). */
        if (manager_rdev_in_use(m, s.st_rdev))
                return;
        if (m->n_stations >= m->conf.max_ports) {
                if (now_usec() - last_full_warning > 10000000) {
                        last_full_warning = now_usec();
                        log_warning("port %s ignored: max_ports=%u reached", path, m->conf.max_ports);
                }
                return;
        }
        if (m->n_stations == m->cap_stations) {
                size_t cap = MAX(16u, m->cap_stations * 2);
                struct station **n = realloc(m->stations, cap * sizeof(*n));
                if (!n)
                        return;
                m->stations = n;
                m->cap_stations = cap;
        }
        info = (struct station_info) {
                .path = path,
                .slot = conf_slot_label(&m->conf, path, usb_location),
                .usb_location = usb_location,
                .rdev = s.st_rdev,
        };
        r = station_new(&st, m, &info);
        if (r < 0) {
                /* EIO: a pty whose board side is gone; EBUSY: someone else holds it. Retried next scan. */
                log_debug_errno(r, "port %s: cannot open: %m", path);
                return;
        }
        /* station_new() may have re-entered the set? No: it only sends HELLO. Re-find the spot. */
        if (find_station(m, path, &pos) >= 0) {
                station_close(st, "duplicate");
                return;
        }
        if (station_map_put(&m->by_rdev, (uint64_t)station_rdev(st), st) < 0) {
                station_close(st, "out of memory");
                return;
        }
        memmove(m->stations + pos + 1, m->stations + pos, (m->n_stations - pos) * sizeof(*m->stations));
        m->stations[pos] = st;
        m->n_stations++;
        log_debug("slot %s: port %s opened", info.slot, path);
}

/* USB bus location ("1-1.4") of a tty from sysfs, the stable key for slot labels. */
static bool usb_location_of(const char *devpath, char *buf, size_t len) {
        char sys[PATH_MAX], real[PATH_MAX], dev[PATH_MAX];
        const char *name;

        if (!realpath(devpath, dev))    /* a udev symlink or a glob match: find the tty's own name */
                return false;
        name = strrchr(dev, '/');
        if (!name)
                return false;
        snprintf(sys, sizeof sys, "/sys/class/tty/%s/device", name + 1);
        if (!realpath(sys, real))
                return false;
        /* .../1-1.4/1-1.4:1.0 → parent directory name is the port location. */
        char *slash = strrchr(real, '/');
        if (!slash)
                return false;
        *slash = 0;
        slash = strrchr(real, '/');
        if (!slash || strlen(slash + 1) >= len)
                return false;
        strcpy(buf, slash + 1);
        return true;
}

static void scan_usb(struct manager *m) {
        struct sp_port **ports = NULL;

        if (m->conf.n_usb_ids == 0)
                return;
        if (sp_list_ports(&ports) != SP_OK)
                return;
        for (size_t i = 0; ports[i]; i++) {
                int vid, pid;
                char loc[64];
                if (sp_get_port_transport(ports[i]) != SP_TRANSPORT_USB ||
                    sp_get_port_usb_vid_pid(ports[i], &vid, &pid) != SP_OK)
                        continue;
                for (size_t k = 0; k < m->conf.n_usb_ids; k++) {
                        const struct usb_id *id = &m->conf.usb_ids[k];
                        if (id->vid != vid || (id->pid && id->pid != pid))
                                continue;
                        const char *name = sp_get_port_name(ports[i]);
                        /* An open port needs no sysfs walk for its label. */
                        if (find_station(m, name, NULL) < 0)
                                consider_port(m, name, usb_location_of(name, loc, sizeof loc) ? loc : NULL);
                        break;
                }
        }
        sp_free_port_list(ports);
}

static void rescan(struct manager *m) {
        if (m->stopping)
                return;
        for (size_t i = 0; i < m->conf.n_globs; i++) {
                glob_t g = {};
                if (glob(m->conf.globs[i], 0, NULL, &g) == 0)
                        for (size_t k = 0; k < g.gl_pathc; k++) {
                                char loc[64];
                                if (find_station(m, g.gl_pathv[k], NULL) >= 0)
                                        continue;
                                consider_port(m, g.gl_pathv[k],
                                              m->usb_labels && usb_location_of(g.gl_pathv[k], loc, sizeof loc)
                                                      ? loc : NULL);
                        }
                globfree(&g);
        }
        scan_usb(m);
}

static bool conf_has_usb_labels(const struct conf *c) {
        for (size_t i = 0; i < c->n_slots; i++)
                if (c->slots[i].key[0] != '/')
                        return true;
        return false;
}

static void on_rescan(uv_timer_t *t) {
        rescan(t->data);
}

static void rescan_soon(struct manager *m) {
        if (m->stopping || uv_is_active((uv_handle_t *)&m->rescan_soon))
                return;
        (void)uv_timer_start(&m->rescan_soon, on_rescan, RESCAN_DEBOUNCE_MS, 0);
}

/* A port path that matches a configured pattern: open it now (hotplug without a full rescan). */
static void consider_path(struct manager *m, const char *path) {
        char loc[64];

        if (m->stopping || find_station(m, path, NULL) >= 0)
                return;
        for (size_t i = 0; i < m->conf.n_globs; i++)
                if (fnmatch(m->conf.globs[i], path, FNM_PATHNAME | FNM_PERIOD) == 0) {
                        consider_port(m, path, m->usb_labels && usb_location_of(path, loc, sizeof loc) ? loc : NULL);
                        return;
                }
}

static void on_dir_event(uv_fs_event_t *h, const char *filename, int events, int status) {
        struct manager *m = h->data;
        char dir[PATH_MAX], path[PATH_MAX];
        size_t len = sizeof dir;

        /* The name inotify reports is the one to look at; anything unclear: rescan everything. */
        if (status < 0 || !filename || uv_fs_event_getpath(h, dir, &len) < 0 ||
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, filename) >= sizeof path) {
                rescan_soon(m);
                return;
        }
        consider_path(m, path);
}

static void on_watch_closed(uv_handle_t *h) {
        free(h);
}

static void watches_stop(struct manager *m) {
        for (size_t i = 0; i < m->n_watches; i++)
                uv_close((uv_handle_t *)m->watches[i], on_watch_closed);
        m->watches = (free(m->watches), NULL);
        m->n_watches = 0;
}

/* inotify on each glob's directory (/dev, the simulator's folder): hotplug without waiting for the timer. */
static void watches_start(struct manager *m) {
        m->watches = calloc(m->conf.n_globs + 1, sizeof(*m->watches));
        if (!m->watches)
                return;
        for (size_t i = 0; i < m->conf.n_globs; i++) {
                char dir[PATH_MAX];
                uv_fs_event_t *w;

                snprintf(dir, sizeof dir, "%s", m->conf.globs[i]);
                char *d = dirname(dir);
                if (strpbrk(d, "*?["))
                        continue;       /* wildcard directories are covered by the timer */
                bool dup = false;
                for (size_t k = 0; k < i; k++) {
                        char other[PATH_MAX];
                        snprintf(other, sizeof other, "%s", m->conf.globs[k]);
                        dup = dup || streq(dirname(other), d);
                }
                if (dup || !(w = calloc(1, sizeof *w)))
                        continue;
                uv_fs_event_init(m->loop, w);
                w->data = m;
                if (uv_fs_event_start(w, on_dir_event, d, 0) < 0) {
                        uv_close((uv_handle_t *)w, on_watch_closed);
                        continue;
                }
                m->watches[m->n_watches++] = w;
        }
}

/* --- control requests ----------------------------------------------------- */

static cJSON *status_json(struct manager *m) {
        cJSON *o = cJSON_CreateObject(), *totals, *ports, *lat;

        cJSON_AddBoolToObject(o, "ok", true);
        cJSON_AddStringToObject(o, "station", m->conf.name);
        cJSON_AddStringToObject(o, "version", PROVD_VERSION);
        cJSON_AddNumberToObject(o, "uptime_s", (double)((now_usec() - m->started_us) / 1000000));
        cJSON_AddBoolToObject(o, "stopping", m->stopping);
        totals = cJSON_AddObjectToObject(o, "totals");
        for (unsigned i = 0; i < _OUTCOME_MAX; i++)
                cJSON_AddNumberToObject(totals, outcome_to_string(i), (double)m->outcomes[i]);
        cJSON_AddNumberToObject(totals, "certificates_issued", (double)m->certs_issued);
        cJSON_AddNumberToObject(totals, "sessions", (double)m->sessions_started);
        cJSON_AddNumberToObject(o, "per_minute", manager_rate_per_minute(m));
        lat = cJSON_AddObjectToObject(o, "added_latency_us");
        cJSON_AddNumberToObject(lat, "samples", (double)m->latency_count);
        cJSON_AddNumberToObject(lat, "p50", latency_percentile(m, 0.50));
        cJSON_AddNumberToObject(lat, "p99", latency_percentile(m, 0.99));
        ports = cJSON_AddArrayToObject(o, "ports");
        unsigned active = 0;
        for (size_t i = 0; i < m->n_stations; i++) {
                station_status(m->stations[i], ports);
                active += station_is_active(m->stations[i]);
        }
        cJSON_AddNumberToObject(o, "active", active);
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

        j->m->jobs_in_flight--;
        if (req->result < 0) {
                control_reply_error(j->client, req->result, req->errmsg[0] ? req->errmsg : NULL);
                if (req->type == DB_QUERY_DEVICES)
                        cJSON_Delete(req->devices.devices);
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
        if (j->m->stopping)
                manager_stop(j->m);
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
        m->jobs_in_flight++;
        db_submit(m->db, &j->req);
}

static void start_serving(struct manager *m);

/*
 * The audit chain's head in the journal, at start and at exit: an outside copy
 * that `provctl audit verify` cannot give by itself (someone who can write the
 * database file could rebuild the whole chain after an edit).
 */
static void log_audit_head(struct manager *m, const char *when) {
        uint8_t hash[AUDIT_HASH_LEN];
        char text[2 * AUDIT_HASH_LEN + 1];
        sqlite3 *db = NULL;
        int64_t id = 0;
        int r;

        r = db_open_readonly(&db, m->conf.database);
        if (r >= 0)
                r = audit_head(db, NULL, &id, hash);
        sqlite3_close(db);
        if (r < 0) {
                log_warning_errno(r, "audit log head %s: cannot read it: %m", when);
                return;
        }
        hex_encode(hash, AUDIT_HASH_LEN, text, false);
        log_notice("audit log head %s: row %" PRId64 ", hash %s", when, id, text);
}

static void on_signer_ensured(struct db_req *req) {
        struct manager *m = req->userdata;

        m->jobs_in_flight--;
        if (req->result < 0) {
                log_error("cannot record the signer in the database: %s", req->errmsg);
                m->exit_code = 1;
                free(req);
                manager_stop(m);
                return;
        }
        m->signer_id = req->signer.signer_id;
        if (req->signer.retired)
                log_warning("signer %s is marked retired in the database; issuing with it anyway",
                            req->signer.cert_sha256);
        free(req);
        if (m->stopping) {
                manager_stop(m);
                return;
        }
        log_audit_head(m, "at start");
        start_serving(m);
}

static int manager_db_open(struct manager *m) {
        char err[256] = "";
        struct db_options opt = {
                .max_batch = m->conf.batch_max,
                .batch_delay_us = m->conf.batch_delay_us,
                .errbuf = err,
                .errbuf_size = sizeof err,
        };
        struct db_req *req;
        const uint8_t *der;
        size_t len;
        int r;

        r = db_open(&m->db, m->loop, m->conf.database, &opt);
        if (r < 0)
                return log_error_errno(r, "database %s: %s", m->conf.database, err[0] ? err : strerror(-r));
        req = calloc(1, sizeof *req);
        if (!req)
                return log_oom();
        der = issuer_signer_cert_der(m->issuer, &len);
        req->type = DB_SIGNER_ENSURE;
        snprintf(req->signer.name, sizeof req->signer.name, "%s", m->conf.name);
        req->signer.key_uri = m->signer_uri_public;
        req->signer.cert_der = der;
        req->signer.cert_der_len = len;
        req->done = on_signer_ensured;
        req->userdata = m;
        m->jobs_in_flight++;
        db_submit(m->db, req);
        return 0;
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
        default:
                control_db_request(m, c, peer, req);
                return;
        }
}

/* --- life cycle ---------------------------------------------------------- */

static int read_pin(const char *path, char *buf, size_t len) {
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        int r;

        if (!path)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        /* The PIN is as good as the key: the key file's rule. */
        r = signer_check_secret_fd(fd);
        if (r < 0)
                return r;
        n = read(fd, buf, len - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        return 1;
}

static int open_issuer(struct manager *m, const struct conf *c, struct issuer **ret) {
        struct signer *s = NULL;
        struct cert_profile prof;
        char pin[256] = "";
        const char *uri = c->signer_uri;
        int r;

        r = read_pin(c->signer_pin_file, pin, sizeof pin);
        if (r == -EPERM)
                return log_error_errno(r, "signer PIN file %s is readable or writable by group or others, or not "
                                       "owned by the user provd runs as; chown it to that user and run chmod 600 "
                                       "on it", c->signer_pin_file);
        if (r < 0)
                return log_error_errno(r, "signer PIN file %s: %m", c->signer_pin_file);
        r = signer_open(&s, uri, c->signer_cert, r > 0 ? pin : NULL);
        explicit_bzero(pin, sizeof pin);
        if (r == -EPERM)
                return log_error_errno(r, "signer key %s (or its pin-source file) is readable or writable by group "
                                       "or others, or not owned by the user provd runs as; chown it to that user "
                                       "and run chmod 600 on it", uri);
        if (r < 0)
                return log_error_errno(r, "cannot open signer %s with certificate %s: %m", uri, c->signer_cert);
        r = signer_set_root(s, c->root_cert);
        if (r < 0) {
                signer_free(s);
                return log_error_errno(r, "root %s: %s", c->root_cert,
                                       r == -EKEYREJECTED ? "did not sign the signer certificate" : strerror(-r));
        }
        cert_profile_init(&prof);
        if (c->validity_days == 0)
                prof.no_expiry = true;
        else
                prof.validity_days = c->validity_days;
        prof.org = c->organization;
        r = issuer_new(ret, s, &prof);
        if (r < 0)
                return log_error_errno(r, "cannot set up issuance: %m");
        return 0;
}

int manager_new(struct manager **ret, uv_loop_t *loop, const char *config_path) {
        struct manager *m;
        char err[512];
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->loop = loop;
        if (RAND_bytes((uint8_t *)&m->seq_state, sizeof m->seq_state) != 1)
                m->seq_state = now_usec() ^ ((uint64_t)getpid() << 32);
        m->config_path = strdup(config_path);
        m->latency = calloc(LATENCY_BUCKETS, sizeof(*m->latency));
        conf_init(&m->conf);
        if (!m->config_path || !m->latency) {
                manager_free(m);
                return -ENOMEM;
        }
        r = conf_load(&m->conf, config_path, err, sizeof err);
        if (r < 0) {
                log_error("configuration: %s", err);
                manager_free(m);
                return r;
        }
        if (!m->conf.database) {
                if (asprintf(&m->conf.database, "%s/provd.db", m->conf.state_dir) < 0) {
                        manager_free(m);
                        return -ENOMEM;
                }
        }
        log_set_max_level(m->conf.log_level);
        m->usb_labels = conf_has_usb_labels(&m->conf);
        *ret = m;
        return 0;
}

struct manager *manager_free(struct manager *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_stations; i++)
                station_free(m->stations[i]);
        free(m->stations);
        station_map_done(&m->by_rdev);
        station_map_done(&m->by_serial);
        for (size_t i = 0; i < m->n_watches; i++)
                free(m->watches[i]);
        free(m->watches);
        issuer_free(m->issuer);
        free(m->latency);
        free(m->signer_uri_public);
        free(m->config_path);
        conf_deinit(&m->conf);
        free(m);
        return NULL;
}

static void on_signal(uv_signal_t *s, int signum) {
        struct manager *m = s->data;

        if (signum == SIGHUP) {
                (void)manager_reload(m);
                return;
        }
        log_notice("received %s; finishing in-flight boards (up to %u ms)", strsignal(signum),
                   m->conf.shutdown_ms);
        manager_stop(m);
}

static void on_watchdog(uv_timer_t *t) {
        notify("WATCHDOG=1");
}

static void on_shutdown_deadline(uv_timer_t *t) {
        struct manager *m = t->data;

        log_warning("shutdown deadline reached; aborting %zu sessions", m->n_stations);
        for (size_t i = m->n_stations; i > 0; i--)
                station_close(m->stations[i - 1], "shutdown deadline");
}

/* The signer URI as it may be stored and shown: without a PIN in it. */
static char *uri_without_pin(const char *uri) {
        char *u = strdup(uri), *p;

        if (!u)
                return NULL;
        while ((p = strstr(u, "pin-value="))) {
                char *end = p + strcspn(p, "&;");
                if (*end)
                        memmove(p, end + 1, strlen(end + 1) + 1);
                else
                        *(p > u && (p[-1] == '&' || p[-1] == '?' || p[-1] == ';') ? p - 1 : p) = 0;
        }
        return u;
}

int manager_start(struct manager *m) {
        int r;

        m->started_us = now_usec();
        uv_timer_init(m->loop, &m->rescan_timer);
        m->rescan_timer.data = m;
        uv_timer_init(m->loop, &m->rescan_soon);
        m->rescan_soon.data = m;
        uv_timer_init(m->loop, &m->shutdown_timer);
        m->shutdown_timer.data = m;
        uv_timer_init(m->loop, &m->watchdog_timer);
        m->watchdog_timer.data = m;
        uv_signal_init(m->loop, &m->sig_term);
        uv_signal_init(m->loop, &m->sig_int);
        uv_signal_init(m->loop, &m->sig_hup);
        m->sig_term.data = m->sig_int.data = m->sig_hup.data = m;
        uv_signal_start(&m->sig_term, on_signal, SIGTERM);
        uv_signal_start(&m->sig_int, on_signal, SIGINT);
        uv_signal_start(&m->sig_hup, on_signal, SIGHUP);

        m->signer_uri_public = uri_without_pin(m->conf.signer_uri);
        if (!m->signer_uri_public)
                return log_oom();
        r = open_issuer(m, &m->conf, &m->issuer);
        if (r < 0)
                return r;
        m->have_root_pubkey = issuer_root_pubkey(m->issuer, m->root_pubkey) >= 0;

        if (mkdir(m->conf.state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "state directory %s: %m", m->conf.state_dir);
        /* Serving starts once the signer is recorded (on_signer_ensured). */
        return manager_db_open(m);
}

static void start_serving(struct manager *m) {
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
        if (r < 0) {
                log_error_errno(r, "control socket %s: %m", m->conf.control_socket);
                m->exit_code = 1;
                manager_stop(m);
                return;
        }
#if HAVE_SYSTEMD
        uint64_t wd;
        if (sd_watchdog_enabled(0, &wd) > 0)
                uv_timer_start(&m->watchdog_timer, on_watchdog, wd / 2000, wd / 2000);
#endif
        watches_start(m);
        uv_timer_start(&m->rescan_timer, on_rescan, 0, m->conf.rescan_ms);
        log_info("provd %s ready: signer %s (%s), database %s, %zu port pattern(s)", PROVD_VERSION,
                 m->signer_uri_public, signer_backend(issuer_signer(m->issuer)), m->conf.database,
                 m->conf.n_globs + m->conf.n_usb_ids);
        notify("READY=1");
}

static void close_handle(uv_handle_t *h) {
        if (h->loop && !uv_is_closing(h))
                uv_close(h, NULL);
}

static void on_db_closed(struct db *db, void *userdata) {
        struct manager *m = userdata;

        if (db)
                log_audit_head(m, "at exit");
        m->db = NULL;
        m->db_closed = true;
        control_free(m->control);
        m->control = NULL;
        close_handle((uv_handle_t *)&m->sig_term);
        close_handle((uv_handle_t *)&m->sig_int);
        close_handle((uv_handle_t *)&m->sig_hup);
        close_handle((uv_handle_t *)&m->shutdown_timer);
        close_handle((uv_handle_t *)&m->watchdog_timer);
        log_info("database flushed; exiting");
}

void manager_stop(struct manager *m) {
        if (!m->stopping) {
                m->stopping = true;
                notify("STOPPING=1");
                uv_timer_stop(&m->rescan_timer);
                close_handle((uv_handle_t *)&m->rescan_timer);
                close_handle((uv_handle_t *)&m->rescan_soon);
                watches_stop(m);
                if (m->conf.shutdown_ms && m->shutdown_timer.loop)
                        uv_timer_start(&m->shutdown_timer, on_shutdown_deadline, m->conf.shutdown_ms, 0);
                for (size_t i = m->n_stations; i > 0; i--)
                        station_shutdown(m->stations[i - 1]);
                if (!m->conf.shutdown_ms)
                        on_shutdown_deadline(&m->shutdown_timer);
        }
        if (m->n_stations > 0 || m->jobs_in_flight > 0 || m->db_closing)
                return;
        uv_timer_stop(&m->shutdown_timer);
        m->db_closing = true;
        if (m->db)
                db_close(m->db, on_db_closed, m);
        else
                on_db_closed(NULL, m);
}

int manager_reload(struct manager *m) {
        struct conf n;
        char err[512];
        int r;

        conf_init(&n);
        r = conf_load(&n, m->config_path, err, sizeof err);
        if (r < 0) {
                conf_deinit(&n);
                return log_error_errno(r, "reload: %s; keeping the current configuration", err);
        }
        if (!n.database && asprintf(&n.database, "%s/provd.db", n.state_dir) < 0) {
                conf_deinit(&n);
                return log_oom();
        }
        /* Settings bound to resources opened at start need a restart. */
        if (!streq(n.signer_uri, m->conf.signer_uri) || !streq(n.signer_cert, m->conf.signer_cert) ||
            !streq(n.database, m->conf.database) || !streq(n.control_socket, m->conf.control_socket) ||
            n.max_frame != m->conf.max_frame)
                log_warning("reload: signer, database, control socket and max_frame changes take effect "
                            "at the next restart");
        /* Keep the start-bound values so status and sessions stay consistent. */
        free(n.signer_uri), n.signer_uri = strdup(m->conf.signer_uri);
        free(n.signer_cert), n.signer_cert = strdup(m->conf.signer_cert);
        free(n.root_cert), n.root_cert = strdup(m->conf.root_cert);
        free(n.database), n.database = strdup(m->conf.database);
        free(n.control_socket), n.control_socket = strdup(m->conf.control_socket);
        n.max_frame = m->conf.max_frame;
        if (!n.signer_uri || !n.signer_cert || !n.root_cert || !n.database || !n.control_socket) {
                conf_deinit(&n);
                return log_oom();
        }
        conf_deinit(&m->conf);
        m->conf = n;
        m->usb_labels = conf_has_usb_labels(&m->conf);
        log_set_max_level(m->conf.log_level);
        if (!m->stopping) {
                watches_stop(m);
                watches_start(m);
                uv_timer_start(&m->rescan_timer, on_rescan, 0, m->conf.rescan_ms);
        }
        log_notice("configuration reloaded from %s", m->config_path);
        return 0;
}
