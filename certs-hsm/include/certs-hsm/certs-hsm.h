/* SPDX-License-Identifier: MIT */
/* Umbrella header for the certs-hsm component. */
#pragma once

#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/crypto-floor.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/digest.h"
#include "certs-hsm/proof.h"
#include "certs-hsm/signer.h"
