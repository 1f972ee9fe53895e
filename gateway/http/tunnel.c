/*
 * tunnel.c -- a request turned into a two-way byte stream (request.h,
 * "Tunnels"): HTTP/1.1 Upgrade answered with 101, HTTP/2 extended CONNECT
 * (RFC 8441) answered with 200.
 *
 * Kept apart from request.c on purpose: a tunnel is an ordinary request whose
 * body never ends on its own and whose response body is the other direction,
 * so the lifecycle (holds, abort hooks, log phase) is request.c's unchanged.
 * What is specific lives here: the switch (the codec's `tunnel` op, then the
 * head), the idle timer, the session gauges, and the WebSocket key helpers
 * the proxy needs to translate an RFC 8441 handshake for an HTTP/1.1
 * upstream.
 *
 * Idle detection costs nothing per byte: the timer samples the request's
 * byte counters (body_received, bytes_out) every quarter of the idle time and
 * ends the session when neither moved for the whole idle time. A session can
 * therefore live up to a quarter longer than `idle_ms`, never shorter.
 */
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/observe.h"
#include "core/config.h"
#include "core/request.h"
#include "portico/transcoder/wkt.h"

typedef struct tunnel {
    pt_req_t *req;
    struct event *timer;
    uint64_t idle_ms;
    uint64_t last_ms;             /* last time a byte moved either way (monotonic) */
    uint64_t seen_in, seen_out;   /* the byte counters at the last sample */
    bool opened;                  /* counted in the session gauge */
} tunnel_t;

static uint64_t sample_period(uint64_t idle_ms)
{
    uint64_t p = idle_ms / 4;
    return p < 10 ? (idle_ms < 10 ? idle_ms : 10) : p;
}

static void arm(tunnel_t *t, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->timer, &tv);
}

static void on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tunnel_t *t = arg;
    pt_req_t *req = t->req;
    uint64_t now = pt_now_ms();
    if (req->body_received != t->seen_in || req->bytes_out != t->seen_out) {
        t->seen_in = req->body_received;
        t->seen_out = req->bytes_out;
        t->last_ms = now;
    }
    if (pt__resp_ended(req) || req->aborted)
        return; /* over already; the request is being torn down by its holders */
    if (now - t->last_ms < t->idle_ms) {
        uint64_t left = t->idle_ms - (now - t->last_ms);
        uint64_t p = sample_period(t->idle_ms);
        arm(t, left < p ? left : p);
        return;
    }
    /*
     * Idle: the client side is reset (HTTP/1: the connection closes; HTTP/2:
     * RST_STREAM) and the handler is told through its abort hooks, so it
     * cancels its upstream call. The bracket keeps `req` alive until we are done.
     */
    pt__req_enter(req);
    pt__resp_fail(req, PT_ERR_TIMEOUT, "tunnel idle timeout");
    pt__req_cancel_handler(req);
    pt__req_leave(req);
}

/* Runs when the request is finalised (its arena is destroyed). */
static void tunnel_dispose(void *data)
{
    tunnel_t *t = data;
    event_free(t->timer);
    t->timer = NULL;
    if (t->opened)
        pt_observe_tunnel_close(t->req->worker);
}

int pt__req_tunnel_open(pt_req_t *req, uint64_t idle_ms)
{
    if (req->upgrade.len == 0 || pt__resp_started(req) || req->aborted || req->is_tunnel ||
        req->ops->tunnel == NULL)
        return PT_ERR_INVALID;
    tunnel_t *t = pt_arena_zalloc(req->arena, sizeof(*t));
    if (t == NULL)
        return PT_ERR_LIMIT;
    t->timer = evtimer_new(req->worker->base, on_idle_timer, t);
    if (t->timer == NULL) {
        fputs("portico: out of memory\n", stderr);
        abort();
    }
    if (pt_arena_defer(req->arena, tunnel_dispose, t) != 0) {
        event_free(t->timer);
        return PT_ERR_LIMIT;
    }
    /* From here on tunnel_dispose owns the timer. */
    t->req = req;
    if (req->ops->tunnel(req) != 0)
        return PT_ERR_INVALID;
    t->opened = true;
    pt_observe_tunnel_open(req->worker);
    t->idle_ms = idle_ms != 0 ? idle_ms : req->config->timeouts.tunnel_idle_ms;
    if (t->idle_ms == 0)
        t->idle_ms = 1;
    t->last_ms = pt_now_ms();
    t->seen_in = req->body_received;
    t->seen_out = req->bytes_out;
    req->tunnel = t;
    req->is_tunnel = true;
    /* RFC 9110 §15.2.2 for HTTP/1.1; RFC 8441 §5: any 2xx opens it over HTTP/2. */
    req->resp_status = req->version == 20 ? 200 : 101;
    req->resp_content_length = -1;
    arm(t, sample_period(t->idle_ms));
    pt__resp_head(req);
    return 0;
}

/* ---- WebSocket handshake keys (RFC 6455 §4) ------------------------------------- */

void pt__tunnel_ws_accept(pt_str_t key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    EVP_MD_CTX *cx = EVP_MD_CTX_new();
    if (cx == NULL || EVP_DigestInit_ex(cx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(cx, key.base, key.len) != 1 ||
        EVP_DigestUpdate(cx, guid, sizeof(guid) - 1) != 1 ||
        EVP_DigestFinal_ex(cx, md, &mdlen) != 1 || mdlen != SHA_DIGEST_LENGTH) {
        fputs("portico: SHA-1 unavailable\n", stderr);
        abort();
    }
    EVP_MD_CTX_free(cx);
    out[pt_base64_encode_to(out, md, SHA_DIGEST_LENGTH)] = '\0'; /* 28 chars + NUL */
}

void pt__tunnel_ws_key(char out[25])
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        /* The key is a nonce against caching intermediaries, not a secret. */
        uint64_t a = pt_now_ns(), b = (uint64_t)(uintptr_t)out;
        memcpy(nonce, &a, 8);
        memcpy(nonce + 8, &b, 8);
    }
    out[pt_base64_encode_to(out, nonce, sizeof(nonce))] = '\0'; /* 24 chars + NUL */
}
