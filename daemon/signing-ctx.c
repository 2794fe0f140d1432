/* SPDX-License-Identifier: MIT */
/* The reference-counted signing context (signing-ctx.h). */

#include <errno.h>
#include <stdlib.h>

#include "certs-hsm/cert.h"
#include "signing-ctx.h"

int signing_ctx_new(struct signing_ctx **ret, struct issuer *issuer, int64_t signer_id) {
        struct signing_ctx *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->issuer = issuer_ref(issuer);
        c->signer_id = signer_id;
        c->chain_der = issuer_signer_cert_der(issuer, &c->chain_len);
        c->have_root_pubkey = issuer_root_pubkey(issuer, c->root_pubkey) >= 0;
        *ret = c;
        return 0;
}

struct signing_ctx *signing_ctx_ref(struct signing_ctx *c) {
        if (c)
                __atomic_add_fetch(&c->n_ref, 1, __ATOMIC_RELAXED);
        return c;
}

struct signing_ctx *signing_ctx_unref(struct signing_ctx *c) {
        if (!c || __atomic_sub_fetch(&c->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        issuer_free(c->issuer);
        free(c);
        return NULL;
}
