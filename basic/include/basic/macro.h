/* SPDX-License-Identifier: MIT */
/* Attributes and small macros every component uses (header-only, part of basic/). */
#ifndef BASIC_MACRO_H
#define BASIC_MACRO_H

#include <stddef.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
/* The project builds with -fvisibility=hidden: what another binary must find
 * by name (a fuzz entry point) says so. */
#define _public_ __attribute__((visibility("default")))

#define container_of(ptr, type, member) \
        ((type *)((char *)(ptr) - offsetof(type, member)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#endif
