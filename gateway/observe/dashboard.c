/*
 * dashboard.c -- the live dashboard's page, JSON snapshot and event stream
 * (see dashboard.h; the page itself is dashboard.html, embedded at build time).
 *
 * The event stream: one timer on the main loop, armed while a stream is
 * open, builds one snapshot a second and writes it to every stream as an SSE
 * `snapshot` event. Nothing blocks: a write only appends to the connection's
 * output buffer. A client that stops reading is caught two ways: evhttp's
 * write timeout (admin: 10 s) fails its connection, and a stream whose
 * unread output passed PT_DASHBOARD_STREAM_BACKLOG skips snapshots and is
 * ended after PT_DASHBOARD_STREAM_SKIPS of them. A client that goes away
 * fails the next write (or is seen closing): evhttp frees the connection and
 * calls our close callback, which frees the stream. At most
 * PT_DASHBOARD_MAX_STREAMS streams are open at once.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "observe/dashboard.h"
#include "core/config.h"
#include "net/worker.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "upstream/health.h"
#include "upstream/policy.h"

void pt__observe_globals(uint64_t *ok, uint64_t *failed);

/* dashboard.html, embedded by cmake/embed.cmake */
extern const unsigned char pt_dashboard_html[];
extern const size_t pt_dashboard_html_len;

/* ---- the snapshot ------------------------------------------------------------------ */

static json_object *u64(uint64_t v)
{
    return json_object_new_uint64(v);
}

static json_object *u64_array(const uint64_t *v, size_t n)
{
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, u64(v[i]));
    return a;
}

/* {k1: v1, k2: v2} (k2 NULL: {k1: v1}); takes the values. */
static json_object *obj2(const char *k1, json_object *v1, const char *k2, json_object *v2)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, k1, v1);
    if (k2 != NULL)
        json_object_object_add(o, k2, v2);
    return o;
}

/* Series names are cut at PT_METRICS_NAME_MAX - 1 bytes (metrics.c). */
static bool same_name(const char *a, const char *b)
{
    return strncmp(a, b, PT_METRICS_NAME_MAX - 1) == 0;
}

typedef struct series {
    const char *name;
    bool configured;
    uint64_t classes[PT_METRICS_CLASSES];
    json_object *codes;                   /* routes: {"200": n, ...} */
    const pt_metrics_agg_hist_t *hist;    /* routes */
    const pt_metrics_agg_cluster_t *cl;   /* clusters */
    const pt_cluster_t *conf;             /* clusters: the configured one */
} series_t;

typedef struct series_set {
    series_t *v;
    size_t n;
} series_set_t;

static series_t *series_of(series_set_t *s, const char *name, bool configured)
{
    for (size_t i = 0; i < s->n; i++)
        if (same_name(s->v[i].name, name))
            return &s->v[i];
    series_t *e = &s->v[s->n++];
    memset(e, 0, sizeof(*e));
    e->name = name;
    e->configured = configured;
    return e;
}

static json_object *latency(const uint64_t *b, uint64_t sum_us)
{
    uint64_t count = 0;
    for (size_t k = 0; k < PT_METRICS_BUCKETS; k++)
        count += b[k];
    json_object *o = json_object_new_object();
    json_object_object_add(o, "count", u64(count));
    json_object_object_add(o, "sum_us", u64(sum_us));
    json_object_object_add(o, "buckets", u64_array(b, PT_METRICS_BUCKETS));
    return o;
}

