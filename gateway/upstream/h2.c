/*
 * h2.c -- upstream calls over native HTTP/2 client sessions (nghttp2).
 *
 * Why not libcurl: Debian's libcurl 7.88 cannot reuse an h2c (prior
 * knowledge) connection (curl#10634), so every gRPC call would pay a new TCP
 * connection. Here each worker keeps, per endpoint (a "pool"), a few
 * connections with many concurrent streams each:
 *
 *   call -> pool (endpoint URL, TLS settings) -> connection with a free
 *   stream slot (fill first; the server's SETTINGS_MAX_CONCURRENT_STREAMS is
 *   respected, another connection is opened when every one is full, at most
 *   max_connections_per_endpoint, policy.h) -> one stream.
 *
 * `http://` endpoints speak h2c with prior knowledge; `https://` ones TLS
 * through OpenSSL on the socket with the cluster's settings (upstream/tls.h).
 * ALPN: gRPC clusters offer only "h2" (a server without it fails the
 * connection: "upstream did not negotiate h2 (ALPN)"); REST clusters offer
 * "h2" and "http/1.1", as libcurl did. When such a server picks http/1.1 (or
 * no ALPN), the calls waiting on that connection, and the pool's calls for
 * H1_REMEMBER_MS after it, continue over HTTP/1.1 through http.c (libcurl,
 * the back end of https:// HTTP/1.1): the caller keeps its handle, whose ops
 * then forward to that call ("HTTP/1.1 fallback" below). The next connection
 * made after that time asks again.
 *
 * Bodies stream both ways. The request body is a DEFERRED data provider that
 * pulls the caller's read_body; pt_upcall_body_ready() resumes it. Response
 * DATA goes to on_data, and the stream's flow-control window is given back
 * (nghttp2_session_consume) only for bytes the caller accepted: once on_data
 * says "pause", later bytes are held (at most one stream window) and not
 * consumed, so a slow client stops the upstream stream, not the connection.
 *
 * Failures. A stream the server did not process (REFUSED_STREAM, or above the
 * last-stream-id of a GOAWAY; nghttp2 closes those with REFUSED_STREAM) is
 * retried once, on another connection, replaying the request body from a copy
 * kept until the response head arrives (at most REPLAY_MAX bytes, else no
 * retry). A connection that could not be made is retried on another endpoint
 * (`retries` of the cluster). Endpoint choice, ejection and these retry
 * decisions are policy.h's, as for every back end. A connection that died after the
 * request went out fails the call with PT_ERR_UPSTREAM unless the request is
 * idempotent and no response byte came. Timeouts cover the whole exchange;
 * expiry and cancellation send RST_STREAM(CANCEL).
 *
 * Response rules. The session runs with nghttp2's HTTP messaging checks off
 * (no_http_messaging: they cost ~1.7k instructions per gRPC answer, a fifth
 * of reading it; ours ~0.8k) and resp_field() (each field), on_frame_recv()
 * (each block, the end) and on_data_chunk() make the same checks on what a
 * server sends: field names lowercase tokens, values without
 * control characters or surrounding blanks, one :status of three digits (not
 * 101) before the regular fields and none in trailers, no connection-specific
 * fields, te only "trailers", content-length once, numeric and equal to the
 * DATA received (0 for HEAD, 204, 304), no DATA or end after a 1xx before the
 * final head, trailers only with END_STREAM. A fault resets the stream with
 * PROTOCOL_ERROR and fails the call before its head when it can, as nghttp2
 * did (unit.upstream_h2: test_malformed_responses).
 *
 * Re-entrancy. nghttp2 must not be re-entered (mem_recv / mem_send), and the
 * caller's callbacks may cancel or start calls. So: `depth` counts how deep
 * we are in our own machinery; a call cancelled at depth > 0 is freed on the
 * way out (zombies), a failed connection likewise (dead list); submissions
 * (submit_request / rst_stream / resume_data) only queue frames and are safe
 * anywhere; the frames are written by a per-connection flush event. on_done
 * always runs from the worker's done event, never from inside an API call.
 */
#include "core/xalloc.h"
#include "http/h2mem.h"
#include "http/hpack_policy.h"
#include "net/sys.h"
#include "upstream/h2.h"
#include "upstream/hstore.h"
#include "upstream/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/status.h"

enum {
    HDR_MAX_BYTES = 64 * 1024,       /* response head (or trailers): sum of name+value+32 */
    HDR_MAX_CNT = 256,
    REPLAY_MAX = 64 * 1024,          /* request body kept for a safe retry */
    ASSUMED_MAX_STREAMS = 100,       /* until the server's SETTINGS arrive */
    STREAM_WINDOW = 256 * 1024,
    CONN_WINDOW = 16 * 1024 * 1024,
    IDLE_MS = 60000,                 /* connection without streams is closed after */
    DEFAULT_TIMEOUT_MS = 15000,
    DEFAULT_CONNECT_MS = 5000,
    RBUF_SIZE = 64 * 1024,
    WBUF_HIGH = 64 * 1024,           /* serialise frames up to this much per write */
    HELD_CHUNK = 16 * 1024,          /* held bytes are re-delivered in slices of this */
    H1_REMEMBER_MS = 60000,          /* an endpoint that picked http/1.1 gets HTTP/1.1 this long */
};

typedef struct h2w h2w_t;
typedef struct h2pool pool_t;
typedef struct h2conn conn_t;
typedef struct h2call call_t;

/* How a failed attempt may be retried. */
typedef enum { K_NONE = 0, K_CONNECT, K_REFUSED, K_EARLY, K_OTHER, K_LOCAL } fail_kind_t;

/* ---- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    char *d = strdup(s != NULL ? s : "");
    if (d == NULL)
        abort();
    return d;
}

/* Grows *buf (capacity *cap) to hold `need` bytes. */
static void reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    *buf = pt_xrealloc(*buf, c);
    *cap = c;
}

/* ---- state -------------------------------------------------------------- */

struct h2w {
    pt_worker_t *w;
    unsigned depth;
    pool_t *pools;
    call_t *calls;                 /* every live call (doubly linked) */
    call_t *done_head, *done_tail; /* results waiting for on_done (or a retry) */
    call_t *zombies;               /* cancelled at depth > 0 */
    conn_t *dead;                  /* failed or closed at depth > 0 */
    struct event done_ev;
    bool done_sched;
    struct evdns_base *dns;
    pt_uph2_stats_t stats;
    call_t *spare;                 /* freed calls kept for reuse with their buffers (call_new) */
    unsigned spare_cnt;
    struct {                       /* libevent common timeouts of the call deadlines (call_timeout) */
        uint64_t ms;
        const struct timeval *tv;
    } ct[8];
    unsigned ct_cnt;
};

struct h2pool {
    h2w_t *hw;
    char *url, *host, *ca_file;
    char *tls_name;                /* the name the server's certificate must carry (and SNI) */
    char *authority;               /* "host:port": :authority when neither cluster nor call set one */
    uint16_t port;
    bool tls, verify;
    bool h1_ok;                    /* REST: ALPN offers http/1.1 too, and calls fall back to it */
    uint64_t h1_until;             /* the endpoint picked http/1.1: calls go to http.c until then */
    SSL_CTX *ssl_ctx;
    conn_t *conns;
    unsigned nconns;
    pt_policy_ep_t *ep;            /* the policy's endpoint (health); outlives the pool */
    uint32_t max_streams;          /* the server's last SETTINGS_MAX_CONCURRENT_STREAMS (0: unknown) */
    pool_t *next;
};

typedef enum { C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_READY, C_CLOSED } cstate_t;

typedef struct slot {
    int32_t sid;                   /* 0 empty, -1 deleted */
    call_t *c;
} slot_t;

/* Resolver context: outlives a connection that is freed while resolving. */
typedef struct resolve {
    conn_t *conn;
} resolve_t;

struct h2conn {
    pool_t *pool;
    h2w_t *hw;
    int fd;
    SSL *ssl;
    cstate_t st;
    bool ever_ready;
    bool goaway;                   /* no new streams on this connection */
    bool settings_recvd;
    bool flush_sched;
    bool wev_on;
    bool closing;                  /* idle close: GOAWAY flushed, then freed */
    bool timer_on;                 /* `timer` is pending (connect, idle or closing) */
    bool to_h1;                    /* ALPN said http/1.1: its calls go on in http.c */
    uint8_t hpack_seeded;          /* never-indexed names indexed once (hpack_policy.h) */
    nghttp2_session *ng;
    struct event rev, wev, flush_ev, timer;
    bool events_set;
    slot_t *tab;                   /* stream id -> call (open addressing) */
    size_t tab_cap, tab_used;      /* used: live + deleted slots */
    unsigned active;               /* calls with a stream here */
    char *wbuf;
    size_t woff, wlen, wcap;
    uint64_t connect_ms;           /* connect timeout */
    int sys_err;                   /* errno of a failed socket()/connect(), for the policy */
    resolve_t *res;
    conn_t *prev, *next;           /* pool->conns */
    conn_t *dead_next;
};

