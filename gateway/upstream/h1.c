/*
 * h1.c -- the native HTTP/1.1 upstream client (REST clusters whose endpoints
 * are plain http:// ones with an IP address, `http2: false`; see call.c for
 * the split with libcurl), and the client of every tunnel (upgrade), over
 * TCP or, to https:// endpoints, over TLS (see "TLS" below).
 *
 * Connections. Per worker, per endpoint URL, a pool of idle keep-alive
 * connections, newest first (LIFO: the warmest connection is reused, the
 * coldest ones age out), at most the cluster's `max_idle_per_endpoint`. Each
 * connection is a non-blocking socket (TCP_NODELAY) with ONE persistent read
 * event for its whole life, so a proxied request on a pooled connection costs
 * one send and one read and no epoll_ctl. A write event is added only while a
 * connect is in progress or the socket is full. An idle connection that turns
 * readable (the upstream closed it, or sent something unasked) is closed at
 * once; connections idle for longer than IDLE_MAX_MS are not reused.
 *
 * Exchange. The request head (method, target, Host, the caller's headers
 * minus hop-by-hop and framing fields, then our own framing: Content-Length
 * when the length is known, else Transfer-Encoding: chunked) is built into a
 * buffer kept with the call; the first request body bytes are pulled into the
 * same buffer behind it so that a small request leaves in one send. The body
 * streams through read_body with the contract of call.h (0 without eof:
 * paused until pt_upcall_body_ready()). The response is parsed here, strictly
 * (see parse_head): conflicting or invalid Content-Length, Content-Length
 * with Transfer-Encoding, `chunked` not last, bad chunk framing, obs-fold,
 * invalid field names or values, a head or trailer block over 128 KiB, and a
 * 101 to a call that did not offer an upgrade are PT_ERR_UPSTREAM (502). A
 * call with `upgrade` set offers it; its 101 turns the connection into the
 * call's byte pipe (see call.h), which is never pooled. 1xx heads are skipped; HEAD,
 * 204 and 304 have no body; bodies end by Content-Length, by the last chunk
 * (trailers go to on_done) or by the close of the connection. Body bytes go
 * to on_data straight from the connection's read buffer; when on_data
 * returns false the read event is removed until pt_upcall_resume().
 *
 * Reuse. A connection goes back to the pool only when the exchange completed
 * cleanly: the whole request was written, the response was delimited by
 * length or chunking, no byte followed it, and neither side said
 * `Connection: close` (an HTTP/1.0 response never keeps it).
 *
 * Retries. Endpoint choice, ejection and the retry decision are policy.h's
 * (the same for every back end); this file reports what happened. Its own
 * rule is the keep-alive race: a request that fails on a REUSED connection
 * before any response byte came back (the upstream closed the idle connection
 * as we wrote) is sent again once on a fresh connection to the same endpoint,
 * if it is idempotent or no request body byte was taken yet. A socket() or
 * connect() that fails for lack of our own fds or buffers is a local error
 * (503 OVERLOADED, no ejection, no retry).
 *
 * Connection cap. Connections per endpoint (idle ones included) are counted
 * by the policy, at most `max_connections_per_endpoint`; a call that finds
 * neither an idle connection nor a free slot waits in the policy's FIFO (its
 * timer still runs to the deadline). A closing connection passes its slot to
 * the first waiter, a connection going back to the pool is taken by it; the
 * waiter then starts its attempt from its kick event, never from inside the
 * code that released the connection.
 *
 * Timeouts: one timer per call, armed once for the connect (the cluster's
 * connect timeout, capped by the deadline) and once for the whole exchange;
 * reads never re-arm it.
 *
 * Reentrancy. The caller's callbacks may cancel the call, resume it or start
 * other calls. Every entry point holds the call (`depth`); after each
 * callback the code checks `canceled`/`finished` and unwinds; the call is
 * released when the outermost entry point returns. No callback ever runs
 * from inside pt_upcall_start(): the first send happens from a `kick` event
 * activated without a system call, in the same loop iteration.
 *
 * Memory: call structs (with their head buffer) are kept on a per-worker free
 * list and connection read buffers live as long as the connection, so a
 * request on a pooled connection allocates nothing.
 */
#include "core/headers_priv.h"
#include "core/xalloc.h"
#include "net/sys.h"
#include "upstream/call_internal.h"
#include "upstream/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/status.h"

enum {
    RBUF_INIT = 16384,                           /* a connection's read buffer */
    RBUF_MAX = PT__UP_HDR_MAX_BYTES + 16384,     /* grown for a large head, never further */
    BODY_PULL = 16384,                           /* request body bytes pulled at a time */
    CHUNK_LINE_MAX = 4096,                       /* chunk-size line with its extensions */
    CALL_FREE_MAX = 256,                         /* call structs kept per worker */
    POOL_BUCKETS = 64,
    IDLE_MAX_MS = 50000,                         /* pooled connections older than this are closed */
};

typedef struct h1_worker h1_worker_t;
typedef struct h1_pool h1_pool_t;
typedef struct h1_conn h1_conn_t;
typedef struct h1_call h1_call_t;

/* Keep-alive connections to one endpoint URL on one worker. */
struct h1_pool {
    char *url;
    struct sockaddr_storage addr;
    socklen_t alen;
    char host[80];               /* Host when the caller gives none: "127.0.0.1:9000" */
    size_t host_len;
    bool tls;                    /* https:// endpoint: tunnels only (see TLS below) */
    char *name;                  /* the endpoint's host: SNI (names only) and the certificate check */
    h1_conn_t *idle_head;        /* newest */
    h1_conn_t *idle_tail;        /* oldest */
    unsigned idle_cnt;
    pt_policy_ep_t *ep;          /* the policy's endpoint: health, connection count, waiters */
    h1_pool_t *next;             /* hash chain */
};

struct h1_conn {
    h1_worker_t *hw;
    h1_pool_t *pool;
    int fd;
    struct event rev;            /* persistent EV_READ, added for the connection's life */
    struct event wev;            /* persistent EV_WRITE, added only while needed */
    bool rev_on, wev_on;
    h1_call_t *call;             /* the exchange in progress, NULL while idle */
    h1_conn_t *prev, *next;      /* idle list of the pool */
    uint64_t idle_since_ms;
    char *rbuf;
    size_t roff, rlen, rcap;     /* parsed up to roff; bytes up to rlen */
    SSL *ssl;                    /* https:// endpoint: the TLS session, else NULL */
    bool tls_up;                 /* the handshake completed */
};

typedef enum {
    P_HEAD, P_BODY_CL, P_BODY_CLOSE, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILERS, P_DONE,
} pstate_t;

/* The policy's kinds (policy.h), under short local names. */
typedef pt_policy_fail_t fail_kind_t;
#define FAIL_CONNECT PT_POLICY_FAIL_CONNECT
#define FAIL_EARLY PT_POLICY_FAIL_EARLY
#define FAIL_OTHER PT_POLICY_FAIL_OTHER
#define FAIL_LOCAL PT_POLICY_FAIL_LOCAL

