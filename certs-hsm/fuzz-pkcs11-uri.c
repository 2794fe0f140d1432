/* SPDX-License-Identifier: MIT */
/* Fuzz target: the pkcs11: URI parser and signer_uri_redact(): no PIN or PIN source survives redaction. */

/*
 * Input: the URI, where byte 0x01 stands for a secret ("\x02S3cr3t\x03");
 * inputs holding 0x00, 0x02 or 0x03 themselves are skipped, so every copy of
 * the secret in the redacted form comes from a 0x01 of the input.
 * Checks:
 *   - copies of the secret inside a pin-value or pin-source attribute (path or
 *     query, the key compared case-insensitively and percent-decoded) never
 *     reach the redacted form: it holds at most as many copies as the input
 *     holds outside such attributes;
 *   - a pin-value/pin-source attribute left in the redacted form (this one drops
 *     them) has "***" as value (a masking redaction passes too);
 *   - redaction is idempotent, never lengthens, and keeps a URI the
 *     parser accepts acceptable; a non-pkcs11: URI is returned unchanged.
 */

#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs-hsm/signer.h"
#include "signer-internal.h"

#define SECRET "\x02S3cr3t\x03"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-pkcs11-uri: %s\n", what);
                abort();
        }
}

static size_t count(const char *s, size_t n) {
        size_t c = 0;

        for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), SECRET, strlen(SECRET))); p++)
                c++;
        return c;
}

static int unhex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Is the key of attribute [a, a+n) "pin-value" or "pin-source", in any case and percent-encoding? */
static bool pin_attr(const char *a, size_t n) {
        const char *eq = memchr(a, '=', n);
        size_t kl = eq ? (size_t)(eq - a) : n, k = 0;
        char key[16];

        for (size_t i = 0; i < kl; i++) {
                int c = (unsigned char)a[i];
                if (c == '%' && i + 2 < kl && unhex(a[i + 1]) >= 0 && unhex(a[i + 2]) >= 0) {
                        c = unhex(a[i + 1]) << 4 | unhex(a[i + 2]);
                        i += 2;
                }
                if (k + 1 >= sizeof key)
                        return false;
                key[k++] = (char)tolower(c);
        }
        key[k] = 0;
        return strcmp(key, "pin-value") == 0 || strcmp(key, "pin-source") == 0;
}

/* Copies of the secret in pin attributes; @ret_masked: every pin attribute's value is "***". */
static size_t count_in_pins(const char *uri, bool *ret_masked) {
        size_t len = strlen(uri), c = 0;
        const char *q = memchr(uri, '?', len), *end = uri + len;

        *ret_masked = true;
        for (int part = 0; part < 2; part++) {
                const char *p = part == 0 ? uri + 7 : q ? q + 1 : end, *e = part == 0 && q ? q : end;
                char sep = part == 0 ? ';' : '&';

                while (p < e) {
                        const char *s = memchr(p, sep, (size_t)(e - p));
                        size_t n = (size_t)((s ? s : e) - p);

                        if (pin_attr(p, n)) {
                                const char *eq = memchr(p, '=', n);
                                c += count(p, n);
                                if (!eq || (size_t)(p + n - eq - 1) != 3 || memcmp(eq + 1, "***", 3) != 0)
                                        *ret_masked = false;
                        }
                        p += n + (s ? 1 : 0);
                }
        }
        return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char uri[SIGNER_MAX_URI + 1], *r1, *r2;
        size_t k = 0, total, pins, after, len;
        bool masked;

        if (size > SIGNER_MAX_URI)
                return 0;
        for (size_t i = 0; i < size; i++) {
                if (data[i] == 0 || data[i] == 2 || data[i] == 3)
                        return 0;
                if (data[i] == 1) {
                        if (k + strlen(SECRET) > SIGNER_MAX_URI)
                                return 0;
                        memcpy(uri + k, SECRET, strlen(SECRET));
                        k += strlen(SECRET);
                } else if (k < SIGNER_MAX_URI)
                        uri[k++] = (char)data[i];
                else
                        return 0;
        }
        uri[k] = 0;
        len = k;

        r1 = signer_uri_redact(uri);
        check(r1 != NULL, "redact returned NULL");
        if (strncmp(uri, "pkcs11:", 7) != 0) {
                check(strcmp(r1, uri) == 0, "a non-pkcs11: URI was changed");
                free(r1);
                return 0;
        }
        check(strlen(r1) <= len, "redaction lengthened the URI");
        total = count(uri, len);
        pins = count_in_pins(uri, &masked);
        after = count(r1, strlen(r1));
        check(after + pins <= total, "a PIN or PIN source survived redaction");
        (void)count_in_pins(r1, &masked);
        check(masked, "a pin attribute of the redacted form has a value");
        r2 = signer_uri_redact(r1);
        check(r2 && strcmp(r1, r2) == 0, "redaction is not idempotent");
#if HAVE_PKCS11
        if (signer_pkcs11_uri_check(uri) == 0)
                check(signer_pkcs11_uri_check(r1) == 0, "redaction broke a valid URI");
#endif
        free(r1);
        free(r2);
        return 0;
}
