/*
 * http.c -- upstream calls to REST clusters over libcurl's multi interface.
 *
 * Each worker owns one CURLM whose sockets and timer are driven by the
 * worker's libevent loop (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION and
 * curl_multi_socket_action), so nothing here ever blocks the loop. The multi
 * handle's connection cache is the worker's keep-alive pool. Every call here
 * is HTTP/1.1: HTTP/2 clusters (h2c and TLS) go through upstream/h2.c, which
 * hands a call over here (pt__uphttp_start_on) when an https:// endpoint
 * picks http/1.1 in ALPN. libcurl 7.88's HTTP/2 had two faults we met: it
 * cannot reuse an h2c connection (curl#10634), and a paused stream could leave
 * other streams' last bytes in its 16 KiB receive buffer until their timeout
 * (unit.upstream's old flake, test_h2_tls_slow_reader).
 *
 * Bodies stream both ways: the request body is pulled through the caller's
 * read_body (CURL_READFUNC_PAUSE when it has nothing yet), the response body
 * is pushed to on_data (CURL_WRITEFUNC_PAUSE once the caller asked to pause).
 *
 * Reentrancy. libcurl refuses most multi calls (add/remove handle) while one
 * of its callbacks runs, and the caller's callbacks (on_head, on_data,
 * read_body) run inside libcurl. So `depth` counts how deep we are inside
 * libcurl; calls started or cancelled at depth > 0 are queued and applied when
 * the outermost libcurl call returns (after_curl). on_done always runs at
 * depth 0, from the completion queue, so it may start or cancel calls freely.
 *
 * Policy: policy.h's, like every back end (round robin, passive ejection,
 * retries on another endpoint when the connection cannot be made or, for
 * idempotent requests, died before any response byte). This file only says
 * what happened: never replayable once a response byte arrived or a request
 * body byte was taken from the caller; a connect failure for lack of our own
 * fds or buffers (CURLINFO_OS_ERRNO) is a local error, not the endpoint's. The timeout covers the whole exchange
 * (the route's, else the cluster's), like Envoy's route timeout.
 *
 */
#include "core/clock.h"
#include "core/config.h"
#include "core/xalloc.h"
#include "upstream/call_internal.h"
#include "upstream/hstore.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portico/status.h"

enum {
    HDR_MAX_BYTES = PT__UP_HDR_MAX_BYTES,
    HDR_MAX_CNT = PT__UP_HDR_MAX_CNT,
    EASY_POOL_MAX = 64,          /* idle easy handles kept per worker */
    MAXCONNECTS_MIN = 16,
    MAXCONNECTS_MAX = 8192,
    DEFAULT_CONNECT_MS = PT__UP_DEFAULT_CONNECT_MS,
    DEFAULT_IDLE_PER_EP = PT__UP_DEFAULT_IDLE_PER_EP,
};

/* ---- small helpers ------------------------------------------------------ */

/* ---- collected response header lines (upstream/hstore.h) ---------------- */

/* Adds a field unless the head (or trailers) would go over the limits. */
static int hstore_add(pt__hstore_t *s, pt_str_t name, pt_str_t value)
{
    if (s->len + name.len + value.len > HDR_MAX_BYTES || s->cnt >= HDR_MAX_CNT)
        return -1;
    pt__hstore_add(s, name, value, true);
    return 0;
}

/* ---- per-worker state ---------------------------------------------------- */

typedef struct uph_sock uph_sock_t;
typedef struct uph_call uph_call_t;

typedef struct uph_worker {
    pt__upworker_t *uw;        /* shared state: endpoint policy (call.c) */
    pt_worker_t *w;
    CURLM *multi;
    struct event timer;
    unsigned depth;            /* > 0 while inside libcurl */
    uph_call_t *calls;         /* every call owned here (doubly linked) */
    uph_call_t *pending;       /* started inside libcurl, added on the way out */
    uph_call_t *zombies;       /* cancelled inside libcurl, removed on the way out */
    uph_sock_t *socks;         /* sockets libcurl asked us to watch (see on_socket) */
    uph_sock_t **fdmap;        /* by fd */
    size_t fdmap_cnt;
    CURL *easy_pool[EASY_POOL_MAX];
    size_t easy_pool_cnt;
    long maxconnects;
    const pt_config_t *sized_for;
    bool verbose;              /* PORTICO_CURL_VERBOSE set: libcurl traces to stderr (debugging) */
    char *default_cainfo;      /* libcurl's built-in CA bundle path (restored on pooled handles) */
} uph_worker_t;

struct uph_sock {
    struct event ev;           /* assigned and added while events != 0 */
    uph_worker_t *hw;
    curl_socket_t fd;
    short events;              /* EV_READ / EV_WRITE currently registered */
    bool watched;              /* libcurl wants it (false: idle in the connection cache) */
    uph_sock_t *prev, *next;
};

