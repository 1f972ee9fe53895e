/*
 * arena.c -- bump allocator with deferred cleanups (see arena.h).
 *
 * Blocks start at `first_block` bytes and double up to 64 KiB; a request
 * larger than a quarter of the current block size gets a chunk of its own so
 * that big buffers do not waste the tail of a shared block. Reset keeps the
 * first block for reuse (keep-alive connections) and frees the rest.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "portico/arena.h"
#include "portico/status.h"

/* Under ASan, memory a reset made reusable is poisoned until it is handed
 * out again: a stale pointer into what an arena held before its reset (a
 * finished request whose arena serves the next one, request.c) still faults. */
#include "core/asan.h"
#define POISON(p, n) PT_ASAN_POISON(p, n)
#define UNPOISON(p, n) PT_ASAN_UNPOISON(p, n)

#define ALIGN 16u
#define MAX_BLOCK ((size_t)64 * 1024)

typedef struct block {
    struct block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} block_t;

typedef struct cleanup {
    pt_arena_cleanup_cb cb;
    void *data;
    struct cleanup *next;
} cleanup_t;

struct pt_arena {
    block_t *head;      /* current block first; the first block is last in the list */
    block_t *first;
    size_t next_size;
    size_t first_size;
    size_t limit, used;
    cleanup_t *cleanups;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fputs("portico: out of memory\n", stderr);
        abort();
    }
    return p;
}

static block_t *block_new(size_t size)
{
    block_t *b = xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

pt_arena_t *pt_arena_new(size_t first_block, size_t byte_limit)
{
    pt_arena_t *a = xmalloc(sizeof(*a));
    if (first_block == 0)
        first_block = 4096 - sizeof(block_t);
    a->first = block_new(first_block);
    a->head = a->first;
    a->first_size = first_block;
    a->next_size = first_block * 2 > MAX_BLOCK ? MAX_BLOCK : first_block * 2;
    a->limit = byte_limit;
    a->used = 0;
    a->cleanups = NULL;
    return a;
}

/* A new head block (or an oversized chunk) for `rounded` bytes: out of line,
 * so the common path below saves and restores no registers (callgrind: ~8
 * instructions of each of the ~57 allocations a transcoded call makes). */
static __attribute__((noinline)) void *alloc_slow(pt_arena_t *a, size_t rounded)
{
    block_t *b = a->head;
    if (rounded > a->next_size / 4) {
        /* Oversized: its own chunk, linked after the head so the head keeps serving. */
        block_t *big = block_new(rounded);
        big->used = rounded;
        big->next = b->next;
        b->next = big;
        a->used += rounded;
        return big->data;
    }
    b = block_new(a->next_size);
    b->next = a->head;
    a->head = b;
    if (a->next_size < MAX_BLOCK)
        a->next_size *= 2;
    void *p = b->data;
    b->used = rounded;
    a->used += rounded;
    UNPOISON(p, rounded);
    return p;
}

void *pt_arena_alloc(pt_arena_t *a, size_t size)
{
    if (size == 0)
        size = 1;
    size_t rounded = (size + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    if (rounded < size)
        return NULL;
    if (a->limit != 0 && (a->used + rounded > a->limit || a->used + rounded < a->used))
        return NULL;
    block_t *b = a->head;
    if (__builtin_expect(b->size - b->used < rounded, 0))
        return alloc_slow(a, rounded);
    void *p = b->data + b->used;
    b->used += rounded;
    a->used += rounded;
    UNPOISON(p, rounded);
    return p;
}

void *pt_arena_zalloc(pt_arena_t *a, size_t size)
{
    void *p = pt_arena_alloc(a, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

pt_str_t pt_arena_strdup(pt_arena_t *a, pt_str_t s)
{
    char *p = pt_arena_alloc(a, s.len + 1);
    if (p == NULL)
        return PT_STR_NULL;
    if (s.len != 0)
        memcpy(p, s.base, s.len);
    p[s.len] = '\0';
    return (pt_str_t){p, s.len};
}

char *pt_arena_cstr(pt_arena_t *a, pt_str_t s)
{
    return (char *)pt_arena_strdup(a, s).base;
}

char *pt_arena_printf(pt_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = pt_arena_alloc(a, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int pt_arena_defer(pt_arena_t *a, pt_arena_cleanup_cb cb, void *data)
{
    cleanup_t *c = pt_arena_alloc(a, sizeof(*c));
    if (c == NULL)
        return PT_ERR_LIMIT;
    c->cb = cb;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

static void run_cleanups(pt_arena_t *a)
{
    /* A cleanup may register another one; loop until the list stays empty. */
    while (a->cleanups != NULL) {
        cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->cb(c->data);
    }
}

void pt_arena_reset(pt_arena_t *a)
{
    run_cleanups(a);
    block_t *b = a->head;
    while (b != NULL) {
        block_t *next = b->next;
        if (b != a->first)
            free(b);
        b = next;
    }
    a->first->next = NULL;
    a->first->used = 0;
    POISON(a->first->data, a->first->size);
    a->head = a->first;
    a->next_size = a->first_size * 2 > MAX_BLOCK ? MAX_BLOCK : a->first_size * 2;
    a->used = 0;
}

void pt_arena_destroy(pt_arena_t *a)
{
    if (a == NULL)
        return;
    run_cleanups(a);
    UNPOISON(a->first->data, a->first->size); /* free() must not find it poisoned */
    block_t *b = a->head;
    while (b != NULL) {
        block_t *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

size_t pt_arena_used(const pt_arena_t *a)
{
    return a->used;
}