static json_object *routes_json(const pt_metrics_totals_t *t, const pt_config_t *c)
{
    size_t cap = (c != NULL ? c->route_cnt : 0) + t->nreq + t->nhist + 1;
    series_set_t s = {calloc(cap, sizeof(series_t)), 0};
    if (s.v == NULL)
        abort();
    for (size_t i = 0; c != NULL && i < c->route_cnt; i++)
        series_of(&s, c->routes[i].name, true);
    for (size_t i = 0; i < t->nreq; i++) {
        series_t *e = series_of(&s, t->req[i].name, false);
        e->classes[pt_metrics_class(t->req[i].code)] += t->req[i].count;
        if (e->codes == NULL)
            e->codes = json_object_new_object();
        char code[16];
        snprintf(code, sizeof(code), "%d", t->req[i].code);
        json_object_object_add(e->codes, code, u64(t->req[i].count));
    }
    for (size_t i = 0; i < t->nhist; i++)
        series_of(&s, t->hist[i].name, false)->hist = &t->hist[i];
    json_object *a = json_object_new_array_ext((int)s.n);
    static const uint64_t zero[PT_METRICS_BUCKETS];
    for (size_t i = 0; i < s.n; i++) {
        series_t *e = &s.v[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(e->name));
        json_object_object_add(o, "configured", json_object_new_boolean(e->configured));
        uint64_t total = 0;
        for (size_t k = 0; k < PT_METRICS_CLASSES; k++)
            total += e->classes[k];
        json_object_object_add(o, "requests", u64(total));
        json_object_object_add(o, "classes", u64_array(e->classes, PT_METRICS_CLASSES));
        json_object_object_add(o, "codes", e->codes != NULL ? e->codes : json_object_new_object());
        const pt_metrics_agg_hist_t *h = e->hist;
        json_object_object_add(o, "latency", latency(h != NULL ? h->b : zero, h != NULL ? h->sum : 0));
        json_object_object_add(o, "upstream_latency",
                               latency(h != NULL ? h->ub : zero, h != NULL ? h->usum : 0));
        json_object_array_add(a, o);
    }
    free(s.v);
    return a;
}

/* /upstreams' document (health.c) by cluster name, or NULL. */
static json_object *health_doc(const pt_config_t *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    pt_health_json(f, c);
    fclose(f);
    json_object *doc = json_tokener_parse(text);
    free(text);
    return doc;
}

static json_object *health_of(json_object *doc, const char *cluster)
{
    json_object *cls = NULL;
    if (doc == NULL || !json_object_object_get_ex(doc, "clusters", &cls))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(cls); i++) {
        json_object *cl = json_object_array_get_idx(cls, i), *name = NULL;
        if (json_object_object_get_ex(cl, "name", &name) &&
            strcmp(json_object_get_string(name), cluster) == 0)
            return cl;
    }
    return NULL;
}

/* The active checks' view of each endpoint (health.c) plus outlier detection's (policy.c). */
static void add_endpoints(json_object *o, const pt_cluster_t *cl, json_object *health)
{
    json_object *hc = NULL, *eps = NULL;
    if (health != NULL && json_object_object_get_ex(health, "health_check", &hc))
        json_object_object_add(o, "health_check", json_object_get(hc));
    else
        json_object_object_add(o, "health_check", NULL);
    if (health == NULL || !json_object_object_get_ex(health, "endpoints", &eps))
        eps = NULL;
    json_object *a = json_object_new_array_ext((int)cl->endpoint_cnt);
    for (size_t k = 0; k < cl->endpoint_cnt; k++) {
        json_object *h = eps != NULL ? json_object_array_get_idx(eps, k) : NULL;
        json_object *e = h != NULL ? json_object_get(h) : json_object_new_object();
        if (h == NULL) {
            json_object_object_add(e, "address", json_object_new_string(cl->endpoints[k].url));
            json_object_object_add(e, "healthy", json_object_new_boolean(true));
            json_object_object_add(e, "checked", json_object_new_boolean(false));
        }
        pt_policy_ep_status_t st;
        pt_policy_ep_status(cl, k, &st);
        json_object *out = json_object_new_object();
        json_object_object_add(out, "ejected", json_object_new_boolean(st.ejected_ms != 0));
        json_object_object_add(out, "ejected_ms", u64(st.ejected_ms));
        json_object_object_add(out, "ejections", u64(st.ejections));
        json_object_object_add(out, "consecutive_failures", u64(st.fails));
        json_object_object_add(e, "outlier", out);
        json_object_object_add(e, "connections", u64(st.conns));
        json_object_array_add(a, e);
    }
    json_object_object_add(o, "endpoints", a);
}

