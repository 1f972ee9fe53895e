/*
 * str.c -- slice helpers (see str.h).
 */
#include <stdint.h>
#include <string.h>
#include "portico/str.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* The eight bytes of x with 'A'..'Z' lowercased (bytes >= 0x80 untouched):
 * per byte, the low seven bits plus 0x3f carry into bit 7 from 'A' on, plus
 * 0x25 from past 'Z' on; no byte's sum reaches the next byte. */
static inline uint64_t lower8(uint64_t x)
{
    const uint64_t highs = 0x8080808080808080ull;
    uint64_t b = x & ~highs;
    uint64_t upper = (b + 0x3f3f3f3f3f3f3f3full) & ~(b + 0x2525252525252525ull) & ~x & highs;
    return x | (upper >> 2);
}

/* Header names are compared on every lookup: eight bytes at a time, the
 * last word overlapping the one before (a.len >= 8). */
bool pt_str_ieq(pt_str_t a, pt_str_t b)
{
    if (a.len != b.len)
        return false;
    size_t n = a.len;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (lower((unsigned char)a.base[i]) != lower((unsigned char)b.base[i]))
                return false;
        return true;
    }
    uint64_t x, y;
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, a.base + i, 8);
        memcpy(&y, b.base + i, 8);
        if (x != y && lower8(x) != lower8(y))
            return false;
    }
    memcpy(&x, a.base + n - 8, 8);
    memcpy(&y, b.base + n - 8, 8);
    return x == y || lower8(x) == lower8(y);
}

bool pt_str_has_isuffix(pt_str_t s, pt_str_t suffix)
{
    if (s.len < suffix.len)
        return false;
    return pt_str_ieq((pt_str_t){s.base + s.len - suffix.len, suffix.len}, suffix);
}

pt_str_t pt_str_trim_ows(pt_str_t s)
{
    while (s.len > 0 && (s.base[0] == ' ' || s.base[0] == '\t')) {
        s.base++;
        s.len--;
    }
    while (s.len > 0 && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int pt_str_to_u64(pt_str_t s, unsigned long long max, unsigned long long *out)
{
    if (s.len == 0 || s.len > 20)
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned d = c - '0';
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
