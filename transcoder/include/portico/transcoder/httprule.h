/*
 * httprule.h -- google.api.http: HTTP bindings of gRPC methods, routing and
 * request/response transcoding.
 *
 * 1. DECODING. pt_httprule_decode() reads the HttpRule extension (field
 *    72295728 of google.protobuf.MethodOptions) straight from the serialized
 *    options bytes the descriptor pool keeps per method, and flattens it with
 *    its additional_bindings (nested up to PT_HTTPRULE_MAX_NESTING levels; the
 *    spec forbids nesting, we accept a little and refuse more).
 *
 * 2. ROUTE TABLE. pt_httprule_table_new() compiles every binding of a pool's
 *    methods (optionally only some services) into one pt_pathmatcher_t (see
 *    pathtmpl.h for the precedence rules) and validates it: templates parse,
 *    path variables name non-repeated scalar (or string-form well-known type)
 *    fields, `body` is "", "*" or a top-level field, `response_body` a
 *    top-level field, no two bindings collide. Every problem is collected, and
 *    any problem fails the whole table (config validation, like nginx -t).
 *    With add_default_bindings, a method without an annotation gets
 *    `POST /pkg.Service/Method` with body "*".
 *
 * 3. MATCHING. pt_httprule_match() maps (HTTP method, path) to a binding and
 *    the decoded path variables; PT_PATHMATCH_METHOD (405) when the path exists
 *    for other methods only.
 *
 * 4. REQUEST. pt_httprule_transcode_request() builds the gRPC request message
 *    (protobuf wire bytes) from the body, the path variables and the query
 *    string. Every value goes through pt_json_to_pb(), so the conversions and
 *    error texts are those of the JSON mapping: each path variable or query
 *    parameter becomes a tiny JSON document ({"filter":{"color":"RED"}}),
 *    converted on its own, and the wire bytes are concatenated -- protobuf
 *    concatenation is a merge. That is also how every problem of a request is
 *    reported at once: each parameter fails or succeeds independently, and all
 *    failures land in the pt_xerrs_t as (field path, description) pairs, ready
 *    for a google.rpc.BadRequest. Rules:
 *      - names: each dotted component is a proto name or a json_name;
 *        `a.b.c=v` sets a nested field; `tags=a&tags=b` appends to a repeated
 *        field; `labels[env]=prod` sets a map entry; the value of a well-known
 *        type uses its JSON string form (updateTime=2024-01-01T00:00:00Z,
 *        ttl=3.5s, mask=a,b, wrappers as their scalar);
 *      - values: the query string is form-decoded ('+' is a space, %XX); a
 *        bool takes true/false, an enum its name or number, numbers their JSON
 *        forms (also "NaN", "Infinity"), bytes base64;
 *      - refused, each as a field violation: an unknown name (unless
 *        json_opts->ignore_unknown: then skipped), a message-typed field that
 *        has no string form, a repeated field or map as an intermediate
 *        component, a non-repeated field given twice, two members of one oneof,
 *        a parameter naming a field that the path already binds, and -- our
 *        choice where grpc-gateway silently ignores it -- a query parameter
 *        for a field carried by the body (any parameter when body is "*",
 *        or one under the body field), because a value that is silently dropped
 *        hides client bugs (SECURITY-CASES JP-5);
 *      - body "*": the body is the JSON of the whole request message; body
 *        "field": the JSON of that field (any field type, repeated and maps
 *        included); no body rule: the body is ignored. A body is required when
 *        the rule names one (empty -> "request body required"), except for
 *        google.api.HttpBody;
 *      - google.api.HttpBody: when the body field (or the whole request, with
 *        "*") has that type, the raw body bytes become its `data` and the
 *        Content-Type its `content_type`; no JSON is parsed.
 *      - precedence: values from the path are appended last, so they win.
 *
 * 5. RESPONSE. pt_httprule_transcode_response() turns the gRPC response into
 *    the HTTP body: JSON of the whole message or of its `response_body` field;
 *    raw bytes plus content type when that message is a google.api.HttpBody.
 *
 * Memory and threads: a table is immutable once built; it holds a reference on
 * the pool and may be shared read-only by every worker. The transcode calls
 * allocate only through the table's allocator for temporary buffers and append
 * the result to a caller-owned pt_xbuf_t.
 */
#ifndef PT_TRANSCODER_HTTPRULE_H
#define PT_TRANSCODER_HTTPRULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/json.h"
#include "portico/transcoder/pathtmpl.h"
#include "portico/transcoder/xerr.h"

