/*
 * coding.h -- HTTP content codings (RFC 9110 §8.4): choosing one from
 * Accept-Encoding, and streaming encoders and decoders for gzip (zlib), br
 * (libbrotli) and zstd (libzstd). Used by the compress filter
 * (plugins/compress.c) for responses and for request bodies; part of the
 * SDK, so a plugin can decode or encode bodies the same way.
 *
 * Streams are fed slices as they pass and write their output through a
 * callback in bounded pieces (at most PT_CODING_CHUNK bytes each), so a
 * decoder's output can be counted and refused while it streams: a zip bomb
 * is stopped at the limit, never inflated first and measured after.
 */
#ifndef PT_PORTICO_CODING_H
#define PT_PORTICO_CODING_H

#include <stdbool.h>
#include <stddef.h>
#include "portico/str.h"

typedef enum pt_coding {
    PT_CODING_IDENTITY = 0,
    PT_CODING_GZIP = 1,
    PT_CODING_BR = 2,
    PT_CODING_ZSTD = 3,
    PT_CODING__COUNT
} pt_coding_t;

/** Bit of a coding in an `allowed` mask. */
#define PT_CODING_BIT(c) (1u << (c))
/** Largest piece handed to an emit callback. */
#define PT_CODING_CHUNK 16384

/** The token of a coding ("gzip", "br", "zstd", "identity"). */
const char *pt_coding_name(pt_coding_t c);

/**
 * The coding named by a Content-Encoding value: "gzip" (also "x-gzip"), "br",
 * "zstd", "identity" (case-insensitive, surrounding whitespace ignored).
 * Returns -1 for anything else, including lists ("gzip, br").
 */
int pt_coding_from_name(pt_str_t name);

/**
 * Picks the response coding for an Accept-Encoding value among the codings
 * in `allowed` (PT_CODING_BIT mask of gzip/br/zstd):
 *  - each element is `coding [; q=qvalue] [; other params]`; q is 0..1 with
 *    at most three decimals; a malformed q makes the element count as q=0;
 *    q=0 means "not acceptable";
 *  - `*` gives its q to every coding not named explicitly;
 *  - the coding with the highest q wins; among equal q the server prefers
 *    br, then zstd, then gzip;
 *  - identity wins when it was named (or covered by `*`) with a q higher
 *    than the best coding's (the client prefers it uncompressed);
 *  - `present == false` (no header) and an empty value pick identity.
 * identity is the answer when nothing else is acceptable, even when the
 * client refused it: pt_coding_identity_refused() tells (the caller decides
 * whether that is a 406).
 */
pt_coding_t pt_coding_pick(bool present, pt_str_t accept_encoding, unsigned allowed);

/**
 * Does this Accept-Encoding refuse an unencoded answer (RFC 9110 12.5.3)?
 * True when `identity` is named with q=0, or is not named while `*;q=0` is
 * (the most favourable q of repeated elements counts, as in pt_coding_pick).
 * No header and an empty value accept identity.
 */
bool pt_coding_identity_refused(bool present, pt_str_t accept_encoding);

/** Output sink: returns 0, or a negative PT_ERR_* that stops the stream and is returned. */
typedef int (*pt_coding_emit_fn)(void *ud, const void *data, size_t len);

typedef struct pt_zstream pt_zstream_t;

/**
 * A cache of the coders' large blocks, for one thread (a worker): streams
 * made with it reuse the blocks earlier streams freed (up to `max_bytes`
 * kept), instead of a fresh mmap per response. Not thread-safe.
 * pt_zcache_free may come before the last stream's pt_zstream_free: the
 * cache then goes with that stream.
 */
typedef struct pt_zcache pt_zcache_t;
pt_zcache_t *pt_zcache_new(size_t max_bytes);
void pt_zcache_free(pt_zcache_t *c);

typedef enum pt_zflush {
    PT_ZFLUSH_NONE = 0,   /* keep what the coder holds for better ratio */
    PT_ZFLUSH_SYNC = 1,   /* everything fed so far is decodable by the peer now */
    PT_ZFLUSH_FINISH = 2, /* end of the stream */
} pt_zflush_t;

/**
 * An encoder of `c` (not identity) at `level` (clamped to the codec's range);
 * NULL on failure. `size_hint` > 0 is the expected input size (a response's
 * Content-Length): br and zstd then size their window and tables to it, which
 * makes a small response far cheaper to start. Any size may still be fed.
 * `cache` may be NULL (plain malloc).
 */
pt_zstream_t *pt_zstream_encoder(pt_zcache_t *cache, pt_coding_t c, int level, long long size_hint);
/** A decoder of `c` (not identity); NULL on failure. `cache` may be NULL (plain malloc). */
pt_zstream_t *pt_zstream_decoder(pt_zcache_t *cache, pt_coding_t c);

/**
 * Feeds `len` bytes. Encoders honour `flush`; decoders write what they can
 * and, with PT_ZFLUSH_FINISH, check that the stream ended exactly (a
 * truncated stream or bytes after its end are PT_ERR_INVALID). Returns 0,
 * PT_ERR_INVALID (corrupt input), PT_ERR_NOMEM, or the emit callback's error.
 * After an error the stream only accepts pt_zstream_free.
 */
int pt_zstream_feed(pt_zstream_t *z, const void *data, size_t len, pt_zflush_t flush,
                    pt_coding_emit_fn emit, void *ud);

/** Releases a stream (NULL is fine). */
void pt_zstream_free(pt_zstream_t *z);

#endif /* PT_PORTICO_CODING_H */
