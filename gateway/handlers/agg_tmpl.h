/*
 * agg_tmpl.h -- value templates of the `aggregate` handler (private).
 *
 * A template is text with references in braces:
 *
 *   "/users/{user}"                  {x}          path or query parameter of the client request
 *   "{header.x-tenant}"              {header.x}   a header of the client request
 *   "{body.customer.id}"             {body.a.b}   a field of the client's JSON body
 *   "items/{profile.favorite}"       {call.f.g}   a field of call `call`'s JSON result
 *   "{orders.list[0].id}"                         array elements by index
 *
 * `{{` and `}}` stand for literal braces. A reference is a head (a name:
 * letters, digits, `_`, `-`) followed by steps, each `.name` or `[N]`;
 * `header.` takes the rest as a header name. Which heads are calls, which
 * are parameters, is decided by the caller (aggregate.c knows the call
 * names); this module only parses, walks JSON and renders.
 *
 * Rendering: into a URL (every byte but the unreserved set of RFC 3986 is
 * percent-encoded, so a value can never add a path segment or a query
 * parameter), into a header value (raw; control characters refused), or
 * into JSON (a template that is exactly one reference keeps the referenced
 * value's type: a number stays a number, an object an object).
 *
 * Parsing allocates with malloc; pt_agg_tmpl_dispose() frees. Rendering
 * allocates nothing but the output (json-c objects or the caller's buffer).
 * No globals: any thread, one template per call at a time.
 */
#ifndef PT_GATEWAY_HANDLERS_AGG_TMPL_H
#define PT_GATEWAY_HANDLERS_AGG_TMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/str.h"

struct json_object;

#define PT_AGG_MAX_STEPS 32      /**< steps in one reference */
#define PT_AGG_MAX_INDEX 1000000 /**< largest array index in a reference */
#define PT_AGG_MAX_REFS 64       /**< references in one template */

typedef enum pt_agg_ref_kind {
    PT_AGG_REF_NAME = 0, /**< `{x}`: a bare name (a parameter, or a call's whole result) */
    PT_AGG_REF_HEADER,   /**< `{header.x}` */
    PT_AGG_REF_BODY,     /**< `{body}` / `{body.a.b}` */
    PT_AGG_REF_PATH, /**< `{head.a[0].b}`: a field under `head` (a call, decided by the caller) */
} pt_agg_ref_kind_t;

typedef struct pt_agg_step {
    const char *name; /**< field name (NUL-terminated), or NULL for an index */
    size_t len;
    long index; /**< array index when name == NULL */
} pt_agg_step_t;

typedef struct pt_agg_ref {
    pt_agg_ref_kind_t kind;
    char *head; /**< parameter, header (lowercased), call name; "body" for BODY */
    size_t head_len;
    pt_agg_step_t *steps;
    size_t step_cnt;
    size_t offset; /**< byte offset of the `{` in the template text */
    char *text;    /**< the reference as written, without braces (messages) */
    int call;      /**< the call it names (set by the caller), or -1 */
} pt_agg_ref_t;

typedef struct pt_agg_seg {
    char *lit; /**< literal text (braces unescaped), or NULL for a reference */
    size_t lit_len;
    size_t ref; /**< index into refs when lit == NULL */
} pt_agg_seg_t;

typedef struct pt_agg_tmpl {
    pt_agg_seg_t *segs;
    size_t seg_cnt;
    pt_agg_ref_t *refs;
    size_t ref_cnt;
    bool whole_ref; /**< exactly one reference and no literal text */
} pt_agg_tmpl_t;

/**
 * Parses `s[0..len)` into `out` (zeroed first). Returns 0, or -1 with a
 * message in `err` (NUL-terminated, at most errlen bytes) and the byte
 * offset of the problem in *err_off; `out` then holds nothing to free.
 * Allocation failure aborts (the gateway's OOM policy).
 */
int pt_agg_tmpl_parse(const char *s, size_t len, pt_agg_tmpl_t *out, char *err, size_t errlen,
                      size_t *err_off);

/** Frees what parse allocated; the struct is zeroed. NULL accepted. */
void pt_agg_tmpl_dispose(pt_agg_tmpl_t *t);

