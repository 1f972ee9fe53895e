/*
 * ws_bridge.c -- the WebSocket <-> gRPC bridge of the `grpc` route: a
 * WebSocket handshake to a path that google.api.http binds to a streaming
 * method opens one gRPC call, whose messages travel as WebSocket messages.
 *
 *   client <-> codec <-> pt_req_t tunnel <-> [pt_ws_t, server role] == bridge
 *                              == upstream/grpc_call.c (one call) <-> backend
 *
 * The handshake (HTTP/1.1 Upgrade or RFC 8441 extended CONNECT; its verb is
 * GET or CONNECT whatever the binding says) is checked by pt_ws_hs_check
 * (Origin against `web_origins`), routed through the bindings ignoring the
 * HTTP method, and answered 400/404 with a google.rpc.Status JSON body when
 * the path, query or method do not fit -- before anything is upgraded.
 *
 * Messages:
 *   client text    one JSON request message: the binding's body part (the
 *                  whole message for body "*"), with the path variables,
 *                  query parameters and header bindings of the handshake
 *                  merged into it (pt_httprule_transcode_request, the REST
 *                  rules and the route's JSON options);
 *   client binary  a request message in protobuf (checked against the input
 *                  type), the same path/query/header values merged in;
 *   server         one text message of JSON per response message, or binary
 *                  protobuf when the client negotiated the subprotocol
 *                  `grpc-ws-proto` (`grpc-ws-json` names the default);
 *                  google.api.HttpBody responses go as binary raw bytes.
 * Shapes:
 *   server streaming, binding without body: the request is made of the
 *                  path and query and sent with the handshake; client
 *                  messages are refused (4003);
 *   server streaming with a body: the first client message is the request;
 *   client streaming and bidi: each client message is sent as it arrives;
 *                  the client's close frame (1000 or no code) half-closes
 *                  the call and the remaining responses are delivered
 *                  before Portico answers the close.
 * Ends:
 *   status OK      close 1000;
 *   other status   a last text message {"error":{google.rpc.Status JSON}}
 *                  (details rendered as the REST part renders them), then
 *                  close 4000 + code (4014 when the backend went away);
 *   bad client message: an error message naming the problem (as a REST 400),
 *                  the call cancelled, close 4003;
 *   the client's close with another code, or a close on a server stream,
 *                  the client going away, a protocol error or the idle
 *                  timeout: the call is cancelled (RST_STREAM upstream).
 *
 * Flow control: one response message is asked of the call at a time, and
 * none while the client's output is over limits.max_response_buffer
 * (on_writable resumes); one request message is in the call at a time, a
 * second one converted waits here and pauses the endpoint, so the core's
 * body queue stops the codec reading the socket. Memory per session: the
 * endpoint's 4 KiB window, one client message (<= websocket.max_message),
 * one converted request and one response message (<= max_message).
 *
 * Pings are answered here (pongs), never passed on; keepalive pings, the idle
 * and closing timers are the endpoint's (http/ws.h).
 *
 * Lifetime: the bridge lives in the request's arena; the endpoint is attached
 * to the request (freed with it, after the access log read its stats). The
 * handler is done when the endpoint ended (on_end) or the client went away
 * (abort hook); the call is cancelled then if it still runs. Callbacks from
 * outside the request layer are bracketed (core/handler_lifetime.h).
 */
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "handlers/grpc.h"
#include "http/ws.h"
#include "observe/observe.h"
#include "portico/status.h"

/* The subprotocols a client may choose (Sec-WebSocket-Protocol). */
#define PROTO_PB "grpc-ws-proto"
#define PROTO_JSON "grpc-ws-json"

