/* SPDX-License-Identifier: MIT */
/* The backend-independent part of a signer: certificate, chain, SKI, dispatch. */

#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "basic/secret-file.h"
#include "certs-hsm/digest.h"
#include "signer-internal.h"
#include "basic/hex.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE *, X509_STORE_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE_CTX *, X509_STORE_CTX_free);
static inline void x509_stack_freep(STACK_OF(X509) **p) {
        sk_X509_pop_free(*p, X509_free);
}

int certs_read_file_bounded(int fd, size_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, max + 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = -errno;
                        OPENSSL_cleanse(buf, len);
                        return e;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > max) {
                        OPENSSL_cleanse(buf, len);
                        return -EFBIG;
                }
        }
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* The rule itself lives in basic/secret-file.h, shared with every other reader of a secret. */
int signer_check_secret_fd(int fd) {
        return secret_fd_check(fd);
}

/* A systemd credential name: one path component, no hidden or parent entries. */
static bool valid_credential_name(const char *n) {
        size_t len = strlen(n);

        if (len == 0 || len > 255 || n[0] == '.')
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= '0' && n[i] <= '9') ||
                      n[i] == '_' || n[i] == '-' || n[i] == '.' || n[i] == '@'))
                        return false;
        return true;
}

int signer_pin_read(const char *source, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *path = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        int r;

        if (!source || !ret)
                return -EINVAL;
        if (strncmp(source, "credential:", 11) == 0) {
                /* systemd LoadCredential=/SetCredential=: the directory is the
                 * service's own (ramfs, readable by it alone). */
                const char *dir = secure_getenv("CREDENTIALS_DIRECTORY");
                if (!valid_credential_name(source + 11))
                        return -EINVAL;
                if (!dir || dir[0] != '/')
                        return -ENOENT;
                if (asprintf(&path, "%s/%s", dir, source + 11) < 0) {
                        path = NULL;
                        return -ENOMEM;
                }
        } else {
                if (strncmp(source, "file:", 5) == 0)
                        source += 5;
                if (source[0] != '/')
                        return -EINVAL;
                path = strdup(source);
                if (!path)
                        return -ENOMEM;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = signer_check_secret_fd(fd);
        if (r < 0)
                return r;
        r = certs_read_file_bounded(fd, SIGNER_PIN_MAX, &buf, &len);
        if (r < 0)
                return r;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        buf[len] = '\0';
        if (len == 0 || memchr(buf, '\0', len)) {
                OPENSSL_cleanse(buf, len);
                free(buf);
                return -EINVAL;
        }
        *ret = (char *)buf;
        return 0;
}

char *signer_pin_free(char *pin) {
        if (pin) {
                OPENSSL_cleanse(pin, strlen(pin));
                free(pin);
        }
        return NULL;
}


int certs_pkey_p256_point(EVP_PKEY *pk, uint8_t ret[65]) {
        char group[32];
        size_t len = 0;

        if (!pk || !EVP_PKEY_is_a(pk, "EC"))
                return -EKEYREJECTED;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) != 1 ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, ret, 65, &len) != 1 ||
            len != 65 || ret[0] != 0x04) {
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        return 0;
}

static int x509_to_der(X509 *x, uint8_t **ret, size_t *ret_len) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        if (n <= 0) {
                ERR_clear_error();
                return -EBADMSG;
        }
        /* Own copy from malloc() so free() works regardless of OpenSSL's allocator. */
        *ret = malloc((size_t)n);
        if (!*ret) {
                OPENSSL_free(der);
                return -ENOMEM;
        }
        memcpy(*ret, der, (size_t)n);
        OPENSSL_free(der);
        *ret_len = (size_t)n;
        return 0;
}

/* Verifies @leaf up to @anchor, which is trusted as given: a root, or with
 * @partial any certificate of the chain (X509_V_FLAG_PARTIAL_CHAIN). */
