/*
 * test_ratelimit.c -- the GCRA arithmetic and the lock-free key table behind
 * the rate_limit and quota filters (plugins/ratelimit_table.h), on their own:
 * exact bursts and refill, the verdict a client sees, exact counts under
 * threads racing on one key, bounded memory with the documented eviction.
 * The filters themselves run against real processes in
 * test/integration/test_rate_limit.py and test/integration/redis/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit_table.h"

#define S 1000000000ull /* the tests count in nanoseconds */

static void gcra_burst_then_refill(void **state)
{
    (void)state;
    pt_gcra_t g;
    assert_int_equal(pt_gcra_init(&g, 10, 10 * S, 3), 0); /* 10 per 10 s, 3 at once */
    assert_int_equal(g.interval, S);
    assert_int_equal(g.tau, 3 * S);
    uint64_t now = 1000 * S, tat = 0;
    pt_gcra_verdict_t v;
    for (uint64_t i = 0; i < 3; i++) {
        tat = pt_gcra_decide(&g, tat, now, &v);
        assert_true(v.allowed);
        assert_int_equal(v.remaining, 2 - i);
        assert_int_equal(v.reset, (i + 1) * S); /* full again after (i + 1) intervals */
    }
    uint64_t before = tat;
    tat = pt_gcra_decide(&g, tat, now, &v);
    assert_false(v.allowed);
    assert_int_equal(tat, before); /* a refusal costs nothing */
    assert_int_equal(v.remaining, 0);
    assert_int_equal(v.retry_after, S); /* one interval until one more is allowed */
    assert_int_equal(v.reset, 3 * S);
    /* just before the interval: still refused, with the exact wait left */
    tat = pt_gcra_decide(&g, tat, now + S - 1, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 1);
    /* one interval later exactly one more */
    tat = pt_gcra_decide(&g, tat, now + S, &v);
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 0);
    tat = pt_gcra_decide(&g, tat, now + S, &v);
    assert_false(v.allowed);
    /* long idle: a full bucket again, as a key never seen */
    tat = pt_gcra_decide(&g, tat, now + 100 * S, &v);
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 2);
}

static void gcra_sustained_rate(void **state)
{
    (void)state;
    pt_gcra_t g;
    assert_int_equal(pt_gcra_init(&g, 5, S, 5), 0); /* 5 per second, burst 5 */
    uint64_t tat = 0, allowed = 0;
    pt_gcra_verdict_t v;
    /* one request every millisecond for 10 s: 5 at once, then 5 a second */
    for (uint64_t ms = 1; ms <= 10000; ms++) {
        tat = pt_gcra_decide(&g, tat, ms * 1000000ull, &v);
        allowed += v.allowed;
    }
    assert_int_equal(allowed, 5 + 50 - 1); /* the first 5 free, then one per 200 ms after the 5th */
}

static void gcra_init_refuses_bad_values(void **state)
{
    (void)state;
    pt_gcra_t g;
    assert_int_equal(pt_gcra_init(&g, 0, S, 1), -1);
    assert_int_equal(pt_gcra_init(&g, 1, S, 0), -1);
    assert_int_equal(pt_gcra_init(&g, 10, 5, 1), -1); /* under one unit per request */
    assert_int_equal(pt_gcra_init(&g, 1, UINT64_MAX / 2, 1000), -1); /* tau would overflow */
}

static void verdict_from_remote_debt(void **state)
{
    (void)state;
    pt_gcra_t g;
    pt_gcra_init(&g, 100, 100, 10); /* T = 1, tau = 10 */
    pt_gcra_verdict_t v;
    pt_gcra_verdict(&g, true, 4, &v); /* 4 units of debt: 6 more at once */
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 6);
    assert_int_equal(v.reset, 4);
    pt_gcra_verdict(&g, false, 10, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 1);
    assert_int_equal(v.remaining, 0);
}

/* ---- the table ---------------------------------------------------------------- */

static void table_keys_apart(void **state)
{
    (void)state;
    pt_rlt_t *t = pt_rlt_new(2048);
    assert_non_null(t);
    assert_int_equal(t->mask, 2047);
    pt_gcra_t g;
    pt_gcra_init(&g, 2, 3600 * S, 2);
    pt_gcra_verdict_t v;
    char key[16];
    for (int i = 0; i < 500; i++) { /* 500 keys: each gets its own two */
        int n = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        uint64_t h = pt_rlt_hash(t, key, (size_t)n);
        for (int k = 0; k < 3; k++) {
            pt_rlt_gcra(t, &g, h, 5 * S, &v);
            assert_int_equal(v.allowed, k < 2);
        }
    }
    assert_int_equal(atomic_load(&t->evictions), 0);
    /* the same bytes hash the same, other bytes differently; 0 is never a hash */
    assert_int_equal(pt_rlt_hash(t, "abc", 3), pt_rlt_hash(t, "abc", 3));
    assert_int_not_equal(pt_rlt_hash(t, "abc", 3), pt_rlt_hash(t, "abd", 3));
    pt_rlt_t *t2 = pt_rlt_new(8);
    assert_int_not_equal(pt_rlt_hash(t, "abc", 3), pt_rlt_hash(t2, "abc", 3)); /* keyed */
    pt_rlt_free(t2);
    pt_rlt_free(t);
}

typedef struct race {
    pt_rlt_t *t;
    pt_gcra_t g;
    uint64_t h, now;
    _Atomic uint64_t allowed;
    pthread_barrier_t go;
} race_t;

