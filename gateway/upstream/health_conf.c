/*
 * health_conf.c -- a cluster's `health_check:` (see health.h) and the
 * process-wide registry of checks that snapshots and the prober share.
 */
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/confparse.h"
#include "core/xalloc.h"
#include "upstream/health_internal.h"
#include "upstream/tls.h"
#include "portico/status.h"

/* ---- registry ------------------------------------------------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_health_ep_t *reg_head;

static char *dup_or_null(const char *s)
{
    return s != NULL ? pt_xcheck(strdup(s)) : NULL;
}

pt_health_ep_t *pt__health_ep_get(const pt_health_ep_t *want)
{
    pthread_mutex_lock(&reg_lock);
    pt_health_ep_t *e = reg_head;
    while (e != NULL && strcmp(e->key, want->key) != 0)
        e = e->next;
    if (e == NULL) {
        e = pt_xcalloc(1, sizeof(*e));
        e->key = dup_or_null(want->key);
        e->type = want->type;
        e->url = dup_or_null(want->url);
        e->host = dup_or_null(want->host);
        e->authority = dup_or_null(want->authority);
        e->path = dup_or_null(want->path);
        e->service = dup_or_null(want->service);
        e->ca_file = dup_or_null(want->ca_file);
        e->tls_name = dup_or_null(want->tls_name);
        e->port = want->port;
        e->tls = want->tls;
        e->h2 = want->h2;
        e->verify = want->verify;
        memcpy(e->expect, want->expect, sizeof(e->expect));
        e->expect_cnt = want->expect_cnt;
        atomic_init(&e->up, true);
        e->next = reg_head;
        reg_head = e;
    }
    e->refs++;
    pthread_mutex_unlock(&reg_lock);
    return e;
}

void pt__health_ep_release(pt_health_ep_t *e)
{
    pthread_mutex_lock(&reg_lock);
    if (--e->refs > 0) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    pt_health_ep_t **pp = &reg_head;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    pthread_mutex_unlock(&reg_lock);
    /* the prober let go of it (inactive): no timer, no probe left */
    SSL_CTX_free(e->ssl_ctx);
    free(e->key);
    free(e->url);
    free(e->host);
    free(e->authority);
    free(e->path);
    free(e->service);
    free(e->ca_file);
    free(e->tls_name);
    free(e->cluster);
    free(e);
}

static void release_cb(void *data)
{
    pt__health_ep_release(data);
}

/* ---- `health_check:` ------------------------------------------------------------ */

typedef struct hc_raw {
    const char *type, *path, *service;
    const pt_conf_node_t *expect;
    uint64_t interval_ms, timeout_ms;
    uint32_t unhealthy, healthy;
    bool fail_open;
} hc_raw_t;