struct uph_call {
    pt_upcall_t base;          /* first member: call.c dispatches through base.ops */
    uph_worker_t *hw;
    CURL *easy;
    const pt_upcall_req_t *r;
    pt_upcall_cbs_t cbs;
    void *ud;
    struct curl_slist *hdrs;
    char *method;              /* NUL-terminated copies for libcurl */
    char *target;
    char *url;
    size_t ep_idx;
    pt_policy_try_t pol;       /* endpoints tried, attempts (policy.h) */
    int sock_err;              /* errno of a failed socket() in this attempt (on_opensocket) */
    uint64_t deadline_ms;
    /* per attempt */
    bool connected;            /* the connection was made (or reused) */
    bool got_bytes;            /* a response byte arrived: never retry */
    bool head_sent;
    bool recv_paused, send_paused;
    int status;
    int fail_st;               /* a problem we detected in the response */
    const char *fail_reason;
    uint64_t body_read;        /* request body bytes taken from read_body */
    pt__hstore_t head, trailers;
    /* lifetime */
    bool added;                /* in the multi handle */
    bool queued;               /* on hw->pending */
    bool canceled;
    uph_call_t *prev, *next;   /* hw->calls */
    uph_call_t *link;          /* hw->pending or hw->zombies */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_global(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static pt_policy_ep_t *ep_of(uph_call_t *c)
{
    return pt_policy_ep(c->hw->uw->w, c->r->cluster, c->ep_idx);
}

/* ---- entering and leaving libcurl ----------------------------------------- */

static void free_call(uph_call_t *c);
static void check_done(uph_worker_t *hw);

static void add_now(uph_worker_t *hw, uph_call_t *c)
{
    CURLMcode mc = curl_multi_add_handle(hw->multi, c->easy);
    if (mc == CURLM_OK) {
        c->added = true;
        return;
    }
    /* Cannot happen at depth 0 with a valid handle; fail the call loudly
     * through the normal completion path rather than hanging it. */
    c->fail_st = PT_ERR_INTERNAL;
    c->fail_reason = "curl_multi_add_handle failed";
    if (c->cbs.on_done != NULL && !c->canceled)
        c->cbs.on_done(c->ud, PT_ERR_INTERNAL, c->fail_reason, NULL, 0);
    free_call(c);
}

/* Applies what was deferred while libcurl was on the stack. */
static void after_curl(uph_worker_t *hw, bool process_done)
{
    if (hw->depth > 0)
        return;
    while (hw->zombies != NULL) {
        uph_call_t *c = hw->zombies;
        hw->zombies = c->link;
        if (c->added)
            curl_multi_remove_handle(hw->multi, c->easy);
        c->added = false;
        free_call(c);
    }
    if (process_done)
        check_done(hw);
    while (hw->pending != NULL) {
        uph_call_t *c = hw->pending;
        hw->pending = c->link;
        c->queued = false;
        if (c->canceled)
            free_call(c);
        else
            add_now(hw, c);
    }
}

static void run_action(uph_worker_t *hw, curl_socket_t fd, int flags)
{
    int running = 0;
    hw->depth++;
    curl_multi_socket_action(hw->multi, fd, flags, &running);
    hw->depth--;
    after_curl(hw, true);
}

/*
 * Sockets. libcurl tells us (CURLMOPT_SOCKETFUNCTION) what to watch; when a
 * transfer ends it says CURL_POLL_REMOVE and the connection goes idle in its
 * cache, and the next transfer on that connection asks for the same socket
 * again. Dropping and re-adding the epoll registration every time costs two
 * epoll_ctl calls per proxied request, so a removed socket stays registered,
 * marked idle (`watched` false), and is found again by its fd. The
 * registration goes away for real when libcurl closes the socket (our
 * CURLOPT_CLOSESOCKETFUNCTION, so a recycled fd number never inherits a
 * stale registration) or when an idle socket becomes readable (the upstream
 * closed it; libcurl notices on reuse).
 */
static void on_sock_event(evutil_socket_t fd, short what, void *arg);

static uph_sock_t *sock_lookup(uph_worker_t *hw, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < hw->fdmap_cnt ? hw->fdmap[fd] : NULL;
}

static void sock_set_events(uph_sock_t *sk, short events)
{
    if (sk->events == events)
        return;
    if (sk->events > 0)
        event_del(&sk->ev);
    sk->events = events;
    if (events != 0) {
        event_assign(&sk->ev, sk->hw->w->base, sk->fd, (short)(events | EV_PERSIST), on_sock_event, sk);
        event_add(&sk->ev, NULL);
    }
}

static void sock_free(uph_worker_t *hw, uph_sock_t *sk)
{
    sock_set_events(sk, 0);
    if ((size_t)sk->fd < hw->fdmap_cnt && hw->fdmap[sk->fd] == sk)
        hw->fdmap[sk->fd] = NULL;
    if (sk->prev != NULL)
        sk->prev->next = sk->next;
    else
        hw->socks = sk->next;
    if (sk->next != NULL)
        sk->next->prev = sk->prev;
    free(sk);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    uph_sock_t *sk = arg;
    uph_worker_t *hw = sk->hw;
    if (!sk->watched) { /* idle pooled connection got readable: stop watching it */
        sock_set_events(sk, 0);
        return;
    }
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    run_action(hw, fd, flags); /* may free sk */
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *sockp)
{
    (void)easy;
    uph_worker_t *hw = userp;
    uph_sock_t *sk = sockp != NULL ? sockp : sock_lookup(hw, s);
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL)
            sk->watched = false; /* libcurl forgets its socket -> sk mapping itself */
        return 0;
    }
    short events = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (sk == NULL) {
        if (s < 0)
            return -1;
        if ((size_t)s >= hw->fdmap_cnt) {
            size_t cnt = hw->fdmap_cnt ? hw->fdmap_cnt : 64;
            while (cnt <= (size_t)s)
                cnt *= 2;
            hw->fdmap = pt_xrealloc(hw->fdmap, cnt * sizeof(*hw->fdmap));
            memset(hw->fdmap + hw->fdmap_cnt, 0, (cnt - hw->fdmap_cnt) * sizeof(*hw->fdmap));
            hw->fdmap_cnt = cnt;
        }
        sk = pt_xcalloc(1, sizeof(*sk));
        sk->hw = hw;
        sk->fd = s;
        sk->next = hw->socks;
        if (hw->socks != NULL)
            hw->socks->prev = sk;
        hw->socks = sk;
        hw->fdmap[s] = sk;
    }
    if (!sk->watched) {
        sk->watched = true;
        curl_multi_assign(hw->multi, s, sk);
    }
    sock_set_events(sk, events);
    return 0;
}

