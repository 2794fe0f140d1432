/* SPDX-License-Identifier: MIT */
/* The daemon's top object: life cycle, signals, configuration reload, the shutdown drain. */

#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "aws-worker.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/signer.h"
#include "control.h"
#include "db.h"
#include "log.h"
#include "manager-internal.h"
#include "signing-ctx.h"
#include "station.h"
#include "util.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void start_serving(struct manager *m);
static void load_budget(struct manager *m);

static void notify(const char *what) {
#if HAVE_SYSTEMD
        (void)sd_notify(0, what);
#else
        (void)what;
#endif
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
        manager_env_init(m);
        *ret = m;
        return 0;
}

struct manager *manager_free(struct manager *m) {
        if (!m)
                return NULL;
        manager_ports_free(m);
        manager_env_done(m);
        m->aws = aws_worker_free(m->aws);
        signing_ctx_unref(m->signing);
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
        aws_worker_cancel(m->aws);
        for (size_t i = m->n_stations; i > 0; i--)
                station_close(m->stations[i - 1], "shutdown deadline");
}

int manager_check(struct manager *m) {
        int r;

        r = manager_check_signer_files(&m->conf);
        if (r < 0)
                return r;
        /* The whole start-up check: key, certificate chain, root, PIN (a token is logged into). */
        return manager_signer_open(m);
}

int manager_exit_code(const struct manager *m) {
        return m->exit_code;
}

unsigned manager_workers(const struct manager *m) {
        return m->conf.workers;
}

int manager_start(struct manager *m) {
        char err[256] = "";
        struct db_options opt = {
                .max_batch = m->conf.batch_max,
                .batch_delay_us = m->conf.batch_delay_us,
                .errbuf = err,
                .errbuf_size = sizeof err,
        };
        int r;

        m->started_us = now_usec();
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

        r = manager_signer_open(m);
        if (r < 0)
                return r;
        if (mkdir(m->conf.state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "state directory %s: %m", m->conf.state_dir);
        r = db_open(&m->db, m->loop, m->conf.database, &opt);
        if (r < 0)
                return log_error_errno(r, "database %s: %s", m->conf.database, err[0] ? err : strerror(-r));
        m->env.db = m->db;
        /*
         * Serving starts once the signer is recorded and is the current
         * signing context, and the issuance budget holds what the last hour
         * issued.
         */
        return manager_signer_record(m, load_budget);
}

static void load_budget(struct manager *m) {
        manager_budget_load(m, start_serving);
}

static void aws_job_begin(void *userdata) {
        manager_job_begin(userdata);
}

static void aws_job_end(void *userdata) {
        manager_job_end(userdata);
}

/* The AWS outbox worker, when [aws] mode is not off: after the signer is recorded (JITR registers it). */
int manager_aws_start(struct manager *m) {
        const struct aws_worker_hooks hooks = { .job_begin = aws_job_begin, .job_end = aws_job_end, .userdata = m };
        char err[512] = "";
        int r;

        if (m->conf.aws.mode == AWS_MODE_OFF)
                return 0;
        r = aws_worker_new(m->loop, m->db, &m->conf, m->issuer, &hooks, &m->aws, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "aws: %s", err[0] ? err : strerror(-r));
        aws_worker_start(m->aws);
        if (m->signing)
                (void)aws_worker_register_signer(m->aws, m->signing->signer_id, m->issuer);
        return 0;
}

static void start_serving(struct manager *m) {
        if (manager_control_open(m) < 0 || manager_aws_start(m) < 0) {
                m->exit_code = 1;
                manager_stop(m);
                return;
        }
#if HAVE_SYSTEMD
        uint64_t wd;
        if (sd_watchdog_enabled(0, &wd) > 0)
                uv_timer_start(&m->watchdog_timer, on_watchdog, wd / 2000, wd / 2000);
#endif
        manager_ports_start(m);
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
                manager_log_audit_head(m, "at exit");
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
                if (m->discovery_inited)
                        port_discovery_close(&m->discovery);
                if (m->conf.shutdown_ms && m->shutdown_timer.loop)
                        uv_timer_start(&m->shutdown_timer, on_shutdown_deadline, m->conf.shutdown_ms, 0);
                for (size_t i = m->n_stations; i > 0; i--)
                        station_shutdown(m->stations[i - 1]);
                if (m->aws) {
                        /* Calls in flight finish (up to shutdown_ms); jobs go back to pending. */
                        manager_job_begin(m);
                        aws_worker_stop(m->aws, aws_job_end, m);
                }
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

int manager_reload_full(struct manager *m, const char *actor, manager_rotate_cb done, void *userdata) {
        struct conf n;
        char err[512];
        bool rotate;
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
        /* What the next start would refuse is refused now, while the old signer still works. */
        r = manager_check_signer_files(&n);
        if (r < 0) {
                conf_deinit(&n);
                return log_error_errno(r, "reload: the signer above would not open; keeping the current "
                                       "configuration");
        }
        /* A new signer is switched to live (manager-rotate.c); the rest bound to start needs a restart. */
        rotate = manager_signer_differs(&n, &m->conf);
        if (!streq(n.database, m->conf.database) || !streq(n.control_socket, m->conf.control_socket) ||
            n.max_frame != m->conf.max_frame)
                log_warning("reload: database, control socket and max_frame changes take effect at the next "
                            "restart");
        /* Keep the start-bound values so status and sessions stay consistent. */
        free(n.signer_uri), n.signer_uri = strdup(m->conf.signer_uri);
        free(n.signer_cert), n.signer_cert = strdup(m->conf.signer_cert);
        free(n.root_cert), n.root_cert = strdup(m->conf.root_cert);
        free(n.signer_pin_file), n.signer_pin_file = m->conf.signer_pin_file ? strdup(m->conf.signer_pin_file) : NULL;
        free(n.signer_pin_credential);
        n.signer_pin_credential = m->conf.signer_pin_credential ? strdup(m->conf.signer_pin_credential) : NULL;
        free(n.database), n.database = strdup(m->conf.database);
        free(n.control_socket), n.control_socket = strdup(m->conf.control_socket);
        n.max_frame = m->conf.max_frame;
        if (!n.signer_uri || !n.signer_cert || !n.root_cert || !n.database || !n.control_socket ||
            (m->conf.signer_pin_file && !n.signer_pin_file) ||
            (m->conf.signer_pin_credential && !n.signer_pin_credential)) {
                conf_deinit(&n);
                return log_oom();
        }
        if (n.aws.mode != m->conf.aws.mode || !streq(n.aws.endpoint ?: "", m->conf.aws.endpoint ?: ""))
                log_warning("reload: [aws] mode and endpoint changes take effect at the next restart; "
                            "credentials are reread now");
        conf_deinit(&m->conf);
        m->conf = n;
        log_set_max_level(m->conf.log_level);
        aws_worker_reload(m->aws, &m->conf);
        if (!m->stopping && m->discovery_inited)
                port_discovery_start(&m->discovery);    /* new patterns, period, labels */
        log_notice("configuration reloaded from %s", m->config_path);
        if (!rotate)
                return 1;
        /* The signer fields stay the old ones until the rotation has switched. */
        r = manager_signer_rotate(m, actor, done, userdata);
        if (r == -EBUSY)
                log_warning("reload: a signer rotation is in progress; reload again when it has finished");
        else if (r < 0)
                log_error_errno(r, "reload: cannot start the signer rotation: %m");
        return r < 0 ? r : 0;
}

int manager_reload(struct manager *m) {
        int r = manager_reload_full(m, "provd (SIGHUP)", NULL, NULL);

        return r < 0 ? r : 0;
}
