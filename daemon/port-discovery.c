/* SPDX-License-Identifier: MIT */
/* Finding board ports (port-discovery.h): globs, USB filters, rescans, hotplug. */

#include <fnmatch.h>
#include <glob.h>
#include <libgen.h>
#include <libserialport.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"
#include "port-discovery.h"
#include "util.h"

#define RESCAN_DEBOUNCE_MS 10

static bool conf_has_usb_labels(const struct conf *c) {
        for (size_t i = 0; i < c->n_slots; i++)
                if (c->slots[i].key[0] != '/')
                        return true;
        return false;
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

/* Offers a glob match: with its USB location only when some label needs one. */
static void offer(struct port_discovery *d, const char *path) {
        char loc[64];

        d->ops->found(d->userdata, path, d->usb_labels && usb_location_of(path, loc, sizeof loc) ? loc : NULL);
}

static void scan_usb(struct port_discovery *d) {
        const struct conf *c = d->conf;
        struct sp_port **ports = NULL;

        if (c->n_usb_ids == 0)
                return;
        if (sp_list_ports(&ports) != SP_OK)
                return;
        for (size_t i = 0; ports[i]; i++) {
                int vid, pid;
                char loc[64];
                if (sp_get_port_transport(ports[i]) != SP_TRANSPORT_USB ||
                    sp_get_port_usb_vid_pid(ports[i], &vid, &pid) != SP_OK)
                        continue;
                for (size_t k = 0; k < c->n_usb_ids; k++) {
                        const struct usb_id *id = &c->usb_ids[k];
                        if (id->vid != vid || (id->pid && id->pid != pid))
                                continue;
                        const char *name = sp_get_port_name(ports[i]);
                        /* An open port needs no sysfs walk for its label. */
                        if (!d->ops->known(d->userdata, name))
                                d->ops->found(d->userdata, name,
                                              usb_location_of(name, loc, sizeof loc) ? loc : NULL);
                        break;
                }
        }
        sp_free_port_list(ports);
}

void port_discovery_rescan(struct port_discovery *d) {
        const struct conf *c = d->conf;

        if (d->closed)
                return;
        for (size_t i = 0; i < c->n_globs; i++) {
                glob_t g = {};
                if (glob(c->globs[i], 0, NULL, &g) == 0)
                        for (size_t k = 0; k < g.gl_pathc; k++)
                                if (!d->ops->known(d->userdata, g.gl_pathv[k]))
                                        offer(d, g.gl_pathv[k]);
                globfree(&g);
        }
        scan_usb(d);
}

static void on_rescan(uv_timer_t *t) {
        port_discovery_rescan(t->data);
}

static void rescan_soon(struct port_discovery *d) {
        if (d->closed || uv_is_active((uv_handle_t *)&d->rescan_soon))
                return;
        (void)uv_timer_start(&d->rescan_soon, on_rescan, RESCAN_DEBOUNCE_MS, 0);
}

void port_discovery_consider(struct port_discovery *d, const char *path) {
        const struct conf *c = d->conf;

        if (d->closed || d->ops->known(d->userdata, path))
                return;
        for (size_t i = 0; i < c->n_globs; i++)
                if (fnmatch(c->globs[i], path, FNM_PATHNAME | FNM_PERIOD) == 0) {
                        offer(d, path);
                        return;
                }
}

static void on_dir_event(uv_fs_event_t *h, const char *filename, int events, int status) {
        struct port_discovery *d = h->data;
        char dir[PATH_MAX], path[PATH_MAX];
        size_t len = sizeof dir;

        /* The name inotify reports is the one to look at; anything unclear: rescan everything. */
        if (status < 0 || !filename || uv_fs_event_getpath(h, dir, &len) < 0 ||
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, filename) >= sizeof path) {
                rescan_soon(d);
                return;
        }
        port_discovery_consider(d, path);
}

static void on_watch_closed(uv_handle_t *h) {
        free(h);
}

static void watches_stop(struct port_discovery *d) {
        for (size_t i = 0; i < d->n_watches; i++)
                uv_close((uv_handle_t *)d->watches[i], on_watch_closed);
        d->watches = (free(d->watches), NULL);
        d->n_watches = 0;
}

/* inotify on each glob's directory (/dev, the simulator's folder): hotplug without waiting for the timer. */
static void watches_start(struct port_discovery *d) {
        const struct conf *c = d->conf;

        d->watches = calloc(c->n_globs + 1, sizeof(*d->watches));
        if (!d->watches)
                return;
        for (size_t i = 0; i < c->n_globs; i++) {
                char dir[PATH_MAX];
                uv_fs_event_t *w;

                snprintf(dir, sizeof dir, "%s", c->globs[i]);
                char *dn = dirname(dir);
                if (strpbrk(dn, "*?["))
                        continue;       /* wildcard directories are covered by the timer */
                bool dup = false;
                for (size_t k = 0; k < i; k++) {
                        char other[PATH_MAX];
                        snprintf(other, sizeof other, "%s", c->globs[k]);
                        dup = dup || streq(dirname(other), dn);
                }
                if (dup || !(w = calloc(1, sizeof *w)))
                        continue;
                uv_fs_event_init(d->loop, w);
                w->data = d;
                if (uv_fs_event_start(w, on_dir_event, dn, 0) < 0) {
                        uv_close((uv_handle_t *)w, on_watch_closed);
                        continue;
                }
                d->watches[d->n_watches++] = w;
        }
}

void port_discovery_init(struct port_discovery *d, uv_loop_t *loop, const struct conf *conf,
                         const struct port_discovery_ops *ops, void *userdata) {
        *d = (struct port_discovery) { .loop = loop, .conf = conf, .ops = ops, .userdata = userdata };
        uv_timer_init(loop, &d->rescan_timer);
        d->rescan_timer.data = d;
        uv_timer_init(loop, &d->rescan_soon);
        d->rescan_soon.data = d;
}

void port_discovery_start(struct port_discovery *d) {
        if (d->closed)
                return;
        d->usb_labels = conf_has_usb_labels(d->conf);
        if (d->running)
                watches_stop(d);
        d->running = true;
        watches_start(d);
        uv_timer_start(&d->rescan_timer, on_rescan, 0, d->conf->rescan_ms);
}

static void close_handle(uv_handle_t *h) {
        if (h->loop && !uv_is_closing(h))
                uv_close(h, NULL);
}

void port_discovery_close(struct port_discovery *d) {
        if (d->closed || !d->loop)
                return;
        d->closed = true;
        uv_timer_stop(&d->rescan_timer);
        close_handle((uv_handle_t *)&d->rescan_timer);
        close_handle((uv_handle_t *)&d->rescan_soon);
        watches_stop(d);
}

void port_discovery_done(struct port_discovery *d) {
        /* Watches not closed through the loop (it never ran): their memory only. */
        for (size_t i = 0; i < d->n_watches; i++)
                free(d->watches[i]);
        d->watches = (free(d->watches), NULL);
        d->n_watches = 0;
}
