/* SPDX-License-Identifier: MIT */
/* Station protocol, host side: decoder, encoder, TLV, typed messages, request tracking. */
#ifndef STATION_PROTO_SP_H
#define STATION_PROTO_SP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sp-wire.h"

/* All functions return 0 (or a count) on success and -errno on failure. */

/*
 * Discarded input a station tolerates on a port before the board's first
 * good frame: boot text of its ROM or bootloader, not line noise
 * (PROTOCOL.md §2.3). Compare with sp_parser_stats()->discarded_bytes.
 */
#define SP_BOOT_TEXT_MAX 16384u

struct sp_frame {
        uint8_t version;
        uint8_t type;                   /* enum sp_msg_type */
        uint8_t flags;                  /* enum sp_flags */
        uint16_t seq;
        uint16_t len;                   /* payload bytes */
        const uint8_t *payload;         /* borrowed; valid only during the callback */
};

struct sp_limits {
        size_t max_frame;               /* decoded bytes incl. header and CRC; 0 = default */
};

struct sp_parser_stats {
        uint64_t frames;                /* good frames delivered */
        uint64_t bad_crc;
        uint64_t bad_format;            /* COBS error, short frame, length mismatch */
        uint64_t oversize;
        uint64_t discarded_bytes;
};

struct sp_parser;

/**
 * Called once per delimited frame: @f set and @error 0 for a good frame, or
 * @f NULL and @error -EBADMSG (CRC/format) / -EMSGSIZE (over the limit) for a
 * discarded one. A negative return stops sp_parser_feed() which returns it.
 */
typedef int (*sp_frame_cb)(const struct sp_frame *f, int error, void *userdata);

/** Allocates the parser and its one frame buffer (limits->max_frame bytes). */
int sp_parser_new(struct sp_parser **ret, const struct sp_limits *limits);
struct sp_parser *sp_parser_free(struct sp_parser *p);
/** Forgets a partial frame; the next byte starts a fresh one. */
void sp_parser_reset(struct sp_parser *p);
/**
 * Feeds @len bytes in any chunking. Returns @len, or the negative value a
 * callback returned. Never keeps @buf. Garbage, CRC errors and oversize input
 * are reported through @cb and the parser resynchronises on the next 0x00.
 */
ssize_t sp_parser_feed(struct sp_parser *p, const void *buf, size_t len, sp_frame_cb cb, void *userdata);
const struct sp_parser_stats *sp_parser_stats(const struct sp_parser *p);

/** Upper bound of sp_frame_encode() output for @payload_len payload bytes. */
size_t sp_frame_encoded_max(size_t payload_len);
/**
 * Writes @f as one wire frame: 0x00, COBS(header ‖ payload ‖ CRC), 0x00.
 * Returns bytes written; -EMSGSIZE if the payload exceeds 65535, -ENOBUFS if
 * @cap is too small. f->payload may be NULL when f->len is 0.
 */
ssize_t sp_frame_encode(const struct sp_frame *f, void *out, size_t cap);

/* CRC-32/ISO-HDLC (zlib): init 0, sp_crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t sp_crc32(uint32_t crc, const void *buf, size_t len);

/* --- TLV ----------------------------------------------------------------- */

struct sp_tlv {
        uint8_t tag;
        uint16_t len;
        const uint8_t *value;
};

struct sp_tlv_writer {
        uint8_t *buf;
        size_t cap;
        size_t len;
        int error;                      /* first error, sticky: check once at the end */
};

void sp_tlv_writer_init(struct sp_tlv_writer *w, void *buf, size_t cap);
/** Appends one TLV; -ENOBUFS when it does not fit, -EMSGSIZE for len > 65535. */
int sp_tlv_put(struct sp_tlv_writer *w, uint8_t tag, const void *value, size_t len);
int sp_tlv_put_u8(struct sp_tlv_writer *w, uint8_t tag, uint8_t v);
int sp_tlv_put_u16(struct sp_tlv_writer *w, uint8_t tag, uint16_t v);
int sp_tlv_put_u32(struct sp_tlv_writer *w, uint8_t tag, uint32_t v);
int sp_tlv_put_str(struct sp_tlv_writer *w, uint8_t tag, const char *s);

struct sp_tlv_reader {
        const uint8_t *buf;
        size_t len;
        size_t off;
};

void sp_tlv_reader_init(struct sp_tlv_reader *r, const void *buf, size_t len);
/** Returns 1 and fills @ret, 0 at the end, -EBADMSG for a truncated TLV. */
int sp_tlv_next(struct sp_tlv_reader *r, struct sp_tlv *ret);
/** First TLV with @tag: 0 and @ret, -ENOENT, or -EBADMSG if the payload is malformed. */
int sp_tlv_find(const void *buf, size_t len, uint8_t tag, struct sp_tlv *ret);
/** Whole payload well formed (every TLV complete)? 0 or -EBADMSG. */
int sp_tlv_validate(const void *buf, size_t len);

