/*
 * h1parse.c -- strict HTTP/1.1 request parsing (RFC 9112), our own code.
 *
 * Request heads are read over whole lines: memchr finds each LF, then the
 * line is validated as a unit -- method token, request-target bytes and
 * HTTP-version on the request line; tchar field names (lowercased in the
 * same pass), field values eight bytes at a time (pt_header_value_valid);
 * CRLF only (a bare LF or bare CR is refused), obs-fold refused -- and the
 * semantics (Host, framing, Expect, Connection/Upgrade) are decided once the
 * whole head is there. Bodies: Content-Length is counted; chunked framing is
 * a byte state machine except for chunk data, which is handed out as slices.
 *
 * Until issue 7 every byte also went through Debian's http-parser 2.9.4 as a
 * second opinion; that cost ~15 instructions per head byte (half of a 4 KB
 * Cookie request's parse cost). The agreement it enforced is now held by a
 * differential fuzz target (test/fuzz/fuzz_h1_diff.c: every message this
 * parser accepts, http-parser must accept too and read the same method,
 * target, fields, framing and body) and by unit tests for each refusal.
 * We are stricter than http-parser on purpose (SECURITY-CASES.md §0.2, §2.1):
 * whitespace before the colon, obs-fold, bare LF, `identity, chunked`,
 * Transfer-Encoding twice, missing or duplicate Host, HTTP/0.9, chunk
 * extensions and trailers carrying framing fields are refused. The one place
 * where http-parser was stricter than any configuration could say -- heads
 * over its compiled-in 80 KiB -- is now governed by the configured limits
 * alone (limits.max_request_line + max_header_bytes; the defaults stay under
 * 80 KiB).
 *
 * Request heads are scanned where they lie in the caller's buffer when they
 * arrive in one piece (the common case); heads that arrive in pieces are
 * collected in our own buffer, bounded by the limits. Scanning is
 * incremental, so a client trickling bytes costs linear time.
 */
#include "http/h1parse.h"
#include "http/reqcheck.h"

#include <stdlib.h>
#include <string.h>

/* ---- character classes -------------------------------------------------- */

/* RFC 9110 tchar: "!#$%&'*+-.^_`|~" DIGIT ALPHA */
static const unsigned char tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_tchar(unsigned char c)
{
    return tchar_tab[c] != 0;
}

