/*
 * xml_tok.c -- our own streaming XML tokenizer (see xml_tok.h).
 *
 * One pass over the bytes, no tree, no libxml2: a dispatcher on '<' and
 * character data, each construct read whole from the caller's buffer (a
 * construct cut by the end of the input so far is read again later, see
 * retry_at), character data handed over as it comes. Open elements keep
 * the offset of their qualified name (end tags are compared byte for
 * byte); namespace bindings live on a stack popped with their element, the
 * decoded URIs in one buffer truncated alike. Attribute duplicates are found
 * with a small open-addressing table stamped per tag (no clearing): once by
 * qualified name, once by {URI}local name.
 */
#include "xml_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/uri.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define XML_NS_URI "http://www.w3.org/XML/1998/namespace"
#define XMLNS_URI "http://www.w3.org/2000/xmlns/"
#define MAX_NAME 50000 /* libxml2's XML_MAX_NAME_LENGTH without XML_PARSE_HUGE */

enum { ST_OK = 0, ST_NEED, ST_ERR, ST_OTHER /* stag_plain: not its case */ };
enum { W_START = 0, W_PROLOG, W_CONTENT, W_EPILOG };

typedef struct el {
    size_t qoff;  /* the qualified name in the input */
    size_t qlen;
    unsigned nsmark; /* bindings before this element's */
    int dns;         /* x->dns before them */
    size_t urimark;  /* x->uris.len before them */
} el_t;

typedef struct nsb {
    size_t poff, plen; /* prefix in the input; plen 0: the default namespace */
    size_t uoff, ulen; /* decoded URI in x->uris; ulen 0: none (xmlns="") */
} nsb_t;

typedef struct att {
    size_t qoff, qlen, plen; /* plen: prefix length, 0 when none */
    size_t voff, vlen;       /* decoded value in x->vals */
    bool xmlns;
    bool refs; /* the value held a reference */
    const char *uri;
    size_t ulen;
} att_t;

struct pt__xt {
    pt__xt_head_t head; /* first: read by pt__xt_ns_epoch() */
    const pt_allocator_t *a;
    unsigned max_depth, max_attrs;
    const pt__xt_cb_t *cb;
    void *ud;
    size_t pos, retry_at;
    uint8_t where;
    bool defer;
    pt__xp_fail_t fail;
    int line, col;
    char msg[160];
    el_t *els;
    unsigned depth;
    nsb_t *ns;
    unsigned nns, cap_ns;
    int dns; /* the innermost default namespace binding in ns[], -1: none */
    bool general; /* pt__xt_general_only(): no fast paths */
    pt_xbuf_t uris, vals;
    att_t *ats;
    unsigned cap_ats;
    pt__xt_attr_t *out;
    uint32_t *stamp;
    uint16_t *slot;
    uint32_t tmask, gen;
};

/* ---- characters ---- */

/* Text bytes that need a look: '<' '&' ']' CR, controls, non-ASCII. */
static const uint8_t tcls[256] = {
    ['\0'] = 1, [1] = 1, [2] = 1, [3] = 1, [4] = 1, [5] = 1, [6] = 1, [7] = 1, [8] = 1,
    [11] = 1, [12] = 1, ['\r'] = 1, [14] = 1, [15] = 1, [16] = 1, [17] = 1, [18] = 1, [19] = 1,
    [20] = 1, [21] = 1, [22] = 1, [23] = 1, [24] = 1, [25] = 1, [26] = 1, [27] = 1, [28] = 1,
    [29] = 1, [30] = 1, [31] = 1, ['<'] = 1, ['&'] = 1, [']'] = 1,
    [0x80 ... 0xFF] = 1,
};

/*
 * The first byte at or after p (before len) that tcls marks, or len. Sixteen
 * bytes a step where SSE2 is there: the same set, exactly (controls but tab
 * and LF, '<', '&', ']' and every byte >= 0x80, which is negative signed).
 */
static inline size_t text_run(const unsigned char *b, size_t p, size_t len)
{
#if defined(__SSE2__)
    if (p + 16 <= len) {
        const __m128i lt = _mm_set1_epi8('<'), amp = _mm_set1_epi8('&'), rb = _mm_set1_epi8(']'),
                      sp = _mm_set1_epi8(0x20), tab = _mm_set1_epi8('\t'), lf = _mm_set1_epi8('\n');
        do {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + p));
            __m128i ctl = _mm_andnot_si128(_mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, lf)),
                                           _mm_cmplt_epi8(v, sp));
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, amp)),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, rb), ctl));
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask != 0)
                return p + (size_t)__builtin_ctz(mask);
            p += 16;
        } while (p + 16 <= len);
    }
#endif
    while (p < len && tcls[b[p]] == 0)
        p++;
    return p;
}

/* ASCII NCName characters: N_START may begin a name, N_CHAR may follow. */
enum { N_START = 1, N_CHAR = 2 };
static const uint8_t ncls[256] = {
    ['A' ... 'Z'] = N_START | N_CHAR, ['a' ... 'z'] = N_START | N_CHAR, ['_'] = N_START | N_CHAR,
    ['0' ... '9'] = N_CHAR, ['-'] = N_CHAR, ['.'] = N_CHAR,
};

static bool is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The first byte at or after p (before len) that is no ASCII name character
 * (N_CHAR), or len. Byte by byte: names are short, and callgrind counts a
 * 16-byte SSE2 step as more instructions than the loop over a typical name. */
static inline size_t name_run(const unsigned char *b, size_t p, size_t len)
{
    while (p < len && (ncls[b[p]] & N_CHAR))
        p++;
    return p;
}

/*
 * Decodes one UTF-8 sequence at p (n bytes there). Returns its length, 0
 * when cut short by the end (what is there is a valid start), -1 when it is
 * not UTF-8 (overlong, surrogate, past U+10FFFF) or not an XML Char.
 */
static int u8(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' ? 1 : -1;
    }
    int k;
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2, v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3, v = c & 0x0Fu;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4, v = c & 0x07u;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < k; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned char d = p[i];
        if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF))
            return -1;
        v = (v << 6) | (d & 0x3Fu);
    }
    if (v == 0xFFFE || v == 0xFFFF)
        return -1;
    *cp = v;
    return k;
}

static bool xml_char(uint32_t v)
{
    return v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
           (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
}

/* XML 1.0 fifth edition NameStartChar / NameChar, without ':' (NCName). */
static bool name_start(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) ||
           (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) ||
           (c >= 0x200C && c <= 0x200D) || (c >= 0x2070 && c <= 0x218F) ||
           (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF) ||
           (c >= 0xF900 && c <= 0xFDCF) || (c >= 0xFDF0 && c <= 0xFFFD) ||
           (c >= 0x10000 && c <= 0xEFFFF);
}

