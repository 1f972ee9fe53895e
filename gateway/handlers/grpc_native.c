/*
 * grpc_native.c -- the `grpc` route's native parts: gRPC passthrough and
 * gRPC-Web (see grpc.h for how the route dispatches to them).
 *
 * Native gRPC (content-type application/grpc*, HTTP/2 only): the call is
 * forwarded as it is over the upstream call primitive, which sends gRPC
 * clusters through shared nghttp2 client sessions (upstream/h2.c): the
 * client's :path, its metadata (every header but hop-by-hop and pseudo ones;
 * x-request-id and x-forwarded-for are ours), te: trailers, and grpc-timeout
 * reduced by the time already spent in Portico. The same deadline is
 * enforced here (the call's timeout): expiry answers DEADLINE_EXCEEDED and
 * resets the upstream stream. Bodies stream both ways with backpressure, so
 * all four call types work; response headers and trailers come back as they
 * are. A client RST_STREAM cancels the upstream stream.
 *
 * Failures (SECURITY-CASES JP-8, UP-4): an upstream that cannot be reached,
 * or fails before its head, gives a Trailers-Only answer with grpc-status 14
 * UNAVAILABLE (4 DEADLINE_EXCEEDED for the deadline); a non-200 upstream
 * status is mapped per the gRPC http-grpc-status-mapping; an upstream that
 * dies mid-stream gives trailers with grpc-status 14 when the client got
 * whole messages so far, else RST_STREAM (never a clean end without a
 * status); a response without grpc-status ends with INTERNAL. Messages are
 * checked on the way through (5-byte length prefixes, both directions):
 * over the route's max_message (4 MiB) -> RESOURCE_EXHAUSTED, sent at a
 * message boundary; the response's compressed flag needs a grpc-encoding.
 * That is the only size limit on a request stream: the route's max_body does
 * not apply to these calls (grpc.c grpc_body_limit), so a long bidi stream
 * ends by its deadline, never by its total (issue 14). A header that gRPC
 * metadata cannot carry (pt_grpc_md_valid: a tab, non-ASCII) is refused with
 * INVALID_ARGUMENT; a grpc-status outside 0..16 is passed on as 2 UNKNOWN.
 *
 * gRPC-Web (application/grpc-web, +proto, application/grpc-web-text[+proto],
 * HTTP/1.1 or HTTP/2): the same call upstream as native gRPC
 * (application/grpc, te: trailers); the response body is the upstream's
 * frames followed by the trailers as one more frame with flag 0x80
 * ("name: value\r\n" lines). Text mode is base64 both ways: the request is
 * decoded quad by quad (padded chunks welcome), every response piece is
 * encoded on its own with padding, so a message is never held back waiting
 * for the next one's bytes (streaming-safe; gRPC-Web clients decode 4
 * characters at a time). CORS (preflights, Access-Control-* on answers,
 * exposing grpc-status, grpc-message, grpc-status-details-bin and the
 * upstream's metadata) is the `cors` filter's (plugins/cors.c): the route's
 * `web_origins` configures an implicit one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chain.h"
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "handlers/grpc.h"
#include "observe/observe.h"
#include "observe/trace.h"
#include "upstream/call.h"
#include "portico/status.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/wkt.h"

#define DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
#define TEXT_CHUNK 16384 /* base64 characters decoded per step */

/* Message framing seen on the way through (5-byte prefix: flag, u32 length). */
typedef struct fscan {
    uint8_t hdr[5];
    uint8_t hlen;     /* prefix bytes collected (split across chunks) */
    uint64_t left;    /* message bytes still to pass */
} fscan_t;

typedef struct gn_ctx {
    pt_grpc_ctx_base_t base; /* first: the route's on_body / on_writable land here */
    pt_req_t *req;
    const pt_grpc_conf_t *conf;
    pt_upcall_t *call;
    pt_upcall_req_t up;
    pt_headers_t up_headers;
    uint64_t t0_ns;
    uint64_t max_msg;
    bool web, text;
    pt_str_t web_type;        /* response content type (gRPC-Web) */
    fscan_t in, out;
    bool resp_encoded;        /* the upstream head named a grpc-encoding */
    bool head_sent;           /* pt__resp_head was called */
    bool head_held;           /* the upstream head carries grpc-status: Trailers-Only, sent at the end */
    char b64[4];              /* text mode: request characters not yet a whole quad */
    uint8_t b64_len;
    uint8_t dec[8];           /* text mode: decoded bytes that did not fit the last read */
    uint8_t dec_len;
} gn_ctx_t;

