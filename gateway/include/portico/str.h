/*
 * str.h -- byte-string slices.
 *
 * A pt_str_t is a pointer and a length into memory owned by someone else (a
 * request arena, a config snapshot, a read buffer). Nothing here assumes NUL
 * termination; convert to C strings only at C-library boundaries.
 */
#ifndef PT_PORTICO_STR_H
#define PT_PORTICO_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct pt_str {
    const char *base;
    size_t len;
} pt_str_t;

/** A slice of a string literal: PT_STR("x-request-id"). */
#define PT_STR(lit) ((pt_str_t){(lit), sizeof(lit) - 1})
/** The empty slice (base NULL, len 0). */
#define PT_STR_NULL ((pt_str_t){NULL, 0})

/** A slice of a NUL-terminated string (NULL gives the empty slice). */
static inline pt_str_t pt_str_c(const char *s)
{
    return s != NULL ? (pt_str_t){s, strlen(s)} : PT_STR_NULL;
}

/** Byte-wise equality. */
static inline bool pt_str_eq(pt_str_t a, pt_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/** ASCII case-insensitive equality (header names, schemes, hosts). */
bool pt_str_ieq(pt_str_t a, pt_str_t b);

/** True when `s` starts with `prefix` (byte-wise). */
static inline bool pt_str_has_prefix(pt_str_t s, pt_str_t prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.base, prefix.base, prefix.len) == 0);
}

/** True when `s` ends with `suffix`, ASCII case-insensitively. */
bool pt_str_has_isuffix(pt_str_t s, pt_str_t suffix);

/** Trims spaces and horizontal tabs from both ends. */
pt_str_t pt_str_trim_ows(pt_str_t s);

/**
 * Parses a non-negative decimal integer that fills all of `s` (no sign, no
 * spaces). Returns 0 and sets *out, or -1 on any other input or on overflow
 * of `max`.
 */
int pt_str_to_u64(pt_str_t s, unsigned long long max, unsigned long long *out);

/**
 * The value of hex digit `c` (0-9, a-f, A-F), or -1. For percent-decoding;
 * inline, so it adds no symbol to the SDK's ABI.
 */
static inline int pt_str_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif /* PT_PORTICO_STR_H */
