/*
 * metrics.c -- metric shards and Prometheus text rendering (see metrics.h).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "observe/metrics.h"
#include "observe/trace.h"
#include "portico/status.h"

const uint64_t pt_metrics_bucket_us[PT_METRICS_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, UINT64_MAX,
};

#define RLX memory_order_relaxed

/* Single-writer increment: a plain load and store, visible to readers as a whole. */
static inline void bump(atomic_uint_fast64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, RLX) + v, RLX);
}

pt_metrics_shard_t *pt_metrics_shard_new(void)
{
    pt_metrics_shard_t *s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63);
    if (s == NULL)
        abort();
    memset(s, 0, sizeof(*s));
    return s;
}

void pt_metrics_shard_free(pt_metrics_shard_t *s)
{
    free(s);
}

static uint64_t hash(const char *s, int code)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(unsigned)code;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Finds or claims the slot of (name, code); the last slot is the overflow series. */
static pt_metrics_counter_slot_t *counter_slot(pt_metrics_counter_slot_t *t, size_t n,
                                               const char *name, int code)
{
    size_t usable = n - 1;
    size_t i = hash(name, code) % usable;
    for (size_t probe = 0; probe < usable; probe++, i = (i + 1) % usable) {
        pt_metrics_counter_slot_t *s = &t[i];
        if (!atomic_load_explicit(&s->used, memory_order_acquire)) {
            snprintf(s->name, sizeof(s->name), "%s", name);
            s->code = code;
            atomic_store_explicit(&s->used, true, memory_order_release);
            return s;
        }
        if (s->code == code && strncmp(s->name, name, sizeof(s->name) - 1) == 0)
            return s;
    }
    pt_metrics_counter_slot_t *o = &t[n - 1];
    if (!atomic_load_explicit(&o->used, memory_order_acquire)) {
        snprintf(o->name, sizeof(o->name), "_other");
        o->code = 0;
        atomic_store_explicit(&o->used, true, memory_order_release);
    }
    return o;
}

/*
 * Histogram and cluster slots start alike (`used`, then `name`): one search
 * over either table, `stride` bytes apart; the last slot is the overflow series.
 */
_Static_assert(offsetof(pt_metrics_hist_slot_t, name) == offsetof(pt_metrics_cluster_slot_t, name),
               "named slots share their head");
static void *named_slot(void *table, size_t stride, size_t n, const char *name)
{
    size_t usable = n - 1;
    size_t i = hash(name, 0) % usable;
    for (size_t probe = 0; probe <= usable; probe++, i = (i + 1) % usable) {
        if (probe == usable) {
            i = n - 1;
            name = "_other";
        }
        char *slot = (char *)table + i * stride;
        atomic_bool *used = (atomic_bool *)slot;
        char *sname = slot + offsetof(pt_metrics_hist_slot_t, name);
        if (!atomic_load_explicit(used, memory_order_acquire)) {
            snprintf(sname, PT_METRICS_NAME_MAX, "%s", name);
            atomic_store_explicit(used, true, memory_order_release);
            return slot;
        }
        if (probe == usable || strncmp(sname, name, PT_METRICS_NAME_MAX - 1) == 0)
            return slot;
    }
    return NULL; /* not reached: the loop returns at probe == usable */
}

static pt_metrics_hist_slot_t *hist_slot(pt_metrics_hist_slot_t *t, size_t n, const char *name)
{
    return named_slot(t, sizeof(*t), n, name);
}

/* The slot of (name, code) a memo remembers, if it still names it (a name
 * string freed with an old config and its address reused cannot mislead it:
 * the slot's own copy of the name is compared). */
#define MEMO_HIT(m, n, c, slot_name)                                                            \
    ((m).name == (n) && (m).code == (c) && (m).slot != NULL &&                                  \
     strncmp((slot_name), (n), PT_METRICS_NAME_MAX - 1) == 0)

static pt_metrics_counter_slot_t *request_slot(pt_metrics_shard_t *s, const char *route, int status)
{
    pt_metrics_counter_slot_t *m = s->memo_req.slot;
    if (MEMO_HIT(s->memo_req, route, status, m->name))
        return m;
    m = counter_slot(s->requests, PT_METRICS_ROUTES, route, status);
    s->memo_req.name = route;
    s->memo_req.code = status;
    s->memo_req.slot = m;
    return m;
}

