/* SPDX-License-Identifier: MIT */
/* What a certificate is issued under: issuer, its database id, the chain sent to boards, the root key. */
#ifndef PROVD_SIGNING_CTX_H
#define PROVD_SIGNING_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct issuer;

/*
 * Immutable once made and reference-counted (atomically: a worker job may
 * hold one). The manager holds the current one; a session takes a reference
 * when its issuance starts and keeps it until RESULT, so a signer rotation
 * (manager_set_signing_ctx()) never changes what an in-flight board receives
 * or what its record names.
 */
struct signing_ctx {
        unsigned n_ref;                 /* private: signing_ctx_ref()/unref() */
        struct issuer *issuer;          /* one reference owned */
        int64_t signer_id;              /* signers.id of the issuer's certificate */
        const uint8_t *chain_der;       /* PUT_CERT's SIGNER_CERT: the signer certificate (issuer's memory) */
        size_t chain_len;
        bool have_root_pubkey;
        uint8_t root_pubkey[65];        /* PUT_CERT's ROOT_PUBKEY (uncompressed P-256) */
};

/** Takes a new reference to @issuer. -ENOMEM. */
int signing_ctx_new(struct signing_ctx **ret, struct issuer *issuer, int64_t signer_id);
struct signing_ctx *signing_ctx_ref(struct signing_ctx *c);
/** Drops one reference (NULL is fine); returns NULL. */
struct signing_ctx *signing_ctx_unref(struct signing_ctx *c);

#endif