typedef struct bridge {
    pt_grpc_ctx_base_t base;
    pt_req_t *req;
    const pt_grpc_conf_t *conf;
    const pt_httpbinding_t *binding;
    const pt_methoddesc_t *method;
    pt_httprule_match_t match;
    pt_grpc_call_t *call;
    pt_ws_t *ws;             /* facing the client once the upgrade was answered */
    pt_ws_hs_t hs;           /* the checked handshake, until then */
    pt_str_t proto;          /* the subprotocol chosen */
    pt_xbuf_t in;            /* the client message being received */
    pt_xbuf_t pb;            /* a converted request message not yet in the call */
    pt_xbuf_t out;           /* one response message (JSON) or an error */
    pt_ws_opcode_t in_op;
    uint64_t msgs_in;        /* client messages accepted */
    uint64_t t0_ns;
    bool binary_out;         /* subprotocol grpc-ws-proto */
    bool takes_msgs;         /* client messages are requests (client/bidi streaming) */
    bool takes_first;        /* server streaming with a body: the first message is the request */
    bool pending;            /* pb holds a message waiting for on_sent */
    bool send_busy;          /* a send (or the start) is in the call */
    bool half_close_wanted;  /* the client's close frame came: close after the pending message */
    bool half_closed;
    bool want_recv;          /* the next response waits for on_writable */
    bool in_paused;          /* the endpoint was paused by us (pending message) */
    bool client_closed;      /* the client's close frame arrived */
    bool ending;             /* our close was sent: no more messages either way */
    bool ws_ended;
} bridge_t;

/* ---- lifetime ----------------------------------------------------------------------- */

static void stop_call(bridge_t *b)
{
    pt_grpc_call_stop(&b->call);
}

static void bridge_cleanup(void *data)
{
    bridge_t *b = data;
    stop_call(b);
    pt_xbuf_dispose(&b->in);
    pt_xbuf_dispose(&b->pb);
    pt_xbuf_dispose(&b->out);
}

static void on_client_abort(void *data)
{
    bridge_t *b = data;
    stop_call(b);
    b->ending = true;
    pt_handler_finish(b->req);
}

/* ---- answers before the upgrade ------------------------------------------------------- */

static void reply_status(bridge_t *b, int http, int code, const char *msg, const pt_xerrs_t *errs)
{
    pt_req_t *req = b->req;
    pt_xbuf_reset(&b->out);
    if (pt_httprule_status_json(code, msg, errs, &b->out) != 0) {
        pt__resp_fail(req, PT_ERR_NOMEM, "cannot render the error");
        return;
    }
    if (req->fail_status == 0) {
        req->fail_status = http == 404   ? PT_ERR_NOT_FOUND
                           : http == 503 ? PT_ERR_UNAVAILABLE
                           : http >= 500 ? PT_ERR_INTERNAL
                                         : PT_ERR_INVALID;
        req->fail_reason = msg != NULL ? msg : "WebSocket bridge request refused";
    }
    req->resp_status = http;
    req->resp_content_length = (int64_t)b->out.len;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    pt__resp_head(req);
    pt__resp_body(req, b->out.data, b->out.len, true);
}

/* ---- the session's end ------------------------------------------------------------------- */

/*
 * Ends the session from our side: `err` (a google.rpc.Status JSON object, or
 * NULL) goes out as a last text message {"error": ...}, then the close frame
 * with `code`. The endpoint ends at once when the client's close already
 * arrived, else when it answers (or at close_timeout).
 */
static void close_with(bridge_t *b, uint16_t code, const uint8_t *err, size_t err_len,
                       const char *reason)
{
    if (b->ending || b->ws_ended)
        return;
    b->ending = true;
    if (err != NULL) {
        pt_xbuf_t m;
        pt_xbuf_init(&m, NULL);
        if (pt_xbuf_append(&m, "{\"error\":", 9) == 0 && pt_xbuf_append(&m, err, err_len) == 0 &&
            pt_xbuf_append(&m, "}", 1) == 0)
            pt_ws_send_msg(b->ws, PT_WS_OP_TEXT, m.data, m.len);
        pt_xbuf_dispose(&m);
    }
    pt_ws_close(b->ws, code, reason, reason != NULL ? strlen(reason) : 0);
}

