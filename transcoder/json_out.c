/*
 * json_out.c -- protobuf wire bytes -> proto3 JSON, driven by descriptors.
 *
 * A message is converted in two steps. A scan walks the wire bytes once and
 * threads every occurrence of a known field onto that field's chain (unknown
 * fields are validated and skipped). The emit step then walks the fields in
 * number order and prints each from its chain. The chains give the wire
 * semantics without building message objects: the last occurrence of a
 * singular scalar wins, every occurrence of a singular message is merged (the
 * chain is its list of byte segments), repeated values keep their order across
 * packed and unpacked runs, and the last member set of a oneof wins.
 *
 * Chains and per-message tables live in two scratch arrays used as stacks and
 * reused across the whole call, so the hot path does not allocate per field.
 * Error paths are built while unwinding: the failing value reports only its
 * message, and each enclosing level prepends its field name, index or map key.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/json.h"
#include "portico/transcoder/wkt.h"

#define NONE UINT32_MAX

/* One occurrence of a field on the wire: a value's bytes within the input. */
typedef struct occ {
    uint32_t off, len; /* value bytes (varint, fixed, or length-delimited payload) */
    uint32_t next;     /* next occurrence of the same field, or NONE */
    uint8_t wt;        /* wire type it was written with */
    uint8_t dead;      /* map entry superseded by a later one with the same key */
} occ_t;

typedef struct ctx {
    const pt_descpool_t *pool;
    const pt_enumdesc_t *null_enum; /* google.protobuf.NullValue, printed as null ... */
    bool null_enum_known;           /* ... looked up at the first enum value (a name look-up
                                     * per call cost ~200 instructions, issue 7) */
    const uint8_t *base; /* the input; occurrences are offsets into it */
    pt_xbuf_t *out;
    pt_xerr_t *err;
    const pt_allocator_t *a;
    bool emit_defaults, proto_names, enums_as_ints;
    unsigned depth, max_depth;
    occ_t *occ;
    size_t occ_len, occ_cap;
    uint32_t *words;
    size_t words_len, words_cap;
    /* Small messages never touch the allocator for scratch space. */
    occ_t occ_inline[128];
    uint32_t words_inline[512];
} ctx_t;

static int emit_message(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single);

/* ---- errors ------------------------------------------------------------------ */

