/*
 * rate_limit.c -- the `rate_limit` and `quota` filters.
 *
 *   - rate_limit: { requests: 100, per: 1m, key: client_ip, burst: 20 }
 *   - rate_limit: { requests: 10, per: 1s, key: "header:x-user",
 *                   redis: { address: "127.0.0.1:6379", prefix: "pt:", timeout: 50ms,
 *                            on_error: local } }
 *   - quota: { requests: 10000, per: month, key: consumer, redis: { address: ... } }
 *
 * rate_limit is GCRA (ratelimit_table.h): `requests` per `per`, at most
 * `burst` (default: `requests`) at once. quota counts requests in calendar
 * periods (UTC days or months) and refuses once `requests` were counted.
 *
 * Where the counts live:
 * - locally (no `redis`): one lock-free table per filter instance, shared by
 *   all the workers of the process (exact across workers), `max_keys` slots;
 * - in Redis (`redis`): one Lua script per decision (EVALSHA, EVAL when Redis
 *   answers NOSCRIPT -- after a restart or a SCRIPT FLUSH), on the worker's
 *   pipelined connections, with Redis' own clock (TIME): every Portico
 *   process using that Redis shares one budget. Keys expire when they stop
 *   mattering. When Redis fails (down, refused, no reply within `timeout`),
 *   `on_error` decides: `local` (default) counts in the process's own table
 *   with the same limits, `allow` lets the request through, `deny` refuses it
 *   (503 UNAVAILABLE).
 *
 * Every answer of the route carries RateLimit-Limit, RateLimit-Remaining and
 * RateLimit-Reset (seconds until the budget is whole again); refusals are 429
 * RATE_LIMITED (gRPC: RESOURCE_EXHAUSTED) with Retry-After, made with
 * pt_req_reject so they never reach the upstream.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "portico/async.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/redis.h"
#include "portico/req.h"
#include "portico/status.h"
#include "ratelimit_table.h"

#define NS_PER_S 1000000000ull
#define US_PER_S 1000000ull
#define MAX_KEY_RAW 128 /* longer key values go to Redis as a SHA-256 */

typedef enum key_kind { KEY_CLIENT_IP = 0, KEY_HEADER, KEY_VAR } key_kind_t;
typedef enum on_error { ON_ERR_LOCAL = 0, ON_ERR_ALLOW, ON_ERR_DENY } on_error_t;
typedef enum period { PERIOD_DAY = 1, PERIOD_MONTH } period_t;

typedef struct rl_conf {
    bool is_quota;
    /* as configured */
    long long requests, burst;
    uint64_t per_ms;
    const char *per_name; /* quota: day | month */
    const char *key;
    const char *name;
    const pt_conf_node_t *redis_node;
    uint32_t max_keys;
    /* compiled */
    key_kind_t key_kind;
    pt_str_t key_arg; /* header name (lowercase) or variable name */
    period_t period;
    pt_gcra_t gcra_ns, gcra_us;
    pt_rlt_t *table; /* NULL with redis and on_error other than local */
    const pt_redis_target_t *redis;
    on_error_t on_error;
    char sha[41];
    pt_str_t key_prefix; /* Redis key up to the key value: PREFIX rl:ID: */
    char limit_s[24];
    pt_str_t arg1, arg2; /* the script's ARGV, constant per filter: T and tau, or limit and period */
} rl_conf_t;

typedef struct rl_ctx {
    pt_req_t *req;
    const rl_conf_t *c;
    pt_redis_cmd_t *cmd;
    pt_str_t rkey; /* the Redis key */
    bool decided, counted, evaled;
    uint64_t remaining, reset_s;
} rl_ctx_t;

/* ---- the Lua scripts ------------------------------------------------------------ */

/* GCRA in microseconds of Redis' clock: KEYS[1] the key, ARGV[1] T, ARGV[2] tau.
 * Returns {allowed, debt}: debt = the key's tat minus now after the decision.
 * Numbers go back to Redis through string.format: Lua's default number
 * format keeps 14 digits, a microsecond timestamp has 16. */
static const char gcra_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local nxt = tat + T\n"
    "if nxt - now > tau then return {0, tat - now} end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX',\n"
    "           string.format('%.0f', math.floor((nxt - now) / 1000) + 1))\n"
    "return {1, nxt - now}\n";

