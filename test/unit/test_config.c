/*
 * test_config.c -- snapshot loading: a full config, defaults, every error.
 *
 * Route handlers come from a test registry (pt_handler_find is defined here,
 * so the link does not pull gateway/core/handler_registry.c): a "proxy" handler
 * that resolves its cluster like the real one, and a conf-less "static".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "tmpdir.h"
#include "core/config.h"
#include "core/handler.h"
#include "portico/status.h"

/* ---- test handlers ------------------------------------------------------------- */

typedef struct tproxy_conf {
    const char *cluster_name;
    uint64_t timeout_ms;
    const pt_cluster_t *cluster;
} tproxy_conf_t;

static const pt_conf_field_t tproxy_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(tproxy_conf_t, cluster_name), 0, 0, true, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(tproxy_conf_t, timeout_ms), 1, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int tproxy_check(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf,
                        const pt_config_t *config)
{
    tproxy_conf_t *c = vconf;
    c->cluster = pt_config_cluster(config, c->cluster_name);
    if (c->cluster == NULL)
        return pt_conf_error(cx, pt_conf_map_get(node, "cluster"), "proxy: unknown cluster '%s'",
                             c->cluster_name);
    return 0;
}

static const pt_handler_def_t test_proxy = {
    .name = "proxy",
    .conf_size = sizeof(tproxy_conf_t),
    .fields = tproxy_fields,
    .check_conf = tproxy_check,
};

static const pt_handler_def_t test_static = {.name = "static"};

const pt_handler_def_t *pt_handler_find(const char *name, size_t len)
{
    if (len == 5 && memcmp(name, "proxy", 5) == 0)
        return &test_proxy;
    if (len == 6 && memcmp(name, "static", 6) == 0)
        return &test_static;
    return NULL;
}

/* ---- helpers ---------------------------------------------------------------------- */

static char *errbuf;
static size_t errlen;
static FILE *errs;

static int setup(void **state)
{
    (void)state;
    errs = open_memstream(&errbuf, &errlen);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fclose(errs);
    free(errbuf);
    errbuf = NULL;
    return 0;
}

static const char *errors(void)
{
    fflush(errs);
    return errbuf != NULL ? errbuf : "";
}

static pt_config_t *load(const char *text)
{
    return pt_config_load_string("c.yaml", text, strlen(text), errs);
}

#define MINIMAL "listeners: [ { address: 127.0.0.1:8080 } ]\n"

/* Loads `text`, which must fail, and checks that `want` is one of the error lines. */
static void expect_error(const char *text, const char *want)
{
    fclose(errs); /* each case starts with an empty error stream */
    free(errbuf);
    errbuf = NULL;
    errs = open_memstream(&errbuf, &errlen);
    pt_config_t *c = load(text);
    if (c != NULL) {
        pt_config_unref(c);
        fail_msg("config loaded but should fail with: %s", want);
    }
    const char *e = errors();
    size_t wl = strlen(want);
    for (const char *p = e; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        if (n == wl && memcmp(p, want, n) == 0)
            return;
        p += n + (p[n] == '\n');
    }
    if (getenv("PT_TEST_DUMP") != NULL) { /* developer aid: list every mismatch, go on */
        printf("WANT %s\nGOT  %s", want, e);
        return;
    }
    fail_msg("expected error line:\n  %s\ngot:\n%s", want, e);
}

/* ---- a full valid config ------------------------------------------------------------ */

static const char full[] =
    "listeners:\n"
    "  - address: 127.0.0.1:8080\n"
    "  - address: \"[::1]:8443\"\n"
    "    h2c: false\n"
    "admin: { address: 127.0.0.1:9901 }\n"
    "access_log: { path: stdout }\n"
    "workers: 4\n"
    "limits: { max_body: 2m, h2_max_streams: 50, allow_underscores: true, max_header_bytes: 32k,\n"
    "          merge_slashes: false, h2_glitch_burst: 500, h2_glitch_rate: 50 }\n"
    "timeouts: { header: 5s, drain: 0, keepalive: 1.5s }\n"
    "clusters:\n"
    "  - name: web\n"
    "    endpoints: [ \"127.0.0.1:9000\", \"https://API.internal\", \"http://[::1]:81/\" ]\n"
    "    retries: 2\n"
    "    authority: web.internal\n"
    "  - name: rpc\n"
    "    protocol: grpc\n"
    "    endpoints: 127.0.0.1:50051\n"
    "    tls_verify: false\n"
    "    connect_timeout: 250ms\n"
    "filters:\n"
    "  - headers: { response: { add: { x-served-by: portico } } }\n"
    "  - rewrite: { host: internal }\n"
    "routes:\n"
    "  - name: api\n"
    "    match:\n"
    "      prefix: /api/\n"
    "      methods: [GET, post]\n"
    "      host: [ \"*.example.com\", API.local ]\n"
    "      headers: { X-Env: prod, x-debug: true }\n"
    "    proxy: { cluster: web, timeout: 2s }\n"
    "    filters:\n"
    "      - rewrite: { prefix: /api/, replace: / }\n"
    "      - headers:\n"
    "          request: { set: { authorization: \"Bearer s3cr3t\" } }\n"
    "    max_body: 10k\n"
    "    timeout: 3s\n"
    "  - match: { template: \"/users/{id}\" }\n"
    "    static:\n";