/** Field number of the `http` extension on google.protobuf.MethodOptions. */
#define PT_HTTPRULE_EXTENSION 72295728u
/** Most bindings (rule + additional_bindings) read for one method. */
#define PT_HTTPRULE_MAX_BINDINGS 32
/** Deepest additional_bindings nesting accepted (the top rule is level 0). */
#define PT_HTTPRULE_MAX_NESTING 2
/** Most query parameters considered in one request; more is a field violation. */
#define PT_HTTPRULE_MAX_QUERY_PARAMS 256

/** A byte slice into some longer-lived buffer (not NUL-terminated). */
typedef struct pt_httprule_str {
    const char *p;
    size_t len;
} pt_httprule_str_t;

/**
 * One decoded HttpRule pattern (the rule itself or one additional binding).
 * Slices point into the options bytes given to pt_httprule_decode().
 */
typedef struct pt_httprule_pattern {
    pt_httprule_str_t method; /**< "GET", "PUT", "POST", "DELETE", "PATCH", custom kind or "*" */
    pt_httprule_str_t path;   /**< the path template */
    pt_httprule_str_t body;   /**< "", "*" or a field name */
    pt_httprule_str_t response_body; /**< "" or a field name */
    uint8_t level;                   /**< 0 for the rule, 1 for its additional bindings, ... */
} pt_httprule_pattern_t;

/**
 * Decodes the HttpRule extension from serialized MethodOptions
 * `opts[0..len)` (NULL/0 allowed) into `out[0..cap)`, the rule first then its
 * additional bindings depth-first; sets *cnt. A method without the extension
 * gives *cnt = 0. Several occurrences of the extension merge as protobuf
 * does (last scalar wins, bindings append). A rule without a pattern is
 * skipped. Returns 0; PT_XERR_CORRUPT (malformed wire data); PT_XERR_LIMIT
 * (more than `cap` bindings or nesting over PT_HTTPRULE_MAX_NESTING).
 * Never allocates.
 */
int pt_httprule_decode(const uint8_t *opts, size_t len, pt_httprule_pattern_t *out, size_t cap,
                       size_t *cnt, pt_xerr_t *err);

/** What the HTTP request body maps to. */
typedef enum pt_httpbody_kind {
    PT_HTTPBODY_NONE = 0,  /**< no body: every non-path field comes from the query */
    PT_HTTPBODY_ALL = 1,   /**< "*": the whole request message */
    PT_HTTPBODY_FIELD = 2, /**< one top-level field */
} pt_httpbody_kind_t;

/** One HTTP binding of a method; read-only, owned by the table. */
typedef struct pt_httpbinding {
    const pt_methoddesc_t *method;
    const char *http_method;   /**< NUL-terminated; "*" = any */
    const pt_pathtmpl_t *tmpl; /**< compiled path template */
    const char *path;          /**< template text */
    pt_httpbody_kind_t body_kind;
    const char *body;                 /**< "", "*" or the field name, NUL-terminated */
    const pt_fielddesc_t *body_field; /**< PT_HTTPBODY_FIELD */
    bool request_is_httpbody;         /**< body field / request is google.api.HttpBody: raw body */
    const char *response_body;        /**< "" or the field name */
    const pt_fielddesc_t *response_field; /**< when response_body is set */
    bool response_is_httpbody; /**< response (or its response_body field) is HttpBody: raw */
    bool is_default;           /**< generated POST /pkg.Svc/Method */
    uint8_t level;             /**< 0 rule, >0 additional binding */
    /* private: resolved path variables */
    const pt_fielddesc_t *const *_var_fields; /**< per variable, a chain of _var_depth[i] fields */
    const uint8_t *_var_depth;
} pt_httpbinding_t;

/** A compiled route table. */
typedef struct pt_httprule_table pt_httprule_table_t;

/** Options of pt_httprule_table_new(); a zeroed struct (or NULL) gives the defaults. */
typedef struct pt_httprule_opts {
    const char *const *services; /**< full service names to include; NULL = all */
    size_t service_cnt;
    bool add_default_bindings; /**< POST /pkg.Svc/Method, body "*", for unannotated methods */
} pt_httprule_opts_t;

/**
 * Builds the route table of pool `pool` (which must be built). Takes a
 * reference on the pool (released by pt_httprule_table_free()). Every problem
 * is added to `errs` (may be NULL) with `path` = the method's full name (or
 * the service name) and a message naming the template or field; the first
 * error's code is returned: PT_XERR_INVALID (bad template, bad field,
 * conflicting bindings), PT_XERR_NOT_FOUND (a service in opts->services is
 * not in the pool), PT_XERR_CORRUPT / PT_XERR_LIMIT (undecodable options),
 * PT_XERR_NOMEM. On error *out is untouched and nothing is leaked. An empty
 * table (no bindings) is not an error.
 */
