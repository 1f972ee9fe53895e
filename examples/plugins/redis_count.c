/*
 * redis_count.c -- an example asynchronous filter: a fixed-window request
 * counter kept in Redis, shared by every worker and every Portico process
 * using that Redis.
 *
 *   redis: { main: { address: "127.0.0.1:6379", timeout: 200ms } }
 *   plugins: [ { path: build/lib/pt_redis_count.so } ]
 *   routes:
 *     - match: { prefix: / }
 *       proxy: { cluster: web }
 *       filters:
 *         - redis_count: { redis: main, key_header: x-user, window: 60s, limit: 100 }
 *
 * Per request it sends, pipelined in one write,
 *     SET <prefix>count:<key_header value>:<window number> 0 EX <window> NX
 *     INCR <same key>
 * and suspends the chain until INCR answers. The count goes upstream in the
 * request header `x-count` and back to the client in the response header
 * `x-count`; over `limit` (when not 0) the request is answered 429 instead.
 * When Redis cannot answer (down, timed out, over max_pending), `on_error`
 * decides: `allow` (default) lets the request through with
 * `x-count-error: UNAVAILABLE|TIMEOUT|LIMIT` on the response, `deny` answers
 * 503. A client that goes away while INCR is pending cancels it.
 *
 * It includes only the SDK headers (gateway/include/portico/), as every
 * plugin must. It is an example of the SDK, not a production rate limiter
 * (issue 11's rate_limit does that with one atomic script per decision).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/redis.h"

typedef struct rc_conf {
    const pt_redis_target_t *redis; /* resolved at load time, part of the same snapshot */
    const char *key_header;
    uint64_t window_ms;
    long long limit;      /* 0 = count only */
    const char *on_error; /* "allow" or "deny" */
    bool deny;
} rc_conf_t;

typedef struct rc_ctx {
    pt_req_t *req;
    const rc_conf_t *conf;
    pt_redis_cmd_t *incr; /* pending INCR, or NULL */
    long long count;      /* -1 until known */
    int error;            /* status when Redis could not answer, else 0 */
} rc_ctx_t;

static const pt_conf_field_t fields[] = {
    /* pt_redis_conf_target fits a custom field: unknown names are errors here */
    {"redis", PT_CONF_T_CUSTOM, offsetof(rc_conf_t, redis), 0, 0, true, pt_redis_conf_target},
    {"key_header", PT_CONF_T_STR, offsetof(rc_conf_t, key_header), 0, 0, true, NULL},
    {"window", PT_CONF_T_DURATION, offsetof(rc_conf_t, window_ms), 1000, 86400000, false, NULL},
    {"limit", PT_CONF_T_INT, offsetof(rc_conf_t, limit), 0, 1000000000, false, NULL},
    {"on_error", PT_CONF_T_STR, offsetof(rc_conf_t, on_error), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rc_conf_t *c = conf;
    c->window_ms = 60000;
    c->on_error = "allow";
    return pt_conf_parse_fields(cx, node, fields, c);
}

static int check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rc_conf_t *c = conf;
    if (!pt_header_name_valid(pt_str_c(c->key_header), false))
        return pt_conf_error(cx, pt_conf_map_get(node, "key_header"), "'%s' is not a header name",
                             c->key_header);
    if (strcmp(c->on_error, "deny") != 0 && strcmp(c->on_error, "allow") != 0)
        return pt_conf_error(cx, pt_conf_map_get(node, "on_error"),
                             "on_error must be allow or deny, not '%s'", c->on_error);
    c->deny = strcmp(c->on_error, "deny") == 0;
    return 0;
}

/* Redis is unreachable or slow: the configured failure mode, as a verdict. */
static pt_fstatus_t on_redis_error(rc_ctx_t *x, int status)
{
    x->error = status;
    if (!x->conf->deny)
        return PT_FILTER_CONTINUE;
    pt_req_fail(x->req, PT_ERR_UNAVAILABLE, "redis_count: redis did not answer");
    return PT_FILTER_ERROR;
}