static void test_full(void **state)
{
    (void)state;
    pt_config_t *c = load(full);
    if (c == NULL)
        fail_msg("load failed:\n%s", errors());
    assert_string_equal(errors(), "");
    assert_int_equal(c->listener_cnt, 2);
    assert_string_equal(c->listeners[0].addr.text, "127.0.0.1:8080");
    assert_int_equal(c->listeners[0].addr.ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&c->listeners[0].addr.ss)->sin_port), 8080);
    assert_true(c->listeners[0].h2c);
    assert_false(c->listeners[0].has_tls);
    assert_int_equal(c->listeners[1].addr.ss.ss_family, AF_INET6);
    assert_false(c->listeners[1].h2c);
    assert_true(c->has_admin);
    assert_string_equal(c->admin_addr.text, "127.0.0.1:9901");
    assert_string_equal(c->access_log, "stdout");
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->limits.max_body, 2u << 20);
    assert_int_equal(c->limits.h2_max_streams, 50);
    assert_int_equal(c->limits.max_header_bytes, 32768);
    assert_true(c->limits.allow_underscores);
    assert_false(c->limits.merge_slashes);
    assert_int_equal(c->limits.h2_glitch_burst, 500);
    assert_int_equal(c->limits.h2_glitch_rate, 50);
    assert_int_equal(c->limits.max_header_count, 100); /* default kept */
    assert_int_equal(c->timeouts.header_ms, 5000);
    assert_int_equal(c->timeouts.drain_ms, 0);
    assert_int_equal(c->timeouts.keepalive_ms, 1500);
    assert_int_equal(c->timeouts.body_ms, 30000);

    assert_int_equal(c->cluster_cnt, 2);
    const pt_cluster_t *web = pt_config_cluster(c, "web");
    assert_non_null(web);
    assert_int_equal(web->index, 0);
    assert_int_equal(web->protocol, PT_PROTO_HTTP);
    assert_int_equal(web->endpoint_cnt, 3);
    assert_string_equal(web->endpoints[0].url, "http://127.0.0.1:9000");
    assert_string_equal(web->endpoints[1].url, "https://api.internal:443");
    assert_string_equal(web->endpoints[1].host, "api.internal");
    assert_true(web->endpoints[1].tls);
    assert_int_equal(web->endpoints[1].port, 443);
    assert_string_equal(web->endpoints[2].url, "http://[::1]:81");
    assert_string_equal(web->endpoints[2].host, "::1");
    assert_int_equal(web->retries, 2);
    assert_false(web->http2);
    assert_true(web->tls_verify);
    assert_int_equal(web->timeout_ms, 15000);
    assert_int_equal(web->max_idle_per_endpoint, 64);
    assert_string_equal(web->authority, "web.internal");
    const pt_cluster_t *rpc = pt_config_cluster(c, "rpc");
    assert_int_equal(rpc->protocol, PT_PROTO_GRPC);
    assert_true(rpc->http2);
    assert_false(rpc->tls_verify);
    assert_int_equal(rpc->connect_timeout_ms, 250);
    assert_int_equal(rpc->endpoint_cnt, 1);
    assert_null(pt_config_cluster(c, "nope"));

    /* global filters sorted by priority: rewrite (200) before headers (100) */
    assert_int_equal(c->global_filter_cnt, 2);
    assert_string_equal(c->global_filters[0]->def->name, "rewrite");
    assert_string_equal(c->global_filters[1]->def->name, "headers");
    assert_int_equal(c->filter_slot_cnt, 4);
    for (unsigned i = 0; i < c->filter_slot_cnt; i++)
        assert_int_equal(c->filters[i]->slot, i);

    assert_int_equal(c->route_cnt, 2);
    const pt_route_t *api = &c->routes[0];
    assert_string_equal(api->name, "api");
    assert_int_equal(api->match.path_kind, PT_PATH_PREFIX);
    assert_string_equal(api->match.path, "/api/");
    assert_int_equal(api->match.methods, PT_METHOD_GET | PT_METHOD_POST);
    assert_int_equal(api->match.host_cnt, 2);
    assert_string_equal(api->match.hosts[0], "*.example.com");
    assert_string_equal(api->match.hosts[1], "api.local");
    assert_int_equal(api->match.header_cnt, 2);
    assert_string_equal(api->match.headers[0].name, "x-env");
    assert_string_equal(api->match.headers[0].value, "prod");
    assert_null(api->match.headers[1].value);
    assert_ptr_equal(api->handler, &test_proxy);
    const tproxy_conf_t *pc = api->handler_conf;
    assert_ptr_equal(pc->cluster, web);
    assert_int_equal(pc->timeout_ms, 2000);
    assert_int_equal(api->max_body, 10240);
    assert_int_equal(api->timeout_ms, 3000);
    assert_int_equal(api->chain_cnt, 4);
    assert_ptr_equal(api->chain[0], c->global_filters[0]);
    assert_ptr_equal(api->chain[1], c->global_filters[1]);
    assert_string_equal(api->chain[2]->def->name, "rewrite");
    assert_string_equal(api->chain[3]->def->name, "headers");

    const pt_route_t *r1 = &c->routes[1];
    assert_string_equal(r1->name, "route[1]");
    assert_int_equal(r1->match.path_kind, PT_PATH_TEMPLATE);
    assert_non_null(r1->match.tmpl);
    assert_ptr_equal(r1->handler, &test_static);
    assert_int_equal(r1->max_body, 2u << 20); /* limits.max_body */
    assert_int_equal(r1->chain_cnt, 2);
    assert_non_null(c->router);

    /* /config: secrets redacted, the rest intact */
    assert_non_null(c->redacted_json);
    assert_null(strstr(c->redacted_json, "s3cr3t"));
    assert_non_null(strstr(c->redacted_json, "\"authorization\":\"[redacted]\""));
    assert_non_null(strstr(c->redacted_json, "\"workers\":4"));
    assert_non_null(strstr(c->redacted_json, "\"h2c\":false"));
    assert_non_null(strstr(c->redacted_json, "\"template\":\"/users/{id}\""));

    assert_int_equal(atomic_load(&c->refcnt), 1);
    assert_ptr_equal(pt_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refcnt), 2);
    pt_config_unref(c);
    pt_config_unref(c);
    pt_config_unref(NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    pt_config_t *c = load(MINIMAL);
    assert_non_null(c);
    assert_int_equal(c->listener_cnt, 1);
    assert_true(c->listeners[0].h2c);
    assert_false(c->has_admin);
    assert_null(c->access_log);
    assert_int_equal(c->workers, 0);
    const pt_limits_t *l = &c->limits;
    assert_int_equal(l->max_request_line, 8192);
    assert_int_equal(l->max_header_bytes, 65536);
    assert_int_equal(l->max_header_count, 100);
    assert_int_equal(l->max_body, 1u << 20);
    assert_int_equal(l->max_pipeline, 16);
    assert_int_equal(l->max_requests_per_conn, 1000);
    assert_int_equal(l->max_connections, 10000);
    assert_int_equal(l->h2_max_streams, 100);
    assert_int_equal(l->h2_stream_window, 65536);
    assert_int_equal(l->h2_conn_window, 1u << 20);
    assert_int_equal(l->h2_reset_burst, 1000);
    assert_int_equal(l->h2_reset_rate, 33);
    assert_int_equal(l->h2_max_continuations, 8);
    assert_int_equal(l->h2_glitch_burst, 100);
    assert_int_equal(l->h2_glitch_rate, 10);
    assert_int_equal(l->max_chunk_ext, 4096);
    assert_false(l->allow_underscores);
    assert_true(l->merge_slashes);
    assert_int_equal(l->max_response_buffer, 256u << 10);
    const pt_timeouts_t *t = &c->timeouts;
    assert_int_equal(t->header_ms, 10000);
    assert_int_equal(t->body_ms, 30000);
    assert_int_equal(t->keepalive_ms, 60000);
    assert_int_equal(t->h2_idle_ms, 60000);
    assert_int_equal(t->send_ms, 30000);
    assert_int_equal(t->drain_ms, 30000);
    assert_int_equal(c->route_cnt, 0);
    assert_int_equal(c->cluster_cnt, 0);
    assert_int_equal(c->filter_slot_cnt, 0);
    assert_non_null(c->router);
    assert_string_equal(c->redacted_json, "{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}]}");
    uint64_t g1 = c->generation;
    pt_config_t *c2 = load(MINIMAL);
    assert_true(c2->generation > g1);
    pt_config_unref(c);
    pt_config_unref(c2);
}