struct h2call {
    pt_upcall_t base;              /* first member: call.c dispatches through base.ops */
    h2w_t *hw;
    const pt_upcall_req_t *r;
    pt_upcall_cbs_t cbs;
    void *ud;
    conn_t *conn;                  /* connection of the current attempt, while its stream is open */
    int32_t sid;
    size_t ep_idx;
    pt_policy_try_t pol;           /* endpoints tried, attempts (policy.h) */
    uint64_t deadline_ms;
    struct event tmo;
    /* per attempt */
    bool headers_sent;             /* our HEADERS went out */
    bool got_head, got_end, hdr_overflow, deferred, in_read;
    int status;
    uint32_t hdr_bytes;
    /* the response's HTTP/2 message rules (resp_* below; nghttp2's own checks are off) */
    bool status_seen;              /* :status of the current head block */
    bool fields_seen;              /* a regular field of the current block: no pseudo-header after it */
    const char *bad;               /* why the response broke them (its stream was reset), or NULL */
    int64_t clen;                  /* content-length of the final head, -1: none */
    int64_t rlen;                  /* DATA bytes received */
    pt__hstore_t head, trl;
    char *lower;                   /* request field names lowercased for nghttp2 (submit) */
    size_t lower_cap;
    char clen_buf[24];             /* the request's content-length digits (submit) */
    /* request body */
    bool body_eof;
    bool no_replay;
    char *replay;
    size_t replay_len, replay_cap, replay_off;
    /* response delivery */
    bool paused;
    char *held;
    size_t held_off, held_len, held_cap;
    /* result */
    bool finished, finish_wait, in_done, canceled;
    int fst;
    const char *freason;
    fail_kind_t fkind;
    call_t *prev, *next;           /* hw->calls */
    call_t *link;                  /* done queue or zombies */
    pt_upcall_t *h1;               /* HTTP/1.1 fallback: the http.c call this one forwards to */
};


static void conn_flush(conn_t *k);
static void conn_fail(conn_t *k, int st, const char *why);
static void attempt(call_t *c, size_t idx);
static void on_done_ev(evutil_socket_t fd, short what, void *arg);
static void conn_to_h1(conn_t *k);
static void call_to_h1(call_t *c);

/* ---- worker ------------------------------------------------------------- */

/* The worker's state lives in its own slot (w->upstream_h2), so any thread
 * that holds the worker -- its loop, or the main thread at teardown -- finds it. */
static h2w_t *hw_of(pt_worker_t *w, bool create)
{
    h2w_t *hw = w->upstream_h2;
    if (hw != NULL || !create)
        return hw;
    hw = pt_xcalloc(1, sizeof(*hw));
    hw->w = w;
    event_assign(&hw->done_ev, w->base, -1, 0, on_done_ev, hw);
    w->upstream_h2 = hw;
    return hw;
}

static uint64_t mono_ms(void)
{
    return pt_now_ms();
}

static void enter(h2w_t *hw)
{
    hw->depth++;
}

static void conn_free(conn_t *k);
static void call_free(call_t *c);

/* Leaves our machinery; at the outermost level, frees what was doomed inside. */
static void leave(h2w_t *hw)
{
    if (--hw->depth != 0)
        return;
    while (hw->dead != NULL) {
        conn_t *k = hw->dead;
        hw->dead = k->dead_next;
        conn_free(k);
    }
    while (hw->zombies != NULL) {
        call_t *c = hw->zombies;
        hw->zombies = c->link;
        call_free(c);
    }
}

/* ---- endpoints and pools ------------------------------------------------- */

/* Same URL and TLS settings, and the same endpoint for the policy (which keys https:// ones by
 * their authority too), so connect failures land on the endpoint the cluster's picks check. */
static pool_t *pool_find(h2w_t *hw, const pt_cluster_t *cl, const pt_endpoint_t *ep,
                         const pt_policy_ep_t *pe)
{
    char nbuf[256];
    const char *name = pt__uptls_name(cl, ep, nbuf, sizeof(nbuf));
    const char *ca = cl->ca_file != NULL ? cl->ca_file : "";
    bool h1_ok = cl->protocol == PT_PROTO_HTTP;
    for (pool_t *p = hw->pools; p != NULL; p = p->next)
        if (strcmp(p->url, ep->url) == 0 && p->verify == cl->tls_verify &&
            strcmp(p->ca_file, ca) == 0 && strcmp(p->tls_name, name) == 0 && p->ep == pe &&
            p->h1_ok == h1_ok)
            return p;
    return NULL;
}

static pool_t *pool_get(h2w_t *hw, const pt_cluster_t *cl, size_t idx)
{
    const pt_endpoint_t *ep = &cl->endpoints[idx];
    pt_policy_ep_t *pe = pt_policy_ep(hw->w, cl, idx);
    pool_t *p = pool_find(hw, cl, ep, pe);
    if (p != NULL)
        return p;
    char nbuf[256];
    const char *name = pt__uptls_name(cl, ep, nbuf, sizeof(nbuf));
    p = pt_xcalloc(1, sizeof(*p));
    p->hw = hw;
    p->ep = pe;
    p->url = xstrdup(ep->url);
    p->host = xstrdup(ep->host);
    p->tls_name = xstrdup(name);
    char abuf[300];
    int al = snprintf(abuf, sizeof(abuf), "%s:%u", ep->host, (unsigned)ep->port);
    p->authority = xstrdup(al > 0 && (size_t)al < sizeof(abuf) ? abuf : "");
    p->ca_file = xstrdup(cl->ca_file);
    p->port = ep->port;
    p->tls = ep->tls;
    p->verify = cl->tls_verify;
    p->h1_ok = cl->protocol == PT_PROTO_HTTP;
    p->next = hw->pools;
    hw->pools = p;
    return p;
}

/* ---- stream table --------------------------------------------------------- */

static size_t slot_of(const conn_t *k, int32_t sid)
{
    return ((uint32_t)sid >> 1) & (k->tab_cap - 1); /* ids are sequential odd numbers */
}

static call_t *tab_find(const conn_t *k, int32_t sid)
{
    if (k->tab_cap == 0 || sid <= 0)
        return NULL;
    for (size_t i = slot_of(k, sid);; i = (i + 1) & (k->tab_cap - 1)) {
        if (k->tab[i].sid == sid)
            return k->tab[i].c;
        if (k->tab[i].sid == 0)
            return NULL;
    }
}

static void tab_put(conn_t *k, int32_t sid, call_t *c);

static void tab_rehash(conn_t *k, size_t cap)
{
    slot_t *old = k->tab;
    size_t ocap = k->tab_cap;
    k->tab = pt_xcalloc(cap, sizeof(*k->tab));
    k->tab_cap = cap;
    k->tab_used = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].sid > 0)
            tab_put(k, old[i].sid, old[i].c);
    free(old);
}

static void tab_put(conn_t *k, int32_t sid, call_t *c)
{
    if ((k->tab_used + 1) * 2 > k->tab_cap)
        tab_rehash(k, k->active * 4 > k->tab_cap ? (k->tab_cap ? k->tab_cap * 2 : 64)
                                                  : (k->tab_cap ? k->tab_cap : 64));
    size_t i = slot_of(k, sid);
    while (k->tab[i].sid > 0)
        i = (i + 1) & (k->tab_cap - 1);
    if (k->tab[i].sid == 0)
        k->tab_used++;
    k->tab[i].sid = sid;
    k->tab[i].c = c;
}

static void tab_del(conn_t *k, int32_t sid)
{
    if (k->tab_cap == 0)
        return;
    for (size_t i = slot_of(k, sid);; i = (i + 1) & (k->tab_cap - 1)) {
        if (k->tab[i].sid == sid) {
            k->tab[i].sid = -1;
            k->tab[i].c = NULL;
            return;
        }
        if (k->tab[i].sid == 0)
            return;
    }
}

/* ---- connection helpers --------------------------------------------------- */

static void schedule_flush(conn_t *k)
{
    if (k->flush_sched || k->st == C_CLOSED || !k->events_set)
        return;
    k->flush_sched = true;
    event_active(&k->flush_ev, EV_WRITE, 0);
}

static void arm_timer(conn_t *k, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u)};
    event_add(&k->timer, &tv);
    k->timer_on = true;
}

static void disarm_timer(conn_t *k)
{
    if (k->timer_on) { /* a busy connection's every stream would pay an event_del otherwise */
        k->timer_on = false;
        event_del(&k->timer);
    }
}

