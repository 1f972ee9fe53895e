/*
 * overload.h -- process-wide overload protection (`limits.max_connections`,
 * `overload: { memory: 512m, retry_after: 1s }`).
 *
 * Two process-wide counters, updated by every worker with relaxed atomics:
 *   - client connections open (accepted, not yet closed): at
 *     limits.max_connections a new connection is closed at once;
 *   - bytes buffered for clients: what the connections' output buffers hold
 *     (responses the clients have not read yet -- where slow readers pile up
 *     memory; each request's share is capped by limits.max_response_buffer
 *     before the upstream is paused, so this is the sum over connections).
 * Over `overload.memory`, in this order and before anything in flight is cut:
 * new connections are refused (plain HTTP listeners answer 503 with
 * Retry-After and close; TLS listeners close), HTTP/1.1 responses carry
 * Connection: close (keep-alive off), and new requests on connections already
 * open are shed with 503 OVERLOADED + Retry-After. Everything returns to
 * normal as soon as the buffered bytes are back under the watermark.
 */
#ifndef PT_GATEWAY_CORE_OVERLOAD_H
#define PT_GATEWAY_CORE_OVERLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "core/limits.h"

/** Bytes entered (+) or left (-) a client output buffer. Any worker. */
void pt_overload_buffered_add(int64_t delta);

/** Bytes buffered for clients now, process-wide. */
uint64_t pt_overload_buffered(void);

/** One more client connection, unless `max` are open (then false, nothing counted). */
bool pt_overload_conn_admit(uint32_t max);
/** A connection admitted above closed. */
void pt_overload_conn_done(void);

/** True while the buffered bytes are over `o->memory` (never when memory is 0). */
bool pt_overload_over(const pt_overload_t *o);

/** Counts a connection refused at accept (max_connections or memory). */
void pt_overload_count_refused(bool memory);
/** Counts a request shed with 503. */
void pt_overload_count_shed(void);

/**
 * The canned answer written to a connection refused over the watermark on a
 * plain HTTP listener: 503, Retry-After, Connection: close, a JSON body.
 */
size_t pt_overload_refusal(const pt_overload_t *o, char *buf, size_t cap);

/** Prometheus lines (admin /metrics). */
void pt_overload_metrics(FILE *f, const pt_overload_t *o, uint32_t max_connections);

#endif /* PT_GATEWAY_CORE_OVERLOAD_H */
