/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "json-writer.h"

/* Room for the closing "}" and the NUL is kept back from every write. */
static bool room(struct json_writer *w, size_t n) {
        if (w->overflow || w->len + n + 2 > w->cap) {
                w->overflow = true;
                return false;
        }
        return true;
}

static void put(struct json_writer *w, const char *s, size_t n) {
        if (!room(w, n))
                return;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
}

void json_writer_init(struct json_writer *w, char *buf, size_t cap) {
        *w = (struct json_writer){ .buf = buf, .cap = cap, .overflow = cap < 3 };
        put(w, "{", 1);
}

static void key(struct json_writer *w, const char *k) {
        if (w->len > 1)
                put(w, ",", 1);
        put(w, "\"", 1);
        put(w, k, strlen(k));
        put(w, "\":", 2);
}

static void string(struct json_writer *w, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const char *run = s;

        put(w, "\"", 1);
        for (const char *p = s; *p; p++) {
                unsigned char c = (unsigned char)*p;
                char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                size_t n = 6;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                put(w, run, (size_t)(p - run));
                run = p + 1;
                switch (c) {
                case '"': case '\\': esc[1] = (char)c; n = 2; break;
                case '\n': esc[1] = 'n'; n = 2; break;
                case '\r': esc[1] = 'r'; n = 2; break;
                case '\t': esc[1] = 't'; n = 2; break;
                default: break;
                }
                put(w, esc, n);
        }
        put(w, run, strlen(run));
        put(w, "\"", 1);
}

void json_writer_str(struct json_writer *w, const char *k, const char *value) {
        key(w, k);
        string(w, value ? value : "");
}

void json_writer_str_or_null(struct json_writer *w, const char *k, const char *value) {
        key(w, k);
        if (value)
                string(w, value);
        else
                put(w, "null", 4);
}

void json_writer_int(struct json_writer *w, const char *k, int64_t value) {
        /* Decimal by hand: snprintf() cost more than everything else a field takes. */
        char num[24], *p = num + sizeof(num);
        uint64_t u = value < 0 ? -(uint64_t)value : (uint64_t)value;   /* INT64_MIN too */

        do
                *--p = (char)('0' + u % 10);
        while ((u /= 10) > 0);
        if (value < 0)
                *--p = '-';
        key(w, k);
        put(w, p, (size_t)(num + sizeof(num) - p));
}

const char *json_writer_finish(struct json_writer *w) {
        if (w->overflow)
                return NULL;
        w->buf[w->len++] = '}';
        w->buf[w->len] = 0;
        return w->buf;
}