static void test_json_config(void **state)
{
    (void)state;
    const char *text = "{\"listeners\":[{\"address\":\"0.0.0.0:8080\"}],"
                       "\"clusters\":[{\"name\":\"a\",\"endpoints\":[\"127.0.0.1:1\"]}],"
                       "\"routes\":[{\"match\":{\"path\":\"/x\"},\"proxy\":{\"cluster\":\"a\"}}]}";
    pt_config_t *c = load(text);
    if (c == NULL)
        fail_msg("%s", errors());
    assert_int_equal(c->routes[0].match.path_kind, PT_PATH_EXACT);
    pt_config_unref(c);
}

/* ---- errors, each with its position ------------------------------------------------------ */

static void test_err_syntax(void **state)
{
    (void)state;
    expect_error("listeners:\n  - address: [oops\n",
                 "c.yaml:3:1: YAML syntax error: did not find expected ',' or ']' while parsing a "
                 "flow sequence");
}

static void test_err_empty(void **state)
{
    (void)state;
    expect_error("", "c.yaml:1:1: the config must be a map (listeners, routes, ...), got an empty "
                     "document");
    expect_error("routes: []\n", "c.yaml:1:1: missing required key 'listeners'");
    expect_error("listeners: []\n",
                 "c.yaml:1:12: listeners: expected a non-empty list of listeners");
}

static void test_err_unknown_key(void **state)
{
    (void)state;
    expect_error(MINIMAL "wrokers: 2\n",
                 "c.yaml:2:1: unknown key 'wrokers' (did you mean 'workers'?)");
    expect_error(MINIMAL "limits: { max_bdoy: 1k }\n",
                 "c.yaml:2:11: unknown key 'max_bdoy' (did you mean 'max_body'?)");
    expect_error("listeners: [ { address: 127.0.0.1:1, tsl: {} } ]\n",
                 "c.yaml:1:38: unknown key 'tsl' (did you mean 'tls'?)");
}