static int on_close_socket(void *clientp, curl_socket_t fd)
{
    uph_worker_t *hw = clientp;
    uph_sock_t *sk = sock_lookup(hw, fd);
    if (sk != NULL)
        sock_free(hw, sk); /* before close(): the fd number may be reused at once */
    return close(fd);
}

static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    uph_worker_t *hw = userp;
    if (timeout_ms < 0) {
        evtimer_del(&hw->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(&hw->timer, &tv);
    return 0;
}

/* ---- libcurl callbacks of one call ---------------------------------------- */

static size_t fail_in_cb(uph_call_t *c, const char *reason)
{
    if (c->fail_st == 0) {
        c->fail_st = PT_ERR_UPSTREAM;
        c->fail_reason = reason;
    }
    return 0; /* makes libcurl abort the transfer with CURLE_WRITE_ERROR */
}

static int parse_status_line(pt_str_t line)
{
    /* "HTTP/1.1 200 OK", "HTTP/2 200" */
    const char *sp = memchr(line.base, ' ', line.len);
    if (sp == NULL)
        return -1;
    size_t rest = line.len - (size_t)(sp + 1 - line.base);
    const char *d = sp + 1;
    if (rest < 3 || d[0] < '1' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9')
        return -1;
    if (rest > 3 && d[3] != ' ')
        return -1;
    return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
}

/* Framing checks libcurl does not make (UP-6): a response with both
 * Content-Length and Transfer-Encoding, or disagreeing Content-Lengths,
 * is refused rather than guessed at. */
static const char *check_framing(const pt__hstore_t *s)
{
    const pt__hent_t *cl = NULL;
    bool te = false;
    for (size_t i = 0; i < s->cnt; i++) {
        pt_str_t name = {s->buf + s->e[i].noff, s->e[i].nlen};
        if (pt_str_eq(name, PT_STR("transfer-encoding"))) {
            te = true;
        } else if (pt_str_eq(name, PT_STR("content-length"))) {
            pt_str_t v = {s->buf + s->e[i].voff, s->e[i].vlen};
            unsigned long long n;
            if (pt_str_to_u64(v, ~0ull >> 1, &n) != 0)
                return "invalid content-length";
            if (cl != NULL && (cl->vlen != s->e[i].vlen ||
                               memcmp(s->buf + cl->voff, v.base, v.len) != 0))
                return "conflicting content-length";
            cl = &s->e[i];
        }
    }
    if (te && cl != NULL)
        return "content-length with transfer-encoding";
    return NULL;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    uph_call_t *c = ud;
    size_t len = size * nitems;
    if (c->canceled)
        return 0;
    c->got_bytes = true;
    pt_str_t line = {buf, len};
    if (line.len > 0 && line.base[line.len - 1] == '\n')
        line.len--;
    if (line.len > 0 && line.base[line.len - 1] == '\r')
        line.len--;

    if (c->head_sent) { /* trailers (chunked h1 or h2), then the final empty line */
        if (line.len == 0 || pt_str_has_prefix(line, PT_STR("HTTP/")))
            return len;
        const char *colon = memchr(line.base, ':', line.len);
        if (colon == NULL)
            return fail_in_cb(c, "bad trailer line");
        pt_str_t name = {line.base, (size_t)(colon - line.base)};
        pt_str_t value = pt_str_trim_ows((pt_str_t){colon + 1, line.len - name.len - 1});
        if (!pt_header_name_valid(name, true) || !pt_header_value_valid(value))
            return fail_in_cb(c, "bad trailer field");
        if (hstore_add(&c->trailers, name, value) != 0)
            return fail_in_cb(c, "upstream trailers too large");
        return len;
    }

    if (pt_str_has_prefix(line, PT_STR("HTTP/"))) {
        int st = parse_status_line(line);
        if (st < 0)
            return fail_in_cb(c, "bad status line");
        c->status = st;
        pt__hstore_reset(&c->head);
        return len;
    }
    if (c->status == 0)
        return fail_in_cb(c, "header before status line");
    if (line.len == 0) { /* end of this response head */
        if (c->status < 200) {
            if (c->status == 101)
                return fail_in_cb(c, "unexpected 101 from upstream");
            c->status = 0; /* 100 Continue, 102, 103: wait for the final response */
            pt__hstore_reset(&c->head);
            return len;
        }
        const char *why = check_framing(&c->head);
        if (why != NULL)
            return fail_in_cb(c, why);
        c->head_sent = true;
        pt_policy_answered(c->hw->uw->w, &c->pol, c->status, -1);
        if (c->cbs.on_head != NULL)
            c->cbs.on_head(c->ud, c->status, pt__hstore_view(&c->head), c->head.cnt);
        return c->canceled ? 0 : len;
    }
    if (line.base[0] == ' ' || line.base[0] == '\t')
        return fail_in_cb(c, "obs-fold in upstream header");
    const char *colon = memchr(line.base, ':', line.len);
    if (colon == NULL)
        return fail_in_cb(c, "bad upstream header line");
    pt_str_t name = {line.base, (size_t)(colon - line.base)};
    pt_str_t value = pt_str_trim_ows((pt_str_t){colon + 1, line.len - name.len - 1});
    if (!pt_header_name_valid(name, true) || !pt_header_value_valid(value))
        return fail_in_cb(c, "bad upstream header field");
    if (hstore_add(&c->head, name, value) != 0)
        return fail_in_cb(c, "upstream headers too large");
    return len;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    uph_call_t *c = ud;
    size_t len = size * nmemb;
    if (c->canceled)
        return 0;
    if (!c->head_sent)
        return fail_in_cb(c, "body before response head");
    if (c->recv_paused)
        return CURL_WRITEFUNC_PAUSE; /* libcurl keeps these bytes and hands them back on resume */
    c->got_bytes = true;
    if (len > 0 && c->cbs.on_data != NULL && !c->cbs.on_data(c->ud, data, len))
        c->recv_paused = true;
    return c->canceled ? 0 : len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    uph_call_t *c = ud;
    size_t max = size * nitems;
    if (c->canceled)
        return CURL_READFUNC_ABORT;
    if (!c->r->has_body || c->cbs.read_body == NULL)
        return 0;
    bool eof = false;
    size_t n = c->cbs.read_body(c->ud, buf, max, &eof);
    if (c->canceled)
        return CURL_READFUNC_ABORT;
    if (n > max)
        n = max;
    if (n > 0) {
        c->body_read += n;
        return n;
    }
    if (eof)
        return 0;
    c->send_paused = true;
    return CURL_READFUNC_PAUSE;
}

/* libcurl rewinds the body when it retries a request on a fresh connection
 * (a reused keep-alive connection that the upstream had closed). That is only
 * possible while we have not taken any body bytes from the caller. */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
    uph_call_t *c = ud;
    if (offset == 0 && origin == SEEK_SET && c->body_read == 0)
        return CURL_SEEKFUNC_OK;
    return CURL_SEEKFUNC_CANTSEEK;
}

static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    uph_call_t *c = ud;
    c->connected = true;
    return CURL_PREREQFUNC_OK;
}

