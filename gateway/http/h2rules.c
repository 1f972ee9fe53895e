/*
 * h2rules.c -- the HTTP/2 request messaging rules (see h2rules.h).
 */
#include <string.h>
#include "portico/headers.h"
#include "http/h2rules.h"

#define N PT_H2C_NAME
#define V PT_H2C_VALUE
#define P PT_H2C_PATH
#define A PT_H2C_AUTH
#define T PT_H2C_TOKEN
/* clang-format off */
static const uint8_t cls[256] = {
    /* 0x00-0x1f: controls; HTAB is a value character */
    0, 0, 0, 0, 0, 0, 0, 0, 0, V, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* SP ! " # $ % & ' ( ) * + , - . / */
    V, N|V|P|A|T, V|P, N|V|P|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    V|P|A, V|P|A, N|V|P|A|T, N|V|P|A|T, V|P|A, N|V|P|A|T, N|V|P|A|T, V|P,
    /* 0-9 */
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    /* : ; < = > ? @ */
    V|P|A, V|P|A, V|P, V|P|A, V|P, V|P, V|P|A,
    /* A-Z */
    V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T,
    V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T,
    V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T, V|P|A|T,
    /* [ \ ] ^ _ ` */
    V|P|A, V|P, V|P|A, N|V|P|T, N|V|P|A|T, N|V|P|T,
    /* a-z */
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T, N|V|P|A|T,
    /* { | } ~ DEL */
    V|P, N|V|P|T, V|P, N|V|P|A|T, 0,
    /* 0x80-0xff: obs-text */
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
    V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P, V|P,
};
/* clang-format on */
#undef N
#undef V
#undef P
#undef A
#undef T

uint8_t pt_h2_char_class(uint8_t c)
{
    return cls[c];
}

/* Every byte of s[0..n) has class bit `k` (four table look-ups a round). */
static bool all_of(const uint8_t *s, size_t n, uint8_t k)
{
    uint8_t acc = k;
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc &= (uint8_t)(cls[s[i]] & cls[s[i + 1]] & cls[s[i + 2]] & cls[s[i + 3]]);
    for (; i < n; i++)
        acc &= cls[s[i]];
    return acc != 0;
}

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* A regular field value (RFC 9113 §8.2.1): value characters, no SP/HTAB at
 * either end. The empty value is allowed. */
static bool value_ok(const uint8_t *v, size_t n)
{
    if (n == 0)
        return true;
    if (is_ws(v[0]) || is_ws(v[n - 1]))
        return false;
    return pt_header_value_valid((pt_str_t){(const char *)v, n}); /* = PT_H2C_VALUE, SIMD */
}

static bool blank(const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_ws(v[i]))
            return false;
    return true;
}

static bool lit(const uint8_t *s, size_t n, const char *l, size_t ln)
{
    return n == ln && memcmp(s, l, n) == 0;
}

static bool ilit(const uint8_t *s, size_t n, const char *l, size_t ln)
{
    if (n != ln)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)l[i])
            return false;
    }
    return true;
}

