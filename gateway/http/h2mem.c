/*
 * h2mem.c -- size-class free lists for the nghttp2 sessions of one worker
 * (see h2mem.h).
 */
#include "http/h2mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/worker.h"
#include "portico/transcoder/alloc.h"

enum {
    H2MEM_MIN_SHIFT = 5,  /* 32 bytes */
    H2MEM_CLASSES = 8,    /* 32 .. 4096 */
    H2MEM_KEEP = 128,     /* blocks kept per class */
    H2MEM_BIG = 0xffff,   /* class of a block that went to malloc as it was */
};

/* Every block starts with this header; the caller's bytes follow (16-byte aligned). */
typedef struct blk {
    uint32_t cls;
    uint32_t pad;
    size_t size; /* bytes asked for (what realloc must copy) */
} blk_t;

typedef struct free_blk {
    struct free_blk *next;
} free_blk_t;

typedef struct h2mem {
    nghttp2_mem mem;
    pt_allocator_t xalloc;   /* the same lists for the transcoder's buffers */
    free_blk_t *free[H2MEM_CLASSES];
    unsigned cnt[H2MEM_CLASSES];
    size_t live;             /* blocks handed out and not given back */
    bool dead;               /* disposed while `live` != 0: freed with the last block */
} h2mem_t;

_Static_assert(sizeof(blk_t) == 16, "block header keeps 16-byte alignment");

/* The smallest class whose blocks hold `size` bytes (bit arithmetic, not a
 * loop over the classes: ~20 instructions less for each of the ~19 blocks a
 * transcoded call takes, callgrind). */
static unsigned class_of(size_t size)
{
    if (size <= (size_t)1 << H2MEM_MIN_SHIFT)
        return 0;
    /* bits needed for size - 1, i.e. ceil(log2(size)), minus the first class's */
    unsigned c = (unsigned)(64 - __builtin_clzll((unsigned long long)(size - 1))) - H2MEM_MIN_SHIFT;
    return c < H2MEM_CLASSES ? c : H2MEM_BIG;
}

/* A block from malloc (its class list is empty, or it is bigger than every
 * class): out of line, so m_malloc's common path saves no registers. */
static __attribute__((noinline)) void *m_malloc_new(h2mem_t *m, size_t size, unsigned c)
{
    size_t cap = c != H2MEM_BIG ? (size_t)1 << (H2MEM_MIN_SHIFT + c) : size;
    if (cap > SIZE_MAX - sizeof(blk_t))
        return NULL;
    blk_t *b = malloc(sizeof(blk_t) + cap);
    if (b == NULL)
        return NULL;
    b->cls = c;
    b->size = size;
    m->live++;
    return b + 1;
}

static void *m_malloc(size_t size, void *ud)
{
    h2mem_t *m = ud;
    unsigned c = class_of(size);
    if (c == H2MEM_BIG || m->free[c] == NULL)
        return m_malloc_new(m, size, c);
    free_blk_t *f = m->free[c];
    m->free[c] = f->next;
    m->cnt[c]--;
    blk_t *b = (blk_t *)(void *)f;
    b->cls = c;
    b->size = size;
    m->live++;
    return b + 1;
}

static void m_free(void *ptr, void *ud)
{
    if (ptr == NULL)
        return;
    h2mem_t *m = ud;
    blk_t *b = (blk_t *)ptr - 1;
    unsigned c = b->cls;
    m->live--;
    if (m->dead) {
        /* the worker is gone: nothing is kept any more */
        free(b);
        if (m->live == 0)
            free(m);
        return;
    }
    if (c == H2MEM_BIG || m->cnt[c] >= H2MEM_KEEP) {
        free(b);
        return;
    }
    free_blk_t *f = (free_blk_t *)(void *)b;
    f->next = m->free[c];
    m->free[c] = f;
    m->cnt[c]++;
}

static void *m_calloc(size_t n, size_t size, void *ud)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = m_malloc(n * size, ud);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static void *m_realloc(void *ptr, size_t size, void *ud)
{
    if (ptr == NULL)
        return m_malloc(size, ud);
    if (size == 0) {
        m_free(ptr, ud);
        return NULL;
    }
    blk_t *b = (blk_t *)ptr - 1;
    if (b->cls != H2MEM_BIG && size <= (size_t)1 << (H2MEM_MIN_SHIFT + b->cls)) {
        b->size = size;
        return ptr;
    }
    void *q = m_malloc(size, ud);
    if (q == NULL)
        return NULL;
    memcpy(q, ptr, b->size < size ? b->size : size);
    m_free(ptr, ud);
    return q;
}

static void *x_alloc(void *ud, size_t n)
{
    return m_malloc(n != 0 ? n : 1, ud);
}

static void *x_realloc(void *ud, void *p, size_t n)
{
    return m_realloc(p, n != 0 ? n : 1, ud);
}

static void x_free(void *ud, void *p)
{
    m_free(p, ud);
}

static h2mem_t *mem_of(pt_worker_t *w)
{
    h2mem_t *m = w->h2mem;
    if (m == NULL) {
        m = calloc(1, sizeof(*m));
        if (m == NULL)
            abort();
        m->mem = (nghttp2_mem){m, m_malloc, m_free, m_calloc, m_realloc};
        m->xalloc = (pt_allocator_t){x_alloc, x_realloc, x_free, m};
        w->h2mem = m;
    }
    return m;
}

nghttp2_mem *pt_h2mem_of(pt_worker_t *w)
{
    return &mem_of(w)->mem;
}

const pt_allocator_t *pt_h2mem_allocator(pt_worker_t *w)
{
    return &mem_of(w)->xalloc;
}

void pt_h2mem_dispose(pt_worker_t *w)
{
    h2mem_t *m = w->h2mem;
    if (m == NULL)
        return;
    for (unsigned c = 0; c < H2MEM_CLASSES; c++) {
        while (m->free[c] != NULL) {
            free_blk_t *f = m->free[c];
            m->free[c] = f->next;
            free(f);
        }
        m->cnt[c] = 0;
    }
    w->h2mem = NULL;
    if (m->live != 0) {
        m->dead = true; /* a request's buffers may outlive the worker's state: freed with the last */
        return;
    }
    free(m);
}
