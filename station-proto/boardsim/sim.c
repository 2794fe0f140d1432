/* SPDX-License-Identifier: MIT */
/* provd-boardsim: many simulated boards on pseudo-terminals, one libuv loop. */

/*
 * Glossary:
 *   slot      a numbered place on the bench (board-007); it outlives boards.
 *   board     one identity (serial, key, storage) in a slot; "swap" puts a new
 *             one in, generation (gen) counts them.
 *   link      one pty pair carrying a board's bytes; "replug" replaces it.
 *   out queue bytes the board library wrote, each response a segment with a
 *             release time (wire speed, key generation delay); the timer
 *             releases due segments to the pty master.
 *
 * The board library answers synchronously inside spb_feed(): a slow secure
 * element or a slow wire is modelled by holding the bytes it wrote in the
 * out queue until their release time, never by blocking the loop.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <uv.h>

#include "config.h"
#include "station-proto/sp-board.h"
#include "station-proto/sp.h"

#include "args.h"
#include "board.h"
#include "seed.h"
#include "util.h"

#define MAX_FRAME       SP_MAX_FRAME_DEFAULT
#define OUT_CAP         (32u * 1024u)   /* queued board->station bytes per slot */
#define IN_CHUNK        4096u           /* bytes read from the master at a time */
#define SEG_MAX         16u             /* responses waiting for their release time */
#define READS_PER_WAKEUP 16
#define DRAIN_POLL_MS   2
#define DRAIN_TIMEOUT_MS 1000
#define OVERSIZE_PAYLOAD 4600u          /* > 4096 decoded: the station must reject it */

struct slot;

struct link {
        uv_poll_t poll;
        struct slot *slot;              /* NULL once detached (closing) */
        int master, slave;
        char pts[64];
};

enum after_flush {
        AFTER_NONE,
        AFTER_DROP,                     /* drop fault: hang up, plug back later */
        AFTER_CYCLE,                    /* RESULT answered: swap or finish */
};

struct segment {
        size_t len;
        uint64_t at_ns;
};

struct slot {
        struct sim *sim;
        uint32_t idx;
        char name[24];                  /* board-007 */
        char *link_path;                /* DIR/board-007 */
        char *state_path;               /* STATE/board-007 or NULL */

        struct board board;
        struct spb_board spb;
        uint8_t rx[SPB_RX_BUF(MAX_FRAME)];
        uint8_t tx[SPB_TX_BUF(MAX_FRAME)];
        uint8_t work[MAX_FRAME];

        struct link *link;
        uv_timer_t tx_timer, rx_timer, aux_timer;
        unsigned handles;               /* open uv handles, the slot is freed at 0 */
        bool removing;

        /* faults of the current identity */
        bool silent, oversize;
        bool small_frame;               /* FAULT_SMALLFRAME */
        bool no_cert_hash, vendor_error, pubkey_mismatch;
        bool compressed_cap;            /* FAULT_COMPRESSED */
        int result_bad;                 /* enum resultbad_kind, -1: none */
        uint32_t boot_text;             /* bytes still to print before the first response */
        double corrupt;
        uint8_t drop_step;              /* 0: none */
        uint32_t garbage;
        uint64_t rng;

        /* board -> station */
        uint8_t out[OUT_CAP];
        size_t out_head, out_tail, out_ready;
        struct segment seg[SEG_MAX];
        unsigned seg_first, seg_count;
        uint64_t tx_free_ns;
        uint64_t genkey_until_ns;
        bool want_write;
        uint32_t overruns;

        /* station -> board (wire emulation holds one chunk at a time) */
        uint8_t in[IN_CHUNK];
        size_t in_len;
        uint64_t rx_free_ns;

        /* lifecycle */
        enum after_flush after;
        uint8_t drop_pending_type;      /* response type that triggers the drop */
        unsigned drain_polls, drain_zero;
        bool result_seen;               /* this identity got its RESULT */
        uint32_t boards_done;           /* results on this slot */
        bool finished;                  /* --cycles: no more swaps */
};

struct sim {
        uv_loop_t *loop;
        struct sim_options opt;
        struct seed seed;
        struct slot **slots;            /* SIM_MAX_BOARDS entries, NULL = empty */
        uint32_t next_idx;
        uint32_t live;                  /* slots not removed */

        char *control_path;
        int control_fd;
        uv_poll_t control_poll;
        bool control_open;
        char ctl[CONTROL_LINE_MAX + 1];
        size_t ctl_len;
        bool ctl_discard;

        uv_signal_t sig_term, sig_int;
        struct sp_parser *inspect;      /* decodes our own responses (type, seq) */

        uint64_t identities;            /* board identities created */
        uint64_t results, provisioned, already, failed;
        uint64_t dropped;               /* --cycles: boards that hung up before their RESULT */
        bool done_printed;
        bool stopping;
        const char *exit_reason;
        uint64_t start_ns;
};

static void slot_flush(struct slot *s);
static int slot_plug(struct slot *s);
static void slot_unplug(struct slot *s, const char *reason);
static void sim_stop(struct sim *sim, const char *reason);

/* --- output lines ---------------------------------------------------------- */

