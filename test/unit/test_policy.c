/*
 * test_policy.c -- the one endpoint policy (upstream/policy.h) on its own:
 * the lb picks (round robin and its weights, least request, random, the hash
 * ring), priority levels, outlier ejection and its growth, local resource
 * errors, the circuit breaker, the retry decision, connection slots and the
 * bounded queue. No sockets: the back ends' use of it is covered by
 * test_upstream*.c and the integration tests (test/integration/lb/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "portico/status.h"
#include "upstream/policy.h"
#include "net/worker.h"

enum { MAXEP = 8 };

typedef struct tcl {
    pt_endpoint_t eps[MAXEP];
    char urls[MAXEP][32];
    pt_cluster_shared_t shared;
    pt_cluster_t cl;
} tcl_t;

static void tcl_init(tcl_t *t, unsigned index, size_t n)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        snprintf(t->urls[i], sizeof(t->urls[i]), "http://127.0.0.1:%u", (unsigned)(i + 1) % 100u);
        t->eps[i].url = t->urls[i];
        t->eps[i].weight = 1;
    }
    t->cl.name = "c";
    t->cl.index = index;
    t->cl.endpoints = t->eps;
    t->cl.endpoint_cnt = n;
    t->cl.retries = 1;
    t->cl.max_pending_per_endpoint = PT_POLICY_MAX_PENDING;
    t->cl.outlier = (pt_outlier_t){.consecutive_failures = 5,
                                   .base_ejection_ms = 10000,
                                   .max_ejection_ms = 300000,
                                   .max_ejection_percent = 100};
    t->cl.shared = &t->shared;
}

static int setup(void **state)
{
    static pt_worker_t w;
    memset(&w, 0, sizeof(w));
    if (pt_policy_worker_init(&w) != 0)
        return -1;
    pt_policy_health_reset(); /* endpoint health is process-wide */
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    pt_policy_worker_dispose(*state);
    return 0;
}

/* A pick whose call stays open (in flight) until pt_policy_call_end(t). */
static long pick_keep(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_try_t *t)
{
    pt_upcall_req_t r = {.cluster = cl};
    return pt_policy_pick(w, &r, t);
}

/* One whole call: picked and ended. */
static long pick_key(pt_worker_t *w, const pt_cluster_t *cl, const char *key)
{
    pt_upcall_req_t r = {.cluster = cl};
    if (key != NULL)
        r.hash_key = pt_str_c(key);
    pt_policy_try_t t = {0};
    long idx = pt_policy_pick(w, &r, &t);
    pt_policy_call_end(&t);
    return idx;
}

static long pick(pt_worker_t *w, const pt_cluster_t *cl)
{
    return pick_key(w, cl, NULL);
}

/* `n` failures of endpoint `idx` (5xx answers to calls that went to it). */
static void fail_ep(pt_worker_t *w, tcl_t *c, size_t idx, int n)
{
    for (int i = 0; i < n; i++) {
        pt_policy_try_t t = {0};
        long got;
        do { /* a pick that lands on idx */
            pt_policy_call_end(&t);
            memset(&t, 0, sizeof(t));
            got = pick_keep(w, &c->cl, &t);
            assert_true(got >= 0);
        } while (got != (long)idx);
        pt_policy_answered(w, &t, 503, -1);
        pt_policy_call_end(&t);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_round_robin(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 3);
    long seen[6];
    for (int i = 0; i < 6; i++) {
        pt_policy_try_t t = {0};
        seen[i] = pick_keep(w, &c.cl, &t);
        assert_int_equal(t.attempts, 1);
        assert_int_equal(t.tried, (uint64_t)1 << seen[i]);
        pt_policy_call_end(&t);
    }
    long want[6] = {0, 1, 2, 0, 1, 2};
    assert_memory_equal(seen, want, sizeof(want));
}

/* Smooth weighted round robin: exact shares per cycle, the heavy endpoint never in long runs. */
static void test_weighted_round_robin(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 3);
    c.eps[0].weight = 5;
    long seq[7];
    int cnt[3] = {0};
    for (int i = 0; i < 70; i++) {
        long idx = pick(w, &c.cl);
        assert_true(idx >= 0 && idx < 3);
        cnt[idx]++;
        if (i < 7)
            seq[i] = idx;
    }
    assert_int_equal(cnt[0], 50);
    assert_int_equal(cnt[1], 10);
    assert_int_equal(cnt[2], 10);
    long want[7] = {0, 0, 1, 0, 2, 0, 0}; /* nginx's sequence for 5:1:1 */
    assert_memory_equal(seq, want, sizeof(want));
}

