/* SPDX-License-Identifier: MIT */
/* provctl: the commands that talk to a running provd (status, watch, devices, stats, reissue, reload, aws). */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "provctl.h"

static void print_status(const cJSON *o, bool tty) {
        const cJSON *totals = cJSON_GetObjectItem(o, "totals"), *ports = cJSON_GetObjectItem(o, "ports"), *p;
        const char *green = tty ? "\033[32m" : "", *red = tty ? "\033[31m" : "", *yellow = tty ? "\033[33m" : "",
                   *off = tty ? "\033[0m" : "";

        char e1[256], e2[256], e3[256], e4[1024], e5[64];

        printf("station %s  provd %s  up %.0f s%s\n", escaped(str(o, "station"), e1, sizeof e1),
               escaped(str(o, "version"), e2, sizeof e2), num(o, "uptime_s"),
               cJSON_IsTrue(cJSON_GetObjectItem(o, "stopping")) ? "  (stopping)" : "");
        printf("provisioned %.0f  already %.0f  failed %.0f  rejected %.0f  clone %.0f  aborted %.0f  "
               "| %.0f per minute, %.0f active\n",
               num(totals, "provisioned"), num(totals, "already_provisioned"), num(totals, "failed"),
               num(totals, "rejected"), num(totals, "clone_suspected"), num(totals, "aborted"),
               num(o, "per_minute"), num(o, "active"));
        printf("\n%-16s %-8s %-8s %-20s %8s  %s\n", "SLOT", "STATE", "STEP", "SERIAL", "ELAPSED", "LAST ERROR");
        cJSON_ArrayForEach(p, ports) {
                const char *state = str(p, "state");
                const char *color = streq(state, "done") ? green : streq(state, "failed") ? red : yellow;
                printf("%-16.16s %s%-8s%s %-8s %-20s %7.1fs  %s\n", escaped(str(p, "slot"), e1, sizeof e1), color,
                       escaped(state, e5, sizeof e5), off, escaped(str(p, "step"), e2, sizeof e2),
                       escaped(str(p, "serial"), e3, sizeof e3), num(p, "elapsed_ms") / 1000.0,
                       escaped(str(p, "last_error"), e4, sizeof e4));
        }
}

int cmd_simple(const char *cmd) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL;
        int r;

        cJSON_AddStringToObject(req, "cmd", cmd);
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json || !streq(cmd, "status"))
                print_json(reply);
        else
                print_status(reply, isatty(STDOUT_FILENO));
        cJSON_Delete(reply);
        return 0;
}

int cmd_watch(void) {
        bool tty = isatty(STDOUT_FILENO);

        for (;;) {
                cJSON *req = cJSON_CreateObject(), *reply = NULL;
                int r;

                cJSON_AddStringToObject(req, "cmd", "status");
                r = call(req, &reply);
                cJSON_Delete(req);
                if (r < 0)
                        return r;
                if (tty)
                        fputs("\033[H\033[2J", stdout);
                if (arg_json) {
                        char *t = cJSON_PrintUnformatted(reply);
                        if (t)
                                puts(t);
                        free(t);
                } else
                        print_status(reply, tty);
                fflush(stdout);
                cJSON_Delete(reply);
                struct timespec ts = { arg_interval_ms / 1000, (long)(arg_interval_ms % 1000) * 1000000 };
                nanosleep(&ts, NULL);
        }
}

