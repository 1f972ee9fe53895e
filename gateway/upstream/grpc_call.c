/*
 * grpc_call.c -- gRPC calls message by message over pt_upcall_start() (see
 * grpc.h), and the gRPC status and timeout helpers.
 *
 * A call is one upstream stream. The request side is a buffer holding the
 * framed message being sent, pulled by the stream's read_body. The response
 * side follows the message framing as bytes arrive (the 5-byte prefix is
 * checked the moment it is complete, so an oversized message is refused
 * before any of its bytes is kept) and keeps whole messages until the caller
 * asks for them; while one waits, on_data answers "pause" and the HTTP/2
 * stream window is not given back, so the backend stops.
 *
 * Callbacks to the caller run from one event per call (`ev`), never from the
 * upstream's callbacks: those only record what arrived. `depth` marks the
 * event's delivery; a cancel during it frees the call when delivery ends.
 */
#include "core/xalloc.h"
#include "upstream/grpc.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2mem.h"
#include "upstream/call.h"
#include "portico/status.h"
#include "portico/transcoder/alloc.h"
#include "portico/transcoder/wkt.h"

#define DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
#define KEEP_BUF (64u * 1024u) /* response buffer capacity kept between messages */
#define SMALL_BUF 256          /* inline storage: a small call allocates no buffer */

struct pt_grpc_call {
    pt_worker_t *w;
    pt_upcall_t *up;          /* NULL once the stream ended or was cancelled */
    pt_upcall_req_t ureq;
    pt_headers_t hdrs;        /* request head (arena) */
    pt_arena_t *arena;
    pt_grpc_call_cbs_t cbs;
    void *ud;
    struct event ev;          /* delivery to the caller */
    uint64_t max_msg;
    bool unary;

    /* request: the framed message being sent */
    char *sbuf;               /* s_small, or malloc'd */
    size_t s_off, s_len, s_cap;
    bool s_close;             /* half-close once sbuf is sent */
    bool s_owed;              /* on_sent is owed when sbuf drains */
    bool s_ready;             /* ... and it drained: deliver on_sent */

    /* response */
    int http;
    bool got_head, head_given;
    bool ended;               /* the upstream stream is over (or was cut) */
    bool want_msg;            /* a recv is outstanding */
    bool paused;              /* on_data answered "pause" */
    pt_headers_t md;          /* initial metadata (arena copies; -bin decoded) */
    pt_headers_t tr;          /* trailers, likewise */
    uint8_t pfx[5];
    uint8_t plen;             /* prefix bytes seen of the next message */
    uint64_t left;            /* bytes of the current message still to come */
    char *rbuf;               /* received bytes not delivered: whole messages, then a partial one */
    size_t r_off, r_whole, r_len, r_cap;

    /* status */
    pt_grpc_status_t st;
    bool has_status;

    unsigned depth;
    bool canceled, done;
    const pt_allocator_t *xa; /* the worker's h2mem lists: this object came from them */

    /* last: not cleared for a new call (call_new) */
    char s_small[SMALL_BUF];  /* first storage of sbuf and rbuf */
    char r_small[SMALL_BUF];
};

/* Grows *buf (capacity *cap; `small` is its inline storage) to hold `need` bytes. */
static void buf_reserve(char **buf, size_t *cap, char *small, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap * 2;
    while (c < need)
        c *= 2;
    if (*buf == small) {
        char *b = pt_xrealloc(NULL, c);
        memcpy(b, small, *cap);
        *buf = b;
    } else {
        *buf = pt_xrealloc(*buf, c);
    }
    *cap = c;
}

static void buf_release(char **buf, size_t *cap, char *small)
{
    if (*buf != small)
        free(*buf);
    *buf = small;
    *cap = SMALL_BUF;
}

static void call_free(pt_grpc_call_t *c)
{
    if (event_initialized(&c->ev))
        event_del(&c->ev);
    buf_release(&c->sbuf, &c->s_cap, c->s_small);
    buf_release(&c->rbuf, &c->r_cap, c->r_small);
    c->xa->free(c->xa->ud, c);
}

static void schedule(pt_grpc_call_t *c)
{
    if (!c->canceled && !c->done)
        event_active(&c->ev, EV_WRITE, 0);
}

/* Progress a unary caller hears of only at the end (grpc.h: on_headers,
 * on_sent, on_message and on_done in one go): no delivery event for it
 * before then -- one event per call instead of two or three. */
