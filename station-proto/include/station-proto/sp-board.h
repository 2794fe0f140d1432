/* SPDX-License-Identifier: MIT */
/* Station protocol, board side: portable C99, no heap, no OS calls, caller-provided buffers. */
#ifndef STATION_PROTO_SP_BOARD_H
#define STATION_PROTO_SP_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp-wire.h"

/*
 * Use (a 1024-byte frame; every file the library needs is board.c crc.c
 * cobs.c tlv.c frame.c sha256.c sp-core.h and this include folder):
 *   static uint8_t rx[SPB_RX_BUF(1024)], tx[SPB_TX_MIN], work[SPB_WORK_BUF(400)];
 *   spb_init(&b, &ops, ctx, rx, sizeof rx, tx, sizeof tx, work, sizeof work);
 *   from the main loop, with the bytes an ISR/DMA put in a ring: spb_feed(&b, bytes, n);
 * spb_feed() decodes frames, calls the secure-element callbacks and writes
 * the response through ops->write before it returns. The payload of the last
 * response stays in @work so that a retransmitted request (same seq and type)
 * gets the same response back, re-encoded with SP_FLAG_REPLAY, without calling
 * any callback again (HELLO excepted, see PROTOCOL.md §7).
 *
 * Every request is validated completely (TLV structure, required fields,
 * lengths, state) before the first callback is called. spb_feed() is not
 * reentrant: ops->write must not call spb_feed() on the same board, and
 * spb_feed()/spb_complete() must not run in an ISR while the main loop is
 * inside either of them.
 *
 * Callbacks return 0 or an enum sp_error value, which the library sends back
 * in an ERROR response.
 *
 * RAM (PROTOCOL.md §5.1): rx_cap (the largest request the board takes; the
 * vectors' PUT_CERT needs 913) + work_cap (the largest response, see
 * SPB_WORK_BUF) + tx_cap (SPB_TX_MIN..SPB_TX_BUF(rx_cap)) + sizeof(struct
 * spb_board), plus the stack of spb_feed() (README.md lists the figures per
 * target, measured by test-cross.py).
 *
 * Blocking contract (the default):
 *   get_csr() with a new key, prove(), store_certs(), store_config() and
 *   lock() run inside spb_feed(), so spb_feed() takes as long as the longest
 *   of them (a key generation: ~100 ms on a secure element, seconds in
 *   software on a Cortex-M0) plus the encoding of the answer (microseconds).
 *   Meanwhile:
 *   - RX must be buffered by an ISR or DMA: the station sends nothing while
 *     it waits for an answer except a retransmission of the same request
 *     after its response timeout (PROTOCOL.md §8.3), so a ring of one
 *     encoded request (SP_ENCODED_MAX(rx_cap)) never overruns; bytes lost
 *     there only cost a retransmission.
 *   - the watchdog must tolerate the longest callback: feed it before
 *     spb_feed() and give it a period above that callback's worst case, or
 *     feed it from the callback itself, or use the asynchronous mode.
 *   - each callback should finish within the station's timeout for its
 *     step (PROTOCOL.md §8.3 defaults: GET_CSR with NEW_KEY 3 s, PUT_CERT,
 *     PUT_CONFIG and LOCK 2 s, PROVE and GET_CSR 1 s), else the station
 *     retransmits (answered from the cache once the answer exists) and,
 *     after its retries, fails the board.
 *   The library's own work per request is a few SHA-256 blocks and CRC/COBS
 *   over two frames: microseconds to a few ms on a small MCU.
 *
 * Asynchronous mode (optional, per call): get_csr, store_certs,
 * store_config, prove and lock may return SPB_PENDING after starting the
 * work (e.g. an ATECC608 command, a flash erase). The library then sends
 * nothing and returns from spb_feed(); the firmware keeps its main loop, its
 * UART and its watchdog serviced and calls spb_complete(b, result, csr_len)
 * once the work finished (after the callback returned, never from inside it) (result 0 or an enum sp_error; csr_len the DER
 * length for GET_CSR). The output pointers the callback got (der, the
 * proof's hash and signature) and the request data it was given (the
 * certificates, the config value) stay valid until then: they are in @rx and
 * @work, which the library does not touch while the request is pending.
 * For that reason spb_feed() drops its input while a request is pending
 * (counted in stats.dropped_busy); the rest of a frame cut that way is
 * skipped after completion, and the station's retransmission of the request
 * is answered from the cache. spb_reset() cancels a pending request (a
 * later spb_complete() returns SPB_E_INVAL). For PUT_CONFIG each pair may
 * go pending; spb_complete() then calls store_config() for the next one.
 */