/* Field-value bytes: VCHAR, obs-text, SP, HTAB. Everything else is a control byte. */
static inline bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool ieq(pt_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a.base[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

static bool ieq2(pt_str_t a, pt_str_t b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (lower((unsigned char)a.base[i]) != lower((unsigned char)b.base[i]))
            return false;
    return true;
}

static pt_str_t trim(pt_str_t s)
{
    while (s.len > 0 && is_ows((unsigned char)s.base[0])) {
        s.base++;
        s.len--;
    }
    while (s.len > 0 && is_ows((unsigned char)s.base[s.len - 1]))
        s.len--;
    return s;
}

/*
 * Iterates the elements of a comma-separated list (RFC 9110 §5.6.1).
 * Returns false at the end. Empty elements are reported as empty slices so
 * that callers that need strictness can refuse them.
 */
static bool list_next(pt_str_t *rest, pt_str_t *elem)
{
    if (rest->base == NULL)
        return false;
    const char *comma = memchr(rest->base, ',', rest->len);
    if (comma == NULL) {
        *elem = trim(*rest);
        rest->base = NULL;
        rest->len = 0;
        return true;
    }
    *elem = trim((pt_str_t){rest->base, (size_t)(comma - rest->base)});
    size_t used = (size_t)(comma - rest->base) + 1;
    rest->base += used;
    rest->len -= used;
    return true;
}

static bool list_has(pt_str_t value, const char *token)
{
    pt_str_t rest = value, e;
    while (list_next(&rest, &e))
        if (ieq(e, token))
            return true;
    return false;
}

/* ---- parser state --------------------------------------------------------- */

enum state {
    S_START,        /* between messages: skipping CRLFs */
    S_START_LF,     /* a CR was skipped, LF expected */
    S_HEAD,         /* collecting the head */
    S_DONE_PENDING, /* report PT_H1P_DONE next */
    S_BODY_CL,
    S_CH_SIZE,
    S_CH_EXT,
    S_CH_SIZE_LF,
    S_CH_DATA,
    S_CH_DATA_CR,
    S_CH_DATA_LF,
    S_TR_START, /* start of a trailer line (or the final CRLF) */
    S_TR_NAME,
    S_TR_VALUE,
    S_TR_LF,
    S_FINAL_LF,
    S_ERROR,
};

struct pt_h1p {
    pt_h1p_limits_t lim;
    uint64_t next_max_body;
    enum state state;

    /* head collection */
    char *buf; /* head bytes when they arrive in pieces */
    size_t buf_len, buf_cap;
    size_t head_max;   /* raw head bytes we ever accept */
    size_t scanned;    /* head bytes looked at for line ends */
    size_t line_start; /* offset of the current line in the head */
    size_t lines;      /* complete lines seen (request line included) */

    pt_h1p_head_t head;
    pt_header_t *hdrs; /* max_header_count entries */

    /* body */
    uint64_t remaining;  /* Content-Length left, or bytes left in a chunk */
    uint64_t body_total; /* dechunked bytes so far */
    unsigned chunk_digits;
    bool ext_semi;      /* a ';' started the chunk extension */
    uint32_t ext_total; /* chunk-extension bytes so far (request) */
    uint32_t trailer_bytes;
    char tname[24]; /* lowercased trailer name prefix */
    size_t tname_len;

    /* the request line, as scan_head() found it (offsets into the head) */
    size_t method_len, target_off, target_len;
    int version;

    int err_status;
    const char *err_reason;
};

void pt_h1p_limits_from(pt_h1p_limits_t *out, const pt_limits_t *l)
{
    out->max_request_line = l->max_request_line;
    out->max_header_bytes = l->max_header_bytes;
    out->max_header_count = l->max_header_count;
    out->max_body = l->max_body;
    out->max_chunk_ext = l->max_chunk_ext;
    out->allow_underscores = l->allow_underscores;
}

pt_h1p_t *pt_h1p_new(const pt_h1p_limits_t *limits)
{
    pt_h1p_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->lim = *limits;
    if (p->lim.max_header_count == 0)
        p->lim.max_header_count = 1;
    p->next_max_body = p->lim.max_body;
    /* request line + CRLF, raw header lines (each no bigger than its accounted size), final CRLF */
    p->head_max = (size_t)p->lim.max_request_line + 2 + p->lim.max_header_bytes + 2;
    p->hdrs = calloc(p->lim.max_header_count, sizeof(*p->hdrs));
    if (p->hdrs == NULL)
        abort();
    p->state = S_START;
    return p;
}

void pt_h1p_free(pt_h1p_t *p)
{
    if (p == NULL)
        return;
    free(p->buf);
    p->buf = NULL;
    free(p->hdrs);
    p->hdrs = NULL;
    free(p);
}

void pt_h1p_set_max_body(pt_h1p_t *p, uint64_t max_body)
{
    p->next_max_body = max_body;
}

const pt_h1p_head_t *pt_h1p_head(const pt_h1p_t *p)
{
    return &p->head;
}

bool pt_h1p_idle(const pt_h1p_t *p)
{
    return p->state == S_START;
}

bool pt_h1p_in_head(const pt_h1p_t *p)
{
    return p->state == S_HEAD || p->state == S_START_LF;
}

static int fail(pt_h1p_t *p, int status, const char *reason)
{
    if (p->state != S_ERROR) {
        p->state = S_ERROR;
        p->err_status = status;
        p->err_reason = reason;
    }
    return status;
}

/* ---- request line --------------------------------------------------------- */

/*
 * Length of the leading run of request-target bytes (VCHAR: 0x21-0x7e) in
 * s[0..n), eight bytes at a time: a word with a byte below 0x21, at or above
 * 0x7f is looked at byte by byte.
 */
static size_t target_span(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t y = x + ones; /* 0x7f -> 0x80; 0xff wraps, but its high bit is caught by x */
        if ((((x - ones * 0x21) & ~x) | x | y) & highs)
            break;
    }
    while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    return i;
}

/*
 * Parses the request line `l` (CR LF excluded, but `has_cr` says whether the
 * CR was there) and records where method and target lie and the version
 * (p->method_len ...). Returns 0 or a PT_ERR_* (after fail()).
 */
static int parse_request_line(pt_h1p_t *p, const char *l, size_t n, bool has_cr)
{
    if (n > p->lim.max_request_line)
        return fail(p, PT_ERR_URI_TOO_LONG, "request line too long");
    if (!has_cr)
        return fail(p, PT_ERR_INVALID, "request line not terminated by CRLF");
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i == n || l[i] != ' ')
        return fail(p, PT_ERR_INVALID, "malformed method");
    size_t method_len = i;
    size_t t0 = ++i;
    i += target_span(l + i, n - i);
    if (i == t0)
        return fail(p, PT_ERR_INVALID, "empty request target");
    if (i == n)
        return fail(p, PT_ERR_INVALID, "no HTTP version (HTTP/0.9 is not supported)");
    if (l[i] != ' ')
        return fail(p, PT_ERR_INVALID, "invalid byte in request target");
    size_t target_len = i - t0;
    i++;
    pt_str_t ver = {l + i, n - i};
    int version;
    if (ver.len == 8 && memcmp(ver.base, "HTTP/", 5) == 0 && ver.base[5] >= '0' &&
        ver.base[5] <= '9' && ver.base[6] == '.' && ver.base[7] >= '0' && ver.base[7] <= '9') {
        version = (ver.base[5] - '0') * 10 + (ver.base[7] - '0');
        if (version != 10 && version != 11)
            return fail(p, PT_ERR_VERSION, "unsupported HTTP version");
    } else {
        return fail(p, PT_ERR_INVALID, "malformed HTTP version");
    }
    p->method_len = method_len;
    p->target_off = t0;
    p->target_len = target_len;
    p->version = version;
    return 0;
}

