/*
 * waf.c -- the `waf` filter: ModSecurity v3 (libmodsecurity3) with the OWASP
 * Core Rule Set (Debian's modsecurity-crs).
 *
 *   - waf: { paranoia: 1, mode: block, body_limit: 128k, body_limit_action: reject,
 *            rules: [ local/exclusions.conf ] }
 *
 * Load time (main thread): one RulesSet per configured filter, built from a
 * generated preamble (engine, body access and processors, the paranoia level
 * as a SecAction), Debian's crs-setup.conf, the CRS request rules and the
 * `rules:` files, in that order. A rule file that does not parse is a config
 * error naming the rule file's FILE:LINE:COL; the snapshot is refused.
 *
 * Request time (the worker): a Transaction per request, fed the connection,
 * URI, headers and body, freed in on_log (which runs however the request
 * ended). The body is inspected before the upstream sees anything: the
 * filter asks the core to hold the handler until the whole body went through
 * the body filters (pt_req_buffer_body, like request_buffering: true), so a
 * refused request never reaches the upstream, not even its head. Past
 * body_limit: `reject` answers 413, `inspect_partial` inspects the first
 * body_limit bytes and lets the rest through (SecRequestBodyLimitAction's
 * Reject / ProcessPartial). Native gRPC and gRPC-Web bodies (binary
 * protobuf, CRS has no processor for them) and tunnels are inspected by
 * their headers only.
 *
 * Thread-safety (libmodsecurity 3.0.9, see the upstream issues #1726, #2536,
 * #3138, #3215): rule loading is not thread-safe (the SecLang parser has
 * globals), so it happens only here, on the main thread; a loaded RulesSet
 * is shared read-only by transactions on any thread; a Transaction belongs
 * to one request on one worker. The library is built with PCRE2 (match data
 * per call) and the CRS's persistent IP/global collections are only
 * read at paranoia 1 with the DoS and reputation blocks off (in-memory
 * collections lock writes only, #3054), so do not enable CRS's DoS
 * protection (912) here.
 *
 * One ModSecurity instance serves the process and is never destroyed:
 * ModSecurity's destructor calls xmlCleanupParser() and curl_global_cleanup(),
 * which would pull libxml2 and libcurl from under the SOAP handlers and the
 * upstream calls running on the workers. This is the only static state; it
 * is created on the main thread at the first load that uses the filter.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

/* Debian's modsecurity-crs paths. */
#define CRS_SETUP "/etc/modsecurity/crs/crs-setup.conf"
#define CRS_RULES "/usr/share/modsecurity-crs/rules/REQUEST-*.conf"
#define CRS_BEFORE "/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"

#define WAF_DEFAULT_BODY_LIMIT (128u * 1024u)
#define WAF_MAX_IDS 8 /* rule ids kept per request for the access log */

typedef struct waf_conf {
    long long paranoia;
    const char *mode;
    const char *limit_action;
    uint64_t body_limit;
    bool crs;
    const pt_conf_node_t *rules; /* raw: each item's position names its errors */
    /* built by parse_conf */
    RulesSet *rules_set;
    bool detect;
    bool partial;
} waf_conf_t;

typedef struct waf_ctx {
    Transaction *tx;
    pt_req_t *req;
    const waf_conf_t *conf;
    uint64_t body_seen;
    bool inspect_body; /* the body goes to the transaction */
    bool decided;      /* the verdict is in: the rest of the body only passes */
    /* rules that matched (from the log callback), in order */
    unsigned id_cnt;
    unsigned ids[WAF_MAX_IDS];
    unsigned named;    /* the rule the refusal names: the first of the most severe */
    int named_sev;
    char named_msg[96];
} waf_ctx_t;

static ModSecurity *g_msc; /* see the header comment: one per process, never freed */

/* ---- the rule messages ------------------------------------------------------ */