__attribute__((format(printf, 1, 2)))
static void event(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

static uint64_t cpu_ms(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
               (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

static const char *result_name(uint8_t r) {
        switch (r) {
        case SP_RESULT_PROVISIONED:
                return "provisioned";
        case SP_RESULT_ALREADY_PROVISIONED:
                return "already-provisioned";
        case SP_RESULT_FAILED:
                return "failed";
        default:
                return "unknown";
        }
}

static uint8_t response_for(uint8_t req) {
        return (uint8_t)(req | SP_MSG_RESPONSE);
}

/* --- faults ---------------------------------------------------------------- */

static bool fault_applies(struct sim *sim, size_t no, uint32_t idx, uint32_t gen) {
        const struct fault_spec *f = &sim->opt.faults[no];

        if (f->is_fraction)
                return seed_pick(&sim->seed, (uint32_t)no, idx, gen, f->fraction);
        return fault_spec_has_index(f, idx);
}

/* Serial for a clone of slot @of: its current board's, else what seed gives it at gen 0. */
static void clone_serial(struct sim *sim, uint32_t of, uint8_t ret[SEED_SERIAL_LEN]) {
        if (of < SIM_MAX_BOARDS && sim->slots[of])
                memcpy(ret, sim->slots[of]->board.serial, SEED_SERIAL_LEN);
        else
                seed_serial(&sim->seed, of, 0, ret);
}

/* The locked fault: a board provisioned elsewhere, with a key of its own, locked. */
static void lock_with_key(struct board *b) {
        static uint8_t der[BOARD_CERT_MAX];
        size_t len;

        if (!b->key && board_get_csr(b, true, NULL, 0, der, sizeof der, &len) != 0)
                return;
        b->locked = true;
}

/* Sets the faults that pick this board (slot, generation); clone is decided earlier, in new_identity(). */
static void apply_faults(struct slot *s) {
        struct sim *sim = s->sim;
        struct board *b = &s->board;

        s->silent = s->oversize = s->small_frame = false;
        s->no_cert_hash = s->vendor_error = s->pubkey_mismatch = false;
        s->result_bad = -1;
        s->boot_text = 0;
        s->corrupt = 0;
        s->drop_step = 0;
        s->garbage = 0;
        b->fault_badsig = b->fault_cn = b->fault_ca = b->fault_badproof = false;
        for (size_t i = 0; i < sim->opt.n_faults; i++) {
                const struct fault_spec *f = &sim->opt.faults[i];

                if (!fault_applies(sim, i, s->idx, b->gen))
                        continue;
                switch (f->kind) {
                case FAULT_CORRUPT: s->corrupt = f->rate; break;
                case FAULT_DROP: s->drop_step = f->step; break;
                case FAULT_BADSIG: b->fault_badsig = true; break;
                case FAULT_CN: b->fault_cn = true; break;
                case FAULT_CA: b->fault_ca = true; break;
                case FAULT_BADPROOF: b->fault_badproof = true; break;
                case FAULT_SILENT: s->silent = true; break;
                case FAULT_OVERSIZE: s->oversize = true; break;
                case FAULT_SMALLFRAME: s->small_frame = true; break;
                case FAULT_GARBAGE: s->garbage = f->arg; break;
                case FAULT_BOOTTEXT: s->boot_text = f->arg; break;
                case FAULT_NOCERTHASH: s->no_cert_hash = true; break;
                case FAULT_VENDORERR: s->vendor_error = true; break;
                case FAULT_RESULTBAD: s->result_bad = (int)f->arg; break;
                case FAULT_PUBKEYMISMATCH: s->pubkey_mismatch = true; break;
                case FAULT_COMPRESSED: s->compressed_cap = true; break;
                case FAULT_LOCKED: lock_with_key(b); break;
                case FAULT_CLONE:               /* handled in new_identity() */
                default: break;
                }
        }
        s->rng = seed_rng(&sim->seed, s->idx, b->gen);
}

static const struct fault_spec *clone_fault(struct sim *sim, uint32_t idx, uint32_t gen) {
        for (size_t i = 0; i < sim->opt.n_faults; i++)
                if (sim->opt.faults[i].kind == FAULT_CLONE && sim->opt.faults[i].arg != idx &&
                    fault_applies(sim, i, idx, gen))
                        return &sim->opt.faults[i];
        return NULL;
}

/* --- board library glue ---------------------------------------------------- */

static int op_identify(void *ctx, struct spb_identity *ret) {
        struct slot *s = ctx;
        int r = board_identify(&s->board, ret);

        if (r == 0 && s->compressed_cap)
                ret->caps |= SP_CAP_COMPRESSED_CERT;
        return r;
}

static int op_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                      size_t *ret_len) {
        struct slot *s = ctx;
        int r;

        /* Spec 6.2: the board uses the CN the station asks for; the station still checks it. */
        r = board_get_csr(&s->board, new_key, cn, cn_len, der, cap, ret_len);
        if (s->board.key_slow && s->sim->opt.genkey_ms > 0)
                s->genkey_until_ns = uv_hrtime() + (uint64_t)s->sim->opt.genkey_ms * 1000000u;
        return r;
}

static int op_store_certs(void *ctx, const struct spb_certs *certs) {
        struct slot *s = ctx;
        return board_store_certs(&s->board, certs);
}

static int op_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        struct slot *s = ctx;
        return board_store_config(&s->board, key, key_len, value, value_len);
}

static int op_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                    uint8_t ret_sig[SP_SIG_LEN]) {
        struct slot *s = ctx;
        return board_prove(&s->board, nonce, ret_hash, ret_sig);
}

static int op_lock(void *ctx) {
        struct slot *s = ctx;
        return board_lock(&s->board);
}

static void op_result(void *ctx, uint8_t result) {
        struct slot *s = ctx;
        struct sim *sim = s->sim;

        event("result %s %s serial=%s", s->name, result_name(result), s->board.serial_hex);
        if (s->result_seen)
                return;
        s->result_seen = true;
        sim->results++;
        if (result == SP_RESULT_PROVISIONED)
                sim->provisioned++;
        else if (result == SP_RESULT_ALREADY_PROVISIONED)
                sim->already++;
        else
                sim->failed++;
        s->boards_done++;
        if (sim->opt.cycles > 0 || sim->opt.total > 0)
                s->after = AFTER_CYCLE;         /* once RESULT_OK has gone out */
}

struct inspected {
        bool ok;
        uint8_t version, type, flags;
        uint16_t seq;
        uint16_t len;
        uint8_t payload[MAX_FRAME];
};