/* ---- small helpers ----------------------------------------------------------------- */

/* (grpc-message is percent-encoded by pt__grpc_pct_encode: gRPC over HTTP/2, "Responses".) */
static pt_str_t code_str(pt_arena_t *a, int code)
{
    char *s = pt_arena_printf(a, "%d", code);
    return s != NULL ? pt_str_c(s) : PT_STR("2");
}

/*
 * A grpc-status value as it is passed on: unchanged when it names one of the
 * 17 codes, else "2" UNKNOWN (issue 14: -1, 99 or "abc" from a backend reach
 * no client; REST transcoding parses them the same way, grpc_call.c).
 */
static pt_str_t status_value(pt_str_t v)
{
    int code = pt_grpc_status_parse(v);
    if (code != PT_GRPC_UNKNOWN || pt_str_eq(v, PT_STR("2")))
        return v;
    return PT_STR("2");
}

/* The gRPC code for a failed upstream call (pt_status). */
static int st_to_grpc(int st)
{
    if (st == PT_ERR_TIMEOUT)
        return PT_GRPC_DEADLINE_EXCEEDED;
    if (st == PT_ERR_UPSTREAM || st == PT_ERR_UNAVAILABLE)
        return PT_GRPC_UNAVAILABLE;
    return pt_status_grpc(st);
}

/* ---- output (native bytes, or base64 in text mode) -------------------------------- */


/* Sends body bytes to the client; in text mode as a padded base64 piece. */
static void emit(gn_ctx_t *ctx, const void *data, size_t len)
{
    pt_req_t *req = ctx->req;
    if (len == 0 || pt_handler_gone(req))
        return;
    if (!ctx->text) {
        pt__resp_body(req, data, len, false);
        return;
    }
    const uint8_t *p = data;
    char out[4 * 1024];
    while (len > 0 && !pt_handler_gone(req)) {
        size_t n = len > 3 * 1024 ? 3 * 1024 : len; /* whole triplets but at the very end */
        size_t o = pt_base64_encode_to(out, p, n);
        pt__resp_body(req, out, o, false);
        p += n;
        len -= n;
    }
}

/* Starts the response with req->resp_headers as they are. */
static void send_head(gn_ctx_t *ctx)
{
    ctx->head_sent = true;
    ctx->head_held = false;
    pt__resp_head(ctx->req);
}

/* A gRPC-Web trailers frame: flag 0x80, length, "name: value\r\n" lines. */
static void emit_web_trailers(gn_ctx_t *ctx, const pt_header_t *t, size_t cnt)
{
    size_t len = 0;
    for (size_t i = 0; i < cnt; i++)
        len += t[i].name.len + 2 + t[i].value.len + 2;
    uint8_t *f = pt_arena_alloc(ctx->req->arena, 5 + len);
    if (f == NULL) {
        pt__resp_fail(ctx->req, PT_ERR_UPSTREAM, "trailers too large");
        return;
    }
    f[0] = 0x80;
    f[1] = (uint8_t)(len >> 24);
    f[2] = (uint8_t)(len >> 16);
    f[3] = (uint8_t)(len >> 8);
    f[4] = (uint8_t)len;
    size_t o = 5;
    for (size_t i = 0; i < cnt; i++) {
        for (size_t j = 0; j < t[i].name.len; j++) {
            char ch = t[i].name.base[j];
            f[o++] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        f[o++] = ':';
        f[o++] = ' ';
        memcpy(f + o, t[i].value.base, t[i].value.len);
        o += t[i].value.len;
        f[o++] = '\r';
        f[o++] = '\n';
    }
    emit(ctx, f, o);
}

/*
 * Ends the exchange with gRPC status `code`: a Trailers-Only answer when
 * nothing was sent yet, else trailers (native) or the trailers frame (web).
 */
static void send_status(gn_ctx_t *ctx, int code, const char *msg)
{
    pt_req_t *req = ctx->req;
    if (pt_handler_gone(req))
        return;
    pt_arena_t *a = req->arena;
    pt_header_t st[2] = {{PT_STR("grpc-status"), code_str(a, code)},
                         {PT_STR("grpc-message"), pt__grpc_pct_encode(a, msg)}};
    size_t stcnt = msg[0] != '\0' ? 2 : 1;
    if (!ctx->head_sent) {
        req->resp_status = 200;
        pt_headers_init(&req->resp_headers, a);
        req->resp_content_length = ctx->web ? 0 : -1;
        pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"),
                              ctx->web ? ctx->web_type : PT_STR("application/grpc"));
        for (size_t i = 0; i < stcnt; i++)
            pt_headers_add_nocopy(&req->resp_headers, st[i].name, st[i].value);
        send_head(ctx);
        if (!pt_handler_gone(req))
            pt__resp_body(req, NULL, 0, true);
        return;
    }
    if (ctx->web) {
        emit_web_trailers(ctx, st, stcnt);
    } else {
        for (size_t i = 0; i < stcnt; i++)
            pt_headers_add_nocopy(&req->resp_trailers, st[i].name, st[i].value);
    }
    if (!pt_handler_gone(req))
        pt__resp_body(req, NULL, 0, true);
}

