/*
 * route_split.c -- a handler's traffic split over clusters (proxy and grpc
 * routes; docs/configuration.md "split"):
 *
 *   proxy: { split: [ { cluster: v1, weight: 90 }, { cluster: v2, weight: 10 } ],
 *            hash_key: "header:x-user" }
 *
 * A pick is one hash or one random draw and a walk over the cumulative
 * weights (a handful of targets). With a hash_key present in the request,
 * FNV-1a of its value chooses, so a client keeps its version while the
 * weights stay; requests without it are spread at random by weight.
 */
#include "core/route_retry.h"

#include <ctype.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/request.h"
#include "portico/status.h"

enum { KEY_NONE = 0, KEY_CLIENT_IP, KEY_HEADER, KEY_COOKIE };

typedef struct split_target {
    const char *name;
    const pt_conf_node_t *node;
    uint32_t weight;
    const pt_cluster_t *cluster;
} split_target_t;

struct pt_split {
    split_target_t *v;
    size_t cnt;
    uint64_t total;
    int key;
    pt_str_t key_name; /* header (lowercase) or cookie name */
};

uint64_t pt_route_rand(void)
{
    static _Thread_local uint64_t x;
    if (x == 0)
        x = (pt_now_ns() ^ (uint64_t)(uintptr_t)&x) | 1u;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

typedef struct target_raw {
    const char *cluster;
    uint32_t weight;
} target_raw_t;

static const pt_conf_field_t target_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(target_raw_t, cluster), 0, 0, true, NULL},
    {"weight", PT_CONF_T_UINT32, offsetof(target_raw_t, weight), 0, 1000000, true, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_key(pt_conf_cx_t *cx, const char *who, const pt_conf_node_t *n, pt_split_t *s)
{
    const char *v = n->kind == PT_CONF_SCALAR ? n->str : NULL;
    if (v != NULL && strcmp(v, "client_ip") == 0) {
        s->key = KEY_CLIENT_IP;
        return 0;
    }
    int kind = KEY_NONE;
    size_t skip = 0;
    if (v != NULL && strncmp(v, "header:", 7) == 0) {
        kind = KEY_HEADER;
        skip = 7;
    } else if (v != NULL && strncmp(v, "cookie:", 7) == 0) {
        kind = KEY_COOKIE;
        skip = 7;
    }
    if (kind == KEY_NONE || v[skip] == '\0')
        return pt_conf_error(cx, n,
                             "%s.hash_key: expected client_ip, \"header:NAME\" or \"cookie:NAME\"",
                             who);
    size_t len = strlen(v + skip);
    char *name = pt_conf_strdup(cx, v + skip, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch <= ' ' || ch >= 0x7f || ch == ';' || ch == '=' || ch == ',' || ch == ':')
            return pt_conf_error(cx, n, "%s.hash_key: bad %s name '%s'", who,
                                 kind == KEY_HEADER ? "header" : "cookie", v + skip);
        if (kind == KEY_HEADER)
            name[i] = (char)tolower(ch);
    }
    s->key = kind;
    s->key_name = (pt_str_t){name, len};
    return 0;
}

int pt_split_parse(pt_conf_cx_t *cx, const char *who, const pt_conf_node_t *split,
                   const pt_conf_node_t *hash_key, bool cluster_given, pt_split_t **out)
{
    *out = NULL;
    if (split == NULL) {
        if (hash_key != NULL)
            return pt_conf_error(cx, hash_key, "%s.hash_key: only with `split`", who);
        return 0;
    }
    if (cluster_given)
        return pt_conf_error(cx, split, "%s: `split` and `cluster` both given; use one", who);
    if (split->kind != PT_CONF_SEQ || split->cnt == 0)
        return pt_conf_error(cx, split,
                             "%s.split: expected a list like [ { cluster: v1, weight: 90 }, "
                             "{ cluster: v2, weight: 10 } ]",
                             who);
    unsigned before = pt_conf_error_count(cx);
    pt_split_t *s = pt_conf_alloc(cx, sizeof(*s));
    s->v = pt_conf_alloc(cx, split->cnt * sizeof(*s->v));
    for (size_t i = 0; i < split->cnt; i++) {
        const pt_conf_node_t *it = split->items[i];
        target_raw_t raw = {0};
        if (it->kind != PT_CONF_MAP) {
            pt_conf_error(cx, it, "%s.split: each entry is a map { cluster: NAME, weight: N }", who);
            continue;
        }
        if (pt_conf_parse_fields(cx, it, target_fields, &raw) != 0)
            continue;
        for (size_t k = 0; k < s->cnt; k++)
            if (strcmp(s->v[k].name, raw.cluster) == 0)
                pt_conf_error(cx, pt_conf_map_get(it, "cluster"),
                              "%s.split: cluster '%s' listed twice", who, raw.cluster);
        s->v[s->cnt++] = (split_target_t){raw.cluster, it, raw.weight, NULL};
        s->total += raw.weight;
    }
    if (pt_conf_error_count(cx) == before && s->total == 0)
        pt_conf_error(cx, split, "%s.split: the weights sum to 0; give at least one a weight", who);
    if (hash_key != NULL)
        parse_key(cx, who, hash_key, s);
    if (pt_conf_error_count(cx) != before)
        return PT_ERR_INVALID;
    *out = s;
    return 0;
}

