/* SPDX-License-Identifier: MIT */
/* The manager's set of open ports: opening what discovery finds, the in-use indexes, closing. */

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "log.h"
#include "manager-internal.h"
#include "station.h"
#include "util.h"

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

struct station *manager_find_station(struct manager *m, const char *path) {
        ssize_t i = find_station(m, path, NULL);

        return i >= 0 ? m->stations[i] : NULL;
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

bool manager_serial_in_use(void *userdata, struct station *self) {
        struct manager *m = userdata;
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

static bool not_closing(const struct station *st, const void *arg) {
        return !station_is_closing(st);
}

bool manager_rdev_in_use(void *userdata, dev_t rdev) {
        struct manager *m = userdata;

        return station_map_find(&m->by_rdev, (uint64_t)rdev, not_closing, NULL) != NULL;
}

void manager_station_gone(void *userdata, struct station *st) {
        struct manager *m = userdata;
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
                port_discovery_consider(&m->discovery, path);  /* it may already name a new board */
        free(path);
}

static bool known(void *userdata, const char *path) {
        struct manager *m = userdata;

        return m->stopping || find_station(m, path, NULL) >= 0;
}

static void found(void *userdata, const char *path, const char *usb_location) {
        static uint64_t last_full_warning;
        struct manager *m = userdata;
        struct station_info info;
        struct station *st;
        struct stat s;
        size_t pos;
        int r;

        if (m->stopping || find_station(m, path, &pos) >= 0)
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
        r = station_new(&st, &m->env, &info);
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

static const struct port_discovery_ops discovery_ops = {
        .known = known,
        .found = found,
};

void manager_ports_start(struct manager *m) {
        if (!m->discovery_inited) {
                port_discovery_init(&m->discovery, m->loop, &m->conf, &discovery_ops, m);
                m->discovery_inited = true;
        }
        port_discovery_start(&m->discovery);
}

void manager_ports_free(struct manager *m) {
        for (size_t i = 0; i < m->n_stations; i++)
                station_free(m->stations[i]);
        m->stations = (free(m->stations), NULL);
        m->n_stations = m->cap_stations = 0;
        station_map_done(&m->by_rdev);
        station_map_done(&m->by_serial);
        port_discovery_done(&m->discovery);
}
