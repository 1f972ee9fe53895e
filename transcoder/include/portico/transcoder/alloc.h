/*
 * alloc.h -- allocator seam and growable output buffer of the transcoder.
 *
 * The transcoder never calls malloc directly: every allocation goes through a
 * caller-supplied pt_allocator_t, so the gateway can plug in its own policy and
 * unit tests can fail the Nth allocation and check that PT_XERR_NOMEM comes back
 * with nothing leaked. Out of memory is an error return, never an abort.
 *
 * pt_xbuf_t is the output buffer of both conversion directions. It grows
 * geometrically, so converting a message costs O(log n) allocations, not one
 * per field. An optional byte limit turns hostile growth into PT_XERR_LIMIT.
 */
#ifndef PT_TRANSCODER_ALLOC_H
#define PT_TRANSCODER_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/**
 * A memory allocator. `alloc` and `realloc` return NULL on failure; `realloc`
 * with p == NULL behaves as `alloc`; `free` accepts NULL. `ud` is passed back
 * unchanged. The struct is read at every call, so it must outlive every object
 * created with it (pools, buffers).
 */
typedef struct pt_allocator {
    void *(*alloc)(void *ud, size_t n);
    void *(*realloc)(void *ud, void *p, size_t n);
    void (*free)(void *ud, void *p);
    void *ud;
} pt_allocator_t;

/** The libc allocator (malloc/realloc/free). A static object: never freed. */
const pt_allocator_t *pt_allocator_default(void);

/**
 * A growable byte buffer. `data[0..len)` is the content; `cap` is the size of
 * the allocation. `limit` (0 = none) caps `len`: growing past it fails with
 * PT_XERR_LIMIT. Fields may be read directly; write only through the helpers.
 * Not thread-safe; one owner at a time.
 */
typedef struct pt_xbuf {
    uint8_t *data;
    size_t len, cap;
    size_t limit;
    const pt_allocator_t *a;
} pt_xbuf_t;

/** Initialises an empty buffer that allocates through `a` (NULL = default). No allocation. */
void pt_xbuf_init(pt_xbuf_t *b, const pt_allocator_t *a);

/** Frees the storage; the buffer is left empty and may be reused. */
void pt_xbuf_dispose(pt_xbuf_t *b);

/** Forgets the content (len = 0) and keeps the storage for reuse. */
static inline void pt_xbuf_reset(pt_xbuf_t *b) { b->len = 0; }

/**
 * Slow path of pt_xbuf_reserve(): grows the storage geometrically (at least
 * doubling) so that `extra` more bytes fit. Returns 0, PT_XERR_NOMEM (content
 * untouched) or PT_XERR_LIMIT (`len + extra` is over `limit`).
 */
int pt_xbuf_grow(pt_xbuf_t *b, size_t extra);

/** Makes room for `extra` more bytes after `len`. Returns as pt_xbuf_grow(). */
static inline int pt_xbuf_reserve(pt_xbuf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra && (b->limit == 0 || extra <= b->limit - b->len))
        return 0;
    return pt_xbuf_grow(b, extra);
}

/** Appends `n` bytes. Returns as pt_xbuf_grow(). */
static inline int pt_xbuf_append(pt_xbuf_t *b, const void *p, size_t n)
{
    int rc = pt_xbuf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n != 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/** Appends one byte. Returns as pt_xbuf_grow(). */
static inline int pt_xbuf_putc(pt_xbuf_t *b, uint8_t c)
{
    int rc = pt_xbuf_reserve(b, 1);
    if (rc != 0)
        return rc;
    b->data[b->len++] = c;
    return 0;
}

/** Appends a NUL-terminated string (without the NUL). Returns as pt_xbuf_grow(). */
static inline int pt_xbuf_puts(pt_xbuf_t *b, const char *s)
{
    return pt_xbuf_append(b, s, strlen(s));
}

/**
 * Makes the content a C string: ensures a NUL byte at data[len] without
 * counting it in `len`. Returns as pt_xbuf_grow().
 */
int pt_xbuf_terminate(pt_xbuf_t *b);

/* ---- allocation helpers ------------------------------------------------ */

/** a->alloc(n); NULL on failure. */
static inline void *pt_xalloc(const pt_allocator_t *a, size_t n) { return a->alloc(a->ud, n); }

/** a->free(p); NULL accepted. */
static inline void pt_xfree(const pt_allocator_t *a, void *p)
{
    if (p != NULL)
        a->free(a->ud, p);
}

#endif /* PT_TRANSCODER_ALLOC_H */
