/* SPDX-License-Identifier: MIT */
/* Station protocol wire constants shared by the host and board libraries (freestanding C99). */
#ifndef STATION_PROTO_SP_WIRE_H
#define STATION_PROTO_SP_WIRE_H

#include <stdint.h>

/*
 * Glossary (PROTOCOL.md is the normative text):
 *   frame    header (7 bytes) + TLV payload + CRC-32 (4 bytes), COBS-encoded on
 *            the wire and delimited by 0x00 bytes.
 *   station  the host (provd); it sends requests and is in charge.
 *   board    the device; it only answers, with type = request type | 0x80.
 *   seq      16-bit request number chosen by the station; a board answers a
 *            repeated seq with its cached last response (idempotence).
 */

#define SP_PROTO_VERSION        1u
#define SP_HEADER_LEN           7u      /* version, type, flags, seq(2), length(2) */
#define SP_CRC_LEN              4u      /* CRC-32/ISO-HDLC, big-endian on the wire */
#define SP_FRAME_OVERHEAD       (SP_HEADER_LEN + SP_CRC_LEN)
#define SP_MAX_FRAME_DEFAULT    4096u   /* decoded frame: header + payload + CRC */
#define SP_MAX_FRAME_MIN        64u
#define SP_MAX_FRAME_LIMIT      (65535u + SP_FRAME_OVERHEAD)
#define SP_TLV_HEADER_LEN       3u      /* tag(1), length(2, big-endian) */
#define SP_NONCE_LEN            32u
#define SP_SHA256_LEN           32u
#define SP_SIG_LEN              64u     /* raw ECDSA P-256 r || s, 32 bytes each */
#define SP_PUBKEY_LEN           65u     /* uncompressed SEC1 point 0x04 || X || Y */
#define SP_COMPRESSED_CERT_LEN  72u     /* atcacert compressed certificate */

/* Encoded (COBS + both delimiters) size bound for a decoded frame of n bytes. */
#define SP_ENCODED_MAX(n)       ((n) + ((n) / 254u) + 3u)

enum sp_msg_type {
        /* station -> board */
        SP_MSG_HELLO      = 0x01,
        SP_MSG_GET_CSR    = 0x02,
        SP_MSG_PUT_CERT   = 0x03,
        SP_MSG_PUT_CONFIG = 0x04,
        SP_MSG_PROVE      = 0x05,
        SP_MSG_LOCK       = 0x06,
        SP_MSG_PING       = 0x07,
        SP_MSG_RESULT     = 0x08,       /* final verdict, so the board can show it */
        /* board -> station: request type | SP_MSG_RESPONSE */
        SP_MSG_RESPONSE   = 0x80,
        SP_MSG_IDENT      = 0x81,
        SP_MSG_CSR        = 0x82,
        SP_MSG_CERT_OK    = 0x83,
        SP_MSG_CONFIG_OK  = 0x84,
        SP_MSG_PROOF      = 0x85,
        SP_MSG_LOCKED     = 0x86,
        SP_MSG_PONG       = 0x87,
        SP_MSG_RESULT_OK  = 0x88,
        SP_MSG_ERROR      = 0xFF,       /* board -> station, answers any request */
};

enum sp_flags {
        SP_FLAG_RETRANSMIT = 0x01,      /* station: this request repeats an earlier seq */
        SP_FLAG_REPLAY     = 0x02,      /* board: this response is the cached one */
};

enum sp_tag {
        /* identity (IDENT) */
        SP_TAG_SERIAL        = 0x01,    /* bytes, 1..32 (ATECC: 9) */
        SP_TAG_MODEL         = 0x02,    /* UTF-8, 1..64 */
        SP_TAG_FW_VERSION    = 0x03,    /* UTF-8, 1..32 */
        SP_TAG_CAPS          = 0x04,    /* u32 bitmask of enum sp_cap */
        SP_TAG_PROTO_VERSION = 0x05,    /* HELLO: u8 list of versions; IDENT: chosen u8 */
        SP_TAG_PUBKEY        = 0x06,    /* 65 bytes, device public key if it has one */
        SP_TAG_MAX_FRAME     = 0x07,    /* u16, largest decoded frame the sender accepts */
        SP_TAG_LOCKED        = 0x08,    /* u8 0/1 */
        /* CSR */
        SP_TAG_NEW_KEY       = 0x10,    /* GET_CSR: u8 1 = generate a new key first */
        SP_TAG_CSR           = 0x11,    /* DER PKCS#10 */
        SP_TAG_SUBJECT_CN    = 0x12,    /* GET_CSR: UTF-8 CN the station expects */
        /* certificates (PUT_CERT) */
        SP_TAG_DEVICE_CERT   = 0x20,    /* DER */
        SP_TAG_SIGNER_CERT   = 0x21,    /* DER */
        SP_TAG_ROOT_PUBKEY   = 0x22,    /* 65 bytes */
        SP_TAG_COMPRESSED_CERT = 0x23,  /* 72 bytes */
        /* config (PUT_CONFIG): CFG_KEY, CFG_VALUE pairs in order */
        SP_TAG_CFG_KEY       = 0x30,    /* ASCII, 1..32 */
        SP_TAG_CFG_VALUE     = 0x31,    /* bytes, 0..1024 */
        /* proof */
        SP_TAG_NONCE         = 0x40,    /* 32 bytes */
        SP_TAG_SIGNATURE     = 0x41,    /* 64 bytes r || s */
        SP_TAG_CERT_HASH     = 0x42,    /* 32 bytes SHA-256 of the stored device cert DER */
        /* errors and results */
        SP_TAG_ERROR_CODE    = 0x50,    /* u16 enum sp_error */
        SP_TAG_ERROR_TEXT    = 0x51,    /* UTF-8, 0..128 */
        SP_TAG_RESULT        = 0x52,    /* RESULT: u8 enum sp_result */
        SP_TAG_ECHO          = 0x60,    /* PING/PONG: bytes echoed back */
};

enum sp_cap {
        SP_CAP_KEYGEN          = 1u << 0,       /* can generate a new key on GET_CSR */
        SP_CAP_LOCK            = 1u << 1,       /* supports LOCK */
        SP_CAP_COMPRESSED_CERT = 1u << 2,       /* stores the 72-byte compressed form */
        SP_CAP_ROOT_PUBKEY     = 1u << 3,       /* wants the root public key in PUT_CERT */
        SP_CAP_WIFI            = 1u << 4,       /* accepts wifi_ssid / wifi_psk config */
};

enum sp_error {
        SP_ERR_BAD_FRAME     = 1,       /* undecodable request (reported when possible) */
        SP_ERR_VERSION       = 2,       /* unsupported protocol version */
        SP_ERR_UNKNOWN_TYPE  = 3,
        SP_ERR_BAD_PAYLOAD   = 4,       /* missing or malformed required TLV */
        SP_ERR_BAD_STATE     = 5,       /* e.g. PROVE before PUT_CERT */
        SP_ERR_LOCKED        = 6,       /* slots are locked; cannot change */
        SP_ERR_SE_FAILURE    = 7,       /* secure element operation failed */
        SP_ERR_TOO_LARGE     = 8,       /* does not fit the board's buffers */
        SP_ERR_NO_KEY        = 9,
        SP_ERR_NO_CERT       = 10,
        SP_ERR_STORAGE       = 11,
        SP_ERR_INTERNAL      = 12,
};

enum sp_result {
        SP_RESULT_PROVISIONED         = 0,
        SP_RESULT_ALREADY_PROVISIONED = 1,
        SP_RESULT_FAILED              = 2,
};

#endif