static const pt_conf_field_t hc_fields[] = {
    {"type", PT_CONF_T_STR, offsetof(hc_raw_t, type), 0, 0, false, NULL},
    {"path", PT_CONF_T_STR, offsetof(hc_raw_t, path), 0, 0, false, NULL},
    {"service", PT_CONF_T_STR, offsetof(hc_raw_t, service), 0, 0, false, NULL},
    {"expect", PT_CONF_T_NODE, offsetof(hc_raw_t, expect), 0, 0, false, NULL},
    {"interval", PT_CONF_T_DURATION, offsetof(hc_raw_t, interval_ms), 10, 3600000, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(hc_raw_t, timeout_ms), 1, 3600000, false, NULL},
    {"unhealthy", PT_CONF_T_UINT32, offsetof(hc_raw_t, unhealthy), 1, 1000, false, NULL},
    {"healthy", PT_CONF_T_UINT32, offsetof(hc_raw_t, healthy), 1, 1000, false, NULL},
    {"fail_open", PT_CONF_T_BOOL, offsetof(hc_raw_t, fail_open), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* Bytes that may go into a request line or a protobuf string we send. */
static bool plain_text(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

static int parse_u16(const char *s, size_t len, uint16_t *out)
{
    unsigned v = 0;
    if (len == 0 || len > 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = (uint16_t)v;
    return 0;
}

/* `expect: 200`, `expect: [200-299, 304]`, `expect: "200-399"`. */
static void parse_expect(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_health_conf_t *h)
{
    const pt_conf_node_t *one[1] = {n};
    pt_conf_node_t *const *items = (pt_conf_node_t *const *)one;
    size_t cnt = 1;
    if (n->kind == PT_CONF_SEQ) {
        items = n->items;
        cnt = n->cnt;
    }
    if (cnt == 0 || cnt > PT_HEALTH_MAX_EXPECT || (n->kind != PT_CONF_SEQ && n->kind != PT_CONF_SCALAR)) {
        pt_conf_error(cx, n, "expect: a status, a range LO-HI or a list of up to %d of them",
                      PT_HEALTH_MAX_EXPECT);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        const pt_conf_node_t *it = items[i];
        uint16_t lo = 0, hi = 0;
        const char *dash = it->kind == PT_CONF_SCALAR ? memchr(it->str, '-', it->len) : NULL;
        int bad = it->kind != PT_CONF_SCALAR;
        if (!bad && dash == NULL) {
            bad = parse_u16(it->str, it->len, &lo);
            hi = lo;
        } else if (!bad) {
            bad = parse_u16(it->str, (size_t)(dash - it->str), &lo) ||
                  parse_u16(dash + 1, it->len - (size_t)(dash + 1 - it->str), &hi);
        }
        if (bad || lo < 100 || hi > 599 || lo > hi) {
            pt_conf_error(cx, it, "expect: '%s' is not a status (100-599) or a range LO-HI",
                          it->kind == PT_CONF_SCALAR ? it->str : "?");
            continue;
        }
        h->expect[h->expect_cnt].lo = lo;
        h->expect[h->expect_cnt].hi = hi;
        h->expect_cnt++;
    }
}

static const char *type_name(pt_health_type_t t)
{
    return t == PT_HEALTH_GRPC ? "grpc" : t == PT_HEALTH_TCP ? "tcp" : "http";
}

/* The registry key and parameters of endpoint `ep`'s check. */
static pt_health_ep_t *attach(pt_conf_cx_t *cx, const pt_health_conf_t *h, const pt_cluster_t *cl,
                              const pt_endpoint_t *ep)
{
    pt_health_ep_t want = {0};
    want.type = h->type;
    want.url = (char *)ep->url;
    want.host = (char *)ep->host;
    want.port = ep->port;
    want.tls = ep->tls;
    want.h2 = h->type == PT_HEALTH_GRPC || (h->type == PT_HEALTH_HTTP && cl->http2);
    want.verify = cl->tls_verify;
    want.ca_file = (char *)cl->ca_file;
    want.path = (char *)(h->type == PT_HEALTH_HTTP ? h->path : NULL);
    want.service = (char *)(h->type == PT_HEALTH_GRPC ? h->service : NULL);
    char auth[300];
    if (cl->authority != NULL)
        snprintf(auth, sizeof(auth), "%s", cl->authority);
    else if (strchr(ep->host, ':') != NULL)
        snprintf(auth, sizeof(auth), "[%s]:%u", ep->host, ep->port);
    else
        snprintf(auth, sizeof(auth), "%s:%u", ep->host, ep->port);
    want.authority = auth;
    /* the name calls check (a gRPC cluster's authority host, else the endpoint's) */
    char tls_name[256];
    want.tls_name = (char *)pt__uptls_name(cl, ep, tls_name, sizeof(tls_name));
    if (h->type == PT_HEALTH_HTTP) {
        memcpy(want.expect, h->expect, sizeof(want.expect));
        want.expect_cnt = h->expect_cnt;
    }
    char exp[PT_HEALTH_MAX_EXPECT * 8 + 1] = "";
    for (size_t i = 0; i < want.expect_cnt; i++)
        snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), "%u-%u,", want.expect[i].lo,
                 want.expect[i].hi);
    char *key = NULL;
    size_t klen = 0;
    FILE *f = open_memstream(&key, &klen);
    if (f == NULL)
        abort();
    fprintf(f, "%s|%s|%s|%d|%s|%s|%s|%s|%s|%s", type_name(want.type), ep->url, want.h2 ? "h2" : "h1",
            ep->tls && want.verify ? 1 : 0, ep->tls && want.ca_file ? want.ca_file : "",
            ep->tls ? want.tls_name : "", auth,
            want.path != NULL ? want.path : "", want.service != NULL ? want.service : "", exp);
    fclose(f);
    want.key = key;
    pt_health_ep_t *e = pt__health_ep_get(&want);
    free(key);
    pt_conf_on_release(cx, release_cb, e);
    return e;
}

const pt_health_conf_t *pt__health_conf_parse(pt_conf_cx_t *cx, const pt_conf_node_t *n,
                                              const pt_cluster_t *cl)
{
    if (n->kind != PT_CONF_MAP) {
        pt_conf_error(cx, n, "health_check: expected a map (path, interval, timeout, ...)");
        return NULL;
    }
    hc_raw_t raw = {.interval_ms = 5000,
                    .timeout_ms = 1000,
                    .unhealthy = 3,
                    .healthy = 2,
                    .fail_open = true};
    unsigned before = pt_conf_error_count(cx);
    pt_conf_parse_fields(cx, n, hc_fields, &raw);
    pt_health_conf_t *h = pt_conf_alloc(cx, sizeof(*h));
    h->node = n;
    h->type = cl->protocol == PT_PROTO_GRPC ? PT_HEALTH_GRPC : PT_HEALTH_HTTP;
    if (raw.type != NULL) {
        if (strcmp(raw.type, "http") == 0)
            h->type = PT_HEALTH_HTTP;
        else if (strcmp(raw.type, "grpc") == 0)
            h->type = PT_HEALTH_GRPC;
        else if (strcmp(raw.type, "tcp") == 0)
            h->type = PT_HEALTH_TCP;
        else
            pt_conf_error(cx, pt_conf_map_get(n, "type"),
                          "health_check: unknown type '%s' (expected http, grpc or tcp)", raw.type);
    }
    h->path = raw.path != NULL ? raw.path : "/";
    if (raw.path != NULL && h->type != PT_HEALTH_HTTP)
        pt_conf_error(cx, pt_conf_map_get(n, "path"), "health_check: path is for type http");
    else if (h->path[0] != '/' || !plain_text(h->path) || strlen(h->path) > 1024)
        pt_conf_error(cx, pt_conf_map_get(n, "path"),
                      "health_check: path must start with '/' and have no spaces or control "
                      "characters (at most 1024 bytes)");
    h->service = raw.service != NULL ? raw.service : "";
    if (raw.service != NULL && h->type != PT_HEALTH_GRPC)
        pt_conf_error(cx, pt_conf_map_get(n, "service"), "health_check: service is for type grpc");
    else if (!plain_text(h->service) || strlen(h->service) > 200)
        pt_conf_error(cx, pt_conf_map_get(n, "service"),
                      "health_check: service must be a gRPC service name (at most 200 bytes)");
    if (raw.expect != NULL) {
        if (h->type != PT_HEALTH_HTTP)
            pt_conf_error(cx, raw.expect, "health_check: expect is for type http");
        else
            parse_expect(cx, raw.expect, h);
    } else {
        h->expect[0].lo = 200;
        h->expect[0].hi = 299;
        h->expect_cnt = 1;
    }
    if (raw.timeout_ms > raw.interval_ms)
        pt_conf_error(cx, pt_conf_map_get(n, "timeout"),
                      "health_check: timeout (%llu ms) must not exceed interval (%llu ms)",
                      (unsigned long long)raw.timeout_ms, (unsigned long long)raw.interval_ms);
    h->interval_ms = raw.interval_ms;
    h->timeout_ms = raw.timeout_ms;
    h->unhealthy = raw.unhealthy;
    h->healthy = raw.healthy;
    h->fail_open = raw.fail_open;
    if (pt_conf_error_count(cx) != before)
        return NULL;
    h->eps = pt_conf_alloc(cx, (cl->endpoint_cnt ? cl->endpoint_cnt : 1) * sizeof(*h->eps));
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        h->eps[i] = attach(cx, h, cl, &cl->endpoints[i]);
    return h;
}