struct h1_call {
    pt_upcall_t base;            /* first member: call.c dispatches through base.ops */
    h1_worker_t *hw;
    const pt_upcall_req_t *r;
    pt_upcall_cbs_t cbs;
    void *ud;
    uint64_t deadline_ms;
    size_t ep_idx;
    pt_policy_try_t pol;         /* endpoints tried, attempts (policy.h) */
    pt_policy_wait_t wait;       /* queued for a connection slot of `slot_pool` */
    h1_pool_t *slot_pool;        /* the pool waited on, or whose slot was handed to us */
    bool slot_granted;           /* a counted slot passed to us while we waited */
    bool woken;                  /* the kick must start the attempt that waited */
    bool is_head;
    bool chunked_req;
    bool tunnel;                 /* the upstream answered 101 to our upgrade: a byte pipe now */
    bool lent;                   /* the tunnel's socket is lent (h1_tunnel_lend): hands off */
    /* request output */
    char *out;
    size_t out_off, out_len, out_cap;
    size_t head_len;             /* bytes of the head at the start of out */
    bool out_intact;             /* out still holds every request byte sent (replayable) */
    bool body_eof;               /* the request body ended (the last chunk is queued) */
    bool send_done;              /* everything was written */
    bool send_paused;            /* read_body had nothing: waiting for body_ready */
    bool send_aborted;           /* the upstream stopped reading (it answered early) */
    uint64_t body_read;          /* request body bytes taken from the caller */
    /* per attempt */
    h1_conn_t *conn;
    bool connecting;
    bool reused;                 /* the connection came from the pool */
    bool stale_retried;
    bool got_bytes;              /* a response byte arrived: never retry */
    bool head_sent;              /* on_head was called */
    bool recv_paused;
    int pending_err;             /* an errno to report from the kick (connect failed at once) */
    int pending_st;              /* a status to fail with from the kick (queue full) */
    int send_err;                /* an errno to report from the kick (send failed in attempt) */
    /* response parser */
    pstate_t ps;
    int status;
    bool keepalive;
    uint64_t remaining;          /* P_BODY_CL / P_CHUNK_DATA */
    size_t scan;                 /* offset in rbuf where the search for the blank line goes on */
    size_t chunk_ext;            /* chunk-extension bytes seen */
    /* lifetime */
    unsigned depth;              /* > 0 while an entry point of this call is on the stack */
    bool canceled, finished;
    h1_call_t *prev, *next;      /* hw->calls, or the free list (next only) */
    /* Kept across reuse (the free list): assigned once, to this call and the
     * worker's base; never pending while the call is free (call_free). */
    struct event timer;          /* connect timeout, then the whole exchange */
    struct event kick;           /* deferred work, activated without a syscall */
};

typedef struct h1_clcache {
    const pt_cluster_t *cl;
    h1_pool_t **pools;           /* by endpoint index */
    SSL_CTX *ssl_ctx;            /* the cluster's client TLS context, made on first use */
} h1_clcache_t;

struct h1_worker {
    pt__upworker_t *uw;
    struct event_base *base;
    h1_pool_t *pools[POOL_BUCKETS];
    h1_clcache_t *cc;            /* by cluster->index */
    size_t cc_cnt;
    h1_call_t *calls;            /* running */
    h1_call_t *free_calls;
    unsigned free_cnt;
    pt_header_t hv[PT__UP_HDR_MAX_CNT]; /* views handed to on_head / on_done */
};

/* ---- small helpers ------------------------------------------------------- */

static bool ieq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = a[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != lit[i])
            return false;
    }
    return true;
}

/* What parse_field() answers for each problem, for a head or a trailer block. */
typedef struct field_errs {
    const char *fold, *line, *field, *count;
} field_errs_t;

static const field_errs_t HEADER_ERRS = {"obs-fold in upstream header", "bad upstream header line",
                                         "bad upstream header field", "upstream headers too large"};
static const field_errs_t TRAILER_ERRS = {"obs-fold in upstream trailer", "bad trailer line",
                                          "bad trailer field", "upstream trailers too large"};

/*
 * One `name: value` line (without its line end) of a head or trailer block,
 * the n-th of the block: checked strictly, the name lowercased in place.
 * Fills *out and returns NULL, or returns the static reason from `errs`.
 */
static const char *parse_field(char *line, size_t len, size_t n, const field_errs_t *errs,
                               pt_header_t *out)
{
    if (line[0] == ' ' || line[0] == '\t')
        return errs->fold;
    char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return errs->line;
    pt_str_t name = {line, (size_t)(colon - line)};
    pt_str_t value = pt_str_trim_ows((pt_str_t){colon + 1, len - name.len - 1});
    if (name.len == 0)
        return errs->field;
    for (size_t i = 0; i < name.len; i++) { /* checked and lowercased in one pass */
        unsigned char c = pt__tchar_lower[(unsigned char)line[i]];
        if (c == 0)
            return errs->field;
        line[i] = (char)c;
    }
    if (!pt_header_value_valid(value))
        return errs->field;
    if (n >= PT__UP_HDR_MAX_CNT)
        return errs->count;
    out->name = name;
    out->value = value;
    return NULL;
}

/* Request fields never forwarded by us: framing and Host (ours), Expect, and
 * the hop-by-hop ones of pt_header_is_hop_by_hop(). By length first. */
static bool skip_field(pt_str_t n)
{
    switch (n.len) {
    case 2:
        return ieq(n.base, 2, "te");
    case 4:
        return ieq(n.base, 4, "host");
    case 6:
        return ieq(n.base, 6, "expect");
    case 7:
        return ieq(n.base, 7, "trailer") || ieq(n.base, 7, "upgrade");
    case 10:
        return ieq(n.base, 10, "connection") || ieq(n.base, 10, "keep-alive");
    case 14:
        return ieq(n.base, 14, "content-length") || ieq(n.base, 14, "http2-settings");
    default:
        return n.len == 0 || n.base[0] == ':' || pt_header_is_hop_by_hop(n);
    }
}

static bool parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return true;
    }
    return false;
}

bool pt__uph1_tunnel_ok(const pt_endpoint_t *ep)
{
    struct sockaddr_storage ss;
    socklen_t len;
    return ep != NULL && ep->host != NULL && ep->url != NULL &&
           parse_ip(ep->host, ep->port, &ss, &len);
}

bool pt__uph1_endpoint_ok(const pt_endpoint_t *ep)
{
    struct sockaddr_storage ss;
    socklen_t len;
    return ep != NULL && !ep->tls && ep->host != NULL && ep->url != NULL &&
           parse_ip(ep->host, ep->port, &ss, &len);
}

/* ---- pools ------------------------------------------------------------------ */

static size_t url_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % POOL_BUCKETS;
}

static h1_pool_t *pool_of_url(h1_worker_t *hw, const pt_endpoint_t *ep)
{
    size_t b = url_hash(ep->url);
    for (h1_pool_t *p = hw->pools[b]; p != NULL; p = p->next)
        if (strcmp(p->url, ep->url) == 0)
            return p;
    h1_pool_t *p = pt_xcalloc(1, sizeof(*p));
    p->url = strdup(ep->url);
    if (p->url == NULL)
        abort();
    parse_ip(ep->host, ep->port, &p->addr, &p->alen); /* checked by pt__uph1_endpoint_ok */
    p->tls = ep->tls;
    p->name = strdup(ep->host);
    if (p->name == NULL)
        abort();
    /* Host as libcurl would send it: the URL's authority, without a default port. */
    const char *auth = strstr(ep->url, "://");
    auth = auth != NULL ? auth + 3 : ep->url;
    size_t alen = strlen(auth);
    if (alen > 3 && !ep->tls && strcmp(auth + alen - 3, ":80") == 0)
        alen -= 3;
    else if (alen > 4 && ep->tls && strcmp(auth + alen - 4, ":443") == 0)
        alen -= 4;
    if (alen >= sizeof(p->host))
        alen = 0; /* cannot happen for an IP address and a port */
    memcpy(p->host, auth, alen);
    p->host_len = alen;
    p->next = hw->pools[b];
    hw->pools[b] = p;
    return p;
}

static h1_pool_t *pool_for(h1_worker_t *hw, const pt_cluster_t *cl, size_t idx)
{
    if (cl->index >= hw->cc_cnt) {
        size_t cnt = (size_t)cl->index + 8;
        hw->cc = pt_xrealloc(hw->cc, cnt * sizeof(*hw->cc));
        memset(hw->cc + hw->cc_cnt, 0, (cnt - hw->cc_cnt) * sizeof(*hw->cc));
        hw->cc_cnt = cnt;
    }
    h1_clcache_t *cc = &hw->cc[cl->index];
    if (cc->cl != cl) { /* another snapshot's cluster at this index */
        free(cc->pools);
        SSL_CTX_free(cc->ssl_ctx); /* live sessions hold their own reference */
        cc->ssl_ctx = NULL;
        cc->cl = cl;
        cc->pools = pt_xcalloc(cl->endpoint_cnt ? cl->endpoint_cnt : 1, sizeof(*cc->pools));
    }
    if (cc->pools[idx] == NULL) {
        cc->pools[idx] = pool_of_url(hw, &cl->endpoints[idx]);
        /* both keyed by URL, both live as long as the worker */
        cc->pools[idx]->ep = pt_policy_ep(hw->uw->w, cl, idx);
    }
    return cc->pools[idx];
}

