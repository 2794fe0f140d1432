/* SPDX-License-Identifier: MIT */
/* The pkcs11: signer backend (RFC 7512 URI, libp11). The private key stays in the
 * token: libp11 hooks the EC_KEY's method so ECDSA_do_sign() becomes C_Sign with
 * CKM_ECDSA on our digest. Signing takes no lock of ours: libp11 (0.4.12, the
 * version we build with) keeps a pool of sessions per slot and gives every C_SignInit/C_Sign
 * pair its own session (waiting on a condition variable when all are busy), so
 * worker threads sign in parallel as far as the token allows. Our module lock
 * covers only login, key lookup and freeing. bench-crypto measures 1 and 2
 * threads through SoftHSM2. */

#define OPENSSL_SUPPRESS_DEPRECATED 1 /* EVP_PKEY_get0_EC_KEY(), ECDSA_do_sign(): see above */

#include "config.h"

#include <ctype.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>

#include <libp11.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>

#include "signer-internal.h"
#include "basic/hex.h"

#define URI_MAX SIGNER_URI_MAX
#define DEFAULT_MODULE "p11-kit-proxy.so"

struct p11_uri {
        char *token, *manufacturer, *serial, *model, *object, *type;
        char *slot_description, *slot_manufacturer;
        uint8_t id[128];
        size_t id_len;
        bool has_id, has_slot_id;
        unsigned long slot_id;
        char *module_path, *pin_source;
};

/* A loaded PKCS#11 module, shared by every signer that uses it. Loading a module
 * twice in one process does not work: the second C_Initialize() is refused or
 * shared, and the first C_Finalize() tears down the other's sessions. So there
 * is one context per loaded library, reference-counted, with its slot list and
 * the lock that serialises logins and key lookups. A library is recognised by its
 * path, or by the dynamic loader's handle, so that two paths to one file (a
 * symlink, a hard link, a bare name the loader resolves) share it too. Slots are
 * enumerated when the module is first loaded; a token plugged in later is seen
 * once every signer on that module has been freed. */
struct p11_login {
        struct p11_login *next;
        PKCS11_SLOT *slot;
        char *pin; /* the PIN that logged this slot in; a later open must present the same */
};

struct p11_module {
        struct p11_module *next;
        struct p11_login *logins; /* under lock */
        char *path;
        void *handle; /* the loader's handle for the library (an identity, not a reference) */
        unsigned refs; /* under modules_lock */
        pthread_mutex_t lock; /* serialises login, key lookup and freeing (not signing: libp11's session pool) */
        PKCS11_CTX *ctx;
        PKCS11_SLOT *slots;
        unsigned int nslots;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *modules;

struct p11_signer {
        struct p11_module *mod;
        EVP_PKEY *key; /* handle to the token key; no key material */
        EC_KEY *ec;    /* its EC_KEY with libp11's method (one reference) */
};

static struct p11_login *login_free(struct p11_login *l) {
        if (!l)
                return NULL;
        if (l->pin) {
                OPENSSL_cleanse(l->pin, strlen(l->pin));
                free(l->pin);
        }
        free(l);
        return NULL;
}

static void module_destroy(struct p11_module *m) {
        if (!m)
                return;
        while (m->logins) {
                struct p11_login *l = m->logins;
                m->logins = l->next;
                login_free(l);
        }
        if (m->slots)
                PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
        if (m->ctx) {
                PKCS11_CTX_unload(m->ctx);
                PKCS11_CTX_free(m->ctx);
        }
        pthread_mutex_destroy(&m->lock);
        free(m->path);
        free(m);
}

/* The loader's handle for @path if that library is loaded already, else NULL.
 * Takes no reference: the handle only identifies the library while a module of
 * ours keeps it loaded (all under modules_lock). */
static void *loaded_handle(const char *path) {
        void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);

        if (h)
                dlclose(h);
        return h;
}

