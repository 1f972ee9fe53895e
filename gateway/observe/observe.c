/*
 * observe.c -- the glue between requests and metrics / access log
 * (see observe.h).
 */
#include <event2/event.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "observe/accesslog.h"
#include "observe/metrics.h"
#include "observe/observe.h"
#include "observe/trace.h"
#include "http/ws.h"
#include "core/request.h"

typedef struct obs_worker {
    pt_accesslog_t *log;
    struct event *flush_ev;
    unsigned log_epoch; /* the reopen epoch this worker's log file belongs to */
} obs_worker_t;

/* Reload counters are process-wide and touched only by the main thread's
 * reload path and the admin renderer (also the main thread). */
static atomic_uint_fast64_t reloads_ok, reloads_failed;

/* Bumped by every SIGHUP; each worker reopens its access log when it sees a
 * new value (at its next line or flush tick, so within 100 ms even when idle).
 * A counter rather than a message to each worker: nothing to queue or free,
 * and a worker that misses several bumps reopens once. */
static atomic_uint log_epoch;

/* Reopens the log if a SIGHUP came since the last check (worker thread). */
static void check_reopen(obs_worker_t *o)
{
    unsigned e = atomic_load_explicit(&log_epoch, memory_order_acquire);
    if (e != o->log_epoch) {
        o->log_epoch = e;
        pt_accesslog_reopen(o->log, pt_now_ms());
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    obs_worker_t *o = arg;
    check_reopen(o);
    pt_accesslog_flush(o->log);
}

int pt_observe_worker_init(pt_worker_t *w)
{
    obs_worker_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        abort();
    if (w->metrics == NULL)
        w->metrics = pt_metrics_shard_new();
    o->log = pt_accesslog_new(&w->metrics->log_dropped);
    o->log_epoch = atomic_load(&log_epoch);
    pt_trace_worker_init(w);
    o->flush_ev = event_new(w->base, -1, EV_PERSIST, on_flush, o);
    struct timeval tv = {0, 100000};
    event_add(o->flush_ev, &tv);
    w->observe = o;
    return 0;
}

void pt_observe_worker_dispose(pt_worker_t *w)
{
    pt_trace_worker_dispose(w);
    obs_worker_t *o = w->observe;
    if (o != NULL) {
        event_free(o->flush_ev);
        pt_accesslog_free(o->log);
        free(o);
        w->observe = NULL;
    }
    /* The shard stays until the worker is freed: the admin may still sum it. */
}

static void counter_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* One WebSocket session ended (its request's log phase). */
static void count_ws(pt_metrics_shard_t *s, const pt_ws_stats_t *st)
{
    counter_add(&s->ws_sessions, 1);
    counter_add(&s->ws_msgs[0], st->msgs_in);
    counter_add(&s->ws_msgs[1], st->msgs_out);
    uint16_t c = st->close_out;
    size_t i = c >= 1000 && c <= 1015 ? (size_t)(c - 1000)
               : c >= 3000 && c <= 3999 ? 16
               : c >= 4000 && c <= 4999 ? 17 : 18;
    counter_add(&s->ws_close[i], 1);
}

void pt_observe_request(pt_req_t *req)
{
    pt_worker_t *w = req->worker;
    if (w == NULL)
        return;
    uint64_t now_ns = pt_now_ns();
    if (w->metrics != NULL) {
        const char *route = req->route.route != NULL ? req->route.route->name : "_none";
        uint64_t dur_us = (now_ns - req->start_ns) / 1000;
        pt_metrics_request(w->metrics, route, req->resp_status, dur_us, req->upstream_ns / 1000,
                           req->upstream_addr != NULL, req->body_received, req->bytes_out);
        if (req->upstream_cluster != NULL)
            pt_metrics_cluster(w->metrics, req->upstream_cluster, req->resp_status,
                               req->upstream_ns / 1000);
        for (size_t i = 0; i < req->subcall_cnt; i++)
            if (req->subcalls[i].started)
                pt_metrics_subcall(w->metrics, route, req->subcalls[i].name,
                                   req->subcalls[i].status, req->subcalls[i].ns / 1000);
    }
    if (w->metrics != NULL && req->ws != NULL)
        count_ws(w->metrics, pt_ws_stats(req->ws));
    if (req->trace != NULL)
        pt_trace_request_end(req, now_ns);
    obs_worker_t *o = w->observe;
    if (o != NULL) {
        check_reopen(o);
        pt_accesslog_write(o->log, req, now_ns);
    }
}

/* Single-writer gauges and counters (metrics.h): a relaxed load and store, no RMW. */
static void gauge_add(atomic_int_fast64_t *g, int64_t d)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static void counter_inc(atomic_uint_fast64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void pt_observe_conn_open(pt_worker_t *w)
{
    pt_metrics_shard_t *s = w->metrics;
    if (s == NULL)
        return;
    gauge_add(&s->conns_active, 1);
    counter_inc(&s->conns_total);
}

void pt_observe_conn_close(pt_worker_t *w)
{
    if (w->metrics != NULL)
        gauge_add(&w->metrics->conns_active, -1);
}

void pt_observe_tunnel_open(pt_worker_t *w)
{
    pt_metrics_shard_t *s = w->metrics;
    if (s == NULL)
        return;
    gauge_add(&s->tunnels_active, 1);
    counter_inc(&s->tunnels_total);
}

void pt_observe_tunnel_close(pt_worker_t *w)
{
    if (w->metrics != NULL)
        gauge_add(&w->metrics->tunnels_active, -1);
}

void pt_observe_ws_open(pt_worker_t *w)
{
    if (w != NULL && w->metrics != NULL)
        counter_add(&w->metrics->ws_opened, 1);
}

void pt_observe_upstream_error(pt_worker_t *w, const pt_cluster_t *cluster, int status)
{
    if (w->metrics != NULL && cluster != NULL)
        pt_metrics_upstream_error(w->metrics, cluster->name, status);
}

void pt_observe_upstream_event(pt_worker_t *w, const pt_cluster_t *cluster, pt_observe_upevent_t ev)
{
    if (w->metrics != NULL && cluster != NULL)
        pt_metrics_upstream_event(w->metrics, cluster->name, (int)ev);
}

void pt_observe_reload(bool ok)
{
    atomic_fetch_add(ok ? &reloads_ok : &reloads_failed, 1);
}

void pt_observe_log_reopen(void)
{
    atomic_fetch_add_explicit(&log_epoch, 1, memory_order_release);
}

void pt__observe_globals(uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load(&reloads_ok);
    *failed = atomic_load(&reloads_failed);
}
