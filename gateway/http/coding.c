/*
 * coding.c -- Accept-Encoding selection and the streaming gzip / br / zstd
 * coders behind one feed() (see coding.h).
 */
#include "portico/coding.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
/* ZSTD_c_srcSizeHint is in the "experimental" section of libzstd 1.5 (exported by the shared library) */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "portico/status.h"

/* ---- names and Accept-Encoding ----------------------------------------- */

static const char *const names[PT_CODING__COUNT] = {"identity", "gzip", "br", "zstd"};

const char *pt_coding_name(pt_coding_t c)
{
    return (unsigned)c < PT_CODING__COUNT ? names[c] : "identity";
}

int pt_coding_from_name(pt_str_t name)
{
    name = pt_str_trim_ows(name);
    if (pt_str_ieq(name, PT_STR("x-gzip")))
        return PT_CODING_GZIP;
    for (int c = 0; c < PT_CODING__COUNT; c++)
        if (pt_str_ieq(name, pt_str_c(names[c])))
            return c;
    return -1;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 if malformed. */
static int parse_q(pt_str_t v)
{
    if (v.len == 0 || v.len > 5 || (v.base[0] != '0' && v.base[0] != '1'))
        return -1;
    int q = (v.base[0] - '0') * 1000;
    if (v.len == 1)
        return q;
    if (v.base[1] != '.')
        return -1;
    int scale = 100;
    for (size_t i = 2; i < v.len; i++, scale /= 10) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return -1;
        q += (v.base[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* The q of one element's parameters ("; q=0.5; foo=bar"); 1000 when absent. */
static int element_q(pt_str_t params)
{
    int q = 1000;
    while (params.len != 0) {
        const char *semi = memchr(params.base, ';', params.len);
        size_t n = semi != NULL ? (size_t)(semi - params.base) : params.len;
        pt_str_t p = pt_str_trim_ows((pt_str_t){params.base, n});
        if (p.len >= 2 && (p.base[0] == 'q' || p.base[0] == 'Q') && p.base[1] == '=') {
            q = parse_q(pt_str_trim_ows((pt_str_t){p.base + 2, p.len - 2}));
            if (q < 0)
                return 0; /* a q we cannot read never makes a coding acceptable */
        }
        params = semi != NULL ? (pt_str_t){semi + 1, params.len - n - 1} : PT_STR_NULL;
    }
    return q;
}

/* Each coding's q (thousandths) from an Accept-Encoding value: -1 when neither named nor covered
 * by `*`. */
static void accept_q(pt_str_t ae, int q[PT_CODING__COUNT])
{
    for (int c = 0; c < PT_CODING__COUNT; c++)
        q[c] = -1; /* not named */
    int star = -1;
    while (ae.len != 0) {
        const char *comma = memchr(ae.base, ',', ae.len);
        size_t n = comma != NULL ? (size_t)(comma - ae.base) : ae.len;
        pt_str_t el = {ae.base, n};
        ae = comma != NULL ? (pt_str_t){comma + 1, ae.len - n - 1} : PT_STR_NULL;
        const char *semi = memchr(el.base, ';', el.len);
        size_t cn = semi != NULL ? (size_t)(semi - el.base) : el.len;
        pt_str_t coding = pt_str_trim_ows((pt_str_t){el.base, cn});
        if (coding.len == 0)
            continue;
        int eq = element_q(semi != NULL ? (pt_str_t){semi + 1, el.len - cn - 1} : PT_STR_NULL);
        if (coding.len == 1 && coding.base[0] == '*') {
            star = star > eq ? star : eq;
            continue;
        }
        int c = pt_coding_from_name(coding);
        if (c >= 0 && eq > q[c])
            q[c] = eq; /* a coding named twice: the more favourable q */
    }
    for (int c = 0; c < PT_CODING__COUNT; c++)
        if (q[c] < 0)
            q[c] = star; /* not named: what `*` says (-1 when there is no `*`) */
}

bool pt_coding_identity_refused(bool present, pt_str_t ae)
{
    if (!present)
        return false;
    int q[PT_CODING__COUNT];
    accept_q(ae, q);
    return q[PT_CODING_IDENTITY] == 0;
}

pt_coding_t pt_coding_pick(bool present, pt_str_t ae, unsigned allowed)
{
    if (!present)
        return PT_CODING_IDENTITY;
    int q[PT_CODING__COUNT];
    accept_q(ae, q);
    static const pt_coding_t pref[] = {PT_CODING_BR, PT_CODING_ZSTD, PT_CODING_GZIP};
    pt_coding_t best = PT_CODING_IDENTITY;
    int best_q = 0;
    for (size_t i = 0; i < sizeof(pref) / sizeof(pref[0]); i++) {
        pt_coding_t c = pref[i];
        if ((allowed & PT_CODING_BIT(c)) && q[c] > best_q) {
            best = c;
            best_q = q[c];
        }
    }
    if (best != PT_CODING_IDENTITY && q[PT_CODING_IDENTITY] > best_q)
        return PT_CODING_IDENTITY;
    return best;
}

/* ---- the block cache ---------------------------------------------------- */

/*
 * Coders allocate the same few large blocks (hash tables, windows) for every
 * stream. Above glibc's mmap threshold (main.c fixes it at 128 KiB) each one
 * would be a fresh mmap, faulted in page by page and unmapped at the end of
 * the response: that was most of the cost of a Brotli-compressed 10 KB answer.
 * A cache per worker keeps freed blocks for the next stream of the same size.
 */
#define ZCACHE_SLOTS 32
#define ZCACHE_HDR 16 /* keeps the block 16-byte aligned */

struct pt_zcache {
    size_t max_bytes, bytes;
    unsigned streams; /* live streams using the cache */
    bool dead;        /* pt_zcache_free called: goes with the last stream */
    struct {
        void *p;
        size_t size;
    } slot[ZCACHE_SLOTS];
};

pt_zcache_t *pt_zcache_new(size_t max_bytes)
{
    pt_zcache_t *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->max_bytes = max_bytes;
    return c;
}

static void zcache_destroy(pt_zcache_t *c)
{
    for (size_t i = 0; i < ZCACHE_SLOTS; i++)
        free(c->slot[i].p);
    free(c);
}

void pt_zcache_free(pt_zcache_t *c)
{
    if (c == NULL)
        return;
    c->dead = true;
    if (c->streams == 0)
        zcache_destroy(c);
}

static void *zc_alloc(void *opaque, size_t size)
{
    pt_zcache_t *c = opaque;
    if (c != NULL) {
        for (size_t i = 0; i < ZCACHE_SLOTS; i++) {
            if (c->slot[i].p != NULL && c->slot[i].size == size) {
                void *p = c->slot[i].p;
                c->slot[i].p = NULL;
                c->bytes -= size;
                return (char *)p + ZCACHE_HDR;
            }
        }
    }
    if (size > SIZE_MAX - ZCACHE_HDR)
        return NULL;
    char *p = malloc(size + ZCACHE_HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &size, sizeof(size));
    return p + ZCACHE_HDR;
}

static void zc_free(void *opaque, void *ptr)
{
    if (ptr == NULL)
        return;
    pt_zcache_t *c = opaque;
    char *p = (char *)ptr - ZCACHE_HDR;
    size_t size;
    memcpy(&size, p, sizeof(size));
    if (c != NULL && !c->dead && c->bytes + size <= c->max_bytes) {
        for (size_t i = 0; i < ZCACHE_SLOTS; i++) {
            if (c->slot[i].p == NULL) {
                c->slot[i].p = p;
                c->slot[i].size = size;
                c->bytes += size;
                return;
            }
        }
    }
    free(p);
}

static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size)
{
    return (size_t)items > SIZE_MAX / size ? NULL : zc_alloc(opaque, (size_t)items * size);
}

static void zlib_free(voidpf opaque, voidpf ptr)
{
    zc_free(opaque, ptr);
}

/* ---- streams ----------------------------------------------------------- */

struct pt_zstream {
    pt_zcache_t *cache;
    pt_coding_t coding;
    bool encoder;
    bool failed;
    bool frame_done; /* decoders: the last byte fed ended a complete stream / frame */
    union {
        z_stream z;
        BrotliEncoderState *be;
        BrotliDecoderState *bd;
        ZSTD_CCtx *zc;
        ZSTD_DCtx *zd;
    } u;
};

/* zstd decoders refuse frames needing a window above 8 MiB (the default allows 128 MiB). */
#define ZSTD_DEC_WINDOW_LOG_MAX 23
/* brotli encoder window: 512 KiB, as a streaming proxy keeps many streams open. */
#define BR_ENC_LGWIN 19

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Fits a zstd encoder's tables to a known input size (a small response starts far cheaper). */
static bool zstd_fit(ZSTD_CCtx *cc, long long size_hint)
{
    if (size_hint <= 0)
        return true;
    int hint = size_hint < (1 << 30) ? (int)size_hint : 1 << 30;
    return !ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_srcSizeHint, hint));
}

/* The Brotli window for an input of known size: no larger than the input needs. */
static uint32_t br_lgwin(long long size_hint)
{
    uint32_t w = BROTLI_MIN_WINDOW_BITS;
    while (size_hint > 0 && w < BR_ENC_LGWIN && (1LL << w) - 16 < size_hint)
        w++;
    return size_hint > 0 ? w : BR_ENC_LGWIN;
}

static pt_zstream_t *zstream_new(pt_zcache_t *cache, pt_coding_t c)
{
    pt_zstream_t *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    z->coding = c;
    z->cache = cache;
    z->u.z.zalloc = zlib_alloc;
    z->u.z.zfree = zlib_free;
    z->u.z.opaque = cache;
    return z;
}

static ZSTD_customMem zstd_mem(pt_zcache_t *cache)
{
    return (ZSTD_customMem){zc_alloc, zc_free, cache};
}

static pt_zstream_t *zstream_done(pt_zstream_t *z, bool ok)
{
    if (!ok) {
        free(z);
        return NULL;
    }
    if (z->cache != NULL)
        z->cache->streams++;
    return z;
}

pt_zstream_t *pt_zstream_encoder(pt_zcache_t *cache, pt_coding_t c, int level, long long size_hint)
{
    pt_zstream_t *z = zstream_new(cache, c);
    if (z == NULL)
        return NULL;
    z->encoder = true;
    bool ok = false;
    switch (c) {
    case PT_CODING_GZIP:
        ok = deflateInit2(&z->u.z, clamp(level, 1, 9), Z_DEFLATED, 15 + 16, 8,
                          Z_DEFAULT_STRATEGY) == Z_OK;
        break;
    case PT_CODING_BR:
        z->u.be = BrotliEncoderCreateInstance(zc_alloc, zc_free, cache);
        ok = z->u.be != NULL &&
             BrotliEncoderSetParameter(z->u.be, BROTLI_PARAM_QUALITY, (uint32_t)clamp(level, 0, 11)) &&
             BrotliEncoderSetParameter(z->u.be, BROTLI_PARAM_LGWIN, br_lgwin(size_hint)) &&
             (size_hint <= 0 ||
              BrotliEncoderSetParameter(z->u.be, BROTLI_PARAM_SIZE_HINT,
                                        size_hint < (1 << 30) ? (uint32_t)size_hint : 1u << 30));
        if (!ok && z->u.be != NULL)
            BrotliEncoderDestroyInstance(z->u.be);
        break;
    case PT_CODING_ZSTD:
        z->u.zc = ZSTD_createCCtx_advanced(zstd_mem(cache));
        ok = z->u.zc != NULL &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(z->u.zc, ZSTD_c_compressionLevel, clamp(level, 1, 19))) &&
             zstd_fit(z->u.zc, size_hint);
        if (!ok && z->u.zc != NULL)
            ZSTD_freeCCtx(z->u.zc);
        break;
    default:
        break;
    }
    return zstream_done(z, ok);
}

