/* SPDX-License-Identifier: MIT */
/* CA tooling: root + signer creation, signer CSR for an offline root. Not on the
 * hot path, so it uses OpenSSL's X509 API throughout. */

#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/digest.h"
#include "signer-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(X509_REQ *, X509_REQ_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_NAME *, X509_NAME_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_EXTENSION *, X509_EXTENSION_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free);
static inline void ext_stack_freep(STACK_OF(X509_EXTENSION) **p) {
        sk_X509_EXTENSION_pop_free(*p, X509_EXTENSION_free);
}

#define CA_DEFAULT_ROOT_CN "provd root CA"
#define CA_DEFAULT_SIGNER_CN "provd signer CA"
#define CA_DEFAULT_ROOT_DAYS 36500
#define CA_DEFAULT_SIGNER_DAYS 18250
#define CA_MAX_DAYS (2900000) /* stays below year 9999 */

struct ca_opts {
        const char *root_cn, *signer_cn, *org;
        uint32_t root_days, signer_days;
        bool no_expiry, compressed;
        uint16_t signer_id;
        char signer_cn_buf[80];
};

static int opts_resolve(const struct ca_init_opts *in, struct ca_opts *ret) {
        *ret = (struct ca_opts){
                .root_cn = in && in->root_cn ? in->root_cn : CA_DEFAULT_ROOT_CN,
                .signer_cn = in && in->signer_cn ? in->signer_cn : CA_DEFAULT_SIGNER_CN,
                .org = in && in->org && in->org[0] ? in->org : NULL,
                .root_days = in && in->root_validity_days ? in->root_validity_days : CA_DEFAULT_ROOT_DAYS,
                .signer_days = in && in->signer_validity_days ? in->signer_validity_days : CA_DEFAULT_SIGNER_DAYS,
                .no_expiry = in && in->no_expiry,
                .compressed = in && in->compressed,
                .signer_id = in ? in->signer_id : 0,
        };
        if (ret->compressed && strlen(ret->signer_cn) <= 64) {
                /* atcacert signer templates carry the signer id in the CN. */
                snprintf(ret->signer_cn_buf, sizeof(ret->signer_cn_buf), "%s %04X", ret->signer_cn, ret->signer_id);
                ret->signer_cn = ret->signer_cn_buf;
        }
        if (ret->root_cn[0] == '\0' || strlen(ret->root_cn) > 64 || ret->signer_cn[0] == '\0' ||
            strlen(ret->signer_cn) > 64 || (ret->org && strlen(ret->org) > 64) || ret->root_days > CA_MAX_DAYS ||
            ret->signer_days > CA_MAX_DAYS)
                return -EINVAL;
        return 0;
}

static X509_NAME *make_name(const char *cn, const char *org) {
        X509_NAME *n = X509_NAME_new();
        if (!n)
                return NULL;
        if ((org && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0) != 1) ||
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1) {
                X509_NAME_free(n);
                return NULL;
        }
        return n;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
        X509V3_CTX ctx;
        _cleanup_(X509_EXTENSION_freep) X509_EXTENSION *ext = NULL;

        X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!ext || X509_add_ext(cert, ext, -1) != 1)
                return -EIO;
        return 0;
}

static int random_serial(X509 *cert) {
        uint8_t b[16];
        _cleanup_(BN_freep) BIGNUM *bn = NULL;

        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[0] = (b[0] & 0x7f) | 0x01; /* positive, 16 octets */
        bn = BN_bin2bn(b, sizeof(b), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
                return -EIO;
        return 0;
}

/* A CA certificate for @key, signed by @issuer_key (@issuer NULL: self-signed). */
#define CA_DAYS_NO_EXPIRY UINT32_MAX

/* The compressed-signer rules (ca.h): dates and serial. */
static int compressed_fields(X509 *cert, EVP_PKEY *key, uint32_t days, bool no_expiry) {
        uint8_t point[65], enc[3], serial[CERT_SERIAL_LEN];
        _cleanup_(BN_freep) BIGNUM *bn = NULL;
        time_t now = time(NULL), nb, na;
        unsigned years = no_expiry ? 0 : days / 365;
        struct tm tm;
        int r;

        if (!no_expiry && (years == 0 || years > CERT_ATECC_MAX_YEARS))
                years = years == 0 ? 1 : CERT_ATECC_MAX_YEARS;
        if (!gmtime_r(&now, &tm))
                return -EIO;
        r = certs_pkey_p256_point(key, point);
        if (r < 0)
                return r;
        r = cert_atecc_encode_dates(&tm, years, enc, &nb, &na);
        if (r < 0)
                return r; /* -ERANGE after 2031 */
        r = cert_atecc_serial(point, enc, serial);
        if (r < 0)
                return r;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) || !ASN1_TIME_set(X509_getm_notBefore(cert), nb) ||
            !ASN1_TIME_set(X509_getm_notAfter(cert), na))
                return -EIO;
        return 0;
}

