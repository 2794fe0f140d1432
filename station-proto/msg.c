/* SPDX-License-Identifier: MIT */
/* Typed parsing of board responses, names of types/errors/tags, and a redacting frame dump. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "host-internal.h"

static int find(const struct sp_frame *f, uint8_t tag, size_t min, size_t max, struct spc_tlv *ret) {
        int r = spc_tlv_find(f->payload, f->len, tag, ret);

        if (r < 0)
                return r == SPC_E_NOENT ? -ENOENT : -EBADMSG;
        if (ret->len < min || ret->len > max)
                return -EBADMSG;
        return 0;
}

static int check_frame(const struct sp_frame *f, uint8_t type) {
        if (!f || (f->len && !f->payload))
                return -EINVAL;
        if (f->type != type)
                return -EINVAL;
        /* Spec §4: a malformed payload is malformed as a whole. */
        if (spc_tlv_validate(f->payload, f->len) < 0)
                return -EBADMSG;
        return 0;
}

/* Copies a printable-ASCII field into @dst (size max+1), NUL-terminated. */
static int get_text(const struct sp_frame *f, uint8_t tag, size_t max, char *dst) {
        struct spc_tlv t;
        int r = find(f, tag, 1, max, &t);

        if (r < 0)
                return r == -ENOENT ? -EBADMSG : r;
        if (!spc_is_printable(t.value, t.len))
                return -EBADMSG;
        memcpy(dst, t.value, t.len);
        dst[t.len] = 0;
        return 0;
}

int sp_ident_parse(const struct sp_frame *f, struct sp_ident *ret) {
        struct sp_ident id = { 0 };
        struct spc_tlv t;
        int r;

        r = check_frame(f, SP_MSG_IDENT);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;

        if (find(f, SP_TAG_SERIAL, 1, sizeof id.serial, &t) < 0)
                return -EBADMSG;
        memcpy(id.serial, t.value, t.len);
        id.serial_len = t.len;
        if (get_text(f, SP_TAG_MODEL, sizeof id.model - 1, id.model) < 0 ||
            get_text(f, SP_TAG_FW_VERSION, sizeof id.fw_version - 1, id.fw_version) < 0)
                return -EBADMSG;
        if (find(f, SP_TAG_CAPS, 4, 4, &t) < 0)
                return -EBADMSG;
        id.caps = spc_get_be32(t.value);
        if (find(f, SP_TAG_PROTO_VERSION, 1, 1, &t) < 0)
                return -EBADMSG;
        id.proto_version = t.value[0];

        r = find(f, SP_TAG_MAX_FRAME, 2, 2, &t);
        if (r == 0) {
                id.max_frame = spc_get_be16(t.value);
                if (id.max_frame < SP_MAX_FRAME_MIN)
                        return -EBADMSG;
        } else if (r != -ENOENT)
                return r;
        r = find(f, SP_TAG_PUBKEY, SP_PUBKEY_LEN, SP_PUBKEY_LEN, &t);
        if (r == 0) {
                if (t.value[0] != 0x04)
                        return -EBADMSG;
                memcpy(id.pubkey, t.value, SP_PUBKEY_LEN);
                id.has_pubkey = true;
        } else if (r != -ENOENT)
                return r;
        r = find(f, SP_TAG_LOCKED, 1, 1, &t);
        if (r == 0) {
                if (t.value[0] > 1)
                        return -EBADMSG;
                id.locked = t.value[0] == 1;
        } else if (r != -ENOENT)
                return r;

        *ret = id;
        return 0;
}

int sp_csr_parse(const struct sp_frame *f, const uint8_t **ret_der, size_t *ret_len) {
        struct spc_tlv t;
        int r;

        r = check_frame(f, SP_MSG_CSR);
        if (r < 0 || !ret_der || !ret_len)
                return r < 0 ? r : -EINVAL;
        if (find(f, SP_TAG_CSR, 1, 0xffff, &t) < 0)
                return -EBADMSG;
        *ret_der = t.value;
        *ret_len = t.len;
        return 0;
}

int sp_csr_pubkey(const struct sp_frame *f, uint8_t ret[SP_PUBKEY_LEN]) {
        struct spc_tlv t;
        int r;

        r = check_frame(f, SP_MSG_CSR);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        r = find(f, SP_TAG_PUBKEY, SP_PUBKEY_LEN, SP_PUBKEY_LEN, &t);
        if (r < 0)
                return r;
        if (t.value[0] != 0x04)
                return -EBADMSG;
        memcpy(ret, t.value, SP_PUBKEY_LEN);
        return 0;
}

int sp_proof_parse(const struct sp_frame *f, struct sp_proof *ret) {
        struct spc_tlv sig, hash;
        int r;

        r = check_frame(f, SP_MSG_PROOF);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        if (find(f, SP_TAG_SIGNATURE, SP_SIG_LEN, SP_SIG_LEN, &sig) < 0 ||
            find(f, SP_TAG_CERT_HASH, SP_SHA256_LEN, SP_SHA256_LEN, &hash) < 0)
                return -EBADMSG;
        memcpy(ret->signature, sig.value, SP_SIG_LEN);
        memcpy(ret->cert_hash, hash.value, SP_SHA256_LEN);
        return 0;
}

