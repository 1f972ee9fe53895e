/*
 * hstore.h -- the header fields of an upstream response (head or trailers)
 * as a back end collects them, one field at a time, from a parser callback
 * (upstream/http.c: libcurl header lines; upstream/h2.c: nghttp2 fields).
 *
 * Names and values are copied into one growing buffer; the pt_header_t views
 * handed to on_head/on_done are built only by pt__hstore_view(), so growing
 * the buffer never invalidates a view. A store is reused across calls (reset
 * keeps its memory). Limits (bytes, count) are the caller's: it can read
 * `len` and `cnt`. Allocation failure aborts (core/xalloc.h).
 */
#ifndef PT_GATEWAY_UPSTREAM_HSTORE_H
#define PT_GATEWAY_UPSTREAM_HSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/headers.h"

typedef struct pt__hent {
    uint32_t noff, nlen, voff, vlen;
} pt__hent_t;

typedef struct pt__hstore {
    char *buf;
    size_t len, cap;     /* bytes of names and values */
    pt__hent_t *e;
    size_t cnt, ecap;    /* fields */
    pt_header_t *view;
    size_t vcap;
} pt__hstore_t;

/** Appends one field; `lower`: the name is lowercased as it is copied. */
void pt__hstore_add(pt__hstore_t *s, pt_str_t name, pt_str_t value, bool lower);

/** The fields as pt_header_t (s->cnt of them; NULL when none), valid until the next add/reset. */
const pt_header_t *pt__hstore_view(pt__hstore_t *s);

/** Forgets the fields, keeps the memory. */
static inline void pt__hstore_reset(pt__hstore_t *s)
{
    s->len = 0;
    s->cnt = 0;
}

/** Frees the memory; the store is empty (and reusable) afterwards. */
void pt__hstore_free(pt__hstore_t *s);

#endif /* PT_GATEWAY_UPSTREAM_HSTORE_H */
