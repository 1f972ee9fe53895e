/*
 * h2mem.h -- the allocator nghttp2 sessions of a worker use (server sessions
 * in http/h2.c, client sessions in upstream/h2.c).
 *
 * nghttp2 allocates per stream, per frame submitted, per header name/value
 * it keeps and per header list it copies: ~14 malloc/free pairs for one
 * proxied gRPC call, which under callgrind cost more than the HPACK work
 * around them, because 32 calls in flight overrun glibc's per-thread cache.
 * This allocator keeps freed blocks of up to 4 KiB in per-size-class lists
 * (powers of two from 32 bytes, at most H2MEM_KEEP a class, so a worker
 * holds at most ~1 MiB) and hands them out again; larger blocks go to
 * malloc. One per worker, made on first use, freed with the worker (after
 * every session of the worker was deleted). Only the thread that holds the
 * worker uses it, like the sessions themselves.
 */
#ifndef PT_GATEWAY_H2MEM_H
#define PT_GATEWAY_H2MEM_H

#include <nghttp2/nghttp2.h>

typedef struct pt_worker pt_worker_t;

/** The worker's nghttp2_mem (made on first use; aborts on OOM). */
nghttp2_mem *pt_h2mem_of(pt_worker_t *w);

/** Frees the worker's allocator and the blocks it keeps. Every session using it must be gone. */
void pt_h2mem_dispose(pt_worker_t *w);

#endif /* PT_GATEWAY_H2MEM_H */
