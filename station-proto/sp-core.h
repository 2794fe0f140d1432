/* SPDX-License-Identifier: MIT */
/* Station protocol core shared by the host and board libraries: freestanding C99, no heap. */
#ifndef STATION_PROTO_SP_CORE_H
#define STATION_PROTO_SP_CORE_H

/*
 * Everything here compiles with `cc -std=c99 -ffreestanding` and includes only
 * <stdint.h>, <stddef.h>, <stdbool.h> and <string.h>. The host library maps
 * the spc_status values to -errno once, at its edge (host-internal.h); the
 * board library maps them to enum sp_error.
 *
 * Glossary:
 *   frame     decoded bytes: header(7) || payload || CRC-32(4), PROTOCOL.md §3
 *   wire      0x00 || COBS(frame) || 0x00, PROTOCOL.md §2
 *   deframer  the byte-at-a-time COBS decoder both libraries feed (struct spc_rx)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station-proto/sp-wire.h"

enum spc_status {
        SPC_OK = 0,
        SPC_E_BADMSG = -1,      /* malformed: COBS, short, length field, TLV */
        SPC_E_CRC = -2,         /* CRC mismatch (a kind of BADMSG, counted apart) */
        SPC_E_MSGSIZE = -3,     /* larger than the configured limit */
        SPC_E_NOBUFS = -4,      /* output buffer too small */
        SPC_E_NOENT = -5,       /* TLV not present */
        SPC_E_INVAL = -6,       /* bad argument */
};

/* --- big-endian helpers --------------------------------------------------- */

static inline uint16_t spc_get_be16(const uint8_t *p) {
        return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t spc_get_be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void spc_put_be16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static inline void spc_put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* --- CRC-32/ISO-HDLC (crc.c) ---------------------------------------------- */

/** zlib semantics: start with 0, chain by passing the previous result. */
uint32_t spc_crc32(uint32_t crc, const void *buf, size_t len);

/* --- SHA-256 (sha256.c) --------------------------------------------------- */

struct spc_sha256 {
        uint32_t h[8];
        uint32_t total;         /* bytes hashed: messages up to 4 GiB - 1 */
        uint8_t block[64];
        size_t fill;
};

void spc_sha256_init(struct spc_sha256 *s);
void spc_sha256_update(struct spc_sha256 *s, const void *data, size_t len);
void spc_sha256_final(struct spc_sha256 *s, uint8_t out[SP_SHA256_LEN]);
void spc_sha256(const void *data, size_t len, uint8_t out[SP_SHA256_LEN]);

/* --- COBS (cobs.c) -------------------------------------------------------- */

/* Encoder that takes its input in pieces, so header, payload and CRC need not
 * be contiguous. Writes the canonical encoding (no trailing 0x01 block after
 * a final 0xFF block), PROTOCOL.md §2. */
struct spc_cobs_enc {
        uint8_t *out;
        size_t cap;
        size_t pos;             /* next free byte */
        size_t code_pos;        /* where the current block's code byte goes */
        uint8_t code;           /* 1 + data bytes in the current block */
        bool open;              /* a block is open (code byte reserved) */
        int error;              /* sticky SPC_E_NOBUFS */
};

void spc_cobs_enc_init(struct spc_cobs_enc *e, uint8_t *out, size_t cap);
void spc_cobs_enc_put(struct spc_cobs_enc *e, const uint8_t *in, size_t len);
/** Closes the last block; returns SPC_OK and the encoded length, or SPC_E_NOBUFS. */
int spc_cobs_enc_finish(struct spc_cobs_enc *e, size_t *ret_len);

/** Worst-case COBS output for @len input bytes (no delimiters). */
static inline size_t spc_cobs_max(size_t len) {
        return len + len / 254u + 1u;
}

/**
 * One-shot decode of @len COBS bytes (no delimiters, no 0x00 inside) into @out.
 * @out may equal @in (decoding never writes ahead of reading). Returns SPC_OK,
 * SPC_E_BADMSG (0x00 inside, or a block running past the end) or SPC_E_NOBUFS.
 */
int spc_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *ret_len);

/* Deframer: decodes the byte stream one frame at a time into a fixed buffer.
 * The states are described at the top of cobs.c. */
enum spc_rx_state {
        SPC_RX_IDLE = 0,        /* after a delimiter: nothing of a frame seen yet */
        SPC_RX_CODE,            /* expecting a COBS code byte */
        SPC_RX_DATA,            /* inside a block: @left data bytes to go */
        SPC_RX_DISCARD,         /* frame over the limit: skipping to the delimiter */
};

enum spc_rx_event {
        SPC_RX_NONE = 0,        /* all input consumed, frame incomplete */
        SPC_RX_FRAME,           /* buf[0..len) holds a COBS-decoded frame (unchecked) */
        SPC_RX_BAD,             /* COBS error: a block cut short by the delimiter */
        SPC_RX_OVERSIZE,        /* decoded frame would exceed cap */
};

