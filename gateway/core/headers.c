/*
 * headers.c -- ordered header lists in an arena (see headers.h).
 */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "core/headers_priv.h"
#include "portico/headers.h"
#include "portico/status.h"

void pt_headers_init(pt_headers_t *h, pt_arena_t *a)
{
    h->v = NULL;
    h->cnt = 0;
    h->cap = 0;
    h->arena = a;
}

/* Out of line: pt_headers_add_nocopy() (~19 calls a transcoded request) then
 * saves and restores no registers when there is room (callgrind). */
static __attribute__((noinline)) int grow(pt_headers_t *h)
{
    size_t cap = h->cap == 0 ? 16 : h->cap * 2;
    pt_header_t *v = pt_arena_alloc(h->arena, cap * sizeof(*v));
    if (v == NULL)
        return PT_ERR_LIMIT;
    if (h->cnt != 0)
        memcpy(v, h->v, h->cnt * sizeof(*v));
    h->v = v;
    h->cap = cap;
    return 0;
}

int pt_headers_add_nocopy(pt_headers_t *h, pt_str_t name, pt_str_t value)
{
    if (__builtin_expect(h->cnt == h->cap, 0) && grow(h) != 0)
        return PT_ERR_LIMIT;
    h->v[h->cnt].name = name;
    h->v[h->cnt].value = value;
    h->cnt++;
    return 0;
}

static pt_str_t dup_lower(pt_arena_t *a, pt_str_t s)
{
    pt_str_t d = pt_arena_strdup(a, s);
    if (d.base != NULL) {
        char *p = (char *)d.base;
        for (size_t i = 0; i < d.len; i++)
            if (p[i] >= 'A' && p[i] <= 'Z')
                p[i] = (char)(p[i] | 0x20);
    }
    return d;
}

int pt_headers_add(pt_headers_t *h, pt_str_t name, pt_str_t value)
{
    pt_str_t n = dup_lower(h->arena, name);
    pt_str_t v = pt_arena_strdup(h->arena, value);
    if (n.base == NULL || v.base == NULL)
        return PT_ERR_LIMIT;
    return pt_headers_add_nocopy(h, n, v);
}

/* 'A'..'Z' -> 'a'..'z', every other byte to itself. */
static const unsigned char ascii_lower[256] = {
#define R8(b) (b), (b) + 1, (b) + 2, (b) + 3, (b) + 4, (b) + 5, (b) + 6, (b) + 7
#define R32(b) R8(b), R8((b) + 8), R8((b) + 16), R8((b) + 24)
    R32(0x00), R32(0x20), 0x40, R8(0x61), R8(0x69), R8(0x71), 0x79, 0x7a, 0x5b, 0x5c, 0x5d, 0x5e,
    0x5f, R32(0x60), R32(0x80), R32(0xa0), R32(0xc0), R32(0xe0),
#undef R32
#undef R8
};

int pt__headers_own(pt_headers_t *h, size_t from)
{
    if (from >= h->cnt)
        return 0;
    size_t bytes = 0;
    for (size_t i = from; i < h->cnt; i++)
        bytes += h->v[i].name.len + h->v[i].value.len + 2;
    char *d = pt_arena_alloc(h->arena, bytes);
    if (d == NULL)
        return PT_ERR_LIMIT;
    for (size_t i = from; i < h->cnt; i++) {
        pt_header_t *e = &h->v[i];
        for (size_t j = 0; j < e->name.len; j++)
            d[j] = (char)ascii_lower[(unsigned char)e->name.base[j]];
        d[e->name.len] = '\0';
        e->name.base = d;
        d += e->name.len + 1;
        if (e->value.len != 0)
            memcpy(d, e->value.base, e->value.len);
        d[e->value.len] = '\0';
        e->value.base = d;
        d += e->value.len + 1;
    }
    return 0;
}

/* Field names compare case-insensitively. Most names a lookup meets have
 * another length or another first letter: those are told apart here, inline
 * (bit 0x20 is all that case changes), before the full pt_str_ieq() call. */
static inline bool name_is(pt_str_t a, pt_str_t b)
{
    return a.len == b.len &&
           (a.len == 0 || (((unsigned char)a.base[0] ^ (unsigned char)b.base[0]) & ~0x20u) == 0) &&
           pt_str_ieq(a, b);
}

int pt_headers_set(pt_headers_t *h, pt_str_t name, pt_str_t value)
{
    pt_headers_remove(h, name);
    return pt_headers_add(h, name, value);
}

size_t pt_headers_remove(pt_headers_t *h, pt_str_t name)
{
    size_t w = 0, removed = 0;
    for (size_t r = 0; r < h->cnt; r++) {
        if (name_is(h->v[r].name, name)) {
            removed++;
            continue;
        }
        if (w != r)
            h->v[w] = h->v[r];
        w++;
    }
    h->cnt = w;
    return removed;
}

int pt_headers_rename(pt_headers_t *h, pt_str_t from, pt_str_t to)
{
    pt_str_t n = PT_STR_NULL;
    int renamed = 0;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!name_is(h->v[i].name, from))
            continue;
        if (n.base == NULL) {
            n = dup_lower(h->arena, to);
            if (n.base == NULL)
                return PT_ERR_LIMIT;
        }
        h->v[i].name = n;
        renamed++;
    }
    return renamed;
}

const pt_header_t *pt_headers_find(const pt_headers_t *h, pt_str_t name)
{
    for (size_t i = 0; i < h->cnt; i++)
        if (name_is(h->v[i].name, name))
            return &h->v[i];
    return NULL;
}