/* Calendar quota in UTC by Redis' clock: KEYS[1] the key without its period,
 * ARGV[1] the limit, ARGV[2] 'day' or 'month'. The period's number is added
 * to the key (so one key per period, expiring a minute after its end).
 * Returns {allowed, count, seconds to the period's end}. Dates: the days <->
 * civil date conversions of H. Hinnant's "chrono-compatible low-level date
 * algorithms" (proleptic Gregorian). */
static const char quota_lua[] =
    "local s = tonumber(redis.call('TIME')[1])\n"
    "local limit = tonumber(ARGV[1])\n"
    "local day = math.floor(s / 86400)\n"
    "local function days(y, m)\n"
    "  if m <= 2 then y = y - 1 end\n"
    "  local era = math.floor(y / 400)\n"
    "  local yoe = y - era * 400\n"
    "  local mp = m > 2 and m - 3 or m + 9\n"
    "  local doy = math.floor((153 * mp + 2) / 5)\n"
    "  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468\n"
    "end\n"
    "local win, stop\n"
    "if ARGV[2] == 'day' then\n"
    "  win = day\n"
    "  stop = (day + 1) * 86400\n"
    "else\n"
    "  local z = day + 719468\n"
    "  local era = math.floor(z / 146097)\n"
    "  local doe = z - era * 146097\n"
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)\n"
    "                          - math.floor(doe / 146096)) / 365)\n"
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"
    "  local mp = math.floor((5 * doy + 2) / 153)\n"
    "  local m = mp < 10 and mp + 3 or mp - 9\n"
    "  local y = yoe + era * 400 + (m <= 2 and 1 or 0)\n"
    "  win = y * 12 + m - 1\n"
    "  if m == 12 then stop = days(y + 1, 1) * 86400 else stop = days(y, m + 1) * 86400 end\n"
    "end\n"
    "local key = KEYS[1] .. ':' .. string.format('%d', win)\n"
    "local c = tonumber(redis.call('GET', key)) or 0\n"
    "if c >= limit then return {0, c, stop - s} end\n"
    "c = redis.call('INCR', key)\n"
    "if c == 1 then redis.call('EXPIREAT', key, string.format('%d', stop + 60)) end\n"
    "return {1, c, stop - s}\n";

/* ---- load time ------------------------------------------------------------------- */

