/*
 * h1.h -- the HTTP/1.1 codec: connection glue between a client connection
 * (conn_io.c, our own I/O layer) and the request layer (request.h).
 *
 * pt__h1_conn_start() (declared in conn.h) takes over an accepted connection.
 * From then on this codec:
 *   - parses requests with the strict parser (h1parse.h) and turns each into a
 *     pt_req_t (pt__req_new, pt__req_headers_done, pt__req_body);
 *   - dispatches pipelined requests as they arrive (at most
 *     limits.max_pipeline in flight) but writes responses strictly in order:
 *     only the oldest request writes to the socket, later ones buffer their
 *     output (bounded through pt__resp_blocked and max_response_buffer);
 *   - frames responses itself (Content-Length when known, else chunked on
 *     HTTP/1.1, else close-delimited), never forwarding client framing; HEAD,
 *     204 and 304 answers carry no body; trailers go with chunked responses;
 *   - enforces the timeouts of pt_timeouts_t: header deadline (408 + close),
 *     body inactivity (408 + close), keep-alive idle (close), send (close);
 *   - applies backpressure: stops reading while a request body queue is over
 *     PT_REQ_BODY_HIGH_WATER, resumes on body_consumed;
 *   - hands the connection to HTTP/2 on the prior-knowledge preface
 *     (cleartext listeners with h2c on) or on a valid `Upgrade: h2c` request
 *     without body (pt__h2_conn_start / pt__h2_conn_upgrade, h2.h);
 *   - on drain, answers the current request with `Connection: close`, then
 *     closes; a client that goes away aborts its requests (pt__req_abort).
 *
 * Everything runs on the connection's worker thread.
 */
#ifndef PT_GATEWAY_H1_H
#define PT_GATEWAY_H1_H

#include <stdbool.h>
#include "net/conn.h"

/** The codec operations installed in conn->codec_ops by pt__h1_conn_start(). */
extern const pt_codec_ops_t pt__h1_codec_ops;

/** True when `conn` currently runs the HTTP/1.1 codec. */
bool pt__h1_conn_is_h1(const pt_conn_t *conn);

/**
 * The client connection of `req` when it is an HTTP/1.1 tunnel whose 101
 * head was staged (op_tunnel, then the head): the connection is a byte pipe
 * of this request alone, so a relay may borrow its socket (pt_conn_lend) for
 * the data phase. NULL otherwise (another codec, TLS, no tunnel yet).
 */
struct pt_req;
pt_conn_t *pt__h1_tunnel_conn(struct pt_req *req);

#endif /* PT_GATEWAY_H1_H */