/*
 * Incremental line scan of the head in `h` from p->scanned to `to`. Checks
 * the limits as lines complete. Returns the head length (offset after the
 * final LF) once the empty line is found, 0 when more bytes are needed, or
 * (size_t)-1 after fail().
 */
static size_t scan_head(pt_h1p_t *p, const char *h, size_t to)
{
    size_t i = p->scanned;
    while (i < to) {
        const char *lf = memchr(h + i, '\n', to - i);
        if (lf == NULL) {
            i = to;
            break;
        }
        size_t e = (size_t)(lf - h);
        size_t ll = e - p->line_start; /* line bytes before LF */
        const char *line = h + p->line_start;
        if (p->lines == 0) {
            bool has_cr = ll > 0 && line[ll - 1] == '\r';
            if (parse_request_line(p, line, has_cr ? ll - 1 : ll, has_cr) < 0)
                return (size_t)-1;
        } else if (ll == 0 || (ll == 1 && line[0] == '\r')) {
            p->scanned = e + 1;
            return e + 1;
        } else if (p->lines > p->lim.max_header_count) {
            fail(p, PT_ERR_HEADERS_TOO_LARGE, "too many header fields");
            return (size_t)-1;
        }
        p->lines++;
        p->line_start = e + 1;
        i = e + 1;
    }
    p->scanned = i;
    if (p->lines == 0 && to - p->line_start > (size_t)p->lim.max_request_line + 1) {
        fail(p, PT_ERR_URI_TOO_LONG, "request line too long");
        return (size_t)-1;
    }
    if (to > p->head_max) {
        fail(p, PT_ERR_HEADERS_TOO_LARGE, "request head too large");
        return (size_t)-1;
    }
    return 0;
}

/* ---- head semantics -------------------------------------------------------- */

static int parse_target(pt_h1p_t *p, pt_h1p_head_t *h)
{
    pt_str_t t = h->target;
    if (memchr(t.base, '#', t.len) != NULL)
        return fail(p, PT_ERR_INVALID, "fragment in request target");
    if (t.base[0] == '/') {
        h->path = t;
        return 0;
    }
    if (t.len == 1 && t.base[0] == '*') {
        if (!ieq(h->method, "options"))
            return fail(p, PT_ERR_INVALID, "asterisk-form target outside OPTIONS");
        h->path = t;
        return 0;
    }
    /* absolute-form: scheme "://" authority [path-abempty] ["?" query] */
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < t.len; i++) {
        if (t.base[i] == ':') {
            if (t.base[i + 1] == '/' && t.base[i + 2] == '/')
                sep = t.base + i;
            break;
        }
    }
    if (sep == NULL)
        return fail(p, PT_ERR_INVALID, "unsupported request-target form");
    pt_str_t scheme = {t.base, (size_t)(sep - t.base)};
    if (!ieq(scheme, "http") && !ieq(scheme, "https"))
        return fail(p, PT_ERR_INVALID, "unsupported scheme in absolute-form target");
    const char *a = sep + 3, *end = t.base + t.len, *q = a;
    while (q < end && *q != '/' && *q != '?')
        q++;
    pt_str_t auth = {a, (size_t)(q - a)};
    const char *why;
    if (pt_reqcheck_authority(auth, &why) != 0)
        return fail(p, PT_ERR_INVALID, why);
    if (q < end && *q == '?')
        return fail(p, PT_ERR_INVALID, "absolute-form target without path");
    h->scheme = scheme;
    h->authority = auth;
    h->path = q < end ? (pt_str_t){q, (size_t)(end - q)} : PT_STR("/");
    return 0;
}

