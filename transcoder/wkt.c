/*
 * wkt.c -- text helpers for the JSON mapping of well-known types and scalars.
 */
#include "portico/transcoder/wkt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/xerr.h"

/* ---- UTF-8 and JSON strings ------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at s[0] (which is >= 0x80), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

bool pt_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* 0: copy as is; otherwise the character after the backslash ('u' = \u00XX). */
static const char json_esc[128] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['"'] = '"', ['\\'] = '\\',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0B] = 'u', [0x0E] = 'u', [0x0F] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u',
    [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u', [0x19] = 'u',
    [0x1A] = 'u', [0x1B] = 'u', [0x1C] = 'u', [0x1D] = 'u', [0x1E] = 'u', [0x1F] = 'u',
};

int pt_json_escape(pt_xbuf_t *out, const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t start = out->len;
    /* Worst case is 6 output bytes per input byte; reserve the common case
     * (no escapes) up front and grow for escapes as they come. */
    int rc = pt_xbuf_reserve(out, n + 2);
    if (rc != 0)
        return rc;
    out->data[out->len++] = '"';
    size_t i = 0, run = 0;
    while (i < n) {
        /* Skip 8 plain ASCII bytes at a time: none >= 0x80, < 0x20, '"' or '\\'
         * (the classic "has a zero byte" test on the word and on its XORs). */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            uint64_t special = (w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
            if (special != 0)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            if (json_esc[c] == 0) {
                i++;
                continue;
            }
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                out->len = start;
                return PT_XERR_INVALID;
            }
            i += k;
            continue;
        }
        /* flush the run of plain bytes, then the escape */
        if ((rc = pt_xbuf_append(out, s + run, i - run)) != 0)
            goto fail;
        char e[6] = {'\\', json_esc[c], 0, 0, 0, 0};
        size_t el = 2;
        if (e[1] == 'u') {
            static const char hex[] = "0123456789abcdef";
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        if ((rc = pt_xbuf_append(out, e, el)) != 0)
            goto fail;
        i++;
        run = i;
    }
    if ((rc = pt_xbuf_append(out, s + run, n - run)) != 0 || (rc = pt_xbuf_putc(out, '"')) != 0)
        goto fail;
    return 0;
fail:
    out->len = start;
    return rc;
}

/* ---- base64 ------------------------------------------------------------------- */

size_t pt_base64_encode_to(char *out, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    return (size_t)(o - out);
}

int pt_base64_encode(pt_xbuf_t *out, const uint8_t *p, size_t n)
{
    if (n > (SIZE_MAX / 4) * 3 - 3)
        return PT_XERR_LIMIT;
    int rc = pt_xbuf_reserve(out, PT_BASE64_ENCODED_LEN(n));
    if (rc != 0)
        return rc;
    out->len += pt_base64_encode_to((char *)out->data + out->len, p, n);
    return 0;
}

/* 0..63 for both alphabets, 64 for anything else. */
static int b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return 64;
}

long pt_base64_decode_to(uint8_t *out, const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t pad = 0;
    while (pad < n && pad < 3 && s[n - 1 - pad] == '=')
        pad++;
    if (pad > 0 && (pad > 2 || n % 4 != 0))
        return -1;
    size_t m = n - pad; /* significant characters */
    if (m % 4 == 1)
        return -1;
    uint8_t *o = out;
    uint32_t acc = 0;
    size_t bits = 0;
    for (size_t i = 0; i < m; i++) {
        int v = b64_val(s[i]);
        if (v == 64)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)(o - out);
}

int pt_base64_decode(pt_xbuf_t *out, const char *s, size_t n)
{
    size_t m = n; /* without its padding: what decodes to bytes */
    while (m > 0 && n - m < 2 && s[m - 1] == '=')
        m--;
    int rc = pt_xbuf_reserve(out, PT_BASE64_DECODED_MAX(m));
    if (rc != 0)
        return rc;
    long got = pt_base64_decode_to(out->data + out->len, s, n);
    if (got < 0)
        return PT_XERR_INVALID;
    out->len += (size_t)got;
    return 0;
}

/* ---- dates -------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Writes ".fff", ".ffffff" or ".fffffffff" (or nothing) for nanos; returns bytes written. */
static int put_nanos(char *o, int32_t nanos)
{
    if (nanos == 0)
        return 0;
    if (nanos % 1000000 == 0)
        return snprintf(o, 8, ".%03d", nanos / 1000000);
    if (nanos % 1000 == 0)
        return snprintf(o, 12, ".%06d", nanos / 1000);
    return snprintf(o, 12, ".%09d", nanos);
}