static void schedule_progress(pt_grpc_call_t *c)
{
    if (!c->unary)
        schedule(c);
}

/* Portico ends the call itself: `code`, with `local` saying why (first reason wins). */
static void fail(pt_grpc_call_t *c, int local, int code, const char *reason)
{
    if (c->st.local == 0) {
        c->st.local = local;
        c->st.code = code;
        c->st.reason = reason;
        c->st.details = pt_str_c(reason);
        c->has_status = true;
    }
    if (c->up != NULL) {
        pt_upcall_t *u = c->up;
        c->up = NULL;
        pt_upcall_cancel(u); /* RST_STREAM(CANCEL); deferred by h2.c inside its callbacks */
    }
    c->ended = true;
    c->r_len = c->r_whole; /* a partial message is worthless now */
    schedule(c);
}

/* ---- the upstream stream's callbacks (record, then schedule delivery) ---------------- */

static size_t up_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    pt_grpc_call_t *c = ud;
    size_t n = c->s_len - c->s_off;
    if (n > max)
        n = max;
    if (n != 0) {
        memcpy(buf, c->sbuf + c->s_off, n);
        c->s_off += n;
    }
    if (c->s_off == c->s_len) {
        c->s_off = c->s_len = 0;
        if (c->s_owed) {
            c->s_owed = false;
            c->s_ready = true;
            schedule_progress(c);
        }
        if (c->s_close) /* the last bytes and the end together: no empty DATA frame after them */
            *eof = true;
    }
    return n;
}

/*
 * Copies metadata into `dst`, in ONE arena block (the upstream's slices die
 * with its callback; delivery comes later): pseudo-headers skipped, `-bin`
 * values base64-decoded (undecodable ones dropped, as gRPC implementations
 * do). Names are lowercase already (HTTP/2; h2.c refuses others).
 */
static void copy_md(pt_grpc_call_t *c, pt_headers_t *dst, const pt_header_t *h, size_t cnt)
{
    size_t need = 0;
    for (size_t i = 0; i < cnt; i++)
        need += h[i].name.len + h[i].value.len + 3;
    char *p = need != 0 ? pt_arena_alloc(c->arena, need) : NULL;
    if (p == NULL)
        return;
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t n = h[i].name, v = h[i].value;
        if (n.len == 0 || n.base[0] == ':')
            continue;
        memcpy(p, n.base, n.len);
        pt_str_t nn = {p, n.len};
        p += n.len;
        pt_str_t vv = {p, 0};
        if (n.len > 4 && memcmp(n.base + n.len - 4, "-bin", 4) == 0) {
            long dl = pt_base64_decode_to((uint8_t *)p, v.base, v.len);
            if (dl < 0)
                continue;
            vv.len = (size_t)dl; /* at most 3/4 of the text, + 3 */
        } else {
            memcpy(p, v.base, v.len);
            vv.len = v.len;
        }
        p += vv.len;
        pt_headers_add_nocopy(dst, nn, vv);
    }
}

static void up_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    pt_grpc_call_t *c = ud;
    c->http = status;
    c->got_head = true;
    copy_md(c, &c->md, h, cnt);
    schedule_progress(c);
}

/* The next message's prefix is complete: 0, or the call fails here. */
static int check_prefix(pt_grpc_call_t *c, uint64_t *ml)
{
    const uint8_t *p = c->pfx;
    *ml = ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 8) | p[4];
    if (p[0] != 0) {
        /* 1 = compressed: we offer no grpc-accept-encoding, so none may come */
        fail(c, PT_ERR_UPSTREAM, PT_GRPC_INTERNAL, "bad message framing from upstream");
        return -1;
    }
    if (*ml > c->max_msg) {
        fail(c, PT_ERR_UPSTREAM, PT_GRPC_RESOURCE_EXHAUSTED,
             "upstream response message larger than max_message");
        return -1;
    }
    return 0;
}

