/* SPDX-License-Identifier: MIT */
/* Unit tests: port discovery on a temporary directory of pty symlinks (glob patterns, rescan, hotplug). */

#include <errno.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "conf.h"
#include "port-discovery.h"
#include "util.h"

#define MAX_PORTS 16
#define GUARD_MS 10000          /* a missing event fails the test instead of hanging it */

struct pty {
        int master, slave;
        char name[64];
};

struct fx {
        uv_loop_t loop;
        struct conf conf;
        struct port_discovery d;
        char dir[64];
        struct pty pty[3];

        /* What the owner already has open, and what was offered. */
        char known[MAX_PORTS][128];
        size_t n_known;
        char found[MAX_PORTS][128];
        size_t n_found;
        bool found_usb_location;

        uv_timer_t guard;
        bool guard_fired;
};

static bool op_known(void *userdata, const char *path) {
        struct fx *f = userdata;

        for (size_t i = 0; i < f->n_known; i++)
                if (streq(f->known[i], path))
                        return true;
        return false;
}

/* The owner opens every port it is offered (as the manager does). */
static void op_found(void *userdata, const char *path, const char *usb_location) {
        struct fx *f = userdata;

        assert_false(op_known(f, path));        /* never offered twice while open */
        assert_true(f->n_found < MAX_PORTS && f->n_known < MAX_PORTS);
        snprintf(f->found[f->n_found++], sizeof f->found[0], "%s", path);
        snprintf(f->known[f->n_known++], sizeof f->known[0], "%s", path);
        f->found_usb_location = f->found_usb_location || usb_location;
        uv_stop(&f->loop);      /* let run_until_found() look, rather than block in this iteration's poll */
}

static const struct port_discovery_ops ops = {
        .known = op_known,
        .found = op_found,
};

static void forget(struct fx *f, const char *path) {
        for (size_t i = 0; i < f->n_known; i++)
                if (streq(f->known[i], path)) {
                        memmove(f->known[i], f->known[i + 1], (f->n_known - i - 1) * sizeof f->known[0]);
                        f->n_known--;
                        return;
                }
        fail_msg("%s was not open", path);
}

static bool was_found(const struct fx *f, const char *name) {
        char path[128];

        snprintf(path, sizeof path, "%s/%s", f->dir, name);
        for (size_t i = 0; i < f->n_found; i++)
                if (streq(f->found[i], path))
                        return true;
        return false;
}

static void link_pty(struct fx *f, unsigned i, const char *name) {
        char path[128];

        snprintf(path, sizeof path, "%s/%s", f->dir, name);
        assert_int_equal(symlink(f->pty[i].name, path), 0);
}

static void on_guard(uv_timer_t *t) {
        struct fx *f = t->data;
        f->guard_fired = true;
}

