/*
 * h2.h -- the HTTP/2 codec (nghttp2 server session glue).
 *
 * A connection becomes HTTP/2 in one of three ways, all of which end in
 * pt__h2_conn_start() or pt__h2_conn_upgrade():
 *   - TLS with ALPN "h2" (listener.c calls pt__h2_conn_start with no bytes);
 *   - h2c with prior knowledge: the HTTP/1 codec sees the client preface
 *     ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") and hands over every byte it has
 *     already read, preface included;
 *   - h2c via `Upgrade: h2c` + `HTTP2-Settings`: the HTTP/1 codec has parsed
 *     the whole Upgrade request (its body too) and calls pt__h2_conn_upgrade,
 *     which answers `101 Switching Protocols` and serves that request as
 *     stream 1 over HTTP/2.
 *
 * From then on the HTTP/2 codec owns the connection's I/O callbacks
 * (conn_io.c) and the conn->codec slot. Each stream becomes one pt_req_t (request.h);
 * the codec implements pt_stream_ops_t for it. Limits (streams, windows,
 * header list bytes and count, resets, CONTINUATIONs, requests per
 * connection, idle/settings/stream timeouts, outbound queue) come from the
 * worker's current pt_config_t snapshot at the time the session starts.
 *
 * Everything here runs on the connection's worker thread only.
 */
#ifndef PT_GATEWAY_H2_H
#define PT_GATEWAY_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/req.h"
#include "portico/str.h"

typedef struct pt_conn pt_conn_t; /* conn.h */

/**
 * Switches `conn` to HTTP/2 as a server. `already_read` holds `len` bytes the
 * caller already took off the socket (for h2c prior knowledge: the preface
 * and whatever followed it; NULL/0 for TLS+ALPN). They are copied and fed to
 * the session first. Installs the codec's callbacks on conn (conn_io.c) and
 * sends the server SETTINGS. On a fatal error (bad preface bytes, OOM in
 * nghttp2) the connection is closed through the usual conn close path; the
 * caller must not touch `conn` after this returns if it was closed (use
 * the return of the conn layer's liveness checks, or simply return).
 */
void pt__h2_conn_start(pt_conn_t *conn, const uint8_t *already_read, size_t len);

/**
 * Upgrades `conn` from HTTP/1.1 (`Upgrade: h2c`). `req` is the fully parsed
 * Upgrade request, which must have no body (no Content-Length > 0, no
 * Transfer-Encoding: a request with a body is refused with PT_ERR_INVALID and
 * should be served over HTTP/1.1), pt__req_headers_done() NOT yet called; on
 * success the h1 codec's hold is handed over to the h2 codec (req->ops and
 * req->stream are replaced) and
 * `http2_settings_b64` the value of its HTTP2-Settings header (base64url,
 * possibly unpadded). The h2 codec writes `HTTP/1.1 101 Switching Protocols`,
 * the server preface, and then serves `req` as stream 1 (its response goes
 * out as HTTP/2). Bytes the client sends afterwards must start with the
 * client preface, as RFC 9113 §3.2 requires; the h1 codec must leave any bytes
 * that follow the Upgrade request in the connection's input buffer (they are
 * processed before this returns). The h1 codec must have freed its own state
 * and must not touch `conn` again on success (the h2 codec may even have
 * closed it already).
 *
 * Returns 0 when the connection now belongs to the h2 codec, or a negative
 * PT_ERR_* (PT_ERR_INVALID for a bad HTTP2-Settings value) with nothing sent
 * and `req` still owned by the caller, which then answers it over HTTP/1.1
 * (RFC 9113 §3.2: a server may ignore the upgrade) or rejects it.
 */
int pt__h2_conn_upgrade(pt_conn_t *conn, pt_req_t *req, pt_str_t http2_settings_b64);

/**
 * Starts a graceful drain of an HTTP/2 connection: GOAWAY with the shutdown
 * notice (last stream id 2^31-1) now, the real GOAWAY with the last accepted
 * stream id about one RTT later (a short timer), then the connection closes
 * once in-flight streams are done. Safe to call more than once; a no-op on a
 * connection that is not HTTP/2 (conn->codec not ours) or already closing.
 */
void pt__h2_conn_drain(pt_conn_t *conn);

/** True when `conn` currently runs the HTTP/2 codec. */
bool pt__h2_conn_is_h2(const pt_conn_t *conn);

#endif /* PT_GATEWAY_H2_H */