static bool up_on_data(void *ud, const char *data, size_t len)
{
    pt_grpc_call_t *c = ud;
    if (c->ended)
        return false;
    if (c->http != 200)
        return true; /* not gRPC messages (an error page): dropped, the status says why */
    size_t pos = 0;
    while (pos < len) {
        if (c->left > 0) {
            size_t n = len - pos < c->left ? len - pos : (size_t)c->left;
            buf_reserve(&c->rbuf, &c->r_cap, c->r_small, c->r_len + n);
            memcpy(c->rbuf + c->r_len, data + pos, n);
            c->r_len += n;
            pos += n;
            c->left -= n;
            if (c->left == 0)
                c->r_whole = c->r_len;
            continue;
        }
        c->pfx[c->plen++] = (uint8_t)data[pos++];
        if (c->plen < 5)
            continue;
        c->plen = 0;
        uint64_t ml;
        if (check_prefix(c, &ml) != 0)
            return false;
        /* room for the whole message at once: it is at most max_message */
        buf_reserve(&c->rbuf, &c->r_cap, c->r_small, c->r_len + 5 + (size_t)ml);
        memcpy(c->rbuf + c->r_len, c->pfx, 5);
        c->r_len += 5;
        c->left = ml;
        if (ml == 0)
            c->r_whole = c->r_len;
    }
    if (c->r_whole > c->r_off) {
        schedule_progress(c);
        c->paused = true; /* a whole message waits for the caller */
        return false;
    }
    return true;
}

/* Percent-decodes grpc-message into the arena. */
static pt_str_t pct_decode(pt_arena_t *a, pt_str_t v)
{
    char *o = pt_arena_alloc(a, v.len + 1);
    if (o == NULL)
        return PT_STR("");
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        int hi, lo;
        if (v.base[i] == '%' && i + 2 < v.len && (hi = pt_str_hexval(v.base[i + 1])) >= 0 &&
            (lo = pt_str_hexval(v.base[i + 2])) >= 0) {
            o[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            o[n++] = v.base[i];
        }
    }
    return (pt_str_t){o, n};
}

/* The three status fields of metadata copied by copy_md(), in one pass (the
 * first of each name wins, as pt_headers_get() answered): names are compared
 * only when their length fits. */
static void status_fields(const pt_headers_t *h, pt_str_t *st, pt_str_t *msg, pt_str_t *bin)
{
    *st = *msg = *bin = PT_STR_NULL;
    for (size_t i = 0; i < h->cnt; i++) {
        pt_str_t n = h->v[i].name;
        pt_str_t *dst = n.len == 11 ? st : n.len == 12 ? msg : n.len == 23 ? bin : NULL;
        if (dst == NULL || dst->base != NULL)
            continue;
        if (pt_str_ieq(n, n.len == 11   ? PT_STR("grpc-status")
                          : n.len == 12 ? PT_STR("grpc-message")
                                        : PT_STR("grpc-status-details-bin")))
            *dst = h->v[i].value;
    }
}

/* The status carried by `h` (trailers, or a Trailers-Only head), if any. */
static bool status_from(pt_grpc_call_t *c, const pt_headers_t *h)
{
    pt_str_t s, msg, bin;
    status_fields(h, &s, &msg, &bin);
    if (s.base == NULL)
        return false;
    c->st.code = pt_grpc_status_parse(s); /* -1, 99, "abc": UNKNOWN, as native gRPC passes them */
    c->st.details = pct_decode(c->arena, msg);
    if (bin.base != NULL) { /* decoded already by copy_md */
        c->st.bin = (const uint8_t *)bin.base;
        c->st.bin_len = bin.len;
    }
    c->st.trailers = h->v;
    c->st.trailer_cnt = h->cnt;
    c->has_status = true;
    return true;
}

static void up_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    pt_grpc_call_t *c = ud;
    c->up = NULL;
    c->ended = true;
    if (st != 0) {
        fail(c, st, st == PT_ERR_TIMEOUT ? PT_GRPC_DEADLINE_EXCEEDED : PT_GRPC_UNAVAILABLE,
             reason != NULL ? reason : pt_strerror(st));
        return;
    }
    copy_md(c, &c->tr, t, tcnt);
    if (status_from(c, &c->tr) || status_from(c, &c->md))
        ; /* trailers, else Trailers-Only */
    else if (c->http != 200)
        fail(c, PT_ERR_UPSTREAM, pt_grpc_code_from_http(c->http), "upstream HTTP error status");
    else
        fail(c, PT_ERR_UPSTREAM, PT_GRPC_INTERNAL, "upstream sent no grpc-status");
    schedule(c);
}

/* ---- delivery to the caller ----------------------------------------------------------- */