static int make_ca_cert(X509 **ret, EVP_PKEY *key, const char *cn, const char *org, uint32_t days, X509 *issuer,
                        EVP_PKEY *issuer_key, const char *basic_constraints, bool compressed) {
        _cleanup_(X509_freep) X509 *cert = X509_new();
        _cleanup_(X509_NAME_freep) X509_NAME *name = make_name(cn, org);
        int r;

        if (!cert || !name)
                return -ENOMEM;
        if (X509_set_version(cert, X509_VERSION_3) != 1 || X509_set_subject_name(cert, name) != 1 ||
            X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) != 1 ||
            X509_set_pubkey(cert, key) != 1 || !X509_gmtime_adj(X509_getm_notBefore(cert), -3600))
                return -EIO;
        if (days == CA_DAYS_NO_EXPIRY ? ASN1_TIME_set_string(X509_getm_notAfter(cert), "99991231235959Z") != 1
                                      : !X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL))
                return -EIO;
        r = compressed ? compressed_fields(cert, key, days, days == CA_DAYS_NO_EXPIRY) : random_serial(cert);
        if (r < 0)
                return r;
        X509 *iss = issuer ? issuer : cert;
        if ((r = add_ext(cert, iss, NID_basic_constraints, basic_constraints)) < 0 ||
            (r = add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
            (r = add_ext(cert, iss, NID_subject_key_identifier, "hash")) < 0)
                return r;
        if (issuer && (r = add_ext(cert, iss, NID_authority_key_identifier, "keyid:always")) < 0)
                return r;
        if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0)
                return -EIO;
        *ret = TAKE_PTR(cert);
        return 0;
}

static int write_all(int fd, const void *data, size_t len) {
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Writes @bio's contents to dir/name, created exclusively with @mode. */
static int write_new_file(int dirfd, const char *name, mode_t mode, BIO *bio) {
        _cleanup_close_ int fd = -EBADF;
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        int r;

        if (len <= 0)
                return -EIO;
        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        /* The umask must not widen or narrow what we asked for. */
        if (fchmod(fd, mode) < 0)
                r = -errno;
        else
                r = write_all(fd, data, (size_t)len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                unlinkat(dirfd, name, 0);
        return r;
}

static int write_key(int dirfd, const char *name, EVP_PKEY *key) {
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
        int r;
        if (!bio || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
                return -EIO;
        r = write_new_file(dirfd, name, 0600, bio);
        return r;
}

static int write_cert(int dirfd, const char *name, X509 *cert) {
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_X509(bio, cert) != 1)
                return -EIO;
        return write_new_file(dirfd, name, 0644, bio);
}

static int check_absent(int dirfd, const char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
                        return -EEXIST;
                if (errno != ENOENT)
                        return -errno;
        }
        return 0;
}

static void remove_files(int dirfd, const char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++)
                unlinkat(dirfd, names[i], 0);
}

