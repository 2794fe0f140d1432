/* SPDX-License-Identifier: MIT */
/* boardsim-host: a small station on the host library that provisions boards over ptys, for tests and measurements. */

/*
 * Not provd: one poll() loop, a throw-away CA made at start, every check the
 * protocol allows (CSR signature, key, CN, no CA request, CERT_OK hash,
 * PROOF hash and signature). Prints one line per session:
 *   ok PATH serial=HEX pubkey=HEX cert_sha256=HEX ms=N
 *   fail PATH step=STEP reason=WORD [detail]
 * and at the end: summary sessions=N ok=N failed=N elapsed_ms=N
 * --loop N keeps going: after a session it waits for the simulator's hangup,
 * reopens the path (retrying until the new pty is there) and stops after N
 * sessions in all (with provd-boardsim --cycles).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "station-proto/sp.h"

#include "util.h"

#define MAX_CONNS       1024
#define CLIENT_BUF      SP_ENCODED_MAX(SP_MAX_FRAME_DEFAULT)
#define HUP_WAIT_MS     3000
#define REOPEN_WAIT_MS  5000

enum step {
        ST_HELLO, ST_CSR, ST_CERT, ST_CONFIG, ST_PROVE, ST_LOCK, ST_RESULT,
        ST_WAIT_HUP,            /* --loop: session over, waiting for the simulator to hang up */
        ST_REOPEN,              /* --loop: waiting for the symlink to point to a new pty */
        ST_FINISHED,
};

static const char *const step_names[] = {
        [ST_HELLO] = "hello", [ST_CSR] = "csr", [ST_CERT] = "cert", [ST_CONFIG] = "config",
        [ST_PROVE] = "prove", [ST_LOCK] = "lock", [ST_RESULT] = "result", [ST_WAIT_HUP] = "hangup",
        [ST_REOPEN] = "reopen", [ST_FINISHED] = "finished",
};

struct conn {
        const char *path;
        int fd;
        struct sp_parser *parser;
        struct sp_client client;
        uint8_t client_buf[CLIENT_BUF];
        enum step step;
        unsigned tries;
        uint64_t deadline;
        uint64_t start;

        struct sp_ident ident;
        char cn[2 * 32 + 1];
        uint8_t pubkey[SP_PUBKEY_LEN];
        EVP_PKEY *pub;
        uint8_t *cert_der;
        int cert_len;
        uint8_t cert_hash[SP_SHA256_LEN];
        uint8_t nonce[SP_NONCE_LEN];
        bool failed;
        uint8_t verdict;
        unsigned bad_frames, oversize;  /* discarded by the parser during this step */
};

static struct {
        unsigned timeout_ms, retries;
        bool lock;
        int new_key;            /* -1 auto, 0 never, 1 always */
        unsigned loop_total;
        EVP_PKEY *ca_key;
        X509 *ca;
        uint8_t ca_pub[SP_PUBKEY_LEN];
        EVP_MD *sha256;
        unsigned started, ok, failed;
} g = { .timeout_ms = 1000, .retries = 2, .new_key = -1 };

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sha256(const void *p, size_t len, uint8_t out[SP_SHA256_LEN]) {
        unsigned n = SP_SHA256_LEN;

        if (EVP_Digest(p, len, out, &n, g.sha256, NULL) != 1)
                memset(out, 0, SP_SHA256_LEN);
}

/* --- CA -------------------------------------------------------------------- */

static int pubkey_bytes(const EVP_PKEY *k, uint8_t out[SP_PUBKEY_LEN]) {
        size_t len = 0;

        if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, SP_PUBKEY_LEN, &len) != 1 ||
            len != SP_PUBKEY_LEN)
                return -EBADMSG;
        return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
        X509V3_CTX ctx;
        X509_EXTENSION *ext;
        int ok;

        X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
        if (!ext)
                return -EIO;
        ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return ok == 1 ? 0 : -EIO;
}

