/*
 * ws_proxy.c -- the WebSocket relay of ws_proxy.h: two http/ws.h endpoints
 * joined frame by frame.
 *
 * Re-entrancy: feeding one endpoint writes into the other, and a write can
 * make the upstream call pull bytes at once (pt_upcall_body_ready), which
 * may drain below the high-water mark and want to resume reading the very
 * endpoint that is running. An endpoint is never entered twice: run_c/run_u
 * note the wish (c_again/u_again) and the outer call loops.
 *
 * Lifetime: the relay lives in the request's arena; the endpoints are freed
 * by arena cleanups. Every callback is bracketed with pt__req_enter/leave so
 * the request (and this struct) outlive a callback in which the client goes
 * away, and after pt_wsp_abort() nothing is relayed any more.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/overload.h"
#include "core/xalloc.h"
#include "handlers/ws_proxy.h"
#include "http/h1.h"
#include "http/ws.h"
#include "net/conn.h"
#include "net/sys.h"

/* Bytes gathered for the client during a run before they go to the codec. */
#define C_OUT_CAP 8192u

/* The client's queue is asked (pt__resp_blocked) after this many bytes relayed
 * to it within a delivery, and after every delivery (pt_wsp_up_data). */
#define C_CHECK_EVERY 16384u

/*
 * A byte queue without per-write allocations: one block, grown by doubling
 * (its size is bounded by the high-water mark plus one chunk and a few
 * control frames), emptied by the reader from the front.
 */
typedef struct bq {
    size_t len, off;             /* len first: the one field a relayed message reads */
    uint8_t *p;
    size_t cap;
} bq_t;

static void bq_add(bq_t *q, const uint8_t *d, size_t n)
{
    if (n == 0)
        return;
    if (q->off + q->len + n > q->cap) {
        if (q->off != 0) {
            memmove(q->p, q->p + q->off, q->len);
            q->off = 0;
        }
        if (q->len + n > q->cap) {
            size_t cap = q->cap != 0 ? q->cap : 4096;
            while (cap < q->len + n)
                cap *= 2;
            q->p = pt_xrealloc(q->p, cap);
            q->cap = cap;
        }
    }
    memcpy(q->p + q->off + q->len, d, n);
    q->len += n;
}

static void bq_drop(bq_t *q, size_t n)
{
    q->len -= n;
    q->off = q->len == 0 ? 0 : q->off + n;
}

static size_t bq_take(bq_t *q, uint8_t *buf, size_t max)
{
    size_t n = q->len < max ? q->len : max;
    memcpy(buf, q->p + q->off, n);
    bq_drop(q, n);
    return n;
}

/* Moves what an evbuffer holds to the end of a queue. */
static void bq_add_evbuffer(bq_t *q, struct evbuffer *b)
{
    size_t n = b != NULL ? evbuffer_get_length(b) : 0;
    if (n == 0)
        return;
    while (n != 0) {
        uint8_t tmp[4096];
        int k = evbuffer_remove(b, tmp, n < sizeof(tmp) ? n : sizeof(tmp));
        if (k <= 0)
            break;
        bq_add(q, tmp, (size_t)k);
        n -= (size_t)k;
    }
}

/*
 * One socket of the pump (see "The pump" below): its read and write events,
 * the bytes handed over with it (read before the socket) and the bytes for it
 * not written yet.
 */
typedef struct side {
    /* What a relayed message reads and writes on both sockets first (one
     * cache line: see struct pt_ws in http/ws.c), the events after them. */
    int fd;
    bool rev_on, wev_on;
    bool eof;                    /* the read side ended (EOF, reset) or a write failed */
    bool failed;                 /* a write failed: nothing more goes out */
    bool shut_wr;                /* half-close once `out` is written */
    bool gone;                   /* handed back (client) or given up (upstream): hands off */
    bool acct;                   /* `out` counts as bytes buffered for clients (core/overload.h) */
    bool recvd;                  /* read once in this event: the endpoint waits for the next */
    bool more;                   /* not known drained: the socket may hold bytes (edge-triggered) */
    bool hup;                    /* the peer's FIN came (EV_CLOSED): read on until recv says 0 */
    bq_t in;
    bq_t out;
    uint64_t send_ms;            /* no write progress for this long: failed (0: never) */
    struct event *failed_ev;     /* the pump's event that runs a leg whose socket failed */
    struct event rev;            /* EV_READ|EV_CLOSED|EV_PERSIST|EV_ET, on while the leg wants input */
    struct event wev;            /* EV_WRITE|EV_PERSIST|EV_ET, added while a write waits */
} side_t;

static void side_out_add(side_t *s, const uint8_t *d, size_t n)
{
    bq_add(&s->out, d, n);
    if (s->acct)
        pt_overload_buffered_add((int64_t)n);
}

static void side_out_drop(side_t *s, size_t n)
{
    bq_drop(&s->out, n);
    if (s->acct)
        pt_overload_buffered_add(-(int64_t)n);
}

