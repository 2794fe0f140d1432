/* SPDX-License-Identifier: MIT */
/* Fuzz target: certs_cert_info_new() and certs_der_to_pem() on arbitrary bytes given as a signer certificate. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certs-hsm/cert-info.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct certs_cert_info *info = NULL;
        char *pem;
        int r;

        r = certs_cert_info_new(&info, data, size);
        switch (r) {
        case 0:
                if (!info || !info->subject)
                        abort();
                info = certs_cert_info_free(info);
                if (info)
                        abort();
                break;
        case -EBADMSG:
        case -E2BIG:
        case -ENOMEM:
                /* Refused: the out-parameter is untouched. */
                if (info)
                        abort();
                break;
        default:
                abort();
        }

        pem = certs_der_to_pem(data, size);
        if (size <= CERTS_CERT_INFO_MAX_DER) {
                if (!pem || strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) != 0 ||
                    !strstr(pem, "-----END CERTIFICATE-----\n"))
                        abort();
        } else if (pem)
                abort();
        free(pem);
        return 0;
}
