/*
 * test_cache.c -- the rules and the store behind the `cache` filter, on their
 * own (plugins/cache_policy.h, plugins/cache_store.h): Cache-Control parsing,
 * HTTP dates, freshness lifetime and age, what is storable, Vary names,
 * If-None-Match, then the store: LRU under a byte budget, references that
 * outlive eviction, purge by path and prefix, the coalescing lock, the Redis
 * format (round trip, every truncation refused), and threads racing on it.
 * The filter itself runs in test/integration/test_cache.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/cache_policy.h"
#include "plugins/cache_store.h"

static pc_cc_t cc_of(const char *s)
{
    pc_cc_t cc;
    pc_cc_init(&cc);
    pc_cc_parse(&cc, pt_str_c(s));
    return cc;
}

static void cc_parsing(void **state)
{
    (void)state;
    pc_cc_t cc = cc_of("public, max-age=60, s-maxage=\"120\"");
    assert_int_equal(cc.flags, PC_PUBLIC);
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 120);
    cc = cc_of("No-Store,PRIVATE=\"set-cookie, x-a\" , no-cache");
    assert_int_equal(cc.flags, PC_NO_STORE | PC_PRIVATE | PC_NO_CACHE);
    cc = cc_of("max-age=abc");
    assert_int_equal(cc.max_age, 0); /* invalid: stale (RFC 9111 §4.2.1) */
    cc = cc_of("max-age=100, max-age=10");
    assert_int_equal(cc.max_age, 10); /* the most conservative */
    cc = cc_of("max-age=99999999999999999999");
    assert_int_equal(cc.max_age, PC_DELTA_MAX);
    cc = cc_of("max-stale, min-fresh=5, only-if-cached");
    assert_int_equal(cc.max_stale, PC_DELTA_MAX);
    assert_int_equal(cc.min_fresh, 5);
    assert_true(cc.flags & PC_ONLY_IF_CACHED);
    cc = cc_of("foo=\"unterminated, max-age=5");
    assert_int_equal(cc.max_age, -1); /* swallowed by the open quote */
    cc = cc_of(" , ,x y, no-store");
    assert_int_equal(cc.flags, PC_NO_STORE); /* junk directive dropped */
    cc = cc_of("");
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.max_age, -1);
    assert_int_equal(cc.stale_if_error, -1);
    cc = cc_of("max-age=60, stale-if-error=\"600\", Stale-If-Error=300");
    assert_int_equal(cc.stale_if_error, 300); /* RFC 5861; the smallest of two */
    cc = cc_of("stale-if-error=soon");
    assert_int_equal(cc.stale_if_error, 0); /* invalid: never */
}

