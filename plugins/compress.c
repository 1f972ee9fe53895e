/*
 * compress.c -- the built-in `compress` filter: response compression (gzip,
 * br, zstd, chosen from Accept-Encoding) and, when the route allows it,
 * decoding of compressed request bodies with a decompressed-size limit.
 *
 *   - compress:
 *       types: [application/json, text/html]  # media types compressed (globs with one star)
 *       min_size: 1k                          # smaller known-length answers stay as they are
 *       level: { gzip: 5, br: 4, zstd: 3 }
 *       decompress_requests: { max_size: 10m }
 *
 * Responses are compressed as they stream (each body slice fed as it passes,
 * never buffered whole). For answers of unknown length (server streams,
 * chunked upstreams) and Server-Sent Events, every slice is flushed so that
 * a message is never held back waiting for more. Request bodies are decoded
 * the same way, and the limit is checked on each decoded piece (at most
 * PT_CODING_CHUNK bytes), so a zip bomb stops at max_size with a 413.
 * gRPC bodies (application/grpc*) are never touched: their compression is
 * per message (grpc-encoding), passed through as it is.
 */
#include <stdio.h>
#include <string.h>

#include "portico/coding.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

typedef struct cz_levels {
    long long gzip, br, zstd;
} cz_levels_t;

typedef struct cz_decomp {
    bool on;
    uint64_t max_size;
} cz_decomp_t;

typedef struct cz_conf {
    pt_conf_strlist_t types;
    uint64_t min_size;
    cz_levels_t level;
    cz_decomp_t decompress;
} cz_conf_t;

typedef struct cz_ctx {
    const cz_conf_t *conf;
    pt_coding_t pick;   /* the client's choice, decided on the request head */
    bool no_identity;   /* Accept-Encoding refuses an unencoded answer (identity;q=0, *;q=0) */
    bool head;          /* HEAD request: nothing to compress */
    bool flush_each;    /* a stream: flush every slice */
    pt_zstream_t *enc;  /* response encoder */
    pt_zstream_t *dec;  /* request decoder */
    pt_coding_t dec_coding;
    uint64_t dec_out;   /* decoded request bytes so far */
    pt_body_out_t *out; /* during a body call: where emit writes */
} cz_ctx_t;

static const char *const default_types[] = {
    "text/*", "application/json", "application/*+json", "application/x-ndjson",
    "application/javascript", "application/xml", "application/*+xml", "image/svg+xml",
};