pt_zstream_t *pt_zstream_decoder(pt_zcache_t *cache, pt_coding_t c)
{
    pt_zstream_t *z = zstream_new(cache, c);
    if (z == NULL)
        return NULL;
    bool ok = false;
    switch (c) {
    case PT_CODING_GZIP:
        ok = inflateInit2(&z->u.z, 15 + 16) == Z_OK;
        break;
    case PT_CODING_BR:
        z->u.bd = BrotliDecoderCreateInstance(zc_alloc, zc_free, cache);
        ok = z->u.bd != NULL;
        break;
    case PT_CODING_ZSTD:
        z->u.zd = ZSTD_createDCtx_advanced(zstd_mem(cache));
        ok = z->u.zd != NULL &&
             !ZSTD_isError(ZSTD_DCtx_setParameter(z->u.zd, ZSTD_d_windowLogMax, ZSTD_DEC_WINDOW_LOG_MAX));
        if (!ok && z->u.zd != NULL)
            ZSTD_freeDCtx(z->u.zd);
        break;
    default:
        break;
    }
    return zstream_done(z, ok);
}

void pt_zstream_free(pt_zstream_t *z)
{
    if (z == NULL)
        return;
    switch (z->coding) {
    case PT_CODING_GZIP:
        if (z->encoder)
            deflateEnd(&z->u.z);
        else
            inflateEnd(&z->u.z);
        break;
    case PT_CODING_BR:
        if (z->encoder)
            BrotliEncoderDestroyInstance(z->u.be);
        else
            BrotliDecoderDestroyInstance(z->u.bd);
        break;
    case PT_CODING_ZSTD:
        if (z->encoder)
            ZSTD_freeCCtx(z->u.zc);
        else
            ZSTD_freeDCtx(z->u.zd);
        break;
    default:
        break;
    }
    pt_zcache_t *c = z->cache;
    free(z);
    if (c != NULL && --c->streams == 0 && c->dead)
        zcache_destroy(c);
}

