/* SPDX-License-Identifier: MIT */
/* The file: signer backend: an EC P-256 private key in a PEM file only its owner, the
 * user provd runs as, can read. */

#include <fcntl.h>
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "signer-internal.h"

/* Signing contexts kept for reuse: one is only ever used by one thread at a
 * time, and as many exist as threads ever signed at once. */
#define FILE_SIGNER_POOL 16

struct file_signer {
        EVP_PKEY *key;
        pthread_mutex_t lock;
        EVP_PKEY_CTX *pool[FILE_SIGNER_POOL];
        size_t n_pool;
};

/* A context initialised for signing with the key: from the pool, or new.
 * Setting one up (EVP_PKEY_CTX_new_from_pkey + EVP_PKEY_sign_init fetch the
 * algorithm from the provider) costs ~3 µs, a tenth of the signature. */
static EVP_PKEY_CTX *take_ctx(struct file_signer *fs) {
        EVP_PKEY_CTX *ctx = NULL;

        pthread_mutex_lock(&fs->lock);
        if (fs->n_pool > 0)
                ctx = fs->pool[--fs->n_pool];
        pthread_mutex_unlock(&fs->lock);
        if (ctx)
                return ctx;
        /* The EVP_PKEY is shared read-only between threads, which OpenSSL 3
         * supports for provider keys; each context is used by one thread. */
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, fs->key, NULL);
        if (ctx && EVP_PKEY_sign_init(ctx) != 1) {
                EVP_PKEY_CTX_free(ctx);
                ctx = NULL;
        }
        return ctx;
}

static void give_ctx(struct file_signer *fs, EVP_PKEY_CTX *ctx) {
        pthread_mutex_lock(&fs->lock);
        if (fs->n_pool < FILE_SIGNER_POOL) {
                fs->pool[fs->n_pool++] = ctx;
                ctx = NULL;
        }
        pthread_mutex_unlock(&fs->lock);
        EVP_PKEY_CTX_free(ctx);
}

static int file_sign(void *userdata, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len) {
        struct file_signer *fs = userdata;
        EVP_PKEY_CTX *ctx = take_ctx(fs);
        size_t len = SIGNER_SIG_MAX;

        if (!ctx) {
                ERR_clear_error();
                return -ENOMEM;
        }
        if (EVP_PKEY_sign(ctx, sig, &len, digest, 32) != 1) {
                /* A context that failed is not reused. */
                EVP_PKEY_CTX_free(ctx);
                ERR_clear_error();
                return -EIO;
        }
        give_ctx(fs, ctx);
        *ret_len = len;
        return 0;
}

static void file_free(void *userdata) {
        struct file_signer *fs = userdata;
        if (!fs)
                return;
        for (size_t i = 0; i < fs->n_pool; i++)
                EVP_PKEY_CTX_free(fs->pool[i]);
        pthread_mutex_destroy(&fs->lock);
        EVP_PKEY_free(fs->key);
        free(fs);
}

static const struct signer_ops file_ops = {
        .sign = file_sign,
        .free = file_free,
};

static int pass_cb(char *buf, int size, int rwflag, void *u) {
        const char *pass = u;
        size_t n;

        if (!pass) /* encrypted key but no passphrase: fail, never prompt */
                return -1;
        n = strlen(pass);
        if (n > (size_t)size)
                return -1;
        memcpy(buf, pass, n);
        return (int)n;
}

int signer_file_open(const char *path, const char *passphrase, void **ret_userdata,
                     const struct signer_ops **ret_ops) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        uint8_t *buf = NULL, point[65];
        size_t len = 0;
        struct file_signer *fs;
        int r;

        /* O_NONBLOCK: a FIFO planted at the path must not hang us before fstat(). */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = signer_check_secret_fd(fd);
        if (r < 0)
                return r;

        r = certs_read_file_bounded(fd, SIGNER_MAX_KEY_FILE, &buf, &len);
        if (r < 0)
                return r;
        bio = BIO_new_mem_buf(buf, (int)len);
        if (bio)
                key = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, (void *)passphrase);
        OPENSSL_cleanse(buf, len);
        free(buf);
        if (!bio)
                return -ENOMEM;
        if (!key) {
                ERR_clear_error();
                return -EBADMSG;
        }
        r = certs_pkey_p256_point(key, point);
        if (r < 0)
                return r;

        fs = calloc(1, sizeof(*fs));
        if (!fs)
                return -ENOMEM;
        pthread_mutex_init(&fs->lock, NULL);
        fs->key = TAKE_PTR(key);
        *ret_userdata = fs;
        *ret_ops = &file_ops;
        return 0;
}