/* Records the first error (the innermost one); enclosing levels add the path. */
__attribute__((format(printf, 3, 4))) static int fail(ctx_t *c, int code, const char *fmt, ...)
{
    if (c->err != NULL && c->err->code == 0) {
        va_list ap;
        va_start(ap, fmt);
        pt_xerr_vset(c->err, code, NULL, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int fail_rc(ctx_t *c, int rc)
{
    if (rc == PT_XERR_NOMEM)
        return fail(c, rc, "out of memory");
    if (rc == PT_XERR_LIMIT)
        return fail(c, rc, "output size limit exceeded");
    return fail(c, rc, "conversion failed");
}

/* Prepends a path segment while unwinding: "name" or "[3]" or ["key"]. */
static void prepend(ctx_t *c, const char *seg, size_t n)
{
    if (c->err == NULL)
        return;
    char *path = c->err->path;
    size_t old = strlen(path);
    bool dot = old > 0 && path[0] != '[';
    size_t add = n + (dot ? 1 : 0);
    if (add >= PT_XERR_PATH_MAX)
        return;
    if (old + add >= PT_XERR_PATH_MAX)
        old = PT_XERR_PATH_MAX - 1 - add; /* drop the tail */
    memmove(path + add, path, old);
    memcpy(path, seg, n);
    if (dot)
        path[n] = '.';
    path[old + add] = '\0';
}

static void prepend_field(ctx_t *c, const pt_fielddesc_t *f)
{
    if (c->proto_names)
        prepend(c, f->name, f->_name_len);
    else
        prepend(c, f->json_name, f->_json_name_len);
}

static size_t u64_to_text(uint64_t v, char *buf);

static void prepend_index(ctx_t *c, size_t i)
{
    char buf[32];
    buf[0] = '[';
    size_t n = 1 + u64_to_text(i, buf + 1);
    buf[n++] = ']';
    prepend(c, buf, n);
}

/* ---- scratch stacks ------------------------------------------------------------ */

/* Grows a scratch array; the first growth moves it off the inline storage. */
static int grow(ctx_t *c, void **arr, size_t *cap, size_t need, size_t elem, const void *inl)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap * 2;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        return fail_rc(c, PT_XERR_NOMEM);
    bool was_inline = *arr == inl;
    void *p = c->a->realloc(c->a->ud, was_inline ? NULL : *arr, ncap * elem);
    if (p == NULL)
        return fail_rc(c, PT_XERR_NOMEM);
    if (was_inline)
        memcpy(p, inl, *cap * elem);
    *arr = p;
    *cap = ncap;
    return 0;
}

static int push_occ(ctx_t *c, uint32_t off, uint32_t len, uint8_t wt, uint32_t *idx)
{
    if (c->occ_len == c->occ_cap) {
        int rc = grow(c, (void **)&c->occ, &c->occ_cap, c->occ_len + 1, sizeof(occ_t), c->occ_inline);
        if (rc != 0)
            return rc;
    }
    if (c->occ_len >= NONE)
        return fail(c, PT_XERR_LIMIT, "too many fields");
    *idx = (uint32_t)c->occ_len;
    c->occ[c->occ_len++] = (occ_t){off, len, NONE, wt, 0};
    return 0;
}

/* Reserves `n` zeroed words; returns their offset in c->words. */
static int push_words(ctx_t *c, size_t n, size_t *at)
{
    int rc = grow(c, (void **)&c->words, &c->words_cap, c->words_len + n, sizeof(uint32_t),
                  c->words_inline);
    if (rc != 0)
        return rc;
    *at = c->words_len;
    memset(c->words + c->words_len, 0, n * sizeof(uint32_t));
    c->words_len += n;
    return 0;
}

/* ---- wire decoding ---------------------------------------------------------------- */

/* Reads a varint at *pos; false if truncated or longer than 10 bytes. */
static inline bool read_varint(const uint8_t *p, size_t end, size_t *pos, uint64_t *v)
{
    size_t i = *pos;
    if (i < end && p[i] < 0x80) { /* the common one-byte case */
        *v = p[i];
        *pos = i + 1;
        return true;
    }
    uint64_t r = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (i >= end)
            return false;
        uint8_t b = p[i++];
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            *pos = i;
            return true;
        }
    }
    return false;
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/*
 * Skips the group whose start tag for `number` was just read, leaving *pos
 * after its end tag and *body_end at the start of that end tag.
 */
static int skip_group(ctx_t *c, const uint8_t *p, size_t end, size_t *pos, uint32_t number,
                      unsigned depth, size_t *body_end)
{
    if (depth > c->max_depth)
        return fail(c, PT_XERR_LIMIT, "groups nested too deeply");
    while (*pos < end) {
        size_t tag_at = *pos;
        uint64_t tag, v;
        if (!read_varint(p, end, pos, &tag))
            return fail(c, PT_XERR_CORRUPT, "malformed varint");
        uint32_t num = (uint32_t)(tag >> 3);
        if (tag >> 3 == 0 || tag >> 3 > 536870911u)
            return fail(c, PT_XERR_CORRUPT, "invalid field number");
        switch (tag & 7) {
        case PT_WT_VARINT:
            if (!read_varint(p, end, pos, &v))
                return fail(c, PT_XERR_CORRUPT, "malformed varint");
            break;
        case PT_WT_I64:
            if (end - *pos < 8)
                return fail(c, PT_XERR_CORRUPT, "truncated fixed64");
            *pos += 8;
            break;
        case PT_WT_I32:
            if (end - *pos < 4)
                return fail(c, PT_XERR_CORRUPT, "truncated fixed32");
            *pos += 4;
            break;
        case PT_WT_LEN:
            if (!read_varint(p, end, pos, &v) || v > end - *pos)
                return fail(c, PT_XERR_CORRUPT, "length past the end of the data");
            *pos += (size_t)v;
            break;
        case PT_WT_SGROUP: {
            size_t ignored;
            int rc = skip_group(c, p, end, pos, num, depth + 1, &ignored);
            if (rc != 0)
                return rc;
            break;
        }
        case PT_WT_EGROUP:
            if (num != number)
                return fail(c, PT_XERR_CORRUPT, "mismatched end-group tag");
            *body_end = tag_at;
            return 0;
        default:
            return fail(c, PT_XERR_CORRUPT, "invalid wire type");
        }
    }
    return fail(c, PT_XERR_CORRUPT, "unterminated group");
}

static const char *wt_name(unsigned wt)
{
    static const char *const names[] = {"varint", "fixed64", "length-delimited", "start-group",
                                        "end-group", "fixed32", "6", "7"};
    return names[wt & 7];
}

/*
 * Threads every occurrence of a known field of `m` found in the segments onto
 * the chains head/tail (word offsets ht: head[i] at ht+i, tail[i] at ht+n+i,
 * then the last member index + 1 of each oneof).
 */
static int scan(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single, size_t ht)
{
    const size_t n = m->field_cnt;
    for (uint32_t s = first; s != NONE; s = single ? NONE : c->occ[s].next) {
        const uint8_t *p = c->base + c->occ[s].off;
        const size_t end = c->occ[s].len;
        size_t pos = 0;
        while (pos < end) {
            uint64_t tag;
            if (!read_varint(p, end, &pos, &tag))
                return fail(c, PT_XERR_CORRUPT, "malformed varint in a field tag");
            uint64_t num64 = tag >> 3;
            unsigned wt = (unsigned)(tag & 7);
            if (num64 == 0 || num64 > 536870911u)
                return fail(c, PT_XERR_CORRUPT, "invalid field number");
            uint32_t num = (uint32_t)num64;
            size_t vstart = pos, vend = pos;
            uint64_t v;
            switch (wt) {
            case PT_WT_VARINT:
                if (!read_varint(p, end, &pos, &v))
                    return fail(c, PT_XERR_CORRUPT, "malformed varint");
                vend = pos;
                break;
            case PT_WT_I64:
                if (end - pos < 8)
                    return fail(c, PT_XERR_CORRUPT, "truncated fixed64 value");
                pos += 8;
                vend = pos;
                break;
            case PT_WT_I32:
                if (end - pos < 4)
                    return fail(c, PT_XERR_CORRUPT, "truncated fixed32 value");
                pos += 4;
                vend = pos;
                break;
            case PT_WT_LEN:
                if (!read_varint(p, end, &pos, &v) || v > end - pos)
                    return fail(c, PT_XERR_CORRUPT, "length past the end of the data");
                vstart = pos;
                pos += (size_t)v;
                vend = pos;
                break;
            case PT_WT_SGROUP: {
                int rc = skip_group(c, p, end, &pos, num, 1, &vend);
                if (rc != 0)
                    return rc;
                break;
            }
            case PT_WT_EGROUP:
                return fail(c, PT_XERR_CORRUPT, "unexpected end-group tag");
            default:
                return fail(c, PT_XERR_CORRUPT, "invalid wire type");
            }
            const pt_fielddesc_t *f;
            if (m->_by_number != NULL) /* the dense index, inline */
                f = num < m->_by_number_len && m->_by_number[num] ? &m->fields[m->_by_number[num] - 1] : NULL;
            else
                f = pt_msgdesc_field_by_number(m, num);
            if (f == NULL)
                continue; /* unknown field: validated and skipped */
            if (wt != f->_wire_type &&
                !(wt == PT_WT_LEN && f->label == PT_LABEL_REPEATED && f->_wire_type != PT_WT_SGROUP)) {
                fail(c, PT_XERR_CORRUPT, "wrong wire type %s for a %s field", wt_name(wt),
                     wt_name(f->_wire_type));
                prepend_field(c, f);
                return PT_XERR_CORRUPT;
            }
            uint32_t idx = 0;
            int rc = push_occ(c, (uint32_t)(p + vstart - c->base), (uint32_t)(vend - vstart),
                              (uint8_t)wt, &idx);
            if (rc != 0)
                return rc;
            size_t fi = (size_t)(f - m->fields);
            uint32_t *w = c->words + ht;
            if (w[fi] == 0)
                w[fi] = idx + 1;
            else
                c->occ[w[n + fi] - 1].next = idx;
            w[n + fi] = idx + 1;
            if (f->oneof_index >= 0)
                w[2 * n + (size_t)f->oneof_index] = (uint32_t)fi + 1;
        }
    }
    return 0;
}

/* ---- output primitives ------------------------------------------------------------- */

static inline int put(ctx_t *c, const void *s, size_t n)
{
    int rc = pt_xbuf_append(c->out, s, n);
    return rc ? fail_rc(c, rc) : 0;
}

static inline int putc_(ctx_t *c, char ch)
{
    int rc = pt_xbuf_putc(c->out, (uint8_t)ch);
    return rc ? fail_rc(c, rc) : 0;
}

static size_t u64_to_text(uint64_t v, char *buf)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    return k;
}

