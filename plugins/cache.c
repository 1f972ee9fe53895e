/*
 * cache.c -- the built-in `cache` filter: a shared HTTP cache (RFC 9111) in
 * front of a route's upstream.
 *
 *   - cache:
 *       ttl: 30s            # lifetime when the upstream gives none (heuristic statuses only)
 *       max_size: 256m      # the local tier's bytes (per process, all workers)
 *       max_object: 1m      # larger answers pass without being stored
 *       keep_stale: 10m     # how long a stale entry with a validator is kept to revalidate
 *       stale_if_error: 1h  # how long past freshness an entry answers when the upstream fails
 *       lock_timeout: 5s    # how long concurrent misses wait for the one fetch
 *       name: api           # label in /metrics and in purge answers
 *       redis: { address: 127.0.0.1:6379, prefix: "pc:" }   # optional shared tier
 *
 * Request side: GET and HEAD only. The primary key is authority + path +
 * query; an answer with `Vary` is stored under a secondary key made of the
 * listed request headers, and a marker under the primary key says which
 * headers to read. A fresh entry is replayed from the request-header phase
 * (pt_req_respond_nocopy: the body is the stored bytes, held by a reference
 * until the request ends); a stale one (or one stored with no-cache, or a
 * request asking for revalidation) with a validator goes upstream with
 * If-None-Match / If-Modified-Since, and a 304 refreshes it. Concurrent
 * misses of one key are coalesced: one request fetches, the others poll the
 * store (a short timer backing off to 20 ms) until the answer is stored, the
 * fetch fails (then the next one fetches) or lock_timeout passes.
 *
 * Response side: this filter must be the innermost of the response-side
 * filters that change bodies (compress before it in the chain), so that it
 * stores what the upstream sent. The answer is copied while it streams to
 * the client; past max_object the copy stops and the bytes keep flowing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/admin.h"
#include "portico/async.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/redis.h"
#include "portico/req.h"
#include "portico/status.h"

#include "plugins/cache_policy.h"
#include "plugins/cache_store.h"

#define VARY_NAMES_MAX 512
#define POLL_MAX_MS 20
#define PASS_MS 1000 /* an uncacheable answer: concurrent requests skip the wait this long */

typedef struct cache_conf {
    uint64_t ttl_ms, max_size, max_object, keep_stale_ms, lock_timeout_ms, stale_if_error_ms;
    const char *name;
    const pt_redis_target_t *redis;
    cs_store_t *store;
} cache_conf_t;

typedef struct cache_ctx {
    pt_req_t *req;
    const cache_conf_t *conf;
    const char *xcache;      /* the x-cache value, NULL: not a request for the cache */
    bool head, auth, served, revalidate, redis_done, locked, pass, storing;
    unsigned unkeyed;        /* bits of unkeyed_headers[] the request carried (answer not stored) */
    pc_cc_t req_cc;
    bool req_has_cc, pragma_no_cache;
    pt_str_t key;            /* primary key */
    pt_str_t client_inm, client_ims; /* the client's conditionals (before ours replaced them) */
    cs_entry_t *stale;       /* the entry being revalidated */
    cs_entry_t *fallback;    /* a stale entry without validator, kept in case the fetch fails */
    pt_timer_t *timer;       /* coalescing: the next poll */
    uint64_t wait_start;
    unsigned polls;
    pt_redis_cmd_t *cmd;
    pt_str_t redis_key;      /* the key asked of Redis */
    /* the answer being stored */
    pt_str_t skey, vary;
    pt_header_t *hdrs;
    size_t hdr_cnt;
    int status;
    pc_resp_t info;
    int64_t resp_ms;
    int64_t expect_len;      /* the body's length when the head announced it, else -1 */
    char *buf;
    size_t len, cap;
} cache_ctx_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- config -------------------------------------------------------------- */

static int parse_redis(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *dst)
{
    const pt_redis_target_t *t = pt_redis_conf_inline(cx, node, "cache", NULL);
    if (t == NULL)
        return PT_ERR_INVALID;
    *(const pt_redis_target_t **)dst = t;
    return 0;
}

static const pt_conf_field_t fields[] = {
    {"ttl", PT_CONF_T_DURATION, offsetof(cache_conf_t, ttl_ms), 0, 0, false, NULL},
    {"max_size", PT_CONF_T_SIZE, offsetof(cache_conf_t, max_size), 4096, 0, false, NULL},
    {"max_object", PT_CONF_T_SIZE, offsetof(cache_conf_t, max_object), 1, 1LL << 31, false, NULL},
    {"keep_stale", PT_CONF_T_DURATION, offsetof(cache_conf_t, keep_stale_ms), 0, 0, false, NULL},
    {"stale_if_error", PT_CONF_T_DURATION, offsetof(cache_conf_t, stale_if_error_ms), 0, 0, false,
     NULL},
    {"lock_timeout", PT_CONF_T_DURATION, offsetof(cache_conf_t, lock_timeout_ms), 1, 600000, false,
     NULL},
    {"name", PT_CONF_T_STR, offsetof(cache_conf_t, name), 0, 0, false, NULL},
    {"redis", PT_CONF_T_CUSTOM, offsetof(cache_conf_t, redis), 0, 0, false, parse_redis},
    PT_CONF_FIELDS_END,
};

static void release_store(void *data) { cs_store_free(data); }
static int purge_endpoint(void *data, const pt_admin_req_t *r, FILE *out);
static void write_metrics(void *const *data, size_t n, FILE *out);

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    cache_conf_t *c = conf;
    c->ttl_ms = 30000;
    c->max_size = 256u << 20;
    c->max_object = 1u << 20;
    c->keep_stale_ms = 600000;
    c->lock_timeout_ms = 5000;
    if (node != NULL && node->kind == PT_CONF_NULL)
        node = NULL;
    if (node != NULL && pt_conf_parse_fields(cx, node, fields, conf) != 0)
        return PT_ERR_INVALID;
    if (c->max_object > c->max_size)
        return pt_conf_error(cx, pt_conf_map_get(node, "max_object"),
                             "cache: max_object (%llu bytes) is larger than max_size (%llu bytes)",
                             (unsigned long long)c->max_object, (unsigned long long)c->max_size);
    if (c->name == NULL) {
        char n[32];
        snprintf(n, sizeof(n), "line%u", node != NULL ? node->line : 0);
        c->name = pt_conf_strdup(cx, n, strlen(n));
    }
    for (const char *p = c->name; *p != '\0'; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return pt_conf_error(cx, pt_conf_map_get(node, "name"),
                                 "cache: name must not contain quotes, backslashes or controls");
    c->store = cs_store_new(c->max_size, c->max_object);
    if (c->store == NULL)
        return pt_conf_error(cx, node, "cache: out of memory");
    pt_conf_on_release(cx, release_store, c->store);
    if (pt_conf_admin_endpoint(cx, node, "/cache/purge", purge_endpoint, c) != 0)
        return PT_ERR_INVALID;
    pt_conf_metrics(cx, "portico_cache", write_metrics, c);
    return 0;
}