static int chain_verify(X509 *leaf, STACK_OF(X509) *untrusted, X509 *anchor, bool partial) {
        _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
        _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();

        if (!store || !ctx || X509_STORE_add_cert(store, anchor) != 1 ||
            X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
                return -ENOMEM;
        /* Validity periods are the operator's business (rotation); signatures and
         * CA flags are ours. */
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME | (partial ? X509_V_FLAG_PARTIAL_CHAIN : 0));
        if (X509_verify_cert(ctx) != 1) {
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        return 0;
}

int signer_load_chain(const char *path, X509 **ret_cert, X509 **ret_root) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_(x509_stack_freep) STACK_OF(X509) *chain = NULL;
        size_t len;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        r = certs_read_file_bounded(fd, SIGNER_MAX_CERT_FILE, &buf, &len);
        if (r < 0)
                return r;
        bio = BIO_new_mem_buf(buf, (int)len);
        chain = sk_X509_new_null();
        if (!bio || !chain)
                return -ENOMEM;
        ERR_clear_error();
        for (;;) {
                X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                if (!x)
                        break;
                if (sk_X509_num(chain) >= SIGNER_MAX_CHAIN || !sk_X509_push(chain, x)) {
                        X509_free(x);
                        return -EBADMSG;
                }
        }
        /* The loop ends on "no start line" when no block is left. Anything else
         * is a block that did not parse: an issuer dropped without a word would
         * leave the chain unverified. */
        unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
                return -EBADMSG;
        if (sk_X509_num(chain) == 0)
                return -EBADMSG;

        /* Each certificate must be signed by a later one, up to the last: the
         * root if it is self-signed, else an intermediate taken as given (the
         * root is then unknown until signer_set_root()). */
        X509 *root = NULL;
        if (sk_X509_num(chain) > 1) {
                X509 *last = sk_X509_value(chain, sk_X509_num(chain) - 1);
                bool self_signed = X509_check_issued(last, last) == X509_V_OK;
                r = chain_verify(sk_X509_value(chain, 0), chain, last, !self_signed);
                if (r < 0)
                        return r;
                if (self_signed)
                        root = last;
        }
        if (ret_root) {
                *ret_root = root;
                if (root)
                        X509_up_ref(root);
        }
        *ret_cert = sk_X509_value(chain, 0);
        X509_up_ref(*ret_cert);
        return 0;
}

int certs_asn1_time(const ASN1_TIME *t, time_t *ret) {
        struct tm tm = {};
        time_t v;

        if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
                ERR_clear_error();
                return -EBADMSG;
        }
        v = timegm(&tm);
        if (v == (time_t)-1)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static void validity_fill(time_t not_before, time_t not_after, time_t now, struct signer_validity *ret) {
        *ret = (struct signer_validity){
                .not_before = not_before,
                .not_after = not_after,
                .not_yet_valid = now < not_before,
                .expired = now > not_after,
                /* Whole days left, rounded down; negative once expired. */
                .days_left = (int64_t)(not_after - now) >= 0 ? (int64_t)(not_after - now) / 86400
                                                              : -(((int64_t)(now - not_after) + 86399) / 86400),
        };
}

int signer_validity(const struct signer *s, time_t now, struct signer_validity *ret) {
        if (!s || !ret)
                return -EINVAL;
        validity_fill(s->not_before, s->not_after, now, ret);
        return 0;
}