static size_t i64_to_text(int64_t v, char *buf)
{
    if (v < 0) {
        buf[0] = '-';
        return 1 + u64_to_text(0 - (uint64_t)v, buf + 1);
    }
    return u64_to_text((uint64_t)v, buf);
}

static int put_string(ctx_t *c, const uint8_t *s, size_t n)
{
    int rc = pt_json_escape(c->out, (const char *)s, n);
    if (rc == PT_XERR_INVALID)
        return fail(c, PT_XERR_INVALID, "invalid UTF-8 in a string field");
    return rc ? fail_rc(c, rc) : 0;
}

static int put_bytes(ctx_t *c, const uint8_t *s, size_t n)
{
    int rc;
    if ((rc = putc_(c, '"')) != 0)
        return rc;
    if ((rc = pt_base64_encode(c->out, s, n)) != 0)
        return fail_rc(c, rc);
    return putc_(c, '"');
}

static int put_double(ctx_t *c, double d, bool is_float)
{
    char buf[PT_FLOAT_BUF + 2];
    int n;
    if (isfinite(d)) {
        n = is_float ? pt_float_format((float)d, buf) : pt_double_format(d, buf);
        return put(c, buf, (size_t)n);
    }
    buf[0] = '"';
    n = pt_double_format(d, buf + 1);
    buf[n + 1] = '"';
    return put(c, buf, (size_t)n + 2);
}

/* Decodes one scalar value's raw bits: varints as is, fixed as little-endian. */
static inline uint64_t raw_value(const uint8_t *p, size_t len, uint8_t wt)
{
    if (wt == PT_WT_I32)
        return rd32(p);
    if (wt == PT_WT_I64)
        return rd64(p);
    size_t pos = 0;
    uint64_t v = 0;
    read_varint(p, len, &pos, &v); /* already validated by the scan */
    return v;
}

/* Prints a numeric/bool/enum value of field type `type` from its raw bits. */
static int put_number(ctx_t *c, const pt_fielddesc_t *f, uint64_t v, bool as_key)
{
    char buf[32];
    size_t n = 0;
    bool quote = as_key;
    switch (f->type) {
    case PT_FT_DOUBLE: {
        double d;
        memcpy(&d, &v, sizeof d);
        return put_double(c, d, false);
    }
    case PT_FT_FLOAT: {
        uint32_t u = (uint32_t)v;
        float fl;
        memcpy(&fl, &u, sizeof fl);
        return put_double(c, fl, true);
    }
    case PT_FT_INT64: case PT_FT_SFIXED64:
        n = i64_to_text((int64_t)v, buf + 1);
        quote = true;
        break;
    case PT_FT_UINT64: case PT_FT_FIXED64:
        n = u64_to_text(v, buf + 1);
        quote = true;
        break;
    case PT_FT_SINT64:
        n = i64_to_text((int64_t)(v >> 1) ^ -(int64_t)(v & 1), buf + 1);
        quote = true;
        break;
    case PT_FT_INT32: case PT_FT_SFIXED32:
        n = i64_to_text((int32_t)(uint32_t)v, buf + 1);
        break;
    case PT_FT_UINT32: case PT_FT_FIXED32:
        n = u64_to_text((uint32_t)v, buf + 1);
        break;
    case PT_FT_SINT32: {
        uint32_t u = (uint32_t)v;
        n = i64_to_text((int32_t)(u >> 1) ^ -(int32_t)(u & 1), buf + 1);
        break;
    }
    case PT_FT_BOOL:
        return as_key ? put(c, v ? "\"true\"" : "\"false\"", v ? 6 : 7)
                      : put(c, v ? "true" : "false", v ? 4 : 5);
    case PT_FT_ENUM: {
        int32_t e = (int32_t)(uint32_t)v;
        if (!c->null_enum_known) {
            c->null_enum = pt_descpool_enum(c->pool, "google.protobuf.NullValue", 25);
            c->null_enum_known = true;
        }
        if (f->enumdesc == c->null_enum)
            return put(c, "null", 4);
        if (!c->enums_as_ints) {
            const pt_enumvalue_t *ev = pt_enumdesc_value_by_number(f->enumdesc, e);
            if (ev != NULL) {
                int rc = putc_(c, '"');
                if (rc == 0)
                    rc = put(c, ev->name, ev->_name_len);
                return rc ? rc : putc_(c, '"');
            }
        }
        n = i64_to_text(e, buf + 1);
        break;
    }
    default:
        return fail(c, PT_XERR_INVALID, "not a numeric field");
    }
    if (!quote)
        return put(c, buf + 1, n);
    buf[0] = '"';
    buf[n + 1] = '"';
    return put(c, buf, n + 2);
}