static json_object *clusters_json(const pt_metrics_totals_t *t, const pt_config_t *c)
{
    size_t cap = (c != NULL ? c->cluster_cnt : 0) + t->ncl + t->nuperr + t->nupev + 1;
    series_set_t s = {calloc(cap, sizeof(series_t)), 0};
    if (s.v == NULL)
        abort();
    for (size_t i = 0; c != NULL && i < c->cluster_cnt; i++)
        series_of(&s, c->clusters[i].name, true)->conf = &c->clusters[i];
    for (size_t i = 0; i < t->ncl; i++)
        series_of(&s, t->cl[i].name, false)->cl = &t->cl[i];
    for (size_t i = 0; i < t->nuperr; i++)
        series_of(&s, t->uperr[i].name, false);
    for (size_t i = 0; i < t->nupev; i++)
        series_of(&s, t->upev[i].name, false);
    /* pt_observe_upevent_t, in order */
    static const char *const events[] = {"local_errors", "queued", "overflow", "breaker",
                                         "ejections", "retries", "retry_budget_exhausted"};
    _Static_assert(PT_METRICS_CLASSES <= PT_METRICS_BUCKETS, "one zero array for both");
    static const uint64_t zero[PT_METRICS_BUCKETS];
    json_object *health = health_doc(c);
    json_object *a = json_object_new_array_ext((int)s.n);
    for (size_t i = 0; i < s.n; i++) {
        series_t *e = &s.v[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(e->name));
        json_object_object_add(o, "configured", json_object_new_boolean(e->configured));
        const uint64_t *cls = e->cl != NULL ? e->cl->classes : zero;
        uint64_t total = 0;
        for (size_t k = 0; k < PT_METRICS_CLASSES; k++)
            total += cls[k];
        json_object_object_add(o, "requests", u64(total));
        json_object_object_add(o, "classes", u64_array(cls, PT_METRICS_CLASSES));
        json_object_object_add(o, "latency",
                               latency(e->cl != NULL ? e->cl->b : zero, e->cl != NULL ? e->cl->sum : 0));
        json_object *errs = json_object_new_object();
        for (size_t k = 0; k < t->nuperr; k++)
            if (same_name(t->uperr[k].name, e->name))
                json_object_object_add(errs, pt_status_name(t->uperr[k].code), u64(t->uperr[k].count));
        json_object_object_add(o, "errors", errs);
        json_object *ev = json_object_new_object();
        for (size_t k = 0; k < sizeof(events) / sizeof(events[0]); k++) {
            uint64_t n = 0;
            for (size_t j = 0; j < t->nupev; j++)
                if (t->upev[j].code == (int)k && same_name(t->upev[j].name, e->name))
                    n += t->upev[j].count;
            json_object_object_add(ev, events[k], u64(n));
        }
        json_object_object_add(o, "events", ev);
        if (e->conf != NULL)
            add_endpoints(o, e->conf, health_of(health, e->conf->name));
        json_object_array_add(a, o);
    }
    json_object_put(health);
    free(s.v);
    return a;
}

json_object *pt_dashboard_snapshot(pt_metrics_shard_t *const *shards, unsigned n,
                                   const pt_config_t *c, const pt_metrics_globals_t *g,
                                   uint64_t now_ms)
{
    pt_metrics_totals_t t;
    pt_metrics_totals(&t, shards, n);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "version", json_object_new_int(PT_DASHBOARD_VERSION));
    json_object_object_add(o, "time_ms", u64(now_ms));
    if (g != NULL) {
        json_object_object_add(o, "generation", u64(g->generation));
        json_object_object_add(o, "workers", u64(g->workers));
        json_object_object_add(o, "reloads", obj2("ok", u64(g->reloads_ok), "failed",
                                                  u64(g->reloads_failed)));
        json_object_object_add(o, "ejected_endpoints", u64(g->ejected));
    }
    /* the finite upper bounds; histograms have one more bucket, +Inf */
    json_object_object_add(o, "buckets_us", u64_array(pt_metrics_bucket_us, PT_METRICS_BUCKETS - 1));

    json_object_object_add(o, "connections", obj2("open", json_object_new_int64(t.conns_active),
                                                  "total", u64(t.conns_total)));
    json_object_object_add(o, "http2_streams",
                           obj2("open", json_object_new_int64(t.h2_streams_active), NULL, NULL));
    json_object *ws = obj2("open", u64(t.ws_opened - t.ws_sessions), "total", u64(t.ws_opened));
    json_object_object_add(ws, "messages_in", u64(t.ws_msgs[0]));
    json_object_object_add(ws, "messages_out", u64(t.ws_msgs[1]));
    json_object_object_add(o, "websockets", ws);
    json_object_object_add(o, "tunnels", obj2("open", json_object_new_int64(t.tunnels_active),
                                              "total", u64(t.tunnels_total)));
    json_object_object_add(o, "bytes", obj2("in", u64(t.bytes_in), "out", u64(t.bytes_out)));
    json_object_object_add(o, "routes", routes_json(&t, c));
    json_object_object_add(o, "clusters", clusters_json(&t, c));
    pt_metrics_totals_dispose(&t);
    return o;
}