struct spc_rx {
        uint8_t *buf;
        size_t cap;
        size_t len;             /* decoded bytes of the current frame */
        size_t wire;            /* encoded bytes of the current frame (for stats) */
        uint8_t state;          /* enum spc_rx_state */
        uint8_t code;           /* code byte of the current block */
        uint8_t left;           /* data bytes left in the current block */
};

void spc_rx_init(struct spc_rx *rx, uint8_t *buf, size_t cap);
void spc_rx_reset(struct spc_rx *rx);
/**
 * Consumes input up to and including the delimiter that ends the next
 * non-empty frame, or all of it. Returns the bytes consumed and sets
 * *@ret_event. After SPC_RX_FRAME the frame stays in buf[0..len) until the
 * next call; rx->wire holds its encoded size in every case.
 */
size_t spc_rx_feed(struct spc_rx *rx, const uint8_t *in, size_t len, int *ret_event);

/* --- frames (frame.c) ----------------------------------------------------- */

struct spc_hdr {
        uint8_t version;
        uint8_t type;
        uint8_t flags;
        uint16_t seq;
        uint16_t len;           /* payload bytes */
};

/**
 * Checks a decoded frame: at least SP_FRAME_OVERHEAD bytes, CRC, and the
 * length field equal to the actual payload size. Returns SPC_OK and the
 * header, SPC_E_CRC, or SPC_E_BADMSG. The payload starts at frame + 7.
 * A frame whose CRC is right but whose length field is wrong still fills
 * @ret (so a board can answer SP_ERR_BAD_FRAME with its seq) and returns
 * SPC_E_BADMSG.
 */
int spc_frame_check(const uint8_t *frame, size_t len, struct spc_hdr *ret);

/** Encoded size bound of a frame with @payload_len payload bytes, delimiters included. */
static inline size_t spc_frame_wire_max(size_t payload_len) {
        return SP_ENCODED_MAX(payload_len + SP_FRAME_OVERHEAD);
}

/**
 * Writes 0x00 || COBS(header || payload || CRC) || 0x00 into @out. hdr->len
 * is the payload size. Returns SPC_OK and the length, or SPC_E_NOBUFS.
 */
int spc_frame_encode(const struct spc_hdr *hdr, const uint8_t *payload,
                     uint8_t *out, size_t cap, size_t *ret_len);

/* --- TLV (tlv.c) ---------------------------------------------------------- */

struct spc_tlv {
        uint8_t tag;
        uint16_t len;
        const uint8_t *value;
};

struct spc_tlv_reader {
        const uint8_t *buf;
        size_t len;
        size_t off;
};

struct spc_tlv_writer {
        uint8_t *buf;
        size_t cap;
        size_t len;
        int error;              /* first error, sticky */
};

void spc_tlv_reader_init(struct spc_tlv_reader *r, const uint8_t *buf, size_t len);
/** 1 and @ret, 0 at the end, SPC_E_BADMSG for a truncated TLV (and again on every later call). */
int spc_tlv_next(struct spc_tlv_reader *r, struct spc_tlv *ret);
/** Every TLV complete? SPC_OK or SPC_E_BADMSG. */
int spc_tlv_validate(const uint8_t *buf, size_t len);
/** First TLV with @tag in a payload that is well formed as a whole: SPC_OK, SPC_E_NOENT, SPC_E_BADMSG. */
int spc_tlv_find(const uint8_t *buf, size_t len, uint8_t tag, struct spc_tlv *ret);

void spc_tlv_writer_init(struct spc_tlv_writer *w, uint8_t *buf, size_t cap);
/** SPC_OK, SPC_E_NOBUFS, SPC_E_MSGSIZE (len > 65535); sticky: later calls return the first error. */
int spc_tlv_put(struct spc_tlv_writer *w, uint8_t tag, const void *value, size_t len);
int spc_tlv_put_u8(struct spc_tlv_writer *w, uint8_t tag, uint8_t v);
int spc_tlv_put_u16(struct spc_tlv_writer *w, uint8_t tag, uint16_t v);
int spc_tlv_put_u32(struct spc_tlv_writer *w, uint8_t tag, uint32_t v);

/* --- field checks shared by both sides (tlv.c) ---------------------------- */

/** Printable ASCII 0x20..0x7E only (MODEL, FW_VERSION, SUBJECT_CN). */
bool spc_is_printable(const uint8_t *s, size_t len);
/** Config key: 1..32 bytes of [A-Za-z0-9_.-]. */
bool spc_is_cfg_key(const uint8_t *s, size_t len);
/** strlen() that stops at @max (C99 has no strnlen). */
size_t spc_strnlen(const char *s, size_t max);

#endif