/* Prints one value of field `f` from occurrence `o` (not packed). */
static int put_value(ctx_t *c, const pt_fielddesc_t *f, uint32_t o)
{
    const occ_t *oc = &c->occ[o];
    const uint8_t *p = c->base + oc->off;
    switch (f->type) {
    case PT_FT_STRING:
        return put_string(c, p, oc->len);
    case PT_FT_BYTES:
        return put_bytes(c, p, oc->len);
    case PT_FT_MESSAGE: case PT_FT_GROUP:
        return emit_message(c, f->message, o, true);
    default:
        return put_number(c, f, raw_value(p, oc->len, oc->wt), false);
    }
}

/* Prints the default value of a field that has no presence and is absent. */
static int put_default(ctx_t *c, const pt_fielddesc_t *f)
{
    switch (f->type) {
    case PT_FT_STRING: case PT_FT_BYTES:
        return put(c, "\"\"", 2);
    case PT_FT_MESSAGE: case PT_FT_GROUP:
        return emit_message(c, f->message, NONE, true);
    default:
        return put_number(c, f, 0, false);
    }
}

/* True when a present implicit-presence scalar holds its default (so proto3 omits it). */
static bool is_default(const ctx_t *c, const pt_fielddesc_t *f, uint32_t o)
{
    const occ_t *oc = &c->occ[o];
    if (f->_wire_type == PT_WT_LEN)
        return oc->len == 0;
    uint64_t v = raw_value(c->base + oc->off, oc->len, oc->wt);
    if (f->_wire_type == PT_WT_I32 || f->type == PT_FT_INT32 || f->type == PT_FT_UINT32 ||
        f->type == PT_FT_SINT32 || f->type == PT_FT_ENUM)
        v = (uint32_t)v;
    return v == 0; /* bit pattern: -0.0 is printed */
}

/* ---- repeated fields and maps ------------------------------------------------------- */

static int emit_array(ctx_t *c, const pt_fielddesc_t *f, uint32_t head)
{
    int rc = putc_(c, '[');
    size_t i = 0;
    for (uint32_t o = head; rc == 0 && o != NONE; o = c->occ[o].next) {
        const occ_t oc = c->occ[o];
        if (oc.wt == PT_WT_LEN && f->_wire_type != PT_WT_LEN) {
            /* a packed run */
            const uint8_t *p = c->base + oc.off;
            size_t pos = 0;
            while (rc == 0 && pos < oc.len) {
                uint64_t v = 0;
                if (f->_wire_type == PT_WT_VARINT) {
                    if (!read_varint(p, oc.len, &pos, &v))
                        rc = fail(c, PT_XERR_CORRUPT, "malformed varint in a packed field");
                } else {
                    size_t w = f->_wire_type == PT_WT_I32 ? 4 : 8;
                    if (oc.len - pos < w) {
                        rc = fail(c, PT_XERR_CORRUPT, "truncated packed field");
                    } else {
                        v = w == 4 ? rd32(p + pos) : rd64(p + pos);
                        pos += w;
                    }
                }
                if (rc == 0 && i > 0)
                    rc = putc_(c, ',');
                if (rc == 0)
                    rc = put_number(c, f, v, false);
                if (rc != 0)
                    prepend_index(c, i);
                i++;
            }
            continue;
        }
        if (i > 0)
            rc = putc_(c, ',');
        if (rc == 0 && (rc = put_value(c, f, o)) != 0)
            prepend_index(c, i);
        i++;
    }
    return rc ? rc : putc_(c, ']');
}

/* Canonical key value: integers normalized to their type's width. */
static uint64_t key_number(const ctx_t *c, const pt_fielddesc_t *k, uint32_t ko)
{
    if (ko == NONE)
        return 0;
    const occ_t *oc = &c->occ[ko];
    uint64_t v = raw_value(c->base + oc->off, oc->len, oc->wt);
    switch (k->type) {
    case PT_FT_INT32: case PT_FT_SINT32: case PT_FT_UINT32: case PT_FT_FIXED32: case PT_FT_SFIXED32:
        return (uint32_t)v;
    case PT_FT_BOOL:
        return v != 0;
    default:
        return v;
    }
}

/* True when two key occurrences hold the same key (string bytes or normalized number). */
static bool same_key(const ctx_t *c, const pt_fielddesc_t *k, uint32_t a, uint32_t b)
{
    if (k->type != PT_FT_STRING)
        return key_number(c, k, a) == key_number(c, k, b);
    uint32_t la = a == NONE ? 0 : c->occ[a].len, lb = b == NONE ? 0 : c->occ[b].len;
    return la == lb && (la == 0 || memcmp(c->base + c->occ[a].off, c->base + c->occ[b].off, la) == 0);
}