/* The value of `[key "..."]` in a ModSecurity message, copied into buf. */
static bool msg_field(const char *m, const char *key, char *buf, size_t cap)
{
    char pat[16];
    snprintf(pat, sizeof(pat), "[%s \"", key);
    const char *p = strstr(m, pat);
    if (p == NULL || cap == 0)
        return false;
    p += strlen(pat);
    const char *e = strstr(p, "\"]");
    if (e == NULL)
        return false;
    size_t n = (size_t)(e - p);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

/* The CRS's scoring and correlation rules say "the score is too high", not what matched. */
static bool scoring_rule(unsigned id)
{
    return (id >= 949000 && id < 950000) || (id >= 959000 && id < 960000) ||
           (id >= 980000 && id < 981000);
}

/* ModSecurity's log callback: one call per matched rule that logs, on the
 * request's worker, inside msc_process_*(); `data` is the request's ctx. */
static void on_msc_log(void *data, const void *message)
{
    waf_ctx_t *x = data;
    char id[16];
    if (x == NULL || message == NULL || !msg_field(message, "id", id, sizeof(id)))
        return;
    unsigned v = (unsigned)strtoul(id, NULL, 10);
    if (v == 0 || scoring_rule(v))
        return;
    for (unsigned i = 0; i < x->id_cnt; i++)
        if (x->ids[i] == v)
            return;
    /* CRS severities: 2 critical (attacks), 3 error, 4 warning, 5 notice */
    char sev[8];
    int s = msg_field(message, "severity", sev, sizeof(sev)) ? (int)strtol(sev, NULL, 10) : 9;
    if (x->named == 0 || s < x->named_sev) {
        x->named = v;
        x->named_sev = s;
        if (!msg_field(message, "msg", x->named_msg, sizeof(x->named_msg)))
            x->named_msg[0] = '\0';
    }
    if (x->id_cnt < WAF_MAX_IDS) /* the access log keeps the first few */
        x->ids[x->id_cnt++] = v;
}

/* ---- load time -------------------------------------------------------------- */

static const pt_conf_field_t fields[] = {
    {"paranoia", PT_CONF_T_INT, offsetof(waf_conf_t, paranoia), 1, 4, false, NULL},
    {"mode", PT_CONF_T_STR, offsetof(waf_conf_t, mode), 0, 0, false, NULL},
    {"body_limit", PT_CONF_T_SIZE, offsetof(waf_conf_t, body_limit), 1, 1024LL * 1024 * 1024, false, NULL},
    {"body_limit_action", PT_CONF_T_STR, offsetof(waf_conf_t, limit_action), 0, 0, false, NULL},
    {"crs", PT_CONF_T_BOOL, offsetof(waf_conf_t, crs), 0, 0, false, NULL},
    {"rules", PT_CONF_T_NODE, offsetof(waf_conf_t, rules), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void free_rules(void *data)
{
    msc_rules_cleanup(data);
}

/*
 * ModSecurity's parser errors read "Rules error. File: F. Line: L. Column: C.
 * MESSAGE" (after any earlier error of the same set). Reports them as
 * F:L:C: MESSAGE at the config node that brought the file in.
 */
static int rules_error(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *what,
                       const char *err)
{
    const char *e = err != NULL ? err : "unknown error";
    const char *last = strstr(e, "Rules error. File: ");
    while (last != NULL) {
        const char *next = strstr(last + 1, "Rules error. File: ");
        if (next == NULL)
            break;
        last = next;
    }
    if (last != NULL) {
        const char *f = last + strlen("Rules error. File: ");
        const char *fe = strstr(f, ". Line: ");
        char *end = NULL;
        unsigned long line = fe != NULL ? strtoul(fe + 8, &end, 10) : 0;
        if (line != 0 && strncmp(end, ". Column: ", 10) == 0) {
            unsigned long col = strtoul(end + 10, &end, 10);
            const char *msg = end;
            while (*msg == '.' || *msg == ' ')
                msg++;
            size_t ml = strcspn(msg, "\n");
            return pt_conf_error(cx, node, "waf: %s: %.*s:%lu:%lu: %.*s", what, (int)(fe - f), f,
                                 line, col, (int)ml, msg);
        }
    }
    size_t n = strcspn(e, "\n");
    return pt_conf_error(cx, node, "waf: %s: %.*s", what, (int)n, e);
}

/* Adds one rules file (or text when `file` is NULL). Returns 0 or reports. */
static int add_rules(pt_conf_cx_t *cx, const pt_conf_node_t *node, RulesSet *rs, const char *file,
                     const char *text, const char *what)
{
    const char *err = NULL;
    int n = file != NULL ? msc_rules_add_file(rs, file, &err) : msc_rules_add(rs, text, &err);
    if (n >= 0) {
        free((void *)err);
        return 0;
    }
    int rc = rules_error(cx, node, what, err);
    free((void *)err);
    return rc;
}

/* Our generated rules use ids 440000-440099 (a range no rule publisher claims). */
static char *preamble(const waf_conf_t *c)
{
    char *s = NULL;
    int n = asprintf(
        &s,
        "SecRuleEngine %s\n"
        "SecRequestBodyAccess On\n"
        "SecRequestBodyLimit %llu\n"
        "SecRequestBodyNoFilesLimit %llu\n"
        /* the filter enforces body_limit itself before appending */
        "SecRequestBodyLimitAction ProcessPartial\n"
        "SecResponseBodyAccess Off\n"
        "SecAuditEngine Off\n"
        "SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" "
        "\"id:440001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n"
        "SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/(?:[a-z0-9.+-]*\\+)?json\" "
        "\"id:440002,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n"
        "SecRule REQBODY_ERROR \"!@eq 0\" \"id:440003,phase:2,t:none,log,deny,status:400,"
        "msg:'Request body could not be parsed'\"\n"
        "SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" \"id:440004,phase:2,t:none,log,deny,status:400,"
        "msg:'Multipart request body failed strict validation'\"\n",
        c->detect ? "DetectionOnly" : "On", (unsigned long long)c->body_limit,
        (unsigned long long)c->body_limit);
    return n < 0 ? NULL : s;
}

/* Set after crs-setup.conf, before the CRS's own defaults (901*). */
static char *crs_settings(const waf_conf_t *c)
{
    char *s = NULL;
    int n = asprintf(
        &s,
        "SecAction \"id:440010,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level=%lld\"\n"
        /* the CRS default list, plus gRPC (whose bodies this filter does not inspect) */
        "SecRule &TX:allowed_request_content_type \"@eq 0\" \"id:440011,phase:1,pass,nolog,"
        "t:none,setvar:'tx.allowed_request_content_type=|application/x-www-form-urlencoded| "
        "|multipart/form-data| |multipart/related| |text/xml| |application/xml| "
        "|application/soap+xml| |application/json| |application/cloudevents+json| "
        "|application/cloudevents-batch+json| |application/grpc| |application/grpc+proto| "
        "|application/grpc-web| |application/grpc-web+proto| |application/grpc-web-text| "
        "|application/grpc-web-text+proto|'\"\n",
        c->paranoia);
    return n < 0 ? NULL : s;
}

static int build_rules(pt_conf_cx_t *cx, const pt_conf_node_t *node, waf_conf_t *c)
{
    char *pre = preamble(c);
    char *set = crs_settings(c);
    RulesSet *rs = msc_create_rules_set();
    if (pre == NULL || set == NULL || rs == NULL) {
        free(pre);
        free(set);
        if (rs != NULL)
            msc_rules_cleanup(rs);
        return pt_conf_error(cx, node, "waf: out of memory");
    }
    pt_conf_on_release(cx, free_rules, rs);
    c->rules_set = rs;
    int rc = add_rules(cx, node, rs, NULL, pre, "generated settings");
    free(pre);
    if (rc == 0 && c->crs) {
        rc = add_rules(cx, node, rs, CRS_SETUP, NULL, "Core Rule Set setup " CRS_SETUP);
        if (rc == 0)
            rc = add_rules(cx, node, rs, NULL, set, "generated CRS settings");
        if (rc == 0 && access(CRS_BEFORE, R_OK) == 0)
            rc = add_rules(cx, node, rs, CRS_BEFORE, NULL, "Core Rule Set exclusions");
        glob_t g;
        if (rc == 0 && glob(CRS_RULES, 0, NULL, &g) != 0)
            rc = pt_conf_error(cx, node,
                               "waf: the OWASP Core Rule Set is not installed (no %s); install "
                               "modsecurity-crs (scripts/install-deps.sh) or set crs: false",
                               CRS_RULES);
        else if (rc == 0) {
            for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) /* glob sorts: CRS order */
                rc = add_rules(cx, node, rs, g.gl_pathv[i], NULL, "Core Rule Set");
            globfree(&g);
        }
    }
    free(set);
    const pt_conf_node_t *r = c->rules;
    size_t cnt = r == NULL ? 0 : r->kind == PT_CONF_SEQ ? r->cnt : 1;
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        const pt_conf_node_t *item = r->kind == PT_CONF_SEQ ? r->items[i] : r;
        if (item->kind != PT_CONF_SCALAR || item->len == 0)
            return pt_conf_error(cx, item, "waf: rules: expected a file name");
        const char *path = pt_conf_resolve_path(cx, item, item->str);
        if (access(path, R_OK) != 0)
            return pt_conf_error(cx, item, "waf: rules: cannot read %s", path);
        rc = add_rules(cx, item, rs, path, NULL, "rules");
    }
    return rc;
}

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    waf_conf_t *c = conf;
    c->paranoia = 1;
    c->mode = "block";
    c->limit_action = "reject";
    c->body_limit = WAF_DEFAULT_BODY_LIMIT;
    c->crs = true;
    if (node != NULL && node->kind != PT_CONF_NULL &&
        pt_conf_parse_fields(cx, node, fields, c) != 0)
        return PT_ERR_INVALID;
    const pt_conf_node_t *at = node;
    if (strcmp(c->mode, "block") == 0)
        c->detect = false;
    else if (strcmp(c->mode, "detect") == 0)
        c->detect = true;
    else
        return pt_conf_error(cx, pt_conf_map_get(node, "mode"),
                             "waf: mode: expected block or detect, got \"%s\"", c->mode);
    if (strcmp(c->limit_action, "reject") == 0)
        c->partial = false;
    else if (strcmp(c->limit_action, "inspect_partial") == 0)
        c->partial = true;
    else
        return pt_conf_error(cx, pt_conf_map_get(node, "body_limit_action"),
                             "waf: body_limit_action: expected reject or inspect_partial, got \"%s\"",
                             c->limit_action);
    if (g_msc == NULL) { /* main thread, load time */
        g_msc = msc_init();
        if (g_msc == NULL)
            return pt_conf_error(cx, at, "waf: ModSecurity failed to initialise");
        msc_set_connector_info(g_msc, "portico");
        msc_set_log_cb(g_msc, on_msc_log);
    }
    return build_rules(cx, at, c);
}