static X509 *make_cert(EVP_PKEY *subject_key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca) {
        X509 *c = X509_new();
        uint8_t serial[16];
        BIGNUM *bn = NULL;

        if (!c || RAND_bytes(serial, sizeof(serial)) != 1)
                goto fail;
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) || X509_set_version(c, 2) != 1 ||
            !X509_gmtime_adj(X509_getm_notBefore(c), 0) || !X509_gmtime_adj(X509_getm_notAfter(c), 365L * 86400) ||
            X509_NAME_add_entry_by_NID(X509_get_subject_name(c), NID_commonName, MBSTRING_ASC,
                                       (const unsigned char *)cn, -1, -1, 0) != 1 ||
            X509_set_issuer_name(c, X509_get_subject_name(issuer ? issuer : c)) != 1 ||
            X509_set_pubkey(c, subject_key) != 1)
                goto fail;
        if (add_ext(c, issuer ? issuer : c, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE") < 0 ||
            add_ext(c, issuer ? issuer : c, NID_key_usage,
                    ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") < 0)
                goto fail;
        if (X509_sign(c, issuer_key, g.sha256) <= 0)
                goto fail;
        BN_free(bn);
        return c;
fail:
        BN_free(bn);
        X509_free(c);
        return NULL;
}

static int ca_init(void) {
        g.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        g.ca_key = EVP_EC_gen("P-256");
        if (!g.sha256 || !g.ca_key)
                return -EIO;
        g.ca = make_cert(g.ca_key, "boardsim-host test CA", NULL, g.ca_key, true);
        if (!g.ca)
                return -EIO;
        return pubkey_bytes(g.ca_key, g.ca_pub);
}

/* --- sessions -------------------------------------------------------------- */

static void conn_reset_session(struct conn *c) {
        EVP_PKEY_free(c->pub);
        c->pub = NULL;
        OPENSSL_free(c->cert_der);
        c->cert_der = NULL;
        c->cert_len = 0;
        c->failed = false;
        memset(&c->ident, 0, sizeof(c->ident));
}

static int conn_send(struct conn *c, uint8_t type, const void *payload, size_t len) {
        ssize_t n = sp_client_request(&c->client, type, payload, len);

        if (n < 0)
                return (int)n;
        c->tries = 0;
        c->bad_frames = c->oversize = 0;
        c->deadline = now_ms() + g.timeout_ms;
        /* A pty takes a whole request at once unless the station side is full; good enough for a test tool. */
        if (write(c->fd, c->client.buf, (size_t)n) != n)
                return errno == EIO ? -EIO : -EPROTO;
        return 0;
}

static void end_session(struct conn *c) {
        c->step = g.loop_total ? ST_WAIT_HUP : ST_FINISHED;
        c->deadline = now_ms() + HUP_WAIT_MS;
}

static void send_result(struct conn *c, uint8_t verdict) {
        uint8_t buf[8];
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, buf, sizeof(buf));
        sp_tlv_put_u8(&w, SP_TAG_RESULT, verdict);
        c->verdict = verdict;
        c->step = ST_RESULT;
        if (conn_send(c, SP_MSG_RESULT, buf, w.len) < 0)
                c->deadline = 0;        /* give up at the next tick */
}

__attribute__((format(printf, 3, 4)))
static void fail(struct conn *c, const char *reason, const char *fmt, ...) {
        char detail[256] = "";
        va_list ap;

        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(detail, sizeof(detail), fmt, ap);
                va_end(ap);
        }
        printf("fail %s step=%s reason=%s%s%s\n", c->path, step_names[c->step], reason, detail[0] ? " " : "", detail);
        fflush(stdout);
        g.failed++;
        c->failed = true;
        /* Best effort, one try, as the protocol says: the simulator counts the verdict. */
        if (c->step != ST_RESULT && c->step < ST_WAIT_HUP && c->fd >= 0)
                send_result(c, SP_RESULT_FAILED);
        else
                end_session(c);
}

/*
 * A failed write: EIO on a tty means the other side hung up, which read()
 * would report next; say so, whichever of the two the host saw first.
 */
static void fail_write(struct conn *c, int r) {
        if (r == -EIO)
                fail(c, "hangup", "write: the board hung up");
        else
                fail(c, "io", "write failed");
}

