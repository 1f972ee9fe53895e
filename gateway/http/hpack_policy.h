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
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "core/ascii.h"
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

/**
 * As pt_hpack_nv_flags(), for a session that remembers in `*seeded` (zero at
 * start) which never-indexed names it has sent. The first field of each such
 * name on a session is indexed once: its entry stays in the dynamic table
 * (nothing else on our sessions is inserted per request), and RFC 7541's
 * "literal never indexed" fields after it name that entry instead of spelling
 * (and Huffman-coding) the name every time. Values are never indexed again.
 */
static inline uint8_t pt_hpack_nv_flags_seeded(pt_str_t name, uint8_t *seeded)
{
    if (pt_hpack_nv_flags(name) == NGHTTP2_NV_FLAG_NONE)
        return NGHTTP2_NV_FLAG_NONE;
    uint8_t bit = name.len == 12 && memcmp(name.base, "x-request-id", 12) == 0   ? 1u
                  : pt__hpack_ends_with(name, "request-id", 10)                 ? 2u
                  : name.len == 11 && memcmp(name.base, "traceparent", 11) == 0 ? 4u
                  : name.len == 10 && memcmp(name.base, "tracestate", 10) == 0  ? 8u
                                                                                : 0u;
    if (bit == 0 || (*seeded & bit) != 0)
        return NGHTTP2_NV_FLAG_NO_INDEX;
    *seeded |= bit;
    return NGHTTP2_NV_FLAG_NONE;
}

/**
 * A field for a header block whose strings nghttp2 must not copy (NGHTTP2_NV_FLAG_NO_COPY_NAME |
 * NO_COPY_VALUE): unless told so, nghttp2_submit_*() copies every name and value into a block of
 * its own and lowercases each name byte by byte (~2.2k instructions a transcoded call over both
 * sessions, callgrind). The caller copies instead, once, into memory that outlives the frame:
 * `*dst` (advanced past the copy) receives the name, lowercased (RFC 9113 §8.2), then the value;
 * the HPACK policy's flags are the caller's to add (from the copied name). nghttp2 reads the
 * strings when it serializes the frame, which it does only while the stream is open (a stream reset
 * or closed before that drops the frame unread; a request's HEADERS waiting for a stream slot are
 * cancelled by our RST_STREAM).
 */
static inline nghttp2_nv pt_hpack_nv_copy(char **dst, pt_str_t n, pt_str_t v)
{
    char *p = *dst;
    if (pt_ascii_has_upper(n)) {
        for (size_t i = 0; i < n.len; i++)
            p[i] = (char)(n.base[i] >= 'A' && n.base[i] <= 'Z' ? n.base[i] + 32 : n.base[i]);
    } else if (n.len != 0) {
        memcpy(p, n.base, n.len);
    }
    if (v.len != 0)
        memcpy(p + n.len, v.base, v.len);
    *dst = p + n.len + v.len;
    return (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + n.len, n.len, v.len,
                        NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

#endif /* PT_GATEWAY_HPACK_POLICY_H */
