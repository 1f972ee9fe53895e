/*
 * json_lex.c -- strict, zero-copy JSON pull lexer. See json_lex.h.
 *
 * Design notes:
 *  - The grammar is a small state machine (what may come next), plus a bit
 *    stack saying whether each open container is an object or an array. No
 *    recursion, no allocation (except the optional duplicate-key set).
 *  - Strings are scanned 8 bytes at a time while they are plain ASCII (SWAR);
 *    escapes and multi-byte UTF-8 take the slow path and are validated fully.
 *  - Duplicate keys are found with one hash set per document, keyed by
 *    (object id, decoded key). Objects get fresh ids, so nothing is deleted
 *    when an object closes; the set's size is bounded by the number of keys in
 *    checked objects, i.e. by the input size. The hash is seeded from the
 *    table's address, so collisions are not predictable from the input alone.
 */
#include "json_lex.h"

#include <string.h>

#include "portico/transcoder/xerr.h"
#include "portico/transcoder/wkt.h"

enum {
    ST_VALUE,       /* a value must come (start, after ':' or ',' in an array) */
    ST_ARR_FIRST,   /* a value or ']' */
    ST_OBJ_FIRST,   /* a key or '}' */
    ST_OBJ_KEY,     /* a key (after ',' in an object) */
    ST_AFTER_VALUE, /* ',' or the closing bracket, or EOF at depth 0 */
    ST_DONE,        /* EOF returned */
    ST_ERROR,
};

struct pt_jkey_slot {
    uint32_t hash; /* 0 = empty slot (real hashes are forced non-zero) */
    uint32_t obj;
    uint32_t off;
    uint32_t len; /* top bit: has escapes */
};

void pt_jlex_init(pt_jlex_t *lx, const char *s, size_t len, unsigned max_depth)
{
    lx->begin = s;
    lx->p = s;
    lx->end = s + len;
    lx->depth = 0;
    if (max_depth == 0)
        max_depth = 64;
    if (max_depth > PT_JLEX_DEPTH_CAP)
        max_depth = PT_JLEX_DEPTH_CAP;
    lx->max_depth = max_depth;
    lx->state = ST_VALUE;
    lx->err_code = 0;
    lx->err_msg = NULL;
    lx->err_pos = 0;
    lx->keys = NULL;
    lx->next_obj_id = 1;
}

static int fail_at(pt_jlex_t *lx, const char *at, int code, const char *msg)
{
    lx->state = ST_ERROR;
    lx->err_code = code;
    lx->err_msg = msg;
    lx->err_pos = (size_t)(at - lx->begin);
    return PT_JTOK_ERROR;
}

static int fail(pt_jlex_t *lx, const char *at, const char *msg)
{
    return fail_at(lx, at, PT_XERR_INVALID, msg);
}

/* For helpers that return 0 on success: fails and returns -1. */
static int fail_neg(pt_jlex_t *lx, const char *at, const char *msg)
{
    fail_at(lx, at, PT_XERR_INVALID, msg);
    return -1;
}

/* ---------------------------------------------------------------- strings */

/* Character classes for the string scanner: 0 plain, 1 quote, 2 backslash,
 * 3 control, 4 non-ASCII. */
static const uint8_t str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Non-zero when any byte of x is '"', '\\', < 0x20 or >= 0x80. */
static inline uint64_t swar_special(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"');
    uint64_t b = x ^ (ONES * '\\');
    uint64_t r = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x) | x;
    return r & HIGHS;
}

/* Reads 4 hex digits at p (caller checked 4 bytes are available). */
static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = pt_hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/*
 * Validates one UTF-8 sequence starting at p (first byte >= 0x80). Returns its
 * length, or 0 if invalid (Unicode 3.9 table D-7 well-formed sequences).
 */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/*
 * Scans a string whose opening quote is at lx->p. On success fills t->s/len,
 * sets F_ESC if needed and leaves lx->p after the closing quote.
 */
