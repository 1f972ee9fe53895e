/*
 * hstore.c -- collected upstream header fields (hstore.h).
 */
#include "upstream/hstore.h"

#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

void pt__hstore_add(pt__hstore_t *s, pt_str_t name, pt_str_t value, bool lower)
{
    size_t need = s->len + name.len + value.len;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < need)
            cap *= 2;
        s->buf = pt_xrealloc(s->buf, cap);
        s->cap = cap;
    }
    if (s->cnt == s->ecap) {
        s->ecap = s->ecap ? s->ecap * 2 : 16;
        s->e = pt_xrealloc(s->e, s->ecap * sizeof(*s->e));
    }
    pt__hent_t *e = &s->e[s->cnt++];
    e->noff = (uint32_t)s->len;
    e->nlen = (uint32_t)name.len;
    if (lower) {
        for (size_t i = 0; i < name.len; i++) {
            char ch = name.base[i];
            s->buf[s->len + i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
    } else if (name.len != 0) {
        memcpy(s->buf + s->len, name.base, name.len);
    }
    s->len += name.len;
    e->voff = (uint32_t)s->len;
    e->vlen = (uint32_t)value.len;
    if (value.len != 0)
        memcpy(s->buf + s->len, value.base, value.len);
    s->len += value.len;
}

const pt_header_t *pt__hstore_view(pt__hstore_t *s)
{
    if (s->cnt == 0)
        return NULL;
    if (s->vcap < s->cnt) {
        s->vcap = s->cnt;
        s->view = pt_xrealloc(s->view, s->vcap * sizeof(*s->view));
    }
    for (size_t i = 0; i < s->cnt; i++) {
        s->view[i].name = (pt_str_t){s->buf + s->e[i].noff, s->e[i].nlen};
        s->view[i].value = (pt_str_t){s->buf + s->e[i].voff, s->e[i].vlen};
    }
    return s->view;
}

void pt__hstore_free(pt__hstore_t *s)
{
    free(s->buf);
    free(s->e);
    free(s->view);
    memset(s, 0, sizeof(*s));
}
