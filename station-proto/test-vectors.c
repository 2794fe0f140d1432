/* SPDX-License-Identifier: MIT */
/* Checks the libraries against the test vectors of PROTOCOL.md §12, read from the document itself. */

/*
 * Both directions, byte for byte: the host library encodes every vector's
 * fields to exactly its frame and wire bytes and decodes the wire bytes to
 * exactly its fields; sp_client produces the station's requests; the board
 * library, fed the station's frames, answers with exactly the board's wire
 * bytes. The crypto material is checked with OpenSSL (CSR and certificate
 * signatures, PROOF signature, CERT_HASH), so the vectors are real.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "station-proto/sp-board.h"
#include "station-proto/sp.h"
#include "test-board-stub.h"

#ifndef PROTOCOL_MD
#error "PROTOCOL_MD must name station-proto/PROTOCOL.md"
#endif

#define MAX_VEC 32
#define MAX_TLV 8
#define MAX_BYTES 2048

struct vtlv {
        uint8_t tag;
        char name[24];
        uint8_t value[MAX_BYTES];
        size_t len;
};

struct vec {
        char name[32];
        char from[16];
        unsigned version, type, flags, seq, len;
        size_t ntlv;
        struct vtlv tlv[MAX_TLV];
        uint8_t frame[MAX_BYTES];
        size_t frame_len;
        uint8_t wire[MAX_BYTES + 64];
        size_t wire_len;
};

static struct vec vecs[MAX_VEC];
static size_t nvec;

/* --- parsing PROTOCOL.md -------------------------------------------------- */

static size_t parse_hex(const char *s, uint8_t *out, size_t cap, size_t have) {
        while (*s) {
                unsigned v;
                int n;

                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s)
                        break;
                if (sscanf(s, "%2x%n", &v, &n) != 1 || n != 2) {
                        fail_msg("bad hex near '%s'", s);
                }
                assert_true(have < cap);
                out[have++] = (uint8_t)v;
                s += 2;
        }
        return have;
}

static unsigned parse_num(const char *s) {
        char *end;
        unsigned long v = strtoul(s, &end, 0);

        assert_true(end != s);
        return (unsigned)v;
}

static int load_vectors(void **state) {
        FILE *f = fopen(PROTOCOL_MD, "re");
        char line[512], key[16] = "";
        struct vec *v = NULL;
        struct vtlv *t = NULL;

        (void)state;
        if (!f) {
                fprintf(stderr, "%s: %s\n", PROTOCOL_MD, strerror(errno));
                return -1;
        }
        nvec = 0;
        while (fgets(line, sizeof line, f)) {
                char *hash, *p = line;
                size_t n = strlen(line);

                while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = 0;
                if (!v) {
                        if (strcmp(line, "```sp-vector") == 0) {
                                if (nvec == MAX_VEC)
                                        return -1;
                                v = &vecs[nvec++];
                                memset(v, 0, sizeof *v);
                                key[0] = 0;
                        }
                        continue;
                }
                if (strcmp(line, "```") == 0) {
                        v = NULL;
                        continue;
                }
                hash = strchr(line, '#');
                if (hash)
                        *hash = 0;
                if (*p != ' ' && *p != 0) {
                        char *colon = strchr(p, ':');

                        if (!colon || colon - p >= (long)sizeof key)
                                return -1;
                        memcpy(key, p, (size_t)(colon - p));
                        key[colon - p] = 0;
                        p = colon + 1;
                        while (*p == ' ')
                                p++;
                        if (strcmp(key, "name") == 0)
                                snprintf(v->name, sizeof v->name, "%s", strtok(p, " "));
                        else if (strcmp(key, "from") == 0)
                                snprintf(v->from, sizeof v->from, "%s", strtok(p, " "));
                        else if (strcmp(key, "version") == 0)
                                v->version = parse_num(p);
                        else if (strcmp(key, "type") == 0)
                                v->type = parse_num(p);
                        else if (strcmp(key, "flags") == 0)
                                v->flags = parse_num(p);
                        else if (strcmp(key, "seq") == 0)
                                v->seq = parse_num(p);
                        else if (strcmp(key, "len") == 0)
                                v->len = parse_num(p);
                        else if (strcmp(key, "tlv") == 0) {
                                char *tag = strtok(p, " "), *name = strtok(NULL, " "), *rest = strtok(NULL, "");

                                if (v->ntlv == MAX_TLV || !tag || !name)
                                        return -1;
                                t = &v->tlv[v->ntlv++];
                                t->tag = (uint8_t)parse_num(tag);
                                snprintf(t->name, sizeof t->name, "%s", name);
                                t->len = rest ? parse_hex(rest, t->value, sizeof t->value, 0) : 0;
                        } else if (strcmp(key, "frame") == 0)
                                v->frame_len = parse_hex(p, v->frame, sizeof v->frame, 0);
                        else if (strcmp(key, "wire") == 0)
                                v->wire_len = parse_hex(p, v->wire, sizeof v->wire, 0);
                        else
                                return -1;
                } else {
                        /* continuation of the previous key's hex */
                        if (strcmp(key, "tlv") == 0)
                                t->len = parse_hex(p, t->value, sizeof t->value, t->len);
                        else if (strcmp(key, "frame") == 0)
                                v->frame_len = parse_hex(p, v->frame, sizeof v->frame, v->frame_len);
                        else if (strcmp(key, "wire") == 0)
                                v->wire_len = parse_hex(p, v->wire, sizeof v->wire, v->wire_len);
                }
        }
        fclose(f);
        return 0;
}

