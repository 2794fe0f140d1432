/* SPDX-License-Identifier: MIT */
/* Fuzz target: csr_parse_validate() on arbitrary bytes from a board. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certs-hsm/csr.h"
#include "certs-hsm/proof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct csr_info info = {};
        uint8_t zero[64] = {};
        int r;

        r = csr_parse_validate(data, size, NULL, &info);
        switch (r) {
        case 0:
                /* What we accept must be self-consistent. */
                if (info.pubkey[0] != 0x04 || !info.key || info.cn[0] == '\0' || strlen(info.cn) > CSR_CN_MAX)
                        abort();
                if (proof_verify_csr(&info, zero, zero, zero) != -EBADMSG) /* r = s = 0 is never valid */
                        abort();
                /* The same CSR with its own CN as the expectation is accepted too. */
                {
                        struct csr_info again = {};
                        char cn[CSR_CN_MAX + 1];
                        memcpy(cn, info.cn, sizeof(cn));
                        if (csr_parse_validate(data, size, cn, &again) != 0)
                                abort();
                        csr_info_done(&again);
                }
                csr_info_done(&info);
                break;
        case -EMSGSIZE:
        case -EBADMSG:
        case -EKEYREJECTED:
        case -EPROTONOSUPPORT:
        case -EBADE:
        case -EPERM:
        case -ENOMEM:
                if (info.key) /* ret must not be written on failure */
                        abort();
                break;
        default:
                abort();
        }
        return 0;
}
