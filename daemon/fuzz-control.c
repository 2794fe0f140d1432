/* SPDX-License-Identifier: MIT */
/* Fuzz target: control socket request lines. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct control_request req;
        char err[160];

        if (size > CONTROL_MAX_LINE + 16)
                return 0;
        if (control_parse_request((const char *)data, size, &req, err, sizeof err) == 0) {
                /* Whatever was accepted must satisfy the documented bounds. */
                if (req.cmd >= _CONTROL_CMD_MAX || strlen(req.serial) > CONTROL_SERIAL_MAX || req.since_ms < 0)
                        abort();
                if (req.cmd == CONTROL_REISSUE && req.serial[0] == 0)
                        abort();
        } else if (strnlen(err, sizeof err) == sizeof err || err[0] == 0)
                abort();        /* every rejection explains itself */
        return 0;
}
