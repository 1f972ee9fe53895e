/*
 * async.c -- the SDK's timers and upstream calls for filters (portico/async.h).
 *
 * Both are thin: a timer is one libevent timer event; a fetch is one
 * pt_upcall_start() (the primitive every handler uses) with the request
 * copied into a private arena and the response collected there, so a filter
 * hands over nothing that must outlive its call and gets back one whole
 * response.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/clock.h"
#include "core/confparse.h"
#include "core/config.h"
#include "portico/async.h"
#include "upstream/call.h"
#include "net/worker.h"

#define FETCH_DEFAULT_MAX ((size_t)1 << 20)

/* ---- timers ------------------------------------------------------------- */

struct pt_timer {
    struct event *ev;
    pt_timer_cb cb;
    void *ud;
};

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_timer_t *t = arg;
    pt_timer_cb cb = t->cb;
    void *ud = t->ud;
    event_free(t->ev);
    free(t);
    cb(ud);
}

int pt_timer_start(pt_worker_t *w, uint64_t delay_ms, pt_timer_cb cb, void *ud, pt_timer_t **out)
{
    pt_timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PT_ERR_NOMEM;
    t->ev = evtimer_new(w->base, on_timer, t);
    if (t->ev == NULL) {
        free(t);
        return PT_ERR_NOMEM;
    }
    t->cb = cb;
    t->ud = ud;
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000};
    evtimer_add(t->ev, &tv);
    *out = t;
    return 0;
}

void pt_timer_cancel(pt_timer_t *t)
{
    if (t == NULL)
        return;
    event_free(t->ev);
    free(t);
}

/* ---- clusters ----------------------------------------------------------- */

const pt_cluster_ref_t *pt_conf_cluster(pt_conf_cx_t *cx, const pt_conf_node_t *at,
                                        const char *name)
{
    const pt_config_t *c = cx->user;
    const pt_cluster_t *cl = c != NULL && name != NULL ? pt_config_cluster(c, name) : NULL;
    if (cl == NULL) {
        pt_conf_error(cx, at, "unknown cluster '%s'", name != NULL ? name : "");
        return NULL;
    }
    if (cl->endpoint_cnt == 0) {
        pt_conf_error(cx, at, "cluster '%s' has no endpoints", name);
        return NULL;
    }
    return (const pt_cluster_ref_t *)cl;
}

const char *pt_conf_cluster_for_url(pt_conf_cx_t *cx, const char *url)
{
    const pt_config_t *c = cx->user;
    bool tls;
    if (c == NULL || url == NULL)
        return NULL;
    if (strncasecmp(url, "https://", 8) == 0)
        tls = true;
    else if (strncasecmp(url, "http://", 7) == 0)
        tls = false;
    else
        return NULL;
    const char *host = url + (tls ? 8 : 7);
    size_t olen = strcspn(host, "/?#"); /* host[:port] */
    const char *end = host + olen, *colon = NULL;
    if (host[0] == '[') { /* [v6]:port */
        const char *rb = memchr(host, ']', olen);
        if (rb == NULL)
            return NULL;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (colon == NULL && rb + 1 != end)
            return NULL;
    } else {
        colon = memchr(host, ':', olen);
    }
    unsigned long port = tls ? 443 : 80;
    if (colon != NULL) {
        char *pe;
        port = strtoul(colon + 1, &pe, 10);
        if (pe != end || colon + 1 == end || port == 0 || port > 65535)
            return NULL;
    }
    const char *name = host;
    size_t name_len = (size_t)((colon != NULL ? colon : end) - host);
    if (host[0] == '[') {
        name++;
        name_len -= 2;
    }
    for (size_t i = 0; i < c->cluster_cnt; i++) {
        const pt_cluster_t *cl = &c->clusters[i];
        for (size_t e = 0; e < cl->endpoint_cnt; e++) {
            const pt_endpoint_t *ep = &cl->endpoints[e];
            if (ep->tls == tls && ep->port == port && ep->host != NULL &&
                strlen(ep->host) == name_len && strncasecmp(ep->host, name, name_len) == 0)
                return cl->name;
        }
    }
    return NULL;
}

uint64_t pt_clock_ms(void) { return pt_now_ms(); }
uint64_t pt_clock_ns(void) { return pt_now_ns(); }

/* ---- fetch -------------------------------------------------------------- */

struct pt_fetch {
    pt_worker_t *w;
    pt_arena_t *arena;           /* copies of the request, the response head */
    pt_upcall_req_t req;
    pt_headers_t headers;
    pt_str_t body;
    size_t body_off;
    pt_upcall_t *call;
    pt_fetch_cb cb;
    void *ud;
    int status;
    pt_header_t *resp_h;
    size_t resp_hcnt;
    struct evbuffer *resp_body;
    size_t max;
    pt_timer_t *limit_timer;     /* over max_response: ends the call outside its callback */
};

static void fetch_free(pt_fetch_t *f)
{
    if (f->limit_timer != NULL)
        pt_timer_cancel(f->limit_timer);
    evbuffer_free(f->resp_body);
    pt_arena_destroy(f->arena);
    free(f);
}

