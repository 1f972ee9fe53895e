/*
 * ascii.h -- word-at-a-time ASCII tests on slices, for the hot paths that
 * must know whether a field name needs lowercasing before they copy it
 * (HTTP/2 sends names lowercase: http/hpack_policy.h, handlers/grpc.c).
 */
#ifndef PT_GATEWAY_CORE_ASCII_H
#define PT_GATEWAY_CORE_ASCII_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "portico/str.h"

/* Some byte of `w` is 'A'..'Z' (exact: the sums stay inside each byte). */
static inline bool pt__ascii_upper8(uint64_t w)
{
    uint64_t t = w & 0x7f7f7f7f7f7f7f7fULL;
    uint64_t ge_a = t + 0x3f3f3f3f3f3f3f3fULL; /* high bit: byte >= 'A' */
    uint64_t gt_z = t + 0x2525252525252525ULL; /* high bit: byte > 'Z' */
    return (ge_a & ~gt_z & ~w & 0x8080808080808080ULL) != 0;
}

/** Some byte of `s` is an ASCII capital (eight bytes at a time, the last eight overlapping). */
static inline bool pt_ascii_has_upper(pt_str_t s)
{
    const unsigned char *b = (const unsigned char *)s.base;
    uint64_t w;
    if (s.len >= 8) {
        for (size_t i = 0; i + 8 <= s.len; i += 8) {
            memcpy(&w, b + i, 8);
            if (pt__ascii_upper8(w))
                return true;
        }
        memcpy(&w, b + s.len - 8, 8);
    } else if (s.len >= 4) { /* the first four and the last four (overlapping) */
        uint32_t lo, hi;
        memcpy(&lo, b, 4);
        memcpy(&hi, b + s.len - 4, 4);
        w = lo | (uint64_t)hi << 32;
    } else if (s.len != 0) { /* one to three bytes: first, middle, last */
        w = b[0] | (uint64_t)b[s.len / 2] << 8 | (uint64_t)b[s.len - 1] << 16;
    } else {
        return false;
    }
    return pt__ascii_upper8(w);
}

#endif /* PT_GATEWAY_CORE_ASCII_H */
