/* SPDX-License-Identifier: MIT */
/* provd-boardsim: command line, fault specifications and control-FIFO commands (pure parsing, no I/O). */
#ifndef BOARDSIM_ARGS_H
#define BOARDSIM_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_BOARDS          4096u   /* slots over the whole run (each: 2 fds, ~60 KiB) */
#define SIM_MAX_FAULTS          16u     /* --fault options */
#define FAULT_MAX_RANGES        16u     /* index ranges in one @BOARDS list */
#define SIM_SMALL_FRAME         512u    /* the smallframe fault's max frame: a CSR fits, PUT_CERT does not */
#define FAULT_GARBAGE_DEFAULT   5000u   /* flood bytes before each response */
#define FAULT_GARBAGE_MAX       12000u
#define FAULT_BOOTTEXT_DEFAULT  5000u   /* a chatty bootloader */
#define FAULT_BOOTTEXT_MAX      24576u  /* past SP_BOOT_TEXT_MAX (16384): line noise for the station */

enum resultbad_kind {
        RESULTBAD_TYPE,
        RESULTBAD_VERSION,
        RESULTBAD_ERROR,
};
#define CONTROL_LINE_MAX        128u    /* longer control lines are rejected */

enum fault_kind {
        FAULT_CORRUPT,          /* corrupt:RATE  flip bytes board->station with probability RATE */
        FAULT_DROP,             /* drop:STEP     hang up right after answering STEP */
        FAULT_BADSIG,           /* CSR signature invalid */
        FAULT_CN,               /* CSR subject CN is not the board's serial */
        FAULT_CA,               /* CSR requests basicConstraints CA:TRUE */
        FAULT_CLONE,            /* clone:IDX     serial of board IDX, own key */
        FAULT_SILENT,           /* never answers */
        FAULT_OVERSIZE,         /* GET_CSR answered with a frame over 4096 decoded bytes */
        FAULT_GARBAGE,          /* garbage[:BYTES] random flood before each response */
        FAULT_BADPROOF,         /* PROOF signature invalid (the key or stored certificate is not what it claims) */
        FAULT_SMALLFRAME,       /* a board with a SIM_SMALL_FRAME-byte receive buffer, announced in IDENT */
        FAULT_BOOTTEXT,         /* boottext[:BYTES] ROM text (no 0x00) before the first response */
        FAULT_NOCERTHASH,       /* CERT_OK without CERT_HASH (allowed: PROTOCOL.md §6.3) */
        FAULT_VENDORERR,        /* GET_CSR answered with the vendor error 0x8001 and an ERROR_TEXT */
        FAULT_RESULTBAD,        /* resultbad:type|version|error  RESULT answered with PONG, version 2 or ERROR */
        FAULT_LOCKED,           /* the board has a key and is locked (provisioned elsewhere) */
        FAULT_PUBKEYMISMATCH,   /* the CSR response's PUBKEY is not the CSR's key */
        FAULT_COMPRESSED,       /* the board advertises CAPS COMPRESSED_CERT (and keeps the 72-byte form) */
        _FAULT_KIND_MAX,
};

struct fault_range {
        uint32_t first, last;   /* inclusive */
};

/*
 * Which boards a fault applies to:
 *   no "@"        every board;
 *   "@0-7,12"     the slots with these indices, every generation of board on them;
 *   "@0.25"       a fraction: each board identity (slot, generation) is picked with
 *                 that probability by a hash of the seed, so a rerun with the same
 *                 --seed picks the same boards. A number with a '.' is a fraction.
 */
struct fault_spec {
        enum fault_kind kind;
        double rate;            /* FAULT_CORRUPT: 0 < rate <= 1 */
        uint8_t step;           /* FAULT_DROP: enum sp_msg_type of the request */
        uint32_t arg;           /* FAULT_CLONE: board index; FAULT_GARBAGE, FAULT_BOOTTEXT: bytes;
                                 * FAULT_RESULTBAD: enum resultbad_kind */
        bool all;
        bool is_fraction;
        double fraction;        /* 0..1 */
        size_t n_ranges;
        struct fault_range ranges[FAULT_MAX_RANGES];
};

struct sim_options {
        uint32_t count;                 /* --count N: boards at start (0..SIM_MAX_BOARDS) */
        const char *dir;                /* --dir DIR: symlinks and control FIFO (borrowed from argv) */
        const char *state_dir;          /* --state-dir D or NULL */
        const char *seed;               /* --seed S or NULL (random identities) */
        uint32_t wire_baud;             /* --wire-baud B, 0 = infinitely fast */
        uint32_t genkey_ms;             /* --genkey-ms M */
        uint32_t cycles;                /* --cycles K: boards per slot, 0 = no automatic swaps */
        uint64_t total;                 /* --total T: stop swapping after T boards in all, 0 = no cap */
        bool exit_when_done;            /* --exit-when-done */
        bool verbose;                   /* --verbose: a "req" line per request */
        bool help, version;
        size_t n_faults;
        struct fault_spec faults[SIM_MAX_FAULTS];
};

enum control_cmd {
        CONTROL_ADD,            /* add [N] */
        CONTROL_REMOVE,         /* remove IDX */
        CONTROL_REPLUG,         /* replug IDX */
        CONTROL_SWAP,           /* swap IDX */
        CONTROL_STATUS,         /* status */
        CONTROL_QUIT,           /* quit */
};

struct control_req {
        enum control_cmd cmd;
        uint32_t arg;
};

/**
 * Parses @s ("KIND[:ARG][@BOARDS]") into @ret. Returns 0, -EINVAL for a
 * malformed spec, -ERANGE for a value out of range. @ret written only on success.
 */
int fault_spec_parse(const char *s, struct fault_spec *ret);
/** Does the index list (not a fraction) of @f name slot @idx? Fractions and "all" answer by their own rule. */
bool fault_spec_has_index(const struct fault_spec *f, uint32_t idx);
const char *fault_kind_to_string(enum fault_kind k);
/** The drop:STEP name of request type @type ("hello", "csr", …), or NULL when no step has that type. */
const char *fault_step_to_string(uint8_t type);

/**
 * Parses the command line (argv[0] skipped) into @ret. On error returns
 * -EINVAL/-ERANGE and writes a message to @err (always NUL-terminated).
 * Keeps pointers into @argv.
 */
int sim_options_parse(int argc, char *const *argv, struct sim_options *ret, char *err, size_t errlen);

/** Parses one control line (no newline; @len ≤ CONTROL_LINE_MAX). 0, -EINVAL or -ERANGE. */
int control_parse(const char *line, size_t len, struct control_req *ret);

/* Strict decimal parsers, exposed for tests: digits only, no sign, no blanks. */
int parse_u32(const char *s, size_t len, uint32_t max, uint32_t *ret);
/** "D+[.D*]" or ".D+" in [0, max]; at most 15 digits. */
int parse_decimal(const char *s, size_t len, double max, double *ret);

#endif