/* ---- request body ------------------------------------------------------------------ */

/* Follows the request's message framing; false when a message is over the limit. */
static bool scan_in(gn_ctx_t *ctx, const uint8_t *p, size_t len)
{
    fscan_t *s = &ctx->in;
    size_t pos = 0;
    while (pos < len) {
        if (s->left > 0) {
            size_t n = len - pos < s->left ? len - pos : (size_t)s->left;
            pos += n;
            s->left -= n;
            continue;
        }
        s->hdr[s->hlen++] = p[pos++];
        if (s->hlen < 5)
            continue;
        s->hlen = 0;
        uint64_t ml = ((uint64_t)s->hdr[1] << 24) | ((uint64_t)s->hdr[2] << 16) |
                      ((uint64_t)s->hdr[3] << 8) | s->hdr[4];
        if (ml > ctx->max_msg)
            return false;
        s->left = ml;
    }
    return true;
}

/* Text mode: reads base64 from the request queue, decodes into `buf` (at most `max`). */
static size_t read_text(gn_ctx_t *ctx, char *buf, size_t max, bool *eof, bool *bad)
{
    pt_req_t *req = ctx->req;
    size_t out = 0;
    *eof = false;
    while (out < max && ctx->dec_len > 0) { /* what the last quad left over */
        buf[out++] = (char)ctx->dec[0];
        memmove(ctx->dec, ctx->dec + 1, --ctx->dec_len);
    }
    while (out < max) {
        char in[TEXT_CHUNK];
        size_t want = (max - out + 2) / 3 * 4;
        if (want > sizeof(in))
            want = sizeof(in);
        bool e = false;
        size_t n = pt__req_body_read(req, in, want, &e);
        if (pt_handler_gone(req))
            return 0;
        for (size_t i = 0; i < n; i++) {
            char ch = in[i];
            if (ch == '\r' || ch == '\n' || ch == ' ' || ch == '\t')
                continue;
            ctx->b64[ctx->b64_len++] = ch;
            if (ctx->b64_len < 4)
                continue;
            ctx->b64_len = 0;
            uint8_t q[PT_BASE64_DECODED_MAX(4)];
            long k = pt_base64_decode_to(q, ctx->b64, 4); /* each quad may end padded */
            if (k < 0) {
                *bad = true;
                return 0;
            }
            for (long j = 0; j < k; j++) {
                if (out < max)
                    buf[out++] = (char)q[j];
                else
                    ctx->dec[ctx->dec_len++] = q[j]; /* a few: `want` stops short of more */
            }
        }
        if (e) {
            if (ctx->b64_len != 0) {
                *bad = true;
                return 0;
            }
            *eof = ctx->dec_len == 0;
            break;
        }
        if (n == 0)
            break;
    }
    return out;
}

static size_t up_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    gn_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    size_t n;
    bool bad = false;
    if (ctx->text) {
        n = read_text(ctx, buf, max, eof, &bad);
    } else {
        n = pt__req_body_read(req, buf, max, eof);
    }
    if (pt_handler_gone(req)) {
        /* a request-body filter answered: the upstream must not see a clean end */
        *eof = false;
        n = 0;
        pt_upcall_stop(&ctx->call);
        pt_handler_finish(req);
    } else if (bad) {
        *eof = false;
        n = 0;
        pt_upcall_stop(&ctx->call);
        send_status(ctx, PT_GRPC_INTERNAL, "invalid base64 in grpc-web-text request");
        pt_handler_finish(req);
    } else if (!scan_in(ctx, (const uint8_t *)buf, n)) {
        *eof = false;
        n = 0;
        pt_upcall_stop(&ctx->call);
        send_status(ctx, PT_GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit");
        pt_handler_finish(req);
    }
    pt_handler_leave(req);
    return n;
}

