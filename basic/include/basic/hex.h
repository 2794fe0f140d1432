/* SPDX-License-Identifier: MIT */
/* Hex encoding, decoding and validation; digits of either case are accepted. */
#ifndef BASIC_HEX_H
#define BASIC_HEX_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit (0-9, a-f, A-F), or -EINVAL. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

/* @n bytes as hex into @out (2 * @n + 1 bytes, NUL-terminated), upper or lower
 * case; returns @out. */
static inline char *hex_encode(const void *p, size_t n, char *out, bool upper) {
        const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[b[i] >> 4];
                out[2 * i + 1] = digits[b[i] & 15];
        }
        out[2 * n] = '\0';
        return out;
}

/* True if the first @len characters of @s are an even number, at least
 * @min_bytes and at most @max_bytes bytes' worth, of hex digits. A NUL within
 * @len is not a digit. */
static inline bool hex_valid(const char *s, size_t len, size_t min_bytes, size_t max_bytes) {
        if (!s || len % 2 != 0 || len / 2 < min_bytes || len / 2 > max_bytes)
                return false;
        for (size_t i = 0; i < len; i++)
                if (unhexchar(s[i]) < 0)
                        return false;
        return true;
}

/* Copies the first @len characters of @s to @out (room for @len + 1) with
 * A-F made a-f, NUL-terminated: the stored form of a hex identifier. */
static inline char *hex_lower(const char *s, size_t len, char *out) {
        for (size_t i = 0; i < len; i++)
                out[i] = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
        out[len] = 0;
        return out;
}

/* Decodes the first @len characters of @s into @out (room for @out_size
 * bytes); *@ret_len (optional) is the byte count. Returns 0, -EINVAL (odd
 * length or not a hex digit) or -ENOBUFS (more than @out_size bytes). @out
 * and *@ret_len are written only on success. */
static inline int hex_decode(const char *s, size_t len, void *out, size_t out_size, size_t *ret_len) {
        uint8_t *o = out;

        if (!s || len % 2 != 0)
                return -EINVAL;
        if (len / 2 > out_size)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++)
                if (unhexchar(s[i]) < 0)
                        return -EINVAL;
        for (size_t i = 0; i < len / 2; i++)
                o[i] = (uint8_t)(unhexchar(s[2 * i]) << 4 | unhexchar(s[2 * i + 1]));
        if (ret_len)
                *ret_len = len / 2;
        return 0;
}

#endif