static uint32_t conn_max_streams(conn_t *k)
{
    if (!k->settings_recvd) /* a new connection: what its siblings were told */
        return k->pool->max_streams != 0 ? k->pool->max_streams : ASSUMED_MAX_STREAMS;
    uint32_t v = nghttp2_session_get_remote_settings(k->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return v > (1u << 20) ? (1u << 20) : v;
}

/* A stream of `k` ended (or was taken off it): idle bookkeeping. */
static void conn_stream_gone(conn_t *k)
{
    if (k->active > 0)
        k->active--;
    if (k->active == 0 && k->st == C_READY) {
        if (k->goaway)
            schedule_flush(k); /* nghttp2 will say it is done: closed in conn_flush */
        else
            arm_timer(k, IDLE_MS);
    }
}

/* Takes call `c` off its connection's stream table (its stream is over for us). */
static void call_detach(call_t *c)
{
    conn_t *k = c->conn;
    if (k == NULL)
        return;
    c->conn = NULL;
    if (c->sid > 0)
        tab_del(k, c->sid);
    conn_stream_gone(k);
}

/* Sends RST_STREAM(CANCEL) for the call's stream and takes it off the connection. */
static void call_reset_stream(call_t *c)
{
    conn_t *k = c->conn;
    if (k == NULL)
        return;
    int32_t sid = c->sid;
    call_detach(c);
    if (sid > 0 && k->st != C_CLOSED && k->ng != NULL) {
        nghttp2_submit_rst_stream(k->ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
        schedule_flush(k);
    }
}

/* ---- call results ------------------------------------------------------------ */

static void push_done(call_t *c)
{
    h2w_t *hw = c->hw;
    if (c->in_done)
        return;
    c->in_done = true;
    c->link = NULL;
    if (hw->done_tail != NULL)
        hw->done_tail->link = c;
    else
        hw->done_head = c;
    hw->done_tail = c;
    if (!hw->done_sched) {
        hw->done_sched = true;
        event_active(&hw->done_ev, EV_WRITE, 0);
    }
}

/*
 * The attempt ended with `st` (0: complete response). The result is
 * delivered (or the call retried) from the done event; a successful call with
 * held body bytes waits until the caller took them (resume).
 */
static void call_finish(call_t *c, int st, const char *reason, fail_kind_t kind)
{
    if (c->finished || c->canceled)
        return;
    call_detach(c);
    c->finished = true;
    c->fst = st;
    c->freason = reason;
    c->fkind = kind;
    if (st == 0 && c->held_off < c->held_len) {
        c->finish_wait = true;
        return;
    }
    push_done(c);
}

/* Buffers of a call kept with it on the spare list when no bigger than this. */
#define SPARE_BUF_MAX 4096u
#define SPARE_MAX 64u

static void call_release(call_t *c)
{
    pt__hstore_free(&c->head);
    pt__hstore_free(&c->trl);
    free(c->replay);
    free(c->held);
    free(c->lower);
    free(c);
}

/*
 * A zeroed call. Freed calls are kept (up to SPARE_MAX a worker) with their
 * header stores and small body buffers, so a call in the steady state costs
 * none of the seven allocations and frees it used to (callgrind, issue 7).
 */
static call_t *call_new(h2w_t *hw)
{
    call_t *c = hw->spare;
    if (c == NULL)
        return pt_xcalloc(1, sizeof(*c));
    hw->spare = c->link;
    hw->spare_cnt--;
    pt__hstore_t head = c->head, trl = c->trl;
    char *replay = c->replay, *held = c->held, *lower = c->lower;
    size_t replay_cap = c->replay_cap, held_cap = c->held_cap, lower_cap = c->lower_cap;
    memset(c, 0, sizeof(*c));
    pt__hstore_reset(&head);
    pt__hstore_reset(&trl);
    c->head = head;
    c->trl = trl;
    c->replay = replay;
    c->replay_cap = replay_cap;
    c->held = held;
    c->held_cap = held_cap;
    c->lower = lower;
    c->lower_cap = lower_cap;
    return c;
}

static void call_free(call_t *c)
{
    h2w_t *hw = c->hw;
    pt_policy_call_end(&c->pol);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        hw->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    event_del(&c->tmo);
    if (hw->spare_cnt >= SPARE_MAX || c->head.cap > SPARE_BUF_MAX || c->trl.cap > SPARE_BUF_MAX ||
        c->replay_cap > SPARE_BUF_MAX || c->held_cap > SPARE_BUF_MAX ||
        c->lower_cap > SPARE_BUF_MAX) {
        call_release(c);
        return;
    }
    c->link = hw->spare;
    hw->spare = c;
    hw->spare_cnt++;
}

/** Tries the request again (see the top comment). True when a new attempt started. */
static bool retry(call_t *c)
{
    h2w_t *hw = c->hw;
    static const pt_policy_fail_t kinds[] = {
        [K_NONE] = PT_POLICY_FAIL_OTHER,     [K_CONNECT] = PT_POLICY_FAIL_CONNECT,
        [K_REFUSED] = PT_POLICY_FAIL_REFUSED, [K_EARLY] = PT_POLICY_FAIL_EARLY,
        [K_OTHER] = PT_POLICY_FAIL_OTHER,    [K_LOCAL] = PT_POLICY_FAIL_LOCAL,
    };
    if (c->fkind == K_LOCAL)
        pt_policy_count_local(hw->w, c->r->cluster);
    if (c->fkind == K_NONE || mono_ms() >= c->deadline_ms)
        return false;
    long idx = pt_policy_retry(hw->w, c->r, &c->pol, kinds[c->fkind], !c->got_head && !c->no_replay);
    if (idx < 0)
        return false;
    hw->stats.retries++;
    attempt(c, (size_t)idx);
    return true;
}

/* The grpc-status of a complete answer (trailers, or the head of a trailers-only one), or -1. */
static int grpc_status_of(call_t *c)
{
    pt__hstore_t *stores[2] = {&c->trl, &c->head};
    for (int s = 0; s < 2; s++) {
        const pt_header_t *h = pt__hstore_view(stores[s]);
        for (size_t i = 0; i < stores[s]->cnt; i++) {
            if (!pt_str_eq(h[i].name, PT_STR("grpc-status")))
                continue;
            int v = 0;
            for (size_t j = 0; j < h[i].value.len && j < 4; j++) {
                char ch = h[i].value.base[j];
                if (ch < '0' || ch > '9')
                    return -1;
                v = v * 10 + (ch - '0');
            }
            return v;
        }
    }
    return -1;
}

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h2w_t *hw = arg;
    hw->done_sched = false;
    enter(hw);
    while (hw->done_head != NULL) {
        call_t *c = hw->done_head;
        hw->done_head = c->link;
        if (hw->done_head == NULL)
            hw->done_tail = NULL;
        c->link = NULL;
        c->in_done = false;
        if (c->canceled) {
            call_free(c);
            continue;
        }
        if (c->fst != 0 && retry(c))
            continue;
        event_del(&c->tmo);
        if (c->fst == 0) /* the answer, as the endpoint's outlier detection sees it */
            pt_policy_answered(hw->w, &c->pol, c->status, grpc_status_of(c));
        const pt_header_t *t = c->fst == 0 ? pt__hstore_view(&c->trl) : NULL;
        size_t tcnt = c->fst == 0 ? c->trl.cnt : 0;
        c->canceled = true; /* a cancel from inside on_done is a no-op */
        c->cbs.on_done(c->ud, c->fst, c->freason, t, tcnt);
        call_free(c);
    }
    leave(hw);
}

/* ---- response rules (see the top comment) --------------------------------------- */

static uint8_t tchar_lc[256]; /* RFC 9110 token characters, lowercase only (callbacks_init) */

static void tchar_init(void)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (int ch = 'a'; ch <= 'z'; ch++)
        tchar_lc[ch] = 1;
    for (int ch = '0'; ch <= '9'; ch++)
        tchar_lc[ch] = 1;
    for (const char *p = extra; *p != '\0'; p++)
        tchar_lc[(unsigned char)*p] = 1;
}

static bool name_ok(const uint8_t *n, size_t len)
{
    size_t i = len > 0 && n[0] == ':' ? 1 : 0;
    if (i == len)
        return false;
    unsigned ok = 1;
    for (; i + 4 <= len; i += 4) /* four lookups per test */
        ok &= tchar_lc[n[i]] & tchar_lc[n[i + 1]] & tchar_lc[n[i + 2]] & tchar_lc[n[i + 3]];
    for (; i < len; i++)
        ok &= tchar_lc[n[i]];
    return ok != 0;
}

/* Some byte of `w` is below 0x20 or is 0x7f (exact as a yes/no; a tab says yes too). */
static inline bool ctl_suspect(uint64_t w)
{
    uint64_t x = w ^ 0x7f7f7f7f7f7f7f7fULL;
    return ((((w - 0x2020202020202020ULL) & ~w) | ((x - 0x0101010101010101ULL) & ~x)) &
            0x8080808080808080ULL) != 0;
}

/* RFC 9113 8.2.1: no NUL, CR, LF or other control (HTAB aside) and no blank at either end. */
static bool value_ok(const uint8_t *v, size_t len)
{
    if (len == 0)
        return true;
    if (v[0] == ' ' || v[0] == '\t' || v[len - 1] == ' ' || v[len - 1] == '\t')
        return false;
    if (len >= 8) { /* eight bytes at a time, the last eight overlapping */
        bool suspect = false;
        uint64_t w;
        for (size_t i = 0; i + 8 <= len && !suspect; i += 8) {
            memcpy(&w, v + i, 8);
            suspect = ctl_suspect(w);
        }
        memcpy(&w, v + len - 8, 8);
        if (!suspect && !ctl_suspect(w))
            return true;
    }
    for (size_t i = 0; i < len; i++) /* short, or a tab somewhere, or a real fault */
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return false;
    return true;
}