pt_str_t pt_headers_get(const pt_headers_t *h, pt_str_t name)
{
    const pt_header_t *e = pt_headers_find(h, name);
    return e != NULL ? e->value : PT_STR_NULL;
}

size_t pt_headers_count(const pt_headers_t *h, pt_str_t name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->cnt; i++)
        if (name_is(h->v[i].name, name))
            n++;
    return n;
}

bool pt_headers_has_token(const pt_headers_t *h, pt_str_t name, pt_str_t token)
{
    for (size_t i = 0; i < h->cnt; i++) {
        if (!name_is(h->v[i].name, name))
            continue;
        pt_str_t v = h->v[i].value;
        size_t start = 0;
        for (size_t j = 0; j <= v.len; j++) {
            if (j == v.len || v.base[j] == ',') {
                pt_str_t el = pt_str_trim_ows((pt_str_t){v.base + start, j - start});
                if (pt_str_ieq(el, token))
                    return true;
                start = j + 1;
            }
        }
    }
    return false;
}

bool pt_header_is_hop_by_hop(pt_str_t n)
{
    /* By length first: every forwarded field passes here, most match no length. */
    switch (n.len) {
    case 2:
        return pt_str_ieq(n, PT_STR("te"));
    case 7:
        return pt_str_ieq(n, PT_STR("trailer")) || pt_str_ieq(n, PT_STR("upgrade"));
    case 10: /* "user-agent" and many more are 10 long: the first letter sorts them */
        switch (n.base[0] | 0x20) {
        case 'c':
            return pt_str_ieq(n, PT_STR("connection"));
        case 'k':
            return pt_str_ieq(n, PT_STR("keep-alive"));
        default:
            return false;
        }
    case 14:
        return pt_str_ieq(n, PT_STR("http2-settings"));
    case 16:
        return pt_str_ieq(n, PT_STR("proxy-connection"));
    case 17:
        return pt_str_ieq(n, PT_STR("transfer-encoding"));
    case 18:
        return pt_str_ieq(n, PT_STR("proxy-authenticate"));
    case 19:
        return pt_str_ieq(n, PT_STR("proxy-authorization"));
    default:
        return false;
    }
}

/* RFC 9110 tchar ("!#$%&'*+-.^_`|~" DIGIT ALPHA) -> the byte lowercased; 0: not a tchar. */
const unsigned char pt__tchar_lower[256] = {
    ['!'] = '!', ['#'] = '#', ['$'] = '$', ['%'] = '%', ['&'] = '&', ['\''] = '\'', ['*'] = '*',
    ['+'] = '+', ['-'] = '-', ['.'] = '.', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3',
    ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['A'] = 'a',
    ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g', ['H'] = 'h',
    ['I'] = 'i', ['J'] = 'j', ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n', ['O'] = 'o',
    ['P'] = 'p', ['Q'] = 'q', ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u', ['V'] = 'v',
    ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z', ['^'] = '^', ['_'] = '_', ['`'] = '`',
    ['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g',
    ['h'] = 'h', ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm', ['n'] = 'n',
    ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r', ['s'] = 's', ['t'] = 't', ['u'] = 'u',
    ['v'] = 'v', ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z', ['|'] = '|', ['~'] = '~',
};

/* Every field name of every message passes here: one table load a byte. */
bool pt_header_name_valid(pt_str_t name, bool allow_underscore)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        unsigned char c = pt__tchar_lower[(unsigned char)name.base[i]];
        if (c == 0 || (c == '_' && !allow_underscore))
            return false;
    }
    return true;
}

/* Whether some byte of the word `x` is below 0x20 or is 0x7f (bytes >= 0x80,
 * obs-text, never count: ~x clears their high bit). */
static bool word_suspect(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t lt20 = (x - ones * 0x20) & ~x & highs;
    uint64_t y = x ^ (ones * 0x7f);
    uint64_t eq7f = (y - ones) & ~y & highs;
    return (lt20 | eq7f) != 0;
}

static bool bytes_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return false;
    return true;
}

/* No CTL but HTAB, no DEL. Every forwarded value passes here (a 4 KB Cookie
 * twice per proxied request: parsed, then sent on), so it goes sixteen bytes
 * at a time with SSE2 where the compiler targets it (every x86-64), else eight
 * at a time in a word; the last block overlaps the previous one rather than
 * ending in a byte loop, and a block with a suspect byte is looked at byte by
 * byte (HTAB is allowed). */
bool pt_header_value_valid(pt_str_t value)
{
    const unsigned char *p = (const unsigned char *)value.base;
    size_t n = value.len;
#ifdef __SSE2__
    if (n >= 16) {
        const __m128i below = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
        for (size_t i = 0;; i += 16) {
            if (i + 16 > n)
                i = n - 16;
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
            /* x <= 0x1f (unsigned) exactly when min(x, 0x1f) == x */
            __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, below), x),
                                       _mm_cmpeq_epi8(x, del));
            if (_mm_movemask_epi8(bad) != 0 && !bytes_valid(p + i, 16))
                return false;
            if (i + 16 == n)
                return true;
        }
    }
#endif
    if (n < 8)
        return bytes_valid(p, n);
    uint64_t x;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&x, p + i, 8);
        if (word_suspect(x) && !bytes_valid(p + i, 8))
            return false;
    }
    memcpy(&x, p + n - 8, 8);
    return !word_suspect(x) || bytes_valid(p + n - 8, 8);
}
