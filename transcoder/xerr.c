/*
 * xerr.c -- error records with field paths.
 */
#include "portico/transcoder/xerr.h"

#include <stdio.h>
#include <string.h>

const char *pt_xerr_name(int code)
{
    switch (code) {
    case 0: return "OK";
    case PT_XERR_INVALID: return "INVALID";
    case PT_XERR_NOMEM: return "NOMEM";
    case PT_XERR_LIMIT: return "LIMIT";
    case PT_XERR_NOT_FOUND: return "NOT_FOUND";
    case PT_XERR_CORRUPT: return "CORRUPT";
    default: return "UNKNOWN";
    }
}

void pt_xerr_clear(pt_xerr_t *e)
{
    if (e == NULL)
        return;
    e->code = 0;
    e->path[0] = '\0';
    e->msg[0] = '\0';
}

/* Copies a C string into a fixed buffer, truncating. */
static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int pt_xerr_vset(pt_xerr_t *e, int code, const char *path, const char *fmt, va_list ap)
{
    if (e == NULL)
        return code;
    e->code = code;
    copy_trunc(e->path, sizeof e->path, path);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

int pt_xerr_set(pt_xerr_t *e, int code, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_xerr_vset(e, code, path, fmt, ap);
    va_end(ap);
    return code;
}

size_t pt_xerr_format(const pt_xerr_t *e, char *out, size_t n)
{
    int r = e->path[0] ? snprintf(out, n, "%s: %s", e->path, e->msg)
                       : snprintf(out, n, "%s", e->msg);
    return r < 0 ? 0 : (size_t)r;
}

void pt_xerrs_clear(pt_xerrs_t *l)
{
    l->cnt = 0;
    l->dropped = 0;
}

int pt_xerrs_add(pt_xerrs_t *l, int code, const char *path, const char *fmt, ...)
{
    if (l == NULL)
        return code;
    if (l->cnt == PT_XERRS_MAX) {
        l->dropped++;
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    pt_xerr_vset(&l->items[l->cnt++], code, path, fmt, ap);
    va_end(ap);
    return code;
}

int pt_xerrs_push(pt_xerrs_t *l, const pt_xerr_t *e)
{
    if (l == NULL)
        return e->code;
    if (l->cnt == PT_XERRS_MAX)
        l->dropped++;
    else
        l->items[l->cnt++] = *e;
    return e->code;
}

/* ---- paths ---------------------------------------------------------------- */

/* Appends raw bytes; on overflow marks the path truncated and ends it with "...". */
static void path_put(pt_xpath_t *p, const char *s, size_t n)
{
    if (p->truncated)
        return;
    size_t room = sizeof p->buf - 1 - p->len;
    if (n > room) {
        p->truncated = true;
        size_t keep = room >= 3 ? room - 3 : 0;
        memcpy(p->buf + p->len, s, keep);
        p->len += keep;
        memcpy(p->buf + p->len, "...", sizeof p->buf - 1 - p->len);
        p->len = sizeof p->buf - 1;
        p->buf[p->len] = '\0';
        return;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

void pt_xpath_pop(pt_xpath_t *p, size_t mark)
{
    if (mark > p->len)
        return;
    p->len = mark;
    p->buf[mark] = '\0';
    p->truncated = false;
}

size_t pt_xpath_push_field(pt_xpath_t *p, const char *name, size_t len)
{
    size_t mark = p->len;
    if (p->len != 0)
        path_put(p, ".", 1);
    path_put(p, name, len);
    return mark;
}

size_t pt_xpath_push_index(pt_xpath_t *p, size_t i)
{
    size_t mark = p->len;
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "[%zu]", i);
    path_put(p, tmp, (size_t)n);
    return mark;
}

size_t pt_xpath_push_key(pt_xpath_t *p, const char *key, size_t len)
{
    size_t mark = p->len;
    path_put(p, "[\"", 2);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            path_put(p, tmp, 2);
        } else if (c < 0x20) {
            int n = snprintf(tmp, sizeof tmp, "\\u%04x", c);
            path_put(p, tmp, (size_t)n);
        } else {
            path_put(p, (const char *)&key[i], 1);
        }
    }
    path_put(p, "\"]", 2);
    return mark;
}