/* Hands the first whole message of rbuf to the caller. */
static void give_message(pt_grpc_call_t *c)
{
    const uint8_t *p = (const uint8_t *)c->rbuf + c->r_off;
    size_t ml = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
    c->r_off += 5 + ml;
    c->want_msg = false;
    c->cbs.on_message(c->ud, p + 5, ml);
    if (c->canceled)
        return;
    if (c->r_off == c->r_len) {
        c->r_off = c->r_whole = c->r_len = 0;
        if (c->r_cap > KEEP_BUF) /* a big message: give its memory back now */
            buf_release(&c->rbuf, &c->r_cap, c->r_small);
    }
    if (c->paused && c->r_whole == c->r_off && c->up != NULL) {
        c->paused = false;
        pt_upcall_resume(c->up);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_grpc_call_t *c = arg;
    c->depth++;
    if (c->got_head && !c->head_given) {
        c->head_given = true;
        if (c->cbs.on_headers != NULL)
            c->cbs.on_headers(c->ud, c->md.v, c->md.cnt);
    }
    if (!c->canceled && c->s_ready) {
        c->s_ready = false;
        if (c->cbs.on_sent != NULL)
            c->cbs.on_sent(c->ud, true);
    }
    /* unary: nothing before the end; then the one message (any further one is dropped) */
    if (!c->canceled && c->unary && c->ended) {
        if (c->r_whole > c->r_off && c->st.local == 0)
            give_message(c);
        else
            c->cbs.on_message(c->ud, NULL, 0);
    }
    while (!c->canceled && !c->unary && c->want_msg && c->r_whole > c->r_off)
        give_message(c);
    /* the end: once every whole message was taken (a caller that reads no
     * more, as after the one answer of a client stream, still gets on_done) */
    if (!c->canceled && c->ended && (c->unary || c->r_whole == c->r_off)) {
        if (!c->unary && c->want_msg)
            c->cbs.on_message(c->ud, NULL, 0);
        if (!c->canceled && c->r_len > c->r_whole && c->st.local == 0)
            fail(c, PT_ERR_UPSTREAM, PT_GRPC_INTERNAL, "upstream ended inside a message");
        if (!c->canceled) {
            c->done = true;
            c->cbs.on_done(c->ud, &c->st);
        }
    }
    if (--c->depth == 0 && (c->canceled || c->done))
        call_free(c);
}

/* ---- the API (grpc.h) ------------------------------------------------------------------- */

/* Appends a framed message to the send buffer. */
static void frame(pt_grpc_call_t *c, const uint8_t *msg, size_t len)
{
    buf_reserve(&c->sbuf, &c->s_cap, c->s_small, c->s_len + 5 + len);
    uint8_t *p = (uint8_t *)c->sbuf + c->s_len;
    p[0] = 0;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    if (len != 0)
        memcpy(p + 5, msg, len);
    c->s_len += 5 + len;
}

/* Without printf: once per call. */
pt_str_t pt_grpc_timeout_format(pt_arena_t *a, uint64_t ms)
{
    char unit = 'm';
    if (ms > 99999999u) {
        ms /= 1000u;
        unit = 'S';
    }
    if (ms > 99999999u)
        ms = 99999999u;
    char *v = pt_arena_alloc(a, 10);
    if (v == NULL)
        return PT_STR("1m");
    char digits[10];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + ms % 10);
        ms /= 10;
    } while (ms != 0);
    for (size_t i = 0; i < n; i++)
        v[i] = digits[n - 1 - i];
    v[n] = unit;
    return (pt_str_t){v, n + 1};
}

/* The request head: gRPC's own fields, then the metadata (`-bin` values base64). */
static int build_head(pt_grpc_call_t *c, const pt_grpc_call_req_t *r)
{
    pt_headers_t *h = &c->hdrs;
    int rc = pt_headers_add_nocopy(h, PT_STR("content-type"), PT_STR("application/grpc"));
    if (rc == 0)
        rc = pt_headers_add_nocopy(h, PT_STR("te"), PT_STR("trailers"));
    if (rc == 0 && r->send_deadline && r->timeout_ms != 0)
        rc = pt_headers_add_nocopy(h, PT_STR("grpc-timeout"), pt_grpc_timeout_format(c->arena, r->timeout_ms));
    for (size_t i = 0; i < r->md_cnt && rc == 0; i++) {
        pt_str_t n = r->md[i].name, v = r->md[i].value;
        if (n.len > 4 && memcmp(n.base + n.len - 4, "-bin", 4) == 0) {
            char *b = pt_arena_alloc(c->arena, PT_BASE64_ENCODED_LEN(v.len) + 1);
            if (b == NULL)
                return PT_ERR_LIMIT;
            v = (pt_str_t){b, pt_base64_encode_to(b, (const uint8_t *)v.base, v.len)};
        }
        rc = pt_headers_add_nocopy(h, n, v);
    }
    return rc != 0 ? PT_ERR_LIMIT : 0;
}

