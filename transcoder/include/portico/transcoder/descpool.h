/*
 * descpool.h -- an immutable, refcounted pool of protobuf descriptors.
 *
 * A pool is built from one or more binary FileDescriptorSets (as written by
 * `protoc --include_imports --descriptor_set_out`): create it, add sets, build
 * it. Building resolves every type reference and checks dependencies; after a
 * successful build the pool is frozen and may be shared read-only by any number
 * of threads. A reload builds a new pool and swaps the pointer; requests still
 * in flight keep the old one alive through pt_descpool_ref()/unref().
 *
 * The descriptor structs are plain read-only data so that the conversion hot
 * path reads fields directly. Everything they point to lives as long as the
 * pool. Fields whose names start with `_` are private to the transcoder.
 *
 * Loading never trusts its input: corrupt wire data, missing dependencies,
 * unresolvable type names, duplicate definitions with different contents,
 * invalid identifiers and absurd nesting are reported as errors naming the file
 * (the `origin` given to pt_descpool_add_set()) and the type.
 */
#ifndef PT_TRANSCODER_DESCPOOL_H
#define PT_TRANSCODER_DESCPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/xerr.h"

typedef struct pt_descpool pt_descpool_t;
typedef struct pt_descfile pt_descfile_t;
typedef struct pt_fielddesc pt_fielddesc_t;
typedef struct pt_msgdesc pt_msgdesc_t;
typedef struct pt_enumvalue pt_enumvalue_t;
typedef struct pt_enumdesc pt_enumdesc_t;
typedef struct pt_methoddesc pt_methoddesc_t;
typedef struct pt_svcdesc pt_svcdesc_t;

/* FieldDescriptorProto.Type, same numbers as descriptor.proto. */
enum {
    PT_FT_DOUBLE = 1, PT_FT_FLOAT = 2, PT_FT_INT64 = 3, PT_FT_UINT64 = 4, PT_FT_INT32 = 5,
    PT_FT_FIXED64 = 6, PT_FT_FIXED32 = 7, PT_FT_BOOL = 8, PT_FT_STRING = 9, PT_FT_GROUP = 10,
    PT_FT_MESSAGE = 11, PT_FT_BYTES = 12, PT_FT_UINT32 = 13, PT_FT_ENUM = 14, PT_FT_SFIXED32 = 15,
    PT_FT_SFIXED64 = 16, PT_FT_SINT32 = 17, PT_FT_SINT64 = 18
};

/* FieldDescriptorProto.Label. */
enum { PT_LABEL_OPTIONAL = 1, PT_LABEL_REQUIRED = 2, PT_LABEL_REPEATED = 3 };

/* Protobuf wire types. */
enum { PT_WT_VARINT = 0, PT_WT_I64 = 1, PT_WT_LEN = 2, PT_WT_SGROUP = 3, PT_WT_EGROUP = 4, PT_WT_I32 = 5 };

/* Well-known types with a special JSON form (pt_msgdesc_t.wkt). */
enum {
    PT_WKT_NONE = 0, PT_WKT_ANY, PT_WKT_TIMESTAMP, PT_WKT_DURATION, PT_WKT_FIELDMASK, PT_WKT_STRUCT,
    PT_WKT_VALUE, PT_WKT_LISTVALUE, PT_WKT_EMPTY, PT_WKT_DOUBLEVALUE, PT_WKT_FLOATVALUE,
    PT_WKT_INT64VALUE, PT_WKT_UINT64VALUE, PT_WKT_INT32VALUE, PT_WKT_UINT32VALUE, PT_WKT_BOOLVALUE,
    PT_WKT_STRINGVALUE, PT_WKT_BYTESVALUE
};

/** One .proto file. */
struct pt_descfile {
    const char *name;    /**< e.g. "shelf/v1/shelf.proto" */
    const char *package; /**< "" when none */
    bool is_proto3;
    const char *origin;  /**< the `origin` of the set it came from */
};