/* ---- request time ----------------------------------------------------------- */

/* A ModSecurity status to the gateway's error. */
static int status_of(int http)
{
    switch (http) {
    case 400:
        return PT_ERR_INVALID;
    case 413:
        return PT_ERR_LIMIT;
    default:
        return PT_ERR_FORBIDDEN;
    }
}

/* The access log's `waf` variable: "blocked 942100,942190", "detected 941100". */
static void note(waf_ctx_t *x, const char *verdict, const char *extra)
{
    char buf[160];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", verdict);
    for (unsigned i = 0; i < x->id_cnt && n < sizeof(buf); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%c%u", i ? ',' : ' ', x->ids[i]);
    if (extra != NULL && n < sizeof(buf))
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", extra);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    (void)pt_req_var_set(x->req, PT_STR("waf"), (pt_str_t){buf, n});
}

/*
 * The verdict after a phase: CONTINUE, or RESPOND with the refusal made.
 * In detect mode the engine runs DetectionOnly: nothing is disruptive, the
 * matches are logged.
 */
static pt_fstatus_t verdict(waf_ctx_t *x)
{
    ModSecurityIntervention it = {200, 0, NULL, NULL, 0};
    int disruptive = msc_intervention(x->tx, &it);
    char id[16] = "";
    if (disruptive && x->id_cnt == 0 && it.log != NULL) { /* a deny rule of the site's own */
        (void)msg_field(it.log, "id", id, sizeof(id));
        if (!msg_field(it.log, "msg", x->named_msg, sizeof(x->named_msg)))
            x->named_msg[0] = '\0';
    }
    free(it.log);
    free(it.url);
    if (!disruptive || !it.disruptive) {
        if (x->decided && x->id_cnt != 0)
            note(x, x->conf->detect ? "detected" : "matched", NULL);
        return PT_FILTER_CONTINUE;
    }
    x->decided = true;
    note(x, "blocked", id[0] != '\0' ? id : NULL);
    char detail[200];
    if (x->id_cnt != 0)
        snprintf(detail, sizeof(detail), "blocked by rule %u%s%s%s", x->named,
                 x->named_msg[0] != '\0' ? " (" : "", x->named_msg,
                 x->named_msg[0] != '\0' ? ")" : "");
    else
        snprintf(detail, sizeof(detail), "blocked by rule %s%s%s%s", id[0] != '\0' ? id : "(unknown)",
                 x->named_msg[0] != '\0' ? " (" : "", x->named_msg,
                 x->named_msg[0] != '\0' ? ")" : "");
    (void)pt_req_reject(x->req, status_of(it.status), detail);
    return PT_FILTER_RESPOND;
}

/* Phase 2 with what the transaction has of the body. */
static pt_fstatus_t finish(waf_ctx_t *x)
{
    x->decided = true;
    msc_process_request_body(x->tx);
    return verdict(x);
}

static bool is_grpc(pt_req_t *req)
{
    pt_str_t ct = pt_headers_get(pt_req_headers(req), PT_STR("content-type"));
    return ct.len >= 16 && strncasecmp(ct.base, "application/grpc", 16) == 0;
}

static pt_fstatus_t too_large(waf_ctx_t *x)
{
    x->decided = true;
    note(x, "blocked", "body_limit");
    char detail[96];
    snprintf(detail, sizeof(detail), "request body larger than the waf inspects (%llu bytes)",
             (unsigned long long)x->conf->body_limit);
    (void)pt_req_reject(x->req, PT_ERR_LIMIT, detail);
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const waf_conf_t *c = f->conf;
    waf_ctx_t *x = ctx;
    x->req = req;
    x->conf = c;
    pt_str_t rid = pt_req_id(req);
    char idbuf[128];
    snprintf(idbuf, sizeof(idbuf), "%.*s", (int)rid.len, rid.base != NULL ? rid.base : "");
    x->tx = msc_new_transaction_with_id(g_msc, c->rules_set, idbuf, x);
    if (x->tx == NULL) {
        pt_req_fail(req, PT_ERR_NOMEM, "waf: no transaction");
        return PT_FILTER_ERROR;
    }
    pt_arena_t *a = pt_req_arena(req);
    pt_str_t ip = pt_req_client_addr(req);
    char *ipz = pt_arena_printf(a, "%.*s", (int)ip.len, ip.base != NULL ? ip.base : "");
    pt_str_t path = pt_req_path(req), query = pt_req_query(req), method = pt_req_method(req);
    char *uri = query.len != 0 ? pt_arena_printf(a, "%.*s?%.*s", (int)path.len, path.base,
                                                 (int)query.len, query.base)
                               : pt_arena_printf(a, "%.*s", (int)path.len, path.base);
    char *mz = pt_arena_printf(a, "%.*s", (int)method.len, method.base);
    if (ipz == NULL || uri == NULL || mz == NULL) {
        pt_req_fail(req, PT_ERR_LIMIT, "waf: request arena full");
        return PT_FILTER_ERROR;
    }
    int v = pt_req_http_version(req);
    msc_process_connection(x->tx, ipz, 0, "0.0.0.0", 0);
    msc_process_uri(x->tx, uri, mz, v == 20 ? "2.0" : v == 10 ? "1.0" : "1.1");
    const pt_headers_t *h = pt_req_headers(req);
    bool host = false;
    for (size_t i = 0; i < h->cnt; i++) {
        host |= pt_str_eq(h->v[i].name, PT_STR("host"));
        msc_add_n_request_header(x->tx, (const unsigned char *)h->v[i].name.base, h->v[i].name.len,
                                 (const unsigned char *)h->v[i].value.base, h->v[i].value.len);
    }
    pt_str_t auth = pt_req_authority(req);
    if (!host && auth.len != 0) /* HTTP/2: :authority is the Host */
        msc_add_n_request_header(x->tx, (const unsigned char *)"host", 4,
                                 (const unsigned char *)auth.base, auth.len);
    msc_process_request_headers(x->tx);
    pt_fstatus_t st = verdict(x);
    if (st != PT_FILTER_CONTINUE)
        return st;

    int64_t len = pt_req_body_length(req);
    bool tunnel = pt_str_eq(method, PT_STR("CONNECT")) ||
                  pt_headers_get(h, PT_STR("upgrade")).base != NULL;
    if (len == 0 || tunnel || is_grpc(req))
        return finish(x); /* no body to wait for, or one we do not read */
    if (len > 0 && (uint64_t)len > c->body_limit && !c->partial)
        return too_large(x);
    x->inspect_body = true;
    pt_req_buffer_body(req); /* nothing goes upstream before the verdict */
    return PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)f;
    (void)req;
    waf_ctx_t *x = ctx;
    if (x->tx == NULL || !x->inspect_body || x->decided)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    const waf_conf_t *c = x->conf;
    for (size_t i = 0; i < in->cnt && !x->decided; i++) {
        uint64_t room = c->body_limit - x->body_seen;
        size_t n = in->v[i].len;
        if (n > room) {
            if (!c->partial)
                return too_large(x);
            n = (size_t)room;
        }
        if (n != 0)
            msc_append_request_body(x->tx, (const unsigned char *)in->v[i].base, n);
        x->body_seen += n;
        if (x->body_seen == c->body_limit && n < in->v[i].len) {
            pt_fstatus_t st = finish(x); /* inspect_partial: the first body_limit bytes */
            if (st != PT_FILTER_CONTINUE)
                return st;
        }
    }
    if (end && !x->decided) {
        pt_fstatus_t st = finish(x);
        if (st != PT_FILTER_CONTINUE)
            return st;
    }
    return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    waf_ctx_t *x = ctx;
    if (x->tx != NULL) {
        msc_transaction_cleanup(x->tx);
        x->tx = NULL;
    }
}

const pt_filter_def_t pt_filter_waf = {
    .abi = PT_FILTER_ABI,
    .name = "waf",
    .priority = 150, /* global chains: after rewrite (200), before headers (100) */
    .conf_size = sizeof(waf_conf_t),
    .ctx_size = sizeof(waf_ctx_t),
    .parse_conf = parse_conf,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_log = on_log,
};
