/*
 * tls.h -- the client side of TLS to https:// endpoints, as the cluster's keys
 * say (`tls_verify`, `ca_file`, `authority`), for every upstream hop: the
 * HTTP/2 client (h2.c), the reflection client (reflect.c), WebSocket and
 * tunnel connections (h1.c) and the health checks (health.c).
 *
 * The rules (the same as libcurl's for REST clusters):
 * TLS 1.2 or newer; with `tls_verify` the chain is checked against `ca_file`
 * (else the system store) and the certificate must carry the name (a DNS
 * name, or an IP address against its IP SANs); a name (not an address) is
 * sent as SNI. Which name: the endpoint's host, except for gRPC clusters with
 * an `authority`, whose host it is (gRPC's rule: the authority names the
 * server, whatever address reaches it). Health checks (health_conf.c) check the
 * name calls check; h1.c (WebSocket and tunnels, never gRPC) the endpoint's host.
 */
#ifndef PT_GATEWAY_UPSTREAM_TLS_H
#define PT_GATEWAY_UPSTREAM_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/cluster.h"

/**
 * ALPN lists (wire format): h2 only (gRPC), h2 then http/1.1 (REST with
 * `http2: true`), http/1.1 only (HTTP/1.1 REST, WebSocket and tunnels).
 */
#define PT_UPTLS_ALPN_H2 "\x02h2"
#define PT_UPTLS_ALPN_H1 "\x08http/1.1"
#define PT_UPTLS_ALPN_H2_H1 "\x02h2\x08http/1.1"

/**
 * The name endpoint `ep` of `cl` must show (see the top comment): written
 * into `buf` (`len` bytes) when taken from the authority; returns it, or the
 * endpoint's host.
 */
const char *pt__uptls_name(const pt_cluster_t *cl, const pt_endpoint_t *ep, char *buf, size_t len);

/**
 * A client context: verification per `verify` / `ca_file` (NULL or "": the
 * system store), ALPN `alpn` (wire format, `alpn_len` bytes). NULL when it
 * cannot be made (the CA file does not load); OpenSSL's error queue is cleared.
 */
SSL_CTX *pt__uptls_ctx_new(bool verify, const char *ca_file, const char *alpn, size_t alpn_len);

/**
 * Prepares `ssl` (client mode) for `name`: SNI unless it is an IP address,
 * and with `verify` the name or address the certificate must carry.
 * Returns 0, or -1.
 */
int pt__uptls_set_peer(SSL *ssl, const char *name, bool verify);

/** After a failed handshake: true when the peer's certificate was refused (not trusted, wrong name). */
bool pt__uptls_verify_failed(const SSL *ssl);

/** The protocol the server picked in ALPN: "h2", "http/1.1", or "" when none. */
const char *pt__uptls_alpn(const SSL *ssl);

#endif /* PT_GATEWAY_UPSTREAM_TLS_H */
