/*
 * path.c -- request path normalisation (see path.h).
 */
#include <stdbool.h>
#include <string.h>
#include "core/path.h"
#include "portico/status.h"

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Characters allowed raw in a path (RFC 3986 pchar plus '/'), besides '%'. */
static bool is_path_char(unsigned char c)
{
    return is_unreserved(c) || c == '/' || c == '!' || c == '$' || c == '&' || c == '\'' ||
           c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' ||
           c == ':' || c == '@';
}

/* A segment that is "." or ".." followed by path parameters (";..."), after
 * unreserved escapes were decoded (so "%2e%2e;" is caught too); ';' itself
 * may be sent encoded. Tomcat and other Servlet containers strip the
 * parameters and then see a dot segment that we did not remove: the
 * "/public/..;/admin" bypass of prefix rules. */
static bool is_dot_with_params(const char *seg, size_t len)
{
    size_t dots = 0;
    while (dots < len && dots < 2 && seg[dots] == '.')
        dots++;
    if (dots == 0 || dots == len)
        return false;
    if (seg[dots] == ';')
        return true;
    return len - dots >= 3 && seg[dots] == '%' && seg[dots + 1] == '3' && seg[dots + 2] == 'B';
}

int pt_path_normalize(pt_arena_t *a, pt_str_t in, unsigned flags, pt_str_t *out, const char **why)
{
    bool allow_encoded_slash = (flags & PT_PATH_ALLOW_ENCODED_SLASH) != 0;
    bool merge = (flags & PT_PATH_KEEP_EMPTY_SEGMENTS) == 0;
    if (in.len == 0 || in.base[0] != '/') {
        *why = "path must start with '/'";
        return PT_ERR_INVALID;
    }
    /* Fast path: plain paths with no '%', no dot segment and (when merging)
     * no empty segment stay as they are. */
    bool simple = true;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.base[i];
        if (c == '%' || (c == '.' && in.base[i - 1] == '/') ||
            (merge && c == '/' && i > 0 && in.base[i - 1] == '/')) {
            simple = false;
        } else if (!is_path_char(c)) {
            *why = "invalid character in path";
            return PT_ERR_INVALID;
        }
    }
    if (simple) {
        *out = in;
        return 0;
    }

    /* Pass 1: decode unreserved escapes, uppercase the others, validate. */
    char *buf = pt_arena_alloc(a, in.len + 1);
    if (buf == NULL)
        return PT_ERR_LIMIT;
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.base[i];
        if (c != '%') {
            buf[n++] = (char)c;
            continue;
        }
        int hi = i + 2 < in.len ? pt_str_hexval(in.base[i + 1]) : -1;
        int lo = i + 2 < in.len ? pt_str_hexval(in.base[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            *why = "malformed percent-encoding in path";
            return PT_ERR_INVALID;
        }
        unsigned char d = (unsigned char)(hi * 16 + lo);
        if (d == 0 || ((d == '/' || d == '\\') && !allow_encoded_slash)) {
            *why = "encoded '/', '\\' or NUL in path";
            return PT_ERR_INVALID;
        }
        if (is_unreserved(d)) {
            buf[n++] = (char)d;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            buf[n++] = '%';
            buf[n++] = hex[d >> 4];
            buf[n++] = hex[d & 15];
        }
        i += 2;
    }

    /* Pass 2: remove dot segments (RFC 3986 §5.2.4, segment-wise) and merge
     * empty segments ("//admin" is "/admin" for nginx and most back ends, so
     * a prefix rule on "/admin/" must see it that way too). */
    char *res = pt_arena_alloc(a, n + 1);
    if (res == NULL)
        return PT_ERR_LIMIT;
    size_t r = 0, i = 0;
    while (i < n) {
        /* buf[i] == '/' here: find the segment [i+1, j) */
        size_t j = i + 1;
        while (j < n && buf[j] != '/')
            j++;
        size_t seglen = j - i - 1;
        const char *seg = buf + i + 1;
        bool last = j >= n;
        if (is_dot_with_params(seg, seglen)) {
            *why = "dot segment with parameters (like '..;') in path";
            return PT_ERR_INVALID;
        }
        if (seglen == 0 && merge) {
            if (last && (r == 0 || res[r - 1] != '/'))
                res[r++] = '/'; /* a trailing slash stays, once */
        } else if (seglen == 1 && seg[0] == '.') {
            if (last)
                res[r++] = '/';
        } else if (seglen == 2 && seg[0] == '.' && seg[1] == '.') {
            if (r == 0) {
                *why = "path escapes the root with '..'";
                return PT_ERR_INVALID;
            }
            while (r > 0 && res[r - 1] != '/')
                r--;
            if (r > 0)
                r--; /* drop the '/' that started the removed segment */
            if (last)
                res[r++] = '/';
        } else {
            memcpy(res + r, buf + i, seglen + 1);
            r += seglen + 1;
        }
        i = j;
    }
    if (r == 0)
        res[r++] = '/';
    res[r] = '\0';
    *out = (pt_str_t){res, r};
    return 0;
}