static int open_dir(const char *dir) {
        int fd;
        if (!dir)
                return -EINVAL;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int ca_init(const char *dir, const struct ca_init_opts *opts) {
        static const char *const names[] = { "root.key", "root.pem", "signer.key", "signer.pem" };
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *root_key = NULL, *signer_key = NULL;
        _cleanup_(X509_freep) X509 *root = NULL, *signer = NULL;
        struct ca_opts o;
        size_t written = 0;
        int r;

        r = opts_resolve(opts, &o);
        if (r < 0)
                return r;
        dirfd = open_dir(dir);
        if (dirfd < 0)
                return dirfd;
        r = check_absent(dirfd, names, ELEMENTSOF(names));
        if (r < 0)
                return r;

        root_key = EVP_EC_gen("P-256");
        signer_key = EVP_EC_gen("P-256");
        if (!root_key || !signer_key) {
                r = -EIO;
                goto fail;
        }
        r = make_ca_cert(&root, root_key, o.root_cn, o.org, o.no_expiry ? CA_DAYS_NO_EXPIRY : o.root_days, NULL,
                         root_key, "critical,CA:TRUE", false);
        if (r < 0)
                goto fail;
        r = make_ca_cert(&signer, signer_key, o.signer_cn, o.org, o.no_expiry ? CA_DAYS_NO_EXPIRY : o.signer_days,
                         root, root_key, "critical,CA:TRUE,pathlen:0", o.compressed);
        if (r < 0)
                goto fail;

        /* O_EXCL on every file: a concurrent run or a file created since the check fails us. */
        if ((r = write_key(dirfd, names[0], root_key)) < 0)
                goto fail;
        written++;
        if ((r = write_cert(dirfd, names[1], root)) < 0)
                goto fail;
        written++;
        if ((r = write_key(dirfd, names[2], signer_key)) < 0)
                goto fail;
        written++;
        if ((r = write_cert(dirfd, names[3], signer)) < 0)
                goto fail;
        if (fsync(dirfd) < 0) {
                r = -errno;
                written++;
                goto fail;
        }
        return 0;
fail:
        remove_files(dirfd, names, written);
        ERR_clear_error();
        return r;
}

int ca_signer_csr(const char *dir, const struct ca_init_opts *opts) {
        static const char *const names[] = { "signer.key", "signer.csr" };
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
        _cleanup_(X509_NAME_freep) X509_NAME *name = NULL;
        _cleanup_(ext_stack_freep) STACK_OF(X509_EXTENSION) *exts = NULL;
        _cleanup_(BIO_freep) BIO *bio = NULL;
        X509_EXTENSION *ext;
        struct ca_opts o;
        int r;

        r = opts_resolve(opts, &o);
        if (r < 0)
                return r;
        dirfd = open_dir(dir);
        if (dirfd < 0)
                return dirfd;
        r = check_absent(dirfd, names, ELEMENTSOF(names));
        if (r < 0)
                return r;

        key = EVP_EC_gen("P-256");
        req = X509_REQ_new();
        name = make_name(o.signer_cn, o.org);
        exts = sk_X509_EXTENSION_new_null();
        bio = BIO_new(BIO_s_mem());
        if (!key || !req || !name || !exts || !bio)
                return -ENOMEM;
        if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
            X509_REQ_set_pubkey(req, key) != 1)
                return -EIO;
        ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        if (!ext || !sk_X509_EXTENSION_push(exts, ext)) {
                X509_EXTENSION_free(ext);
                return -EIO;
        }
        ext = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
        if (!ext || !sk_X509_EXTENSION_push(exts, ext)) {
                X509_EXTENSION_free(ext);
                return -EIO;
        }
        if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
            PEM_write_bio_X509_REQ(bio, req) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        r = write_key(dirfd, names[0], key);
        if (r < 0)
                return r;
        r = write_new_file(dirfd, names[1], 0644, bio);
        if (r < 0) {
                remove_files(dirfd, names, 1);
                return r;
        }
        return 0;
}

/* The CSR's extensions: what the signer certificate must say (CA, pathlen 0, keyCertSign). */
static int add_signer_request_exts(X509_REQ *req) {
        _cleanup_(ext_stack_freep) STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        static const struct {
                int nid;
                const char *value;
        } want[] = {
                { NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
                { NID_key_usage, "critical,keyCertSign,cRLSign" },
        };

        if (!exts)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, want[i].nid, want[i].value);
                if (!ext || !sk_X509_EXTENSION_push(exts, ext)) {
                        X509_EXTENSION_free(ext);
                        return -EIO;
                }
        }
        return X509_REQ_add_extensions(req, exts) == 1 ? 0 : -EIO;
}

