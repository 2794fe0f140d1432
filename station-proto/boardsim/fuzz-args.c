/* SPDX-License-Identifier: MIT */
/* Fuzz target: provd-boardsim command line, fault specs and control-FIFO lines. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

#define MAX_INPUT 4096
#define MAX_ARGS 64

/*
 * The input is a command line with one argument per line. Each line is also
 * fed to the fault-spec and control-line parsers on its own.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char buf[MAX_INPUT + 1], err[256];
        char *argv[MAX_ARGS + 1];
        struct sim_options opt;
        struct fault_spec f;
        struct control_req req;
        int argc = 0;

        if (size > MAX_INPUT)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';

        argv[argc++] = (char *)"provd-boardsim";
        for (char *line = buf; argc < MAX_ARGS;) {
                char *nl = strchr(line, '\n');

                if (nl)
                        *nl = '\0';
                argv[argc++] = line;
                (void)fault_spec_parse(line, &f);
                (void)control_parse(line, strlen(line), &req);
                if (!nl)
                        break;
                line = nl + 1;
        }
        argv[argc] = NULL;
        if (sim_options_parse(argc, argv, &opt, err, sizeof(err)) == 0) {
                /* Whatever parsed must be within the documented bounds. */
                if (opt.count > SIM_MAX_BOARDS || opt.n_faults > SIM_MAX_FAULTS || opt.genkey_ms > 60000)
                        abort();
                for (size_t i = 0; i < opt.n_faults; i++)
                        if (opt.faults[i].n_ranges > FAULT_MAX_RANGES ||
                            (opt.faults[i].is_fraction && (opt.faults[i].fraction < 0 || opt.faults[i].fraction > 1)))
                                abort();
        }
        if (memchr(err, '\0', sizeof(err)) == NULL)
                abort();
        return 0;
}
