/*
 * reflect.h -- descriptors by gRPC server reflection (`grpc-reflection://CLUSTER`).
 *
 * Two parts:
 *  - the messages (reflect_msg.c, no I/O): ServerReflectionRequest encoding,
 *    ServerReflectionResponse decoding, and the file set that collects the
 *    FileDescriptorProtos a server sends and tells which imports are still
 *    missing (the dependency walk), then writes them as one FileDescriptorSet
 *    for pt_descpool_add_set();
 *  - the client (reflect.c): a blocking HTTP/2 client (nghttp2 over a socket,
 *    TLS with the cluster's settings) used at config load time, on the main
 *    thread, before workers exist or while they keep serving the previous
 *    snapshot. It tries the cluster's endpoints in order; the first that
 *    answers is used. grpc.reflection.v1 first, v1alpha when v1 answers
 *    UNIMPLEMENTED.
 *
 * The wire format of the reflection API (field numbers of the messages we use):
 *   ServerReflectionRequest  { 1 host; 3 file_by_filename; 4 file_containing_symbol;
 *                              7 list_services }
 *   ServerReflectionResponse { 1 valid_host; 2 original_request; 4 file_descriptor_response
 *                              { 1 repeated bytes file_descriptor_proto };
 *                              6 list_services_response { 1 repeated { 1 name } };
 *                              7 error_response { 1 error_code; 2 error_message } }
 */
#ifndef PT_UPSTREAM_REFLECT_H
#define PT_UPSTREAM_REFLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cluster.h"

/* ---- messages ------------------------------------------------------------------- */

/** Request kinds: their field numbers in ServerReflectionRequest. */
typedef enum pt_refl_req {
    PT_REFL_FILE_BY_FILENAME = 3,
    PT_REFL_FILE_CONTAINING_SYMBOL = 4,
    PT_REFL_LIST_SERVICES = 7,
} pt_refl_req_t;

/** What a response carries. */
typedef enum pt_refl_kind {
    PT_REFL_R_OTHER = 0, /* a kind we never ask for (extension numbers), or none */
    PT_REFL_R_FILES,     /* file_descriptor_response: items are serialized FileDescriptorProtos */
    PT_REFL_R_SERVICES,  /* list_services_response: items are service names */
    PT_REFL_R_ERROR,     /* error_response: code and message */
} pt_refl_kind_t;

/** A slice of the decoded input (not NUL-terminated). */
typedef struct pt_refl_str {
    const uint8_t *p;
    size_t len;
} pt_refl_str_t;

/** A decoded ServerReflectionResponse; slices point into the input bytes. */
typedef struct pt_refl_resp {
    pt_refl_kind_t kind;
    int req_kind;          /* original_request's kind (a pt_refl_req_t), 0 when absent */
    pt_refl_str_t req_arg; /* its argument */
    pt_refl_str_t *items;  /* malloc'd: files or service names */
    size_t item_cnt;
    int32_t error_code;
    pt_refl_str_t error_message;
} pt_refl_resp_t;

/** Most items one response may carry (files or services). */
#define PT_REFL_MAX_ITEMS 4096

/**
 * Appends one length-prefixed gRPC message holding a ServerReflectionRequest
 * of `kind` with argument `arg` (a file name, a symbol, or "*" for
 * list_services) to *buf (malloc'd, grown; *len updated). Returns 0, or -1
 * when out of memory (then *buf and *len are unchanged).
 */
int pt_refl_encode_request(pt_refl_req_t kind, const char *arg, uint8_t **buf, size_t *len);

/**
 * Decodes one ServerReflectionResponse (the message, without the gRPC prefix).
 * Returns 0 and fills *r (free with pt_refl_resp_free), or -1 with a static
 * reason in *why when the bytes are not a valid response (bad wire format,
 * two answers in one, more than PT_REFL_MAX_ITEMS items, out of memory).
 */
int pt_refl_decode_response(const uint8_t *data, size_t len, pt_refl_resp_t *r, const char **why);
void pt_refl_resp_free(pt_refl_resp_t *r);

/** The files collected so far; zero-initialise, free with pt_refl_files_free. */
typedef struct pt_refl_file {
    char *name;
    uint8_t *data;
    size_t len;
    char **deps;
    size_t dep_cnt;
} pt_refl_file_t;

typedef struct pt_refl_files {
    pt_refl_file_t *v;
    size_t cnt, cap;
    size_t bytes; /* of the files' data together */
} pt_refl_files_t;

/** Most files, and bytes of files, one walk collects. */
#define PT_REFL_MAX_FILES 4096
#define PT_REFL_MAX_BYTES (64u << 20)

/**
 * Adds one serialized FileDescriptorProto: reads its name (field 1) and
 * imports (field 3). A file whose name is already present is skipped (1 is
 * returned). Returns 0 when added, 1 when skipped, -1 with a static reason in
 * *why (not a FileDescriptorProto, no name, too many files or bytes, out of memory).
 */
int pt_refl_files_add(pt_refl_files_t *fs, const uint8_t *data, size_t len, const char **why);

/** The file named `name`, or NULL. */
const pt_refl_file_t *pt_refl_files_find(const pt_refl_files_t *fs, const char *name);

/**
 * The imports no collected file satisfies, each once, in discovery order:
 * stores up to `cap` names (pointers into `fs`) in out[] and, when `by` is not
 * NULL, the importing file's name in by[]; returns how many are missing in all.
 */
size_t pt_refl_files_missing(const pt_refl_files_t *fs, const char **out, const char **by,
                             size_t cap);

/**
 * Writes every collected file as one FileDescriptorSet (field 1, repeated).
 * Returns malloc'd bytes and sets *len, or NULL when out of memory.
 */
uint8_t *pt_refl_files_to_set(const pt_refl_files_t *fs, size_t *len);

void pt_refl_files_free(pt_refl_files_t *fs);

/* ---- the client ------------------------------------------------------------------ */

/**
 * Collects the FileDescriptorProtos of `services` (or, with svc_cnt == 0, of
 * every service the server lists except the reflection and health services)
 * and all their imports from cluster `c` into `fs`, within `timeout_ms` per
 * endpoint. Returns 0, or -1 with a message in err[] naming the endpoint or
 * the service ("service pkg.Svc: not found", "127.0.0.1:50051: connection
 * refused", "127.0.0.1:50051: timeout after 5s", ...). On success `used`
 * (may be NULL) names the endpoint and API version that answered
 * ("127.0.0.1:50051, grpc.reflection.v1alpha").
 */
int pt_reflect_fetch(const pt_cluster_t *c, const char *const *services, size_t svc_cnt,
                     uint64_t timeout_ms, pt_refl_files_t *fs, char *err, size_t errlen, char *used,
                     size_t usedlen);

#endif /* PT_UPSTREAM_REFLECT_H */