static void http_dates(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_true(pc_http_date(pt_str_c("Sun, 06 Nov 1994 08:49:37 GMT"), &t));
    assert_int_equal(t, 784111777);
    assert_true(pc_http_date(pt_str_c("Sunday, 06-Nov-94 08:49:37 GMT"), &t));
    assert_int_equal(t, 784111777);
    assert_true(pc_http_date(pt_str_c("Sun Nov  6 08:49:37 1994"), &t));
    assert_int_equal(t, 784111777);
    assert_false(pc_http_date(pt_str_c("Sun, 31 Feb 1994 08:49:37 GMT"), &t));
    assert_false(pc_http_date(pt_str_c("0"), &t));
    assert_false(pc_http_date(pt_str_c("Sun, 06 Nov 1994 25:49:37 GMT"), &t));
    char buf[40];
    assert_int_equal(pc_http_date_fmt(784111777, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_true(pc_http_date(pt_str_c(buf), &t));
    assert_int_equal(t, 784111777);
}

static void lifetimes(void **state)
{
    (void)state;
    pc_resp_t r;
    bool ex;
    pc_resp_init(&r, 200);
    assert_int_equal(pc_lifetime(&r, 1000, 30, &ex), 30); /* the configured default */
    assert_false(ex);
    pc_resp_init(&r, 500);
    assert_int_equal(pc_lifetime(&r, 1000, 30, &ex), 0); /* not heuristically cacheable */
    pc_resp_init(&r, 200);
    r.cc = cc_of("max-age=10, s-maxage=20");
    assert_int_equal(pc_lifetime(&r, 1000, 30, &ex), 20);
    assert_true(ex);
    r.cc = cc_of("max-age=10");
    r.has_expires = r.expires_valid = true;
    r.expires = 5000;
    assert_int_equal(pc_lifetime(&r, 1000, 30, NULL), 10); /* max-age over Expires */
    pc_cc_init(&r.cc);
    r.has_date = true;
    r.date = 900;
    assert_int_equal(pc_lifetime(&r, 1000, 30, NULL), 4100); /* Expires - Date */
    r.expires_valid = false;
    assert_int_equal(pc_lifetime(&r, 1000, 30, NULL), 0); /* invalid Expires: stale */
    /* age: max(apparent, Age) */
    r.age = 5;
    assert_int_equal(pc_initial_age(&r, 1000), 100);
    r.age = 500;
    assert_int_equal(pc_initial_age(&r, 1000), 500);
}

static void storability(void **state)
{
    (void)state;
    pc_resp_t r;
    pc_cc_t req = cc_of("");
    pc_resp_init(&r, 200);
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_STORE_OK);
    assert_int_equal(pc_storable(&r, &req, true, 30), PC_NOSTORE_AUTH);
    r.cc = cc_of("public");
    assert_int_equal(pc_storable(&r, &req, true, 30), PC_STORE_OK);
    r.cc = cc_of("s-maxage=5");
    assert_int_equal(pc_storable(&r, &req, true, 5), PC_STORE_OK);
    r.cc = cc_of("private");
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_DIRECTIVE);
    r.cc = cc_of("no-store");
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_DIRECTIVE);
    pc_cc_init(&r.cc);
    r.has_set_cookie = true;
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_COOKIE);
    r.has_set_cookie = false;
    r.vary_star = true;
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_VARY_STAR);
    r.vary_star = false;
    assert_int_equal(pc_storable(&r, &req, false, 0), PC_NOSTORE_LIFETIME);
    r.has_validator = true;
    assert_int_equal(pc_storable(&r, &req, false, 0), PC_STORE_OK); /* kept to revalidate */
    req = cc_of("no-store");
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_REQUEST);
    req = cc_of("");
    pc_resp_init(&r, 302);
    assert_int_equal(pc_storable(&r, &req, false, 30), PC_NOSTORE_STATUS);
    r.cc = cc_of("max-age=5");
    assert_int_equal(pc_storable(&r, &req, false, 5), PC_STORE_OK);
    pc_resp_init(&r, 206);
    r.cc = cc_of("max-age=5");
    assert_int_equal(pc_storable(&r, &req, false, 5), PC_NOSTORE_STATUS);
    pc_resp_init(&r, 503);
    r.cc = cc_of("max-age=5");
    assert_int_equal(pc_storable(&r, &req, false, 5), PC_NOSTORE_STATUS);
}

static void vary_and_etags(void **state)
{
    (void)state;
    char buf[64];
    bool star;
    assert_int_equal(pc_vary_names(pt_str_c("Accept-Encoding, accept-language,ACCEPT-ENCODING"),
                                   buf, sizeof(buf), &star), 31);
    assert_string_equal(buf, "accept-encoding\naccept-language");
    assert_false(star);
    assert_int_equal(pc_vary_names(pt_str_c("x, *"), buf, sizeof(buf), &star), 1);
    assert_true(star);
    assert_int_equal(pc_vary_names(pt_str_c("bad header"), buf, sizeof(buf), &star), -1);
    assert_int_equal(pc_vary_names((pt_str_t){"A\0b", 3}, buf, sizeof(buf), &star), -1); /* NUL is no tchar */
    assert_int_equal(pc_vary_names(pt_str_c("a-very-long-header-name-that-does-not-fit-in-the-buffer-at-all"),
                                   buf, 16, &star), -1);
    assert_int_equal(pc_vary_names(PT_STR_NULL, buf, sizeof(buf), &star), 0);

    assert_true(pc_inm_matches(pt_str_c("\"a\", \"b\""), pt_str_c("\"b\"")));
    assert_true(pc_inm_matches(pt_str_c("W/\"b\""), pt_str_c("\"b\"")));   /* weak comparison */
    assert_true(pc_inm_matches(pt_str_c("\"b\""), pt_str_c("W/\"b\"")));
    assert_true(pc_inm_matches(pt_str_c("*"), pt_str_c("\"z\"")));
    assert_false(pc_inm_matches(pt_str_c("\"a\""), pt_str_c("\"ab\"")));
    assert_false(pc_inm_matches(pt_str_c("\"a,b\""), pt_str_c("\"a\"")));
    assert_false(pc_inm_matches(pt_str_c("\"a\""), PT_STR_NULL));

    pc_cc_t c = cc_of("no-cache");
    assert_true(pc_req_wants_revalidate(&c, false, true));
    c = cc_of("max-age=0");
    assert_true(pc_req_wants_revalidate(&c, false, true));
    c = cc_of("");
    assert_true(pc_req_wants_revalidate(&c, true, false));   /* Pragma without Cache-Control */
    c = cc_of("max-age=5");
    assert_false(pc_req_wants_revalidate(&c, true, true));   /* Cache-Control wins over Pragma */
}

