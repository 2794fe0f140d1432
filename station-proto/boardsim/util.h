/* SPDX-License-Identifier: MIT */
/* provd-boardsim's helpers: basic/'s cleanup and hex, and the one hex form serials are printed in. */
#ifndef BOARDSIM_UTIL_H
#define BOARDSIM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "basic/cleanup.h"
#include "basic/hex.h"
#include "basic/macro.h"

/* @len bytes as upper-case hex into @out (2 * @len + 1 bytes, NUL-terminated): how serials are printed. */
static inline void hex_upper(const uint8_t *p, size_t len, char *out) {
        hex_encode(p, len, out, true);
}

#endif