/* Signs @req's CertificationRequestInfo through a signer backend (the key may
 * be in a token: no EVP_PKEY for it), then checks the result with @pub. */
static int sign_req_with_ops(X509_REQ *req, EVP_PKEY *pub, const struct signer_ops *ops, void *userdata) {
        X509_ALGOR *alg = X509_ALGOR_new();
        ASN1_BIT_STRING *bs = NULL;
        uint8_t *tbs = NULL, digest[32], sig[SIGNER_SIG_MAX];
        size_t sig_len = 0;
        int n, r;

        if (!alg || X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, NULL) != 1 ||
            X509_REQ_set1_signature_algo(req, alg) != 1) {
                X509_ALGOR_free(alg);
                return -EIO;
        }
        X509_ALGOR_free(alg);
        n = i2d_re_X509_REQ_tbs(req, &tbs);
        if (n <= 0)
                return -EIO;
        r = certs_sha256(tbs, (size_t)n, digest);
        OPENSSL_free(tbs);
        if (r < 0)
                return r;
        r = ops->sign(userdata, digest, sig, &sig_len);
        if (r < 0)
                return r;
        bs = ASN1_BIT_STRING_new();
        if (!bs || ASN1_BIT_STRING_set(bs, sig, (int)sig_len) != 1) {
                ASN1_BIT_STRING_free(bs);
                return -EIO;
        }
        /* Whole bytes: without this, i2d drops trailing zero bits of the last
         * byte as "unused" and the written signature no longer verifies. */
        bs->flags = (bs->flags & ~0x07L) | ASN1_STRING_FLAG_BITS_LEFT;
        X509_REQ_set0_signature(req, bs);
        /* Checked as written, not as held in memory. */
        uint8_t *der = NULL;
        const uint8_t *q;
        n = i2d_X509_REQ(req, &der);
        if (n <= 0)
                return -EIO;
        q = der;
        X509_REQ *back = d2i_X509_REQ(NULL, &q, n);
        OPENSSL_free(der);
        r = back && X509_REQ_verify(back, pub) == 1 ? 0 : -EKEYREJECTED; /* not the key the token reported */
        X509_REQ_free(back);
        return r;
}

static EVP_PKEY *pkey_from_point(const uint8_t point[65]) {
        uint8_t spki[26 + 65];
        const uint8_t *p = spki;

        memcpy(spki, certs_p256_spki_prefix, 26);
        memcpy(spki + 26, point, 65);
        return d2i_PUBKEY(NULL, &p, sizeof(spki));
}

int ca_signer_csr_hsm(const char *dir, const struct ca_init_opts *opts, const char *key_uri, const char *pin,
                      const char *module_path) {
        static const char *const names[] = { "signer.csr" };
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
        _cleanup_(X509_NAME_freep) X509_NAME *name = NULL;
        _cleanup_(BIO_freep) BIO *bio = NULL;
        const struct signer_ops *ops = NULL;
        const char *backend = NULL;
        void *userdata = NULL;
        struct ca_hsm_key k;
        struct ca_opts o;
        int r;

        if (!key_uri || strncmp(key_uri, "pkcs11:", 7) != 0)
                return -EINVAL;
        r = opts_resolve(opts, &o);
        if (r < 0)
                return r;
        dirfd = open_dir(dir);
        if (dirfd < 0)
                return dirfd;
        r = check_absent(dirfd, names, ELEMENTSOF(names));
        if (r < 0)
                return r;
        r = ca_hsm_key_info(key_uri, pin, module_path, &k);
        if (r < 0)
                return r;
        pub = pkey_from_point(k.pubkey);
        req = X509_REQ_new();
        name = make_name(o.signer_cn, o.org);
        bio = BIO_new(BIO_s_mem());
        if (!pub || !req || !name || !bio)
                return -ENOMEM;
        if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
            X509_REQ_set_pubkey(req, pub) != 1)
                return -EIO;
        r = add_signer_request_exts(req);
        if (r < 0)
                return r;
        r = signer_open_key(key_uri, pin, module_path, &userdata, &ops, &backend);
        if (r < 0)
                return r;
        r = sign_req_with_ops(req, pub, ops, userdata);
        ops->free(userdata);
        if (r < 0) {
                ERR_clear_error();
                return r;
        }
        if (PEM_write_bio_X509_REQ(bio, req) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        return write_new_file(dirfd, names[0], 0644, bio);
}