/* Fails the response: RST_STREAM(PROTOCOL_ERROR), the call ends with `why` when the stream closes. */
static int resp_reject(conn_t *k, call_t *c, int32_t sid, const char *why)
{
    if (c->bad == NULL) {
        c->bad = why;
        nghttp2_submit_rst_stream(k->ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_PROTOCOL_ERROR);
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the rest of the block is not delivered */
}

static bool ieq_lit(const uint8_t *a, size_t len, const char *lit, size_t n)
{
    return len == n && pt_str_ieq((pt_str_t){(const char *)a, len}, (pt_str_t){lit, n});
}

/*
 * One field of a response head, 1xx head or trailer block. 1: keep it, 0:
 * drop it (content-length of a 204), or an nghttp2 error after resp_reject().
 */
static int resp_field(conn_t *k, call_t *c, int32_t sid, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen)
{
    if (!name_ok(name, nlen) || !value_ok(value, vlen))
        return resp_reject(k, c, sid, "upstream sent an invalid header field");
    if (name[0] == ':') {
        if (c->got_head || c->fields_seen || c->status_seen || nlen != 7 ||
            memcmp(name, ":status", 7) != 0 || vlen != 3 || value[0] < '0' || value[0] > '9' ||
            value[1] < '0' || value[1] > '9' || value[2] < '0' || value[2] > '9')
            return resp_reject(k, c, sid, "upstream sent a malformed pseudo-header");
        int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        if (st == 101)
            return resp_reject(k, c, sid, "upstream answered 101 over HTTP/2");
        c->status = st;
        c->status_seen = true;
        return 0; /* pseudo-headers are not kept */
    }
    c->fields_seen = true;
    switch (nlen) { /* connection-specific fields (RFC 9113 8.2.2) and content-length */
    case 2:
        if (memcmp(name, "te", 2) == 0 && !ieq_lit(value, vlen, "trailers", 8))
            return resp_reject(k, c, sid, "upstream sent a connection-specific header");
        break;
    case 7:
        if (memcmp(name, "upgrade", 7) == 0)
            return resp_reject(k, c, sid, "upstream sent a connection-specific header");
        break;
    case 10:
        if (memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0)
            return resp_reject(k, c, sid, "upstream sent a connection-specific header");
        break;
    case 14:
        if (memcmp(name, "content-length", 14) != 0)
            break;
        if (c->status == 204) { /* only "0", once, and dropped (widely sent, as nghttp2 allows) */
            if (c->clen != -1 || vlen != 1 || value[0] != '0')
                return resp_reject(k, c, sid, "upstream sent a bad content-length");
            c->clen = 0;
            return 0;
        }
        if (c->status / 100 == 1 || c->clen != -1 || vlen == 0 || vlen > 18)
            return resp_reject(k, c, sid, "upstream sent a bad content-length");
        c->clen = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9')
                return resp_reject(k, c, sid, "upstream sent a bad content-length");
            c->clen = c->clen * 10 + (value[i] - '0');
        }
        break;
    case 16:
        if (memcmp(name, "proxy-connection", 16) == 0)
            return resp_reject(k, c, sid, "upstream sent a connection-specific header");
        break;
    case 17:
        if (memcmp(name, "transfer-encoding", 17) == 0)
            return resp_reject(k, c, sid, "upstream sent a connection-specific header");
        break;
    default:
        break;
    }
    return 1;
}

/* The DATA or block that ended the stream: the body must match content-length. */
static bool resp_end_ok(const call_t *c)
{
    return c->clen == -1 || c->clen == c->rlen;
}

/* ---- nghttp2 callbacks ------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    conn_t *k = ud;
    call_t *c = tab_find(k, f->hd.stream_id);
    if (c != NULL && !c->got_head) {
        /* a (new) response head: an interim 1xx before it is forgotten */
        c->head.len = c->head.cnt = 0;
        c->hdr_bytes = 0;
        c->status = 0;
        c->status_seen = c->fields_seen = false;
        c->clen = -1;
    } else if (c != NULL) {
        c->hdr_bytes = 0; /* trailers are a block of their own */
    }
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)ng;
    (void)flags;
    conn_t *k = ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    call_t *c = tab_find(k, f->hd.stream_id);
    if (c == NULL)
        return 0;
    if (c->bad != NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    c->hdr_bytes += (uint32_t)(nlen + vlen + 32);
    pt__hstore_t *s = c->got_head ? &c->trl : &c->head;
    if (c->hdr_bytes > HDR_MAX_BYTES || s->cnt >= HDR_MAX_CNT) {
        c->hdr_overflow = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    int keep = resp_field(k, c, f->hd.stream_id, name, nlen, value, vlen);
    if (keep <= 0)
        return keep;
    pt__hstore_add(s, (pt_str_t){(const char *)name, nlen}, (pt_str_t){(const char *)value, vlen},
                   false); /* resp_field checked the names are lowercase */
    return 0;
}

static void deliver_head(call_t *c)
{
    c->got_head = true;
    /* from now on the request is never retried (a small buffer is kept for reuse) */
    if (c->replay_cap > SPARE_BUF_MAX) {
        free(c->replay);
        c->replay = NULL;
        c->replay_cap = 0;
    }
    c->replay_len = c->replay_off = 0;
    c->no_replay = true;
    if (c->cbs.on_head != NULL)
        c->cbs.on_head(c->ud, c->status, pt__hstore_view(&c->head), c->head.cnt);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    conn_t *k = ud;
    call_t *c;
    bool end;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        c = tab_find(k, f->hd.stream_id);
        if (c == NULL || c->bad != NULL)
            return 0;
        end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (c->got_head) { /* trailers */
            if (!end)
                resp_reject(k, c, f->hd.stream_id, "upstream sent trailers without END_STREAM");
            else if (!resp_end_ok(c))
                resp_reject(k, c, f->hd.stream_id, "upstream body length differs from content-length");
            else
                c->got_end = true;
            return 0;
        }
        if (!c->status_seen) {
            resp_reject(k, c, f->hd.stream_id, "upstream response without :status");
            return 0;
        }
        if (c->status / 100 == 1) { /* interim response: the final one follows */
            c->clen = -1;
            if (end)
                resp_reject(k, c, f->hd.stream_id, "upstream ended the stream after a 1xx");
            return 0;
        }
        if (c->status == 204 || c->status == 304 || pt_str_eq(c->r->method, PT_STR("HEAD")))
            c->clen = 0; /* no body, whatever content-length said */
        if (end && !resp_end_ok(c)) {
            resp_reject(k, c, f->hd.stream_id, "upstream body length differs from content-length");
            return 0;
        }
        c->got_end = end;
        deliver_head(c); /* may cancel c (then it is a zombie until leave) */
        break;
    case NGHTTP2_DATA:
        c = tab_find(k, f->hd.stream_id);
        if (c == NULL || c->bad != NULL)
            return 0;
        if (!c->got_head) /* an empty one: on_data_chunk saw the others */
            resp_reject(k, c, f->hd.stream_id, "upstream sent DATA before the final response head");
        else if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            return 0;
        else if (!resp_end_ok(c))
            resp_reject(k, c, f->hd.stream_id, "upstream body length differs from content-length");
        else
            c->got_end = true;
        break;
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            k->settings_recvd = true;
            uint32_t v = nghttp2_session_get_remote_settings(k->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
            k->pool->max_streams = v == 0 ? 1 : v; /* 0 would never let us open one */
        }
        break;
    case NGHTTP2_GOAWAY:
        k->goaway = true; /* streams above last-stream-id are closed with REFUSED_STREAM */
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    conn_t *k = ud;
    if (f->hd.type == NGHTTP2_HEADERS) {
        call_t *c = tab_find(k, f->hd.stream_id);
        if (c != NULL)
            c->headers_sent = true;
    }
    return 0;
}

static void held_add(call_t *c, const uint8_t *data, size_t len)
{
    if (c->held_off == c->held_len)
        c->held_off = c->held_len = 0;
    reserve(&c->held, &c->held_cap, c->held_len + len);
    memcpy(c->held + c->held_len, data, len);
    c->held_len += len;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    conn_t *k = ud;
    call_t *c = tab_find(k, sid);
    if (c == NULL || c->bad != NULL) {
        nghttp2_session_consume(ng, sid, len);
        return 0;
    }
    c->rlen += (int64_t)len;
    if (!c->got_head || (c->clen != -1 && c->rlen > c->clen)) { /* DATA after a 1xx, or too much */
        nghttp2_session_consume(ng, sid, len);
        return resp_reject(k, c, sid,
                           c->got_head ? "upstream body longer than its content-length"
                                       : "upstream sent DATA before the final response head");
    }
    if (c->paused || c->held_off < c->held_len) {
        held_add(c, data, len); /* window not given back: the server stops */
        return 0;
    }
    bool more = c->cbs.on_data(c->ud, (const char *)data, len);
    nghttp2_session_consume(ng, sid, len);
    if (!more && !c->canceled)
        c->paused = true;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    conn_t *k = ud;
    call_t *c = tab_find(k, sid);
    if (c == NULL)
        return 0;
    /* held bytes were never consumed: give the connection window back now */
    if (c->held_len > c->held_off)
        nghttp2_session_consume_connection(ng, c->held_len - c->held_off);
    if (c->hdr_overflow)
        call_finish(c, PT_ERR_UPSTREAM, "upstream response head too large", K_OTHER);
    else if (c->bad != NULL)
        call_finish(c, PT_ERR_UPSTREAM, c->bad, K_OTHER);
    else if (code == NGHTTP2_NO_ERROR && c->got_end)
        call_finish(c, c->got_head ? 0 : PT_ERR_UPSTREAM,
                    c->got_head ? "ok" : "upstream sent no response head", K_OTHER);
    else if (code == NGHTTP2_REFUSED_STREAM && !c->got_head)
        call_finish(c, PT_ERR_UPSTREAM, "upstream refused the stream", K_REFUSED);
    else
        call_finish(c, PT_ERR_UPSTREAM,
                    c->got_head ? "upstream stream reset" : "upstream reset the stream before answering",
                    K_OTHER);
    return 0;
}

/* Request body: replayed copy first, then the caller's read_body. */
static ssize_t data_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)src;
    conn_t *k = ud;
    call_t *c = tab_find(k, sid);
    if (c == NULL || c->canceled)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = 0;
    bool eof = false;
    if (c->replay_off < c->replay_len) {
        n = c->replay_len - c->replay_off < length ? c->replay_len - c->replay_off : length;
        memcpy(buf, c->replay + c->replay_off, n);
        c->replay_off += n;
        eof = c->body_eof && c->replay_off == c->replay_len;
    } else if (c->body_eof) {
        eof = true;
    } else {
        c->in_read = true;
        n = c->cbs.read_body(c->ud, (char *)buf, length, &eof);
        c->in_read = false;
        if (c->canceled)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (n > length)
            n = length;
        if (eof)
            c->body_eof = true;
        if (!c->no_replay && n > 0) {
            if (c->replay_len + n > REPLAY_MAX) {
                c->no_replay = true;
                free(c->replay);
                c->replay = NULL;
                c->replay_len = c->replay_cap = c->replay_off = 0;
            } else {
                reserve(&c->replay, &c->replay_cap, c->replay_len + n);
                memcpy(c->replay + c->replay_len, buf, n);
                c->replay_len += n;
                c->replay_off = c->replay_len;
            }
        }
    }
    if (n == 0 && !eof) {
        c->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *callbacks;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static void callbacks_init(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        abort();
    tchar_init();
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
}

/* ---- connection I/O ------------------------------------------------------------ */

static void on_conn_read(evutil_socket_t fd, short what, void *arg);
static void on_conn_write(evutil_socket_t fd, short what, void *arg);
static void on_conn_flush(evutil_socket_t fd, short what, void *arg);
static void on_conn_timer(evutil_socket_t fd, short what, void *arg);

static void want_write(conn_t *k)
{
    if (!k->wev_on) {
        k->wev_on = true;
        event_add(&k->wev, NULL);
    }
}

/* Writes what is buffered. Returns 0 (all out or would block) or -1 (failed). */
static int conn_write_out(conn_t *k)
{
    while (k->woff < k->wlen) {
        size_t len = k->wlen - k->woff;
        ssize_t n;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int rv = SSL_write(k->ssl, k->wbuf + k->woff, len > INT32_MAX ? INT32_MAX : (int)len);
            if (rv <= 0) {
                int e = SSL_get_error(k->ssl, rv);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    want_write(k);
                    return 0;
                }
                return -1;
            }
            n = rv;
        } else {
            n = pt_send(k->fd, k->wbuf + k->woff, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    want_write(k);
                    return 0;
                }
                return -1;
            }
        }
        k->woff += (size_t)n;
    }
    k->woff = k->wlen = 0;
    return 0;
}