/* ---- upstream callbacks -------------------------------------------------------------- */

static void note_upstream(gn_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const char *ep = ctx->call != NULL ? pt_upcall_endpoint(ctx->call) : NULL;
    if (ep != NULL) {
        req->upstream_addr = ep;
        req->upstream_cluster = ctx->base.cluster->name;
    }
    req->upstream_ns = pt_now_ns() - ctx->t0_ns;
}

static void up_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    gn_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    note_upstream(ctx);
    if (status != 200) {
        bool has_status = false;
        for (size_t i = 0; i < cnt; i++)
            has_status |= pt_str_eq(h[i].name, PT_STR("grpc-status"));
        if (!has_status) {
            pt_upcall_stop(&ctx->call);
            char *m = pt_arena_printf(req->arena, "upstream answered HTTP %d", status);
            send_status(ctx, pt_grpc_code_from_http(status), m != NULL ? m : "upstream HTTP error");
            pt_handler_finish(req);
            pt_handler_leave(req);
            return;
        }
    }
    req->resp_status = 200;
    req->resp_content_length = -1;
    pt_headers_init(&req->resp_headers, req->arena);
    bool has_status = false;
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t n = h[i].name;
        if (pt_header_is_hop_by_hop(n) || pt_str_eq(n, PT_STR("content-length")))
            continue;
        pt_str_t v = h[i].value;
        if (pt_str_eq(n, PT_STR("grpc-status"))) {
            has_status = true;
            v = status_value(v);
        }
        if (pt_str_eq(n, PT_STR("grpc-encoding")))
            ctx->resp_encoded = true;
        if (ctx->web && pt_str_eq(n, PT_STR("content-type"))) {
            /* not `n`: the upstream's header slices die with the call, and the
             * codec may write this head after that (a limit cancels the call) */
            pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), ctx->web_type);
            continue;
        }
        if (pt_headers_add(&req->resp_headers, n, v) != 0) {
            pt_upcall_stop(&ctx->call);
            pt__resp_fail(req, PT_ERR_UPSTREAM, "upstream response headers too large");
            pt_handler_finish(req);
            pt_handler_leave(req);
            return;
        }
    }
    if (has_status) {
        /* Trailers-Only from the upstream: forwarded whole at the end, so the
         * client gets one HEADERS frame with END_STREAM as well */
        ctx->head_held = true;
    } else {
        send_head(ctx);
        if (pt_handler_gone(req)) {
            pt_upcall_stop(&ctx->call);
            pt_handler_finish(req);
        }
    }
    pt_handler_leave(req);
}

/* Checks one response prefix; returns 0 or the gRPC code to fail with. */
static int check_prefix(gn_ctx_t *ctx, const uint8_t *p, uint64_t *ml)
{
    *ml = ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 8) | p[4];
    if ((p[0] & 0xfe) != 0 || (p[0] == 1 && !ctx->resp_encoded))
        return PT_GRPC_INTERNAL;
    if (*ml > ctx->max_msg)
        return PT_GRPC_RESOURCE_EXHAUSTED;
    return 0;
}

/*
 * Passes response bytes on, following the framing: whole messages go out as
 * they come; a prefix split across chunks is held until complete, so a bad
 * prefix is caught before any byte of it reached the client (the answer
 * then ends at a message boundary, with a status).
 */
static int forward_out(gn_ctx_t *ctx, const uint8_t *p, size_t len)
{
    fscan_t *s = &ctx->out;
    size_t pos = 0, run = 0;
    uint64_t ml;
    int bad;
    while (pos < len) {
        if (s->left > 0) {
            size_t n = len - pos < s->left ? len - pos : (size_t)s->left;
            pos += n;
            s->left -= n;
            continue;
        }
        if (s->hlen == 0 && len - pos >= 5) {
            if ((bad = check_prefix(ctx, p + pos, &ml)) != 0) {
                emit(ctx, p + run, pos - run);
                return bad;
            }
            pos += 5;
            s->left = ml;
            continue;
        }
        emit(ctx, p + run, pos - run);
        while (s->hlen < 5 && pos < len)
            s->hdr[s->hlen++] = p[pos++];
        run = pos;
        if (s->hlen < 5)
            return 0;
        s->hlen = 0;
        if ((bad = check_prefix(ctx, s->hdr, &ml)) != 0)
            return bad;
        emit(ctx, s->hdr, 5);
        s->left = ml;
    }
    emit(ctx, p + run, pos - run);
    return 0;
}

