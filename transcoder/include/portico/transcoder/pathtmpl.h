/*
 * pathtmpl.h -- google.api.http path templates: compile, and match many at once.
 *
 * A template follows the grammar of google/api/http.proto:
 *
 *     Template  = "/" Segments [ Verb ] ;      ("/" alone is accepted: the root)
 *     Segments  = Segment { "/" Segment } ;
 *     Segment   = "*" | "**" | LITERAL | Variable ;
 *     Variable  = "{" FieldPath [ "=" Segments ] "}" ;
 *     FieldPath = IDENT { "." IDENT } ;
 *     Verb      = ":" LITERAL ;
 *
 * `*` matches exactly one path segment; `**` zero or more and may only be the
 * last segment of the template (the verb may follow it). `{x}` means `{x=*}`.
 * Variables do not nest; a field path appears at most once per template.
 * LITERAL is one or more RFC 3986 "pchar" bytes (unreserved, sub-delims, "@",
 * percent-escapes) other than ":" (which starts the verb); "." and ".." are
 * refused as literals. Errors name the 1-based column: "column 7: ...".
 *
 * Matching (pt_pathmatcher_t) serves every template of a route table in one
 * walk of a trie keyed on path segments; each node has literal children (binary
 * search), one `*` child, and the templates ending there or in `**` after it.
 *
 * PRECEDENCE. Segments are compared left to right, and at each segment a
 * literal beats `*`, which beats `**`; a template ending exactly here beats a
 * `**` that would match zero segments. So for GET /v1/shelves/default the
 * order is /v1/shelves/default, then /v1/shelves/{id}, then /v1/{name=**}.
 * Among templates with the same shape, an exact HTTP method beats a custom
 * "*" method. Only templates that accept the request's HTTP method compete: if
 * GET /a/{x} and POST /a/b exist, GET /a/b matches /a/{x}. Two templates with
 * the same shape, verb and method conflict and the second is refused at add
 * time.
 *
 * VERBS. When the last path segment contains ':', the part after the last ':'
 * is tried as a verb first (only against templates with that verb); if no
 * template matches that way, the whole segment is tried against verb-less
 * templates, so GET /v1/things/a:b still reaches /v1/things/{id} with id "a:b".
 *
 * PATH HYGIENE AND DECODING (SECURITY-CASES JP-5, AU-12). Before matching, the
 * request path (up to the first '?' or '#') is checked and normalized per
 * segment: it must start with "/"; an empty segment ("//", a trailing "/"), a
 * "." or ".." segment (also when spelled "%2E%2e"), a malformed percent-escape
 * or a control byte make the result PT_PATHMATCH_BAD_PATH (answer 400).
 * Escapes of unreserved characters are decoded ("%61dmin" is "admin") and
 * other escapes get upper-case hex, so literals compare equal however they
 * were spelled. Variable values are then decoded as http.proto specifies:
 *   - single-segment variables ({x}, {x=*}, {x=lit}) are fully percent-decoded;
 *     a value containing "/" after decoding ("%2F") is refused as BAD_PATH,
 *     because a single-segment variable must not span segments (set
 *     allow_encoded_slash to accept it);
 *   - multi-segment variables ({x=**}, or {x=a/b} spanning several segments) are decoded except
 * "%2F" (kept as the three characters "%2F"), so a value's "/" always was a real separator. Values
 * are byte strings (a decoded value may contain any byte, NUL included); UTF-8 checks belong to the
 * field binder.
 *
 * Thread-safety: a matcher is built on one thread, then read-only: any number
 * of threads may call pt_pathmatcher_match() concurrently. Matching never
 * allocates; it writes decoded values into a caller-supplied scratch buffer.
 */
#ifndef PT_TRANSCODER_PATHTMPL_H
#define PT_TRANSCODER_PATHTMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/xerr.h"

/** Longest template text accepted, in bytes. */
#define PT_PATHTMPL_MAX_LEN 4096
/** Most segments in one template. */
#define PT_PATHTMPL_MAX_SEGMENTS 64
/** Most variables in one template. */
#define PT_PATHTMPL_MAX_VARS 16
/** Most segments in a request path; longer paths give PT_PATHMATCH_LIMIT. */
#define PT_PATHMATCH_MAX_SEGMENTS 256