/* Serialises queued frames and writes them (called at depth > 0). */
static void conn_flush(conn_t *k)
{
    if (k->st != C_READY)
        return;
    for (;;) {
        if (k->woff < k->wlen) {
            if (conn_write_out(k) != 0) {
                conn_fail(k, PT_ERR_UPSTREAM, "upstream write failed");
                return;
            }
            if (k->woff < k->wlen)
                return; /* blocked: on_conn_write continues */
        }
        while (k->wlen < WBUF_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(k->ng, &p);
            if (n < 0) {
                conn_fail(k, PT_ERR_UPSTREAM, "upstream HTTP/2 session failed");
                return;
            }
            if (n == 0)
                break;
            reserve(&k->wbuf, &k->wcap, k->wlen + (size_t)n);
            memcpy(k->wbuf + k->wlen, p, (size_t)n);
            k->wlen += (size_t)n;
        }
        if (k->wlen == 0)
            break;
    }
    if (!nghttp2_session_want_read(k->ng) && !nghttp2_session_want_write(k->ng)) {
        /* GOAWAY exchanged and no stream left (or our idle close went out) */
        conn_fail(k, PT_ERR_UPSTREAM, "upstream connection finished");
    }
}

/* Reads and feeds nghttp2. Returns 0, or -1 after conn_fail. */
static int conn_read_in(conn_t *k)
{
    uint8_t buf[RBUF_SIZE];
    for (int round = 0; round < 8; round++) {
        ssize_t n;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int rv = SSL_read(k->ssl, buf, sizeof(buf));
            if (rv <= 0) {
                int e = SSL_get_error(k->ssl, rv);
                if (e == SSL_ERROR_WANT_READ)
                    return 0;
                if (e == SSL_ERROR_WANT_WRITE) {
                    want_write(k);
                    return 0;
                }
                conn_fail(k, PT_ERR_UPSTREAM,
                          e == SSL_ERROR_ZERO_RETURN ? "upstream closed the connection"
                                                     : "upstream TLS read failed");
                return -1;
            }
            n = rv;
        } else {
            n = pt_recv(k->fd, buf, sizeof(buf), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return 0;
                conn_fail(k, PT_ERR_UPSTREAM, "upstream read failed");
                return -1;
            }
            if (n == 0) {
                conn_fail(k, PT_ERR_UPSTREAM, "upstream closed the connection");
                return -1;
            }
        }
        ssize_t rv = nghttp2_session_mem_recv(k->ng, buf, (size_t)n);
        if (rv < 0) {
            conn_fail(k, PT_ERR_UPSTREAM, "upstream HTTP/2 protocol error");
            return -1;
        }
        if (k->st == C_CLOSED)
            return -1;
        if ((size_t)n < sizeof(buf) && (k->ssl == NULL || SSL_pending(k->ssl) == 0))
            return 0;
    }
    return 0;
}

static void conn_ready(conn_t *k)
{
    k->st = C_READY;
    k->ever_ready = true;
    disarm_timer(k);
    if (k->active == 0)
        arm_timer(k, IDLE_MS);
    conn_flush(k);
}

static void conn_handshake(conn_t *k)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(k->ssl);
    if (rv == 1) {
        if (strcmp(pt__uptls_alpn(k->ssl), "h2") == 0)
            conn_ready(k);
        else if (k->pool->h1_ok)
            conn_to_h1(k);
        else
            conn_fail(k, PT_ERR_UPSTREAM, "upstream did not negotiate h2 (ALPN)");
        return;
    }
    int e = SSL_get_error(k->ssl, rv);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e == SSL_ERROR_WANT_WRITE) {
        want_write(k);
        return;
    }
    bool refused = pt__uptls_verify_failed(k->ssl);
    ERR_clear_error();
    conn_fail(k, PT_ERR_UPSTREAM,
              refused ? "upstream TLS certificate verification failed" : "upstream TLS handshake failed");
}

static void on_conn_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *k = arg;
    h2w_t *hw = k->hw;
    enter(hw);
    if (k->st == C_HANDSHAKE)
        conn_handshake(k);
    else if (k->st == C_READY && conn_read_in(k) == 0)
        conn_flush(k);
    leave(hw);
}

static void on_conn_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    conn_t *k = arg;
    h2w_t *hw = k->hw;
    enter(hw);
    k->wev_on = false;
    if (k->st == C_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            k->sys_err = err;
            conn_fail(k, PT_ERR_UNAVAILABLE, "upstream connection refused");
        } else if (k->ssl != NULL) {
            k->st = C_HANDSHAKE;
            conn_handshake(k);
        } else {
            conn_ready(k);
        }
    } else if (k->st == C_HANDSHAKE) {
        conn_handshake(k);
    } else if (k->st == C_READY) {
        conn_flush(k);
        /* SSL_read may have wanted to write: read again now */
        if (k->ssl != NULL && k->st == C_READY && conn_read_in(k) == 0)
            conn_flush(k);
    }
    leave(hw);
}

static void on_conn_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *k = arg;
    h2w_t *hw = k->hw;
    enter(hw);
    k->flush_sched = false;
    conn_flush(k);
    leave(hw);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *k = arg;
    h2w_t *hw = k->hw;
    enter(hw);
    k->timer_on = false;
    if (k->st != C_READY) {
        conn_fail(k, PT_ERR_UNAVAILABLE, "upstream connect timeout");
    } else if (k->active == 0) {
        if (k->closing) {
            conn_fail(k, PT_ERR_UPSTREAM, "idle upstream connection closed");
        } else {
            /* idle: say goodbye, close once it is written (or shortly after) */
            k->closing = true;
            k->goaway = true;
            nghttp2_session_terminate_session(k->ng, NGHTTP2_NO_ERROR);
            arm_timer(k, 1000);
            conn_flush(k);
        }
    }
    leave(hw);
}

/* ---- connection lifecycle -------------------------------------------------------- */

static SSL_CTX *pool_ssl_ctx(pool_t *p)
{
    if (p->ssl_ctx == NULL)
        p->ssl_ctx = p->h1_ok ? pt__uptls_ctx_new(p->verify, p->ca_file, PT_UPTLS_ALPN_H2_H1,
                                                  sizeof(PT_UPTLS_ALPN_H2_H1) - 1)
                              : pt__uptls_ctx_new(p->verify, p->ca_file, PT_UPTLS_ALPN_H2,
                                                  sizeof(PT_UPTLS_ALPN_H2) - 1);
    return p->ssl_ctx;
}

