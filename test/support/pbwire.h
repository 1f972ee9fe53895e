/*
 * pbwire.h -- a tiny protobuf wire writer for tests: build exact (including
 * malformed) wire bytes by hand. Appends to a fixed buffer; asserts on overflow.
 */
#ifndef PT_TEST_PBWIRE_H
#define PT_TEST_PBWIRE_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

typedef struct pbw {
    uint8_t b[8192];
    size_t n;
} pbw_t;

static inline void pbw_raw(pbw_t *w, const void *p, size_t n)
{
    assert(w->n + n <= sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static inline void pbw_varint(pbw_t *w, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            c |= 0x80;
        pbw_raw(w, &c, 1);
    } while (v);
}

static inline void pbw_tag(pbw_t *w, uint32_t field, unsigned wt) { pbw_varint(w, (uint64_t)field << 3 | wt); }

/* field as varint (int32 negative values: pass (uint64_t)(int64_t)v) */
static inline void pbw_v(pbw_t *w, uint32_t field, uint64_t v)
{
    pbw_tag(w, field, 0);
    pbw_varint(w, v);
}

static inline void pbw_f32(pbw_t *w, uint32_t field, uint32_t v)
{
    pbw_tag(w, field, 5);
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    pbw_raw(w, b, 4);
}

static inline void pbw_f64(pbw_t *w, uint32_t field, uint64_t v)
{
    pbw_tag(w, field, 1);
    for (int i = 0; i < 8; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        pbw_raw(w, &c, 1);
    }
}

static inline void pbw_double(pbw_t *w, uint32_t field, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    pbw_f64(w, field, v);
}

static inline void pbw_float(pbw_t *w, uint32_t field, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    pbw_f32(w, field, v);
}

static inline void pbw_bytes(pbw_t *w, uint32_t field, const void *p, size_t n)
{
    pbw_tag(w, field, 2);
    pbw_varint(w, n);
    pbw_raw(w, p, n);
}

static inline void pbw_str(pbw_t *w, uint32_t field, const char *s) { pbw_bytes(w, field, s, strlen(s)); }

/* a submessage from another writer */
static inline void pbw_msg(pbw_t *w, uint32_t field, const pbw_t *sub) { pbw_bytes(w, field, sub->b, sub->n); }

static inline uint64_t pbw_zz(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

#endif /* PT_TEST_PBWIRE_H */