static const pt_conf_field_t rl_fields[] = {
    {"requests", PT_CONF_T_INT, offsetof(rl_conf_t, requests), 1, 1000000000, true, NULL},
    {"per", PT_CONF_T_DURATION, offsetof(rl_conf_t, per_ms), 1, 366LL * 86400 * 1000, true, NULL},
    {"key", PT_CONF_T_STR, offsetof(rl_conf_t, key), 0, 0, false, NULL},
    {"burst", PT_CONF_T_INT, offsetof(rl_conf_t, burst), 1, 1000000000, false, NULL},
    {"redis", PT_CONF_T_NODE, offsetof(rl_conf_t, redis_node), 0, 0, false, NULL},
    {"max_keys", PT_CONF_T_UINT32, offsetof(rl_conf_t, max_keys), 8, 1u << 26, false, NULL},
    {"name", PT_CONF_T_STR, offsetof(rl_conf_t, name), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_conf_field_t quota_fields[] = {
    {"requests", PT_CONF_T_INT, offsetof(rl_conf_t, requests), 1, 1000000000000LL, true, NULL},
    {"per", PT_CONF_T_STR, offsetof(rl_conf_t, per_name), 0, 0, true, NULL},
    {"key", PT_CONF_T_STR, offsetof(rl_conf_t, key), 0, 0, false, NULL},
    {"redis", PT_CONF_T_NODE, offsetof(rl_conf_t, redis_node), 0, 0, false, NULL},
    {"max_keys", PT_CONF_T_UINT32, offsetof(rl_conf_t, max_keys), 8, 1u << 26, false, NULL},
    {"name", PT_CONF_T_STR, offsetof(rl_conf_t, name), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void free_table(void *p)
{
    pt_rlt_free(p);
}

static int parse_key(pt_conf_cx_t *cx, const pt_conf_node_t *at, rl_conf_t *c)
{
    const char *k = c->key;
    if (strcmp(k, "client_ip") == 0) {
        c->key_kind = KEY_CLIENT_IP;
        return 0;
    }
    if (strcmp(k, "consumer") == 0) {
        c->key_kind = KEY_VAR;
        c->key_arg = PT_STR("consumer");
        return 0;
    }
    if (strncmp(k, "header:", 7) == 0 && pt_header_name_valid(pt_str_c(k + 7), true)) {
        char *h = pt_conf_strdup(cx, k + 7, strlen(k + 7));
        for (char *p = h; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        c->key_kind = KEY_HEADER;
        c->key_arg = pt_str_c(h);
        return 0;
    }
    if (strncmp(k, "var:", 4) == 0 && k[4] != '\0') { /* any request variable: var:oauth2.sub */
        c->key_kind = KEY_VAR;
        c->key_arg = pt_str_c(k + 4);
        return 0;
    }
    if (strncmp(k, "jwt:", 4) == 0 && k[4] != '\0') {
        c->key_kind = KEY_VAR;
        size_t n = strlen(k) + 1;
        char *v = pt_conf_alloc(cx, n);
        snprintf(v, n, "jwt.%s", k + 4);
        c->key_arg = pt_str_c(v);
        return 0;
    }
    return pt_conf_error(cx, at,
                         "key '%s': expected client_ip, consumer, \"header:NAME\", "
                         "\"jwt:CLAIM\" or \"var:NAME\"",
                         k);
}

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int parse_redis(pt_conf_cx_t *cx, rl_conf_t *c, const char *filter)
{
    const pt_conf_node_t *n = c->redis_node;
    const pt_conf_node_t *oe = pt_conf_map_get(n, "on_error");
    if (oe != NULL) {
        const char *s = NULL;
        if (pt_conf_get_str(cx, oe, &s) != 0)
            return PT_ERR_INVALID;
        if (strcmp(s, "local") == 0)
            c->on_error = ON_ERR_LOCAL;
        else if (strcmp(s, "allow") == 0)
            c->on_error = ON_ERR_ALLOW;
        else if (strcmp(s, "deny") == 0)
            c->on_error = ON_ERR_DENY;
        else
            return pt_conf_error(cx, oe, "on_error '%s': expected local, allow or deny", s);
    }
    static const char *const skip[] = {"on_error", NULL};
    c->redis = pt_redis_conf_inline(cx, n, filter, skip);
    if (c->redis == NULL)
        return PT_ERR_INVALID;
    sha1_hex(c->is_quota ? quota_lua : gcra_lua, c->sha);
    /* The limit's identity in Redis: its name, else its definition, so that
     * every process with the same config shares the same keys. */
    pt_str_t pre = pt_redis_target_prefix(c->redis);
    char buf[512];
    int m;
    if (c->name != NULL)
        m = snprintf(buf, sizeof(buf), "%.*s%s:%s:", (int)pre.len, pre.base,
                     c->is_quota ? "quota" : "rl", c->name);
    else if (c->is_quota)
        m = snprintf(buf, sizeof(buf), "%.*squota:%lld/%s/%s:", (int)pre.len, pre.base,
                     c->requests, c->per_name, c->key);
    else
        m = snprintf(buf, sizeof(buf), "%.*srl:%lld/%llu/%lld/%s:", (int)pre.len, pre.base,
                     c->requests, (unsigned long long)c->per_ms, c->burst, c->key);
    if (m < 0 || (size_t)m >= sizeof(buf))
        return pt_conf_error(cx, n, "%s: the Redis key prefix is too long", filter);
    c->key_prefix = (pt_str_t){pt_conf_strdup(cx, buf, (size_t)m), (size_t)m};
    if (c->is_quota) {
        m = snprintf(buf, sizeof(buf), "%lld", c->requests);
        c->arg1 = (pt_str_t){pt_conf_strdup(cx, buf, (size_t)m), (size_t)m};
        c->arg2 = pt_str_c(c->per_name);
    } else {
        m = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)c->gcra_us.interval);
        c->arg1 = (pt_str_t){pt_conf_strdup(cx, buf, (size_t)m), (size_t)m};
        m = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)c->gcra_us.tau);
        c->arg2 = (pt_str_t){pt_conf_strdup(cx, buf, (size_t)m), (size_t)m};
    }
    return 0;
}

static int parse_common(pt_conf_cx_t *cx, const pt_conf_node_t *node, rl_conf_t *c,
                        const char *filter)
{
    unsigned before = pt_conf_error_count(cx);
    if (c->key == NULL)
        c->key = c->is_quota ? "consumer" : "client_ip";
    if (c->max_keys == 0)
        c->max_keys = 65536;
    const pt_conf_node_t *kn = pt_conf_map_get(node, "key");
    parse_key(cx, kn != NULL ? kn : node, c);
    if (c->redis_node != NULL)
        parse_redis(cx, c, filter);
    if (pt_conf_error_count(cx) != before)
        return PT_ERR_INVALID;
    if (c->redis == NULL || c->on_error == ON_ERR_LOCAL) {
        c->table = pt_rlt_new((size_t)c->max_keys * 2); /* at most half full */
        if (c->table == NULL)
            return pt_conf_error(cx, node, "%s: out of memory for %u keys", filter, c->max_keys);
        pt_conf_on_release(cx, free_table, c->table);
    }
    snprintf(c->limit_s, sizeof(c->limit_s), "%lld", c->requests);
    return 0;
}

static int rl_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rl_conf_t *c = conf;
    if (pt_conf_parse_fields(cx, node, rl_fields, c) != 0)
        return PT_ERR_INVALID;
    if (c->burst == 0)
        c->burst = c->requests;
    if (pt_gcra_init(&c->gcra_ns, (uint64_t)c->requests, c->per_ms * 1000000ull,
                     (uint64_t)c->burst) != 0 ||
        pt_gcra_init(&c->gcra_us, (uint64_t)c->requests, c->per_ms * 1000ull,
                     (uint64_t)c->burst) != 0)
        return pt_conf_error(cx, node,
                             "rate_limit: %lld requests per %llu ms is more than one per "
                             "microsecond, or burst is too large",
                             c->requests, (unsigned long long)c->per_ms);
    return parse_common(cx, node, c, "rate_limit");
}

