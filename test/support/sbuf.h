/*
 * sbuf.h -- a growing printf buffer for test and benchmark programs that
 * build config text (router_bench.c, test_router_diff.c). Header-only; an
 * allocation failure aborts (these are test programs).
 */
#ifndef PT_TEST_SBUF_H
#define PT_TEST_SBUF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct pt_sbuf {
    char *p;
    size_t len, cap;
} pt_sbuf_t;

static void pt_sbuf_put(pt_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pt_sbuf_put(pt_sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (n > 0 ? (size_t)n : 0) + 4096;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
}

#endif