/* ---- keys ---------------------------------------------------------------- */

/* All the lines of request header `name` joined with ", " (a list header may be split). */
static pt_str_t joined(pt_req_t *req, pt_headers_t *h, pt_str_t name)
{
    pt_str_t all = PT_STR_NULL;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!pt_str_eq(h->v[i].name, name))
            continue;
        pt_str_t v = pt_str_trim_ows(h->v[i].value);
        if (all.base == NULL) {
            all = v;
        } else {
            char *j = pt_arena_printf(pt_req_arena(req), "%.*s, %.*s", (int)all.len, all.base,
                                      (int)v.len, v.base);
            if (j != NULL)
                all = pt_str_c(j);
        }
    }
    return all;
}

/* key "\x1e" then "name=value\n" for each Vary name ("name!\n" when the request lacks it). */
static pt_str_t secondary_key(cache_ctx_t *x, pt_str_t names)
{
    pt_headers_t *h = pt_req_headers(x->req);
    pt_str_t k = x->key;
    char *s = pt_arena_printf(pt_req_arena(x->req), "%.*s%c", (int)k.len, k.base, CS_VARY_SEP);
    const char *p = names.base, *end = names.base + names.len;
    while (s != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        pt_str_t name = {p, nl != NULL ? (size_t)(nl - p) : (size_t)(end - p)};
        pt_str_t v = joined(x->req, h, name);
        if (v.base == NULL)
            s = pt_arena_printf(pt_req_arena(x->req), "%s%.*s!\n", s, (int)name.len, name.base);
        else
            s = pt_arena_printf(pt_req_arena(x->req), "%s%.*s=%.*s\n", s, (int)name.len, name.base,
                                (int)v.len, v.base);
        p = name.base + name.len + 1;
    }
    return s != NULL ? pt_str_c(s) : PT_STR_NULL;
}

/* The local entry for the request: through the Vary marker when there is one. */
static cs_entry_t *local_find(cache_ctx_t *x, int64_t now)
{
    cs_store_t *st = x->conf->store;
    cs_entry_t *e = cs_get(st, x->key, now);
    if (e == NULL || !(e->flags & CS_MARKER))
        return e;
    pt_str_t sk = secondary_key(x, e->vary);
    cs_entry_unref(e);
    return sk.base != NULL ? cs_get(st, sk, now) : NULL;
}

/* ---- replaying an entry ----------------------------------------------------- */

static void unref_entry(void *e) { cs_entry_unref(e); }

/* Headers a 304 carries (RFC 9110 §15.4.5). */
static bool kept_on_304(pt_str_t n)
{
    return pt_str_eq(n, PT_STR("cache-control")) || pt_str_eq(n, PT_STR("content-location")) ||
           pt_str_eq(n, PT_STR("date")) || pt_str_eq(n, PT_STR("etag")) ||
           pt_str_eq(n, PT_STR("expires")) || pt_str_eq(n, PT_STR("vary")) ||
           pt_str_eq(n, PT_STR("last-modified"));
}

/* Does the client's conditional (its own, not ours) match the entry? */
static bool client_not_modified(cache_ctx_t *x, const cs_entry_t *e)
{
    if (x->client_inm.base != NULL)
        return pc_inm_matches(x->client_inm, cs_entry_header(e, PT_STR("etag")));
    int64_t ims, lm;
    pt_str_t lms = cs_entry_header(e, PT_STR("last-modified"));
    return x->client_ims.base != NULL && lms.base != NULL && e->status == 200 &&
           pc_http_date(x->client_ims, &ims) && pc_http_date(lms, &lm) && lm <= ims;
}

/* Answers the request from `e` (the caller's reference passes to the request). */
static int serve(cache_ctx_t *x, cs_entry_t *e, const char *label, int64_t now)
{
    pt_req_t *req = x->req;
    if (pt_arena_defer(pt_req_arena(req), unref_entry, e) != 0) {
        cs_entry_unref(e);
        return PT_ERR_LIMIT;
    }
    bool nm = client_not_modified(x, e);
    pt_req_respond_nocopy(req, nm ? 304 : e->status, nm ? PT_STR("") : e->body);
    pt_headers_t *h = pt_req_resp_headers(req);
    for (size_t i = 0; i < e->hdr_cnt; i++)
        if ((!nm || kept_on_304(e->hdrs[i].name)) &&
            pt_headers_add_nocopy(h, e->hdrs[i].name, e->hdrs[i].value) != 0)
            return PT_ERR_LIMIT;
    char *age = pt_arena_printf(pt_req_arena(req), "%lld", (long long)cs_entry_age(e, now));
    if (age == NULL || pt_headers_set(h, PT_STR("age"), pt_str_c(age)) != 0 ||
        pt_headers_set(h, PT_STR("x-cache"), pt_str_c(label)) != 0)
        return PT_ERR_LIMIT;
    x->served = true;
    x->xcache = label;
    return 0;
}

/* ---- the decision ---------------------------------------------------------------- */

static void on_redis_reply(int status, const pt_redis_reply_t *reply, void *ud);
static void on_poll(void *ud);

static pt_str_t redis_key(cache_ctx_t *x, pt_str_t key)
{
    pt_str_t pre = pt_redis_target_prefix(x->conf->redis);
    char *k = pt_arena_printf(pt_req_arena(x->req), "%.*sc:%.*s", (int)pre.len, pre.base,
                              (int)key.len, key.base);
    return k != NULL ? (pt_str_t){k, pre.len + 2 + key.len} : PT_STR_NULL;
}

static bool redis_get(cache_ctx_t *x, pt_str_t key)
{
    x->redis_key = key;
    pt_str_t rk = redis_key(x, key);
    const pt_str_t argv[] = {PT_STR("GET"), rk};
    if (rk.base == NULL || pt_redis_command(pt_req_worker(x->req), x->conf->redis, 2, argv,
                                            on_redis_reply, x, &x->cmd) != 0) {
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->redis_errors, 1,
                                  memory_order_relaxed);
        return false;
    }
    return true;
}

