/*
 * hpack_policy.h -- which header fields HPACK must not put in the dynamic
 * table, for both nghttp2 sessions (http/h2.c serving clients, upstream/h2.c
 * calling back ends).
 *
 * A field whose value is new on every request (x-request-id, the gRPC
 * response metadata copy grpc-metadata-x-request-id, traceparent, tracestate)
 * never matches a table entry again: indexing it only costs an insertion and
 * an eviction per request (under callgrind the HPACK encoder was ~8k
 * instructions a header block with them indexed) and pushes out the entries
 * that do repeat (content-type, grpc-*), which are then sent literally. They
 * are sent as "literal never indexed" (RFC 7541 §6.2.3) instead.
 */
#ifndef PT_GATEWAY_HPACK_POLICY_H
#define PT_GATEWAY_HPACK_POLICY_H

#include <nghttp2/nghttp2.h>
#include <string.h>
#include "portico/str.h"

static inline bool pt__hpack_ends_with(pt_str_t s, const char *lit, size_t n)
{
    return s.len >= n && memcmp(s.base + s.len - n, lit, n) == 0;
}

/** nghttp2_nv flags for the lowercase field name `name`. */
static inline uint8_t pt_hpack_nv_flags(pt_str_t name)
{
    if (name.len < 10)
        return NGHTTP2_NV_FLAG_NONE;
    if (pt__hpack_ends_with(name, "request-id", 10) || pt__hpack_ends_with(name, "traceparent", 11) ||
        pt__hpack_ends_with(name, "tracestate", 10))
        return NGHTTP2_NV_FLAG_NO_INDEX;
    return NGHTTP2_NV_FLAG_NONE;
}

#endif /* PT_GATEWAY_HPACK_POLICY_H */