static const pt_conf_field_t level_fields[] = {
    {"gzip", PT_CONF_T_INT, offsetof(cz_levels_t, gzip), 1, 9, false, NULL},
    {"br", PT_CONF_T_INT, offsetof(cz_levels_t, br), 0, 11, false, NULL},
    {"zstd", PT_CONF_T_INT, offsetof(cz_levels_t, zstd), 1, 19, false, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_conf_field_t decomp_fields[] = {
    {"max_size", PT_CONF_T_SIZE, offsetof(cz_decomp_t, max_size), 1, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_levels(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *dst)
{
    return pt_conf_parse_fields(cx, node, level_fields, dst);
}

static int parse_decomp(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *dst)
{
    cz_decomp_t *d = dst;
    d->on = true;
    return pt_conf_parse_fields(cx, node, decomp_fields, dst);
}

static const pt_conf_field_t fields[] = {
    {"types", PT_CONF_T_STRLIST, offsetof(cz_conf_t, types), 0, 0, false, NULL},
    {"min_size", PT_CONF_T_SIZE, offsetof(cz_conf_t, min_size), 0, 0, false, NULL},
    {"level", PT_CONF_T_CUSTOM, offsetof(cz_conf_t, level), 0, 0, false, parse_levels},
    {"decompress_requests", PT_CONF_T_CUSTOM, offsetof(cz_conf_t, decompress), 0, 0, false,
     parse_decomp},
    PT_CONF_FIELDS_END,
};

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    cz_conf_t *c = conf;
    c->types.v = (const char **)default_types;
    c->types.cnt = sizeof(default_types) / sizeof(default_types[0]);
    c->min_size = 1024;
    c->level = (cz_levels_t){.gzip = 5, .br = 4, .zstd = 3};
    c->decompress.max_size = 10 * 1024 * 1024;
    if (pt_conf_parse_fields(cx, node, fields, conf) != 0)
        return PT_ERR_INVALID;
    const pt_conf_node_t *tn = pt_conf_map_get(node, "types");
    for (size_t i = 0; i < c->types.cnt; i++) {
        const char *t = c->types.v[i];
        const char *star = strchr(t, '*');
        if (strchr(t, '/') == NULL || (star != NULL && strchr(star + 1, '*') != NULL) ||
            strpbrk(t, " ;,") != NULL)
            return pt_conf_error(cx, tn != NULL ? tn : node,
                                 "compress: types: '%s' is not a media type pattern "
                                 "(type/subtype, with at most one '*')",
                                 t);
    }
    if (c->types.cnt == 0)
        return pt_conf_error(cx, tn != NULL ? tn : node, "compress: types: the list is empty");
    return 0;
}

/* ---- the response ------------------------------------------------------ */

/* `pattern` (one optional '*') against a media type, case-insensitively. */
static bool type_matches(const char *pattern, pt_str_t type)
{
    const char *star = strchr(pattern, '*');
    if (star == NULL)
        return pt_str_ieq(pt_str_c(pattern), type);
    size_t pre = (size_t)(star - pattern), suf = strlen(star + 1);
    if (type.len < pre + suf)
        return false;
    return pt_str_ieq((pt_str_t){pattern, pre}, (pt_str_t){type.base, pre}) &&
           pt_str_ieq(pt_str_c(star + 1), (pt_str_t){type.base + type.len - suf, suf});
}

/* The media type of a Content-Type value (without parameters). */
static pt_str_t media_type(pt_str_t ct)
{
    const char *semi = ct.base != NULL ? memchr(ct.base, ';', ct.len) : NULL;
    return pt_str_trim_ows(semi != NULL ? (pt_str_t){ct.base, (size_t)(semi - ct.base)} : ct);
}

static bool is_grpc(pt_str_t mt)
{
    pt_str_t g = PT_STR("application/grpc");
    return mt.len >= g.len && pt_str_ieq((pt_str_t){mt.base, g.len}, g);
}

static bool type_listed(const cz_conf_t *conf, pt_str_t mt)
{
    if (mt.len == 0 || is_grpc(mt))
        return false;
    for (size_t i = 0; i < conf->types.cnt; i++)
        if (type_matches(conf->types.v[i], mt))
            return true;
    return false;
}

/* What the filter may do with an answer. */
typedef enum cz_kind {
    CZ_KEEP,  /* no content to code, already coded, a range, a tunnel: passes as it is, always */
    CZ_OTHER, /* a type not in `types`, or Cache-Control: no-transform: never coded */
    CZ_SMALL, /* codable, but below min_size */
    CZ_CODE,  /* codable */
} cz_kind_t;

static cz_kind_t classify(const cz_conf_t *conf, pt_req_t *req, pt_headers_t *h)
{
    int status = pt_req_resp_status(req);
    int64_t len = pt_req_resp_body_length(req);
    if (pt_req_is_tunnel(req) || status < 200 || status == 204 || status == 206 || status == 304 ||
        len == 0 || pt_headers_get(h, PT_STR("content-encoding")).base != NULL ||
        pt_headers_get(h, PT_STR("content-range")).base != NULL)
        return CZ_KEEP;
    if (pt_headers_has_token(h, PT_STR("cache-control"), PT_STR("no-transform")) ||
        !type_listed(conf, media_type(pt_headers_get(h, PT_STR("content-type")))))
        return CZ_OTHER;
    return len > 0 && (uint64_t)len < conf->min_size ? CZ_SMALL : CZ_CODE;
}

static int add_vary(pt_headers_t *h)
{
    if (pt_headers_has_token(h, PT_STR("vary"), PT_STR("accept-encoding")) ||
        pt_headers_has_token(h, PT_STR("vary"), PT_STR("*")))
        return 0;
    return pt_headers_add(h, PT_STR("vary"), PT_STR("Accept-Encoding"));
}

/* A strong validator no longer matches the bytes sent: make it weak (RFC 9110 §8.8.1). */
static int weaken_etag(pt_req_t *req, pt_headers_t *h)
{
    pt_str_t etag = pt_headers_get(h, PT_STR("etag"));
    if (etag.len == 0 || etag.base[0] != '"')
        return 0;
    char *w = pt_arena_printf(pt_req_arena(req), "W/%.*s", (int)etag.len, etag.base);
    return w != NULL ? pt_headers_set(h, PT_STR("etag"), pt_str_c(w)) : PT_ERR_LIMIT;
}

static int level_of(const cz_conf_t *conf, pt_coding_t c)
{
    return (int)(c == PT_CODING_GZIP ? conf->level.gzip
                 : c == PT_CODING_BR ? conf->level.br
                                     : conf->level.zstd);
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const cz_conf_t *conf = f->conf;
    cz_ctx_t *c = ctx;
    pt_headers_t *h = pt_req_resp_headers(req);
    cz_kind_t kind = classify(conf, req, h);
    if (c->no_identity && kind != CZ_KEEP) {
        /* The client refused identity (RFC 9110 12.5.3). A successful answer that would go
         * unencoded -- no coding it accepts, or a type this route does not code -- is a 406;
         * one we can code is coded whatever its size (min_size yields to the refusal). Error
         * answers pass unencoded: a 406 would hide them. */
        int status = pt_req_resp_status(req);
        if (status < 300 && (kind == CZ_OTHER || c->pick == PT_CODING_IDENTITY)) {
            if (pt_req_reject(req, PT_ERR_NOT_ACCEPTABLE,
                              "Accept-Encoding refuses identity and accepts none of the codings this "
                              "answer can have") != 0 ||
                add_vary(pt_req_resp_headers(req)) != 0)
                goto nomem;
            return PT_FILTER_RESPOND;
        }
        if (kind == CZ_SMALL)
            kind = CZ_CODE;
    }
    if (c->head || kind != CZ_CODE)
        return PT_FILTER_CONTINUE;
    if (add_vary(h) != 0)
        goto nomem;
    if (c->pick == PT_CODING_IDENTITY)
        return PT_FILTER_CONTINUE;
    c->enc = pt_zstream_encoder(pt_worker_filter_state(pt_req_worker(req), f), c->pick, level_of(conf, c->pick), pt_req_resp_body_length(req));
    if (c->enc == NULL) {
        pt_req_fail(req, PT_ERR_NOMEM, "compress: encoder setup failed");
        return PT_FILTER_ERROR;
    }
    pt_str_t mt = media_type(pt_headers_get(h, PT_STR("content-type")));
    c->flush_each = pt_req_resp_body_length(req) < 0 || pt_str_ieq(mt, PT_STR("text/event-stream"));
    if (pt_headers_set(h, PT_STR("content-encoding"), pt_str_c(pt_coding_name(c->pick))) != 0 ||
        weaken_etag(req, h) != 0)
        goto nomem;
    pt_headers_remove(h, PT_STR("accept-ranges"));
    pt_req_set_resp_body_length(req, -1);
    return PT_FILTER_CONTINUE;
nomem:
    pt_req_fail(req, PT_ERR_LIMIT, "compress: request arena full");
    return PT_FILTER_ERROR;
}

static int emit_out(void *ud, const void *data, size_t len)
{
    cz_ctx_t *c = ud;
    return pt_body_write(c->out, data, len) == 0 ? 0 : PT_ERR_LIMIT;
}

/* Feeds a body call's slices to `z` (the last one flushed when `sync`), then finishes at `end`. */
static int feed_all(cz_ctx_t *c, pt_zstream_t *z, const pt_bufvec_t *in, bool end, bool sync,
                    pt_body_out_t *out, pt_coding_emit_fn emit)
{
    c->out = out;
    int rc = 0;
    for (size_t i = 0; i < in->cnt && rc == 0; i++) {
        bool last = i + 1 == in->cnt && !end;
        pt_zflush_t fl = last && sync ? PT_ZFLUSH_SYNC : PT_ZFLUSH_NONE;
        rc = pt_zstream_feed(z, in->v[i].base, in->v[i].len, fl, emit, c);
    }
    if (rc == 0 && end)
        rc = pt_zstream_feed(z, NULL, 0, PT_ZFLUSH_FINISH, emit, c);
    c->out = NULL;
    return rc;
}

static pt_fstatus_t on_response_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)f;
    cz_ctx_t *c = ctx;
    if (c->enc == NULL)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    int rc = feed_all(c, c->enc, in, end, c->flush_each, out, emit_out);
    if (rc != 0) {
        pt_req_fail(req, rc, "compress: response encoding failed");
        return PT_FILTER_ERROR;
    }
    if (end) {
        pt_zstream_free(c->enc);
        c->enc = NULL;
    }
    return PT_FILTER_CONTINUE;
}

/* ---- the request ------------------------------------------------------- */

/* Accept-Encoding, all its lines joined (a list header may be split). */
static pt_str_t accept_encoding(pt_req_t *req, bool *present)
{
    pt_headers_t *h = pt_req_headers(req);
    *present = false;
    pt_str_t all = PT_STR_NULL;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!pt_str_eq(h->v[i].name, PT_STR("accept-encoding")))
            continue;
        if (!*present) {
            all = h->v[i].value;
        } else {
            char *j = pt_arena_printf(pt_req_arena(req), "%.*s,%.*s", (int)all.len, all.base,
                                      (int)h->v[i].value.len, h->v[i].value.base);
            all = j != NULL ? pt_str_c(j) : all;
        }
        *present = true;
    }
    return all;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const cz_conf_t *conf = f->conf;
    cz_ctx_t *c = ctx;
    c->conf = conf;
    c->head = pt_str_eq(pt_req_method(req), PT_STR("HEAD"));
    bool present;
    pt_str_t ae = accept_encoding(req, &present);
    c->pick = pt_coding_pick(present, ae,
                             PT_CODING_BIT(PT_CODING_GZIP) | PT_CODING_BIT(PT_CODING_BR) |
                                 PT_CODING_BIT(PT_CODING_ZSTD));
    c->no_identity = pt_coding_identity_refused(present, ae);
    pt_headers_t *h = pt_req_headers(req);
    pt_str_t ce = pt_headers_get(h, PT_STR("content-encoding"));
    if (!conf->decompress.on || ce.base == NULL || pt_req_body_length(req) == 0 ||
        pt_headers_count(h, PT_STR("content-encoding")) != 1 ||
        is_grpc(media_type(pt_headers_get(h, PT_STR("content-type")))))
        return PT_FILTER_CONTINUE;
    int coding = pt_coding_from_name(ce);
    if (coding < 0)
        return PT_FILTER_CONTINUE; /* a coding (or a list) we do not decode: the upstream's call */
    pt_headers_remove(h, PT_STR("content-encoding"));
    if (coding == PT_CODING_IDENTITY)
        return PT_FILTER_CONTINUE;
    c->dec = pt_zstream_decoder(pt_worker_filter_state(pt_req_worker(req), f), (pt_coding_t)coding);
    if (c->dec == NULL) {
        pt_req_fail(req, PT_ERR_NOMEM, "compress: decoder setup failed");
        return PT_FILTER_ERROR;
    }
    c->dec_coding = (pt_coding_t)coding;
    pt_req_set_body_length(req, -1);
    return PT_FILTER_CONTINUE;
}