static void test_weighted_random(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 2);
    c.cl.lb = PT_LB_RANDOM;
    c.eps[0].weight = 3;
    int cnt[2] = {0};
    for (int i = 0; i < 8000; i++)
        cnt[pick(w, &c.cl)]++;
    assert_in_range(cnt[0], 5600, 6400); /* 75% +- 5 */
}

/* Power of two choices: a busy endpoint loses to an idle one every time it is drawn against it. */
static void test_least_request(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 2);
    c.cl.lb = PT_LB_LEAST_REQUEST;
    pt_policy_try_t held[4];
    int on0 = 0;
    memset(held, 0, sizeof(held));
    /* load endpoint 0 with calls in flight (picks landing on 1 are ended at once) */
    for (int i = 0; on0 < 4 && i < 1000; i++) {
        pt_policy_try_t t = {0};
        long idx = pick_keep(w, &c.cl, &t);
        if (idx == 0)
            held[on0++] = t;
        else
            pt_policy_call_end(&t);
    }
    /* 1 idle, 0 busy: every new call goes to 1 while 0 is busier */
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(w, &c.cl), 1);
    for (int i = 0; i < 4; i++)
        pt_policy_call_end(&held[i]);
    int cnt[2] = {0};
    for (int i = 0; i < 200; i++)
        cnt[pick(w, &c.cl)]++;
    assert_true(cnt[0] > 0 && cnt[1] > 0); /* both idle again: both chosen */
}

static void test_ring_hash(void **state)
{
    pt_worker_t *w = *state;
    enum { KEYS = 4000 };
    static long before[KEYS];
    tcl_t c;
    tcl_init(&c, 0, 4);
    c.cl.lb = PT_LB_RING_HASH;
    int cnt[4] = {0};
    char key[32];
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        before[k] = pick_key(w, &c.cl, key);
        assert_int_equal(pick_key(w, &c.cl, key), before[k]); /* sticky */
        cnt[before[k]]++;
    }
    for (int i = 0; i < 4; i++)
        assert_in_range(cnt[i], KEYS / 4 * 7 / 10, KEYS / 4 * 13 / 10); /* +-30% of fair */
    /* endpoint 2 goes (ejected): only its keys move, spread over the others */
    c.cl.outlier.consecutive_failures = 1;
    fail_ep(w, &c, 2, 1);
    int moved = 0, moved_to[4] = {0};
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        long now = pick_key(w, &c.cl, key);
        assert_int_not_equal(now, 2);
        if (before[k] != 2)
            assert_int_equal(now, before[k]);
        else {
            moved++;
            moved_to[now]++;
        }
    }
    assert_int_equal(moved, cnt[2]);
    assert_true(moved_to[0] > 0 && moved_to[1] > 0 && moved_to[3] > 0);
    /* a config without endpoint 3 (another snapshot): keys of 0..2 stay where they were */
    pt_policy_health_reset();
    tcl_t d;
    tcl_init(&d, 1, 3);
    d.cl.lb = PT_LB_RING_HASH;
    int kept = 0;
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        long now = pick_key(w, &d.cl, key);
        if (before[k] != 3) {
            assert_int_equal(now, before[k]);
            kept++;
        }
    }
    assert_int_equal(kept, KEYS - cnt[3]);
    /* no key (header absent): some endpoint, not an error */
    assert_true(pick_key(w, &d.cl, NULL) >= 0);
}

static void test_ring_hash_weights(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 2);
    c.cl.lb = PT_LB_RING_HASH;
    c.eps[1].weight = 3;
    int cnt[2] = {0};
    char key[32];
    for (int k = 0; k < 4000; k++) {
        snprintf(key, sizeof(key), "10.0.%d.%d", k / 256, k % 256);
        cnt[pick_key(w, &c.cl, key)]++;
    }
    assert_in_range(cnt[1], 2600, 3400); /* 75% +- 10 */
}