/* ---- connections -------------------------------------------------------------- */

static void on_conn_read(evutil_socket_t fd, short what, void *arg);
static void on_conn_write(evutil_socket_t fd, short what, void *arg);

static void idle_unlink(h1_conn_t *k)
{
    h1_pool_t *p = k->pool;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        p->idle_head = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    else
        p->idle_tail = k->prev;
    k->prev = k->next = NULL;
    p->idle_cnt--;
}

static void want_write(h1_conn_t *k, bool on)
{
    if (on && !k->wev_on) {
        event_add(&k->wev, NULL);
        k->wev_on = true;
    } else if (!on && k->wev_on) {
        event_del(&k->wev);
        k->wev_on = false;
    }
}

static void want_read(h1_conn_t *k, bool on)
{
    if (on && !k->rev_on) {
        event_add(&k->rev, NULL);
        k->rev_on = true;
    } else if (!on && k->rev_on) {
        event_del(&k->rev);
        k->rev_on = false;
    }
}

static void slot_released(h1_pool_t *p);

static void conn_close(h1_conn_t *k)
{
    h1_pool_t *p = k->pool;
    want_read(k, false);
    want_write(k, false);
    if (k->ssl != NULL) {
        if (k->tls_up)
            SSL_shutdown(k->ssl); /* close_notify, best effort (non-blocking) */
        SSL_free(k->ssl);
        ERR_clear_error(); /* nothing left in this thread's queue for the frontend's TLS */
    }
    close(k->fd);
    free(k->rbuf);
    free(k);
    slot_released(p);
}

/** A new non-blocking connection to the pool's address; *err set when connect() failed at once. */
static h1_conn_t *conn_open(h1_worker_t *hw, h1_pool_t *p, bool *connecting, int *err)
{
    *err = 0;
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *connecting = false;
    if (connect(fd, (const struct sockaddr *)&p->addr, p->alen) != 0) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return NULL;
        }
        *connecting = true;
    }
    h1_conn_t *k = pt_xcalloc(1, sizeof(*k));
    k->hw = hw;
    k->pool = p;
    k->fd = fd;
    k->rcap = RBUF_INIT;
    k->rbuf = malloc(k->rcap);
    if (k->rbuf == NULL)
        abort();
    event_assign(&k->rev, hw->base, fd, EV_READ | EV_PERSIST, on_conn_read, k);
    event_assign(&k->wev, hw->base, fd, EV_WRITE | EV_PERSIST, on_conn_write, k);
    want_read(k, true);
    if (*connecting)
        want_write(k, true);
    return k;
}

/* ---- TLS (https:// endpoints, tunnels only) -------------------------------------
 *
 * The cluster's keys as every upstream hop reads them (upstream/tls.h):
 * `tls_verify` checks the chain (against `ca_file`, else the system store)
 * and the endpoint's host (a name, or an IP address against the
 * certificate's IP SANs); a name is also sent as SNI. ALPN offers http/1.1.
 * A peer that closes without close_notify ends the stream like a TCP close
 * (the tunnel's own protocol delimits its data, as over ws://).
 */