/* libcurl 7.88 reports a failed socket() as CURLE_COULDNT_CONNECT without its
 * errno (CURLINFO_OS_ERRNO stays 0), so the socket is made here and the errno
 * kept: EMFILE must not count against the endpoint (policy.h). */
static curl_socket_t on_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    uph_call_t *c = ud;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s == CURL_SOCKET_BAD)
        c->sock_err = errno;
    return s;
}

/* ---- call setup ------------------------------------------------------------ */

static char *cstr(pt_str_t s)
{
    char *p = malloc(s.len + 1);
    if (p == NULL)
        abort();
    if (s.len > 0)
        memcpy(p, s.base, s.len);
    p[s.len] = '\0';
    return p;
}

static struct curl_slist *slist_add(struct curl_slist *l, pt_str_t name, pt_str_t value)
{
    size_t n = name.len + value.len + 3;
    char *line = malloc(n);
    if (line == NULL)
        abort();
    memcpy(line, name.base, name.len);
    if (value.len == 0) {
        /* "Name:" would tell libcurl to drop the header; "Name;" sends it empty. */
        line[name.len] = ';';
        line[name.len + 1] = '\0';
    } else {
        line[name.len] = ':';
        line[name.len + 1] = ' ';
        memcpy(line + name.len + 2, value.base, value.len);
        line[n - 1] = '\0';
    }
    struct curl_slist *nl = curl_slist_append(l, line);
    free(line);
    if (nl == NULL)
        abort();
    return nl;
}

