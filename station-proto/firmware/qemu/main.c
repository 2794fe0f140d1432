/* SPDX-License-Identifier: MIT */
/* QEMU reference port (mps2-an385, Cortex-M3): the board library on a CMSDK UART, P-256 and CSRs from mbedTLS. */

/*
 * What a port does, in the order a station needs it:
 *   identify      serial, model, firmware version, the public key once there is one
 *   get_csr       (new key:) generate a P-256 key; write a DER CSR with the station's CN
 *   store_certs   keep the device certificate (A/B pages: a torn write keeps the old one)
 *   store_config  keep the key/value pairs
 *   prove         ECDSA over SHA-256(nonce || SHA-256(stored certificate))
 *   lock          make key and certificate permanent
 * get_csr and prove use the asynchronous mode: the callback only records the
 * request and answers SPB_PENDING, the main loop does the ECC work and calls
 * spb_complete(). So the UART is read (and a watchdog could be fed) between
 * the request and the work; on an MCU with a restartable ECC (mbedTLS
 * MBEDTLS_ECP_RESTARTABLE, or a secure element that is polled) it would be
 * serviced during the work too.
 *
 * RNG: QEMU's mps2-an385 has no TRNG, so this port is NOT a source of good
 * keys. It seeds an HMAC_DRBG from the SysTick counter sampled at every
 * received byte (host timing jitter under QEMU) plus the serial; fine for a
 * test, worthless on hardware, where the port must seed from the MCU's TRNG
 * (or let a secure element generate the key). See README.md.
 *
 * UART0 (the station link, `-serial pty`) is polled; UART1 (the second
 * -serial) gets a line of log per request.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/hmac_drbg.h"
#include "mbedtls/md.h"
#include "mbedtls/memory_buffer_alloc.h"
#include "mbedtls/pk.h"
#include "mbedtls/sha256.h"
#include "mbedtls/x509_csr.h"

#include "station-proto/sp-board.h"

#define MAX_FRAME       1024u
#define CSR_MAX         400u
#define CERT_MAX        1024u
#define CFG_MAX         8u

/* --- hardware: CMSDK APB UART, SysTick ----------------------------------- */

struct cmsdk_uart {
        volatile uint32_t data;
        volatile uint32_t state;        /* bit 0: TX full, bit 1: RX full */
        volatile uint32_t ctrl;         /* bit 0: TX enable, bit 1: RX enable */
        volatile uint32_t intstatus;
        volatile uint32_t bauddiv;
};

#define UART0           ((struct cmsdk_uart *)0x40004000u)
#define UART1           ((struct cmsdk_uart *)0x40005000u)
#define SYST_CSR        (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR        (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR        (*(volatile uint32_t *)0xE000E018u)

static void uart_init(struct cmsdk_uart *u) {
        u->bauddiv = 16;                /* the smallest divider; the rate means nothing on a pty */
        u->ctrl = 3;
}

static void uart_putc(struct cmsdk_uart *u, uint8_t c) {
        while (u->state & 1u)
                ;
        u->data = c;
}

static int uart_getc(struct cmsdk_uart *u) {
        if (!(u->state & 2u))
                return -1;
        return (int)(u->data & 0xffu);
}

static void log_str(const char *s) {
        while (*s)
                uart_putc(UART1, (uint8_t)*s++);
}

static void log_hex(const uint8_t *p, size_t n) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                uart_putc(UART1, (uint8_t)hex[p[i] >> 4]);
                uart_putc(UART1, (uint8_t)hex[p[i] & 15]);
        }
}

/* --- RNG (see the top of the file: a stand-in for a TRNG) ------------------ */

static mbedtls_sha256_context pool;     /* timing samples, hashed */
static mbedtls_hmac_drbg_context drbg;
static bool drbg_ready;

static void entropy_sample(void) {
        uint32_t t = SYST_CVR;

        mbedtls_sha256_update_ret(&pool, (const unsigned char *)&t, sizeof t);
}

static int rng(void *ctx, unsigned char *out, size_t len) {
        if (!drbg_ready) {
                uint8_t seed[32];

                mbedtls_sha256_finish_ret(&pool, seed);
                if (mbedtls_hmac_drbg_seed_buf(&drbg, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                                               seed, sizeof seed) != 0)
                        return -1;
                drbg_ready = true;
        }
        return mbedtls_hmac_drbg_random(ctx ? ctx : &drbg, out, len);
}

/* --- device state: what flash / a secure element would hold -------------- */

static const uint8_t serial[9] = { 0x51, 0x45, 0x4d, 0x55, 0x00, 0x00, 0x00, 0x00, 0x01 };

/* The certificate in two "pages": written to the idle one, then made current
 * by its sequence number, so a reset in the middle keeps the old certificate. */