static void side_out_clear(side_t *s)
{
    side_out_drop(s, s->out.len);
}

struct pt_wsp {
    /* The pump's fields first (see struct side) */
    pt_req_t *req;
    pt_ws_t *c;                  /* facing the client (server role), attached to req */
    pt_ws_t *u;                  /* facing the upstream (client role) */
    bool dead;                   /* aborted or done: relay nothing */
    bool c_ended, u_ended;
    bool pump;                   /* the data phase runs on the two sockets (pt_wsp_pump) */
    side_t pc, pu;               /* the pump's client and upstream sockets */

    const pt_wsp_io_t *io;
    void *ud;
    bq_t up_in;                  /* upstream bytes not yet parsed */
    const char *feed;            /* on_data's bytes, read in place while up_in is empty */
    size_t feed_len;
    bq_t up_out;                 /* framed bytes for the upstream, not yet pulled */
    size_t c_out_len;            /* framed bytes for the client, gathered during a run */
    size_t c_unchecked;          /* bytes to the client since pt__resp_blocked was asked */
    bool kick;                   /* up_out grew during a run: wake the upstream at its end */
    bool up_eof;                 /* the upstream connection ended */
    bool up_in_paused;           /* we told the call to stop delivering */
    bool up_shut;                /* nothing more goes upstream: read_body reports eof */
    pt_ws_end_t c_why, u_why;
    bool resp_ended;             /* the client stream was ended */
    bool c_running, c_again, u_running, u_again;
    bool u_fed_pause;            /* u_raw asked U to pause during pt_ws_feed */
    struct event failed_ev;      /* runs the legs whose writes failed (side_failed) */
    pt_conn_t *conn;             /* the client connection lent to the pump */
    size_t c_limit;              /* bytes queued for the client above which U pauses */
    uint8_t c_out[C_OUT_CAP];
};

static void run_u(pt_wsp_t *p);
static void side_flush(pt_wsp_t *p, side_t *s);
static void pump_release_client(pt_wsp_t *p);

/*
 * Batching: a relayed frame is written as a header and then its payload, and
 * pings or closes may follow. Writes to the client gather in c_out and go to
 * the codec in one pt__resp_body per run; the upstream is woken once per run
 * (its client sends at once when woken). Outside a run (timers) both happen
 * right away.
 */
static bool in_run(const pt_wsp_t *p)
{
    return p->c_running || p->u_running;
}

/* Bytes to the client's codec now (gathered ones or one large write). */
static void to_client(pt_wsp_t *p, const uint8_t *d, size_t n)
{
    if (p->dead || p->resp_ended || pt__resp_ended(p->req) || p->req->aborted)
        return;
    pt__req_enter(p->req);
    pt__resp_body(p->req, (const char *)d, n, false);
    pt__req_leave(p->req);
}

static void flush_client(pt_wsp_t *p)
{
    if (p->pump) {
        side_flush(p, &p->pc);
        return;
    }
    size_t n = p->c_out_len;
    if (n == 0)
        return;
    p->c_out_len = 0;
    to_client(p, p->c_out, n);
}

/* Framed bytes for the upstream go out now (the call pulls them, or the pump writes them). */
static void up_kick_now(pt_wsp_t *p)
{
    p->kick = false;
    if (p->pump) {
        p->pu.shut_wr = p->up_shut;
        side_flush(p, &p->pu);
    } else if (!p->dead) {
        p->io->up_kick(p->ud);
    }
}

static void kick_upstream(pt_wsp_t *p)
{
    if (in_run(p)) {
        p->kick = true;
        return;
    }
    up_kick_now(p);
}

/* The end of a run: what was gathered goes out. */
static void run_done(pt_wsp_t *p)
{
    if (in_run(p))
        return;
    flush_client(p);
    if (p->kick && !p->dead)
        up_kick_now(p);
}

static void run_c(pt_wsp_t *p)
{
    if (p->c_running) {
        p->c_again = true;
        return;
    }
    p->c_running = true;
    do {
        p->c_again = false;
        if (!p->dead && !p->c_ended)
            pt_ws_on_readable(p->c);
    } while (p->c_again && !p->dead && !p->c_ended);
    p->c_running = false;
    run_done(p);
}

static void run_u(pt_wsp_t *p)
{
    if (p->u_running) {
        p->u_again = true;
        return;
    }
    p->u_running = true;
    do {
        p->u_again = false;
        if (!p->dead && !p->u_ended)
            pt_ws_on_readable(p->u);
    } while (p->u_again && !p->dead && !p->u_ended);
    p->u_running = false;
    run_done(p);
    /* Delivery was paused because up_in was full; it drained. */
    if (p->up_in_paused && !p->dead && p->up_in.len < PT_WSP_HIGH_WATER &&
        !pt__resp_blocked(p->req)) {
        p->up_in_paused = false;
        p->io->up_resume(p->ud);
    }
}

