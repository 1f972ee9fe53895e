/*
 * alloc.c -- the default allocator and the growable output buffer.
 */
#include "portico/transcoder/alloc.h"

#include <stdint.h>
#include <stdlib.h>

#include "portico/transcoder/xerr.h"

static void *libc_alloc(void *ud, size_t n)
{
    (void)ud;
    return malloc(n ? n : 1);
}

static void *libc_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    return realloc(p, n ? n : 1);
}

static void libc_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static const pt_allocator_t libc_allocator = {libc_alloc, libc_realloc, libc_free, NULL};

const pt_allocator_t *pt_allocator_default(void) { return &libc_allocator; }

void pt_xbuf_init(pt_xbuf_t *b, const pt_allocator_t *a)
{
    b->data = NULL;
    b->len = b->cap = b->limit = 0;
    b->a = a ? a : &libc_allocator;
}

void pt_xbuf_dispose(pt_xbuf_t *b)
{
    pt_xfree(b->a, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int pt_xbuf_grow(pt_xbuf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return PT_XERR_LIMIT;
    size_t need = b->len + extra;
    if (b->limit != 0 && (b->len > b->limit || need > b->limit))
        return PT_XERR_LIMIT;
    if (need <= b->cap)
        return 0;
    /* Double, starting at 256 bytes: a converted message costs a handful of
     * reallocations, whatever its field count. One spare byte keeps room for
     * pt_xbuf_terminate() without another reallocation. */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
    uint8_t *d = b->a->realloc(b->a->ud, b->data, cap);
    if (d == NULL)
        return PT_XERR_NOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int pt_xbuf_terminate(pt_xbuf_t *b)
{
    /* The limit applies to content, not to the terminator. */
    if (b->cap - b->len < 1) {
        size_t lim = b->limit;
        b->limit = 0;
        int rc = pt_xbuf_grow(b, 1);
        b->limit = lim;
        if (rc != 0)
            return rc;
    }
    b->data[b->len] = '\0';
    return 0;
}
