/*
 * xml_internal.h -- shared pieces of the transcoder's XML side (internal).
 *
 *   pt__xpool_*   a bump allocator over the caller's pt_allocator_t: models
 *                 and per-call scratch (JSON trees) are freed in one go;
 *   pt__xp_*      the one safe way to parse XML here: a libxml2 push parser
 *                 with XML_PARSE_NONET, no NOENT/DTDLOAD/DTDATTR/HUGE, any
 *                 DOCTYPE refused at its first byte, and our caps on total
 *                 bytes, depth and attributes checked in the SAX callbacks;
 *   pt__jv_*      a small JSON tree built with the strict pull lexer
 *                 (duplicate keys refused), for conversions that must visit
 *                 keys in schema order rather than document order;
 *   pt__put_*     JSON string and XML text/attribute escaping.
 */
#ifndef PT_TRANSCODER_XML_INTERNAL_H
#define PT_TRANSCODER_XML_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libxml/tree.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/xerr.h"

/* ---- pool ---------------------------------------------------------------- */

typedef struct pt__xpool_blk pt__xpool_blk_t;
typedef struct pt__xpool {
    const pt_allocator_t *a;
    pt__xpool_blk_t *head;
    size_t used, cap;
    size_t total; /* bytes handed out, for limits */
    size_t limit; /* 0 = none */
} pt__xpool_t;

void pt__xpool_init(pt__xpool_t *p, const pt_allocator_t *a, size_t limit);
void pt__xpool_dispose(pt__xpool_t *p);
/** Zeroed memory, 16-byte aligned; NULL on NOMEM or over the limit. */
void *pt__xpool_alloc(pt__xpool_t *p, size_t n);
/** Copy of s[0..n) with a NUL; NULL on NOMEM. */
char *pt__xpool_strndup(pt__xpool_t *p, const char *s, size_t n);
static inline char *pt__xpool_strdup(pt__xpool_t *p, const char *s)
{
    return pt__xpool_strndup(p, s, strlen(s));
}

/* ---- safe parser ----------------------------------------------------------- */

/** Why a parse failed. */
typedef enum pt__xp_fail {
    PT_XP_OK = 0,
    PT_XP_NOT_XML,   /* not well-formed, bad encoding, empty */
    PT_XP_LIMIT,     /* size, depth, attributes */
    PT_XP_DOCTYPE,   /* a DOCTYPE */
    PT_XP_NOMEM,
} pt__xp_fail_t;

typedef struct pt__xp_opts {
    size_t max_size;
    unsigned max_depth;
    unsigned max_attrs;
    const char *name; /* for libxml2's base URI; may be NULL */
} pt__xp_opts_t;

typedef struct pt__xp pt__xp_t;

/** New parser that builds a libxml2 tree; NULL on NOMEM. */
pt__xp_t *pt__xp_new(const pt_allocator_t *a, const pt__xp_opts_t *o);

/** Feeds a chunk; returns the failure so far (PT_XP_OK to go on). */
pt__xp_fail_t pt__xp_feed(pt__xp_t *x, const void *data, size_t len);
/**
 * Ends the input. On success returns PT_XP_OK and *doc (the caller frees it
 * with xmlFreeDoc; always NULL for a streaming parser); else the failure,
 * with pt__xp_msg() telling why.
 */
pt__xp_fail_t pt__xp_finish(pt__xp_t *x, xmlDocPtr *doc);
/** Our own description of the failure (never libxml2's text), with line/col. */
const char *pt__xp_msg(const pt__xp_t *x);
int pt__xp_line(const pt__xp_t *x);
int pt__xp_col(const pt__xp_t *x);
void pt__xp_free(pt__xp_t *x);

/** Maps a failure to PT_XERR_INVALID / LIMIT / NOMEM. */
int pt__xp_code(pt__xp_fail_t f);

/* ---- JSON tree ------------------------------------------------------------- */

enum { PT_JV_NULL = 1, PT_JV_TRUE, PT_JV_FALSE, PT_JV_NUM, PT_JV_STR, PT_JV_OBJ, PT_JV_ARR };

typedef struct pt__jv pt__jv_t;
struct pt__jv {
    uint8_t type;
    uint8_t numflags;  /* PT_JTOK_F_* for numbers */
    bool from_text;    /* a path/query binding: a string to read as the type's text form */
    bool used;         /* set by converters that check for unknown keys */
    const char *s;     /* decoded string / number text / NULL */
    size_t len;
    const char *key;   /* decoded key when in an object */
    size_t key_len;
    pt__jv_t *first, *last, *next; /* children (object members / array items) */
    size_t n;
};

/**
 * Parses json[0..len) into a tree allocated from `p`. Returns 0 or
 * PT_XERR_INVALID / LIMIT / NOMEM with `err` filled ("at byte N: ...").
 */
int pt__jv_parse(pt__xpool_t *p, const char *json, size_t len, unsigned max_depth, pt__jv_t **out,
                 pt_xerr_t *err);
