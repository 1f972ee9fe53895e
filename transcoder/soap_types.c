/*
 * soap_types.c -- XSD simple types: checking a text form, and its JSON form.
 *
 * Both directions go through pt__xst_check(): a request value is turned into
 * its XSD text and checked before it is written, a response value is checked
 * before it is converted, so "what the schema allows" is defined once.
 */
#include "soap_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim_all(const char **s, size_t *n);

/* Leading and trailing XML whitespace off (mostly there is none). */
static inline void trim(const char **s, size_t *n)
{
    if (*n == 0 || is_ws(**s) || is_ws((*s)[*n - 1]))
        trim_all(s, n);
}

static void trim_all(const char **s, size_t *n)
{
    while (*n > 0 && is_ws(**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_ws((*s)[*n - 1]))
        (*n)--;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Parses [+-]digits; *big when it does not fit 38 digits. */
static bool parse_int(const char *s, size_t n, __int128 *v, bool *big)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i == n)
        return false;
    __int128 x = 0;
    size_t digits = 0;
    *big = false;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        if (x == 0 && s[i] == '0')
            continue;
        if (++digits > 37)
            *big = true;
        else
            x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return true;
}

/* [+-]? digits ('.' digits?)? | [+-]? '.' digits; counts digits for the facets */
static bool parse_decimal(const char *s, size_t n, int *total, int *frac)
{
    size_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    int ip = 0, fp = 0, lead = 1;
    size_t seen = 0;
    for (; i < n && is_digit(s[i]); i++, seen++) {
        if (lead && s[i] == '0')
            continue;
        lead = 0;
        ip++;
    }
    if (i < n && s[i] == '.') {
        i++;
        int trailing = 0;
        for (; i < n && is_digit(s[i]); i++, seen++) {
            fp++;
            trailing = s[i] == '0' ? trailing + 1 : 0;
        }
        fp -= trailing;
    }
    if (i != n || seen == 0)
        return false;
    *total = ip + fp;
    *frac = fp;
    return true;
}

static bool parse_double_lex(const char *s, size_t n)
{
    if ((n == 3 && (memcmp(s, "INF", 3) == 0 || memcmp(s, "NaN", 3) == 0)) ||
        (n == 4 && (memcmp(s, "-INF", 4) == 0 || memcmp(s, "+INF", 4) == 0)))
        return true;
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && is_digit(s[i]); i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && is_digit(s[i]); i++)
            digits++;
    if (digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        for (; i < n && is_digit(s[i]); i++)
            ed++;
        if (ed == 0)
            return false;
    }
    return i == n;
}

static bool b64_ok(const char *s, size_t n, size_t *octets)
{
    size_t cnt = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (is_ws(c))
            continue;
        if (c == '=') {
            pad++;
            cnt++;
            continue;
        }
        if (pad > 0)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '+' ||
              c == '/'))
            return false;
        cnt++;
    }
    if (cnt % 4 != 0 || pad > 2)
        return false;
    *octets = cnt / 4 * 3 - pad;
    return true;
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/*
 * Lexical forms of the date/time built-ins, by hand (they were regexps: a
 * regexp run per value cost more than the rest of the conversion). Exactly
 * the languages of
 *   dateTime  -?Y{4,}-MM-DDThh:mm:ss(.f+)?TZ     date  -?Y{4,}-MM-DD TZ
 *   time      hh:mm:ss(.f+)? TZ                   TZ    (Z|[+-]hh:mm)?
 *   duration  -?P(nY)?(nM)?(nD)?(T(nH)?(nM)?(n(.n)?S)?)?, not ending in P or T
 *   gYear -?Y{4,}TZ  gYearMonth -?Y{4,}-MM TZ  gMonth --MM TZ  gMonthDay --MM-DD TZ  gDay ---DD TZ
 * (digits only, no range checks), held to those regexps in test_soap.
 */
typedef struct cur {
    const char *s;
    size_t n, i;
} cur_t;

static bool lit(cur_t *c, char ch)
{
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return true;
    }
    return false;
}

/* the literal prefix p */
static bool lits(cur_t *c, const char *p)
{
    size_t n = strlen(p);
    if (c->n - c->i < n || memcmp(c->s + c->i, p, n) != 0)
        return false;
    c->i += n;
    return true;
}