static void test_priority_levels(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 4);
    c.eps[2].priority = c.eps[3].priority = 1;
    c.cl.outlier.consecutive_failures = 1;
    c.cl.outlier.base_ejection_ms = 200;
    for (int i = 0; i < 20; i++)
        assert_in_range(pick(w, &c.cl), 0, 1); /* level 0 only */
    fail_ep(w, &c, 0, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(w, &c.cl), 1); /* one of level 0 left: it takes everything */
    fail_ep(w, &c, 1, 1);
    int cnt[4] = {0};
    for (int i = 0; i < 20; i++)
        cnt[pick(w, &c.cl)]++;
    assert_int_equal(cnt[2], 10); /* level 1 now, round robin */
    assert_int_equal(cnt[3], 10);
    sleep_ms(300); /* the ejections end: back to level 0 */
    for (int i = 0; i < 20; i++)
        assert_in_range(pick(w, &c.cl), 0, 1);
}

/* A retry never goes to an endpoint tried already while another is left, whatever the lb. */
static void test_retries_differ_for_every_lb(void **state)
{
    pt_worker_t *w = *state;
    static const pt_lb_policy_t lbs[] = {PT_LB_ROUND_ROBIN, PT_LB_LEAST_REQUEST, PT_LB_RANDOM,
                                         PT_LB_RING_HASH};
    for (size_t l = 0; l < 4; l++) {
        for (int round = 0; round < 20; round++) {
            tcl_t c;
            tcl_init(&c, (unsigned)l, 4);
            c.cl.lb = lbs[l];
            c.cl.retries = 3;
            c.eps[1].weight = 7; /* weighted round robin too */
            pt_upcall_req_t r = {.cluster = &c.cl, .idempotent = true, .hash_key = PT_STR("k")};
            pt_policy_try_t t = {0};
            long first = pt_policy_pick(w, &r, &t);
            uint64_t seen = (uint64_t)1 << first;
            for (int a = 0; a < 3; a++) {
                long idx = pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true);
                assert_true(idx >= 0);
                assert_false(seen & ((uint64_t)1 << idx));
                seen |= (uint64_t)1 << idx;
            }
            assert_int_equal(seen, 0xf);
            assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);
            pt_policy_call_end(&t);
            pt_policy_health_reset(); /* the connect failures counted */
        }
    }
}

static void test_ejection_shared_by_clusters(void **state)
{
    pt_worker_t *w = *state;
    tcl_t a, b;
    tcl_init(&a, 0, 1);
    tcl_init(&b, 1, 1); /* another cluster naming the same endpoint (e.g. gRPC next to REST) */
    pt_policy_ep_t *e = pt_policy_ep(w, &a.cl, 0);
    assert_ptr_equal(e, pt_policy_ep(w, &b.cl, 0));
    fail_ep(w, &a, 0, 4);
    assert_int_equal(pick(w, &b.cl), 0); /* 4 failures: still in */
    fail_ep(w, &a, 0, 1);
    pt_policy_try_t t2 = {0};
    assert_int_equal(pick_keep(w, &b.cl, &t2), PT_ERR_UNAVAILABLE); /* 5: out, for every cluster */
    assert_int_equal(t2.attempts, 0);
    pt_policy_call_end(&t2);
    /* and for another worker: health is process-wide */
    pt_worker_t w2;
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(pt_policy_worker_init(&w2), 0);
    assert_int_equal(pick(&w2, &a.cl), PT_ERR_UNAVAILABLE);
    assert_int_equal(pt_policy_ejected_now(), 1);
    pt_policy_worker_dispose(&w2);
}

