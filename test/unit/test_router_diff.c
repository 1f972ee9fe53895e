/*
 * test_router_diff.c -- the compiled router (per-host tables, prefix radix
 * tree, template trie) against the linear scan in config order, on random
 * route sets and random requests: same route (first match wins), same
 * parameters, or both no match. Deterministic seeds; a failure prints the
 * seed, the request and both answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/router.h"
#include "portico/status.h"
#include "sbuf.h"

typedef struct rng {
    uint64_t x;
} rng_t;

static uint32_t rnd(rng_t *r, uint32_t n)
{
    r->x ^= r->x << 13;
    r->x ^= r->x >> 7;
    r->x ^= r->x << 17;
    return (uint32_t)(r->x % n);
}

static const char *const SEGS[] = {"a", "b", "api", "v1", "users", "x", "", "ab", "A"};
#define NSEGS (sizeof(SEGS) / sizeof(SEGS[0]))

/* A random path "/seg/seg..." of 1..4 segments into buf. */
static void rand_path(rng_t *r, char *buf, size_t cap)
{
    size_t n = 1 + rnd(r, 4), len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "/%s", SEGS[rnd(r, NSEGS)]);
}

static void rand_route(rng_t *r, pt_sbuf_t *y, size_t i)
{
    char path[128];
    pt_sbuf_put(y, "  - name: r%zu\n    match: {", i);
    switch (rnd(r, 5)) {
    case 0:
        break; /* any path */
    case 1:
        rand_path(r, path, sizeof(path));
        pt_sbuf_put(y, " path: \"%s\",", path);
        break;
    case 2: { /* a byte prefix of a path: "/ap" matches "/api" */
        rand_path(r, path, sizeof(path));
        size_t len = strlen(path);
        path[1 + rnd(r, (uint32_t)len)] = '\0';
        pt_sbuf_put(y, " prefix: \"%s\",", path);
        break;
    }
    default: { /* templates */
        size_t n = 1 + rnd(r, 4), vars = 0;
        pt_sbuf_put(y, " template: \"");
        for (size_t k = 0; k < n; k++) {
            uint32_t kind = rnd(r, 6);
            if (kind == 0 && k + 1 == n)
                pt_sbuf_put(y, "/{r%zu=**}", vars++);
            else if (kind <= 2)
                pt_sbuf_put(y, "/{v%zu}", vars++);
            else
                pt_sbuf_put(y, "/%s", SEGS[rnd(r, NSEGS - 1)]); /* no "A": case matters, covered by "a" */
        }
        pt_sbuf_put(y, "\",");
        break;
    }
    }
    switch (rnd(r, 6)) {
    case 0:
        pt_sbuf_put(y, " host: a.com,");
        break;
    case 1:
        pt_sbuf_put(y, " host: [ \"*.c.com\", b.com ],");
        break;
    case 2:
        pt_sbuf_put(y, " host: \"*.x.c.com\",");
        break;
    default:
        break;
    }
    switch (rnd(r, 5)) {
    case 0:
        pt_sbuf_put(y, " methods: [GET, HEAD],");
        break;
    case 1:
        pt_sbuf_put(y, " methods: [POST, PROPFIND],");
        break;
    default:
        break;
    }
    switch (rnd(r, 6)) {
    case 0:
        pt_sbuf_put(y, " headers: { x-v: \"1\" },");
        break;
    case 1:
        pt_sbuf_put(y, " headers: { x-p: true },");
        break;
    default:
        break;
    }
    pt_sbuf_put(y, " }\n    respond: {}\n");
}

static const char *const HOSTS[] = {"a.com",   "A.COM:8080", "b.com",   "q.c.com",   "c.com",
                                    ".c.com",  "Q.X.C.COM.", "x.c.com", "z.x.c.com", "",
                                    "[::1]:9", "a.com.",     "b.com:1"};
static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "PROPFIND", "BREW"};

