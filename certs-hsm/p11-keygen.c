/* SPDX-License-Identifier: MIT */
/* The signer key pair generated inside a PKCS#11 token (libp11 0.4.12 cannot make EC keys), and its attributes read back. */

#include "config.h"

#include <dlfcn.h>

#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

#include "certs-hsm/ca.h"
#include "signer-internal.h"

/* DER OID prime256v1, the CKA_EC_PARAMS of a P-256 key. */
static const uint8_t ec_params_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

struct p11 {
        void *dl;
        CK_FUNCTION_LIST_PTR f;
        bool initialized; /* by us: finalise at the end */
        CK_SESSION_HANDLE session;
        bool have_session, logged_in;
};

static void p11_close(struct p11 *p) {
        if (p->logged_in)
                p->f->C_Logout(p->session);
        if (p->have_session)
                p->f->C_CloseSession(p->session);
        if (p->initialized)
                p->f->C_Finalize(NULL);
        if (p->dl)
                dlclose(p->dl);
        *p = (struct p11){};
}

static int rv_to_errno(CK_RV rv) {
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_LOCKED:
        case CKR_USER_PIN_NOT_INITIALIZED:
                return -EACCES;
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY:
                return -ENOMEM;
        case CKR_MECHANISM_INVALID:
        case CKR_DOMAIN_PARAMS_INVALID:
        case CKR_TEMPLATE_INCONSISTENT:
        case CKR_ATTRIBUTE_VALUE_INVALID:
                return -EMEDIUMTYPE; /* the token cannot make such a key (not -ENOTSUP: that is pin-value=) */
        default:
                return -EIO;
        }
}

/* Trailing-space-padded PKCS#11 field against a URI value. */
static bool field_is(const CK_UTF8CHAR *field, size_t size, const char *want) {
        size_t n = size;
        while (n > 0 && field[n - 1] == ' ')
                n--;
        return !want || (strlen(want) == n && memcmp(field, want, n) == 0);
}

/* Loads the module, finds the one token the URI names, logs in (RW session). */
static int p11_open(struct p11 *p, const struct p11_target *t, const char *module, const char *pin) {
        CK_C_GetFunctionList get;
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        CK_SLOT_ID slots[64], slot = 0;
        CK_ULONG n = ELEMENTSOF(slots);
        CK_RV rv;
        int found = 0;

        p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        if (!p->dl)
                return -EIO;
        get = (CK_C_GetFunctionList)dlsym(p->dl, "C_GetFunctionList");
        if (!get || get(&p->f) != CKR_OK || !p->f)
                return -EIO;
        rv = p->f->C_Initialize(&args);
        if (rv == CKR_OK)
                p->initialized = true;
        else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) /* a signer of ours has it loaded: share it */
                return -EIO;
        if (p->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                return -EIO;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (!field_is(ti.label, sizeof(ti.label), t->token) ||
                    !field_is(ti.serialNumber, sizeof(ti.serialNumber), t->serial))
                        continue;
                slot = slots[i];
                found++;
        }
        if (found == 0)
                return -ENOENT;
        if (found > 1)
                return -ENOTUNIQ;
        rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->session);
        if (rv != CKR_OK)
                return rv_to_errno(rv);
        p->have_session = true;
        if (pin) {
                rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
                if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
                        return rv_to_errno(rv);
                p->logged_in = rv == CKR_OK;
        }
        return 0;
}

/* The objects of @cls matching the URI's label/id; at most @max handles. */
static int find(struct p11 *p, const struct p11_target *t, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h, CK_ULONG max,
                CK_ULONG *ret_n) {
        CK_ATTRIBUTE tmpl[3] = { { CKA_CLASS, &cls, sizeof(cls) } };
        CK_ULONG k = 1;
        CK_RV rv;

        if (t->object)
                tmpl[k++] = (CK_ATTRIBUTE){ CKA_LABEL, t->object, strlen(t->object) };
        if (t->has_id)
                tmpl[k++] = (CK_ATTRIBUTE){ CKA_ID, (void *)t->id, t->id_len };
        if (p->f->C_FindObjectsInit(p->session, tmpl, k) != CKR_OK)
                return -EIO;
        rv = p->f->C_FindObjects(p->session, h, max, ret_n);
        p->f->C_FindObjectsFinal(p->session);
        return rv == CKR_OK ? 0 : -EIO;
}

static bool get_bool(struct p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, bool *ok) {
        CK_BBOOL v = CK_FALSE;
        CK_ATTRIBUTE a = { type, &v, sizeof(v) };
        if (p->f->C_GetAttributeValue(p->session, h, &a, 1) != CKR_OK)
                *ok = false;
        return v == CK_TRUE;
}

/* The public point from CKA_EC_POINT (a DER OCTET STRING around 04 || X || Y). */
static int get_point(struct p11 *p, CK_OBJECT_HANDLE pub, uint8_t ret[65]) {
        uint8_t buf[80];
        CK_ATTRIBUTE a = { CKA_EC_POINT, buf, sizeof(buf) };

        if (p->f->C_GetAttributeValue(p->session, pub, &a, 1) != CKR_OK)
                return -EIO;
        if (a.ulValueLen == 67 && buf[0] == 0x04 && buf[1] == 65 && buf[2] == 0x04)
                memcpy(ret, buf + 2, 65);
        else if (a.ulValueLen == 65 && buf[0] == 0x04) /* some tokens give the raw point */
                memcpy(ret, buf, 65);
        else
                return -EKEYREJECTED;
        return 0;
}

