/*
 * lb_pick.c -- what the endpoint policy itself costs per call, for each lb:
 * pick, the answer report and the call's end (pt_policy_pick,
 * pt_policy_answered, pt_policy_call_end), on one thread, 3 endpoints, no
 * sockets. Best of 7 runs of 1M calls each (the least disturbed run on a
 * shared machine). Prints "RESULT name ns_per_call". bench/lb_bench.py runs it.
 */
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "net/worker.h"
#include "upstream/policy.h"

enum { N = 3, CALLS = 1000000, RUNS = 7 };

static double run(pt_worker_t *w, const pt_cluster_t *cl, pt_str_t key)
{
    pt_upcall_req_t r = {.cluster = cl, .hash_key = key};
    double best = 1e30;
    unsigned long sink = 0;
    for (int k = 0; k < RUNS; k++) {
        uint64_t t0 = pt_now_ns();
        for (int i = 0; i < CALLS; i++) {
            pt_policy_try_t t = {0};
            long idx = pt_policy_pick(w, &r, &t);
            sink += (unsigned long)idx;
            pt_policy_answered(w, &t, 200, -1);
            pt_policy_call_end(&t);
        }
        double ns = (double)(pt_now_ns() - t0) / CALLS;
        if (ns < best)
            best = ns;
    }
    if (sink == 42) /* keeps the loop */
        puts("");
    return best;
}

int main(void)
{
    static pt_worker_t w;
    if (pt_policy_worker_init(&w) != 0)
        return 1;
    static const char *const urls[N] = {"http://127.0.0.1:1", "http://127.0.0.1:2",
                                        "http://127.0.0.1:3"};
    static const struct {
        const char *name;
        pt_lb_policy_t lb;
        int weighted;
    } cases[] = {
        {"round_robin", PT_LB_ROUND_ROBIN, 0}, {"rr_weighted", PT_LB_ROUND_ROBIN, 1},
        {"least_request", PT_LB_LEAST_REQUEST, 0}, {"random", PT_LB_RANDOM, 0},
        {"ring_hash", PT_LB_RING_HASH, 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        pt_endpoint_t eps[N];
        memset(eps, 0, sizeof(eps));
        for (int i = 0; i < N; i++) {
            eps[i].url = urls[i];
            eps[i].weight = cases[c].weighted ? (uint32_t)i + 1 : 1;
        }
        pt_cluster_shared_t shared;
        memset(&shared, 0, sizeof(shared));
        pt_cluster_t cl = {.name = cases[c].name, .index = (unsigned)c, .endpoints = eps,
                           .endpoint_cnt = N, .lb = cases[c].lb, .shared = &shared};
        printf("RESULT %s %.1f\n", cases[c].name, run(&w, &cl, PT_STR("alice")));
    }
    pt_policy_worker_dispose(&w);
    return 0;
}