static bool entry_has_validator(const cs_entry_t *e)
{
    return cs_entry_header(e, PT_STR("etag")).base != NULL ||
           cs_entry_header(e, PT_STR("last-modified")).base != NULL;
}

/* Is `e` good for this request as it is (no upstream)? */
static bool usable_fresh(const cache_ctx_t *x, const cs_entry_t *e, int64_t now)
{
    if (!cs_entry_fresh(e, now) || (e->flags & CS_NO_CACHE) || x->revalidate)
        return false;
    int64_t age = cs_entry_age(e, now);
    if (x->req_cc.max_age >= 0 && age > x->req_cc.max_age)
        return false;
    return x->req_cc.min_fresh < 0 || e->lifetime - age >= x->req_cc.min_fresh;
}

static void analyze(const pt_header_t *v, size_t cnt, int status, pc_resp_t *r, pt_str_t *vary);

/*
 * Seconds past freshness an answer with directives `cc` may be used when the
 * upstream fails (RFC 5861 stale-if-error): its own directive, else the
 * filter's `stale_if_error`; 0 when it forbids being used stale (no-cache,
 * must-revalidate, proxy-revalidate, s-maxage: RFC 9111 4.2.4 and 5.2.2.10).
 */
static int64_t error_window_s(const cache_conf_t *c, const pc_cc_t *cc)
{
    if ((cc->flags & (PC_NO_CACHE | PC_MUST_REVALIDATE | PC_PROXY_REVALIDATE)) || cc->s_maxage >= 0)
        return 0;
    return cc->stale_if_error >= 0 ? cc->stale_if_error : (int64_t)(c->stale_if_error_ms / 1000);
}

/* May `e` answer this request because its fetch failed (a 500, 502, 503 or 504)? */
static bool error_stale_ok(const cache_ctx_t *x, const cs_entry_t *e, int64_t now)
{
    if (x->revalidate || (e->flags & CS_MARKER))
        return false; /* the client asked for a validated answer */
    pc_resp_t r;
    pt_str_t vary;
    analyze(e->hdrs, e->hdr_cnt, e->status, &r, &vary);
    int64_t window = error_window_s(x->conf, &r.cc);
    return window > 0 && cs_entry_age(e, now) - e->lifetime <= window;
}

/* Sends our conditionals upstream to revalidate `e` (kept in x->stale). */
static int start_revalidation(cache_ctx_t *x, cs_entry_t *e)
{
    pt_headers_t *h = pt_req_headers(x->req);
    pt_headers_remove(h, PT_STR("if-none-match"));
    pt_headers_remove(h, PT_STR("if-modified-since"));
    pt_str_t etag = cs_entry_header(e, PT_STR("etag"));
    pt_str_t lm = cs_entry_header(e, PT_STR("last-modified"));
    x->stale = e;
    x->xcache = "STALE";
    atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->stale, 1, memory_order_relaxed);
    if ((etag.base != NULL && pt_headers_add(h, PT_STR("if-none-match"), etag) != 0) ||
        (lm.base != NULL && pt_headers_add(h, PT_STR("if-modified-since"), lm) != 0))
        return PT_ERR_LIMIT;
    return 0;
}

static pt_fstatus_t fail_nomem(cache_ctx_t *x)
{
    pt_req_fail(x->req, PT_ERR_LIMIT, "cache: request arena full");
    return PT_FILTER_ERROR;
}

static pt_fstatus_t wait_poll(cache_ctx_t *x, uint64_t ms)
{
    if (pt_timer_start(pt_req_worker(x->req), ms, on_poll, x, &x->timer) != 0)
        return PT_FILTER_CONTINUE; /* cannot wait: fetch */
    return PT_FILTER_SUSPEND;
}

/*
 * What to do with the request, given the local (or Redis) entry `e` (a
 * reference, consumed) or NULL: replay it, revalidate it, or fetch (alone or
 * after waiting for a concurrent fetch).
 */
static pt_fstatus_t decide(cache_ctx_t *x, cs_entry_t *e)
{
    int64_t now = wall_ms();
    cs_stats_t *stats = cs_store_stats(x->conf->store);
    if (e != NULL && x->auth && !(e->flags & CS_AUTH_OK)) {
        cs_entry_unref(e);
        e = NULL;
    }
    if (e != NULL && usable_fresh(x, e, now)) {
        atomic_fetch_add_explicit(&stats->hits, 1, memory_order_relaxed);
        if (x->polls != 0)
            atomic_fetch_add_explicit(&stats->coalesced, 1, memory_order_relaxed);
        return serve(x, e, "HIT", now) == 0 ? PT_FILTER_RESPOND : fail_nomem(x);
    }
    if (e != NULL && entry_has_validator(e) && x->stale == NULL)
        return start_revalidation(x, e) == 0 ? PT_FILTER_CONTINUE : fail_nomem(x);
    if (e != NULL && x->fallback == NULL && error_stale_ok(x, e, now)) {
        x->fallback = e; /* fetched anew, but answers if the fetch fails */
        e = NULL;
    }
    cs_entry_unref(e);
    if (x->req_cc.flags & PC_ONLY_IF_CACHED) {
        x->xcache = "MISS";
        pt_req_reject(x->req, PT_ERR_TIMEOUT, "only-if-cached: no stored answer");
        return PT_FILTER_RESPOND;
    }
    if (x->conf->redis != NULL && !x->redis_done) {
        x->redis_done = true;
        if (redis_get(x, x->key))
            return PT_FILTER_SUSPEND;
    }
    x->xcache = "MISS";
    if (x->auth || x->revalidate || x->head)
        return PT_FILTER_CONTINUE; /* per-user, explicitly fresh or bodiless: no waiting for another fetch */
    uint64_t mono = pt_clock_ms();
    if (x->polls == 0)
        x->wait_start = mono;
    switch (cs_lock(x->conf->store, x->key, now, (int64_t)x->conf->lock_timeout_ms + 1000)) {
    case CS_LOCK_OWNER:
        x->locked = true;
        return PT_FILTER_CONTINUE;
    case CS_LOCK_PASS:
        return PT_FILTER_CONTINUE;
    case CS_LOCK_BUSY:
    default:
        if (mono - x->wait_start >= x->conf->lock_timeout_ms)
            return PT_FILTER_CONTINUE; /* waited long enough: fetch without the lock */
        x->polls++;
        return wait_poll(x, x->polls < 5 ? 1u << (x->polls - 1) : POLL_MAX_MS);
    }
}

static void resume(cache_ctx_t *x, pt_fstatus_t st)
{
    if (st != PT_FILTER_SUSPEND)
        pt_chain_resume(x->req, st);
}

