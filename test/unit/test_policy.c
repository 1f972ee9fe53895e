/*
 * test_policy.c -- the one endpoint policy (upstream/policy.h) on its own:
 * round robin, passive ejection, local resource errors, the retry decision,
 * connection slots and the bounded queue. No sockets: the back ends' use of
 * it is covered by test_upstream*.c and test/integration/test_upstream_limits.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "portico/status.h"
#include "upstream/policy.h"
#include "net/worker.h"

typedef struct tcl {
    pt_endpoint_t eps[3];
    pt_cluster_t cl;
} tcl_t;

static const char *const URLS[] = {"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"};

static void tcl_init(tcl_t *t, unsigned index, size_t n)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < n; i++)
        t->eps[i].url = URLS[i];
    t->cl.name = "c";
    t->cl.index = index;
    t->cl.endpoints = t->eps;
    t->cl.endpoint_cnt = n;
    t->cl.retries = 1;
    t->cl.max_pending_per_endpoint = PT_POLICY_MAX_PENDING;
}

static int setup(void **state)
{
    static pt_worker_t w;
    memset(&w, 0, sizeof(w));
    if (pt_policy_worker_init(&w) != 0)
        return -1;
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    pt_policy_worker_dispose(*state);
    return 0;
}

static void test_round_robin(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 3);
    long seen[6];
    for (int i = 0; i < 6; i++) {
        pt_policy_try_t t = {0};
        seen[i] = pt_policy_pick(w, &c.cl, &t);
        assert_int_equal(t.attempts, 1);
        assert_int_equal(t.tried, (uint64_t)1 << seen[i]);
    }
    long want[6] = {0, 1, 2, 0, 1, 2};
    assert_memory_equal(seen, want, sizeof(want));
}

static void test_ejection_shared_by_clusters(void **state)
{
    pt_worker_t *w = *state;
    tcl_t a, b;
    tcl_init(&a, 0, 1);
    tcl_init(&b, 1, 1); /* another cluster naming the same endpoint (e.g. gRPC next to REST) */
    pt_policy_ep_t *e = pt_policy_ep(w, &a.cl, 0);
    assert_ptr_equal(e, pt_policy_ep(w, &b.cl, 0));
    for (int i = 0; i < PT_POLICY_EJECT_AFTER - 1; i++)
        assert_int_equal(pt_policy_connect_failed(w, &a.cl, e, ECONNREFUSED), PT_POLICY_FAIL_CONNECT);
    pt_policy_try_t t = {0};
    assert_int_equal(pt_policy_pick(w, &b.cl, &t), 0); /* 4 failures: still in */
    pt_policy_connect_failed(w, &a.cl, e, ETIMEDOUT);
    pt_policy_try_t t2 = {0};
    assert_int_equal(pt_policy_pick(w, &b.cl, &t2), -1); /* 5: out, for every cluster */
    assert_int_equal(t2.attempts, 0);
    pt_policy_connect_ok(e);
    assert_int_equal(pt_policy_pick(w, &a.cl, &t2), 0);
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
    for (int i = 0; i < PT_POLICY_EJECT_AFTER; i++)
        pt_policy_connect_failed(w, &bad.cl, e, 0);
    pt_policy_try_t t = {0};
    assert_int_equal(pt_policy_pick(w, &bad.cl, &t), -1);
    assert_int_equal(pt_policy_pick(w, &good.cl, &t), 0);
}

static void test_local_errors_never_eject(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 1);
    pt_policy_ep_t *e = pt_policy_ep(w, &c.cl, 0);
    static const int local[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    for (int i = 0; i < 50; i++)
        assert_int_equal(pt_policy_connect_failed(w, &c.cl, e, local[i % 4]), PT_POLICY_FAIL_LOCAL);
    pt_policy_try_t t = {0};
    assert_int_equal(pt_policy_pick(w, &c.cl, &t), 0);
    assert_false(pt_policy_errno_local(ECONNREFUSED));
    assert_false(pt_policy_errno_local(0));
}

static void test_retry_decision(void **state)
{
    pt_worker_t *w = *state;
    tcl_t c;
    tcl_init(&c, 0, 3);
    pt_upcall_req_t r = {.cluster = &c.cl, .idempotent = true};

    /* connect failures: another endpoint, at most `retries` more */
    pt_policy_try_t t = {0};
    long first = pt_policy_pick(w, &c.cl, &t);
    long second = pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true);
    assert_true(second >= 0 && second != first);
    assert_int_equal(t.attempts, 2);
    assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);

    /* early failures: idempotent only */
    pt_upcall_req_t post = {.cluster = &c.cl, .idempotent = false};
    pt_policy_try_t t2 = {0};
    pt_policy_pick(w, &c.cl, &t2);
    assert_int_equal(pt_policy_retry(w, &post, &t2, PT_POLICY_FAIL_EARLY, true), -1);
    assert_true(pt_policy_retry(w, &r, &t2, PT_POLICY_FAIL_EARLY, true) >= 0);

    /* a refused stream: once, whatever retries says */
    c.cl.retries = 0;
    pt_policy_try_t t3 = {0};
    pt_policy_pick(w, &c.cl, &t3);
    assert_true(pt_policy_retry(w, &post, &t3, PT_POLICY_FAIL_REFUSED, true) >= 0);
    assert_int_equal(pt_policy_retry(w, &post, &t3, PT_POLICY_FAIL_REFUSED, true), -1);

    /* never: other failures, local ones, or a request that cannot be sent again */
    c.cl.retries = 5;
    pt_policy_try_t t4 = {0};
    pt_policy_pick(w, &c.cl, &t4);
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
    assert_int_equal(pt_policy_pick(w, &c.cl, &t), 0);
    /* connecting failed: nothing else to try */
    assert_int_equal(pt_policy_retry(w, &r, &t, PT_POLICY_FAIL_CONNECT, true), -1);
    /* the connection died early: the same host, on another connection */
    pt_policy_try_t t2 = {0};
    pt_policy_pick(w, &c.cl, &t2);
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ejection_shared_by_clusters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_endpoints_keyed_by_tls_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_errors_never_eject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_decision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_same_endpoint_when_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_slots_and_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_defaults, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