int pt_timestamp_format(int64_t seconds, int32_t nanos, char *out)
{
    if (seconds < PT_TIMESTAMP_MIN_SECONDS || seconds > PT_TIMESTAMP_MAX_SECONDS || nanos < 0 ||
        nanos > 999999999)
        return PT_XERR_INVALID;
    int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
    int64_t sod = seconds - days * 86400;
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    int n = snprintf(out, PT_TIMESTAMP_BUF, "%04d-%02u-%02uT%02d:%02d:%02d", (int)y, mo, d,
                     (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    n += put_nanos(out + n, nanos);
    out[n++] = 'Z';
    out[n] = '\0';
    return n;
}

/* Reads exactly `k` decimal digits. */
static bool digits(const char *s, size_t k, int *v)
{
    int r = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        r = r * 10 + (s[i] - '0');
    }
    *v = r;
    return true;
}

/* Reads "." and 1..9 digits at s[*i]; returns nanos or -1. No '.' -> 0. */
static int32_t read_fraction(const char *s, size_t n, size_t *i)
{
    if (*i >= n || s[*i] != '.')
        return 0;
    (*i)++;
    int32_t v = 0;
    size_t k = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        if (k == 9)
            return -1;
        v = v * 10 + (s[*i] - '0');
        k++;
        (*i)++;
    }
    if (k == 0)
        return -1;
    for (; k < 9; k++)
        v *= 10;
    return v;
}

int pt_timestamp_parse(const char *s, size_t n, int64_t *seconds, int32_t *nanos)
{
    int y, mo, d, h, mi, se;
    if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return PT_XERR_INVALID;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || se > 59)
        return PT_XERR_INVALID;
    size_t i = 19;
    int32_t ns = read_fraction(s, n, &i);
    if (ns < 0 || i >= n)
        return PT_XERR_INVALID;
    int64_t off = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (n - i != 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return PT_XERR_INVALID;
        off = (oh * 60 + om) * 60;
        if (s[i] == '-')
            off = -off;
        i += 6;
    } else {
        return PT_XERR_INVALID;
    }
    if (i != n)
        return PT_XERR_INVALID;
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - off;
    if (secs < PT_TIMESTAMP_MIN_SECONDS || secs > PT_TIMESTAMP_MAX_SECONDS)
        return PT_XERR_INVALID;
    *seconds = secs;
    *nanos = ns;
    return 0;
}

/* ---- durations ---------------------------------------------------------------- */

int pt_duration_format(int64_t seconds, int32_t nanos, char *out)
{
    if (seconds < -PT_DURATION_MAX_SECONDS || seconds > PT_DURATION_MAX_SECONDS ||
        nanos <= -1000000000 || nanos >= 1000000000 || (seconds > 0 && nanos < 0) ||
        (seconds < 0 && nanos > 0))
        return PT_XERR_INVALID;
    bool neg = seconds < 0 || nanos < 0;
    uint64_t s = (uint64_t)(seconds < 0 ? -seconds : seconds);
    int32_t ns = nanos < 0 ? -nanos : nanos;
    int n = snprintf(out, PT_DURATION_BUF, "%s%llu", neg ? "-" : "", (unsigned long long)s);
    n += put_nanos(out + n, ns);
    out[n++] = 's';
    out[n] = '\0';
    return n;
}

int pt_duration_parse(const char *s, size_t n, int64_t *seconds, int32_t *nanos)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && s[i] == '-') {
        neg = true;
        i++;
    }
    int64_t v = 0;
    size_t k = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (k == 12)
            return PT_XERR_INVALID; /* more digits than the range allows */
        v = v * 10 + (s[i] - '0');
        k++;
        i++;
    }
    if (k == 0)
        return PT_XERR_INVALID;
    int32_t ns = read_fraction(s, n, &i);
    if (ns < 0 || i + 1 != n || s[i] != 's' || v > PT_DURATION_MAX_SECONDS)
        return PT_XERR_INVALID;
    *seconds = neg ? -v : v;
    *nanos = neg ? -ns : ns;
    return 0;
}

/* ---- names -------------------------------------------------------------------- */

int pt_fieldmask_path_to_json(pt_xbuf_t *out, const char *s, size_t n)
{
    size_t start = out->len;
    int rc = pt_xbuf_reserve(out, n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            goto invalid;
        if (c == '_') {
            if (i + 1 >= n || s[i + 1] < 'a' || s[i + 1] > 'z')
                goto invalid;
            c = (char)(s[++i] - 'a' + 'A');
        }
        out->data[out->len++] = (uint8_t)c;
    }
    return 0;
invalid:
    out->len = start;
    return PT_XERR_INVALID;
}