static int read_attrs(struct p11 *p, const struct p11_target *t, struct ca_hsm_key *ret) {
        CK_OBJECT_HANDLE priv[2], pub[2];
        CK_ULONG np = 0, nu = 0;
        struct ca_hsm_key k = {};
        bool ok = true;
        int r;

        r = find(p, t, CKO_PRIVATE_KEY, priv, 2, &np);
        if (r < 0)
                return r;
        if (np == 0)
                return -ENOENT;
        if (np > 1)
                return -ENOTUNIQ;
        r = find(p, t, CKO_PUBLIC_KEY, pub, 2, &nu);
        if (r < 0)
                return r;
        if (nu != 1)
                return nu ? -ENOTUNIQ : -ENOENT;
        k.sensitive = get_bool(p, priv[0], CKA_SENSITIVE, &ok);
        k.extractable = get_bool(p, priv[0], CKA_EXTRACTABLE, &ok);
        k.always_sensitive = get_bool(p, priv[0], CKA_ALWAYS_SENSITIVE, &ok);
        k.never_extractable = get_bool(p, priv[0], CKA_NEVER_EXTRACTABLE, &ok);
        k.token = get_bool(p, priv[0], CKA_TOKEN, &ok);
        k.private_object = get_bool(p, priv[0], CKA_PRIVATE, &ok);
        if (!ok)
                return -EIO;
        /* The proof that matters: asking for the private value itself. */
        {
                CK_ATTRIBUTE a = { CKA_VALUE, NULL, 0 };
                CK_RV rv = p->f->C_GetAttributeValue(p->session, priv[0], &a, 1);
                k.value_readable = rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION && a.ulValueLen > 0;
        }
        r = get_point(p, pub[0], k.pubkey);
        if (r < 0)
                return r;
        *ret = k;
        return 0;
}

static int with_token(const char *uri, const char *pin, const char *module_path, bool generate,
                      struct ca_hsm_key *ret) {
        struct p11_target t = {};
        struct p11 p = {};
        char *pin_buf = NULL;
        int r;

        if (!uri || !ret)
                return -EINVAL;
        r = signer_pkcs11_target(uri, &t);
        if (r < 0)
                return r;
        if (!t.token || (!t.object && !t.has_id)) {
                r = -EINVAL; /* the key is made in one named token, under a name */
                goto out;
        }
        if (!pin && t.pin_source) {
                r = signer_pin_read(t.pin_source, &pin_buf);
                if (r < 0)
                        goto out;
                pin = pin_buf;
        }
        if (!pin) {
                r = -EACCES;
                goto out;
        }
        r = p11_open(&p, &t, signer_pkcs11_module(&t, module_path), pin);
        if (r < 0)
                goto out;
        if (generate) {
                CK_OBJECT_HANDLE h[1], pub, priv;
                CK_ULONG n = 0;
                CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
                CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
                CK_OBJECT_CLASS any[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
                const char *label = t.object ? t.object : "provd signer";

                /* Never a second key under the same name: the URI would match both. */
                for (size_t i = 0; i < ELEMENTSOF(any); i++) {
                        r = find(&p, &t, any[i], h, 1, &n);
                        if (r < 0)
                                goto out;
                        if (n > 0) {
                                r = -EEXIST;
                                goto out;
                        }
                }
                CK_ATTRIBUTE pub_tmpl[6] = {
                        { CKA_TOKEN, &yes, sizeof(yes) },
                        { CKA_EC_PARAMS, (void *)ec_params_p256, sizeof(ec_params_p256) },
                        { CKA_VERIFY, &yes, sizeof(yes) },
                        { CKA_LABEL, (void *)label, strlen(label) },
                };
                CK_ATTRIBUTE priv_tmpl[10] = {
                        { CKA_TOKEN, &yes, sizeof(yes) },
                        { CKA_PRIVATE, &yes, sizeof(yes) },
                        { CKA_SENSITIVE, &yes, sizeof(yes) },
                        { CKA_EXTRACTABLE, &no, sizeof(no) },
                        { CKA_SIGN, &yes, sizeof(yes) },
                        { CKA_DECRYPT, &no, sizeof(no) },
                        { CKA_DERIVE, &no, sizeof(no) },
                        { CKA_LABEL, (void *)label, strlen(label) },
                };
                CK_ULONG npub = 4, npriv = 8;
                if (t.has_id) {
                        pub_tmpl[npub++] = (CK_ATTRIBUTE){ CKA_ID, t.id, t.id_len };
                        priv_tmpl[npriv++] = (CK_ATTRIBUTE){ CKA_ID, t.id, t.id_len };
                }
                CK_RV rv = p.f->C_GenerateKeyPair(p.session, &mech, pub_tmpl, npub, priv_tmpl, npriv, &pub, &priv);
                if (rv != CKR_OK) {
                        r = rv_to_errno(rv);
                        goto out;
                }
        }
        r = read_attrs(&p, &t, ret);
        /* What we made must be what we asked for; a token that ignores the
         * template would leave an exportable signer key behind. */
        if (r == 0 && generate &&
            (!ret->sensitive || ret->extractable || !ret->never_extractable || !ret->always_sensitive || !ret->token ||
             ret->value_readable))
                r = -EKEYREJECTED;
out:
        p11_close(&p);
        signer_pin_free(pin_buf);
        p11_target_done(&t);
        return r;
}

int ca_hsm_keygen(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret) {
        return with_token(uri, pin, module_path, true, ret);
}

int ca_hsm_key_info(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret) {
        return with_token(uri, pin, module_path, false, ret);
}
