/*
 * xfail_alloc.h -- a pt_allocator_t for tests that fails the Nth allocation
 * and counts live blocks, so OOM paths can be walked one by one:
 *
 *     for (long n = 0;; n++) {
 *         xfail_alloc_t fa = XFAIL_ALLOC_INIT(n);
 *         int rc = run(&fa.a);
 *         assert_int_equal(fa.live, 0);          // nothing leaked
 *         if (rc != PT_XERR_NOMEM) break;        // got through: done
 *     }
 */
#ifndef PT_TEST_XFAIL_ALLOC_H
#define PT_TEST_XFAIL_ALLOC_H

#include <stdlib.h>

#include "portico/transcoder/alloc.h"

typedef struct xfail_alloc {
    pt_allocator_t a;
    long fail_at; /* 0-based index of the call that fails; -1 = never */
    long calls;
    long live;
} xfail_alloc_t;

static inline void *xfail_alloc_fn(void *ud, size_t n)
{
    xfail_alloc_t *f = ud;
    if (f->calls++ == f->fail_at)
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        f->live++;
    return p;
}

static inline void *xfail_realloc_fn(void *ud, void *p, size_t n)
{
    xfail_alloc_t *f = ud;
    if (f->calls++ == f->fail_at)
        return NULL;
    void *r = realloc(p, n ? n : 1);
    if (r && !p)
        f->live++;
    return r;
}

static inline void xfail_free_fn(void *ud, void *p)
{
    xfail_alloc_t *f = ud;
    if (p) {
        f->live--;
        free(p);
    }
}

static inline void xfail_alloc_init(xfail_alloc_t *f, long fail_at)
{
    f->a.alloc = xfail_alloc_fn;
    f->a.realloc = xfail_realloc_fn;
    f->a.free = xfail_free_fn;
    f->a.ud = f;
    f->fail_at = fail_at;
    f->calls = 0;
    f->live = 0;
}

#endif /* PT_TEST_XFAIL_ALLOC_H */