static bool mid_message(const gn_ctx_t *ctx)
{
    return ctx->out.left > 0 || ctx->out.hlen > 0;
}

static bool up_on_data(void *ud, const char *data, size_t len)
{
    gn_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    if (ctx->head_held) /* a body after a head with grpc-status: pass the head on after all */
        send_head(ctx);
    int bad = pt_handler_gone(req) ? 0 : forward_out(ctx, (const uint8_t *)data, len);
    bool more;
    if (pt_handler_gone(req)) {
        pt_upcall_stop(&ctx->call);
        pt_handler_finish(req);
        more = false;
    } else if (bad != 0) {
        pt_upcall_stop(&ctx->call);
        send_status(ctx, bad,
                    bad == PT_GRPC_RESOURCE_EXHAUSTED ? "response message larger than the limit"
                                                      : "bad message framing from upstream");
        pt_handler_finish(req);
        more = false;
    } else {
        more = !pt__resp_blocked(req);
    }
    pt_handler_leave(req);
    return more;
}

/*
 * Issue 11: for gRPC-Web (browsers), a backend status that reports an
 * infrastructure failure (see pt_grpc_status_public) reaches the client with
 * its code and Portico's public message, without grpc-status-details-bin; the
 * backend's words go to the access log. Native gRPC is passed on as the
 * backend sent it: there Portico is a transparent gRPC proxy (the interop
 * suite's special_status_message and status_code_and_message cases), and
 * only Portico's own failures carry status.h messages. Returns the message to
 * send, or NULL to pass the status on.
 */
static const char *public_message(gn_ctx_t *ctx, pt_str_t status, pt_str_t message)
{
    pt_grpc_status_t st = {.code = pt_grpc_status_parse(status), .details = message};
    pt_str_t pub;
    const uint8_t *bin;
    size_t bin_len;
    if (!ctx->web || !pt_grpc_status_public(&st, &pub, &bin, &bin_len))
        return NULL;
    pt_req_t *req = ctx->req;
    if (req->fail_status == 0)
        req->fail_status = st.code == PT_GRPC_DEADLINE_EXCEEDED ? PT_ERR_TIMEOUT : PT_ERR_UPSTREAM;
    if (req->fail_reason == NULL)
        req->fail_reason = pt_arena_printf(req->arena, "upstream grpc-status %d: %.*s", st.code,
                                           (int)(message.len > 512 ? 512 : message.len),
                                           message.base != NULL ? message.base : "");
    return pub.base; /* a status.h message: static, NUL-terminated */
}

/* The same for a Trailers-Only head held in req->resp_headers. */
static void scrub_head_status(gn_ctx_t *ctx)
{
    pt_headers_t *h = &ctx->req->resp_headers;
    const char *m = public_message(ctx, pt_headers_get(h, PT_STR("grpc-status")),
                                   pt_headers_get(h, PT_STR("grpc-message")));
    if (m == NULL)
        return;
    pt_headers_remove(h, PT_STR("grpc-status-details-bin"));
    pt_headers_remove(h, PT_STR("grpc-message"));
    pt_headers_add_nocopy(h, PT_STR("grpc-message"), pt__grpc_pct_encode(ctx->req->arena, m));
}

/* The same for trailers (an arena copy, changed in place); returns the new count. */
static size_t scrub_trailers(gn_ctx_t *ctx, pt_header_t *t, size_t cnt)
{
    pt_str_t status = PT_STR_NULL, message = PT_STR_NULL;
    for (size_t i = 0; i < cnt; i++) {
        if (pt_str_eq(t[i].name, PT_STR("grpc-status")))
            status = t[i].value;
        else if (pt_str_eq(t[i].name, PT_STR("grpc-message")))
            message = t[i].value;
    }
    const char *m = status.base != NULL ? public_message(ctx, status, message) : NULL;
    if (m == NULL)
        return cnt;
    size_t o = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (pt_str_eq(t[i].name, PT_STR("grpc-status-details-bin")))
            continue;
        if (pt_str_eq(t[i].name, PT_STR("grpc-message")))
            t[i].value = pt__grpc_pct_encode(ctx->req->arena, m);
        t[o++] = t[i];
    }
    return o;
}