/** The cluster's client TLS context (made once per snapshot and worker), or NULL if it cannot be. */
static SSL_CTX *tls_ctx(h1_worker_t *hw, const pt_cluster_t *cl)
{
    h1_clcache_t *cc = &hw->cc[cl->index]; /* made by pool_for() for this snapshot */
    if (cc->ssl_ctx == NULL) {
        cc->ssl_ctx = pt__uptls_ctx_new(cl->tls_verify, cl->ca_file, PT_UPTLS_ALPN_H1,
                                        sizeof(PT_UPTLS_ALPN_H1) - 1);
        if (cc->ssl_ctx != NULL)
            SSL_CTX_set_options(cc->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    }
    return cc->ssl_ctx;
}

/** The TLS session of a new connection of the call. False when it cannot be made. */
static bool tls_begin(h1_call_t *c, h1_conn_t *k)
{
    const pt_cluster_t *cl = c->r->cluster;
    SSL_CTX *ctx = tls_ctx(c->hw, cl);
    if (ctx == NULL || (k->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(k->ssl, k->fd) != 1)
        return false;
    SSL_set_connect_state(k->ssl);
    return pt__uptls_set_peer(k->ssl, k->pool->name, cl->tls_verify) == 0;
}

/** send() or SSL_write() with send()'s answers (-1 with EAGAIN when it must wait). */
static ssize_t io_send(h1_conn_t *k, const char *buf, size_t len)
{
    if (k->ssl == NULL)
        return pt_send(k->fd, buf, len, MSG_NOSIGNAL);
    if (len == 0)
        return 0;
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(k->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    int e = SSL_get_error(k->ssl, 0);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN
            : e == SSL_ERROR_SYSCALL && errno != 0                  ? errno
                                                                    : EPIPE;
    ERR_clear_error();
    return -1;
}

/** recv() or SSL_read() with recv()'s answers (0 at the end of the stream). */
static ssize_t io_recv(h1_conn_t *k, char *buf, size_t len)
{
    if (k->ssl == NULL)
        return pt_recv(k->fd, buf, len, 0);
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(k->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    int e = SSL_get_error(k->ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_SYSCALL && errno != 0 ? errno : ECONNRESET;
    return -1;
}

/*
 * Bytes already decrypted inside the TLS session do not make the socket
 * readable: read them from the loop (the persistent read event, activated).
 */
static void tls_pending_kick(h1_conn_t *k)
{
    if (k->ssl != NULL && k->rev_on && SSL_pending(k->ssl) > 0)
        event_active(&k->rev, EV_READ, 0);
}

/** The newest idle connection of `p` that is not too old, or NULL. */
static h1_conn_t *pool_get(h1_pool_t *p, uint64_t now)
{
    while (p->idle_head != NULL) {
        h1_conn_t *k = p->idle_head;
        idle_unlink(k); // NOLINT(clang-analyzer-unix.Malloc): idle_unlink() advanced idle_head past k
        if (now - k->idle_since_ms < IDLE_MAX_MS)
            return k;
        conn_close(k);
    }
    return NULL;
}

static h1_call_t *call_of_wait(pt_policy_wait_t *wt)
{
    return (h1_call_t *)(void *)((char *)wt - offsetof(h1_call_t, wait));
}

/*
 * The call waited for a connection to its endpoint and may go on: `granted`
 * when a counted slot passed to it (a connection closed), else an idle
 * connection waits in the pool. Runs wherever a connection was released, so
 * the attempt itself starts from the call's kick.
 */
static void wake(h1_call_t *c, bool granted)
{
    c->slot_granted = granted;
    c->woken = true;
    event_active(&c->kick, EV_TIMEOUT, 0);
}

static void slot_released(h1_pool_t *p)
{
    pt_policy_wait_t *wt = pt_policy_conn_release(p->ep);
    if (wt != NULL)
        wake(call_of_wait(wt), true);
}

static void pool_put(h1_conn_t *k, unsigned max_idle, uint64_t now)
{
    h1_pool_t *p = k->pool;
    /* The oldest one may have aged out meanwhile (LIFO leaves it at the tail). */
    if (p->idle_tail != NULL && now - p->idle_tail->idle_since_ms >= IDLE_MAX_MS) {
        h1_conn_t *old = p->idle_tail;
        idle_unlink(old);
        conn_close(old);
    }
    if (p->idle_cnt >= max_idle) {
        conn_close(k); /* its slot goes to a waiting call, if any */
        return;
    }
    k->call = NULL;
    k->roff = k->rlen = 0;
    k->idle_since_ms = now;
    k->prev = NULL;
    k->next = p->idle_head;
    if (p->idle_head != NULL)
        p->idle_head->prev = k;
    else
        p->idle_tail = k;
    p->idle_head = k;
    p->idle_cnt++;
    /* A call waiting for a connection to this endpoint takes this one (from
     * its kick; the connection waits in the idle list meanwhile). */
    pt_policy_wait_t *wt = pt_policy_wait_next(p->ep);
    if (wt != NULL)
        wake(call_of_wait(wt), false);
}

/* ---- call lifetime -------------------------------------------------------------- */

static void call_free(h1_call_t *c)
{
    h1_worker_t *hw = c->hw;
    pt_policy_call_end(&c->pol);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        hw->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    event_del(&c->timer);
    event_del(&c->kick);
    if (hw->free_cnt < CALL_FREE_MAX) {
        c->next = hw->free_calls;
        c->prev = NULL;
        hw->free_calls = c;
        hw->free_cnt++;
        return;
    }
    free(c->out);
    free(c);
}

static void enter(h1_call_t *c)
{
    c->depth++;
}

/** Ends an entry point; the call may be gone afterwards. */
static void leave(h1_call_t *c)
{
    if (--c->depth == 0 && (c->canceled || c->finished))
        call_free(c);
}

/** Takes the connection away from the call; closes it unless `keep` (then it goes to the pool). */
static void detach(h1_call_t *c, bool keep)
{
    /* Waiting for a connection, or woken with a slot not used yet: give it up. */
    pt_policy_wait_cancel(&c->wait);
    c->woken = false;
    if (c->slot_granted) {
        c->slot_granted = false;
        slot_released(c->slot_pool);
    }
    h1_conn_t *k = c->conn;
    if (k == NULL)
        return;
    c->conn = NULL;
    k->call = NULL;
    if (!keep) {
        conn_close(k);
        return;
    }
    want_write(k, false);
    want_read(k, true); /* an idle connection is watched for the upstream closing it */
    const pt_cluster_t *cl = c->r->cluster;
    /* The idle stamp only ages connections out (IDLE_MAX_MS): a tick's precision will do. */
    pool_put(k, cl->max_idle_per_endpoint ? cl->max_idle_per_endpoint : PT__UP_DEFAULT_IDLE_PER_EP,
             pt_now_ms_coarse());
}

/* `now`: pt_now_ms() as the caller read it (one clock read a call start). */
static void arm_timer(h1_call_t *c, uint64_t at_ms, uint64_t now)
{
    uint64_t ms = at_ms > now ? at_ms - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(&c->timer, &tv);
}

/* ---- the request ---------------------------------------------------------------- */

static void out_reserve(h1_call_t *c, size_t more)
{
    if (c->out_len + more <= c->out_cap)
        return;
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap < c->out_len + more)
        cap *= 2;
    c->out = pt_xrealloc(c->out, cap);
    c->out_cap = cap;
}

static void out_put(h1_call_t *c, const char *s, size_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static bool token_ok(pt_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.base[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

/** Writes the request head into `out` (from its start). */
static void build_head(h1_call_t *c, const h1_pool_t *p)
{
    const pt_upcall_req_t *r = c->r;
    pt_str_t path = r->path.len > 0 ? r->path : PT_STR("/");
    pt_str_t host = r->cluster->authority != NULL ? pt_str_c(r->cluster->authority) : r->authority;
    if (host.len == 0 || !pt_header_value_valid(host))
        host = (pt_str_t){p->host, p->host_len};
    const pt_headers_t *hs = r->headers;
    size_t cnt = hs != NULL ? hs->cnt : 0;
    size_t need = r->method.len + path.len + host.len + r->upgrade.len + 96; /* + line ends,
                                                                             * framing, upgrade */
    for (size_t i = 0; i < cnt; i++)
        need += hs->v[i].name.len + hs->v[i].value.len + 4;
    c->out_len = c->out_off = 0;
    out_reserve(c, need);
    char *d = c->out;
    d = put(d, r->method.base, r->method.len);
    *d++ = ' ';
    d = put(d, path.base, path.len);
    d = put(d, " HTTP/1.1\r\nHost: ", 17);
    d = put(d, host.base, host.len);
    d = put(d, "\r\n", 2);
    for (size_t i = 0; i < cnt; i++) {
        const pt_header_t *h = &hs->v[i];
        /* Framing and Host are ours (regenerated, never forwarded);
         * hop-by-hop fields never cross a proxy; values with CR/LF would
         * inject header lines. */
        if (skip_field(h->name) || !pt__header_name_token(h->name) ||
            !pt_header_value_valid(h->value))
            continue;
        d = put(d, h->name.base, h->name.len);
        if (h->value.len > 0) {
            d = put(d, ": ", 2);
            d = put(d, h->value.base, h->value.len);
        } else {
            *d++ = ':';
        }
        d = put(d, "\r\n", 2);
    }
    if (r->upgrade.len != 0 && pt_header_value_valid(r->upgrade)) {
        /* The caller's Upgrade/Connection were dropped above (hop-by-hop):
         * this hop's offer is ours, and names only what the caller asked for. */
        d = put(d, "Connection: upgrade\r\nUpgrade: ", 30);
        d = put(d, r->upgrade.base, r->upgrade.len);
        d = put(d, "\r\n", 2);
    }
    c->chunked_req = false;
    if (r->has_body && r->content_length < 0) {
        d = put(d, "Transfer-Encoding: chunked\r\n", 28);
        c->chunked_req = true;
    } else if (r->has_body || (r->content_length == 0 && !c->is_head)) {
        char num[24];
        size_t n = 0;
        uint64_t v = r->has_body ? (uint64_t)r->content_length : 0;
        do {
            num[sizeof(num) - 1 - n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        d = put(d, "Content-Length: ", 16);
        d = put(d, num + sizeof(num) - n, n);
        d = put(d, "\r\n", 2);
    }
    d = put(d, "\r\n", 2);
    c->out_len = (size_t)(d - c->out);
    c->head_len = c->out_len;
    c->out_intact = true;
    c->body_eof = !r->has_body;
    c->body_read = 0;
}

static void fail(h1_call_t *c, fail_kind_t kind, int st, const char *reason);

/** Pulls request body bytes into `out` once. False when the call ended (canceled or failed). */
static bool pull_body(h1_call_t *c)
{
    const pt_upcall_req_t *r = c->r;
    size_t max = BODY_PULL;
    if (!c->chunked_req && r->content_length >= 0) {
        uint64_t left = (uint64_t)r->content_length - c->body_read;
        if (left < max)
            max = (size_t)left;
    }
    size_t pre = c->chunked_req ? 18 : 0; /* room for the chunk-size line */
    out_reserve(c, pre + max + 8);
    bool eof = false;
    size_t n = max > 0 ? c->cbs.read_body(c->ud, c->out + c->out_len + pre, max, &eof) : 0;
    if (max == 0)
        eof = true; /* Content-Length bytes all taken */
    if (c->canceled || c->finished)
        return false;
    if (n > max)
        n = max;
    if (n > 0) {
        c->body_read += n;
        if (c->chunked_req) {
            char line[20];
            int l = snprintf(line, sizeof(line), "%zx\r\n", n);
            char *dst = c->out + c->out_len;
            memmove(dst + l, dst + pre, n);
            memcpy(dst, line, (size_t)l);
            c->out_len += (size_t)l + n;
            out_put(c, "\r\n", 2);
        } else {
            c->out_len += n;
        }
    }
    if (eof) {
        if (!c->chunked_req && r->content_length >= 0 && c->body_read != (uint64_t)r->content_length) {
            fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "request body shorter than its content-length");
            return false;
        }
        if (c->chunked_req)
            out_put(c, "0\r\n\r\n", 5);
        c->body_eof = true;
    } else if (n == 0 || (c->tunnel && n < max)) {
        /* A tunnel's reader hands over all it has (proxy.c: the request's
         * queue, ws_proxy.c's up_out): a short read means drained, and the
         * next bytes come with pt_upcall_body_ready. One read per relayed
         * unit instead of a second, empty one. */
        c->send_paused = true;
    }
    return true;
}

static void send_failed(h1_call_t *c, int err);

/** Writes what can be written; pulls more body when the buffer drained. */
static void send_step(h1_call_t *c)
{
    for (;;) {
        h1_conn_t *k = c->conn;
        if (k == NULL || c->connecting || c->send_done || c->send_aborted)
            return;
        /* Fill: the head and the first body bytes go out together. */
        while (!c->body_eof && !c->send_paused && c->out_len - c->out_off < BODY_PULL)
            if (!pull_body(c))
                return;
        if (c->out_off < c->out_len) {
            ssize_t n = io_send(k, c->out + c->out_off, c->out_len - c->out_off);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    want_write(k, true);
                    return;
                }
                send_failed(c, errno);
                return;
            }
            c->out_off += (size_t)n;
            if (c->out_off < c->out_len) {
                want_write(k, true);
                return;
            }
        }
        if (c->body_eof) {
            c->send_done = true;
            want_write(k, false);
            if (c->tunnel) { /* the client's half-close, passed on */
                if (k->ssl != NULL) {
                    SSL_shutdown(k->ssl); /* close_notify first; reading goes on */
                    ERR_clear_error();
                }
                shutdown(k->fd, SHUT_WR);
            }
            return;
        }
        want_write(k, false);
        /* Everything queued is out; the buffer is reused for more body. */
        c->out_off = c->out_len = 0;
        c->out_intact = false;
        if (c->send_paused)
            return;
    }
}

/* ---- the response ---------------------------------------------------------------- */

static void complete(h1_call_t *c, size_t tcnt);

/** Response head in rbuf[from, to) (the blank line included). 0, or a reason for a 502. */
static const char *parse_head(h1_call_t *c, char *buf, size_t from, size_t to, size_t *cnt)
{
    h1_worker_t *hw = c->hw;
    size_t pos = from, n = 0;
    bool have_cl = false, te = false, te_chunked = false;
    unsigned long long cl = 0;
    int minor = -1;
    c->keepalive = true;
    while (pos < to) {
        char *nl = memchr(buf + pos, '\n', to - pos);
        if (nl == NULL)
            return "bad upstream header line"; /* cannot happen: the block ends with one */
        size_t end = (size_t)(nl - buf);
        size_t len = end - pos;
        if (len > 0 && buf[end - 1] == '\r')
            len--;
        char *line = buf + pos;
        pos = end + 1;
        if (minor < 0) { /* the status line: HTTP/1.x NNN [reason] */
            if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') ||
                line[8] != ' ')
                return "bad status line";
            const char *d = line + 9;
            if (d[0] < '1' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' ||
                (len > 12 && d[3] != ' '))
                return "bad status line";
            for (size_t i = 12; i < len; i++)
                if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
                    return "bad status line";
            minor = line[7] - '0';
            c->status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
            continue;
        }
        if (len == 0)
            break; /* the blank line */
        const char *why = parse_field(line, len, n, &HEADER_ERRS, &hw->hv[n]);
        if (why != NULL)
            return why;
        pt_str_t name = hw->hv[n].name, value = hw->hv[n].value;
        n++;
        if (pt_str_eq(name, PT_STR("content-length"))) {
            unsigned long long v;
            if (pt_str_to_u64(value, ~0ull >> 1, &v) != 0)
                return "invalid content-length";
            if (have_cl && v != cl)
                return "conflicting content-length";
            have_cl = true;
            cl = v;
        } else if (pt_str_eq(name, PT_STR("transfer-encoding"))) {
            /* `chunked` must be the last coding, and only once. */
            size_t s = 0;
            for (size_t j = 0; j <= value.len; j++) {
                if (j < value.len && value.base[j] != ',')
                    continue;
                pt_str_t tok = pt_str_trim_ows((pt_str_t){value.base + s, j - s});
                s = j + 1;
                if (tok.len == 0)
                    continue;
                if (te_chunked)
                    return "transfer-encoding after chunked";
                te_chunked = ieq(tok.base, tok.len, "chunked");
                te = true;
            }
        } else if (pt_str_eq(name, PT_STR("connection"))) {
            size_t s = 0;
            for (size_t j = 0; j <= value.len; j++) {
                if (j < value.len && value.base[j] != ',')
                    continue;
                pt_str_t tok = pt_str_trim_ows((pt_str_t){value.base + s, j - s});
                s = j + 1;
                if (ieq(tok.base, tok.len, "close"))
                    c->keepalive = false;
            }
        }
    }
    if (minor == 0)
        c->keepalive = false; /* HTTP/1.0: we never ask it to keep the connection */
    *cnt = n;
    if (c->r->upgrade.len != 0)
        c->keepalive = false; /* offered an upgrade: never pooled, whatever the answer */
    if (c->status == 101 && c->r->upgrade.len != 0 && !c->tunnel) {
        /* Asked for: from the blank line on, every byte is the tunnel's, up to
         * the close (the caller checks the protocol named in Upgrade). */
        c->tunnel = true;
        c->ps = P_BODY_CLOSE;
        return NULL;
    }
    if (c->status < 200)
        return c->status == 101 ? "unexpected 101 from upstream" : NULL;
    if (te && have_cl)
        return "content-length with transfer-encoding";
    if (c->is_head || c->status == 204 || c->status == 304) {
        c->ps = P_DONE;
    } else if (te_chunked) {
        c->ps = P_CHUNK_SIZE;
        c->chunk_ext = 0;
    } else if (te) {
        c->ps = P_BODY_CLOSE; /* a coding we do not frame: the close delimits */
        c->keepalive = false;
    } else if (have_cl) {
        c->remaining = cl;
        c->ps = cl > 0 ? P_BODY_CL : P_DONE;
    } else {
        c->ps = P_BODY_CLOSE;
        c->keepalive = false;
    }
    return NULL;
}

/** Trailer fields in rbuf[from, to) into hw->hv. */
static const char *parse_trailers(h1_call_t *c, char *buf, size_t from, size_t to, size_t *cnt)
{
    size_t pos = from, n = 0;
    while (pos < to) {
        char *nl = memchr(buf + pos, '\n', to - pos);
        size_t end = (size_t)(nl - buf);
        size_t len = end - pos;
        if (len > 0 && buf[end - 1] == '\r')
            len--;
        char *line = buf + pos;
        pos = end + 1;
        if (len == 0)
            break;
        const char *why = parse_field(line, len, n, &TRAILER_ERRS, &c->hw->hv[n]);
        if (why != NULL)
            return why;
        n++;
    }
    *cnt = n;
    return NULL;
}

/**
 * Looks for the blank line that ends a head or trailer block starting at
 * k->roff, resuming at c->scan. Returns its end offset (after the LF), 0 when
 * more bytes are needed, or (size_t)-1 when the block is over the limit.
 */
static size_t find_block_end(h1_call_t *c, h1_conn_t *k)
{
    size_t pos = c->scan;
    while (pos < k->rlen) {
        char *nl = memchr(k->rbuf + pos, '\n', k->rlen - pos);
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - k->rbuf);
        size_t len = end - pos;
        if (len == 0 || (len == 1 && k->rbuf[pos] == '\r')) {
            c->scan = end + 1;
            return end + 1 - k->roff > PT__UP_HDR_MAX_BYTES ? (size_t)-1 : end + 1;
        }
        pos = end + 1;
    }
    c->scan = pos;
    if (k->rlen - k->roff > PT__UP_HDR_MAX_BYTES)
        return (size_t)-1;
    return 0;
}

/**
 * Runs the parser over the buffered bytes. Returns false when the call ended
 * or paused (the caller must not touch the connection then), true when more
 * bytes are needed.
 */
static bool parse(h1_call_t *c)
{
    for (;;) {
        h1_conn_t *k = c->conn;
        if (c->canceled || c->finished || k == NULL)
            return false;
        if (c->recv_paused)
            return false;
        char *buf = k->rbuf;
        size_t avail = k->rlen - k->roff;
        switch (c->ps) {
        case P_HEAD: {
            if (avail == 0)
                return true;
            size_t end = find_block_end(c, k);
            if (end == (size_t)-1) {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "upstream headers too large");
                return false;
            }
            if (end == 0)
                return true;
            size_t cnt = 0;
            const char *why = parse_head(c, buf, k->roff, end, &cnt);
            k->roff = end;
            c->scan = end;
            if (why != NULL) {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, why);
                return false;
            }
            if (c->status < 200 && !c->tunnel) { /* 100, 102, 103: wait for the final one */
                c->ps = P_HEAD;
                continue;
            }
            c->head_sent = true;
            pt_policy_answered(c->hw->uw->w, &c->pol, c->status, -1);
            if (c->tunnel) {
                /* The exchange deadline ends here (the caller's idle timeout
                 * takes over); the sending side now pulls the caller's bytes
                 * until its eof, from the kick (not inside on_head). */
                event_del(&c->timer);
                c->body_eof = false;
                if (c->send_done) {
                    c->send_done = false;
                    c->out_off = c->out_len = 0;
                }
                c->out_intact = false;
                c->send_paused = false;
                event_active(&c->kick, EV_TIMEOUT, 0);
            }
            if (c->cbs.on_head != NULL) {
                c->cbs.on_head(c->ud, c->status, cnt > 0 ? c->hw->hv : NULL, cnt);
                if (c->canceled || c->finished)
                    return false;
            }
            continue;
        }
        case P_BODY_CL:
        case P_CHUNK_DATA:
        case P_BODY_CLOSE: {
            if (avail == 0)
                return true;
            size_t n = avail;
            if (c->ps != P_BODY_CLOSE && n > c->remaining)
                n = (size_t)c->remaining;
            const char *data = buf + k->roff;
            k->roff += n;
            if (c->ps != P_BODY_CLOSE) {
                c->remaining -= n;
                if (c->remaining == 0)
                    c->ps = c->ps == P_BODY_CL ? P_DONE : P_CHUNK_END;
            }
            if (c->cbs.on_data != NULL && !c->cbs.on_data(c->ud, data, n)) {
                if (c->canceled || c->finished)
                    return false;
                c->recv_paused = true;
                if (c->conn != NULL)
                    want_read(c->conn, false);
                return false;
            }
            continue;
        }
        case P_CHUNK_SIZE: {
            char *nl = memchr(buf + k->roff, '\n', avail);
            if (nl == NULL) {
                if (avail > CHUNK_LINE_MAX) {
                    fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "bad chunk size line");
                    return false;
                }
                return true;
            }
            const char *p = buf + k->roff, *e = nl;
            if (e > p && e[-1] == '\r')
                e--;
            uint64_t size = 0;
            size_t digits = 0;
            for (; p < e; p++, digits++) {
                int v;
                if (*p >= '0' && *p <= '9')
                    v = *p - '0';
                else if (*p >= 'a' && *p <= 'f')
                    v = *p - 'a' + 10;
                else if (*p >= 'A' && *p <= 'F')
                    v = *p - 'A' + 10;
                else
                    break;
                if (digits >= 15) {
                    fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "chunk size too large");
                    return false;
                }
                size = size * 16 + (uint64_t)v;
            }
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            bool ok = digits > 0 && (p == e || *p == ';');
            for (; ok && p < e; p++)
                if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
                    ok = false;
            c->chunk_ext += (size_t)(e - (buf + k->roff)) - digits;
            if (!ok || c->chunk_ext > CHUNK_LINE_MAX) {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "bad chunk size line");
                return false;
            }
            k->roff = (size_t)(nl - buf) + 1;
            if (size == 0) {
                c->ps = P_TRAILERS;
                c->scan = k->roff;
            } else {
                c->ps = P_CHUNK_DATA;
                c->remaining = size;
            }
            continue;
        }
        case P_CHUNK_END: {
            if (avail == 0)
                return true;
            if (buf[k->roff] == '\n') {
                k->roff++;
            } else if (buf[k->roff] == '\r') {
                if (avail < 2)
                    return true;
                if (buf[k->roff + 1] != '\n') {
                    fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "bad chunk terminator");
                    return false;
                }
                k->roff += 2;
            } else {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "bad chunk terminator");
                return false;
            }
            c->ps = P_CHUNK_SIZE;
            continue;
        }
        case P_TRAILERS: {
            if (avail == 0)
                return true;
            size_t end = find_block_end(c, k);
            if (end == (size_t)-1) {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "upstream trailers too large");
                return false;
            }
            if (end == 0)
                return true;
            size_t cnt = 0;
            const char *why = parse_trailers(c, buf, k->roff, end, &cnt);
            k->roff = end;
            if (why != NULL) {
                fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, why);
                return false;
            }
            c->ps = P_DONE;
            complete(c, cnt);
            return false;
        }
        case P_DONE:
            complete(c, 0);
            return false;
        }
    }
}

