/*
 * json_lex.h -- strict, zero-copy JSON pull lexer (internal to the transcoder).
 *
 * The lexer walks an in-memory JSON text (RFC 8259, strict) and hands out one
 * token per call. It never allocates for tokens: strings and numbers are slices
 * of the input. It validates everything the grammar requires while it scans:
 *
 *   - structure: commas, colons, brackets; no trailing commas; exactly one
 *     top-level value followed only by whitespace; no BOM;
 *   - numbers: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?  (no leading
 *     zeros, no bare NaN/Infinity, no '+'), kept as text so the caller can
 *     convert 64-bit integers and exponents exactly;
 *   - strings: no raw control characters, only the escapes of RFC 8259,
 *     \u surrogates properly paired, strict UTF-8 (no overlong forms, no
 *     encoded surrogates, nothing above U+10FFFF);
 *   - nesting depth: at most `max_depth` open containers (capped at
 *     PT_JLEX_DEPTH_CAP); the nesting stack is a fixed bit array in the
 *     struct, so a 100k-level bomb fails fast with no stack growth;
 *   - duplicate keys: when a key set is attached (pt_jlex_set_keyset), every
 *     object's keys are checked for duplicates (after unescaping), except in
 *     objects the caller marks with pt_jlex_nocheck() because it checks them
 *     itself (protobuf message objects use a per-field bitmap instead).
 *
 * The lexer is not recursive. Copying a pt_jlex_t gives an independent cursor
 * for looking ahead inside the current value (see json_to_pb.c's Any handling);
 * restoring the copy rewinds.
 */
#ifndef PT_TRANSCODER_JSON_LEX_H
#define PT_TRANSCODER_JSON_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"

/** Hard cap on nesting, whatever max_depth the caller asks for. */
#define PT_JLEX_DEPTH_CAP 2048

typedef enum pt_jtok_type {
    PT_JTOK_ERROR = 0, /**< see lx->err_msg / err_pos / err_code */
    PT_JTOK_EOF,       /**< end of input after a complete top-level value */
    PT_JTOK_OBJ_BEGIN,
    PT_JTOK_OBJ_END,
    PT_JTOK_ARR_BEGIN,
    PT_JTOK_ARR_END,
    PT_JTOK_KEY, /**< an object key (the ':' is consumed); s/len = raw content */
    PT_JTOK_STRING,
    PT_JTOK_NUMBER,
    PT_JTOK_TRUE,
    PT_JTOK_FALSE,
    PT_JTOK_NULL,
} pt_jtok_type_t;

/* Token flags. */
#define PT_JTOK_F_ESC 0x01  /**< string/key contains backslash escapes */
#define PT_JTOK_F_NEG 0x02  /**< number starts with '-' */
#define PT_JTOK_F_FRAC 0x04 /**< number has a fraction part */
#define PT_JTOK_F_EXP 0x08  /**< number has an exponent */

/**
 * One token. For KEY and STRING, `s[0..len)` is the raw content between the
 * quotes (escapes not decoded; use pt_jstr_decode when F_ESC is set); for
 * NUMBER it is the number text. `off` is the byte offset of the token start.
 */
typedef struct pt_jtok {
    const char *s;
    size_t len;
    size_t off;
    uint8_t type;
    uint8_t flags;
} pt_jtok_t;

/** Per-document duplicate-key checker (a hash set over (object id, key)). */
typedef struct pt_jkeyset {
    const pt_allocator_t *a;
    struct pt_jkey_slot *slots;
    uint32_t cap, cnt;
    uint64_t seed;
} pt_jkeyset_t;