static int emit_some(pt_coding_emit_fn emit, void *ud, const uint8_t *buf, size_t n)
{
    return n != 0 ? emit(ud, buf, n) : 0;
}

static int gzip_enc(pt_zstream_t *z, const uint8_t *in, size_t len, pt_zflush_t fl,
                    pt_coding_emit_fn emit, void *ud, uint8_t *buf)
{
    int flush = fl == PT_ZFLUSH_FINISH ? Z_FINISH : fl == PT_ZFLUSH_SYNC ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    z->u.z.next_in = (Bytef *)(uintptr_t)in;
    z->u.z.avail_in = (uInt)len;
    for (;;) {
        z->u.z.next_out = buf;
        z->u.z.avail_out = PT_CODING_CHUNK;
        int rc = deflate(&z->u.z, flush);
        if (rc == Z_STREAM_ERROR)
            return PT_ERR_INTERNAL;
        int e = emit_some(emit, ud, buf, PT_CODING_CHUNK - z->u.z.avail_out);
        if (e != 0)
            return e;
        if (z->u.z.avail_out != 0 && z->u.z.avail_in == 0 &&
            (flush != Z_FINISH || rc == Z_STREAM_END))
            return 0;
    }
}

static int gzip_dec(pt_zstream_t *z, const uint8_t *in, size_t len, pt_coding_emit_fn emit,
                    void *ud, uint8_t *buf)
{
    z->u.z.next_in = (Bytef *)(uintptr_t)in;
    z->u.z.avail_in = (uInt)len;
    while (z->u.z.avail_in != 0) {
        if (z->frame_done) { /* another gzip member follows (RFC 1952 §2.2) */
            if (inflateReset(&z->u.z) != Z_OK)
                return PT_ERR_INTERNAL;
            z->frame_done = false;
        }
        z->u.z.next_out = buf;
        z->u.z.avail_out = PT_CODING_CHUNK;
        int rc = inflate(&z->u.z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return rc == Z_MEM_ERROR ? PT_ERR_NOMEM : PT_ERR_INVALID;
        int e = emit_some(emit, ud, buf, PT_CODING_CHUNK - z->u.z.avail_out);
        if (e != 0)
            return e;
        if (rc == Z_STREAM_END)
            z->frame_done = true;
    }
    /* inflate may hold output after consuming all input */
    for (;;) {
        if (z->frame_done)
            return 0;
        z->u.z.next_out = buf;
        z->u.z.avail_out = PT_CODING_CHUNK;
        int rc = inflate(&z->u.z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return rc == Z_MEM_ERROR ? PT_ERR_NOMEM : PT_ERR_INVALID;
        size_t n = PT_CODING_CHUNK - z->u.z.avail_out;
        int e = emit_some(emit, ud, buf, n);
        if (e != 0)
            return e;
        if (rc == Z_STREAM_END)
            z->frame_done = true;
        if (n == 0)
            return 0;
    }
}

static int br_enc(pt_zstream_t *z, const uint8_t *in, size_t len, pt_zflush_t fl,
                  pt_coding_emit_fn emit, void *ud, uint8_t *buf)
{
    BrotliEncoderOperation op = fl == PT_ZFLUSH_FINISH ? BROTLI_OPERATION_FINISH
                                : fl == PT_ZFLUSH_SYNC ? BROTLI_OPERATION_FLUSH
                                                       : BROTLI_OPERATION_PROCESS;
    size_t avail_in = len;
    const uint8_t *next_in = in;
    for (;;) {
        size_t avail_out = PT_CODING_CHUNK;
        uint8_t *next_out = buf;
        if (!BrotliEncoderCompressStream(z->u.be, op, &avail_in, &next_in, &avail_out, &next_out, NULL))
            return PT_ERR_INTERNAL;
        int e = emit_some(emit, ud, buf, PT_CODING_CHUNK - avail_out);
        if (e != 0)
            return e;
        if (avail_in == 0 && !BrotliEncoderHasMoreOutput(z->u.be) &&
            (op != BROTLI_OPERATION_FINISH || BrotliEncoderIsFinished(z->u.be)))
            return 0;
    }
}

static int br_dec(pt_zstream_t *z, const uint8_t *in, size_t len, pt_coding_emit_fn emit,
                  void *ud, uint8_t *buf)
{
    size_t avail_in = len;
    const uint8_t *next_in = in;
    for (;;) {
        size_t avail_out = PT_CODING_CHUNK;
        uint8_t *next_out = buf;
        BrotliDecoderResult r =
            BrotliDecoderDecompressStream(z->u.bd, &avail_in, &next_in, &avail_out, &next_out, NULL);
        if (r == BROTLI_DECODER_RESULT_ERROR)
            return PT_ERR_INVALID;
        int e = emit_some(emit, ud, buf, PT_CODING_CHUNK - avail_out);
        if (e != 0)
            return e;
        if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            z->frame_done = true;
            return avail_in == 0 ? 0 : PT_ERR_INVALID; /* bytes after the end */
        }
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
            return 0;
    }
}

static int zstd_enc(pt_zstream_t *z, const uint8_t *in, size_t len, pt_zflush_t fl,
                    pt_coding_emit_fn emit, void *ud, uint8_t *buf)
{
    ZSTD_EndDirective d = fl == PT_ZFLUSH_FINISH ? ZSTD_e_end
                          : fl == PT_ZFLUSH_SYNC ? ZSTD_e_flush
                                                 : ZSTD_e_continue;
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {buf, PT_CODING_CHUNK, 0};
        size_t left = ZSTD_compressStream2(z->u.zc, &ob, &ib, d);
        if (ZSTD_isError(left))
            return PT_ERR_INTERNAL;
        int e = emit_some(emit, ud, buf, ob.pos);
        if (e != 0)
            return e;
        if (ib.pos == ib.size && (d == ZSTD_e_continue ? ob.pos < ob.size : left == 0))
            return 0;
    }
}

