/*
 * arena.h -- per-request memory arena.
 *
 * An arena hands out memory that is released all at once: by pt_arena_reset()
 * (keep-alive reuse) or pt_arena_destroy(). Requests, connections and config
 * snapshots each own one arena; nothing allocated from it may be referenced
 * after that owner is gone. Arenas are not thread-safe: use one only on the
 * worker that created it.
 */
#ifndef PT_PORTICO_ARENA_H
#define PT_PORTICO_ARENA_H

#include <stddef.h>
#include "portico/str.h"

typedef struct pt_arena pt_arena_t;
typedef void (*pt_arena_cleanup_cb)(void *data);

/**
 * Creates an arena. `byte_limit` caps the total bytes it may hand out
 * (0 = no cap); `first_block` is the size of the first block (0 = 4 KiB).
 * Blocks double up to 64 KiB; larger requests get a chunk of their own.
 * Aborts the process on OOM; never returns NULL.
 */
pt_arena_t *pt_arena_new(size_t first_block, size_t byte_limit);

/**
 * Returns `size` bytes aligned for any object type, uninitialised.
 * Returns NULL only when the allocation would exceed the arena's byte limit;
 * callers translate that into PT_ERR_LIMIT (a 413/431 for the client).
 */
void *pt_arena_alloc(pt_arena_t *a, size_t size);

/** Like pt_arena_alloc(), with the memory zeroed. */
void *pt_arena_zalloc(pt_arena_t *a, size_t size);

/** Copies `s` into the arena with a terminating NUL (not counted in len). NULL base on limit. */
pt_str_t pt_arena_strdup(pt_arena_t *a, pt_str_t s);

/** Like pt_arena_strdup() but returns a C string (NULL on limit). */
char *pt_arena_cstr(pt_arena_t *a, pt_str_t s);

/** printf into the arena; returns NULL on limit. */
char *pt_arena_printf(pt_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Registers `cb(data)` to run when the arena is reset or destroyed. Cleanups
 * run in reverse order of registration, before any memory is released, so a
 * cleanup may still read arena memory. Use it to cancel in-flight work that
 * points into the arena (timers, upstream calls, Redis commands).
 * Returns 0, or PT_ERR_LIMIT if the arena is over its byte limit.
 */
int pt_arena_defer(pt_arena_t *a, pt_arena_cleanup_cb cb, void *data);

/** Runs the cleanups, then makes all memory reusable; the arena stays valid. */
void pt_arena_reset(pt_arena_t *a);

/** Runs the cleanups and frees everything, including `a`. NULL is accepted. */
void pt_arena_destroy(pt_arena_t *a);

/** Bytes handed out since creation or the last reset (for metrics and tests). */
size_t pt_arena_used(const pt_arena_t *a);

#endif /* PT_PORTICO_ARENA_H */
