/* SPDX-License-Identifier: MIT */
/* Fuzz target: the configuration file parser and validator. */

#include <stdint.h>
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
        free(text);
        return 0;
}
