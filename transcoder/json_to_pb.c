/*
 * json_to_pb.c -- proto3 JSON -> protobuf wire bytes, driven by descriptors.
 *
 * One pass over the JSON text with the strict pull lexer (json_lex.c); wire
 * bytes are written straight into the caller's pt_xbuf_t. Nothing is
 * allocated per field: the output buffer, a fixup array, two scratch buffers
 * and a bitmap stack all grow geometrically and are reused for the whole call.
 *
 * NESTED LENGTHS. A nested message's length is only known after its content
 * is written. We reserve a fixed 5-byte slot for each length (a message is
 * at most 2^32-1 bytes), record the slot in a fixup array (in document order)
 * and, when the region closes, compute its final length: its raw length minus
 * the bytes its own nested slots will lose when compacted (tracked with one
 * running "shrink" counter). After the whole message is written, a single
 * left-to-right pass writes each minimal varint and slides the bytes between
 * slots down. Total cost O(output + regions), whatever the depth, where
 * "write the child then shift it" costs O(output x depth) and a two-pass size
 * computation would parse the JSON twice. The output is canonical (minimal
 * varints), so it is byte-identical to libprotobuf's serialization for the
 * same field order.
 *
 * RECURSION. The converter is recursive descent, but every level corresponds
 * to an open JSON container, and the lexer refuses nesting beyond
 * 2 * max_depth + 2 containers before any recursion happens (max_depth is
 * capped at PT_JSON_MAX_DEPTH_CAP); message nesting itself is limited to
 * max_depth. A 100k-level bomb fails in the lexer after a few hundred bytes.
 * Stack use is a few hundred bytes per level.
 *
 * PATHS. Each recursive call has a small frame on the C stack linked to its
 * parent (field key as written, array index or map key). Rendering the path
 * happens only when an error is reported, so the happy path pays nothing.
 *
 * DUPLICATES (SECURITY-CASES JP-4): message objects use a per-message "seen"
 * bitmap indexed by field (which also catches a field given under both its
 * proto name and its json_name); every other object (maps, Struct, objects
 * skipped as unknown) is checked by the lexer's key set.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_lex.h"
#include "portico/transcoder/json.h"
#include "portico/transcoder/wkt.h"

/* Positive return: a mapping error was recorded (collect mode) and the value
 * consumed; the caller carries on. */
#define SOFT 1
/* Positive return: the value was dropped on purpose (unknown enum name with
 * ignore_unknown). */
#define SKIPPED 2

/* conv_single flags */
#define F_NOTAG 0x01 /* packed element: value only */
#define F_FORCE 0x02 /* write even a default value (map entries, bindings) */

/* Synthetic token flag: text from a binding, read as the value it spells. */
#define PT_JTOK_F_TEXT 0x40

#define SLOT 5 /* bytes reserved for a nested length */
#define MAX_BIND_SEGS 32

enum { FR_FIELD, FR_INDEX, FR_MAPKEY, FR_NAME, FR_TEXTKEY };

typedef struct jframe {
    const struct jframe *up;
    const char *s;
    size_t len; /* or the index for FR_INDEX */
    const pt_fielddesc_t *fd;
    uint8_t kind;
    bool esc;
} jframe_t;

typedef struct fixup {
    size_t pos; /* offset of the 5-byte slot in out->data */
    size_t len; /* final content length */
} fixup_t;

typedef struct region {
    size_t tag_pos, start, fix, shrink0;
} region_t;

typedef struct rbind {
    const pt_json_binding_t *b;
    const pt_fielddesc_t *chain[MAX_BIND_SEGS];
    uint8_t n;
    bool ok;
} rbind_t;

typedef struct jctx {
    const pt_descpool_t *pool;
    const pt_allocator_t *a;
    pt_json_opts_t o;
    pt_xbuf_t *out;
    size_t out_start;
    fixup_t *fx;
    size_t fx_cnt, fx_cap;
    size_t shrink;
    pt_xbuf_t tmp, tmp2;
    uint64_t *words;
    size_t words_len, words_cap;
    unsigned depth, max_depth;
    /* errors */
    pt_xerr_t *err;
    pt_xerrs_t *errs;
    bool collect;
    int first_code;
    size_t nerr;
    /* bindings, for required-field checks */
    const rbind_t *rb;
    size_t nrb;
    pt_jkeyset_t keys;
    pt_jlex_t lx;
} jctx_t;

/* ================================================================ errors */

/* Renders the frame chain into out[PT_XERR_PATH_MAX], right to left, keeping
 * the innermost part and marking truncation with a leading "...". */
