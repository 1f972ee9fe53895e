/*
 * wkt.h -- text helpers shared by both JSON directions and the HTTP binder.
 *
 * Pure functions: base64, RFC 3339 timestamps, protobuf Durations, FieldMask
 * path case conversion, shortest round-trip float formatting, JSON string
 * escaping and UTF-8 validation. None of them keep state; the ones that write
 * into a pt_xbuf_t append and return 0, PT_XERR_NOMEM or PT_XERR_LIMIT, plus
 * PT_XERR_INVALID where input is validated (then out->len is unchanged).
 */
#ifndef PT_TRANSCODER_WKT_H
#define PT_TRANSCODER_WKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"

/** Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z. */
#define PT_TIMESTAMP_MIN_SECONDS (-62135596800LL)
#define PT_TIMESTAMP_MAX_SECONDS 253402300799LL
/** Duration range: +-315576000000 s (10000 years). */
#define PT_DURATION_MAX_SECONDS 315576000000LL

/**
 * The value of hex digit `c` (0-9, a-f, A-F), or -1: the transcoder's one
 * (percent-decoding, JSON \u escapes). The gateway and plugins use the SDK's
 * pt_str_hexval (portico/str.h), which must stay self-contained.
 */
static inline int pt_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* 'A'-'F' -> 'a'-'f'; nothing else lands there */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/** Buffer sizes that always suffice (NUL included). */
#define PT_TIMESTAMP_BUF 40
#define PT_DURATION_BUF 40
#define PT_FLOAT_BUF 32

/** True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool pt_utf8_valid(const uint8_t *s, size_t n);

/** Appends s[0..n) as a quoted JSON string. PT_XERR_INVALID if it is not valid UTF-8. */
int pt_json_escape(pt_xbuf_t *out, const char *s, size_t n);

/*
 * Base64, the one implementation of the project (the gateway's binary gRPC
 * metadata, gRPC-Web text, HTTP2-Settings and WebSocket keys use it too).
 * Encoding: standard alphabet, padded. Decoding: standard or URL-safe
 * alphabet, padded or not; other characters, misplaced or excess '=' and a
 * dangling single character are invalid.
 */

/** Characters pt_base64_encode_to() writes for `n` bytes. */
#define PT_BASE64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)
/** Most bytes pt_base64_decode_to() writes for `n` characters. */
#define PT_BASE64_DECODED_MAX(n) ((n) / 4 * 3 + 2)

/** Writes the encoding of p[0..n) to out[PT_BASE64_ENCODED_LEN(n)] (no NUL); returns its length. */
size_t pt_base64_encode_to(char *out, const uint8_t *p, size_t n);

/** Decodes s[0..n) into out[PT_BASE64_DECODED_MAX(n)]; returns the byte count, or -1 if invalid. */
long pt_base64_decode_to(uint8_t *out, const char *s, size_t n);

/** Appends the encoding of p[0..n) to `out`. */
int pt_base64_encode(pt_xbuf_t *out, const uint8_t *p, size_t n);

/** Appends the bytes encoded by s[0..n) to `out`; PT_XERR_INVALID if invalid. */
int pt_base64_decode(pt_xbuf_t *out, const char *s, size_t n);

/**
 * Formats a Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits
 * ("1972-01-01T10:00:20.021Z") into out[PT_TIMESTAMP_BUF]. Returns the length,
 * or PT_XERR_INVALID when out of range or nanos not in [0, 1e9).
 */
int pt_timestamp_format(int64_t seconds, int32_t nanos, char *out);

/**
 * Parses RFC 3339 ("2024-01-01T00:00:00Z", 1..9 fraction digits, 'Z' or
 * +-HH:MM offset; 't'/'z' accepted). Returns 0 or PT_XERR_INVALID (syntax or
 * outside the Timestamp range).
 */
int pt_timestamp_parse(const char *s, size_t n, int64_t *seconds, int32_t *nanos);

/**
 * Formats a Duration ("1.5s", "-0.000001s", "3s") into out[PT_DURATION_BUF]
 * with 0, 3, 6 or 9 fractional digits. Returns the length, or PT_XERR_INVALID
 * (out of range, |nanos| >= 1e9, signs of seconds and nanos differ).
 */
int pt_duration_format(int64_t seconds, int32_t nanos, char *out);

/** Parses "[-]S[.F]s" (1..9 fraction digits). Returns 0 or PT_XERR_INVALID. */
int pt_duration_parse(const char *s, size_t n, int64_t *seconds, int32_t *nanos);

/**
 * Appends a FieldMask path converted snake_case -> lowerCamelCase, per segment
 * ("user.display_name" -> "user.displayName"). PT_XERR_INVALID when the path
 * would not convert back (upper-case letters, "_" not followed by a lower-case
 * letter).
 */
int pt_fieldmask_path_to_json(pt_xbuf_t *out, const char *s, size_t n);

/**
 * Appends a FieldMask path converted lowerCamelCase -> snake_case
 * ("displayName" -> "display_name"). PT_XERR_INVALID when it contains '_'.
 */
int pt_fieldmask_path_from_json(pt_xbuf_t *out, const char *s, size_t n);

/**
 * Appends the default JSON name of a proto field name, as protoc computes it:
 * underscores dropped, the letter after each one upper-cased.
 */
int pt_json_name_of(pt_xbuf_t *out, const char *name, size_t n);

/**
 * Formats a double with the fewest digits that parse back to the same value
 * ("0.1", "1e+21", "-0"); NaN and infinities as "NaN", "Infinity",
 * "-Infinity" (no quotes). Writes out[PT_FLOAT_BUF]; returns the length.
 */
int pt_double_format(double v, char *out);

/** As pt_double_format() for a float: fewest digits that round-trip as a float. */
int pt_float_format(float v, char *out);

#endif /* PT_TRANSCODER_WKT_H */