static void add_glob(struct fx *f, const char *pattern) {
        char g[128];

        snprintf(g, sizeof g, "%s/%s", f->dir, pattern);
        f->conf.globs = realloc(f->conf.globs, (f->conf.n_globs + 1) * sizeof(*f->conf.globs));
        assert_non_null(f->conf.globs);
        f->conf.globs[f->conf.n_globs] = strdup(g);
        assert_non_null(f->conf.globs[f->conf.n_globs++]);
}

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/provd-test-discovery-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        for (unsigned i = 0; i < 3; i++)
                assert_int_equal(openpty(&f->pty[i].master, &f->pty[i].slave, f->pty[i].name, NULL, NULL), 0);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        conf_init(&f->conf);
        f->conf.rescan_ms = 3600 * 1000;        /* hotplug must not wait for the timer */
        uv_timer_init(&f->loop, &f->guard);
        f->guard.data = f;
        uv_timer_start(&f->guard, on_guard, GUARD_MS, 0);
        uv_unref((uv_handle_t *)&f->guard);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        char cmd[128];

        port_discovery_close(&f->d);
        uv_close((uv_handle_t *)&f->guard, NULL);
        while (uv_loop_alive(&f->loop))         /* a uv_stop() from op_found() may end a run early */
                uv_run(&f->loop, UV_RUN_DEFAULT);
        port_discovery_done(&f->d);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        conf_deinit(&f->conf);
        for (unsigned i = 0; i < 3; i++) {
                close(f->pty[i].master);
                close(f->pty[i].slave);
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void run_until_found(struct fx *f, size_t n) {
        uv_ref((uv_handle_t *)&f->guard);
        while (f->n_found < n && !f->guard_fired)
                uv_run(&f->loop, UV_RUN_ONCE);
        uv_unref((uv_handle_t *)&f->guard);
        assert_int_equal(f->n_found, n);
}

/* The first scan offers what the patterns match, and nothing else. */
static void test_glob_patterns(void **state) {
        struct fx *f = *state;
        char other[128];

        link_pty(f, 0, "ttyACM0");
        link_pty(f, 1, "ttyUSB3");
        link_pty(f, 2, "ttyS0");                /* matches no pattern */
        link_pty(f, 2, ".ttyACM9");             /* hidden: no pattern matches a leading dot */
        add_glob(f, "ttyACM*");
        add_glob(f, "ttyUSB?");
        snprintf(other, sizeof other, "%s/notes.txt", f->dir);
        assert_int_equal(symlink("/nonexistent", other), 0);
        port_discovery_init(&f->d, &f->loop, &f->conf, &ops, f);
        port_discovery_start(&f->d);
        run_until_found(f, 2);
        assert_true(was_found(f, "ttyACM0"));
        assert_true(was_found(f, "ttyUSB3"));
        assert_false(was_found(f, "ttyS0"));
        assert_false(was_found(f, ".ttyACM9"));
        assert_false(f->found_usb_location);    /* no [slots] label keyed by USB location */
}

/* A rescan offers nothing already open; a port closed by its owner is offered again. */
static void test_rescan(void **state) {
        struct fx *f = *state;
        char path[128];

        link_pty(f, 0, "ttyACM0");
        add_glob(f, "ttyACM*");
        port_discovery_init(&f->d, &f->loop, &f->conf, &ops, f);
        port_discovery_start(&f->d);
        run_until_found(f, 1);
        port_discovery_rescan(&f->d);
        assert_int_equal(f->n_found, 1);
        link_pty(f, 1, "ttyACM1");
        port_discovery_rescan(&f->d);           /* found by a full scan, without an event */
        assert_int_equal(f->n_found, 2);
        assert_true(was_found(f, "ttyACM1"));
        snprintf(path, sizeof path, "%s/ttyACM0", f->dir);
        forget(f, path);
        port_discovery_consider(&f->d, path);   /* what the manager does when a port closes */
        assert_int_equal(f->n_found, 3);
        assert_string_equal(f->found[2], path);
}

/* A symlink created after start is offered from the directory event, long before the rescan period. */
static void test_hotplug(void **state) {
        struct fx *f = *state;

        add_glob(f, "ttyACM*");
        port_discovery_init(&f->d, &f->loop, &f->conf, &ops, f);
        port_discovery_start(&f->d);
        uv_run(&f->loop, UV_RUN_NOWAIT);        /* the immediate first scan: nothing yet */
        assert_int_equal(f->n_found, 0);
        link_pty(f, 0, "ttyACM0");
        link_pty(f, 1, "other0");               /* an event for a name no pattern matches */
        run_until_found(f, 1);
        assert_true(was_found(f, "ttyACM0"));
        link_pty(f, 2, "ttyACM7");
        run_until_found(f, 2);
        assert_true(was_found(f, "ttyACM7"));
        assert_false(was_found(f, "other0"));
}

/* A reload with new patterns: the next scan uses them; after close nothing is offered. */
static void test_restart_and_close(void **state) {
        struct fx *f = *state;
        char path[128];

        link_pty(f, 0, "ttyACM0");
        link_pty(f, 1, "ttyUSB0");
        add_glob(f, "ttyACM*");
        port_discovery_init(&f->d, &f->loop, &f->conf, &ops, f);
        port_discovery_start(&f->d);
        run_until_found(f, 1);
        add_glob(f, "ttyUSB*");
        port_discovery_start(&f->d);            /* as manager_reload() does */
        run_until_found(f, 2);
        assert_true(was_found(f, "ttyUSB0"));
        port_discovery_close(&f->d);
        snprintf(path, sizeof path, "%s/ttyACM0", f->dir);
        forget(f, path);
        port_discovery_consider(&f->d, path);
        port_discovery_rescan(&f->d);
        link_pty(f, 2, "ttyACM5");
        uv_run(&f->loop, UV_RUN_NOWAIT);
        assert_int_equal(f->n_found, 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_glob_patterns, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rescan, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hotplug, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_and_close, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