/** A compiled template. Immutable after pt_pathtmpl_parse(). */
typedef struct pt_pathtmpl pt_pathtmpl_t;

/** Kinds of template segments. */
typedef enum pt_pathseg_kind {
    PT_PATHSEG_LITERAL = 0, /**< exact (normalized) text */
    PT_PATHSEG_STAR = 1,    /**< `*`: one segment */
    PT_PATHSEG_DSTAR = 2,   /**< `**`: zero or more segments (always last) */
} pt_pathseg_kind_t;

/** One template segment (read-only view). */
typedef struct pt_pathseg {
    pt_pathseg_kind_t kind;
    const char *lit; /**< normalized literal, NUL-terminated; NULL unless LITERAL */
    size_t lit_len;
} pt_pathseg_t;

/** One variable of a template (read-only view). */
typedef struct pt_pathtmpl_var {
    const char *field_path; /**< dotted proto field path, e.g. "shelf.name"; NUL-terminated */
    size_t field_path_len;
    uint16_t first_seg; /**< first template segment covered */
    uint16_t end_seg;   /**< one past the last segment covered */
    bool is_multi;      /**< covers several segments or a `**`: "%2F" stays encoded */
} pt_pathtmpl_var_t;

/**
 * Compiles `text[0..len)` (not necessarily NUL-terminated). On success stores a
 * new template in `*out` (free it with pt_pathtmpl_free()) and returns 0.
 * Returns PT_XERR_INVALID for a malformed template, with `err->msg` as
 * "column N: reason" and `err->path` empty; PT_XERR_LIMIT when the text or a
 * count is over the PT_PATHTMPL_MAX_* limits; PT_XERR_NOMEM. On failure `*out`
 * is untouched. `a` NULL means the default allocator; it must outlive the
 * template. `err` may be NULL.
 */
int pt_pathtmpl_parse(const pt_allocator_t *a, const char *text, size_t len, pt_pathtmpl_t **out,
                      pt_xerr_t *err);

/** Frees a template. NULL is accepted. It must not be in use by a matcher. */
void pt_pathtmpl_free(pt_pathtmpl_t *t);

/** The template text as given, NUL-terminated; valid while `t` lives. */
const char *pt_pathtmpl_text(const pt_pathtmpl_t *t);

/** The verb without its ':' (NUL-terminated), or NULL when the template has none. */
const char *pt_pathtmpl_verb(const pt_pathtmpl_t *t);

/** Number of segments (0 only for the root template "/"). */
size_t pt_pathtmpl_seg_cnt(const pt_pathtmpl_t *t);

/** Segment `i` (< seg_cnt). */
const pt_pathseg_t *pt_pathtmpl_seg(const pt_pathtmpl_t *t, size_t i);

/** Number of variables. */
size_t pt_pathtmpl_var_cnt(const pt_pathtmpl_t *t);

/** Variable `i` (< var_cnt), in template order. */
const pt_pathtmpl_var_t *pt_pathtmpl_var(const pt_pathtmpl_t *t, size_t i);

/* ------------------------------------------------------------------------ */

/** A set of (HTTP method, template) routes, matched with one lookup. */
typedef struct pt_pathmatcher pt_pathmatcher_t;

/** Outcome of a lookup; each maps to one HTTP answer. */
typedef enum pt_pathmatch_status {
    PT_PATHMATCH_OK = 0,        /**< a route matched; `route` and `vars` are set */
    PT_PATHMATCH_NOT_FOUND = 1, /**< no template matches the path: 404 */
    PT_PATHMATCH_METHOD = 2,    /**< the path matches only with other methods: 405; see `allowed` */
    PT_PATHMATCH_BAD_PATH = 3,  /**< malformed or unsafe path (see above): 400; see `reason` */
    PT_PATHMATCH_LIMIT = 4, /**< over PT_PATHMATCH_MAX_SEGMENTS, or scratch too small: 414/400 */
} pt_pathmatch_status_t;

