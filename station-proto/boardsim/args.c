/* SPDX-License-Identifier: MIT */
/* provd-boardsim: command line, fault specifications and control-FIFO commands (pure parsing, no I/O). */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "station-proto/sp-wire.h"

#include "args.h"

#define SEED_MAX_LEN    256u
#define PATH_ARG_MAX    1024u

static const char *const fault_names[_FAULT_KIND_MAX] = {
        [FAULT_CORRUPT] = "corrupt",
        [FAULT_DROP] = "drop",
        [FAULT_BADSIG] = "badsig",
        [FAULT_CN] = "cn",
        [FAULT_CA] = "ca",
        [FAULT_CLONE] = "clone",
        [FAULT_SILENT] = "silent",
        [FAULT_OVERSIZE] = "oversize",
        [FAULT_GARBAGE] = "garbage",
        [FAULT_BADPROOF] = "badproof",
        [FAULT_SMALLFRAME] = "smallframe",
        [FAULT_BOOTTEXT] = "boottext",
        [FAULT_NOCERTHASH] = "nocerthash",
        [FAULT_VENDORERR] = "vendorerr",
        [FAULT_RESULTBAD] = "resultbad",
        [FAULT_LOCKED] = "locked",
        [FAULT_PUBKEYMISMATCH] = "pubkeymismatch",
        [FAULT_COMPRESSED] = "compressed",
};

static const char *const resultbad_names[] = {
        [RESULTBAD_TYPE] = "type",
        [RESULTBAD_VERSION] = "version",
        [RESULTBAD_ERROR] = "error",
};

static const struct {
        const char *name;
        uint8_t type;
} drop_steps[] = {
        { "hello", SP_MSG_HELLO },
        { "csr", SP_MSG_GET_CSR },
        { "cert", SP_MSG_PUT_CERT },
        { "config", SP_MSG_PUT_CONFIG },
        { "prove", SP_MSG_PROVE },
        { "lock", SP_MSG_LOCK },
        { "result", SP_MSG_RESULT },
};

const char *fault_kind_to_string(enum fault_kind k) {
        if ((unsigned)k >= _FAULT_KIND_MAX)
                return NULL;
        return fault_names[k];
}

const char *fault_step_to_string(uint8_t type) {
        for (size_t i = 0; i < sizeof(drop_steps) / sizeof(drop_steps[0]); i++)
                if (drop_steps[i].type == type)
                        return drop_steps[i].name;
        return NULL;
}

static bool token_is(const char *s, size_t len, const char *word) {
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

int parse_u32(const char *s, size_t len, uint32_t max, uint32_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 10)
                return len == 0 ? -EINVAL : -ERANGE;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v > max)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

int parse_decimal(const char *s, size_t len, double max, double *ret) {
        double v = 0, scale = 1;
        size_t digits = 0;
        bool dot = false;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '.') {
                        if (dot)
                                return -EINVAL;
                        dot = true;
                        continue;
                }
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (++digits > 15)
                        return -ERANGE;
                if (dot) {
                        scale /= 10;
                        v += (s[i] - '0') * scale;
                } else
                        v = v * 10 + (s[i] - '0');
        }
        if (digits == 0)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static bool has_dot(const char *s, size_t len) {
        return memchr(s, '.', len) != NULL;
}

/* "0-7,12" or "0.25" */
static int parse_boards(const char *s, size_t len, struct fault_spec *f) {
        if (len == 0)
                return -EINVAL;
        if (has_dot(s, len)) {
                f->is_fraction = true;
                return parse_decimal(s, len, 1.0, &f->fraction);
        }
        f->n_ranges = 0;
        while (len > 0) {
                const char *comma = memchr(s, ',', len);
                size_t item = comma ? (size_t)(comma - s) : len;
                const char *dash = memchr(s, '-', item);
                struct fault_range r;
                int k;

                if (f->n_ranges >= FAULT_MAX_RANGES)
                        return -ERANGE;
                if (dash) {
                        k = parse_u32(s, (size_t)(dash - s), SIM_MAX_BOARDS - 1, &r.first);
                        if (k < 0)
                                return k;
                        k = parse_u32(dash + 1, item - (size_t)(dash - s) - 1, SIM_MAX_BOARDS - 1, &r.last);
                        if (k < 0)
                                return k;
                        if (r.last < r.first)
                                return -EINVAL;
                } else {
                        k = parse_u32(s, item, SIM_MAX_BOARDS - 1, &r.first);
                        if (k < 0)
                                return k;
                        r.last = r.first;
                }
                f->ranges[f->n_ranges++] = r;
                if (!comma)
                        break;
                s = comma + 1;
                len -= item + 1;
                if (len == 0)
                        return -EINVAL;         /* trailing comma */
        }
        return 0;
}

