/*
 * retry.c -- a route's `retry:` policy (core/route.h pt_retry_conf_t) around
 * the back ends: one call of the primitive (call.h) made of attempts, each an
 * ordinary back-end call (pt__upcall_dispatch) started with req->_route, so
 * that
 *   - its first pick avoids the endpoints earlier attempts tried (policy.c,
 *     pt_policy_pick, which reads req->_route), and
 *   - a failure is not retried inside the back end (only a REFUSED stream,
 *     once, as always) but reported in the route try (kind, replayable).
 *
 * What is retried, on `on:` conditions:
 *   connect        the connection could not be made: the request never left,
 *                  so every method, POST included;
 *   reset          the connection or stream died before any response byte;
 *   5xx            a 5xx answer; gateway-error: 502, 503, 504 answers;
 *   unavailable    gRPC status 14 (a Trailers-Only answer, or trailers with
 *                  no message before them);
 *   a per-try timeout (per_try_timeout set, the route's timeout not reached).
 * Everything but `connect` means the request may have reached the upstream:
 * on REST clusters only `methods` (default GET, HEAD, OPTIONS, PUT, DELETE;
 * POST only when listed); on gRPC clusters any call (gRPC's own retry rule:
 * the client chose the codes). In every case the request body must still be
 * replayable: the bytes taken from the client are kept (up to replay_limit);
 * once more than that went upstream, no retry. Never after a response byte
 * reached the caller: a 5xx or UNAVAILABLE answer being retried is paused
 * (on_data returns false) and dropped; a gRPC head is held until the first
 * message or the trailers, so that a status in the trailers can still be
 * retried.
 *
 * Back-off: attempt n waits d/2 + rand(d/2], d = min(max, base * 2^(n-1)), on
 * a timer of the worker's loop (never blocking); an attempt that cannot start
 * before the route's timeout is not made. Budget: per worker and cluster, a
 * retry is made only while retries in the last 10 s stay within `budget` %
 * of the calls started on the cluster in the same window (every call counts,
 * retried route or not), or while fewer than 10 retries were made in the
 * window (1/s), so a quiet cluster can retry at all (budget 0% means
 * none). Counted: portico_upstream_retries_total,
 * portico_upstream_retry_budget_exhausted_total.
 */
#include "core/xalloc.h"
#include "upstream/call_internal.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/route.h"
#include "core/route_retry.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "upstream/grpc.h"

enum { BUDGET_MIN_RETRIES = 10, GRPC_UNAVAILABLE = 14 };

typedef struct rt_call {
    pt_upcall_t base;             /* ops: first member */
    pt_worker_t *w;
    const pt_retry_conf_t *rc;
    pt_upcall_cbs_t cbs;
    void *ud;
    pt_upcall_req_t ireq;         /* the caller's request as each attempt sends it */
    pt_policy_route_try_t rt;     /* endpoints tried; how the last attempt failed */
    pt_upcall_t *inner;           /* the running attempt, or NULL (back-off) */
    const char *last_ep;          /* endpoint of the last attempt (worker lifetime) */
    struct event timer;           /* back-off */
    uint64_t deadline_ms;         /* the route's timeout, from the first attempt */
    uint64_t delay_ms;            /* the back-off chosen by can_retry() */
    unsigned attempts;
    bool grpc;
    bool method_ok;               /* may be retried once sent */
    /* request body as taken from the caller: replayed from the start each attempt */
    char *body;
    size_t body_len, body_cap, body_off;
    bool body_eof, body_lost;
    /* response */
    bool committed;               /* a response byte went to the caller */
    bool discarding;              /* this attempt's answer is dropped: a retry is scheduled */
    int held_status;              /* gRPC head held until a message or the trailers */
    pt_header_t *held;
    size_t held_cnt;
    bool holding;
    /* callbacks into the caller may cancel us */
    unsigned in_cb;
    bool dead;
} rt_call_t;

/* ---- budget ------------------------------------------------------------------- */

static pt__upcluster_t *budget_of(pt_worker_t *w, const pt_cluster_t *cl)
{
    pt__upworker_t *uw = w->upstream_http;
    if (uw == NULL)
        return NULL;
    pt__upcluster_t *s = pt__up_cluster(uw, cl);
    uint64_t sec = pt_now_ms_coarse() / 1000u; /* per-second buckets: a tick late is fine */
    if (sec != s->budget_sec) {
        uint64_t gap = sec - s->budget_sec;
        for (uint64_t i = 1; i <= gap && i <= PT__UP_BUDGET_SECS; i++) {
            size_t b = (size_t)((s->budget_sec + i) % PT__UP_BUDGET_SECS);
            s->calls[b] = s->retries[b] = 0;
        }
        s->budget_sec = sec;
    }
    return s;
}

