/* SPDX-License-Identifier: MIT */
/* atcacert compressed certificates: date and serial encoding, and the board-side rebuild. */

#include <openssl/sha.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/digest.h"
#include "signer-internal.h"

static const uint8_t sigalg_ecdsa_sha256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };

bool cert_atecc_leap(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int year, int mon /* 1..12 */) {
        static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return mon == 2 && cert_atecc_leap(year) ? 29 : d[mon - 1];
}

struct adate {
        int year, mon, day, hour; /* mon 1..12 */
        unsigned years;
};

static void unpack(const uint8_t enc[3], struct adate *d) {
        d->year = 2000 + (enc[0] >> 3);
        d->mon = (enc[0] & 0x07) << 1 | enc[1] >> 7;
        d->day = (enc[1] >> 2) & 0x1f;
        d->hour = (enc[1] & 0x03) << 3 | enc[2] >> 5;
        d->years = enc[2] & 0x1f;
}

/* The dates must exist: month, day and hour in range, for notAfter too. */
static bool adate_valid(const struct adate *d) {
        if (d->mon < 1 || d->mon > 12 || d->hour > 23 || d->day < 1 || d->day > days_in_month(d->year, d->mon))
                return false;
        return d->years == 0 || d->day <= days_in_month(d->year + (int)d->years, d->mon);
}

static time_t to_time(int year, int mon, int day, int hour, int min, int sec) {
        struct tm tm = { .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day, .tm_hour = hour,
                         .tm_min = min, .tm_sec = sec };
        return timegm(&tm);
}

int cert_atecc_encode_dates(const struct tm *nb, unsigned years, uint8_t enc[3], time_t *ret_not_before,
                            time_t *ret_not_after) {
        struct adate d;
        int year = nb->tm_year + 1900, mon = nb->tm_mon + 1;

        if (year < 2000 || year > 2031 || years > CERT_ATECC_MAX_YEARS)
                return -ERANGE;
        d = (struct adate){ .year = year, .mon = mon, .day = nb->tm_mday, .hour = nb->tm_hour, .years = years };
        if (!adate_valid(&d))
                return -ERANGE;
        enc[0] = (uint8_t)((year - 2000) << 3 | mon >> 1);
        enc[1] = (uint8_t)((mon & 1) << 7 | d.day << 2 | d.hour >> 3);
        enc[2] = (uint8_t)((d.hour & 7) << 5 | (int)years);
        *ret_not_before = to_time(year, mon, d.day, d.hour, 0, 0);
        *ret_not_after = years ? to_time(year + (int)years, mon, d.day, d.hour, 0, 0) : CERT_NO_EXPIRY;
        return 0;
}

void cert_atecc_format_dates(const uint8_t enc[3], char nb[13], char na[15]) {
        struct adate d;
        char buf[20];

        unpack(enc, &d);
        snprintf(buf, sizeof(buf), "%02d%02d%02d%02d0000Z", d.year % 100, d.mon % 100, d.day % 100, d.hour % 100);
        memcpy(nb, buf, 13);
        if (d.years == 0)
                memcpy(na, "99991231235959Z", 15);
        else {
                snprintf(buf, sizeof(buf), "%04d%02d%02d%02d0000Z", (d.year + (int)d.years) % 10000, d.mon % 100,
                         d.day % 100, d.hour % 100);
                memcpy(na, buf, 15);
        }
}

int cert_atecc_serial(const uint8_t pubkey[65], const uint8_t enc[3], uint8_t serial[CERT_SERIAL_LEN]) {
        uint8_t msg[64 + 3], digest[32];
        int r;

        memcpy(msg, pubkey + 1, 64); /* X || Y, without the 04 */
        memcpy(msg + 64, enc, 3);
        r = certs_sha256(msg, sizeof(msg), digest);
        if (r < 0)
                return r;
        memcpy(serial, digest, CERT_SERIAL_LEN);
        serial[0] = (serial[0] & 0x7f) | 0x40;
        return 0;
}

/* One DER INTEGER of a signature into 32 big-endian bytes. */
static int int_to_raw(const uint8_t **p, const uint8_t *end, uint8_t out[32]) {
        const uint8_t *q = *p;
        size_t len;

        if (end - q < 2 || q[0] != DER_INTEGER || q[1] == 0 || q[1] > 33 || (size_t)(end - q - 2) < q[1])
                return -EBADMSG;
        len = q[1];
        q += 2;
        if (len == 33) {
                if (q[0] != 0)
                        return -EBADMSG;
                q++;
                len--;
        }
        memset(out, 0, 32);
        memcpy(out + 32 - len, q, len);
        *p = q + len;
        return 0;
}