static void on_poll(void *ud)
{
    cache_ctx_t *x = ud;
    x->timer = NULL;
    resume(x, decide(x, local_find(x, wall_ms())));
}

static void on_redis_reply(int status, const pt_redis_reply_t *reply, void *ud)
{
    cache_ctx_t *x = ud;
    x->cmd = NULL;
    if (status == PT_ERR_CANCELED)
        return;
    cs_stats_t *stats = cs_store_stats(x->conf->store);
    cs_entry_t *e = NULL;
    if (status == 0 && reply->type == PT_REDIS_STRING)
        e = cs_entry_decode(reply->str.base, reply->str.len, x->redis_key);
    else if (status != 0 || reply->type == PT_REDIS_ERROR)
        atomic_fetch_add_explicit(&stats->redis_errors, 1, memory_order_relaxed);
    if (e != NULL && e->keep_until_ms <= wall_ms()) {
        cs_entry_unref(e);
        e = NULL;
    }
    if (e != NULL) {
        cs_put(x->conf->store, e); /* the local tier keeps it for the next requests */
        if (e->flags & CS_MARKER) {
            pt_str_t sk = secondary_key(x, e->vary);
            cs_entry_unref(e);
            e = NULL;
            cs_entry_t *local = sk.base != NULL ? cs_get(x->conf->store, sk, wall_ms()) : NULL;
            if (local == NULL && sk.base != NULL && redis_get(x, sk))
                return; /* the variant, in a second round trip */
            e = local;
        } else {
            atomic_fetch_add_explicit(&stats->redis_hits, 1, memory_order_relaxed);
        }
    }
    resume(x, decide(x, e));
}

static void on_abort(void *data)
{
    cache_ctx_t *x = data;
    pt_redis_cancel(x->cmd);
    x->cmd = NULL;
    if (x->timer != NULL)
        pt_timer_cancel(x->timer);
    x->timer = NULL;
}

/*
 * Request headers that upstreams use to override the URL, host, scheme or
 * method but that are not part of the key: an answer to a request carrying
 * one is not stored unless its Vary names it (cache poisoning, SECURITY-CASES
 * CR-1). The proxy replaces the client's X-Forwarded-* unless trust_forwarded
 * is set; the cache does not know which, so it refuses both ways.
 */
static const char *const unkeyed_headers[] = {
    "x-original-url", "x-rewrite-url", "x-forwarded-host", "x-forwarded-scheme",
    "x-forwarded-proto", "x-forwarded-prefix", "forwarded", "x-http-method-override",
    "x-http-method", "x-method-override", NULL,
};

static unsigned unkeyed_in(pt_headers_t *h)
{
    unsigned bits = 0;
    for (size_t i = 0; unkeyed_headers[i] != NULL; i++)
        if (pt_headers_get(h, pt_str_c(unkeyed_headers[i])).base != NULL)
            bits |= 1u << i;
    return bits;
}

/* Does the canonical Vary list `names` ('\n'-separated) name `h`? */
static bool vary_lists(const char *names, size_t len, const char *h)
{
    size_t hl = strlen(h);
    for (const char *p = names, *end = names + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (n == hl && memcmp(p, h, n) == 0)
            return true;
        p += n + 1;
    }
    return false;
}

static bool is_grpc_request(pt_req_t *req)
{
    pt_str_t ct = pt_headers_get(pt_req_headers(req), PT_STR("content-type"));
    return ct.len >= 16 && pt_str_ieq((pt_str_t){ct.base, 16}, PT_STR("application/grpc"));
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    cache_ctx_t *x = ctx;
    x->req = req;
    x->conf = f->conf;
    pt_str_t m = pt_req_method(req);
    x->head = pt_str_eq(m, PT_STR("HEAD"));
    if ((!x->head && !pt_str_eq(m, PT_STR("GET"))) || pt_req_upgrade(req).len != 0 ||
        is_grpc_request(req))
        return PT_FILTER_CONTINUE; /* not for the cache: no x-cache */
    pt_headers_t *h = pt_req_headers(req);
    pc_cc_init(&x->req_cc);
    for (size_t i = 0; i < h->cnt; i++) {
        if (pt_str_eq(h->v[i].name, PT_STR("cache-control"))) {
            x->req_has_cc = true;
            pc_cc_parse(&x->req_cc, h->v[i].value);
        } else if (pt_str_eq(h->v[i].name, PT_STR("pragma"))) {
            pc_cc_t p;
            pc_cc_init(&p);
            pc_cc_parse(&p, h->v[i].value);
            x->pragma_no_cache |= (p.flags & PC_NO_CACHE) != 0;
        }
    }
    cs_stats_t *stats = cs_store_stats(x->conf->store);
    if (x->req_cc.flags & PC_NO_STORE) {
        x->xcache = "BYPASS";
        atomic_fetch_add_explicit(&stats->bypass, 1, memory_order_relaxed);
        return PT_FILTER_CONTINUE;
    }
    x->revalidate = pc_req_wants_revalidate(&x->req_cc, x->pragma_no_cache, x->req_has_cc);
    x->auth = pt_headers_get(h, PT_STR("authorization")).base != NULL;
    x->unkeyed = unkeyed_in(h);
    pt_str_t inm = pt_headers_get(h, PT_STR("if-none-match"));
    pt_str_t ims = pt_headers_get(h, PT_STR("if-modified-since"));
    x->client_inm = inm.base != NULL ? pt_arena_strdup(pt_req_arena(req), inm) : inm;
    x->client_ims = ims.base != NULL ? pt_arena_strdup(pt_req_arena(req), ims) : ims;
    pt_str_t a = pt_req_authority(req), p = pt_req_path(req), q = pt_req_query(req);
    char *k = pt_arena_printf(pt_req_arena(req), "%.*s%c%.*s%s%.*s", (int)a.len, a.base, CS_KEY_SEP,
                              (int)p.len, p.base, q.len != 0 ? "?" : "", (int)q.len, q.base);
    if (k == NULL || pt_req_on_abort(req, on_abort, x) != 0)
        return fail_nomem(x);
    x->key = pt_str_c(k);
    return decide(x, local_find(x, wall_ms()));
}

/* ---- storing ------------------------------------------------------------------ */

static bool stored_header(pt_str_t n)
{
    return !pt_header_is_hop_by_hop(n) && !pt_str_eq(n, PT_STR("content-length")) &&
           !pt_str_eq(n, PT_STR("age")) && !pt_str_eq(n, PT_STR("x-cache")) &&
           !pt_str_eq(n, PT_STR("x-request-id")) && !pt_str_eq(n, PT_STR("set-cookie"));
}

