/* SPDX-License-Identifier: MIT */
/* A JSON object written straight into a caller's buffer: for the records the
 * writer thread stores per board (audit details, AWS outbox payloads), where
 * building a cJSON tree and printing its numbers as doubles cost more than
 * the SQL statement that stores the text (docs/PERFORMANCE.md). */
#ifndef PROVD_JSON_WRITER_H
#define PROVD_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Usage:
 *         char buf[1024];
 *         struct json_writer w;
 *         json_writer_init(&w, buf, sizeof(buf));
 *         json_writer_str(&w, "serial", serial);
 *         json_writer_int(&w, "cert_id", id);
 *         const char *text = json_writer_finish(&w);    NULL: did not fit
 *
 * Keys are the caller's constants (written as given, not escaped). String
 * values are escaped as RFC 8259 requires ('"', '\\', and U+0000..U+001F);
 * other bytes are copied as they are, as cJSON does. Once something did not
 * fit, every later call does nothing and json_writer_finish() returns NULL.
 */
struct json_writer {
        char *buf;
        size_t cap, len;
        bool overflow;
};

void json_writer_init(struct json_writer *w, char *buf, size_t cap);
void json_writer_str(struct json_writer *w, const char *key, const char *value);
/* value NULL writes null. */
void json_writer_str_or_null(struct json_writer *w, const char *key, const char *value);
void json_writer_int(struct json_writer *w, const char *key, int64_t value);
/* The NUL-terminated object, or NULL when it did not fit in the buffer. */
const char *json_writer_finish(struct json_writer *w);

#endif