static const struct vec *find_vec(const char *name) {
        for (size_t i = 0; i < nvec; i++)
                if (strcmp(vecs[i].name, name) == 0)
                        return &vecs[i];
        fail_msg("no vector '%s' in PROTOCOL.md", name);
        return NULL;
}

static const struct vtlv *find_tlv(const struct vec *v, uint8_t tag) {
        for (size_t i = 0; i < v->ntlv; i++)
                if (v->tlv[i].tag == tag)
                        return &v->tlv[i];
        fail_msg("vector '%s' has no tag 0x%02x", v->name, tag);
        return NULL;
}

static size_t build_payload(const struct vec *v, uint8_t *buf, size_t cap) {
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, buf, cap);
        for (size_t i = 0; i < v->ntlv; i++)
                assert_int_equal(sp_tlv_put(&w, v->tlv[i].tag, v->tlv[i].value, v->tlv[i].len), 0);
        return w.len;
}

/* --- tests ---------------------------------------------------------------- */

static void test_vectors_complete(void **state) {
        static const uint8_t all_types[] = {
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0xff,
        };

        (void)state;
        assert_int_equal(nvec, 20);
        for (size_t i = 0; i < sizeof all_types; i++) {
                bool seen = false;

                for (size_t k = 0; k < nvec; k++)
                        seen |= vecs[k].type == all_types[i];
                if (!seen)
                        fail_msg("no vector of type 0x%02x", all_types[i]);
        }
        for (size_t i = 0; i < nvec; i++) {
                const struct vec *v = &vecs[i];

                assert_true(v->name[0]);
                assert_true(strcmp(v->from, "station") == 0 || strcmp(v->from, "board") == 0);
                assert_int_equal(v->version, 1);
                assert_int_equal(v->frame_len, v->len + SP_FRAME_OVERHEAD);
                assert_true(v->wire_len > v->frame_len);
                for (size_t k = i + 1; k < nvec; k++)
                        assert_string_not_equal(v->name, vecs[k].name);
                /* the tag names in the document match the registry */
                for (size_t k = 0; k < v->ntlv; k++) {
                        const char *name = sp_tag_to_string(v->tlv[k].tag);

                        assert_non_null(name);
                        assert_string_equal(name, v->tlv[k].name);
                }
        }
}

static void test_vectors_encode(void **state) {
        (void)state;
        for (size_t i = 0; i < nvec; i++) {
                const struct vec *v = &vecs[i];
                uint8_t payload[MAX_BYTES], frame[MAX_BYTES], wire[MAX_BYTES + 64];
                size_t plen = build_payload(v, payload, sizeof payload);
                struct sp_frame f = { .version = (uint8_t)v->version, .type = (uint8_t)v->type,
                                      .flags = (uint8_t)v->flags, .seq = (uint16_t)v->seq,
                                      .len = (uint16_t)plen, .payload = payload };
                uint32_t crc;
                ssize_t n;

                print_message("# encode %s\n", v->name);
                assert_int_equal(plen, v->len);
                /* the decoded frame: header || payload || CRC, big-endian */
                frame[0] = f.version, frame[1] = f.type, frame[2] = f.flags;
                frame[3] = (uint8_t)(f.seq >> 8), frame[4] = (uint8_t)f.seq;
                frame[5] = (uint8_t)(plen >> 8), frame[6] = (uint8_t)plen;
                memcpy(frame + 7, payload, plen);
                crc = sp_crc32(0, frame, 7 + plen);
                frame[7 + plen] = (uint8_t)(crc >> 24), frame[8 + plen] = (uint8_t)(crc >> 16);
                frame[9 + plen] = (uint8_t)(crc >> 8), frame[10 + plen] = (uint8_t)crc;
                assert_int_equal(v->frame_len, plen + 11);
                assert_memory_equal(frame, v->frame, v->frame_len);
                /* the wire bytes */
                n = sp_frame_encode(&f, wire, sizeof wire);
                assert_int_equal(n, (ssize_t)v->wire_len);
                assert_memory_equal(wire, v->wire, v->wire_len);
                assert_true((size_t)n <= sp_frame_encoded_max(plen));
        }
}