static bool up_full(const pt_wsp_t *p)
{
    return (p->pump ? p->pu.out.len : p->up_out.len) >= PT_WSP_HIGH_WATER;
}

static void end_client_stream(pt_wsp_t *p)
{
    flush_client(p);
    pump_release_client(p);
    if (p->resp_ended || pt__resp_ended(p->req) || p->req->aborted)
        return;
    p->resp_ended = true;
    pt__resp_body(p->req, NULL, 0, true);
}

static void pump_release_upstream(pt_wsp_t *p);

static void maybe_done(pt_wsp_t *p)
{
    if (p->dead || !p->c_ended || !p->u_ended)
        return;
    /* Bytes for the upstream a run gathered (the answer to its close, say)
     * go out before the call is stopped: run_done would not send them once
     * the relay is dead. */
    if (p->kick)
        up_kick_now(p);
    p->dead = true;
    end_client_stream(p);
    pump_release_upstream(p); /* before done() cancels the call, which closes its socket */
    p->io->done(p->ud);
}

/* The code and reason the other leg gets when one leg ended without a relayed close. */
static void close_other(pt_ws_t *other, pt_ws_end_t why, bool from_client)
{
    char reason[64];
    int n = snprintf(reason, sizeof(reason), "%s %s", from_client ? "client" : "upstream",
                     why == PT_WS_END_EOF ? "went away" : pt_ws_end_name(why));
    pt_ws_close(other, PT_WS_CLOSE_GOING_AWAY, reason, n > 0 ? (size_t)n : 0);
}

/* ---- the client leg (server role) ---------------------------------------------------- */

static size_t side_read(pt_wsp_t *p, side_t *s, uint8_t *buf, size_t max, bool *eof);

static size_t c_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return 0;
    pt_req_t *req = p->req;
    if (p->pump) {
        size_t n = side_read(p, &p->pc, buf, max, eof);
        req->body_received += n; /* the tunnel's byte clock and the log see them */
        return n;
    }
    if (req->body_offer_len == 0 && evbuffer_get_length(req->body) == 0) {
        /* drained (the endpoint asks once more after each read): what
         * pt__req_body_read would answer, without its buffer calls */
        *eof = req->body_out_done;
        return 0;
    }
    size_t n = pt__req_body_read(req, (char *)buf, max, eof);
    /* a short read is all there is (short_read_drains): the end, if it came
     * with the last bytes (lent ones report none), is told with them */
    if (n < max && !*eof && req->body_out_done)
        *eof = req->body_offer_len == 0 && evbuffer_get_length(req->body) == 0;
    return n;
}

static void c_write(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->resp_ended)
        return;
    if (p->pump) {
        if (p->pc.gone || p->pc.failed)
            return;
        side_out_add(&p->pc, data, len);
        p->req->bytes_out += len;
        if (!in_run(p))
            side_flush(p, &p->pc);
        return;
    }
    p->c_unchecked += len;
    if (p->c_out_len + len > sizeof(p->c_out))
        flush_client(p);
    if (len > sizeof(p->c_out)) {
        to_client(p, data, len);
        return;
    }
    memcpy(p->c_out + p->c_out_len, data, len);
    p->c_out_len += len;
    if (!in_run(p))
        flush_client(p);
}

/* The client side is full: what we gathered counts as well. Asked once per
 * C_CHECK_EVERY bytes (the codec's queue is several calls deep); between two
 * checks the client side holds at most that much more than
 * limits.max_response_buffer. */
static bool client_full(pt_wsp_t *p)
{
    if (p->pump)
        return p->pc.out.len > p->c_limit;
    if (p->c_out_len >= sizeof(p->c_out) / 2)
        flush_client(p);
    if (p->c_unchecked < C_CHECK_EVERY)
        return false;
    p->c_unchecked = 0;
    return !p->dead && pt__resp_blocked(p->req);
}