/* Pages of at most a page's worth of devices (the daemon caps them), until the list or --limit ends. */
int cmd_devices(void) {
        cJSON *all = arg_json ? cJSON_CreateArray() : NULL, *d;
        char after[80] = "";
        unsigned shown = 0;
        int64_t since = 0;
        int r = 0;

        if (arg_since && parse_time(arg_since, &since) < 0) {
                fprintf(stderr, "provctl: cannot parse time '%s'\n", arg_since);
                cJSON_Delete(all);
                return -EINVAL;
        }
        if (arg_json && !all)
                return -ENOMEM;
        if (!arg_json)
                printf("%-20s %-14s %-24s %-20s %s\n", "SERIAL", "STATE", "PROVISIONED", "THING", "CERTIFICATE ID");
        for (;;) {
                cJSON *req = cJSON_CreateObject(), *reply = NULL, *next;

                cJSON_AddStringToObject(req, "cmd", "devices");
                cJSON_AddNumberToObject(req, "since", (double)since);
                if (after[0])
                        cJSON_AddStringToObject(req, "after", after);
                cJSON_AddBoolToObject(req, "pem", arg_pem || arg_json);
                unsigned want = arg_limit ? arg_limit - shown : 0;
                if (arg_page && (!want || arg_page < want))
                        want = arg_page;
                if (want)
                        cJSON_AddNumberToObject(req, "limit", want);
                r = call(req, &reply);
                cJSON_Delete(req);
                if (r < 0)
                        break;
                cJSON_ArrayForEach(d, cJSON_GetObjectItem(reply, "devices")) {
                        shown++;
                        if (arg_json) {
                                cJSON_AddItemToArray(all, cJSON_Duplicate(d, true));
                                continue;
                        }
                        char when[32] = "-";
                        double ms = num(d, "provisioned_at");
                        if (ms > 0) {
                                time_t t = (time_t)(ms / 1000);
                                struct tm tm;
                                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
                        }
                        char e1[256], e2[64], e3[512], e4[256];
                        printf("%-20s %-14s %-24s %-20s %s\n", escaped(str(d, "serial"), e1, sizeof e1),
                               escaped(str(d, "state"), e2, sizeof e2), when,
                               escaped(str(d, "thing_name"), e3, sizeof e3),
                               escaped(str(d, "cert_sha256"), e4, sizeof e4));
                        if (arg_pem) {
                                /* PEM is lines of base64: only its newlines are left as they are. */
                                for (const char *q = str(d, "certificate_pem"); *q; q++)
                                        if (*q == '\n' || (*q >= 0x20 && *q < 0x7f && *q != '\\'))
                                                putchar(*q);
                                        else
                                                printf("\\x%02x", (unsigned char)*q);
                        }
                }
                next = cJSON_GetObjectItem(reply, "next");
                /* A cursor that does not move forward would page forever: stop instead. */
                if (!next || (arg_limit && shown >= arg_limit) || !cJSON_IsNumber(cJSON_GetObjectItem(next, "since")) ||
                    num(next, "since") < (double)since || !str(next, "after")[0] ||
                    (size_t)snprintf(after, sizeof after, "%s", str(next, "after")) >= sizeof after) {
                        cJSON_Delete(reply);
                        break;
                }
                since = (int64_t)num(next, "since");
                cJSON_Delete(reply);
        }
        if (r >= 0 && arg_json)
                print_json(all);
        cJSON_Delete(all);
        return r;
}

int cmd_reissue(const char *serial) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL;
        int r;

        cJSON_AddStringToObject(req, "cmd", "reissue");
        cJSON_AddStringToObject(req, "serial", serial);
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json)
                print_json(reply);
        else
                printf("%s will get a new certificate the next time it is plugged in\n", serial);
        cJSON_Delete(reply);
        return 0;
}

/* --- aws ------------------------------------------------------------------- */

static void print_counts(const char *title, const cJSON *o) {
        const cJSON *v;

        if (!cJSON_IsObject(o) || !o->child)
                return;
        printf("  %s:", title);
        cJSON_ArrayForEach(v, o)
                printf(" %s %.0f", v->string, v->valuedouble);
        printf("\n");
}

