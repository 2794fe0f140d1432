/* SPDX-License-Identifier: MIT */
/* Checks on text from outside: strict UTF-8 (RFC 3629), printable UTF-8, printable ASCII. */
#ifndef BASIC_TEXT_H
#define BASIC_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes one UTF-8 sequence at @s (@len bytes left, > 0): its length, with the
 * code point in *@ret_cp; 0 if it is not strict UTF-8 (a stray continuation
 * byte, a truncated sequence, an overlong form, a surrogate, past U+10FFFF). */
static inline size_t utf8_decode_one(const uint8_t *s, size_t len, uint32_t *ret_cp) {
        uint32_t cp, min;
        size_t n;

        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if ((s[0] & 0xe0) == 0xc0) {
                n = 2, cp = s[0] & 0x1f, min = 0x80;
        } else if ((s[0] & 0xf0) == 0xe0) {
                n = 3, cp = s[0] & 0x0f, min = 0x800;
        } else if ((s[0] & 0xf8) == 0xf0) {
                n = 4, cp = s[0] & 0x07, min = 0x10000;
        } else
                return 0;
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return n;
}

/* True if the @len bytes at @s are strict UTF-8. NUL bytes are code points
 * like any other here: callers that want C strings check for them. */
static inline bool utf8_valid(const void *s, size_t len) {
        const uint8_t *p = s;
        uint32_t cp;

        for (size_t i = 0; i < len;) {
                size_t n = utf8_decode_one(p + i, len - i, &cp);
                if (n == 0)
                        return false;
                i += n;
        }
        return true;
}

/* True if the @len bytes at @s are strict UTF-8 without control characters
 * (C0 including NUL, TAB and LF; DEL; C1 U+0080..U+009F): safe to put in one
 * log line or one JSON string an operator reads. */
static inline bool utf8_printable(const void *s, size_t len) {
        const uint8_t *p = s;
        uint32_t cp;

        for (size_t i = 0; i < len;) {
                size_t n = utf8_decode_one(p + i, len - i, &cp);
                if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
                        return false;
                i += n;
        }
        return true;
}

/* True if the @len bytes at @s are all printable ASCII (0x20 ' ' to 0x7e '~'). */
static inline bool ascii_printable(const void *s, size_t len) {
        const uint8_t *p = s;

        for (size_t i = 0; i < len; i++)
                if (p[i] < 0x20 || p[i] > 0x7e)
                        return false;
        return true;
}

#endif