/* What the headers say about freshness. */
static void analyze(const pt_header_t *v, size_t cnt, int status, pc_resp_t *r, pt_str_t *vary)
{
    pc_resp_init(r, status);
    *vary = PT_STR_NULL;
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t n = v[i].name, val = v[i].value;
        if (pt_str_eq(n, PT_STR("cache-control"))) {
            pc_cc_parse(&r->cc, val);
        } else if (pt_str_eq(n, PT_STR("expires"))) {
            r->has_expires = true;
            r->expires_valid = pc_http_date(val, &r->expires);
        } else if (pt_str_eq(n, PT_STR("date"))) {
            r->has_date = pc_http_date(val, &r->date);
        } else if (pt_str_eq(n, PT_STR("age"))) {
            unsigned long long a;
            if (pt_str_to_u64(pt_str_trim_ows(val), PC_DELTA_MAX, &a) == 0)
                r->age = (int64_t)a;
        } else if (pt_str_eq(n, PT_STR("set-cookie"))) {
            r->has_set_cookie = true;
        } else if (pt_str_eq(n, PT_STR("etag")) || pt_str_eq(n, PT_STR("last-modified"))) {
            r->has_validator = true;
        } else if (pt_str_eq(n, PT_STR("vary"))) {
            *vary = val; /* the last line; several Vary lines are joined by the caller */
        }
    }
}

/* The canonical Vary names of a header list (all lines); -1 when unusable. */
static int vary_names(pt_req_t *req, const pt_header_t *v, size_t cnt, char *buf, size_t cap,
                      bool *star)
{
    pt_str_t all = PT_STR_NULL;
    for (size_t i = 0; i < cnt; i++) {
        if (!pt_str_eq(v[i].name, PT_STR("vary")))
            continue;
        if (all.base == NULL) {
            all = v[i].value;
        } else {
            char *j = pt_arena_printf(pt_req_arena(req), "%.*s,%.*s", (int)all.len, all.base,
                                      (int)v[i].value.len, v[i].value.base);
            if (j == NULL)
                return -1;
            all = pt_str_c(j);
        }
    }
    return pc_vary_names(all, buf, cap, star);
}

static unsigned entry_flags(const pc_resp_t *r)
{
    unsigned fl = 0;
    if (r->cc.flags & PC_NO_CACHE)
        fl |= CS_NO_CACHE;
    if ((r->cc.flags & (PC_PUBLIC | PC_MUST_REVALIDATE)) || r->cc.s_maxage >= 0)
        fl |= CS_AUTH_OK;
    if (r->cc.flags & (PC_MUST_REVALIDATE | PC_PROXY_REVALIDATE))
        fl |= CS_MUST_REVALIDATE;
    return fl;
}

/* Fills the times of `e` from what the response said (`r`, received at resp_ms). */
static void set_times(const cache_conf_t *c, cs_entry_t *e, const pc_resp_t *r, int64_t resp_ms)
{
    int64_t now_s = resp_ms / 1000;
    e->resp_ms = resp_ms;
    e->initial_age = pc_initial_age(r, now_s);
    e->lifetime = pc_lifetime(r, now_s, (int64_t)(c->ttl_ms / 1000), NULL);
    e->flags = entry_flags(r);
    int64_t fresh_ms = (e->lifetime - e->initial_age) * 1000;
    if (fresh_ms < 0)
        fresh_ms = 0;
    bool validator = cs_entry_header(e, PT_STR("etag")).base != NULL ||
                     cs_entry_header(e, PT_STR("last-modified")).base != NULL;
    int64_t keep_ms = validator ? (int64_t)c->keep_stale_ms : 0;
    int64_t err_ms = error_window_s(c, &r->cc) * 1000;
    e->keep_until_ms = resp_ms + fresh_ms + (err_ms > keep_ms ? err_ms : keep_ms);
    if (e->keep_until_ms <= resp_ms)
        e->keep_until_ms = resp_ms + 1; /* stored for coalesced waiters only */
}

static void redis_ignore(int status, const pt_redis_reply_t *reply, void *ud)
{
    (void)status;
    (void)reply;
    (void)ud;
}

/* Writes `e` to the Redis tier with the time it is kept as its TTL. */
static void redis_store(cache_ctx_t *x, const cs_entry_t *e)
{
    if (x->conf->redis == NULL)
        return;
    int64_t ttl = e->keep_until_ms - wall_ms();
    if (ttl <= 0)
        return;
    size_t len;
    char *blob = cs_entry_encode(e, &len);
    char px[24];
    snprintf(px, sizeof(px), "%lld", (long long)ttl);
    pt_str_t rk = redis_key(x, e->key);
    const pt_str_t argv[] = {PT_STR("SET"), rk, {blob, len}, PT_STR("PX"), pt_str_c(px)};
    if (blob == NULL || rk.base == NULL ||
        pt_redis_command(pt_req_worker(x->req), x->conf->redis, 5, argv, redis_ignore, NULL, NULL) != 0)
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->redis_errors, 1,
                                  memory_order_relaxed);
    free(blob);
}

static void put_entry(cache_ctx_t *x, cs_entry_t *e)
{
    cs_stats_t *stats = cs_store_stats(x->conf->store);
    if (cs_put(x->conf->store, e))
        atomic_fetch_add_explicit(&stats->stores, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&stats->too_big, 1, memory_order_relaxed);
    redis_store(x, e);
}

/* The marker telling which headers the variants of x->key vary on. */
static void put_marker(cache_ctx_t *x, const cs_entry_t *variant)
{
    cs_entry_t *m = cs_entry_new(x->key, 200, NULL, 0, x->vary, 0);
    if (m == NULL)
        return;
    m->flags = CS_MARKER;
    m->resp_ms = variant->resp_ms;
    m->lifetime = variant->lifetime;
    m->initial_age = variant->initial_age;
    m->keep_until_ms = variant->keep_until_ms;
    cs_put(x->conf->store, m);
    redis_store(x, m);
    cs_entry_unref(m);
}

static void unlock(cache_ctx_t *x, bool pass)
{
    if (!x->locked)
        return;
    x->locked = false;
    cs_unlock(x->conf->store, x->key, pass ? wall_ms() + PASS_MS : 0);
}

