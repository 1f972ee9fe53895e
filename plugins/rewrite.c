/*
 * rewrite.c -- the `rewrite` filter: change the path (and host) sent upstream.
 *
 *   - rewrite: { prefix: /api/, replace: / }              # /api/users -> /users
 *   - rewrite: { regex: "^/v1/(\\w+)/(.*)$", replace: "/$1/v2/$2" }
 *   - rewrite: { host: api.internal }                     # Host / :authority upstream
 *
 * Routing has already happened when filters run, so a rewrite changes what
 * the upstream sees, never which route is taken. The query string is kept.
 *
 * Regexes are PCRE2, compiled (and JIT-compiled when the library has a JIT)
 * at load time; the replacement is compiled too ($N, ${N}, ${name}, $$), and
 * group references are checked against the pattern then, not per request.
 * Per request, the match data comes from the request arena through a PCRE2
 * general context whose allocator is the arena: no malloc, nothing to free,
 * no per-worker state. A match limit bounds catastrophic backtracking.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/req.h"
#include "portico/status.h"

#define MATCH_LIMIT 100000u
#define DEPTH_LIMIT 10000u

typedef struct rpart {
    pt_str_t lit; /* literal text, when group < 0 */
    int group;    /* capture group number, or -1 */
} rpart_t;

typedef struct rewrite_conf {
    /* raw config */
    const char *prefix, *replace, *regex, *host;
    /* compiled */
    pcre2_code *code;
    pcre2_match_context *mctx;
    rpart_t *parts;
    size_t part_cnt;
    pt_str_t prefix_s, replace_s, host_s;
} rewrite_conf_t;

static const pt_conf_field_t fields[] = {
    {"prefix", PT_CONF_T_STR, offsetof(rewrite_conf_t, prefix), 0, 0, false, NULL},
    {"replace", PT_CONF_T_STR, offsetof(rewrite_conf_t, replace), 0, 0, false, NULL},
    {"regex", PT_CONF_T_STR, offsetof(rewrite_conf_t, regex), 0, 0, false, NULL},
    {"host", PT_CONF_T_STR, offsetof(rewrite_conf_t, host), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* ---- load time ------------------------------------------------------------------ */

static void free_code(void *p)
{
    pcre2_code_free(p);
}

static void free_mctx(void *p)
{
    pcre2_match_context_free(p);
}

/* "$1", "${1}", "${name}", "$$" into parts; every group must exist in the pattern. */
static int compile_replacement(pt_conf_cx_t *cx, const pt_conf_node_t *n, rewrite_conf_t *c)
{
    const char *s = c->replace;
    size_t len = strlen(s);
    uint32_t groups = 0;
    pcre2_pattern_info(c->code, PCRE2_INFO_CAPTURECOUNT, &groups);
    c->parts = pt_conf_alloc(cx, (len + 1) * sizeof(*c->parts));
    char *lit = pt_conf_alloc(cx, len + 1);
    size_t lit_start = 0, lit_len = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '$') {
            lit[lit_len++] = s[i];
            continue;
        }
        if (i + 1 < len && s[i + 1] == '$') {
            lit[lit_len++] = '$';
            i++;
            continue;
        }
        const char *name;
        size_t nl;
        if (i + 1 < len && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            if (close == NULL)
                return pt_conf_error(cx, n, "replace: unterminated '${' (write $$ for a '$')");
            name = s + i + 2;
            nl = (size_t)(close - name);
            i = (size_t)(close - s);
        } else {
            name = s + i + 1;
            nl = 0;
            while (i + 1 + nl < len && name[nl] >= '0' && name[nl] <= '9' && nl < 5)
                nl++;
            if (nl == 0)
                return pt_conf_error(cx, n,
                                     "replace: '$' must be followed by a group number, "
                                     "{name} or '$'");
            i += nl;
        }
        if (nl == 0 || nl > 32)
            return pt_conf_error(cx, n, "replace: bad group reference");
        int group;
        char tmp[33];
        memcpy(tmp, name, nl);
        tmp[nl] = '\0';
        if (tmp[0] >= '0' && tmp[0] <= '9') {
            group = 0;
            for (size_t k = 0; k < nl; k++) {
                if (tmp[k] < '0' || tmp[k] > '9')
                    return pt_conf_error(cx, n, "replace: bad group reference '%s'", tmp);
                group = group * 10 + (tmp[k] - '0');
            }
            if ((uint32_t)group > groups)
                return pt_conf_error(cx, n, "replace: group $%d does not exist (the regex has %u)",
                                     group, groups);
        } else {
            group = pcre2_substring_number_from_name(c->code, (PCRE2_SPTR)tmp);
            if (group < 0)
                return pt_conf_error(cx, n, "replace: the regex has no group named '%s'", tmp);
        }
        if (lit_len != lit_start)
            c->parts[c->part_cnt++] = (rpart_t){{lit + lit_start, lit_len - lit_start}, -1};
        lit_start = lit_len;
        c->parts[c->part_cnt++] = (rpart_t){PT_STR_NULL, group};
    }
    if (lit_len != lit_start)
        c->parts[c->part_cnt++] = (rpart_t){{lit + lit_start, lit_len - lit_start}, -1};
    return 0;
}

