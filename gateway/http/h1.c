/*
 * h1.c -- HTTP/1.1 connections: connection I/O (conn.h) <-> h1parse <-> pt_req_t.
 *
 * Structure. A connection keeps a FIFO of streams, one per request, oldest
 * first. Requests are dispatched as soon as their head is parsed, so
 * pipelined requests run concurrently, but only the oldest stream writes to
 * the socket; the others collect their output in their own evbuffer, moved
 * to the socket when they reach the front. That is what keeps responses in
 * order.
 *
 * Re-entrancy. The request layer calls our stream ops synchronously from
 * inside pt__req_headers_done() (local replies) and from upstream events. The
 * ops only write bytes and set flags, then schedule `later`. Releasing
 * requests (which may free them), closing, and reading more input happen only
 * in process(), which runs from libevent callbacks, never nested inside
 * request code. So no op ever frees what its caller still uses. *
 * Tunnels. A request with `Connection: upgrade` and `Upgrade: P` (not h2c)
 * carries P in req->upgrade; nothing after it is read until it is answered.
 * If its handler opens a tunnel (op_tunnel, then a 101 head) the connection
 * stops being HTTP: pump_tunnel() hands the client's bytes to the request
 * unparsed, the EOF of the client becomes the end of that "body", and the end
 * of the response closes the connection. Any other answer leaves the
 * connection HTTP and the next bytes are the next request.
 */
#include "http/h1.h"
#include "core/asan.h"
#include "core/headers_priv.h"
#include "core/config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1parse.h"
#include "http/h2.h"
#include "core/handler.h"
#include "core/overload.h"
#include "core/request.h"

typedef struct h1_conn h1_conn_t;
typedef struct h1_stream h1_stream_t;

struct h1_stream {
    h1_conn_t *c;
    pt_req_t *req; /* NULL once released to, or aborted in, the request layer */
    h1_stream_t *next;
    struct evbuffer *out; /* output while an older stream is still writing */
    int64_t out_left;     /* Content-Length bytes still to send, or -1 */
    bool dispatched;      /* pt__req_headers_done() called */
    bool head_sent;
    bool ended;           /* the response is complete (or was reset) */
    bool reset;           /* ended abnormally: close without a clean end */
    bool in_done;         /* the request, body included, was fully received */
    bool no_body;         /* HEAD request, 1xx/204/304: no response body */
    bool chunked;         /* response framed with chunked encoding */
    bool close;           /* close the connection after this response */
    bool h2c;             /* a valid `Upgrade: h2c` offer */
    bool upgrade;         /* the client asked to switch protocols (req->upgrade) */
    bool tunnel;          /* ... and the handler opened the tunnel (op_tunnel) */
    bool tunnel_end_sent; /* the client's half-close was passed on (pt__req_body end) */
    pt_str_t h2_settings; /* HTTP2-Settings value (request arena) */
};

enum phase { T_NONE, T_IDLE, T_HEAD, T_BODY };

struct h1_conn {
    pt_conn_t *conn;
    pt_worker_t *w;
    pt_h1p_t *parser;
    pt_limits_t limits;
    pt_timeouts_t to;
    h1_stream_t *head, *tail;
    unsigned depth;       /* streams queued */
    h1_stream_t *reading; /* stream whose request body is arriving */
    h1_stream_t *spare;   /* a finished stream's struct, for the next request (stream_push) */
    h1_stream_t *tunnel;  /* the stream the connection became a byte pipe for, or NULL */
    bool tunnel_eof;      /* the client closed its side of the tunnel */
    unsigned requests;    /* requests started on this connection */
    struct event *timer;  /* fires at `timer_at`, no later than `deadline` (lazy re-arming) */
    uint64_t deadline;    /* when `phase` expires, monotonic ms (0: no deadline) */
    uint64_t timer_at;    /* when `timer` fires (0: not armed) */
    struct event *later;  /* runs process() from the loop */
    enum phase phase;
    bool body_activity; /* body bytes since the body timer was armed */
    bool parse_pending; /* after HEAD/BODY the parser may hold an event that needs no new
                         * input; kept across pump() calls, because flow control can stop
                         * the loop between such an event and the next one */
    bool read_enabled;
    bool no_more; /* read no further request; close once the queue is done */
    bool closing; /* close as soon as the output is flushed */
    bool draining;
    bool preface_checked; /* prior-knowledge HTTP/2 preface ruled out */
    bool in_process;
};

static const pt_stream_ops_t h1_stream_ops;

static void process(h1_conn_t *c);
static size_t on_tunnel_data(pt_conn_t *conn, const void *data, size_t len, void *arg);

/* ---- helpers --------------------------------------------------------------- */

static void schedule(h1_conn_t *c)
{
    event_active(c->later, EV_TIMEOUT, 0);
}

static struct evbuffer *conn_out(h1_conn_t *c)
{
    return pt_conn_output(c->conn);
}

/* Where a stream writes: the socket when it is the oldest, else its own buffer. */
static struct evbuffer *dest(h1_stream_t *s)
{
    if (s == s->c->head)
        return conn_out(s->c);
    if (s->out == NULL) {
        s->out = evbuffer_new();
        if (s->out == NULL)
            abort();
    }
    return s->out;
}

