/*
 * reqcheck.c -- the request-line rules shared by the codecs (see reqcheck.h).
 */
#include <http_parser.h>
#include <stdint.h>
#include <string.h>
#include "portico/headers.h"
#include "portico/status.h"
#include "http/reqcheck.h"

/* The method table is http-parser's own map: the HTTP/1.1 codec cannot carry
 * any other method (http-parser refuses it), so HTTP/2 must not either, or a
 * method would work or not depending on the client's protocol. */
static const char *const known_methods[] = {
#define XX(num, name, string) #string,
    HTTP_METHOD_MAP(XX)
#undef XX
};

/* The methods nearly every request uses, all in http-parser's map: known
 * without the table walk (h2c REST POST: ~190 instructions -> ~15). */
static bool common_method(pt_str_t m)
{
    switch (m.len) {
    case 3:
        return memcmp(m.base, "GET", 3) == 0 || memcmp(m.base, "PUT", 3) == 0;
    case 4:
        return memcmp(m.base, "POST", 4) == 0 || memcmp(m.base, "HEAD", 4) == 0;
    case 5:
        return memcmp(m.base, "PATCH", 5) == 0;
    case 6:
        return memcmp(m.base, "DELETE", 6) == 0;
    default:
        return false;
    }
}

int pt_reqcheck_method(pt_str_t method, const char **why)
{
    if (common_method(method))
        return 0;
    if (method.len == 0 || !pt_header_name_valid(method, true)) {
        *why = "malformed method";
        return PT_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++) {
        const char *k = known_methods[i];
        if (strlen(k) == method.len && memcmp(k, method.base, method.len) == 0)
            return 0;
    }
    *why = "method not implemented";
    return PT_ERR_NOT_IMPLEMENTED;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* reg-name characters as we accept them (ALPHA DIGIT - . _ ~): a bitmap by
 * byte, one look-up a character (issue 7). */
static const uint64_t regname_map[4] = {0x03ff600000000000ull, 0x47fffffe87fffffeull, 0, 0};

static bool is_regname_char(unsigned char c)
{
    return (regname_map[c >> 6] >> (c & 63u)) & 1u;
}

int pt_reqcheck_authority(pt_str_t h, const char **why)
{
    *why = "invalid authority";
    if (h.len == 0)
        return PT_ERR_INVALID;
    if (memchr(h.base, '@', h.len) != NULL) {
        *why = "userinfo in authority";
        return PT_ERR_INVALID;
    }
    size_t i = 0;
    if (h.base[0] == '[') {
        i = 1;
        while (i < h.len && (is_hex((unsigned char)h.base[i]) || h.base[i] == ':' || h.base[i] == '.'))
            i++;
        if (i == 1 || i >= h.len || h.base[i] != ']')
            return PT_ERR_INVALID;
        i++;
    } else {
        while (i < h.len && is_regname_char((unsigned char)h.base[i]))
            i++;
        if (i == 0)
            return PT_ERR_INVALID;
    }
    if (i == h.len)
        return 0;
    if (h.base[i] != ':' || h.len - i - 1 > 5)
        return PT_ERR_INVALID;
    for (size_t k = i + 1; k < h.len; k++)
        if (h.base[k] < '0' || h.base[k] > '9')
            return PT_ERR_INVALID;
    return 0;
}