/* Hashes a map key 8 bytes at a time (a multiply-xorshift mix per word). */
static uint32_t key_hash(const ctx_t *c, const pt_fielddesc_t *k, uint32_t ko)
{
    const uint64_t mul = 0x9E3779B97F4A7C15ull;
    uint64_t h;
    if (k->type == PT_FT_STRING) {
        const uint8_t *p = ko == NONE ? NULL : c->base + c->occ[ko].off;
        size_t n = ko == NONE ? 0 : c->occ[ko].len;
        h = n * mul;
        for (; n >= 8; n -= 8, p += 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            h = (h ^ w) * mul;
            h ^= h >> 29;
        }
        if (n > 0) {
            uint64_t w = 0;
            for (size_t j = 0; j < n; j++) /* not memcpy: a variable length becomes a call */
                w |= (uint64_t)p[j] << (8 * j);
            h = (h ^ w) * mul;
        }
    } else {
        h = key_number(c, k, ko) * mul;
    }
    h ^= h >> 32;
    return (uint32_t)h;
}

static int put_map_key(ctx_t *c, const pt_fielddesc_t *k, uint32_t ko)
{
    if (k->type == PT_FT_STRING) {
        if (ko == NONE)
            return put(c, "\"\"", 2);
        return put_string(c, c->base + c->occ[ko].off, c->occ[ko].len);
    }
    const occ_t *oc = ko == NONE ? NULL : &c->occ[ko];
    return put_number(c, k, oc ? raw_value(c->base + oc->off, oc->len, oc->wt) : 0, true);
}

static void prepend_key(ctx_t *c, const pt_fielddesc_t *k, uint32_t ko)
{
    if (c->err == NULL)
        return;
    pt_xpath_t kp;
    pt_xpath_init(&kp);
    if (k->type == PT_FT_STRING && ko != NONE) {
        pt_xpath_push_key(&kp, (const char *)c->base + c->occ[ko].off, c->occ[ko].len);
    } else {
        char buf[32];
        uint64_t v = ko == NONE ? 0 : raw_value(c->base + c->occ[ko].off, c->occ[ko].len, c->occ[ko].wt);
        size_t n = k->type == PT_FT_UINT64 || k->type == PT_FT_FIXED64 ? u64_to_text(v, buf)
                                                                         : i64_to_text((int64_t)v, buf);
        pt_xpath_push_key(&kp, buf, n);
    }
    prepend(c, kp.buf, kp.len);
}

/* Reads one value of wire type `wt` at p[*pos] (not a group); false when malformed. */
static bool skip_value(const uint8_t *p, size_t end, size_t *pos, unsigned wt, size_t *vstart)
{
    uint64_t v;
    *vstart = *pos;
    switch (wt) {
    case PT_WT_VARINT:
        return read_varint(p, end, pos, &v);
    case PT_WT_I64:
    case PT_WT_I32: {
        size_t w = wt == PT_WT_I32 ? 4 : 8;
        if (end - *pos < w)
            return false;
        *pos += w;
        return true;
    }
    case PT_WT_LEN:
        if (!read_varint(p, end, pos, &v) || v > end - *pos)
            return false;
        *vstart = *pos;
        *pos += (size_t)v;
        return true;
    default:
        return false;
    }
}

/*
 * Scans one map entry into the 4-word slot at `ht`. Entries are almost always
 * exactly "key, value" with the expected wire types; that shape is taken
 * directly, and anything else (other order, repeats, unknown fields, errors)
 * goes through the general scan().
 */
static int scan_entry(ctx_t *c, const pt_msgdesc_t *e, uint32_t o, size_t ht)
{
    const uint8_t *p = c->base + c->occ[o].off;
    const size_t end = c->occ[o].len;
    const unsigned want[2] = {1u << 3 | e->fields[0]._wire_type, 2u << 3 | e->fields[1]._wire_type};
    size_t omark = c->occ_len, pos = 0;
    for (int k = 0; k < 2 && pos < end; k++) {
        if (p[pos] != want[k]) {
            if (k == 0 && p[pos] == want[1])
                continue; /* no key: the value comes first */
            goto general;
        }
        pos++;
        size_t vstart;
        uint32_t idx = 0;
        if (!skip_value(p, end, &pos, want[k] & 7, &vstart))
            goto general;
        int rc = push_occ(c, (uint32_t)(p + vstart - c->base), (uint32_t)(pos - vstart), (uint8_t)(want[k] & 7),
                          &idx);
        if (rc != 0)
            return rc;
        c->words[ht + (size_t)k] = c->words[ht + 2 + (size_t)k] = idx + 1;
    }
    if (pos == end)
        return 0;
general:
    c->occ_len = omark;
    memset(&c->words[ht], 0, 4 * sizeof(uint32_t));
    return scan(c, e, o, true, ht);
}

/*
 * A map: every entry is scanned once into its own 4-word slot (head and tail
 * of the key and value chains). A hash table over the keys then marks every
 * entry that a later one with the same key supersedes (wire semantics: last
 * wins), so the JSON object never repeats a key.
 */