static int c_frame_start(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO; /* the upstream leg is over: what the client still sends is dropped */
    pt__req_enter(p->req);
    pt_ws_send_frame_begin(p->u, op, len, fin);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int c_data(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_data(p->u, data, len);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

/* A run of whole client frames, checked and re-masked by C: to the upstream as they are. */
static int c_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_raw(p->u, frames, len, info);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int c_control(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_control(p->u, op, data, len);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static void c_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    if (!p->u_ended) {
        pt_ws_close(p->u, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
        kick_upstream(p);
    } else {
        /* the upstream is gone already: answer the client ourselves */
        pt_ws_close(p->c, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    }
    pt__req_leave(p->req);
}

static void c_end(void *ud, pt_ws_end_t why)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    p->c_ended = true;
    p->c_why = why;
    /* Our close (if any) is in the client's output: end the stream after it. */
    end_client_stream(p);
    if (!p->u_ended && !p->dead && pt_ws_sending_frame(p->u)) {
        /* Half a frame went upstream: no close frame can follow it. The
         * upstream connection is closed instead (it sees 1006). */
        p->u_ended = true;
        p->u_why = PT_WS_END_EOF;
        p->up_shut = true;
    }
    if (!p->u_ended && !p->dead) {
        if (why != PT_WS_END_CLOSED)
            close_other(p->u, why, true);
        /* The client is gone: the upstream leg does not wait for an answer to
         * our close (nobody would read it, and a drain would find a request
         * held by nothing but this wait). What is queued goes out now with a
         * half-close after it, then the call ends. */
        p->up_shut = true;
        up_kick_now(p);
        p->u_ended = true;
        p->u_why = why;
    }
    maybe_done(p);
    pt__req_leave(p->req);
}

/* ---- the upstream leg (client role) ----------------------------------------------------- */

static size_t u_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    pt_wsp_t *p = ud;
    if (p->pump)
        return p->dead ? 0 : side_read(p, &p->pu, buf, max, eof);
    /* all there is up to max (a short read means drained: short_read_drains) */
    size_t n = p->up_in.len != 0 ? bq_take(&p->up_in, buf, max) : 0;
    if (n < max && p->feed_len != 0) {
        size_t k = p->feed_len < max - n ? p->feed_len : max - n;
        memcpy(buf + n, p->feed, k);
        p->feed += k;
        p->feed_len -= k;
        n += k;
    }
    *eof = p->up_eof && p->up_in.len == 0 && p->feed_len == 0;
    return n;
}

static void u_write(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->up_shut)
        return;
    if (p->pump) {
        if (p->pu.failed || p->pu.gone)
            return;
        side_out_add(&p->pu, data, len);
        if (!in_run(p)) /* a timer's frame (keepalive ping, close): out now */
            side_flush(p, &p->pu);
        return;
    }
    bq_add(&p->up_out, data, len);
    if (!in_run(p)) /* a timer's frame: the call pulls it now, not with the next client bytes */
        up_kick_now(p);
}

static int u_frame_start(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_begin(p->c, op, len, fin);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int u_data(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_data(p->c, data, len);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

/* A run of whole upstream frames, checked by U: to the client as they are. */
static int u_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_raw(p->c, frames, len, info);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    p->u_fed_pause = r == PT_WS_PAUSE;
    pt__req_leave(p->req);
    return r;
}

static int u_control(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_control(p->c, op, data, len);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static void u_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    if (!p->c_ended)
        pt_ws_close(p->c, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    else
        pt_ws_close(p->u, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    kick_upstream(p);
    pt__req_leave(p->req);
}

static void u_end(void *ud, pt_ws_end_t why)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    p->u_ended = true;
    p->u_why = why;
    p->up_shut = true; /* after our close (already queued) nothing more goes up */
    kick_upstream(p);
    if (!p->c_ended && !p->dead && pt_ws_sending_frame(p->c)) {
        /* Half a frame went to the client: reset its stream instead of a close. */
        p->c_ended = true;
        p->c_why = PT_WS_END_EOF;
        p->resp_ended = true;
        pump_release_client(p); /* the codec resets the stream on its own socket */
        pt__resp_fail(p->req, PT_ERR_UPSTREAM, "upstream websocket ended mid-frame");
    }
    if (!p->c_ended && !p->dead && why != PT_WS_END_CLOSED)
        close_other(p->c, why, false);
    maybe_done(p);
    pt__req_leave(p->req);
}

/* ---- the relay ---------------------------------------------------------------------------- */

static const pt_ws_cbs_t c_cbs = {
    .read = c_read,
    .write = c_write,
    .on_frame_start = c_frame_start,
    .on_msg_data = c_data,
    .on_control = c_control,
    .on_close = c_close,
    .on_end = c_end,
    .on_raw = c_raw,
};

static const pt_ws_cbs_t u_cbs = {
    .read = u_read,
    .write = u_write,
    .on_frame_start = u_frame_start,
    .on_msg_data = u_data,
    .on_control = u_control,
    .on_close = u_close,
    .on_end = u_end,
    .on_raw = u_raw,
};

static void side_stop(side_t *s);

static void wsp_dispose(void *data)
{
    pt_wsp_t *p = data;
    p->dead = true;
    if (p->pump) {
        side_stop(&p->pc);
        side_stop(&p->pu);
        event_del(&p->failed_ev);
        side_out_clear(&p->pc);
        side_out_clear(&p->pu);
        free(p->pc.in.p);
        free(p->pc.out.p);
        free(p->pu.in.p);
        free(p->pu.out.p);
        p->pc.in.p = p->pc.out.p = p->pu.in.p = p->pu.out.p = NULL;
    }
    pt_ws_free(p->u);
    p->u = NULL;
    free(p->up_in.p);
    p->up_in.p = NULL;
    free(p->up_out.p);
    p->up_out.p = NULL;
}

pt_wsp_t *pt_wsp_open(pt_req_t *req, const pt_wsp_conf_t *conf, const pt_wsp_io_t *io, void *ud)
{
    pt_wsp_t *p = pt_arena_zalloc(req->arena, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->req = req;
    p->io = io;
    p->ud = ud;
    pt_ws_opts_t o = {
        .role = PT_WS_SERVER,
        .max_message = conf->max_message,
        .ping_interval_ms = conf->ping_interval_ms,
        .idle_ms = conf->idle_ms,
        .close_timeout_ms = conf->close_timeout_ms,
        .answer_control = false,
        .short_read_drains = true, /* c_read and u_read hand over all there is */
    };
    p->c = pt_ws_new(req->worker->base, &o, &c_cbs, p);
    if (pt_ws_req_attach(req, p->c) != 0)
        return NULL;
    o.role = PT_WS_CLIENT;
    o.idle_ms = 0; /* one idle clock per session: the client leg's sees data both ways */
    p->u = pt_ws_new(req->worker->base, &o, &u_cbs, p);
    if (pt_arena_defer(req->arena, wsp_dispose, p) != 0) {
        pt_ws_free(p->u);
        p->dead = true;
        return NULL;
    }
    return p;
}

size_t pt_wsp_up_read(pt_wsp_t *p, char *buf, size_t max, bool *eof)
{
    *eof = false;
    size_t have = p->up_out.len;
    if (have == 0) {
        *eof = p->up_shut;
        return 0;
    }
    size_t n = bq_take(&p->up_out, (uint8_t *)buf, max);
    /* Drained below the mark: the client may be read again. What that
     * framed joins this read (the call takes a short read as all there is). */
    if (have >= PT_WSP_HIGH_WATER && have - n < PT_WSP_HIGH_WATER && !p->dead) {
        run_c(p);
        if (n < max && p->up_out.len != 0)
            n += bq_take(&p->up_out, (uint8_t *)buf + n, max - n);
    }
    return n;
}

bool pt_wsp_up_data(pt_wsp_t *p, const char *data, size_t len)
{
    if (p->dead)
        return false;
    /* Whole frames go to the client straight from the call's buffer when U
     * has nothing pending (pt_ws_feed); the rest is parsed through the
     * window as usual, what the parser did not take kept in up_in. */
    if (p->up_in.len == 0 && !p->u_running && !p->u_ended) {
        p->u_running = true;
        p->u_fed_pause = false;
        size_t k = pt_ws_feed(p->u, (const uint8_t *)data, len);
        p->u_running = false;
        data += k;
        len -= k;
        if (!p->dead && !p->u_again && (len == 0 || p->u_fed_pause)) {
            /* all taken, or the client side is full: the rest waits in up_in */
            bq_add(&p->up_in, (const uint8_t *)data, len);
            run_done(p);
            goto check;
        }
    }
    if (p->up_in.len == 0) {
        p->feed = data;
        p->feed_len = len;
    } else {
        bq_add(&p->up_in, (const uint8_t *)data, len);
    }
    run_u(p);
    if (p->feed_len != 0 && !p->dead)
        bq_add(&p->up_in, (const uint8_t *)p->feed, p->feed_len);
    p->feed = NULL;
    p->feed_len = 0;
check:
    if (p->dead)
        return false;
    p->c_unchecked = 0;
    if (p->up_in.len >= PT_WSP_HIGH_WATER || pt__resp_blocked(p->req)) {
        p->up_in_paused = true;
        return false;
    }
    return true;
}

void pt_wsp_up_end(pt_wsp_t *p)
{
    p->up_eof = true;
    if (p->dead)
        return;
    /* U reaches the end of its input once it relayed what it still has (it
     * may be paused on a full client until on_writable). */
    run_u(p);
}

void pt_wsp_client_readable(pt_wsp_t *p)
{
    if (!p->dead && !p->pump)
        run_c(p);
}

void pt_wsp_client_writable(pt_wsp_t *p)
{
    if (p->dead || p->pump)
        return;
    run_u(p);
    if (!p->dead && p->up_in_paused && p->up_in.len < PT_WSP_HIGH_WATER &&
        !pt__resp_blocked(p->req)) {
        p->up_in_paused = false;
        p->io->up_resume(p->ud);
    }
}

void pt_wsp_abort(pt_wsp_t *p)
{
    p->dead = true;
    if (p->pump) {
        /* the client's stream is being torn down: its connection gets its
         * socket back (nothing more of ours goes out), and the upstream's
         * is left to the call's cancel */
        side_out_clear(&p->pc);
        pump_release_client(p);
        pump_release_upstream(p);
    }
}

/* ---- the pump ---------------------------------------------------------------------------
 *
 * The data phase of a session whose two legs are plain TCP -- an HTTP/1.1
 * client connection and the upstream call's tunnel -- runs on the two sockets
 * directly, the way a proxy's upgraded connection handler would. A
 * readiness is one recv into the stack; the whole data frames at its front
 * that pass every check go to the other socket with one send (pt_ws_relay:
 * checked, re-masked and counted by the endpoints, no callback); whatever is
 * left -- a partial frame, control frames, a frame a check refuses, the end
 * of the stream -- is queued for the leg's endpoint, which reads it before
 * its socket (side_read) and works as on the general path, its writes for
 * the other leg queued and written once per run. Each socket has one read
 * event (on while its leg may read: the other socket's queue is under its
 * mark) and one write event (only while a write waits). Nothing of the
 * HTTP/1.1 codec, the request's body queue or the upstream call runs per
 * message; the endpoints, and so every check, timer and counter, are the
 * general path's own.
 *
 * The connection and the call lend their sockets (pt_conn_lend,
 * pt_upcall_tunnel_lend) with the bytes they still hold: the 101 head not
 * yet written goes out first, client or upstream bytes read with the heads
 * are read by the endpoints before their sockets. The client's socket goes
 * back to its connection (pt_conn_unlend, with the bytes not yet written)
 * when the client leg ends, before the response ends, so the codec closes it
 * as usual; the upstream's stays the call's, which closes it when it is
 * cancelled at the end. A write error ends the leg as its peer going away
 * would (the endpoint reads an end of stream); a client that takes nothing
 * for the connection's send timeout is treated the same way.
 */

static void side_want(struct event *ev, bool *on, bool want, uint64_t ms)
{
    if (want == *on)
        return;
    *on = want;
    if (!want) {
        event_del(ev);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u)};
    event_add(ev, ms != 0 ? &tv : NULL);
}

static void side_stop(side_t *s)
{
    if (s->gone)
        return;
    s->gone = true;
    side_want(&s->rev, &s->rev_on, false, 0);
    side_want(&s->wev, &s->wev_on, false, 0);
}

/* The socket cannot take anything more: the leg reads an end of stream next,
 * from the pump's failed_ev (not its read event: that one is turned off and on
 * with the backpressure, and a send timeout leaves the socket unreadable). */
static void side_failed(side_t *s)
{
    s->failed = true;
    s->eof = true;
    side_out_clear(s);
    side_want(&s->wev, &s->wev_on, false, 0);
    if (!s->gone)
        event_active(s->failed_ev, EV_TIMEOUT, 0);
}

/*
 * The sockets' events are edge-triggered (EV_ET): the kernel reports a socket
 * once when bytes arrive, not again at every loop pass while some wait, which
 * saves a poll of each ready socket per pass. The price is that a socket must
 * be read until it is drained, or be read again without an event: `more` says
 * it may still hold bytes -- set when its event fires, cleared by a short read
 * (the TCP receive queue was emptied: short_read_drains), an EAGAIN or the
 * end. A short read does not drain a FIN queued behind the bytes (the next
 * recv answers 0, and no event says so again), so once the kernel has said
 * the peer shut its side (EV_CLOSED, EPOLLRDHUP) only EAGAIN or the end clear
 * it. While it is set and the leg may read, the read event is made
 * active by hand (side_rearm). Turning the read event off and on again (the
 * backpressure) needs nothing more: the kernel polls a socket as it is added,
 * and side_rearm covers an off-and-on within one pass that never reaches it.
 */
static void side_drained(side_t *s, ssize_t r, size_t max)
{
    if (r < 0 && errno == EINTR)
        return;
    s->more = r > 0 && ((size_t)r == max || s->hup);
}

static void side_rearm(side_t *s)
{
    if (s->more && s->rev_on && !s->gone && !s->eof && s->in.len == 0)
        event_active(&s->rev, EV_READ, 1);
}

static size_t side_read(pt_wsp_t *p, side_t *s, uint8_t *buf, size_t max, bool *eof)
{
    (void)p;
    if (s->in.len != 0)
        return bq_take(&s->in, buf, max); /* handed over with the socket: first */
    if (s->eof || s->gone) {
        *eof = s->eof;
        return 0;
    }
    /* One read per socket and event: a peer that sends as fast as we read
     * (into a leg that drops, say) cannot keep the loop from other events. */
    if (s->recvd) {
        side_rearm(s); /* the socket's next read is the next event's */
        return 0;
    }
    s->recvd = true;
    ssize_t r = pt_recv(s->fd, buf, max, 0);
    side_drained(s, r, max);
    if (r > 0)
        return (size_t)r; /* short: all there is (short_read_drains) */
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    s->eof = true; /* the end of the stream, or a reset: the leg ends either way */
    side_want(&s->rev, &s->rev_on, false, 0);
    *eof = true;
    return 0;
}

/* Writes what is queued for the socket, as far as it takes it. */
static void side_flush(pt_wsp_t *p, side_t *s)
{
    (void)p;
    if (s->gone || s->failed)
        return;
    while (s->out.len != 0) {
        ssize_t w = pt_send(s->fd, s->out.p + s->out.off, s->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                side_want(&s->wev, &s->wev_on, true, s->send_ms);
                return;
            }
            side_failed(s);
            return;
        }
        side_out_drop(s, (size_t)w);
    }
    side_want(&s->wev, &s->wev_on, false, 0);
    if (s->shut_wr) {
        s->shut_wr = false;
        shutdown(s->fd, SHUT_WR); /* our half-close after the last byte (the close frame) */
    }
}

/* Read events on while the leg may read: it runs, and the other side's queue is under its mark. */
static void pump_sync(pt_wsp_t *p)
{
    if (!p->pc.gone)
        side_want(&p->pc.rev, &p->pc.rev_on,
                  !p->dead && !p->c_ended && !p->pc.eof && p->pu.out.len < PT_WSP_HIGH_WATER, 0);
    if (!p->pu.gone)
        side_want(&p->pu.rev, &p->pu.rev_on,
                  !p->dead && !p->u_ended && !p->pu.eof && p->pc.out.len <= p->c_limit, 0);
    side_rearm(&p->pc);
    side_rearm(&p->pu);
}

/* Relayed bytes for a socket: written at once when nothing waits before them. */
static void side_send(side_t *o, const uint8_t *d, size_t n)
{
    if (o->gone || o->failed)
        return;
    if (o->out.len == 0) {
        ssize_t w;
        do {
            w = pt_send(o->fd, d, n, MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        if ((size_t)w == n)
            return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                side_failed(o);
                return;
            }
            w = 0;
        }
        d += w;
        n -= (size_t)w;
        side_want(&o->wev, &o->wev_on, true, o->send_ms);
    }
    side_out_add(o, d, n); /* behind bytes that wait for the socket */
    if (!o->wev_on)
        side_flush(NULL, o); /* not waiting for the socket: try now (nothing may sit unwatched) */
}

/*
 * One readiness of a socket: one read into the stack; the whole checked
 * frames at its front go straight to the other socket (pt_ws_relay), and
 * whatever is left -- a partial frame, control frames, anything a check
 * refuses, the end of the stream -- goes to the leg's endpoint, which reads
 * it before the socket (side_read), as on the general path.
 */
#define PUMP_READ 16384u

/* What a readiness needs after pump_in: nothing (only bytes moved: no endpoint ran, the
 * request was not entered, the read events need no second look), a look at the read
 * events, or the leg's endpoint as well. */
typedef enum { PUMP_MOVED, PUMP_SYNC, PUMP_RUN } pump_next_t;

static pump_next_t pump_in(pt_wsp_t *p, side_t *s, bool client)
{
    pt_ws_t *from = client ? p->c : p->u, *to = client ? p->u : p->c;
    side_t *o = client ? &p->pu : &p->pc;
    if (s->in.len == 0 && !s->eof && !(client ? p->u_ended : p->c_ended)) {
        uint8_t buf[PUMP_READ];
        s->recvd = true;
        ssize_t r = pt_recv(s->fd, buf, sizeof(buf), 0);
        side_drained(s, r, sizeof(buf));
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return s->more ? PUMP_SYNC : PUMP_MOVED;
        if (r <= 0) {
            s->eof = true; /* the end of the stream, or a reset: the endpoint sees it */
        } else {
            size_t n = (size_t)r;
            size_t k = pt_ws_relay(from, to, buf, n);
            if (client)
                p->req->body_received += n;
            else
                p->req->bytes_out += k;
            if (k != 0)
                side_send(o, buf, k);
            if (k == n) /* all written: the other socket's queue is still empty */
                return o->out.len == 0 && !s->more ? PUMP_MOVED : PUMP_SYNC;
            if (client)
                p->req->body_received -= n - k; /* counted when the endpoint reads them */
            bq_add(&s->in, buf + k, n - k);
        }
    }
    return PUMP_RUN;
}

/* One socket readable: the client's (`client`) or the upstream's. */
static void pump_read(pt_wsp_t *p, bool client, short what)
{
    side_t *s = client ? &p->pc : &p->pu;
    p->pc.recvd = p->pu.recvd = false;
    s->more = true; /* an edge (or side_rearm): bytes came, or the end */
    if (what & EV_CLOSED)
        s->hup = true;
    pump_next_t next = p->dead ? PUMP_SYNC : pump_in(p, s, client);
    if (next == PUMP_MOVED)
        return; /* nothing that could end the request ran: no pt__req_enter needed */
    pt_req_t *req = p->req;
    pt__req_enter(req);
    if (next == PUMP_RUN) {
        if (client)
            run_c(p);
        else
            run_u(p);
    }
    /* Not read in this run (the leg had queued bytes to work through, or is
     * over): the socket is read again when the leg runs next, not re-armed
     * now -- a level-triggered event would have spun here as well. */
    if (!s->recvd)
        s->more = false;
    pump_sync(p);
    pt__req_leave(req);
}

static void pump_c_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pump_read(arg, true, what);
}

static void pump_u_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pump_read(arg, false, what);
}

