/*
 * route_retry.c -- parses a route's `retry:` policy (see docs/configuration.md,
 * "retry"; upstream/retry.c carries it out):
 *
 *   retry:
 *     attempts: 3                       # every attempt, the first included (2..10)
 *     on: [connect, 5xx, reset, unavailable, gateway-error]
 *     per_try_timeout: 500ms
 *     budget: 20%                       # retries <= 20% of the cluster's calls
 *     backoff: { base: 25ms, max: 250ms }
 *     methods: [GET, HEAD, OPTIONS, PUT, DELETE]   # the default; add POST to retry POSTs
 *     replay_limit: 64k                 # request body kept for a replay
 */
#include "core/route_retry.h"

#include <stdlib.h>
#include <string.h>

#include "core/confparse.h"
#include "core/router.h"
#include "portico/status.h"

enum {
    DEF_ATTEMPTS = 2,
    MAX_ATTEMPTS = 10,
    DEF_BUDGET = 20,
    DEF_BASE_MS = 25,
    DEF_MAX_MS = 250,
    DEF_REPLAY = 64 * 1024,
};

typedef struct retry_raw {
    long long attempts;
    const pt_conf_node_t *on, *budget, *backoff, *methods;
    uint64_t per_try_ms, replay_limit;
} retry_raw_t;

static const pt_conf_field_t retry_fields[] = {
    {"attempts", PT_CONF_T_INT, offsetof(retry_raw_t, attempts), 1, MAX_ATTEMPTS, false, NULL},
    {"on", PT_CONF_T_NODE, offsetof(retry_raw_t, on), 0, 0, false, NULL},
    {"per_try_timeout", PT_CONF_T_DURATION, offsetof(retry_raw_t, per_try_ms), 1, 86400000, false,
     NULL},
    {"budget", PT_CONF_T_NODE, offsetof(retry_raw_t, budget), 0, 0, false, NULL},
    {"backoff", PT_CONF_T_NODE, offsetof(retry_raw_t, backoff), 0, 0, false, NULL},
    {"methods", PT_CONF_T_NODE, offsetof(retry_raw_t, methods), 0, 0, false, NULL},
    {"replay_limit", PT_CONF_T_SIZE, offsetof(retry_raw_t, replay_limit), 0, 16u << 20, false, NULL},
    PT_CONF_FIELDS_END,
};

typedef struct backoff_raw {
    uint64_t base_ms, max_ms;
} backoff_raw_t;

static const pt_conf_field_t backoff_fields[] = {
    {"base", PT_CONF_T_DURATION, offsetof(backoff_raw_t, base_ms), 1, 60000, false, NULL},
    {"max", PT_CONF_T_DURATION, offsetof(backoff_raw_t, max_ms), 1, 600000, false, NULL},
    PT_CONF_FIELDS_END,
};

static const struct {
    const char *name;
    uint32_t bit;
} on_names[] = {
    {"connect", PT_RETRY_ON_CONNECT},     {"5xx", PT_RETRY_ON_5XX},
    {"reset", PT_RETRY_ON_RESET},         {"unavailable", PT_RETRY_ON_UNAVAILABLE},
    {"gateway-error", PT_RETRY_ON_GATEWAY},
};

/* A scalar or a sequence of scalars: calls fn on each; errors for anything else. */
static const pt_conf_node_t *list_item(const pt_conf_node_t *n, size_t i)
{
    return n->kind == PT_CONF_SEQ ? n->items[i] : n;
}

static size_t list_cnt(const pt_conf_node_t *n)
{
    return n->kind == PT_CONF_SEQ ? n->cnt : n->kind == PT_CONF_SCALAR ? 1 : 0;
}

static void parse_on(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint32_t *out)
{
    if (list_cnt(n) == 0) {
        pt_conf_error(cx, n, "retry.on: expected a list of conditions (connect, 5xx, reset, "
                             "unavailable, gateway-error)");
        return;
    }
    *out = 0;
    for (size_t i = 0; i < list_cnt(n); i++) {
        const pt_conf_node_t *it = list_item(n, i);
        size_t k = 0;
        while (k < sizeof(on_names) / sizeof(on_names[0]) &&
               (it->kind != PT_CONF_SCALAR || strcmp(it->str, on_names[k].name) != 0))
            k++;
        if (k == sizeof(on_names) / sizeof(on_names[0])) {
            static const char *const cands[] = {"connect", "5xx", "reset", "unavailable",
                                                "gateway-error", NULL};
            if (it->kind == PT_CONF_SCALAR)
                pt__conf_unknown_key(cx, it, "retry condition", cands);
            else
                pt_conf_error(cx, it, "retry.on: expected a condition name");
            continue;
        }
        *out |= on_names[k].bit;
    }
}