/* Transfer-Encoding: only exactly "chunked" is accepted. */
static int check_te(pt_h1p_t *p, pt_str_t v)
{
    pt_str_t rest = v, e;
    size_t n = 0, chunked_at = 0, chunked_cnt = 0;
    bool unknown = false;
    while (list_next(&rest, &e)) {
        n++;
        if (e.len == 0)
            return fail(p, PT_ERR_INVALID, "empty Transfer-Encoding element");
        for (size_t i = 0; i < e.len; i++)
            if (!is_tchar((unsigned char)e.base[i]))
                return fail(p, PT_ERR_INVALID, "malformed Transfer-Encoding");
        if (ieq(e, "chunked")) {
            chunked_cnt++;
            chunked_at = n;
        } else {
            unknown = true;
        }
    }
    if (chunked_cnt > 1)
        return fail(p, PT_ERR_INVALID, "chunked applied twice");
    if (chunked_cnt == 1 && chunked_at != n)
        return fail(p, PT_ERR_INVALID, "chunked is not the final transfer coding");
    if (unknown)
        return fail(p, PT_ERR_NOT_IMPLEMENTED, "unsupported transfer coding");
    return 0;
}

/*
 * Why the field line s[0..len) (CRLF excluded), whose name run of tchar ends
 * at `i`, is not `name:`. The checks come in the order a reader would name
 * them: a bare CR anywhere on the line first.
 */
static const char *bad_name_reason(const char *s, size_t len, size_t i)
{
    if (memchr(s, '\r', len) != NULL)
        return "bare CR in header line";
    if (is_ows((unsigned char)s[0]))
        return "obs-fold or whitespace before field name";
    if (i == len)
        return "header line without colon";
    if (is_ows((unsigned char)s[i]))
        return "whitespace between field name and colon";
    return "invalid byte in field name";
}

/*
 * Whether an HTAB follows the trimmed `value` before the line end `eol`.
 * RFC 9110 allows it (OWS), but http-parser 2.9.4 refuses it after
 * Content-Length and Transfer-Encoding, and back ends built like it would
 * frame such a request differently; refused as when http-parser ran beside
 * this scanner (fuzz.h1_diff found it).
 */
static bool tab_after(pt_str_t value, const char *eol)
{
    const char *v_end = value.base + value.len;
    return eol > v_end && memchr(v_end, '\t', (size_t)(eol - v_end)) != NULL;
}