static int scan_string(pt_jlex_t *lx, pt_jtok_t *t)
{
    const char *start = lx->p + 1;
    const char *p = start;
    const char *end = lx->end;
    uint8_t flags = 0;
    for (;;) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (swar_special(x))
                break;
            p += 8;
        }
        while (p < end && str_class[(unsigned char)*p] == 0)
            p++;
        if (p >= end)
            return fail_neg(lx, lx->p, "unterminated string");
        switch (str_class[(unsigned char)*p]) {
        case 1:
            t->s = start;
            t->len = (size_t)(p - start);
            t->flags = flags;
            lx->p = p + 1;
            return 0;
        case 2: {
            flags |= PT_JTOK_F_ESC;
            if (end - p < 2)
                return fail_neg(lx, p, "unterminated string");
            char e = p[1];
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                e == 'r' || e == 't') {
                p += 2;
                break;
            }
            if (e != 'u')
                return fail_neg(lx, p, "invalid escape in string");
            if (end - p < 6)
                return fail_neg(lx, p, "invalid \\u escape");
            int u = hex4(p + 2);
            if (u < 0)
                return fail_neg(lx, p, "invalid \\u escape");
            if (u >= 0xDC00 && u <= 0xDFFF)
                return fail_neg(lx, p, "lone low surrogate in \\u escape");
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
                    return fail_neg(lx, p, "lone high surrogate in \\u escape");
                int lo = hex4(p + 8);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail_neg(lx, p, "lone high surrogate in \\u escape");
                p += 12;
            } else {
                p += 6;
            }
            break;
        }
        case 3:
            return fail_neg(lx, p, "control character in string");
        default: {
            size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return fail_neg(lx, p, "invalid UTF-8 in string");
            p += n;
            break;
        }
        }
    }
}

static void put_utf8(char **o, uint32_t cp)
{
    unsigned char *q = (unsigned char *)*o;
    if (cp < 0x80) {
        *q++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *q++ = (unsigned char)(0xC0 | (cp >> 6));
        *q++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *q++ = (unsigned char)(0xE0 | (cp >> 12));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *q++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *q++ = (unsigned char)(0xF0 | (cp >> 18));
        *q++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *q++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = (char *)q;
}

/*
 * Decodes one unit of a validated string at *pp: either a plain byte run up to
 * the next backslash (copied) or one escape. Shared by decode and compare.
 */
size_t pt_jstr_decode(const char *s, size_t len, char *out)
{
    const char *p = s, *end = s + len;
    char *o = out;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        if (bs == NULL) {
            memcpy(o, p, (size_t)(end - p));
            o += end - p;
            break;
        }
        memcpy(o, p, (size_t)(bs - p));
        o += bs - p;
        p = bs + 1;
        char e = *p++;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t u = (uint32_t)hex4(p);
            p += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                uint32_t lo = (uint32_t)hex4(p + 2);
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&o, u);
            break;
        }
        default: *o++ = e; break; /* " \ / */
        }
    }
    return (size_t)(o - out);
}

/* Streams the decoded bytes of a validated string, a few at a time. */
typedef struct {
    const char *p, *end;
    char pend[4];
    uint8_t pend_len, pend_pos;
} jstr_iter_t;

static int jstr_iter_next(jstr_iter_t *it)
{
    if (it->pend_pos < it->pend_len)
        return (unsigned char)it->pend[it->pend_pos++];
    if (it->p >= it->end)
        return -1;
    if (*it->p != '\\')
        return (unsigned char)*it->p++;
    /* decode one escape (at most 12 raw bytes) into pend */
    const char *q = it->p;
    size_t n = 2;
    if (q[1] == 'u')
        n = (hex4(q + 2) >= 0xD800 && hex4(q + 2) <= 0xDBFF) ? 12 : 6;
    char *o = it->pend;
    size_t dn = pt_jstr_decode(q, n, o);
    it->p += n;
    it->pend_len = (uint8_t)dn;
    it->pend_pos = 1;
    return (unsigned char)it->pend[0];
}

bool pt_jstr_eq(const char *s, size_t len, bool esc, const char *b, size_t blen)
{
    if (!esc)
        return len == blen && memcmp(s, b, len) == 0;
    if (blen > len)
        return false; /* decoding never grows the text */
    jstr_iter_t it = {s, s + len, {0}, 0, 0};
    for (size_t i = 0; i < blen; i++)
        if (jstr_iter_next(&it) != (unsigned char)b[i])
            return false;
    return jstr_iter_next(&it) < 0;
}