struct cert_page {
        uint32_t seq;                   /* 0: empty */
        uint16_t len;
        uint8_t der[CERT_MAX];
        uint8_t hash[32];
};

static struct {
        mbedtls_pk_context pk;          /* the device key, once generated */
        bool have_key;
        uint8_t pubkey[SP_PUBKEY_LEN];
        struct cert_page page[2];
        bool locked;
        char cfg_key[CFG_MAX][33];
        uint8_t cfg_val[CFG_MAX][64];
        size_t cfg_len[CFG_MAX];
        unsigned cfg_n;
} dev;

static const struct cert_page *current_cert(void) {
        const struct cert_page *a = &dev.page[0], *b = &dev.page[1];

        if (!a->seq && !b->seq)
                return NULL;
        return a->seq >= b->seq ? a : b;
}

/* --- the work the main loop does for a pending request --------------------- */

static struct {
        uint8_t type;                   /* 0: none */
        bool new_key;
        char cn[65];
        uint8_t *der;
        size_t cap;
        uint8_t nonce[SP_NONCE_LEN];
        uint8_t *ret_hash, *ret_sig;
} job;

static int gen_key(void) {
        mbedtls_pk_free(&dev.pk);
        mbedtls_pk_init(&dev.pk);
        if (mbedtls_pk_setup(&dev.pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
            mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(dev.pk), rng, NULL) != 0)
                return SP_ERR_SE_FAILURE;
        {
                mbedtls_ecp_keypair *k = mbedtls_pk_ec(dev.pk);
                size_t olen;

                if (mbedtls_ecp_point_write_binary(&k->grp, &k->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
                                                   dev.pubkey, sizeof dev.pubkey) != 0 || olen != SP_PUBKEY_LEN)
                        return SP_ERR_SE_FAILURE;
        }
        dev.have_key = true;
        return 0;
}

/* "CN=<cn>" with the characters mbedTLS's name parser treats specially escaped. */
static void subject_name(char *out, size_t cap, const char *cn) {
        size_t o = 0;

        memcpy(out, "CN=", 3);
        o = 3;
        for (const char *c = cn; *c && o + 3 < cap; c++) {
                if (strchr(",=+<>#;\"\\", *c))
                        out[o++] = '\\';
                out[o++] = *c;
        }
        out[o] = 0;
}

/* Header of the DER element at @p (at most @n bytes): its size, and the content length in *@ret_len; 0 if malformed. */
static size_t der_header(const uint8_t *p, size_t n, size_t *ret_len) {
        if (n < 2)
                return 0;
        if (p[1] < 0x80) {
                *ret_len = p[1];
                return 2;
        }
        if (p[1] == 0x81 && n >= 3) {
                *ret_len = p[2];
                return 3;
        }
        if (p[1] == 0x82 && n >= 4) {
                *ret_len = (size_t)p[2] << 8 | p[3];
                return 4;
        }
        return 0;
}

/*
 * mbedTLS 2.28 writes the CSR's signatureAlgorithm as ecdsa-with-SHA256 with
 * NULL parameters; RFC 5758 §3.2 says they MUST be absent, and provd refuses
 * such a CSR. The outer AlgorithmIdentifier is not covered by the signature,
 * so the port rewrites it without the NULL (and the outer length with it).
 */
static int fix_sig_alg(uint8_t *der, size_t *len) {
        static const uint8_t with_null[] = { 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
                                             0x05, 0x00 };
        size_t outer, oh, cri, ch, alg, rest;
        uint8_t head[4];
        size_t hn;

        oh = der_header(der, *len, &outer);
        if (!oh || der[0] != 0x30 || oh + outer != *len)
                return -1;
        ch = der_header(der + oh, *len - oh, &cri);
        if (!ch)
                return -1;
        alg = oh + ch + cri;
        if (alg + sizeof with_null > *len || memcmp(der + alg, with_null, sizeof with_null) != 0)
                return 0;               /* already without parameters */
        der[alg + 1] = 0x0a;
        rest = *len - (alg + sizeof with_null);
        memmove(der + alg + sizeof with_null - 2, der + alg + sizeof with_null, rest);
        outer -= 2;
        head[0] = 0x30;
        if (outer < 0x80) {
                head[1] = (uint8_t)outer;
                hn = 2;
        } else if (outer < 0x100) {
                head[1] = 0x81;
                head[2] = (uint8_t)outer;
                hn = 3;
        } else {
                head[1] = 0x82;
                head[2] = (uint8_t)(outer >> 8);
                head[3] = (uint8_t)outer;
                hn = 4;
        }
        memmove(der + hn, der + oh, outer);
        memcpy(der, head, hn);
        *len = hn + outer;
        return 0;
}