static int compile_regex(pt_conf_cx_t *cx, const pt_conf_node_t *node, rewrite_conf_t *c)
{
    const pt_conf_node_t *rn = pt_conf_map_get(node, "regex");
    int err;
    PCRE2_SIZE off;
    c->code = pcre2_compile((PCRE2_SPTR)c->regex, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_BACKSLASH_C,
                            &err, &off, NULL);
    if (c->code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return pt_conf_error(cx, rn, "regex: %s at offset %zu", (const char *)msg, (size_t)off);
    }
    pt_conf_on_release(cx, free_code, c->code);
    uint32_t has_jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
    if (has_jit)
        (void)pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    /* Read-only during matching, so one context is shared by every worker. */
    c->mctx = pcre2_match_context_create(NULL);
    if (c->mctx == NULL)
        return pt_conf_error(cx, rn, "regex: out of memory");
    pt_conf_on_release(cx, free_mctx, c->mctx);
    pcre2_set_match_limit(c->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(c->mctx, DEPTH_LIMIT);
    return compile_replacement(cx, pt_conf_map_get(node, "replace"), c);
}

/*
 * The replacement's own text becomes part of the request target: a '?' or
 * '#' would move bytes into the query or fragment upstream, and spaces or
 * control bytes would corrupt the request line. Captures come from the
 * already validated path, so checking the literal text is enough.
 */
static bool replacement_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == '?' || *s == '#' || *s == 0x7f)
            return false;
    return true;
}

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rewrite_conf_t *c = conf;
    if (c->replace != NULL && !replacement_ok(c->replace))
        return pt_conf_error(cx, pt_conf_map_get(node, "replace"),
                             "rewrite: replace may not contain '?', '#', spaces or control "
                             "characters (the query string is kept as it is)");
    if (c->replace != NULL && c->prefix == NULL && c->regex == NULL)
        return pt_conf_error(cx, pt_conf_map_get(node, "replace"),
                             "rewrite: replace needs prefix: or regex:");
    if (c->prefix == NULL && c->regex == NULL && c->host == NULL)
        return pt_conf_error(cx, node, "rewrite: give prefix:, regex: and/or host:");
    if (c->prefix != NULL && c->regex != NULL)
        return pt_conf_error(cx, pt_conf_map_get(node, "regex"),
                             "rewrite: prefix and regex cannot be combined (use two rewrites)");
    if (c->prefix != NULL) {
        if (c->prefix[0] != '/')
            return pt_conf_error(cx, pt_conf_map_get(node, "prefix"),
                                 "rewrite: prefix must start with '/'");
        c->prefix_s = pt_str_c(c->prefix);
        /* default: strip the prefix, keeping one '/' ("/api/x" -> "/x" for /api or /api/) */
        size_t pl = strlen(c->prefix);
        c->replace_s = pt_str_c(c->replace != NULL         ? c->replace
                                : c->prefix[pl - 1] == '/' ? "/"
                                                           : "");
    }
    if (c->regex != NULL) {
        if (c->replace == NULL)
            return pt_conf_error(cx, node, "rewrite: regex needs replace:");
        if (compile_regex(cx, node, c) != 0)
            return PT_ERR_INVALID;
    }
    if (c->host != NULL) {
        c->host_s = pt_str_c(c->host);
        for (size_t i = 0; i < c->host_s.len; i++) {
            char ch = c->host[i];
            if (ch <= ' ' || ch == '/' || ch == '?' || ch == '#' || ch == '@' || ch == 0x7f)
                return pt_conf_error(cx, pt_conf_map_get(node, "host"), "rewrite: bad host '%s'",
                                     c->host);
        }
        if (c->host_s.len == 0)
            return pt_conf_error(cx, pt_conf_map_get(node, "host"), "rewrite: empty host");
    }
    return 0;
}