static void up_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    gn_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    note_upstream(ctx);
    ctx->call = NULL;
    if (pt_handler_gone(req)) {
        /* answered already (a limit, a filter) */
    } else if (st == 0 && ctx->head_held) {
        scrub_head_status(ctx);
        send_head(ctx); /* Trailers-Only */
        if (!pt_handler_gone(req))
            pt__resp_body(req, NULL, 0, true);
    } else if (st == 0 && mid_message(ctx)) {
        pt__resp_fail(req, PT_ERR_UPSTREAM, "upstream ended inside a message");
    } else if (st == 0) {
        bool has_status = false;
        pt_header_t *nt = tcnt != 0 ? pt_arena_alloc(req->arena, tcnt * sizeof(*nt)) : NULL;
        if (nt != NULL) { /* the trailers with grpc-status as passed on (status_value) */
            for (size_t i = 0; i < tcnt; i++) {
                nt[i] = t[i];
                if (pt_str_eq(t[i].name, PT_STR("grpc-status")))
                    nt[i].value = status_value(t[i].value);
            }
            tcnt = scrub_trailers(ctx, nt, tcnt);
            t = nt;
        }
        for (size_t i = 0; i < tcnt; i++)
            has_status |= pt_str_eq(t[i].name, PT_STR("grpc-status"));
        if (tcnt != 0 && nt == NULL) {
            send_status(ctx, PT_GRPC_RESOURCE_EXHAUSTED, "upstream trailers too large");
        } else if (!has_status) {
            send_status(ctx, PT_GRPC_INTERNAL, "upstream sent no grpc-status");
        } else if (ctx->web) {
            emit_web_trailers(ctx, t, tcnt);
            if (!pt_handler_gone(req))
                pt__resp_body(req, NULL, 0, true);
        } else {
            for (size_t i = 0; i < tcnt; i++)
                if (!pt_header_is_hop_by_hop(t[i].name))
                    pt_headers_add(&req->resp_trailers, t[i].name, t[i].value);
            pt__resp_body(req, NULL, 0, true);
        }
    } else {
        pt_observe_upstream_error(req->worker, ctx->base.cluster, st);
        req->fail_status = st;
        req->fail_reason = reason;
        if (ctx->head_sent && mid_message(ctx))
            pt__resp_fail(req, st, reason); /* RST_STREAM: never a clean end */
        else {
            ctx->head_held = false;
            send_status(ctx, st_to_grpc(st), pt_strerror(st));
        }
    }
    pt_handler_finish(req);
    pt_handler_leave(req);
}

static void on_client_abort(void *data)
{
    gn_ctx_t *ctx = data;
    pt_upcall_stop(&ctx->call); /* RST_STREAM(CANCEL) upstream */
    pt_handler_finish(ctx->req);
}

static void gn_on_body(pt_req_t *req)
{
    gn_ctx_t *ctx = req->handler_ctx;
    if (ctx == NULL || pt_handler_finished(ctx->req) || ctx->call == NULL)
        return;
    pt_handler_enter(ctx->req);
    pt_upcall_body_ready(ctx->call);
    pt_handler_leave(ctx->req);
}

static void gn_on_writable(pt_req_t *req)
{
    gn_ctx_t *ctx = req->handler_ctx;
    if (ctx == NULL || pt_handler_finished(ctx->req) || ctx->call == NULL)
        return;
    pt_handler_enter(ctx->req);
    pt_upcall_resume(ctx->call);
    pt_handler_leave(ctx->req);
}

/* ---- starting a call ------------------------------------------------------------------- */

static bool owned_header(pt_str_t n, bool web)
{
    if (n.len == 0 || n.base[0] == ':' || pt_header_is_hop_by_hop(n))
        return true;
    static const pt_str_t owned[] = {
        {"host", 4}, {"content-length", 14}, {"content-type", 12}, {"x-forwarded-for", 15},
        {"x-request-id", 12}, {"grpc-timeout", 12}, {"expect", 6},
    };
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        if (pt_str_eq(n, owned[i]))
            return true;
    if (web && (pt_str_eq(n, PT_STR("x-grpc-web")) || pt_str_eq(n, PT_STR("accept")) ||
                pt_str_eq(n, PT_STR("accept-encoding"))))
        return true;
    return false;
}

