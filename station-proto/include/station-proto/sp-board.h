/* SPDX-License-Identifier: MIT */
/* Station protocol, board side: portable C99, no heap, no OS calls, caller-provided buffers. */
#ifndef STATION_PROTO_SP_BOARD_H
#define STATION_PROTO_SP_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp-wire.h"

/*
 * Use:
 *   static uint8_t rx[SPB_RX_BUF(4096)], tx[SPB_TX_BUF(4096)], work[4096];
 *   spb_init(&b, &ops, ctx, rx, sizeof rx, tx, sizeof tx, work, sizeof work);
 *   on every UART/USB byte chunk: spb_feed(&b, bytes, n);
 * spb_feed() decodes frames, calls the secure-element callbacks and writes
 * the response through ops->write before it returns. The payload of the last
 * response stays in @work so that a retransmitted request (same seq and type)
 * gets the same response back, re-encoded with SP_FLAG_REPLAY, without calling
 * any callback again (HELLO excepted, see PROTOCOL.md §7).
 *
 * Every request is validated completely (TLV structure, required fields,
 * lengths, state) before the first callback is called. spb_feed() is not
 * reentrant: ops->write must not call spb_feed() on the same board.
 *
 * Callbacks return 0 or an enum sp_error value, which the library sends back
 * in an ERROR response.
 */

#define SPB_RX_BUF(max_frame)   (max_frame)
#define SPB_TX_BUF(max_frame)   SP_ENCODED_MAX(max_frame)

enum spb_status {
        SPB_OK = 0,
        SPB_E_INVAL = -1,               /* bad argument to spb_init() */
        SPB_E_NOSPC = -2,               /* a buffer is smaller than the minimum */
};

struct spb_identity {
        const uint8_t *serial;          /* 1..32 bytes */
        size_t serial_len;
        const char *model;              /* NUL-terminated */
        const char *fw_version;
        uint32_t caps;                  /* enum sp_cap */
        const uint8_t *pubkey;          /* SP_PUBKEY_LEN bytes, or NULL if no key yet */
        bool locked;
};

struct spb_certs {
        const uint8_t *device;          /* DER, or NULL when only compressed is sent */
        size_t device_len;
        const uint8_t *signer;          /* DER or NULL */
        size_t signer_len;
        const uint8_t *root_pubkey;     /* SP_PUBKEY_LEN bytes or NULL */
        const uint8_t *compressed;      /* SP_COMPRESSED_CERT_LEN bytes or NULL */
};

struct spb_ops {
        int (*identify)(void *ctx, struct spb_identity *ret);
        /** Writes a DER CSR (subject CN = @cn when given) into @der; optionally a new key first. */
        int (*get_csr)(void *ctx, bool new_key, const char *cn, size_t cn_len,
                       uint8_t *der, size_t cap, size_t *ret_len);
        int (*store_certs)(void *ctx, const struct spb_certs *certs);
        /** Called once per key/value pair, in order, after the whole request was validated. */
        int (*store_config)(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len);
        /** Signs SHA-256(nonce ‖ cert_hash) where cert_hash = SHA-256(stored device cert DER). */
        int (*prove)(void *ctx, const uint8_t nonce[SP_NONCE_LEN],
                     uint8_t ret_cert_hash[SP_SHA256_LEN], uint8_t ret_sig[SP_SIG_LEN]);
        int (*lock)(void *ctx);                         /* optional (NULL: not supported) */
        void (*result)(void *ctx, uint8_t result);      /* optional: show the verdict */
        /**
         * Transport: write all @len bytes. @buf is the board's @tx buffer; it
         * is not touched again until the next spb_feed() call that answers a
         * request, so a DMA transfer may run until then.
         */
        void (*write)(void *ctx, const uint8_t *buf, size_t len);
        /**
         * Optional: SHA-256 of the device certificate DER as stored (e.g. the
         * DER rebuilt from a compressed certificate). When NULL the library
         * hashes the DEVICE_CERT it received; when NULL and only a compressed
         * certificate was sent, CERT_OK carries no CERT_HASH.
         */
        int (*cert_hash)(void *ctx, uint8_t ret[SP_SHA256_LEN]);
};

/*
 * Callback contract (besides the comments above):
 *   identify()   is called for HELLO, and again after get_csr() to fetch the
 *                (possibly new) public key for the CSR response: after a
 *                successful get_csr() it must return that key in ->pubkey,
 *                else the board answers SP_ERR_NO_KEY. The pointers it returns
 *                need to stay valid only until the callback's caller returns.
 *   get_csr()    @cn is not NUL-terminated (NULL when the station sent no
 *                SUBJECT_CN); writing more than @cap bytes is the callback's
 *                bug, a *ret_len outside 1..@cap is answered SP_ERR_INTERNAL.
 *   store_config() @key is not NUL-terminated.
 * A callback that returns a value outside 1..65535 other than 0 is reported
 * as SP_ERR_INTERNAL.
 */

struct spb_stats {
        uint32_t frames;
        uint32_t bad_crc;
        uint32_t bad_format;
        uint32_t oversize;
        uint32_t replays;               /* requests answered from the cache */
};

struct spb_board {
        /* private: use the functions below */
        const struct spb_ops *ops;
        void *ctx;
        /* deframer state (struct spc_rx in the core, kept here field by field) */
        uint8_t *rx;
        size_t rx_cap;
        size_t rx_len;
        size_t rx_wire;
        uint8_t rx_state;
        uint8_t cobs_code;
        uint8_t cobs_left;
        /* output */
        uint8_t *tx;
        size_t tx_cap;
        uint8_t *work;
        size_t work_cap;
        /* idempotence cache: response to (last_seq, last_type), payload in @work */
        bool have_last;
        uint16_t last_seq;
        uint8_t last_type;
        uint8_t resp_type;
        size_t resp_len;
        /* session (PROTOCOL.md §7) */
        bool session;
        bool proved;
        bool locked;
        uint16_t peer_max_frame;        /* station's MAX_FRAME from HELLO */
        struct spb_stats stats;
};

/**
 * @rx holds one decoded frame (its size is the board's max frame, at least
 * SP_MAX_FRAME_MIN); @tx ≥ SP_ENCODED_MAX(rx_cap); @work ≥ rx_cap is scratch
 * for building a response payload. Returns SPB_OK or a negative spb_status.
 */
int spb_init(struct spb_board *b, const struct spb_ops *ops, void *ctx,
             uint8_t *rx, size_t rx_cap, uint8_t *tx, size_t tx_cap,
             uint8_t *work, size_t work_cap);
/** Feeds received bytes; responses go out through ops->write from inside this call. */
void spb_feed(struct spb_board *b, const uint8_t *data, size_t len);
/** Drops the cached response, any partial frame and the session (e.g. on link reset). */
void spb_reset(struct spb_board *b);
const struct spb_stats *spb_get_stats(const struct spb_board *b);
/** SHA-256 of @len bytes (the library's own, for boards without a crypto library). */
void spb_sha256(const void *data, size_t len, uint8_t ret[SP_SHA256_LEN]);

#endif