void pt__upretry_count_call(pt_worker_t *w, const pt_cluster_t *cl)
{
    pt__upcluster_t *s = budget_of(w, cl);
    if (s != NULL)
        s->calls[s->budget_sec % PT__UP_BUDGET_SECS]++;
}

/* Takes one retry from the budget of `cl`; false (counted) when it is spent. */
static bool budget_take(pt_worker_t *w, const pt_cluster_t *cl, unsigned pct)
{
    pt__upcluster_t *s = budget_of(w, cl);
    if (s == NULL)
        return pct > 0;
    uint64_t calls = 0, retries = 0;
    for (size_t i = 0; i < PT__UP_BUDGET_SECS; i++) {
        calls += s->calls[i];
        retries += s->retries[i];
    }
    bool ok = pct > 0 && ((retries + 1) * 100 <= calls * pct || retries < BUDGET_MIN_RETRIES);
    if (!ok) {
        pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_RETRY_BUDGET);
        return false;
    }
    s->retries[s->budget_sec % PT__UP_BUDGET_SECS]++;
    return true;
}

/* ---- decisions ------------------------------------------------------------------- */

/*
 * Whether one more attempt may be made; `sent`: the request may have reached
 * the upstream. Sets c->delay_ms. Takes from the budget (last check).
 */
static bool can_retry(rt_call_t *c, bool sent)
{
    const pt_retry_conf_t *rc = c->rc;
    if (c->dead || c->committed || c->attempts >= rc->attempts || c->body_lost ||
        (sent && !c->method_ok))
        return false;
    uint64_t d = rc->backoff_base_ms;
    for (unsigned i = 1; i < c->attempts && d < rc->backoff_max_ms; i++)
        d *= 2;
    if (d > rc->backoff_max_ms)
        d = rc->backoff_max_ms;
    c->delay_ms = d / 2 + (d > 1 ? pt_route_rand() % (d - d / 2) + 1 : d - d / 2);
    if (pt_now_ms() + c->delay_ms >= c->deadline_ms)
        return false;
    return budget_take(c->w, c->ireq.cluster, rc->budget_pct);
}

/* ---- attempts ------------------------------------------------------------------- */

static const pt_upcall_cbs_t inner_cbs;

static void rt_free(rt_call_t *c)
{
    if (c->inner != NULL)
        pt_upcall_cancel(c->inner);
    event_del(&c->timer);
    free(c->body);
    free(c->held);
    free(c);
}

/* Around every call into the caller, which may cancel us. False: `c` is gone. */
static void enter(rt_call_t *c)
{
    c->in_cb++;
}

static bool leave(rt_call_t *c)
{
    if (--c->in_cb == 0 && c->dead) {
        rt_free(c);
        return false;
    }
    return !c->dead;
}

static int start_attempt(rt_call_t *c)
{
    uint64_t now = pt_now_ms();
    uint64_t left = c->deadline_ms > now ? c->deadline_ms - now : 1;
    uint64_t per = c->rc->per_try_timeout_ms;
    c->ireq.timeout_ms = per != 0 && per < left ? per : left;
    c->rt.failed = false;
    c->body_off = 0;
    c->discarding = false;
    c->attempts++;
    return pt__upcall_dispatch(c->w, &c->ireq, &inner_cbs, c, &c->inner);
}

static void finish(rt_call_t *c, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    enter(c);
    c->cbs.on_done(c->ud, st, reason, t, tcnt);
    c->in_cb--;
    rt_free(c); /* the call ends with on_done whatever the caller did in it */
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rt_call_t *c = arg;
    pt_upcall_stop(&c->inner); /* a dropped answer, paused since */
    pt_observe_upstream_event(c->w, c->ireq.cluster, PT_OBSERVE_UP_RETRY);
    int rc = start_attempt(c);
    if (rc != 0) {
        c->inner = NULL;
        finish(c, rc, rc == PT_ERR_UNAVAILABLE ? "no upstream endpoint available for a retry"
                                               : "upstream retry failed to start",
               NULL, 0);
    }
}