static int emit_map(ctx_t *c, const pt_fielddesc_t *f, uint32_t head)
{
    const pt_msgdesc_t *e = f->message;
    const pt_fielddesc_t *kf = &e->fields[0], *vf = &e->fields[1];
    /* one 4-word slot per entry, pushed as the entries are scanned */
    size_t slots = c->words_len, cnt = 0, at;
    int rc = 0;
    for (uint32_t o = head; rc == 0 && o != NONE; o = c->occ[o].next, cnt++)
        if ((rc = push_words(c, 4, &at)) == 0)
            rc = scan_entry(c, e, o, at);
    /* then a hash table over the keys, when there is more than one: slots
     * hold the entry index + 1 and the key's hash, compared first */
    size_t tab_size = 4, tab = 0;
    while (tab_size < 2 * cnt)
        tab_size *= 2;
    if (rc == 0 && cnt > 1)
        rc = push_words(c, 2 * tab_size, &tab);
    for (size_t i = 0; rc == 0 && cnt > 1 && i < cnt; i++) {
        uint32_t kt = c->words[slots + 4 * i + 2];
        uint32_t ko = kt ? kt - 1 : NONE;
        uint32_t kh = key_hash(c, kf, ko);
        for (size_t h = kh & (tab_size - 1);; h = (h + 1) & (tab_size - 1)) {
            uint32_t *slot = &c->words[tab + 2 * h];
            if (slot[0] == 0) {
                slot[0] = (uint32_t)i + 1;
                slot[1] = kh;
                break;
            }
            uint32_t pt = c->words[slots + 4 * (slot[0] - 1) + 2];
            if (slot[1] == kh && same_key(c, kf, pt ? pt - 1 : NONE, ko)) {
                c->words[slots + 4 * (slot[0] - 1)] |= 0x80000000u; /* superseded */
                slot[0] = (uint32_t)i + 1;
                break;
            }
        }
    }
    if (rc == 0)
        rc = putc_(c, '{');
    bool comma = false;
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        const uint32_t *w = &c->words[slots + 4 * i];
        if (w[0] & 0x80000000u)
            continue;
        uint32_t kt = w[2], vh = w[1], vt = w[3];
        uint32_t ko = kt ? kt - 1 : NONE;
        if (comma)
            rc = putc_(c, ',');
        comma = true;
        if (rc == 0)
            rc = put_map_key(c, kf, ko);
        if (rc == 0)
            rc = putc_(c, ':');
        if (rc == 0) {
            if (vh == 0)
                rc = put_default(c, vf);
            else if (vf->type == PT_FT_MESSAGE)
                rc = emit_message(c, vf->message, vh - 1, false);
            else
                rc = put_value(c, vf, vt - 1);
            if (rc != 0)
                prepend_key(c, kf, ko);
        }
    }
    return rc ? rc : putc_(c, '}');
}

/* ---- messages ---------------------------------------------------------------------- */

static inline int put_key(ctx_t *c, const pt_fielddesc_t *f, bool *comma)
{
    int rc = pt_xbuf_reserve(c->out, f->_json_key_len + f->_proto_key_len + 1);
    if (rc != 0)
        return fail_rc(c, rc);
    if (*comma)
        c->out->data[c->out->len++] = ',';
    *comma = true;
    if (c->proto_names) {
        memcpy(c->out->data + c->out->len, f->_proto_key, f->_proto_key_len);
        c->out->len += f->_proto_key_len;
    } else {
        memcpy(c->out->data + c->out->len, f->_json_key, f->_json_key_len);
        c->out->len += f->_json_key_len;
    }
    return 0;
}

/* Emits the fields of a regular message as "key":value pairs. */
static int emit_fields(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single, bool *comma)
{
    const size_t n = m->field_cnt;
    size_t wmark = c->words_len, omark = c->occ_len, ht;
    int rc = push_words(c, 2 * n + m->oneof_cnt, &ht);
    if (rc == 0)
        rc = scan(c, m, first, single, ht);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const pt_fielddesc_t *f = &m->fields[i];
        uint32_t head = c->words[ht + i];
        if (f->oneof_index >= 0 && c->words[ht + 2 * n + (size_t)f->oneof_index] != i + 1)
            continue;
        if (f->label == PT_LABEL_REPEATED) {
            if (head == 0 && !c->emit_defaults)
                continue;
            if ((rc = put_key(c, f, comma)) == 0) {
                if (head == 0)
                    rc = put(c, f->is_map ? "{}" : "[]", 2);
                else
                    rc = f->is_map ? emit_map(c, f, head - 1) : emit_array(c, f, head - 1);
            }
        } else if (head == 0) {
            if (!c->emit_defaults || f->has_presence)
                continue;
            if ((rc = put_key(c, f, comma)) == 0)
                rc = put_default(c, f);
        } else if (f->type == PT_FT_MESSAGE || f->type == PT_FT_GROUP) {
            if ((rc = put_key(c, f, comma)) == 0)
                rc = emit_message(c, f->message, head - 1, false);
        } else {
            uint32_t last = c->words[ht + n + i] - 1;
            if (!f->has_presence && !c->emit_defaults && is_default(c, f, last))
                continue;
            if ((rc = put_key(c, f, comma)) == 0)
                rc = put_value(c, f, last);
        }
        if (rc != 0)
            prepend_field(c, f);
    }
    c->words_len = wmark;
    c->occ_len = omark;
    return rc;
}

/* Scans a well-known type and returns the last occurrence of each field (NONE if absent). */
static int wkt_fields(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single, size_t *ht)
{
    int rc = push_words(c, 2 * m->field_cnt + m->oneof_cnt, ht);
    return rc ? rc : scan(c, m, first, single, *ht);
}

/* Last occurrence of the field numbered `num`, or NONE. */
static uint32_t wkt_last(const ctx_t *c, const pt_msgdesc_t *m, size_t ht, uint32_t num)
{
    const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, num);
    if (f == NULL)
        return NONE;
    uint32_t t = c->words[ht + m->field_cnt + (size_t)(f - m->fields)];
    return t ? t - 1 : NONE;
}