/* A socket failed (side_failed): its leg reads the end of its stream and ends. */
static void pump_failed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_wsp_t *p = arg;
    pt_req_t *req = p->req;
    pt__req_enter(req);
    p->pc.recvd = p->pu.recvd = false;
    if (!p->dead && p->pc.failed && !p->pc.gone)
        run_c(p);
    if (!p->dead && p->pu.failed && !p->pu.gone)
        run_u(p);
    pump_sync(p);
    pt__req_leave(req);
}

static void pump_c_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pt_wsp_t *p = arg;
    pt_req_t *req = p->req;
    pt__req_enter(req);
    p->pc.recvd = p->pu.recvd = false;
    if (what & EV_TIMEOUT)
        side_failed(&p->pc); /* no write progress for the send timeout */
    else
        side_flush(p, &p->pc);
    /* drained under the mark: the upstream leg may relay again */
    if (!p->dead && p->pc.out.len <= p->c_limit)
        run_u(p);
    pump_sync(p);
    pt__req_leave(req);
}

static void pump_u_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_wsp_t *p = arg;
    pt_req_t *req = p->req;
    pt__req_enter(req);
    p->pc.recvd = p->pu.recvd = false;
    side_flush(p, &p->pu);
    if (!p->dead && p->pu.out.len < PT_WSP_HIGH_WATER)
        run_c(p);
    pump_sync(p);
    pt__req_leave(req);
}

