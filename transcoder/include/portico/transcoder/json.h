/*
 * json.h -- the proto3 JSON mapping, driven by descriptors.
 *
 * Both directions read and write protobuf wire bytes directly from a built
 * pt_descpool_t: no generated code per message, no intermediate message
 * objects, and output goes into one geometrically growing pt_xbuf_t (no
 * allocation per field). Functions are re-entrant and thread-safe as long as
 * each call has its own `out` buffer; the pool is only read.
 *
 * The mapping follows https://protobuf.dev/programming-guides/proto3/#json,
 * including the well-known types (Any, Timestamp, Duration, FieldMask, Struct,
 * Value, ListValue, NullValue, the wrappers, Empty).
 */
#ifndef PT_TRANSCODER_JSON_H
#define PT_TRANSCODER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/xerr.h"

#define PT_JSON_DEFAULT_MAX_DEPTH 64u
#define PT_JSON_MAX_DEPTH_CAP 1000u /**< larger max_depth values are clamped to this */

/** Conversion options. All-zero is valid and means the proto3 JSON defaults. */
typedef struct pt_json_opts {
    bool emit_defaults;  /**< output: also print fields without presence that hold default values */
    bool proto_names;    /**< output: use proto field names instead of json_name */
    bool enums_as_ints;  /**< output: enums as numbers */
    bool ignore_unknown; /**< input: skip unknown JSON fields (and unknown enum names) */
    bool enum_case_insensitive; /**< input: match enum names ignoring ASCII case */
    unsigned max_depth;  /**< message nesting limit; 0 = PT_JSON_DEFAULT_MAX_DEPTH */
    size_t max_size;     /**< limit on input and output bytes; 0 = none */
} pt_json_opts_t;

/**
 * Converts the protobuf wire bytes `pb[0..len)` of a message of type `m` to
 * JSON, appended to `out`. `opts` may be NULL (defaults). Unknown fields are
 * skipped; malformed wire data (bad varints, lengths past the end, wrong wire
 * types, bad groups, invalid UTF-8 in strings) and values with no JSON form
 * (Timestamp out of range, Any with an unknown type) are errors with a path.
 * Returns 0; PT_XERR_CORRUPT (malformed wire data); PT_XERR_INVALID (value not
 * representable); PT_XERR_NOT_FOUND (Any type URL not in the pool);
 * PT_XERR_LIMIT (max_depth, max_size or out->limit); PT_XERR_NOMEM. On error
 * out->len is restored to its value at entry.
 */
int pt_pb_to_json(const pt_descpool_t *pool, const pt_msgdesc_t *m, const uint8_t *pb, size_t len,
                  const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerr_t *err);

/**
 * Converts the JSON text `json[0..len)` (an object for type `m`, or the
 * special JSON form of a well-known type) to protobuf wire bytes appended to
 * `out`. `opts` may be NULL. Returns 0; PT_XERR_INVALID (syntax or mapping
 * error, with the path); PT_XERR_NOT_FOUND (Any @type not in the pool);
 * PT_XERR_LIMIT; PT_XERR_NOMEM. On error out->len is restored.
 */
int pt_json_to_pb(const pt_descpool_t *pool, const pt_msgdesc_t *m, const char *json, size_t len,
                  const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerr_t *err);

/* ======================= T2: JSON -> protobuf, extras ======================= */
/*
 * Notes on pt_json_to_pb() and the functions below:
 *  - Input is strict RFC 8259 (no trailing commas, leading zeros, bare
 *    NaN/Infinity, raw control characters, invalid escapes, lone surrogates,
 *    invalid UTF-8, BOM) and duplicate keys in any object are rejected
 *    (SECURITY-CASES JP-4), including one field given under both its proto
 *    name and its json_name.
 *  - max_depth limits message nesting (every message counts, WKTs included);
 *    JSON nesting beyond 2 * max_depth + 2 containers is refused by the lexer
 *    before any recursion, so a 100k-level bomb costs a few hundred bytes of
 *    scanning. Recursion uses a few hundred bytes of stack per level.
 *  - Output is canonical proto3 wire format in document order: minimal
 *    varints, packed repeated scalars where the field is packed, fields
 *    without presence omitted when they hold the default, map entries with
 *    both key and value. Integers are converted exactly from their text
 *    (no double rounding): 9007199254740993, "1e2", 100.0 are all exact.
 *  - Unknown enum names are errors; with ignore_unknown the field (or array
 *    element, or map entry) is dropped. Unknown numbers are kept for open
 *    enums and refused for closed (proto2) ones.
 *  - Floats are parsed with strtod(): the process must run in the "C"
 *    numeric locale (the default unless setlocale() changed it).
 */

