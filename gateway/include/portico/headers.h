/*
 * headers.h -- ordered header lists.
 *
 * A pt_headers_t is an ordered array of (name, value) slices that lives in
 * an arena (the request's). Names are stored lowercase: the codecs lowercase
 * them on the way in (HTTP/2 requires it anyway), so every lookup is a plain
 * byte compare of lowercase names. Values are kept as received (trimmed of
 * surrounding whitespace by the codec). Duplicate names are kept in order,
 * which is what HTTP needs for Set-Cookie and for joined list headers.
 *
 * Not thread-safe; used only on the owning worker.
 */
#ifndef PT_PORTICO_HEADERS_H
#define PT_PORTICO_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include "portico/arena.h"
#include "portico/str.h"

typedef struct pt_header {
    pt_str_t name;  /* lowercase */
    pt_str_t value;
} pt_header_t;

typedef struct pt_headers {
    pt_header_t *v;
    size_t cnt, cap;
    pt_arena_t *arena; /* where entries and copies live */
} pt_headers_t;

/** Initialises an empty list whose storage comes from `a`. */
void pt_headers_init(pt_headers_t *h, pt_arena_t *a);

/**
 * Appends (name, value) without copying the bytes: both slices must outlive
 * the list (arena memory or static strings). `name` must already be lowercase.
 * Returns 0 or PT_ERR_LIMIT when the arena is over its byte limit.
 */
int pt_headers_add_nocopy(pt_headers_t *h, pt_str_t name, pt_str_t value);

/** Like pt_headers_add_nocopy() but copies both slices into the arena and lowercases the name. */
int pt_headers_add(pt_headers_t *h, pt_str_t name, pt_str_t value);

/** Removes every entry named `name`, then appends one (copied). Returns 0 or PT_ERR_LIMIT. */
int pt_headers_set(pt_headers_t *h, pt_str_t name, pt_str_t value);

/** Removes every entry named `name` (case-insensitive). Returns how many were removed. */
size_t pt_headers_remove(pt_headers_t *h, pt_str_t name);

/**
 * Renames every entry named `from` to `to` (copied, lowercased), keeping
 * values and order. Returns how many were renamed, or PT_ERR_LIMIT.
 */
int pt_headers_rename(pt_headers_t *h, pt_str_t from, pt_str_t to);

/** The first entry named `name` (case-insensitive), or NULL. */
const pt_header_t *pt_headers_find(const pt_headers_t *h, pt_str_t name);

/** The value of the first entry named `name`, or PT_STR_NULL (base NULL) when absent. */
pt_str_t pt_headers_get(const pt_headers_t *h, pt_str_t name);

/** Number of entries named `name`. */
size_t pt_headers_count(const pt_headers_t *h, pt_str_t name);

/**
 * True when a comma-separated list header `name` contains `token`
 * (case-insensitive, whitespace around elements ignored), in any entry.
 * E.g. pt_headers_has_token(h, PT_STR("connection"), PT_STR("close")).
 */
bool pt_headers_has_token(const pt_headers_t *h, pt_str_t name, pt_str_t token);

/** True for the hop-by-hop header names of RFC 9110 §7.6.1 (connection, keep-alive, te, ...). */
bool pt_header_is_hop_by_hop(pt_str_t lowercase_name);

/** True when `name` is a valid field name (RFC 9110 token) and, if `allow_underscore` is false, has no '_'. */
bool pt_header_name_valid(pt_str_t name, bool allow_underscore);

/** True when `value` has no CR, LF, NUL or other control byte except HTAB. */
bool pt_header_value_valid(pt_str_t value);

#endif /* PT_PORTICO_HEADERS_H */