/* Parses a complete head `h` of `n` bytes (request line through the empty line). */
static int parse_head(pt_h1p_t *p, char *h, size_t n)
{
    pt_h1p_head_t *hd = &p->head;
    memset(hd, 0, sizeof(*hd));
    hd->headers = p->hdrs;
    hd->content_length = -1;
    hd->head_bytes = n;

    /* scan_head() checked the request line and recorded its parts */
    hd->method = (pt_str_t){h, p->method_len};
    hd->target = (pt_str_t){h + p->target_off, p->target_len};
    hd->version = p->version;
    char *lf = memchr(h + p->target_off + p->target_len, '\n', n - p->target_off - p->target_len);
    /* The method policy is reqcheck.c's, shared with HTTP/2; it runs before
     * http-parser, whose own method table is the same one. */
    const char *why;
    int rc = pt_reqcheck_method(hd->method, &why);
    if (rc != 0)
        return fail(p, rc, why);
    if (ieq(hd->method, "connect"))
        return fail(p, PT_ERR_NOT_IMPLEMENTED, "CONNECT is not supported");
    if (parse_target(p, hd) < 0)
        return p->err_status;

    size_t bytes = 0, host_cnt = 0, cl_cnt = 0, te_cnt = 0, expect_cnt = 0, upgrade_cnt = 0,
           h2s_cnt = 0;
    pt_str_t host = PT_STR_NULL, cl = PT_STR_NULL, te = PT_STR_NULL, expect = PT_STR_NULL;
    bool conn_close = false, conn_keepalive = false, conn_h2s = false;
    char *s = lf + 1, *end = h + n;
    for (;;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = (size_t)(nl - s);
        if (len == 0 || s[len - 1] != '\r')
            return fail(p, PT_ERR_INVALID, "header line not terminated by CRLF");
        len--;
        if (len == 0)
            break; /* the empty line */
        /* field-name: tchar, lowercased as it is checked */
        size_t i = 0;
        while (i < len && tchar_tab[(unsigned char)s[i]] != 0) {
            s[i] = (char)lower((unsigned char)s[i]);
            i++;
        }
        if (i == 0 || i == len || s[i] != ':')
            return fail(p, PT_ERR_INVALID, bad_name_reason(s, len, i));
        pt_str_t name = {s, i};
        if (!p->lim.allow_underscores && memchr(s, '_', i) != NULL)
            return fail(p, PT_ERR_INVALID, "underscore in field name");
        pt_str_t value = trim((pt_str_t){s + i + 1, len - i - 1});
        if (!pt_header_value_valid(value))
            return fail(p, PT_ERR_INVALID,
                        memchr(s, '\r', len) != NULL ? "bare CR in header line"
                                                      : "control byte in field value");
        if (hd->header_cnt >= p->lim.max_header_count)
            return fail(p, PT_ERR_HEADERS_TOO_LARGE, "too many header fields");
        bytes += name.len + value.len + 32;
        if (bytes > p->lim.max_header_bytes)
            return fail(p, PT_ERR_HEADERS_TOO_LARGE, "header fields too large");
        hd->headers[hd->header_cnt++] = (pt_header_t){name, value};

        switch (name.len) {
        case 4:
            if (memcmp(name.base, "host", 4) == 0)
                host_cnt++, host = value;
            break;
        case 6:
            if (memcmp(name.base, "expect", 6) == 0)
                expect_cnt++, expect = value;
            break;
        case 7:
            if (memcmp(name.base, "upgrade", 7) == 0)
                upgrade_cnt++, hd->upgrade = value;
            break;
        case 10:
            if (memcmp(name.base, "connection", 10) == 0) {
                conn_close |= list_has(value, "close");
                conn_keepalive |= list_has(value, "keep-alive");
                hd->conn_upgrade |= list_has(value, "upgrade");
                conn_h2s |= list_has(value, "http2-settings");
            }
            break;
        case 14:
            if (memcmp(name.base, "content-length", 14) == 0) {
                if (tab_after(value, s + len))
                    return fail(p, PT_ERR_INVALID, "HTAB after a framing field value");
                cl_cnt++, cl = value;
            }
            else if (memcmp(name.base, "http2-settings", 14) == 0)
                h2s_cnt++, hd->http2_settings = value;
            break;
        case 17:
            if (memcmp(name.base, "transfer-encoding", 17) == 0) {
                if (tab_after(value, s + len))
                    return fail(p, PT_ERR_INVALID, "HTAB after a framing field value");
                te_cnt++, te = value;
            }
            break;
        default:
            /* `Transfer-Encoding-X`, `Transfer-Encodingx`: back ends that match
             * field names by prefix (http-parser 2.9.4 does) take these for
             * Transfer-Encoding; refused as http-parser refused them when it
             * ran beside this scanner (fuzz.h1_diff found it). */
            if (name.len > 17 && memcmp(name.base, "transfer-encoding", 17) == 0)
                return fail(p, PT_ERR_INVALID, "field name extends Transfer-Encoding");
            break;
        }
        s = nl + 1;
    }

    /* Host and authority (RFC 9112 §3.2) */
    if (host_cnt > 1)
        return fail(p, PT_ERR_INVALID, "duplicate Host");
    if (host_cnt == 0 && hd->version == 11)
        return fail(p, PT_ERR_INVALID, "missing Host");
    if (host_cnt == 1 && pt_reqcheck_authority(host, &why) != 0)
        return fail(p, PT_ERR_INVALID, why);
    if (hd->authority.base != NULL) {
        if (host_cnt == 1 && !ieq2(host, hd->authority))
            return fail(p, PT_ERR_INVALID, "absolute-form authority differs from Host");
    } else {
        hd->authority = host_cnt == 1 ? host : PT_STR("");
    }

    /* framing (RFC 9112 §6) */
    if (te_cnt > 1)
        return fail(p, PT_ERR_INVALID, "Transfer-Encoding repeated");
    if (cl_cnt > 1)
        return fail(p, PT_ERR_INVALID, "duplicate Content-Length");
    if (te_cnt == 1 && cl_cnt == 1)
        return fail(p, PT_ERR_INVALID, "both Content-Length and Transfer-Encoding");
    if (te_cnt == 1) {
        if (hd->version == 10)
            return fail(p, PT_ERR_INVALID, "Transfer-Encoding in an HTTP/1.0 request");
        if (check_te(p, te) < 0)
            return p->err_status;
        hd->chunked = true;
    }
    if (cl_cnt == 1) {
        if (cl.len == 0 || cl.len > 18)
            return fail(p, PT_ERR_INVALID, "invalid Content-Length");
        uint64_t v = 0;
        for (size_t k = 0; k < cl.len; k++) {
            if (cl.base[k] < '0' || cl.base[k] > '9')
                return fail(p, PT_ERR_INVALID, "invalid Content-Length");
            v = v * 10 + (uint64_t)(cl.base[k] - '0');
        }
        hd->content_length = (int64_t)v;
    }
    hd->has_body = hd->chunked || hd->content_length > 0;
    if (hd->content_length > 0 && (uint64_t)hd->content_length > p->lim.max_body)
        return fail(p, PT_ERR_LIMIT, "Content-Length over the body limit");

    /* Expect (RFC 9110 §10.1.1); HTTP/1.0 expectations are ignored */
    if (expect_cnt > 0 && hd->version == 11) {
        if (expect_cnt > 1 || !ieq(expect, "100-continue"))
            return fail(p, PT_ERR_EXPECTATION, "unsupported expectation");
        hd->expect_continue = hd->has_body;
    }

    hd->keep_alive = hd->version == 11 ? !conn_close : (conn_keepalive && !conn_close);
    if (upgrade_cnt > 1)
        return fail(p, PT_ERR_INVALID, "duplicate Upgrade");
    if (upgrade_cnt == 1 && hd->version == 11 && hd->conn_upgrade && conn_h2s && h2s_cnt == 1 &&
        !hd->has_body && list_has(hd->upgrade, "h2c"))
        hd->h2c_upgrade = true;
    else
        hd->http2_settings = PT_STR_NULL;

    return 0;
}