static struct curl_slist *build_headers(const pt_upcall_req_t *r)
{
    struct curl_slist *l = NULL;
    bool has_accept = false;
    if (r->headers != NULL) {
        for (size_t i = 0; i < r->headers->cnt; i++) {
            const pt_header_t *h = &r->headers->v[i];
            pt_str_t n = h->name;
            /* Framing and Host are libcurl's (regenerated, never forwarded);
             * hop-by-hop fields never cross a proxy; values with CR/LF would
             * inject header lines. */
            if (n.len == 0 || n.base[0] == ':' || pt_str_ieq(n, PT_STR("host")) ||
                pt_str_ieq(n, PT_STR("content-length")) ||
                pt_str_ieq(n, PT_STR("transfer-encoding")) || pt_str_ieq(n, PT_STR("expect")) ||
                pt_header_is_hop_by_hop(n) || !pt_header_name_valid(n, true) ||
                !pt_header_value_valid(h->value))
                continue;
            if (pt_str_ieq(n, PT_STR("accept")))
                has_accept = true;
            l = slist_add(l, n, h->value);
        }
    }
    pt_str_t host = r->cluster->authority != NULL ? pt_str_c(r->cluster->authority) : r->authority;
    if (host.len > 0 && pt_header_value_valid(host))
        l = slist_add(l, PT_STR("Host"), host);
    /* Keep libcurl from adding fields the client did not send. */
    if (!has_accept)
        l = curl_slist_append(l, "Accept:");
    l = curl_slist_append(l, "Expect:");
    if (l == NULL)
        abort();
    return l;
}

static void size_pool(uph_worker_t *hw, const pt_cluster_t *cl)
{
    long want = hw->maxconnects;
    const pt_config_t *cfg = hw->w->config;
    if (cfg != NULL && cfg != hw->sized_for) {
        long sum = 0;
        for (size_t i = 0; i < cfg->cluster_cnt; i++) {
            const pt_cluster_t *k = &cfg->clusters[i];
            sum += (long)(k->max_idle_per_endpoint ? k->max_idle_per_endpoint : DEFAULT_IDLE_PER_EP) *
                   (long)k->endpoint_cnt;
        }
        hw->sized_for = cfg;
        if (sum > want)
            want = sum;
    }
    long mine = (long)(cl->max_idle_per_endpoint ? cl->max_idle_per_endpoint : DEFAULT_IDLE_PER_EP) *
                (long)cl->endpoint_cnt;
    if (mine > want)
        want = mine;
    if (want < MAXCONNECTS_MIN)
        want = MAXCONNECTS_MIN;
    if (want > MAXCONNECTS_MAX)
        want = MAXCONNECTS_MAX;
    if (want != hw->maxconnects) {
        hw->maxconnects = want;
        curl_multi_setopt(hw->multi, CURLMOPT_MAXCONNECTS, want);
    }
}

/*
 * Easy handles are pooled per worker and NOT curl_easy_reset() between calls
 * (a reset frees and re-creates libcurl's per-handle state, a measurable
 * part of a proxied request). So every option a call may change is set here
 * each time, including back to its default; the fixed ones are set once
 * when the handle is created (init_easy).
 */
static void init_easy(uph_worker_t *hw, CURL *e)
{
    if (hw->verbose)
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");          /* ignore http_proxy & co. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1); /* ALPN http/1.1 */
    /* Content codings pass through untouched; transfer decoding stays on so
     * that libcurl de-chunks (the client side re-frames) and can tell a
     * truncated body from a complete one. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, hw);
}

static void configure_easy(uph_call_t *c)
{
    CURL *e = c->easy;
    const pt_upcall_req_t *r = c->r;
    const pt_cluster_t *cl = r->cluster;

    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_READDATA, c);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, c);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, c->target);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);


    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cl->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cl->tls_verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_CAINFO, cl->ca_file != NULL ? cl->ca_file : c->hw->default_cainfo);

    /* Method and body: HTTPGET first puts the handle back to a plain GET. */
    bool is_head = pt_str_eq(r->method, PT_STR("HEAD"));
    bool upload = r->has_body || (r->content_length == 0 && !is_head);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)-1);
    if (is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (upload) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(r->has_body ? r->content_length : 0));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    } else if (!pt_str_eq(r->method, PT_STR("GET"))) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    }
}