struct one {
        int n;
        struct sp_frame f;
        uint8_t payload[MAX_BYTES];
};

static int one_cb(const struct sp_frame *f, int error, void *userdata) {
        struct one *o = userdata;

        assert_int_equal(error, 0);
        o->n++;
        o->f = *f;
        memcpy(o->payload, f->payload, f->len);
        o->f.payload = o->payload;
        return 0;
}

static void decode_wire(const uint8_t *wire, size_t len, struct one *o) {
        struct sp_parser *p;

        assert_int_equal(sp_parser_new(&p, NULL), 0);
        o->n = 0;
        assert_int_equal(sp_parser_feed(p, wire, len, one_cb, o), (ssize_t)len);
        assert_int_equal(o->n, 1);
        sp_parser_free(p);
}

static void test_vectors_decode(void **state) {
        (void)state;
        for (size_t i = 0; i < nvec; i++) {
                const struct vec *v = &vecs[i];
                static struct one o;
                struct sp_tlv_reader r;
                struct sp_tlv t;
                size_t k = 0;

                print_message("# decode %s\n", v->name);
                decode_wire(v->wire, v->wire_len, &o);
                assert_int_equal(o.f.version, v->version);
                assert_int_equal(o.f.type, v->type);
                assert_int_equal(o.f.flags, v->flags);
                assert_int_equal(o.f.seq, v->seq);
                assert_int_equal(o.f.len, v->len);
                assert_memory_equal(o.f.payload, v->frame + 7, v->len);
                sp_tlv_reader_init(&r, o.f.payload, o.f.len);
                while (sp_tlv_next(&r, &t) > 0) {
                        assert_true(k < v->ntlv);
                        assert_int_equal(t.tag, v->tlv[k].tag);
                        assert_int_equal(t.len, v->tlv[k].len);
                        assert_memory_equal(t.value, v->tlv[k].value, t.len);
                        k++;
                }
                assert_int_equal(k, v->ntlv);

                /* typed parse gives the documented fields */
                switch (v->type) {
                case SP_MSG_IDENT: {
                        struct sp_ident id;

                        assert_int_equal(sp_ident_parse(&o.f, &id), 0);
                        assert_int_equal(id.serial_len, find_tlv(v, SP_TAG_SERIAL)->len);
                        assert_memory_equal(id.serial, find_tlv(v, SP_TAG_SERIAL)->value, id.serial_len);
                        assert_string_equal(id.model, "provd-devkit-1");
                        assert_string_equal(id.fw_version, "1.4.2");
                        assert_int_equal(id.caps, SP_CAP_KEYGEN | SP_CAP_LOCK | SP_CAP_WIFI);
                        assert_int_equal(id.proto_version, 1);
                        assert_int_equal(id.max_frame, 4096);
                        assert_false(id.has_pubkey);
                        assert_false(id.locked);
                        break;
                }
                case SP_MSG_CSR: {
                        const uint8_t *der;
                        size_t len;
                        uint8_t pub[SP_PUBKEY_LEN];

                        assert_int_equal(sp_csr_parse(&o.f, &der, &len), 0);
                        assert_int_equal(len, find_tlv(v, SP_TAG_CSR)->len);
                        assert_memory_equal(der, find_tlv(v, SP_TAG_CSR)->value, len);
                        assert_int_equal(sp_csr_pubkey(&o.f, pub), 0);
                        assert_memory_equal(pub, find_tlv(v, SP_TAG_PUBKEY)->value, SP_PUBKEY_LEN);
                        break;
                }
                case SP_MSG_CERT_OK: {
                        uint8_t h[32];

                        assert_int_equal(sp_cert_ok_parse(&o.f, h), 0);
                        assert_memory_equal(h, find_tlv(v, SP_TAG_CERT_HASH)->value, 32);
                        break;
                }
                case SP_MSG_PROOF: {
                        struct sp_proof pr;

                        assert_int_equal(sp_proof_parse(&o.f, &pr), 0);
                        assert_memory_equal(pr.signature, find_tlv(v, SP_TAG_SIGNATURE)->value, 64);
                        assert_memory_equal(pr.cert_hash, find_tlv(v, SP_TAG_CERT_HASH)->value, 32);
                        break;
                }
                case SP_MSG_ERROR: {
                        struct sp_board_error e;

                        assert_int_equal(sp_error_parse(&o.f, &e), 0);
                        assert_int_equal(e.code, SP_ERR_LOCKED);
                        break;
                }
                default:
                        break;
                }
        }
}