static void start_session(struct conn *c) {
        uint8_t buf[16], seq[2];
        struct sp_tlv_writer w;

        conn_reset_session(c);
        sp_parser_reset(c->parser);
        RAND_bytes(seq, sizeof(seq));
        sp_client_init(&c->client, c->client_buf, sizeof(c->client_buf), (uint16_t)(seq[0] << 8 | seq[1]));
        sp_tlv_writer_init(&w, buf, sizeof(buf));
        sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, SP_PROTO_VERSION);
        sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, SP_MAX_FRAME_DEFAULT);
        c->step = ST_HELLO;
        c->start = now_ms();
        g.started++;
        int r = conn_send(c, SP_MSG_HELLO, buf, w.len);
        if (r < 0)
                fail_write(c, r);
}

static int open_port(struct conn *c) {
        struct termios t;
        int fd;

        fd = open(c->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (tcgetattr(fd, &t) == 0) {
                cfmakeraw(&t);
                tcsetattr(fd, TCSANOW, &t);
        }
        tcflush(fd, TCIOFLUSH);
        c->fd = fd;
        return 0;
}

/* CSR checks a station must make (PROTOCOL.md §6.2). Returns NULL or the failure reason. */
static const char *check_csr(struct conn *c, const uint8_t *der, size_t len, const uint8_t tlv_pub[SP_PUBKEY_LEN],
                             char *detail, size_t dlen) {
        const unsigned char *p = der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
        const char *why = NULL;
        EVP_PKEY *k;
        uint8_t pub[SP_PUBKEY_LEN];
        char cn[128] = "";
        int cn_len;
        STACK_OF(X509_EXTENSION) *exts;

        detail[0] = '\0';
        if (!req || p != der + len)
                return "csr-parse";
        k = X509_REQ_get0_pubkey(req);
        if (!k || !EVP_PKEY_is_a(k, "EC") || pubkey_bytes(k, pub) < 0) {
                why = "key-type";
                goto out;
        }
        if (X509_REQ_verify(req, k) != 1) {
                why = "badsig";
                goto out;
        }
        if (memcmp(pub, tlv_pub, SP_PUBKEY_LEN) != 0) {
                why = "pubkey-mismatch";
                goto out;
        }
        if (c->ident.has_pubkey && memcmp(pub, c->ident.pubkey, SP_PUBKEY_LEN) != 0 && g.new_key != 1) {
                why = "pubkey-changed";
                goto out;
        }
        /*
         * No CN leaves @cn empty (-1); the returned length must be the whole
         * wanted CN, so an embedded NUL ("SERIAL\0junk") does not pass strcmp().
         */
        cn_len = X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
        if (cn_len < 0 || (size_t)cn_len != strlen(c->cn) || strcmp(cn, c->cn) != 0) {
                snprintf(detail, dlen, "cn=%s cn_len=%d want=%s", cn, cn_len, c->cn);
                why = "cn";
                goto out;
        }
        exts = X509_REQ_get_extensions(req);
        for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts); i++) {
                X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
                if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_basic_constraints) {
                        BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
                        if (bc && bc->ca)
                                why = "ca";
                        BASIC_CONSTRAINTS_free(bc);
                }
        }
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        if (why)
                goto out;
        EVP_PKEY_up_ref(k);
        c->pub = k;
        memcpy(c->pubkey, pub, sizeof(pub));
out:
        X509_REQ_free(req);
        ERR_clear_error();
        return why;
}

