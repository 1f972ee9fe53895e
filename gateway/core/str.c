/*
 * str.c -- slice helpers (see str.h).
 */
#include "portico/str.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

bool pt_str_ieq(pt_str_t a, pt_str_t b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (lower((unsigned char)a.base[i]) != lower((unsigned char)b.base[i]))
            return false;
    return true;
}

bool pt_str_has_isuffix(pt_str_t s, pt_str_t suffix)
{
    if (s.len < suffix.len)
        return false;
    return pt_str_ieq((pt_str_t){s.base + s.len - suffix.len, suffix.len}, suffix);
}

pt_str_t pt_str_trim_ows(pt_str_t s)
{
    while (s.len > 0 && (s.base[0] == ' ' || s.base[0] == '\t')) {
        s.base++;
        s.len--;
    }
    while (s.len > 0 && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int pt_str_to_u64(pt_str_t s, unsigned long long max, unsigned long long *out)
{
    if (s.len == 0 || s.len > 20)
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned d = c - '0';
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