/** Points the handle at endpoint `idx` for one more attempt. False when time is up. */
static bool set_attempt(uph_call_t *c, size_t idx)
{
    const pt_cluster_t *cl = c->r->cluster;
    uint64_t now = pt_now_ms();
    if (now >= c->deadline_ms)
        return false;
    uint64_t left = c->deadline_ms - now;
    uint64_t conn = cl->connect_timeout_ms ? cl->connect_timeout_ms : DEFAULT_CONNECT_MS;
    if (conn > left)
        conn = left;

    const pt_endpoint_t *ep = &cl->endpoints[idx];
    size_t ulen = strlen(ep->url);
    free(c->url);
    c->url = malloc(ulen + 2);
    if (c->url == NULL)
        abort();
    memcpy(c->url, ep->url, ulen);
    c->url[ulen] = '/';
    c->url[ulen + 1] = '\0';

    c->ep_idx = idx;
    c->connected = c->got_bytes = c->head_sent = false;
    c->sock_err = 0;
    c->recv_paused = c->send_paused = false;
    c->status = 0;
    c->fail_st = 0;
    c->fail_reason = NULL;
    pt__hstore_reset(&c->head);
    pt__hstore_reset(&c->trailers);

    curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)conn);
    return true;
}

static void free_call(uph_call_t *c)
{
    uph_worker_t *hw = c->hw;
    pt_policy_call_end(&c->pol);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        hw->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->easy != NULL) {
        if (hw->easy_pool_cnt < EASY_POOL_MAX) {
            /* Options stay set (configure_easy sets all varying ones again);
             * the header list it points to is freed below and replaced
             * before the handle is used again. */
            hw->easy_pool[hw->easy_pool_cnt++] = c->easy;
        } else {
            curl_easy_cleanup(c->easy);
        }
        c->easy = NULL;
    }
    curl_slist_free_all(c->hdrs);
    free(c->method);
    free(c->target);
    free(c->url);
    pt__hstore_free(&c->head);
    pt__hstore_free(&c->trailers);
    free(c);
}

/* ---- completion -------------------------------------------------------------- */

/* The policy's kinds (policy.h), under short local names, plus "no failure". */
typedef int fail_kind_t;
enum {
    FAIL_NONE = -1,
    FAIL_CONNECT = PT_POLICY_FAIL_CONNECT,
    FAIL_EARLY = PT_POLICY_FAIL_EARLY,
    FAIL_OTHER = PT_POLICY_FAIL_OTHER,
    FAIL_LOCAL = PT_POLICY_FAIL_LOCAL,
};

static fail_kind_t classify(uph_call_t *c, CURLcode res, int *st, const char **reason)
{
    if (c->fail_st != 0) {
        *st = c->fail_st;
        *reason = c->fail_reason;
        return FAIL_OTHER;
    }
    switch (res) {
    case CURLE_OK:
        if (!c->head_sent) {
            *st = PT_ERR_UPSTREAM;
            *reason = "upstream sent no response head";
            return FAIL_OTHER;
        }
        *st = 0;
        *reason = "ok";
        return FAIL_NONE;
    case CURLE_COULDNT_CONNECT:
        *st = PT_ERR_UNAVAILABLE;
        *reason = "upstream connection refused";
        return FAIL_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
        *st = PT_ERR_UNAVAILABLE;
        *reason = "upstream host not resolved";
        return FAIL_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        if (!c->connected && pt_now_ms() < c->deadline_ms) {
            *st = PT_ERR_UNAVAILABLE;
            *reason = "upstream connect timeout";
            return FAIL_CONNECT;
        }
        *st = PT_ERR_TIMEOUT;
        *reason = "upstream timeout";
        return FAIL_OTHER;
    case CURLE_PARTIAL_FILE:
        *st = PT_ERR_UPSTREAM;
        *reason = "upstream response truncated";
        return c->got_bytes ? FAIL_OTHER : FAIL_EARLY;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        *st = PT_ERR_UPSTREAM;
        *reason = c->got_bytes ? "upstream connection broken" : "upstream closed without response";
        return c->got_bytes ? FAIL_OTHER : FAIL_EARLY;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        *st = PT_ERR_UPSTREAM;
        *reason = "upstream TLS failure";
        return FAIL_OTHER;
    default:
        *st = PT_ERR_UPSTREAM;
        *reason = "upstream transfer failed";
        return FAIL_OTHER;
    }
}

