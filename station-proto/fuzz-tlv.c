/* SPDX-License-Identifier: MIT */
/* Fuzz target: TLV reader/writer and the typed parsers on arbitrary payloads. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station-proto/sp.h"

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-tlv: %s\n", what);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t types[] = {
                SP_MSG_IDENT, SP_MSG_CSR, SP_MSG_CERT_OK, SP_MSG_PROOF, SP_MSG_ERROR, SP_MSG_PONG, SP_MSG_HELLO,
        };
        static uint8_t copy[65536 + 1024];
        struct sp_tlv_reader r;
        struct sp_tlv_writer w;
        struct sp_tlv t;
        size_t count = 0, bytes = 0;
        int k, valid;

        if (size > 65535)
                return 0;

        /* Reader: every TLV inside the buffer; validate agrees with iteration. */
        sp_tlv_reader_init(&r, data, size);
        sp_tlv_writer_init(&w, copy, sizeof copy);
        while ((k = sp_tlv_next(&r, &t)) > 0) {
                check(t.value >= data && t.value + t.len <= data + size, "value out of bounds");
                check(t.value == data + bytes + 3, "value position");
                bytes += 3u + t.len;
                count++;
                check(sp_tlv_put(&w, t.tag, t.value, t.len) == 0, "copy");
        }
        valid = sp_tlv_validate(data, size);
        check(k == 0 || k == -EBADMSG, "next result");
        check((k == 0) == (valid == 0), "validate disagrees");
        if (valid == 0) {
                /* Writing the TLVs back gives the same bytes. */
                check(bytes == size && w.len == size && memcmp(copy, data, size) == 0, "round trip");
        }
        for (unsigned tag = 0; tag < 256; tag += 17) {
                int f = sp_tlv_find(data, size, (uint8_t)tag, &t);
                check(valid == 0 ? (f == 0 || f == -ENOENT) : f == -EBADMSG, "find");
        }

        /* Typed parsers and the dump on this payload under every response type. */
        for (size_t i = 0; i < sizeof types; i++) {
                struct sp_frame f = { .version = 1, .type = types[i], .seq = 1, .len = (uint16_t)size,
                                      .payload = data };
                struct sp_ident id;
                struct sp_proof pr;
                struct sp_board_error e;
                const uint8_t *der;
                size_t der_len;
                uint8_t pub[SP_PUBKEY_LEN], hash[SP_SHA256_LEN];
                char text[64];
                int rr;

                rr = sp_ident_parse(&f, &id);
                check(rr != 0 || (valid == 0 && types[i] == SP_MSG_IDENT), "ident accepted bad payload");
                if (rr == 0)
                        check(id.model[sizeof id.model - 1] == 0 && id.fw_version[sizeof id.fw_version - 1] == 0,
                              "ident strings");
                rr = sp_csr_parse(&f, &der, &der_len);
                if (rr == 0)
                        check(der + der_len <= data + size, "csr bounds");
                (void)sp_csr_pubkey(&f, pub);
                (void)sp_proof_parse(&f, &pr);
                (void)sp_cert_ok_parse(&f, hash);
                rr = sp_error_parse(&f, &e);
                if (rr == 0)
                        check(strlen(e.text) <= 128, "error text");
                check(sp_frame_describe(&f, text, sizeof text) >= 0, "describe");
                check(strlen(text) < sizeof text, "describe bound");
        }
        (void)count;
        return 0;
}