/* sp_client, started at the vectors' first seq, sends exactly the station's bytes. */
static void test_vectors_client(void **state) {
        static uint8_t buf[SP_ENCODED_MAX(MAX_BYTES)];
        struct sp_client c;

        (void)state;
        sp_client_init(&c, buf, sizeof buf, 0x4a21);
        for (size_t i = 0; i < nvec; i++) {
                const struct vec *v = &vecs[i];
                uint8_t payload[MAX_BYTES];
                size_t plen;
                ssize_t n;

                if (strcmp(v->from, "station") != 0)
                        continue;
                print_message("# client %s\n", v->name);
                if (v->flags & SP_FLAG_RETRANSMIT) {
                        n = sp_client_retransmit(&c);
                } else {
                        plen = build_payload(v, payload, sizeof payload);
                        n = sp_client_request(&c, (uint8_t)v->type, payload, plen);
                }
                assert_int_equal(n, (ssize_t)v->wire_len);
                assert_memory_equal(c.buf, v->wire, v->wire_len);
        }
}

/* The board library, fed the station's frames in order, answers with exactly the board's bytes. */
static void test_vectors_board(void **state) {
        static struct stub s;
        static uint8_t rx[4096], tx[SPB_TX_BUF(4096)], work[4096];
        struct spb_board b;
        const struct vec *ident = find_vec("ident"), *csr = find_vec("csr"), *proof = find_vec("proof");
        size_t i;

        (void)state;
        stub_init(&s);
        memcpy(s.serial, find_tlv(ident, SP_TAG_SERIAL)->value, find_tlv(ident, SP_TAG_SERIAL)->len);
        s.serial_len = find_tlv(ident, SP_TAG_SERIAL)->len;
        s.caps = SP_CAP_KEYGEN | SP_CAP_LOCK | SP_CAP_WIFI;
        s.csr = find_tlv(csr, SP_TAG_CSR)->value;
        s.csr_len = find_tlv(csr, SP_TAG_CSR)->len;
        memcpy(s.pubkey, find_tlv(csr, SP_TAG_PUBKEY)->value, SP_PUBKEY_LEN);
        memcpy(s.sig, find_tlv(proof, SP_TAG_SIGNATURE)->value, SP_SIG_LEN);
        assert_int_equal(spb_init(&b, &stub_ops, &s, rx, sizeof rx, tx, sizeof tx, work, sizeof work), SPB_OK);

        for (i = 0; i < nvec; i++) {
                const struct vec *req = &vecs[i], *resp;

                if (strcmp(req->from, "station") != 0)
                        continue;
                assert_true(i + 1 < nvec);
                resp = &vecs[i + 1];
                assert_string_equal(resp->from, "board");
                print_message("# board %s -> %s\n", req->name, resp->name);
                s.out_len = 0;
                spb_feed(&b, req->wire, req->wire_len);
                assert_int_equal(s.out_len, resp->wire_len);
                assert_memory_equal(s.out, resp->wire, resp->wire_len);
        }
        /* what the callbacks saw */
        assert_true(s.last_new_key);
        assert_string_equal(s.last_cn, "0123A5C79E4B102FEE");
        assert_int_equal(s.n_get_csr, 1);               /* GET_CSR after LOCK was refused before it */
        assert_int_equal(s.n_prove, 1);                 /* the retransmitted PROVE was replayed */
        assert_memory_equal(s.last_nonce, find_tlv(find_vec("prove"), SP_TAG_NONCE)->value, 32);
        assert_string_equal(s.cfg_keys[0], "aws_endpoint");
        assert_string_equal(s.cfg_keys[1], "thing_name");
        assert_int_equal(s.n_lock, 1);
        assert_int_equal(s.n_result, 1);
        assert_int_equal(spb_get_stats(&b)->replays, 1);
}

/* --- the crypto in the vectors is real ------------------------------------ */

static EVP_PKEY *pkey_from_point(const uint8_t *pub) {
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM *params;
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *pk = NULL;

        assert_non_null(bld);
        assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0));
        assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, SP_PUBKEY_LEN));
        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        assert_true(EVP_PKEY_fromdata_init(ctx) == 1);
        assert_true(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        return pk;
}