/* "/pkg.Service/Method": one leading slash, a service, a slash, a method. */
static bool path_ok(pt_str_t p)
{
    if (p.len < 4 || p.base[0] != '/')
        return false;
    const char *slash = memchr(p.base + 1, '/', p.len - 1);
    return slash != NULL && slash > p.base + 1 && slash < p.base + p.len - 1 &&
           memchr(slash + 1, '/', (size_t)(p.base + p.len - slash - 1)) == NULL;
}

/* With `services:` set, only their methods pass (others: UNIMPLEMENTED). */
static bool service_allowed(const pt_grpc_conf_t *conf, pt_str_t path)
{
    if (conf->services.cnt == 0)
        return true;
    const char *slash = memchr(path.base + 1, '/', path.len - 1);
    pt_str_t svc = {path.base + 1, (size_t)(slash - path.base - 1)};
    bool listed = false;
    for (size_t i = 0; i < conf->services.cnt && !listed; i++)
        listed = pt_str_eq(svc, pt_str_c(conf->services.v[i]));
    return listed &&
           (conf->pool == NULL || pt_descpool_method(conf->pool, path.base, path.len) != NULL);
}

bool pt__grpc_method_path(const pt_grpc_conf_t *conf, pt_str_t path)
{
    return path_ok(path) && service_allowed(conf, path) &&
           (conf->pool == NULL || pt_descpool_method(conf->pool, path.base, path.len) != NULL);
}