#define SPB_RX_BUF(max_frame)   (max_frame)
/** A @tx of this size: one ops->write per frame. Any size from SPB_TX_MIN up works. */
#define SPB_TX_BUF(max_frame)   SP_ENCODED_MAX(max_frame)
#define SPB_TX_MIN              8u
/** The largest IDENT: SERIAL 32, MODEL 64, FW_VERSION 32, CAPS, PROTO_VERSION, MAX_FRAME, PUBKEY, LOCKED. */
#define SPB_IDENT_MAX           225u
/** @work below this (or below rx_cap - 11 when that is less) is refused by spb_init(). */
#define SPB_WORK_MIN            SPB_IDENT_MAX
/** @work for a board whose CSR DER is at most @csr_max bytes: the CSR response (CSR + PUBKEY TLVs) or IDENT. */
#define SPB_WORK_BUF(csr_max)   ((csr_max) + 2u * SP_TLV_HEADER_LEN + SP_PUBKEY_LEN > SPB_IDENT_MAX ? \
                                 (csr_max) + 2u * SP_TLV_HEADER_LEN + SP_PUBKEY_LEN : SPB_IDENT_MAX)
/** A callback's answer in the asynchronous mode: started, spb_complete() follows. */
#define SPB_PENDING             (-0x7ffe)

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
         * Transport: write all @len bytes. @buf is the board's @tx buffer.
         * When @tx holds a whole frame (SPB_TX_BUF) each frame is one call
         * and @buf is not touched again until the next spb_feed() or
         * spb_complete() that answers a request, so a DMA transfer may run
         * until then; with a smaller @tx a frame comes in several calls and
         * each must have taken its bytes before it returns.
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
 * as SP_ERR_INTERNAL; so is SPB_PENDING from identify() or cert_hash(),
 * which always answer at once.
 */

struct spb_stats {
        uint32_t frames;
        uint32_t bad_crc;
        uint32_t bad_format;
        uint32_t oversize;
        uint32_t replays;               /* requests answered from the cache */
        uint32_t dropped_busy;          /* input bytes dropped while a request was pending */
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
        bool keygen;                    /* IDENT's CAPS had KEYGEN (spec §6.2) */
        uint16_t peer_max_frame;        /* station's MAX_FRAME from HELLO */
        /* asynchronous mode: the request a callback answered SPB_PENDING */
        uint8_t pend_type;              /* 0: none */
        uint16_t pend_seq;
        size_t pend_off;                /* PUT_CONFIG: payload offset after the pending pair */
        bool pend_mid;                  /* input dropped meanwhile ended inside a frame */
        bool skip;                      /* dropping up to the next delimiter */
        struct spb_stats stats;
};

/**
 * @rx holds one decoded frame (its size is the board's max frame, at least
 * SP_MAX_FRAME_MIN); @tx is an output chunk of at least SPB_TX_MIN bytes
 * (SPB_TX_BUF(rx_cap) for one write per frame); @work (at least
 * SPB_WORK_MIN, or rx_cap - 11 if less) holds the response payload, so it
 * bounds the largest response (a PING echo above it is answered
 * SP_ERR_TOO_LARGE). Returns SPB_OK or a negative spb_status.
 */
int spb_init(struct spb_board *b, const struct spb_ops *ops, void *ctx,
             uint8_t *rx, size_t rx_cap, uint8_t *tx, size_t tx_cap,
             uint8_t *work, size_t work_cap);
/** Feeds received bytes; responses go out through ops->write from inside this call. */
void spb_feed(struct spb_board *b, const uint8_t *data, size_t len);
/** True while a request waits for spb_complete(). */
bool spb_pending(const struct spb_board *b);
/**
 * Finishes the pending request: @result is 0 or an enum sp_error (anything
 * else is answered SP_ERR_INTERNAL), @csr_len the DER length get_csr() wrote
 * (ignored for the others). Sends the answer through ops->write (or, for
 * PUT_CONFIG, calls store_config() for the next pair, which may go pending
 * again). Returns SPB_OK, or SPB_E_INVAL when nothing is pending.
 */
int spb_complete(struct spb_board *b, int result, size_t csr_len);
/** Drops the cached response, any partial frame and the session (e.g. on link reset). */
void spb_reset(struct spb_board *b);
const struct spb_stats *spb_get_stats(const struct spb_board *b);
/** SHA-256 of @len bytes (the library's own, for boards without a crypto library). */
void spb_sha256(const void *data, size_t len, uint8_t ret[SP_SHA256_LEN]);

#endif