static void test_err_types_and_ranges(void **state)
{
    (void)state;
    expect_error(MINIMAL "workers: many\n", "c.yaml:2:10: expected an integer, got 'many'");
    expect_error(MINIMAL "workers: 5000\n", "c.yaml:2:10: value 5000 out of range [0, 256]");
    expect_error(MINIMAL "limits: { h2_max_streams: 0 }\n",
                 "c.yaml:2:27: value 0 out of range [1, 10000]");
    expect_error(MINIMAL "limits: { max_header_bytes: 100 }\n",
                 "c.yaml:2:29: max_header_bytes '100' out of range [1024, 16777216]");
    expect_error(MINIMAL "timeouts: { header: 0 }\n",
                 "c.yaml:2:21: header '0' out of range [1ms, 86400s]");
    expect_error(MINIMAL "timeouts: { header: soon }\n",
                 "c.yaml:2:21: expected a duration (e.g. 250ms, 5s, 2m, 1h), got 'soon'");
    expect_error(MINIMAL "limits: { allow_underscores: 1 }\n",
                 "c.yaml:2:30: expected true or false, got '1'");
    expect_error(MINIMAL "limits: { merge_slashes: yes-please }\n",
                 "c.yaml:2:26: expected true or false, got 'yes-please'");
}

static void test_err_duplicate_key(void **state)
{
    (void)state;
    expect_error(MINIMAL "workers: 1\nworkers: 2\n",
                 "c.yaml:3:1: duplicate key 'workers' (first defined at line 2)");
}

static void test_err_addresses(void **state)
{
    (void)state;
    expect_error("listeners: [ { address: localhost:8080 } ]\n",
                 "c.yaml:1:25: bad address 'localhost:8080': 'localhost' is not an IP address "
                 "(names are not resolved; use e.g. 127.0.0.1 or [::1])");
    expect_error("listeners: [ { address: 127.0.0.1:70000 } ]\n",
                 "c.yaml:1:25: bad address '127.0.0.1:70000': port must be a number in 1-65535");
    expect_error("listeners: [ { address: 127.0.0.1 } ]\n",
                 "c.yaml:1:25: bad address '127.0.0.1': expected HOST:PORT");
    expect_error("listeners: [ { address: \"::1:80\" } ]\n",
                 "c.yaml:1:25: bad address '::1:80': write IPv6 addresses as [ADDR]:PORT");
    expect_error("listeners:\n  - address: 127.0.0.1:80\n  - address: 127.0.0.1:80\n",
                 "c.yaml:3:14: listener address 127.0.0.1:80 conflicts with 127.0.0.1:80 (line 2)");
    expect_error("listeners:\n  - address: 0.0.0.0:80\n  - address: 127.0.0.1:80\n",
                 "c.yaml:3:14: listener address 127.0.0.1:80 conflicts with 0.0.0.0:80 (line 2)");
    expect_error(MINIMAL "admin: { address: 127.0.0.1:8080 }\n",
                 "c.yaml:2:19: admin address 127.0.0.1:8080 conflicts with listener "
                 "127.0.0.1:8080 (line 1)");
    expect_error(MINIMAL "admin: {}\n", "c.yaml:2:8: missing required key 'address'");
}

static void test_err_clusters(void **state)
{
    (void)state;
    expect_error(MINIMAL "clusters:\n  - { name: a, endpoints: [\"127.0.0.1:1\"] }\n"
                         "  - { name: a, endpoints: [\"127.0.0.1:2\"] }\n",
                 "c.yaml:4:13: duplicate cluster name 'a' (first defined at line 3)");
    expect_error(MINIMAL "clusters: [ { name: a, protocol: soap, endpoints: [\"h:1\"] } ]\n",
                 "c.yaml:2:34: unknown protocol 'soap' (expected http or grpc)");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: [\"ftp://h\"] } ]\n",
                 "c.yaml:2:36: bad endpoint 'ftp://h': only http:// and https:// are supported");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: [\"http://h/path\"] } ]\n",
                 "c.yaml:2:36: bad endpoint 'http://h/path': expected HOST:PORT or a URL without "
                 "path, query or credentials");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: [\"h\"] } ]\n",
                 "c.yaml:2:36: bad endpoint 'h': expected HOST:PORT or http(s)://HOST");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: [] } ]\n",
                 "c.yaml:2:35: endpoints: expected a non-empty list of endpoints");
    expect_error(MINIMAL
                 "clusters: [ { name: a, protocol: grpc, http2: false, endpoints: h:1 } ]\n",
                 "c.yaml:2:47: gRPC clusters always use HTTP/2");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: h:1, retries: 99 } ]\n",
                 "c.yaml:2:49: value 99 out of range [0, 10]");
    expect_error(MINIMAL "clusters: [ { name: a, endpoints: h:1, ca_file: /nonexistent.pem } ]\n",
                 "c.yaml:2:49: cannot read CA file '/nonexistent.pem': No such file or directory");
    expect_error(MINIMAL "clusters: [ { endpoints: h:1 } ]\n",
                 "c.yaml:2:13: missing required key 'name'");
}