/* The client leg is over: its socket goes back to the connection with what is not written yet. */
static void pump_release_client(pt_wsp_t *p)
{
    if (!p->pump || p->pc.gone)
        return;
    side_stop(&p->pc);
    pt_conn_unlend(p->conn, p->pc.out.p + p->pc.out.off, p->pc.failed ? 0 : p->pc.out.len);
    side_out_clear(&p->pc);
}

/* The session is over: nothing more on the upstream socket, which the call's cancel closes. */
static void pump_release_upstream(pt_wsp_t *p)
{
    if (!p->pump || p->pu.gone)
        return;
    p->pu.shut_wr = false;
    side_stop(&p->pu);
}

static void side_init(pt_wsp_t *p, side_t *s, int fd, event_callback_fn on_read,
                      event_callback_fn on_write)
{
    s->fd = fd;
    s->more = true; /* bytes may have come before the events were added */
    event_assign(&s->rev, p->req->worker->base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
                 on_read, p);
    event_assign(&s->wev, p->req->worker->base, fd, EV_WRITE | EV_PERSIST | EV_ET, on_write, p);
}

bool pt_wsp_pump(pt_wsp_t *p, pt_upcall_t *call)
{
    pt_req_t *req = p->req;
    if (p->pump || p->dead || call == NULL || req->body_offer_len != 0)
        return false;
    pt_conn_t *conn = pt__h1_tunnel_conn(req);
    uint64_t send_ms = 0;
    if (conn == NULL || !pt_conn_lend(conn, &send_ms))
        return false;
    pt_upcall_lent_t lent;
    if (pt_upcall_tunnel_lend(call, &lent) != 0) {
        pt_conn_unlend(conn, NULL, 0);
        return false;
    }
    p->pump = true;
    p->conn = conn;
    p->c_limit = req->config->limits.max_response_buffer;
    side_init(p, &p->pc, conn->fd, pump_c_read, pump_c_write);
    side_init(p, &p->pu, lent.fd, pump_u_read, pump_u_write);
    event_assign(&p->failed_ev, req->worker->base, -1, 0, pump_failed, p);
    p->pc.failed_ev = p->pu.failed_ev = &p->failed_ev;
    p->pc.send_ms = send_ms;
    /* What the connection and the call still hold: the 101 head for the
     * client, the request head's tail for the upstream, and bytes each peer
     * sent right after its head. The client's queued body bytes (none when
     * the tunnel just opened) come first. */
    p->pc.acct = true;
    bq_add_evbuffer(&p->pc.out, pt_conn_output(conn)); /* leaves the connection's count ... */
    pt_overload_buffered_add((int64_t)p->pc.out.len); /* ... for ours */
    side_out_add(&p->pu, (const uint8_t *)lent.out, lent.out_len);
    bq_add(&p->pu.in, (const uint8_t *)lent.in, lent.in_len);
    for (;;) {
        uint8_t tmp[4096];
        bool eof = false;
        size_t n = pt__req_body_read(req, (char *)tmp, sizeof(tmp), &eof);
        if (n == 0)
            break;
        req->body_received -= n; /* counted again when the endpoint reads them */
        bq_add(&p->pc.in, tmp, n);
    }
    bq_add_evbuffer(&p->pc.in, pt_conn_input(conn));
    side_flush(p, &p->pc);
    side_flush(p, &p->pu);
    if (p->pc.in.len != 0)
        run_c(p);
    if (p->pu.in.len != 0)
        run_u(p);
    pump_sync(p);
    return true;
}