/* A client message that cannot be sent: say why, cancel the call, close 4003. */
static void bad_message(bridge_t *b, const char *msg, const pt_xerrs_t *errs)
{
    stop_call(b);
    b->req->fail_reason = "bad WebSocket message for the gRPC call";
    pt_xbuf_t st;
    pt_xbuf_init(&st, NULL);
    if (pt_httprule_status_json(PT_GRPC_INVALID_ARGUMENT, msg, errs, &st) == 0)
        close_with(b, 4000 + PT_GRPC_INVALID_ARGUMENT, st.data, st.len, "INVALID_ARGUMENT");
    else
        close_with(b, PT_WS_CLOSE_INTERNAL, NULL, 0, "cannot render the error");
    pt_xbuf_dispose(&st);
}

/* ---- client -> call ------------------------------------------------------------------------ */

static void send_pending(bridge_t *b)
{
    bool close = b->takes_first || b->half_close_wanted;
    if (b->call == NULL || pt_grpc_call_send(b->call, b->pb.data, b->pb.len, close) != 0)
        return;
    b->pending = false;
    b->send_busy = true;
    if (close)
        b->half_closed = true;
    b->takes_first = false;
    pt_xbuf_reset(&b->pb);
}

static void half_close(bridge_t *b)
{
    if (b->half_closed || b->call == NULL)
        return;
    if (b->pending) {
        send_pending(b); /* with the close */
        return;
    }
    if (b->send_busy)
        return; /* on_sent comes back here */
    if (pt_grpc_call_close(b->call) == 0) {
        b->half_closed = true;
        b->send_busy = true;
    }
}

/* The path variables, query parameters and header bindings alone, as protobuf (appended). */
static int params_pb(bridge_t *b, pt_xbuf_t *out, pt_xerrs_t *errs)
{
    pt_req_t *req = b->req;
    pt_httpbinding_t nobody = *b->binding;
    nobody.body_kind = PT_HTTPBODY_NONE;
    nobody.request_is_httpbody = false;
    pt_httprule_match_t m = b->match;
    m.binding = &nobody;
    int rc = pt_httprule_transcode_request(b->conf->table, &m, NULL, 0, NULL, req->query.base,
                                           req->query.len, &b->conf->jopts, out, errs);
    if (rc == 0)
        rc = pt__grpc_bind_headers(req, b->conf, b->method, out, errs);
    return rc;
}

/* b->in (a whole client message) -> b->pb. Returns 0 or answers and returns -1. */
static int convert_message(bridge_t *b)
{
    pt_req_t *req = b->req;
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    pt_xbuf_reset(&b->pb);
    int rc;
    if (b->in_op == PT_WS_OP_BINARY) {
        /* Raw protobuf of the input type: checked (it must decode), then the
         * handshake's values appended -- a protobuf merge, so they win. */
        pt_xerr_t xe;
        pt_xbuf_reset(&b->out);
        rc = pt_pb_to_json(b->conf->pool, b->method->input, b->in.data, b->in.len, NULL, &b->out,
                           &xe);
        pt_xbuf_reset(&b->out);
        if (rc == PT_XERR_NOMEM)
            goto nomem;
        if (rc != 0) {
            char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 64];
            char what[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
            pt_xerr_format(&xe, what, sizeof(what));
            snprintf(msg, sizeof(msg), "message %llu: not a protobuf %s: %s",
                     (unsigned long long)b->msgs_in + 1, b->method->input->full_name, what);
            bad_message(b, msg, NULL);
            return -1;
        }
        rc = pt_xbuf_append(&b->pb, b->in.data, b->in.len);
        if (rc == 0)
            rc = params_pb(b, &b->pb, &errs);
    } else {
        rc = pt_httprule_transcode_request(b->conf->table, &b->match, b->in.data, b->in.len,
                                           "text/plain; charset=utf-8", req->query.base,
                                           req->query.len, &b->conf->jopts, &b->pb, &errs);
        if (rc == 0)
            rc = pt__grpc_bind_headers(req, b->conf, b->method, &b->pb, &errs);
    }
    if (rc == PT_XERR_NOMEM)
        goto nomem;
    if (rc != 0) {
        char msg[96];
        if (errs.cnt != 0)
            snprintf(msg, sizeof(msg), "message %llu is invalid", (unsigned long long)b->msgs_in + 1);
        else
            snprintf(msg, sizeof(msg), "message %llu cannot be converted (%s)",
                     (unsigned long long)b->msgs_in + 1, pt_xerr_name(rc));
        bad_message(b, msg, errs.cnt != 0 ? &errs : NULL);
        return -1;
    }
    return 0;
nomem:
    stop_call(b);
    close_with(b, PT_WS_CLOSE_INTERNAL, NULL, 0, "out of memory");
    return -1;
}