static int quota_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rl_conf_t *c = conf;
    c->is_quota = true;
    if (pt_conf_parse_fields(cx, node, quota_fields, c) != 0)
        return PT_ERR_INVALID;
    if (strcmp(c->per_name, "day") == 0)
        c->period = PERIOD_DAY;
    else if (strcmp(c->per_name, "month") == 0)
        c->period = PERIOD_MONTH;
    else
        return pt_conf_error(cx, pt_conf_map_get(node, "per"),
                             "quota: per '%s': expected day or month (UTC calendar periods)",
                             c->per_name);
    return parse_common(cx, node, c, "quota");
}

/* ---- answers ----------------------------------------------------------------------- */

/* A number as text in the request arena, without printf (this runs on every answer). */
static pt_str_t num_text(pt_req_t *req, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    char *out = pt_arena_alloc(pt_req_arena(req), n);
    if (out == NULL)
        return PT_STR_NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return (pt_str_t){out, n};
}

static void set_num(pt_req_t *req, pt_str_t name, uint64_t v)
{
    pt_str_t t = num_text(req, v);
    if (t.base != NULL)
        pt_headers_set(pt_req_resp_headers(req), name, t);
}

/* True when the answer already has a RateLimit-* header (an upstream's, another limit's). */
static bool has_ratelimit_header(const pt_headers_t *h)
{
    for (size_t i = 0; i < h->cnt; i++)
        if (pt_str_has_prefix(h->v[i].name, PT_STR("ratelimit-")))
            return true;
    return false;
}