static void print_aws_status(const cJSON *o) {
        const cJSON *ob = cJSON_GetObjectItem(o, "outbox"), *wk = cJSON_GetObjectItem(o, "worker"), *e;
        const cJSON *st = cJSON_GetObjectItem(ob, "states"), *old = cJSON_GetObjectItem(ob, "oldest_pending");

        printf("AWS registration: mode %s", str(o, "mode"));
        if (cJSON_IsObject(wk))
                printf(", %s%s, %.0f of %.0f jobs running, %.1f calls/s (%.0f calls, %.0f retries, %.0f throttled)",
                       cJSON_IsTrue(cJSON_GetObjectItem(wk, "sending")) ? "sending" : "not sending",
                       cJSON_IsTrue(cJSON_GetObjectItem(wk, "draining")) ? " (draining)" : "",
                       num(wk, "active"), num(wk, "concurrency"), num(wk, "rate_per_s"), num(wk, "calls"),
                       num(wk, "retries"), num(wk, "throttled"));
        printf("\n");
        printf("jobs: pending %.0f (due %.0f)  in flight %.0f  done %.0f  failed %.0f\n", num(st, "pending"),
               num(ob, "pending_due"), num(st, "in_flight"), num(st, "done"), num(st, "failed"));
        print_counts("pending by step", cJSON_GetObjectItem(ob, "pending"));
        print_counts("in flight by step", cJSON_GetObjectItem(ob, "in_flight"));
        print_counts("failed by step", cJSON_GetObjectItem(ob, "failed"));
        if (cJSON_IsObject(old)) {
                time_t t = (time_t)(num(old, "created_at") / 1000);
                char buf[32];
                strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
                printf("oldest pending: #%.0f (%s) queued %s\n", num(old, "id"), str(old, "kind"), buf);
        }
        e = cJSON_GetObjectItem(wk, "last_error");
        if (cJSON_IsObject(e))
                printf("last error: %s: %s\n", str(e, "code"), str(e, "message"));
        const cJSON *errs = cJSON_GetObjectItem(ob, "errors"), *x;
        if (cJSON_GetArraySize(errs) > 0) {
                printf("\n%-8s %-8s %-14s %-24s %-20s %s\n", "ID", "STATE", "KIND", "STEP", "THING", "ERROR");
                cJSON_ArrayForEach(x, errs)
                        printf("%-8.0f %-8s %-14s %-24s %-20.20s %s\n", num(x, "id"), str(x, "state"), str(x, "kind"),
                               str(x, "step"), str(x, "thing_name"), str(x, "error"));
        }
}

int cmd_aws(int argc, char **argv) {
        cJSON *req, *reply = NULL;
        int r;

        if (argc >= 2 && streq(argv[0], "export-bulk"))
                return aws_export_bulk(argv[1]);
        if (argc < 1 || (!streq(argv[0], "status") && !streq(argv[0], "retry") && !streq(argv[0], "drain"))) {
                fprintf(stderr, "provctl: usage: provctl aws status|retry ID|retry --failed|drain|export-bulk FILE\n");
                return -EINVAL;
        }
        req = cJSON_CreateObject();
        if (streq(argv[0], "status"))
                cJSON_AddStringToObject(req, "cmd", "aws-status");
        else if (streq(argv[0], "drain"))
                cJSON_AddStringToObject(req, "cmd", "aws-drain");
        else {
                unsigned id;

                cJSON_AddStringToObject(req, "cmd", "aws-retry");
                if (arg_failed && argc == 1)
                        cJSON_AddBoolToObject(req, "failed", true);
                else if (!arg_failed && argc == 2 && parse_uint(argv[1], &id) >= 0 && id > 0)
                        cJSON_AddNumberToObject(req, "id", id);
                else {
                        cJSON_Delete(req);
                        fprintf(stderr, "provctl: usage: provctl aws retry ID|--failed\n");
                        return -EINVAL;
                }
        }
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json)
                print_json(reply);
        else if (streq(argv[0], "status"))
                print_aws_status(reply);
        else if (streq(argv[0], "drain"))
                printf("provd is sending the queued registrations (see provctl aws status)\n");
        else
                printf("%.0f registration(s) queued again\n", num(reply, "requeued"));
        cJSON_Delete(reply);
        return 0;
}