static void timeval_ms(struct timeval *tv, uint64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* Gives the request back to the request layer: done if its response is complete, else aborted. */
static void stream_release(h1_stream_t *s, bool completed)
{
    pt_req_t *req = s->req;
    if (req == NULL)
        return;
    s->req = NULL;
    req->stream = NULL; /* ops on it are no-ops from now on */
    if (completed && pt__resp_ended(req))
        pt__req_codec_done(req);
    else
        pt__req_abort(req);
}

/* A finished stream's struct is kept (one per connection) for the next
 * request on it: a keep-alive request allocates none. */
static void stream_free(h1_stream_t *s)
{
    if (s->out != NULL)
        evbuffer_free(s->out);
    if (s->c->spare == NULL) {
        s->c->spare = s;
        PT_ASAN_POISON(s, sizeof(*s)); /* until stream_push takes it again */
    } else {
        free(s);
    }
}

static h1_stream_t *stream_push(h1_conn_t *c)
{
    h1_stream_t *s = c->spare;
    if (s != NULL) {
        c->spare = NULL;
        PT_ASAN_UNPOISON(s, sizeof(*s));
        memset(s, 0, sizeof(*s));
    } else if ((s = calloc(1, sizeof(*s))) == NULL) {
        abort();
    }
    s->c = c;
    s->out_left = -1;
    if (c->tail != NULL)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->depth++;
    return s;
}

/* Frees every stream and the codec state; aborts requests still in flight. Does not close. */
static void teardown(h1_conn_t *c)
{
    bool front = true;
    while (c->head != NULL) {
        h1_stream_t *s = c->head;
        c->head = s->next;
        /* only the front stream's output reached the socket */
        stream_release(s, front && s->ended && !s->reset);
        stream_free(s);
        front = false;
    }
    c->tail = NULL;
    c->reading = NULL;
    c->tunnel = NULL;
    if (c->spare != NULL)
        PT_ASAN_UNPOISON(c->spare, sizeof(*c->spare));
    free(c->spare);
    c->spare = NULL;
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->later != NULL)
        event_free(c->later);
    pt_h1p_free(c->parser);
    c->parser = NULL;
    if (c->conn != NULL && c->conn->codec == c) {
        c->conn->codec = NULL;
        c->conn->codec_ops = NULL;
        pt_conn_set_callbacks(c->conn, NULL, NULL, NULL, NULL);
    }
    free(c);
}

static void close_now(h1_conn_t *c)
{
    pt_conn_t *conn = c->conn;
    teardown(c);
    pt_conn_close(conn);
}

/* ---- response writing ---------------------------------------------------- */

/* A small staging buffer so that a response head is one evbuffer_add(). */
typedef struct stage {
    char b[2048];
    size_t n;
    struct evbuffer *out;
} stage_t;

static void stage_add(stage_t *st, const char *p, size_t n)
{
    if (st->n + n > sizeof(st->b)) {
        evbuffer_add(st->out, st->b, st->n);
        st->n = 0;
        if (n > sizeof(st->b)) {
            evbuffer_add(st->out, p, n);
            return;
        }
    }
    memcpy(st->b + st->n, p, n);
    st->n += n;
}

static void stage_str(stage_t *st, const char *s)
{
    stage_add(st, s, strlen(s));
}

static void stage_flush(stage_t *st)
{
    if (st->n != 0)
        evbuffer_add(st->out, st->b, st->n);
    st->n = 0;
}

static const char *reason_phrase(int status)
{
    const char *r = http_status_str((enum http_status)status);
    return r[0] == '<' ? "" : r;
}