/* ---- the store ------------------------------------------------------------ */

static cs_entry_t *entry(const char *key, size_t body_len, int64_t now)
{
    pt_header_t h[] = {{PT_STR("content-type"), PT_STR("text/plain")}, {PT_STR("etag"), PT_STR("\"1\"")}};
    cs_entry_t *e = cs_entry_new(pt_str_c(key), 200, h, 2, PT_STR(""), body_len);
    assert_non_null(e);
    memset(cs_entry_body(e), 'b', body_len);
    e->resp_ms = now;
    e->lifetime = 60;
    e->keep_until_ms = now + 60000;
    return e;
}

static void store_lru(void **state)
{
    (void)state;
    int64_t now = 1000000;
    cs_store_t *s = cs_store_new(64 * 1024, 16 * 1024); /* one shard */
    assert_int_equal(cs_store_shards(s), 1);
    char key[32];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "h\x1f/%d", i);
        cs_entry_t *e = entry(key, 15000, now);
        assert_true(cs_put(s, e));
        cs_entry_unref(e);
    }
    cs_entry_t *held = cs_get(s, pt_str_c("h\x1f/0"), now); /* most recent now; kept by us */
    assert_non_null(held);
    cs_entry_t *e = entry("h\x1f/4", 15000, now);
    assert_true(cs_put(s, e));
    cs_entry_unref(e);
    cs_stats_t *st = cs_store_stats(s);
    assert_int_equal(atomic_load(&st->evictions), 1);
    assert_null(cs_get(s, pt_str_c("h\x1f/1"), now)); /* the least recent went */
    e = cs_get(s, pt_str_c("h\x1f/0"), now);
    assert_non_null(e);
    cs_entry_unref(e);
    assert_true(atomic_load(&st->bytes) <= 64 * 1024);
    /* too large for a shard: refused */
    e = entry("h\x1f/big", 70000, now);
    assert_false(cs_put(s, e));
    cs_entry_unref(e);
    /* expired past keep_until: dropped on lookup */
    assert_null(cs_get(s, pt_str_c("h\x1f/2"), now + 61000));
    /* a replaced entry stays valid for its holder */
    e = entry("h\x1f/0", 10, now);
    assert_true(cs_put(s, e));
    cs_entry_unref(e);
    assert_int_equal(held->body.len, 15000);
    assert_int_equal(held->body.base[14999], 'b');
    cs_entry_unref(held);
    cs_store_free(s);
}