int signer_cert_file_status(const char *cert_path, time_t now, struct signer_file_status *ret) {
        _cleanup_(X509_freep) X509 *cert = NULL, *root = NULL;
        struct signer_file_status st = {};
        const ASN1_OCTET_STRING *skid;
        time_t nb, na;
        int r, n;

        if (!cert_path || !ret)
                return -EINVAL;
        r = signer_load_chain(cert_path, &cert, &root);
        if (r < 0)
                return r;
        if (certs_asn1_time(X509_get0_notBefore(cert), &nb) < 0 || certs_asn1_time(X509_get0_notAfter(cert), &na) < 0)
                return -EBADMSG;
        validity_fill(nb, na, now, &st.validity);
        n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, st.subject_cn,
                                      sizeof(st.subject_cn));
        if (n < 0)
                st.subject_cn[0] = '\0';
        skid = X509_get0_subject_key_id(cert);
        if (skid && ASN1_STRING_length(skid) > 0 && ASN1_STRING_length(skid) <= 64)
                hex_encode(ASN1_STRING_get0_data(skid), (size_t)ASN1_STRING_length(skid), st.ski_hex, false);
        st.has_root = root != NULL;
        if (root) {
                time_t rnb, rna;
                if (certs_asn1_time(X509_get0_notBefore(root), &rnb) == 0 &&
                    certs_asn1_time(X509_get0_notAfter(root), &rna) == 0)
                        validity_fill(rnb, rna, now, &st.root_validity);
        }
        ERR_clear_error();
        *ret = st;
        return 0;
}

static int signer_setup_cert(struct signer *s, X509 *cert) {
        const ASN1_OCTET_STRING *skid;
        const X509_NAME *subject;
        const unsigned char *name_der;
        size_t name_len;
        int r;

        r = certs_pkey_p256_point(X509_get0_pubkey(cert), s->pubkey);
        if (r < 0)
                return r;

        r = x509_to_der(cert, &s->cert_der, &s->cert_len);
        if (r < 0)
                return r;
        if (certs_asn1_time(X509_get0_notBefore(cert), &s->not_before) < 0 ||
            certs_asn1_time(X509_get0_notAfter(cert), &s->not_after) < 0)
                return -EKEYREJECTED;

        subject = X509_get_subject_name(cert);
        if (X509_NAME_get0_der((X509_NAME *)subject, &name_der, &name_len) != 1 || name_len == 0 ||
            name_len > SIGNER_MAX_NAME)
                return -EKEYREJECTED;
        s->subject_der = malloc(name_len);
        if (!s->subject_der)
                return -ENOMEM;
        memcpy(s->subject_der, name_der, name_len);
        s->subject_len = name_len;

        /* AKI.keyIdentifier must equal the issuer's SKI as it appears in its
         * certificate; without one, RFC 5280 4.2.1.2 method 1. */
        skid = X509_get0_subject_key_id(cert);
        if (skid && ASN1_STRING_length(skid) > 0 && (size_t)ASN1_STRING_length(skid) <= sizeof(s->ski)) {
                s->ski_len = (size_t)ASN1_STRING_length(skid);
                memcpy(s->ski, ASN1_STRING_get0_data(skid), s->ski_len);
        } else {
                r = certs_sha1(s->pubkey, sizeof(s->pubkey), s->ski);
                if (r < 0)
                        return r;
                s->ski_len = SHA_DIGEST_LENGTH;
        }
        ERR_clear_error();
        return 0;
}

/* One signature with the backend, checked against the certificate's key: the
 * key matches, the PIN works, the HSM answers. */
static int signer_self_test(struct signer *s, X509 *cert) {
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t digest[32], sig[SIGNER_SIG_MAX];
        size_t siglen = 0;
        int r;

        if (RAND_bytes(digest, sizeof(digest)) != 1)
                return -EIO;
        r = s->ops->sign(s->userdata, digest, sig, &siglen);
        if (r < 0)
                return r;
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(cert), NULL);
        if (!ctx || EVP_PKEY_verify_init(ctx) != 1)
                return -ENOMEM;
        if (EVP_PKEY_verify(ctx, sig, siglen, digest, sizeof(digest)) != 1) {
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        return 0;
}

int signer_new_internal(struct signer **ret, const struct signer_ops *ops, void *userdata, const char *backend,
                        X509 *cert, X509 *root) {
        struct signer *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s) {
                ops->free(userdata);
                return -ENOMEM;
        }
        s->ops = ops;
        s->userdata = userdata;
        s->backend = backend;

        r = signer_setup_cert(s, cert);
        if (r < 0)
                goto fail;
        if (root) {
                r = x509_to_der(root, &s->root_der, &s->root_len);
                if (r < 0)
                        goto fail;
        }
        r = signer_self_test(s, cert);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        signer_free(s);
        return r;
}