int fault_spec_parse(const char *s, struct fault_spec *ret) {
        struct fault_spec f = { .all = true };
        const char *at, *colon, *kind_end;
        size_t len, kind_len;
        int k = -EINVAL;

        if (!s || !ret)
                return -EINVAL;
        len = strnlen(s, 256);
        if (len == 0 || len >= 256)
                return -EINVAL;

        at = memchr(s, '@', len);
        kind_end = at ? at : s + len;
        colon = memchr(s, ':', (size_t)(kind_end - s));
        kind_len = (size_t)((colon ? colon : kind_end) - s);

        for (unsigned i = 0; i < _FAULT_KIND_MAX; i++)
                if (token_is(s, kind_len, fault_names[i])) {
                        f.kind = (enum fault_kind)i;
                        k = 0;
                }
        if (k < 0)
                return k;

        const char *arg = colon ? colon + 1 : NULL;
        size_t arg_len = colon ? (size_t)(kind_end - arg) : 0;

        switch (f.kind) {
        case FAULT_CORRUPT:
                if (!arg)
                        return -EINVAL;
                k = parse_decimal(arg, arg_len, 1.0, &f.rate);
                if (k < 0)
                        return k;
                if (f.rate <= 0)
                        return -ERANGE;
                break;
        case FAULT_DROP:
                if (!arg)
                        return -EINVAL;
                k = -EINVAL;
                for (size_t i = 0; i < sizeof(drop_steps) / sizeof(drop_steps[0]); i++)
                        if (token_is(arg, arg_len, drop_steps[i].name)) {
                                f.step = drop_steps[i].type;
                                k = 0;
                        }
                if (k < 0)
                        return k;
                break;
        case FAULT_CLONE:
                if (!arg)
                        return -EINVAL;
                k = parse_u32(arg, arg_len, SIM_MAX_BOARDS - 1, &f.arg);
                if (k < 0)
                        return k;
                break;
        case FAULT_GARBAGE:
                f.arg = FAULT_GARBAGE_DEFAULT;
                if (arg) {
                        k = parse_u32(arg, arg_len, FAULT_GARBAGE_MAX, &f.arg);
                        if (k < 0)
                                return k;
                        if (f.arg == 0)
                                return -ERANGE;
                }
                break;
        case FAULT_BOOTTEXT:
                f.arg = FAULT_BOOTTEXT_DEFAULT;
                if (arg) {
                        k = parse_u32(arg, arg_len, FAULT_BOOTTEXT_MAX, &f.arg);
                        if (k < 0)
                                return k;
                        if (f.arg == 0)
                                return -ERANGE;
                }
                break;
        case FAULT_RESULTBAD:
                if (!arg)
                        return -EINVAL;
                k = -EINVAL;
                for (size_t i = 0; i < sizeof(resultbad_names) / sizeof(resultbad_names[0]); i++)
                        if (token_is(arg, arg_len, resultbad_names[i])) {
                                f.arg = (uint32_t)i;
                                k = 0;
                        }
                if (k < 0)
                        return k;
                break;
        default:
                if (arg)
                        return -EINVAL;         /* these take no argument */
                break;
        }

        if (at) {
                f.all = false;
                k = parse_boards(at + 1, len - (size_t)(at + 1 - s), &f);
                if (k < 0)
                        return k;
        }
        *ret = f;
        return 0;
}

