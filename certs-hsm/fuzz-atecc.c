/* SPDX-License-Identifier: MIT */
/* Fuzz target: cert_atecc_rebuild() on an arbitrary compressed form, key and CN (what a board parses). */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certs-hsm/atecc.h"
#include "signer-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input: 72-byte compressed form || 65-byte point || CN (the rest, at most 64 bytes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint8_t tbs[320];
        char cn[65];
        struct cert_atecc_def def = {
                .tbs = tbs, .tbs_len = sizeof(tbs), .serial_off = 10, .not_before_off = 60, .not_after_off = 80,
                .cn_off = 100, .pubkey_off = 180, .ski_off = 260, .template_id = 2, .chain_id = 1,
        };
        uint8_t *der = NULL, raw[64];
        size_t len = 0, n;
        int r;

        if (size < CERT_COMPRESSED_LEN + 65)
                return 0;
        n = size - CERT_COMPRESSED_LEN - 65;
        if (n > 64)
                n = 64;
        memcpy(cn, data + CERT_COMPRESSED_LEN + 65, n);
        cn[n] = '\0';
        def.cn_len = strlen(cn);
        r = cert_atecc_rebuild(&def, data, data + CERT_COMPRESSED_LEN, cn, &der, &len);
        switch (r) {
        case 0: {
                /* The signature at the end gives back r || s exactly. */
                const uint8_t *end = der + len;
                size_t sig_len = len - 4 - sizeof(tbs) - 12 - 3;
                if (len < 4 + sizeof(tbs) + 12 + 3 + 8 || der[0] != 0x30 ||
                    certs_sig_der_to_raw(end - sig_len, sig_len, raw) < 0 || memcmp(raw, data, 64) != 0)
                        abort();
                if (memcmp(der + 4 + def.cn_off, cn, def.cn_len) != 0 ||
                    memcmp(der + 4 + def.pubkey_off, data + CERT_COMPRESSED_LEN, 65) != 0 ||
                    (der[4 + def.serial_off] & 0xc0) != 0x40)
                        abort();
                free(der);
                break;
        }
        case -EINVAL:
        case -EBADMSG:
        case -ENOMEM:
                if (der)
                        abort();
                break;
        default:
                abort();
        }
        return 0;
}