static size_t digits(cur_t *c)
{
    size_t k = 0;
    while (c->i < c->n && is_digit(c->s[c->i]))
        c->i++, k++;
    return k;
}

static bool dig2(cur_t *c)
{
    if (c->n - c->i < 2 || !is_digit(c->s[c->i]) || !is_digit(c->s[c->i + 1]))
        return false;
    c->i += 2;
    return true;
}

static bool year(cur_t *c)
{
    lit(c, '-');
    return digits(c) >= 4;
}

static bool frac(cur_t *c) { return !lit(c, '.') || digits(c) >= 1; }

static bool hms(cur_t *c)
{
    return dig2(c) && lit(c, ':') && dig2(c) && lit(c, ':') && dig2(c) && frac(c);
}

/* the optional zone, then the end */
static bool tz_end(cur_t *c)
{
    if (c->i == c->n)
        return true;
    if (lit(c, 'Z'))
        return c->i == c->n;
    if (!lit(c, '+') && !lit(c, '-'))
        return false;
    return dig2(c) && lit(c, ':') && dig2(c) && c->i == c->n;
}

/* (nU)? for each unit in order; *any when one was there */
static bool units(cur_t *c, const char *u, bool frac_last, bool *any)
{
    for (size_t k = 0; u[k] != '\0'; k++) {
        size_t at = c->i, d = digits(c);
        if (d == 0) {
            c->i = at;
            continue;
        }
        if (frac_last && u[k + 1] == '\0' && c->i < c->n && c->s[c->i] == '.') {
            if (!frac(c))
                return false;
        }
        if (!lit(c, u[k])) {
            /* the digits belong to a later unit */
            c->i = at;
            continue;
        }
        *any = true;
    }
    return true;
}

static bool duration(cur_t *c)
{
    lit(c, '-');
    if (!lit(c, 'P'))
        return false;
    bool any = false;
    if (!units(c, "YMD", false, &any))
        return false;
    if (lit(c, 'T')) {
        bool t = false;
        if (!units(c, "HMS", true, &t) || !t)
            return false;
        any = true;
    }
    return any && c->i == c->n;
}

static inline bool d(const char *s, size_t i) { return (unsigned)(s[i] - '0') < 10; }

/* YYYY-MM-DD and hh:mm:ss exactly: the common forms, accepted at a glance */
static bool ymd10(const char *s)
{
    return d(s, 0) && d(s, 1) && d(s, 2) && d(s, 3) && s[4] == '-' && d(s, 5) && d(s, 6) &&
           s[7] == '-' && d(s, 8) && d(s, 9);
}

static bool hms8(const char *s)
{
    return d(s, 0) && d(s, 1) && s[2] == ':' && d(s, 3) && d(s, 4) && s[5] == ':' && d(s, 6) &&
           d(s, 7);
}

bool pt__xsd_lex_ok(pt_xprim_t prim, unsigned sub, const char *s, size_t n)
{
    /* the common forms first (each is in the language below); anything else is read in full */
    if (prim == PT_XSP_DATE && n == 10 && ymd10(s))
        return true;
    if (prim == PT_XSP_DATETIME && (n == 19 || (n == 20 && s[19] == 'Z')) && ymd10(s) &&
        s[10] == 'T' && hms8(s + 11))
        return true;
    cur_t c = {s, n, 0};
    switch (prim) {
    case PT_XSP_DATETIME:
        return year(&c) && lit(&c, '-') && dig2(&c) && lit(&c, '-') && dig2(&c) && lit(&c, 'T') &&
               hms(&c) && tz_end(&c);
    case PT_XSP_DATE:
        return year(&c) && lit(&c, '-') && dig2(&c) && lit(&c, '-') && dig2(&c) && tz_end(&c);
    case PT_XSP_TIME:
        return hms(&c) && tz_end(&c);
    case PT_XSP_DURATION:
        return duration(&c);
    case PT_XSP_GREG:
        switch (sub) {
        case 0:
            return year(&c) && tz_end(&c);
        case 1:
            return year(&c) && lit(&c, '-') && dig2(&c) && tz_end(&c);
        case 2:
            return lits(&c, "--") && dig2(&c) && tz_end(&c);
        case 3:
            return lits(&c, "--") && dig2(&c) && lit(&c, '-') && dig2(&c) && tz_end(&c);
        case 4:
            return lits(&c, "---") && dig2(&c) && tz_end(&c);
        default:
            return false;
        }
    default:
        return true;
    }
}