static int module_get(const char *path, struct p11_module **ret) {
        struct p11_module *m;
        void *h;
        int r = 0;

        pthread_mutex_lock(&modules_lock);
        h = loaded_handle(path);
        for (m = modules; m; m = m->next)
                if (strcmp(m->path, path) == 0 || (h && m->handle == h)) {
                        m->refs++;
                        goto out;
                }
        m = calloc(1, sizeof(*m));
        if (!m || !(m->path = strdup(path))) {
                free(m);
                m = NULL;
                r = -ENOMEM;
                goto out;
        }
        pthread_mutex_init(&m->lock, NULL);
        m->refs = 1;
        m->ctx = PKCS11_CTX_new();
        if (!m->ctx) {
                r = -ENOMEM;
                goto fail;
        }
        if (PKCS11_CTX_load(m->ctx, path) < 0) {
                PKCS11_CTX_free(m->ctx);
                m->ctx = NULL;
                r = -EIO;
                goto fail;
        }
        if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) < 0) {
                m->slots = NULL;
                r = -EIO;
                goto fail;
        }
        m->handle = loaded_handle(path);
        m->next = modules;
        modules = m;
        goto out;
fail:
        module_destroy(m);
        m = NULL;
out:
        pthread_mutex_unlock(&modules_lock);
        ERR_clear_error();
        if (r == 0)
                *ret = m;
        return r;
}

static void module_put(struct p11_module *m) {
        if (!m)
                return;
        pthread_mutex_lock(&modules_lock);
        if (--m->refs > 0) {
                pthread_mutex_unlock(&modules_lock);
                return;
        }
        for (struct p11_module **p = &modules; *p; p = &(*p)->next)
                if (*p == m) {
                        *p = m->next;
                        break;
                }
        module_destroy(m);
        pthread_mutex_unlock(&modules_lock);
}

static void uri_done(struct p11_uri *u) {
        free(u->token);
        free(u->manufacturer);
        free(u->serial);
        free(u->model);
        free(u->object);
        free(u->type);
        free(u->slot_description);
        free(u->slot_manufacturer);
        free(u->module_path);
        free(u->pin_source);
}


/* Percent-decodes [s, s+n) into a new buffer (NUL-terminated; *ret_len without it). */
static int pct_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len) {
        uint8_t *out = malloc(n + 1);
        size_t k = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        int hi, lo;
                        if (i + 2 >= n) {
                                free(out);
                                return -EINVAL;
                        }
                        hi = unhexchar(s[i + 1]);
                        lo = unhexchar(s[i + 2]);
                        if (hi < 0 || lo < 0) {
                                free(out);
                                return -EINVAL;
                        }
                        out[k++] = (uint8_t)(hi << 4 | lo);
                        i += 2;
                } else
                        out[k++] = (uint8_t)s[i];
        }
        out[k] = '\0';
        *ret = out;
        *ret_len = k;
        return 0;
}

static int set_str(char **field, const char *v, size_t n) {
        uint8_t *d;
        size_t len;
        int r;

        if (*field) /* attributes must not repeat */
                return -EINVAL;
        r = pct_decode(v, n, &d, &len);
        if (r < 0)
                return r;
        if (memchr(d, '\0', len)) {
                free(d);
                return -EINVAL;
        }
        *field = (char *)d;
        return 0;
}