static bool name_char(uint32_t c)
{
    if (c < 0x80)
        return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
    return name_start(c) || c == 0xB7 || (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040);
}

/* ---- failing ---- */

static int fail_at(pt__xt_t *x, const unsigned char *b, size_t at, pt__xp_fail_t f, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static int fail_at(pt__xt_t *x, const unsigned char *b, size_t at, pt__xp_fail_t f, const char *fmt,
                   ...)
{
    if (x->fail != PT_XP_OK)
        return ST_ERR;
    x->fail = f;
    int line = 1;
    size_t bol = 0;
    for (const unsigned char *q = b; at > 0 && (q = memchr(q, '\n', (size_t)(b + at - q))) != NULL;
         q++) {
        line++;
        bol = (size_t)(q - b) + 1;
    }
    x->line = line;
    x->col = (int)(at - bol) + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
    va_end(ap);
    return ST_ERR;
}

#define BAD(at, ...) fail_at(x, b, (at), PT_XP_NOT_XML, __VA_ARGS__)

static const char *const W_UTF8 = "invalid UTF-8 or a character not allowed in XML";

/* A construct cut at the end: wait for more, or (final) say it ends there. */
static int need(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    if (final)
        return BAD(len, "the document ends inside markup or a reference");
    return ST_NEED;
}

static int defer(pt__xt_t *x)
{
    x->defer = true;
    return ST_ERR;
}

/* ---- names and references ---- */

/*
 * Reads a QName at *p: NCName (':' NCName)?. *plen gets the prefix length
 * (0 when none). Each part at most MAX_NAME bytes.
 */
static int qname(pt__xt_t *x, const unsigned char *b, size_t len, bool final, size_t *p,
                 size_t *plen)
{
    /* the common name first: ASCII, at most one colon, ended by an ASCII
     * byte that is no name character and no colon; anything else below */
    size_t i = *p, part = i;
    if (!x->general && i < len && (ncls[b[i]] & N_START)) {
        size_t j = name_run(b, i + 1, len);
        if (j < len && b[j] < 0x80 && b[j] != ':' && j - i <= MAX_NAME) {
            *plen = 0;
            *p = j;
            return ST_OK;
        }
        if (j < len && b[j] == ':' && j + 1 < len && (ncls[b[j + 1]] & N_START)) {
            size_t k = name_run(b, j + 2, len);
            if (k < len && b[k] < 0x80 && b[k] != ':' && j - i <= MAX_NAME &&
                k - j - 1 <= MAX_NAME) {
                *plen = j - i;
                *p = k;
                return ST_OK;
            }
        }
    }
    int colons = 0;
    *plen = 0;
    for (;;) {
        /* ASCII name characters in one sweep; the rest one by one below */
        if (i == part) {
            if (i < len && (ncls[b[i]] & N_START))
                i++;
        }
        if (i > part)
            while (i < len && (ncls[b[i]] & N_CHAR))
                i++;
        if (i >= len)
            return need(x, b, len, final);
        uint32_t c = b[i];
        int k = 1;
        if (c >= 0x80) {
            k = u8(b + i, len - i, &c);
            if (k == 0)
                return need(x, b, len, final);
            if (k < 0)
                return BAD(i, "%s", W_UTF8);
        }
        if (c == ':') {
            if (++colons > 1 || i == part)
                return BAD(i, "bad qualified name");
            *plen = i - *p;
            part = i + 1;
        } else if (c < 0x80 || (i == part ? !name_start(c) : !name_char(c))) {
            break;
        }
        i += (size_t)k;
        if (i - part > MAX_NAME)
            return BAD(part, "name longer than %d bytes", MAX_NAME);
    }
    if (i - part > MAX_NAME)
        return BAD(part, "name longer than %d bytes", MAX_NAME);
    if (i == *p)
        return BAD(i, "a name was expected");
    if (i == part)
        return BAD(i, "bad qualified name");
    *p = i;
    return ST_OK;
}

static size_t put_u8(uint32_t v, char *o)
{
    if (v < 0x80) {
        o[0] = (char)v;
        return 1;
    }
    if (v < 0x800) {
        o[0] = (char)(0xC0 | (v >> 6));
        o[1] = (char)(0x80 | (v & 0x3F));
        return 2;
    }
    if (v < 0x10000) {
        o[0] = (char)(0xE0 | (v >> 12));
        o[1] = (char)(0x80 | ((v >> 6) & 0x3F));
        o[2] = (char)(0x80 | (v & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (v >> 18));
    o[1] = (char)(0x80 | ((v >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((v >> 6) & 0x3F));
    o[3] = (char)(0x80 | (v & 0x3F));
    return 4;
}

/* A reference at *p ('&'): the character it stands for into o[0..*n). */
static int ref(pt__xt_t *x, const unsigned char *b, size_t len, bool final, size_t *p, char *o,
               size_t *n)
{
    size_t i = *p + 1;
    if (i >= len)
        return need(x, b, len, final);
    if (b[i] == '#') {
        i++;
        if (i >= len)
            return need(x, b, len, final);
        bool hex = b[i] == 'x';
        i += hex;
        uint32_t v = 0;
        size_t d0 = i;
        for (;; i++) {
            if (i >= len)
                return need(x, b, len, final);
            unsigned c = b[i], dv;
            if (c >= '0' && c <= '9')
                dv = c - '0';
            else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                dv = (c | 0x20) - 'a' + 10;
            else
                break;
            v = v * (hex ? 16 : 10) + dv;
            if (v > 0x10FFFF)
                v = 0x110000;
        }
        if (i == d0 || b[i] != ';')
            return BAD(*p, "bad character reference");
        if (!xml_char(v))
            return BAD(*p, "character reference to a character XML does not allow");
        *n = put_u8(v, o);
        *p = i + 1;
        return ST_OK;
    }
    size_t s = i;
    for (;; i++) {
        if (i >= len)
            return need(x, b, len, final);
        unsigned char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':' || c >= 0x80))
            break;
        if (i - s > MAX_NAME)
            return BAD(*p, "undeclared entity");
    }
    if (i == s || b[i] != ';')
        return BAD(*p, "bad entity reference");
    size_t l = i - s;
    const char *nm = (const char *)b + s;
    char ch = l == 2 && memcmp(nm, "lt", 2) == 0     ? '<'
              : l == 2 && memcmp(nm, "gt", 2) == 0   ? '>'
              : l == 3 && memcmp(nm, "amp", 3) == 0  ? '&'
              : l == 4 && memcmp(nm, "quot", 4) == 0 ? '"'
              : l == 4 && memcmp(nm, "apos", 4) == 0 ? '\''
                                                     : 0;
    if (ch == 0)
        return BAD(*p, "undeclared entity (only &lt; &gt; &amp; &quot; &apos; exist)");
    o[0] = ch;
    *n = 1;
    *p = i + 1;
    return ST_OK;
}

/* 1: b[p..] starts with lit; 0: it does not; -1: too few bytes to tell. */
static int starts(const unsigned char *b, size_t len, size_t p, const char *lit)
{
    for (size_t i = 0; lit[i] != '\0'; i++) {
        if (p + i >= len)
            return -1;
        if (b[p + i] != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

/* Checks chars of b[s..e) (a comment or PI body): UTF-8 and XML Chars. */
static int check_chars(pt__xt_t *x, const unsigned char *b, size_t s, size_t e)
{
    for (size_t i = s; i < e;) {
        if (b[i] >= 0x20 && b[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = u8(b + i, e - i, &cp);
        if (k <= 0)
            return BAD(i, "%s", W_UTF8);
        i += (size_t)k;
    }
    return ST_OK;
}

/* Hands text b[s..e) over with CR LF and lone CR read as LF (chars already checked). */
static void emit_eol(pt__xt_t *x, const unsigned char *b, size_t s, size_t e)
{
    while (s < e) {
        const unsigned char *cr = memchr(b + s, '\r', e - s);
        size_t stop = cr != NULL ? (size_t)(cr - b) : e;
        if (stop > s)
            x->cb->text(x->ud, (const char *)b + s, stop - s);
        if (cr == NULL)
            return;
        if (stop + 1 < e && b[stop + 1] == '\n') {
            s = stop + 1;
        } else {
            x->cb->text(x->ud, "\n", 1);
            s = stop + 1;
        }
    }
}

/* ---- constructs ---- */

static int comment(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t s = x->pos + 4, i = s;
    for (;;) {
        const unsigned char *d = i < len ? memchr(b + i, '-', len - i) : NULL;
        if (d == NULL || (size_t)(d - b) + 2 >= len)
            return need(x, b, len, final);
        i = (size_t)(d - b);
        if (b[i + 1] != '-') {
            i++;
            continue;
        }
        if (b[i + 2] != '>')
            return BAD(i, "'--' inside a comment");
        break;
    }
    if (check_chars(x, b, s, i) != ST_OK)
        return ST_ERR;
    x->pos = i + 3;
    return ST_OK;
}

static bool eq_nocase(const unsigned char *s, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

/* The XML declaration at the very start (b[end] is the '?' of "?>"):
 * version 1.0, then encoding (UTF-8 only) and standalone; anything odd defers. */
static int xmldecl(pt__xt_t *x, const unsigned char *b, size_t end)
{
    static const char *const keys[3] = {"version", "encoding", "standalone"};
    size_t i = x->pos + 5;
    int next = 0;
    for (;;) {
        size_t ws = i;
        while (i < end && is_blank(b[i]))
            i++;
        if (i == end)
            break;
        int m = -1;
        for (int j = next; j < 3 && m < 0; j++)
            if (starts(b, end, i, keys[j]) == 1)
                m = j;
        if (i == ws || m < 0 || (m > 0 && next == 0))
            return defer(x);
        i += strlen(keys[m]);
        while (i < end && is_blank(b[i]))
            i++;
        if (i == end || b[i] != '=')
            return defer(x);
        i++;
        while (i < end && is_blank(b[i]))
            i++;
        if (i == end || (b[i] != '"' && b[i] != '\''))
            return defer(x);
        const unsigned char *q = memchr(b + i + 1, b[i], end - i - 1);
        if (q == NULL)
            return defer(x);
        size_t vs = i + 1, vl = (size_t)(q - b) - vs;
        const unsigned char *v = b + vs;
        if (m == 0 && !(vl == 3 && memcmp(v, "1.0", 3) == 0))
            return defer(x);
        if (m == 1) {
            bool name = vl > 0 && (v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z';
            for (size_t j = 1; j < vl && name; j++)
                name = ((v[j] | 0x20) >= 'a' && (v[j] | 0x20) <= 'z') ||
                       (v[j] >= '0' && v[j] <= '9') || v[j] == '.' || v[j] == '_' || v[j] == '-';
            if (!name)
                return defer(x);
            if (!eq_nocase(v, vl, "utf-8"))
                return BAD(vs, "only UTF-8 is accepted");
        }
        if (m == 2 && !((vl == 3 && memcmp(v, "yes", 3) == 0) || (vl == 2 && memcmp(v, "no", 2) == 0)))
            return defer(x);
        i = (size_t)(q - b) + 1;
        next = m + 1;
    }
    if (next == 0)
        return defer(x); /* no version */
    x->pos = end + 2;
    return ST_OK;
}

static int pi(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t s = x->pos + 2, i = s;
    /* the end first: a PI is read whole */
    const unsigned char *q = b + s;
    size_t end;
    for (;;) {
        q = q < b + len ? memchr(q, '?', (size_t)(b + len - q)) : NULL;
        if (q == NULL || q + 1 >= b + len)
            return need(x, b, len, final);
        if (q[1] == '>')
            break;
        q++;
    }
    end = (size_t)(q - b);
    if (x->where == W_START && starts(b, end + 1, x->pos, "<?xml") == 1 && s + 3 < end &&
        is_blank(b[s + 3]))
        return xmldecl(x, b, end);
    size_t plen;
    int r = qname(x, b, end + 1, true, &i, &plen); /* b[end] is '?': the name stops there */
    if (r != ST_OK)
        return r;
    if (i - s == 3 && memcmp(b + s, "xml", 3) == 0)
        return BAD(x->pos, "an XML declaration only at the start of the document");
    if (plen != 0 || eq_nocase(b + s, i - s, "xml"))
        return defer(x); /* a colon, or the reserved target in other cases: libxml2's rules */
    if (i < end && !is_blank(b[i]))
        return BAD(i, "bad processing instruction target");
    if (check_chars(x, b, i, end) != ST_OK)
        return ST_ERR;
    x->pos = end + 2;
    return ST_OK;
}

static int cdata(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t s = x->pos + 9, i = s;
    for (;;) {
        const unsigned char *q = i < len ? memchr(b + i, ']', len - i) : NULL;
        if (q == NULL || (size_t)(q - b) + 2 >= len)
            return need(x, b, len, final);
        i = (size_t)(q - b);
        if (b[i + 1] == ']' && b[i + 2] == '>')
            break;
        i++;
    }
    if (check_chars(x, b, s, i) != ST_OK)
        return ST_ERR;
    emit_eol(x, b, s, i);
    x->pos = i + 3;
    return ST_OK;
}

/* An attribute value from *p (after the quote) to the closing quote, decoded into x->vals. */
static int attval(pt__xt_t *x, const unsigned char *b, size_t len, bool final, size_t *p,
                  unsigned char q, bool *refs)
{
    size_t i = *p;
    for (;;) {
        size_t run = i;
        while (i < len && b[i] >= 0x20 && b[i] < 0x80 && b[i] != q && b[i] != '<' && b[i] != '&')
            i++;
        if (i > run && pt_xbuf_append(&x->vals, b + run, i - run) != 0)
            return fail_at(x, b, i, PT_XP_NOMEM, "out of memory");
        if (i >= len)
            return need(x, b, len, final);
        unsigned char c = b[i];
        char o[4];
        size_t n = 0;
        if (c == q) {
            *p = i + 1;
            return ST_OK;
        }
        if (c == '<')
            return BAD(i, "'<' in an attribute value");
        if (c == '&') {
            *refs = true;
            int r = ref(x, b, len, final, &i, o, &n);
            if (r != ST_OK)
                return r;
        } else if (c == '\r') {
            if (i + 1 >= len)
                return need(x, b, len, final);
            i += b[i + 1] == '\n' ? 2 : 1;
            o[0] = ' ', n = 1;
        } else if (c == '\t' || c == '\n') {
            i++;
            o[0] = ' ', n = 1;
        } else {
            uint32_t cp;
            int k = u8(b + i, len - i, &cp);
            if (k == 0)
                return need(x, b, len, final);
            if (k < 0)
                return BAD(i, "%s", W_UTF8);
            memcpy(o, b + i, (size_t)k);
            n = (size_t)k;
            i += (size_t)k;
        }
        if (pt_xbuf_append(&x->vals, o, n) != 0)
            return fail_at(x, b, i, PT_XP_NOMEM, "out of memory");
    }
}

static uint32_t hash(const unsigned char *s, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Inserts item `idx` with key hash h; returns the index of an equal one (per eq) or -1. */
static int dup_insert(pt__xt_t *x, uint32_t h, unsigned idx, const unsigned char *b, bool expanded)
{
    const att_t *a = &x->ats[idx];
    for (uint32_t s = h & x->tmask;; s = (s + 1) & x->tmask) {
        if (x->stamp[s] != x->gen) {
            x->stamp[s] = x->gen;
            x->slot[s] = (uint16_t)idx;
            return -1;
        }
        const att_t *o = &x->ats[x->slot[s]];
        bool same;
        if (expanded)
            same = o->qlen - o->plen == a->qlen - a->plen && o->ulen == a->ulen &&
                   memcmp(b + o->qoff + o->plen, b + a->qoff + a->plen, a->qlen - a->plen) == 0 &&
                   memcmp(o->uri, a->uri, a->ulen) == 0;
        else
            same = o->qlen == a->qlen && memcmp(b + o->qoff, b + a->qoff, a->qlen) == 0;
        if (same)
            return x->slot[s];
    }
}

/*
 * libxml2 refuses a namespace name its URI parser does not read. That
 * parser is the judge here too; the names a worker sees are few and come
 * again and again, so the last ones it accepted are remembered per thread.
 */
#define URI_MEMO 16
#define URI_MEMO_LEN 200

static _Thread_local struct {
    uint32_t len[URI_MEMO];
    char s[URI_MEMO][URI_MEMO_LEN];
    unsigned next;
} memo;

static bool ns_uri_ok(const unsigned char *v, size_t n)
{
    if (n == 0)
        return true;
    for (unsigned i = 0; i < URI_MEMO; i++)
        if (memo.len[i] == n && memcmp(memo.s[i], v, n) == 0)
            return true;
    char stackbuf[URI_MEMO_LEN + 1];
    char *z = n < sizeof(stackbuf) ? stackbuf : malloc(n + 1);
    if (z == NULL)
        return false;
    memcpy(z, v, n);
    z[n] = '\0';
    xmlURIPtr u = xmlParseURI(z);
    if (z != stackbuf)
        free(z);
    if (u == NULL)
        return false;
    xmlFreeURI(u);
    if (n <= URI_MEMO_LEN) {
        unsigned k = memo.next++ % URI_MEMO;
        memcpy(memo.s[k], v, n);
        memo.len[k] = (uint32_t)n;
    }
    return true;
}

/* The binding of prefix b[p..p+n) (n 0: default); NULL when none. */
static const nsb_t *lookup(const pt__xt_t *x, const unsigned char *b, size_t p, size_t n)
{
    for (unsigned i = x->nns; i-- > 0;) {
        const nsb_t *s = &x->ns[i];
        if (s->plen == n && pt__same(b + s->poff, b + p, n))
            return s;
    }
    return NULL;
}

/* The namespace of the element named at b[qs..] (prefix length eplen). */
static inline __attribute__((always_inline)) int elem_ns(pt__xt_t *x, const unsigned char *b, size_t qs, size_t eplen, const char **euri,
                   size_t *eulen)
{
    *euri = NULL;
    *eulen = 0;
    if (eplen != 0) {
        if ((eplen == 3 && memcmp(b + qs, "xml", 3) == 0) ||
            (eplen == 5 && memcmp(b + qs, "xmlns", 5) == 0))
            return defer(x);
        const nsb_t *s = lookup(x, b, qs, eplen);
        if (s == NULL)
            return BAD(qs, "undeclared namespace prefix");
        *euri = (const char *)x->uris.data + s->uoff, *eulen = s->ulen;
    } else if (x->dns >= 0 && x->ns[x->dns].ulen != 0) {
        const nsb_t *s = &x->ns[x->dns];
        *euri = (const char *)x->uris.data + s->uoff, *eulen = s->ulen;
    }
    return ST_OK;
}

static int stag(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t p = x->pos + 1, qs = p, eplen;
    int r = qname(x, b, len, final, &p, &eplen);
    if (r != ST_OK)
        return r;
    size_t qe = p;
    unsigned nat = 0, ndecl = 0, cnt = 0;
    bool empty;
    x->vals.len = 0;
    for (;;) {
        size_t ws = p;
        while (p < len && is_blank(b[p]))
            p++;
        if (p >= len)
            return need(x, b, len, final);
        if (b[p] == '>') {
            p++;
            empty = false;
            break;
        }
        if (b[p] == '/') {
            if (p + 1 >= len)
                return need(x, b, len, final);
            if (b[p + 1] != '>')
                return BAD(p, "'/' not followed by '>' in a start tag");
            p += 2;
            empty = true;
            break;
        }
        if (p == ws)
            return BAD(p, "attributes must be separated by whitespace");
        size_t as = p, plen;
        if ((r = qname(x, b, len, final, &p, &plen)) != ST_OK)
            return r;
        size_t ae = p;
        while (p < len && is_blank(b[p]))
            p++;
        if (p >= len)
            return need(x, b, len, final);
        if (b[p] != '=')
            return BAD(p, "'=' expected after an attribute name");
        p++;
        while (p < len && is_blank(b[p]))
            p++;
        if (p >= len)
            return need(x, b, len, final);
        if (b[p] != '"' && b[p] != '\'')
            return BAD(p, "attribute value not quoted");
        unsigned char q = b[p++];
        size_t voff = x->vals.len;
        bool refs = false;
        if ((r = attval(x, b, len, final, &p, q, &refs)) != ST_OK)
            return r;
        bool decl = (plen == 5 || ae - as == 5) && memcmp(b + as, "xmlns", 5) == 0;
        if (decl ? ++ndecl > x->max_attrs : ++nat > x->max_attrs)
            return fail_at(x, b, x->pos, PT_XP_LIMIT,
                           "element <%.*s> has more than %u attributes or namespace declarations",
                           (int)(qe - qs > 64 ? 64 : qe - qs), (const char *)b + qs, x->max_attrs);
        att_t *a = &x->ats[cnt++];
        a->qoff = as, a->qlen = ae - as, a->plen = plen;
        a->voff = voff, a->vlen = x->vals.len - voff;
        a->xmlns = decl;
        a->refs = refs;
        a->uri = NULL, a->ulen = 0;
    }
    /* the whole tag is here: depth, namespaces, duplicates */
    if (x->depth + 1 > x->max_depth)
        return fail_at(x, b, x->pos, PT_XP_LIMIT, "elements nested deeper than %u", x->max_depth);
    el_t *e = &x->els[x->depth];
    e->qoff = qs, e->qlen = qe - qs, e->nsmark = x->nns, e->dns = x->dns, e->urimark = x->uris.len;
    for (unsigned i = 0; i < cnt; i++) {
        const att_t *a = &x->ats[i];
        if (!a->xmlns)
            continue;
        const unsigned char *v = (const unsigned char *)x->vals.data + a->voff;
        size_t pfx = a->plen == 0 ? 0 : a->qlen - a->plen - 1;
        const unsigned char *pp = b + a->qoff + a->plen + 1;
        if ((pfx == 3 && memcmp(pp, "xml", 3) == 0) || (pfx == 5 && memcmp(pp, "xmlns", 5) == 0) ||
            (a->vlen == strlen(XML_NS_URI) && memcmp(v, XML_NS_URI, a->vlen) == 0) ||
            (a->vlen == strlen(XMLNS_URI) && memcmp(v, XMLNS_URI, a->vlen) == 0) ||
            (pfx != 0 && a->vlen == 0) || a->refs)
            return defer(x); /* the reserved names, xmlns:p="", references: libxml2's rules */
        if (!ns_uri_ok(v, a->vlen))
            return BAD(a->qoff, "a namespace name that is not a valid URI");
        if (x->nns == x->cap_ns) {
            unsigned nc = x->cap_ns * 2;
            nsb_t *nn = x->a->realloc(x->a->ud, x->ns, nc * sizeof(*nn));
            if (nn == NULL)
                return fail_at(x, b, x->pos, PT_XP_NOMEM, "out of memory");
            x->ns = nn, x->cap_ns = nc;
        }
        if (pfx == 0)
            x->dns = (int)x->nns;
        x->head.ns_epoch++;
        nsb_t *s = &x->ns[x->nns++];
        s->poff = pfx == 0 ? 0 : (size_t)(pp - b);
        s->plen = pfx;
        s->uoff = x->uris.len;
        s->ulen = a->vlen;
        if (pt_xbuf_append(&x->uris, v, a->vlen) != 0)
            return fail_at(x, b, x->pos, PT_XP_NOMEM, "out of memory");
    }
    /* the element's namespace */
    const char *euri;
    size_t eulen;
    if ((r = elem_ns(x, b, qs, eplen, &euri, &eulen)) != ST_OK)
        return r;
    /* attributes' namespaces; duplicates by qualified name, then by expanded name */
    x->gen++;
    unsigned nout = 0;
    for (unsigned i = 0; i < cnt; i++) {
        att_t *a = &x->ats[i];
        if (cnt > 1 && dup_insert(x, hash(b + a->qoff, a->qlen, 2166136261u), i, b, false) >= 0)
            return BAD(a->qoff, "attribute given twice");
        if (a->xmlns || a->plen == 0)
            continue;
        if (a->plen == 3 && memcmp(b + a->qoff, "xml", 3) == 0) {
            if (a->qlen == 6 && memcmp(b + a->qoff + 4, "id", 2) == 0)
                return defer(x); /* libxml2's tree builder checks xml:id */
            a->uri = XML_NS_URI, a->ulen = strlen(XML_NS_URI);
            continue;
        }
        if (a->plen == 5 && memcmp(b + a->qoff, "xmlns", 5) == 0)
            return defer(x);
        const nsb_t *s = lookup(x, b, a->qoff, a->plen);
        if (s == NULL)
            return BAD(a->qoff, "undeclared namespace prefix");
        a->uri = (const char *)x->uris.data + s->uoff, a->ulen = s->ulen;
    }
    x->gen++;
    for (unsigned i = 0; i < cnt; i++) {
        const att_t *a = &x->ats[i];
        if (a->xmlns)
            continue;
        if (a->plen != 0 && cnt > 1) {
            uint32_t h = hash(b + a->qoff + a->plen + 1, a->qlen - a->plen - 1, 2166136261u);
            if (dup_insert(x, hash((const unsigned char *)a->uri, a->ulen, h), i, b, true) >= 0)
                return BAD(a->qoff, "attribute given twice (same namespace and name)");
        }
        pt__xt_attr_t *o = &x->out[nout++];
        size_t skip = a->plen == 0 ? 0 : a->plen + 1;
        o->local = (const char *)b + a->qoff + skip, o->llen = a->qlen - skip;
        o->uri = a->uri, o->ulen = a->ulen;
        o->val = (const char *)x->vals.data + a->voff, o->vlen = a->vlen;
    }
    size_t lskip = eplen == 0 ? 0 : eplen + 1;
    x->pos = p;
    x->cb->start(x->ud, (const char *)b + qs + lskip, qe - qs - lskip, euri, eulen, x->out, nout);
    if (empty) {
        x->cb->end(x->ud);
        x->nns = e->nsmark;
        x->dns = e->dns;
        x->uris.len = e->urimark;
        x->where = x->depth == 0 ? W_EPILOG : W_CONTENT;
    } else {
        x->depth++;
        x->where = W_CONTENT;
    }
    return ST_OK;
}

/* Attributes the fast path reads in one tag, at most (more: the general path). */
#define FAST_ATTRS 8

/*
 * The rest of a start tag with attributes for stag_plain(), from qe (just
 * after the element's name, at a blank, '/' or '>'): attributes with ASCII
 * names (at most one colon), '=' right after the name, values of printable
 * ASCII only (no reference, '<', tab, CR or LF: those need decoding), no
 * namespace declaration and no xml/xmlns prefix, at most FAST_ATTRS, not the
 * root. The values are handed over in place. Every check stag() makes is
 * made here, but on any failure (a repeated attribute, an undeclared prefix,
 * a cap, a cut) this returns ST_OTHER with nothing done, and stag() then
 * reads the tag again and tells what is wrong in its words. Else the same
 * events as stag(), and the leaf event when the text and end tag follow.
 */
static int stag_attrs(pt__xt_t *x, const unsigned char *b, size_t len, size_t qs, size_t qe,
                      size_t eplen)
{
    struct {
        size_t qoff, qlen, plen, voff, vlen;
    } at[FAST_ATTRS];
    unsigned cnt = 0, cap = x->max_attrs < FAST_ATTRS ? x->max_attrs : FAST_ATTRS;
    size_t p = qe;
    bool empty;
    if (x->depth == 0 || x->depth + 1 > x->max_depth)
        return ST_OTHER;
    for (;;) {
        size_t ws = p;
        while (p < len && is_blank(b[p]))
            p++;
        if (p >= len)
            return ST_OTHER;
        if (b[p] == '>') {
            p++;
            empty = false;
            break;
        }
        if (b[p] == '/') {
            if (p + 1 >= len || b[p + 1] != '>')
                return ST_OTHER;
            p += 2;
            empty = true;
            break;
        }
        if (p == ws || cnt == cap || !(ncls[b[p]] & N_START))
            return ST_OTHER;
        size_t as = p, plen = 0;
        p = name_run(b, p + 1, len);
        if (p < len && b[p] == ':') {
            plen = p - as;
            if (++p >= len || !(ncls[b[p]] & N_START))
                return ST_OTHER;
            p = name_run(b, p + 1, len);
        }
        if (p + 1 >= len || b[p] != '=' || p - as > MAX_NAME)
            return ST_OTHER;
        size_t an = p - as;
        if (((plen == 0 ? an : plen) == 5 && memcmp(b + as, "xmlns", 5) == 0) ||
            (plen == 3 && memcmp(b + as, "xml", 3) == 0))
            return ST_OTHER; /* a declaration, or a reserved prefix */
        unsigned char q = b[p + 1];
        if (q != '"' && q != '\'')
            return ST_OTHER;
        size_t vs = p + 2;
        p = vs;
        while (p < len && b[p] >= 0x20 && b[p] < 0x80 && b[p] != q && b[p] != '<' && b[p] != '&')
            p++;
        if (p >= len || b[p] != q)
            return ST_OTHER;
        at[cnt].qoff = as, at[cnt].qlen = an, at[cnt].plen = plen;
        at[cnt].voff = vs, at[cnt].vlen = p - vs;
        cnt++;
        p++;
    }
    /* the element's namespace, without failing */
    const char *euri = NULL;
    size_t eulen = 0;
    if (eplen != 0) {
        if ((eplen == 3 && memcmp(b + qs, "xml", 3) == 0) ||
            (eplen == 5 && memcmp(b + qs, "xmlns", 5) == 0))
            return ST_OTHER;
        const nsb_t *s = lookup(x, b, qs, eplen);
        if (s == NULL)
            return ST_OTHER;
        euri = (const char *)x->uris.data + s->uoff, eulen = s->ulen;
    } else if (x->dns >= 0 && x->ns[x->dns].ulen != 0) {
        euri = (const char *)x->uris.data + x->ns[x->dns].uoff, eulen = x->ns[x->dns].ulen;
    }
    /* attributes' namespaces; duplicates by qualified and by expanded name */
    pt__xt_attr_t *o = x->out;
    for (unsigned i = 0; i < cnt; i++) {
        size_t skip = at[i].plen == 0 ? 0 : at[i].plen + 1;
        for (unsigned k = 0; k < i; k++)
            if (at[k].qlen == at[i].qlen && pt__same(b + at[k].qoff, b + at[i].qoff, at[i].qlen))
                return ST_OTHER;
        o[i].uri = NULL, o[i].ulen = 0;
        o[i].local = (const char *)b + at[i].qoff + skip, o[i].llen = at[i].qlen - skip;
        o[i].val = (const char *)b + at[i].voff, o[i].vlen = at[i].vlen;
        if (at[i].plen == 0)
            continue;
        const nsb_t *s = lookup(x, b, at[i].qoff, at[i].plen);
        if (s == NULL)
            return ST_OTHER;
        o[i].uri = (const char *)x->uris.data + s->uoff, o[i].ulen = s->ulen;
        for (unsigned k = 0; k < i; k++)
            if (o[k].uri != NULL && o[k].ulen == o[i].ulen && o[k].llen == o[i].llen &&
                pt__same(o[k].local, o[i].local, o[i].llen) &&
                pt__same(o[k].uri, o[i].uri, o[i].ulen))
                return ST_OTHER;
    }
    size_t lskip = eplen == 0 ? 0 : eplen + 1, ql = qe - qs;
    const char *local = (const char *)b + qs + lskip;
    if (x->cb->leaf != NULL) {
        if (empty) {
            x->pos = p;
            x->cb->leaf(x->ud, local, ql - lskip, euri, eulen, o, cnt, (const char *)b + p, 0);
            return ST_OK;
        }
        size_t t1 = text_run(b, p, len), et = t1 + 2 + ql;
        if (et < len && b[t1] == '<' && b[t1 + 1] == '/' && pt__same(b + t1 + 2, b + qs, ql) &&
            b[et] == '>') {
            x->pos = et + 1;
            x->cb->leaf(x->ud, local, ql - lskip, euri, eulen, o, cnt, (const char *)b + p,
                        t1 - p);
            return ST_OK;
        }
    }
    x->pos = p;
    if (empty) {
        x->cb->start(x->ud, local, ql - lskip, euri, eulen, o, cnt);
        x->cb->end(x->ud);
        return ST_OK;
    }
    el_t *e = &x->els[x->depth++];
    e->qoff = qs, e->qlen = ql, e->nsmark = x->nns, e->dns = x->dns, e->urimark = x->uris.len;
    x->where = W_CONTENT;
    x->cb->start(x->ud, local, ql - lskip, euri, eulen, o, cnt);
    return ST_OK;
}

/*
 * The common start tag, <name> or <prefix:name> with ASCII names (with
 * attributes: stag_attrs), read with less ceremony; ST_OTHER (nothing done)
 * for any other tag, which stag() then reads. The same checks in the same
 * order.
 */
static int stag_plain(pt__xt_t *x, const unsigned char *b, size_t len)
{
    size_t qs = x->pos + 1, p = qs, eplen = 0;
    if (x->general || p >= len || !(ncls[b[p]] & N_START))
        return ST_OTHER;
    p = name_run(b, p + 1, len);
    if (p < len && b[p] == ':') {
        eplen = p - qs;
        if (++p >= len || !(ncls[b[p]] & N_START))
            return ST_OTHER;
        p = name_run(b, p + 1, len);
    }
    if (p >= len || p - qs > MAX_NAME)
        return ST_OTHER;
    if (b[p] != '>')
        return is_blank(b[p]) || b[p] == '/' ? stag_attrs(x, b, len, qs, p, eplen) : ST_OTHER;
    if (x->depth + 1 > x->max_depth)
        return fail_at(x, b, x->pos, PT_XP_LIMIT, "elements nested deeper than %u", x->max_depth);
    const char *euri;
    size_t eulen;
    int r = elem_ns(x, b, qs, eplen, &euri, &eulen);
    if (r != ST_OK)
        return r;
    size_t lskip = eplen == 0 ? 0 : eplen + 1, ql = p - qs;
    if (x->cb->leaf != NULL && x->depth > 0) {
        /* <name>text</name> in one piece: one event (see xml_tok.h) */
        size_t t0 = p + 1, t1 = text_run(b, t0, len), et = t1 + 2 + ql;
        if (et < len && b[t1] == '<' && b[t1 + 1] == '/' && pt__same(b + t1 + 2, b + qs, ql) &&
            b[et] == '>') {
            x->pos = et + 1;
            x->cb->leaf(x->ud, (const char *)b + qs + lskip, ql - lskip, euri, eulen, x->out, 0,
                        (const char *)b + t0, t1 - t0);
            return ST_OK;
        }
    }
    el_t *e = &x->els[x->depth++];
    e->qoff = qs, e->qlen = ql, e->nsmark = x->nns, e->dns = x->dns, e->urimark = x->uris.len;
    x->pos = p + 1;
    x->where = W_CONTENT;
    x->cb->start(x->ud, (const char *)b + qs + lskip, ql - lskip, euri, eulen, x->out, 0);
    return ST_OK;
}

static int etag(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t p = x->pos + 2, plen;
    const el_t *e = &x->els[x->depth - 1];
    bool same = len - p > e->qlen && pt__same(b + p, b + e->qoff, e->qlen);
    if (same && (b[p + e->qlen] == '>' || (!(ncls[b[p + e->qlen]] & N_CHAR) &&
                                           b[p + e->qlen] != ':' && b[p + e->qlen] < 0x80))) {
        p += e->qlen; /* the open element's name, and it ends there */
    } else {
        int r = qname(x, b, len, final, &p, &plen);
        if (r != ST_OK)
            return r;
        size_t n = p - (x->pos + 2);
        if (n != e->qlen || memcmp(b + x->pos + 2, b + e->qoff, n) != 0)
            return BAD(x->pos, "mismatched end tag");
    }
    while (p < len && is_blank(b[p]))
        p++;
    if (p >= len)
        return need(x, b, len, final);
    if (b[p] != '>')
        return BAD(p, "'>' expected to close an end tag");
    x->pos = p + 1;
    x->cb->end(x->ud);
    x->nns = e->nsmark;
    x->dns = e->dns;
    x->uris.len = e->urimark;
    if (--x->depth == 0)
        x->where = W_EPILOG;
    return ST_OK;
}

static int markup(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t p = x->pos;
    if (p + 1 >= len)
        return need(x, b, len, final);
    unsigned char c = b[p + 1];
    if (c == '/') {
        if (x->where != W_CONTENT)
            return BAD(p, x->where == W_EPILOG ? "content after the root element"
                                               : "an end tag before the root element");
        return etag(x, b, len, final);
    }
    if (c == '?')
        return pi(x, b, len, final);
    if (c == '!') {
        int m = starts(b, len, p, "<!--");
        if (m == 1)
            return comment(x, b, len, final);
        if (x->where == W_CONTENT && (m = starts(b, len, p, "<![CDATA[")) != 0)
            return m == 1 ? cdata(x, b, len, final) : need(x, b, len, final);
        if (x->where != W_CONTENT && x->where != W_EPILOG &&
            (m = starts(b, len, p, "<!DOCTYPE")) != 0) {
            if (m < 0)
                return need(x, b, len, final);
            return fail_at(x, b, p, PT_XP_DOCTYPE, "a DOCTYPE is not accepted (no DTDs, no entities)");
        }
        if (m < 0 || (p + 2 < len && b[p + 2] == '-' && p + 3 >= len))
            return need(x, b, len, final);
        return BAD(p, "not well-formed ('<!' starts no comment or CDATA section)");
    }
    if (x->where == W_EPILOG)
        return BAD(p, "content after the root element");
    int r = stag_plain(x, b, len);
    return r != ST_OTHER ? r : stag(x, b, len, final);
}

/* Character data in content, handed over as it comes. */
static int chardata(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    size_t p = x->pos, run = p;
    int r = ST_OK;
    for (;;) {
        p = text_run(b, p, len);
        if (p >= len)
            break;
        unsigned char c = b[p];
        if (c == '<')
            break;
        if (c == ']') {
            if (p + 2 >= len && !final) {
                r = ST_NEED;
                break;
            }
            if (p + 2 < len && b[p + 1] == ']' && b[p + 2] == '>')
                return BAD(p, "']]>' in text");
            p++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t cp;
            int k = u8(b + p, len - p, &cp);
            if (k == 0 && !final) {
                r = ST_NEED;
                break;
            }
            if (k <= 0)
                return BAD(p, "%s", W_UTF8);
            p += (size_t)k;
            continue;
        }
        if (c != '&' && c != '\r')
            return BAD(p, "%s", W_UTF8);
        if (p > run)
            x->cb->text(x->ud, (const char *)b + run, p - run);
        run = p;
        if (c == '\r') {
            if (p + 1 >= len && !final) {
                r = ST_NEED;
                break;
            }
            if (p + 1 < len && b[p + 1] == '\n') {
                run = ++p; /* the LF stays */
            } else {
                x->cb->text(x->ud, "\n", 1);
                run = ++p;
            }
            continue;
        }
        char o[4];
        size_t n = 0;
        if ((r = ref(x, b, len, final, &p, o, &n)) != ST_OK)
            break;
        x->cb->text(x->ud, o, n);
        run = p;
    }
    if (r == ST_ERR)
        return r;
    if (p > run)
        x->cb->text(x->ud, (const char *)b + run, p - run);
    x->pos = p;
    return r;
}

/* Outside the root only blanks may stand between markup. */
static int blanks(pt__xt_t *x, const unsigned char *b, size_t len)
{
    size_t p = x->pos;
    while (p < len && is_blank(b[p]))
        p++;
    if (p < len && b[p] != '<')
        return BAD(p, x->where == W_EPILOG
                          ? "content after the root element"
                          : "no XML document (empty, or text where the root element should be)");
    x->pos = p;
    return ST_OK;
}

static int start(pt__xt_t *x, const unsigned char *b, size_t len, bool final)
{
    /* decide on a BOM and "<?xml " with all 9 bytes there (or all there is) */
    if (!final && len < 9)
        return ST_NEED;
    if (starts(b, len, 0, "\xEF\xBB\xBF") == 1)
        x->pos = 3;
    if (len - x->pos >= 2 && ((b[x->pos] == 0xFE && b[x->pos + 1] == 0xFF) ||
                              (b[x->pos] == 0xFF && b[x->pos + 1] == 0xFE)))
        return BAD(x->pos, "only UTF-8 is accepted");
    if (starts(b, len, x->pos, "<?xml") == 1 && x->pos + 5 < len && is_blank(b[x->pos + 5])) {
        int r = pi(x, b, len, final);
        if (r != ST_OK)
            return r;
    }
    x->where = W_PROLOG;
    return ST_OK;
}

pt__xp_fail_t pt__xt_run(pt__xt_t *x, const char *buf, size_t len, bool final)
{
    if (x->fail != PT_XP_OK || x->defer || (!final && len < x->retry_at))
        return x->fail;
    const unsigned char *b = (const unsigned char *)buf;
    int r = ST_OK;
    if (x->where == W_START)
        r = start(x, b, len, final);
    while (r == ST_OK && x->pos < len) {
        if (b[x->pos] == '<')
            r = markup(x, b, len, final);
        else if (x->where == W_CONTENT)
            r = chardata(x, b, len, final);
        else
            r = blanks(x, b, len);
    }
    if (r == ST_NEED)
        x->retry_at = len + (len - x->pos) + 1;
    if (final && r == ST_OK && !x->defer) {
        if (x->where == W_CONTENT)
            fail_at(x, b, len, PT_XP_NOT_XML, "element <%.*s> not closed",
                    (int)(x->els[x->depth - 1].qlen > 64 ? 64 : x->els[x->depth - 1].qlen),
                    buf + x->els[x->depth - 1].qoff);
        else if (x->where != W_EPILOG)
            fail_at(x, b, len, PT_XP_NOT_XML, "%s",
                    len == 0 ? "empty document"
                             : "no XML document (empty, or text where the root element should be)");
    }
    return x->fail;
}

pt__xt_t *pt__xt_new(const pt_allocator_t *a, const pt__xp_opts_t *o, const pt__xt_cb_t *cb,
                     void *ud)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt__xt_t *x = pt_xalloc(a, sizeof(*x));
    if (x == NULL)
        return NULL;
    memset(x, 0, sizeof(*x));
    x->a = a;
    x->dns = -1;
    x->cb = cb;
    x->ud = ud;
    x->max_depth = o->max_depth != 0 ? o->max_depth : 64;
    x->max_attrs = o->max_attrs != 0 ? o->max_attrs : 64;
    if (x->max_attrs > 16000)
        x->max_attrs = 16000; /* slot indexes are 16-bit */
    pt_xbuf_init(&x->uris, a);
    pt_xbuf_init(&x->vals, a);
    x->cap_ats = 2 * x->max_attrs;
    x->cap_ns = 16;
    uint32_t t = 8;
    while (t < 2 * x->cap_ats)
        t *= 2;
    x->tmask = t - 1;
    x->els = pt_xalloc(a, x->max_depth * sizeof(*x->els));
    x->ns = pt_xalloc(a, x->cap_ns * sizeof(*x->ns));
    x->ats = pt_xalloc(a, x->cap_ats * sizeof(*x->ats));
    x->out = pt_xalloc(a, x->cap_ats * sizeof(*x->out));
    x->stamp = pt_xalloc(a, t * sizeof(*x->stamp));
    x->slot = pt_xalloc(a, t * sizeof(*x->slot));
    /* never NULL data: an empty value or namespace name is data + offset too */
    if (x->els == NULL || x->ns == NULL || x->ats == NULL || x->out == NULL || x->stamp == NULL ||
        x->slot == NULL || pt_xbuf_reserve(&x->uris, 256) != 0 ||
        pt_xbuf_reserve(&x->vals, 256) != 0) {
        pt__xt_free(x);
        return NULL;
    }
    memset(x->stamp, 0, t * sizeof(*x->stamp));
    return x;
}

bool pt__xt_deferred(const pt__xt_t *x) { return x->defer; }
void pt__xt_general_only(pt__xt_t *x) { x->general = true; }
const char *pt__xt_msg(const pt__xt_t *x) { return x->msg; }
int pt__xt_line(const pt__xt_t *x) { return x->line; }
int pt__xt_col(const pt__xt_t *x) { return x->col; }

void pt__xt_free(pt__xt_t *x)
{
    if (x == NULL)
        return;
    pt_xbuf_dispose(&x->uris);
    pt_xbuf_dispose(&x->vals);
    pt_xfree(x->a, x->els);
    pt_xfree(x->a, x->ns);
    pt_xfree(x->a, x->ats);
    pt_xfree(x->a, x->out);
    pt_xfree(x->a, x->stamp);
    pt_xfree(x->a, x->slot);
    pt_xfree(x->a, x);
}