static void store_purge_and_lock(void **state)
{
    (void)state;
    int64_t now = 5000;
    cs_store_t *s = cs_store_new(1 << 20, 1024);
    const char *keys[] = {"a\x1f/p/1", "a\x1f/p/1\x1e" "accept-language=en\n", "a\x1f/p/10",
                          "b\x1f/p/1", "a\x1f/q"};
    for (size_t i = 0; i < 5; i++) {
        cs_entry_t *e = entry(keys[i], 10, now);
        cs_put(s, e);
        cs_entry_unref(e);
    }
    assert_int_equal(cs_purge(s, pt_str_c("a"), pt_str_c("/p/1"), false), 2); /* with its variant */
    assert_int_equal(cs_purge(s, PT_STR(""), pt_str_c("/p/"), true), 2);
    assert_int_equal(cs_purge(s, PT_STR(""), pt_str_c("/p/"), true), 0);
    cs_entry_t *e = cs_get(s, pt_str_c("a\x1f/q"), now);
    assert_non_null(e);
    cs_entry_unref(e);

    pt_str_t k = pt_str_c("a\x1f/x");
    assert_int_equal(cs_lock(s, k, now, 100), CS_LOCK_OWNER);
    assert_int_equal(cs_lock(s, k, now + 50, 100), CS_LOCK_BUSY);
    assert_int_equal(cs_lock(s, k, now + 100, 100), CS_LOCK_OWNER); /* lapsed: taken over */
    cs_unlock(s, k, 0);
    assert_int_equal(cs_lock(s, k, now + 101, 100), CS_LOCK_OWNER);
    cs_unlock(s, k, now + 1000); /* not cacheable: pass */
    assert_int_equal(cs_lock(s, k, now + 500, 100), CS_LOCK_PASS);
    assert_int_equal(cs_lock(s, k, now + 1001, 100), CS_LOCK_OWNER);
    cs_unlock(s, k, 0);
    cs_store_free(s);
}

static void entry_format(void **state)
{
    (void)state;
    cs_entry_t *e = entry("h\x1f/f", 100, 123456);
    e->flags = CS_AUTH_OK;
    e->initial_age = 7;
    size_t len;
    char *blob = cs_entry_encode(e, &len);
    assert_non_null(blob);
    cs_entry_t *d = cs_entry_decode(blob, len, e->key);
    assert_non_null(d);
    assert_int_equal(d->status, 200);
    assert_int_equal(d->flags, CS_AUTH_OK);
    assert_int_equal(d->initial_age, 7);
    assert_int_equal(d->resp_ms, 123456);
    assert_int_equal(d->hdr_cnt, 2);
    assert_true(pt_str_eq(cs_entry_header(d, PT_STR("etag")), PT_STR("\"1\"")));
    assert_memory_equal(d->body.base, e->body.base, 100);
    cs_entry_unref(d);
    assert_null(cs_entry_decode(blob, len, pt_str_c("h\x1f/other"))); /* another key's bytes */
    for (size_t cut = 0; cut < len; cut++)
        assert_null(cs_entry_decode(blob, cut, e->key));
    free(blob);
    cs_entry_unref(e);
}

/* Threads putting, getting and purging the same keys: no lost reference, no torn entry. */
#define THREADS 4
#define ROUNDS 20000

static void *hammer(void *arg)
{
    cs_store_t *s = arg;
    char key[32];
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    for (int i = 0; i < ROUNDS; i++) {
        int k = rand_r(&seed) % 64;
        snprintf(key, sizeof(key), "h\x1f/k%d", k);
        int op = rand_r(&seed) % 10;
        if (op < 3) {
            cs_entry_t *e = entry(key, 100 + (size_t)k * 50, 1000);
            cs_put(s, e);
            cs_entry_unref(e);
        } else if (op < 9) {
            cs_entry_t *e = cs_get(s, pt_str_c(key), 1000);
            if (e != NULL) {
                if (e->body.len != 100 + (size_t)k * 50 || e->body.base[e->body.len - 1] != 'b')
                    abort();
                cs_entry_unref(e);
            }
        } else {
            cs_purge(s, PT_STR(""), pt_str_c("/k1"), true);
        }
    }
    return NULL;
}

static void store_threads(void **state)
{
    (void)state;
    cs_store_t *s = cs_store_new(128 * 1024, 4096);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cs_stats_t *st = cs_store_stats(s);
    assert_true(atomic_load(&st->bytes) <= 128 * 1024);
    assert_true(atomic_load(&st->entries) <= 64);
    cs_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cc_parsing),     cmocka_unit_test(http_dates),
        cmocka_unit_test(lifetimes),      cmocka_unit_test(storability),
        cmocka_unit_test(vary_and_etags), cmocka_unit_test(store_lru),
        cmocka_unit_test(store_purge_and_lock), cmocka_unit_test(entry_format),
        cmocka_unit_test(store_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