static size_t fetch_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    pt_fetch_t *f = ud;
    size_t n = f->body.len - f->body_off;
    if (n > max)
        n = max;
    memcpy(buf, f->body.base + f->body_off, n);
    f->body_off += n;
    *eof = f->body_off == f->body.len;
    return n;
}

static void fetch_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    pt_fetch_t *f = ud;
    f->status = status;
    f->resp_h = pt_arena_alloc(f->arena, (cnt != 0 ? cnt : 1) * sizeof(*h));
    if (f->resp_h == NULL)
        return;
    for (size_t i = 0; i < cnt; i++) {
        f->resp_h[i].name = pt_arena_strdup(f->arena, h[i].name);
        f->resp_h[i].value = pt_arena_strdup(f->arena, h[i].value);
    }
    f->resp_hcnt = cnt;
}

static void fetch_over_limit(void *ud)
{
    pt_fetch_t *f = ud;
    f->limit_timer = NULL;
    pt_upcall_cancel(f->call);
    pt_fetch_cb cb = f->cb;
    void *cud = f->ud;
    fetch_free(f);
    cb(cud, PT_ERR_LIMIT, NULL);
}

static bool fetch_on_data(void *ud, const char *data, size_t len)
{
    pt_fetch_t *f = ud;
    if (f->limit_timer != NULL)
        return false;
    if (len > f->max - evbuffer_get_length(f->resp_body)) {
        /* Stop reading and end the call from the loop: cancelling from
         * inside the call's own callback is not allowed. */
        if (pt_timer_start(f->w, 0, fetch_over_limit, f, &f->limit_timer) != 0)
            f->limit_timer = NULL;
        return false;
    }
    evbuffer_add(f->resp_body, data, len);
    return true;
}

static void fetch_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    (void)reason;
    (void)t;
    (void)tcnt;
    pt_fetch_t *f = ud;
    if (f->limit_timer != NULL)
        st = PT_ERR_LIMIT; /* ended on its own before our timer fired */
    pt_fetch_cb cb = f->cb;
    void *cud = f->ud;
    if (st != 0 || f->resp_h == NULL) {
        fetch_free(f);
        cb(cud, st != 0 ? st : PT_ERR_UPSTREAM, NULL);
        return;
    }
    size_t len = evbuffer_get_length(f->resp_body);
    pt_fetch_resp_t resp = {
        .status = f->status,
        .headers = f->resp_h,
        .header_cnt = f->resp_hcnt,
        .body = {len != 0 ? (const char *)evbuffer_pullup(f->resp_body, -1) : "", len},
    };
    cb(cud, 0, &resp);
    fetch_free(f);
}

static const pt_upcall_cbs_t fetch_cbs = {
    .read_body = fetch_read_body,
    .on_head = fetch_on_head,
    .on_data = fetch_on_data,
    .on_done = fetch_on_done,
};

static bool method_has_body(pt_str_t m)
{
    return pt_str_eq(m, PT_STR("POST")) || pt_str_eq(m, PT_STR("PUT")) ||
           pt_str_eq(m, PT_STR("PATCH"));
}

int pt_fetch_start(pt_worker_t *w, const pt_fetch_req_t *r, pt_fetch_cb cb, void *ud,
                   pt_fetch_t **out)
{
    if (r->cluster == NULL)
        return PT_ERR_INVALID;
    pt_fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return PT_ERR_NOMEM;
    f->w = w;
    f->arena = pt_arena_new(0, 0);
    f->resp_body = evbuffer_new();
    if (f->resp_body == NULL) {
        pt_arena_destroy(f->arena);
        free(f);
        return PT_ERR_NOMEM;
    }
    f->cb = cb;
    f->ud = ud;
    f->max = r->max_response != 0 ? r->max_response : FETCH_DEFAULT_MAX;
    pt_headers_init(&f->headers, f->arena);
    if (r->headers != NULL)
        for (size_t i = 0; i < r->headers->cnt; i++)
            pt_headers_add(&f->headers, r->headers->v[i].name, r->headers->v[i].value);
    f->body = pt_arena_strdup(f->arena, r->body);
    pt_upcall_req_t *u = &f->req;
    u->cluster = (const pt_cluster_t *)r->cluster;
    u->method = r->method.len != 0 ? pt_arena_strdup(f->arena, r->method) : PT_STR("GET");
    u->path = r->path.len != 0 ? pt_arena_strdup(f->arena, r->path) : PT_STR("/");
    u->authority = pt_arena_strdup(f->arena, r->authority);
    u->headers = &f->headers;
    u->has_body = f->body.len != 0 || method_has_body(u->method);
    u->content_length = u->has_body ? (int64_t)f->body.len : -1;
    u->timeout_ms = r->timeout_ms;
    u->idempotent = !method_has_body(u->method) && !pt_str_eq(u->method, PT_STR("DELETE"));
    int rc = pt_upcall_start(w, u, &fetch_cbs, f, &f->call);
    if (rc != 0) {
        fetch_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void pt_fetch_cancel(pt_fetch_t *f)
{
    if (f == NULL)
        return;
    pt_upcall_cancel(f->call);
    fetch_free(f);
}