typedef struct pt_jlex {
    const char *begin, *p, *end;
    uint32_t depth, max_depth;
    uint8_t state;
    /* error detail, valid after PT_JTOK_ERROR */
    int err_code;        /* PT_XERR_INVALID, PT_XERR_LIMIT or PT_XERR_NOMEM */
    const char *err_msg; /* static text */
    size_t err_pos;      /* byte offset */
    /* duplicate-key checking */
    pt_jkeyset_t *keys;
    uint32_t next_obj_id;
    uint32_t obj_id[PT_JLEX_DEPTH_CAP]; /* 0 = not checked */
    /* bit i set: container at depth i+1 is an object */
    uint64_t is_obj[PT_JLEX_DEPTH_CAP / 64];
} pt_jlex_t;

/**
 * Starts lexing `len` bytes at `s` (not NUL-terminated; the bytes must stay
 * valid while the lexer is used). `max_depth` 0 means 64; values above
 * PT_JLEX_DEPTH_CAP are clamped. No allocation.
 */
void pt_jlex_init(pt_jlex_t *lx, const char *s, size_t len, unsigned max_depth);

/**
 * Attaches a duplicate-key checker (initialised with pt_jkeyset_init); from
 * the next object on, keys are checked. NULL detaches.
 */
static inline void pt_jlex_set_keyset(pt_jlex_t *lx, pt_jkeyset_t *ks) { lx->keys = ks; }

/**
 * Reads the next token into `t` and returns its type. On PT_JTOK_ERROR the
 * lexer stays in the error state (every later call fails again).
 */
int pt_jlex_next(pt_jlex_t *lx, pt_jtok_t *t);

/**
 * Exempts the innermost open object (just returned as OBJ_BEGIN) from the
 * duplicate-key check: the caller promises to detect duplicates itself.
 */
static inline void pt_jlex_nocheck(pt_jlex_t *lx)
{
    if (lx->depth > 0)
        lx->obj_id[lx->depth - 1] = 0;
}

/**
 * Skips the rest of a value whose first token `first` was just read: for
 * OBJ_BEGIN/ARR_BEGIN, everything up to the matching end; nothing for
 * scalars. Returns 0 or -1 on a lexical error (details in lx).
 */
int pt_jlex_skip(pt_jlex_t *lx, const pt_jtok_t *first);

/**
 * A saved cursor position for looking ahead inside the current value: save,
 * read on (with the key set detached, so look-ahead keys are not recorded),
 * restore. Only valid while the lexer stays inside the container that was
 * open when the mark was taken.
 */
typedef struct pt_jlex_mark {
    const char *p;
    uint32_t depth;
    uint8_t state;
    pt_jkeyset_t *keys;
} pt_jlex_mark_t;

static inline void pt_jlex_save(pt_jlex_t *lx, pt_jlex_mark_t *m)
{
    m->p = lx->p;
    m->depth = lx->depth;
    m->state = lx->state;
    m->keys = lx->keys;
    lx->keys = NULL;
}

static inline void pt_jlex_restore(pt_jlex_t *lx, const pt_jlex_mark_t *m)
{
    lx->p = m->p;
    lx->depth = m->depth;
    lx->state = m->state;
    lx->keys = m->keys;
}

/** Byte offset of the cursor. */
static inline size_t pt_jlex_pos(const pt_jlex_t *lx) { return (size_t)(lx->p - lx->begin); }

/**
 * Decodes the raw content of a validated string token into `out` (which must
 * have room for `len` bytes: decoding never grows the text). Returns the
 * decoded length. Only valid on slices the lexer accepted.
 */
size_t pt_jstr_decode(const char *s, size_t len, char *out);

/**
 * Compares a validated raw string (with `esc` telling whether it has
 * escapes) with plain bytes `b[0..blen)`, without allocating.
 */
bool pt_jstr_eq(const char *s, size_t len, bool esc, const char *b, size_t blen);

/** Initialises an empty key set. No allocation until the first key. */
void pt_jkeyset_init(pt_jkeyset_t *ks, const pt_allocator_t *a);

/** Frees the key set's storage. */
void pt_jkeyset_dispose(pt_jkeyset_t *ks);

#endif /* PT_TRANSCODER_JSON_LEX_H */