static bool re_match(const pt_wsdl_t *w, xmlRegexpPtr re, const char *s, size_t n)
{
    char stackbuf[256];
    char *b = stackbuf;
    if (n >= sizeof(stackbuf)) {
        b = pt_xalloc(w->pool.a, n + 1);
        if (b == NULL)
            return false;
    }
    memcpy(b, s, n);
    b[n] = '\0';
    bool ok = xmlRegexpExec(re, BAD_CAST b) == 1;
    if (b != stackbuf)
        pt_xfree(w->pool.a, b);
    return ok;
}

const char *pt__xst_check(const pt_wsdl_t *w, const pt_xst_t *st, const char *s, size_t n)
{
    if (st->prim != PT_XSP_STRING && st->prim != PT_XSP_ANYSIMPLE)
        trim(&s, &n);
    /* the length in characters only matters to the length facets */
    bool want_len = st->has_len || st->has_minlen || st->has_maxlen;
    size_t length = want_len ? utf8_chars(s, n) : 0;
    int total = 0, frac = 0;
    double num = 0;
    bool has_num = false;
    switch (st->prim) {
    case PT_XSP_STRING:
    case PT_XSP_ANYSIMPLE:
        break;
    case PT_XSP_BOOLEAN:
        if (!((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0) ||
              (n == 1 && (s[0] == '0' || s[0] == '1'))))
            return "is not a boolean (true, false, 1, 0)";
        break;
    case PT_XSP_INTEGER: {
        __int128 v;
        bool big;
        if (!parse_int(s, n, &v, &big))
            return "is not an integer";
        if (big && (st->has_imin || st->has_imax))
            return "is out of range";
        if ((st->has_imin && v < st->imin) || (st->has_imax && v > st->imax))
            return "is out of range";
        parse_decimal(s, n, &total, &frac);
        has_num = true;
        break;
    }
    case PT_XSP_DECIMAL:
        if (!parse_decimal(s, n, &total, &frac))
            return "is not a decimal number";
        has_num = true;
        break;
    case PT_XSP_FLOAT:
    case PT_XSP_DOUBLE:
        if (!parse_double_lex(s, n))
            return "is not a floating-point number";
        has_num = true;
        break;
    case PT_XSP_DATETIME:
        if (!pt__xsd_lex_ok(st->prim, 0, s, n))
            return "is not an xs:dateTime (YYYY-MM-DDThh:mm:ss[.f][zone])";
        break;
    case PT_XSP_DATE:
        if (!pt__xsd_lex_ok(st->prim, 0, s, n))
            return "is not an xs:date (YYYY-MM-DD[zone])";
        break;
    case PT_XSP_TIME:
        if (!pt__xsd_lex_ok(st->prim, 0, s, n))
            return "is not an xs:time (hh:mm:ss[.f][zone])";
        break;
    case PT_XSP_DURATION:
        if (!pt__xsd_lex_ok(st->prim, 0, s, n))
            return "is not an xs:duration (PnYnMnDTnHnMnS)";
        break;
    case PT_XSP_GREG:
        if (!pt__xsd_lex_ok(st->prim, st->sub, s, n))
            return "is not a valid Gregorian date part (gYear, gMonth, ...)";
        break;
    case PT_XSP_BASE64: {
        size_t oct;
        if (!b64_ok(s, n, &oct))
            return "is not base64";
        length = oct;
        break;
    }
    case PT_XSP_HEX:
        if (n % 2 != 0)
            return "is not hexBinary (odd length)";
        for (size_t i = 0; i < n; i++)
            if (!is_digit(s[i]) && !((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f'))
                return "is not hexBinary";
        length = n / 2;
        break;
    }
    if (st->enum_cnt > 0) {
        bool hit = false;
        for (size_t i = 0; i < st->enum_cnt && !hit; i++)
            hit = strlen(st->enums[i]) == n && memcmp(st->enums[i], s, n) == 0;
        if (!hit)
            return "is not one of the enumeration values";
    }
    if (st->has_len && length != st->len)
        return "has the wrong length";
    if (st->has_minlen && length < st->minlen)
        return "is too short (minLength)";
    if (st->has_maxlen && length > st->maxlen)
        return "is too long (maxLength)";
    for (size_t i = 0; i < st->pattern_cnt; i++)
        if (!re_match(w, st->patterns[i], s, n))
            return "does not match the pattern";
    if (has_num && (st->has_min || st->has_max)) {
        char tmp[128];
        size_t k = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
        memcpy(tmp, s, k);
        tmp[k] = '\0';
        num = strtod(tmp, NULL);
        if (st->has_min && (st->min_excl ? !(num > st->min) : !(num >= st->min)))
            return "is below the minimum";
        if (st->has_max && (st->max_excl ? !(num < st->max) : !(num <= st->max)))
            return "is above the maximum";
    }
    if (st->total_digits >= 0 && total > st->total_digits)
        return "has too many digits (totalDigits)";
    if (st->fraction_digits >= 0 && frac > st->fraction_digits)
        return "has too many fraction digits (fractionDigits)";
    return NULL;
}

static int put_double(double d, bool is_float, pt_xbuf_t *out)
{
    if (isnan(d))
        return pt_xbuf_puts(out, "\"NaN\"");
    if (isinf(d))
        return pt_xbuf_puts(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    char b[64];
    /* shortest text that reads back as the same value */
    for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
        snprintf(b, sizeof(b), "%.*g", prec, d);
        if (is_float ? strtof(b, NULL) == (float)d : strtod(b, NULL) == d)
            break;
    }
    return pt_xbuf_puts(out, b);
}

int pt__xst_to_json(const pt_xst_t *st, const char *s, size_t n, pt_xbuf_t *out)
{
    if (st->prim != PT_XSP_STRING && st->prim != PT_XSP_ANYSIMPLE)
        trim(&s, &n);
    switch (st->prim) {
    case PT_XSP_BOOLEAN:
        return pt_xbuf_puts(out, (s[0] == 't' || s[0] == '1') ? "true" : "false");
    case PT_XSP_INTEGER: {
        /* canonical digits: no '+', no leading zeros, no "-0" */
        size_t i = 0;
        bool neg = false;
        if (s[0] == '+' || s[0] == '-')
            neg = s[i++] == '-';
        while (i + 1 < n && s[i] == '0')
            i++;
        if (n - i == 1 && s[i] == '0')
            neg = false;
        /* |v| <= 2^53 (9007199254740992) is exact as a JSON number everywhere */
        size_t d = n - i;
        bool fits = st->int_small || d < 16 || (d == 16 && memcmp(s + i, "9007199254740992", 16) <= 0);
        int rc = 0;
        if (!fits)
            rc = pt_xbuf_putc(out, '"');
        if (rc == 0 && neg)
            rc = pt_xbuf_putc(out, '-');
        if (rc == 0)
            rc = pt_xbuf_append(out, s + i, n - i);
        if (rc == 0 && !fits)
            rc = pt_xbuf_putc(out, '"');
        return rc;
    }
    case PT_XSP_FLOAT:
    case PT_XSP_DOUBLE: {
        if (n == 3 && memcmp(s, "NaN", 3) == 0)
            return pt_xbuf_puts(out, "\"NaN\"");
        if ((n == 3 && memcmp(s, "INF", 3) == 0) || (n == 4 && memcmp(s, "+INF", 4) == 0))
            return pt_xbuf_puts(out, "\"Infinity\"");
        if (n == 4 && memcmp(s, "-INF", 4) == 0)
            return pt_xbuf_puts(out, "\"-Infinity\"");
        char stackbuf[128];
        char *tmp = stackbuf;
        if (n >= sizeof(stackbuf) && (tmp = pt_xalloc(out->a, n + 1)) == NULL)
            return PT_XERR_NOMEM;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        double d = strtod(tmp, NULL);
        if (tmp != stackbuf)
            pt_xfree(out->a, tmp);
        return put_double(d, st->prim == PT_XSP_FLOAT, out);
    }
    default:
        /* decimal (precision kept), strings, enums, dates as sent, base64, hex */
        return pt__put_json_str(out, s, n);
    }
}

/* s[0..n) as a JSON string that needs no escaping (checked lexical forms). */
static inline int put_plain_str(pt_xbuf_t *out, const char *s, size_t n)
{
    int rc = pt_xbuf_reserve(out, n + 2);
    if (rc != 0)
        return rc;
    uint8_t *o = out->data + out->len;
    o[0] = '"';
    pt__copy(o + 1, s, n);
    o[n + 1] = '"';
    out->len += n + 2;
    return 0;
}

/* An integer of at most 18 digits, checked against the type's bounds and
 * written in canonical form; 1 when it is longer (the general path decides). */
static int int_json(const pt_xst_t *st, const char *s, size_t n, pt_xbuf_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && (s[0] == '+' || s[0] == '-'))
        neg = s[i++] == '-';
    if (i == n)
        return PT_XERR_INVALID;
    if (n - i > 18)
        return 1;
    int64_t v = 0;
    size_t d0 = i;
    for (; i < n; i++) {
        unsigned dv = (unsigned)(unsigned char)s[i] - '0';
        if (dv > 9)
            return PT_XERR_INVALID;
        v = v * 10 + (int64_t)dv;
    }
    __int128 sv = neg ? -(__int128)v : (__int128)v;
    if ((st->has_imin && sv < st->imin) || (st->has_imax && sv > st->imax))
        return PT_XERR_INVALID;
    while (d0 + 1 < n && s[d0] == '0')
        d0++;
    size_t d = n - d0;
    /* |v| <= 2^53 is exact as a JSON number everywhere (as pt__xst_to_json) */
    bool fits = st->int_small || d < 16 || (d == 16 && v <= 9007199254740992);
    int rc = pt_xbuf_reserve(out, d + 3);
    if (rc != 0)
        return rc;
    uint8_t *o = out->data + out->len, *o0 = o;
    if (!fits)
        *o++ = '"';
    if (neg && v != 0)
        *o++ = '-';
    pt__copy(o, s + d0, d);
    o += d;
    if (!fits)
        *o++ = '"';
    out->len += (size_t)(o - o0);
    return 0;
}

int pt__xst_json(const pt_wsdl_t *w, const pt_xst_t *st, const char *s, size_t n, pt_xbuf_t *out)
{
    if (!st->facets && (st->enum_cnt == 0 || (st->prim == PT_XSP_STRING && st->enum_lens != NULL))) {
        switch (st->prim) {
        case PT_XSP_STRING:
            if (st->enum_cnt > 0) {
                size_t i = 0;
                while (i < st->enum_cnt && !(st->enum_lens[i] == n && pt__same(st->enums[i], s, n)))
                    i++;
                if (i == st->enum_cnt)
                    return PT_XERR_INVALID;
            }
            return pt__put_json_str_fast(out, s, n);
        case PT_XSP_ANYSIMPLE:
            return pt__put_json_str_fast(out, s, n);
        case PT_XSP_BOOLEAN:
            trim(&s, &n);
            if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 1 && s[0] == '1'))
                return pt_xbuf_append(out, "true", 4);
            if ((n == 5 && memcmp(s, "false", 5) == 0) || (n == 1 && s[0] == '0'))
                return pt_xbuf_append(out, "false", 5);
            return PT_XERR_INVALID;
        case PT_XSP_INTEGER: {
            const char *t = s;
            size_t tn = n;
            trim(&t, &tn);
            int rc = int_json(st, t, tn, out);
            if (rc <= 0)
                return rc;
            break; /* long: the general path */
        }
        case PT_XSP_DECIMAL: {
            int total, frac;
            trim(&s, &n);
            if (!parse_decimal(s, n, &total, &frac))
                return PT_XERR_INVALID;
            return put_plain_str(out, s, n);
        }
        case PT_XSP_DATETIME:
        case PT_XSP_DATE:
        case PT_XSP_TIME:
        case PT_XSP_DURATION:
        case PT_XSP_GREG:
            trim(&s, &n);
            if (!pt__xsd_lex_ok(st->prim, st->sub, s, n))
                return PT_XERR_INVALID;
            return put_plain_str(out, s, n);
        default:
            break;
        }
    }
    if (pt__xst_check(w, st, s, n) != NULL)
        return PT_XERR_INVALID;
    return pt__xst_to_json(st, s, n, out);
}

const pt_xfield_t *pt__xct_field(const pt_xct_t *ct, const char *ns, const char *local)
{
    for (size_t i = 0; i < ct->field_cnt; i++) {
        const pt_xelem_t *e = ct->fields[i].elem;
        if (strcmp(e->name, local) == 0 && strcmp(e->ns, ns) == 0)
            return &ct->fields[i];
    }
    return NULL;
}
