/*
 * ratelimit_table.c -- GCRA arithmetic and the lock-free key table
 * (ratelimit_table.h says what and why).
 */
#include "ratelimit_table.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- GCRA ------------------------------------------------------------------ */

int pt_gcra_init(pt_gcra_t *g, uint64_t requests, uint64_t period, uint64_t burst)
{
    if (requests == 0 || period == 0 || burst == 0 || period / requests == 0)
        return -1;
    uint64_t t = period / requests;
    if (burst > UINT64_MAX / 4 / t) /* tau plus a tat must stay far from overflow */
        return -1;
    g->interval = t;
    g->tau = burst * t;
    g->burst = burst;
    return 0;
}

void pt_gcra_verdict(const pt_gcra_t *g, bool allowed, uint64_t debt, pt_gcra_verdict_t *v)
{
    v->allowed = allowed;
    v->reset = debt;
    if (allowed) {
        v->retry_after = 0;
        v->remaining = debt >= g->tau ? 0 : (g->tau - debt) / g->interval;
    } else {
        v->remaining = 0;
        /* the next request is allowed once debt + T <= tau */
        v->retry_after = debt + g->interval > g->tau ? debt + g->interval - g->tau : 0;
    }
}

uint64_t pt_gcra_decide(const pt_gcra_t *g, uint64_t tat, uint64_t now, pt_gcra_verdict_t *v)
{
    uint64_t base = tat > now ? tat : now;
    uint64_t next = base + g->interval;
    if (next - now > g->tau) { /* now < next - tau: too early */
        pt_gcra_verdict(g, false, base - now, v);
        return tat;
    }
    pt_gcra_verdict(g, true, next - now, v);
    return next;
}

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012), from the paper ------------------ */

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

static uint64_t siphash24(const uint64_t k[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---------------------------------------------------------------- */

pt_rlt_t *pt_rlt_new(size_t min_slots)
{
    size_t n = PT_RLT_PROBE;
    while (n < min_slots && n < ((size_t)1 << 40))
        n <<= 1;
    pt_rlt_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    /* aligned to its size so a probe window shares as few cache lines as possible */
    t->slots = aligned_alloc(64, n * sizeof(pt_rlt_slot_t));
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    memset(t->slots, 0, n * sizeof(pt_rlt_slot_t));
    t->mask = n - 1;
    if (getrandom(t->sipkey, sizeof(t->sipkey), 0) != (ssize_t)sizeof(t->sipkey)) {
        /* no entropy at all: still a table, with a fixed key (never on Linux >= 3.17) */
        t->sipkey[0] = (uint64_t)(uintptr_t)t;
        t->sipkey[1] = (uint64_t)(uintptr_t)t->slots;
    }
    atomic_init(&t->evictions, 0);
    return t;
}

void pt_rlt_free(pt_rlt_t *t)
{
    if (t == NULL)
        return;
    free(t->slots);
    free(t);
}

uint64_t pt_rlt_hash(const pt_rlt_t *t, const void *p, size_t len)
{
    uint64_t h = siphash24(t->sipkey, p, len);
    return h != 0 ? h : 1;
}

_Atomic uint64_t *pt_rlt_slot(pt_rlt_t *t, uint64_t h, uint64_t stale_below)
{
    size_t i0 = (size_t)h & t->mask;
    pt_rlt_slot_t *victim = NULL;
    uint64_t victim_val = UINT64_MAX;
    for (;;) {
        for (size_t j = 0; j < PT_RLT_PROBE; j++) {
            pt_rlt_slot_t *s = &t->slots[(i0 + j) & t->mask];
            uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
            if (k == 0) {
                uint64_t zero = 0;
                if (atomic_compare_exchange_strong_explicit(&s->key, &zero, h,
                                                            memory_order_acq_rel,
                                                            memory_order_acquire))
                    return &s->val;
                k = zero; /* someone claimed it first: maybe for this very key */
            }
            if (k == h)
                return &s->val;
            uint64_t v = atomic_load_explicit(&s->val, memory_order_relaxed);
            if (v < victim_val) {
                victim = s;
                victim_val = v;
            }
        }
        /* The window is full of other keys: take the slot with the smallest
         * value. If it is stale its value means "never seen" to us too; if it
         * is live the old key loses its state (counted). */
        uint64_t k = atomic_load_explicit(&victim->key, memory_order_acquire);
        if (k == h)
            return &victim->val;
        if (atomic_compare_exchange_strong_explicit(&victim->key, &k, h, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            if (victim_val >= stale_below) {
                atomic_store_explicit(&victim->val, 0, memory_order_release);
                atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
            }
            return &victim->val;
        }
        /* lost a race for the victim: look again */
        victim = NULL;
        victim_val = UINT64_MAX;
    }
}

void pt_rlt_gcra(pt_rlt_t *t, const pt_gcra_t *g, uint64_t h, uint64_t now, pt_gcra_verdict_t *v)
{
    _Atomic uint64_t *w = pt_rlt_slot(t, h, now);
    uint64_t tat = atomic_load_explicit(w, memory_order_acquire);
    for (;;) {
        uint64_t next = pt_gcra_decide(g, tat, now, v);
        if (!v->allowed || next == tat)
            return;
        if (atomic_compare_exchange_weak_explicit(w, &tat, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return;
    }
}

#define COUNT_BITS 40
#define COUNT_MASK ((UINT64_C(1) << COUNT_BITS) - 1)

bool pt_rlt_count(pt_rlt_t *t, uint64_t h, uint64_t window, uint64_t limit, uint64_t *count)
{
    uint64_t base = window << COUNT_BITS;
    _Atomic uint64_t *w = pt_rlt_slot(t, h, base);
    uint64_t cur = atomic_load_explicit(w, memory_order_acquire);
    for (;;) {
        uint64_t n = (cur & ~COUNT_MASK) == base ? cur & COUNT_MASK : 0;
        if (n >= limit || n >= COUNT_MASK) {
            *count = limit;
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(w, &cur, base | (n + 1), memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *count = n + 1;
            return true;
        }
    }
}

/* ---- calendar periods ---------------------------------------------------------------
 * Days since 1970-01-01 <-> (year, month, day), H. Hinnant's "chrono-compatible
 * low-level date algorithms" (eras of 400 years, March-based years). */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

uint64_t pt_rlt_period(bool month, int64_t now_s, uint64_t *left_s)
{
    int64_t day = floor_div(now_s, 86400);
    if (!month) {
        *left_s = (uint64_t)((day + 1) * 86400 - now_s);
        return (uint64_t)day;
    }
    int64_t y, m;
    civil_from_days(day, &y, &m);
    int64_t next = m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
    *left_s = (uint64_t)(next * 86400 - now_s);
    return (uint64_t)(y * 12 + m - 1);
}
