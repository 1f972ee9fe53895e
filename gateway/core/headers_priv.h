/*
 * headers_priv.h -- header-list helpers for the gateway itself (not in the
 * SDK's portico/headers.h).
 */
#ifndef PT_GATEWAY_HEADERS_PRIV_H
#define PT_GATEWAY_HEADERS_PRIV_H

#include "portico/headers.h"

/**
 * Makes entries [from, h->cnt) of `h` own their bytes: their names
 * (lowercased) and values are copied into ONE block of h's arena and the
 * entries pointed at the copies, NUL-terminated as pt_headers_add() leaves
 * them. For entries added with pt_headers_add_nocopy() over a buffer that
 * will not outlive the list (an upstream connection's read buffer): one
 * allocation instead of two per field. Returns 0, or PT_ERR_LIMIT when the
 * arena is over its byte limit (entries unchanged).
 */
int pt__headers_own(pt_headers_t *h, size_t from);

/** pt_headers_add_nocopy(), with the common case (room left) inline: for hot paths. */
static inline int pt__headers_push(pt_headers_t *h, pt_str_t name, pt_str_t value)
{
    if (h->cnt == h->cap)
        return pt_headers_add_nocopy(h, name, value);
    h->v[h->cnt].name = name;
    h->v[h->cnt].value = value;
    h->cnt++;
    return 0;
}

/** RFC 9110 tchar -> the byte lowercased ('_' included); 0 for every other byte. */
extern const unsigned char pt__tchar_lower[256];

/** pt_header_name_valid(n, true), inline: for the per-field loops of the codecs. */
static inline bool pt__header_name_token(pt_str_t n)
{
    if (n.len == 0)
        return false;
    for (size_t i = 0; i < n.len; i++)
        if (pt__tchar_lower[(unsigned char)n.base[i]] == 0)
            return false;
    return true;
}

#endif /* PT_GATEWAY_HEADERS_PRIV_H */
