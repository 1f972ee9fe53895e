/*
 * test_h2mem.c -- the worker's size-class allocator (http/h2mem.c): blocks
 * come back from the free lists, realloc keeps a block inside its class,
 * the transcoder allocator view shares the lists, big blocks go to malloc,
 * and a disposed allocator stays valid until its last block is freed (a
 * request's buffers can outlive the worker's upstream state). Run under
 * ASan, a block freed into the wrong allocator or a leak fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "http/h2mem.h"
#include "net/worker.h"
#include "portico/transcoder/alloc.h"

static pt_worker_t *worker(void)
{
    pt_worker_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    return w;
}

static void test_reuse_by_class(void **state)
{
    (void)state;
    pt_worker_t *w = worker();
    const pt_allocator_t *a = pt_h2mem_allocator(w);
    nghttp2_mem *m = pt_h2mem_of(w);
    assert_ptr_equal(a->ud, m->mem_user_data); /* one set of lists */
    char *p = a->alloc(a->ud, 200);
    assert_non_null(p);
    memset(p, 'x', 200);
    a->free(a->ud, p);
    /* the next block of the same class (129..256) is the one just freed */
    char *q = a->alloc(a->ud, 150);
    assert_ptr_equal(q, p);
    /* nghttp2's view hands out the same lists */
    m->free(q, m->mem_user_data);
    char *r = m->malloc(256, m->mem_user_data);
    assert_ptr_equal(r, p);
    m->free(r, m->mem_user_data);
    pt_h2mem_dispose(w);
    free(w);
}

/* Every class edge: a block of the class's full size and one of a byte more
 * than the class below both fit it (realloc keeps them in place up to the
 * edge); a byte over the edge moves. Sizes past the last class (4096) go to
 * malloc as they are. */
static void test_class_edges(void **state)
{
    (void)state;
    pt_worker_t *w = worker();
    nghttp2_mem *m = pt_h2mem_of(w);
    for (size_t cap = 32; cap <= 4096; cap *= 2) {
        size_t low = cap == 32 ? 1 : cap / 2 + 1;
        char *p = m->malloc(low, m->mem_user_data);
        assert_non_null(p);
        memset(p, 'e', low);
        assert_ptr_equal(m->realloc(p, cap, m->mem_user_data), p); /* the same class */
        memset(p, 'f', cap);
        char *q = m->realloc(p, cap + 1, m->mem_user_data);         /* the next one */
        assert_non_null(q);
        assert_ptr_not_equal(q, p);
        assert_int_equal(q[cap - 1], 'f');
        m->free(q, m->mem_user_data);
        /* the class's block just given back serves the next request of that class */
        char *r = m->malloc(cap, m->mem_user_data);
        assert_ptr_equal(r, p);
        m->free(r, m->mem_user_data);
    }
    char *big = m->malloc(4097, m->mem_user_data);
    assert_non_null(big);
    memset(big, 'b', 4097);
    m->free(big, m->mem_user_data);
    pt_h2mem_dispose(w);
    free(w);
}

static void test_realloc_and_big(void **state)
{
    (void)state;
    pt_worker_t *w = worker();
    const pt_allocator_t *a = pt_h2mem_allocator(w);
    char *p = a->alloc(a->ud, 40); /* class 64 */
    for (int i = 0; i < 10; i++)
        p[i] = (char)('0' + i);
    assert_ptr_equal(a->realloc(a->ud, p, 64), p); /* still fits its class */
    char *q = a->realloc(a->ud, p, 1000);          /* moves, keeps the bytes */
    assert_non_null(q);
    assert_memory_equal(q, "0123456789", 10);
    char *big = a->realloc(a->ud, q, 100000);      /* above 4 KiB: malloc */
    assert_non_null(big);
    assert_memory_equal(big, "0123456789", 10);
    memset(big, 0, 100000);
    a->free(a->ud, big);
    a->free(a->ud, NULL);
    /* a transcoder buffer on it grows past every class and is disposed */
    pt_xbuf_t b;
    pt_xbuf_init(&b, a);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pt_xbuf_append(&b, "abcdefgh", 8), 0);
    assert_int_equal(b.len, 8000);
    pt_xbuf_dispose(&b);
    pt_h2mem_dispose(w);
    free(w);
}

static void test_dispose_with_blocks_out(void **state)
{
    (void)state;
    pt_worker_t *w = worker();
    const pt_allocator_t *a = pt_h2mem_allocator(w);
    void *kept = a->alloc(a->ud, 100);
    void *big = a->alloc(a->ud, 10000);
    void *cached = a->alloc(a->ud, 100);
    a->free(a->ud, cached); /* on a free list: freed by dispose */
    pt_h2mem_dispose(w);
    assert_null(w->h2mem);
    /* the lists are gone, the allocator is not: blocks still out go back to
     * it and the last one frees it (ASan: no leak, no use after free) */
    a->free(a->ud, big);
    a->free(a->ud, kept);
    /* a worker asking again gets a fresh allocator */
    const pt_allocator_t *b = pt_h2mem_allocator(w);
    assert_non_null(b);
    void *p = b->alloc(b->ud, 10);
    b->free(b->ud, p);
    pt_h2mem_dispose(w);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_by_class),
        cmocka_unit_test(test_class_edges),
        cmocka_unit_test(test_realloc_and_big),
        cmocka_unit_test(test_dispose_with_blocks_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