/* ---- feeding ------------------------------------------------------------- */

static void start_body(pt_h1p_t *p)
{
    p->body_total = 0;
    p->ext_total = 0;
    p->trailer_bytes = 0;
    if (!p->head.has_body) {
        p->state = S_DONE_PENDING;
    } else if (p->head.chunked) {
        p->state = S_CH_SIZE;
        p->chunk_digits = 0;
        p->remaining = 0;
    } else {
        p->state = S_BODY_CL;
        p->remaining = (uint64_t)p->head.content_length;
    }
}

/* Collects head bytes from data[pos..len). Returns bytes consumed; sets ev on HEAD or ERROR. */
static size_t feed_head(pt_h1p_t *p, char *data, size_t len, pt_h1p_event_t *ev)
{
    size_t head_len;
    if (p->buf_len == 0) {
        /* Try in place: the whole head may be in this input. */
        size_t to = len < p->head_max + 1 ? len : p->head_max + 1;
        head_len = scan_head(p, data, to);
        if (head_len == (size_t)-1)
            return 0;
        if (head_len > 0) {
            if (parse_head(p, data, head_len) < 0)
                return 0;
            ev->type = PT_H1P_HEAD;
            start_body(p);
            return head_len;
        }
        /* Incomplete: keep what we have (bounded by head_max via scan_head). */
        if (p->buf_cap < to) {
            size_t cap = p->buf_cap ? p->buf_cap : 1024;
            while (cap < to)
                cap *= 2;
            char *nb = realloc(p->buf, cap);
            if (nb == NULL)
                abort();
            p->buf = nb;
            p->buf_cap = cap;
        }
        memcpy(p->buf, data, to);
        p->buf_len = to;
        return to;
    }
    size_t room = p->head_max + 1 - p->buf_len;
    size_t take = len < room ? len : room;
    if (p->buf_len + take > p->buf_cap) {
        size_t cap = p->buf_cap;
        while (cap < p->buf_len + take)
            cap *= 2;
        char *nb = realloc(p->buf, cap);
        if (nb == NULL)
            abort();
        p->buf = nb;
        p->buf_cap = cap;
    }
    size_t old = p->buf_len;
    memcpy(p->buf + old, data, take);
    p->buf_len += take;
    head_len = scan_head(p, p->buf, p->buf_len);
    if (head_len == (size_t)-1)
        return 0;
    if (head_len == 0)
        return take;
    p->buf_len = head_len;
    if (parse_head(p, p->buf, head_len) < 0)
        return 0;
    ev->type = PT_H1P_HEAD;
    start_body(p);
    return head_len - old;
}