/** Bits of pt_pathmatch_t.allowed (methods a 405's Allow header may list). */
enum {
    PT_HTTP_M_GET = 1u << 0,
    PT_HTTP_M_PUT = 1u << 1,
    PT_HTTP_M_POST = 1u << 2,
    PT_HTTP_M_DELETE = 1u << 3,
    PT_HTTP_M_PATCH = 1u << 4,
    PT_HTTP_M_HEAD = 1u << 5,
    PT_HTTP_M_OPTIONS = 1u << 6,
    PT_HTTP_M_OTHER = 1u << 7, /**< some custom method (or "*") matched */
};

/** One bound path variable. `value` points into the caller's scratch buffer. */
typedef struct pt_pathvar {
    const char *field_path; /**< from the template, NUL-terminated */
    size_t field_path_len;
    const char *value; /**< decoded value, NUL-terminated (may contain NUL bytes) */
    size_t value_len;
} pt_pathvar_t;

/** Result of pt_pathmatcher_match(). */
typedef struct pt_pathmatch {
    pt_pathmatch_status_t status;
    void *route;               /**< the `route` given to pt_pathmatcher_add() (OK only) */
    const pt_pathtmpl_t *tmpl; /**< the matched template (OK only) */
    size_t var_cnt;
    pt_pathvar_t vars[PT_PATHTMPL_MAX_VARS];
    unsigned allowed;   /**< PT_HTTP_M_* bits (METHOD only) */
    const char *reason; /**< static English text (BAD_PATH, LIMIT) */
} pt_pathmatch_t;

/** Options of a lookup; a zeroed struct (or NULL) gives the defaults. */
typedef struct pt_pathmatch_opts {
    bool allow_encoded_slash; /**< accept "%2F" in single-segment variables (decoded to "/") */
} pt_pathmatch_opts_t;

/** Scratch bytes pt_pathmatcher_match() needs for a path of `path_len` bytes. */
#define PT_PATHMATCH_SCRATCH_LEN(path_len) (2 * (size_t)(path_len) + PT_PATHTMPL_MAX_VARS + 1)

/**
 * Creates an empty matcher allocating through `a` (NULL = default). Returns 0
 * or PT_XERR_NOMEM (`*out` untouched).
 */
int pt_pathmatcher_new(const pt_allocator_t *a, pt_pathmatcher_t **out);

/** Frees a matcher (not the templates, not the routes). NULL is accepted. */
void pt_pathmatcher_free(pt_pathmatcher_t *m);

/**
 * Adds a route: requests with HTTP method `method` (NUL-terminated, compared
 * case-sensitively; "*" = any method) whose path matches `tmpl` yield `route`.
 * The matcher keeps pointers to `tmpl` and `route`: both must outlive it.
 * Returns 0; PT_XERR_INVALID if a template with the same shape, verb and
 * method is already present (`err->msg` names it); PT_XERR_NOMEM (the matcher
 * stays usable and unchanged as far as lookups can tell).
 */
int pt_pathmatcher_add(pt_pathmatcher_t *m, const char *method, const pt_pathtmpl_t *tmpl,
                       void *route, pt_xerr_t *err);

/** Number of routes added. */
size_t pt_pathmatcher_route_cnt(const pt_pathmatcher_t *m);

/**
 * Looks up `method` and `path[0..path_len)` (the request target; anything from
 * the first '?' or '#' is ignored). Fills `*res` and returns res->status.
 * Decoded variable values are written to `scratch`, which must hold at least
 * PT_PATHMATCH_SCRATCH_LEN(path_len) bytes, and stay valid while it does.
 * Never allocates; safe to call concurrently on a built matcher.
 */
pt_pathmatch_status_t pt_pathmatcher_match(const pt_pathmatcher_t *m, const char *method,
                                           size_t method_len, const char *path, size_t path_len,
                                           const pt_pathmatch_opts_t *opts, char *scratch,
                                           size_t scratch_len, pt_pathmatch_t *res);

/** Static name of a status ("OK", "NOT_FOUND", ...). */
const char *pt_pathmatch_status_name(pt_pathmatch_status_t s);

#endif /* PT_TRANSCODER_PATHTMPL_H */
