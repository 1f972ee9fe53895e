/*
 * xalloc.h -- the gateway's allocation helpers (private).
 *
 * The gateway's OOM policy (STYLE.md): a failed allocation aborts the
 * process, as h2o_mem_alloc and zmalloc do; callers never see NULL. (The
 * transcoder, a library, takes an allocator and returns PT_ERR_NOMEM instead.)
 */
#ifndef PT_GATEWAY_XALLOC_H
#define PT_GATEWAY_XALLOC_H

#include <stdio.h>
#include <stdlib.h>

/** Aborts with a message when `p` is NULL (an allocation failed); returns `p`. */
static inline void *pt_xcheck(void *p)
{
    if (p == NULL) {
        fputs("portico: out of memory\n", stderr);
        abort();
    }
    return p;
}

/** calloc(n, size) that never returns NULL. */
static inline void *pt_xcalloc(size_t n, size_t size) { return pt_xcheck(calloc(n, size)); }

/** realloc(p, size) that never returns NULL (size > 0). */
static inline void *pt_xrealloc(void *p, size_t size) { return pt_xcheck(realloc(p, size)); }

#endif /* PT_GATEWAY_XALLOC_H */