/*
 * Chunked framing, one byte at a time except for chunk data. Returns bytes
 * consumed from d[0..n); sets ev for BODY / DONE. On error, fail() was called.
 */
static size_t feed_chunked(pt_h1p_t *p, const char *d, size_t n, pt_h1p_event_t *ev)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)d[i];
        switch (p->state) {
        case S_CH_SIZE: {
            int v = pt_str_hexval((char)c);
            if (v >= 0) {
                if (++p->chunk_digits > 16)
                    return fail(p, PT_ERR_INVALID, "chunk size too long"), i;
                p->remaining = (p->remaining << 4) | (uint64_t)v;
            } else if (p->chunk_digits == 0) {
                return fail(p, PT_ERR_INVALID, "invalid chunk size"), i;
            } else if (c == '\r') {
                p->state = S_CH_SIZE_LF;
            } else if (c == ';' || is_ows(c)) {
                p->ext_semi = c == ';';
                p->state = S_CH_EXT;
                if (++p->ext_total > p->lim.max_chunk_ext)
                    return fail(p, PT_ERR_INVALID, "chunk extensions too large"), i;
            } else {
                return fail(p, PT_ERR_INVALID, "invalid chunk size"), i;
            }
            break;
        }
        case S_CH_EXT:
            if (c == '\r') {
                if (!p->ext_semi)
                    return fail(p, PT_ERR_INVALID, "whitespace after chunk size"), i;
                p->state = S_CH_SIZE_LF;
                break;
            }
            if (!is_value_byte(c))
                return fail(p, PT_ERR_INVALID, "control byte in chunk extension"), i;
            if (!p->ext_semi && !is_ows(c)) {
                if (c != ';')
                    return fail(p, PT_ERR_INVALID, "garbage after chunk size"), i;
                p->ext_semi = true;
            }
            if (++p->ext_total > p->lim.max_chunk_ext)
                return fail(p, PT_ERR_INVALID, "chunk extensions too large"), i;
            break;
        case S_CH_SIZE_LF:
            if (c != '\n')
                return fail(p, PT_ERR_INVALID, "chunk size line not terminated by CRLF"), i;
            if (p->remaining == 0) {
                p->state = S_TR_START;
            } else {
                if (p->remaining > p->lim.max_body - p->body_total)
                    return fail(p, PT_ERR_LIMIT, "chunked body over the body limit"), i;
                p->state = S_CH_DATA;
            }
            break;
        case S_CH_DATA: {
            size_t take = n - i;
            if (take > p->remaining)
                take = (size_t)p->remaining;
            p->remaining -= take;
            p->body_total += take;
            if (p->remaining == 0)
                p->state = S_CH_DATA_CR;
            ev->type = PT_H1P_BODY;
            ev->data = d + i;
            ev->len = take;
            return i + take;
        }
        case S_CH_DATA_CR:
            if (c != '\r')
                return fail(p, PT_ERR_INVALID, "chunk data not followed by CRLF"), i;
            p->state = S_CH_DATA_LF;
            break;
        case S_CH_DATA_LF:
            if (c != '\n')
                return fail(p, PT_ERR_INVALID, "chunk data not followed by CRLF"), i;
            p->state = S_CH_SIZE;
            p->chunk_digits = 0;
            p->remaining = 0;
            break;
        case S_TR_START:
            if (c == '\r') {
                p->state = S_FINAL_LF;
                break;
            }
            if (is_ows(c))
                return fail(p, PT_ERR_INVALID, "obs-fold in trailers"), i;
            if (!is_tchar(c) || (c == '_' && !p->lim.allow_underscores))
                return fail(p, PT_ERR_INVALID, "invalid trailer field name"), i;
            p->tname_len = 0;
            p->tname[p->tname_len++] = (char)lower(c);
            p->state = S_TR_NAME;
            break;
        case S_TR_NAME:
            if (c == ':') {
                pt_str_t nm = {p->tname, p->tname_len};
                if (p->tname_len < sizeof(p->tname) &&
                    (ieq(nm, "content-length") || ieq(nm, "transfer-encoding") || ieq(nm, "host")))
                    return fail(p, PT_ERR_INVALID, "framing field in trailers"), i;
                p->state = S_TR_VALUE;
                break;
            }
            if (is_ows(c))
                return fail(p, PT_ERR_INVALID, "whitespace before colon in trailers"), i;
            if (!is_tchar(c) || (c == '_' && !p->lim.allow_underscores))
                return fail(p, PT_ERR_INVALID, "invalid trailer field name"), i;
            if (p->tname_len < sizeof(p->tname))
                p->tname[p->tname_len++] = (char)lower(c);
            break;
        case S_TR_VALUE:
            if (c == '\r') {
                p->state = S_TR_LF;
                break;
            }
            if (!is_value_byte(c))
                return fail(p, PT_ERR_INVALID, "control byte in trailer value"), i;
            break;
        case S_TR_LF:
            if (c != '\n')
                return fail(p, PT_ERR_INVALID, "trailer line not terminated by CRLF"), i;
            p->state = S_TR_START;
            break;
        case S_FINAL_LF:
            if (c != '\n')
                return fail(p, PT_ERR_INVALID, "chunked body not terminated by CRLF"), i;
            p->state = S_DONE_PENDING;
            return i + 1;
        default:
            return fail(p, PT_ERR_INVALID, "internal state"), i;
        }
        if (p->state >= S_TR_START && p->state <= S_FINAL_LF &&
            ++p->trailer_bytes > p->lim.max_header_bytes)
            return fail(p, PT_ERR_HEADERS_TOO_LARGE, "trailers too large"), i;
        i++;
    }
    return i;
}

