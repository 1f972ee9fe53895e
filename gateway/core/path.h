/*
 * path.h -- request path normalisation (one form for routing, auth and the
 * upstream).
 */
#ifndef PT_GATEWAY_PATH_H
#define PT_GATEWAY_PATH_H

#include "portico/arena.h"
#include "portico/str.h"

/* Flags of pt_path_normalize(). */
#define PT_PATH_ALLOW_ENCODED_SLASH 0x1u /* keep %2F / %5C (encoded) instead of refusing them */
#define PT_PATH_KEEP_EMPTY_SEGMENTS 0x2u /* keep "//" (limits.merge_slashes: false) */

/**
 * Normalises an origin-form path (without the query) once, so that routing,
 * filters and the forwarded request all agree (SECURITY-CASES AU-12):
 *  - it must start with '/'; control bytes, spaces, '#', '\\' and non-ASCII
 *    bytes are refused;
 *  - percent-encodings must be well formed; those of unreserved characters
 *    (ALPHA DIGIT - . _ ~) are decoded, the rest are kept with uppercase hex;
 *  - an encoded '/' (%2F) or '\\' (%5C) or NUL (%00) is refused unless
 *    PT_PATH_ALLOW_ENCODED_SLASH is in `flags` (then kept encoded);
 *  - dot segments are removed ("/a/./b/../c" -> "/a/c"); ".." above the root
 *    is refused;
 *  - a segment that is "." or ".." followed by parameters (";x", also
 *    "%2e%2e;" and "..%3B") is refused: Servlet containers strip the
 *    parameters and then climb, so "/public/..;/admin" would reach "/admin"
 *    behind a prefix rule's back;
 *  - empty segments are merged ("//admin///x" -> "/admin/x", a trailing "/"
 *    kept once) unless PT_PATH_KEEP_EMPTY_SEGMENTS is in `flags`.
 * Returns 0 and sets *out (arena memory, or `in` itself when unchanged), or
 * PT_ERR_INVALID with a static reason in *why, or PT_ERR_LIMIT.
 */
int pt_path_normalize(pt_arena_t *a, pt_str_t in, unsigned flags, pt_str_t *out, const char **why);

#endif /* PT_GATEWAY_PATH_H */