static int conn_setup_tls(conn_t *k)
{
    pool_t *p = k->pool;
    SSL_CTX *ctx = pool_ssl_ctx(p);
    if (ctx == NULL)
        return -1;
    k->ssl = SSL_new(ctx);
    if (k->ssl == NULL || SSL_set_fd(k->ssl, k->fd) != 1)
        return -1;
    SSL_set_connect_state(k->ssl);
    return pt__uptls_set_peer(k->ssl, p->tls_name, p->verify);
}

/* Starts connecting `k` to `sa`. Returns 0, or -1 (nothing started). */
static int conn_connect(conn_t *k, const struct sockaddr *sa, socklen_t salen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        k->sys_err = errno;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
        k->sys_err = errno;
        close(fd);
        return -1;
    }
    k->fd = fd;
    k->hw->stats.conns_opened++;
    event_assign(&k->rev, k->hw->w->base, fd, EV_READ | EV_PERSIST, on_conn_read, k);
    event_assign(&k->wev, k->hw->w->base, fd, EV_WRITE, on_conn_write, k);
    event_add(&k->rev, NULL);
    if (k->pool->tls && conn_setup_tls(k) != 0)
        return -1; /* fd is closed with the connection */
    k->st = C_CONNECTING;
    want_write(k);
    return 0;
}

static void on_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
    resolve_t *res = arg;
    conn_t *k = res->conn;
    free(res);
    if (k == NULL) { /* the connection went away meanwhile */
        if (ai != NULL)
            evutil_freeaddrinfo(ai);
        return;
    }
    k->res = NULL;
    h2w_t *hw = k->hw;
    enter(hw);
    if (err != 0 || ai == NULL)
        conn_fail(k, PT_ERR_UNAVAILABLE, "upstream host not resolved");
    else if (conn_connect(k, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0)
        conn_fail(k, PT_ERR_UNAVAILABLE, "upstream connect failed");
    if (ai != NULL)
        evutil_freeaddrinfo(ai);
    leave(hw);
}

/* A new connection of pool `p` (connecting). NULL when the socket could not be made (*err). */
static conn_t *conn_new(pool_t *p, uint64_t connect_ms, int *err)
{
    pthread_once(&callbacks_once, callbacks_init);
    h2w_t *hw = p->hw;
    conn_t *k = pt_xcalloc(1, sizeof(*k));
    k->pool = p;
    k->hw = hw;
    k->fd = -1;
    k->st = C_RESOLVING;
    k->connect_ms = connect_ms;

    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, ASSUMED_MAX_STREAMS);
    nghttp2_option_set_max_continuations(opt, 16);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_no_http_messaging(opt, 1); /* our resp_* checks instead (top comment) */
    int rv = nghttp2_session_client_new3(&k->ng, callbacks, k, opt, pt_h2mem_of(k->hw->w));
    nghttp2_option_del(opt);
    if (rv != 0)
        abort();
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HDR_MAX_BYTES},
    };
    nghttp2_submit_settings(k->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(k->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);

    event_assign(&k->flush_ev, hw->w->base, -1, 0, on_conn_flush, k);
    event_assign(&k->timer, hw->w->base, -1, 0, on_conn_timer, k);
    k->events_set = true;
    k->next = p->conns;
    if (p->conns != NULL)
        p->conns->prev = k;
    p->conns = k;
    p->nconns++;
    arm_timer(k, connect_ms);

    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)p->port);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(p->port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(p->port)};
    if (inet_pton(AF_INET, p->host, &a4.sin_addr) == 1) {
        if (conn_connect(k, (struct sockaddr *)&a4, sizeof(a4)) != 0)
            goto fail;
    } else if (inet_pton(AF_INET6, p->host, &a6.sin6_addr) == 1) {
        if (conn_connect(k, (struct sockaddr *)&a6, sizeof(a6)) != 0)
            goto fail;
    } else {
        /* a name: resolve without blocking the loop */
        if (hw->dns == NULL)
            hw->dns = evdns_base_new(hw->w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (hw->dns == NULL)
            goto fail;
        resolve_t *res = pt_xcalloc(1, sizeof(*res));
        res->conn = k;
        k->res = res;
        struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        /* may answer synchronously (hosts file): on_resolved then ran already */
        evdns_getaddrinfo(hw->dns, p->host, portstr, &hints, on_resolved, res);
    }
    return k;
fail:
    *err = k->sys_err;
    conn_fail(k, PT_ERR_UNAVAILABLE, "upstream connect failed");
    return NULL;
}

/*
 * The connection is over: its calls end (retried when that is safe) and it
 * is freed at the outermost leave(). Always called at depth > 0.
 */
static void conn_fail(conn_t *k, int st, const char *why)
{
    if (k->st == C_CLOSED)
        return;
    bool connected = k->ever_ready;
    k->st = C_CLOSED;
    pool_t *p = k->pool;
    bool local = false; /* our own shortage (fds, buffers): not the endpoint's failure */
    if (!connected && !k->closing)
        local = pt_policy_connect_failed(k->hw->w, NULL, p->ep, k->sys_err) == PT_POLICY_FAIL_LOCAL;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        p->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    p->nconns--;
    pt_policy_conn_closed(p->ep);
    if (k->events_set) {
        disarm_timer(k);
        event_del(&k->flush_ev);
        if (k->fd >= 0) {
            event_del(&k->rev);
            event_del(&k->wev);
        }
    }
    for (size_t i = 0; i < k->tab_cap; i++) {
        if (k->tab[i].sid <= 0)
            continue;
        call_t *c = k->tab[i].c;
        k->tab[i].sid = -1;
        c->conn = NULL;
        if (k->to_h1) { /* nothing of it was sent: it goes on over HTTP/1.1 */
            call_to_h1(c);
            continue;
        }
        if (c->held_len > c->held_off && c->got_end && c->got_head) {
            call_finish(c, 0, "ok", K_NONE); /* complete, only waiting for the caller */
            continue;
        }
        fail_kind_t kind;
        if (!connected)
            kind = local ? K_LOCAL : K_CONNECT;
        else if (!c->headers_sent)
            kind = K_REFUSED; /* nothing of it reached the server */
        else if (!c->got_head)
            kind = K_EARLY;
        else
            kind = K_OTHER;
        if (local)
            call_finish(c, PT_ERR_OVERLOADED, "local resources exhausted (upstream socket)", kind);
        else
            call_finish(c, connected ? PT_ERR_UPSTREAM : st,
                        c->got_head ? "upstream connection broken" : why, kind);
    }
    k->active = 0;
    k->dead_next = k->hw->dead;
    k->hw->dead = k;
}

static void conn_free(conn_t *k)
{
    if (k->res != NULL) {
        k->res->conn = NULL; /* on_resolved frees it */
        k->res = NULL;
    }
    if (k->ng != NULL)
        nghttp2_session_del(k->ng);
    if (k->ssl != NULL)
        SSL_free(k->ssl);
    if (k->fd >= 0)
        close(k->fd);
    free(k->tab);
    free(k->wbuf);
    free(k);
}

/*
 * A connection of `p` with a free stream slot, a new one (within
 * max_connections_per_endpoint), or the least loaded one, where nghttp2 holds
 * the HEADERS until a stream slot frees: those are the pending calls, at most
 * max_pending_per_endpoint. NULL with *err (errno of a failed socket) or
 * *overflow (the queue is full).
 */
static conn_t *conn_pick(pool_t *p, const pt_cluster_t *cl, uint64_t connect_ms, int *err,
                         bool *overflow, bool *breaker)
{
    conn_t *least = NULL;
    size_t pending = 0;
    for (conn_t *k = p->conns; k != NULL; k = k->next) {
        if (k->goaway || k->st == C_CLOSED)
            continue;
        uint32_t max = conn_max_streams(k);
        if (k->active < max)
            return k;
        pending += k->active - max;
        if (least == NULL || k->active < least->active)
            least = k;
    }
    if (p->nconns < pt_policy_max_conns(cl, true) || least == NULL) {
        if (pt_policy_conn_open(p->hw->w, cl, p->ep)) /* the cluster's circuit breaker */
            return conn_new(p, connect_ms, err);
        if (least == NULL) {
            *breaker = true;
            return NULL;
        }
    }
    if (pending >= pt_policy_max_pending(cl)) {
        *overflow = true;
        return NULL;
    }
    return least;
}

/* ---- submitting a request ------------------------------------------------------- */

#define NO_COPY (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)

static nghttp2_nv mknv(const char *n, size_t nlen, const char *v, size_t vlen)
{
    return (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, nlen, vlen,
                        (uint8_t)(pt_hpack_nv_flags((pt_str_t){n, nlen}) | NO_COPY)};
}