/** Tries the request again on another endpoint. True when a new attempt started. */
static bool retry(uph_worker_t *hw, uph_call_t *c, fail_kind_t kind)
{
    long idx = pt_policy_retry(hw->uw->w, c->r, &c->pol, (pt_policy_fail_t)kind,
                               !c->got_bytes && c->body_read == 0);
    if (idx < 0 || !set_attempt(c, (size_t)idx))
        return false;
    add_now(hw, c);
    return true;
}

static void finish(uph_worker_t *hw, uph_call_t *c, CURLcode res)
{
    if (c->canceled) {
        free_call(c);
        return;
    }
    int st;
    const char *reason;
    fail_kind_t kind = classify(c, res, &st, &reason);
    if (kind == FAIL_CONNECT) {
        long err = c->sock_err;
        if (err == 0)
            curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &err);
        if (pt_policy_connect_failed(hw->uw->w, c->r->cluster, ep_of(c), (int)err) ==
            PT_POLICY_FAIL_LOCAL) {
            kind = FAIL_LOCAL;
            st = PT_ERR_OVERLOADED;
            reason = "local resources exhausted (upstream socket)";
        }
    }
    if (kind != FAIL_NONE && retry(hw, c, kind))
        return;
    const pt_header_t *t = st == 0 ? pt__hstore_view(&c->trailers) : NULL;
    size_t tcnt = st == 0 ? c->trailers.cnt : 0;
    if (c->cbs.on_done != NULL)
        c->cbs.on_done(c->ud, st, reason, t, tcnt);
    free_call(c);
}

static void check_done(uph_worker_t *hw)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(hw->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        uph_call_t *c = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(hw->multi, e);
        if (c == NULL)
            continue;
        c->added = false;
        finish(hw, c, res);
    }
}

/* ---- the ops of an http call ------------------------------------------------- */