/* Decimal digits of v (no vfprintf on the per-response path). */
static void stage_dec(stage_t *st, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);
    do {
        d[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    stage_add(st, d + i, sizeof(d) - i);
}

static void stage_status_line(stage_t *st, int status)
{
    if (status < 0 || status > 999) { /* not a valid status; kept as printf renders it */
        char line[64];
        int n = snprintf(line, sizeof(line), "HTTP/1.1 %03d %s\r\n", status, reason_phrase(status));
        stage_add(st, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        return;
    }
    char line[13] = {'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', 0, 0, 0, ' '};
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    stage_add(st, line, sizeof(line));
    stage_str(st, reason_phrase(status));
    stage_add(st, "\r\n", 2);
}

static void stage_content_length(stage_t *st, int64_t len)
{
    stage_str(st, "content-length: ");
    stage_dec(st, (uint64_t)len);
    stage_add(st, "\r\n", 2);
}

/* Framing and connection-level fields are ours; never copied from a handler.
 * By length first: most names match none. */
static bool is_framing(pt_str_t name)
{
    switch (name.len) {
    case 10:
        return pt_str_eq(name, PT_STR("connection")) || pt_str_eq(name, PT_STR("keep-alive"));
    case 14:
        return pt_str_eq(name, PT_STR("content-length"));
    case 17:
        return pt_str_eq(name, PT_STR("transfer-encoding"));
    default:
        return false;
    }
}

static void stage_fields(stage_t *st, const pt_headers_t *h)
{
    for (size_t i = 0; i < h->cnt; i++) {
        const pt_header_t *f = &h->v[i];
        if (is_framing(f->name) || !pt_header_value_valid(f->value))
            continue;
        size_t n = f->name.len + f->value.len + 4;
        if (st->n + n > sizeof(st->b)) { /* a large field: piecewise (stage_add spills) */
            stage_add(st, f->name.base, f->name.len);
            stage_add(st, ": ", 2);
            stage_add(st, f->value.base, f->value.len);
            stage_add(st, "\r\n", 2);
            continue;
        }
        char *d = st->b + st->n;
        if (f->name.len != 0)
            memcpy(d, f->name.base, f->name.len);
        d += f->name.len;
        *d++ = ':';
        *d++ = ' ';
        if (f->value.len != 0)
            memcpy(d, f->value.base, f->value.len);
        d += f->value.len;
        *d++ = '\r';
        *d = '\n';
        st->n += n;
    }
}

static void op_send_head(pt_req_t *req)
{
    h1_stream_t *s = req->stream;
    if (s == NULL || s->head_sent)
        return;
    h1_conn_t *c = s->c;
    int status = req->resp_status;
    bool is_head = pt_str_eq(req->method, PT_STR("HEAD"));
    if (s == c->head && !c->in_process) {
        /* A response leaves from its end (pt_conn_flush) or from the next
         * process(), which is scheduled here and releases the hold: no
         * deferred flush event per response. */
        pt_conn_hold_flush(c->conn, true);
        schedule(c);
    }
    stage_t st; /* no initializer: it would clear the 2 KiB buffer for every head */
    st.n = 0;
    st.out = dest(s);
    stage_status_line(&st, status);
    if (s->tunnel && status != 101) {
        /* A response filter replaced the 101: no tunnel; this answer is the
         * last one on the connection (what the client sent next is unread). */
        s->tunnel = false;
        c->tunnel = NULL;
    }
    stage_fields(&st, &req->resp_headers);
    if (s->tunnel) {
        /* 101: no framing at all from here on; the body is the raw stream. */
        stage_str(&st, "connection: upgrade\r\n\r\n");
        stage_flush(&st);
        s->head_sent = true;
        schedule(c); /* process() starts moving the client's bytes */
        return;
    }

    /* The last response before a close says so; earlier pipelined ones keep the connection. */
    s->close = s->close || req->close_after || c->closing || (s == c->tail && c->no_more);
    s->no_body = is_head || status == 204 || status == 304 || status < 200;
    if (s->no_body) {
        if (is_head && req->resp_content_length >= 0)
            stage_content_length(&st, req->resp_content_length);
    } else if (req->resp_content_length >= 0) {
        s->out_left = req->resp_content_length;
        stage_content_length(&st, req->resp_content_length);
    } else if (req->version >= 11) {
        s->chunked = true;
        stage_str(&st, "transfer-encoding: chunked\r\n");
    } else {
        s->close = true; /* HTTP/1.0 without a length: the close delimits the body */
    }
    if (s->close)
        stage_str(&st, "connection: close\r\n");
    else if (req->version == 10)
        stage_str(&st, "connection: keep-alive\r\n");
    stage_add(&st, "\r\n", 2);
    stage_flush(&st);
    s->head_sent = true;
    if (s->close && s == c->tail)
        c->no_more = true;
}

static void op_send_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    h1_stream_t *s = req->stream;
    if (s == NULL || s->ended)
        return;
    if (!s->head_sent)
        op_send_head(req);
    struct evbuffer *out = dest(s);
    if (!s->no_body && len != 0) {
        if (s->chunked) {
            char sz[24];
            int n = snprintf(sz, sizeof(sz), "%zx\r\n", len);
            evbuffer_add(out, sz, (size_t)n);
            evbuffer_add(out, data, len);
            evbuffer_add(out, "\r\n", 2);
        } else {
            if (s->out_left >= 0 && (uint64_t)len > (uint64_t)s->out_left) {
                /* More than announced: never let it spill into the next response. */
                len = (size_t)s->out_left;
                s->reset = true;
            }
            if (s->tunnel && out == conn_out(s->c))
                pt_conn_send(s->c->conn, data, len); /* a relayed unit: out now, no event */
            else
                evbuffer_add(out, data, len);
            if (s->out_left >= 0)
                s->out_left -= (int64_t)len;
        }
    }
    if (end) {
        if (s->chunked) {
            if (req->resp_trailers.cnt != 0) {
                stage_t st;
                st.n = 0;
                st.out = out;
                stage_add(&st, "0\r\n", 3);
                stage_fields(&st, &req->resp_trailers);
                stage_add(&st, "\r\n", 2);
                stage_flush(&st);
            } else {
                evbuffer_add(out, "0\r\n\r\n", 5);
            }
        } else if (s->out_left > 0 && !s->no_body) {
            s->reset = true; /* shorter than announced: the client must see a truncation */
        }
        s->ended = true;
        if (s->reset)
            s->close = true;
        schedule(s->c);
        /* the response is complete: send it now rather than after every other event of
         * this loop pass (the client gets it one batch earlier) */
        if (out == conn_out(s->c))
            pt_conn_flush(s->c->conn);
    }
}

/* The rest of the body in one block, taken by reference when it can be
 * (a Content-Length body with room for it): no copy into the output. */
static void op_send_body_owned(pt_req_t *req, const void *data, size_t len,
                               pt_body_release_fn release, void *arg)
{
    h1_stream_t *s = req->stream;
    if (s != NULL && !s->ended && !s->head_sent)
        op_send_head(req);
    if (s == NULL || s->ended || s->no_body || s->chunked || s->tunnel || len == 0 ||
        s->out_left < 0 || (uint64_t)len > (uint64_t)s->out_left ||
        evbuffer_add_reference(dest(s), data, len, release, arg) != 0) {
        op_send_body(req, data, len, true);
        release(data, len, arg);
        return;
    }
    s->out_left -= (int64_t)len;
    op_send_body(req, NULL, 0, true);
}

static size_t op_out_pending(pt_req_t *req)
{
    h1_stream_t *s = req->stream;
    if (s == NULL)
        return 0;
    if (s == s->c->head)
        return evbuffer_get_length(conn_out(s->c));
    return s->out != NULL ? evbuffer_get_length(s->out) : 0;
}

static void op_body_consumed(pt_req_t *req, size_t len)
{
    h1_stream_t *s = req->stream;
    if (s == NULL)
        return;
    h1_conn_t *c = s->c;
    if (s == c->reading && !c->read_enabled)
        schedule(c);
    else if (s == c->tunnel &&
             (!c->read_enabled ||
              /* a running process() sees the rest itself (pump_tunnel loops) */
              (!c->in_process && (evbuffer_get_length(pt_conn_input(c->conn)) != 0 ||
                                  (c->tunnel_eof && !s->tunnel_end_sent)))))
        schedule(c); /* reading stopped, or client bytes wait in the input buffer */
}

static void op_send_continue(pt_req_t *req)
{
    h1_stream_t *s = req->stream;
    if (s == NULL || s->head_sent || req->version < 11)
        return;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    evbuffer_add(dest(s), cont, sizeof(cont) - 1);
}

static void op_reset(pt_req_t *req)
{
    h1_stream_t *s = req->stream;
    if (s == NULL || s->ended)
        return;
    s->ended = true;
    s->reset = true;
    s->close = true;
    s->c->no_more = true;
    schedule(s->c);
}

/*
 * The connection becomes a byte pipe for this stream. Only for the oldest
 * stream (its output goes straight to the socket) whose request, an upgrade
 * without body, was received whole: nothing was read past its head (want_read
 * stops there), so whatever the client sent next belongs to the tunnel.
 */
static int op_tunnel(pt_req_t *req)
{
    h1_stream_t *s = req->stream;
    if (s == NULL || !s->upgrade || s->c->tunnel != NULL || s != s->c->head || s->head_sent ||
        !s->in_done || s->ended || s->c->reading == s || s->c->closing)
        return PT_ERR_INVALID;
    h1_conn_t *c = s->c;
    s->tunnel = true;
    s->close = true; /* the connection ends with the tunnel */
    c->tunnel = s;
    pt_conn_set_data_cb(c->conn, on_tunnel_data);
    c->no_more = true;
    req->body_done = false; /* the client's bytes now flow as the request's "body" */
    req->body_out_done = false;
    req->close_after = true;
    return 0;
}

pt_conn_t *pt__h1_tunnel_conn(pt_req_t *req)
{
    if (req->ops != &h1_stream_ops || req->stream == NULL)
        return NULL;
    h1_stream_t *s = req->stream;
    h1_conn_t *c = s->c;
    if (!s->tunnel || c->tunnel != s || !s->head_sent || s->ended || c->closing ||
        c->conn->is_tls)
        return NULL;
    return c->conn;
}

static const pt_stream_ops_t h1_stream_ops = {
    .send_head = op_send_head,
    .send_body = op_send_body,
    .send_body_owned = op_send_body_owned,
    .out_pending = op_out_pending,
    .body_consumed = op_body_consumed,
    .send_continue = op_send_continue,
    .reset = op_reset,
    .tunnel = op_tunnel,
};

/* ---- requests -------------------------------------------------------------- */

static void fill_common(h1_conn_t *c, pt_req_t *req)
{
    req->client_addr = pt_arena_strdup(req->arena, c->conn->client_addr); /* outlives conn */
    req->is_tls = c->conn->is_tls;
    req->scheme = c->conn->is_tls ? PT_STR("https") : PT_STR("http");
}

/* Answers with `st` a request we could not parse (or that timed out), then closes. */
static void reject_new(h1_conn_t *c, int st, const char *reason)
{
    h1_stream_t *s = stream_push(c);
    pt_req_t *req = pt__req_new(c->w, &h1_stream_ops, s);
    s->req = req;
    s->in_done = true;
    s->close = true;
    s->dispatched = true;
    fill_common(c, req);
    req->version = 11;
    req->method = PT_STR("-");
    req->close_after = true;
    req->body_done = true;
    req->body_out_done = true;
    c->no_more = true;
    pt__req_reject(req, st, reason);
}

/* A request whose body failed (malformed, timeout): answer if possible, stop its handler, close. */
static void fail_stream(h1_conn_t *c, h1_stream_t *s, int st, const char *reason)
{
    if (c->reading == s)
        c->reading = NULL;
    c->no_more = true;
    s->close = true;
    s->in_done = true;
    pt_req_t *req = s->req;
    if (req == NULL)
        return;
    req->close_after = true;
    if (!s->dispatched) {
        s->dispatched = true;
        pt__req_reject(req, st, reason);
        return;
    }
    pt__resp_fail(req, st, reason); /* error response, or a reset if the head went out */
    if (!s->ended) {
        s->ended = true;
        s->reset = true;
    }
    stream_release(s, false); /* run the abort hooks: the handler stops waiting for the body */
}

/* Copies s to *d with a NUL (as pt_arena_strdup leaves it); *d moves past it. */
static pt_str_t blk_put(char **d, pt_str_t s)
{
    char *p = *d;
    if (s.len != 0)
        memcpy(p, s.base, s.len);
    p[s.len] = '\0';
    *d = p + s.len + 1;
    return (pt_str_t){p, s.len};
}

static int copy_head(h1_conn_t *c, h1_stream_t *s, pt_req_t *req, const pt_h1p_head_t *h)
{
    pt_arena_t *a = req->arena;
    fill_common(c, req);
    const char *q = memchr(h->path.base, '?', h->path.len);
    size_t plen = q != NULL ? (size_t)(q - h->path.base) : h->path.len;
    size_t qlen = q != NULL ? h->path.len - plen - 1 : 0;
    /* The head's strings out of the connection's buffer, into one arena block. */
    size_t need = h->method.len + h->target.len + plen + qlen + h->authority.len + 5;
    for (size_t i = 0; i < h->header_cnt; i++)
        need += h->headers[i].name.len + h->headers[i].value.len + 2;
    char *d = pt_arena_alloc(a, need);
    if (d == NULL)
        return PT_ERR_HEADERS_TOO_LARGE;
    req->method = blk_put(&d, h->method);
    req->target = blk_put(&d, h->target);
    req->path = blk_put(&d, (pt_str_t){h->path.base, plen});
    req->query = q != NULL ? blk_put(&d, (pt_str_t){q + 1, qlen}) : PT_STR("");
    req->authority = blk_put(&d, h->authority);
    req->version = h->version;
    for (size_t i = 0; i < h->header_cnt; i++) {
        pt_str_t n = blk_put(&d, h->headers[i].name);
        if (pt__headers_push(&req->headers, n, blk_put(&d, h->headers[i].value)) != 0)
            return PT_ERR_HEADERS_TOO_LARGE;
    }
    req->content_length = h->content_length;
    req->expect_body = h->has_body;
    req->expect_continue = h->expect_continue;
    if (h->h2c_upgrade) {
        s->h2_settings = pt_arena_strdup(a, h->http2_settings);
        s->h2c = s->h2_settings.base != NULL;
    } else if (h->version == 11 && h->conn_upgrade && h->upgrade.len != 0 &&
               !pt_str_ieq(h->upgrade, PT_STR("h2c"))) {
        /* An h2c offer we do not take stays a plain request (RFC 9113 §3.1
         * is gone, the server may ignore it); any other protocol is the
         * handler's to accept (a tunnel) or refuse. */
        req->upgrade = pt_arena_strdup(a, h->upgrade);
        if (req->upgrade.base == NULL)
            return PT_ERR_HEADERS_TOO_LARGE;
        s->upgrade = true;
    }
    return 0;
}

static void on_head(h1_conn_t *c)
{
    const pt_h1p_head_t *h = pt_h1p_head(c->parser);
    h1_stream_t *s = stream_push(c);
    pt_req_t *req = pt__req_new(c->w, &h1_stream_ops, s);
    s->req = req;
    c->requests++;
    int rc = copy_head(c, s, req, h);
    req->close_after =
        !h->keep_alive || c->draining ||
        (c->limits.max_requests_per_conn != 0 && c->requests >= c->limits.max_requests_per_conn) ||
        pt_overload_over(&c->w->config->overload); /* keep-alive off over the watermark */
    s->close = req->close_after;
    if (rc != 0) {
        fail_stream(c, s, rc, "request head does not fit the request arena");
        return;
    }
    if (s->upgrade && c->depth > 1) {
        /* Behind pipelined requests it could not switch the connection when
         * its answer comes: refuse rather than guess where the tunnel starts. */
        fail_stream(c, s, PT_ERR_INVALID, "upgrade request pipelined behind other requests");
        return;
    }
    if (h->has_body) {
        c->reading = s;
        c->body_activity = true;
    } else {
        pt__req_body(req, NULL, 0, true);
        if (s->h2c && s == c->head && !c->draining && !c->conn->is_tls &&
            c->conn->listener != NULL && c->conn->listener->h2c)
            return; /* dispatched (or upgraded) at DONE */
    }
    s->dispatched = true;
    pt__req_headers_done(req);
}

/* Returns true when the connection was handed to the HTTP/2 codec (`c` is gone). */
static bool on_done(h1_conn_t *c)
{
    h1_stream_t *s = c->tail;
    if (s == NULL)
        return false;
    s->in_done = true;
    if (c->reading == s) {
        c->reading = NULL;
        if (s->req != NULL)
            pt__req_body(s->req, NULL, 0, true);
    }
    if (s->close)
        c->no_more = true;
    if (!s->dispatched && s->req != NULL) {
        if (s->h2c && c->depth == 1 && !c->draining) {
            pt_conn_t *conn = c->conn;
            pt_req_t *req = s->req;
            if (pt__h2_conn_upgrade(conn, req, s->h2_settings) == 0) {
                /* The request and the connection belong to the h2 codec now. */
                s->req = NULL;
                if (conn->codec == c)
                    conn->codec = NULL;
                c->conn = NULL;
                teardown(c);
                return true;
            }
        }
        s->dispatched = true;
        pt__req_headers_done(s->req);
    }
    return false;
}

/* ---- input ----------------------------------------------------------------- */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum { PUMP_IDLE, PUMP_PROGRESS, PUMP_GONE };

/* Looks for the HTTP/2 client preface at the start of a cleartext connection. */
static int check_preface(h1_conn_t *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < sizeof(h2_preface) - 1 ? avail : sizeof(h2_preface) - 1;
    char buf[sizeof(h2_preface)];
    evbuffer_copyout(in, buf, n);
    if (memcmp(buf, h2_preface, n) != 0) {
        c->preface_checked = true;
        return PUMP_PROGRESS;
    }
    if (n < sizeof(h2_preface) - 1)
        return PUMP_IDLE; /* could still be the preface */
    size_t len = avail;
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        abort();
    evbuffer_remove(in, copy, len);
    pt_conn_t *conn = c->conn;
    conn->codec = NULL;
    conn->codec_ops = NULL;
    c->conn = NULL;
    teardown(c);
    pt__h2_conn_start(conn, copy, len);
    free(copy);
    return PUMP_GONE;
}

static bool want_read(h1_conn_t *c)
{
    if (c->tunnel != NULL && !c->closing) {
        pt_req_t *req = c->tunnel->req;
        return req != NULL && req->body != NULL &&
               evbuffer_get_length(req->body) < PT_REQ_BODY_HIGH_WATER;
    }
    if (c->no_more || c->closing)
        return false;
    /* An upgrade request is answered before anything after it is read: those
     * bytes are either the tunnel's (101) or the next request (refused). */
    if (c->tail != NULL && c->tail->upgrade && c->tail->in_done && !c->tail->ended)
        return false;
    if (c->reading != NULL) {
        pt_req_t *req = c->reading->req;
        return req == NULL || req->body == NULL ||
               pt__req_body_queued(req) < PT_REQ_BODY_HIGH_WATER;
    }
    if (!pt_h1p_idle(c->parser))
        return true; /* finish the head being received */
    /*
     * Between requests: no new one while max_pipeline are in flight, or while
     * the client is not reading what we already answered (OV-3: the output
     * queued for a connection stays bounded).
     */
    return c->depth < c->limits.max_pipeline &&
           evbuffer_get_length(conn_out(c)) <= c->limits.max_response_buffer;
}

/* A tunnel: the client's bytes go to the request as they are, no parsing. */
static int pump_tunnel(h1_conn_t *c)
{
    struct evbuffer *in = pt_conn_input(c->conn);
    h1_stream_t *s = c->tunnel;
    int result = PUMP_IDLE;
    while (want_read(c) && evbuffer_get_length(in) != 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        pt__req_body(s->req, v.iov_base, v.iov_len, false);
        evbuffer_drain(in, v.iov_len);
        result = PUMP_PROGRESS;
    }
    if (s->req == NULL) /* the request is gone: nobody reads these bytes */
        evbuffer_drain(in, evbuffer_get_length(in));
    if (c->tunnel_eof && !s->tunnel_end_sent && evbuffer_get_length(in) == 0 && s->req != NULL) {
        s->tunnel_end_sent = true; /* the client's half-close, after its last byte */
        pt__req_body(s->req, NULL, 0, true);
        result = PUMP_PROGRESS;
    }
    return result;
}

/*
 * The client's bytes of a tunnel, offered by the I/O layer before it buffers
 * them (a read that found the input empty): handed to the request in place,
 * as pump_tunnel would after buffering them. Takes nothing when pump_tunnel's
 * conditions are not met (reading stopped, the request is gone, a process()
 * is running): the layer buffers them then and on_read runs process().
 */
static size_t on_tunnel_data(pt_conn_t *conn, const void *data, size_t len, void *arg)
{
    (void)conn;
    h1_conn_t *c = arg;
    h1_stream_t *s = c->tunnel;
    if (s == NULL || s->req == NULL || c->in_process || !want_read(c))
        return 0;
    c->in_process = true; /* as inside process(): ops only note what changed */
    pt__req_body(s->req, data, len, false);
    c->in_process = false;
    /* what process() would do after a pump that changed something */
    if (!want_read(c) || (c->head != NULL && c->head->ended) || c->closing)
        schedule(c);
    return len;
}

/* Parses what the input buffer holds, as far as the flow control allows. */
static int pump(h1_conn_t *c)
{
    if (c->tunnel != NULL)
        return pump_tunnel(c);
    struct evbuffer *in = pt_conn_input(c->conn);
    int result = PUMP_IDLE;
    while (want_read(c) && (c->parse_pending || evbuffer_get_length(in) != 0)) {
        if (!c->preface_checked) {
            if (c->requests != 0 || c->conn->is_tls || c->conn->listener == NULL ||
                !c->conn->listener->h2c) {
                c->preface_checked = true;
            } else {
                int r = check_preface(c, in);
                if (r != PUMP_PROGRESS)
                    return r;
            }
        }
        struct evbuffer_iovec v = {NULL, 0};
        if (evbuffer_get_length(in) != 0 && evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        pt_h1p_event_t ev;
        size_t n = pt_h1p_feed(c->parser, v.iov_base, v.iov_len, &ev);
        c->parse_pending = ev.type == PT_H1P_HEAD || ev.type == PT_H1P_BODY;
        switch (ev.type) {
        case PT_H1P_NONE:
            break;
        case PT_H1P_HEAD:
            on_head(c);
            break;
        case PT_H1P_BODY:
            if (c->reading != NULL && c->reading->req != NULL)
                pt__req_body(c->reading->req, ev.data, ev.len, false);
            c->body_activity = true;
            break;
        case PT_H1P_DONE:
            evbuffer_drain(in, n);
            n = 0;
            if (on_done(c))
                return PUMP_GONE;
            break;
        case PT_H1P_ERROR:
            if (c->reading != NULL)
                fail_stream(c, c->reading, ev.status, ev.reason);
            else
                reject_new(c, ev.status, ev.reason);
            c->no_more = true;
            break;
        }
        evbuffer_drain(in, n);
        result = PUMP_PROGRESS;
    }
    return result;
}

/* ---- timers ---------------------------------------------------------------- */

/* Makes `timer` fire no later than `at`. Lazy: a timer armed earlier stays
 * (on_timer re-arms for the real deadline), so keep-alive requests do not
 * re-arm it each time. */
static void arm_at(h1_conn_t *c, uint64_t at)
{
    if (c->timer_at != 0 && c->timer_at <= at)
        return;
    uint64_t now = pt_now_ms();
    struct timeval tv;
    timeval_ms(&tv, at > now ? at - now : 0);
    evtimer_add(c->timer, &tv);
    c->timer_at = at;
}

static void update_timer(h1_conn_t *c)
{
    enum phase ph = T_NONE;
    if (c->closing)
        ph = T_NONE;
    else if (c->reading != NULL)
        ph = c->read_enabled ? T_BODY : T_NONE; /* paused by us: not the client's fault */
    else if (pt_h1p_in_head(c->parser))
        ph = T_HEAD;
    else if (c->head == NULL && !c->no_more && evbuffer_get_length(conn_out(c)) == 0)
        ph = T_IDLE; /* idle starts once everything was written (send_ms covers slow readers) */
    if (ph == c->phase && !(ph == T_BODY && c->body_activity))
        return;
    c->phase = ph;
    c->body_activity = false;
    uint64_t ms = 0;
    switch (ph) {
    case T_NONE:
        break;
    case T_IDLE:
        ms = c->requests == 0 ? c->to.header_ms : c->to.keepalive_ms;
        break;
    case T_HEAD:
        ms = c->to.header_ms;
        break;
    case T_BODY:
        ms = c->to.body_ms;
        break;
    }
    if (ms == 0) {
        c->deadline = 0; /* a timer still armed fires and finds nothing to do */
        return;
    }
    c->deadline = pt_now_ms() + ms;
    arm_at(c, c->deadline);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    h1_conn_t *c = arg;
    c->timer_at = 0;
    if (c->phase == T_NONE || c->deadline == 0)
        return;
    if (pt_now_ms() < c->deadline) {
        arm_at(c, c->deadline); /* armed for an earlier deadline that has moved */
        return;
    }
    enum phase ph = c->phase;
    c->phase = T_NONE;
    c->deadline = 0;
    switch (ph) {
    case T_IDLE:
        close_now(c);
        return;
    case T_HEAD:
        reject_new(c, PT_ERR_TIMEOUT_CLIENT, "request head timeout");
        break;
    case T_BODY:
        if (c->reading != NULL)
            fail_stream(c, c->reading, PT_ERR_TIMEOUT_CLIENT, "request body timeout");
        break;
    case T_NONE:
        break;
    }
    c->no_more = true;
    process(c);
}

/* ---- the state machine -------------------------------------------------------- */

/* Releases finished streams at the front; moves the next one's output to the socket. */
static void release_finished(h1_conn_t *c)
{
    while (c->head != NULL && c->head->ended) {
        h1_stream_t *s = c->head;
        if (!s->in_done && !s->reset && c->reading == s) {
            /* Answered before its body arrived: the rest of the body cannot be skipped safely. */
            c->reading = NULL;
            s->close = true;
        }
        if (c->reading == s)
            c->reading = NULL;
        if (c->tunnel == s)
            c->tunnel = NULL;
        c->head = s->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->depth--;
        bool close = s->close || s->reset;
        stream_release(s, true); /* codec_done when the request layer ended it, else abort */
        stream_free(s);
        if (close) {
            c->no_more = true;
            c->closing = true;
            return;
        }
        if (c->head != NULL && c->head->out != NULL)
            evbuffer_add_buffer(conn_out(c), c->head->out);
    }
}

static void set_read(h1_conn_t *c, bool on)
{
    if (on == c->read_enabled)
        return;
    c->read_enabled = on;
    if (on)
        pt_conn_resume_read(c->conn);
    else
        pt_conn_pause_read(c->conn);
}

static void process(h1_conn_t *c)
{
    if (c->in_process) {
        schedule(c);
        return;
    }
    c->in_process = true;
    pt_conn_hold_flush(c->conn, false); /* see op_send_head */
    int round;
    for (round = 0; round < 64; round++) {
        release_finished(c);
        if (c->closing)
            break;
        int r = pump(c);
        if (r == PUMP_GONE)
            return; /* `c` was handed over and freed */
        if (r == PUMP_IDLE && (c->head == NULL || !c->head->ended))
            break;
    }
    if (round == 64)
        schedule(c); /* a long pipeline: let other connections run, then go on */
    if (c->no_more && c->head == NULL)
        c->closing = true;
    if (c->closing) {
        set_read(c, false);
        if (evbuffer_get_length(conn_out(c)) == 0) {
            close_now(c);
            return;
        }
        pt_conn_set_lowat(c->conn, 0); /* on_drain when empty */
        c->phase = T_NONE;
        c->deadline = 0;
        c->in_process = false;
        return;
    }
    set_read(c, want_read(c));
    /* the front stream may wait for its output to drain (handlers call pt__resp_blocked) */
    h1_stream_t *f = c->head;
    if (f != NULL && f->req != NULL && f->req->want_writable &&
        evbuffer_get_length(conn_out(c)) <= c->limits.max_response_buffer / 2)
        pt__req_on_writable(f->req);
    update_timer(c);
    c->in_process = false;
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    process(arg);
}

static void on_read(pt_conn_t *conn, void *arg)
{
    process(arg);
}

static void on_drain(pt_conn_t *conn, void *arg)
{
    h1_conn_t *c = arg;
    /* process() only when something waits for the output to go down: the
     * close, reading (stopped on a full output), a finished front stream, the
     * front request's handler (pt__resp_blocked), or the idle timer (it starts
     * once everything was written) */
    h1_stream_t *f = c->head;
    if (c->closing || !c->read_enabled || c->in_process ||
        (f == NULL ? c->phase != T_IDLE : f->ended || (f->req != NULL && f->req->want_writable)))
        process(c);
}

static void on_event(pt_conn_t *conn, int what, void *arg)
{
    h1_conn_t *c = arg;
    if (what == PT_CONN_EOF && c->tunnel != NULL) {
        /* The client is done sending; the other direction goes on until the
         * upstream ends it (or the idle timeout does). */
        c->tunnel_eof = true;
        process(c);
        return;
    }
    if (what == PT_CONN_EOF) {
        /* Half-close: answer what was fully received, then close. */
        c->no_more = true;
        if (c->reading != NULL) {
            h1_stream_t *s = c->reading;
            c->reading = NULL;
            s->in_done = true;
            if (!s->ended) {
                s->ended = true;
                s->reset = true;
            }
            stream_release(s, false);
        }
        process(c);
        return;
    }
    /* error, or a send timeout: nothing more can be delivered */
    close_now(c);
}

/* ---- codec ops (listener) ------------------------------------------------------ */

static void codec_drain(pt_conn_t *conn)
{
    h1_conn_t *c = conn->codec;
    if (c == NULL)
        return;
    c->draining = true;
    if (c->head == NULL && pt_h1p_idle(c->parser)) {
        close_now(c);
        return;
    }
    /* The current (last) request is answered with Connection: close, then the connection closes. */
    if (c->reading != NULL)
        c->reading->close = true;
    else if (pt_h1p_idle(c->parser))
        c->no_more = true;
    /* else: mid-head; that request gets close_after when its head completes */
    schedule(c);
}

static void codec_destroy(pt_conn_t *conn)
{
    h1_conn_t *c = conn->codec;
    if (c == NULL)
        return;
    teardown(c);
}

const pt_codec_ops_t pt__h1_codec_ops = {
    .name = "h1",
    .drain = codec_drain,
    .destroy = codec_destroy,
};

bool pt__h1_conn_is_h1(const pt_conn_t *conn)
{
    return conn->codec != NULL && conn->codec_ops == &pt__h1_codec_ops;
}

/*
 * The parser's pre-routing cap: the largest max_body of any route, or none
 * when a route's handler decides its own (handler.h body_limit: gRPC streams).
 */
static uint64_t largest_max_body(const pt_config_t *cfg)
{
    uint64_t m = cfg->limits.max_body;
    for (size_t i = 0; i < cfg->route_cnt; i++) {
        if (cfg->routes[i].handler != NULL && cfg->routes[i].handler->body_limit != NULL &&
            !cfg->routes[i].request_buffering)
            return UINT64_MAX;
        if (cfg->routes[i].max_body > m)
            m = cfg->routes[i].max_body;
    }
    return m;
}

void pt__h1_conn_start(pt_conn_t *conn, const void *data, size_t len)
{
    h1_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->conn = conn;
    c->w = conn->worker;
    const pt_config_t *cfg = c->w->config;
    c->limits = cfg->limits;
    c->to = cfg->timeouts;
    if (c->limits.max_pipeline == 0)
        c->limits.max_pipeline = 1;
    pt_h1p_limits_t pl;
    pt_h1p_limits_from(&pl, &cfg->limits);
    pl.max_body = largest_max_body(cfg); /* the route's own cap is checked after routing */
    c->parser = pt_h1p_new(&pl);
    c->timer = evtimer_new(c->w->base, on_timer, c);
    c->later = event_new(c->w->base, -1, 0, on_later, c);
    if (c->timer == NULL || c->later == NULL)
        abort();
    conn->codec = c;
    conn->codec_ops = &pt__h1_codec_ops;
    if (data != NULL && len != 0)
        evbuffer_prepend(pt_conn_input(conn), data, len);
    pt_conn_set_callbacks(conn, on_read, on_drain, on_event, c);
    pt_conn_pause_read(conn); /* matches read_enabled == false; process() decides */
    pt_conn_set_lowat(conn, c->limits.max_response_buffer / 2);
    pt_conn_set_send_timeout(conn, c->to.send_ms);
    c->phase = T_NONE;
    process(c);
}