/* Any answer that is not a failure clears the count: failures must come in a row. */
static void test_success_clears_failures(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    for (int round = 0; round < 5; round++) {
        fail_ep(w, &c, 0, 4);
        pt_policy_try_t t = {0};
        assert_int_equal(pick_keep(w, &c.cl, &t), 0);
        pt_policy_answered(w, &t, 404, -1);
        pt_policy_call_end(&t);
    }
    assert_int_equal(pick(w, &c.cl), 0);
    /* gRPC: UNAVAILABLE in a 200 answer is a failure, other gRPC errors are answers */
    for (int i = 0; i < 5; i++) {
        pt_policy_try_t t = {0};
        assert_int_equal(pick_keep(w, &c.cl, &t), 0);
        pt_policy_answered(w, &t, 200, i == 2 ? 5 /* NOT_FOUND */ : 14);
        pt_policy_call_end(&t);
    }
    assert_int_equal(pick(w, &c.cl), 0); /* 2 + 2 in a row, not 5 */
    for (int i = 0; i < 3; i++) { /* 2 carried over + 3: out */
        pt_policy_try_t t = {0};
        assert_int_equal(pick_keep(w, &c.cl, &t), 0);
        pt_policy_answered(w, &t, 200, 14);
        pt_policy_call_end(&t);
    }
    assert_int_equal(pick(w, &c.cl), PT_ERR_UNAVAILABLE);
}

/* Ejections in a row last base x n, capped; the count starts over after a good spell. */
static void test_ejection_grows(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    c.cl.outlier.consecutive_failures = 2;
    c.cl.outlier.base_ejection_ms = 200;
    c.cl.outlier.max_ejection_ms = 400;
    fail_ep(w, &c, 0, 2); /* 1st: 200 ms */
    assert_int_equal(pick(w, &c.cl), PT_ERR_UNAVAILABLE);
    sleep_ms(300);
    assert_int_equal(pick(w, &c.cl), 0);
    fail_ep(w, &c, 0, 2); /* 2nd in a row: 400 ms */
    sleep_ms(250);
    assert_int_equal(pick(w, &c.cl), PT_ERR_UNAVAILABLE);
    sleep_ms(250);
    assert_int_equal(pick(w, &c.cl), 0);
    fail_ep(w, &c, 0, 2); /* 3rd: 600 ms, capped at 400 */
    sleep_ms(250);
    assert_int_equal(pick(w, &c.cl), PT_ERR_UNAVAILABLE);
    sleep_ms(250);
    assert_int_equal(pick(w, &c.cl), 0);
    sleep_ms(450); /* in rotation as long as the last ejection: the count starts over */
    fail_ep(w, &c, 0, 2);
    sleep_ms(300);
    assert_int_equal(pick(w, &c.cl), 0);
}

static void test_max_ejection_percent(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 4);
    c.cl.outlier.consecutive_failures = 1;
    c.cl.outlier.max_ejection_percent = 50;
    for (size_t i = 0; i < 4; i++)
        fail_ep(w, &c, i, 1);
    assert_int_equal(pt_policy_ejected_now(), 2); /* 2 of 4 out, the others stay */
    int cnt[4] = {0};
    for (int i = 0; i < 40; i++)
        cnt[pick(w, &c.cl)]++;
    assert_int_equal(cnt[0] + cnt[1], 0);
    assert_int_equal(cnt[2], 20);
    assert_int_equal(cnt[3], 20);
    /* one endpoint may always go, whatever the percentage */
    pt_policy_health_reset();
    tcl_t one;
    tcl_init(&one, 1, 1);
    one.cl.outlier.consecutive_failures = 1;
    one.cl.outlier.max_ejection_percent = 10;
    fail_ep(w, &one, 0, 1);
    assert_int_equal(pick(w, &one.cl), PT_ERR_UNAVAILABLE);
    /* 0: never eject */
    pt_policy_health_reset();
    one.cl.outlier.consecutive_failures = 0;
    fail_ep(w, &one, 0, 20);
    assert_int_equal(pick(w, &one.cl), 0);
}

/* A cluster with the wrong CA fails every handshake: that must not eject the
 * endpoint for a cluster trusting the right one (same URL, other TLS settings). */