static void http_body_ready(pt_upcall_t *b)
{
    uph_call_t *c = (uph_call_t *)b;
    if (c->canceled || !c->send_paused || !c->added)
        return;
    uph_worker_t *hw = c->hw;
    c->send_paused = false;
    hw->depth++;
    curl_easy_pause(c->easy, c->recv_paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
    hw->depth--;
    after_curl(hw, false); /* `c` may be gone from here on */
}

static void http_resume(pt_upcall_t *b)
{
    uph_call_t *c = (uph_call_t *)b;
    if (c->canceled || !c->recv_paused)
        return;
    c->recv_paused = false;
    if (!c->added)
        return;
    uph_worker_t *hw = c->hw;
    /* Unpausing may hand the bytes libcurl held back to on_write right here. */
    hw->depth++;
    curl_easy_pause(c->easy, c->send_paused ? CURLPAUSE_SEND : CURLPAUSE_CONT);
    hw->depth--;
    after_curl(hw, false); /* `c` may be gone from here on */
}

static void http_cancel(pt_upcall_t *b)
{
    uph_call_t *c = (uph_call_t *)b;
    if (c->canceled)
        return;
    c->canceled = true;
    uph_worker_t *hw = c->hw;
    if (c->queued)
        return; /* after_curl frees it instead of adding it */
    if (hw->depth > 0) {
        /* libcurl is on the stack (maybe running this very transfer): our
         * callbacks now refuse to continue, and the handle is removed once
         * libcurl returns. */
        c->link = hw->zombies;
        hw->zombies = c;
        return;
    }
    if (c->added)
        curl_multi_remove_handle(hw->multi, c->easy); /* closes the connection mid-exchange */
    c->added = false;
    free_call(c);
}

static const char *http_endpoint(const pt_upcall_t *b)
{
    const uph_call_t *c = (const uph_call_t *)b;
    return c->url != NULL ? c->r->cluster->endpoints[c->ep_idx].url : NULL;
}

static const pt__upcall_ops_t http_ops = {
    .body_ready = http_body_ready,
    .resume = http_resume,
    .cancel = http_cancel,
    .endpoint = http_endpoint,
};

/* A call on endpoint `idx` whose policy state is `pol` (or, idx < 0, the policy's pick). */
static int start(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                 void *ud, pt_upcall_t **out, long idx, const pt_policy_try_t *pol,
                 uint64_t deadline_ms)
{
    uph_worker_t *hw = uw != NULL ? uw->curl : NULL;
    if (hw == NULL)
        return PT_ERR_INTERNAL;
    if (r->method.len == 0 || cbs->on_done == NULL)
        return PT_ERR_INTERNAL;
    if (r->cluster->endpoint_cnt == 0)
        return PT_ERR_UNAVAILABLE;

    uph_call_t *c = pt_xcalloc(1, sizeof(*c));
    c->base.ops = &http_ops;
    c->hw = hw;
    c->r = r;
    c->cbs = *cbs;
    c->ud = ud;
    if (idx >= 0) {
        c->pol = *pol;
    } else if ((idx = pt_policy_pick(uw->w, r, &c->pol)) < 0) {
        free(c); /* every endpoint is ejected (fail fast), or the circuit breaker is open */
        return (int)idx;
    }
    c->deadline_ms = deadline_ms != 0 ? deadline_ms : pt_now_ms() + pt__up_timeout_ms(r);
    c->method = cstr(r->method);
    c->target = cstr(r->path.len > 0 ? r->path : PT_STR("/"));
    c->hdrs = build_headers(r);
    if (hw->easy_pool_cnt > 0) {
        c->easy = hw->easy_pool[--hw->easy_pool_cnt];
    } else {
        c->easy = curl_easy_init();
        if (c->easy == NULL)
            abort();
        init_easy(hw, c->easy);
    }
    c->next = hw->calls;
    if (hw->calls != NULL)
        hw->calls->prev = c;
    hw->calls = c;

    size_pool(hw, r->cluster);
    configure_easy(c);
    if (!set_attempt(c, (size_t)idx)) { /* a handed-over call whose time is up */
        c->pol = (pt_policy_try_t){0}; /* still the caller's */
        free_call(c);
        return PT_ERR_TIMEOUT;
    }
    if (hw->depth > 0) {
        c->queued = true;
        c->link = hw->pending;
        hw->pending = c;
    } else {
        CURLMcode mc = curl_multi_add_handle(hw->multi, c->easy);
        if (mc != CURLM_OK) {
            if (pol != NULL)
                c->pol = (pt_policy_try_t){0}; /* still the caller's */
            free_call(c);
            return PT_ERR_INTERNAL;
        }
        c->added = true;
    }
    *out = &c->base;
    return 0;
}

int pt__uphttp_start(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                     void *ud, pt_upcall_t **out)
{
    return start(uw, r, cbs, ud, out, -1, NULL, 0);
}

int pt__uphttp_start_on(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                        void *ud, pt_upcall_t **out, size_t idx, const pt_policy_try_t *pol,
                        uint64_t deadline_ms)
{
    if (pol == NULL || idx >= r->cluster->endpoint_cnt)
        return PT_ERR_INTERNAL;
    return start(uw, r, cbs, ud, out, (long)idx, pol, deadline_ms);
}

/* ---- per worker ---------------------------------------------------------------- */

int pt__uphttp_worker_init(pt__upworker_t *uw)
{
    pt_worker_t *w = uw->w;
    pthread_once(&curl_once, curl_global);
    if (curl_init_rc != CURLE_OK)
        return PT_ERR_INTERNAL;
    uph_worker_t *hw = pt_xcalloc(1, sizeof(*hw));
    hw->uw = uw;
    hw->w = w;
    hw->multi = curl_multi_init();
    if (hw->multi == NULL) {
        free(hw);
        return PT_ERR_INTERNAL;
    }
    evtimer_assign(&hw->timer, w->base, on_timer_event, hw);
    curl_multi_setopt(hw->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(hw->multi, CURLMOPT_SOCKETDATA, hw);
    curl_multi_setopt(hw->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(hw->multi, CURLMOPT_TIMERDATA, hw);
    curl_multi_setopt(hw->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING); /* HTTP/1.1 only */
    hw->verbose = getenv("PORTICO_CURL_VERBOSE") != NULL;
    CURL *probe = curl_easy_init();
    if (probe != NULL) {
        char *ca = NULL;
        if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &ca) == CURLE_OK && ca != NULL)
            hw->default_cainfo = strdup(ca);
        curl_easy_cleanup(probe);
    }
    hw->maxconnects = MAXCONNECTS_MIN;
    curl_multi_setopt(hw->multi, CURLMOPT_MAXCONNECTS, hw->maxconnects);
    uw->curl = hw;
    return 0;
}

void pt__uphttp_worker_dispose(pt__upworker_t *uw)
{
    uph_worker_t *hw = uw->curl;
    if (hw == NULL)
        return;
    while (hw->calls != NULL) {
        uph_call_t *c = hw->calls;
        if (c->added) // NOLINT(clang-analyzer-unix.Malloc): free_call() unlinked the previous head
            curl_multi_remove_handle(hw->multi, c->easy);
        c->added = false;
        free_call(c);
    }
    hw->pending = hw->zombies = NULL;
    curl_multi_cleanup(hw->multi);
    hw->multi = NULL;
    while (hw->socks != NULL)
        sock_free(hw, hw->socks); // NOLINT(clang-analyzer-unix.Malloc): sock_free() unlinks the head
    free(hw->fdmap);
    evtimer_del(&hw->timer);
    for (size_t i = 0; i < hw->easy_pool_cnt; i++)
        curl_easy_cleanup(hw->easy_pool[i]);
    free(hw->default_cainfo);
    free(hw);
    uw->curl = NULL;
}
