/*
 * xerr.h -- transcoder errors that name the offending value.
 *
 * Every transcoder function that can fail returns 0 or a negative PT_XERR_*
 * code and, when given a pt_xerr_t, fills it with the code, a path to the
 * offending value and a message, e.g.
 *
 *     shelf.books[2].author: expected string, got number
 *
 * pt_xerrs_t collects several errors ("report every problem of a request"), as
 * the HTTP binder needs for google.rpc.BadRequest field violations.
 *
 * pt_xpath_t builds the path cheaply during a recursive walk: push a segment,
 * recurse, pop back to the mark. No allocation; a path longer than the buffer
 * is truncated with "..." rather than failing.
 */
#ifndef PT_TRANSCODER_XERR_H
#define PT_TRANSCODER_XERR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Error codes; all negative, 0 is success. */
#define PT_XERR_INVALID (-1)   /**< the input does not match the schema or mapping */
#define PT_XERR_NOMEM (-2)     /**< the allocator returned NULL */
#define PT_XERR_LIMIT (-3)     /**< a depth or size limit was exceeded */
#define PT_XERR_NOT_FOUND (-4) /**< unknown type, method or type URL */
#define PT_XERR_CORRUPT (-5)   /**< malformed descriptors or protobuf wire data */

#define PT_XERR_PATH_MAX 256
#define PT_XERR_MSG_MAX 256
#define PT_XERRS_MAX 32

/** One error. `path` is "" when the error is about the whole input. */
typedef struct pt_xerr {
    int code;
    char path[PT_XERR_PATH_MAX];
    char msg[PT_XERR_MSG_MAX];
} pt_xerr_t;

/**
 * A bounded list of errors. `cnt` entries are valid; errors beyond
 * PT_XERRS_MAX are counted in `dropped` and otherwise discarded.
 */
typedef struct pt_xerrs {
    size_t cnt;
    size_t dropped;
    pt_xerr_t items[PT_XERRS_MAX];
} pt_xerrs_t;

/** A path under construction: `buf[0..len)` is the rendered path, always NUL-terminated. */
typedef struct pt_xpath {
    size_t len;
    bool truncated;
    char buf[PT_XERR_PATH_MAX];
} pt_xpath_t;

/** Static name of a code ("INVALID", "NOMEM", ...); "OK" for 0, "UNKNOWN" otherwise. */
const char *pt_xerr_name(int code);

/** Empties `e` (code 0, empty path and message). NULL is accepted. */
void pt_xerr_clear(pt_xerr_t *e);

/**
 * Fills `e` with `code`, the path `path` (NULL = empty) and a printf-style
 * message, truncated to fit. `e` may be NULL (then only the code is returned).
 * Returns `code`, so callers can write `return pt_xerr_set(err, ...)`.
 */
int pt_xerr_set(pt_xerr_t *e, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** va_list form of pt_xerr_set(). */
int pt_xerr_vset(pt_xerr_t *e, int code, const char *path, const char *fmt, va_list ap);

/**
 * Writes "path: message" (or just "message" when the path is empty) into
 * `out` (`n` bytes, always NUL-terminated when n > 0). Returns the length the
 * full text would have, like snprintf.
 */
size_t pt_xerr_format(const pt_xerr_t *e, char *out, size_t n);

/** Empties the list. */
void pt_xerrs_clear(pt_xerrs_t *l);

/**
 * Appends an error (or counts it in `dropped` when full). Returns `code`.
 * `l` may be NULL.
 */
int pt_xerrs_add(pt_xerrs_t *l, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Appends a copy of `e`; as pt_xerrs_add(). Returns e->code. */
int pt_xerrs_push(pt_xerrs_t *l, const pt_xerr_t *e);

/** Empties a path. */
static inline void pt_xpath_init(pt_xpath_t *p)
{
    p->len = 0;
    p->truncated = false;
    p->buf[0] = '\0';
}

/** Returns the current length, to pass to pt_xpath_pop() after the nested walk. */
static inline size_t pt_xpath_mark(const pt_xpath_t *p) { return p->len; }

/** Restores the path to an earlier mark. */
void pt_xpath_pop(pt_xpath_t *p, size_t mark);

/** Appends ".name" (just "name" at the start of the path). Returns the mark before the push. */
size_t pt_xpath_push_field(pt_xpath_t *p, const char *name, size_t len);

/** Appends "[i]". Returns the mark before the push. */
size_t pt_xpath_push_index(pt_xpath_t *p, size_t i);

/** Appends ["key"] with the key JSON-escaped. Returns the mark before the push. */
size_t pt_xpath_push_key(pt_xpath_t *p, const char *key, size_t len);

#endif /* PT_TRANSCODER_XERR_H */