static void schedule(rt_call_t *c)
{
    struct timeval tv = {(time_t)(c->delay_ms / 1000u), (suseconds_t)((c->delay_ms % 1000u) * 1000u)};
    evtimer_add(&c->timer, &tv);
}

/* ---- the held gRPC head ------------------------------------------------------------ */

static void hold_head(rt_call_t *c, int status, const pt_header_t *h, size_t cnt)
{
    size_t bytes = cnt * sizeof(pt_header_t);
    for (size_t i = 0; i < cnt; i++)
        bytes += h[i].name.len + h[i].value.len + 2;
    free(c->held);
    c->held = pt_xcheck(malloc(bytes != 0 ? bytes : 1));
    char *p = (char *)(c->held + cnt);
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t *dst[2] = {&c->held[i].name, &c->held[i].value};
        const pt_str_t src[2] = {h[i].name, h[i].value};
        for (int k = 0; k < 2; k++) {
            if (src[k].len != 0)
                memcpy(p, src[k].base, src[k].len);
            p[src[k].len] = '\0';
            *dst[k] = (pt_str_t){p, src[k].len};
            p += src[k].len + 1;
        }
    }
    c->held_cnt = cnt;
    c->held_status = status;
    c->holding = true;
}

/* Hands the held head to the caller. False: `c` is gone. */
static bool flush_head(rt_call_t *c)
{
    c->holding = false;
    c->committed = true;
    enter(c);
    c->cbs.on_head(c->ud, c->held_status, c->held, c->held_cnt);
    return leave(c);
}

static int grpc_status_of(const pt_header_t *h, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        if (pt_str_eq(h[i].name, PT_STR("grpc-status")))
            return pt_grpc_status_parse(h[i].value);
    return -1;
}

/* ---- the attempt's callbacks --------------------------------------------------------- */

static size_t in_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    rt_call_t *c = ud;
    if (c->body_off < c->body_len) { /* a replay: what the caller gave before */
        size_t n = c->body_len - c->body_off < max ? c->body_len - c->body_off : max;
        memcpy(buf, c->body + c->body_off, n);
        c->body_off += n;
        *eof = c->body_eof && c->body_off == c->body_len;
        return n;
    }
    if (c->body_eof) {
        *eof = true;
        return 0;
    }
    bool e = false;
    enter(c);
    size_t n = c->cbs.read_body(c->ud, buf, max, &e);
    if (!leave(c)) {
        *eof = false;
        return 0;
    }
    c->body_eof = e;
    if (n != 0 && !c->body_lost) {
        if (c->body_len + n > c->rc->replay_limit) {
            c->body_lost = true; /* more than we keep went upstream: no more retries */
            free(c->body);
            c->body = NULL;
            c->body_len = c->body_cap = 0;
        } else {
            if (c->body_len + n > c->body_cap) {
                size_t cap = c->body_cap != 0 ? c->body_cap * 2 : 4096;
                while (cap < c->body_len + n)
                    cap *= 2;
                c->body = pt_xrealloc(c->body, cap);
                c->body_cap = cap;
            }
            memcpy(c->body + c->body_len, buf, n);
            c->body_len += n;
        }
    }
    c->body_off = c->body_len;
    *eof = e;
    return n;
}

static void in_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    rt_call_t *c = ud;
    const pt_retry_conf_t *rc = c->rc;
    c->last_ep = pt_upcall_endpoint(c->inner);
    int gs = c->grpc ? grpc_status_of(h, cnt) : -1;
    bool retriable = (status >= 500 && status <= 599 && (rc->on & PT_RETRY_ON_5XX)) ||
                     ((status == 502 || status == 503 || status == 504) &&
                      (rc->on & PT_RETRY_ON_GATEWAY)) ||
                     (gs == GRPC_UNAVAILABLE && (rc->on & PT_RETRY_ON_UNAVAILABLE));
    if (retriable && can_retry(c, true)) {
        c->discarding = true; /* paused by on_data; cancelled by the back-off timer */
        schedule(c);
        return;
    }
    if (c->grpc && gs < 0 && status == 200 && (rc->on & PT_RETRY_ON_UNAVAILABLE) &&
        c->attempts < rc->attempts && !c->body_lost) {
        hold_head(c, status, h, cnt); /* the status may come in the trailers */
        return;
    }
    c->committed = true;
    enter(c);
    c->cbs.on_head(c->ud, status, h, cnt);
    leave(c);
}

