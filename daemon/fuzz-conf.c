/* SPDX-License-Identifier: MIT */
/* Fuzz target: the configuration file parser and validator, and the serial allow-list's parser. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct conf c;
        char err[512];
        char *text;

        if (size > 65536)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        conf_init(&c);
        if (conf_parse_string(&c, text, "fuzz.conf", err, sizeof err) == 0) {
                (void)conf_validate(&c, err, sizeof err);
                (void)conf_slot_label(&c, "/dev/ttyACM0", "1-1.4");
        }
        conf_deinit(&c);

        /* The same bytes as a [profile] serial_allowlist file. */
        FILE *f = fmemopen(text, size, "r");
        if (f) {
                conf_init(&c);
                c.serial_allowlist = strdup("fuzz.list");
                if (c.serial_allowlist && conf_read_allowlist(&c, f, err, sizeof err) == 0)
                        for (size_t i = 0; i < c.n_allowed_serials; i++)
                                if (!conf_serial_allowed(&c, c.allowed_serials[i]))
                                        abort();
                fclose(f);
                conf_deinit(&c);
        }
        free(text);
        return 0;
}