static uint32_t wkt_head(const ctx_t *c, const pt_msgdesc_t *m, size_t ht, uint32_t num)
{
    const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, num);
    if (f == NULL)
        return NONE;
    uint32_t h = c->words[ht + (size_t)(f - m->fields)];
    return h ? h - 1 : NONE;
}

static uint64_t occ_raw(const ctx_t *c, uint32_t o)
{
    return o == NONE ? 0 : raw_value(c->base + c->occ[o].off, c->occ[o].len, c->occ[o].wt);
}

/* Checks that a WKT field has the type the mapping expects (a hostile pool could differ). */
static bool wkt_type(const pt_msgdesc_t *m, uint32_t num, uint8_t type)
{
    const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, num);
    return f != NULL && f->type == type;
}

static int emit_any(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single, size_t ht)
{
    if (!wkt_type(m, 1, PT_FT_STRING) || !wkt_type(m, 2, PT_FT_BYTES))
        return fail(c, PT_XERR_INVALID, "malformed google.protobuf.Any descriptor");
    uint32_t uo = wkt_last(c, m, ht, 1), vo = wkt_last(c, m, ht, 2);
    if (uo == NONE || c->occ[uo].len == 0) {
        if (vo != NONE && c->occ[vo].len != 0)
            return fail(c, PT_XERR_INVALID, "Any has a value but no type_url");
        return put(c, "{}", 2);
    }
    const char *url = (const char *)c->base + c->occ[uo].off;
    size_t ulen = c->occ[uo].len;
    const pt_msgdesc_t *t = pt_descpool_any_type(c->pool, url, ulen);
    if (t == NULL) {
        char shown[128];
        size_t k = ulen < sizeof shown - 1 ? ulen : sizeof shown - 1;
        memcpy(shown, url, k);
        shown[k] = '\0';
        for (size_t i = 0; i < k; i++)
            if ((unsigned char)shown[i] < 0x20 || (unsigned char)shown[i] >= 0x7f)
                shown[i] = '?';
        return fail(c, PT_XERR_NOT_FOUND, "Any type URL \"%s\" names no type in the descriptor pool",
                    shown);
    }
    int rc = put(c, "{\"@type\":", 9);
    if (rc == 0)
        rc = put_string(c, (const uint8_t *)url, ulen);
    if (rc != 0)
        return rc;
    /* The value is a message of type t: an occurrence of its own. */
    uint32_t seg = NONE;
    if (vo != NONE && (rc = push_occ(c, c->occ[vo].off, c->occ[vo].len, PT_WT_LEN, &seg)) != 0)
        return rc;
    if (t->wkt != PT_WKT_NONE) {
        if ((rc = put(c, ",\"value\":", 9)) == 0 && (rc = emit_message(c, t, seg, true)) != 0)
            prepend(c, "value", 5);
    } else {
        bool comma = true;
        if (++c->depth > c->max_depth)
            return fail(c, PT_XERR_LIMIT, "messages nested too deeply");
        rc = emit_fields(c, t, seg, true, &comma);
        c->depth--;
    }
    return rc ? rc : putc_(c, '}');
}