/** The response ended cleanly; `tcnt` trailers are in hw->hv (pointing into rbuf). */
static void complete(h1_call_t *c, size_t tcnt)
{
    h1_conn_t *k = c->conn;
    bool reuse = c->keepalive && c->send_done && k != NULL && k->roff == k->rlen;
    c->finished = true;
    event_del(&c->timer);
    if (tcnt == 0)
        detach(c, reuse); /* pooled before on_done: a call it starts can take it */
    else
        c->conn = NULL;   /* the trailers point into its buffer until on_done returns */
    if (c->cbs.on_done != NULL)
        c->cbs.on_done(c->ud, 0, "ok", tcnt > 0 ? c->hw->hv : NULL, tcnt);
    if (tcnt > 0 && k != NULL) {
        c->conn = k;
        detach(c, reuse);
    }
}

/* ---- attempts, failures, retries -------------------------------------------------- */

static int attempt(h1_call_t *c, size_t idx, bool fresh, uint64_t now);

static bool try_again(h1_call_t *c, fail_kind_t kind)
{
    const pt_upcall_req_t *r = c->r;
    if (kind == FAIL_EARLY && c->reused && !c->stale_retried &&
        (r->idempotent || c->body_read == 0) && (c->body_read == 0 || c->out_intact)) {
        /* The keep-alive race: the upstream closed the idle connection while
         * we reused it. Once more on a fresh connection to the same endpoint. */
        c->stale_retried = true;
        return attempt(c, c->ep_idx, true, pt_now_ms()) == 0;
    }
    long idx = pt_policy_retry(c->hw->uw->w, r, &c->pol, kind, !c->got_bytes && c->body_read == 0);
    if (idx < 0)
        return false;
    return attempt(c, (size_t)idx, false, pt_now_ms()) == 0;
}