int pt_grpc_call_start(pt_worker_t *w, const pt_grpc_call_req_t *r, const pt_grpc_call_cbs_t *cbs,
                       void *ud, pt_grpc_call_t **out)
{
    if (w == NULL || r == NULL || r->cluster == NULL || r->arena == NULL || cbs == NULL ||
        cbs->on_message == NULL || cbs->on_done == NULL || out == NULL ||
        (r->unary && (r->msg == NULL || !r->close)))
        return PT_ERR_INTERNAL;
    /* from the worker's free lists: a call object is a malloc/free pair per call otherwise */
    const pt_allocator_t *xa = pt_h2mem_allocator(w);
    pt_grpc_call_t *c = xa->alloc(xa->ud, sizeof(*c));
    if (c == NULL)
        abort();
    memset(c, 0, offsetof(pt_grpc_call_t, s_small)); /* the inline buffers need no clearing */
    c->xa = xa;
    c->sbuf = c->s_small;
    c->rbuf = c->r_small;
    c->s_cap = c->r_cap = SMALL_BUF;
    c->w = w;
    c->arena = r->arena;
    c->cbs = *cbs;
    c->ud = ud;
    c->unary = r->unary;
    c->max_msg = r->max_message != 0 ? r->max_message : DEFAULT_MAX_MESSAGE;
    pt_headers_init(&c->hdrs, r->arena);
    pt_headers_init(&c->md, r->arena);
    pt_headers_init(&c->tr, r->arena);
    int rc = build_head(c, r);
    if (rc != 0) {
        call_free(c);
        return rc;
    }
    if (r->msg != NULL)
        frame(c, r->msg, r->msg_len);
    c->s_close = r->close;
    if (c->s_len == 0)
        c->s_ready = true; /* nothing to send: the start itself is "sent" */
    else
        c->s_owed = true;
    pt_upcall_req_t *u = &c->ureq;
    u->cluster = r->cluster;
    u->method = PT_STR("POST");
    u->path = r->method;
    u->authority = r->authority;
    u->headers = &c->hdrs;
    u->content_length = -1;
    u->has_body = true;
    u->timeout_ms = r->timeout_ms;
    u->idempotent = false;
    u->hash_key = r->hash_key;
    u->retry = r->retry;
    u->trace = r->trace;
    static const pt_upcall_cbs_t up_cbs = {
        .read_body = up_read_body,
        .on_head = up_on_head,
        .on_data = up_on_data,
        .on_done = up_on_done,
    };
    event_assign(&c->ev, w->base, -1, 0, on_event, c);
    rc = pt_upcall_start(w, u, &up_cbs, c, &c->up);
    if (rc != 0) {
        call_free(c);
        return rc;
    }
    if (c->s_ready)
        schedule(c);
    *out = c;
    return 0;
}

int pt_grpc_call_send(pt_grpc_call_t *c, const uint8_t *msg, size_t len, bool close)
{
    if (c == NULL || c->s_close || c->s_owed || c->s_ready || c->up == NULL)
        return PT_ERR_INVALID;
    frame(c, msg, len);
    c->s_close = close;
    c->s_owed = true;
    pt_upcall_body_ready(c->up);
    return 0;
}

int pt_grpc_call_close(pt_grpc_call_t *c)
{
    if (c == NULL || c->s_close || c->s_owed || c->s_ready || c->up == NULL)
        return PT_ERR_INVALID;
    c->s_close = true;
    c->s_owed = true;
    pt_upcall_body_ready(c->up); /* read_body drains the (empty) buffer: on_sent, then eof */
    return 0;
}

int pt_grpc_call_recv(pt_grpc_call_t *c)
{
    if (c == NULL || c->unary || c->want_msg || c->done)
        return PT_ERR_INVALID;
    c->want_msg = true;
    schedule(c);
    return 0;
}

void pt_grpc_call_cancel(pt_grpc_call_t *c)
{
    if (c == NULL || c->canceled)
        return;
    c->canceled = true;
    if (c->up != NULL) {
        pt_upcall_t *u = c->up;
        c->up = NULL;
        pt_upcall_cancel(u);
    }
    if (c->depth == 0)
        call_free(c);
}

