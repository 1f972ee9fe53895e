/*
 * path.h -- request path normalisation (one form for routing, auth and the
 * upstream).
 */
#ifndef PT_GATEWAY_PATH_H
#define PT_GATEWAY_PATH_H

#include "portico/arena.h"
#include "portico/str.h"

/**
 * Normalises an origin-form path (without the query) once, so that routing,
 * filters and the forwarded request all agree (SECURITY-CASES AU-12):
 *  - it must start with '/'; control bytes, spaces, '#', '\\' and non-ASCII
 *    bytes are refused;
 *  - percent-encodings must be well formed; those of unreserved characters
 *    (ALPHA DIGIT - . _ ~) are decoded, the rest are kept with uppercase hex;
 *  - an encoded '/' (%2F) or '\\' (%5C) or NUL (%00) is refused unless
 *    `allow_encoded_slash` (then kept encoded);
 *  - dot segments are removed ("/a/./b/../c" -> "/a/c"); ".." above the root
 *    is refused.
 * Returns 0 and sets *out (arena memory, or `in` itself when unchanged), or
 * PT_ERR_INVALID with a static reason in *why, or PT_ERR_LIMIT.
 */
int pt_path_normalize(pt_arena_t *a, pt_str_t in, bool allow_encoded_slash, pt_str_t *out,
                      const char **why);

#endif /* PT_GATEWAY_PATH_H */