int ca_signer_import(const char *cert_path, const char *root_path, const char *key_uri, const char *pin,
                     const char *module_path, const char *out_path) {
        _cleanup_(X509_freep) X509 *cert = NULL;
        _cleanup_(BIO_freep) BIO *in = NULL, *out = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct signer *s = NULL;
        uint32_t flags;
        int r;

        if (!cert_path || !root_path || !key_uri || !out_path)
                return -EINVAL;
        /* Told apart from a bad file: a missing one (BIO_new_file() says neither). */
        if (access(cert_path, R_OK) < 0)
                return -errno;
        in = BIO_new_file(cert_path, "r");
        if (!in) {
                ERR_clear_error();
                return -EIO;
        }
        cert = PEM_read_bio_X509(in, NULL, NULL, NULL);
        if (!cert) {
                ERR_clear_error();
                return -EBADMSG;
        }
        /* What makes it a signer: a CA that may sign end entities only. */
        flags = X509_get_extension_flags(cert);
        if (!(flags & EXFLAG_CA) || !(flags & EXFLAG_BCONS) || X509_get_pathlen(cert) != 0 ||
            !(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
                return -EDOM;
        if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0 || X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
                return -ERANGE;
        /* The key matches (one real signature) and the root signed it. */
        r = signer_open_pkcs11(&s, key_uri, cert_path, pin, module_path);
        if (r < 0)
                return r;
        r = signer_set_root(s, root_path);
        signer_free(s);
        if (r < 0)
                return r;
        out = BIO_new(BIO_s_mem());
        if (!out || PEM_write_bio_X509(out, cert) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        char *data;
        long len = BIO_get_mem_data(out, &data);
        r = len > 0 ? write_all(fd, data, (size_t)len) : -EIO;
        if (r == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
                r = -errno;
        if (r < 0)
                unlink(out_path);
        return r;
}

#if !HAVE_PKCS11
int ca_hsm_keygen(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret) {
        return -EPROTONOSUPPORT;
}

int ca_hsm_key_info(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret) {
        return -EPROTONOSUPPORT;
}
#endif

/* --- rotation: a new signer certified by a root whose key is at hand ------- */

/* Reads a PEM private key (the root's): an EC key; load_root() ties it to the root certificate. */
static int read_root_key(const char *path, EVP_PKEY **ret) {
        _cleanup_(BIO_freep) BIO *bio = NULL;
        EVP_PKEY *k;

        if (!path)
                return -EINVAL;
        bio = BIO_new_file(path, "r");
        if (!bio) {
                ERR_clear_error();
                return -ENOENT;
        }
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        if (!k) {
                ERR_clear_error();
                return -EBADMSG;
        }
        if (!EVP_PKEY_is_a(k, "EC")) {
                EVP_PKEY_free(k);
                return -EKEYREJECTED;
        }
        *ret = k;
        return 0;
}

static int read_pem_cert(const char *path, X509 **ret) {
        _cleanup_(BIO_freep) BIO *bio = NULL;
        X509 *c;

        if (!path)
                return -EINVAL;
        bio = BIO_new_file(path, "r");
        if (!bio) {
                ERR_clear_error();
                return -ENOENT;
        }
        c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!c) {
                ERR_clear_error();
                return -EBADMSG;
        }
        *ret = c;
        return 0;
}

/* The root key and certificate must belong together: a rotation signed by
 * another key would give a signer no board's chain leads to. */
static int load_root(const char *key_path, const char *cert_path, EVP_PKEY **ret_key, X509 **ret_cert) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_(X509_freep) X509 *cert = NULL;
        int r;

        r = read_root_key(key_path, &key);
        if (r < 0)
                return r;
        r = read_pem_cert(cert_path, &cert);
        if (r < 0)
                return r;
        if (X509_check_private_key(cert, key) != 1) {
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        *ret_key = TAKE_PTR(key);
        *ret_cert = TAKE_PTR(cert);
        return 0;
}

int ca_signer_issue(const char *dir, const char *name, const char *root_key_path, const char *root_cert_path,
                    const struct ca_init_opts *opts) {
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *root_key = NULL, *key = NULL;
        _cleanup_(X509_freep) X509 *root = NULL, *cert = NULL;
        char key_name[128], cert_name[128];
        const char *names[2] = { key_name, cert_name };
        struct ca_opts o;
        int r;

        if (!name || !name[0] || strchr(name, '/') || strlen(name) > 100)
                return -EINVAL;
        r = opts_resolve(opts, &o);
        if (r < 0)
                return r;
        snprintf(key_name, sizeof key_name, "%s.key", name);
        snprintf(cert_name, sizeof cert_name, "%s.pem", name);
        dirfd = open_dir(dir);
        if (dirfd < 0)
                return dirfd;
        r = check_absent(dirfd, names, ELEMENTSOF(names));
        if (r < 0)
                return r;
        r = load_root(root_key_path, root_cert_path, &root_key, &root);
        if (r < 0)
                return r;
        key = EVP_EC_gen("P-256");
        if (!key)
                return -EIO;
        r = make_ca_cert(&cert, key, o.signer_cn, o.org, o.no_expiry ? CA_DAYS_NO_EXPIRY : o.signer_days, root,
                         root_key, "critical,CA:TRUE,pathlen:0", o.compressed);
        if (r < 0)
                goto fail;
        r = write_key(dirfd, key_name, key);
        if (r < 0)
                goto fail;
        r = write_cert(dirfd, cert_name, cert);
        if (r < 0) {
                remove_files(dirfd, names, 1);
                goto fail;
        }
        if (fsync(dirfd) < 0) {
                r = -errno;
                remove_files(dirfd, names, 2);
                goto fail;
        }
        return 0;
fail:
        ERR_clear_error();
        return r;
}

int ca_sign_signer_csr(const char *csr_path, const char *root_key_path, const char *root_cert_path,
                       const struct ca_init_opts *opts, const char *out_path) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *root_key = NULL;
        _cleanup_(X509_freep) X509 *root = NULL, *cert = NULL;
        _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
        _cleanup_(BIO_freep) BIO *in = NULL, *out = NULL;
        _cleanup_close_ int fd = -EBADF;
        EVP_PKEY *pub;
        struct ca_opts o;
        char *data;
        long len;
        int r;

        if (!csr_path || !out_path)
                return -EINVAL;
        r = opts_resolve(opts, &o);
        if (r < 0)
                return r;
        r = load_root(root_key_path, root_cert_path, &root_key, &root);
        if (r < 0)
                return r;
        in = BIO_new_file(csr_path, "r");
        if (!in) {
                ERR_clear_error();
                return -ENOENT;
        }
        req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
        if (!req) {
                ERR_clear_error();
                return -EBADMSG;
        }
        /* The CSR proves possession of its key; only a P-256 key is a signer here. Its
         * subject and extensions are not taken: the certificate says what a signer says. */
        pub = X509_REQ_get0_pubkey(req);
        if (!pub || X509_REQ_verify(req, pub) != 1) {
                ERR_clear_error();
                return -EBADMSG;
        }
        {
                uint8_t point[65];
                if (certs_pkey_p256_point(pub, point) < 0)
                        return -EKEYREJECTED;
        }
        r = make_ca_cert(&cert, pub, o.signer_cn, o.org, o.no_expiry ? CA_DAYS_NO_EXPIRY : o.signer_days, root,
                         root_key, "critical,CA:TRUE,pathlen:0", o.compressed);
        if (r < 0) {
                ERR_clear_error();
                return r;
        }
        out = BIO_new(BIO_s_mem());
        if (!out || PEM_write_bio_X509(out, cert) != 1)
                return -EIO;
        len = BIO_get_mem_data(out, &data);
        fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        r = write_all(fd, data, (size_t)len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                unlink(out_path);
        return r;
}
