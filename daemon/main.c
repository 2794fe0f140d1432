/* SPDX-License-Identifier: MIT */
/* provd: the provisioning daemon's entry point. */

#include <getopt.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "config.h"
#include "conf.h"
#include "log.h"
#include "manager.h"
#include "util.h"

static const char *arg_config = PROVD_SYSCONFDIR "/provd.conf";
static bool arg_check;

static void help(void) {
        printf("Usage: provd [--config FILE] [--check-config]\n"
               "Provisions IoT boards on a factory line (see README.md).\n\n"
               "  -c, --config FILE   configuration file (default %s)\n"
               "      --check-config  parse and validate the configuration, then exit\n"
               "  -h, --help          this text\n"
               "      --version       print the version\n", arg_config);
}

static int parse_argv(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_CHECK };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK:
                        arg_check = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("provd %s\n", PROVD_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "provd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/* The libuv pool runs CSR validation, signing and proof checks: one thread per core. */
static void size_threadpool(void) {
        char buf[16];
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        if (getenv("UV_THREADPOOL_SIZE"))
                return;
        snprintf(buf, sizeof buf, "%ld", n > 0 ? MIN(n, 64L) : 2L);
        setenv("UV_THREADPOOL_SIZE", buf, 0);
}

int main(int argc, char **argv) {
        struct manager *m = NULL;
        uv_loop_t loop;
        int r;

        /*
         * Before SQLite initialises: no global allocation statistics, whose
         * mutex every SQLite malloc would otherwise take (docs/PERFORMANCE.md).
         */
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        log_open();
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        signal(SIGPIPE, SIG_IGN);
        /* The database, its WAL and SHM, the PID's files: never world-readable, even when run by hand. */
        umask(027);
        if (uv_loop_init(&loop) < 0)
                return 1;
        r = manager_new(&m, &loop, arg_config);
        if (r < 0) {
                (void)uv_loop_close(&loop);
                return 1;
        }
        if (arg_check) {
                r = manager_check(m);
                if (r < 0)
                        fprintf(stderr, "%s: configuration is not valid (see above)\n", arg_config);
                else
                        printf("%s: configuration is valid\n", arg_config);
                manager_free(m);
                (void)uv_loop_close(&loop);
                return r < 0 ? 1 : 0;
        }
        if (manager_workers(m)) {
                char buf[16];
                snprintf(buf, sizeof buf, "%u", manager_workers(m));
                setenv("UV_THREADPOOL_SIZE", buf, 1);
        }
        size_threadpool();

        r = manager_start(m);
        if (r < 0) {
                manager_stop(m);
                uv_run(&loop, UV_RUN_DEFAULT);
                manager_free(m);
                (void)uv_loop_close(&loop);
                return 1;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        r = manager_exit_code(m);
        manager_free(m);
        (void)uv_loop_close(&loop);
        return r;
}