static int inspect_cb(const struct sp_frame *f, int error, void *userdata) {
        struct inspected *i = userdata;

        if (error == 0 && f && !i->ok) {
                i->ok = true;
                i->version = f->version;
                i->type = f->type;
                i->flags = f->flags;
                i->seq = f->seq;
                i->len = f->len;
                memcpy(i->payload, f->payload, f->len);
        }
        return 0;
}

static void error_payload(struct inspected *in, uint16_t code, const char *text) {
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, in->payload, sizeof in->payload);
        sp_tlv_put_u16(&w, SP_TAG_ERROR_CODE, code);
        if (text)
                sp_tlv_put_str(&w, SP_TAG_ERROR_TEXT, text);
        in->type = SP_MSG_ERROR;
        in->len = (uint16_t)w.len;
}

/*
 * Faults that change one response the board library wrote (a misbehaving
 * firmware): true when @in was changed and must be encoded again.
 */
static bool rewrite_response(struct slot *s, struct inspected *in) {
        struct sp_tlv_reader r;
        struct sp_tlv t;

        switch (in->type) {
        case SP_MSG_CERT_OK:
                if (!s->no_cert_hash)
                        return false;
                in->len = 0;
                return true;
        case SP_MSG_CSR:
                if (s->vendor_error) {
                        error_payload(in, 0x8001, "vendor fault");
                        return true;
                }
                if (!s->pubkey_mismatch)
                        return false;
                sp_tlv_reader_init(&r, in->payload, in->len);
                while (sp_tlv_next(&r, &t) == 1)
                        if (t.tag == SP_TAG_PUBKEY && t.len == SP_PUBKEY_LEN) {
                                in->payload[t.value - in->payload + SP_PUBKEY_LEN - 1] ^= 0x01;
                                return true;
                        }
                return false;
        case SP_MSG_RESULT_OK:
                switch (s->result_bad) {
                case RESULTBAD_TYPE:
                        in->type = SP_MSG_PONG;
                        return true;
                case RESULTBAD_VERSION:
                        in->version = 2;
                        return true;
                case RESULTBAD_ERROR:
                        error_payload(in, SP_ERR_BAD_STATE, NULL);
                        return true;
                default:
                        return false;
                }
        default:
                return false;
        }
}

static void add_boot_text(struct slot *s) {
        static const char banner[] = "ets Jan  8 2013,rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n";

        for (uint32_t i = 0; i < s->boot_text; i++)
                s->out[s->out_tail++] = (uint8_t)banner[i % (sizeof banner - 1)];
        s->boot_text = 0;
}

/* Makes room for @len bytes at the tail; false when the queue is full (a UART overrun). */
static bool out_reserve(struct slot *s, size_t len) {
        if (OUT_CAP - s->out_tail >= len)
                return true;
        if (s->out_head > 0) {
                memmove(s->out, s->out + s->out_head, s->out_tail - s->out_head);
                s->out_tail -= s->out_head;
                s->out_head = 0;
        }
        return OUT_CAP - s->out_tail >= len;
}

static void out_append(struct slot *s, const uint8_t *buf, size_t len) {
        memcpy(s->out + s->out_tail, buf, len);
        s->out_tail += len;
}

static void add_garbage(struct slot *s) {
        /* 80 % without any 0x00 (an endless frame: oversize for the station), then noise with delimiters. */
        size_t quiet = s->garbage * 4 / 5;

        for (size_t i = 0; i < s->garbage; i++) {
                uint8_t c = (uint8_t)rng_next(&s->rng);
                if (i < quiet) {
                        if (c == 0)
                                c = 0x55;
                } else if ((c & 15) == 0)
                        c = 0;
                s->out[s->out_tail++] = c;
        }
}

static void corrupt_bytes(struct slot *s, size_t from) {
        for (size_t i = from; i < s->out_tail; i++)
                if (rng_unit(&s->rng) < s->corrupt)
                        s->out[i] ^= (uint8_t)(1u + rng_next(&s->rng) % 255u);
}

/* A CSR response whose decoded frame exceeds 4096 bytes, built with the host encoder. */
static ssize_t oversize_frame(struct slot *s, uint16_t seq, uint8_t *out, size_t cap) {
        static uint8_t payload[OVERSIZE_PAYLOAD + SP_TLV_HEADER_LEN];
        struct sp_tlv_writer w;
        uint8_t filler[OVERSIZE_PAYLOAD];
        struct sp_frame f = { .version = SP_PROTO_VERSION, .type = SP_MSG_CSR, .seq = seq };

        for (size_t i = 0; i < sizeof(filler); i++)
                filler[i] = (uint8_t)rng_next(&s->rng);
        sp_tlv_writer_init(&w, payload, sizeof(payload));
        sp_tlv_put(&w, SP_TAG_CSR, filler, sizeof(filler));
        if (w.error < 0)
                return w.error;
        f.len = (uint16_t)w.len;
        f.payload = payload;
        return sp_frame_encode(&f, out, cap);
}