unsigned pt_metrics_bucket_of(uint64_t us)
{
    unsigned b = 0;
    while (us > pt_metrics_bucket_us[b])
        b++;
    return b;
}

void pt_metrics_request(pt_metrics_shard_t *s, const char *route, int status, uint64_t dur_us,
                        uint64_t upstream_us, bool has_upstream, uint64_t in, uint64_t out)
{
    bump(&request_slot(s, route, status)->count, 1);
    pt_metrics_hist_slot_t *h = s->memo_hist.slot;
    if (!MEMO_HIT(s->memo_hist, route, 0, h->name)) {
        h = hist_slot(s->hists, PT_METRICS_HISTS, route);
        s->memo_hist.name = route;
        s->memo_hist.slot = h;
    }
    bump(&h->buckets[pt_metrics_bucket_of(dur_us)], 1);
    bump(&h->sum_us, dur_us);
    bump(&h->count, 1);
    if (has_upstream) {
        bump(&h->up_buckets[pt_metrics_bucket_of(upstream_us)], 1);
        bump(&h->up_sum_us, upstream_us);
        bump(&h->up_count, 1);
    }
    bump(&s->bytes_in, in);
    bump(&s->bytes_out, out);
}

void pt_metrics_upstream_error(pt_metrics_shard_t *s, const char *cluster, int code)
{
    bump(&counter_slot(s->uperrs, PT_METRICS_UPERRS, cluster, code)->count, 1);
}

void pt_metrics_cluster(pt_metrics_shard_t *s, const char *cluster, int status,
                        uint64_t upstream_us)
{
    pt_metrics_cluster_slot_t *c = s->memo_cluster.slot;
    if (!MEMO_HIT(s->memo_cluster, cluster, 0, c->name)) {
        c = named_slot(s->clusters, sizeof(s->clusters[0]), PT_METRICS_CLUSTERS, cluster);
        s->memo_cluster.name = cluster;
        s->memo_cluster.slot = c;
    }
    bump(&c->classes[pt_metrics_class(status)], 1);
    bump(&c->buckets[pt_metrics_bucket_of(upstream_us)], 1);
    bump(&c->sum_us, upstream_us);
}

void pt_metrics_subcall(pt_metrics_shard_t *s, const char *route, const char *call, int status,
                        uint64_t dur_us)
{
    char key[PT_METRICS_NAME_MAX];
    snprintf(key, sizeof(key), "%s\x1f%s", route, call);
    bump(&counter_slot(s->subcalls, PT_METRICS_ROUTES, key, status)->count, 1);
    pt_metrics_hist_slot_t *h = hist_slot(s->subcall_hists, PT_METRICS_HISTS, key);
    bump(&h->buckets[pt_metrics_bucket_of(dur_us)], 1);
    bump(&h->sum_us, dur_us);
    bump(&h->count, 1);
}

void pt_metrics_upstream_event(pt_metrics_shard_t *s, const char *cluster, int kind)
{
    bump(&counter_slot(s->upevents, PT_METRICS_UPERRS, cluster, kind)->count, 1);
}

/* ---- rendering ------------------------------------------------------------ */