static bool proof_ok(struct conn *c, const struct sp_proof *pr) {
        uint8_t msg[SP_NONCE_LEN + SP_SHA256_LEN], der[80];
        unsigned char *p = der;
        ECDSA_SIG *sig = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(pr->signature, 32, NULL), *s = BN_bin2bn(pr->signature + 32, 32, NULL);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = false;
        int len;

        if (!sig || !r || !s || !ctx || ECDSA_SIG_set0(sig, r, s) != 1)
                goto out;
        r = s = NULL;
        len = i2d_ECDSA_SIG(sig, &p);
        memcpy(msg, c->nonce, SP_NONCE_LEN);
        memcpy(msg + SP_NONCE_LEN, pr->cert_hash, SP_SHA256_LEN);
        ok = len > 0 && EVP_DigestVerifyInit(ctx, NULL, g.sha256, NULL, c->pub) == 1 &&
             EVP_DigestVerify(ctx, der, (size_t)len, msg, sizeof(msg)) == 1;
out:
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

static void session_done(struct conn *c) {
        char pub[2 * SP_PUBKEY_LEN + 1], h[2 * SP_SHA256_LEN + 1];

        hex_upper(c->pubkey, SP_PUBKEY_LEN, pub);
        hex_upper(c->cert_hash, SP_SHA256_LEN, h);
        printf("ok %s serial=%s pubkey=%s cert_sha256=%s ms=%" PRIu64 "\n", c->path, c->cn, pub, h,
               now_ms() - c->start);
        fflush(stdout);
        g.ok++;
}

static void next_request(struct conn *c) {
        uint8_t buf[8192];
        struct sp_tlv_writer w;
        int r = 0;

        sp_tlv_writer_init(&w, buf, sizeof(buf));
        switch (c->step) {
        case ST_CSR: {
                bool nk = g.new_key == 1 || (g.new_key == -1 && !c->ident.has_pubkey);
                if (nk)
                        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
                sp_tlv_put_str(&w, SP_TAG_SUBJECT_CN, c->cn);
                r = conn_send(c, SP_MSG_GET_CSR, buf, w.len);
                break;
        }
        case ST_CERT:
                sp_tlv_put(&w, SP_TAG_DEVICE_CERT, c->cert_der, (size_t)c->cert_len);
                {
                        unsigned char *der = NULL;
                        int n = i2d_X509(g.ca, &der);
                        if (n > 0)
                                sp_tlv_put(&w, SP_TAG_SIGNER_CERT, der, (size_t)n);
                        OPENSSL_free(der);
                }
                sp_tlv_put(&w, SP_TAG_ROOT_PUBKEY, g.ca_pub, SP_PUBKEY_LEN);
                r = conn_send(c, SP_MSG_PUT_CERT, buf, w.len);
                break;
        case ST_CONFIG:
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "thing_name");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, c->cn);
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "aws_endpoint");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "example-ats.iot.eu-west-1.amazonaws.com");
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_ssid");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "factory-line");
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_psk");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "correct horse\\battery");
                r = conn_send(c, SP_MSG_PUT_CONFIG, buf, w.len);
                break;
        case ST_PROVE:
                RAND_bytes(c->nonce, sizeof(c->nonce));
                sp_tlv_put(&w, SP_TAG_NONCE, c->nonce, sizeof(c->nonce));
                r = conn_send(c, SP_MSG_PROVE, buf, w.len);
                break;
        case ST_LOCK:
                r = conn_send(c, SP_MSG_LOCK, NULL, 0);
                break;
        default:
                return;
        }
        if (w.error < 0)
                fail(c, "encode", "%s", strerror(-w.error));
        else if (r < 0)
                fail_write(c, r);
}

static void handle_response(struct conn *c, const struct sp_frame *f) {
        char detail[256];
        uint8_t hash[SP_SHA256_LEN];

        if (f->type == SP_MSG_ERROR) {
                struct sp_board_error e;
                if (sp_error_parse(f, &e) < 0)
                        e.code = 0;
                if (c->step == ST_RESULT) {
                        end_session(c);
                        return;
                }
                fail(c, "board-error", "code=%u", e.code);
                return;
        }
        switch (c->step) {
        case ST_HELLO:
                if (sp_ident_parse(f, &c->ident) < 0) {
                        fail(c, "ident-parse", NULL);
                        return;
                }
                hex_upper(c->ident.serial, c->ident.serial_len, c->cn);
                c->step = ST_CSR;
                break;
        case ST_CSR: {
                const uint8_t *der;
                size_t len;
                uint8_t tlv_pub[SP_PUBKEY_LEN];
                const char *why;

                if (sp_csr_parse(f, &der, &len) < 0 || sp_csr_pubkey(f, tlv_pub) < 0) {
                        fail(c, "csr-parse", NULL);
                        return;
                }
                why = check_csr(c, der, len, tlv_pub, detail, sizeof(detail));
                if (why) {
                        fail(c, why, "%s", detail);
                        return;
                }
                X509 *cert = make_cert(c->pub, c->cn, g.ca, g.ca_key, false);
                c->cert_len = cert ? i2d_X509(cert, &c->cert_der) : -1;
                X509_free(cert);
                if (c->cert_len <= 0) {
                        fail(c, "issue", NULL);
                        return;
                }
                sha256(c->cert_der, (size_t)c->cert_len, c->cert_hash);
                c->step = ST_CERT;
                break;
        }
        case ST_CERT:
                if (sp_cert_ok_parse(f, hash) < 0 || memcmp(hash, c->cert_hash, sizeof(hash)) != 0) {
                        fail(c, "cert-hash", NULL);
                        return;
                }
                c->step = ST_CONFIG;
                break;
        case ST_CONFIG:
                c->step = ST_PROVE;
                break;
        case ST_PROVE: {
                struct sp_proof pr;
                if (sp_proof_parse(f, &pr) < 0) {
                        fail(c, "proof-parse", NULL);
                        return;
                }
                if (memcmp(pr.cert_hash, c->cert_hash, SP_SHA256_LEN) != 0) {
                        fail(c, "proof-hash", NULL);
                        return;
                }
                if (!proof_ok(c, &pr)) {
                        fail(c, "proof-signature", NULL);
                        return;
                }
                c->step = g.lock ? ST_LOCK : ST_RESULT;
                break;
        }
        case ST_LOCK:
                c->step = ST_RESULT;
                break;
        case ST_RESULT:
                if (!c->failed)
                        session_done(c);
                end_session(c);
                return;
        default:
                return;
        }
        if (c->step == ST_RESULT)
                send_result(c, SP_RESULT_PROVISIONED);
        else
                next_request(c);
}