static bool in_on_data(void *ud, const char *data, size_t len)
{
    rt_call_t *c = ud;
    if (c->discarding)
        return false;
    if (c->holding && !flush_head(c))
        return false;
    enter(c);
    bool more = c->cbs.on_data(c->ud, data, len);
    return leave(c) && more;
}

static void in_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    rt_call_t *c = ud;
    c->last_ep = pt_upcall_endpoint(c->inner);
    c->inner = NULL; /* the back end frees it after we return */
    if (c->discarding)
        return; /* the back-off timer starts the next attempt */
    if (c->holding) {
        if (st == 0 && grpc_status_of(t, tcnt) == GRPC_UNAVAILABLE && can_retry(c, true)) {
            c->holding = false;
            schedule(c);
            return;
        }
        if (!flush_head(c)) /* any other end after a head: the caller sees both */
            return;
    }
    if (st != 0 && !c->committed) {
        const pt_retry_conf_t *rc = c->rc;
        bool again = false;
        if (c->rt.failed && c->rt.kind == PT_POLICY_FAIL_CONNECT)
            again = (rc->on & PT_RETRY_ON_CONNECT) && can_retry(c, false);
        else if (c->rt.failed && (c->rt.kind == PT_POLICY_FAIL_EARLY ||
                                  c->rt.kind == PT_POLICY_FAIL_REFUSED))
            again = (rc->on & PT_RETRY_ON_RESET) && can_retry(c, true);
        else if (st == PT_ERR_TIMEOUT && rc->per_try_timeout_ms != 0)
            again = can_retry(c, true);
        if (again) {
            schedule(c);
            return;
        }
    }
    finish(c, st, reason, t, tcnt);
}

static const pt_upcall_cbs_t inner_cbs = {
    .read_body = in_read_body,
    .on_head = in_on_head,
    .on_data = in_on_data,
    .on_done = in_on_done,
};

/* ---- the call's ops ------------------------------------------------------------------ */

static void rt_body_ready(pt_upcall_t *b)
{
    rt_call_t *c = (rt_call_t *)b;
    if (c->inner != NULL && !c->discarding)
        pt_upcall_body_ready(c->inner);
}

static void rt_resume(pt_upcall_t *b)
{
    rt_call_t *c = (rt_call_t *)b;
    if (c->inner != NULL && !c->discarding)
        pt_upcall_resume(c->inner);
}

static void rt_cancel(pt_upcall_t *b)
{
    rt_call_t *c = (rt_call_t *)b;
    if (c->in_cb == 0) {
        rt_free(c);
        return;
    }
    c->dead = true; /* freed when the callback we are in returns */
    pt_upcall_stop(&c->inner);
    event_del(&c->timer);
}

static const char *rt_endpoint(const pt_upcall_t *b)
{
    const rt_call_t *c = (const rt_call_t *)b;
    return c->inner != NULL ? pt_upcall_endpoint(c->inner) : c->last_ep;
}

static const pt__upcall_ops_t rt_ops = {
    .body_ready = rt_body_ready,
    .resume = rt_resume,
    .cancel = rt_cancel,
    .endpoint = rt_endpoint,
};

int pt__upretry_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                      void *ud, pt_upcall_t **out)
{
    if (cbs->on_done == NULL || cbs->on_head == NULL || cbs->on_data == NULL ||
        (r->has_body && cbs->read_body == NULL))
        return PT_ERR_INTERNAL;
    rt_call_t *c = pt_xcalloc(1, sizeof(*c));
    c->base.ops = &rt_ops;
    c->w = w;
    c->rc = r->retry;
    c->cbs = *cbs;
    c->ud = ud;
    c->ireq = *r;
    c->ireq.retry = NULL;
    c->ireq._route = &c->rt;
    c->grpc = r->cluster->protocol == PT_PROTO_GRPC;
    c->method_ok = c->grpc || (pt_method_bit(r->method) & c->rc->methods) != 0;
    c->body_eof = !r->has_body;
    c->deadline_ms = pt_now_ms() + pt__up_timeout_ms(r);
    evtimer_assign(&c->timer, w->base, on_backoff, c);
    int rc = start_attempt(c);
    if (rc != 0) {
        c->inner = NULL;
        free(c);
        return rc;
    }
    *out = &c->base;
    return 0;
}