int pt_fieldmask_path_from_json(pt_xbuf_t *out, const char *s, size_t n)
{
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int rc;
        if (c == '_') {
            out->len = start;
            return PT_XERR_INVALID;
        }
        if (c >= 'A' && c <= 'Z') {
            char two[2] = {'_', (char)(c - 'A' + 'a')};
            rc = pt_xbuf_append(out, two, 2);
        } else {
            rc = pt_xbuf_putc(out, (uint8_t)c);
        }
        if (rc != 0) {
            out->len = start;
            return rc;
        }
    }
    return 0;
}

int pt_json_name_of(pt_xbuf_t *out, const char *name, size_t n)
{
    int rc = pt_xbuf_reserve(out, n);
    if (rc != 0)
        return rc;
    bool up = false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == '_') {
            up = true;
            continue;
        }
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        up = false;
        out->data[out->len++] = (uint8_t)c;
    }
    return 0;
}

/* ---- floating point ------------------------------------------------------------ */

static int special(double v, char *out)
{
    const char *s = isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
    size_t n = strlen(s);
    memcpy(out, s, n + 1);
    return (int)n;
}

/* Writes the decimal digits of u, the lowest `frac` of them after a '.' (padded with zeros). */
static int put_digits(char *out, bool neg, uint64_t u, int frac)
{
    char tmp[24];
    if (frac < 0 || frac > 17) /* callers pass 0..17; tmp holds 20 digits + padding */
        return -1;
    int k = 0;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (k <= frac)
        tmp[k++] = '0'; /* leading zeros of 0.000ddd */
    int n = 0;
    if (neg)
        out[n++] = '-';
    while (k > frac)
        out[n++] = tmp[--k];
    if (frac > 0) {
        out[n++] = '.';
        while (k > 0)
            out[n++] = tmp[--k];
    }
    out[n] = '\0';
    return n;
}

/* Integers print as their digits, which is also what %g gives below its precision. */
static int integral(double v, double below, char *out)
{
    if (!(v == floor(v) && fabs(v) < below) || (v == 0 && signbit(v)))
        return -1;
    return put_digits(out, v < 0, (uint64_t)fabs(v), 0);
}

/*
 * Fast path for non-integers in [1e-4, 1e15), where %g prints fixed notation:
 * finds the fewest fraction digits p such that round(v * 10^p) / 10^p gives v
 * back. Both operands of that division are exact, so the division is the
 * correctly rounded value of the decimal m * 10^-p, which is exactly what
 * strtod returns for its text: the text round-trips. Returns -1 to fall back.
 */
static int short_fixed(double v, char *out)
{
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return -1;
    for (int p = 1; p <= 17; p++) {
        double scaled = a * pow10[p];
        if (scaled >= 9007199254740992.0) /* 2^53: m would not be exact */
            return -1;
        double m = nearbyint(scaled);
        if (m / pow10[p] != a)
            continue;
        return put_digits(out, v < 0, (uint64_t)m, p);
    }
    return -1;
}

int pt_double_format(double v, char *out)
{
    if (!isfinite(v))
        return special(v, out);
    int n = integral(v, 1e15, out);
    if (n < 0)
        n = short_fixed(v, out);
    if (n >= 0)
        return n;
    /* A double carries 15.95 decimal digits: if any precision below 15
     * round-trips, %.15g yields that same shortest text (trailing zeros are
     * stripped by %g), so only 15, 16 and 17 need trying. */
    /* subnormals carry fewer digits: search from the shortest */
    for (int prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        n = snprintf(out, PT_FLOAT_BUF, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return n;
}

int pt_float_format(float v, char *out)
{
    if (!isfinite(v))
        return special(v, out);
    int n = integral(v, 1e6, out);
    if (n >= 0)
        return n;
    /*
     * The double fast path applies when the float is exactly a decimal of at
     * most 6 significant digits: %.6g prints those same digits, and no shorter
     * decimal can land on the same float (they are 1e-6 apart relative, floats
     * 6e-8).
     */
    char tmp[PT_FLOAT_BUF];
    n = short_fixed((double)v, tmp);
    if (n >= 0) {
        int sig = 0;
        bool lead = true;
        for (int i = 0; i < n; i++) {
            if (tmp[i] < '0' || tmp[i] > '9' || (lead && tmp[i] == '0'))
                continue;
            lead = false;
            sig++;
        }
        if (sig <= 6) {
            memcpy(out, tmp, (size_t)n + 1);
            return n;
        }
    }
    for (int prec = fabsf(v) < FLT_MIN ? 1 : 6; prec <= 9; prec++) {
        n = snprintf(out, PT_FLOAT_BUF, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v)
            break;
    }
    return n;
}