static int make_csr(size_t *ret_len) {
        mbedtls_x509write_csr csr;
        char subject[3 + 2 * 64 + 1];
        int n;

        if (job.new_key) {
                int r = gen_key();

                if (r)
                        return r;
        }
        if (!dev.have_key)
                return SP_ERR_NO_KEY;
        subject_name(subject, sizeof subject, job.cn);
        mbedtls_x509write_csr_init(&csr);
        mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
        mbedtls_x509write_csr_set_key(&csr, &dev.pk);
        if (mbedtls_x509write_csr_set_subject_name(&csr, subject) != 0) {
                mbedtls_x509write_csr_free(&csr);
                return SP_ERR_BAD_PAYLOAD;
        }
        /* mbedTLS writes the DER at the end of the buffer. */
        n = mbedtls_x509write_csr_der(&csr, job.der, job.cap, rng, NULL);
        mbedtls_x509write_csr_free(&csr);
        if (n <= 0)
                return n == MBEDTLS_ERR_ASN1_BUF_TOO_SMALL ? SP_ERR_TOO_LARGE : SP_ERR_SE_FAILURE;
        memmove(job.der, job.der + job.cap - (size_t)n, (size_t)n);
        *ret_len = (size_t)n;
        return fix_sig_alg(job.der, ret_len) == 0 ? 0 : SP_ERR_INTERNAL;
}

static int make_proof(void) {
        const struct cert_page *c = current_cert();
        mbedtls_ecp_keypair *k;
        mbedtls_mpi r, s;
        uint8_t msg[SP_NONCE_LEN + 32], digest[32];
        int ret;

        if (!c)
                return SP_ERR_NO_CERT;
        if (!dev.have_key)
                return SP_ERR_NO_KEY;
        memcpy(msg, job.nonce, SP_NONCE_LEN);
        memcpy(msg + SP_NONCE_LEN, c->hash, 32);
        mbedtls_sha256_ret(msg, sizeof msg, digest, 0);
        k = mbedtls_pk_ec(dev.pk);
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&s);
        ret = mbedtls_ecdsa_sign_det_ext(&k->grp, &r, &s, &k->d, digest, sizeof digest, MBEDTLS_MD_SHA256, rng,
                                         NULL);
        if (ret == 0)
                ret = mbedtls_mpi_write_binary(&r, job.ret_sig, 32);
        if (ret == 0)
                ret = mbedtls_mpi_write_binary(&s, job.ret_sig + 32, 32);
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&s);
        if (ret)
                return SP_ERR_SE_FAILURE;
        memcpy(job.ret_hash, c->hash, 32);
        return 0;
}

/* --- board library callbacks -------------------------------------------------- */

static int op_identify(void *ctx, struct spb_identity *ret) {
        (void)ctx;
        ret->serial = serial;
        ret->serial_len = sizeof serial;
        ret->model = "provd-qemu-mps2-an385";
        ret->fw_version = "ref-1";
        ret->caps = SP_CAP_KEYGEN | SP_CAP_LOCK;
        ret->pubkey = dev.have_key ? dev.pubkey : NULL;
        ret->locked = dev.locked;
        return 0;
}

static int op_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                      size_t *ret_len) {
        (void)ctx;
        (void)ret_len;
        job.type = SP_MSG_GET_CSR;
        job.new_key = new_key;
        if (cn) {
                memcpy(job.cn, cn, cn_len);     /* at most 64: the library checked */
                job.cn[cn_len] = 0;
        } else {
                for (size_t i = 0; i < sizeof serial; i++) {
                        job.cn[2 * i] = "0123456789abcdef"[serial[i] >> 4];
                        job.cn[2 * i + 1] = "0123456789abcdef"[serial[i] & 15];
                }
                job.cn[2 * sizeof serial] = 0;
        }
        job.der = der;
        job.cap = cap;
        return SPB_PENDING;
}

static int op_store_certs(void *ctx, const struct spb_certs *certs) {
        const struct cert_page *cur = current_cert();
        struct cert_page *idle;

        (void)ctx;
        if (!certs->device)
                return SP_ERR_BAD_PAYLOAD;      /* no atcacert compressed-certificate support here */
        if (certs->device_len > CERT_MAX)
                return SP_ERR_TOO_LARGE;
        idle = cur == &dev.page[0] ? &dev.page[1] : &dev.page[0];
        idle->seq = 0;                          /* "erase" */
        memcpy(idle->der, certs->device, certs->device_len);
        idle->len = (uint16_t)certs->device_len;
        mbedtls_sha256_ret(idle->der, idle->len, idle->hash, 0);
        idle->seq = (cur ? cur->seq : 0) + 1;   /* the commit: one word written last */
        return 0;
}

