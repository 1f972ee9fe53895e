/*
 * h2rules.h -- the HTTP/2 request messaging rules (RFC 9113 §8.1-8.3, §8.5;
 * RFC 8441 §4) that h2.c enforces itself. Server sessions run with nghttp2's
 * HTTP messaging off (nghttp2_option_set_no_http_messaging): its generic
 * per-field checks cost ~2k instructions a request (issue 7), and these rules
 * are the same ones, kept whole, on one byte-class table:
 *  - names: lowercase tchar only (an uppercase or otherwise invalid name is
 *    malformed); pseudo-header names only :method :scheme :authority :path
 *    and :protocol (SETTINGS_ENABLE_CONNECT_PROTOCOL is always sent), each
 *    once, non-blank, before every regular field, never in trailers;
 *  - values: no NUL/CR/LF/other CTL or DEL (HTAB and obs-text allowed), no
 *    leading or trailing SP/HTAB; :method a token, :path visible characters,
 *    :authority and host RFC 3986 authority characters, :scheme a scheme;
 *  - connection, keep-alive, proxy-connection, transfer-encoding, upgrade are
 *    malformed; te only as "trailers"; one content-length, digits only;
 *  - at the end of the head: CONNECT without :protocol has :authority and no
 *    :scheme/:path (and its content-length is ignored); every other request
 *    has :method, :scheme, :path, and :authority or host; :protocol only on
 *    CONNECT with :authority; an http(s) :path starts with '/' (or is '*' for
 *    OPTIONS);
 *  - the DATA received never exceeds content-length and equals it at
 *    END_STREAM (h2.c counts, pt_h2_rules_data / pt_h2_rules_end decide).
 * A malformed request is answered RST_STREAM(PROTOCOL_ERROR) and never
 * dispatched (integration.h2_fields, unit.h2rules).
 *
 * Pure functions of their arguments: no allocation, any thread.
 */
#ifndef PT_GATEWAY_H2RULES_H
#define PT_GATEWAY_H2RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a request's fields set (pt_h2_rules_t.flags, pt_h2_verdict_t) */
enum {
    PT_H2R_AUTHORITY = 1u << 0,
    PT_H2R_METHOD = 1u << 1,
    PT_H2R_PATH = 1u << 2,
    PT_H2R_SCHEME = 1u << 3,
    PT_H2R_PROTOCOL = 1u << 4,
    PT_H2R_HOST = 1u << 5,
    PT_H2R_REGULAR = 1u << 6,     /* a regular field was seen: no pseudo-header after it */
    PT_H2R_CONNECT = 1u << 7,     /* :method CONNECT */
    PT_H2R_OPTIONS = 1u << 8,     /* :method OPTIONS */
    PT_H2R_PATH_SLASH = 1u << 9,  /* :path starts with '/' */
    PT_H2R_PATH_STAR = 1u << 10,  /* :path is "*" */
    PT_H2R_SCHEME_HTTP = 1u << 11 /* :scheme http or https (either case) */
};

/** Per-request state of the rules; pt_h2_rules_init() before the first field. */
typedef struct {
    uint32_t flags;         /* PT_H2R_* seen so far */
    int64_t content_length; /* declared, -1 when none (or ignored: plain CONNECT) */
    uint64_t data_len;      /* DATA payload received */
} pt_h2_rules_t;

static inline void pt_h2_rules_init(pt_h2_rules_t *r)
{
    r->flags = 0;
    r->content_length = -1;
    r->data_len = 0;
}

/** What one field is, by itself (name and value alone decide it, so a
 * verdict may be kept for a field that repeats: h2.c keeps them per HPACK
 * table entry). */
typedef struct {
    uint32_t once;          /* the flag it may set once per request (pseudo-headers, host), or 0 */
    uint32_t set;           /* flags it sets besides (CONNECT, OPTIONS, the :path form, http(s)) */
    int64_t content_length; /* a content-length field's value, else -1 */
    bool ok;                /* name and value are valid, and the field is allowed at all */
    bool pseudo;
    bool underscore;        /* a regular name with '_' in it (limits.allow_underscores decides) */
} pt_h2_verdict_t;

pt_h2_verdict_t pt_h2_rules_classify(const uint8_t *name, size_t namelen, const uint8_t *value,
                                     size_t valuelen);

/** A field of the request's header block, or of its trailer block
 * (`trailer`), as classified. Returns false when it makes the request malformed. */
bool pt_h2_rules_apply(pt_h2_rules_t *r, const pt_h2_verdict_t *vd, bool trailer);

/** Both steps at once. */
static inline bool pt_h2_rules_field(pt_h2_rules_t *r, const uint8_t *name, size_t namelen,
                                     const uint8_t *value, size_t valuelen, bool trailer)
{
    pt_h2_verdict_t vd = pt_h2_rules_classify(name, namelen, value, valuelen);
    return pt_h2_rules_apply(r, &vd, trailer);
}

/** The request's header block is complete. Returns false when malformed. */
bool pt_h2_rules_head(pt_h2_rules_t *r);

/** `n` more DATA payload bytes. Returns false once past content-length. */
static inline bool pt_h2_rules_data(pt_h2_rules_t *r, size_t n)
{
    r->data_len += n;
    return r->content_length < 0 || r->data_len <= (uint64_t)r->content_length;
}

/** END_STREAM arrived (on HEADERS, DATA or trailers). Returns false when the
 * DATA received differs from content-length. */
static inline bool pt_h2_rules_end(const pt_h2_rules_t *r)
{
    return r->content_length < 0 || r->data_len == (uint64_t)r->content_length;
}

/**
 * The RFC 9218 `priority` request field (an RFC 8941 dictionary): `u` (an
 * integer; 0..7 taken, others ignored) and `i` (a boolean) update *urgency and
 * *incremental; other members are skipped. Returns false, leaving both
 * untouched, when the field is not a dictionary (or `u`/`i` have the wrong
 * type): the field is then ignored, as nghttp2's HTTP messaging did.
 */
bool pt_h2_parse_priority(const uint8_t *v, size_t n, uint8_t *urgency, bool *incremental);

/* Character classes (exposed for the unit test, which compares them with
 * nghttp2's public check functions byte by byte; PT_H2C_VALUE is what
 * pt_header_value_valid() accepts). */
enum {
    PT_H2C_NAME = 1u << 0,  /* lowercase tchar: a regular field name */
    PT_H2C_VALUE = 1u << 1, /* HTAB, SP, VCHAR, obs-text */
    PT_H2C_PATH = 1u << 2,  /* VCHAR, obs-text */
    PT_H2C_AUTH = 1u << 3,  /* RFC 3986 authority: unreserved, sub-delims, %, :, @, [ ] */
    PT_H2C_TOKEN = 1u << 4, /* tchar (either case): a method */
};
uint8_t pt_h2_char_class(uint8_t c);

#endif /* PT_GATEWAY_H2RULES_H */
