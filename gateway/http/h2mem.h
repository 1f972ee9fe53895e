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
 *
 * The same lists serve the worker's per-request objects that would otherwise
 * be a malloc/free pair per call (server streams, gRPC call objects, the
 * REST transcoder's buffers) through pt_h2mem_allocator(). Those may outlive
 * the worker's state (a request freed after the upstream layer went away):
 * the allocator counts its blocks out, and a disposed one is freed with the
 * last of them (each block goes back to the allocator that made it: keep the
 * pt_allocator_t pointer, not the worker).
 */
#ifndef PT_GATEWAY_H2MEM_H
#define PT_GATEWAY_H2MEM_H

#include <nghttp2/nghttp2.h>

typedef struct pt_worker pt_worker_t;
typedef struct pt_allocator pt_allocator_t;

/** The worker's nghttp2_mem (made on first use; aborts on OOM). */
nghttp2_mem *pt_h2mem_of(pt_worker_t *w);

/** The same lists as a transcoder allocator (made on first use; aborts on OOM). `alloc`
 *  returns NULL only on OOM; free every block through this pointer. */
const pt_allocator_t *pt_h2mem_allocator(pt_worker_t *w);

/** Frees the worker's allocator and the blocks it keeps. Every session using it must be gone;
 *  blocks still out (pt_h2mem_allocator) keep it until the last is freed. */
void pt_h2mem_dispose(pt_worker_t *w);

#endif /* PT_GATEWAY_H2MEM_H */