static int op_cert_hash(void *ctx, uint8_t ret[SP_SHA256_LEN]) {
        const struct cert_page *c = current_cert();

        (void)ctx;
        if (!c)
                return SP_ERR_NO_CERT;
        memcpy(ret, c->hash, 32);
        return 0;
}

static int op_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        (void)ctx;
        if (dev.cfg_n == CFG_MAX)
                return SP_ERR_STORAGE;
        if (value_len > sizeof dev.cfg_val[0])
                return SP_ERR_TOO_LARGE;
        memcpy(dev.cfg_key[dev.cfg_n], key, key_len);
        dev.cfg_key[dev.cfg_n][key_len] = 0;
        memcpy(dev.cfg_val[dev.cfg_n], value, value_len);
        dev.cfg_len[dev.cfg_n] = value_len;
        dev.cfg_n++;
        /* The log shows the keys and the thing name, never a value that may be a secret (wifi_psk). */
        log_str("config: ");
        log_str(dev.cfg_key[dev.cfg_n - 1]);
        if (strcmp(dev.cfg_key[dev.cfg_n - 1], "thing_name") == 0) {
                log_str(" = ");
                for (size_t i = 0; i < value_len; i++)
                        uart_putc(UART1, value[i] >= 0x20 && value[i] < 0x7f ? value[i] : '?');
        }
        log_str("\n");
        return 0;
}

static int op_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_cert_hash[SP_SHA256_LEN],
                    uint8_t ret_sig[SP_SIG_LEN]) {
        (void)ctx;
        job.type = SP_MSG_PROVE;
        memcpy(job.nonce, nonce, SP_NONCE_LEN);
        job.ret_hash = ret_cert_hash;
        job.ret_sig = ret_sig;
        return SPB_PENDING;
}

static int op_lock(void *ctx) {
        (void)ctx;
        dev.locked = true;
        log_str("lock: locked\n");
        return 0;
}

static void op_result(void *ctx, uint8_t result) {
        (void)ctx;
        log_str(result == SP_RESULT_FAILED ? "result: failed\n" : "result: provisioned\n");
}

static void op_write(void *ctx, const uint8_t *buf, size_t len) {
        (void)ctx;
        for (size_t i = 0; i < len; i++)
                uart_putc(UART0, buf[i]);
}

static const struct spb_ops ops = {
        .identify = op_identify,
        .get_csr = op_get_csr,
        .store_certs = op_store_certs,
        .store_config = op_store_config,
        .prove = op_prove,
        .lock = op_lock,
        .result = op_result,
        .write = op_write,
        .cert_hash = op_cert_hash,
};

/* --- main loop ------------------------------------------------------------ */

static struct spb_board board;
/* RAM of the library: the README's formula with a 1024-byte frame and a 32-byte output chunk. */
static uint8_t rx[SPB_RX_BUF(MAX_FRAME)], tx[32], work[SPB_WORK_BUF(CSR_MAX)];
static unsigned char heap[24 * 1024];   /* mbedTLS's allocations (bignums during ECC) */

int main(void) {
        uint8_t in[64];

        SYST_RVR = 0x00ffffffu;
        SYST_CVR = 0;
        SYST_CSR = 5u;                  /* enabled, processor clock, no interrupt */
        uart_init(UART0);
        uart_init(UART1);
        mbedtls_memory_buffer_alloc_init(heap, sizeof heap);
        mbedtls_sha256_init(&pool);
        mbedtls_sha256_starts_ret(&pool, 0);
        mbedtls_sha256_update_ret(&pool, serial, sizeof serial);
        mbedtls_hmac_drbg_init(&drbg);
        mbedtls_pk_init(&dev.pk);
        if (spb_init(&board, &ops, NULL, rx, sizeof rx, tx, sizeof tx, work, sizeof work) != SPB_OK) {
                log_str("spb_init failed\n");
                for (;;)
                        ;
        }
        log_str("provd qemu reference board: ready, serial ");
        log_hex(serial, sizeof serial);
        log_str("\n");

        for (;;) {
                size_t n = 0;
                int c;

                /* Drain what the UART has (on real hardware: an ISR/DMA ring). */
                while (n < sizeof in && (c = uart_getc(UART0)) >= 0) {
                        in[n++] = (uint8_t)c;
                        entropy_sample();
                }
                if (n)
                        spb_feed(&board, in, n);

                if (job.type == SP_MSG_GET_CSR) {
                        size_t len = 0;
                        int r;

                        job.type = 0;
                        r = make_csr(&len);
                        log_str(r ? "get_csr: failed\n" : "get_csr: csr written\n");
                        spb_complete(&board, r, len);
                } else if (job.type == SP_MSG_PROVE) {
                        int r;

                        job.type = 0;
                        r = make_proof();
                        log_str(r ? "prove: failed\n" : "prove: signed\n");
                        spb_complete(&board, r, 0);
                }
        }
}