static int parse_attr(struct p11_uri *u, const char *a, size_t n, bool query) {
        const char *eq = memchr(a, '=', n);
        size_t kl, vl;
        const char *v;

        if (!eq)
                return -EINVAL;
        kl = (size_t)(eq - a);
        v = eq + 1;
        vl = n - kl - 1;
#define KEY(s) (kl == strlen(s) && memcmp(a, s, kl) == 0)
        if (!query) {
                if (KEY("token"))
                        return set_str(&u->token, v, vl);
                if (KEY("manufacturer"))
                        return set_str(&u->manufacturer, v, vl);
                if (KEY("serial"))
                        return set_str(&u->serial, v, vl);
                if (KEY("model"))
                        return set_str(&u->model, v, vl);
                if (KEY("object"))
                        return set_str(&u->object, v, vl);
                if (KEY("type"))
                        return set_str(&u->type, v, vl);
                if (KEY("slot-description"))
                        return set_str(&u->slot_description, v, vl);
                if (KEY("slot-manufacturer"))
                        return set_str(&u->slot_manufacturer, v, vl);
                if (KEY("id")) {
                        uint8_t *d;
                        size_t len;
                        int r;
                        if (u->has_id)
                                return -EINVAL;
                        r = pct_decode(v, vl, &d, &len);
                        if (r < 0)
                                return r;
                        if (len > sizeof(u->id)) {
                                free(d);
                                return -EINVAL;
                        }
                        memcpy(u->id, d, len);
                        u->id_len = len;
                        u->has_id = true;
                        free(d);
                        return 0;
                }
                if (KEY("slot-id")) {
                        char buf[24], *end;
                        if (u->has_slot_id || vl == 0 || vl >= sizeof(buf))
                                return -EINVAL;
                        memcpy(buf, v, vl);
                        buf[vl] = '\0';
                        errno = 0;
                        u->slot_id = strtoul(buf, &end, 10);
                        if (errno || *end || !isdigit((unsigned char)buf[0]))
                                return -EINVAL;
                        u->has_slot_id = true;
                        return 0;
                }
                /* Library attributes describe the module; we load one explicitly. */
                if (KEY("library-manufacturer") || KEY("library-description") || KEY("library-version"))
                        return 0;
        } else {
                if (KEY("module-path"))
                        return set_str(&u->module_path, v, vl);
                if (KEY("pin-value"))
                        return -ENOTSUP; /* a PIN in the URI ends up in configs and logs: use pin-source */
                if (KEY("pin-source"))
                        return set_str(&u->pin_source, v, vl);
                if (KEY("module-name"))
                        return 0; /* module-path or the configured module wins */
        }
#undef KEY
        return -EINVAL; /* an attribute we do not understand could change what matches: refuse */
}

static int parse_uri(const char *uri, struct p11_uri *u) {
        const char *p, *q, *end;
        size_t len = strnlen(uri, URI_MAX + 1);
        int r;

        if (len > URI_MAX || strncmp(uri, "pkcs11:", 7) != 0)
                return -EINVAL;
        p = uri + 7;
        q = strchr(p, '?');
        end = q ? q : uri + len;
        while (p < end) {
                const char *sep = memchr(p, ';', (size_t)(end - p));
                const char *e = sep ? sep : end;
                if (e > p) {
                        r = parse_attr(u, p, (size_t)(e - p), false);
                        if (r < 0)
                                return r;
                }
                p = e + (sep ? 1 : 0);
        }
        if (q) {
                p = q + 1;
                end = uri + len;
                while (p < end) {
                        const char *sep = memchr(p, '&', (size_t)(end - p));
                        const char *e = sep ? sep : end;
                        if (e > p) {
                                r = parse_attr(u, p, (size_t)(e - p), true);
                                if (r < 0)
                                        return r;
                        }
                        p = e + (sep ? 1 : 0);
                }
        }
        if (u->type && strcmp(u->type, "private") != 0)
                return -EINVAL;
        if (!u->object && !u->has_id)
                return -EINVAL; /* which key? */
        return 0;
}

int signer_pkcs11_target(const char *uri, struct p11_target *ret) {
        struct p11_uri u = {};
        int r;

        r = parse_uri(uri, &u);
        if (r < 0) {
                uri_done(&u);
                return r;
        }
        *ret = (struct p11_target){
                .token = TAKE_PTR(u.token),
                .serial = TAKE_PTR(u.serial),
                .object = TAKE_PTR(u.object),
                .module_path = TAKE_PTR(u.module_path),
                .pin_source = TAKE_PTR(u.pin_source),
                .has_id = u.has_id,
                .id_len = u.id_len,
        };
        memcpy(ret->id, u.id, sizeof(ret->id));
        uri_done(&u);
        return 0;
}