static void test_https_endpoints_keyed_by_tls_settings(void **state)
{
    pt_worker_t *w = *state;
    tcl_t good, bad, good2;
    tcl_init(&good, 0, 1);
    tcl_init(&bad, 1, 1);
    tcl_init(&good2, 2, 1);
    static const char url[] = "https://127.0.0.1:9443";
    good.eps[0].url = bad.eps[0].url = good2.eps[0].url = url;
    good.eps[0].tls = bad.eps[0].tls = good2.eps[0].tls = true;
    good.cl.ca_file = good2.cl.ca_file = "ca.pem";
    bad.cl.ca_file = "other.pem";
    good.cl.tls_verify = bad.cl.tls_verify = good2.cl.tls_verify = true;
    pt_policy_ep_t *e = pt_policy_ep(w, &bad.cl, 0);
    assert_ptr_not_equal(e, pt_policy_ep(w, &good.cl, 0));
    assert_ptr_equal(pt_policy_ep(w, &good.cl, 0), pt_policy_ep(w, &good2.cl, 0));
    bad.cl.retries = 0;
    pt_upcall_req_t r = {.cluster = &bad.cl};
    for (int i = 0; i < 5; i++) {
        pt_policy_try_t t = {0};
        assert_int_equal(pt_policy_pick(w, &r, &t), 0);
        assert_int_equal(pt_policy_connect_failed(w, &bad.cl, e, 0), PT_POLICY_FAIL_CONNECT);
        assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);
        pt_policy_call_end(&t);
    }
    assert_int_equal(pick(w, &bad.cl), PT_ERR_UNAVAILABLE);
    assert_int_equal(pick(w, &good.cl), 0);
}

static void test_local_errors_never_eject(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    pt_policy_ep_t *e = pt_policy_ep(w, &c.cl, 0);
    static const int local[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    pt_upcall_req_t r = {.cluster = &c.cl};
    for (int i = 0; i < 50; i++) {
        pt_policy_try_t t = {0};
        assert_int_equal(pt_policy_pick(w, &r, &t), 0);
        assert_int_equal(pt_policy_connect_failed(w, &c.cl, e, local[i % 4]), PT_POLICY_FAIL_LOCAL);
        assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_LOCAL, true), -1);
        pt_policy_call_end(&t);
    }
    assert_int_equal(pick(w, &c.cl), 0);
    assert_false(pt_policy_errno_local(ECONNREFUSED));
    assert_false(pt_policy_errno_local(0));
}

/* circuit_breaker.max_requests: per cluster, every worker, released at the call's end. */
static void test_breaker_max_requests(void **state)
{
    pt_worker_t *w = *state;
    pt_worker_t w2;
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(pt_policy_worker_init(&w2), 0);
    tcl_t c;
    tcl_init(&c, 0, 2);
    c.cl.breaker.max_requests = 3;
    pt_policy_try_t t[4];
    memset(t, 0, sizeof(t));
    assert_true(pick_keep(w, &c.cl, &t[0]) >= 0);
    assert_true(pick_keep(&w2, &c.cl, &t[1]) >= 0);
    assert_true(pick_keep(w, &c.cl, &t[2]) >= 0);
    assert_int_equal(pick_keep(&w2, &c.cl, &t[3]), PT_ERR_OVERLOADED);
    pt_policy_call_end(&t[3]); /* harmless: it holds nothing */
    assert_int_equal(atomic_load(&c.shared.requests), 3);
    pt_policy_call_end(&t[1]);
    pt_policy_call_end(&t[1]); /* idempotent */
    assert_true(pick_keep(&w2, &c.cl, &t[3]) >= 0);
    for (int i = 0; i < 4; i++)
        pt_policy_call_end(&t[i]);
    assert_int_equal(atomic_load(&c.shared.requests), 0);
    /* an unavailable cluster gives its slot back at once */
    c.cl.outlier.consecutive_failures = 1;
    fail_ep(w, &c, 0, 1);
    fail_ep(w, &c, 1, 1);
    assert_int_equal(pick(w, &c.cl), PT_ERR_UNAVAILABLE);
    assert_int_equal(atomic_load(&c.shared.requests), 0);
    pt_policy_worker_dispose(&w2);
}