/* ---- serving ----------------------------------------------------------------------- */

#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct stream {
    pt_dashboard_t *d;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    unsigned skipped;             /* snapshots skipped in a row (backlog) */
    struct stream *prev, *next;
} stream_t;

struct pt_dashboard {
    struct event_base *base;
    pt_server_t *srv;
    struct event *tick;           /* 1 s, armed while a stream is open */
    stream_t *head;
    unsigned nstreams;
};

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* The server's snapshot as compact JSON text (the caller frees it). */
static char *snapshot_text(pt_dashboard_t *d, size_t *len)
{
    pt_server_t *s = d->srv;
    pt_metrics_shard_t **shards = calloc(s->worker_cnt + 1, sizeof(*shards));
    if (shards == NULL)
        abort();
    for (unsigned i = 0; i < s->worker_cnt; i++)
        shards[i] = s->workers[i]->metrics;
    pt_config_t *c = s->current_config(s);
    pt_metrics_globals_t g = {0};
    g.generation = c != NULL ? c->generation : 0;
    pt__observe_globals(&g.reloads_ok, &g.reloads_failed);
    g.workers = s->worker_cnt;
    g.ejected = pt_policy_ejected_now();
    json_object *o = pt_dashboard_snapshot(shards, s->worker_cnt, c, &g, wall_ms());
    json_object *dash = json_object_new_object();
    json_object_object_add(dash, "streams", json_object_new_int((int)d->nstreams));
    json_object_object_add(dash, "max_streams", json_object_new_int(PT_DASHBOARD_MAX_STREAMS));
    json_object_object_add(o, "dashboard", dash);
    pt_config_unref(c);
    free(shards);
    size_t n = 0;
    const char *txt = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    char *out = malloc(n + 1);
    if (out == NULL)
        abort();
    memcpy(out, txt, n + 1);
    json_object_put(o);
    *len = n;
    return out;
}

static void headers(struct evhttp_request *r, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
}

static void answer(struct evhttp_request *r, int code, const char *reason, const char *ctype,
                 const void *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        abort();
    if (evhttp_request_get_command(r) != EVHTTP_REQ_HEAD)
        evbuffer_add(b, body, len);
    headers(r, ctype);
    evhttp_send_reply(r, code, reason, b);
    evbuffer_free(b);
}

static void stream_unlink(stream_t *st)
{
    pt_dashboard_t *d = st->d;
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        d->head = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    d->nstreams--;
    if (d->nstreams == 0)
        evtimer_del(d->tick);
    free(st);
}

/*
 * evhttp frees the connection (client gone, write failed or timed out, admin
 * stopping). When the connection failed, evhttp detached our unfinished
 * request from it and left it to us (evhttp_connection_incoming_fail); when
 * the admin stops, the request is still the connection's and goes with it.
 */
static void on_stream_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    stream_t *st = arg;
    if (evhttp_request_get_connection(st->req) == NULL)
        evhttp_request_free(st->req);
    stream_unlink(st);
}

static void stream_send(stream_t *st, const char *json, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        abort();
    evbuffer_add_printf(b, "event: snapshot\ndata: ");
    evbuffer_add(b, json, len);
    evbuffer_add(b, "\n\n", 2);
    evhttp_send_reply_chunk(st->req, b);
    evbuffer_free(b);
}

