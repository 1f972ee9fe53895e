/*
 * cache_policy.c -- RFC 9111 rules for the `cache` filter (see cache_policy.h).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "plugins/cache_policy.h"

void pc_cc_init(pc_cc_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->max_stale = cc->min_fresh = cc->stale_if_error = -1;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL); /* strchr finds the NUL too */
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* delta-seconds: digits only, capped; -2 when invalid. */
static int64_t delta_seconds(pt_str_t v)
{
    if (v.len == 0)
        return -2;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return -2;
        if (n < PC_DELTA_MAX)
            n = n * 10 + (v.base[i] - '0');
    }
    return n > PC_DELTA_MAX ? PC_DELTA_MAX : n;
}

/* A repeated directive keeps the smallest (most conservative) value; an invalid one counts as 0. */
static void set_delta(int64_t *slot, pt_str_t v, bool has_value)
{
    int64_t n = has_value ? delta_seconds(v) : -2;
    if (n < 0)
        n = 0;
    if (*slot < 0 || n < *slot)
        *slot = n;
}

static bool name_is(pt_str_t name, const char *lit) { return pt_str_ieq(name, pt_str_c(lit)); }

static void directive(pc_cc_t *cc, pt_str_t name, pt_str_t val, bool has_value)
{
    if (name_is(name, "no-store"))
        cc->flags |= PC_NO_STORE;
    else if (name_is(name, "no-cache"))
        cc->flags |= PC_NO_CACHE;
    else if (name_is(name, "private"))
        cc->flags |= PC_PRIVATE;
    else if (name_is(name, "public"))
        cc->flags |= PC_PUBLIC;
    else if (name_is(name, "must-revalidate"))
        cc->flags |= PC_MUST_REVALIDATE;
    else if (name_is(name, "proxy-revalidate"))
        cc->flags |= PC_PROXY_REVALIDATE;
    else if (name_is(name, "no-transform"))
        cc->flags |= PC_NO_TRANSFORM;
    else if (name_is(name, "only-if-cached"))
        cc->flags |= PC_ONLY_IF_CACHED;
    else if (name_is(name, "must-understand"))
        cc->flags |= PC_MUST_UNDERSTAND;
    else if (name_is(name, "immutable"))
        cc->flags |= PC_IMMUTABLE;
    else if (name_is(name, "max-age"))
        set_delta(&cc->max_age, val, has_value);
    else if (name_is(name, "s-maxage"))
        set_delta(&cc->s_maxage, val, has_value);
    else if (name_is(name, "min-fresh"))
        set_delta(&cc->min_fresh, val, has_value);
    else if (name_is(name, "stale-if-error"))
        set_delta(&cc->stale_if_error, val, has_value);
    else if (name_is(name, "max-stale")) {
        if (!has_value) {
            cc->max_stale = PC_DELTA_MAX;
        } else {
            int64_t n = delta_seconds(val);
            if (n >= 0 && (cc->max_stale < 0 || n < cc->max_stale))
                cc->max_stale = n;
        }
    }
}

void pc_cc_parse(pc_cc_t *cc, pt_str_t value)
{
    if (value.base == NULL)
        return;
    const char *p = value.base, *end = value.base + value.len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *n0 = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        pt_str_t name = {n0, (size_t)(p - n0)};
        while (p < end && is_ows(*p))
            p++;
        pt_str_t val = {p, 0};
        bool has_value = false, ok = name.len != 0;
        char unq[32];
        if (p < end && *p == '=') {
            p++;
            while (p < end && is_ows(*p))
                p++;
            has_value = true;
            if (p < end && *p == '"') { /* quoted-string; numeric ones are unquoted into unq */
                p++;
                size_t u = 0;
                bool fits = true;
                while (p < end && *p != '"') {
                    if (*p == '\\' && p + 1 < end)
                        p++;
                    if (u < sizeof(unq))
                        unq[u++] = *p;
                    else
                        fits = false;
                    p++;
                }
                if (p < end)
                    p++; /* closing quote */
                else
                    ok = false; /* unterminated: ignore the directive */
                val = fits ? (pt_str_t){unq, u} : (pt_str_t){"x", 1};
            } else {
                const char *v0 = p;
                while (p < end && is_tchar((unsigned char)*p))
                    p++;
                val = (pt_str_t){v0, (size_t)(p - v0)};
            }
        }
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p != ',') { /* junk: skip to the next comma, drop this directive */
            ok = false;
            while (p < end && *p != ',')
                p++;
        }
        if (ok)
            directive(cc, name, val, has_value);
    }
}

