/*
 * ws_proxy.h -- WebSocket proxying on top of the proxy handler's tunnel
 * (proxy.c, `proxy: { websocket: true }`): two endpoints of http/ws.h, one
 * facing the client (server role), one facing the upstream (client role),
 * and the relay between them.
 *
 *   client <-> codec <-> pt_req_t tunnel <-> [C: PT_WS_SERVER] == relay == [U: PT_WS_CLIENT]
 *                                                       <-> up_out / up_in <-> pt_upcall (h1 pipe)
 *
 * Frames keep their boundaries: a frame of N bytes from one side goes out as
 * a frame of N bytes to the other. A frame that arrived whole in one read is
 * checked and then passed on as the bytes it came in (ws.h on_raw /
 * pt_ws_send_raw; a client's frame re-masked with our own key); a longer one
 * is streamed chunk by chunk as it is read (nothing is buffered whole). Each side's frames are checked by its
 * endpoint (masking, opcodes, UTF-8, control frames, max_message). Pings,
 * pongs and close frames are relayed; Portico adds its own keepalive pings on
 * both legs (their pongs are not relayed).
 *
 * Backpressure: reading the client stops while more than
 * PT_WSP_HIGH_WATER bytes wait for the upstream socket; reading the
 * upstream stops while the client side is over limits.max_response_buffer
 * (pt__resp_blocked, asked after each delivery from the upstream and every
 * 16 KiB within one). Per session memory: two 4 KiB parser windows plus
 * those two bounds (plus one socket read of the upstream over the second).
 *
 * Ending: a close frame from either side is relayed and so is its answer;
 * the session ends when both legs ended. A side that breaks the protocol
 * gets its RFC 6455 close code (1002, 1007, 1009); the other side then gets
 * 1001 with a reason naming what happened. The upstream connection going
 * away without a close frame sends 1001 to the client; the client going away
 * sends 1001 upstream.
 *
 * The pump (pt_wsp_pump): on plain TCP both ways (an HTTP/1.1 client
 * connection, an HTTP/1.1 upstream tunnel) the data phase runs on the two
 * sockets, lent by the connection and the call, with the same endpoints:
 * whole checked frames go from one socket to the other (pt_ws_relay), the
 * rest through the endpoints as above. See ws_proxy.c, "The pump".
 *
 * Everything runs on the request's worker thread, called by proxy.c.
 */
#ifndef PT_HANDLERS_WS_PROXY_H
#define PT_HANDLERS_WS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/request.h"
#include "upstream/call.h"

/** Bytes queued for the upstream above which the client is not read. */
#define PT_WSP_HIGH_WATER (64u * 1024u)

typedef struct pt_wsp pt_wsp_t;

/** Per-route settings (from the proxy's conf). */
typedef struct pt_wsp_conf {
    uint64_t max_message;        /* bytes, each direction (0: no limit) */
    uint64_t ping_interval_ms;   /* keepalive on both legs (0: none) */
    uint64_t idle_ms;            /* no data message either way: close 1001 (0: none) */
    uint64_t close_timeout_ms;   /* wait for the answer to a close frame */
} pt_wsp_conf_t;

/** What the relay asks of proxy.c (all on the worker thread). */
typedef struct pt_wsp_io {
    /** Framed bytes for the upstream are waiting: pt_upcall_body_ready(). */
    void (*up_kick)(void *ud);
    /** The relay can take upstream bytes again: pt_upcall_resume(). */
    void (*up_resume)(void *ud);
    /** Both legs ended: stop the upstream call and finish the handler. */
    void (*done)(void *ud);
} pt_wsp_io_t;

/**
 * Starts relaying on `req`, whose tunnel was just opened (pt__req_tunnel_open
 * succeeded). Both endpoints live until req's arena goes (the client-side
 * one is attached to req for the access log). Returns NULL when the arena is
 * full (the caller fails the session).
 */
pt_wsp_t *pt_wsp_open(pt_req_t *req, const pt_wsp_conf_t *conf, const pt_wsp_io_t *io, void *ud);

/** The upstream call pulls bytes to send (read_body semantics of call.h). */
size_t pt_wsp_up_read(pt_wsp_t *p, char *buf, size_t max, bool *eof);

/** Bytes from the upstream (on_data semantics: returns false to pause delivery). */
bool pt_wsp_up_data(pt_wsp_t *p, const char *data, size_t len);

/** The upstream connection ended (on_done). */
void pt_wsp_up_end(pt_wsp_t *p);

/** Client bytes were queued on req (handler on_body). */
void pt_wsp_client_readable(pt_wsp_t *p);

/** The client side drained (handler on_writable). */
void pt_wsp_client_writable(pt_wsp_t *p);

/** The client went away: no callback from here on; the endpoints go with the arena. */
void pt_wsp_abort(pt_wsp_t *p);

/**
 * The data phase on the two sockets (ws_proxy.c, "The pump"): when req's
 * client connection is a plain-TCP HTTP/1.1 tunnel and `call` a plain-TCP
 * HTTP/1.1 tunnel, both lend their sockets to the relay, which then reads
 * and writes them itself; pt_wsp_up_* and pt_wsp_client_* are not needed any
 * more (the call and the connection stay quiet). Call right after
 * pt_wsp_open. Returns false (nothing changed) when the legs do not allow it:
 * the relay then runs over the request and the call as before.
 */
bool pt_wsp_pump(pt_wsp_t *p, pt_upcall_t *call);

#endif /* PT_HANDLERS_WS_PROXY_H */