/**
 * As pt_json_to_pb(), but reports every mapping problem it can, not just the
 * first: unknown fields, values of the wrong JSON type or out of range, bad
 * enum names, oneof conflicts and missing required fields are appended to
 * `errs` (bounded by PT_XERRS_MAX; the rest are counted in errs->dropped) and
 * the conversion carries on with the next value. Syntax errors, limits and
 * NOMEM stop at once (one entry). `errs` is not cleared first. Returns 0 or
 * the code of the first error; on error out->len is restored.
 */
int pt_json_to_pb_errs(const pt_descpool_t *pool, const pt_msgdesc_t *m, const char *json,
                       size_t len, const pt_json_opts_t *opts, pt_xbuf_t *out, pt_xerrs_t *errs);

/**
 * One binding of a text value to a request field, for the HTTP binder (path
 * variables and query parameters). All slices need not be NUL-terminated and
 * are only read during the call.
 *
 *   path      dotted field path from the request message, each segment a proto
 *             name or a json_name: "book_id", "filter.color", "updateTime".
 *             Every segment but the last must be a singular message field.
 *   map_key   for a map field ("labels[env]=prod": path "labels", map_key
 *             "env"): the key text, converted per the map's key type ("true",
 *             "-3", ...); NULL when the field is not a map.
 *   value     the (already percent-decoded) text: converted exactly like a
 *             JSON string of the field's type would be, so "RED" or "2" for an
 *             enum, "12" / "1e2" / "-7" for integers (range-checked), "NaN" /
 *             "1.5" for floats, "true" / "false" for bool, base64 for bytes,
 *             raw text for string (must be valid UTF-8), RFC 3339 for a
 *             Timestamp, "1.5s" for a Duration, "a.b,cD" for a FieldMask, the
 *             wrapped scalar for a wrapper type; a google.protobuf.Value gets a
 *             string_value. Other message types cannot be bound (error).
 *
 * A repeated field gets each binding's value appended in order; binding a
 * singular field twice is an error ("given more than once"). Bindings are
 * applied after the body, so a path variable overrides the same field in a
 * `body: "*"` JSON body (protobuf merge semantics: scalars last-wins,
 * messages merged, repeated appended, map keys last-wins).
 */
typedef struct pt_json_binding {
    const char *path;
    size_t path_len;
    const char *map_key; /**< NULL unless the field is a map */
    size_t map_key_len;
    const char *value;
    size_t value_len;
} pt_json_binding_t;

/** Most bindings one call accepts (more gives PT_XERR_LIMIT). */
#define PT_JSON_MAX_BINDINGS 1024

/**
 * Builds one request message of type `m` from an optional JSON body and text
 * bindings, appended to `out` as protobuf wire bytes.
 *
 *   body_field  NULL: the body (if any) is the whole message (`body: "*"`);
 *               otherwise a top-level field of `m` (`body: "book"`): the body
 *               is that field's JSON value (an object for a message field, an
 *               array for a repeated field, a scalar/WKT form otherwise).
 *   json, len   the body; json == NULL means no body.
 *   b, n        the bindings (b may be NULL when n == 0).
 *
 * Every problem is reported, as in pt_json_to_pb_errs(), with paths: body
 * errors relative to the message (prefixed by the body field name when
 * body_field is set), binding errors with the binding's path as given
 * ("filter.color: invalid value \"PURPLE\" for enum pkg.Color"), map keys as
 * `labels["env"]`. Proto2 required fields may be satisfied by either source.
 * `errs` may be NULL (then only the return code tells). Returns 0,
 * PT_XERR_INVALID, PT_XERR_NOT_FOUND, PT_XERR_LIMIT or PT_XERR_NOMEM; on
 * error out->len is restored.
 */
int pt_json_to_pb_bind(const pt_descpool_t *pool, const pt_msgdesc_t *m,
                       const pt_fielddesc_t *body_field, const char *json, size_t len,
                       const pt_json_binding_t *b, size_t n, const pt_json_opts_t *opts,
                       pt_xbuf_t *out, pt_xerrs_t *errs);

/**
 * Resolves one segment of a field path (proto name or json_name) and tells
 * whether a text binding can target that field: 1 yes (scalar, enum, or a
 * message with a text form: Timestamp, Duration, FieldMask, wrappers, Value),
 * 0 no. Handy for the HTTP binder to decide which query parameters to pass.
 */
int pt_json_field_bindable(const pt_fielddesc_t *f);
/* ===================== end T2 ===================== */

#endif /* PT_TRANSCODER_JSON_H */
