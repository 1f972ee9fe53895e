/*
 * fuzz_coding.c -- content codings (gateway/http/coding.c).
 *
 * Input: one selector byte, then the data.
 *  - selector % 4 == 0: the data is an Accept-Encoding value; the pick must
 *    be a coding in the allowed mask (derived from the selector) or identity,
 *    and the same for the same input.
 *  - otherwise: the data is a request body in gzip (1), br (2) or zstd (3),
 *    fed in pieces to a decoder whose output is limited to 256 KiB (the
 *    request decompressor's contract): no piece larger than PT_CODING_CHUNK,
 *    never a byte past the limit, only the documented errors.
 * A crash, a leak, an out-of-bounds access or a broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/coding.h"
#include "portico/status.h"

#define LIMIT (256u * 1024u)

static int emit(void *ud, const void *data, size_t len)
{
    size_t *total = ud;
    (void)data;
    if (len == 0 || len > PT_CODING_CHUNK)
        abort();
    if (*total + len > LIMIT)
        return PT_ERR_LIMIT;
    *total += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    if (sel % 4 == 0) {
        unsigned allowed = (sel >> 2) & 0xeu; /* bits of gzip/br/zstd */
        pt_str_t ae = {(const char *)data, size};
        pt_coding_t c = pt_coding_pick(true, ae, allowed);
        if (c != PT_CODING_IDENTITY && !(allowed & PT_CODING_BIT(c)))
            abort();
        if (pt_coding_pick(true, ae, allowed) != c)
            abort();
        (void)pt_coding_from_name(ae);
        return 0;
    }
    pt_zcache_t *cache = (sel & 0x80) ? pt_zcache_new(1u << 20) : NULL;
    pt_zstream_t *z = pt_zstream_decoder(cache, (pt_coding_t)(sel % 4));
    pt_zcache_free(cache); /* with the stream */
    if (z == NULL)
        return 0;
    size_t total = 0, step = 1 + ((sel >> 2) & 0x1f) * 61;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step) {
        size_t k = size - off < step ? size - off : step;
        rc = pt_zstream_feed(z, data + off, k, PT_ZFLUSH_NONE, emit, &total);
    }
    if (rc == 0)
        rc = pt_zstream_feed(z, NULL, 0, PT_ZFLUSH_FINISH, emit, &total);
    if (rc != 0 && rc != PT_ERR_INVALID && rc != PT_ERR_LIMIT && rc != PT_ERR_NOMEM)
        abort();
    if (total > LIMIT)
        abort();
    pt_zstream_free(z);
    return 0;
}