static void test_breaker_connections_and_pending(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 2);
    c.cl.max_conns_per_endpoint = 1;
    c.cl.breaker.max_connections = 1;
    c.cl.breaker.max_pending = 1;
    pt_policy_ep_t *e0 = pt_policy_ep(w, &c.cl, 0), *e1 = pt_policy_ep(w, &c.cl, 1);
    pt_policy_wait_t w1 = {0}, w2 = {0}, w3 = {0}, w4 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e0, &w1), PT_POLICY_GRANTED);
    /* the cluster's one connection is open: none to the other endpoint */
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e1, &w2), PT_ERR_OVERLOADED);
    /* one call may wait for endpoint 0's connection, not two */
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e0, &w3), PT_POLICY_QUEUED);
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e0, &w4), PT_ERR_OVERLOADED);
    assert_int_equal(atomic_load(&c.shared.pending), 1);
    assert_ptr_equal(pt_policy_conn_release(e0), &w3); /* the slot passes on, still counted */
    assert_int_equal(atomic_load(&c.shared.pending), 0);
    assert_null(pt_policy_conn_release(e0));
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e1, &w2), PT_POLICY_GRANTED);
    assert_null(pt_policy_conn_release(e1));
}

static void test_hash_key_of_request(void **state)
{
    (void)state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    pt_header_t hv[2] = {
        {PT_STR("x-user"), PT_STR("alice")},
        {PT_STR("cookie"), PT_STR("a=1; session=s3cr3t; b=2")},
    };
    pt_headers_t h = {.v = hv, .cnt = 2, .cap = 2};
    pt_str_t ip = PT_STR("10.1.2.3");
    assert_null(pt_upcall_hash_key(&c.cl, ip, &h).base); /* not ring_hash: nothing to hash */
    c.cl.lb = PT_LB_RING_HASH;
    c.cl.hash_src = PT_HASH_CLIENT_IP;
    assert_true(pt_str_eq(pt_upcall_hash_key(&c.cl, ip, &h), ip));
    c.cl.hash_src = PT_HASH_HEADER;
    c.cl.hash_name = "x-user";
    assert_true(pt_str_eq(pt_upcall_hash_key(&c.cl, ip, &h), PT_STR("alice")));
    c.cl.hash_name = "x-none";
    assert_int_equal(pt_upcall_hash_key(&c.cl, ip, &h).len, 0);
    c.cl.hash_src = PT_HASH_COOKIE;
    c.cl.hash_name = "session";
    assert_true(pt_str_eq(pt_upcall_hash_key(&c.cl, ip, &h), PT_STR("s3cr3t")));
    c.cl.hash_name = "b";
    assert_true(pt_str_eq(pt_upcall_hash_key(&c.cl, ip, &h), PT_STR("2")));
    c.cl.hash_name = "sess"; /* a prefix of a name is not the name */
    assert_int_equal(pt_upcall_hash_key(&c.cl, ip, &h).len, 0);
}

static void test_retry_decision(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 3);
    pt_upcall_req_t r = {.cluster = &c.cl, .idempotent = true};

    /* connect failures: another endpoint, at most `retries` more */
    pt_policy_try_t t = {0};
    long first = pick_keep(w, &c.cl, &t);
    long second = pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true);
    assert_true(second >= 0 && second != first);
    assert_int_equal(t.attempts, 2);
    assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);

    /* early failures: idempotent only */
    pt_upcall_req_t post = {.cluster = &c.cl, .idempotent = false};
    pt_policy_try_t t2 = {0};
    pick_keep(w, &c.cl, &t2);
    assert_int_equal(pt_policy_retry(w, &post, &t2, PT_POLICY_FAIL_EARLY, true), -1);
    assert_true(pt_policy_retry(w, &r, &t2, PT_POLICY_FAIL_EARLY, true) >= 0);

    /* a refused stream: once, whatever retries says */
    c.cl.retries = 0;
    pt_policy_try_t t3 = {0};
    pick_keep(w, &c.cl, &t3);
    assert_true(pt_policy_retry(w, &post, &t3, PT_POLICY_FAIL_REFUSED, true) >= 0);
    assert_int_equal(pt_policy_retry(w, &post, &t3, PT_POLICY_FAIL_REFUSED, true), -1);

    /* never: other failures, local ones, or a request that cannot be sent again */
    c.cl.retries = 5;
    pt_policy_try_t t4 = {0};
    pick_keep(w, &c.cl, &t4);
    assert_int_equal(pt_policy_retry(w, &r, &t4, PT_POLICY_FAIL_OTHER, true), -1);
    assert_int_equal(pt_policy_retry(w, &r, &t4, PT_POLICY_FAIL_LOCAL, true), -1);
    assert_int_equal(pt_policy_retry(w, &r, &t4, PT_POLICY_FAIL_CONNECT, false), -1);
    assert_int_equal(t4.attempts, 1);
}

