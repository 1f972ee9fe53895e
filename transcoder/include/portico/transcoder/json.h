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

#endif /* PT_TRANSCODER_JSON_H */