/* --- typed messages (parse checks lengths and required fields: -EBADMSG) -- */

struct sp_ident {
        uint8_t serial[32];
        size_t serial_len;
        char model[65];                 /* NUL-terminated, printable ASCII checked */
        char fw_version[33];
        uint32_t caps;                  /* enum sp_cap */
        uint8_t proto_version;
        uint16_t max_frame;             /* 0 if not sent */
        bool has_pubkey;
        uint8_t pubkey[SP_PUBKEY_LEN];
        bool locked;
};

struct sp_proof {
        uint8_t signature[SP_SIG_LEN];
        uint8_t cert_hash[SP_SHA256_LEN];
};

struct sp_board_error {
        uint16_t code;                  /* enum sp_error, or an unknown value */
        char text[129];                 /* sanitised to printable ASCII */
};

int sp_ident_parse(const struct sp_frame *f, struct sp_ident *ret);
/** Points @ret_der into f->payload (borrowed). */
int sp_csr_parse(const struct sp_frame *f, const uint8_t **ret_der, size_t *ret_len);
int sp_proof_parse(const struct sp_frame *f, struct sp_proof *ret);
int sp_error_parse(const struct sp_frame *f, struct sp_board_error *ret);
/** CSR response's PUBKEY (65 bytes, 0x04 ‖ X ‖ Y): 0, -ENOENT if absent, -EBADMSG. */
int sp_csr_pubkey(const struct sp_frame *f, uint8_t ret[SP_PUBKEY_LEN]);
/** CERT_OK's CERT_HASH: 0, -ENOENT if the board sent none, -EBADMSG. */
int sp_cert_ok_parse(const struct sp_frame *f, uint8_t ret_hash[SP_SHA256_LEN]);
/* The typed parsers return -EINVAL for a NULL argument or a frame of another type. */
const char *sp_msg_type_to_string(uint8_t type);        /* "HELLO", …, or NULL */
const char *sp_error_to_string(uint16_t code);          /* "secure element failure", …, or NULL */
const char *sp_tag_to_string(uint8_t tag);              /* "SERIAL", …, or NULL */
/**
 * Is @key (not NUL-terminated) a config key whose value must never be logged
 * (wifi_psk, *_password, …; compared ignoring ASCII case)?
 */
bool sp_cfg_key_is_secret(const char *key, size_t len);
/**
 * One-line description of @f for debug logs, snprintf-style: writes at most
 * @cap bytes (NUL included) and returns the length it needed. Values of
 * secret config keys are printed as <redacted>; long values are cut.
 */
ssize_t sp_frame_describe(const struct sp_frame *f, char *buf, size_t cap);

/* --- request tracking (no I/O) -------------------------------------------- */

/**
 * One outstanding request at a time, as the protocol requires. The client
 * keeps the encoded request so that a retransmission is byte-identical except
 * for SP_FLAG_RETRANSMIT. Buffer: sp_frame_encoded_max(max payload) bytes.
 */
struct sp_client {
        uint16_t next_seq;
        uint16_t seq;                   /* of the outstanding request */
        uint8_t type;
        bool pending;
        uint8_t *buf;
        size_t cap;
        size_t len;                     /* encoded bytes of the outstanding request */
};

void sp_client_init(struct sp_client *c, void *buf, size_t cap, uint16_t first_seq);
/**
 * Encodes a new request (seq = next_seq, which then increments, wrapping) into
 * the client's buffer and returns its length; it supersedes any outstanding
 * request. -EINVAL for a response type, -ENOBUFS if the buffer is smaller
 * than sp_frame_encoded_max(@len) (needed so that the retransmission fits).
 */
ssize_t sp_client_request(struct sp_client *c, uint8_t type, const void *payload, size_t len);
/** Re-marks the outstanding request as a retransmission; returns its length. -EPROTO if none. */
ssize_t sp_client_retransmit(struct sp_client *c);
/**
 * Classifies a received frame: 1 = the response to the outstanding request
 * (pending cleared), 0 = stale or duplicate (ignore it), -EPROTO = a response
 * with the right seq but a type that does not answer the request, or another
 * header version (pending kept: the caller decides, PROTOCOL.md §6.8, §8.2).
 */
int sp_client_match(struct sp_client *c, const struct sp_frame *f);
/** Gives up on the outstanding request (its late response will be ignored). */
void sp_client_cancel(struct sp_client *c);

#endif