/* A client with this much unread output is not keeping up. */
static bool backlogged(const stream_t *st)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(st->evcon);
    return bev != NULL && evbuffer_get_length(bufferevent_get_output(bev)) > PT_DASHBOARD_STREAM_BACKLOG;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_dashboard_t *d = arg;
    if (d->head == NULL)
        return;
    size_t len = 0;
    char *json = snapshot_text(d, &len);
    stream_t *next = NULL;
    for (stream_t *st = d->head; st != NULL; st = next) {
        next = st->next;
        if (!backlogged(st)) {
            st->skipped = 0;
            stream_send(st, json, len);
        } else if (++st->skipped >= PT_DASHBOARD_STREAM_SKIPS) {
            /* end it: the connection closes once what is queued is written */
            evhttp_connection_set_closecb(st->evcon, NULL, NULL);
            evhttp_send_reply_end(st->req);
            stream_unlink(st);
        }
    }
    free(json);
}

static void stream_start(pt_dashboard_t *d, struct evhttp_request *r)
{
    if (evhttp_request_get_command(r) == EVHTTP_REQ_HEAD) {
        answer(r, 200, "OK", "text/event-stream", "", 0);
        return;
    }
    if (d->nstreams >= PT_DASHBOARD_MAX_STREAMS) {
        static const char busy[] = "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"too many "
                                   "dashboard streams open (at most " STR(PT_DASHBOARD_MAX_STREAMS)
                                   "); poll /stats instead\"}}\n";
        evhttp_add_header(evhttp_request_get_output_headers(r), "Retry-After", "5");
        answer(r, 503, "Service Unavailable", "application/json", busy, sizeof(busy) - 1);
        return;
    }
    stream_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        abort();
    st->d = d;
    st->req = r;
    st->evcon = evhttp_request_get_connection(r);
    st->next = d->head;
    if (d->head != NULL)
        d->head->prev = st;
    d->head = st;
    if (d->nstreams++ == 0) {
        struct timeval tv = {1, 0};
        evtimer_add(d->tick, &tv);
    }
    headers(r, "text/event-stream");
    evhttp_add_header(evhttp_request_get_output_headers(r), "X-Accel-Buffering", "no");
    evhttp_connection_set_closecb(st->evcon, on_stream_close, st);
    evhttp_send_reply_start(r, 200, "OK");
    size_t len = 0;
    char *json = snapshot_text(d, &len);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        abort();
    evbuffer_add_printf(b, "retry: 2000\n\n");
    evhttp_send_reply_chunk(r, b);
    evbuffer_free(b);
    stream_send(st, json, len);
    free(json);
}

pt_dashboard_t *pt_dashboard_new(struct event_base *base, pt_server_t *s)
{
    pt_dashboard_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    d->base = base;
    d->srv = s;
    d->tick = event_new(base, -1, EV_PERSIST, on_tick, d);
    if (d->tick == NULL)
        abort();
    return d;
}

void pt_dashboard_free(pt_dashboard_t *d)
{
    if (d == NULL)
        return;
    /* evhttp_free() closed the connections first, so this list is empty; if not,
     * the connections outlive us and must not call back */
    stream_t *next = NULL;
    for (stream_t *st = d->head; st != NULL; st = next) {
        next = st->next;
        evhttp_connection_set_closecb(st->evcon, NULL, NULL);
        free(st);
    }
    event_free(d->tick);
    free(d);
}

unsigned pt_dashboard_streams(const pt_dashboard_t *d)
{
    return d != NULL ? d->nstreams : 0;
}

bool pt_dashboard_is_page(const char *path, size_t len)
{
    return len == 10 && memcmp(path, "/dashboard", 10) == 0;
}

bool pt_dashboard_serve(pt_dashboard_t *d, struct evhttp_request *r, const char *path, size_t len)
{
    if (pt_dashboard_is_page(path, len)) {
        /* our own script and styles only; the page talks to this origin alone */
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Security-Policy",
                          "default-src 'none'; script-src 'unsafe-inline'; style-src "
                          "'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                          "frame-ancestors 'none'");
        evhttp_add_header(evhttp_request_get_output_headers(r), "X-Frame-Options", "DENY");
        answer(r, 200, "OK", "text/html; charset=utf-8", pt_dashboard_html, pt_dashboard_html_len);
    } else if (len == 6 && memcmp(path, "/stats", 6) == 0) {
        size_t n = 0;
        char *json = snapshot_text(d, &n);
        answer(r, 200, "OK", "application/json", json, n);
        free(json);
    } else if (len == 13 && memcmp(path, "/stats/stream", 13) == 0) {
        stream_start(d, r);
    } else {
        return false;
    }
    return true;
}