static void op_write(void *ctx, const uint8_t *buf, size_t len) {
        static uint8_t big[SP_ENCODED_MAX(OVERSIZE_PAYLOAD + SP_TLV_HEADER_LEN + SP_FRAME_OVERHEAD)];
        static struct inspected in;
        struct slot *s = ctx;
        struct sim *sim = s->sim;
        uint64_t now = uv_hrtime(), start, at;
        size_t from, total;
        uint32_t boot;

        in.ok = false;
        sp_parser_reset(sim->inspect);
        (void)sp_parser_feed(sim->inspect, buf, len, inspect_cb, &in);
        if (in.ok && rewrite_response(s, &in)) {
                struct sp_frame f = { .version = in.version, .type = in.type, .flags = in.flags, .seq = in.seq,
                                      .len = in.len, .payload = in.payload };
                ssize_t n = sp_frame_encode(&f, big, sizeof(big));
                if (n > 0) {
                        buf = big;
                        len = (size_t)n;
                }
        }
        if (sim->opt.verbose && in.ok) {
                const char *t = sp_msg_type_to_string(in.type);
                event("tx %s %s seq=%u len=%zu%s%s", s->name, t ? t : "?", in.seq, len,
                      (in.flags & SP_FLAG_REPLAY) ? " replay" : "", s->silent ? " silent" : "");
        }

        if (in.ok && s->drop_step && in.type == response_for(s->drop_step)) {
                s->drop_pending_type = s->drop_step;
                s->drop_step = 0;               /* once per identity */
                s->after = AFTER_DROP;
        }
        if (s->silent)
                return;

        if (s->oversize && in.ok && in.type == SP_MSG_CSR) {
                ssize_t n = oversize_frame(s, in.seq, big, sizeof(big));
                if (n > 0) {
                        buf = big;
                        len = (size_t)n;
                }
        }

        boot = s->boot_text;
        total = len + s->garbage + boot;
        if (s->seg_count == SEG_MAX || !out_reserve(s, total)) {
                s->overruns++;
                return;
        }
        from = s->out_tail;
        if (boot)
                add_boot_text(s);
        if (s->garbage)
                add_garbage(s);
        out_append(s, buf, len);
        if (s->corrupt > 0)
                corrupt_bytes(s, from);

        /* Spec of --wire-baud: no earlier than len*10/B after the previous byte (8N1). */
        start = now;
        if (s->genkey_until_ns > start)
                start = s->genkey_until_ns;
        if (s->tx_free_ns > start)
                start = s->tx_free_ns;
        at = start;
        if (sim->opt.wire_baud)
                at += (uint64_t)total * 10u * 1000000000u / sim->opt.wire_baud;
        s->tx_free_ns = at;
        s->seg[(s->seg_first + s->seg_count) % SEG_MAX] = (struct segment){ .len = total, .at_ns = at };
        s->seg_count++;
}

static const struct spb_ops board_ops = {
        .identify = op_identify,
        .get_csr = op_get_csr,
        .store_certs = op_store_certs,
        .store_config = op_store_config,
        .prove = op_prove,
        .lock = op_lock,
        .result = op_result,
        .write = op_write,
};

/* --- pty links ------------------------------------------------------------- */

static void link_closed(uv_handle_t *h) {
        free(h->data);
}

static void link_free(struct link *l) {
        if (!l)
                return;
        l->slot = NULL;
        uv_poll_stop(&l->poll);
        /* Master first: that is what the station sees as the hangup. */
        if (l->master >= 0)
                close(l->master);
        if (l->slave >= 0)
                close(l->slave);
        l->master = l->slave = -EBADF;
        uv_close((uv_handle_t *)&l->poll, link_closed);
}

