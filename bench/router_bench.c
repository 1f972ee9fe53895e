/*
 * router_bench.c -- route matching at 10, 1k and 10k routes: the compiled
 * router (core/router.c) against the linear scan it replaced
 * (PORTICO_ROUTER_LINEAR=1 at load), side by side in one process.
 *
 *   build/bin/router_bench [SECONDS_PER_RUN]     (bench/run.sh runs it)
 *
 * Route sets look like a large gateway's: per-service prefixes, exact health
 * paths, templates with two variables, a tenth of the routes per host
 * (100 hosts, some "*.domain"), methods on a quarter, header matches on a
 * few, and a catch-all last. Requests: 1024 paths drawn from the routes (a
 * mix of every kind, hosts included) plus misses that reach the catch-all.
 * Prints per size: config load time (whole pt_config_load_string, median of
 * 5), heap bytes the loaded config holds (mallinfo2), the index's own bytes,
 * and ns per match (CPU time of this thread, median of 3 interleaved runs);
 * "new hot": the index on the same mix narrowed to 64 routes (caches warm:
 * the index's own cost, without the cache misses of 10k random routes).
 */
#include <linux/perf_event.h>
#include <malloc.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/router.h"
#include "portico/arena.h"
#include "portico/headers.h"
#include "../test/support/sbuf.h"

typedef struct req {
    char method[8];
    char host[64];
    char path[96];
} req_t;

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Route i of a set: kind by i % 8; a tenth carry a host. */
static void gen_route(pt_sbuf_t *y, size_t i, req_t *sample)
{
    const char *host = NULL;
    char hbuf[48];
    if (i % 10 == 3) {
        snprintf(hbuf, sizeof(hbuf), i % 20 == 3 ? "*.d%zu.example.com" : "h%zu.example.com",
                 i % 100);
        host = hbuf;
    }
    pt_sbuf_put(y, "  - match: {");
    snprintf(sample->method, sizeof(sample->method), "GET");
    switch (i % 8) {
    case 0:
    case 1:
    case 2:
        pt_sbuf_put(y, " prefix: /svc%zu/", i);
        snprintf(sample->path, sizeof(sample->path), "/svc%zu/items/%zu", i, i * 7);
        break;
    case 3:
    case 4:
        pt_sbuf_put(y, " path: /svc%zu/health", i);
        snprintf(sample->path, sizeof(sample->path), "/svc%zu/health", i);
        break;
    default:
        pt_sbuf_put(y, " template: \"/api/v%zu/svc%zu/users/{id}/orders/{oid}\"", i % 3, i);
        snprintf(sample->path, sizeof(sample->path), "/api/v%zu/svc%zu/users/u%zu/orders/o1",
                 i % 3, i, i);
        break;
    }
    if (host != NULL) {
        pt_sbuf_put(y, ", host: \"%s\"", host);
        if (host[0] == '*')
            snprintf(sample->host, sizeof(sample->host), "x%s", host + 1);
        else
            snprintf(sample->host, sizeof(sample->host), "%s", host);
    } else {
        snprintf(sample->host, sizeof(sample->host), "gw.example.net");
    }
    if (i % 4 == 1) {
        pt_sbuf_put(y, ", methods: [GET, POST]");
    }
    if (i % 50 == 7)
        pt_sbuf_put(y, ", headers: { x-canary: \"1\" }");
    pt_sbuf_put(y, " }\n    respond: {}\n");
}