static void finish_store(cache_ctx_t *x)
{
    x->storing = false;
    cs_entry_t *e = cs_entry_new(x->skey, x->status, x->hdrs, x->hdr_cnt, PT_STR(""), x->len);
    if (e != NULL) {
        if (x->len != 0)
            memcpy(cs_entry_body(e), x->buf, x->len);
        set_times(x->conf, e, &x->info, x->resp_ms);
        if (x->vary.len != 0)
            put_marker(x, e);
        put_entry(x, e);
        cs_entry_unref(e);
    }
    free(x->buf);
    x->buf = NULL;
    x->len = x->cap = 0;
    unlock(x, false);
}

/* The stored answer `old` refreshed by a 304 (RFC 9111 §4.3.4): its headers replace the stored ones. */
static cs_entry_t *refreshed(cache_ctx_t *x, const cs_entry_t *old)
{
    pt_headers_t *h = pt_req_resp_headers(x->req);
    size_t cap = old->hdr_cnt + h->cnt;
    pt_header_t *v = pt_arena_alloc(pt_req_arena(x->req), (cap != 0 ? cap : 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < old->hdr_cnt; i++) {
        bool replaced = false;
        for (size_t j = 0; j < h->cnt && !replaced; j++)
            replaced = pt_str_eq(h->v[j].name, old->hdrs[i].name) && stored_header(h->v[j].name) &&
                       !pt_str_eq(h->v[j].name, PT_STR("content-type")) &&
                       !pt_str_eq(h->v[j].name, PT_STR("content-encoding"));
        if (!replaced)
            v[n++] = old->hdrs[i];
    }
    for (size_t j = 0; j < h->cnt; j++) {
        pt_str_t nm = h->v[j].name;
        if (stored_header(nm) && !pt_str_eq(nm, PT_STR("content-type")) &&
            !pt_str_eq(nm, PT_STR("content-encoding")))
            v[n++] = h->v[j];
    }
    cs_entry_t *e = cs_entry_new(old->key, old->status, v, n, old->vary, old->body.len);
    if (e == NULL)
        return NULL;
    if (old->body.len != 0)
        memcpy(cs_entry_body(e), old->body.base, old->body.len);
    pc_resp_t r;
    pt_str_t vary;
    analyze(v, n, old->status, &r, &vary);
    /* the 304's own Date / Age describe the revalidation */
    set_times(x->conf, e, &r, wall_ms());
    return e;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    cache_ctx_t *x = ctx;
    if (x->xcache == NULL || x->served)
        return PT_FILTER_CONTINUE;
    int status = pt_req_resp_status(req);
    pt_headers_t *h = pt_req_resp_headers(req);
    cs_entry_t *old = x->stale != NULL ? x->stale : x->fallback;
    if (old != NULL && (status == 500 || status == 502 || status == 503 || status == 504) &&
        error_stale_ok(x, old, wall_ms())) {
        /* the upstream failed (or Portico could not reach it): the stored answer stands in */
        if (old == x->stale)
            x->stale = NULL;
        else
            x->fallback = NULL;
        unlock(x, false);
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->stale_if_error, 1,
                                  memory_order_relaxed);
        return serve(x, old, "STALE-IF-ERROR", wall_ms()) == 0 ? PT_FILTER_RESPOND : fail_nomem(x);
    }
    if (x->stale != NULL && status == 304) {
        cs_entry_t *e = refreshed(x, x->stale);
        if (e == NULL)
            return fail_nomem(x);
        put_entry(x, e);
        unlock(x, false);
        return serve(x, e, "STALE", wall_ms()) == 0 ? PT_FILTER_RESPOND : fail_nomem(x);
    }
    if (pt_headers_set(h, PT_STR("x-cache"), pt_str_c(x->xcache)) != 0)
        return fail_nomem(x);
    if (strcmp(x->xcache, "BYPASS") == 0 || pt_req_is_tunnel(req))
        return PT_FILTER_CONTINUE;
    /* the storable part of the answer, as the upstream sent it */
    x->hdrs = pt_arena_alloc(pt_req_arena(req), (h->cnt != 0 ? h->cnt : 1) * sizeof(pt_header_t));
    if (x->hdrs == NULL)
        return fail_nomem(x);
    x->hdr_cnt = 0;
    for (size_t i = 0; i < h->cnt; i++)
        if (stored_header(h->v[i].name) || pt_str_eq(h->v[i].name, PT_STR("set-cookie")) ||
            pt_str_eq(h->v[i].name, PT_STR("age")))
            x->hdrs[x->hdr_cnt++] = h->v[i];
    pt_str_t vary_line;
    analyze(x->hdrs, x->hdr_cnt, status, &x->info, &vary_line);
    char names[VARY_NAMES_MAX];
    bool star = false;
    int vn = vary_names(req, x->hdrs, x->hdr_cnt, names, sizeof(names), &star);
    x->info.vary_star = star || vn < 0;
    x->resp_ms = wall_ms();
    int64_t life = pc_lifetime(&x->info, x->resp_ms / 1000, (int64_t)(x->conf->ttl_ms / 1000), NULL);
    pc_nostore_t why = pc_storable(&x->info, &x->req_cc, x->auth, life);
    int64_t len = pt_req_resp_body_length(req);
    bool poisonable = false;
    if (why == PC_STORE_OK && x->unkeyed != 0) {
        /* every unkeyed header the request carried must be named by Vary */
        for (size_t i = 0; unkeyed_headers[i] != NULL && !poisonable; i++)
            poisonable = (x->unkeyed & (1u << i)) &&
                         !(vn > 0 && vary_lists(names, (size_t)vn, unkeyed_headers[i]));
        if (poisonable)
            why = PC_NOSTORE_REQUEST;
    }
    if (why == PC_STORE_OK && len > 0 && (uint64_t)len > x->conf->max_object) {
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->too_big, 1, memory_order_relaxed);
        why = PC_NOSTORE_LIFETIME;
    }
    if (why != PC_STORE_OK || x->head) {
        /* a failed fetch (5xx, an error) lets the next waiter try; an answer
         * that is not cacheable sends the waiters to the upstream at once */
        unlock(x, why != PC_STORE_OK && status < 500 && status != 304 && !poisonable);
        return PT_FILTER_CONTINUE;
    }
    /* keep only the stored headers (set-cookie made the answer unstorable above) */
    size_t w = 0;
    for (size_t i = 0; i < x->hdr_cnt; i++)
        if (stored_header(x->hdrs[i].name))
            x->hdrs[w++] = x->hdrs[i];
    x->hdr_cnt = w;
    x->status = status;
    x->vary = PT_STR("");
    x->skey = x->key;
    if (vn > 0) {
        x->vary = pt_arena_strdup(pt_req_arena(req), (pt_str_t){names, (size_t)vn});
        x->skey = secondary_key(x, x->vary);
        if (x->vary.base == NULL || x->skey.base == NULL)
            return fail_nomem(x);
    }
    x->storing = true;
    x->expect_len = len;
    return PT_FILTER_CONTINUE;
}