/* Formats a grpc-timeout value (at most 8 digits) for `ms`. */
static void start_call(gn_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const pt_grpc_conf_t *conf = ctx->conf;
    pt_arena_t *a = req->arena;

    if (!pt_str_eq(req->method, PT_STR("POST"))) {
        pt__resp_fail(req, PT_ERR_METHOD, "gRPC calls are POSTs");
        return;
    }
    if (!path_ok(req->path) || req->query.len != 0 || !service_allowed(conf, req->path)) {
        send_status(ctx, PT_GRPC_UNIMPLEMENTED, "unknown method");
        return;
    }
    /* deadline: the route's (or cluster's), or the client's when shorter, less time spent here */
    bool send_deadline;
    uint64_t deadline = pt__grpc_deadline_ms(req, conf, &send_deadline);
    uint64_t spent = (pt_now_ns() - req->start_ns) / 1000000u;
    if (spent >= deadline) {
        send_status(ctx, PT_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }
    uint64_t left = deadline - spent;

    pt_headers_t *out = &ctx->up_headers;
    pt_headers_init(out, a);
    const pt_headers_t *in = &req->headers;
    int rc = 0;
    for (size_t i = 0; i < in->cnt && rc == 0; i++) {
        pt_str_t n = in->v[i].name;
        if (owned_header(n, ctx->web) || pt_headers_has_token(in, PT_STR("connection"), n))
            continue;
        if (!pt_grpc_md_valid(n, in->v[i].value)) {
            /* Refused rather than dropped: a header the client relies on
             * (a tenant, a credential) must not silently vanish (issue 14). */
            char *m = pt_arena_printf(a,
                                      "header '%.*s' cannot be sent as gRPC metadata (a tab, "
                                      "control or non-ASCII byte in its value, or a bad name)",
                                      (int)(n.len > 64 ? 64 : n.len), n.base);
            req->fail_status = PT_ERR_INVALID;
            req->fail_reason = "request header not valid as gRPC metadata";
            send_status(ctx, PT_GRPC_INVALID_ARGUMENT, m != NULL ? m : "invalid metadata");
            return;
        }
        pt_str_t v = in->v[i].value;
        if (req->trace != NULL && n.len == 11 && pt_str_eq(n, PT_STR("traceparent"))) {
            v = pt_trace_child(req->trace, a); /* the call's own span (observe/trace.h) */
            if (v.base == NULL)
                rc = PT_ERR_LIMIT;
        }
        if (rc == 0)
            rc = pt_headers_add_nocopy(out, n, v);
    }
    pt_str_t ct = pt_headers_get(in, PT_STR("content-type"));
    if (ctx->web) {
        /* application/grpc-web[-text][+proto] -> application/grpc[+proto] */
        const char *plus = memchr(ct.base, '+', ct.len);
        /* the NULL check below is on the new ct (printf out of memory) */
        ct = plus != NULL ? pt_str_c(pt_arena_printf(a, "application/grpc%.*s",
                                                     // cppcheck-suppress nullPointerArithmeticRedundantCheck
                                                     (int)(ct.base + ct.len - plus), plus))
                          : PT_STR("application/grpc");
        if (ct.base == NULL)
            rc = PT_ERR_LIMIT;
    }
    if (rc == 0)
        rc = pt_headers_add_nocopy(out, PT_STR("content-type"), ct);
    if (rc == 0)
        rc = pt_headers_add_nocopy(out, PT_STR("te"), PT_STR("trailers"));
    if (rc == 0 && send_deadline)
        rc = pt_headers_add_nocopy(out, PT_STR("grpc-timeout"), pt_grpc_timeout_format(a, left));
    if (rc == 0)
        rc = pt_headers_add_nocopy(out, PT_STR("x-forwarded-for"),
                                   req->client_addr.len ? req->client_addr : PT_STR("unknown"));
    if (rc == 0 && req->request_id.len > 0)
        rc = pt_headers_add_nocopy(out, PT_STR("x-request-id"), req->request_id);
    if (rc == 0)
        rc = pt_req_on_abort(req, on_client_abort, ctx);
    if (rc != 0) {
        send_status(ctx, PT_GRPC_RESOURCE_EXHAUSTED, "request metadata too large");
        return;
    }

    pt_upcall_req_t *up = &ctx->up;
    up->cluster = ctx->base.cluster;
    up->method = PT_STR("POST");
    up->path = req->path;
    up->authority = req->authority;
    up->headers = out;
    up->has_body = req->expect_body;
    up->content_length = -1;
    up->timeout_ms = left;
    up->idempotent = false;
    up->hash_key = pt_upcall_hash_key(up->cluster, req->client_addr, &req->headers);
    up->retry = req->route.route != NULL ? req->route.route->retry : NULL;
    up->trace = req->trace;
    static const pt_upcall_cbs_t cbs = {
        .read_body = up_read_body,
        .on_head = up_on_head,
        .on_data = up_on_data,
        .on_done = up_on_done,
    };
    rc = pt_upcall_start(req->worker, up, &cbs, ctx, &ctx->call);
    if (rc != 0) {
        ctx->call = NULL;
        pt_observe_upstream_error(req->worker, ctx->base.cluster, rc);
        send_status(ctx, st_to_grpc(rc), pt_strerror(rc));
    }
}

static gn_ctx_t *ctx_new(pt_req_t *req, const pt_grpc_conf_t *conf)
{
    gn_ctx_t *ctx = pt_arena_zalloc(req->arena, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->req = req;
    ctx->conf = conf;
    ctx->t0_ns = pt_now_ns();
    ctx->max_msg = conf->max_message != 0 ? conf->max_message : DEFAULT_MAX_MESSAGE;
    ctx->base.on_body = gn_on_body;
    ctx->base.on_writable = gn_on_writable;
    ctx->base.cluster = pt__grpc_cluster(conf, req);
    req->handler_ctx = ctx;
    return ctx;
}

void pt__grpc_passthrough_start(pt_req_t *req, const pt_grpc_conf_t *conf)
{
    gn_ctx_t *ctx = ctx_new(req, conf);
    if (ctx == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    pt_handler_enter(ctx->req);
    if (req->version != 20)
        pt__resp_fail(req, PT_ERR_VERSION, "native gRPC needs HTTP/2");
    else
        start_call(ctx);
    if (ctx->call == NULL)
        pt_handler_finish(ctx->req);
    pt_handler_leave(ctx->req);
}

/* ---- gRPC-Web ------------------------------------------------------------------------------ */

void pt__grpc_web_start(pt_req_t *req, const pt_grpc_conf_t *conf)
{
    gn_ctx_t *ctx = ctx_new(req, conf);
    if (ctx == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    pt_handler_enter(ctx->req);
    ctx->web = true;
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    ctx->text = pt_str_has_prefix(ct, PT_STR("application/grpc-web-text"));
    /* answer in the client's type: grpc-web[-text], +proto when it said so */
    ctx->web_type = pt_arena_strdup(req->arena, ct);
    const char *semi = memchr(ctx->web_type.base, ';', ctx->web_type.len);
    if (semi != NULL)
        ctx->web_type.len = (size_t)(semi - ctx->web_type.base);
    start_call(ctx);
    if (ctx->call == NULL)
        pt_handler_finish(ctx->req);
    pt_handler_leave(ctx->req);
}