/* Submits the call's request on `k`. Returns 0 or -1 (the connection cannot take it). */
static int submit(call_t *c, conn_t *k)
{
    const pt_upcall_req_t *r = c->r;
    const pt_cluster_t *cl = r->cluster;
    const pt_endpoint_t *ep = &cl->endpoints[c->ep_idx];
    size_t hcnt = r->headers != NULL ? r->headers->cnt : 0;
    nghttp2_nv stack_nv[48];
    nghttp2_nv *nva = hcnt + 5 <= 48 ? stack_nv : pt_xcalloc(hcnt + 5, sizeof(*nva));
    /* nghttp2 copies nothing (NO_COPY_NAME|VALUE, see pt_hpack_nv_copy): the
     * strings are the caller's, valid until on_done or cancel (call.h), which
     * reset the stream -- a request's HEADERS still waiting for a stream slot
     * is then dropped unread; names with capitals are lowercased into the
     * call's `lower` (sized at the first), the content-length digits are the
     * call's too */
    size_t lowoff = 0;
    bool lowered = false;
    size_t n = 0;

    pt_str_t method = r->method;
    pt_str_t path = r->path.len > 0 ? r->path : PT_STR("/");
    pt_str_t auth;
    if (cl->authority != NULL)
        auth = pt_str_c(cl->authority);
    else if (r->authority.len > 0)
        auth = r->authority;
    else
        auth = pt_str_c(k->pool->authority); /* made once per pool, not per call */
    nva[n++] = mknv(":method", 7, method.base, method.len);
    nva[n++] = ep->tls ? mknv(":scheme", 7, "https", 5) : mknv(":scheme", 7, "http", 4);
    nva[n++] = mknv(":authority", 10, auth.base, auth.len);
    nva[n++] = mknv(":path", 5, path.base, path.len);
    for (size_t i = 0; i < hcnt; i++) {
        pt_str_t hn = r->headers->v[i].name, hv = r->headers->v[i].value;
        /* names compared only where the length fits (most fields match none) */
        if (hn.len == 0 || hn.base[0] == ':' || (hn.len == 4 && pt_str_ieq(hn, PT_STR("host"))) ||
            (hn.len == 14 && pt_str_ieq(hn, PT_STR("content-length"))))
            continue;
        if (hn.len == 2 && (hn.base[0] | 0x20) == 't' && (hn.base[1] | 0x20) == 'e') {
            if (!(hv.len == 8 && memcmp(hv.base, "trailers", 8) == 0) &&
                !pt_str_ieq(hv, PT_STR("trailers")))
                continue;
        } else if (pt_header_is_hop_by_hop(hn)) {
            continue;
        }
        if (pt_ascii_has_upper(hn)) {
            if (!lowered) {
                size_t need = 0;
                for (size_t j = 0; j < hcnt; j++)
                    need += r->headers->v[j].name.len;
                reserve(&c->lower, &c->lower_cap, need);
                lowered = true;
            }
            char *dst = c->lower + lowoff;
            lowoff += hn.len;
            for (size_t j = 0; j < hn.len; j++)
                dst[j] = (char)(hn.base[j] >= 'A' && hn.base[j] <= 'Z' ? hn.base[j] + 32 : hn.base[j]);
            hn.base = dst;
        }
        uint8_t flags = (uint8_t)(pt_hpack_nv_flags_seeded(hn, &k->hpack_seeded) | NO_COPY);
        nva[n++] = (nghttp2_nv){(uint8_t *)hn.base, (uint8_t *)hv.base, hn.len, hv.len, flags};
    }
    if (r->content_length >= 0) {
        int l = snprintf(c->clen_buf, sizeof(c->clen_buf), "%lld", (long long)r->content_length);
        nva[n++] = mknv("content-length", 14, c->clen_buf, (size_t)l);
    }
    nghttp2_data_provider dp = {.source.ptr = NULL, .read_callback = data_read};
    bool body = r->has_body && c->cbs.read_body != NULL;
    int32_t sid = nghttp2_submit_request(k->ng, NULL, nva, n, body ? &dp : NULL, NULL);
    if (nva != stack_nv)
        free(nva);
    if (sid < 0) {
        k->goaway = true; /* stream ids exhausted (or the session is going away) */
        return -1;
    }
    c->sid = sid;
    c->conn = k;
    k->active++;
    tab_put(k, sid, c);
    c->hw->stats.streams++;
    if (k->st == C_READY)
        disarm_timer(k); /* no longer idle */
    schedule_flush(k);
    return 0;
}

/* Starts (another) attempt of `c` on endpoint `idx`; failures end up in the done queue. */
static void attempt(call_t *c, size_t idx)
{
    h2w_t *hw = c->hw;
    const pt_cluster_t *cl = c->r->cluster;
    c->ep_idx = idx;
    c->headers_sent = c->got_head = c->got_end = c->hdr_overflow = c->deferred = false;
    c->status_seen = c->fields_seen = false;
    c->bad = NULL;
    c->clen = -1;
    c->rlen = 0;
    c->status = 0;
    c->hdr_bytes = 0;
    c->head.len = c->head.cnt = 0;
    c->trl.len = c->trl.cnt = 0;
    c->replay_off = 0;
    c->finished = false;
    c->fst = 0;
    c->fkind = K_NONE;
    c->sid = 0;
    uint64_t conn_ms = cl->connect_timeout_ms ? cl->connect_timeout_ms : DEFAULT_CONNECT_MS;
    pool_t *p = pool_get(hw, cl, idx);
    if (p->h1_until != 0 && p->h1_until > mono_ms()) { /* the endpoint spoke HTTP/1.1 lately */
        call_to_h1(c);
        return;
    }
    if (p->tls && pool_ssl_ctx(p) == NULL) { /* the CA file does not load: as libcurl, a 502 */
        call_finish(c, PT_ERR_UPSTREAM, "upstream TLS setup failed (ca_file?)", K_OTHER);
        return;
    }
    int err = 0;
    bool overflow = false, breaker = false;
    for (int tries = 0; tries < 3; tries++) {
        conn_t *k = conn_pick(p, cl, conn_ms, &err, &overflow, &breaker);
        if (k == NULL || k->st == C_CLOSED) /* failed at once (or resolved and failed) */
            break;
        if (submit(c, k) == 0)
            return;
    }
    if (breaker) {
        call_finish(c, PT_ERR_OVERLOADED, "circuit breaker open (max_connections)", K_OTHER);
    } else if (overflow) {
        pt_policy_count_overflow(hw->w, cl);
        call_finish(c, PT_ERR_OVERLOADED, "upstream connection queue full", K_OTHER);
    } else if (pt_policy_errno_local(err)) {
        call_finish(c, PT_ERR_OVERLOADED, "local resources exhausted (upstream socket)", K_LOCAL);
    } else {
        call_finish(c, PT_ERR_UNAVAILABLE, "upstream connection failed", K_CONNECT);
    }
}

/* ---- the ops of a call ----------------------------------------------------------- */

static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call_t *c = arg;
    h2w_t *hw = c->hw;
    enter(hw);
    if (!c->canceled && !c->in_done) {
        /* the whole exchange is over time, held bytes or not */
        call_reset_stream(c);
        c->finish_wait = false;
        c->finished = true;
        c->fst = PT_ERR_TIMEOUT;
        c->freason = "upstream timeout";
        c->fkind = K_OTHER;
        push_done(c);
    }
    leave(hw);
}

static void h2_body_ready(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->canceled || c->conn == NULL || !c->deferred)
        return;
    c->deferred = false;
    nghttp2_session_resume_data(c->conn->ng, c->sid);
    schedule_flush(c->conn);
}

static void h2_resume(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->canceled || !c->paused)
        return;
    h2w_t *hw = c->hw;
    enter(hw);
    c->paused = false;
    while (c->held_off < c->held_len && !c->paused && !c->canceled) {
        size_t n = c->held_len - c->held_off;
        if (n > HELD_CHUNK)
            n = HELD_CHUNK;
        const char *p = c->held + c->held_off;
        c->held_off += n;
        bool more = c->cbs.on_data(c->ud, p, n);
        if (c->canceled)
            break;
        if (c->conn != NULL) {
            nghttp2_session_consume(c->conn->ng, c->sid, n);
            schedule_flush(c->conn);
        }
        if (!more)
            c->paused = true;
    }
    if (!c->canceled && c->held_off == c->held_len) {
        c->held_off = c->held_len = 0;
        if (c->finish_wait) {
            c->finish_wait = false;
            push_done(c);
        }
    }
    leave(hw);
}

static void h2_cancel(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->canceled)
        return;
    h2w_t *hw = c->hw;
    c->canceled = true;
    event_del(&c->tmo);
    if (c->in_read) {
        /* inside our data_read: it returns TEMPORAL_CALLBACK_FAILURE, which
         * resets the stream; the stream slot goes when nghttp2 closes it */
        if (c->conn != NULL) {
            tab_del(c->conn, c->sid);
            conn_stream_gone(c->conn);
            c->conn = NULL;
        }
    } else {
        call_reset_stream(c);
    }
    if (c->in_done)
        return; /* the done event frees it */
    if (hw->depth > 0) {
        c->link = hw->zombies;
        hw->zombies = c;
        return;
    }
    call_free(c);
}

static const char *h2_endpoint(const pt_upcall_t *b)
{
    const call_t *c = (const call_t *)b;
    return c->pol.attempts > 0 ? c->r->cluster->endpoints[c->ep_idx].url : NULL;
}

static const pt__upcall_ops_t h2_ops = {
    .body_ready = h2_body_ready,
    .resume = h2_resume,
    .cancel = h2_cancel,
    .endpoint = h2_endpoint,
};