static int emit_wkt(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single)
{
    size_t ht;
    int rc = wkt_fields(c, m, first, single, &ht);
    if (rc != 0)
        return rc;
    switch (m->wkt) {
    case PT_WKT_ANY:
        return emit_any(c, m, first, single, ht);
    case PT_WKT_TIMESTAMP: case PT_WKT_DURATION: {
        if (!wkt_type(m, 1, PT_FT_INT64) || !wkt_type(m, 2, PT_FT_INT32))
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        int64_t s = (int64_t)occ_raw(c, wkt_last(c, m, ht, 1));
        int32_t ns = (int32_t)(uint32_t)occ_raw(c, wkt_last(c, m, ht, 2));
        char buf[PT_TIMESTAMP_BUF + 2];
        int n = m->wkt == PT_WKT_TIMESTAMP ? pt_timestamp_format(s, ns, buf + 1)
                                           : pt_duration_format(s, ns, buf + 1);
        if (n < 0 && m->wkt == PT_WKT_DURATION && ns > -1000000000 && ns < 1000000000 &&
            ((s > 0 && ns < 0) || (s < 0 && ns > 0)))
            return fail(c, PT_XERR_INVALID,
                        "%s out of range: seconds (%lld) and nanos (%ld) have opposite signs",
                        m->full_name, (long long)s, (long)ns);
        if (n < 0)
            return fail(c, PT_XERR_INVALID, "%s out of range", m->full_name);
        buf[0] = '"';
        buf[n + 1] = '"';
        return put(c, buf, (size_t)n + 2);
    }
    case PT_WKT_FIELDMASK: {
        if (!wkt_type(m, 1, PT_FT_STRING))
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        pt_xbuf_t *o = c->out;
        size_t start = o->len;
        if ((rc = putc_(c, '"')) != 0)
            return rc;
        bool first_path = true;
        for (uint32_t p = wkt_head(c, m, ht, 1); p != NONE; p = c->occ[p].next) {
            const char *s = (const char *)c->base + c->occ[p].off;
            size_t n = c->occ[p].len;
            if (!first_path && (rc = putc_(c, ',')) != 0)
                return rc;
            first_path = false;
            size_t at = o->len;
            rc = pt_fieldmask_path_to_json(o, s, n);
            if (rc == PT_XERR_INVALID)
                return fail(c, rc, "FieldMask path cannot be written in JSON form");
            if (rc != 0)
                return fail_rc(c, rc);
            /* paths are emitted inside a JSON string: they must need no escaping */
            for (size_t i = at; i < o->len; i++)
                if (o->data[i] < 0x20 || o->data[i] == '"' || o->data[i] == '\\' || o->data[i] >= 0x80 ||
                    o->data[i] == ',') {
                    o->len = start;
                    return fail(c, PT_XERR_INVALID, "FieldMask path has invalid characters");
                }
        }
        return putc_(c, '"');
    }
    case PT_WKT_STRUCT: {
        const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, 1);
        if (f == NULL || !f->is_map)
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        uint32_t h = wkt_head(c, m, ht, 1);
        return h == NONE ? put(c, "{}", 2) : emit_map(c, f, h);
    }
    case PT_WKT_LISTVALUE: {
        const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, 1);
        if (f == NULL || f->label != PT_LABEL_REPEATED || f->type != PT_FT_MESSAGE)
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        uint32_t h = wkt_head(c, m, ht, 1);
        return h == NONE ? put(c, "[]", 2) : emit_array(c, f, h);
    }
    case PT_WKT_VALUE: {
        /* the kind is the last oneof member set */
        int32_t kind = 0;
        size_t n = m->field_cnt;
        for (size_t i = 0; i < n; i++)
            if (m->fields[i].oneof_index == 0 && c->words[ht + 2 * n] == i + 1)
                kind = (int32_t)m->fields[i].number;
        if (m->oneof_cnt == 0)
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        const pt_fielddesc_t *f = kind ? pt_msgdesc_field_by_number(m, (uint32_t)kind) : NULL;
        uint32_t o = kind ? wkt_last(c, m, ht, (uint32_t)kind) : NONE;
        switch (kind) {
        case 0: case 1:
            return put(c, "null", 4);
        case 2: {
            if (f->type != PT_FT_DOUBLE)
                break;
            uint64_t v = occ_raw(c, o);
            double d;
            memcpy(&d, &v, sizeof d);
            if (!isfinite(d))
                return fail(c, PT_XERR_INVALID, "google.protobuf.Value cannot hold %s",
                            isnan(d) ? "NaN" : "an infinity");
            return put_double(c, d, false);
        }
        case 3: case 4:
            if (f->type != (kind == 3 ? PT_FT_STRING : PT_FT_BOOL))
                break;
            return put_value(c, f, o);
        case 5: case 6:
            if (f->type != PT_FT_MESSAGE)
                break;
            return emit_message(c, f->message, wkt_head(c, m, ht, (uint32_t)kind), false);
        default:
            break;
        }
        return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
    }
    case PT_WKT_EMPTY:
        return put(c, "{}", 2);
    default: { /* wrappers: the bare value */
        const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, 1);
        if (f == NULL || f->label == PT_LABEL_REPEATED || f->type == PT_FT_MESSAGE ||
            f->type == PT_FT_GROUP)
            return fail(c, PT_XERR_INVALID, "malformed %s descriptor", m->full_name);
        uint32_t o = wkt_last(c, m, ht, 1);
        return o == NONE ? put_default(c, f) : put_value(c, f, o);
    }
    }
}

static int emit_message(ctx_t *c, const pt_msgdesc_t *m, uint32_t first, bool single)
{
    if (++c->depth > c->max_depth) {
        c->depth--;
        return fail(c, PT_XERR_LIMIT, "messages nested deeper than the limit");
    }
    int rc;
    size_t wmark = c->words_len, omark = c->occ_len;
    if (m->wkt != PT_WKT_NONE) {
        rc = emit_wkt(c, m, first, single);
    } else {
        bool comma = false;
        rc = putc_(c, '{');
        if (rc == 0)
            rc = emit_fields(c, m, first, single, &comma);
        if (rc == 0)
            rc = putc_(c, '}');
    }
    c->words_len = wmark;
    c->occ_len = omark;
    c->depth--;
    return rc;
}

int pt_pb_to_json(const pt_descpool_t *pool, const pt_msgdesc_t *m, const uint8_t *pb, size_t len,
                  const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerr_t *err)
{
    static const pt_json_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    pt_xerr_clear(err);
    if (len > UINT32_MAX - 1 || (opts->max_size != 0 && len > opts->max_size))
        return pt_xerr_set(err, PT_XERR_LIMIT, NULL, "protobuf input of %zu bytes is over the limit", len);
    ctx_t c;
    c.pool = pool;
    c.null_enum = NULL;
    c.null_enum_known = false;
    c.base = pb;
    c.out = out;
    c.err = err;
    c.a = out->a;
    c.emit_defaults = opts->emit_defaults;
    c.proto_names = opts->proto_names;
    c.enums_as_ints = opts->enums_as_ints;
    c.depth = 0;
    c.max_depth = opts->max_depth ? opts->max_depth : PT_JSON_DEFAULT_MAX_DEPTH;
    c.occ = c.occ_inline;
    c.occ_len = 0;
    c.occ_cap = sizeof c.occ_inline / sizeof c.occ_inline[0];
    c.words = c.words_inline;
    c.words_len = 0;
    c.words_cap = sizeof c.words_inline / sizeof c.words_inline[0];
    if (c.max_depth > PT_JSON_MAX_DEPTH_CAP)
        c.max_depth = PT_JSON_MAX_DEPTH_CAP;
    size_t start = out->len, saved_limit = out->limit;
    if (opts->max_size != 0 && (out->limit == 0 || out->limit - start > opts->max_size))
        out->limit = start + opts->max_size;
    uint32_t top;
    int rc = push_occ(&c, 0, (uint32_t)len, PT_WT_LEN, &top);
    if (rc == 0)
        rc = emit_message(&c, m, top, true);
    out->limit = saved_limit;
    if (rc != 0)
        out->len = start;
    if (c.occ != c.occ_inline)
        pt_xfree(c.a, c.occ);
    if (c.words != c.words_inline)
        pt_xfree(c.a, c.words);
    return rc;
}
