/* SPDX-License-Identifier: MIT */
/* Per-operation token buckets and exponential backoff with jitter for AWS calls (clock given by the caller). */

#include "aws-limit.h"

void aws_bucket_init(struct aws_bucket *b, uint64_t rate_milli, unsigned burst) {
        if (rate_milli == 0)
                rate_milli = 1;
        if (burst == 0)
                burst = 1;
        *b = (struct aws_bucket) {
                .rate_mtok_per_s = rate_milli,
                .burst_mtok = (uint64_t)burst * 1000,
                .level_mtok = (uint64_t)burst * 1000,
        };
}

static void refill(struct aws_bucket *b, uint64_t now_ms) {
        if (!b->started) {
                b->started = true;
                b->last_ms = now_ms;
                return;
        }
        /* A clock that went backwards (another clock after a restart) refills nothing. */
        if (now_ms <= b->last_ms)
                return;
        uint64_t dt = now_ms - b->last_ms;
        /* Capped before multiplying: dt * rate could overflow after a long idle. */
        uint64_t full_ms = b->burst_mtok * 1000 / b->rate_mtok_per_s + 1;
        if (dt > full_ms)
                dt = full_ms;
        uint64_t add = dt * b->rate_mtok_per_s / 1000;
        if (add == 0)
                return;         /* keep last_ms so sub-milli-token steps add up */
        b->level_mtok += add;
        if (b->level_mtok > b->burst_mtok)
                b->level_mtok = b->burst_mtok;
        /* Advance by the time that produced @add exactly, so no fraction is lost. */
        b->last_ms += add * 1000 / b->rate_mtok_per_s;
        if (b->level_mtok == b->burst_mtok || b->last_ms > now_ms)
                b->last_ms = now_ms;
}

uint64_t aws_bucket_take(struct aws_bucket *b, uint64_t now_ms) {
        refill(b, now_ms);
        if (b->level_mtok >= 1000) {
                b->level_mtok -= 1000;
                return 0;
        }
        uint64_t missing = 1000 - b->level_mtok;
        uint64_t wait = (missing * 1000 + b->rate_mtok_per_s - 1) / b->rate_mtok_per_s;
        uint64_t since = now_ms > b->last_ms ? now_ms - b->last_ms : 0;
        return wait > since ? wait - since : 1;
}

void aws_bucket_refund(struct aws_bucket *b) {
        b->level_mtok += 1000;
        if (b->level_mtok > b->burst_mtok)
                b->level_mtok = b->burst_mtok;
}

uint32_t aws_backoff_delay(const struct aws_backoff *bo, unsigned attempt, uint32_t random) {
        uint64_t ceiling = bo->base_ms ? bo->base_ms : 1;

        for (unsigned i = 0; i < attempt && ceiling < bo->max_ms; i++)
                ceiling *= 2;
        if (bo->max_ms && ceiling > bo->max_ms)
                ceiling = bo->max_ms;
        uint32_t d = (uint32_t)((uint64_t)random % (ceiling + 1));
        return d ? d : 1;
}