int signer_new_ops(struct signer **ret, const struct signer_ops *ops, void *userdata, const uint8_t *cert_der,
                   size_t cert_len) {
        _cleanup_(X509_freep) X509 *cert = NULL;
        const uint8_t *p = cert_der;

        if (!ret || !ops || !ops->sign || !ops->free || !cert_der || cert_len == 0 || cert_len > LONG_MAX) {
                if (ops && ops->free)
                        ops->free(userdata);
                return -EINVAL;
        }
        cert = d2i_X509(NULL, &p, (long)cert_len);
        if (!cert || p != cert_der + cert_len) {
                ERR_clear_error();
                ops->free(userdata);
                return -EBADMSG;
        }
        return signer_new_internal(ret, ops, userdata, "custom", cert, NULL);
}

static const char *uri_file_path(const char *uri) {
        if (uri[0] == '/')
                return uri;
        if (strncmp(uri, "file://", 7) == 0) /* RFC 8089: file:///path (empty authority only) */
                return uri[7] == '/' ? uri + 7 : NULL;
        if (strncmp(uri, "file:", 5) == 0)
                return uri[5] == '/' ? uri + 5 : NULL;
        return NULL;
}

int signer_open_key(const char *uri, const char *pin, const char *module_path, void **ret_userdata,
                    const struct signer_ops **ret_ops, const char **ret_backend) {
        if (!uri)
                return -EINVAL;
        if (strncmp(uri, "pkcs11:", 7) == 0) {
#if HAVE_PKCS11
                *ret_backend = "pkcs11";
                return signer_pkcs11_open(uri, pin, module_path, ret_userdata, ret_ops);
#else
                return -EPROTONOSUPPORT;
#endif
        }
        const char *path = uri_file_path(uri);
        if (!path) {
                /* "file:" with a relative path is a bad URI; "tpm2:..." an unknown scheme. */
                if (strncmp(uri, "file:", 5) != 0 && strchr(uri, ':'))
                        return -EPROTONOSUPPORT;
                return -EINVAL;
        }
        *ret_backend = "file";
        return signer_file_open(path, pin, ret_userdata, ret_ops);
}

int signer_open_pkcs11(struct signer **ret, const char *uri, const char *cert_path, const char *pin,
                       const char *module_path) {
        _cleanup_(X509_freep) X509 *cert = NULL, *root = NULL;
        const struct signer_ops *ops = NULL;
        void *userdata = NULL;
        const char *backend = NULL;
        int r;

        if (!ret || !uri || !cert_path)
                return -EINVAL;

        r = signer_load_chain(cert_path, &cert, &root);
        if (r < 0)
                return r;
        r = signer_open_key(uri, pin, module_path, &userdata, &ops, &backend);
        if (r < 0)
                return r;
        return signer_new_internal(ret, ops, userdata, backend, cert, root);
}

int signer_open(struct signer **ret, const char *uri, const char *cert_path, const char *pin) {
        return signer_open_pkcs11(ret, uri, cert_path, pin, NULL);
}

struct signer *signer_free(struct signer *s) {
        if (!s)
                return NULL;
        if (s->ops && s->ops->free)
                s->ops->free(s->userdata);
        free(s->cert_der);
        free(s->root_der);
        free(s->subject_der);
        free(s);
        return NULL;
}

int signer_sign(struct signer *s, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len) {
        if (!s || !digest || !sig || !ret_len)
                return -EINVAL;
        return s->ops->sign(s->userdata, digest, sig, ret_len);
}

const uint8_t *signer_cert_der(const struct signer *s, size_t *ret_len) {
        if (ret_len)
                *ret_len = s ? s->cert_len : 0;
        return s ? s->cert_der : NULL;
}

const uint8_t *signer_root_cert_der(const struct signer *s, size_t *ret_len) {
        if (ret_len)
                *ret_len = s ? s->root_len : 0;
        return s ? s->root_der : NULL;
}

