/* SPDX-License-Identifier: MIT */
/* Finding board ports: glob patterns and USB VID:PID filters, periodic rescans, inotify hotplug. */
#ifndef PROVD_PORT_DISCOVERY_H
#define PROVD_PORT_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct conf;

struct port_discovery_ops {
        /* Is @path already open as a port? (Known ports cost no stat() and no sysfs walk.) */
        bool (*known)(void *userdata, const char *path);
        /* @path matched a pattern or a USB filter; @usb_location ("1-1.4") may be NULL. */
        void (*found)(void *userdata, const char *path, const char *usb_location);
};

/* Embedded in its owner; its libuv handles close with port_discovery_close(). */
struct port_discovery {
        uv_loop_t *loop;
        const struct conf *conf;        /* read live: reload replaces the values */
        const struct port_discovery_ops *ops;
        void *userdata;
        bool usb_labels;                /* some [slots] label is keyed by USB bus location */
        bool running;
        bool closed;
        uv_timer_t rescan_timer;
        uv_timer_t rescan_soon;         /* debounces unclear directory events */
        uv_fs_event_t **watches;
        size_t n_watches;
};

void port_discovery_init(struct port_discovery *d, uv_loop_t *loop, const struct conf *conf,
                         const struct port_discovery_ops *ops, void *userdata);
/** Starts (or, after a reload, restarts) the watches and the rescan timer; the first scan is immediate. */
void port_discovery_start(struct port_discovery *d);
/** Stops finding ports for good and closes the handles (the loop finishes closing them). */
void port_discovery_close(struct port_discovery *d);
/** One full scan now: every glob match and every USB port that passes a filter. */
void port_discovery_rescan(struct port_discovery *d);
/** @path appeared (hotplug, or a port just closed): offers it if it matches a pattern. */
void port_discovery_consider(struct port_discovery *d, const char *path);
/** Frees what is left after the loop closed the handles. */
void port_discovery_done(struct port_discovery *d);

#endif