static void test_retry_same_endpoint_when_alone(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    pt_upcall_req_t r = {.cluster = &c.cl, .idempotent = true};
    pt_policy_try_t t = {0};
    assert_int_equal(pick_keep(w, &c.cl, &t), 0);
    /* connecting failed: nothing else to try */
    assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);
    /* the connection died early: the same host, on another connection */
    pt_policy_try_t t2 = {0};
    pick_keep(w, &c.cl, &t2);
    assert_int_equal(pt_policy_retry(w, &r, &t2, PT_POLICY_FAIL_EARLY, true), 0);
}

static void test_connection_slots_and_queue(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    c.cl.max_conns_per_endpoint = 2;
    c.cl.max_pending_per_endpoint = 2;
    pt_policy_ep_t *e = pt_policy_ep(w, &c.cl, 0);
    pt_policy_wait_t w1 = {0}, w2 = {0}, w3 = {0}, w4 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w1), PT_POLICY_GRANTED);
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w2), PT_POLICY_GRANTED);
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w3), PT_POLICY_QUEUED);
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w4), PT_POLICY_QUEUED);
    pt_policy_wait_t w5 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w5), PT_ERR_OVERLOADED);
    /* a closing connection hands its slot to the first waiter, FIFO */
    assert_ptr_equal(pt_policy_conn_release(e), &w3);
    /* a waiter that gave up leaves the queue */
    pt_policy_wait_cancel(&w4);
    pt_policy_wait_cancel(&w4); /* harmless twice */
    assert_null(pt_policy_wait_next(e));
    /* two connections are still counted (w3 holds the passed slot) */
    pt_policy_wait_t w6 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w6), PT_POLICY_QUEUED);
    assert_ptr_equal(pt_policy_wait_next(e), &w6); /* an idle connection goes to it */
    assert_null(pt_policy_conn_release(e));
    pt_policy_wait_t w7 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w7), PT_POLICY_GRANTED);
    /* no queue at all */
    c.cl.max_pending_per_endpoint = 0;
    pt_policy_wait_t w8 = {0};
    assert_int_equal(pt_policy_conn_acquire(w, &c.cl, e, &w8), PT_ERR_OVERLOADED);
}

static void test_limits_defaults(void **state)
{
    (void)state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    assert_int_equal(pt_policy_max_conns(&c.cl, false), PT_POLICY_H1_MAX_CONNS);
    assert_int_equal(pt_policy_max_conns(&c.cl, true), PT_POLICY_H2_MAX_CONNS);
    c.cl.max_conns_per_endpoint = 3;
    assert_int_equal(pt_policy_max_conns(&c.cl, true), 3);
    assert_int_equal(pt_policy_max_pending(&c.cl), PT_POLICY_MAX_PENDING);
    assert_int_equal(pt_status_http(PT_ERR_OVERLOADED), 503);
    assert_string_equal(pt_status_name(PT_ERR_OVERLOADED), "OVERLOADED");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_robin),
        T(test_weighted_round_robin),
        T(test_weighted_random),
        T(test_least_request),
        T(test_ring_hash),
        T(test_ring_hash_weights),
        T(test_priority_levels),
        T(test_retries_differ_for_every_lb),
        T(test_ejection_shared_by_clusters),
        T(test_success_clears_failures),
        T(test_ejection_grows),
        T(test_max_ejection_percent),
        T(test_https_endpoints_keyed_by_tls_settings),
        T(test_local_errors_never_eject),
        T(test_breaker_max_requests),
        T(test_breaker_connections_and_pending),
        T(test_hash_key_of_request),
        T(test_retry_decision),
        T(test_retry_same_endpoint_when_alone),
        T(test_connection_slots_and_queue),
        T(test_limits_defaults),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