/** The attempt failed: retry if the policy allows, else on_done with `st`. */
static void fail(h1_call_t *c, fail_kind_t kind, int st, const char *reason)
{
    if (c->canceled || c->finished)
        return;
    detach(c, false);
    if (try_again(c, kind))
        return;
    c->finished = true;
    event_del(&c->timer);
    event_del(&c->kick);
    if (c->cbs.on_done != NULL)
        c->cbs.on_done(c->ud, st, reason, NULL, 0);
}

/**
 * Connecting to the endpoint failed with errno `err` (0: timeout). Our own
 * shortage of fds or buffers is not the endpoint's fault: 503 for this
 * call, no ejection, no retry elsewhere (policy.h).
 */
static void connect_failed(h1_call_t *c, int err, const char *reason)
{
    const pt_cluster_t *cl = c->r->cluster;
    h1_pool_t *p = pool_for(c->hw, cl, c->ep_idx);
    if (pt_policy_connect_failed(c->hw->uw->w, cl, p->ep, err) == PT_POLICY_FAIL_LOCAL)
        fail(c, FAIL_LOCAL, PT_ERR_OVERLOADED, "local resources exhausted (upstream socket)");
    else
        fail(c, FAIL_CONNECT, PT_ERR_UNAVAILABLE, reason);
}