/* ---- request time --------------------------------------------------------------- */

static void *arena_malloc(PCRE2_SIZE size, void *data)
{
    return pt_arena_alloc(data, size);
}

static void arena_free(void *p, void *data)
{
    (void)p; /* released with the request */
    (void)data;
}

/* Sets the path to `a` + `b` (either may be empty), with a leading '/' guaranteed. */
static int set_path2(pt_req_t *req, pt_str_t a, pt_str_t b)
{
    size_t len = a.len + b.len;
    bool need_slash = len == 0 || (a.len != 0 ? a.base[0] : b.base[0]) != '/';
    char *buf = pt_arena_alloc(pt_req_arena(req), len + 2);
    if (buf == NULL)
        return PT_ERR_LIMIT;
    size_t o = 0;
    if (need_slash)
        buf[o++] = '/';
    if (a.len != 0)
        memcpy(buf + o, a.base, a.len);
    o += a.len;
    if (b.len != 0)
        memcpy(buf + o, b.base, b.len);
    o += b.len;
    return pt_req_set_path(req, (pt_str_t){buf, o});
}

static int rewrite_regex(const rewrite_conf_t *c, pt_req_t *req)
{
    pt_arena_t *arena = pt_req_arena(req);
    pcre2_general_context *g = pcre2_general_context_create(arena_malloc, arena_free, arena);
    if (g == NULL)
        return PT_ERR_LIMIT;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(c->code, g);
    if (md == NULL)
        return PT_ERR_LIMIT;
    pt_str_t path = pt_req_path(req);
    if (path.base == NULL) /* no path: match (and copy from) "" */
        path = (pt_str_t){"", 0};
    int rc = pcre2_match(c->code, (PCRE2_SPTR)path.base, path.len, 0, 0,
                         md, c->mctx);
    if (rc <= 0) /* no match (or match limit hit): the path is left as it is */
        return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint32_t pairs = pcre2_get_ovector_count(md);
    size_t total = 0;
    for (size_t i = 0; i < c->part_cnt; i++) {
        const rpart_t *p = &c->parts[i];
        if (p->group < 0)
            total += p->lit.len;
        else if ((uint32_t)p->group < pairs && ov[2 * p->group] != PCRE2_UNSET)
            total += ov[2 * p->group + 1] - ov[2 * p->group];
    }
    /* Like sed: the matched part is replaced, text around it is kept. */
    size_t before = ov[0], after = path.len - ov[1];
    char *buf = pt_arena_alloc(arena, before + total + after + 1);
    if (buf == NULL)
        return PT_ERR_LIMIT;
    size_t o = 0;
    memcpy(buf, path.base, before);
    o += before;
    for (size_t i = 0; i < c->part_cnt; i++) {
        const rpart_t *p = &c->parts[i];
        if (p->group < 0) {
            memcpy(buf + o, p->lit.base, p->lit.len);
            o += p->lit.len;
        } else if ((uint32_t)p->group < pairs && ov[2 * p->group] != PCRE2_UNSET) {
            size_t gl = ov[2 * p->group + 1] - ov[2 * p->group];
            memcpy(buf + o, path.base + ov[2 * p->group], gl);
            o += gl;
        }
    }
    if (after != 0)
        memcpy(buf + o, path.base + ov[1], after);
    o += after;
    return set_path2(req, (pt_str_t){buf, o}, PT_STR_NULL);
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const rewrite_conf_t *c = f->conf;
    int rc = 0;
    if (c->prefix != NULL) {
        pt_str_t path = pt_req_path(req);
        if (pt_str_has_prefix(path, c->prefix_s))
            rc = set_path2(req, c->replace_s,
                           (pt_str_t){path.base + c->prefix_s.len, path.len - c->prefix_s.len});
    } else if (c->code != NULL) {
        rc = rewrite_regex(c, req);
    }
    if (rc == 0 && c->host != NULL)
        rc = pt_req_set_authority(req, c->host_s);
    if (rc != 0) {
        pt_req_fail(req, PT_ERR_LIMIT, "rewrite filter: request arena full");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_rewrite = {
    .abi = PT_FILTER_ABI,
    .name = "rewrite",
    .priority = 200,
    .conf_size = sizeof(rewrite_conf_t),
    .fields = fields,
    .parse_conf = parse_conf,
    .on_request_headers = on_request_headers,
};