static int zstd_dec(pt_zstream_t *z, const uint8_t *in, size_t len, pt_coding_emit_fn emit,
                    void *ud, uint8_t *buf)
{
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {buf, PT_CODING_CHUNK, 0};
        size_t r = ZSTD_decompressStream(z->u.zd, &ob, &ib);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? PT_ERR_NOMEM : PT_ERR_INVALID;
        if (ib.pos != 0 || ob.pos != 0)
            z->frame_done = r == 0;
        int e = emit_some(emit, ud, buf, ob.pos);
        if (e != 0)
            return e;
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0;
    }
}

int pt_zstream_feed(pt_zstream_t *z, const void *data, size_t len, pt_zflush_t flush,
                    pt_coding_emit_fn emit, void *ud)
{
    if (z->failed)
        return PT_ERR_INVALID;
    uint8_t buf[PT_CODING_CHUNK];
    const uint8_t *in = len != 0 ? data : NULL;
    int rc;
    if (z->encoder) {
        rc = z->coding == PT_CODING_GZIP ? gzip_enc(z, in, len, flush, emit, ud, buf)
             : z->coding == PT_CODING_BR ? br_enc(z, in, len, flush, emit, ud, buf)
                                         : zstd_enc(z, in, len, flush, emit, ud, buf);
    } else {
        rc = z->coding == PT_CODING_GZIP ? gzip_dec(z, in, len, emit, ud, buf)
             : z->coding == PT_CODING_BR ? br_dec(z, in, len, emit, ud, buf)
                                         : zstd_dec(z, in, len, emit, ud, buf);
        if (rc == 0 && flush == PT_ZFLUSH_FINISH && !z->frame_done)
            rc = PT_ERR_INVALID; /* truncated */
    }
    if (rc != 0)
        z->failed = true;
    return rc;
}