int certs_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t out[64]) {
        const uint8_t *p = der, *end = der + len;

        if (len < 8 || der[0] != DER_SEQUENCE || der[1] != len - 2)
                return -EBADMSG;
        p += 2;
        if (int_to_raw(&p, end, out) < 0 || int_to_raw(&p, end, out + 32) < 0 || p != end)
                return -EBADMSG;
        return 0;
}

/* Minimal DER INTEGER for a 32-byte magnitude. */
static uint8_t *put_int(uint8_t *p, const uint8_t v[32]) {
        size_t skip = 0;

        while (skip < 31 && v[skip] == 0)
                skip++;
        bool pad = v[skip] & 0x80;
        *p++ = DER_INTEGER;
        *p++ = (uint8_t)(32 - skip + pad);
        if (pad)
                *p++ = 0;
        return put_bytes(p, v + skip, 32 - skip);
}

void cert_atecc_def_done(struct cert_atecc_def *d) {
        if (!d)
                return;
        free(d->tbs);
        *d = (struct cert_atecc_def){};
}

int cert_atecc_rebuild(const struct cert_atecc_def *def, const uint8_t comp[CERT_COMPRESSED_LEN],
                       const uint8_t pubkey[65], const char *cn, uint8_t **ret_der, size_t *ret_len) {
        uint8_t sig[SIGNER_SIG_MAX], *sp = sig, *buf, *p;
        size_t sig_len, content, hdr, total;
        struct adate d;
        int r;

        if (!def || !def->tbs || !comp || !pubkey || !cn || !ret_der || !ret_len || strlen(cn) != def->cn_len ||
            pubkey[0] != 0x04)
                return -EINVAL;
        /* A definition whose fields do not lie inside its template is not one. */
        if (def->tbs_len > 65535 || def->serial_off + CERT_SERIAL_LEN > def->tbs_len || def->not_before_off + 13 > def->tbs_len ||
            def->not_after_off + 15 > def->tbs_len || def->cn_len > def->tbs_len || def->cn_off > def->tbs_len - def->cn_len ||
            def->pubkey_off + 65 > def->tbs_len || def->ski_off + CERT_SKI_LEN > def->tbs_len)
                return -EINVAL;
        if ((comp[70] & 0x0f) != CERT_ATECC_FORMAT_VERSION || comp[70] >> 4 != CERT_ATECC_SNSRC_PUB_KEY_HASH ||
            comp[69] != (uint8_t)(def->template_id << 4 | def->chain_id) || comp[71] != 0)
                return -EBADMSG;
        unpack(comp + 64, &d);
        if (!adate_valid(&d))
                return -EBADMSG;

        /* signatureValue: SEQUENCE { INTEGER r, INTEGER s }. */
        sp = put_int(sp + 2, comp);
        sp = put_int(sp, comp + 32);
        sig_len = (size_t)(sp - sig);
        sig[0] = DER_SEQUENCE;
        sig[1] = (uint8_t)(sig_len - 2);

        content = def->tbs_len + sizeof(sigalg_ecdsa_sha256) + 3 + sig_len;
        hdr = der_hdr_size(content);
        total = hdr + content;
        buf = malloc(total);
        if (!buf)
                return -ENOMEM;
        p = der_put_hdr(buf, DER_SEQUENCE, content);
        uint8_t *tbs = p;
        p = put_bytes(p, def->tbs, def->tbs_len);
        r = cert_atecc_serial(pubkey, comp + 64, tbs + def->serial_off);
        if (r >= 0)
                r = certs_sha1(pubkey, 65, tbs + def->ski_off);
        if (r < 0) {
                free(buf);
                return r;
        }
        cert_atecc_format_dates(comp + 64, (char *)tbs + def->not_before_off, (char *)tbs + def->not_after_off);
        memcpy(tbs + def->cn_off, cn, def->cn_len);
        memcpy(tbs + def->pubkey_off, pubkey, 65);
        p = put_bytes(p, sigalg_ecdsa_sha256, sizeof(sigalg_ecdsa_sha256));
        p = der_put_hdr(p, DER_BIT_STRING, 1 + sig_len);
        *p++ = 0x00;
        put_bytes(p, sig, sig_len);
        *ret_der = buf;
        *ret_len = total;
        return 0;
}