static int on_frame(const struct sp_frame *f, int error, void *userdata) {
        struct conn *c = userdata;

        if (error == -EMSGSIZE)
                c->oversize++;
        else if (error < 0)
                c->bad_frames++;
        if (error < 0 || !f)
                return 0;               /* noise: the retransmit timer copes */
        if (c->step >= ST_WAIT_HUP)
                return 0;
        switch (sp_client_match(&c->client, f)) {
        case 1:
                handle_response(c, f);
                break;
        case 0:
                break;
        default:
                fail(c, "protocol", "type=0x%02x", f->type);
                break;
        }
        return 0;
}

static void conn_close(struct conn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* After a hangup in --loop mode: next session, or finished. */
static void conn_after_session(struct conn *c) {
        conn_close(c);
        if (g.loop_total && g.started < g.loop_total) {
                c->step = ST_REOPEN;
                c->deadline = now_ms() + REOPEN_WAIT_MS;
        } else
                c->step = ST_FINISHED;
}

static void on_timeout(struct conn *c) {
        ssize_t n;

        switch (c->step) {
        case ST_WAIT_HUP:
                /* No hangup: the simulator finished this slot. */
                conn_close(c);
                c->step = ST_FINISHED;
                return;
        case ST_REOPEN:
                /*
                 * The old pty's /dev/pts node went away with its master, so an
                 * open() that succeeds reaches the new board, even when the
                 * kernel gave the new pty the same number.
                 */
                if (open_port(c) == 0) {
                        start_session(c);
                        return;
                }
                if (now_ms() > c->deadline)
                        c->step = ST_FINISHED;
                return;
        case ST_FINISHED:
                return;
        case ST_RESULT:
                /* One try only. */
                if (!c->failed)
                        fail(c, "timeout", "no RESULT_OK");
                end_session(c);
                return;
        default:
                break;
        }
        if (c->tries >= g.retries) {
                fail(c, c->oversize ? "oversize" : "timeout", "no answer after %u tries, %u oversize and %u bad frames",
                     c->tries + 1, c->oversize, c->bad_frames);
                return;
        }
        n = sp_client_retransmit(&c->client);
        c->tries++;
        c->deadline = now_ms() + g.timeout_ms;
        if (n > 0 && write(c->fd, c->client.buf, (size_t)n) != n)
                fail_write(c, errno == EIO ? -EIO : -EPROTO);
}

static void on_readable(struct conn *c, short revents) {
        uint8_t buf[4096];

        for (int i = 0; i < 16; i++) {
                ssize_t n = read(c->fd, buf, sizeof(buf));
                if (n > 0) {
                        sp_parser_feed(c->parser, buf, (size_t)n, on_frame, c);
                        if (c->fd < 0)
                                return;
                        continue;
                }
                if (n < 0 && errno == EAGAIN && !(revents & POLLHUP))
                        return;
                /* EIO or POLLHUP: the simulator closed the pty. */
                if (c->step == ST_WAIT_HUP) {
                        conn_after_session(c);
                        return;
                }
                if (c->step == ST_RESULT && c->failed) {
                        conn_after_session(c);  /* already reported; the verdict was best effort */
                        return;
                }
                if (c->step != ST_FINISHED && c->step != ST_REOPEN) {
                        g.failed++;
                        printf("fail %s step=%s reason=hangup\n", c->path, step_names[c->step]);
                        fflush(stdout);
                        c->failed = true;
                        conn_after_session(c);
                }
                return;
        }
}

static void usage(void) {
        printf("Usage: boardsim-host [--timeout-ms MS] [--retries N] [--lock] [--new-key auto|yes|no]\n"
               "                     [--loop TOTAL] PATH...\n");
}

int main(int argc, char **argv) {
        static struct conn conns[MAX_CONNS];
        static struct pollfd pfd[MAX_CONNS];
        size_t n = 0;
        uint64_t t0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
                        g.timeout_ms = (unsigned)strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--retries") == 0 && i + 1 < argc)
                        g.retries = (unsigned)strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--lock") == 0)
                        g.lock = true;
                else if (strcmp(argv[i], "--new-key") == 0 && i + 1 < argc) {
                        i++;
                        g.new_key = strcmp(argv[i], "yes") == 0 ? 1 : strcmp(argv[i], "no") == 0 ? 0 : -1;
                } else if (strcmp(argv[i], "--loop") == 0 && i + 1 < argc)
                        g.loop_total = (unsigned)strtoul(argv[++i], NULL, 10);
                else if (argv[i][0] == '-') {
                        usage();
                        return 2;
                } else if (n < MAX_CONNS)
                        conns[n++].path = argv[i];
        }
        if (n == 0 || g.timeout_ms == 0) {
                usage();
                return 2;
        }
        if (ca_init() < 0) {
                fprintf(stderr, "boardsim-host: CA setup failed\n");
                return 1;
        }

        t0 = now_ms();
        for (size_t i = 0; i < n; i++) {
                struct conn *c = &conns[i];
                c->fd = -1;
                if (sp_parser_new(&c->parser, &(struct sp_limits){ .max_frame = SP_MAX_FRAME_DEFAULT }) < 0)
                        return 1;
                if (open_port(c) < 0) {
                        printf("fail %s step=open reason=%s\n", c->path, strerror(errno));
                        g.failed++;
                        c->step = ST_FINISHED;
                        continue;
                }
                start_session(c);
        }

        for (;;) {
                uint64_t now = now_ms(), next = UINT64_MAX;
                bool busy = false;
                int timeout;

                for (size_t i = 0; i < n; i++) {
                        struct conn *c = &conns[i];
                        pfd[i].fd = c->fd;
                        pfd[i].events = POLLIN;
                        pfd[i].revents = 0;
                        if (c->step == ST_FINISHED)
                                continue;
                        busy = true;
                        if (c->step == ST_REOPEN)
                                next = now + 1;
                        else if (c->deadline < next)
                                next = c->deadline;
                }
                if (!busy)
                        break;
                timeout = next <= now ? 0 : next - now > 1000 ? 1000 : (int)(next - now);
                if (poll(pfd, n, timeout) < 0 && errno != EINTR)
                        return 1;
                now = now_ms();
                for (size_t i = 0; i < n; i++) {
                        struct conn *c = &conns[i];
                        if (c->fd >= 0 && pfd[i].fd == c->fd && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                on_readable(c, pfd[i].revents);
                        if (c->step != ST_FINISHED && (c->step == ST_REOPEN || now >= c->deadline))
                                on_timeout(c);
                }
        }
        printf("summary sessions=%u ok=%u failed=%u elapsed_ms=%" PRIu64 "\n", g.started, g.ok, g.failed,
               now_ms() - t0);
        for (size_t i = 0; i < n; i++) {
                conn_reset_session(&conns[i]);
                sp_parser_free(conns[i].parser);
                conn_close(&conns[i]);
        }
        X509_free(g.ca);
        EVP_PKEY_free(g.ca_key);
        EVP_MD_free(g.sha256);
        return g.failed == 0 ? 0 : 1;
}