static bool append(cache_ctx_t *x, const pt_bufvec_t *in)
{
    for (size_t i = 0; i < in->cnt; i++) {
        size_t n = in->v[i].len;
        if (n > x->conf->max_object - x->len)
            return false;
        if (x->len + n > x->cap) {
            size_t cap = x->cap != 0 ? x->cap * 2 : 16384;
            while (cap < x->len + n)
                cap *= 2;
            if (cap > x->conf->max_object)
                cap = x->conf->max_object;
            char *b = realloc(x->buf, cap);
            if (b == NULL)
                return false;
            x->buf = b;
            x->cap = cap;
        }
        memcpy(x->buf + x->len, in->v[i].base, n);
        x->len += n;
    }
    return true;
}

static pt_fstatus_t on_response_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)f;
    (void)req;
    cache_ctx_t *x = ctx;
    if (x->storing && !append(x, in)) {
        /* past max_object: stop storing, keep passing */
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->too_big, 1, memory_order_relaxed);
        x->storing = false;
        free(x->buf);
        x->buf = NULL;
        x->len = x->cap = 0;
        unlock(x, true);
    }
    if (pt_body_pass(out, in) != 0)
        return PT_FILTER_ERROR;
    /* With a known length the answer is whole at its last byte: stored now, not at the
     * upstream's end (which may come a loop turn later, after the client took the bytes
     * and perhaps closed). */
    if (x->storing && (end || (x->expect_len >= 0 && (int64_t)x->len == x->expect_len)))
        finish_store(x);
    return PT_FILTER_CONTINUE;
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    cache_ctx_t *x = ctx;
    if (x->conf == NULL)
        return;
    on_abort(x);
    if (x->storing && x->expect_len >= 0 && (int64_t)x->len == x->expect_len)
        finish_store(x); /* whole (an empty body may have had no body call) */
    free(x->buf);
    x->buf = NULL;
    x->storing = false;
    unlock(x, false); /* the fetch failed or was cut: the next waiter fetches */
    cs_entry_unref(x->stale);
    x->stale = NULL;
    cs_entry_unref(x->fallback);
    x->fallback = NULL;
    if (x->xcache != NULL && strcmp(x->xcache, "MISS") == 0)
        atomic_fetch_add_explicit(&cs_store_stats(x->conf->store)->misses, 1, memory_order_relaxed);
}

/* ---- admin: purge and metrics ---------------------------------------------------- */

/* Percent-decodes query parameter `name` into buf; false when absent or too long. */
static bool query_param(pt_str_t q, const char *name, char *buf, size_t cap, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = q.base, *end = q.base + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t n = 0;
            for (const char *s = p + nl + 1; s < e; s++) {
                char c = *s;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && e - s >= 3 && pt_str_hexval(s[1]) >= 0 &&
                           pt_str_hexval(s[2]) >= 0) {
                    c = (char)(pt_str_hexval(s[1]) * 16 + pt_str_hexval(s[2]));
                    s += 2;
                }
                if (n + 1 >= cap)
                    return false;
                buf[n++] = c;
            }
            buf[n] = '\0';
            *len = n;
            return true;
        }
        p = e + 1;
    }
    return false;
}

typedef struct purge_scan {
    pt_str_t host, path;
    bool prefix;
    size_t prefix_len; /* the Redis key prefix + "c:" */
    char cursor[32];
    pt_str_t *dels;
    size_t del_cnt;
    bool bad;
} purge_scan_t;

static void on_scan(int status, const pt_redis_reply_t *r, void *ud)
{
    purge_scan_t *ps = ud;
    if (status != 0 || r->type != PT_REDIS_ARRAY || r->element_cnt != 2 ||
        r->elements[0].type != PT_REDIS_STRING || r->elements[1].type != PT_REDIS_ARRAY ||
        r->elements[0].str.len >= sizeof(ps->cursor)) {
        ps->bad = true;
        return;
    }
    memcpy(ps->cursor, r->elements[0].str.base, r->elements[0].str.len);
    ps->cursor[r->elements[0].str.len] = '\0';
    const pt_redis_reply_t *keys = &r->elements[1];
    ps->dels = calloc(keys->element_cnt + 1, sizeof(pt_str_t));
    ps->del_cnt = 0;
    if (ps->dels == NULL) {
        ps->bad = true;
        return;
    }
    ps->dels[ps->del_cnt++] = PT_STR("UNLINK");
    for (size_t i = 0; i < keys->element_cnt; i++) {
        pt_str_t k = keys->elements[i].str;
        if (keys->elements[i].type != PT_REDIS_STRING || k.len < ps->prefix_len)
            continue;
        pt_str_t key = {k.base + ps->prefix_len, k.len - ps->prefix_len};
        if (!cs_key_matches(key, ps->host, ps->path, ps->prefix))
            continue;
        char *copy = malloc(k.len != 0 ? k.len : 1);
        if (copy == NULL)
            continue;
        memcpy(copy, k.base, k.len);
        ps->dels[ps->del_cnt++] = (pt_str_t){copy, k.len};
    }
}

static void on_unlink(int status, const pt_redis_reply_t *r, void *ud)
{
    long long *n = ud;
    if (status == 0 && r->type == PT_REDIS_INT)
        *n += r->integer;
}

/* Glob-escapes `s` for SCAN MATCH. */
static size_t glob_escape(pt_str_t s, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len && n + 2 < cap; i++) {
        if (strchr("*?[]\\", s.base[i]) != NULL)
            out[n++] = '\\';
        out[n++] = s.base[i];
    }
    return n;
}