int pt_httprule_table_new(const pt_descpool_t *pool, const pt_httprule_opts_t *opts,
                          pt_httprule_table_t **out, pt_xerrs_t *errs);

/** Frees a table and drops its pool reference. NULL is accepted. */
void pt_httprule_table_free(pt_httprule_table_t *t);

/** The pool the table was built from. */
const pt_descpool_t *pt_httprule_table_pool(const pt_httprule_table_t *t);

/** Number of bindings, and the i-th in (service, method, binding) order; NULL when out of range. */
size_t pt_httprule_table_binding_cnt(const pt_httprule_table_t *t);
const pt_httpbinding_t *pt_httprule_table_binding(const pt_httprule_table_t *t, size_t i);

/** Result of pt_httprule_match(). */
typedef struct pt_httprule_match {
    const pt_httpbinding_t *binding; /**< set when path.status is PT_PATHMATCH_OK */
    pt_pathmatch_t path;             /**< status, variables, allowed methods, reason */
} pt_httprule_match_t;

/**
 * Routes a request: `method` and `target` (path, optionally followed by
 * "?query", which is ignored here). `scratch` must hold
 * PT_PATHMATCH_SCRATCH_LEN(target_len) bytes and outlive the use of
 * m->path.vars. `opts` as in pathtmpl.h (NULL = defaults). Returns
 * m->path.status. Never allocates; thread-safe.
 */
pt_pathmatch_status_t pt_httprule_match(const pt_httprule_table_t *t, const char *method,
                                        size_t method_len, const char *target, size_t target_len,
                                        const pt_pathmatch_opts_t *opts, char *scratch,
                                        size_t scratch_len, pt_httprule_match_t *m);

/**
 * Builds the request message of a matched binding: appends its protobuf wire
 * bytes to `out`. `body[0..body_len)` is the HTTP body (may be NULL/0);
 * `content_type` (NUL-terminated, may be NULL) is used for HttpBody bodies;
 * `query[0..query_len)` is the query string without '?' (may be NULL/0).
 * `jopts` are the JSON options (NULL = defaults; ignore_unknown also skips
 * unknown query parameters). All problems are added to `errs` (may be NULL),
 * each with the field path and a description. Returns 0; PT_XERR_INVALID
 * (one or more field violations, out->len unchanged); PT_XERR_NOT_FOUND (Any
 * type); PT_XERR_LIMIT (a size/depth limit; answer 413/400); PT_XERR_NOMEM.
 */
int pt_httprule_transcode_request(const pt_httprule_table_t *t, const pt_httprule_match_t *m,
                                  const uint8_t *body, size_t body_len, const char *content_type,
                                  const char *query, size_t query_len, const pt_json_opts_t *jopts,
                                  pt_xbuf_t *out, pt_xerrs_t *errs);

/**
 * Builds the HTTP response body of binding `b` from the gRPC response wire
 * bytes `pb[0..len)`: appends JSON (of the message, or of its response_body
 * field: an absent message field gives "{}", and absent scalars, lists and maps
 * their default JSON), or, for HttpBody, the raw `data` bytes. `*content_type`
 * receives "application/json" or the HttpBody's content type (a slice of
 * `pb`, possibly empty). Returns as pt_pb_to_json(); on error out->len is
 * unchanged.
 */
int pt_httprule_transcode_response(const pt_httprule_table_t *t, const pt_httpbinding_t *b,
                                   const uint8_t *pb, size_t len, const pt_json_opts_t *jopts,
                                   pt_xbuf_t *out, pt_httprule_str_t *content_type, pt_xerr_t *err);

/**
 * Renders the JSON body of an error answer in the google.rpc.Status form that
 * grpc-gateway and Envoy clients expect, with every entry of `errs` as a
 * google.rpc.BadRequest field violation:
 *
 *   {"code":3,"message":"shelf: invalid int64 value: x",
 *    "details":[{"@type":"type.googleapis.com/google.rpc.BadRequest",
 *                "fieldViolations":[{"field":"shelf","description":"invalid int64 value: x"},
 *                                   ...]}]}
 *
 * `grpc_code` is the google.rpc.Code (3 = INVALID_ARGUMENT). `message` (may be
 * NULL) is the top-level message; NULL uses the first error as "path: text",
 * plus " (and N more problems)". `errs` may be NULL or empty (then no
 * details). Bytes that are not valid UTF-8 are replaced by U+FFFD, so the body
 * is always valid JSON. Appends to `out`; returns 0, PT_XERR_NOMEM or
 * PT_XERR_LIMIT (out->len unchanged on error).
 */
int pt_httprule_status_json(int grpc_code, const char *message, const pt_xerrs_t *errs,
                            pt_xbuf_t *out);

#endif /* PT_TRANSCODER_HTTPRULE_H */