static bool jstr_eq2(const char *a, size_t alen, bool aesc, const char *b, size_t blen, bool besc)
{
    if (!aesc)
        return pt_jstr_eq(b, blen, besc, a, alen);
    if (!besc)
        return pt_jstr_eq(a, alen, aesc, b, blen);
    jstr_iter_t ia = {a, a + alen, {0}, 0, 0}, ib = {b, b + blen, {0}, 0, 0};
    for (;;) {
        int x = jstr_iter_next(&ia), y = jstr_iter_next(&ib);
        if (x != y)
            return false;
        if (x < 0)
            return true;
    }
}

/* ------------------------------------------------------------- key set */

void pt_jkeyset_init(pt_jkeyset_t *ks, const pt_allocator_t *a)
{
    ks->a = a != NULL ? a : pt_allocator_default();
    ks->slots = NULL;
    ks->cap = 0;
    ks->cnt = 0;
    ks->seed = 0;
}

void pt_jkeyset_dispose(pt_jkeyset_t *ks)
{
    if (ks->slots != NULL)
        ks->a->free(ks->a->ud, ks->slots);
    ks->slots = NULL;
    ks->cap = ks->cnt = 0;
}

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint32_t key_hash(uint64_t seed, uint32_t obj, const char *s, size_t len, bool esc)
{
    uint64_t h = seed ^ ((uint64_t)obj * 0x9E3779B97F4A7C15ull);
    if (!esc) {
        while (len >= 8) {
            uint64_t x;
            memcpy(&x, s, 8);
            h = mix64(h ^ x) + 0x9E3779B97F4A7C15ull;
            s += 8;
            len -= 8;
        }
        uint64_t x = 0;
        memcpy(&x, s, len);
        h = mix64(h ^ x ^ ((uint64_t)len << 56));
    } else {
        /* Hash the decoded bytes in the same 8-byte blocks as above. */
        jstr_iter_t it = {s, s + len, {0}, 0, 0};
        int c;
        uint64_t x = 0;
        size_t n = 0;
        while ((c = jstr_iter_next(&it)) >= 0) {
            x |= (uint64_t)c << (8 * (n & 7));
            n++;
            if ((n & 7) == 0) {
                h = mix64(h ^ x) + 0x9E3779B97F4A7C15ull;
                x = 0;
            }
        }
        h = mix64(h ^ x ^ ((uint64_t)(n & 7) << 56));
    }
    uint32_t r = (uint32_t)(h >> 32);
    return r != 0 ? r : 1;
}