static bool scheme_ok(const uint8_t *v, size_t n)
{
    if (n == 0 || !((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= 'A' && v[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < n; i++) {
        uint8_t c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* A pseudo-header: name known, value valid and not blank. */
static pt_h2_verdict_t pseudo_field(const uint8_t *name, size_t namelen, const uint8_t *v, size_t n)
{
    pt_h2_verdict_t vd = {.content_length = -1, .pseudo = true};
    if (blank(v, n))
        return vd; /* also the empty value */
    switch (namelen) {
    case 5:
        if (!lit(name, namelen, ":path", 5) || !all_of(v, n, PT_H2C_PATH))
            return vd;
        vd.once = PT_H2R_PATH;
        if (v[0] == '/')
            vd.set = PT_H2R_PATH_SLASH;
        else if (n == 1 && v[0] == '*')
            vd.set = PT_H2R_PATH_STAR;
        break;
    case 7:
        if (lit(name, namelen, ":method", 7)) {
            if (!all_of(v, n, PT_H2C_TOKEN))
                return vd;
            vd.once = PT_H2R_METHOD;
            if (lit(v, n, "CONNECT", 7))
                vd.set = PT_H2R_CONNECT;
            else if (lit(v, n, "OPTIONS", 7))
                vd.set = PT_H2R_OPTIONS;
        } else if (lit(name, namelen, ":scheme", 7)) {
            if (!scheme_ok(v, n))
                return vd;
            vd.once = PT_H2R_SCHEME;
            if (ilit(v, n, "http", 4) || ilit(v, n, "https", 5))
                vd.set = PT_H2R_SCHEME_HTTP;
        } else {
            return vd;
        }
        break;
    case 9:
        if (!lit(name, namelen, ":protocol", 9) || !value_ok(v, n))
            return vd;
        vd.once = PT_H2R_PROTOCOL;
        break;
    case 10:
        if (!lit(name, namelen, ":authority", 10) || !all_of(v, n, PT_H2C_AUTH))
            return vd;
        vd.once = PT_H2R_AUTHORITY;
        break;
    default:
        return vd;
    }
    vd.ok = true;
    return vd;
}

pt_h2_verdict_t pt_h2_rules_classify(const uint8_t *name, size_t namelen, const uint8_t *value,
                                     size_t valuelen)
{
    pt_h2_verdict_t vd = {.content_length = -1};
    if (namelen == 0)
        return vd;
    if (name[0] == ':')
        return pseudo_field(name, namelen, value, valuelen);
    if (!all_of(name, namelen, PT_H2C_NAME))
        return vd;
    vd.underscore = memchr(name, '_', namelen) != NULL;
    switch (namelen) {
    case 2:
        if (name[0] == 't' && name[1] == 'e') {
            vd.ok = ilit(value, valuelen, "trailers", 8);
            return vd;
        }
        break;
    case 4:
        if (lit(name, namelen, "host", 4)) {
            vd.ok = !blank(value, valuelen) && all_of(value, valuelen, PT_H2C_AUTH);
            vd.once = PT_H2R_HOST;
            return vd;
        }
        break;
    case 7:
        if (lit(name, namelen, "upgrade", 7))
            return vd;
        break;
    case 10:
        if (lit(name, namelen, "connection", 10) || lit(name, namelen, "keep-alive", 10))
            return vd;
        break;
    case 14:
        if (lit(name, namelen, "content-length", 14)) {
            if (valuelen == 0)
                return vd;
            int64_t cl = 0;
            for (size_t i = 0; i < valuelen; i++) {
                uint8_t c = value[i];
                if (c < '0' || c > '9' || cl > (INT64_MAX - (c - '0')) / 10)
                    return vd;
                cl = cl * 10 + (c - '0');
            }
            vd.content_length = cl;
            vd.ok = true;
            return vd;
        }
        break;
    case 16:
        if (lit(name, namelen, "proxy-connection", 16))
            return vd;
        break;
    case 17:
        if (lit(name, namelen, "transfer-encoding", 17))
            return vd;
        break;
    default:
        break;
    }
    vd.ok = value_ok(value, valuelen);
    return vd;
}

bool pt_h2_rules_apply(pt_h2_rules_t *r, const pt_h2_verdict_t *vd, bool trailer)
{
    if (!vd->ok)
        return false;
    if (vd->pseudo) {
        /* pseudo-headers: before every regular field, never in trailers */
        if (trailer || (r->flags & PT_H2R_REGULAR) != 0)
            return false;
    } else {
        r->flags |= PT_H2R_REGULAR;
    }
    if ((r->flags & vd->once) != 0)
        return false; /* a second :method, :path, host, ... */
    r->flags |= vd->once | vd->set;
    if (vd->content_length >= 0) {
        if (r->content_length != -1)
            return false; /* a second content-length, even an equal one */
        r->content_length = vd->content_length;
    }
    return true;
}

bool pt_h2_rules_head(pt_h2_rules_t *r)
{
    uint32_t f = r->flags;
    if ((f & PT_H2R_CONNECT) != 0 && (f & PT_H2R_PROTOCOL) == 0) {
        /* RFC 9113 §8.5: CONNECT names the authority only; a body is a tunnel */
        if ((f & (PT_H2R_SCHEME | PT_H2R_PATH)) != 0 || (f & PT_H2R_AUTHORITY) == 0)
            return false;
        r->content_length = -1;
        return true;
    }
    uint32_t req = PT_H2R_METHOD | PT_H2R_SCHEME | PT_H2R_PATH;
    if ((f & req) != req || (f & (PT_H2R_AUTHORITY | PT_H2R_HOST)) == 0)
        return false;
    /* RFC 8441 §4: :protocol only on CONNECT, which then has :authority too */
    if ((f & PT_H2R_PROTOCOL) != 0 && ((f & PT_H2R_CONNECT) == 0 || (f & PT_H2R_AUTHORITY) == 0))
        return false;
    /* RFC 9113 §8.3.1: an http(s) :path is origin-form, or "*" for OPTIONS */
    if ((f & PT_H2R_SCHEME_HTTP) != 0 && (f & PT_H2R_PATH_SLASH) == 0 &&
        !((f & PT_H2R_OPTIONS) != 0 && (f & PT_H2R_PATH_STAR) != 0))
        return false;
    return true;
}

/* ---- RFC 9218 `priority` ------------------------------------------------ */

static bool sf_lcalpha(uint8_t c)
{
    return c >= 'a' && c <= 'z';
}

static bool sf_key_char(uint8_t c)
{
    return sf_lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '*';
}

/* A bare item (RFC 8941 §3.3) at v[*i]: integer (its value in *num, *is_int),
 * boolean (*is_bool, *num 0/1), token or string (skipped). Decimals and byte
 * sequences are not expected in `priority`: refused (the field is ignored). */
static bool sf_bare_item(const uint8_t *v, size_t n, size_t *i, int64_t *num, bool *is_int,
                         bool *is_bool)
{
    *is_int = *is_bool = false;
    if (*i >= n)
        return false;
    uint8_t c = v[*i];
    if (c == '-' || (c >= '0' && c <= '9')) {
        bool neg = c == '-';
        size_t k = *i + (neg ? 1u : 0u), digits = 0;
        int64_t x = 0;
        while (k < n && v[k] >= '0' && v[k] <= '9' && digits < 15) {
            x = x * 10 + (v[k] - '0');
            k++;
            digits++;
        }
        if (digits == 0 || (k < n && (v[k] == '.' || (v[k] >= '0' && v[k] <= '9'))))
            return false;
        *num = neg ? -x : x;
        *is_int = true;
        *i = k;
        return true;
    }
    if (c == '?') {
        if (*i + 1 >= n || (v[*i + 1] != '0' && v[*i + 1] != '1'))
            return false;
        *num = v[*i + 1] - '0';
        *is_bool = true;
        *i += 2;
        return true;
    }
    if (c == '"') {
        size_t k = *i + 1;
        for (; k < n && v[k] != '"'; k++) {
            if (v[k] == '\\') {
                if (k + 1 >= n || (v[k + 1] != '"' && v[k + 1] != '\\'))
                    return false;
                k++;
            } else if (v[k] < 0x20 || v[k] > 0x7e) {
                return false;
            }
        }
        if (k >= n)
            return false;
        *i = k + 1;
        return true;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*') {
        size_t k = *i + 1;
        while (k < n && ((cls[v[k]] & PT_H2C_TOKEN) != 0 || v[k] == ':' || v[k] == '/'))
            k++;
        *i = k;
        return true;
    }
    return false;
}

static bool sf_key(const uint8_t *v, size_t n, size_t *i, size_t *klen)
{
    size_t k = *i;
    if (k >= n || !(sf_lcalpha(v[k]) || v[k] == '*'))
        return false;
    while (k < n && sf_key_char(v[k]))
        k++;
    *klen = k - *i;
    *i = k;
    return true;
}

/* Parameters after an item (";key[=bare-item]"...): skipped. */
static bool sf_params(const uint8_t *v, size_t n, size_t *i)
{
    while (*i < n && v[*i] == ';') {
        (*i)++;
        while (*i < n && v[*i] == ' ')
            (*i)++;
        size_t kl;
        if (!sf_key(v, n, i, &kl))
            return false;
        if (*i < n && v[*i] == '=') {
            (*i)++;
            int64_t num;
            bool is_int, is_bool;
            if (!sf_bare_item(v, n, i, &num, &is_int, &is_bool))
                return false;
        }
    }
    return true;
}

bool pt_h2_parse_priority(const uint8_t *v, size_t n, uint8_t *urgency, bool *incremental)
{
    uint8_t u = *urgency;
    bool inc = *incremental;
    size_t i = 0;
    while (i < n && v[i] == ' ')
        i++;
    while (i < n) {
        size_t kstart = i, klen;
        if (!sf_key(v, n, &i, &klen))
            return false;
        int64_t num = 1;
        bool is_int = false, is_bool = true; /* a bare key is boolean true */
        if (i < n && v[i] == '=') {
            i++;
            if (!sf_bare_item(v, n, &i, &num, &is_int, &is_bool))
                return false;
        }
        if (!sf_params(v, n, &i))
            return false;
        if (klen == 1 && v[kstart] == 'u') {
            if (!is_int)
                return false;
            if (num >= 0 && num <= 7) /* out of range: ignored (RFC 9218 §4.1) */
                u = (uint8_t)num;
        } else if (klen == 1 && v[kstart] == 'i') {
            if (!is_bool)
                return false;
            inc = num != 0;
        }
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == n)
            break;
        if (v[i] != ',')
            return false;
        i++;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == n)
            return false; /* a trailing comma */
    }
    *urgency = u;
    *incremental = inc;
    return true;
}