/** A field of a message. */
struct pt_fielddesc {
    const char *name;      /**< proto name, e.g. "display_name" */
    const char *json_name; /**< from the descriptor, or lowerCamelCase of name */
    uint32_t number;
    uint8_t type;  /**< PT_FT_* */
    uint8_t label; /**< PT_LABEL_* */
    bool is_packed;    /**< repeated scalar written packed on output (inputs accept both) */
    bool is_map;       /**< repeated field of a map-entry message */
    bool has_presence; /**< proto2 optional/required, proto3 optional, message, oneof member */
    int32_t oneof_index; /**< index in parent->oneof_names, -1 if none (proto3 optional excluded) */
    const pt_msgdesc_t *message;  /**< PT_FT_MESSAGE / PT_FT_GROUP */
    const pt_enumdesc_t *enumdesc; /**< PT_FT_ENUM */
    /** proto2 [default = ...] text as in descriptor.proto, or NULL. Checked at
     * build time as protoc does (parses for the type and fits it, names an enum
     * value, well-formed C escapes for bytes). The JSON converters do not use
     * it: proto2 fields have presence, so emit_defaults never prints them. */
    const char *default_value;
    const pt_msgdesc_t *parent;
    /* private */
    uint8_t _wire_type;  /**< wire type of one unpacked value */
    uint32_t _name_len, _json_name_len;
    const char *_json_key, *_proto_key; /**< pre-rendered `"name":` output keys */
    uint32_t _json_key_len, _proto_key_len;
};

/** A message type. */
struct pt_msgdesc {
    const char *full_name; /**< "pkg.Outer.Inner", no leading dot */
    const char *name;      /**< "Inner" */
    const pt_fielddesc_t *fields; /**< sorted by number */
    size_t field_cnt;
    const char *const *oneof_names; /**< real oneofs only */
    size_t oneof_cnt;
    bool is_map_entry;
    uint8_t wkt; /**< PT_WKT_* */
    bool is_proto3;
    const pt_descfile_t *file;
    /* private */
    const uint32_t *_by_number; /**< dense: number -> index + 1 (0 = none), _by_number_len entries */
    uint32_t _by_number_len;
    const uint32_t *_name_tab; /**< open addressing, index + 1 (0 = empty); names and json names */
    uint32_t _name_mask;
    uint32_t _full_name_len;
};

/** One value of an enum. */
struct pt_enumvalue {
    const char *name;
    int32_t number;
    const pt_enumdesc_t *parent;
    uint32_t _name_len;
};

/** An enum type. */
struct pt_enumdesc {
    const char *full_name, *name;
    const pt_enumvalue_t *values; /**< declaration order */
    size_t value_cnt;
    bool is_closed; /**< proto2 semantics: unknown numbers are not valid values */
    const pt_descfile_t *file;
    /* private */
    const uint32_t *_by_number; /**< value indexes sorted by (number, declaration order) */
    const uint32_t *_name_tab;  /**< open addressing, index + 1 */
    uint32_t _name_mask;
};

/** An RPC method. */
struct pt_methoddesc {
    const char *name;
    const char *full_name; /**< "pkg.Svc.Method" */
    const pt_msgdesc_t *input, *output;
    bool client_streaming, server_streaming;
    const uint8_t *options; /**< serialized MethodOptions including unknown extensions, or NULL */
    size_t options_len;
    const pt_svcdesc_t *service;
};

/** A service. */
struct pt_svcdesc {
    const char *name;
    const char *full_name; /**< "pkg.Svc" */
    const pt_methoddesc_t *methods;
    size_t method_cnt;
    const pt_descfile_t *file;
};

/**
 * Creates an empty, unbuilt pool with refcount 1, allocating through `a`
 * (NULL = default; `a` must outlive the pool). Returns 0 and sets *out, or
 * PT_XERR_NOMEM (then *out is untouched).
 */
int pt_descpool_new(const pt_allocator_t *a, pt_descpool_t **out, pt_xerr_t *err);

/**
 * Parses one binary FileDescriptorSet and adds its files. The bytes are not
 * referenced after the call. `origin` (e.g. the set's file name, may be NULL)
 * is copied and used in error messages. A file whose name is already in the
 * pool is skipped when its contents are identical and rejected otherwise.
 * Returns 0, PT_XERR_CORRUPT (not a FileDescriptorSet, nesting too deep),
 * PT_XERR_INVALID (conflicting duplicate, pool already built) or PT_XERR_NOMEM.
 * On error the pool is unchanged.
 */