bool fault_spec_has_index(const struct fault_spec *f, uint32_t idx) {
        if (f->all)
                return true;
        if (f->is_fraction)
                return false;
        for (size_t i = 0; i < f->n_ranges; i++)
                if (idx >= f->ranges[i].first && idx <= f->ranges[i].last)
                        return true;
        return false;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

enum opt_id {
        OPT_COUNT, OPT_DIR, OPT_STATE_DIR, OPT_SEED, OPT_WIRE_BAUD, OPT_GENKEY_MS,
        OPT_FAULT, OPT_CYCLES, OPT_TOTAL, OPT_EXIT_WHEN_DONE, OPT_VERBOSE, OPT_HELP, OPT_VERSION,
};

static const struct {
        const char *name;
        enum opt_id id;
        bool has_arg;
} options[] = {
        { "count", OPT_COUNT, true },
        { "dir", OPT_DIR, true },
        { "state-dir", OPT_STATE_DIR, true },
        { "seed", OPT_SEED, true },
        { "wire-baud", OPT_WIRE_BAUD, true },
        { "genkey-ms", OPT_GENKEY_MS, true },
        { "fault", OPT_FAULT, true },
        { "cycles", OPT_CYCLES, true },
        { "total", OPT_TOTAL, true },
        { "exit-when-done", OPT_EXIT_WHEN_DONE, false },
        { "verbose", OPT_VERBOSE, false },
        { "help", OPT_HELP, false },
        { "version", OPT_VERSION, false },
};

static int number_arg(const char *name, const char *v, uint32_t min, uint32_t max, uint32_t *ret,
                      char *err, size_t errlen) {
        uint32_t x;
        int k = parse_u32(v, strnlen(v, 16), max, &x);

        if (k < 0 || x < min)
                return fail(err, errlen, "--%s: expected a number in %u..%u, got '%.32s'", name, min, max, v);
        *ret = x;
        return 0;
}

int sim_options_parse(int argc, char *const *argv, struct sim_options *ret, char *err, size_t errlen) {
        struct sim_options o = { .count = 1 };

        if (errlen > 0)
                err[0] = '\0';
        if (!ret || argc < 0 || (argc > 0 && !argv))
                return -EINVAL;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *value = NULL, *eq;
                size_t name_len;
                int found = -1;

                if (!a)
                        return fail(err, errlen, "null argument");
                if (strcmp(a, "-h") == 0) {
                        o.help = true;
                        continue;
                }
                if (strncmp(a, "--", 2) != 0)
                        return fail(err, errlen, "unexpected argument '%.64s'", a);
                a += 2;
                eq = strchr(a, '=');
                name_len = eq ? (size_t)(eq - a) : strlen(a);
                for (size_t j = 0; j < sizeof(options) / sizeof(options[0]); j++)
                        if (token_is(a, name_len, options[j].name))
                                found = (int)j;
                if (found < 0)
                        return fail(err, errlen, "unknown option '--%.*s'", (int)(name_len > 64 ? 64 : name_len), a);
                if (options[found].has_arg) {
                        if (eq)
                                value = eq + 1;
                        else if (i + 1 < argc && argv[i + 1])
                                value = argv[++i];
                        else
                                return fail(err, errlen, "--%s needs a value", options[found].name);
                } else if (eq)
                        return fail(err, errlen, "--%s takes no value", options[found].name);

                uint32_t u;
                int k;
                switch (options[found].id) {
                case OPT_COUNT:
                        k = number_arg("count", value, 0, SIM_MAX_BOARDS, &o.count, err, errlen);
                        if (k < 0)
                                return k;
                        break;
                case OPT_DIR:
                        if (value[0] == '\0' || strnlen(value, PATH_ARG_MAX) >= PATH_ARG_MAX)
                                return fail(err, errlen, "--dir: empty or too long");
                        o.dir = value;
                        break;
                case OPT_STATE_DIR:
                        if (value[0] == '\0' || strnlen(value, PATH_ARG_MAX) >= PATH_ARG_MAX)
                                return fail(err, errlen, "--state-dir: empty or too long");
                        o.state_dir = value;
                        break;
                case OPT_SEED:
                        if (strnlen(value, SEED_MAX_LEN + 1) > SEED_MAX_LEN)
                                return fail(err, errlen, "--seed: longer than %u bytes", SEED_MAX_LEN);
                        o.seed = value;
                        break;
                case OPT_WIRE_BAUD:
                        k = number_arg("wire-baud", value, 0, 100000000, &o.wire_baud, err, errlen);
                        if (k < 0)
                                return k;
                        if (o.wire_baud != 0 && o.wire_baud < 50)
                                return fail(err, errlen, "--wire-baud: at least 50 (or 0 for no limit)");
                        break;
                case OPT_GENKEY_MS:
                        k = number_arg("genkey-ms", value, 0, 60000, &o.genkey_ms, err, errlen);
                        if (k < 0)
                                return k;
                        break;
                case OPT_FAULT:
                        if (o.n_faults >= SIM_MAX_FAULTS)
                                return fail(err, errlen, "--fault: at most %u", SIM_MAX_FAULTS);
                        k = fault_spec_parse(value, &o.faults[o.n_faults]);
                        if (k < 0)
                                return fail(err, errlen, "--fault: cannot parse '%.64s' (%s)", value,
                                            k == -ERANGE ? "value out of range" : "syntax");
                        o.n_faults++;
                        break;
                case OPT_CYCLES:
                        k = number_arg("cycles", value, 1, 1000000, &o.cycles, err, errlen);
                        if (k < 0)
                                return k;
                        break;
                case OPT_TOTAL:
                        k = number_arg("total", value, 1, 1000000000, &u, err, errlen);
                        if (k < 0)
                                return k;
                        o.total = u;
                        break;
                case OPT_EXIT_WHEN_DONE:
                        o.exit_when_done = true;
                        break;
                case OPT_VERBOSE:
                        o.verbose = true;
                        break;
                case OPT_HELP:
                        o.help = true;
                        break;
                case OPT_VERSION:
                        o.version = true;
                        break;
                }
        }

        if (!o.help && !o.version) {
                if (!o.dir)
                        return fail(err, errlen, "--dir is required");
                if (o.exit_when_done && o.cycles == 0 && o.total == 0)
                        return fail(err, errlen, "--exit-when-done needs --cycles or --total");
                for (size_t i = 0; i < o.n_faults; i++)
                        if (o.faults[i].kind == FAULT_CLONE && o.faults[i].all)
                                return fail(err, errlen, "--fault clone:%u needs @BOARDS", o.faults[i].arg);
        }
        *ret = o;
        return 0;
}

