/*
 * fuzz_h1.c -- the strict HTTP/1.1 request parser (gateway/http/h1parse.c).
 *
 * The first input byte picks a piece size; the rest is parsed once in one
 * piece and once in pieces. Beyond "no crash, no leak", it checks:
 *   - both runs produce the same event transcript (split invariance);
 *   - every accepted head is clean: lowercase token names, values without
 *     control bytes or surrounding whitespace, a 1.0/1.1 version, consistent
 *     framing flags; body bytes never exceed the announced length.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1parse.h"

typedef struct sink {
    uint64_t hash;
    size_t events;
} sink_t;

static void mix(sink_t *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ b[i]) * 1099511628211ull;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void check_head(const pt_h1p_head_t *h)
{
    if (h->version != 10 && h->version != 11)
        abort();
    if (h->chunked && h->content_length >= 0)
        abort();
    if (h->has_body != (h->chunked || h->content_length > 0))
        abort();
    if (h->method.len == 0 || h->path.len == 0)
        abort();
    if (h->version == 11 && h->authority.len == 0)
        abort();
    for (size_t i = 0; i < h->header_cnt; i++) {
        pt_str_t n = h->headers[i].name, v = h->headers[i].value;
        if (n.len == 0)
            abort();
        for (size_t k = 0; k < n.len; k++)
            if (!is_tchar((unsigned char)n.base[k]) || n.base[k] == '_')
                abort();
        for (size_t k = 0; k < v.len; k++) {
            unsigned char c = (unsigned char)v.base[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                abort();
        }
        if (v.len > 0 && (v.base[0] == ' ' || v.base[0] == '\t' || v.base[v.len - 1] == ' ' ||
                          v.base[v.len - 1] == '\t'))
            abort();
    }
}

static void run(const uint8_t *data, size_t size, size_t step, sink_t *s)
{
    pt_h1p_limits_t lim = {.max_request_line = 512,
                           .max_header_bytes = 2048,
                           .max_header_count = 16,
                           .max_body = 4096,
                           .max_chunk_ext = 64,
                           .allow_underscores = false};
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    pt_h1p_t *p = pt_h1p_new(&lim);
    size_t off = 0;
    int64_t body_left = 0;
    bool done = false;
    while (!done) {
        size_t end = step == 0 || off + step > size ? size : off + step;
        bool last = end == size;
        for (;;) {
            pt_h1p_event_t ev;
            size_t n = pt_h1p_feed(p, buf + off, end - off, &ev);
            if (n > end - off)
                abort();
            off += n;
            if (ev.type == PT_H1P_NONE) {
                if (off != end)
                    abort();
                break;
            }
            if (ev.type != PT_H1P_BODY) { /* body pieces depend on the split; their bytes don't */
                int t = (int)ev.type;
                mix(s, &t, sizeof(t));
                s->events++;
            }
            if (ev.type == PT_H1P_HEAD) {
                const pt_h1p_head_t *h = pt_h1p_head(p);
                check_head(h);
                body_left = h->chunked ? INT64_MAX : h->content_length;
                mix(s, h->method.base, h->method.len);
                mix(s, h->path.base, h->path.len);
                for (size_t i = 0; i < h->header_cnt; i++) {
                    mix(s, h->headers[i].name.base, h->headers[i].name.len);
                    mix(s, h->headers[i].value.base, h->headers[i].value.len);
                }
            } else if (ev.type == PT_H1P_BODY) {
                if (ev.len == 0 || (int64_t)ev.len > body_left)
                    abort();
                body_left -= (int64_t)ev.len;
                mix(s, ev.data, ev.len); /* FNV over the concatenation */
            } else if (ev.type == PT_H1P_ERROR) {
                mix(s, &ev.status, sizeof(ev.status));
                if (ev.reason == NULL)
                    abort();
                done = true;
                break;
            }
        }
        if (last)
            break;
    }
    pt_h1p_free(p);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 16) + 1;
    data++;
    size--;
    sink_t whole = {1469598103934665603ull, 0}, pieces = {1469598103934665603ull, 0};
    run(data, size, 0, &whole);
    run(data, size, step, &pieces);
    if (whole.hash != pieces.hash || whole.events != pieces.events)
        abort();
    return 0;
}