static void test_err_routes(void **state)
{
    (void)state;
    const char *base = MINIMAL "clusters: [ { name: web, endpoints: h:1 } ]\nroutes:\n";
    char buf[1024];
#define ROUTES(s) (snprintf(buf, sizeof(buf), "%s%s", base, s), buf)
    expect_error(ROUTES("  - proxy: { cluster: nope }\n"),
                 "c.yaml:4:23: proxy: unknown cluster 'nope'");
    expect_error(ROUTES("  - proxy: {}\n"), "c.yaml:4:12: missing required key 'cluster'");
    expect_error(ROUTES("  - match: { prefix: / }\n"),
                 "c.yaml:4:5: route has no handler (e.g. `proxy: { cluster: NAME }`)");
    expect_error(ROUTES("  - proxy: { cluster: web }\n    static: {}\n"),
                 "c.yaml:5:5: a route has one handler: 'static' and 'proxy' (line 4) both given");
    expect_error(ROUTES("  - proxy: { cluster: web }\n    macth: {}\n"),
                 "c.yaml:5:5: unknown key 'macth' (did you mean 'match'?)");
    expect_error(ROUTES("  - { name: a, static: }\n  - { name: a, static: }\n"),
                 "c.yaml:5:13: duplicate route name 'a' (first defined at line 4)");
    expect_error(ROUTES("  - { match: { prefix: /a, path: /b }, static: }\n"),
                 "c.yaml:4:14: match: use only one of prefix, path and template");
    expect_error(ROUTES("  - { match: { prefix: api }, static: }\n"),
                 "c.yaml:4:24: prefix must start with '/'");
    expect_error(ROUTES("  - { match: { template: \"/a/{x\" }, static: }\n"),
                 "c.yaml:4:26: template '/a/{x': a variable must be a whole segment like {name}");
    expect_error(ROUTES("  - { match: { template: \"/a/{x}/{x}\" }, static: }\n"),
                 "c.yaml:4:26: template '/a/{x}/{x}': variable 'x' used twice");
    expect_error(ROUTES("  - { match: { template: \"/a/{x=**}/b\" }, static: }\n"),
                 "c.yaml:4:26: template '/a/{x=**}/b': {x=**} must be the last segment");
    expect_error(ROUTES("  - { match: { methods: [\"G T\"] }, static: }\n"),
                 "c.yaml:4:26: bad method 'G T'");
    expect_error(ROUTES("  - { match: { host: \"a b\" }, static: }\n"),
                 "c.yaml:4:22: bad host 'a b': expected a host name, '*.domain' or an IP address "
                 "(without port)");
    expect_error(ROUTES("  - { match: { headers: { \"x y\": 1 } }, static: }\n"),
                 "c.yaml:4:27: bad header name 'x y'");
    expect_error(ROUTES("  - { static: , max_body: lots }\n"),
                 "c.yaml:4:27: expected a size (e.g. 512, 64k, 1MiB), got 'lots'");
    expect_error(ROUTES("  - { static: , filters: [ { gzip: {} } ] }\n"),
                 "c.yaml:4:30: unknown filter 'gzip'");
    expect_error(ROUTES("  - { static: , filters: [ { headres: {} } ] }\n"),
                 "c.yaml:4:30: unknown filter 'headres' (did you mean 'headers'?)");
    expect_error(ROUTES("  - { static: , filters: [ { headers: {}, rewrite: {} } ] }\n"),
                 "c.yaml:4:28: a filter is a map with exactly one key, the filter name (e.g. "
                 "`- headers: {...}`)");
    expect_error(ROUTES("  - { static: , filters: [ { rewrite: { prefix: x } } ] }\n"),
                 "c.yaml:4:49: rewrite: prefix must start with '/'");
    expect_error(
        ROUTES("  - { static: , filters: [ { rewrite: { regex: \"(\", replace: x } } ] }\n"),
        "c.yaml:4:48: regex: missing closing parenthesis at offset 1");
    expect_error(
        ROUTES("  - { static: , filters: [ { rewrite: { regex: \"^/(a)\", replace: $2 } } ] }\n"),
        "c.yaml:4:66: replace: group $2 does not exist (the regex has 1)");
    expect_error(ROUTES("  - { static: , filters: [ { headers: { request: { set: { x-a: "
                        "\"${nope}\" } } } } ] }\n"),
                 "c.yaml:4:64: unknown variable '${nope}' (known: client_addr, request_id, host, "
                 "path, method, scheme, query, param.NAME, header.NAME, consumer, jwt.CLAIM, oauth2.FIELD, var.NAME)");
    expect_error(ROUTES("  - { static: , filters: [ { headers: { request: { remove: "
                        "[content-length] } } } ] }\n"),
                 "c.yaml:4:61: header 'content-length' is managed by the gateway and cannot be "
                 "changed");
    expect_error(ROUTES("  - { static: , filters: [ { headers: { reqest: {} } } ] }\n"),
                 "c.yaml:4:41: unknown key 'reqest' (did you mean 'request'?)");
    expect_error(MINIMAL "routes: { a: 1 }\n", "c.yaml:2:9: routes: expected a list of routes");
#undef ROUTES
}

static void test_err_collects_all(void **state)
{
    (void)state;
    pt_config_t *c = load("listeners: [ { address: nope } ]\nworkers: -1\nbogus: 1\n");
    assert_null(c);
    const char *e = errors();
    assert_non_null(strstr(e, "c.yaml:1:25: bad address 'nope': expected HOST:PORT\n"));
    assert_non_null(strstr(e, "c.yaml:2:10: value -1 out of range [0, 256]\n"));
    assert_non_null(strstr(e, "c.yaml:3:1: unknown key 'bogus'\n"));
}

/* ---- TLS and files ------------------------------------------------------------------------- */

static char tmpdir[64];