static int ws_msg_start(void *ud, pt_ws_opcode_t op)
{
    bridge_t *b = ud;
    b->in_op = op;
    pt_xbuf_reset(&b->in);
    return PT_WS_GO;
}

static int ws_msg_data(void *ud, const uint8_t *data, size_t len)
{
    bridge_t *b = ud;
    if (b->ending)
        return PT_WS_GO; /* our close is out: what the client still sends is dropped */
    if (pt_xbuf_append(&b->in, data, len) != 0) {
        pt_handler_enter(b->req);
        stop_call(b);
        close_with(b, PT_WS_CLOSE_INTERNAL, NULL, 0, "out of memory");
        pt_handler_leave(b->req);
    }
    return PT_WS_GO;
}

static int ws_msg_end(void *ud)
{
    bridge_t *b = ud;
    if (b->ending)
        return PT_WS_GO;
    pt_handler_enter(b->req);
    int r = PT_WS_GO;
    if (!b->takes_msgs && !b->takes_first) {
        bad_message(b,
                    b->binding->body_kind == PT_HTTPBODY_NONE
                        ? "this method takes its request from the path and query: no message "
                          "may be sent"
                        : "this method takes one request message: no more may be sent",
                    NULL);
    } else if (convert_message(b) == 0) {
        b->msgs_in++;
        b->pending = true;
        if (!b->send_busy)
            send_pending(b);
        if (b->pending) {
            b->in_paused = true; /* on_sent sends it and resumes reading */
            r = PT_WS_PAUSE;
        }
    }
    pt_handler_leave(b->req);
    return r;
}

static int ws_control(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len)
{
    bridge_t *b = ud;
    if (op == PT_WS_OP_PING)
        pt_ws_send_control(b->ws, PT_WS_OP_PONG, data, len);
    return PT_WS_GO;
}

static void ws_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    (void)reason;
    (void)len;
    bridge_t *b = ud;
    pt_handler_enter(b->req);
    b->client_closed = true;
    if (b->ending) {
        /* the answer to our close: the endpoint ends now */
    } else if (b->call != NULL && b->takes_msgs &&
               (code == PT_WS_CLOSE_NORMAL || code == PT_WS_CLOSE_NO_STATUS)) {
        /* Half-close: the call finishes and its last responses still go out
         * before our close (on_done). */
        b->half_close_wanted = true;
        half_close(b);
    } else {
        /* A server stream has nothing to half-close, and another code means
         * the client gives up: cancel and answer the close. */
        stop_call(b);
        b->ending = true;
        pt_ws_close(b->ws, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    }
    pt_handler_leave(b->req);
}

static size_t ws_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    bridge_t *b = ud;
    if (pt_handler_finished(b->req))
        return 0;
    return pt__req_body_read(b->req, (char *)buf, max, eof);
}

static void ws_write(void *ud, const uint8_t *data, size_t len)
{
    bridge_t *b = ud;
    pt_req_t *req = b->req;
    if (pt_handler_finished(req) || pt_handler_gone(req))
        return;
    pt_handler_enter(req);
    pt__resp_body(req, data, len, false);
    pt_handler_leave(req);
}

static void ws_end(void *ud, pt_ws_end_t why)
{
    bridge_t *b = ud;
    pt_req_t *req = b->req;
    pt_handler_enter(req);
    b->ws_ended = true;
    b->ending = true;
    if (b->call != NULL) {
        /* the client went away, broke the protocol or idled: the call is cancelled */
        if (req->fail_reason == NULL)
            req->fail_reason = why == PT_WS_END_EOF ? "WebSocket client went away"
                                                    : pt_ws_end_name(why);
        stop_call(b);
    }
    if (!pt_handler_gone(req))
        pt__resp_body(req, NULL, 0, true);
    pt_handler_finish(b->req);
    pt_handler_leave(req);
}