static void *race_worker(void *arg)
{
    race_t *r = arg;
    pthread_barrier_wait(&r->go);
    pt_gcra_verdict_t v;
    for (int i = 0; i < 20000; i++) {
        pt_rlt_gcra(r->t, &r->g, r->h, r->now, &v);
        if (v.allowed)
            atomic_fetch_add(&r->allowed, 1);
    }
    return NULL;
}

static void table_exact_under_threads(void **state)
{
    (void)state;
    race_t r;
    memset(&r, 0, sizeof(r));
    r.t = pt_rlt_new(64);
    pt_gcra_init(&r.g, 1000, 3600 * S, 1000);
    r.h = pt_rlt_hash(r.t, "one key", 7);
    r.now = 42 * S;
    enum { N = 4 };
    pthread_t th[N];
    pthread_barrier_init(&r.go, NULL, N);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, race_worker, &r);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.go);
    /* 80000 attempts at one instant from 4 threads: exactly the burst passed */
    assert_int_equal(atomic_load(&r.allowed), 1000);
    pt_rlt_free(r.t);
}

static void table_bounded_eviction(void **state)
{
    (void)state;
    pt_rlt_t *t = pt_rlt_new(1); /* the minimum: one probe window */
    assert_int_equal(t->mask, PT_RLT_PROBE - 1);
    pt_gcra_t g;
    pt_gcra_init(&g, 1, 100 * S, 1); /* one per 100 s */
    pt_gcra_verdict_t v;
    uint64_t h[PT_RLT_PROBE + 2];
    for (int i = 0; i < PT_RLT_PROBE + 2; i++) {
        char k[8];
        h[i] = pt_rlt_hash(t, k, (size_t)snprintf(k, sizeof(k), "k%d", i));
    }
    /* PT_RLT_PROBE live keys fill the table, the next evicts the least indebted (the oldest: k0) */
    for (int i = 0; i < PT_RLT_PROBE; i++) {
        pt_rlt_gcra(t, &g, h[i], (uint64_t)(i + 1) * S, &v);
        assert_true(v.allowed);
    }
    pt_rlt_gcra(t, &g, h[PT_RLT_PROBE], 10 * S, &v);
    assert_true(v.allowed);
    assert_int_equal(atomic_load(&t->evictions), 1);
    pt_rlt_gcra(t, &g, h[1], 10 * S, &v); /* k1 kept its state */
    assert_false(v.allowed);
    pt_rlt_gcra(t, &g, h[0], 10 * S, &v); /* k0 lost it: a fresh budget (documented) */
    assert_true(v.allowed);
    assert_int_equal(atomic_load(&t->evictions), 2);
    /* much later every tat is in the past: stale slots are taken over without loss */
    pt_rlt_gcra(t, &g, h[PT_RLT_PROBE + 1], 1000 * S, &v);
    assert_true(v.allowed);
    assert_int_equal(atomic_load(&t->evictions), 2);
    pt_rlt_free(t);
}

static void table_counts_per_window(void **state)
{
    (void)state;
    pt_rlt_t *t = pt_rlt_new(64);
    uint64_t h = pt_rlt_hash(t, "alice", 5), c = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        assert_true(pt_rlt_count(t, h, 20429, 3, &c));
        assert_int_equal(c, i);
    }
    assert_false(pt_rlt_count(t, h, 20429, 3, &c));
    assert_int_equal(c, 3);
    /* the next day starts from zero */
    assert_true(pt_rlt_count(t, h, 20430, 3, &c));
    assert_int_equal(c, 1);
    pt_rlt_free(t);
}

static void calendar_periods(void **state)
{
    (void)state;
    uint64_t left;
    /* 2026-12-07T04:30:00Z = 1796617800 */
    assert_int_equal(pt_rlt_period(false, 1796617800, &left), 20794);
    assert_int_equal(left, 86400 - (4 * 3600 + 30 * 60));
    assert_int_equal(pt_rlt_period(true, 1796617800, &left), 2026 * 12 + 11);
    assert_int_equal(left, 1798761600 - 1796617800); /* 2027-01-01T00:00:00Z */
    /* a leap February: 2024-02-29T23:59:59Z, one second before March */
    assert_int_equal(pt_rlt_period(true, 1709251199, &left), 2024 * 12 + 1);
    assert_int_equal(left, 1);
    assert_int_equal(pt_rlt_period(true, 1709251200, &left), 2024 * 12 + 2);
    assert_int_equal(left, 31 * 86400);
    /* the epoch and a century that is not a leap year (2100-02-28 -> March) */
    assert_int_equal(pt_rlt_period(true, 0, &left), 1970 * 12);
    assert_int_equal(left, 31 * 86400);
    assert_int_equal(pt_rlt_period(true, 4107542400 - 1, &left), 2100 * 12 + 1);
    assert_int_equal(left, 1); /* 4107542400 = 2100-03-01T00:00:00Z */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gcra_burst_then_refill),
        cmocka_unit_test(gcra_sustained_rate),
        cmocka_unit_test(gcra_init_refuses_bad_values),
        cmocka_unit_test(verdict_from_remote_debt),
        cmocka_unit_test(table_keys_apart),
        cmocka_unit_test(table_exact_under_threads),
        cmocka_unit_test(table_bounded_eviction),
        cmocka_unit_test(table_counts_per_window),
        cmocka_unit_test(calendar_periods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