/* ---- dates --------------------------------------------------------------- */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

static int month_of(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, months[i], 3) == 0)
            return i;
    return -1;
}

static bool digits(const char *p, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* "HH:MM:SS" */
static bool hms(const char *p, int *h, int *m, int *s)
{
    return digits(p, 2, h) && p[2] == ':' && digits(p + 3, 2, m) && p[5] == ':' &&
           digits(p + 6, 2, s) && *h < 24 && *m < 60 && *s < 61;
}

/* Days since the epoch of a proleptic Gregorian date (no timegm: no TZ state). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool assemble(int y, int mon, int d, int h, int mi, int s, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon < 0 || d < 1 || d > mdays[mon] || y < 1900 || y > 9999)
        return false;
    *out = days_from_civil(y, mon + 1, d) * 86400 + h * 3600 + mi * 60 + s;
    return true;
}

bool pc_http_date(pt_str_t s, int64_t *out)
{
    s = pt_str_trim_ows(s);
    const char *p = s.base;
    int d, y, h, mi, sec;
    if (p == NULL)
        return false;
    if (s.len == 29 && p[3] == ',' && p[4] == ' ' && p[7] == ' ' && p[11] == ' ' &&
        p[16] == ' ' && p[25] == ' ' && memcmp(p + 26, "GMT", 3) == 0) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        return digits(p + 5, 2, &d) && digits(p + 12, 4, &y) && hms(p + 17, &h, &mi, &sec) &&
               assemble(y, month_of(p + 8), d, h, mi, sec, out);
    }
    if (s.len == 24 && p[3] == ' ' && p[7] == ' ' && p[10] == ' ' && p[19] == ' ') {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        char dd[2] = {p[8] == ' ' ? '0' : p[8], p[9]};
        return digits(dd, 2, &d) && hms(p + 11, &h, &mi, &sec) && digits(p + 20, 4, &y) &&
               assemble(y, month_of(p + 4), d, h, mi, sec, out);
    }
    const char *comma = memchr(p, ',', s.len);
    if (comma != NULL && (size_t)(p + s.len - comma) == 24 && comma[1] == ' ' && comma[4] == '-' &&
        comma[8] == '-' && comma[11] == ' ' && comma[20] == ' ' && memcmp(comma + 21, "GMT", 3) == 0) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT; two-digit years within 50 years (§5.6.7) */
        if (!digits(comma + 2, 2, &d) || !digits(comma + 9, 2, &y) || !hms(comma + 12, &h, &mi, &sec))
            return false;
        y += y < 70 ? 2000 : 1900;
        return assemble(y, month_of(comma + 5), d, h, mi, sec, out);
    }
    return false;
}