static void make_certs(void)
{
    if (tmpdir[0] != '\0')
        return;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pt_conf_XXXXXX");
    assert_non_null(pt_test_mkdtemp(tmpdir));
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout key.pem -out cert.pem -days 1 -subj /CN=localhost >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout other.pem -out othercert.pem -days 1 -subj /CN=x >/dev/null 2>&1",
             tmpdir);
    if (system(cmd) != 0)
        fail_msg("openssl could not make a test certificate");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_tls_and_file(void **state)
{
    (void)state;
    make_certs();
    char path[128];
    snprintf(path, sizeof(path), "%s/portico.yaml", tmpdir);
    /* relative cert paths resolve against the config file's directory */
    write_file(path, "listeners:\n"
                     "  - address: 127.0.0.1:8443\n"
                     "    tls: { cert: cert.pem, key: key.pem }\n"
                     "access_log: { path: logs/access.log }\n");
    pt_config_t *c = pt_config_load(path, errs);
    if (c == NULL)
        fail_msg("%s", errors());
    assert_true(c->listeners[0].has_tls);
    assert_non_null(c->listeners[0].ssl_ctx);
    char want[128];
    snprintf(want, sizeof(want), "%s/cert.pem", tmpdir);
    assert_string_equal(c->listeners[0].cert_path, want);
    snprintf(want, sizeof(want), "%s/logs/access.log", tmpdir);
    assert_string_equal(c->access_log, want);
    assert_string_equal(c->path, path);
    assert_non_null(strstr(c->redacted_json, "\"key\":\"[redacted]\""));
    pt_config_unref(c);
}

static void test_tls_errors(void **state)
{
    (void)state;
    make_certs();
    char path[128], want[512];
    snprintf(path, sizeof(path), "%s/bad.yaml", tmpdir);
    write_file(path, "listeners:\n"
                     "  - address: 127.0.0.1:8443\n"
                     "    tls: { cert: missing.pem, key: key.pem }\n");
    assert_null(pt_config_load(path, errs));
    snprintf(want, sizeof(want),
             "%s:3:18: cannot read certificate file '%s/missing.pem': No such file or directory\n",
             path, tmpdir);
    assert_string_equal(errors(), want);

    fclose(errs);
    free(errbuf);
    errbuf = NULL;
    errs = open_memstream(&errbuf, &errlen);
    write_file(path, "listeners:\n"
                     "  - address: 127.0.0.1:8443\n"
                     "    tls: { cert: cert.pem, key: other.pem }\n");
    assert_null(pt_config_load(path, errs));
    snprintf(want, sizeof(want), "%s:3:10: private key does not match certificate", path);
    if (strncmp(errors(), want, strlen(want)) != 0)
        fail_msg("got %s", errors());

    write_file(path, "listeners:\n"
                     "  - address: 127.0.0.1:8443\n"
                     "    tls: { cert: key.pem }\n");
    assert_null(pt_config_load(path, errs));
    assert_non_null(strstr(errors(), ":3:10: missing required key 'key'\n"));
}

static void test_missing_file(void **state)
{
    (void)state;
    assert_null(pt_config_load("/nonexistent/portico.yaml", errs));
    assert_string_equal(errors(), "/nonexistent/portico.yaml:1:1: cannot open config file: No "
                                  "such file or directory\n");
}

#define SECRETS_CONFIG                                                                    \
    MINIMAL "routes:\n"                                                                   \
            "  - match: { prefix: \"/q\\\"x\", headers: { x-tenant: acme-tenant-s3, x-present: true } }\n" \
            "    static:\n"                                                                  \
            "    filters:\n"                                                                 \
            "      - headers:\n"                                                             \
            "          request:\n"                                                           \
            "            set: { x-upstream-auth: \"Basic dXNlcjpwYXNz\", x-api-key: k1, "      \
            "cookie: c1, x-token: t1, x-ok: plain-s3 }\n"                                     \
            "            add: { x-auth: auth-s3, x-session: sess-s3, x-jwt: jwt-s3 }\n"      \
            "            rename: { x-a: x-b }\n"                                              \
            "            remove: [ x-internal ]\n"

/* Regression (issue 14, weak spot): /config showed header values set by
 * filters (x-upstream-auth: Basic ..., x-auth, x-session, x-jwt) and route
 * header-match values. Every header value the config sets or matches is
 * redacted, whatever the header's name; structure and harmless values stay. */
static void test_redaction(void **state)
{
    (void)state;
    pt_config_t *c = load(SECRETS_CONFIG);
    if (c == NULL)
        fail_msg("%s", errors());
    const char *j = c->redacted_json;
    static const char *const secrets[] = {"k1",      "c1",      "t1",     "dXNlcjpwYXNz",
                                          "auth-s3", "sess-s3", "jwt-s3", "acme-tenant-s3",
                                          "plain-s3", NULL};
    for (size_t i = 0; secrets[i] != NULL; i++)
        if (strstr(j, secrets[i]) != NULL)
            fail_msg("%s shown in %s", secrets[i], j);
    assert_non_null(strstr(j, "\"x-upstream-auth\":\"[redacted]\""));
    assert_non_null(strstr(j, "\"x-present\":true"));
    assert_non_null(strstr(j, "\"rename\":{\"x-a\":\"x-b\"}"));
    assert_non_null(strstr(j, "\"remove\":[\"x-internal\"]"));
    assert_non_null(strstr(j, "\"static\":null"));
    assert_non_null(strstr(j, "\"prefix\":\"/q\\\"x\""));
    pt_config_unref(c);

    /* admin.show_secrets: true is the operator's explicit choice */
    c = load(SECRETS_CONFIG "admin: { address: 127.0.0.1:9901, show_secrets: true }\n");
    if (c == NULL)
        fail_msg("%s", errors());
    assert_true(c->admin_show_secrets);
    assert_non_null(strstr(c->redacted_json, "\"x-tenant\":\"acme-tenant-s3\""));
    assert_non_null(strstr(c->redacted_json, "\"x-upstream-auth\":\"Basic dXNlcjpwYXNz\""));
    pt_config_unref(c);
}