static void parse_methods(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint32_t *out)
{
    if (list_cnt(n) == 0) {
        pt_conf_error(cx, n, "retry.methods: expected a list of methods like [GET, PUT]");
        return;
    }
    *out = 0;
    for (size_t i = 0; i < list_cnt(n); i++) {
        const pt_conf_node_t *it = list_item(n, i);
        uint32_t bit = it->kind == PT_CONF_SCALAR ? pt_method_bit((pt_str_t){it->str, it->len})
                                                  : PT_METHOD_OTHER;
        if (bit == PT_METHOD_OTHER || bit == PT_METHOD_CONNECT) {
            pt_conf_error(cx, it,
                          "retry.methods: '%s' is not a method that can be retried (GET, HEAD, "
                          "OPTIONS, PUT, DELETE, POST, PATCH, TRACE; upper case)",
                          it->str != NULL ? it->str : "?");
            continue;
        }
        *out |= bit;
    }
}

static void parse_budget(pt_conf_cx_t *cx, const pt_conf_node_t *n, unsigned *out)
{
    const char *s = n->kind == PT_CONF_SCALAR ? n->str : NULL;
    char *end = NULL;
    long v = s != NULL && s[0] >= '0' && s[0] <= '9' ? strtol(s, &end, 10) : -1;
    if (v < 0 || v > 100 || end == NULL || (end[0] != '\0' && strcmp(end, "%") != 0)) {
        pt_conf_error(cx, n, "retry.budget: expected a percentage 0%%..100%% like 20%%");
        return;
    }
    *out = (unsigned)v;
}

int pt_route_retry_parse(pt_conf_cx_t *cx, const pt_conf_node_t *n, const pt_retry_conf_t **out)
{
    unsigned before = pt_conf_error_count(cx);
    if (n == NULL || n->kind != PT_CONF_MAP)
        return pt_conf_error(cx, n, "retry: expected a map like { attempts: 3, on: [connect, 5xx] }");
    retry_raw_t raw = {.attempts = DEF_ATTEMPTS, .replay_limit = DEF_REPLAY};
    if (pt_conf_parse_fields(cx, n, retry_fields, &raw) != 0)
        return PT_ERR_INVALID;
    pt_retry_conf_t *rc = pt_conf_alloc(cx, sizeof(*rc));
    rc->attempts = (unsigned)raw.attempts;
    rc->on = PT_RETRY_ON_CONNECT | PT_RETRY_ON_RESET | PT_RETRY_ON_UNAVAILABLE;
    rc->methods = PT_METHOD_GET | PT_METHOD_HEAD | PT_METHOD_OPTIONS | PT_METHOD_PUT |
                  PT_METHOD_DELETE;
    rc->per_try_timeout_ms = raw.per_try_ms;
    rc->budget_pct = DEF_BUDGET;
    rc->backoff_base_ms = DEF_BASE_MS;
    rc->backoff_max_ms = DEF_MAX_MS;
    rc->replay_limit = raw.replay_limit;
    if (raw.on != NULL)
        parse_on(cx, raw.on, &rc->on);
    if (raw.methods != NULL)
        parse_methods(cx, raw.methods, &rc->methods);
    if (raw.budget != NULL)
        parse_budget(cx, raw.budget, &rc->budget_pct);
    if (raw.backoff != NULL) {
        backoff_raw_t b = {DEF_BASE_MS, 0};
        if (raw.backoff->kind != PT_CONF_MAP) {
            pt_conf_error(cx, raw.backoff, "retry.backoff: expected a map like { base: 25ms, max: 250ms }");
        } else if (pt_conf_parse_fields(cx, raw.backoff, backoff_fields, &b) == 0) {
            rc->backoff_base_ms = b.base_ms;
            rc->backoff_max_ms = b.max_ms != 0 ? b.max_ms : (b.base_ms * 10 > DEF_MAX_MS ? b.base_ms * 10 : DEF_MAX_MS);
            if (rc->backoff_max_ms < rc->backoff_base_ms)
                pt_conf_error(cx, pt_conf_map_get(raw.backoff, "max"),
                              "retry.backoff: max must not be below base");
        }
    }
    if (pt_conf_error_count(cx) != before)
        return PT_ERR_INVALID;
    *out = rc;
    return 0;
}