void p11_target_done(struct p11_target *t) {
        free(t->token);
        free(t->serial);
        free(t->object);
        free(t->module_path);
        free(t->pin_source);
        *t = (struct p11_target){};
}

static bool str_match(const char *want, const char *have) {
        return !want || (have && strcmp(want, have) == 0);
}

static int find_slot(struct p11_module *mod, const struct p11_uri *u, PKCS11_SLOT **ret) {
        PKCS11_SLOT *found = NULL;

        for (unsigned int i = 0; i < mod->nslots; i++) {
                PKCS11_SLOT *s = &mod->slots[i];
                PKCS11_TOKEN *t = s->token;
                if (!t || !t->initialized)
                        continue;
                if (!str_match(u->token, t->label) || !str_match(u->manufacturer, t->manufacturer) ||
                    !str_match(u->serial, t->serialnr) || !str_match(u->model, t->model) ||
                    !str_match(u->slot_description, s->description) ||
                    !str_match(u->slot_manufacturer, s->manufacturer))
                        continue;
                if (u->has_slot_id && PKCS11_get_slotid_from_slot(s) != u->slot_id)
                        continue;
                if (found)
                        return -ENOTUNIQ;
                found = s;
        }
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

static int find_key(PKCS11_TOKEN *token, const struct p11_uri *u, PKCS11_KEY **ret) {
        PKCS11_KEY *keys = NULL, *found = NULL;
        unsigned int n = 0;

        if (PKCS11_enumerate_keys(token, &keys, &n) < 0) {
                ERR_clear_error();
                return -EIO;
        }
        for (unsigned int i = 0; i < n; i++) {
                PKCS11_KEY *k = &keys[i];
                if (!k->isPrivate)
                        continue;
                if (u->object && (!k->label || strcmp(u->object, k->label) != 0))
                        continue;
                if (u->has_id && (k->id_len != u->id_len || memcmp(k->id, u->id, u->id_len) != 0))
                        continue;
                if (found)
                        return -ENOTUNIQ;
                found = k;
        }
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

/* Logs @slot in, or, if a signer on this module already did, checks that @pin is
 * the PIN that worked then: the token cannot tell us (we are logged in), and a
 * wrong PIN must not pass just because another signer is open. So a PIN is
 * recorded only once C_Login has accepted it, and a slot that is logged in
 * without a record of ours is refused: there is nothing to check @pin against.
 * Under mod->lock.
 *
 * Why the library must be loaded only once (module_get()): libp11 reports its
 * own login state, not the token's, and takes CKR_USER_ALREADY_LOGGED_IN from
 * C_Login as success. A second context on the same library would log in with
 * any PIN. Code outside this file that logs the same token in through its own
 * context would defeat the check the same way; provd has none. */
static int slot_login(struct p11_module *mod, PKCS11_SLOT *slot, const char *pin) {
        struct p11_login *l;
        int logged_in = 0;
        size_t n = strlen(pin);

        for (l = mod->logins; l; l = l->next)
                if (l->slot == slot) {
                        if (strlen(l->pin) != n || CRYPTO_memcmp(l->pin, pin, n) != 0)
                                return -EACCES;
                        return 0;
                }
        if (PKCS11_is_logged_in(slot, 0, &logged_in) < 0) {
                ERR_clear_error();
                return -EIO;
        }
        if (logged_in)
                return -EACCES;
        /* Allocated first: a login that succeeded is always recorded. */
        l = calloc(1, sizeof(*l));
        if (!l || !(l->pin = strdup(pin))) {
                login_free(l);
                return -ENOMEM;
        }
        if (PKCS11_login(slot, 0, pin) < 0) {
                ERR_clear_error();
                login_free(l);
                return -EACCES;
        }
        l->slot = slot;
        l->next = mod->logins;
        mod->logins = l;
        return 0;
}

static int p11_sign(void *userdata, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len) {
        struct p11_signer *ps = userdata;
        ECDSA_SIG *es;
        uint8_t *p = sig;
        int n;

        es = ECDSA_do_sign(digest, 32, ps->ec);
        if (!es) {
                ERR_clear_error();
                return -EIO;
        }
        n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || n > SIGNER_SIG_MAX) {
                ECDSA_SIG_free(es);
                return -EIO;
        }
        i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        *ret_len = (size_t)n;
        return 0;
}

static void p11_free(void *userdata) {
        struct p11_signer *ps = userdata;
        if (!ps)
                return;
        if (ps->mod)
                pthread_mutex_lock(&ps->mod->lock);
        EC_KEY_free(ps->ec); /* before the module they refer to */
        EVP_PKEY_free(ps->key);
        if (ps->mod) {
                pthread_mutex_unlock(&ps->mod->lock);
                module_put(ps->mod);
        }
        free(ps);
}

static const struct signer_ops p11_ops = {
        .sign = p11_sign,
        .free = p11_free,
};

int signer_pkcs11_open(const char *uri, const char *pin, const char *module_path, void **ret_userdata,
                       const struct signer_ops **ret_ops) {
        struct p11_uri u = {};
        struct p11_signer *ps = NULL;
        PKCS11_SLOT *slot = NULL;
        PKCS11_KEY *key = NULL;
        char *pin_buf = NULL;
        const char *module, *use_pin;
        int r;

        r = parse_uri(uri, &u);
        if (r < 0)
                goto out;

        module = u.module_path ? u.module_path
                 : module_path ? module_path
                 : secure_getenv("PROVD_PKCS11_MODULE") ? secure_getenv("PROVD_PKCS11_MODULE")
                                                         : DEFAULT_MODULE;
        use_pin = pin;
        if (!use_pin && u.pin_source) {
                r = signer_pin_read(u.pin_source, &pin_buf);
                if (r < 0)
                        goto out;
                use_pin = pin_buf;
        }

        ps = calloc(1, sizeof(*ps));
        if (!ps) {
                r = -ENOMEM;
                goto out;
        }
        r = module_get(module, &ps->mod);
        if (r < 0)
                goto out;

        pthread_mutex_lock(&ps->mod->lock);
        r = find_slot(ps->mod, &u, &slot);
        if (r < 0)
                goto unlock;
        if (use_pin) {
                r = slot_login(ps->mod, slot, use_pin);
                if (r < 0)
                        goto unlock;
        } else if (slot->token->loginRequired) {
                /* Even if another signer logged the token in: a configuration
                 * without a PIN would fail at the next start, so fail now. */
                r = -EACCES;
                goto unlock;
        }
        r = find_key(slot->token, &u, &key);
        if (r < 0)
                goto unlock;
        ps->key = PKCS11_get_private_key(key);
        if (!ps->key || !(ps->ec = EVP_PKEY_get1_EC_KEY(ps->key)))
                r = -EKEYREJECTED;
unlock:
        pthread_mutex_unlock(&ps->mod->lock);
        if (r < 0)
                goto out;
        *ret_userdata = TAKE_PTR(ps);
        *ret_ops = &p11_ops;
        r = 0;
out:
        ERR_clear_error();
        p11_free(ps);
        signer_pin_free(pin_buf);
        uri_done(&u);
        return r;
}

int signer_pkcs11_uri_check(const char *uri) {
        struct p11_uri u = {};
        int r;

        if (!uri)
                return -EINVAL;
        r = parse_uri(uri, &u);
        uri_done(&u);
        return r;
}