static const pt_ws_cbs_t ws_cbs = {
    .read = ws_read,
    .write = ws_write,
    .on_msg_start = ws_msg_start,
    .on_msg_data = ws_msg_data,
    .on_msg_end = ws_msg_end,
    .on_control = ws_control,
    .on_close = ws_close,
    .on_end = ws_end,
};

/* Reads the client while nothing waits for the call. */
static void pump_client(bridge_t *b)
{
    if (!b->ws_ended && !pt_handler_finished(b->req) && !b->in_paused)
        pt_ws_on_readable(b->ws);
}

/*
 * Answers the handshake (101, or 200 over HTTP/2) and creates the endpoint,
 * at the call's first event. Returns false when the session cannot go on
 * (the stream could not become a tunnel: answered with an error, finished).
 */
static bool open_ws(bridge_t *b)
{
    if (b->ws != NULL)
        return true;
    if (pt_handler_finished(b->req))
        return false;
    pt_req_t *req = b->req;
    const pt_grpc_conf_t *conf = b->conf;
    uint64_t idle = conf->ws.tunnel_idle_ms ? conf->ws.tunnel_idle_ms
                                            : req->config->timeouts.tunnel_idle_ms;
    if (req->aborted || pt_ws_hs_accept(req, &b->hs, b->proto, idle) != 0) {
        stop_call(b);
        b->ending = true;
        if (!req->aborted)
            pt__resp_fail(req, PT_ERR_INVALID, "stream cannot become a WebSocket");
        pt_handler_finish(b->req);
        return false;
    }
    pt_ws_opts_t o = {
        .role = PT_WS_SERVER,
        .max_message = conf->ws.max_message,
        .ping_interval_ms = conf->ws.ping_interval_ms,
        .idle_ms = idle,
        .close_timeout_ms = conf->ws.close_timeout_ms,
        .answer_control = false, /* the close is answered by us, after the call ends */
    };
    pt_ws_t *ws = pt_ws_new(req->worker->base, &o, &ws_cbs, b);
    if (pt_ws_req_attach(req, ws) != 0) {
        stop_call(b);
        b->ending = true;
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt_handler_finish(b->req);
        return false;
    }
    b->ws = ws;
    if (b->call != NULL)
        pt_grpc_call_recv(b->call);
    pump_client(b); /* client bytes that came meanwhile (HTTP/2) */
    return !pt_handler_finished(b->req);
}

/* ---- call -> client ------------------------------------------------------------------------ */

static void request_next(bridge_t *b)
{
    if (b->call == NULL || b->ending)
        return;
    if (pt__resp_blocked(b->req)) {
        b->want_recv = true; /* on_writable resumes */
        return;
    }
    b->want_recv = false;
    pt_grpc_call_recv(b->call);
}

static void up_message(void *ud, const uint8_t *data, size_t len)
{
    bridge_t *b = ud;
    if (data == NULL || b->ending)
        return; /* end of the responses: on_done follows */
    pt_handler_enter(b->req);
    if (!open_ws(b)) {
        pt_handler_leave(b->req);
        return;
    }
    if (b->binary_out) {
        pt_ws_send_msg(b->ws, PT_WS_OP_BINARY, data, len);
    } else {
        pt_xbuf_reset(&b->out);
        pt_httprule_str_t ct = {0};
        pt_xerr_t xe;
        int rc = pt_httprule_transcode_response(b->conf->table, b->binding, data, len,
                                                &b->conf->jopts, &b->out, &ct, &xe);
        if (rc != 0) {
            /* JP-7: the backend sent something that is not its declared message */
            static const char err[] =
                "{\"code\":13,\"message\":\"upstream sent an invalid response message\"}";
            b->req->fail_reason = "upstream sent an undecodable message";
            stop_call(b);
            close_with(b, 4000 + PT_GRPC_INTERNAL, (const uint8_t *)err, sizeof(err) - 1,
                       "INTERNAL");
            pt_handler_leave(b->req);
            return;
        }
        pt_ws_send_msg(b->ws, b->binding->response_is_httpbody ? PT_WS_OP_BINARY : PT_WS_OP_TEXT,
                       b->out.data, b->out.len);
    }
    request_next(b);
    pt_handler_leave(b->req);
}