int pt_descpool_add_set(pt_descpool_t *p, const uint8_t *data, size_t len, const char *origin,
                        pt_xerr_t *err);

/**
 * Resolves every reference and builds the lookup tables; the pool is frozen
 * afterwards (pt_descpool_add_set() fails). Returns 0; PT_XERR_NOT_FOUND (a
 * dependency file or a referenced type is missing); PT_XERR_INVALID (duplicate
 * symbol, bad identifier, bad field number, map entry or type mismatch, a
 * bad proto2 default value, a json_name clash in a proto3 message);
 * PT_XERR_NOMEM. After an error the pool can only be unref'd.
 */
int pt_descpool_build(pt_descpool_t *p, pt_xerr_t *err);

/** Adds a reference (atomic; any thread). */
void pt_descpool_ref(pt_descpool_t *p);

/** Drops a reference (atomic; any thread); frees the pool at zero. NULL is accepted. */
void pt_descpool_unref(pt_descpool_t *p);

/** The allocator the pool was created with. */
const pt_allocator_t *pt_descpool_allocator(const pt_descpool_t *p);

/*
 * Lookups by full name without a leading dot (one is tolerated), O(1). They
 * return NULL when the name is unknown or the pool is not built. `name` need
 * not be NUL-terminated.
 */
const pt_msgdesc_t *pt_descpool_message(const pt_descpool_t *p, const char *name, size_t len);
const pt_enumdesc_t *pt_descpool_enum(const pt_descpool_t *p, const char *name, size_t len);
const pt_svcdesc_t *pt_descpool_service(const pt_descpool_t *p, const char *name, size_t len);

/** Looks up a method by "pkg.Svc.Method", "pkg.Svc/Method" or "/pkg.Svc/Method". */
const pt_methoddesc_t *pt_descpool_method(const pt_descpool_t *p, const char *name, size_t len);

/**
 * Resolves an Any type URL: the message named by the text after the last '/'
 * ("type.googleapis.com/pkg.Msg" -> pkg.Msg). NULL if there is no '/' or the
 * type is unknown.
 */
const pt_msgdesc_t *pt_descpool_any_type(const pt_descpool_t *p, const char *url, size_t len);

/** Services in load order: count, and the i-th (NULL when out of range). */
size_t pt_descpool_service_cnt(const pt_descpool_t *p);
const pt_svcdesc_t *pt_descpool_service_at(const pt_descpool_t *p, size_t i);

/** Files in load order: count, and the i-th (NULL when out of range). */
size_t pt_descpool_file_cnt(const pt_descpool_t *p);
const pt_descfile_t *pt_descpool_file_at(const pt_descpool_t *p, size_t i);

/** Field by number: O(1) for dense numbering, O(log n) otherwise. NULL when absent. */
const pt_fielddesc_t *pt_msgdesc_field_by_number(const pt_msgdesc_t *m, uint32_t number);

/**
 * Field by proto name OR json_name, O(1). NULL when absent.
 *
 * Clashes: in a proto3 message pt_descpool_build() rejects a field whose
 * json_name equals another field's json_name or proto name (protoc rejects
 * them too), so the answer is unique. proto2 files are accepted with such
 * clashes (protoc 3.21 only warns) and the lookup is deterministic: a proto
 * name always wins over a json_name, and among equal json_names the field
 * with the lowest number wins. (The pb->json output then prints each field
 * under its own json_name, so such a proto2 message can print a key twice.)
 */
const pt_fielddesc_t *pt_msgdesc_field_by_name(const pt_msgdesc_t *m, const char *name, size_t len);

/**
 * Enum value by name, O(1); with `case_insensitive` a linear ASCII
 * case-insensitive scan. NULL when absent.
 */
const pt_enumvalue_t *pt_enumdesc_value_by_name(const pt_enumdesc_t *e, const char *name, size_t len,
                                                bool case_insensitive);

/** Enum value by number (the first declared one for aliases), O(log n). NULL when absent. */
const pt_enumvalue_t *pt_enumdesc_value_by_number(const pt_enumdesc_t *e, int32_t number);

#endif /* PT_TRANSCODER_DESCPOOL_H */
