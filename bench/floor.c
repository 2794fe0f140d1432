/* SPDX-License-Identifier: MIT */
/* bench-floor: prints the per-board crypto floor (crypto_floor_measure) as one
 * JSON line, for bench/bench.py.
 *
 *   bench-floor [iterations]      (default 2000; CPU time of this thread)
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs-hsm/crypto-floor.h"

int main(int argc, char **argv) {
        struct crypto_floor f;
        unsigned long iterations = 0;
        char *end;
        int r;

        if (argc > 2 || (argc == 2 && (argv[1][0] == '-' || argv[1][0] == 0))) {
                fprintf(stderr, "usage: bench-floor [iterations]\n");
                return 2;
        }
        if (argc == 2) {
                errno = 0;
                iterations = strtoul(argv[1], &end, 10);
                if (errno || *end || iterations > 10000000) {
                        fprintf(stderr, "bench-floor: bad iteration count '%s'\n", argv[1]);
                        return 2;
                }
        }
        r = crypto_floor_measure((unsigned)iterations, &f);
        if (r < 0) {
                fprintf(stderr, "bench-floor: measuring failed: %s\n", strerror(-r));
                return 1;
        }
        printf("{\"csr_verify_us\":%.2f,\"cert_sign_us\":%.2f,\"proof_verify_us\":%.2f,"
               "\"total_us\":%.2f,\"iterations\":%u}\n",
               f.csr_verify_us, f.cert_sign_us, f.proof_verify_us, f.total_us, f.iterations);
        return 0;
}
