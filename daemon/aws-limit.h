/* SPDX-License-Identifier: MIT */
/* Per-operation token buckets and exponential backoff with jitter for AWS calls (clock given by the caller). */
#ifndef PROVD_AWS_LIMIT_H
#define PROVD_AWS_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Time is always passed in, in milliseconds of any monotonic clock (the
 * daemon uses uv_now(), tests a fake clock), so nothing here sleeps or reads
 * a clock and every decision is reproducible.
 */

/* Rates are kept in milli-tokens so fractional rates (0.5/s) need no floats. */
struct aws_bucket {
        uint64_t rate_mtok_per_s;       /* refill: tokens per second * 1000 */
        uint64_t burst_mtok;            /* capacity * 1000 */
        uint64_t level_mtok;
        uint64_t last_ms;
        bool started;
};

/** @rate_milli: tokens per second * 1000 (1..1e9); @burst: whole tokens (>= 1). Starts full. */
void aws_bucket_init(struct aws_bucket *b, uint64_t rate_milli, unsigned burst);

/**
 * Takes one token at @now_ms. Returns 0 if taken, else the number of
 * milliseconds (>= 1) after which a token will be there (nothing taken).
 */
uint64_t aws_bucket_take(struct aws_bucket *b, uint64_t now_ms);

/** Gives back a token taken for a call that was never sent. */
void aws_bucket_refund(struct aws_bucket *b);

struct aws_backoff {
        uint32_t base_ms;               /* first delay's ceiling */
        uint32_t max_ms;                /* no delay exceeds this */
};

/**
 * "Full jitter" backoff: a delay drawn uniformly from [0, min(max, base * 2^attempt)]
 * using @random (any 32-bit random value; the caller's PRNG, so tests are
 * deterministic). @attempt 0 is the first retry. Never returns less than 1.
 */
uint32_t aws_backoff_delay(const struct aws_backoff *bo, unsigned attempt, uint32_t random);

#endif