static int keyset_grow(pt_jkeyset_t *ks)
{
    uint32_t ncap = ks->cap ? ks->cap * 2 : 64;
    if (ncap == 0 || ncap > (UINT32_MAX >> 2))
        return PT_XERR_LIMIT;
    struct pt_jkey_slot *ns = ks->a->alloc(ks->a->ud, (size_t)ncap * sizeof(*ns));
    if (ns == NULL)
        return PT_XERR_NOMEM;
    memset(ns, 0, (size_t)ncap * sizeof(*ns));
    if (ks->seed == 0)
        ks->seed = mix64((uint64_t)(uintptr_t)ns) | 1;
    for (uint32_t i = 0; i < ks->cap; i++) {
        struct pt_jkey_slot *o = &ks->slots[i];
        if (o->hash == 0)
            continue;
        uint32_t j = o->hash & (ncap - 1);
        while (ns[j].hash != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *o;
    }
    if (ks->slots != NULL)
        ks->a->free(ks->a->ud, ks->slots);
    ks->slots = ns;
    ks->cap = ncap;
    return 0;
}

/* Inserts the key; returns 0, 1 if it is a duplicate, or a negative error. */
static int keyset_add(pt_jkeyset_t *ks, const char *base, uint32_t obj, const char *s,
                      size_t len, bool esc)
{
    if ((ks->cnt + 1) * 2 > ks->cap) {
        int rc = keyset_grow(ks);
        if (rc != 0)
            return rc;
    }
    size_t off = (size_t)(s - base);
    if (off > UINT32_MAX || len > 0x7FFFFFFF)
        return PT_XERR_LIMIT;
    uint32_t h = key_hash(ks->seed, obj, s, len, esc);
    uint32_t mask = ks->cap - 1;
    uint32_t j = h & mask;
    while (ks->slots[j].hash != 0) {
        struct pt_jkey_slot *e = &ks->slots[j];
        if (e->hash == h && e->obj == obj &&
            jstr_eq2(base + e->off, e->len & 0x7FFFFFFF, (e->len >> 31) != 0, s, len, esc))
            return 1;
        j = (j + 1) & mask;
    }
    ks->slots[j].hash = h;
    ks->slots[j].obj = obj;
    ks->slots[j].off = (uint32_t)off;
    ks->slots[j].len = (uint32_t)len | (esc ? 0x80000000u : 0);
    ks->cnt++;
    return 0;
}

/* ------------------------------------------------------------- numbers */

static int scan_number(pt_jlex_t *lx, pt_jtok_t *t)
{
    const char *p = lx->p, *end = lx->end;
    uint8_t flags = 0;
    if (*p == '-') {
        flags |= PT_JTOK_F_NEG;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return fail_neg(lx, lx->p, "invalid number");
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return fail_neg(lx, lx->p, "leading zero in number");
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        flags |= PT_JTOK_F_FRAC;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail_neg(lx, lx->p, "invalid number: digit expected after '.'");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        flags |= PT_JTOK_F_EXP;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail_neg(lx, lx->p, "invalid number: digit expected in exponent");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    t->s = lx->p;
    t->len = (size_t)(p - lx->p);
    t->flags = flags;
    lx->p = p;
    return 0;
}

/* --------------------------------------------------------------- tokens */

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static inline bool top_is_obj(const pt_jlex_t *lx)
{
    uint32_t i = lx->depth - 1;
    return (lx->is_obj[i >> 6] >> (i & 63)) & 1;
}

static int open_container(pt_jlex_t *lx, pt_jtok_t *t, bool obj)
{
    if (lx->depth >= lx->max_depth)
        return fail_at(lx, lx->p, PT_XERR_LIMIT, "nesting too deep");
    uint32_t i = lx->depth++;
    uint64_t bit = 1ull << (i & 63);
    if (obj) {
        lx->is_obj[i >> 6] |= bit;
        lx->obj_id[i] = lx->keys != NULL ? lx->next_obj_id++ : 0;
        if (lx->next_obj_id == 0)
            lx->next_obj_id = 1;
        lx->state = ST_OBJ_FIRST;
        t->type = PT_JTOK_OBJ_BEGIN;
    } else {
        lx->is_obj[i >> 6] &= ~bit;
        lx->state = ST_ARR_FIRST;
        t->type = PT_JTOK_ARR_BEGIN;
    }
    lx->p++;
    return t->type;
}

static int close_container(pt_jlex_t *lx, pt_jtok_t *t)
{
    t->type = top_is_obj(lx) ? PT_JTOK_OBJ_END : PT_JTOK_ARR_END;
    lx->depth--;
    lx->p++;
    lx->state = ST_AFTER_VALUE;
    return t->type;
}

static int scan_value(pt_jlex_t *lx, pt_jtok_t *t)
{
    const char *p = lx->p;
    const char *end = lx->end;
    t->flags = 0;
    t->off = (size_t)(p - lx->begin);
    switch (*p) {
    case '{':
        return open_container(lx, t, true);
    case '[':
        return open_container(lx, t, false);
    case '"':
        if (scan_string(lx, t) != 0)
            return PT_JTOK_ERROR;
        lx->state = ST_AFTER_VALUE;
        return t->type = PT_JTOK_STRING;
    case 't':
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            t->s = p;
            t->len = 4;
            lx->p = p + 4;
            lx->state = ST_AFTER_VALUE;
            return t->type = PT_JTOK_TRUE;
        }
        break;
    case 'f':
        if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            t->s = p;
            t->len = 5;
            lx->p = p + 5;
            lx->state = ST_AFTER_VALUE;
            return t->type = PT_JTOK_FALSE;
        }
        break;
    case 'n':
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            t->s = p;
            t->len = 4;
            lx->p = p + 4;
            lx->state = ST_AFTER_VALUE;
            return t->type = PT_JTOK_NULL;
        }
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            if (scan_number(lx, t) != 0)
                return PT_JTOK_ERROR;
            lx->state = ST_AFTER_VALUE;
            return t->type = PT_JTOK_NUMBER;
        }
        break;
    }
    return fail(lx, p, "unexpected character, expected a value");
}

