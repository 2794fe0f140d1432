/* SPDX-License-Identifier: MIT */
/* The fuzz entry point, exported from the -fvisibility=hidden build: force-included into every fuzz target (tests/meson.build). */
#ifndef PROVD_TESTS_FUZZ_H
#define PROVD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "basic/macro.h"

/* A later declaration without the attribute (each fuzz-*.c has one) keeps it. */
_public_ int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