int sp_cert_ok_parse(const struct sp_frame *f, uint8_t ret_hash[SP_SHA256_LEN]) {
        struct spc_tlv t;
        int r;

        r = check_frame(f, SP_MSG_CERT_OK);
        if (r < 0 || !ret_hash)
                return r < 0 ? r : -EINVAL;
        r = find(f, SP_TAG_CERT_HASH, SP_SHA256_LEN, SP_SHA256_LEN, &t);
        if (r < 0)
                return r;
        memcpy(ret_hash, t.value, SP_SHA256_LEN);
        return 0;
}

static void sanitise(char *dst, const uint8_t *src, size_t len) {
        for (size_t i = 0; i < len; i++)
                dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? (char)src[i] : '?';
        dst[len] = 0;
}

int sp_error_parse(const struct sp_frame *f, struct sp_board_error *ret) {
        struct sp_board_error e = { 0 };
        struct spc_tlv t;
        int r;

        r = check_frame(f, SP_MSG_ERROR);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        if (find(f, SP_TAG_ERROR_CODE, 2, 2, &t) < 0)
                return -EBADMSG;
        e.code = spc_get_be16(t.value);
        r = find(f, SP_TAG_ERROR_TEXT, 0, sizeof e.text - 1, &t);
        if (r == 0)
                sanitise(e.text, t.value, t.len);
        else if (r != -ENOENT)
                return r;
        *ret = e;
        return 0;
}

const char *sp_msg_type_to_string(uint8_t type) {
        switch (type) {
        case SP_MSG_HELLO:      return "HELLO";
        case SP_MSG_GET_CSR:    return "GET_CSR";
        case SP_MSG_PUT_CERT:   return "PUT_CERT";
        case SP_MSG_PUT_CONFIG: return "PUT_CONFIG";
        case SP_MSG_PROVE:      return "PROVE";
        case SP_MSG_LOCK:       return "LOCK";
        case SP_MSG_PING:       return "PING";
        case SP_MSG_RESULT:     return "RESULT";
        case SP_MSG_IDENT:      return "IDENT";
        case SP_MSG_CSR:        return "CSR";
        case SP_MSG_CERT_OK:    return "CERT_OK";
        case SP_MSG_CONFIG_OK:  return "CONFIG_OK";
        case SP_MSG_PROOF:      return "PROOF";
        case SP_MSG_LOCKED:     return "LOCKED";
        case SP_MSG_PONG:       return "PONG";
        case SP_MSG_RESULT_OK:  return "RESULT_OK";
        case SP_MSG_ERROR:      return "ERROR";
        default:                return NULL;
        }
}

const char *sp_error_to_string(uint16_t code) {
        switch (code) {
        case SP_ERR_BAD_FRAME:    return "bad frame";
        case SP_ERR_VERSION:      return "unsupported protocol version";
        case SP_ERR_UNKNOWN_TYPE: return "unknown or unsupported message type";
        case SP_ERR_BAD_PAYLOAD:  return "missing or malformed field";
        case SP_ERR_BAD_STATE:    return "request not allowed in this state";
        case SP_ERR_LOCKED:       return "board is locked";
        case SP_ERR_SE_FAILURE:   return "secure element failure";
        case SP_ERR_TOO_LARGE:    return "does not fit the board's buffers";
        case SP_ERR_NO_KEY:       return "no key";
        case SP_ERR_NO_CERT:      return "no certificate";
        case SP_ERR_STORAGE:      return "storage failure";
        case SP_ERR_INTERNAL:     return "internal board error";
        default:                  return NULL;
        }
}

const char *sp_tag_to_string(uint8_t tag) {
        switch (tag) {
        case SP_TAG_SERIAL:          return "SERIAL";
        case SP_TAG_MODEL:           return "MODEL";
        case SP_TAG_FW_VERSION:      return "FW_VERSION";
        case SP_TAG_CAPS:            return "CAPS";
        case SP_TAG_PROTO_VERSION:   return "PROTO_VERSION";
        case SP_TAG_PUBKEY:          return "PUBKEY";
        case SP_TAG_MAX_FRAME:       return "MAX_FRAME";
        case SP_TAG_LOCKED:          return "LOCKED";
        case SP_TAG_NEW_KEY:         return "NEW_KEY";
        case SP_TAG_CSR:             return "CSR";
        case SP_TAG_SUBJECT_CN:      return "SUBJECT_CN";
        case SP_TAG_DEVICE_CERT:     return "DEVICE_CERT";
        case SP_TAG_SIGNER_CERT:     return "SIGNER_CERT";
        case SP_TAG_ROOT_PUBKEY:     return "ROOT_PUBKEY";
        case SP_TAG_COMPRESSED_CERT: return "COMPRESSED_CERT";
        case SP_TAG_CFG_KEY:         return "CFG_KEY";
        case SP_TAG_CFG_VALUE:       return "CFG_VALUE";
        case SP_TAG_NONCE:           return "NONCE";
        case SP_TAG_SIGNATURE:       return "SIGNATURE";
        case SP_TAG_CERT_HASH:       return "CERT_HASH";
        case SP_TAG_ERROR_CODE:      return "ERROR_CODE";
        case SP_TAG_ERROR_TEXT:      return "ERROR_TEXT";
        case SP_TAG_RESULT:          return "RESULT";
        case SP_TAG_ECHO:            return "ECHO";
        default:                     return NULL;
        }
}