/**
 * Follows `steps` from `root` (borrowed). Returns the value found (borrowed;
 * json-c's NULL is JSON null, so *found says whether it exists), or NULL with
 * *found false when a step names a missing field, an index past the end, or
 * walks into a scalar.
 */
struct json_object *pt_agg_json_walk(struct json_object *root, const pt_agg_step_t *steps,
                                     size_t cnt, bool *found);

/** The value of one reference, given by the caller's lookup. */
typedef struct pt_agg_val {
    bool found;
    bool is_json;          /**< `j` holds the value, else `str` */
    pt_str_t str;          /**< a parameter or header value */
    struct json_object *j; /**< borrowed; may be NULL (JSON null) when is_json */
} pt_agg_val_t;

/**
 * Looks one reference up (the steps already applied for JSON values: use
 * pt_agg_json_walk). Returns the value; found = false when it is missing.
 */
typedef pt_agg_val_t (*pt_agg_lookup_cb)(void *ud, const pt_agg_ref_t *ref);

typedef enum pt_agg_enc {
    PT_AGG_ENC_URL = 0, /**< percent-encode all but ALPHA DIGIT - . _ ~ */
    PT_AGG_ENC_HEADER,  /**< raw; refuses CR, LF, NUL and other controls */
} pt_agg_enc_t;

/** Where rendering failed (static text in `why`, the reference in `ref`). */
typedef struct pt_agg_rerr {
    const pt_agg_ref_t *ref;
    const char *why;
} pt_agg_rerr_t;

/**
 * Renders `t` as text into buf[0..cap) (NUL-terminated). Scalars only:
 * strings as they are, numbers and booleans in their JSON spelling; a
 * missing value, JSON null, an object or an array is an error. Returns the
 * length, or -1 with `e` set (also when the text does not fit in cap - 1).
 */
long pt_agg_tmpl_render(const pt_agg_tmpl_t *t, pt_agg_enc_t enc, pt_agg_lookup_cb lookup, void *ud,
                        char *buf, size_t cap, pt_agg_rerr_t *e);

/**
 * Renders `t` as a JSON value (a new reference): a template that is one
 * reference gives a copy of the referenced value, whatever its type (a
 * parameter or header gives a string); otherwise a string with the values'
 * text interpolated. NULL with `e` set when a value is missing (or an
 * object/array inside text).
 */
struct json_object *pt_agg_tmpl_json(const pt_agg_tmpl_t *t, pt_agg_lookup_cb lookup, void *ud,
                                     pt_agg_rerr_t *e);

/* ---- JSON templates (a body: a tree whose strings are templates) --------------- */

typedef enum pt_agg_jkind {
    PT_AGG_J_LITERAL = 0, /**< a fixed value (number, bool, null, plain string) */
    PT_AGG_J_TEMPLATE,    /**< a string with references */
    PT_AGG_J_OBJECT,
    PT_AGG_J_ARRAY,
} pt_agg_jkind_t;

typedef struct pt_agg_jtmpl pt_agg_jtmpl_t;
struct pt_agg_jtmpl {
    pt_agg_jkind_t kind;
    struct json_object *lit; /**< LITERAL (owned; rendered as a copy: workers share it) */
    pt_agg_tmpl_t tmpl;      /**< TEMPLATE */
    char **keys;             /**< OBJECT keys (cnt) */
    pt_agg_jtmpl_t **items;  /**< OBJECT values / ARRAY items (cnt) */
    size_t cnt;
    const void *node; /**< where it was written (a pt_conf_node_t *), for messages */
};

/** Builds the JSON value of `j` (a new reference), or NULL with `e` set. */
struct json_object *pt_agg_jtmpl_render(const pt_agg_jtmpl_t *j, pt_agg_lookup_cb lookup, void *ud,
                                        pt_agg_rerr_t *e);

/** Calls `fn` for every template in `j` (depth first, document order). */
void pt_agg_jtmpl_each(pt_agg_jtmpl_t *j, void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node),
                       void *ud);

/** Frees `j` and everything under it. NULL accepted. */
void pt_agg_jtmpl_free(pt_agg_jtmpl_t *j);

#endif /* PT_GATEWAY_HANDLERS_AGG_TMPL_H */