static void fail_io(h1_call_t *c, int err)
{
    (void)err;
    if (c->got_bytes)
        fail(c, FAIL_OTHER, PT_ERR_UPSTREAM,
             c->head_sent ? "upstream response truncated" : "upstream connection broken");
    else
        fail(c, FAIL_EARLY, PT_ERR_UPSTREAM, "upstream closed without response");
}

static void send_failed(h1_call_t *c, int err)
{
    if (c->got_bytes) {
        /* The upstream answered and stopped reading: finish reading its answer. */
        c->send_aborted = true;
        if (c->conn != NULL)
            want_write(c->conn, false);
        return;
    }
    fail_io(c, err);
}

/** The read side saw the end of the connection (or an error). */
static void on_eof(h1_call_t *c, int err)
{
    if (c->ps == P_BODY_CLOSE && err == 0) {
        c->keepalive = false;
        c->ps = P_DONE;
        complete(c, 0);
        return;
    }
    fail_io(c, err);
}

static void connected(h1_call_t *c)
{
    c->connecting = false;
    arm_timer(c, c->deadline_ms, pt_now_ms()); /* the connect timeout no longer applies */
    send_step(c);
}

/** One step of the TLS handshake of a connected socket. */
static void tls_step(h1_call_t *c)
{
    h1_conn_t *k = c->conn;
    ERR_clear_error();
    int rc = SSL_connect(k->ssl);
    if (rc == 1) {
        k->tls_up = true;
        want_write(k, false);
        connected(c);
        return;
    }
    int e = SSL_get_error(k->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want_write(k, e == SSL_ERROR_WANT_WRITE);
        return;
    }
    bool verify = pt__uptls_verify_failed(k->ssl);
    ERR_clear_error();
    fail(c, FAIL_OTHER, PT_ERR_UPSTREAM,
         verify ? "upstream TLS certificate verification failed" : "upstream TLS handshake failed");
}

static void connect_result(h1_call_t *c)
{
    if (c->conn->ssl != NULL) {
        tls_step(c);
        return;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err != 0) {
        connect_failed(c, err, "upstream connection refused");
        return;
    }
    if (c->conn->pool->tls) {
        if (!tls_begin(c, c->conn)) {
            ERR_clear_error();
            fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "upstream TLS setup failed (ca_file?)");
            return;
        }
        tls_step(c);
        return;
    }
    connected(c);
}

/**
 * Sends a bodyless request on a ready connection without calling back: what
 * cannot be written waits for EV_WRITE, an error is reported from the kick.
 */
static void send_head_now(h1_call_t *c)
{
    h1_conn_t *k = c->conn;
    ssize_t n;
    do
        n = io_send(k, c->out + c->out_off, c->out_len - c->out_off);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            want_write(k, true);
        } else {
            c->send_err = errno;
            event_active(&c->kick, EV_TIMEOUT, 0);
        }
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len) {
        want_write(k, true);
        return;
    }
    c->send_done = true;
}

/**
 * Starts an attempt on endpoint `idx`: a pooled connection unless `fresh`.
 * Never calls back; failures to connect at once are reported from the kick.
 * Returns -1 when the deadline already passed.
 */
static int attempt(h1_call_t *c, size_t idx, bool fresh, uint64_t now)
{
    if (now >= c->deadline_ms)
        return -1;
    const pt_cluster_t *cl = c->r->cluster;
    h1_pool_t *p = pool_for(c->hw, cl, idx);
    if (c->body_read == 0)
        build_head(c, p);
    /* else (a replay, see try_again): the intact buffer goes again from its start */
    c->out_off = 0;
    c->send_done = c->send_aborted = c->send_paused = false;
    c->ep_idx = idx;
    c->got_bytes = c->head_sent = c->recv_paused = false;
    c->pending_err = c->send_err = c->pending_st = 0;
    c->ps = P_HEAD;
    c->status = 0;
    c->scan = 0;

    /* A slot handed to us goes to a new connection; otherwise an idle
     * connection, else a new one within max_connections_per_endpoint. */
    h1_conn_t *k = fresh || c->slot_granted ? NULL : pool_get(p, now);
    c->reused = k != NULL;
    c->connecting = false;
    if (k == NULL) {
        if (!c->slot_granted) {
            int rc = pt_policy_conn_acquire(c->hw->uw->w, cl, p->ep, &c->wait);
            if (rc == PT_POLICY_QUEUED) { /* woken by a released connection; the deadline holds */
                c->slot_pool = p;
                arm_timer(c, c->deadline_ms, now);
                return 0;
            }
            if (rc != PT_POLICY_GRANTED) {
                c->pending_st = rc;
                event_active(&c->kick, EV_TIMEOUT, 0);
                return 0;
            }
        }
        c->slot_granted = false; /* the connection owns the slot from here on */
        int err;
        k = conn_open(c->hw, p, &c->connecting, &err);
        if (k == NULL) {
            slot_released(p);
            c->pending_err = err ? err : ECONNREFUSED;
            event_active(&c->kick, EV_TIMEOUT, 0);
            return 0;
        }
    }
    k->call = c;
    c->conn = k;
    c->scan = k->roff;
    if (p->tls && !c->reused && !c->connecting) {
        /* connected at once: the handshake starts from the write event */
        c->connecting = true;
        want_write(k, true);
    }
    if (c->connecting) {
        uint64_t ct = cl->connect_timeout_ms ? cl->connect_timeout_ms : PT__UP_DEFAULT_CONNECT_MS;
        arm_timer(c, now + ct < c->deadline_ms ? now + ct : c->deadline_ms, now);
    } else {
        arm_timer(c, c->deadline_ms, now);
        if (c->body_eof)
            send_head_now(c); /* no body to pull: no callback involved */
        else
            event_active(&c->kick, EV_TIMEOUT, 0); /* the first send, from the loop */
    }
    return 0;
}

/* ---- events ------------------------------------------------------------------------ */

static void read_step(h1_call_t *c)
{
    h1_conn_t *k = c->conn;
    if (k->roff == k->rlen) {
        k->roff = k->rlen = 0;
        c->scan = 0;
    } else if (k->roff > 0 && k->rcap - k->rlen < 4096) { /* keep the unparsed tail only */
        memmove(k->rbuf, k->rbuf + k->roff, k->rlen - k->roff);
        k->rlen -= k->roff;
        c->scan = c->scan >= k->roff ? c->scan - k->roff : 0;
        k->roff = 0;
    } else if (k->rlen == k->rcap) {
        if (k->rcap < RBUF_MAX) {
            k->rcap = k->rcap * 2 > RBUF_MAX ? RBUF_MAX : k->rcap * 2;
            k->rbuf = pt_xrealloc(k->rbuf, k->rcap);
        } else {
            fail(c, FAIL_OTHER, PT_ERR_UPSTREAM, "upstream headers too large");
            return;
        }
    }
    ssize_t n = io_recv(k, k->rbuf + k->rlen, k->rcap - k->rlen);
    if (n > 0) {
        k->rlen += (size_t)n;
        c->got_bytes = true;
        if (parse(c))
            tls_pending_kick(k);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    on_eof(c, n == 0 ? 0 : errno);
}

static void on_conn_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h1_conn_t *k = arg;
    h1_call_t *c = k->call;
    if (c == NULL) { /* idle in the pool: closed by the upstream, or junk */
        idle_unlink(k);
        conn_close(k);
        return;
    }
    enter(c);
    if (c->connecting)
        connect_result(c);
    else if (!c->recv_paused)
        read_step(c);
    leave(c);
}