/** Member `key` of object `o`, or NULL. */
pt__jv_t *pt__jv_get(const pt__jv_t *o, const char *key, size_t klen);
/** Appends a child (keeps first/last/n). */
void pt__jv_append(pt__jv_t *parent, pt__jv_t *kid);
/** JSON type name, for messages ("string", "number", ...). */
const char *pt__jv_type_name(const pt__jv_t *v);

/* ---- short byte strings ------------------------------------------------------ */

/*
 * Names, namespace names and short values are a few bytes to a few dozen:
 * compared and copied here with word loads (overlapping at the end) rather
 * than a libc call each. Neither reads outside [a, a+n) / [s, s+n).
 */
static inline uint64_t pt__ld8(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t pt__ld4(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/** a[0..n) == b[0..n) */
static inline bool pt__same(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8)
            if (pt__ld8(x + i) != pt__ld8(y + i))
                return false;
        return pt__ld8(x + (n - 8)) == pt__ld8(y + (n - 8));
    }
    if (n >= 4)
        return pt__ld4(x) == pt__ld4(y) && pt__ld4(x + (n - 4)) == pt__ld4(y + (n - 4));
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return false;
    return true;
}

/** memcpy(d, s, n) for the short copies of the answer path. */
static inline void pt__copy(void *d, const void *s, size_t n)
{
    unsigned char *o = d;
    const unsigned char *i = s;
    if (n > 16) {
        memcpy(o, i, n);
    } else if (n >= 8) {
        uint64_t a = pt__ld8(i), b = pt__ld8(i + (n - 8));
        memcpy(o, &a, 8);
        memcpy(o + (n - 8), &b, 8);
    } else if (n >= 4) {
        uint32_t a = pt__ld4(i), b = pt__ld4(i + (n - 4));
        memcpy(o, &a, 4);
        memcpy(o + (n - 4), &b, 4);
    } else {
        for (size_t k = 0; k < n; k++)
            o[k] = i[k];
    }
}

/* True when one of the 8 bytes in v is a control, '"' or '\\' (the
 * has-less-than / has-zero-byte tests: exact for "is there one", no more). */
static inline bool pt__esc8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');
    return (((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high;
}

/** True when s[0..n) holds a byte a JSON string must escape (a control, '"',
 * '\\'): whole words, the last one overlapping, short strings gathered into
 * one word padded with blanks. */
static inline bool pt__json_needs_esc(const char *s, size_t n)
{
    uint64_t v;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (pt__esc8(pt__ld8(s + i)))
                return true;
        v = pt__ld8(s + (n - 8));
    } else if (n >= 4) {
        v = (uint64_t)pt__ld4(s) | (uint64_t)pt__ld4(s + (n - 4)) << 32;
    } else if (n > 0) {
        v = 0x2020202020000000u | (unsigned char)s[0] | (uint64_t)(unsigned char)s[n / 2] << 8 |
            (uint64_t)(unsigned char)s[n - 1] << 16;
    } else {
        return false;
    }
    return pt__esc8(v);
}

/** Appends s[0..n) as a quoted JSON string. */
int pt__put_json_str(pt_xbuf_t *b, const char *s, size_t n);

/** pt__put_json_str(), the common case (nothing to escape) inline. */
static inline int pt__put_json_str_fast(pt_xbuf_t *b, const char *s, size_t n)
{
    if (pt__json_needs_esc(s, n) || pt_xbuf_reserve(b, n + 2) != 0)
        return pt__put_json_str(b, s, n);
    uint8_t *o = b->data + b->len;
    o[0] = '"';
    pt__copy(o + 1, s, n);
    o[n + 1] = '"';
    b->len += n + 2;
    return 0;
}

/* ---- output helpers --------------------------------------------------------- */

/**
 * Appends s[0..n) escaped as XML character data (attr: for a double-quoted
 * attribute value). Returns PT_XERR_INVALID for a character XML 1.0 cannot
 * carry (controls other than tab/LF/CR), else as pt_xbuf_grow().
 */
int pt__put_xml_text(pt_xbuf_t *b, const char *s, size_t n, bool attr);
/** True when s[0..n) is an XML Name (ASCII-strict plus any non-ASCII byte). */
bool pt__is_xml_name(const char *s, size_t n);

/** "prefix:local" or "local" of a node/attribute name into b (NUL-terminated). */
const char *pt__xml_qname(const xmlNs *ns, const xmlChar *name, char *b, size_t n);

/* ---- generic conversion, shared with the SOAP fault detail ---------------- */

/** Appends the generic JSON form of element `e` (see xmljson.h) to out. */
int pt__xml_generic_value(const xmlNode *e, pt_xbuf_t *out, unsigned depth, unsigned max_depth);
/**
 * Appends the content (attributes + children) of `v` under the generic
 * convention as the inside of an element whose start tag is open up to the
 * attributes: writes attributes, then ">" and the children. For anyType on
 * the SOAP side and for pt_json_to_xml.
 */
int pt__json_generic_content(const pt__jv_t *v, pt_xbuf_t *out, pt_xpath_t *path,
                             pt_xerr_t *err);

#endif /* PT_TRANSCODER_XML_INTERNAL_H */