static const char *proto_name(pt_proto_t p)
{
    return p == PT_PROTO_GRPC ? "grpc" : "http";
}

int pt_split_resolve(pt_conf_cx_t *cx, const char *who, pt_split_t *s, const pt_config_t *config,
                     pt_proto_t proto, const pt_cluster_t **first)
{
    unsigned before = pt_conf_error_count(cx);
    const split_target_t *ref = NULL; /* the first target found: the kind the others must have */
    for (size_t i = 0; i < s->cnt; i++) {
        split_target_t *t = &s->v[i];
        const pt_conf_node_t *at = pt_conf_map_get(t->node, "cluster");
        t->cluster = pt_config_cluster(config, t->name);
        if (t->cluster == NULL) {
            pt_conf_error(cx, at, "%s.split: unknown cluster '%s'", who, t->name);
            continue;
        }
        if (ref == NULL)
            ref = t;
        if (t->cluster->protocol != ref->cluster->protocol) {
            pt_conf_error(cx, at,
                          "%s.split: cluster '%s' is a %s cluster but '%s' is %s; a split "
                          "is over clusters of one kind",
                          who, t->name, proto_name(t->cluster->protocol), ref->name,
                          proto_name(ref->cluster->protocol));
            continue;
        }
        if (t->cluster->protocol != proto)
            pt_conf_error(cx, at, "%s.split: cluster '%s' is a %s cluster; %s needs %s clusters",
                          who, t->name, proto_name(t->cluster->protocol), who, proto_name(proto));
        else if (t->cluster->endpoint_cnt == 0)
            pt_conf_error(cx, at, "%s.split: cluster '%s' has no endpoints", who, t->name);
    }
    if (pt_conf_error_count(cx) != before)
        return PT_ERR_INVALID;
    *first = s->v[0].cluster;
    return 0;
}

/* The value of cookie `name` in the Cookie header(s), or base == NULL. */
static pt_str_t cookie_value(const pt_headers_t *h, pt_str_t name)
{
    for (size_t i = 0; i < h->cnt; i++) {
        if (!pt_str_eq(h->v[i].name, PT_STR("cookie")))
            continue;
        const char *p = h->v[i].value.base, *end = p + h->v[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi != NULL ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq != NULL && (size_t)(eq - p) == name.len && memcmp(p, name.base, name.len) == 0)
                return (pt_str_t){eq + 1, (size_t)(stop - eq - 1)};
            p = stop;
        }
    }
    return (pt_str_t){NULL, 0};
}

const pt_cluster_t *pt_split_pick(const pt_split_t *s, const pt_req_t *req)
{
    pt_str_t v = {NULL, 0};
    switch (s->key) {
    case KEY_CLIENT_IP:
        v = req->client_addr;
        break;
    case KEY_HEADER: {
        const pt_header_t *h = pt_headers_find(&req->headers, s->key_name);
        if (h != NULL)
            v = h->value;
        break;
    }
    case KEY_COOKIE:
        v = cookie_value(&req->headers, s->key_name);
        break;
    default:
        break;
    }
    uint64_t x;
    if (v.base != NULL) {
        x = 14695981039346656037ull;
        for (size_t i = 0; i < v.len; i++)
            x = (x ^ (unsigned char)v.base[i]) * 1099511628211ull;
        x ^= x >> 29; /* FNV's low bits are weak for short keys */
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 32;
    } else {
        x = pt_route_rand();
    }
    uint64_t point = x % s->total;
    for (size_t i = 0; i < s->cnt; i++) {
        if (point < s->v[i].weight)
            return s->v[i].cluster;
        point -= s->v[i].weight;
    }
    return s->v[s->cnt - 1].cluster;
}