/* Do @n bytes of @s equal the lower-case @lower, ignoring ASCII case? No locale (tolower() would use it). */
static bool equal_ascii_nocase(const char *s, const char *lower, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (c >= 'A' && c <= 'Z')
                        c = (char)(c - 'A' + 'a');
                if (c != lower[i])
                        return false;
        }
        return true;
}

bool sp_cfg_key_is_secret(const char *key, size_t len) {
        /*
         * Spec §10: values of these keys never appear in logs or dumps. CFG_KEY
         * allows upper case (§6.4), so "WIFI_PSK" is as secret as "wifi_psk".
         * The "_psk" suffix covers wifi_psk.
         */
        static const char *const secret[] = { "psk", "password", "secret", "token", "key" };

        if (!key)
                return false;
        for (size_t i = 0; i < sizeof secret / sizeof *secret; i++) {
                size_t n = strlen(secret[i]);

                /* exact match, or a "_psk"/"_password"/… suffix */
                if (len == n && equal_ascii_nocase(key, secret[i], n))
                        return true;
                if (len > n && key[len - n - 1] == '_' && equal_ascii_nocase(key + len - n, secret[i], n))
                        return true;
        }
        return false;
}

/* Appends to a bounded string; keeps track of the length it would have had. */
struct out {
        char *buf;
        size_t cap;
        size_t len;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n > 0)
                o->len += (size_t)n;
}

static void out_value(struct out *o, const struct spc_tlv *t, bool text) {
        size_t show = t->len > 16 ? 16 : t->len;

        if (text && spc_is_printable(t->value, t->len)) {
                outf(o, "\"%.*s\"", (int)t->len, (const char *)t->value);
                return;
        }
        for (size_t i = 0; i < show; i++)
                outf(o, "%02x", t->value[i]);
        if (show < t->len)
                outf(o, "…(%u bytes)", t->len);
}

ssize_t sp_frame_describe(const struct sp_frame *f, char *buf, size_t cap) {
        struct out o = { buf, cap, 0 };
        struct spc_tlv_reader r;
        struct spc_tlv t;
        const char *name;
        bool secret_next = false;
        int k;

        if (!f || (f->len && !f->payload) || (!buf && cap))
                return -EINVAL;
        if (cap > 0)
                buf[0] = 0;
        name = sp_msg_type_to_string(f->type);
        if (name)
                outf(&o, "%s", name);
        else
                outf(&o, "type=0x%02x", f->type);
        outf(&o, " v%u seq=%u", f->version, f->seq);
        if (f->flags)
                outf(&o, " flags=0x%02x", f->flags);

        spc_tlv_reader_init(&r, f->payload, f->len);
        while ((k = spc_tlv_next(&r, &t)) > 0) {
                name = sp_tag_to_string(t.tag);
                if (name)
                        outf(&o, " %s=", name);
                else
                        outf(&o, " tag0x%02x=", t.tag);
                switch (t.tag) {
                case SP_TAG_CFG_KEY:
                        secret_next = sp_cfg_key_is_secret((const char *)t.value, t.len);
                        out_value(&o, &t, true);
                        break;
                case SP_TAG_CFG_VALUE:
                        if (secret_next)
                                outf(&o, "<redacted>");
                        else
                                out_value(&o, &t, true);
                        secret_next = false;
                        break;
                case SP_TAG_MODEL:
                case SP_TAG_FW_VERSION:
                case SP_TAG_SUBJECT_CN:
                case SP_TAG_ERROR_TEXT:
                        out_value(&o, &t, true);
                        break;
                case SP_TAG_ERROR_CODE:
                        if (t.len == 2 && sp_error_to_string(spc_get_be16(t.value))) {
                                outf(&o, "%u(%s)", spc_get_be16(t.value), sp_error_to_string(spc_get_be16(t.value)));
                                break;
                        }
                        /* fall through */
                default:
                        out_value(&o, &t, false);
                        break;
                }
        }
        if (k < 0)
                outf(&o, " <malformed payload>");
        if (o.len > SSIZE_MAX)
                return -EOVERFLOW;
        return (ssize_t)o.len;
}