static void test_vectors_crypto(void **state) {
        const struct vec *csr = find_vec("csr"), *put = find_vec("put_cert"), *proof = find_vec("proof");
        const struct vec *cert_ok = find_vec("cert_ok"), *prove = find_vec("prove");
        const struct vtlv *dev = find_tlv(put, SP_TAG_DEVICE_CERT), *sig = find_tlv(proof, SP_TAG_SIGNATURE);
        const uint8_t *p;
        uint8_t hash[32], msg[64], der_sig[80], *dp = der_sig, point[SP_PUBKEY_LEN];
        X509_REQ *req;
        X509 *cert, *signer;
        EVP_PKEY *pub, *k;
        EVP_MD_CTX *md;
        ECDSA_SIG *es;
        size_t plen = sizeof point;
        int der_len;

        (void)state;
        /* CERT_HASH = SHA-256(DEVICE_CERT), in CERT_OK and PROOF */
        spb_sha256(dev->value, dev->len, hash);
        assert_memory_equal(hash, find_tlv(cert_ok, SP_TAG_CERT_HASH)->value, 32);
        assert_memory_equal(hash, find_tlv(proof, SP_TAG_CERT_HASH)->value, 32);

        /* the CSR is signed by the key in PUBKEY, with the CN asked for */
        p = find_tlv(csr, SP_TAG_CSR)->value;
        req = d2i_X509_REQ(NULL, &p, (long)find_tlv(csr, SP_TAG_CSR)->len);
        assert_non_null(req);
        pub = pkey_from_point(find_tlv(csr, SP_TAG_PUBKEY)->value);
        assert_int_equal(X509_REQ_verify(req, pub), 1);
        k = X509_REQ_get0_pubkey(req);
        assert_true(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &plen));
        assert_memory_equal(point, find_tlv(csr, SP_TAG_PUBKEY)->value, SP_PUBKEY_LEN);
        {
                const struct vtlv *want = find_tlv(find_vec("get_csr"), SP_TAG_SUBJECT_CN);
                const X509_NAME *name = X509_REQ_get_subject_name(req);
                int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
                const ASN1_STRING *cn;

                assert_true(i >= 0);
                assert_int_equal(X509_NAME_get_index_by_NID(name, NID_commonName, i), -1);     /* only one */
                cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
                assert_int_equal(ASN1_STRING_length(cn), want->len);
                assert_memory_equal(ASN1_STRING_get0_data(cn), want->value, want->len);
        }

        /* the device certificate carries that key and is signed by the signer certificate */
        p = dev->value;
        cert = d2i_X509(NULL, &p, (long)dev->len);
        assert_non_null(cert);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), pub), 1);
        p = find_tlv(put, SP_TAG_SIGNER_CERT)->value;
        signer = d2i_X509(NULL, &p, (long)find_tlv(put, SP_TAG_SIGNER_CERT)->len);
        assert_non_null(signer);
        assert_int_equal(X509_verify(cert, X509_get0_pubkey(signer)), 1);

        /* PROOF: ECDSA-P256-SHA256 over NONCE || CERT_HASH, raw r || s */
        memcpy(msg, find_tlv(prove, SP_TAG_NONCE)->value, 32);
        memcpy(msg + 32, hash, 32);
        es = ECDSA_SIG_new();
        assert_true(ECDSA_SIG_set0(es, BN_bin2bn(sig->value, 32, NULL), BN_bin2bn(sig->value + 32, 32, NULL)));
        der_len = i2d_ECDSA_SIG(es, &dp);
        assert_true(der_len > 0);
        md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
        assert_int_equal(EVP_DigestVerify(md, der_sig, (size_t)der_len, msg, sizeof msg), 1);
        /* and a different nonce does not verify */
        msg[0] ^= 1;
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
        assert_int_not_equal(EVP_DigestVerify(md, der_sig, (size_t)der_len, msg, sizeof msg), 1);

        EVP_MD_CTX_free(md);
        ECDSA_SIG_free(es);
        X509_free(signer);
        X509_free(cert);
        EVP_PKEY_free(pub);
        X509_REQ_free(req);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors_complete),
                cmocka_unit_test(test_vectors_encode),
                cmocka_unit_test(test_vectors_decode),
                cmocka_unit_test(test_vectors_client),
                cmocka_unit_test(test_vectors_board),
                cmocka_unit_test(test_vectors_crypto),
        };

        return cmocka_run_group_tests(tests, load_vectors, NULL);
}