static void up_sent(void *ud, bool ok)
{
    bridge_t *b = ud;
    pt_handler_enter(b->req);
    b->send_busy = false;
    if (!open_ws(b)) {
        pt_handler_leave(b->req);
        return;
    }
    if (ok && b->call != NULL && !b->ending) {
        if (b->pending)
            send_pending(b);
        else if (b->half_close_wanted)
            half_close(b);
        if (!b->pending && b->in_paused) {
            b->in_paused = false;
            pump_client(b);
        }
    }
    pt_handler_leave(b->req);
}

static void up_done(void *ud, const pt_grpc_status_t *st)
{
    bridge_t *b = ud;
    pt_req_t *req = b->req;
    pt_handler_enter(req);
    b->call = NULL; /* freed by the upstream layer after we return */
    req->upstream_ns = pt_now_ns() - b->t0_ns;
    if (st->local != 0 && pt_status_http(st->local) >= 502)
        pt_observe_upstream_error(req->worker, b->base.cluster, st->local);
    if (b->ending || !open_ws(b)) {
        pt_handler_leave(req);
        return;
    }
    if (st->code == PT_GRPC_OK) {
        close_with(b, PT_WS_CLOSE_NORMAL, NULL, 0, NULL);
    } else {
        int code = st->code >= 1 && st->code <= 16 ? st->code : PT_GRPC_UNKNOWN;
        pt_xbuf_reset(&b->out);
        int rc;
        pt_str_t msg;
        const uint8_t *bin;
        size_t bin_len;
        bool hidden = pt_grpc_status_public(st, &msg, &bin, &bin_len);
        if (st->local != 0) {
            /* Portico ended the call (the backend went away, a reset, the
             * deadline): the status's public message; the reason is logged. */
            req->fail_status = st->local;
            req->fail_reason = st->reason;
            rc = pt_httprule_status_json(code, pt_strerror(st->local), NULL, &b->out);
        } else {
            req->fail_reason = hidden ? pt__grpc_status_log(req, st) : "upstream gRPC error status";
            rc = pt__grpc_status_json(b->conf, code, msg, bin, bin_len, &b->out);
        }
        if (rc == 0)
            close_with(b, (uint16_t)(4000 + code), b->out.data, b->out.len,
                       pt_grpc_code_name(code));
        else
            close_with(b, (uint16_t)(4000 + code), NULL, 0, pt_grpc_code_name(code));
    }
    pt_handler_leave(req);
}

static const pt_grpc_call_cbs_t call_cbs = {
    .on_message = up_message,
    .on_sent = up_sent,
    .on_done = up_done,
};

/* ---- the handler's entry points --------------------------------------------------------------- */

static void bridge_on_body(pt_req_t *req)
{
    bridge_t *b = (bridge_t *)req->handler_ctx;
    if (pt_handler_finished(b->req) || b->ws == NULL)
        return;
    pt_handler_enter(req);
    pump_client(b);
    pt_handler_leave(req);
}

static void bridge_on_writable(pt_req_t *req)
{
    bridge_t *b = (bridge_t *)req->handler_ctx;
    if (pt_handler_finished(b->req) || !b->want_recv)
        return;
    pt_handler_enter(req);
    request_next(b);
    pt_handler_leave(req);
}