const char *pt_grpc_call_endpoint(const pt_grpc_call_t *c)
{
    return c != NULL && c->up != NULL ? pt_upcall_endpoint(c->up) : NULL;
}

/* ---- status helpers --------------------------------------------------------------- */

int pt_grpc_code_from_http(int http_status)
{
    switch (http_status) {
    case 400:
        return PT_GRPC_INTERNAL;
    case 401:
        return PT_GRPC_UNAUTHENTICATED;
    case 403:
        return PT_GRPC_PERMISSION_DENIED;
    case 404:
        return PT_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return PT_GRPC_UNAVAILABLE;
    default:
        return PT_GRPC_UNKNOWN;
    }
}

const char *pt_grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

int pt_grpc_code_http(int code)
{
    switch (code) {
    case PT_GRPC_OK:
        return 200;
    case PT_GRPC_CANCELLED:
        return 499;
    case PT_GRPC_INVALID_ARGUMENT:
    case PT_GRPC_FAILED_PRECONDITION:
    case PT_GRPC_OUT_OF_RANGE:
        return 400;
    case PT_GRPC_DEADLINE_EXCEEDED:
        return 504;
    case PT_GRPC_NOT_FOUND:
        return 404;
    case PT_GRPC_ALREADY_EXISTS:
    case PT_GRPC_ABORTED:
        return 409;
    case PT_GRPC_PERMISSION_DENIED:
        return 403;
    case PT_GRPC_UNAUTHENTICATED:
        return 401;
    case PT_GRPC_RESOURCE_EXHAUSTED:
        return 429;
    case PT_GRPC_UNIMPLEMENTED:
        return 501;
    case PT_GRPC_UNAVAILABLE:
        return 503;
    default:
        return 500; /* UNKNOWN, INTERNAL, DATA_LOSS, out of range */
    }
}

bool pt_grpc_code_internal(int code)
{
    return code == PT_GRPC_UNKNOWN || code == PT_GRPC_DEADLINE_EXCEEDED || code == PT_GRPC_INTERNAL ||
           code == PT_GRPC_UNAVAILABLE || code == PT_GRPC_DATA_LOSS;
}

bool pt_grpc_status_public(const pt_grpc_status_t *st, pt_str_t *msg, const uint8_t **bin,
                           size_t *bin_len)
{
    if (st->local != 0 || pt_grpc_code_internal(st->code)) {
        int pst = st->local != 0                            ? st->local
                  : st->code == PT_GRPC_DEADLINE_EXCEEDED ? PT_ERR_TIMEOUT
                                                            : PT_ERR_UPSTREAM;
        *msg = pt_str_c(pt_strerror(pst));
        *bin = NULL;
        *bin_len = 0;
        return true;
    }
    *msg = st->details;
    *bin = st->bin;
    *bin_len = st->bin_len;
    return false;
}

int pt_grpc_status_parse(pt_str_t v)
{
    if (v.len == 0 || v.base == NULL)
        return PT_GRPC_UNKNOWN;
    int code = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return PT_GRPC_UNKNOWN;
        code = code * 10 + (v.base[i] - '0');
        if (code > PT_GRPC_UNAUTHENTICATED)
            return PT_GRPC_UNKNOWN; /* also stops before any overflow */
    }
    return code;
}

bool pt_grpc_md_valid(pt_str_t name, pt_str_t value)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.base[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return false;
    }
    if (pt_str_has_isuffix(name, PT_STR("-bin")))
        return true;
    for (size_t i = 0; i < value.len; i++) {
        unsigned char ch = (unsigned char)value.base[i];
        if (ch < 0x20 || ch > 0x7e)
            return false;
    }
    return true;
}

int pt_grpc_timeout_parse(pt_str_t v, uint64_t *ms)
{
    if (v.len < 2 || v.len > 9)
        return PT_ERR_INVALID;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return PT_ERR_INVALID;
        n = n * 10 + (uint64_t)(v.base[i] - '0');
    }
    uint64_t out;
    switch (v.base[v.len - 1]) {
    case 'H':
        out = n * 3600000;
        break;
    case 'M':
        out = n * 60000;
        break;
    case 'S':
        out = n * 1000;
        break;
    case 'm':
        out = n;
        break;
    case 'u':
        out = (n + 999) / 1000;
        break;
    case 'n':
        out = (n + 999999) / 1000000;
        break;
    default:
        return PT_ERR_INVALID;
    }
    *ms = out != 0 ? out : 1;
    return 0;
}