static pt_fstatus_t verdict(rc_ctx_t *x, long long count)
{
    pt_req_t *req = x->req;
    x->count = count;
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", count);
    if (pt_headers_set(pt_req_headers(req), PT_STR("x-count"), (pt_str_t){num, (size_t)n}) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "redis_count: out of request memory");
        return PT_FILTER_ERROR;
    }
    if (x->conf->limit == 0 || count <= x->conf->limit)
        return PT_FILTER_CONTINUE;
    if (pt_req_respond(req, 429, PT_STR("application/json"),
                       PT_STR("{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"rate limit "
                              "exceeded\"}}\n")) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "redis_count: out of request memory");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_RESPOND;
}

/* INCR's completion, on the request's worker. */
static void on_incr(int status, const pt_redis_reply_t *reply, void *ud)
{
    rc_ctx_t *x = ud;
    x->incr = NULL; /* the handle dies with this callback */
    if (status == PT_ERR_CANCELED)
        return; /* our abort hook: the request is going away, never resume it */
    pt_fstatus_t st;
    if (status != 0)
        st = on_redis_error(x, status);
    else if (reply->type != PT_REDIS_INT)
        st = on_redis_error(x, PT_ERR_UPSTREAM); /* e.g. WRONGTYPE: a key not ours */
    else
        st = verdict(x, reply->integer);
    pt_chain_resume(x->req, st);
}

/* SET ... NX's reply carries nothing we need. */
static void on_set(int status, const pt_redis_reply_t *reply, void *ud)
{
    (void)status;
    (void)reply;
    (void)ud;
}

static void on_abort(void *data)
{
    rc_ctx_t *x = data;
    pt_redis_cancel(x->incr); /* calls on_incr(CANCELED) now; NULL when nothing pends */
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const rc_conf_t *c = f->conf;
    rc_ctx_t *x = ctx;
    x->req = req;
    x->conf = c;
    x->count = -1;
    pt_str_t who = pt_headers_get(pt_req_headers(req), pt_str_c(c->key_header));
    if (who.base == NULL)
        who = PT_STR("-");
    unsigned long long win = (unsigned long long)time(NULL) / (c->window_ms / 1000);
    pt_str_t prefix = pt_redis_target_prefix(c->redis);
    char *key = pt_arena_printf(pt_req_arena(req), "%.*scount:%.*s:%llu", (int)prefix.len,
                                prefix.base, (int)who.len, who.base, win);
    char *ttl =
        pt_arena_printf(pt_req_arena(req), "%llu", (unsigned long long)(c->window_ms / 1000));
    if (key == NULL || ttl == NULL || pt_req_on_abort(req, on_abort, x) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "redis_count: out of request memory");
        return PT_FILTER_ERROR;
    }
    pt_worker_t *w = pt_req_worker(req);
    const pt_str_t set[] = {PT_STR("SET"), pt_str_c(key), PT_STR("0"),
                            PT_STR("EX"),  pt_str_c(ttl), PT_STR("NX")};
    const pt_str_t incr[] = {PT_STR("INCR"), pt_str_c(key)};
    /* Both leave in the same write; only INCR's answer decides. If SET is
     * refused at once, INCR would be too: the error path below handles it. */
    int rc = pt_redis_command(w, c->redis, 6, set, on_set, NULL, NULL);
    if (rc == 0)
        rc = pt_redis_command(w, c->redis, 2, incr, on_incr, x, &x->incr);
    if (rc != 0)
        return on_redis_error(x, rc); /* no callback will come: decide now */
    return PT_FILTER_SUSPEND;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    rc_ctx_t *x = ctx;
    pt_headers_t *h = pt_req_resp_headers(req);
    if (x->error != 0)
        pt_headers_set(h, PT_STR("x-count-error"), pt_str_c(pt_status_name(x->error)));
    else if (x->count >= 0) {
        char num[24];
        int n = snprintf(num, sizeof(num), "%lld", x->count);
        pt_headers_set(h, PT_STR("x-count"), (pt_str_t){num, (size_t)n});
    }
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "redis_count",
    .conf_size = sizeof(rc_conf_t),
    .ctx_size = sizeof(rc_ctx_t),
    .parse_conf = parse_conf,
    .check_conf = check_conf,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