static void on_conn_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h1_conn_t *k = arg;
    h1_call_t *c = k->call;
    if (c == NULL) {
        want_write(k, false);
        return;
    }
    enter(c);
    if (c->connecting)
        connect_result(c);
    else
        send_step(c);
    leave(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h1_call_t *c = arg;
    enter(c);
    if (c->woken) {
        c->woken = false;
        if (attempt(c, c->ep_idx, false, pt_now_ms()) != 0)
            fail(c, FAIL_OTHER, PT_ERR_TIMEOUT, "upstream timeout");
    } else if (c->pending_st != 0) {
        int st = c->pending_st;
        c->pending_st = 0;
        fail(c, FAIL_LOCAL, st, "upstream connection queue full");
    } else if (c->pending_err != 0) {
        int err = c->pending_err;
        c->pending_err = 0;
        connect_failed(c, err, "upstream connection refused");
    } else if (c->send_err != 0) {
        int err = c->send_err;
        c->send_err = 0;
        send_failed(c, err);
    } else if (c->conn != NULL && !c->connecting) {
        send_step(c);
    }
    leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h1_call_t *c = arg;
    enter(c);
    if (c->connecting && pt_now_ms() < c->deadline_ms)
        connect_failed(c, 0, "upstream connect timeout");
    else
        fail(c, FAIL_OTHER, PT_ERR_TIMEOUT, "upstream timeout");
    leave(c);
}

/* ---- the ops of a call ---------------------------------------------------------------- */

static void h1_body_ready(pt_upcall_t *b)
{
    h1_call_t *c = (h1_call_t *)b;
    if (c->canceled || c->finished || !c->send_paused || c->lent)
        return;
    enter(c);
    c->send_paused = false;
    send_step(c);
    leave(c);
}

static void h1_resume(pt_upcall_t *b)
{
    h1_call_t *c = (h1_call_t *)b;
    if (c->canceled || c->finished || !c->recv_paused || c->lent)
        return;
    enter(c);
    c->recv_paused = false;
    /* What was read before the pause goes first, then the socket again. */
    if (parse(c) && c->conn != NULL) {
        want_read(c->conn, true);
        tls_pending_kick(c->conn);
    }
    leave(c);
}

static void h1_cancel(pt_upcall_t *b)
{
    h1_call_t *c = (h1_call_t *)b;
    if (c->canceled || c->finished)
        return;
    enter(c);
    c->canceled = true;
    detach(c, false); /* mid-exchange: never reused */
    event_del(&c->timer);
    event_del(&c->kick);
    leave(c);
}

static const char *h1_endpoint(const pt_upcall_t *b)
{
    const h1_call_t *c = (const h1_call_t *)b;
    return c->r->cluster->endpoints[c->ep_idx].url;
}

/*
 * The tunnel's socket to the caller (call.h pt_upcall_tunnel_lend): no event
 * of ours stays armed -- reading, writing, the kick that would start pulling
 * read_body -- and what the call holds is handed over once. The connection
 * stays attached, so cancel closes it as before.
 */
static int h1_tunnel_lend(pt_upcall_t *b, pt_upcall_lent_t *lent)
{
    h1_call_t *c = (h1_call_t *)b;
    h1_conn_t *k = c->conn;
    if (c->canceled || c->finished || c->lent || !c->tunnel || !c->head_sent || k == NULL ||
        k->ssl != NULL || c->connecting || c->send_done)
        return PT_ERR_INVALID;
    c->lent = true;
    c->send_paused = true;
    c->recv_paused = true;
    want_read(k, false);
    want_write(k, false);
    event_del(&c->kick);
    event_del(&c->timer);
    lent->fd = k->fd;
    lent->in = k->rbuf + k->roff;
    lent->in_len = k->rlen - k->roff;
    k->roff = k->rlen; /* parse() finds nothing more if it is on the stack */
    lent->out = c->out + c->out_off;
    lent->out_len = c->out_len - c->out_off;
    c->out_off = c->out_len;
    return 0;
}

static const pt__upcall_ops_t h1_ops = {
    .body_ready = h1_body_ready,
    .resume = h1_resume,
    .cancel = h1_cancel,
    .endpoint = h1_endpoint,
    .tunnel_lend = h1_tunnel_lend,
};

int pt__uph1_start(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                   void *ud, pt_upcall_t **out)
{
    h1_worker_t *hw = uw->h1;
    if (hw == NULL || r->method.len == 0 || cbs->on_done == NULL ||
        (r->has_body && cbs->read_body == NULL))
        return PT_ERR_INTERNAL;
    if (r->cluster->endpoint_cnt == 0)
        return PT_ERR_UNAVAILABLE;
    if (!token_ok(r->method) || (r->path.len > 0 && !token_ok(r->path)))
        return PT_ERR_INVALID; /* would break the request line */
    pt_policy_try_t pol = {0};
    long idx = pt_policy_pick(uw->w, r, &pol);
    if (idx < 0) /* every endpoint is ejected (fail fast), or the circuit breaker is open */
        return (int)idx;

    h1_call_t *c = hw->free_calls;
    if (c != NULL) { /* its events are assigned and not pending (call_free); its buffer is kept */
        hw->free_calls = c->next;
        hw->free_cnt--;
        char *keep = c->out;
        size_t cap = c->out_cap;
        memset(c, 0, offsetof(h1_call_t, timer));
        c->out = keep;
        c->out_cap = cap;
    } else {
        c = pt_xcalloc(1, sizeof(*c));
        evtimer_assign(&c->timer, hw->base, on_timer, c);
        event_assign(&c->kick, hw->base, -1, 0, on_kick, c);
    }
    c->base.ops = &h1_ops;
    c->hw = hw;
    c->r = r;
    c->cbs = *cbs;
    c->ud = ud;
    c->is_head = pt_str_eq(r->method, PT_STR("HEAD"));
    uint64_t now = pt_now_ms();
    c->deadline_ms = now + pt__up_timeout_ms(r);
    c->pol = pol;
    c->ep_idx = (size_t)idx;
    c->next = hw->calls;
    if (hw->calls != NULL)
        hw->calls->prev = c;
    hw->calls = c;
    attempt(c, (size_t)idx, false, now); /* the deadline is in the future: cannot fail */
    *out = &c->base;
    return 0;
}

/* ---- per worker ------------------------------------------------------------------------ */

int pt__uph1_worker_init(pt__upworker_t *uw)
{
    h1_worker_t *hw = pt_xcalloc(1, sizeof(*hw));
    hw->uw = uw;
    hw->base = uw->w->base;
    uw->h1 = hw;
    return 0;
}

void pt__uph1_worker_dispose(pt__upworker_t *uw)
{
    h1_worker_t *hw = uw->h1;
    if (hw == NULL)
        return;
    for (h1_call_t *c = hw->calls; c != NULL; c = c->next) {
        /* no closing connection may hand its slot to a call being freed */
        pt_policy_wait_cancel(&c->wait);
        c->slot_granted = false;
    }
    while (hw->calls != NULL) { /* dropped without callbacks: the worker is exiting */
        h1_call_t *c = hw->calls;
        hw->calls = c->next;
        detach(c, false);
        pt_policy_call_end(&c->pol);
        event_del(&c->timer);
        event_del(&c->kick);
        free(c->out);
        free(c);
    }
    while (hw->free_calls != NULL) {
        h1_call_t *c = hw->free_calls;
        hw->free_calls = c->next;
        free(c->out);
        free(c);
    }
    for (size_t b = 0; b < POOL_BUCKETS; b++) {
        while (hw->pools[b] != NULL) {
            h1_pool_t *p = hw->pools[b];
            hw->pools[b] = p->next;
            while (p->idle_head != NULL) {
                h1_conn_t *k = p->idle_head;
                idle_unlink(k); // NOLINT(clang-analyzer-unix.Malloc): idle_unlink() advanced idle_head past k
                conn_close(k);
            }
            free(p->url);
            free(p->name);
            free(p);
        }
    }
    for (size_t i = 0; i < hw->cc_cnt; i++) {
        free(hw->cc[i].pools);
        SSL_CTX_free(hw->cc[i].ssl_ctx);
    }
    free(hw->cc);
    free(hw);
    uw->h1 = NULL;
}
