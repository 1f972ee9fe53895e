/*
 * h1parse.h -- strict, incremental HTTP/1.1 request parser (no sockets).
 *
 * Feed it the bytes a client sends; it hands back one event at a time: a
 * request head, body bytes, the end of a message, or an error carrying the
 * pt_status to answer with. Several requests may follow each other in the
 * input (pipelining); after PT_H1P_DONE the next request starts.
 *
 * Two parsers look at every byte. Our own scanner is the authority: it
 * enforces RFC 9112 where Debian's http-parser 2.9.4 is lax (whitespace
 * before the colon, obs-fold, bare LF, `identity, chunked`, Transfer-Encoding
 * twice, missing or duplicate Host, HTTP/0.9, chunk-extension bytes, trailers
 * carrying framing headers ...; see SECURITY-CASES.md §0.2 and §2.1). The same
 * bytes are then run through http-parser, and anything it refuses or sees
 * differently (framing, length) is refused too. A request is accepted only
 * when both agree on it.
 *
 * Errors are sticky: after PT_H1P_ERROR the parser returns the same error
 * forever; the connection must answer and close (no resynchronisation).
 *
 * Not thread-safe; one parser per connection.
 */
#ifndef PT_GATEWAY_H1PARSE_H
#define PT_GATEWAY_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/limits.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "portico/str.h"

typedef enum pt_h1p_event_type {
    PT_H1P_NONE = 0, /* the input was consumed; more bytes are needed */
    PT_H1P_HEAD,     /* a request head: see pt_h1p_head() */
    PT_H1P_BODY,     /* body bytes: ev.data/ev.len (a slice of the input, dechunked) */
    PT_H1P_DONE,     /* the request ended (body and trailers included) */
    PT_H1P_ERROR,    /* malformed or over a limit: ev.status/ev.reason; sticky */
} pt_h1p_event_type_t;

typedef struct pt_h1p_event {
    pt_h1p_event_type_t type;
    const char *data; /* PT_H1P_BODY */
    size_t len;
    int status; /* PT_H1P_ERROR: PT_ERR_INVALID (400), PT_ERR_LIMIT (413), PT_ERR_URI_TOO_LONG
                   (414), PT_ERR_HEADERS_TOO_LARGE (431), PT_ERR_EXPECTATION (417),
                   PT_ERR_NOT_IMPLEMENTED (501), PT_ERR_VERSION (505) */
    const char *reason; /* PT_H1P_ERROR: static text for logs (never sent to clients) */
} pt_h1p_event_t;

/**
 * A parsed request head. Every slice points into the input given to
 * pt_h1p_feed() or into the parser's own buffer (when the head arrived in
 * pieces); all are valid until the next call to pt_h1p_feed() or
 * pt_h1p_dispose(). Copy what you keep.
 */
typedef struct pt_h1p_head {
    pt_str_t method;      /* token as sent ("GET") */
    pt_str_t target;      /* request-target as sent */
    pt_str_t path;        /* origin-form part of target: "/a?b" ("*" for OPTIONS *) */
    pt_str_t authority;   /* absolute-form authority, else Host, else empty (HTTP/1.0) */
    pt_str_t scheme;      /* "http"/"https" of an absolute-form target, else empty */
    int version;          /* 10 or 11 */
    pt_header_t *headers; /* names lowercased, values trimmed of SP/HTAB */
    size_t header_cnt;
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool has_body;          /* content_length > 0 or chunked */
    bool keep_alive; /* 1.1 without `Connection: close`, or 1.0 with `Connection: keep-alive` */
    bool expect_continue; /* HTTP/1.1 `Expect: 100-continue` with a body */
    bool conn_upgrade;    /* `Connection` lists `upgrade` */
    pt_str_t upgrade;     /* `Upgrade` value (PT_STR_NULL when absent) */
    bool h2c_upgrade; /* a valid h2c Upgrade offer: Upgrade lists h2c, Connection lists upgrade and
                         http2-settings, exactly one HTTP2-Settings, no body */
    pt_str_t http2_settings; /* the HTTP2-Settings value (base64url) when h2c_upgrade */
    size_t head_bytes;       /* raw bytes of the head (request line through the empty line) */
} pt_h1p_head_t;

/** The parser's limits, copied from pt_limits_t (plus the body cap). */
typedef struct pt_h1p_limits {
    uint32_t max_request_line; /* bytes, CRLF excluded -> 414 */
    uint32_t max_header_bytes; /* sum of name + value + 32 per field -> 431 */
    uint32_t max_header_count; /* -> 431 */
    uint64_t max_body;         /* Content-Length or dechunked bytes -> 413 */
    uint32_t max_chunk_ext;    /* chunk-extension bytes per request -> 400 */
    bool allow_underscores;    /* '_' in header names (else 400) */
} pt_h1p_limits_t;

typedef struct pt_h1p pt_h1p_t;

/** Fills `out` from the config's limits (max_body = limits->max_body). */
void pt_h1p_limits_from(pt_h1p_limits_t *out, const pt_limits_t *limits);

/**
 * Creates a parser with a copy of `limits`. Aborts on OOM; never NULL.
 */
pt_h1p_t *pt_h1p_new(const pt_h1p_limits_t *limits);

/** Frees the parser. NULL is accepted. */
void pt_h1p_free(pt_h1p_t *p);

/**
 * Replaces the body cap used from the next request head on (e.g. the largest
 * max_body of any route, so that per-route checks can happen after routing).
 */
void pt_h1p_set_max_body(pt_h1p_t *p, uint64_t max_body);

/**
 * Parses up to `len` bytes of `data` and stores the next event in *ev.
 * Returns how many bytes were consumed. Bytes consumed for a head may be
 * modified in place (header names are lowercased), hence `char *`.
 *
 * Call it in a loop: with ev->type == PT_H1P_NONE every byte was consumed
 * (buffered or skipped) and more input is needed; with any other event some
 * bytes may remain, and the caller may come back for the next event (also
 * with len == 0: a head without body is followed by PT_H1P_DONE without
 * further input). The caller decides when to stop, e.g. after the DONE of an
 * upgrade request, the rest of the input belongs to another protocol.
 */
size_t pt_h1p_feed(pt_h1p_t *p, char *data, size_t len, pt_h1p_event_t *ev);

/** The head of the current request; valid after PT_H1P_HEAD (see pt_h1p_head_t). */
const pt_h1p_head_t *pt_h1p_head(const pt_h1p_t *p);

/** True between messages: no byte of the next request has been seen yet. */
bool pt_h1p_idle(const pt_h1p_t *p);

/** True while a request head is being received (some bytes seen, head not complete). */
bool pt_h1p_in_head(const pt_h1p_t *p);

#endif /* PT_GATEWAY_H1PARSE_H */