static int emit_limited(void *ud, const void *data, size_t len)
{
    cz_ctx_t *c = ud;
    c->dec_out += len;
    if (c->dec_out > c->conf->decompress.max_size)
        return PT_ERR_LIMIT;
    return pt_body_write(c->out, data, len) == 0 ? 0 : PT_ERR_NOMEM;
}

static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)f;
    cz_ctx_t *c = ctx;
    if (c->dec == NULL)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    int rc = feed_all(c, c->dec, in, end, false, out, emit_limited);
    if (rc == PT_ERR_LIMIT) {
        char msg[128];
        snprintf(msg, sizeof(msg), "decompressed request body exceeds %llu bytes",
                 (unsigned long long)c->conf->decompress.max_size);
        pt_req_reject(req, PT_ERR_LIMIT, msg);
        return PT_FILTER_RESPOND;
    }
    if (rc == PT_ERR_INVALID) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body is not valid %s (Content-Encoding)",
                 pt_coding_name(c->dec_coding));
        pt_req_reject(req, PT_ERR_INVALID, msg);
        return PT_FILTER_RESPOND;
    }
    if (rc != 0) {
        pt_req_fail(req, rc, "compress: request decoding failed");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

/* Per worker: the cache of the coders' large blocks (see portico/coding.h). */
#define CACHE_BYTES (4u << 20)

static int worker_init(const pt_filter_t *f, pt_worker_t *w)
{
    pt_zcache_t *cache = pt_zcache_new(CACHE_BYTES);
    if (cache == NULL)
        return PT_ERR_NOMEM;
    pt_worker_filter_state_set(w, f, cache);
    return 0;
}

static void worker_dispose(const pt_filter_t *f, pt_worker_t *w)
{
    pt_zcache_free(pt_worker_filter_state(w, f)); /* kept alive by streams still open */
    pt_worker_filter_state_set(w, f, NULL);
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    cz_ctx_t *c = ctx;
    pt_zstream_free(c->enc);
    pt_zstream_free(c->dec);
    c->enc = c->dec = NULL;
}

const pt_filter_def_t pt_filter_compress = {
    .abi = PT_FILTER_ABI,
    .name = "compress",
    .conf_size = sizeof(cz_conf_t),
    .ctx_size = sizeof(cz_ctx_t),
    .parse_conf = parse_conf,
    .worker_init = worker_init,
    .worker_dispose = worker_dispose,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_log = on_log,
};