static int open_pty(int *ret_master, int *ret_slave, char *pts, size_t pts_len) {
        _cleanup_close_ int m = -EBADF, sl = -EBADF;
        struct termios t;

        m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (m < 0)
                return -errno;
        if (grantpt(m) < 0 || unlockpt(m) < 0)
                return -errno;
        if (ptsname_r(m, pts, pts_len) != 0)
                return -errno;
        /*
         * We keep our own slave fd open for the pty's lifetime: without it, the
         * station's close() of the slave would make the master read EIO and
         * poll HUP between two sessions. The master close is the one hangup.
         */
        sl = open(pts, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (sl < 0)
                return -errno;
        if (tcgetattr(sl, &t) < 0)
                return -errno;
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        if (tcsetattr(sl, TCSANOW, &t) < 0)
                return -errno;
        *ret_master = TAKE_FD(m);
        *ret_slave = TAKE_FD(sl);
        return 0;
}

static int point_symlink(const char *target, const char *path) {
        char tmp[PATH_MAX];
        const char *slash = strrchr(path, '/');

        /* Same directory, hidden temp name: rename() makes the switch atomic. */
        if ((size_t)snprintf(tmp, sizeof(tmp), "%.*s.%s.tmp", slash ? (int)(slash - path + 1) : 0, path,
                             slash ? slash + 1 : path) >= sizeof(tmp))
                return -ENAMETOOLONG;
        (void)unlink(tmp);
        if (symlink(target, tmp) < 0)
                return -errno;
        if (rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

/* --- slot I/O --------------------------------------------------------------- */

static void link_poll_cb(uv_poll_t *h, int status, int events);

static void update_poll(struct slot *s) {
        int ev = 0;

        if (!s->link)
                return;
        /* A board about to hang up (drop fault, end of a cycle) takes no more requests. */
        if (s->in_len == 0 && s->after == AFTER_NONE)
                ev |= UV_READABLE;
        if (s->want_write)
                ev |= UV_WRITABLE;
        if (ev)
                uv_poll_start(&s->link->poll, ev, link_poll_cb);
        else
                uv_poll_stop(&s->link->poll);
}

static void feed_board(struct slot *s, const uint8_t *buf, size_t len) {
        spb_feed(&s->spb, buf, len);
        if (s->board.dirty) {
                int r = board_save(&s->board);
                if (r < 0)
                        fprintf(stderr, "%s: saving state to %s failed: %s\n", s->name, s->board.state_path,
                                strerror(-r));
        }
        slot_flush(s);
}

static uint64_t ms_until(uint64_t at_ns, uint64_t now_ns) {
        return at_ns <= now_ns ? 0 : (at_ns - now_ns + 999999u) / 1000000u;
}

static void rx_timer_cb(uv_timer_t *t) {
        struct slot *s = t->data;
        uint8_t chunk[IN_CHUNK];
        size_t len = s->in_len;

        memcpy(chunk, s->in, len);
        s->in_len = 0;
        update_poll(s);
        feed_board(s, chunk, len);
}

static void on_readable(struct slot *s) {
        struct sim *sim = s->sim;
        uint8_t buf[IN_CHUNK];

        for (int i = 0; i < READS_PER_WAKEUP && s->link && s->in_len == 0 && s->after == AFTER_NONE; i++) {
                ssize_t n = read(s->link->master, buf, sizeof(buf));
                if (n <= 0)
                        return;         /* EAGAIN, or EIO: nothing to do until the next event */
                if (sim->opt.wire_baud) {
                        uint64_t now = uv_hrtime(), at = now > s->rx_free_ns ? now : s->rx_free_ns;

                        at += (uint64_t)n * 10u * 1000000000u / sim->opt.wire_baud;
                        s->rx_free_ns = at;
                        memcpy(s->in, buf, (size_t)n);
                        s->in_len = (size_t)n;
                        update_poll(s);
                        uv_timer_start(&s->rx_timer, rx_timer_cb, ms_until(at, now), 0);
                        return;
                }
                feed_board(s, buf, (size_t)n);
        }
}

static void link_poll_cb(uv_poll_t *h, int status, int events) {
        struct link *l = h->data;
        struct slot *s = l->slot;

        if (!s)
                return;
        if (status < 0) {
                fprintf(stderr, "%s: poll: %s\n", s->name, uv_strerror(status));
                uv_poll_stop(h);
                return;
        }
        if (events & UV_WRITABLE) {
                s->want_write = false;
                slot_flush(s);
        }
        if ((events & UV_READABLE) && s->link == l)
                on_readable(s);
}

static void tx_timer_cb(uv_timer_t *t) {
        slot_flush(t->data);
}

static void after_flush(struct slot *s);

static void drain_timer_cb(uv_timer_t *t) {
        struct slot *s = t->data;
        struct pollfd p = { .fd = s->link ? s->link->slave : -1, .events = POLLIN };
        bool queued;

        /*
         * The hangup discards what the station has not read yet, so wait until
         * the slave has no input left. poll() on our own slave fd is the check:
         * n_tty_poll() first flushes the pty's flip buffer into the line
         * discipline (FIONREAD would miss bytes still in the flip buffer).
         */
        queued = p.fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
        s->drain_polls++;
        s->drain_zero = !queued ? s->drain_zero + 1 : 0;
        if (s->drain_zero < 2 && s->drain_polls * DRAIN_POLL_MS < DRAIN_TIMEOUT_MS)
                return;
        uv_timer_stop(t);
        after_flush(s);
}

static void slot_flush(struct slot *s) {
        uint64_t now = uv_hrtime();

        /* Release the segments whose time has come. */
        while (s->seg_count > 0 && s->seg[s->seg_first].at_ns <= now) {
                s->out_ready += s->seg[s->seg_first].len;
                s->seg_first = (s->seg_first + 1) % SEG_MAX;
                s->seg_count--;
        }
        while (s->out_ready > 0 && s->link && !s->want_write) {
                ssize_t n = write(s->link->master, s->out + s->out_head, s->out_ready);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                s->want_write = true;
                        else {
                                /* Nobody can receive these bytes: like a UART with no cable. */
                                s->out_head += s->out_ready;
                                s->out_ready = 0;
                        }
                        break;
                }
                s->out_head += (size_t)n;
                s->out_ready -= (size_t)n;
        }
        if (!s->link) {
                /* Unplugged: the bytes go nowhere. */
                s->out_head += s->out_ready;
                s->out_ready = 0;
        }
        if (s->out_head == s->out_tail && s->seg_count == 0)
                s->out_head = s->out_tail = 0;
        if (s->seg_count > 0)
                uv_timer_start(&s->tx_timer, tx_timer_cb, ms_until(s->seg[s->seg_first].at_ns, now), 0);
        update_poll(s);

        if (s->after != AFTER_NONE && s->out_tail == 0 && s->seg_count == 0 &&
            !uv_is_active((uv_handle_t *)&s->aux_timer)) {
                s->drain_polls = s->drain_zero = 0;
                uv_timer_start(&s->aux_timer, drain_timer_cb, DRAIN_POLL_MS, DRAIN_POLL_MS);
        }
}

static void out_clear(struct slot *s) {
        s->out_head = s->out_tail = s->out_ready = 0;
        s->seg_first = s->seg_count = 0;
        s->want_write = false;
        s->in_len = 0;
        s->tx_free_ns = s->rx_free_ns = s->genkey_until_ns = 0;
        uv_timer_stop(&s->tx_timer);
        uv_timer_stop(&s->rx_timer);
}

/* --- identities ------------------------------------------------------------- */

static int new_identity(struct slot *s, uint32_t gen, bool try_load) {
        struct sim *sim = s->sim;
        const struct fault_spec *cf;
        uint8_t serial[SEED_SERIAL_LEN];
        int r;

        board_deinit(&s->board);
        if (try_load && s->state_path) {
                r = board_init(&s->board, &sim->seed, s->idx, gen, NULL, s->state_path);
                if (r < 0)
                        return r;
                r = board_load(&s->board);
                if (r == 0)
                        goto ready;
                if (r != -ENOENT)
                        fprintf(stderr, "%s: state in %s unusable (%s), starting a fresh board\n", s->name,
                                s->state_path, strerror(-r));
                board_deinit(&s->board);
        }
        cf = clone_fault(sim, s->idx, gen);
        if (cf)
                clone_serial(sim, cf->arg, serial);
        r = board_init(&s->board, &sim->seed, s->idx, gen, cf ? serial : NULL, s->state_path);
        if (r < 0)
                return r;
        if (s->state_path) {
                board_wipe_state(s->state_path);
                r = board_save(&s->board);
                if (r < 0)
                        fprintf(stderr, "%s: saving state failed: %s\n", s->name, strerror(-r));
        }
ready:
        sim->identities++;
        apply_faults(s);
        s->result_seen = false;
        s->after = AFTER_NONE;
        /* A small board really has the small buffer: a larger frame is discarded, as on the device. */
        if (spb_init(&s->spb, &board_ops, s, s->rx, s->small_frame ? SIM_SMALL_FRAME : sizeof(s->rx), s->tx,
                     sizeof(s->tx), s->work,
                     sizeof(s->work)) != SPB_OK)
                return -EINVAL;
        return 0;
}

/* --- plug / unplug ---------------------------------------------------------- */

static int slot_plug(struct slot *s) {
        struct link *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->master = l->slave = -EBADF;
        r = open_pty(&l->master, &l->slave, l->pts, sizeof(l->pts));
        if (r < 0) {
                free(l);
                return r;
        }
        r = uv_poll_init(s->sim->loop, &l->poll, l->master);
        if (r < 0) {
                close(l->master);
                close(l->slave);
                free(l);
                return r;
        }
        l->poll.data = l;
        l->slot = s;
        r = point_symlink(l->pts, s->link_path);
        if (r < 0) {
                link_free(l);
                return r;
        }
        s->link = l;
        out_clear(s);
        spb_reset(&s->spb);
        event("plug %s %s serial=%s", s->name, l->pts, s->board.serial_hex);
        /*
         * A replug while a drop was pending is that drop. A pending end of
         * cycle (RESULT answered) still happens: slot_flush() starts it.
         */
        if (s->after == AFTER_DROP)
                s->after = AFTER_NONE;
        update_poll(s);
        if (s->after != AFTER_NONE)
                slot_flush(s);
        return 0;
}

/*
 * Closes the slot's pty. The link goes first, every time: a link naming a
 * closed /dev/pts/N is a trap, because the kernel frees N as soon as the
 * station's fd on it is closed and hands it to the next new pty, which may
 * well be another process's (a second simulator on the machine, a test): a
 * station opening the link then talks to that process's board. Without the
 * link, an open() in between fails with ENOENT until slot_plug() makes the
 * new one.
 */
static void slot_unplug(struct slot *s, const char *reason) {
        if (!s->link)
                return;
        (void)unlink(s->link_path);
        link_free(TAKE_PTR(s->link));
        out_clear(s);
        uv_timer_stop(&s->aux_timer);
        event("unplug %s reason=%s", s->name, reason);
}

static void check_done(struct sim *sim) {
        if (sim->done_printed || (sim->opt.cycles == 0 && sim->opt.total == 0))
                return;
        for (uint32_t i = 0; i < sim->next_idx; i++)
                if (sim->slots[i] && !sim->slots[i]->finished)
                        return;
        sim->done_printed = true;
        event("done boards=%" PRIu64 " provisioned=%" PRIu64 " already=%" PRIu64 " failed=%" PRIu64
              " dropped=%" PRIu64 " elapsed_ms=%" PRIu64 " cpu_ms=%" PRIu64,
              sim->results + sim->dropped, sim->provisioned, sim->already, sim->failed, sim->dropped,
              (uv_hrtime() - sim->start_ns) / 1000000u, cpu_ms());
        if (sim->opt.exit_when_done)
                sim_stop(sim, "done");
}

static int slot_swap(struct slot *s, const char *reason) {
        int r;

        slot_unplug(s, reason);        /* the link goes before the pty */
        r = new_identity(s, s->board.gen + 1, false);
        if (r < 0)
                return r;
        return slot_plug(s);
}

/*
 * Runs once the last answer has been read by the station. A drop hangs up
 * and leaves the slot empty, as a board falling off the bus would (a
 * "replug"/"swap" brings it back); with --cycles a dropped board ends its
 * cycle. The end of a cycle swaps in a fresh board, or finishes the slot.
 */
static void after_flush(struct slot *s) {
        struct sim *sim = s->sim;
        enum after_flush what = s->after;
        bool dropped = what == AFTER_DROP, cycling = sim->opt.cycles > 0 || sim->opt.total > 0;
        int r;

        s->after = AFTER_NONE;
        if (!s->link || what == AFTER_NONE)
                return;
        if (dropped) {
                const char *step = fault_step_to_string(s->drop_pending_type);

                event("fault %s drop after=%s", s->name, step ? step : "?");
                if (!cycling || s->finished) {
                        slot_unplug(s, "drop");
                        return;
                }
                if (!s->result_seen) {
                        s->boards_done++;
                        sim->dropped++;
                }
        } else if (s->finished)
                return;
        if ((sim->opt.cycles == 0 || s->boards_done < sim->opt.cycles) &&
            (sim->opt.total == 0 || sim->identities < sim->opt.total)) {
                r = slot_swap(s, dropped ? "drop" : "cycle");
                if (r < 0)
                        event("error %s swap failed: %s", s->name, strerror(-r));
                return;
        }
        if (dropped)
                slot_unplug(s, "drop");
        s->finished = true;
        check_done(sim);
}

/* --- slots ------------------------------------------------------------------ */

static void slot_handle_closed(uv_handle_t *h) {
        struct slot *s = h->data;

        if (--s->handles > 0)
                return;
        board_deinit(&s->board);
        free(s->link_path);
        free(s->state_path);
        free(s);
}

static void slot_free(struct slot *s) {
        if (s->link)
                link_free(TAKE_PTR(s->link));
        uv_close((uv_handle_t *)&s->tx_timer, slot_handle_closed);
        uv_close((uv_handle_t *)&s->rx_timer, slot_handle_closed);
        uv_close((uv_handle_t *)&s->aux_timer, slot_handle_closed);
}

static int slot_new(struct sim *sim, uint32_t idx, struct slot **ret) {
        struct slot *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->sim = sim;
        s->idx = idx;
        snprintf(s->name, sizeof(s->name), "board-%03u", idx);
        if (asprintf(&s->link_path, "%s/%s", sim->opt.dir, s->name) < 0) {
                free(s);
                return -ENOMEM;
        }
        if (sim->opt.state_dir && asprintf(&s->state_path, "%s/%s", sim->opt.state_dir, s->name) < 0) {
                free(s->link_path);
                free(s);
                return -ENOMEM;
        }
        uv_timer_init(sim->loop, &s->tx_timer);
        uv_timer_init(sim->loop, &s->rx_timer);
        uv_timer_init(sim->loop, &s->aux_timer);
        s->tx_timer.data = s->rx_timer.data = s->aux_timer.data = s;
        s->handles = 3;

        r = new_identity(s, 0, true);
        if (r < 0)
                goto fail;
        r = slot_plug(s);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        slot_free(s);
        return r;
}

static int sim_add(struct sim *sim, uint32_t n) {
        for (uint32_t i = 0; i < n; i++) {
                struct slot *s;
                int r;

                if (sim->next_idx >= SIM_MAX_BOARDS)
                        return -ENOSPC;
                r = slot_new(sim, sim->next_idx, &s);
                if (r < 0)
                        return r;
                sim->slots[sim->next_idx++] = s;
                sim->live++;
        }
        return 0;
}

static void sim_remove(struct sim *sim, uint32_t idx) {
        struct slot *s = sim->slots[idx];

        sim->slots[idx] = NULL;
        sim->live--;
        if (s->link)
                slot_unplug(s, "remove");
        else {
                (void)unlink(s->link_path);
                event("unplug %s reason=remove", s->name);
        }
        slot_free(s);
        check_done(sim);
}

/* --- control FIFO ----------------------------------------------------------- */

static struct slot *slot_at(struct sim *sim, uint32_t idx) {
        return idx < SIM_MAX_BOARDS ? sim->slots[idx] : NULL;
}

static void control_line(struct sim *sim, const char *line, size_t len) {
        struct control_req req;
        struct slot *s = NULL;
        int r;

        if (len == 0)
                return;
        r = control_parse(line, len, &req);
        if (r < 0) {
                event("error control %s", r == -ERANGE ? "range" : "syntax");
                return;
        }
        if (req.cmd == CONTROL_REMOVE || req.cmd == CONTROL_REPLUG || req.cmd == CONTROL_SWAP) {
                s = slot_at(sim, req.arg);
                if (!s) {
                        event("error control no-such-board %u", req.arg);
                        return;
                }
        }
        switch (req.cmd) {
        case CONTROL_ADD:
                r = sim_add(sim, req.arg);
                if (r < 0)
                        event("error control add: %s", strerror(-r));
                break;
        case CONTROL_REMOVE:
                sim_remove(sim, req.arg);
                break;
        case CONTROL_REPLUG:
                slot_unplug(s, "replug");   /* the link goes before the pty */
                r = slot_plug(s);
                if (r < 0)
                        event("error %s plug failed: %s", s->name, strerror(-r));
                break;
        case CONTROL_SWAP:
                r = slot_swap(s, "swap");
                if (r < 0)
                        event("error %s swap failed: %s", s->name, strerror(-r));
                break;
        case CONTROL_STATUS: {
                uint32_t plugged = 0;
                for (uint32_t i = 0; i < sim->next_idx; i++)
                        if (sim->slots[i] && sim->slots[i]->link)
                                plugged++;
                event("status slots=%u plugged=%u identities=%" PRIu64 " results=%" PRIu64, sim->live, plugged,
                      sim->identities, sim->results);
                break;
        }
        case CONTROL_QUIT:
                sim_stop(sim, "quit");
                break;
        }
}

static void control_cb(uv_poll_t *h, int status, int events) {
        struct sim *sim = h->data;
        char buf[512];

        if (status < 0 || !(events & UV_READABLE))
                return;
        for (int i = 0; i < READS_PER_WAKEUP && !sim->stopping; i++) {
                ssize_t n = read(sim->control_fd, buf, sizeof(buf));
                if (n <= 0)
                        return;
                for (ssize_t k = 0; k < n && !sim->stopping; k++) {
                        char c = buf[k];
                        if (c == '\n') {
                                if (!sim->ctl_discard)
                                        control_line(sim, sim->ctl, sim->ctl_len);
                                sim->ctl_len = 0;
                                sim->ctl_discard = false;
                        } else if (sim->ctl_discard)
                                continue;
                        else if (sim->ctl_len >= CONTROL_LINE_MAX) {
                                event("error control line-too-long");
                                sim->ctl_discard = true;
                        } else
                                sim->ctl[sim->ctl_len++] = c;
                }
        }
}

static int control_open(struct sim *sim) {
        int r;

        if (asprintf(&sim->control_path, "%s/control", sim->opt.dir) < 0)
                return -ENOMEM;
        (void)unlink(sim->control_path);
        if (mkfifo(sim->control_path, 0600) < 0)
                return -errno;
        /* O_RDWR: we hold a writer ourselves, so a client closing never gives EOF. */
        sim->control_fd = open(sim->control_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (sim->control_fd < 0)
                return -errno;
        r = uv_poll_init(sim->loop, &sim->control_poll, sim->control_fd);
        if (r < 0)
                return r;
        sim->control_open = true;
        sim->control_poll.data = sim;
        return uv_poll_start(&sim->control_poll, UV_READABLE, control_cb);
}

/* --- start and stop --------------------------------------------------------- */

static void sim_stop(struct sim *sim, const char *reason) {
        if (sim->stopping)
                return;
        sim->stopping = true;
        sim->exit_reason = reason;
        for (uint32_t i = 0; i < sim->next_idx; i++) {
                struct slot *s = sim->slots[i];
                if (!s)
                        continue;
                (void)unlink(s->link_path);
                sim->slots[i] = NULL;
                slot_free(s);
        }
        if (sim->control_path)
                (void)unlink(sim->control_path);
        if (sim->control_open) {
                uv_close((uv_handle_t *)&sim->control_poll, NULL);
                close(sim->control_fd);
                sim->control_open = false;
        }
        uv_close((uv_handle_t *)&sim->sig_term, NULL);
        uv_close((uv_handle_t *)&sim->sig_int, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
        sim_stop(h->data, signum == SIGTERM ? "sigterm" : "sigint");
}

static void raise_fd_limit(uint32_t boards) {
        struct rlimit rl;
        rlim_t want = (rlim_t)boards * 2 + 64;

        /* Two fds per board (master + our slave), plus the loop's own. */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
                return;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void) {
        printf("Usage: provd-boardsim --count N --dir DIR [options]\n"
               "Simulates N provisioning targets on pseudo-terminals: DIR/board-000 ... -> /dev/pts/N.\n\n"
               "  --count N            boards at start (default 1, max %u)\n"
               "  --dir DIR            symlinks and the control FIFO DIR/control\n"
               "  --state-dir D        keep each board's storage in D/board-XXX/ (loaded at start)\n"
               "  --seed S             deterministic serials, keys and fault choices\n"
               "  --wire-baud B        emulate an 8N1 serial line at B baud (both directions)\n"
               "  --genkey-ms M        key generation delays the CSR answer by M ms\n"
               "  --fault KIND[:ARG][@BOARDS]   repeatable; KIND: corrupt:RATE drop:STEP badsig cn ca\n"
               "                       clone:IDX silent oversize garbage[:BYTES] badproof smallframe\n"
               "                       boottext[:BYTES] nocerthash vendorerr resultbad:type|version|error\n"
               "                       locked pubkeymismatch compressed; BOARDS: 3 | 0-7,12 | 0.1\n"
               "  --cycles K           K boards per slot: after each RESULT, swap in a fresh board\n"
               "  --total T            at most T boards in all (with or without --cycles)\n"
               "  --exit-when-done     exit 0 after the \"done\" line\n"
               "  --verbose            one \"tx\" line per response\n"
               "Control FIFO lines: add [N] | remove IDX | replug IDX | swap IDX | status | quit\n"
               "Events (stdout, one per line): see README.md.\n",
               SIM_MAX_BOARDS);
}

int main(int argc, char **argv) {
        static struct sim sim;
        char err[256];
        struct stat st;
        int r;

        r = sim_options_parse(argc, argv, &sim.opt, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "provd-boardsim: %s (try --help)\n", err);
                return 2;
        }
        if (sim.opt.help) {
                usage();
                return 0;
        }
        if (sim.opt.version) {
                printf("provd-boardsim %s\n", PROVD_VERSION);
                return 0;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_IGN);
        sim.control_fd = -EBADF;
        sim.start_ns = uv_hrtime();

        if (stat(sim.opt.dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                fprintf(stderr, "provd-boardsim: --dir %s: not a directory\n", sim.opt.dir);
                return 1;
        }
        if (sim.opt.state_dir && mkdir(sim.opt.state_dir, 0700) < 0 && errno != EEXIST) {
                fprintf(stderr, "provd-boardsim: --state-dir %s: %m\n", sim.opt.state_dir);
                return 1;
        }
        if (sim.opt.seed)
                seed_from_string(&sim.seed, sim.opt.seed);
        else if (seed_random(&sim.seed) < 0) {
                fprintf(stderr, "provd-boardsim: no randomness\n");
                return 1;
        }
        if (board_crypto_init() < 0) {
                fprintf(stderr, "provd-boardsim: OpenSSL P-256 setup failed\n");
                return 1;
        }
        r = sp_parser_new(&sim.inspect, &(struct sp_limits){ .max_frame = 2 * MAX_FRAME });
        if (r < 0) {
                fprintf(stderr, "provd-boardsim: %s\n", strerror(-r));
                return 1;
        }
        sim.slots = calloc(SIM_MAX_BOARDS, sizeof(*sim.slots));
        if (!sim.slots)
                return 1;
        raise_fd_limit(SIM_MAX_BOARDS);

        sim.loop = uv_default_loop();
        uv_signal_init(sim.loop, &sim.sig_term);
        uv_signal_init(sim.loop, &sim.sig_int);
        sim.sig_term.data = sim.sig_int.data = &sim;
        uv_signal_start(&sim.sig_term, signal_cb, SIGTERM);
        uv_signal_start(&sim.sig_int, signal_cb, SIGINT);

        r = control_open(&sim);
        if (r < 0) {
                fprintf(stderr, "provd-boardsim: control FIFO in %s: %s\n", sim.opt.dir, strerror(-r));
                sim_stop(&sim, "error");
                uv_run(sim.loop, UV_RUN_DEFAULT);
                return 1;
        }
        r = sim_add(&sim, sim.opt.count);
        if (r < 0) {
                fprintf(stderr, "provd-boardsim: creating boards: %s\n", strerror(-r));
                sim_stop(&sim, "error");
                uv_run(sim.loop, UV_RUN_DEFAULT);
                return 1;
        }
        event("ready %u", sim.live);
        check_done(&sim);

        uv_run(sim.loop, UV_RUN_DEFAULT);

        event("exit reason=%s boards=%" PRIu64 " results=%" PRIu64 " cpu_ms=%" PRIu64,
              sim.exit_reason ? sim.exit_reason : "?", sim.identities, sim.results, cpu_ms());
        uv_loop_close(sim.loop);
        sp_parser_free(sim.inspect);
        free(sim.slots);
        free(sim.control_path);
        board_crypto_deinit();
        return 0;
}
