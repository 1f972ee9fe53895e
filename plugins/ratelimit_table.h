/*
 * ratelimit_table.h -- the arithmetic and the process-wide table behind the
 * `rate_limit` and `quota` filters (plugins/rate_limit.c).
 *
 * GCRA (the generic cell rate algorithm, a token bucket stated as one
 * number): a key's whole state is its theoretical arrival time `tat`. With an
 * emission interval T (= period / requests) and a tolerance tau (= burst * T),
 * a request at `now` is allowed when max(tat, now) + T - tau <= now, and then
 * tat becomes max(tat, now) + T. A key whose tat is in the past is exactly a
 * key never seen (a full bucket), which is what makes the table below cheap
 * to keep bounded: such a slot can be reused without losing anything.
 * The Redis store runs the same arithmetic in a Lua script (rate_limit.c),
 * in microseconds of Redis' own clock; the local table in nanoseconds of
 * CLOCK_MONOTONIC. Both report through pt_gcra_verdict().
 *
 * The table: a fixed array of slots (key hash, value), each word an atomic,
 * shared by every worker of the process without a lock. A key lives in one of
 * PT_RLT_PROBE (16) consecutive slots after its hash; a lookup claims the first
 * empty one with a CAS on the key word, and callers update the value word
 * with their own CAS loop (a GCRA tat, or a quota's window and count).
 * Memory is fixed at load time (16 bytes a slot). Eviction, when the probe
 * window is full: a slot whose value is "stale" (below the caller's
 * threshold: a tat in the past, a quota of an earlier period) is taken over
 * as it is -- exact, since stale means "as if never seen"; only when all
 * PT_RLT_PROBE slots hold live keys is the one with the smallest value (the
 * least debt, the oldest period) reset and given to the new key, which then
 * starts with a full budget. `evictions` counts those lossy takeovers.
 *
 * Keys are hashed with SipHash-2-4 under a random per-table key, so clients
 * choosing header values cannot aim at one another's slots.
 */
#ifndef PT_PLUGINS_RATELIMIT_TABLE_H
#define PT_PLUGINS_RATELIMIT_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- GCRA ------------------------------------------------------------------ */

typedef struct pt_gcra {
    uint64_t interval; /* T: time units per request */
    uint64_t tau;      /* burst * T */
    uint64_t burst;    /* requests allowed at once from a full bucket */
} pt_gcra_t;

/** What a decision tells the client (RateLimit-* and Retry-After), in the caller's units. */
typedef struct pt_gcra_verdict {
    bool allowed;
    uint64_t remaining;   /* requests still allowed at once after this one */
    uint64_t retry_after; /* when denied: time until the next request is allowed; else 0 */
    uint64_t reset;       /* time until the bucket is full again */
} pt_gcra_verdict_t;

/**
 * Sets up `g` for `requests` per `period` with `burst` (all in one unit, e.g.
 * ns). Returns 0, or -1 when a value is 0 or burst * T does not fit 64 bits.
 */
int pt_gcra_init(pt_gcra_t *g, uint64_t requests, uint64_t period, uint64_t burst);

/**
 * One decision for a key whose state is `tat` (0 or any value <= now: a full
 * bucket) at time `now` (> 0). Returns the tat to store: the new one when
 * allowed, `tat` unchanged when denied. Fills `v`.
 */
uint64_t pt_gcra_decide(const pt_gcra_t *g, uint64_t tat, uint64_t now, pt_gcra_verdict_t *v);

/**
 * The verdict from a decision made elsewhere (the Redis script): `allowed`
 * and `debt` = max(tat, now) - now after the decision (the stored tat minus now).
 */
void pt_gcra_verdict(const pt_gcra_t *g, bool allowed, uint64_t debt, pt_gcra_verdict_t *v);

/* ---- the shared table -------------------------------------------------------- */

#define PT_RLT_PROBE 16

typedef struct pt_rlt_slot {
    _Atomic uint64_t key; /* 0: empty */
    _Atomic uint64_t val; /* the caller's: 0 for a new key */
} pt_rlt_slot_t;

typedef struct pt_rlt {
    pt_rlt_slot_t *slots;
    size_t mask;                /* slot count - 1 (a power of two) */
    uint64_t sipkey[2];         /* random per table */
    _Atomic uint64_t evictions; /* live keys reset to make room (lossy takeovers) */
} pt_rlt_t;

/**
 * Allocates a table of at least `min_slots` slots (rounded up to a power of
 * two, at least PT_RLT_PROBE) with a random hashing key. Returns NULL on OOM.
 */
pt_rlt_t *pt_rlt_new(size_t min_slots);
/** Frees it (NULL accepted). No thread may still use it. */
void pt_rlt_free(pt_rlt_t *t);

/** The 64-bit keyed hash of `len` bytes at `p` (never 0). */
uint64_t pt_rlt_hash(const pt_rlt_t *t, const void *p, size_t len);

/**
 * The value word of key `h` (from pt_rlt_hash), claiming a slot when the key
 * has none (see the eviction rule above: values below `stale_below` are
 * stale). Never NULL. Any thread; lock-free.
 */
_Atomic uint64_t *pt_rlt_slot(pt_rlt_t *t, uint64_t h, uint64_t stale_below);

/**
 * A GCRA decision for key `h` at `now` on table `t` (a CAS loop on the key's
 * tat). Lock-free; exact under any number of concurrent callers.
 */
void pt_rlt_gcra(pt_rlt_t *t, const pt_gcra_t *g, uint64_t h, uint64_t now, pt_gcra_verdict_t *v);

/**
 * A fixed-window count for key `h` in period number `window` (< 2^24): the
 * value word is window << 40 | count. Counts the request when fewer than
 * `limit` were counted in this window (returns true and sets *count to the
 * new count), else returns false with *count = limit. Lock-free.
 */
bool pt_rlt_count(pt_rlt_t *t, uint64_t h, uint64_t window, uint64_t limit, uint64_t *count);

/* ---- calendar periods (UTC) ---------------------------------------------------- */

/**
 * The quota period containing `now_s` (seconds since 1970, UTC): a day
 * (number of days since 1970) or, with `month`, a month (year * 12 + month - 1);
 * *left_s = seconds until the period's end. Integer arithmetic only (the
 * proleptic Gregorian calendar, as the Redis script computes it), so it costs
 * no gmtime/timegm per request.
 */
uint64_t pt_rlt_period(bool month, int64_t now_s, uint64_t *left_s);

#endif /* PT_PLUGINS_RATELIMIT_TABLE_H */