static int scan_key(pt_jlex_t *lx, pt_jtok_t *t)
{
    if (*lx->p != '"')
        return fail(lx, lx->p, "expected a string key");
    t->off = (size_t)(lx->p - lx->begin);
    if (scan_string(lx, t) != 0)
        return PT_JTOK_ERROR;
    const char *p = skip_ws(lx->p, lx->end);
    if (p >= lx->end || *p != ':')
        return fail(lx, p, "expected ':' after object key");
    lx->p = p + 1;
    lx->state = ST_VALUE;
    uint32_t obj = lx->obj_id[lx->depth - 1];
    if (obj != 0 && lx->keys != NULL) {
        int rc = keyset_add(lx->keys, lx->begin, obj, t->s, t->len, (t->flags & PT_JTOK_F_ESC) != 0);
        if (rc == 1)
            return fail_at(lx, lx->begin + t->off, PT_XERR_INVALID, "duplicate key in object");
        if (rc < 0)
            return fail_at(lx, lx->begin + t->off, rc,
                           rc == PT_XERR_NOMEM ? "out of memory" : "too many keys");
    }
    return t->type = PT_JTOK_KEY;
}

int pt_jlex_next(pt_jlex_t *lx, pt_jtok_t *t)
{
    const char *p = skip_ws(lx->p, lx->end);
    lx->p = p;
    switch (lx->state) {
    case ST_VALUE:
        if (p >= lx->end)
            return fail(lx, p, lx->depth == 0 && p == lx->begin ? "empty input"
                                                                 : "unexpected end of input");
        return scan_value(lx, t);
    case ST_ARR_FIRST:
        if (p >= lx->end)
            return fail(lx, p, "unexpected end of input");
        if (*p == ']') {
            t->off = (size_t)(p - lx->begin);
            return close_container(lx, t);
        }
        return scan_value(lx, t);
    case ST_OBJ_FIRST:
        if (p >= lx->end)
            return fail(lx, p, "unexpected end of input");
        if (*p == '}') {
            t->off = (size_t)(p - lx->begin);
            return close_container(lx, t);
        }
        return scan_key(lx, t);
    case ST_OBJ_KEY:
        if (p >= lx->end)
            return fail(lx, p, "unexpected end of input");
        if (*p == '}')
            return fail(lx, p, "trailing comma in object");
        return scan_key(lx, t);
    case ST_AFTER_VALUE:
        if (lx->depth == 0) {
            if (p < lx->end)
                return fail(lx, p, "unexpected data after the top-level value");
            lx->state = ST_DONE;
            t->off = (size_t)(p - lx->begin);
            t->s = p;
            t->len = 0;
            return t->type = PT_JTOK_EOF;
        }
        if (p >= lx->end)
            return fail(lx, p, "unexpected end of input");
        t->off = (size_t)(p - lx->begin);
        if (*p == ',') {
            p = skip_ws(p + 1, lx->end);
            lx->p = p;
            if (top_is_obj(lx)) {
                lx->state = ST_OBJ_KEY;
                if (p < lx->end && *p == '}')
                    return fail(lx, p, "trailing comma in object");
                if (p >= lx->end)
                    return fail(lx, p, "unexpected end of input");
                return scan_key(lx, t);
            }
            if (p < lx->end && *p == ']')
                return fail(lx, p, "trailing comma in array");
            lx->state = ST_VALUE;
            if (p >= lx->end)
                return fail(lx, p, "unexpected end of input");
            return scan_value(lx, t);
        }
        if (*p == '}' && top_is_obj(lx))
            return close_container(lx, t);
        if (*p == ']' && !top_is_obj(lx))
            return close_container(lx, t);
        return fail(lx, p, top_is_obj(lx) ? "expected ',' or '}'" : "expected ',' or ']'");
    case ST_DONE:
        t->off = (size_t)(p - lx->begin);
        t->s = p;
        t->len = 0;
        return t->type = PT_JTOK_EOF;
    default:
        return PT_JTOK_ERROR;
    }
}

int pt_jlex_skip(pt_jlex_t *lx, const pt_jtok_t *first)
{
    if (first->type != PT_JTOK_OBJ_BEGIN && first->type != PT_JTOK_ARR_BEGIN)
        return 0;
    uint32_t target = lx->depth - 1;
    pt_jtok_t t;
    while (lx->depth > target) {
        if (pt_jlex_next(lx, &t) == PT_JTOK_ERROR)
            return -1;
    }
    return 0;
}