int signer_set_root(struct signer *s, const char *root_pem_path) {
        _cleanup_(X509_freep) X509 *root = NULL, *signer_cert = NULL;
        const uint8_t *p;
        uint8_t *der = NULL;
        size_t der_len;
        int r;

        if (!s || !root_pem_path)
                return -EINVAL;
        r = signer_load_chain(root_pem_path, &root, NULL);
        if (r < 0)
                return r;
        if (X509_check_issued(root, root) != X509_V_OK)
                return -EKEYREJECTED; /* not self-signed: not a root */
        p = s->cert_der;
        signer_cert = d2i_X509(NULL, &p, (long)s->cert_len);
        if (!signer_cert)
                return -ENOMEM;
        r = chain_verify(signer_cert, NULL, root, false);
        if (r < 0)
                return r;
        r = x509_to_der(root, &der, &der_len);
        if (r < 0)
                return r;
        free(s->root_der);
        s->root_der = der;
        s->root_len = der_len;
        return 0;
}

const uint8_t *signer_ski(const struct signer *s, size_t *ret_len) {
        if (ret_len)
                *ret_len = s ? s->ski_len : 0;
        return s ? s->ski : NULL;
}

const char *signer_backend(const struct signer *s) {
        return s ? s->backend : NULL;
}

static bool attr_public(const char *a, size_t n, bool query) {
        /* RFC 7512 path attributes name the token and key; none of them is secret. */
        static const char *const path[] = { "token", "manufacturer", "serial", "model", "object", "type", "id",
                                            "slot-id", "slot-description", "slot-manufacturer",
                                            "library-manufacturer", "library-description", "library-version" };
        static const char *const q[] = { "module-path", "module-name" };
        const char *const *names = query ? q : path;
        size_t count = query ? ELEMENTSOF(q) : ELEMENTSOF(path);
        const char *eq = memchr(a, '=', n);

        if (!eq)
                return false;   /* without '=' the whole attribute may be the secret */
        for (size_t i = 0; i < count; i++)
                if ((size_t)(eq - a) == strlen(names[i]) && memcmp(a, names[i], (size_t)(eq - a)) == 0)
                        return true;
        return false;
}

/* Copies the public attributes of [p, end), separated by @sep, and drops the others. */
static size_t redact_attrs(char *out, const char *p, const char *end, char sep, bool query) {
        size_t k = 0;

        while (p < end) {
                const char *s = memchr(p, sep, (size_t)(end - p));
                size_t n = (size_t)((s ? s : end) - p);

                if (n > 0 && attr_public(p, n, query)) {
                        if (k > 0)
                                out[k++] = sep;
                        memcpy(out + k, p, n);
                        k += n;
                }
                p += n + (s ? 1 : 0);
        }
        return k;
}

char *signer_uri_redact(const char *uri) {
        const char *q, *end;
        size_t len, k;
        char *out;

        if (!uri)
                return NULL;
        len = strnlen(uri, SIGNER_MAX_URI + 1);
        if (len > SIGNER_MAX_URI)
                return strdup("(signer URI too long)");
        if (strncmp(uri, "pkcs11:", 7) != 0)
                return strdup(uri);     /* a key file path holds no secret */
        /* Split exactly as the parser does (signer-pkcs11.c): path up to the first '?', attributes
         * on ';', query attributes on '&'. Only dropping: never longer than @uri. */
        out = malloc(len + 1);
        if (!out)
                return NULL;
        memcpy(out, uri, 7);
        k = 7;
        end = uri + len;
        q = memchr(uri, '?', len);
        k += redact_attrs(out + k, uri + 7, q ? q : end, ';', false);
        if (q) {
                size_t n = redact_attrs(out + k + 1, q + 1, end, '&', true);
                if (n > 0) {
                        out[k] = '?';
                        k += 1 + n;
                }
        }
        out[k] = '\0';
        return out;
}