static void compare_one(uint64_t seed, const pt_config_t *c, rng_t *r, pt_arena_t *a)
{
    char path[160];
    switch (rnd(r, 8)) {
    case 0:
        snprintf(path, sizeof(path), "%s", rnd(r, 2) ? "" : "api/x");
        break;
    case 1:
        rand_path(r, path, sizeof(path));
        strcat(path, "/");
        break;
    default:
        rand_path(r, path, sizeof(path));
        break;
    }
    const char *host = HOSTS[rnd(r, sizeof(HOSTS) / sizeof(HOSTS[0]))];
    const char *method = METHODS[rnd(r, sizeof(METHODS) / sizeof(METHODS[0]))];
    pt_headers_t h;
    pt_headers_init(&h, a);
    if (rnd(r, 2))
        pt_headers_add(&h, PT_STR("x-v"), rnd(r, 2) ? PT_STR("1") : PT_STR("2"));
    if (rnd(r, 2))
        pt_headers_add(&h, PT_STR("x-p"), PT_STR(""));
    pt_route_result_t fast = {0}, slow = {0};
    int rf = pt_router_match(c->router, pt_str_c(method), pt_str_c(host), pt_str_c(path), &h, a,
                             &fast);
    int rs = pt_router_match_linear(c->router, pt_str_c(method), pt_str_c(host), pt_str_c(path),
                                    &h, a, &slow);
    if (rf != rs || (rf == 0 && fast.route != slow.route))
        fail_msg("seed %llu: %s %s host '%s': compiled %s, linear %s",
                 (unsigned long long)seed, method, path, host,
                 rf == 0 ? fast.route->name : "none", rs == 0 ? slow.route->name : "none");
    if (rf != 0)
        return;
    assert_int_equal(fast.param_cnt, slow.param_cnt);
    for (size_t i = 0; i < fast.param_cnt; i++) {
        assert_true(pt_str_eq(fast.params[i].name, slow.params[i].name));
        assert_true(pt_str_eq(fast.params[i].value, slow.params[i].value));
    }
}

static void test_compiled_equals_linear(void **state)
{
    (void)state;
    size_t matched = 0, total = 0;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        rng_t r = {seed * 0x9e3779b97f4a7c15ull};
        pt_sbuf_t y = {0};
        pt_sbuf_put(&y, "listeners: [ { address: 127.0.0.1:8080 } ]\nroutes:\n");
        size_t n = 1 + rnd(&r, seed % 10 == 0 ? 400 : 40);
        for (size_t i = 0; i < n; i++)
            rand_route(&r, &y, i);
        pt_config_t *c = pt_config_load_string("diff.yaml", y.p, y.len, stderr);
        if (c == NULL)
            fail_msg("seed %llu: config did not load:\n%s", (unsigned long long)seed, y.p);
        pt_arena_t *a = pt_arena_new(0, 0);
        for (int q = 0; q < 400; q++) {
            pt_arena_reset(a);
            pt_route_result_t res;
            compare_one(seed, c, &r, a);
            total++;
            (void)res;
        }
        /* how often something matched at all (the test must exercise matches) */
        for (int q = 0; q < 50; q++) {
            pt_route_result_t res;
            matched += pt_router_match(c->router, PT_STR("GET"), PT_STR("a.com"), PT_STR("/a"),
                                       NULL, a, &res) == 0;
        }
        pt_arena_destroy(a);
        pt_config_unref(c);
        free(y.p);
    }
    assert_true(total == 300 * 400);
    assert_true(matched > 0);
}

/* Beyond the index's bounds (a host longer than its buffer, 65+ segments): same answers. */
static void test_bounds_fall_back(void **state)
{
    (void)state;
    static const char yaml[] =
        "listeners: [ { address: 127.0.0.1:8080 } ]\n"
        "routes:\n"
        "  - { name: deep, match: { template: \"/{a}/{b=**}\" }, respond: {} }\n"
        "  - { name: wild, match: { host: \"*.c.com\" }, respond: {} }\n";
    pt_config_t *c = pt_config_load_string("b.yaml", yaml, strlen(yaml), stderr);
    assert_non_null(c);
    pt_arena_t *a = pt_arena_new(0, 0);
    char path[400] = "";
    for (int i = 0; i < 80; i++)
        strcat(path, "/s");
    char host[400];
    memset(host, 'h', 300);
    strcpy(host + 300, ".c.com");
    pt_route_result_t res;
    assert_int_equal(pt_router_match(c->router, PT_STR("GET"), PT_STR("x"), pt_str_c(path), NULL,
                                     a, &res),
                     0);
    assert_string_equal(res.route->name, "deep");
    assert_int_equal(pt_router_match(c->router, PT_STR("GET"), pt_str_c(host), PT_STR("x"), NULL,
                                     a, &res),
                     0);
    assert_string_equal(res.route->name, "wild");
    assert_true(pt_router_mem(c->router) > 0);
    pt_arena_destroy(a);
    pt_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compiled_equals_linear),
        cmocka_unit_test(test_bounds_fall_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