static void reset_errors(void)
{
    fclose(errs);
    free(errbuf);
    errbuf = NULL;
    errs = open_memstream(&errbuf, &errlen);
}

/* Regression (issue 14, weak spot): the admin listener took 0.0.0.0 with no
 * authentication and no word said. admin.token_file, and a warning at load. */
static void test_admin_token_and_warning(void **state)
{
    (void)state;
    make_certs(); /* for tmpdir */
    char good[128], shortf[128], spaced[128], text[512], want[512];
    snprintf(good, sizeof(good), "%s/token", tmpdir);
    snprintf(shortf, sizeof(shortf), "%s/short", tmpdir);
    snprintf(spaced, sizeof(spaced), "%s/spaced", tmpdir);
    write_file(good, "0123456789abcdef0123456789abcdef\r\n");
    write_file(shortf, "tiny\n");
    write_file(spaced, "0123456789 abcdef0123456789\n");

    /* non-loopback, no token: loads, with a positioned warning */
    reset_errors();
    pt_config_t *c = load(MINIMAL "admin: { address: 0.0.0.0:9901 }\n");
    assert_non_null(c);
    assert_null(c->admin_token);
    assert_non_null(strstr(errors(), "c.yaml:2:19: warning: admin listener 0.0.0.0:9901 is not a "
                                     "loopback address and has no token_file"));
    pt_config_unref(c);
    reset_errors();
    c = load(MINIMAL "admin: { address: \"[::]:9901\" }\n");
    assert_non_null(c);
    assert_non_null(strstr(errors(), "warning: admin listener [::]:9901"));
    pt_config_unref(c);

    /* loopback, or a token: no warning */
    reset_errors();
    c = load(MINIMAL "admin: { address: 127.0.0.2:9901 }\n");
    assert_non_null(c);
    pt_config_unref(c);
    c = load(MINIMAL "admin: { address: \"[::1]:9901\" }\n");
    assert_non_null(c);
    pt_config_unref(c);
    snprintf(text, sizeof(text), MINIMAL "admin: { address: 0.0.0.0:9901, token_file: %s }\n",
             good);
    c = load(text);
    if (c == NULL)
        fail_msg("%s", errors());
    assert_string_equal(errors(), "");
    /* trailing CR LF trimmed; the token never shows in /config */
    assert_int_equal(c->admin_token_len, 32);
    assert_string_equal(c->admin_token, "0123456789abcdef0123456789abcdef");
    assert_null(strstr(c->redacted_json, "0123456789abcdef"));
    pt_config_unref(c);

    /* bad token files are errors at the key */
    snprintf(text, sizeof(text), MINIMAL "admin: { address: 127.0.0.1:9901, token_file: %s }\n",
             shortf);
    snprintf(want, sizeof(want),
             "c.yaml:2:47: admin token in '%s' is 4 bytes; use 16 to 4096 (e.g. `openssl rand "
             "-hex 32`)",
             shortf);
    expect_error(text, want);
    snprintf(text, sizeof(text), MINIMAL "admin: { address: 127.0.0.1:9901, token_file: %s }\n",
             spaced);
    snprintf(want, sizeof(want),
             "c.yaml:2:47: admin token in '%s' must be printable ASCII with no spaces", spaced);
    expect_error(text, want);
    /* client certificates count as authentication too */
    reset_errors();
    snprintf(text, sizeof(text),
             MINIMAL "admin:\n  address: 0.0.0.0:9901\n  tls: { cert: %s/cert.pem, key: %s/key.pem, "
                     "client_ca: %s/othercert.pem }\n",
             tmpdir, tmpdir, tmpdir);
    c = load(text);
    if (c == NULL)
        fail_msg("%s", errors());
    assert_non_null(c->admin_ssl_ctx);
    assert_true(c->admin_client_certs);
    assert_string_equal(errors(), "");
    pt_config_unref(c);
    snprintf(text, sizeof(text),
             MINIMAL "admin:\n  address: 127.0.0.1:9901\n  tls: { cert: %s/cert.pem, key: %s/key.pem, "
                     "client_ca: %s/none.pem }\n",
             tmpdir, tmpdir, tmpdir);
    snprintf(want, sizeof(want),
             "c.yaml:4:%zu: cannot read client CA file '%s/none.pem': No such file or directory",
             53 + 2 * strlen(tmpdir), tmpdir); /* column of the value */
    expect_error(text, want);
    snprintf(text, sizeof(text), MINIMAL "admin: { address: 127.0.0.1:9901, token_file: %s/nope }\n",
             tmpdir);
    snprintf(want, sizeof(want),
             "c.yaml:2:47: cannot read admin token file '%s/nope': No such file or directory",
             tmpdir);
    expect_error(text, want);
}

/* ---- load balancing keys (lb, hash_key, endpoint maps, outlier, circuit_breaker) ---- */