static void render_path(const jframe_t *f, char *out)
{
    char buf[PT_XERR_PATH_MAX * 2];
    size_t pos = sizeof(buf);
    bool trunc = false;
    for (; f != NULL && !trunc; f = f->up) {
        char seg[PT_XERR_PATH_MAX];
        size_t n = 0;
        switch (f->kind) {
        case FR_INDEX:
            n = (size_t)snprintf(seg, sizeof(seg), "[%zu]", f->len);
            break;
        case FR_FIELD:
        case FR_NAME:
            seg[n++] = '.';
            for (size_t i = 0; i < f->len && n < sizeof(seg) - 1; i++)
                seg[n++] = f->s[i];
            break;
        default: /* map keys: ["key"], raw JSON text is already escaped */
            seg[n++] = '[';
            seg[n++] = '"';
            for (size_t i = 0; i < f->len && n < sizeof(seg) - 8; i++) {
                unsigned char ch = (unsigned char)f->s[i];
                if (f->kind == FR_TEXTKEY && (ch == '"' || ch == '\\')) {
                    seg[n++] = '\\';
                    seg[n++] = (char)ch;
                } else if (f->kind == FR_TEXTKEY && ch < 0x20) {
                    n += (size_t)snprintf(seg + n, 8, "\\u%04x", ch);
                } else {
                    seg[n++] = (char)ch;
                }
            }
            seg[n++] = '"';
            seg[n++] = ']';
            break;
        }
        if (n > sizeof(seg) - 1)
            n = sizeof(seg) - 1;
        if (n > pos) {
            trunc = true;
            break;
        }
        pos -= n;
        memcpy(buf + pos, seg, n);
    }
    const char *p = buf + pos;
    size_t n = sizeof(buf) - pos;
    if (n > 0 && *p == '.') {
        p++;
        n--;
    }
    if (trunc || n > PT_XERR_PATH_MAX - 1) {
        size_t keep = PT_XERR_PATH_MAX - 4;
        if (n > keep) {
            p += n - keep;
            n = keep;
        }
        memcpy(out, "...", 3);
        memcpy(out + 3, p, n);
        out[3 + n] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Records an error. Returns the code (negative). */
static int record(jctx_t *c, const jframe_t *f, int code, const char *fmt, va_list ap)
{
    char path[PT_XERR_PATH_MAX];
    render_path(f, path);
    if (c->nerr == 0)
        c->first_code = code;
    c->nerr++;
    pt_xerr_t e;
    pt_xerr_vset(&e, code, path, fmt, ap);
    if (c->errs != NULL)
        pt_xerrs_push(c->errs, &e);
    if (c->err != NULL && c->nerr == 1)
        *c->err = e;
    return code;
}

/* A fatal error: stops the conversion. */
static int fatal(jctx_t *c, const jframe_t *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fatal(jctx_t *c, const jframe_t *f, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(c, f, code, fmt, ap);
    va_end(ap);
    return code;
}

static int lexerr(jctx_t *c)
{
    pt_jlex_t *lx = &c->lx;
    int code = lx->err_code ? lx->err_code : PT_XERR_INVALID;
    if (code == PT_XERR_NOMEM)
        return fatal(c, NULL, code, "out of memory");
    return fatal(c, NULL, code, "invalid JSON at offset %zu: %s", lx->err_pos,
                 lx->err_msg ? lx->err_msg : "syntax error");
}

/*
 * A mapping error about the value starting with token `t`. In collect mode
 * the value is skipped and SOFT returned, so the caller goes on; otherwise
 * the error code is returned.
 */
static int bad(jctx_t *c, const jframe_t *f, const pt_jtok_t *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int bad(jctx_t *c, const jframe_t *f, const pt_jtok_t *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(c, f, code, fmt, ap);
    va_end(ap);
    if (!c->collect || c->nerr >= PT_XERRS_MAX)
        return code;
    if (t != NULL && !(t->flags & PT_JTOK_F_TEXT) && pt_jlex_skip(&c->lx, t) != 0)
        return lexerr(c);
    return SOFT;
}

static const char *tokname(const pt_jtok_t *t)
{
    switch (t->type) {
    case PT_JTOK_OBJ_BEGIN: return "object";
    case PT_JTOK_ARR_BEGIN: return "array";
    case PT_JTOK_STRING: return "string";
    case PT_JTOK_NUMBER: return "number";
    case PT_JTOK_TRUE:
    case PT_JTOK_FALSE: return "bool";
    case PT_JTOK_NULL: return "null";
    default: return "token";
    }
}

static int expected(jctx_t *c, const jframe_t *f, const pt_jtok_t *t, const char *what)
{
    if (t->type == PT_JTOK_STRING || t->type == PT_JTOK_NUMBER) {
        int n = t->len > 40 ? 40 : (int)t->len;
        const char *q = t->type == PT_JTOK_STRING ? "\"" : "";
        return bad(c, f, t, PT_XERR_INVALID, "expected %s, got %s %s%.*s%s%s", what, tokname(t), q,
                   n, t->s, t->len > 40 ? "..." : "", q);
    }
    return bad(c, f, t, PT_XERR_INVALID, "expected %s, got %s", what, tokname(t));
}

/* ================================================================ output */

static inline size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t enc_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reserves `n` bytes and returns a pointer to the write position (NULL on
 * failure; the code is in *rc). */
static inline uint8_t *wptr(jctx_t *c, size_t n, int *rc)
{
    if ((*rc = pt_xbuf_reserve(c->out, n)) != 0)
        return NULL;
    return c->out->data + c->out->len;
}

static int outerr(jctx_t *c, int rc)
{
    if (rc == PT_XERR_NOMEM)
        return fatal(c, NULL, rc, "out of memory");
    return fatal(c, NULL, rc, "output size limit exceeded");
}

static inline uint64_t tag_of(uint32_t number, unsigned wt) { return ((uint64_t)number << 3) | wt; }

static int put_tag_varint(jctx_t *c, uint32_t number, unsigned wt, uint64_t v, bool notag)
{
    int rc;
    uint8_t *p = wptr(c, 20, &rc);
    if (p == NULL)
        return outerr(c, rc);
    size_t n = notag ? 0 : enc_varint(p, tag_of(number, wt));
    n += enc_varint(p + n, v);
    c->out->len += n;
    return 0;
}

static int put_tag_fixed(jctx_t *c, uint32_t number, unsigned wt, uint64_t v, bool notag)
{
    int rc;
    uint8_t *p = wptr(c, 18, &rc);
    if (p == NULL)
        return outerr(c, rc);
    size_t n = notag ? 0 : enc_varint(p, tag_of(number, wt));
    size_t w = wt == PT_WT_I32 ? 4 : 8;
    for (size_t i = 0; i < w; i++)
        p[n + i] = (uint8_t)(v >> (8 * i));
    c->out->len += n + w;
    return 0;
}

static int put_bytes(jctx_t *c, uint32_t number, const void *s, size_t n)
{
    int rc;
    uint8_t *p = wptr(c, 20 + n, &rc);
    if (p == NULL)
        return outerr(c, rc);
    size_t k = enc_varint(p, tag_of(number, PT_WT_LEN));
    k += enc_varint(p + k, n);
    if (n != 0)
        memcpy(p + k, s, n);
    c->out->len += k + n;
    return 0;
}

static int region_open(jctx_t *c, uint32_t number, region_t *r)
{
    *r = (region_t){0}; /* defined even on failure (callers return then) */
    if (c->fx_cnt == c->fx_cap) {
        size_t ncap = c->fx_cap ? c->fx_cap * 2 : 32;
        fixup_t *nf = c->a->realloc(c->a->ud, c->fx, ncap * sizeof(*nf));
        if (nf == NULL)
            return fatal(c, NULL, PT_XERR_NOMEM, "out of memory");
        c->fx = nf;
        c->fx_cap = ncap;
    }
    int rc;
    uint8_t *p = wptr(c, 10 + SLOT, &rc);
    if (p == NULL)
        return outerr(c, rc);
    r->tag_pos = c->out->len;
    size_t n = enc_varint(p, tag_of(number, PT_WT_LEN));
    c->out->len += n;
    r->fix = c->fx_cnt;
    c->fx[c->fx_cnt].pos = c->out->len;
    c->fx[c->fx_cnt++].len = 0;
    c->out->len += SLOT;
    r->start = c->out->len;
    r->shrink0 = c->shrink;
    return 0;
}

static int region_close(jctx_t *c, const region_t *r)
{
    size_t len = c->out->len - r->start - (c->shrink - r->shrink0);
    if (len > UINT32_MAX)
        return fatal(c, NULL, PT_XERR_LIMIT, "message larger than 4 GiB");
    c->fx[r->fix].len = len;
    c->shrink += SLOT - varint_size(len);
    return 0;
}

/* Forgets a region and everything written after it began. */
static void region_cancel(jctx_t *c, const region_t *r)
{
    c->fx_cnt = r->fix;
    c->shrink = r->shrink0;
    c->out->len = r->tag_pos;
}

/* Writes the final varints and closes the gaps; see the header comment. */
static void compact(jctx_t *c)
{
    if (c->fx_cnt == 0)
        return;
    uint8_t *d = c->out->data;
    size_t r = c->fx[0].pos, w = r;
    for (size_t i = 0; i < c->fx_cnt; i++) {
        size_t pos = c->fx[i].pos;
        if (pos > r) {
            memmove(d + w, d + r, pos - r);
            w += pos - r;
        }
        w += enc_varint(d + w, c->fx[i].len);
        r = pos + SLOT;
    }
    size_t tail = c->out->len - r;
    if (tail != 0)
        memmove(d + w, d + r, tail);
    c->out->len = w + tail;
    c->fx_cnt = 0;
}

/* ================================================================ tokens */

static int next(jctx_t *c, pt_jtok_t *t)
{
    int ty = pt_jlex_next(&c->lx, t);
    return ty == PT_JTOK_ERROR ? lexerr(c) : 0;
}

/* The text of a string token, unescaped into `buf` if needed. */
static int tok_text(jctx_t *c, const pt_jtok_t *t, pt_xbuf_t *buf, const char **s, size_t *n)
{
    if (!(t->flags & PT_JTOK_F_ESC)) {
        *s = t->s;
        *n = t->len;
        return 0;
    }
    pt_xbuf_reset(buf);
    int rc = pt_xbuf_reserve(buf, t->len + 1);
    if (rc != 0)
        return fatal(c, NULL, rc, "out of memory");
    buf->len = pt_jstr_decode(t->s, t->len, (char *)buf->data);
    *s = (const char *)buf->data;
    *n = buf->len;
    return 0;
}

/* ================================================================ numbers */

/*
 * Parses JSON number text as an exact integer: digits D, fraction F and
 * exponent E are combined as D.F x 10^E, which must be a whole number
 * ("1e2" and "100.0" are 100; "1.5" is not an integer). Returns 0 with the
 * sign and magnitude, -1 when it is not a number / not an integer, -2 when
 * the magnitude does not fit 64 bits.
 */
static int parse_int_text(const char *s, size_t n, bool *neg, uint64_t *mag)
{
    const char *p = s, *end = s + n;
    *neg = false;
    if (p < end && *p == '-') {
        *neg = true;
        p++;
    }
    const char *ib = p;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
        return -1;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    const char *ie = p, *fb = p, *fe = p;
    if (p < end && *p == '.') {
        fb = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        fe = p;
        if (fe == fb)
            return -1;
    }
    long long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 100000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp = -exp;
    }
    if (p != end)
        return -1;
    /* significant digits: [ib,ie) then [fb,fe); skip leading zeros */
    char dig[64];
    size_t nd = 0, dropped = 0;
    bool big = false;
    for (const char *q = ib; q < fe; q++) {
        if (q == ie)
            q = fb;
        if (q >= fe)
            break;
        if (nd == 0 && *q == '0') {
            continue;
        }
        if (nd < sizeof(dig))
            dig[nd++] = *q;
        else if (*q == '0')
            dropped++; /* a zero past 64 digits: just a factor of 10 */
        else
            big = true;
    }
    /* A non-zero digit beyond 64 significant ones: either not an integer or
     * far beyond 64 bits; both are errors. */
    if (big)
        return -2;
    long long e = exp - (long long)(fe - fb) + (long long)dropped;
    while (nd > 0 && dig[nd - 1] == '0') {
        nd--;
        e++;
    }
    if (nd == 0) {
        *mag = 0;
        return 0;
    }
    if (e < 0)
        return -1;
    if ((long long)nd + e > 20)
        return -2;
    uint64_t v = 0;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d = (uint64_t)(dig[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    for (long long i = 0; i < e; i++) {
        if (v > UINT64_MAX / 10)
            return -2;
        v *= 10;
    }
    *mag = v;
    return 0;
}

static bool valid_number_text(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p == end;
}

enum { K_I32, K_U32, K_I64, K_U64 };
static const char *const kind_name[] = {"int32", "uint32", "int64", "uint64"};

/* Integer from a number token or a string holding a number. */
static int tok_int(jctx_t *c, const jframe_t *f, const pt_jtok_t *t, int kind, uint64_t *out)
{
    const char *s;
    size_t n;
    if (t->type == PT_JTOK_NUMBER) {
        s = t->s;
        n = t->len;
    } else if (t->type == PT_JTOK_STRING) {
        int rc = tok_text(c, t, &c->tmp, &s, &n);
        if (rc != 0)
            return rc;
    } else {
        return expected(c, f, t, kind_name[kind]);
    }
    bool neg;
    uint64_t mag;
    int r = parse_int_text(s, n, &neg, &mag);
    int pn = n > 40 ? 40 : (int)n;
    if (r == -1)
        return bad(c, f, t, PT_XERR_INVALID, "invalid %s value: %.*s%s", kind_name[kind], pn, s,
                   n > 40 ? "..." : "");
    bool ok = r == 0;
    if (ok) {
        switch (kind) {
        case K_I32: ok = neg ? mag <= 2147483648ull : mag <= 2147483647ull; break;
        case K_U32: ok = (!neg || mag == 0) && mag <= 4294967295ull; break;
        case K_I64: ok = neg ? mag <= 9223372036854775808ull : mag <= 9223372036854775807ull; break;
        default: ok = !neg || mag == 0; break;
        }
    }
    if (!ok)
        return bad(c, f, t, PT_XERR_INVALID, "value %.*s%s out of range for %s", pn, s,
                   n > 40 ? "..." : "", kind_name[kind]);
    *out = neg ? (uint64_t)0 - mag : mag;
    return 0;
}

/* Double from a number token, a string holding a number, or the strings
 * "NaN", "Infinity", "-Infinity". */
static int tok_double(jctx_t *c, const jframe_t *f, const pt_jtok_t *t, bool is_float, double *out)
{
    const char *what = is_float ? "float" : "double";
    const char *s;
    size_t n;
    if (t->type == PT_JTOK_NUMBER) {
        s = t->s;
        n = t->len;
    } else if (t->type == PT_JTOK_STRING) {
        int rc = tok_text(c, t, &c->tmp, &s, &n);
        if (rc != 0)
            return rc;
        if (n == 3 && memcmp(s, "NaN", 3) == 0) {
            *out = NAN;
            return 0;
        }
        if (n == 8 && memcmp(s, "Infinity", 8) == 0) {
            *out = INFINITY;
            return 0;
        }
        if (n == 9 && memcmp(s, "-Infinity", 9) == 0) {
            *out = -INFINITY;
            return 0;
        }
        if (!valid_number_text(s, n)) {
            int pn = n > 40 ? 40 : (int)n;
            return bad(c, f, t, PT_XERR_INVALID, "invalid %s value: \"%.*s%s\"", what, pn, s,
                       n > 40 ? "..." : "");
        }
    } else {
        return expected(c, f, t, what);
    }
    /* strtod needs a NUL-terminated copy; the C locale is assumed. */
    char small[64];
    char *z = small;
    if (n >= sizeof(small)) {
        pt_xbuf_reset(&c->tmp2);
        int rc = pt_xbuf_reserve(&c->tmp2, n + 1);
        if (rc != 0)
            return fatal(c, NULL, rc, "out of memory");
        z = (char *)c->tmp2.data;
    }
    memcpy(z, s, n);
    z[n] = '\0';
    double v = strtod(z, NULL);
    int pn = n > 40 ? 40 : (int)n;
    if (isinf(v) || (is_float && fabs(v) > FLT_MAX))
        return bad(c, f, t, PT_XERR_INVALID, "value %.*s%s out of range for %s", pn, z,
                   n > 40 ? "..." : "", what);
    *out = v;
    return 0;
}

/* ================================================================ fields */

static int conv_message(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f);
static int conv_single(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f,
                       unsigned flags);

static bool is_null_value_enum(const pt_fielddesc_t *fd)
{
    return fd->type == PT_FT_ENUM && fd->enumdesc != NULL &&
           strcmp(fd->enumdesc->full_name, "google.protobuf.NullValue") == 0;
}

/* True when JSON null is a value of this (singular) field rather than "absent". */
static bool null_is_value(const pt_fielddesc_t *fd)
{
    if (fd->type == PT_FT_MESSAGE && fd->message != NULL && fd->message->wkt == PT_WKT_VALUE)
        return true;
    return is_null_value_enum(fd);
}

static bool packable(uint8_t type)
{
    return type != PT_FT_STRING && type != PT_FT_BYTES && type != PT_FT_MESSAGE &&
           type != PT_FT_GROUP;
}

static int conv_enum(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f,
                     int32_t *out)
{
    const pt_enumdesc_t *e = fd->enumdesc;
    if (t->type == PT_JTOK_NULL && is_null_value_enum(fd)) {
        *out = 0;
        return 0;
    }
    if (t->type == PT_JTOK_STRING) {
        const char *s;
        size_t n;
        int rc = tok_text(c, t, &c->tmp, &s, &n);
        if (rc != 0)
            return rc;
        const pt_enumvalue_t *v = pt_enumdesc_value_by_name(e, s, n, c->o.enum_case_insensitive);
        if (v != NULL) {
            *out = v->number;
            return 0;
        }
        bool neg;
        uint64_t mag;
        if (parse_int_text(s, n, &neg, &mag) == 0 &&
            (neg ? mag <= 2147483648ull : mag <= 2147483647ull)) {
            *out = (int32_t)(neg ? (uint32_t)0 - (uint32_t)mag : (uint32_t)mag);
            goto number;
        }
        if (c->o.ignore_unknown)
            return SKIPPED;
        int pn = n > 40 ? 40 : (int)n;
        return bad(c, f, t, PT_XERR_INVALID, "invalid value \"%.*s%s\" for enum %s", pn, s,
                   n > 40 ? "..." : "", e->full_name);
    }
    if (t->type == PT_JTOK_NUMBER) {
        uint64_t u;
        int rc = tok_int(c, f, t, K_I32, &u);
        if (rc != 0)
            return rc;
        *out = (int32_t)(uint32_t)u;
        goto number;
    }
    return expected(c, f, t, "enum name or number");
number:
    if (e->is_closed && pt_enumdesc_value_by_number(e, *out) == NULL) {
        if (c->o.ignore_unknown)
            return SKIPPED;
        return bad(c, f, t, PT_XERR_INVALID, "invalid value %d for enum %s", (int)*out,
                   e->full_name);
    }
    return 0;
}

/* Writes a string field from a token, unescaping straight into the output. */
static int put_string_tok(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, bool force)
{
    bool presence = force || fd->has_presence || fd->label == PT_LABEL_REPEATED;
    if (!(t->flags & PT_JTOK_F_ESC)) {
        if (t->len == 0 && !presence)
            return 0;
        return put_bytes(c, fd->number, t->s, t->len);
    }
    /* decode after a length slot sized for the raw length, then fix it up */
    int rc;
    uint8_t *p = wptr(c, 20 + t->len, &rc);
    if (p == NULL)
        return outerr(c, rc);
    size_t k = enc_varint(p, tag_of(fd->number, PT_WT_LEN));
    size_t vs = varint_size(t->len);
    size_t dn = pt_jstr_decode(t->s, t->len, (char *)p + k + vs);
    size_t vd = varint_size(dn);
    if (vd != vs)
        memmove(p + k + vd, p + k + vs, dn);
    enc_varint(p + k, dn);
    c->out->len += k + vd + dn;
    return 0;
}

/* string and bytes fields */
static int conv_string(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f,
                       unsigned flags)
{
    if (t->type != PT_JTOK_STRING)
        return expected(c, f, t, fd->type == PT_FT_STRING ? "string" : "base64 string");
    /* validate up front so errors carry the frame */
    if (fd->type == PT_FT_STRING && (t->flags & PT_JTOK_F_TEXT) &&
        !pt_utf8_valid((const uint8_t *)t->s, t->len))
        return bad(c, f, t, PT_XERR_INVALID, "invalid UTF-8 in string");
    if (fd->type == PT_FT_BYTES) {
        /* quick syntactic check of the alphabet to report with the path */
        const char *s;
        size_t n;
        int rc = tok_text(c, t, &c->tmp, &s, &n);
        if (rc != 0)
            return rc;
        pt_xbuf_reset(&c->tmp2);
        rc = pt_base64_decode(&c->tmp2, s, n);
        if (rc == PT_XERR_INVALID)
            return bad(c, f, t, rc, "invalid base64 in bytes field");
        if (rc != 0)
            return fatal(c, NULL, rc, "out of memory");
        bool presence = (flags & F_FORCE) || fd->has_presence || fd->label == PT_LABEL_REPEATED;
        if (c->tmp2.len == 0 && !presence)
            return 0;
        return put_bytes(c, fd->number, c->tmp2.data, c->tmp2.len);
    }
    return put_string_tok(c, fd, t, (flags & F_FORCE) != 0);
}

static int conv_single(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f,
                       unsigned flags)
{
    bool notag = (flags & F_NOTAG) != 0;
    bool presence = (flags & F_FORCE) || fd->has_presence || fd->label == PT_LABEL_REPEATED;
    uint64_t u = 0;
    int rc;
    switch (fd->type) {
    case PT_FT_MESSAGE: {
        region_t r;
        if ((rc = region_open(c, fd->number, &r)) != 0)
            return rc;
        int mrc = conv_message(c, fd->message, t, f);
        if (mrc < 0)
            return mrc;
        if ((rc = region_close(c, &r)) != 0)
            return rc;
        return mrc;
    }
    case PT_FT_GROUP: {
        if ((rc = put_tag_varint(c, 0, 0, tag_of(fd->number, PT_WT_SGROUP), true)) != 0)
            return rc;
        int mrc = conv_message(c, fd->message, t, f);
        if (mrc < 0)
            return mrc;
        if ((rc = put_tag_varint(c, 0, 0, tag_of(fd->number, PT_WT_EGROUP), true)) != 0)
            return rc;
        return mrc;
    }
    case PT_FT_STRING:
    case PT_FT_BYTES:
        return conv_string(c, fd, t, f, flags);
    case PT_FT_BOOL: {
        bool v;
        if (t->type == PT_JTOK_TRUE || t->type == PT_JTOK_FALSE) {
            v = t->type == PT_JTOK_TRUE;
        } else if (t->type == PT_JTOK_STRING && (t->flags & PT_JTOK_F_TEXT) &&
                   ((t->len == 4 && memcmp(t->s, "true", 4) == 0) ||
                    (t->len == 5 && memcmp(t->s, "false", 5) == 0))) {
            v = t->len == 4;
        } else {
            return expected(c, f, t, "bool");
        }
        if (!v && !presence)
            return 0;
        return put_tag_varint(c, fd->number, PT_WT_VARINT, v, notag);
    }
    case PT_FT_ENUM: {
        int32_t v = 0;
        rc = conv_enum(c, fd, t, f, &v);
        if (rc != 0)
            return rc;
        if (v == 0 && !presence)
            return 0;
        return put_tag_varint(c, fd->number, PT_WT_VARINT, (uint64_t)(int64_t)v, notag);
    }
    case PT_FT_INT32:
    case PT_FT_SINT32:
    case PT_FT_SFIXED32:
        if ((rc = tok_int(c, f, t, K_I32, &u)) != 0)
            return rc;
        if (u == 0 && !presence)
            return 0;
        if (fd->type == PT_FT_SFIXED32)
            return put_tag_fixed(c, fd->number, PT_WT_I32, u, notag);
        if (fd->type == PT_FT_SINT32) {
            uint32_t v = (uint32_t)u;
            u = (uint32_t)((v << 1) ^ (uint32_t)-(int32_t)(v >> 31));
        } else {
            u = (uint64_t)(int64_t)(int32_t)(uint32_t)u; /* negative int32: 10-byte varint */
        }
        return put_tag_varint(c, fd->number, PT_WT_VARINT, u, notag);
    case PT_FT_UINT32:
    case PT_FT_FIXED32:
        if ((rc = tok_int(c, f, t, K_U32, &u)) != 0)
            return rc;
        if (u == 0 && !presence)
            return 0;
        if (fd->type == PT_FT_FIXED32)
            return put_tag_fixed(c, fd->number, PT_WT_I32, u, notag);
        return put_tag_varint(c, fd->number, PT_WT_VARINT, u, notag);
    case PT_FT_INT64:
    case PT_FT_SINT64:
    case PT_FT_SFIXED64:
        if ((rc = tok_int(c, f, t, K_I64, &u)) != 0)
            return rc;
        if (u == 0 && !presence)
            return 0;
        if (fd->type == PT_FT_SFIXED64)
            return put_tag_fixed(c, fd->number, PT_WT_I64, u, notag);
        if (fd->type == PT_FT_SINT64) {
            /* zigzag without shifting a signed value: all ones when negative */
            u = (u << 1) ^ (0 - (u >> 63));
        }
        return put_tag_varint(c, fd->number, PT_WT_VARINT, u, notag);
    case PT_FT_UINT64:
    case PT_FT_FIXED64:
        if ((rc = tok_int(c, f, t, K_U64, &u)) != 0)
            return rc;
        if (u == 0 && !presence)
            return 0;
        if (fd->type == PT_FT_FIXED64)
            return put_tag_fixed(c, fd->number, PT_WT_I64, u, notag);
        return put_tag_varint(c, fd->number, PT_WT_VARINT, u, notag);
    case PT_FT_DOUBLE:
    case PT_FT_FLOAT: {
        double d = 0;
        bool is_float = fd->type == PT_FT_FLOAT;
        if ((rc = tok_double(c, f, t, is_float, &d)) != 0)
            return rc;
        /* proto3 implicit presence: +0.0 is the default; -0.0 is not. */
        if (d == 0 && !signbit(d) && !presence)
            return 0;
        if (is_float) {
            float fv = (float)d;
            uint32_t bits;
            memcpy(&bits, &fv, 4);
            return put_tag_fixed(c, fd->number, PT_WT_I32, bits, notag);
        }
        memcpy(&u, &d, 8);
        return put_tag_fixed(c, fd->number, PT_WT_I64, u, notag);
    }
    default:
        return fatal(c, f, PT_XERR_INVALID, "unsupported field type %u", fd->type);
    }
}

static const pt_fielddesc_t *field_no(const pt_msgdesc_t *m, uint32_t number)
{
    return m != NULL ? pt_msgdesc_field_by_number(m, number) : NULL;
}

static int conv_map(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f)
{
    if (t->type != PT_JTOK_OBJ_BEGIN)
        return expected(c, f, t, "object");
    const pt_fielddesc_t *kfd = field_no(fd->message, 1), *vfd = field_no(fd->message, 2);
    if (kfd == NULL || vfd == NULL)
        return fatal(c, f, PT_XERR_INVALID, "malformed map entry type");
    for (;;) {
        pt_jtok_t k, v;
        int rc = next(c, &k);
        if (rc != 0)
            return rc;
        if (k.type == PT_JTOK_OBJ_END)
            return 0;
        jframe_t kf = {f, k.s, k.len, NULL, FR_MAPKEY, (k.flags & PT_JTOK_F_ESC) != 0};
        if ((rc = next(c, &v)) != 0)
            return rc;
        if (v.type == PT_JTOK_NULL && !null_is_value(vfd)) {
            if ((rc = bad(c, &kf, &v, PT_XERR_INVALID, "null is not a valid map value")) < 0)
                return rc;
            continue;
        }
        region_t r;
        if ((rc = region_open(c, fd->number, &r)) != 0)
            return rc;
        /* the key: a JSON string read as the key type's text form */
        pt_jtok_t kt = k;
        kt.type = PT_JTOK_STRING;
        kt.flags = (uint8_t)((k.flags & PT_JTOK_F_ESC) | PT_JTOK_F_TEXT);
        int krc;
        if (kfd->type == PT_FT_STRING) {
            krc = conv_single(c, kfd, &kt, &kf, F_FORCE);
        } else {
            /* unescape first: bool/int key parsing reads the plain text */
            const char *s;
            size_t n;
            if ((rc = tok_text(c, &k, &c->tmp2, &s, &n)) != 0)
                return rc;
            /* tok_text may have used tmp2; copy to a stable spot only if
             * escaped (rare): tmp2 is not used again before conversion */
            kt.s = s;
            kt.len = n;
            kt.flags = PT_JTOK_F_TEXT;
            krc = conv_single(c, kfd, &kt, &kf, F_FORCE);
        }
        if (krc < 0)
            return krc;
        if (krc > 0) { /* bad key: drop the entry, skip its value */
            region_cancel(c, &r);
            if (pt_jlex_skip(&c->lx, &v) != 0)
                return lexerr(c);
            continue;
        }
        int vrc = conv_single(c, vfd, &v, &kf, F_FORCE);
        if (vrc < 0)
            return vrc;
        if (vrc > 0) {
            region_cancel(c, &r);
            continue;
        }
        if ((rc = region_close(c, &r)) != 0)
            return rc;
    }
}

static int conv_repeated(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t,
                         const jframe_t *f)
{
    if (t->type != PT_JTOK_ARR_BEGIN)
        return expected(c, f, t, "array");
    bool packed = fd->is_packed && packable(fd->type);
    region_t r;
    int rc;
    if (packed && (rc = region_open(c, fd->number, &r)) != 0)
        return rc;
    for (size_t i = 0;; i++) {
        pt_jtok_t e;
        if ((rc = next(c, &e)) != 0)
            return rc;
        if (e.type == PT_JTOK_ARR_END)
            break;
        jframe_t ef = {f, NULL, i, NULL, FR_INDEX, false};
        if (e.type == PT_JTOK_NULL && !null_is_value(fd)) {
            if ((rc = bad(c, &ef, &e, PT_XERR_INVALID, "null is not a valid array element")) < 0)
                return rc;
            continue;
        }
        rc = conv_single(c, fd, &e, &ef, packed ? F_NOTAG : 0);
        if (rc < 0)
            return rc;
    }
    if (packed) {
        if (c->out->len == r.start)
            region_cancel(c, &r); /* empty: no field at all */
        else if ((rc = region_close(c, &r)) != 0)
            return rc;
    }
    return 0;
}

static int conv_field(jctx_t *c, const pt_fielddesc_t *fd, const pt_jtok_t *t, const jframe_t *f)
{
    if (fd->is_map)
        return conv_map(c, fd, t, f);
    if (fd->label == PT_LABEL_REPEATED)
        return conv_repeated(c, fd, t, f);
    return conv_single(c, fd, t, f, 0);
}

/* ================================================================ messages */

/* Is field `fd` of the message at frame `f` set by a binding? */
static bool bound(const jctx_t *c, const jframe_t *f, const pt_fielddesc_t *fd)
{
    if (c->nrb == 0)
        return false;
    const pt_fielddesc_t *chain[MAX_BIND_SEGS];
    size_t n = 0;
    for (const jframe_t *q = f; q != NULL; q = q->up) {
        if (q->kind != FR_FIELD || q->fd == NULL || n + 1 >= MAX_BIND_SEGS)
            return false;
        chain[n++] = q->fd;
    }
    for (size_t i = 0; i < c->nrb; i++) {
        const rbind_t *b = &c->rb[i];
        if (!b->ok || b->n < n + 1 || b->chain[n] != fd)
            continue;
        size_t j = 0;
        while (j < n && b->chain[j] == chain[n - 1 - j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

static int push_words(jctx_t *c, size_t n, size_t *base)
{
    if (c->words_len + n > c->words_cap) {
        size_t ncap = c->words_cap ? c->words_cap * 2 : 64;
        while (ncap < c->words_len + n)
            ncap *= 2;
        uint64_t *nw = c->a->realloc(c->a->ud, c->words, ncap * sizeof(*nw));
        if (nw == NULL)
            return fatal(c, NULL, PT_XERR_NOMEM, "out of memory");
        c->words = nw;
        c->words_cap = ncap;
    }
    *base = c->words_len;
    memset(c->words + c->words_len, 0, n * sizeof(uint64_t));
    c->words_len += n;
    return 0;
}

static int check_required(jctx_t *c, const pt_msgdesc_t *m, const jframe_t *f,
                          const uint64_t *set)
{
    if (m->is_proto3)
        return 0;
    for (size_t i = 0; i < m->field_cnt; i++) {
        const pt_fielddesc_t *fd = &m->fields[i];
        if (fd->label != PT_LABEL_REQUIRED)
            continue;
        if (set != NULL && ((set[i >> 6] >> (i & 63)) & 1))
            continue;
        if (bound(c, f, fd))
            continue;
        jframe_t ff = {f, fd->json_name, strlen(fd->json_name), fd, FR_FIELD, false};
        int rc = bad(c, &ff, NULL, PT_XERR_INVALID, "missing required field");
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * The members of a JSON object for message `m`, after its '{'. With
 * `any_type`, the "@type" key is skipped (it was read ahead).
 */
static int conv_object_body(jctx_t *c, const pt_msgdesc_t *m, const jframe_t *f, bool any_type)
{
    size_t nw = (m->field_cnt + 63) / 64;
    size_t base = 0;
    int rc = push_words(c, 2 * nw + m->oneof_cnt, &base);
    if (rc != 0)
        return rc;
    for (;;) {
        pt_jtok_t k, v;
        if ((rc = next(c, &k)) != 0)
            return rc;
        if (k.type == PT_JTOK_OBJ_END)
            break;
        jframe_t kf = {f, k.s, k.len, NULL, FR_FIELD, (k.flags & PT_JTOK_F_ESC) != 0};
        const char *name = "";
        size_t nlen = 0;
        if ((rc = tok_text(c, &k, &c->tmp, &name, &nlen)) != 0)
            return rc;
        if (any_type && nlen == 5 && memcmp(name, "@type", 5) == 0) {
            if ((rc = next(c, &v)) != 0)
                return rc;
            if (pt_jlex_skip(&c->lx, &v) != 0)
                return lexerr(c);
            continue;
        }
        const pt_fielddesc_t *fd = pt_msgdesc_field_by_name(m, name, nlen);
        if ((rc = next(c, &v)) != 0)
            return rc;
        if (fd == NULL) {
            if (c->o.ignore_unknown) {
                if (pt_jlex_skip(&c->lx, &v) != 0)
                    return lexerr(c);
                continue;
            }
            if ((rc = bad(c, &kf, &v, PT_XERR_INVALID, "unknown field in %s", m->full_name)) < 0)
                return rc;
            continue;
        }
        kf.fd = fd;
        size_t idx = (size_t)(fd - m->fields);
        uint64_t bit = 1ull << (idx & 63);
        uint64_t *seen = c->words + base;
        if (seen[idx >> 6] & bit) {
            if ((rc = bad(c, &kf, &v, PT_XERR_INVALID,
                          "field given more than once (\"%s\" and \"%s\" name the same field)",
                          fd->name, fd->json_name)) < 0)
                return rc;
            continue;
        }
        seen[idx >> 6] |= bit;
        if (v.type == PT_JTOK_NULL && (fd->label == PT_LABEL_REPEATED || !null_is_value(fd)))
            continue; /* null: the field is absent */
        if (fd->oneof_index >= 0 && (size_t)fd->oneof_index < m->oneof_cnt) {
            uint64_t *slot = c->words + base + 2 * nw + fd->oneof_index;
            if (*slot != 0) {
                const pt_fielddesc_t *other = &m->fields[*slot - 1];
                if ((rc = bad(c, &kf, &v, PT_XERR_INVALID,
                              "oneof %s: fields \"%s\" and \"%s\" are both set",
                              m->oneof_names[fd->oneof_index], other->json_name,
                              fd->json_name)) < 0)
                    return rc;
                continue;
            }
            *slot = idx + 1;
        }
        rc = conv_field(c, fd, &v, &kf);
        if (rc < 0)
            return rc;
        c->words[base + nw + (idx >> 6)] |= bit;
    }
    rc = check_required(c, m, f, c->words + base + nw);
    c->words_len = base;
    return rc < 0 ? rc : 0;
}

static int conv_object(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    if (t->type != PT_JTOK_OBJ_BEGIN)
        return expected(c, f, t, "object");
    pt_jlex_nocheck(&c->lx);
    return conv_object_body(c, m, f, false);
}

/* Writes int64 seconds (field 1) and int32 nanos (field 2), defaults omitted. */
static int put_secs_nanos(jctx_t *c, int64_t secs, int32_t nanos)
{
    int rc = 0;
    if (secs != 0)
        rc = put_tag_varint(c, 1, PT_WT_VARINT, (uint64_t)secs, false);
    if (rc == 0 && nanos != 0)
        rc = put_tag_varint(c, 2, PT_WT_VARINT, (uint64_t)(int64_t)nanos, false);
    return rc;
}

/* A FieldMask path in JSON form: dot-separated lowerCamelCase identifiers
 * (ASCII letters and digits, not starting with a digit). */
static bool fieldmask_path_ok(const char *s, size_t n)
{
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (seg_start)
                return false;
            seg_start = true;
            continue;
        }
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool digit = ch >= '0' && ch <= '9';
        if (!alpha && !(digit && !seg_start))
            return false;
        seg_start = false;
    }
    return n > 0 && !seg_start;
}

static int conv_fieldmask(jctx_t *c, const pt_jtok_t *t, const jframe_t *f)
{
    if (t->type != PT_JTOK_STRING)
        return expected(c, f, t, "string (FieldMask)");
    const char *s;
    size_t n;
    int rc = tok_text(c, t, &c->tmp, &s, &n);
    if (rc != 0)
        return rc;
    size_t i = 0;
    while (n > 0 && i <= n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        pt_xbuf_reset(&c->tmp2);
        rc = fieldmask_path_ok(s + i, j - i) ? pt_fieldmask_path_from_json(&c->tmp2, s + i, j - i)
                                             : PT_XERR_INVALID;
        if (rc == PT_XERR_INVALID || (rc == 0 && j == i))
            return bad(c, f, t, PT_XERR_INVALID, "invalid FieldMask path \"%.*s\"",
                       (int)(j - i > 60 ? 60 : j - i), s + i);
        if (rc != 0)
            return fatal(c, NULL, rc, "out of memory");
        if ((rc = put_bytes(c, 1, c->tmp2.data, c->tmp2.len)) != 0)
            return rc;
        i = j + 1;
    }
    return 0;
}

static int conv_value(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    switch (t->type) {
    case PT_JTOK_NULL:
        return put_tag_varint(c, 1, PT_WT_VARINT, 0, false);
    case PT_JTOK_NUMBER: {
        double d;
        int rc = tok_double(c, f, t, false, &d);
        if (rc != 0)
            return rc;
        uint64_t u;
        memcpy(&u, &d, 8);
        return put_tag_fixed(c, 2, PT_WT_I64, u, false);
    }
    case PT_JTOK_STRING: {
        if ((t->flags & PT_JTOK_F_TEXT) && !pt_utf8_valid((const uint8_t *)t->s, t->len))
            return bad(c, f, t, PT_XERR_INVALID, "invalid UTF-8 in string");
        pt_fielddesc_t sf = {0};
        sf.number = 3;
        sf.type = PT_FT_STRING;
        sf.has_presence = true;
        return put_string_tok(c, &sf, t, true);
    }
    case PT_JTOK_TRUE:
    case PT_JTOK_FALSE:
        return put_tag_varint(c, 4, PT_WT_VARINT, t->type == PT_JTOK_TRUE, false);
    case PT_JTOK_OBJ_BEGIN:
    case PT_JTOK_ARR_BEGIN: {
        const pt_fielddesc_t *fd = field_no(m, t->type == PT_JTOK_OBJ_BEGIN ? 5 : 6);
        if (fd == NULL || fd->message == NULL)
            return fatal(c, f, PT_XERR_INVALID, "malformed google.protobuf.Value");
        return conv_single(c, fd, t, f, F_FORCE);
    }
    default:
        return expected(c, f, t, "JSON value");
    }
}

static int conv_struct(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    if (t->type != PT_JTOK_OBJ_BEGIN)
        return expected(c, f, t, "object");
    const pt_fielddesc_t *fd = field_no(m, 1);
    if (fd == NULL || !fd->is_map)
        return fatal(c, f, PT_XERR_INVALID, "malformed google.protobuf.Struct");
    /* Struct keys are ordinary map keys; duplicates are caught by the lexer. */
    return conv_map(c, fd, t, f);
}

static int conv_list(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    const pt_fielddesc_t *fd = field_no(m, 1);
    if (fd == NULL || fd->label != PT_LABEL_REPEATED)
        return fatal(c, f, PT_XERR_INVALID, "malformed google.protobuf.ListValue");
    return conv_repeated(c, fd, t, f);
}

/*
 * Any: {"@type": url, <fields of the type>} or, for types with a special JSON
 * form, {"@type": url, "value": <that form>}. "@type" may come last: we look
 * ahead over this object's keys (without recording them) to find it first.
 */
static int conv_any(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    if (t->type != PT_JTOK_OBJ_BEGIN)
        return expected(c, f, t, "object (Any)");
    pt_jlex_nocheck(&c->lx);
    pt_jlex_mark_t mark;
    pt_jlex_save(&c->lx, &mark);
    pt_jtok_t k, v, url = {0};
    int rc, ntype = 0, nkeys = 0;
    for (;;) {
        if ((rc = next(c, &k)) != 0)
            return rc;
        if (k.type == PT_JTOK_OBJ_END)
            break;
        nkeys++;
        if ((rc = next(c, &v)) != 0)
            return rc;
        if (pt_jstr_eq(k.s, k.len, (k.flags & PT_JTOK_F_ESC) != 0, "@type", 5)) {
            ntype++;
            url = v;
        }
        if (pt_jlex_skip(&c->lx, &v) != 0)
            return lexerr(c);
    }
    pt_jlex_restore(&c->lx, &mark);
    if (nkeys == 0) {
        next(c, &k); /* the '}' */
        return 0;
    }
    jframe_t tf = {f, "@type", 5, NULL, FR_NAME, false};
    if (ntype != 1 || url.type != PT_JTOK_STRING) {
        const char *why = ntype == 0   ? "Any is missing \"@type\""
                          : ntype > 1 ? "\"@type\" given more than once"
                                      : "\"@type\" must be a string";
        return bad(c, ntype == 0 ? f : &tf, t, PT_XERR_INVALID, "%s", why);
    }
    const char *us = "";
    size_t un = 0;
    if ((rc = tok_text(c, &url, &c->tmp2, &us, &un)) != 0)
        return rc;
    const pt_msgdesc_t *inner = pt_descpool_any_type(c->pool, us, un);
    if (inner == NULL)
        return bad(c, &tf, t, PT_XERR_NOT_FOUND, "unknown type \"%.*s\"", (int)(un > 100 ? 100 : un),
                   us);
    if ((rc = put_bytes(c, 1, us, un)) != 0)
        return rc;
    region_t r;
    if ((rc = region_open(c, 2, &r)) != 0)
        return rc;
    int mrc = 0;
    if (inner->wkt == PT_WKT_NONE) {
        if (++c->depth > c->max_depth)
            return fatal(c, f, PT_XERR_LIMIT, "message nesting deeper than %u", c->max_depth);
        mrc = conv_object_body(c, inner, f, true);
        c->depth--;
    } else {
        /* special form: only "@type" and "value" */
        bool have = false;
        for (;;) {
            if ((rc = next(c, &k)) != 0)
                return rc;
            if (k.type == PT_JTOK_OBJ_END)
                break;
            jframe_t kf = {f, k.s, k.len, NULL, FR_FIELD, (k.flags & PT_JTOK_F_ESC) != 0};
            if ((rc = next(c, &v)) != 0)
                return rc;
            bool esc = (k.flags & PT_JTOK_F_ESC) != 0;
            if (pt_jstr_eq(k.s, k.len, esc, "@type", 5)) {
                if (pt_jlex_skip(&c->lx, &v) != 0)
                    return lexerr(c);
                continue;
            }
            if (!pt_jstr_eq(k.s, k.len, esc, "value", 5) || have) {
                if ((rc = bad(c, &kf, &v, PT_XERR_INVALID, "unknown field in Any of %s",
                              inner->full_name)) < 0)
                    return rc;
                continue;
            }
            have = true;
            if ((rc = conv_message(c, inner, &v, &kf)) < 0)
                return rc;
            if (rc > 0)
                mrc = rc;
        }
    }
    if (mrc < 0)
        return mrc;
    if (c->out->len == r.start)
        region_cancel(c, &r); /* empty value: omitted, as proto3 serializers do */
    else if ((rc = region_close(c, &r)) != 0)
        return rc;
    return mrc;
}

static int conv_wkt(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    switch (m->wkt) {
    case PT_WKT_ANY:
        return conv_any(c, m, t, f);
    case PT_WKT_TIMESTAMP:
    case PT_WKT_DURATION: {
        bool ts = m->wkt == PT_WKT_TIMESTAMP;
        if (t->type != PT_JTOK_STRING)
            return expected(c, f, t, ts ? "RFC 3339 timestamp string" : "duration string");
        const char *s = "";
        size_t n = 0;
        int rc = tok_text(c, t, &c->tmp, &s, &n);
        if (rc != 0)
            return rc;
        int64_t secs;
        int32_t nanos;
        rc = ts ? pt_timestamp_parse(s, n, &secs, &nanos) : pt_duration_parse(s, n, &secs, &nanos);
        if (rc != 0)
            return bad(c, f, t, PT_XERR_INVALID,
                       ts ? "invalid Timestamp \"%.*s\" (RFC 3339, years 0001-9999)"
                          : "invalid Duration \"%.*s\" (\"<seconds>[.<frac>]s\", at most "
                            "315576000000 s)",
                       (int)(n > 60 ? 60 : n), s);
        return put_secs_nanos(c, secs, nanos);
    }
    case PT_WKT_FIELDMASK:
        return conv_fieldmask(c, t, f);
    case PT_WKT_STRUCT:
        return conv_struct(c, m, t, f);
    case PT_WKT_VALUE:
        return conv_value(c, m, t, f);
    case PT_WKT_LISTVALUE:
        return conv_list(c, m, t, f);
    case PT_WKT_EMPTY:
        return conv_object(c, m, t, f);
    default: { /* wrappers: the JSON value is the wrapped scalar */
        const pt_fielddesc_t *vf = field_no(m, 1);
        if (vf == NULL)
            return fatal(c, f, PT_XERR_INVALID, "malformed wrapper type %s", m->full_name);
        if (t->type == PT_JTOK_NULL)
            return expected(c, f, t, "wrapped value");
        return conv_single(c, vf, t, f, 0);
    }
    }
}

/* The content of a message (no tag/length) from the value starting at `t`. */
static int conv_message(jctx_t *c, const pt_msgdesc_t *m, const pt_jtok_t *t, const jframe_t *f)
{
    if (m == NULL)
        return fatal(c, f, PT_XERR_INVALID, "unresolved message type");
    if (++c->depth > c->max_depth)
        return fatal(c, f, PT_XERR_LIMIT, "message nesting deeper than %u", c->max_depth);
    int rc = m->wkt != PT_WKT_NONE ? conv_wkt(c, m, t, f) : conv_object(c, m, t, f);
    c->depth--;
    return rc;
}

/* ================================================================ driver */

static void ctx_init(jctx_t *c, const pt_descpool_t *pool, const pt_json_opts_t *opts,
                     pt_xbuf_t *out)
{
    memset(c, 0, offsetof(jctx_t, keys));
    c->pool = pool;
    /* scratch memory comes from the caller's output allocator */
    c->a = out->a;
    if (c->a == NULL && pool != NULL)
        c->a = pt_descpool_allocator(pool);
    if (c->a == NULL)
        c->a = pt_allocator_default();
    if (opts != NULL)
        c->o = *opts;
    c->max_depth = c->o.max_depth ? c->o.max_depth : PT_JSON_DEFAULT_MAX_DEPTH;
    if (c->max_depth > PT_JSON_MAX_DEPTH_CAP)
        c->max_depth = PT_JSON_MAX_DEPTH_CAP;
    c->out = out;
    c->out_start = out->len;
    pt_xbuf_init(&c->tmp, c->a);
    pt_xbuf_init(&c->tmp2, c->a);
    pt_jkeyset_init(&c->keys, c->a);
}

static void ctx_dispose(jctx_t *c)
{
    if (c->fx != NULL)
        c->a->free(c->a->ud, c->fx);
    if (c->words != NULL)
        c->a->free(c->a->ud, c->words);
    pt_xbuf_dispose(&c->tmp);
    pt_xbuf_dispose(&c->tmp2);
    pt_jkeyset_dispose(&c->keys);
}

/* Parses the body (a value for message `m`, or for field `bf` of it). */
static int run_body(jctx_t *c, const pt_msgdesc_t *m, const pt_fielddesc_t *bf, const char *json,
                    size_t len)
{
    if (c->o.max_size != 0 && len > c->o.max_size)
        return fatal(c, NULL, PT_XERR_LIMIT, "JSON input of %zu bytes is over the limit of %zu",
                     len, c->o.max_size);
    if (len > (size_t)INT32_MAX * 2)
        return fatal(c, NULL, PT_XERR_LIMIT, "JSON input too large");
    pt_jlex_init(&c->lx, json, len, 2 * c->max_depth + 2);
    pt_jlex_set_keyset(&c->lx, &c->keys);
    pt_jtok_t t;
    int rc = next(c, &t);
    if (rc != 0)
        return rc;
    if (bf != NULL) {
        jframe_t bfr = {NULL, bf->name, strlen(bf->name), bf, FR_FIELD, false};
        if (t.type == PT_JTOK_NULL && (bf->label == PT_LABEL_REPEATED || !null_is_value(bf)))
            rc = 0;
        else
            rc = conv_field(c, bf, &t, &bfr);
    } else {
        rc = conv_message(c, m, &t, NULL);
    }
    if (rc < 0)
        return rc;
    pt_jtok_t e;
    return next(c, &e); /* the lexer insists on EOF after the top-level value */
}

static int finish(jctx_t *c, int rc)
{
    if (rc >= 0 && c->nerr > 0)
        rc = c->first_code;
    if (rc < 0) {
        c->out->len = c->out_start;
    } else {
        compact(c);
        if (c->o.max_size != 0 && c->out->len - c->out_start > c->o.max_size) {
            rc = fatal(c, NULL, PT_XERR_LIMIT, "output over the size limit");
            c->out->len = c->out_start;
        }
    }
    ctx_dispose(c);
    return rc < 0 ? rc : 0;
}

int pt_json_to_pb(const pt_descpool_t *pool, const pt_msgdesc_t *m, const char *json, size_t len,
                  const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerr_t *err)
{
    jctx_t c;
    ctx_init(&c, pool, opts, out);
    c.err = err;
    if (err != NULL)
        pt_xerr_clear(err);
    int rc = run_body(&c, m, NULL, json, len);
    return finish(&c, rc);
}

int pt_json_to_pb_errs(const pt_descpool_t *pool, const pt_msgdesc_t *m, const char *json,
                       size_t len, const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerrs_t *errs)
{
    jctx_t c;
    ctx_init(&c, pool, opts, out);
    c.errs = errs;
    c.collect = true;
    int rc = run_body(&c, m, NULL, json, len);
    return finish(&c, rc);
}

/* ================================================================ bindings */

int pt_json_field_bindable(const pt_fielddesc_t *f)
{
    if (f == NULL)
        return 0;
    const pt_fielddesc_t *v = f;
    if (f->is_map) {
        v = field_no(f->message, 2);
        if (v == NULL)
            return 0;
    }
    if (v->type == PT_FT_GROUP)
        return 0;
    if (v->type != PT_FT_MESSAGE)
        return 1;
    if (v->message == NULL)
        return 0;
    switch (v->message->wkt) {
    case PT_WKT_TIMESTAMP:
    case PT_WKT_DURATION:
    case PT_WKT_FIELDMASK:
    case PT_WKT_VALUE:
    case PT_WKT_DOUBLEVALUE:
    case PT_WKT_FLOATVALUE:
    case PT_WKT_INT64VALUE:
    case PT_WKT_UINT64VALUE:
    case PT_WKT_INT32VALUE:
    case PT_WKT_UINT32VALUE:
    case PT_WKT_BOOLVALUE:
    case PT_WKT_STRINGVALUE:
    case PT_WKT_BYTESVALUE:
        return 1;
    default:
        return 0;
    }
}

/* Resolves a binding's dotted path; errors are reported with the path. */
static int resolve_binding(jctx_t *c, const pt_msgdesc_t *m, const pt_json_binding_t *b,
                           rbind_t *rb)
{
    jframe_t pf = {NULL, b->path, b->path_len, NULL, FR_NAME, false};
    rb->b = b;
    rb->n = 0;
    rb->ok = false;
    const char *p = b->path, *end = b->path + b->path_len;
    const pt_msgdesc_t *cur = m;
    if (b->path_len == 0)
        return bad(c, &pf, NULL, PT_XERR_INVALID, "empty field path");
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *se = dot != NULL ? dot : end;
        const pt_fielddesc_t *fd =
            cur != NULL ? pt_msgdesc_field_by_name(cur, p, (size_t)(se - p)) : NULL;
        if (fd == NULL)
            return bad(c, &pf, NULL, PT_XERR_INVALID, "unknown field \"%.*s\" in %s",
                       (int)(se - p > 100 ? 100 : se - p), p, cur ? cur->full_name : "?");
        if (rb->n >= MAX_BIND_SEGS)
            return bad(c, &pf, NULL, PT_XERR_LIMIT, "field path too long");
        rb->chain[rb->n++] = fd;
        if (dot == NULL)
            break;
        if (fd->type != PT_FT_MESSAGE || fd->label == PT_LABEL_REPEATED || fd->is_map)
            return bad(c, &pf, NULL, PT_XERR_INVALID,
                       "\"%s\" is not a singular message field, cannot bind below it", fd->name);
        cur = fd->message;
        p = dot + 1;
    }
    const pt_fielddesc_t *leaf = rb->chain[rb->n - 1];
    if (leaf->is_map && b->map_key == NULL)
        return bad(c, &pf, NULL, PT_XERR_INVALID, "map field needs a key (%s[key]=value)",
                   leaf->name);
    if (!leaf->is_map && b->map_key != NULL)
        return bad(c, &pf, NULL, PT_XERR_INVALID, "field is not a map, it takes no [key]");
    if (!pt_json_field_bindable(leaf))
        return bad(c, &pf, NULL, PT_XERR_INVALID,
                   "message field of type %s cannot be set from a text parameter",
                   leaf->message ? leaf->message->full_name : "?");
    rb->ok = true;
    return 0;
}

static int emit_binding(jctx_t *c, const rbind_t *rb)
{
    const pt_json_binding_t *b = rb->b;
    jframe_t pf = {NULL, b->path, b->path_len, NULL, FR_NAME, false};
    region_t regs[MAX_BIND_SEGS];
    int rc;
    for (size_t i = 0; i + 1 < rb->n; i++)
        if ((rc = region_open(c, rb->chain[i]->number, &regs[i])) != 0)
            return rc;
    const pt_fielddesc_t *leaf = rb->chain[rb->n - 1];
    size_t before = c->out->len;
    pt_jtok_t vt = {b->value, b->value_len, 0, PT_JTOK_STRING, PT_JTOK_F_TEXT};
    int lrc;
    if (leaf->is_map) {
        const pt_fielddesc_t *kfd = field_no(leaf->message, 1), *vfd = field_no(leaf->message, 2);
        if (kfd == NULL || vfd == NULL)
            return fatal(c, &pf, PT_XERR_INVALID, "malformed map entry type");
        jframe_t kf = {&pf, b->map_key, b->map_key_len, NULL, FR_TEXTKEY, false};
        pt_jtok_t kt = {b->map_key, b->map_key_len, 0, PT_JTOK_STRING, PT_JTOK_F_TEXT};
        region_t r;
        if ((rc = region_open(c, leaf->number, &r)) != 0)
            return rc;
        lrc = conv_single(c, kfd, &kt, &kf, F_FORCE);
        if (lrc == 0)
            lrc = conv_single(c, vfd, &vt, &kf, F_FORCE);
        if (lrc < 0)
            return lrc;
        if (lrc > 0)
            region_cancel(c, &r);
        else if ((rc = region_close(c, &r)) != 0)
            return rc;
    } else {
        lrc = conv_single(c, leaf, &vt, &pf, F_FORCE);
        if (lrc < 0)
            return lrc;
    }
    if (rb->n > 1 && (lrc > 0 || c->out->len == before)) {
        region_cancel(c, &regs[0]); /* nothing set: do not create the parents */
        return lrc;
    }
    for (size_t i = rb->n - 1; i-- > 0;)
        if ((rc = region_close(c, &regs[i])) != 0)
            return rc;
    return lrc;
}

static bool same_chain(const rbind_t *a, const rbind_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->chain[i] != b->chain[i])
            return false;
    return true;
}

int pt_json_to_pb_bind(const pt_descpool_t *pool, const pt_msgdesc_t *m,
                       const pt_fielddesc_t *body_field, const char *json, size_t len,
                       const pt_json_binding_t *b, size_t n, const pt_json_opts_t *opts,
                       pt_xbuf_t *out, pt_xerrs_t *errs)
{
    jctx_t c;
    ctx_init(&c, pool, opts, out);
    c.errs = errs;
    c.collect = true;
    int rc = 0;
    rbind_t *rb = NULL;
    if (n > PT_JSON_MAX_BINDINGS) {
        rc = fatal(&c, NULL, PT_XERR_LIMIT, "too many parameters (%zu, limit %d)", n,
                   PT_JSON_MAX_BINDINGS);
        goto done;
    }
    if (n > 0) {
        rb = c.a->alloc(c.a->ud, n * sizeof(*rb));
        if (rb == NULL) {
            rc = fatal(&c, NULL, PT_XERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n && rc >= 0; i++) {
            rc = resolve_binding(&c, m, &b[i], &rb[i]);
            if (rc >= 0 && rb[i].ok) {
                const pt_fielddesc_t *leaf = rb[i].chain[rb[i].n - 1];
                if (leaf->label != PT_LABEL_REPEATED) {
                    for (size_t j = 0; j < i; j++) {
                        if (rb[j].ok && same_chain(&rb[i], &rb[j])) {
                            jframe_t pf = {NULL, b[i].path, b[i].path_len, NULL, FR_NAME, false};
                            rb[i].ok = false;
                            rc = bad(&c, &pf, NULL, PT_XERR_INVALID, "field given more than once");
                            break;
                        }
                    }
                }
            }
        }
        if (rc < 0)
            goto done;
        c.rb = rb;
        c.nrb = n;
    }
    if (json != NULL) {
        rc = run_body(&c, m, body_field, json, len);
        if (rc < 0)
            goto done;
    }
    if (json == NULL || body_field != NULL) {
        /* top-level required fields: body_field or a binding may provide them */
        if (!m->is_proto3) {
            for (size_t i = 0; i < m->field_cnt && rc >= 0; i++) {
                const pt_fielddesc_t *fd = &m->fields[i];
                if (fd->label != PT_LABEL_REQUIRED || bound(&c, NULL, fd))
                    continue;
                if (json != NULL && fd == body_field)
                    continue;
                jframe_t ff = {NULL, fd->json_name, strlen(fd->json_name), fd, FR_FIELD, false};
                rc = bad(&c, &ff, NULL, PT_XERR_INVALID, "missing required field");
            }
            if (rc < 0)
                goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!rb[i].ok)
            continue;
        rc = emit_binding(&c, &rb[i]);
        if (rc < 0)
            goto done;
    }
    rc = 0;
done:
    if (rb != NULL)
        c.a->free(c.a->ud, rb);
    return finish(&c, rc);
}