int control_parse(const char *line, size_t len, struct control_req *ret) {
        static const struct {
                const char *name;
                enum control_cmd cmd;
                int arg;                /* 0 none, 1 optional, 2 required */
        } cmds[] = {
                { "add", CONTROL_ADD, 1 },
                { "remove", CONTROL_REMOVE, 2 },
                { "replug", CONTROL_REPLUG, 2 },
                { "swap", CONTROL_SWAP, 2 },
                { "status", CONTROL_STATUS, 0 },
                { "quit", CONTROL_QUIT, 0 },
        };
        const char *word, *arg = NULL;
        size_t word_len, arg_len = 0, i = 0;

        if (!line || !ret || len > CONTROL_LINE_MAX)
                return -EINVAL;
        /* Trim blanks and a CR (echo from some shells adds it). */
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
                len--;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
                i++;
        word = line + i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
                i++;
        word_len = (size_t)(line + i - word);
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
                i++;
        if (i < len) {
                arg = line + i;
                while (i < len && line[i] != ' ' && line[i] != '\t')
                        i++;
                arg_len = (size_t)(line + i - arg);
                if (i < len)
                        return -EINVAL;         /* a third word */
        }

        for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
                struct control_req r = { .cmd = cmds[c].cmd, .arg = 1 };
                int k;

                if (!token_is(word, word_len, cmds[c].name))
                        continue;
                if (cmds[c].arg == 0 && arg)
                        return -EINVAL;
                if (cmds[c].arg == 2 && !arg)
                        return -EINVAL;
                if (arg) {
                        k = parse_u32(arg, arg_len, cmds[c].cmd == CONTROL_ADD ? SIM_MAX_BOARDS : SIM_MAX_BOARDS - 1,
                                      &r.arg);
                        if (k < 0)
                                return k;
                        if (cmds[c].cmd == CONTROL_ADD && r.arg == 0)
                                return -ERANGE;
                }
                *ret = r;
                return 0;
        }
        return -EINVAL;
}