static void test_cluster_lb_keys(void **state)
{
    (void)state;
    pt_config_t *c = load(MINIMAL
                          "clusters:\n"
                          "  - name: a\n"
                          "    lb: ring_hash\n"
                          "    hash_key: \"header:X-User\"\n"
                          "    endpoints:\n"
                          "      - 127.0.0.1:9000\n"
                          "      - { address: \"127.0.0.1:9001\", weight: 3, priority: 1 }\n"
                          "    outlier: { consecutive_failures: 3, base_ejection: 2s, "
                          "max_ejection_percent: 30 }\n"
                          "    circuit_breaker: { max_requests: 100, max_pending: 0 }\n"
                          "  - { name: b, endpoints: { address: \"127.0.0.1:9002\" }, "
                          "lb: least_request }\n"
                          "  - { name: d, endpoints: [ 127.0.0.1:9003 ] }\n");
    assert_non_null(c);
    const pt_cluster_t *a = pt_config_cluster(c, "a");
    assert_int_equal(a->lb, PT_LB_RING_HASH);
    assert_int_equal(a->hash_src, PT_HASH_HEADER);
    assert_string_equal(a->hash_name, "x-user");
    assert_int_equal(a->endpoint_cnt, 2);
    assert_int_equal(a->endpoints[0].weight, 1);
    assert_int_equal(a->endpoints[0].priority, 0);
    assert_int_equal(a->endpoints[1].weight, 3);
    assert_int_equal(a->endpoints[1].priority, 1);
    assert_string_equal(a->endpoints[1].url, "http://127.0.0.1:9001");
    assert_int_equal(a->outlier.consecutive_failures, 3);
    assert_int_equal(a->outlier.base_ejection_ms, 2000);
    assert_int_equal(a->outlier.max_ejection_ms, 300000);
    assert_int_equal(a->outlier.max_ejection_percent, 30);
    assert_int_equal(a->breaker.max_requests, 100);
    assert_int_equal(a->breaker.max_connections, 0);
    assert_non_null(a->shared);
    const pt_cluster_t *b = pt_config_cluster(c, "b");
    assert_int_equal(b->lb, PT_LB_LEAST_REQUEST);
    assert_int_equal(b->endpoint_cnt, 1);
    const pt_cluster_t *d = pt_config_cluster(c, "d");
    assert_int_equal(d->lb, PT_LB_ROUND_ROBIN);
    assert_int_equal(d->outlier.consecutive_failures, 5);
    assert_int_equal(d->outlier.base_ejection_ms, 10000);
    assert_int_equal(d->outlier.max_ejection_percent, 50);
    pt_config_unref(c);
}

static void test_err_cluster_lb_keys(void **state)
{
    (void)state;
#define CL MINIMAL "clusters:\n  - name: a\n    endpoints: [ 127.0.0.1:1 ]\n"
    expect_error(CL "    lb: fastest\n",
                 "c.yaml:5:9: unknown lb 'fastest' (expected round_robin, least_request, random or "
                 "ring_hash)");
    expect_error(CL "    hash_key: client_ip\n", "c.yaml:5:15: hash_key needs lb: ring_hash");
    expect_error(CL "    lb: ring_hash\n    hash_key: \"header:\"\n",
                 "c.yaml:6:15: hash_key 'header:': bad header name");
    expect_error(CL "    lb: ring_hash\n    hash_key: \"cookie:a b\"\n",
                 "c.yaml:6:15: hash_key 'cookie:a b': bad cookie name");
    expect_error(CL "    lb: ring_hash\n    hash_key: query:x\n",
                 "c.yaml:6:15: unknown hash_key 'query:x' (expected client_ip, \"header:NAME\" or "
                 "\"cookie:NAME\")");
    expect_error(CL "    outlier: { consecutive_fails: 3 }\n",
                 "c.yaml:5:16: unknown key 'consecutive_fails'");
    expect_error(CL "    outlier: { max_ejection_percent: 101 }\n",
                 "c.yaml:5:38: value 101 out of range [0, 100]");
    expect_error(CL "    outlier: { base_ejection: 1m, max_ejection: 10s }\n",
                 "c.yaml:5:49: outlier: max_ejection is shorter than base_ejection");
    expect_error(CL "    circuit_breaker: {}\n",
                 "c.yaml:5:22: circuit_breaker: expected at least one of max_connections, "
                 "max_pending, max_requests");
    expect_error(CL "    circuit_breaker: { max_requests: 0 }\n",
                 "c.yaml:5:38: value 0 out of range [1, 10000000]");
#undef CL
    expect_error(MINIMAL "clusters:\n  - { name: a, endpoints: [ { address: 127.0.0.1:1, weight: 0 } ] }\n",
                 "c.yaml:3:61: value 0 out of range [1, 10000]");
    expect_error(MINIMAL "clusters:\n  - { name: a, endpoints: [ { weight: 2 } ] }\n",
                 "c.yaml:3:29: missing required key 'address'");
    expect_error(MINIMAL "clusters:\n  - { name: a, endpoints: [ { address: \"ftp://h\" } ] }\n",
                 "c.yaml:3:40: bad endpoint 'ftp://h': only http:// and https:// are supported");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_full),
        T(test_cluster_lb_keys),
        T(test_err_cluster_lb_keys),
        T(test_defaults),
        T(test_json_config),
        T(test_err_syntax),
        T(test_err_empty),
        T(test_err_unknown_key),
        T(test_err_types_and_ranges),
        T(test_err_duplicate_key),
        T(test_err_addresses),
        T(test_err_clusters),
        T(test_err_routes),
        T(test_err_collects_all),
        T(test_tls_and_file),
        T(test_tls_errors),
        T(test_missing_file),
        T(test_redaction),
        T(test_admin_token_and_warning),
#undef T
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (tmpdir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            rc = rc != 0 ? rc : 1;
    }
    return rc;
}