static void put_headers(pt_req_t *req, const rl_ctx_t *x)
{
    pt_headers_t *h = pt_req_resp_headers(req);
    pt_str_t limit = pt_str_c(x->c->limit_s); /* config memory: outlives the request */
    if (!x->counted) {                        /* on_error: allow -- nothing was counted */
        pt_headers_set(h, PT_STR("ratelimit-limit"), limit);
        return;
    }
    if (has_ratelimit_header(h)) { /* replace, never duplicate */
        pt_headers_set(h, PT_STR("ratelimit-limit"), limit);
        set_num(req, PT_STR("ratelimit-remaining"), x->remaining);
        set_num(req, PT_STR("ratelimit-reset"), x->reset_s);
        return;
    }
    /* the common case: nothing to replace, nothing to copy but two numbers */
    pt_str_t rem = num_text(req, x->remaining), rst = num_text(req, x->reset_s);
    if (rem.base == NULL || rst.base == NULL)
        return;
    pt_headers_add_nocopy(h, PT_STR("ratelimit-limit"), limit);
    pt_headers_add_nocopy(h, PT_STR("ratelimit-remaining"), rem);
    pt_headers_add_nocopy(h, PT_STR("ratelimit-reset"), rst);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Records the decision; for a refusal makes the 429 and returns RESPOND. */
static pt_fstatus_t conclude(rl_ctx_t *x, bool allowed, uint64_t remaining, uint64_t reset_s,
                             uint64_t retry_s)
{
    x->decided = x->counted = true;
    x->remaining = remaining;
    x->reset_s = reset_s;
    if (allowed)
        return PT_FILTER_CONTINUE;
    put_headers(x->req, x);
    set_num(x->req, PT_STR("retry-after"), retry_s != 0 ? retry_s : 1);
    pt_req_reject(x->req, PT_ERR_RATE_LIMITED,
                  x->c->is_quota ? "quota exhausted" : "rate limit exceeded");
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t conclude_gcra(rl_ctx_t *x, const pt_gcra_verdict_t *v, uint64_t unit)
{
    return conclude(x, v->allowed, v->remaining, ceil_div(v->reset, unit),
                    ceil_div(v->retry_after, unit));
}

/* ---- local decisions ------------------------------------------------------------------ */

static pt_fstatus_t decide_local(rl_ctx_t *x, pt_str_t kv, uint8_t tag)
{
    const rl_conf_t *c = x->c;
    char buf[MAX_KEY_RAW + 1];
    uint64_t h;
    if (kv.len <= MAX_KEY_RAW) { /* the kind of key is part of what is hashed */
        buf[0] = (char)tag;
        memcpy(buf + 1, kv.base, kv.len);
        h = pt_rlt_hash(c->table, buf, kv.len + 1);
    } else {
        h = pt_rlt_hash(c->table, kv.base, kv.len) ^ tag;
    }
    if (c->is_quota) {
        uint64_t left = 0, count = 0;
        uint64_t win = pt_rlt_period(c->period == PERIOD_MONTH, (int64_t)time(NULL), &left);
        bool ok = pt_rlt_count(c->table, h, win, (uint64_t)c->requests, &count);
        return conclude(x, ok, (uint64_t)c->requests - count, left, left);
    }
    pt_gcra_verdict_t v;
    pt_rlt_gcra(c->table, &c->gcra_ns, h, pt_clock_ns(), &v);
    return conclude_gcra(x, &v, NS_PER_S);
}

/* ---- Redis ------------------------------------------------------------------------------ */

static void on_reply(int status, const pt_redis_reply_t *reply, void *ud);

static int send_script(rl_ctx_t *x, bool eval)
{
    const rl_conf_t *c = x->c;
    const pt_str_t argv[6] = {eval ? PT_STR("EVAL") : PT_STR("EVALSHA"),
                              eval ? pt_str_c(c->is_quota ? quota_lua : gcra_lua)
                                   : (pt_str_t){c->sha, 40},
                              PT_STR("1"), x->rkey, c->arg1, c->arg2};
    return pt_redis_command(pt_req_worker(x->req), c->redis, 6, argv, on_reply, x, &x->cmd);
}

/* Redis could not decide: on_error does. */
static pt_fstatus_t store_failed(rl_ctx_t *x, pt_str_t kv, uint8_t tag)
{
    switch (x->c->on_error) {
    case ON_ERR_LOCAL:
        return decide_local(x, kv, tag);
    case ON_ERR_ALLOW:
        x->decided = true;
        return PT_FILTER_CONTINUE;
    case ON_ERR_DENY:
    default:
        x->decided = true;
        set_num(x->req, PT_STR("retry-after"), 1);
        pt_req_reject(x->req, PT_ERR_UNAVAILABLE, "rate limit store unavailable");
        return PT_FILTER_RESPOND;
    }
}

/* The key value and its tag are kept in the Redis key after the prefix: TAG:VALUE. */
static pt_str_t key_value_of(const rl_ctx_t *x, uint8_t *tag)
{
    pt_str_t k = x->rkey;
    size_t p = x->c->key_prefix.len;
    *tag = (uint8_t)k.base[p];
    return (pt_str_t){k.base + p + 2, k.len - p - 2};
}

static pt_fstatus_t verdict_from_reply(rl_ctx_t *x, const pt_redis_reply_t *r)
{
    const rl_conf_t *c = x->c;
    size_t need = c->is_quota ? 3 : 2;
    if (r->type != PT_REDIS_ARRAY || r->element_cnt != need)
        return PT_FILTER_ERROR;
    for (size_t i = 0; i < need; i++)
        if (r->elements[i].type != PT_REDIS_INT || r->elements[i].integer < 0)
            return PT_FILTER_ERROR;
    bool allowed = r->elements[0].integer == 1;
    if (c->is_quota) {
        uint64_t count = (uint64_t)r->elements[1].integer;
        uint64_t left = (uint64_t)r->elements[2].integer;
        uint64_t lim = (uint64_t)c->requests;
        return conclude(x, allowed, count >= lim ? 0 : lim - count, left, left);
    }
    pt_gcra_verdict_t v;
    pt_gcra_verdict(&c->gcra_us, allowed, (uint64_t)r->elements[1].integer, &v);
    return conclude_gcra(x, &v, US_PER_S);
}

static void on_reply(int status, const pt_redis_reply_t *reply, void *ud)
{
    rl_ctx_t *x = ud;
    x->cmd = NULL;
    if (status == PT_ERR_CANCELED)
        return; /* our abort hook: the request is going */
    if (status == 0 && reply->type == PT_REDIS_ERROR && !x->evaled &&
        pt_str_has_prefix(reply->str, PT_STR("NOSCRIPT"))) {
        /* a Redis that restarted or flushed its scripts: send the script itself once */
        x->evaled = true;
        if (send_script(x, true) == 0)
            return;
        status = PT_ERR_UNAVAILABLE;
    }
    pt_fstatus_t st = status == 0 ? verdict_from_reply(x, reply) : PT_FILTER_ERROR;
    if (st == PT_FILTER_ERROR) {
        uint8_t tag;
        pt_str_t kv = key_value_of(x, &tag);
        st = store_failed(x, kv, tag);
    }
    pt_chain_resume(x->req, st);
}

static void on_abort(void *data)
{
    rl_ctx_t *x = data;
    pt_redis_cancel(x->cmd);
    x->cmd = NULL;
}

/* The Redis key: PREFIX rl:ID: TAG ':' VALUE (a value longer than MAX_KEY_RAW as its SHA-256). */
static pt_str_t redis_key(pt_req_t *req, const rl_conf_t *c, pt_str_t kv, uint8_t tag)
{
    char hex[65];
    if (kv.len > MAX_KEY_RAW) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_Digest(kv.base, kv.len, md, &n, EVP_sha256(), NULL);
        for (unsigned i = 0; i < n && i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        kv = (pt_str_t){hex, 64};
    }
    size_t len = c->key_prefix.len + 2 + kv.len;
    char *k = pt_arena_alloc(pt_req_arena(req), len);
    if (k == NULL)
        return PT_STR_NULL;
    memcpy(k, c->key_prefix.base, c->key_prefix.len);
    k[c->key_prefix.len] = (char)tag;
    k[c->key_prefix.len + 1] = ':';
    memcpy(k + c->key_prefix.len + 2, kv.base, kv.len);
    return (pt_str_t){k, len};
}

/* ---- phases ------------------------------------------------------------------------------ */

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const rl_conf_t *c = f->conf;
    rl_ctx_t *x = ctx;
    x->req = req;
    x->c = c;
    /* The key: a request without it (no header, no consumer, no claim) is
     * counted by its client address instead, under a tag of its own. */
    uint8_t tag = 'i';
    pt_str_t kv = PT_STR_NULL;
    if (c->key_kind == KEY_HEADER)
        kv = pt_headers_get(pt_req_headers(req), c->key_arg), tag = 'h';
    else if (c->key_kind == KEY_VAR)
        kv = pt_req_var(req, c->key_arg), tag = 'v';
    if (kv.base == NULL) {
        kv = pt_req_client_addr(req);
        tag = 'i';
    }
    if (c->redis == NULL)
        return decide_local(x, kv, tag);
    x->rkey = redis_key(req, c, kv, tag);
    if (x->rkey.base == NULL) {
        pt_req_fail(req, PT_ERR_LIMIT, "rate_limit: request arena full");
        return PT_FILTER_ERROR;
    }
    if (pt_req_on_abort(req, on_abort, x) != 0 || send_script(x, false) != 0)
        return store_failed(x, kv, tag); /* Redis refused at once: down, backoff, max_pending */
    return PT_FILTER_SUSPEND;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    rl_ctx_t *x = ctx;
    if (x->decided)
        put_headers(req, x);
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_rate_limit = {
    .abi = PT_FILTER_ABI,
    .name = "rate_limit",
    .priority = 800,
    .conf_size = sizeof(rl_conf_t),
    .ctx_size = sizeof(rl_ctx_t),
    .parse_conf = rl_parse,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};

const pt_filter_def_t pt_filter_quota = {
    .abi = PT_FILTER_ABI,
    .name = "quota",
    .priority = 790,
    .conf_size = sizeof(rl_conf_t),
    .ctx_size = sizeof(rl_ctx_t),
    .parse_conf = quota_parse,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