/* Label values: backslash, double quote and newline are escaped. */
static void put_label(FILE *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(out, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

typedef pt_metrics_agg_counter_t agg_counter_t;

static size_t merge_counters(agg_counter_t *agg, size_t n, const pt_metrics_counter_slot_t *t,
                             size_t tn)
{
    for (size_t i = 0; i < tn; i++) {
        if (!atomic_load_explicit(&t[i].used, memory_order_acquire))
            continue;
        uint64_t c = atomic_load_explicit(&t[i].count, RLX);
        size_t j = 0;
        while (j < n && !(agg[j].code == t[i].code && strcmp(agg[j].name, t[i].name) == 0))
            j++;
        if (j == n) {
            agg[n].name = t[i].name;
            agg[n].code = t[i].code;
            agg[n].count = 0;
            n++;
        }
        agg[j].count += c;
    }
    return n;
}

typedef pt_metrics_agg_hist_t agg_hist_t;

/* `route="NAME"` */
static void put_route(FILE *out, const char *name)
{
    fputs("route=\"", out);
    put_label(out, name);
    fputs("\"", out);
}

static void render_hist(FILE *out, const char *metric, void (*labels)(FILE *, const char *),
                        const char *name, const uint64_t *b, uint64_t sum_us, uint64_t count)
{
    uint64_t cum = 0;
    for (unsigned k = 0; k < PT_METRICS_BUCKETS; k++) {
        cum += b[k];
        fprintf(out, "%s_bucket{", metric);
        labels(out, name);
        if (k + 1 == PT_METRICS_BUCKETS)
            fprintf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        else
            fprintf(out, ",le=\"%g\"} %llu\n", (double)pt_metrics_bucket_us[k] / 1e6,
                    (unsigned long long)cum);
    }
    fprintf(out, "%s_sum{", metric);
    labels(out, name);
    fprintf(out, "} %.6f\n", (double)sum_us / 1e6);
    fprintf(out, "%s_count{", metric);
    labels(out, name);
    fprintf(out, "} %llu\n", (unsigned long long)count);
}

/* Adds the used slots of t[0..tn) to agg[0..n) by name; returns the new n. */
static size_t merge_hists(agg_hist_t *agg, size_t n, const pt_metrics_hist_slot_t *t, size_t tn)
{
    for (size_t k = 0; k < tn; k++) {
        const pt_metrics_hist_slot_t *h = &t[k];
        if (!atomic_load_explicit(&h->used, memory_order_acquire))
            continue;
        size_t j = 0;
        while (j < n && strcmp(agg[j].name, h->name) != 0)
            j++;
        if (j == n)
            agg[n++].name = h->name;
        for (unsigned b = 0; b < PT_METRICS_BUCKETS; b++) {
            agg[j].b[b] += atomic_load_explicit(&h->buckets[b], RLX);
            agg[j].ub[b] += atomic_load_explicit(&h->up_buckets[b], RLX);
        }
        agg[j].sum += atomic_load_explicit(&h->sum_us, RLX);
        agg[j].count += atomic_load_explicit(&h->count, RLX);
        agg[j].usum += atomic_load_explicit(&h->up_sum_us, RLX);
        agg[j].ucount += atomic_load_explicit(&h->up_count, RLX);
    }
    return n;
}

/* `route="r",call="c"` from a "r\x1fc" key (the overflow series has no call). */
static void put_route_call(FILE *out, const char *key)
{
    const char *sep = strchr(key, '\x1f');
    char route[PT_METRICS_NAME_MAX];
    size_t rl = sep != NULL ? (size_t)(sep - key) : strlen(key);
    memcpy(route, key, rl);
    route[rl] = '\0';
    fputs("route=\"", out);
    put_label(out, route);
    fputs("\",call=\"", out);
    put_label(out, sep != NULL ? sep + 1 : "");
    fputs("\"", out);
}

static void render_subcalls(FILE *out, pt_metrics_shard_t *const *shards, unsigned n)
{
    agg_counter_t *cnt = calloc((size_t)n * PT_METRICS_ROUTES + 1, sizeof(*cnt));
    agg_hist_t *hist = calloc((size_t)n * PT_METRICS_HISTS + 1, sizeof(*hist));
    if (cnt == NULL || hist == NULL)
        abort();
    size_t ncnt = 0, nhist = 0;
    for (unsigned i = 0; i < n; i++) {
        const pt_metrics_shard_t *s = shards[i];
        if (s == NULL)
            continue;
        ncnt = merge_counters(cnt, ncnt, s->subcalls, PT_METRICS_ROUTES);
        nhist = merge_hists(hist, nhist, s->subcall_hists, PT_METRICS_HISTS);
    }
    fputs("# HELP portico_aggregate_calls_total Calls made by aggregate routes, by route, call "
          "and HTTP status (0: cancelled before an answer).\n"
          "# TYPE portico_aggregate_calls_total counter\n",
          out);
    for (size_t i = 0; i < ncnt; i++) {
        fputs("portico_aggregate_calls_total{", out);
        put_route_call(out, cnt[i].name);
        fprintf(out, ",code=\"%d\"} %llu\n", cnt[i].code, (unsigned long long)cnt[i].count);
    }
    fputs("# HELP portico_aggregate_call_duration_seconds Duration of the calls of aggregate "
          "routes, by route and call.\n"
          "# TYPE portico_aggregate_call_duration_seconds histogram\n",
          out);
    for (size_t i = 0; i < nhist; i++)
        render_hist(out, "portico_aggregate_call_duration_seconds", put_route_call, hist[i].name,
                    hist[i].b, hist[i].sum, hist[i].count);
    free(cnt);
    free(hist);
}

/* Adds the used cluster slots of t[0..tn) to agg[0..n) by name; returns the new n. */
static size_t merge_clusters(pt_metrics_agg_cluster_t *agg, size_t n,
                             const pt_metrics_cluster_slot_t *t, size_t tn)
{
    for (size_t k = 0; k < tn; k++) {
        const pt_metrics_cluster_slot_t *c = &t[k];
        if (!atomic_load_explicit(&c->used, memory_order_acquire))
            continue;
        size_t j = 0;
        while (j < n && strcmp(agg[j].name, c->name) != 0)
            j++;
        if (j == n)
            agg[n++].name = c->name;
        for (unsigned i = 0; i < PT_METRICS_CLASSES; i++)
            agg[j].classes[i] += atomic_load_explicit(&c->classes[i], RLX);
        for (unsigned i = 0; i < PT_METRICS_BUCKETS; i++)
            agg[j].b[i] += atomic_load_explicit(&c->buckets[i], RLX);
        agg[j].sum += atomic_load_explicit(&c->sum_us, RLX);
    }
    return n;
}

void pt_metrics_totals(pt_metrics_totals_t *t, pt_metrics_shard_t *const *shards, unsigned n)
{
    memset(t, 0, sizeof(*t));
    t->req = calloc((size_t)n * PT_METRICS_ROUTES + 1, sizeof(*t->req));
    t->uperr = calloc((size_t)n * PT_METRICS_UPERRS + 1, sizeof(*t->uperr));
    t->upev = calloc((size_t)n * PT_METRICS_UPERRS + 1, sizeof(*t->upev));
    t->hist = calloc((size_t)n * PT_METRICS_HISTS + 1, sizeof(*t->hist));
    t->cl = calloc((size_t)n * PT_METRICS_CLUSTERS + 1, sizeof(*t->cl));
    if (t->req == NULL || t->uperr == NULL || t->upev == NULL || t->hist == NULL || t->cl == NULL)
        abort();
    for (unsigned i = 0; i < n; i++) {
        const pt_metrics_shard_t *s = shards[i];
        if (s == NULL)
            continue;
        /* sessions ended before sessions opened: open = opened - ended never goes negative */
        t->ws_sessions += atomic_load_explicit(&s->ws_sessions, memory_order_acquire);
        t->ws_opened += atomic_load_explicit(&s->ws_opened, memory_order_acquire);
        t->conns_active += atomic_load_explicit(&s->conns_active, RLX);
        t->conns_total += atomic_load_explicit(&s->conns_total, RLX);
        t->bytes_in += atomic_load_explicit(&s->bytes_in, RLX);
        t->bytes_out += atomic_load_explicit(&s->bytes_out, RLX);
        t->log_dropped += atomic_load_explicit(&s->log_dropped, RLX);
        t->tunnels_active += atomic_load_explicit(&s->tunnels_active, RLX);
        t->tunnels_total += atomic_load_explicit(&s->tunnels_total, RLX);
        t->h2_streams_active += atomic_load_explicit(&s->h2_streams_active, RLX);
        for (size_t k = 0; k < 2; k++)
            t->ws_msgs[k] += atomic_load_explicit(&s->ws_msgs[k], RLX);
        for (size_t k = 0; k < PT_METRICS_WS_CLOSE; k++)
            t->ws_close[k] += atomic_load_explicit(&s->ws_close[k], RLX);
        t->nreq = merge_counters(t->req, t->nreq, s->requests, PT_METRICS_ROUTES);
        t->nuperr = merge_counters(t->uperr, t->nuperr, s->uperrs, PT_METRICS_UPERRS);
        t->nupev = merge_counters(t->upev, t->nupev, s->upevents, PT_METRICS_UPERRS);
        t->nhist = merge_hists(t->hist, t->nhist, s->hists, PT_METRICS_HISTS);
        t->ncl = merge_clusters(t->cl, t->ncl, s->clusters, PT_METRICS_CLUSTERS);
    }
    if (t->ws_opened < t->ws_sessions) /* a worker's reads raced its writes */
        t->ws_opened = t->ws_sessions;
}

void pt_metrics_totals_dispose(pt_metrics_totals_t *t)
{
    free(t->req);
    free(t->uperr);
    free(t->upev);
    free(t->hist);
    free(t->cl);
    memset(t, 0, sizeof(*t));
}

/* `cluster="NAME"` */
static void put_cluster(FILE *out, const char *name)
{
    fputs("cluster=\"", out);
    put_label(out, name);
    fputs("\"", out);
}

static void render_clusters(FILE *out, const pt_metrics_totals_t *t)
{
    static const char *const cls[PT_METRICS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
    fputs("# HELP portico_cluster_requests_total Requests whose last upstream attempt went to the "
          "cluster, by the class of the status the client got.\n"
          "# TYPE portico_cluster_requests_total counter\n",
          out);
    for (size_t i = 0; i < t->ncl; i++)
        for (unsigned k = 0; k < PT_METRICS_CLASSES; k++)
            if (t->cl[i].classes[k] != 0) {
                fputs("portico_cluster_requests_total{", out);
                put_cluster(out, t->cl[i].name);
                fprintf(out, ",class=\"%s\"} %llu\n", cls[k],
                        (unsigned long long)t->cl[i].classes[k]);
            }
    fputs("# HELP portico_cluster_upstream_duration_seconds Time those requests waited for the "
          "cluster, by cluster.\n"
          "# TYPE portico_cluster_upstream_duration_seconds histogram\n",
          out);
    for (size_t i = 0; i < t->ncl; i++) {
        uint64_t count = 0;
        for (unsigned k = 0; k < PT_METRICS_BUCKETS; k++)
            count += t->cl[i].b[k];
        render_hist(out, "portico_cluster_upstream_duration_seconds", put_cluster, t->cl[i].name,
                    t->cl[i].b, t->cl[i].sum, count);
    }
}

void pt_metrics_render(FILE *out, pt_metrics_shard_t *const *shards, unsigned n,
                       const pt_metrics_globals_t *g)
{
    pt_metrics_totals_t t;
    pt_metrics_totals(&t, shards, n);
    agg_counter_t *req = t.req, *err = t.uperr, *ev = t.upev;
    agg_hist_t *hist = t.hist;
    size_t nreq = t.nreq, nerr = t.nuperr, nev = t.nupev, nhist = t.nhist;
    int64_t active = t.conns_active, tun_active = t.tunnels_active;
    uint64_t total = t.conns_total, in = t.bytes_in, outb = t.bytes_out, log_dropped = t.log_dropped;
    uint64_t tun_total = t.tunnels_total, ws_sessions = t.ws_sessions;
    const uint64_t *ws_msgs = t.ws_msgs, *ws_close = t.ws_close;

    fputs("# HELP portico_requests_total Requests answered, by route and HTTP status.\n"
          "# TYPE portico_requests_total counter\n",
          out);
    for (size_t i = 0; i < nreq; i++) {
        fputs("portico_requests_total{route=\"", out);
        put_label(out, req[i].name);
        fprintf(out, "\",code=\"%d\"} %llu\n", req[i].code, (unsigned long long)req[i].count);
    }
    fputs("# HELP portico_request_duration_seconds Time from request head to the end of the "
          "response, by route.\n"
          "# TYPE portico_request_duration_seconds histogram\n",
          out);
    for (size_t i = 0; i < nhist; i++)
        render_hist(out, "portico_request_duration_seconds", put_route, hist[i].name, hist[i].b,
                    hist[i].sum, hist[i].count);
    fputs("# HELP portico_upstream_duration_seconds Time spent waiting for upstreams, by route.\n"
          "# TYPE portico_upstream_duration_seconds histogram\n",
          out);
    for (size_t i = 0; i < nhist; i++)
        if (hist[i].ucount != 0)
            render_hist(out, "portico_upstream_duration_seconds", put_route, hist[i].name,
                        hist[i].ub, hist[i].usum, hist[i].ucount);
    fputs("# HELP portico_upstream_errors_total Failed upstream calls, by cluster and error.\n"
          "# TYPE portico_upstream_errors_total counter\n",
          out);
    for (size_t i = 0; i < nerr; i++) {
        fputs("portico_upstream_errors_total{cluster=\"", out);
        put_label(out, err[i].name);
        fprintf(out, "\",error=\"%s\"} %llu\n", pt_status_name(err[i].code),
                (unsigned long long)err[i].count);
    }
    static const char *const ev_metric[][2] = {
        {"portico_upstream_local_errors_total",
         "Upstream connections Portico could not make for lack of its own resources (fds, "
         "buffers), by cluster; never counted against an endpoint."},
        {"portico_upstream_pending_total",
         "Upstream calls that waited for a connection (max_connections_per_endpoint), by cluster."},
        {"portico_upstream_overflow_total",
         "Upstream calls answered 503 at once because the waiting queue was full "
         "(max_pending_per_endpoint), by cluster."},
        {"portico_upstream_breaker_trips_total",
         "Upstream calls answered 503 at once by the cluster's circuit_breaker (max_requests, "
         "max_pending, max_connections), by cluster."},
        {"portico_upstream_ejections_total",
         "Endpoints ejected by outlier detection (consecutive failures), by the cluster whose call "
         "saw the last failure."},
        {"portico_upstream_retries_total",
         "Attempts started again by a route's retry policy, by cluster."},
        {"portico_upstream_retry_budget_exhausted_total",
         "Retries not made because the cluster's retry budget was spent, by cluster."},
    };
    for (int kind = 0; kind < (int)(sizeof(ev_metric) / sizeof(ev_metric[0])); kind++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", ev_metric[kind][0], ev_metric[kind][1],
                ev_metric[kind][0]);
        for (size_t i = 0; i < nev; i++) {
            if (ev[i].code != kind)
                continue;
            fprintf(out, "%s{cluster=\"", ev_metric[kind][0]);
            put_label(out, ev[i].name);
            fprintf(out, "\"} %llu\n", (unsigned long long)ev[i].count);
        }
    }
    render_subcalls(out, shards, n);
    render_clusters(out, &t);
    fprintf(out,
            "# HELP portico_connections_active Client connections open now.\n"
            "# TYPE portico_connections_active gauge\n"
            "portico_connections_active %lld\n"
            "# HELP portico_connections_total Client connections accepted.\n"
            "# TYPE portico_connections_total counter\n"
            "portico_connections_total %llu\n"
            "# HELP portico_request_bytes_total Request body bytes received.\n"
            "# TYPE portico_request_bytes_total counter\n"
            "portico_request_bytes_total %llu\n"
            "# HELP portico_response_bytes_total Response body bytes sent.\n"
            "# TYPE portico_response_bytes_total counter\n"
            "portico_response_bytes_total %llu\n"
            "# HELP portico_access_log_dropped_total Access-log lines lost: the file could "
            "not be opened (retried every second) or written.\n"
            "# TYPE portico_access_log_dropped_total counter\n"
            "portico_access_log_dropped_total %llu\n",
            (long long)active, (unsigned long long)total, (unsigned long long)in,
            (unsigned long long)outb, (unsigned long long)log_dropped);
    fprintf(out,
            "# HELP portico_trace_spans_exported_total Spans accepted by the OTLP collector.\n"
            "# TYPE portico_trace_spans_exported_total counter\n"
            "portico_trace_spans_exported_total %llu\n"
            "# HELP portico_trace_spans_dropped_total Spans lost: a worker's queue was full, the "
            "collector refused or could not be reached, or a worker exited first.\n"
            "# TYPE portico_trace_spans_dropped_total counter\n"
            "portico_trace_spans_dropped_total %llu\n"
            "# HELP portico_trace_export_failures_total OTLP POSTs that failed.\n"
            "# TYPE portico_trace_export_failures_total counter\n"
            "portico_trace_export_failures_total %llu\n",
            (unsigned long long)pt_trace_spans_exported(), (unsigned long long)pt_trace_spans_dropped(),
            (unsigned long long)pt_trace_export_failures());
    fprintf(out,
            "# HELP portico_tunnels_active Upgraded (101) and extended CONNECT tunnels open now.\n"
            "# TYPE portico_tunnels_active gauge\n"
            "portico_tunnels_active %lld\n"
            "# HELP portico_tunnels_total Tunnels opened (their requests also count in "
            "portico_requests_total, code 101 or 200, when they end).\n"
            "# TYPE portico_tunnels_total counter\n"
            "portico_tunnels_total %llu\n",
            (long long)tun_active, (unsigned long long)tun_total);
    fprintf(out,
            "# HELP portico_http2_streams_active Client HTTP/2 streams open now.\n"
            "# TYPE portico_http2_streams_active gauge\n"
            "portico_http2_streams_active %lld\n"
            "# HELP portico_websockets_active WebSocket sessions open now (proxied and bridged).\n"
            "# TYPE portico_websockets_active gauge\n"
            "portico_websockets_active %llu\n",
            (long long)t.h2_streams_active, (unsigned long long)(t.ws_opened - t.ws_sessions));
    fprintf(out,
            "# HELP portico_websocket_sessions_total WebSocket sessions ended.\n"
            "# TYPE portico_websocket_sessions_total counter\n"
            "portico_websocket_sessions_total %llu\n"
            "# HELP portico_websocket_messages_total WebSocket data messages, by direction "
            "(in: from clients).\n"
            "# TYPE portico_websocket_messages_total counter\n"
            "portico_websocket_messages_total{direction=\"in\"} %llu\n"
            "portico_websocket_messages_total{direction=\"out\"} %llu\n"
            "# HELP portico_websocket_closes_total WebSocket sessions by the close code the client "
            "got (1006: none).\n"
            "# TYPE portico_websocket_closes_total counter\n",
            (unsigned long long)ws_sessions, (unsigned long long)ws_msgs[0],
            (unsigned long long)ws_msgs[1]);
    for (size_t k = 0; k < PT_METRICS_WS_CLOSE; k++) {
        if (ws_close[k] == 0)
            continue;
        if (k < 16)
            fprintf(out, "portico_websocket_closes_total{code=\"%zu\"} %llu\n", 1000 + k,
                    (unsigned long long)ws_close[k]);
        else
            fprintf(out, "portico_websocket_closes_total{code=\"%s\"} %llu\n",
                    k == 16 ? "3xxx" : k == 17 ? "4xxx" : "1006",
                    (unsigned long long)ws_close[k]);
    }
    if (g != NULL)
        fprintf(out,
                "# HELP portico_config_generation Generation of the configuration in use.\n"
                "# TYPE portico_config_generation gauge\n"
                "portico_config_generation %llu\n"
                "# HELP portico_config_reloads_total Configuration reloads, by result.\n"
                "# TYPE portico_config_reloads_total counter\n"
                "portico_config_reloads_total{result=\"ok\"} %llu\n"
                "portico_config_reloads_total{result=\"failed\"} %llu\n"
                "# HELP portico_workers Worker threads.\n"
                "# TYPE portico_workers gauge\n"
                "portico_workers %u\n"
                "# HELP portico_upstream_ejected_endpoints Upstream endpoints out of rotation now "
                "(outlier ejection), process-wide.\n"
                "# TYPE portico_upstream_ejected_endpoints gauge\n"
                "portico_upstream_ejected_endpoints %u\n",
                (unsigned long long)g->generation, (unsigned long long)g->reloads_ok,
                (unsigned long long)g->reloads_failed, g->workers, g->ejected);
    pt_metrics_totals_dispose(&t);
}