/* Deletes the matching keys of the Redis tier (SCAN + UNLINK, bounded); -1 when Redis failed. */
static long long purge_redis(const cache_conf_t *c, pt_str_t host, pt_str_t path, bool prefix,
                             char *err, size_t errlen)
{
    pt_redis_sync_t *rs = pt_redis_sync_open(c->redis, err, errlen);
    if (rs == NULL)
        return -1;
    pt_str_t pre = pt_redis_target_prefix(c->redis);
    char match[2048];
    size_t m = glob_escape(pre, match, sizeof(match) - 8);
    match[m++] = 'c';
    match[m++] = ':';
    if (host.len != 0)
        m += glob_escape(host, match + m, sizeof(match) - m - 8);
    else
        match[m++] = '*';
    match[m++] = CS_KEY_SEP;
    m += glob_escape(path, match + m, sizeof(match) - m - 2);
    match[m++] = '*';
    purge_scan_t ps = {host, path, prefix, pre.len + 2, "0", NULL, 0, false};
    long long deleted = 0;
    uint64_t start = pt_clock_ms();
    do {
        const pt_str_t argv[] = {PT_STR("SCAN"), pt_str_c(ps.cursor), PT_STR("MATCH"),
                                 {match, m}, PT_STR("COUNT"), PT_STR("1000")};
        if (pt_redis_sync_command(rs, 6, argv, on_scan, &ps) != 0 || ps.bad) {
            snprintf(err, errlen, "redis: SCAN failed");
            deleted = -1;
        } else if (ps.del_cnt > 1 && pt_redis_sync_command(rs, ps.del_cnt, ps.dels, on_unlink, &deleted) != 0) {
            snprintf(err, errlen, "redis: UNLINK failed");
            deleted = -1;
        }
        for (size_t i = 1; i < ps.del_cnt; i++)
            free((void *)ps.dels[i].base);
        free(ps.dels);
        ps.dels = NULL;
        ps.del_cnt = 0;
        if (deleted >= 0 && pt_clock_ms() - start > 10000) {
            snprintf(err, errlen, "redis: purge stopped after 10 s (run it again)");
            deleted = -1;
        }
    } while (deleted >= 0 && strcmp(ps.cursor, "0") != 0);
    pt_redis_sync_close(rs);
    return deleted;
}

/*
 * POST /cache/purge?path=/items/1[&host=example.com]   one path (+query), all its variants
 * POST /cache/purge?prefix=/items/[&host=...]         every stored path starting so
 */
static int purge_endpoint(void *data, const pt_admin_req_t *r, FILE *out)
{
    const cache_conf_t *c = data;
    if (!pt_str_eq(r->method, PT_STR("POST")) && !pt_str_eq(r->method, PT_STR("DELETE"))) {
        fprintf(out, "{\"cache\":\"%s\",\"error\":\"use POST (or DELETE)\"}", c->name);
        return 405;
    }
    char path[1024], host[256];
    size_t plen = 0, hlen = 0;
    bool prefix = false;
    if (!query_param(r->query, "path", path, sizeof(path), &plen)) {
        prefix = query_param(r->query, "prefix", path, sizeof(path), &plen);
        if (!prefix) {
            fprintf(out, "{\"cache\":\"%s\",\"error\":\"give path=/exact/path?query or "
                         "prefix=/path/prefix (percent-encoded), optionally host=\"}", c->name);
            return 400;
        }
    }
    if (plen == 0 || path[0] != '/') {
        fprintf(out, "{\"cache\":\"%s\",\"error\":\"the path must start with /\"}", c->name);
        return 400;
    }
    if (!query_param(r->query, "host", host, sizeof(host), &hlen))
        hlen = 0;
    pt_str_t hs = {host, hlen}, ps = {path, plen};
    size_t local = cs_purge(c->store, hs, ps, prefix);
    fprintf(out, "{\"cache\":\"%s\",\"local\":%zu", c->name, local);
    int status = 200;
    if (c->redis != NULL) {
        char err[256] = "";
        long long n = purge_redis(c, hs, ps, prefix, err, sizeof(err));
        if (n < 0) {
            fprintf(out, ",\"redis_error\":\"");
            for (const char *p = err; *p != '\0'; p++)
                if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                    fputc(*p, out);
            fputc('"', out);
            status = 502;
        } else {
            fprintf(out, ",\"redis\":%lld", n);
        }
    }
    fputc('}', out);
    return status;
}

#define STAT(field) atomic_load_explicit(&s->field, memory_order_relaxed)

static void write_metrics(void *const *data, size_t n, FILE *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"hits_total", "counter", "Requests answered from the cache"},
        {"misses_total", "counter", "Requests fetched from the upstream (nothing usable stored)"},
        {"stale_total", "counter", "Stored answers revalidated with the upstream"},
        {"bypass_total", "counter", "Requests the cache stayed out of (request no-store)"},
        {"stores_total", "counter", "Answers stored in the local tier"},
        {"evictions_total", "counter", "Entries evicted to stay under max_size"},
        {"purged_total", "counter", "Entries removed by the admin purge"},
        {"too_big_total", "counter", "Answers not stored: larger than max_object"},
        {"coalesced_total", "counter", "Requests answered after waiting for a concurrent fetch"},
        {"redis_hits_total", "counter", "Entries found in the Redis tier"},
        {"redis_errors_total", "counter", "Redis commands that failed (the request went on)"},
        {"stale_if_error_total", "counter", "Stale answers given because the upstream failed"},
        {"bytes", "gauge", "Bytes held by the local tier"},
        {"entries", "gauge", "Entries held by the local tier"},
    };
    for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
        fprintf(out, "# HELP portico_cache_%s %s.\n# TYPE portico_cache_%s %s\n", fam[k].name,
                fam[k].help, fam[k].name, fam[k].type);
        for (size_t i = 0; i < n; i++) {
            const cache_conf_t *c = data[i];
            cs_stats_t *s = cs_store_stats(c->store);
            long long v = 0;
            switch (k) {
            case 0: v = (long long)STAT(hits); break;
            case 1: v = (long long)STAT(misses); break;
            case 2: v = (long long)STAT(stale); break;
            case 3: v = (long long)STAT(bypass); break;
            case 4: v = (long long)STAT(stores); break;
            case 5: v = (long long)STAT(evictions); break;
            case 6: v = (long long)STAT(purged); break;
            case 7: v = (long long)STAT(too_big); break;
            case 8: v = (long long)STAT(coalesced); break;
            case 9: v = (long long)STAT(redis_hits); break;
            case 10: v = (long long)STAT(redis_errors); break;
            case 11: v = (long long)STAT(stale_if_error); break;
            case 12: v = (long long)STAT(bytes); break;
            default: v = (long long)STAT(entries); break;
            }
            fprintf(out, "portico_cache_%s{cache=\"%s\"} %lld\n", fam[k].name, c->name, v);
        }
    }
}

const pt_filter_def_t pt_filter_cache = {
    .abi = PT_FILTER_ABI,
    .name = "cache",
    .priority = -100, /* global chains: last, so that compress (0) wraps it and it stores what the upstream sent */
    .conf_size = sizeof(cache_conf_t),
    .ctx_size = sizeof(cache_ctx_t),
    .parse_conf = parse_conf,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_log = on_log,
};