/* Routes the handshake: its verb is GET (or CONNECT), the binding's may be any. */
static pt_pathmatch_status_t route(bridge_t *b, char *scratch, size_t slen)
{
    pt_req_t *req = b->req;
    pt_pathmatch_status_t ms = pt_httprule_match(b->conf->table, "GET", 3, req->path.base,
                                                 req->path.len, NULL, scratch, slen, &b->match);
    if (ms != PT_PATHMATCH_METHOD)
        return ms;
    static const struct {
        unsigned bit;
        const char *name;
    } verbs[] = {{PT_HTTP_M_POST, "POST"},
                 {PT_HTTP_M_PUT, "PUT"},
                 {PT_HTTP_M_PATCH, "PATCH"},
                 {PT_HTTP_M_DELETE, "DELETE"}};
    unsigned allowed = b->match.path.allowed;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (!(allowed & verbs[i].bit))
            continue;
        ms = pt_httprule_match(b->conf->table, verbs[i].name, strlen(verbs[i].name),
                               req->path.base, req->path.len, NULL, scratch, slen, &b->match);
        if (ms == PT_PATHMATCH_OK)
            return ms;
    }
    return PT_PATHMATCH_NOT_FOUND;
}

void pt__grpc_ws_start(pt_req_t *req, const pt_grpc_conf_t *conf)
{
    bridge_t *b = pt_arena_zalloc(req->arena, sizeof(*b));
    if (b == NULL || pt_arena_defer(req->arena, bridge_cleanup, b) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    b->base.on_body = bridge_on_body;
    b->base.on_writable = bridge_on_writable;
    b->base.cluster = pt__grpc_cluster(conf, req);
    b->req = req;
    b->conf = conf;
    pt_xbuf_init(&b->in, NULL);
    pt_xbuf_init(&b->pb, NULL);
    pt_xbuf_init(&b->out, NULL);
    req->handler_ctx = b;
    pt_handler_enter(req);
    if (pt_req_on_abort(req, on_client_abort, b) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        goto done;
    }
    pt_ws_hs_t hs;
    if (pt_ws_hs_check(req, &conf->web_origins, &hs) != 0)
        goto done; /* answered (400 / 403 / 426) */

    size_t slen = PT_PATHMATCH_SCRATCH_LEN(req->path.len);
    char *scratch = pt_arena_alloc(req->arena, slen);
    if (scratch == NULL) {
        pt__resp_fail(req, PT_ERR_URI_TOO_LONG, "path too long");
        goto done;
    }
    switch (route(b, scratch, slen)) {
    case PT_PATHMATCH_OK:
        break;
    case PT_PATHMATCH_NOT_FOUND:
    case PT_PATHMATCH_METHOD:
        reply_status(b, 404, PT_GRPC_NOT_FOUND, "no method is bound to this path", NULL);
        goto done;
    case PT_PATHMATCH_LIMIT:
        reply_status(b, 414, PT_GRPC_RESOURCE_EXHAUSTED, "path has too many segments", NULL);
        goto done;
    default:
        reply_status(b, 400, PT_GRPC_INVALID_ARGUMENT,
                     b->match.path.reason != NULL ? b->match.path.reason : "bad path", NULL);
        goto done;
    }
    b->binding = b->match.binding;
    b->method = b->binding->method;
    if (!b->method->client_streaming && !b->method->server_streaming) {
        char *m = pt_arena_printf(req->arena,
                                  "%s is a unary method: a WebSocket opens only streaming "
                                  "methods (call it over REST)",
                                  b->method->full_name);
        reply_status(b, 400, PT_GRPC_FAILED_PRECONDITION, m != NULL ? m : "unary method", NULL);
        goto done;
    }
    b->takes_msgs = b->method->client_streaming;
    b->takes_first = !b->method->client_streaming && b->binding->body_kind != PT_HTTPBODY_NONE;

    /* The path, query and header values must make a valid message on their
     * own (a 400 before the upgrade); a body-less server stream's request is
     * exactly that. */
    pt_xerrs_t *errs = pt_arena_alloc(req->arena, sizeof(*errs));
    if (errs == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        goto done;
    }
    pt_xerrs_clear(errs);
    int rc = params_pb(b, &b->pb, errs);
    if (rc == PT_XERR_NOMEM) {
        pt__resp_fail(req, PT_ERR_NOMEM, "transcoding");
        goto done;
    }
    if (rc != 0) {
        reply_status(b, 400, PT_GRPC_INVALID_ARGUMENT, NULL, errs);
        goto done;
    }
    bool first_now = !b->takes_msgs && !b->takes_first;
    if (!first_now)
        pt_xbuf_reset(&b->pb);

    pt_str_t proto = PT_STR_NULL;
    if (pt_ws_hs_offers(&hs, PT_STR(PROTO_PB))) {
        proto = PT_STR(PROTO_PB);
        b->binary_out = true;
    } else if (pt_ws_hs_offers(&hs, PT_STR(PROTO_JSON))) {
        proto = PT_STR(PROTO_JSON);
    }

    pt_header_t *md = NULL;
    size_t md_cnt = 0;
    pt_str_t bad = {0};
    int mrc = pt__grpc_request_md(req, conf, &md, &md_cnt, &bad);
    if (mrc == PT_ERR_INVALID) {
        char *m = pt_arena_printf(req->arena,
                                  "header '%.*s' cannot be sent as gRPC metadata (a tab, control "
                                  "or non-ASCII byte in its value)",
                                  (int)(bad.len > 64 ? 64 : bad.len), bad.base);
        reply_status(b, 400, PT_GRPC_INVALID_ARGUMENT, m != NULL ? m : "invalid metadata", NULL);
        goto done;
    }
    if (mrc != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
        goto done;
    }
    const char *full = b->method->full_name; /* "pkg.Svc.Method" -> "/pkg.Svc/Method" */
    size_t fl = strlen(full);
    char *path = pt_arena_alloc(req->arena, fl + 2);
    if (path == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
        goto done;
    }
    path[0] = '/';
    memcpy(path + 1, full, fl + 1);
    char *dot = strrchr(path, '.');
    if (dot != NULL)
        *dot = '/';
    /* The route's timeout would cut a healthy stream: a bridged call has its
     * own deadline (websocket.timeout), shortened by a client grpc-timeout. */
    uint64_t deadline = conf->ws.timeout_ms, client;
    pt_str_t gt = pt_headers_get(&req->headers, PT_STR("grpc-timeout"));
    bool given = gt.base != NULL && pt_grpc_timeout_parse(gt, &client) == 0 && client != 0;
    if (given && client < deadline)
        deadline = client;
    static const uint8_t empty[1];
    pt_grpc_call_req_t r = {
        .cluster = b->base.cluster,
        .arena = req->arena,
        .method = {path, fl + 1},
        .max_message = conf->max_message,
        .md = md,
        .md_cnt = md_cnt,
        .timeout_ms = deadline,
        .send_deadline = given || conf->send_deadline,
        .msg = first_now ? (b->pb.len != 0 ? b->pb.data : empty) : NULL,
        .msg_len = first_now ? b->pb.len : 0,
        .close = first_now,
        .trace = req->trace,
    };
    b->t0_ns = pt_now_ns();
    rc = pt_grpc_call_start(req->worker, &r, &call_cbs, b, &b->call);
    if (rc != 0) {
        b->call = NULL;
        reply_status(b, pt_status_http(rc), pt_status_grpc(rc),
                     rc == PT_ERR_UNAVAILABLE ? "no upstream available" : "upstream call failed",
                     NULL);
        goto done;
    }
    pt_xbuf_reset(&b->pb);
    b->send_busy = true; /* the start (and first message): on_sent follows */
    b->half_closed = first_now;
    const char *ep = pt_grpc_call_endpoint(b->call);
    if (ep != NULL) {
        req->upstream_addr = ep;
        req->upstream_cluster = b->base.cluster->name;
    }

    b->hs = hs;
    b->proto = proto;
    b->in.limit = conf->ws.max_message + 1;
    /* The upgrade is answered from the call's first event (open()), not here:
     * the HTTP/1.1 codec hands a connection over only once the request was
     * received whole, which it marks after start() returns. */
    pt_handler_leave(req);
    return;
done:
    pt_handler_finish(b->req);
    pt_handler_leave(req);
}