/* ---- HTTP/1.1 fallback (an https:// endpoint of a REST cluster picked http/1.1) ---------
 *
 * The call goes on as a call of http.c on the same endpoint, with the same
 * policy state (endpoint tried, request in flight) and deadline. The caller's
 * handle stays this call_t, whose ops now forward to it; the http.c call's
 * callbacks come here and go on to the caller's. Request body bytes an
 * earlier attempt took from the caller are sent again from the replay copy.
 */

static size_t fw_read(void *ud, char *buf, size_t max, bool *eof)
{
    call_t *c = ud;
    if (c->replay_off < c->replay_len) {
        size_t n = c->replay_len - c->replay_off < max ? c->replay_len - c->replay_off : max;
        memcpy(buf, c->replay + c->replay_off, n);
        c->replay_off += n;
        *eof = c->body_eof && c->replay_off == c->replay_len;
        return n;
    }
    if (c->body_eof) {
        *eof = true;
        return 0;
    }
    return c->cbs.read_body(c->ud, buf, max, eof);
}

static void fw_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    call_t *c = ud;
    if (c->cbs.on_head != NULL)
        c->cbs.on_head(c->ud, status, h, cnt);
}

static bool fw_data(void *ud, const char *data, size_t len)
{
    call_t *c = ud;
    return c->cbs.on_data(c->ud, data, len);
}

static void fw_free(call_t *c)
{
    h2w_t *hw = c->hw;
    if (hw->depth > 0) {
        c->link = hw->zombies;
        hw->zombies = c;
        return;
    }
    call_free(c);
}

static void fw_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    call_t *c = ud;
    c->canceled = true; /* a cancel from inside on_done is a no-op */
    c->cbs.on_done(c->ud, st, reason, t, tcnt); /* pt_upcall_endpoint() still asks c->h1 */
    c->h1 = NULL;                               /* http.c frees its call after this */
    fw_free(c);
}

static void fw_body_ready(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->h1 != NULL)
        c->h1->ops->body_ready(c->h1);
}

static void fw_resume(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->h1 != NULL)
        c->h1->ops->resume(c->h1);
}

static void fw_cancel(pt_upcall_t *b)
{
    call_t *c = (call_t *)b;
    if (c->canceled)
        return;
    c->canceled = true;
    pt_upcall_t *in = c->h1;
    c->h1 = NULL;
    if (in != NULL)
        in->ops->cancel(in);
    fw_free(c);
}

static const char *fw_endpoint(const pt_upcall_t *b)
{
    const call_t *c = (const call_t *)b;
    return c->h1 != NULL ? c->h1->ops->endpoint(c->h1) : c->r->cluster->endpoints[c->ep_idx].url;
}

static const pt__upcall_ops_t fw_ops = {
    .body_ready = fw_body_ready,
    .resume = fw_resume,
    .cancel = fw_cancel,
    .endpoint = fw_endpoint,
};

/* Continues `c` (on no connection, not finished) over HTTP/1.1 on its endpoint. At depth > 0. */
static void call_to_h1(call_t *c)
{
    static const pt_upcall_cbs_t with_body = {fw_read, fw_head, fw_data, fw_done};
    static const pt_upcall_cbs_t no_body = {NULL, fw_head, fw_data, fw_done};
    if (c->no_replay) { /* an earlier attempt sent more body than it kept: cannot happen twice */
        call_finish(c, PT_ERR_UPSTREAM, "upstream picked HTTP/1.1; request body not replayable",
                    K_OTHER);
        return;
    }
    c->replay_off = 0;
    int rc = pt__uphttp_start_on(c->hw->w->upstream_http, c->r,
                                 c->cbs.read_body != NULL ? &with_body : &no_body, c, &c->h1,
                                 c->ep_idx, &c->pol, c->deadline_ms);
    if (rc != 0) {
        c->h1 = NULL;
        call_finish(c, rc, rc == PT_ERR_TIMEOUT ? "upstream timeout" : "upstream HTTP/1.1 call failed",
                    K_OTHER);
        return;
    }
    c->pol = (pt_policy_try_t){0}; /* the http.c call holds it now */
    event_del(&c->tmo);            /* and the deadline */
    c->base.ops = &fw_ops;
    c->hw->stats.h1_calls++;
}

/* `k` negotiated http/1.1 (or no ALPN): its calls go on over HTTP/1.1, the endpoint is
 * remembered as such, and the connection closes without counting against the endpoint. */
static void conn_to_h1(conn_t *k)
{
    k->pool->h1_until = mono_ms() + H1_REMEMBER_MS;
    (void)SSL_shutdown(k->ssl); /* close_notify, as far as the socket takes it now */
    ERR_clear_error();
    k->closing = true; /* not a failure of the endpoint */
    k->to_h1 = true;
    conn_fail(k, PT_ERR_UPSTREAM, "upstream picked HTTP/1.1 (ALPN)");
}

/* ---- entry points ---------------------------------------------------------------- */

/*
 * The timeval to arm a call's deadline of `ms` with. The few durations in use
 * (a cluster's, a route's) become libevent common timeouts: their timers wait
 * in one queue per duration instead of the heap, so arming and disarming one
 * per call costs a list insert and remove (callgrind, issue 7).
 */
static const struct timeval *call_timeout(h2w_t *hw, uint64_t ms, struct timeval *tv)
{
    for (unsigned i = 0; i < hw->ct_cnt; i++)
        if (hw->ct[i].ms == ms)
            return hw->ct[i].tv;
    *tv = (struct timeval){(time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u)};
    if (hw->ct_cnt == sizeof(hw->ct) / sizeof(hw->ct[0])) /* more durations: the heap */
        return tv;
    const struct timeval *common = event_base_init_common_timeout(hw->w->base, tv);
    if (common == NULL)
        return tv;
    hw->ct[hw->ct_cnt].ms = ms;
    hw->ct[hw->ct_cnt++].tv = common;
    return common;
}

bool pt__uph2_serves(const pt_cluster_t *cl)
{
    if (cl == NULL)
        return false;
    if (cl->protocol == PT_PROTO_GRPC)
        return true;
    /* h2c prior knowledge, or TLS with ALPN (h2, else HTTP/1.1 through http.c) */
    return cl->http2 && cl->endpoint_cnt > 0;
}

int pt__uph2_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs, void *ud,
                   pt_upcall_t **out)
{
    if (w == NULL || w->base == NULL || r == NULL || cbs == NULL || cbs->on_done == NULL ||
        cbs->on_data == NULL || r->method.len == 0 || out == NULL)
        return PT_ERR_INTERNAL;
    if (r->cluster->endpoint_cnt == 0)
        return PT_ERR_UNAVAILABLE;
    h2w_t *hw = hw_of(w, true);
    call_t *c = call_new(hw);
    c->base.ops = &h2_ops;
    c->hw = hw;
    c->r = r;
    c->cbs = *cbs;
    c->ud = ud;
    long idx = pt_policy_pick(w, r, &c->pol);
    if (idx < 0) { /* every endpoint is ejected (fail fast), or the circuit breaker is open */
        call_release(c);
        return (int)idx;
    }
    uint64_t timeout = r->timeout_ms ? r->timeout_ms
                                     : (r->cluster->timeout_ms ? r->cluster->timeout_ms : DEFAULT_TIMEOUT_MS);
    c->deadline_ms = mono_ms() + timeout;
    evtimer_assign(&c->tmo, w->base, on_call_timeout, c);
    struct timeval tv;
    evtimer_add(&c->tmo, call_timeout(hw, timeout, &tv));
    c->next = hw->calls;
    if (hw->calls != NULL)
        hw->calls->prev = c;
    hw->calls = c;
    enter(hw);
    attempt(c, (size_t)idx);
    leave(hw);
    *out = &c->base;
    return 0;
}

void pt__uph2_worker_dispose(pt_worker_t *w)
{
    h2w_t *hw = hw_of(w, false);
    if (hw == NULL)
        return;
    enter(hw);
    for (pool_t *p = hw->pools; p != NULL; p = p->next)
        while (p->conns != NULL)
            conn_fail(p->conns, PT_ERR_UPSTREAM, "worker exiting");
    while (hw->calls != NULL) {
        call_t *c = hw->calls;
        c->canceled = true; // NOLINT(clang-analyzer-unix.Malloc): call_free() unlinked the previous head
        call_free(c);
    }
    hw->done_head = hw->done_tail = NULL;
    hw->zombies = NULL;
    leave(hw); /* frees the dead connections */
    while (hw->spare != NULL) {
        call_t *c = hw->spare;
        hw->spare = c->link;
        call_release(c);
    }
    event_del(&hw->done_ev);
    while (hw->pools != NULL) {
        pool_t *p = hw->pools;
        hw->pools = p->next;
        if (p->ssl_ctx != NULL)
            SSL_CTX_free(p->ssl_ctx);
        free(p->url);
        free(p->host);
        free(p->tls_name);
        free(p->authority);
        free(p->ca_file);
        free(p);
    }
    if (hw->dns != NULL)
        evdns_base_free(hw->dns, 1);
    w->upstream_h2 = NULL;
    free(hw);
}

void pt__uph2_stats(pt_worker_t *w, pt_uph2_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    h2w_t *hw = hw_of(w, false);
    if (hw == NULL)
        return;
    *st = hw->stats;
    for (pool_t *p = hw->pools; p != NULL; p = p->next)
        st->conns_live += p->nconns;
}
