/*
 * httprule_internal.h -- helpers shared by httprule.c and httpbind.c
 * (private to the transcoder; not installed).
 */
#ifndef PT_TRANSCODER_HTTPRULE_INTERNAL_H
#define PT_TRANSCODER_HTTPRULE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/httprule.h"

/* Protobuf wire reading; each returns 0, or -1 on malformed input (nothing consumed). */
int pt__wire_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v);
int pt__wire_tag(const uint8_t **pp, const uint8_t *end, uint32_t *num, unsigned *wt);
int pt__wire_skip(const uint8_t **pp, const uint8_t *end, unsigned wt, uint32_t number);
int pt__wire_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **data, size_t *len);

/* True for google.api.HttpBody. */
bool pt__httprule_is_httpbody(const pt_msgdesc_t *m);

/* The allocator of a table (the pool's). */
const pt_allocator_t *pt__httprule_table_allocator(const pt_httprule_table_t *t);

/*
 * Resolves the dotted field path `path[0..len)` (proto or json names) from
 * message `m` into chain[0..*depth). Every component but the last must be a
 * singular message field. Returns 0; -2 when a name is unknown (*depth = the
 * components resolved before it); -1 for other problems. *why gets a static
 * reason on failure.
 */
int pt__httprule_resolve(const pt_msgdesc_t *m, const char *path, size_t len,
                         const pt_fielddesc_t **chain, size_t cap, size_t *depth, const char **why);

#endif /* PT_TRANSCODER_HTTPRULE_INTERNAL_H */