size_t pc_http_date_fmt(int64_t t, char *buf, size_t cap)
{
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t rem = t - days * 86400;
    int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    /* civil_from_days */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    int n = snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[wday], (int)d,
                     months[m - 1], (int)y, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- freshness ------------------------------------------------------------ */

bool pc_status_heuristic(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

bool pc_status_understood(int status)
{
    /* 206 needs range handling this cache does not do; 304 is a revalidation answer. */
    return pc_status_heuristic(status) || status == 302 || status == 307;
}

void pc_resp_init(pc_resp_t *r, int status)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    pc_cc_init(&r->cc);
}

int64_t pc_lifetime(const pc_resp_t *r, int64_t now, int64_t default_ttl_s, bool *explicit_out)
{
    bool ex = true;
    int64_t life;
    if (r->cc.s_maxage >= 0)
        life = r->cc.s_maxage;
    else if (r->cc.max_age >= 0)
        life = r->cc.max_age;
    else if (r->has_expires) {
        int64_t date = r->has_date ? r->date : now;
        life = r->expires_valid && r->expires > date ? r->expires - date : 0;
    } else {
        ex = false;
        life = pc_status_heuristic(r->status) ? default_ttl_s : 0;
    }
    if (explicit_out != NULL)
        *explicit_out = ex;
    return life;
}

int64_t pc_initial_age(const pc_resp_t *r, int64_t response_time)
{
    int64_t apparent = r->has_date && response_time > r->date ? response_time - r->date : 0;
    int64_t age = r->age > 0 ? r->age : 0;
    return apparent > age ? apparent : age;
}

pc_nostore_t pc_storable(const pc_resp_t *r, const pc_cc_t *req_cc, bool req_auth, int64_t lifetime)
{
    bool ex = r->cc.s_maxage >= 0 || r->cc.max_age >= 0 || r->has_expires;
    if (!pc_status_understood(r->status) || (!pc_status_heuristic(r->status) && !ex))
        return PC_NOSTORE_STATUS;
    if (r->cc.flags & (PC_NO_STORE | PC_PRIVATE))
        return PC_NOSTORE_DIRECTIVE;
    if (req_cc != NULL && (req_cc->flags & PC_NO_STORE))
        return PC_NOSTORE_REQUEST;
    if (req_auth && !(r->cc.flags & (PC_PUBLIC | PC_MUST_REVALIDATE)) && r->cc.s_maxage < 0)
        return PC_NOSTORE_AUTH;
    if (r->has_set_cookie)
        return PC_NOSTORE_COOKIE;
    if (r->vary_star)
        return PC_NOSTORE_VARY_STAR;
    if (lifetime <= 0 && !r->has_validator)
        return PC_NOSTORE_LIFETIME;
    return PC_STORE_OK;
}

/* ---- Vary ------------------------------------------------------------------ */

int pc_vary_names(pt_str_t vary, char *buf, size_t cap, bool *star)
{
    size_t n = 0;
    *star = false;
    if (cap == 0)
        return -1;
    buf[0] = '\0';
    if (vary.base == NULL)
        return 0;
    const char *p = vary.base, *end = vary.base + vary.len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *t0 = p;
        while (p < end && *p != ',')
            p++;
        pt_str_t tok = pt_str_trim_ows((pt_str_t){t0, (size_t)(p - t0)});
        if (tok.len == 0)
            continue;
        if (tok.len == 1 && tok.base[0] == '*') {
            *star = true;
            continue;
        }
        for (size_t i = 0; i < tok.len; i++)
            if (!is_tchar((unsigned char)tok.base[i]))
                return -1;
        /* already listed? */
        bool dup = false;
        for (size_t s = 0; s < n && !dup;) {
            const char *nl = memchr(buf + s, '\n', n - s);
            size_t e = nl != NULL ? (size_t)(nl - buf) : n;
            dup = e - s == tok.len && pt_str_ieq((pt_str_t){buf + s, e - s}, tok);
            s = e + 1;
        }
        if (dup)
            continue;
        if (n + (n != 0) + tok.len + 1 > cap)
            return -1;
        if (n != 0)
            buf[n++] = '\n';
        for (size_t i = 0; i < tok.len; i++) {
            char c = tok.base[i];
            buf[n++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        buf[n] = '\0';
    }
    return (int)n;
}

/* ---- conditionals ---------------------------------------------------------- */

static pt_str_t opaque(pt_str_t tag)
{
    if (tag.len >= 2 && tag.base[0] == 'W' && tag.base[1] == '/')
        return (pt_str_t){tag.base + 2, tag.len - 2};
    return tag;
}

bool pc_inm_matches(pt_str_t inm, pt_str_t etag)
{
    if (etag.len == 0 || inm.base == NULL)
        return false;
    pt_str_t want = opaque(pt_str_trim_ows(etag));
    const char *p = inm.base, *end = inm.base + inm.len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p < end && *p == '*')
            return true;
        const char *t0 = p;
        if (p + 1 < end && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"')
                p++;
            if (p < end)
                p++;
        } else {
            while (p < end && *p != ',')
                p++;
        }
        pt_str_t tag = opaque((pt_str_t){t0, (size_t)(p - t0)});
        if (tag.len == want.len && tag.len != 0 && memcmp(tag.base, want.base, tag.len) == 0)
            return true;
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

bool pc_req_wants_revalidate(const pc_cc_t *req_cc, bool pragma_no_cache, bool has_cc)
{
    if (req_cc->flags & PC_NO_CACHE)
        return true;
    if (req_cc->max_age == 0)
        return true;
    return !has_cc && pragma_no_cache; /* RFC 9111 §5.4: Pragma only without Cache-Control */
}