static double now_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Instructions retired in user space (perf_event_open), or -1 when not permitted. */
static int perf_fd = -2;
static long long instr_now(void)
{
    if (perf_fd == -2) {
        struct perf_event_attr pe;
        memset(&pe, 0, sizeof(pe));
        pe.type = PERF_TYPE_HARDWARE;
        pe.size = sizeof(pe);
        pe.config = PERF_COUNT_HW_INSTRUCTIONS;
        pe.exclude_kernel = 1;
        pe.exclude_hv = 1;
        perf_fd = (int)syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
    }
    long long v;
    if (perf_fd < 0 || read(perf_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return -1;
    return v;
}

typedef int (*match_fn)(const pt_router_t *, pt_str_t, pt_str_t, pt_str_t, const pt_headers_t *,
                        pt_arena_t *, pt_route_result_t *);

/* CPU ns per match over `secs` of matching the request mix. */
static double run(match_fn fn, const pt_config_t *c, const req_t *reqs, size_t nreq, double secs,
                  size_t *found, double *instr)
{
    long long i0 = instr_now();
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_headers_t h;
    pt_headers_init(&h, a);
    size_t n = 0;
    *found = 0;
    double t0 = now_s(CLOCK_THREAD_CPUTIME_ID), t;
    do {
        for (size_t k = 0; k < 256; k++, n++) {
            const req_t *q = &reqs[n % nreq];
            pt_route_result_t res;
            *found += fn(c->router, pt_str_c(q->method), pt_str_c(q->host), pt_str_c(q->path), &h,
                         a, &res) == 0 &&
                      res.route->index + 1 != c->route_cnt; /* not the catch-all */
            if ((n & 63) == 0)
                pt_arena_reset(a);
        }
        t = now_s(CLOCK_THREAD_CPUTIME_ID);
    } while (t - t0 < secs);
    long long i1 = instr_now();
    *instr = i0 >= 0 && i1 >= 0 ? (double)(i1 - i0) / (double)n : -1;
    pt_arena_destroy(a);
    return (t - t0) * 1e9 / (double)n;
}

static pt_config_t *load(const pt_sbuf_t *y, bool linear, double *secs, size_t *heap)
{
    if (linear)
        setenv("PORTICO_ROUTER_LINEAR", "1", 1);
    else
        unsetenv("PORTICO_ROUTER_LINEAR");
    double ts[5];
    pt_config_t *c = NULL;
    for (int k = 0; k < 5; k++) {
        if (c != NULL)
            pt_config_unref(c);
        struct mallinfo2 m0 = mallinfo2();
        double t0 = now_s(CLOCK_MONOTONIC);
        c = pt_config_load_string("bench.yaml", y->p, y->len, stderr);
        ts[k] = now_s(CLOCK_MONOTONIC) - t0;
        struct mallinfo2 m1 = mallinfo2();
        *heap = m1.uordblks - m0.uordblks;
        if (c == NULL)
            abort();
    }
    qsort(ts, 5, sizeof(ts[0]), cmp_d);
    *secs = ts[2];
    return c;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? strtod(argv[1], NULL) : 0.3;
    size_t only = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 0; /* one size (profiling) */
    static const size_t sizes[] = {10, 1000, 10000};
    printf("router match: compiled index vs linear scan (PORTICO_ROUTER_LINEAR=1); CPU ns and "
           "instructions per match (this thread), median of 3 interleaved runs of %.1fs\n",
           secs);
    printf("%7s | %9s %9s | %9s %9s | %8s %8s %8s | %9s %9s | %10s | %s\n", "routes",
           "load lin", "load new", "heap lin", "heap new", "ns lin", "ns new", "new hot",
           "ins lin", "ins new", "index", "same");
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t n = sizes[si];
        if (only != 0 && n != only)
            continue;
        pt_sbuf_t y = {0};
        pt_sbuf_put(&y, "listeners: [ { address: 127.0.0.1:8080 } ]\nroutes:\n");
        req_t *samples = calloc(n, sizeof(*samples));
        for (size_t i = 0; i + 1 < n; i++)
            gen_route(&y, i, &samples[i]);
        pt_sbuf_put(&y, "  - respond: {}\n"); /* the catch-all */
        enum { NREQ = 1024 };
        req_t *reqs = calloc(NREQ, sizeof(*reqs));
        for (size_t k = 0; k < NREQ; k++) {
            if (k % 8 == 7) { /* a miss: nothing but the catch-all */
                snprintf(reqs[k].method, sizeof(reqs[k].method), "GET");
                snprintf(reqs[k].host, sizeof(reqs[k].host), "gw.example.net");
                snprintf(reqs[k].path, sizeof(reqs[k].path), "/nothing/here/%zu", k);
            } else {
                reqs[k] = samples[rnd((uint32_t)(n - 1))];
            }
        }
        /* the same mix over 64 routes only: the index's own cost, caches warm */
        req_t *hot = calloc(NREQ, sizeof(*hot));
        for (size_t k = 0; k < NREQ; k++)
            hot[k] = reqs[k % 64];
        double load_lin, load_new;
        size_t heap_lin, heap_new;
        pt_config_t *cl = load(&y, true, &load_lin, &heap_lin);
        pt_config_t *cn = load(&y, false, &load_new, &heap_new);
        /* both answer every request of the mix alike */
        size_t same = 0;
        pt_arena_t *a = pt_arena_new(0, 0);
        for (size_t k = 0; k < NREQ; k++) {
            pt_route_result_t x = {0}, z = {0};
            const req_t *q = &reqs[k];
            int rx = pt_router_match(cl->router, pt_str_c(q->method), pt_str_c(q->host),
                                     pt_str_c(q->path), NULL, a, &x);
            int rz = pt_router_match(cn->router, pt_str_c(q->method), pt_str_c(q->host),
                                     pt_str_c(q->path), NULL, a, &z);
            same += rx == rz && (rx != 0 || x.route->index == z.route->index);
        }
        pt_arena_destroy(a);
        double lin[3], com[3], ilin[3], icom[3], hc[3], ih;
        size_t hits_lin = 0, hits_new = 0;
        for (int r = 0; r < 3; r++) {
            lin[r] = run(pt_router_match, cl, reqs, NREQ, secs, &hits_lin, &ilin[r]);
            com[r] = run(pt_router_match, cn, reqs, NREQ, secs, &hits_new, &icom[r]);
            hc[r] = run(pt_router_match, cn, hot, NREQ, secs, &hits_new, &ih);
        }
        qsort(hc, 3, sizeof(hc[0]), cmp_d);
        qsort(lin, 3, sizeof(lin[0]), cmp_d);
        qsort(com, 3, sizeof(com[0]), cmp_d);
        qsort(ilin, 3, sizeof(ilin[0]), cmp_d);
        qsort(icom, 3, sizeof(icom[0]), cmp_d);
        char il[16] = "n/a", ic[16] = "n/a"; /* perf counters may not be permitted */
        if (ilin[1] >= 0)
            snprintf(il, sizeof(il), "%.0f", ilin[1]);
        if (icom[1] >= 0)
            snprintf(ic, sizeof(ic), "%.0f", icom[1]);
        printf("%7zu | %7.2fms %7.2fms | %8.0fk %8.0fk | %8.0f %8.0f %8.0f | %9s %9s | %9.0fk | "
               "%zu/%d\n",
               n, load_lin * 1e3, load_new * 1e3, (double)heap_lin / 1024,
               (double)heap_new / 1024, lin[1], com[1], hc[1], il, ic,
               (double)pt_router_mem(cn->router) / 1024, same, (int)NREQ);
        free(hot);
        pt_config_unref(cl);
        pt_config_unref(cn);
        free(reqs);
        free(samples);
        free(y.p);
    }
    return 0;
}
