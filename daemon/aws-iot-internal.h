/* SPDX-License-Identifier: MIT */
/* aws-iot's private header: what aws-iot.c, aws-iot-request.c and aws-iot-response.c share. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* @s has min..max characters, each alphanumeric or in @extra (NULL: false). */
bool aws_charset(const char *s, size_t min, size_t max, const char *extra);