size_t pt_h1p_feed(pt_h1p_t *p, char *data, size_t len, pt_h1p_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    size_t pos = 0;
    while (p->state != S_ERROR) {
        switch (p->state) {
        case S_START:
            if (pos == len)
                return pos; /* NONE */
            if (data[pos] == '\r') {
                p->state = S_START_LF;
                pos++;
                continue;
            }
            if (data[pos] == '\n') {
                fail(p, PT_ERR_INVALID, "bare LF before request line");
                continue;
            }
            p->state = S_HEAD;
            p->buf_len = 0;
            p->scanned = p->line_start = p->lines = 0;
            p->lim.max_body = p->next_max_body;
            continue;
        case S_START_LF:
            if (pos == len)
                return pos;
            if (data[pos] != '\n') {
                fail(p, PT_ERR_INVALID, "bare CR before request line");
                continue;
            }
            p->state = S_START;
            pos++;
            continue;
        case S_HEAD:
            if (pos == len)
                return pos;
            pos += feed_head(p, data + pos, len - pos, ev);
            if (ev->type == PT_H1P_HEAD)
                return pos;
            continue; /* NONE with everything consumed, or ERROR */
        case S_DONE_PENDING:
            p->state = S_START;
            ev->type = PT_H1P_DONE;
            return pos;
        case S_BODY_CL: {
            if (pos == len)
                return pos;
            size_t take = len - pos;
            if (take > p->remaining)
                take = (size_t)p->remaining;
            p->remaining -= take;
            p->body_total += take;
            if (p->remaining == 0)
                p->state = S_DONE_PENDING;
            ev->type = PT_H1P_BODY;
            ev->data = data + pos;
            ev->len = take;
            return pos + take;
        }
        default: { /* chunked states */
            if (pos == len)
                return pos;
            size_t n = feed_chunked(p, data + pos, len - pos, ev);
            if (p->state == S_ERROR)
                continue;
            pos += n;
            if (ev->type == PT_H1P_BODY)
                return pos;
            continue;
        }
        }
    }
    ev->type = PT_H1P_ERROR;
    ev->data = NULL;
    ev->len = 0;
    ev->status = p->err_status;
    ev->reason = p->err_reason;
    return pos;
}
