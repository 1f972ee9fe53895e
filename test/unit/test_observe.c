/*
 * test_observe.c -- Prometheus rendering of metric shards and access-log lines.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "tmpdir.h"
#include "observe/accesslog.h"
#include "core/config.h"
#include "observe/metrics.h"
#include "core/request.h"

static char *render(pt_metrics_shard_t **shards, unsigned n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pt_metrics_globals_t g = {7, 2, 1, n, 3};
    pt_metrics_render(f, shards, n, &g);
    fclose(f);
    return text;
}

static void test_metrics_sum_and_buckets(void **state)
{
    (void)state;
    pt_metrics_shard_t *s[2] = {pt_metrics_shard_new(), pt_metrics_shard_new()};
    pt_metrics_request(s[0], "api", 200, 300, 200, true, 10, 20);     /* 0.3 ms */
    pt_metrics_request(s[0], "api", 200, 3000, 0, false, 0, 5);       /* 3 ms */
    pt_metrics_request(s[1], "api", 200, 20000000, 0, false, 0, 0);   /* 20 s: +Inf */
    pt_metrics_request(s[1], "api", 502, 1000, 900, true, 0, 0);      /* 1 ms */
    pt_metrics_request(s[1], "we\"ird\\\n", 404, 1, 0, false, 0, 0);
    pt_metrics_upstream_error(s[1], "web", PT_ERR_TIMEOUT);
    atomic_store(&s[0]->log_dropped, 2);
    atomic_store(&s[1]->log_dropped, 3);
    char *t = render(s, 2);
    assert_non_null(strstr(t, "portico_requests_total{route=\"api\",code=\"200\"} 3\n"));
    assert_non_null(strstr(t, "portico_requests_total{route=\"api\",code=\"502\"} 1\n"));
    assert_non_null(strstr(t, "route=\"we\\\"ird\\\\\\n\",code=\"404\"} 1\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_bucket{route=\"api\",le=\"0.001\"} 2\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_bucket{route=\"api\",le=\"10\"} 3\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_count{route=\"api\"} 4\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_sum{route=\"api\"} 20.004300\n"));
    assert_non_null(strstr(t, "portico_upstream_duration_seconds_count{route=\"api\"} 2\n"));
    assert_non_null(strstr(t, "portico_upstream_errors_total{cluster=\"web\",error=\"TIMEOUT\"} 1\n"));
    assert_non_null(strstr(t, "portico_request_bytes_total 10\n"));
    assert_non_null(strstr(t, "portico_response_bytes_total 25\n"));
    assert_non_null(strstr(t, "# TYPE portico_access_log_dropped_total counter\n"
                              "portico_access_log_dropped_total 5\n"));
    assert_non_null(strstr(t, "portico_config_generation 7\n"));
    assert_non_null(strstr(t, "portico_config_reloads_total{result=\"failed\"} 1\n"));
    free(t);
    pt_metrics_shard_free(s[0]);
    pt_metrics_shard_free(s[1]);
}

static void test_metrics_cardinality_bounded(void **state)
{
    (void)state;
    pt_metrics_shard_t *s = pt_metrics_shard_new();
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        pt_metrics_request(s, name, 200 + i % 7, 10, 0, false, 0, 0);
    }
    char *t = render(&s, 1);
    size_t series = 0;
    for (char *p = t; (p = strstr(p, "portico_requests_total{")) != NULL; p++)
        series++;
    assert_true(series <= PT_METRICS_ROUTES);
    assert_non_null(strstr(t, "route=\"_other\""));
    free(t);
    pt_metrics_shard_free(s);
}

static void test_accesslog_line(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_config_t cfg = {0};
    pt_route_t route = {.name = "books"};
    pt_req_t req = {0};
    req.arena = a;
    req.config = &cfg;
    req.method = PT_STR("GET");
    req.path = (pt_str_t){"/a\"b\x01\xff\xc3\xa9", 9};
    req.query = PT_STR("x=1");
    req.version = 20;
    req.client_addr = PT_STR("127.0.0.1");
    req.request_id = PT_STR("abc-123");
    req.resp_status = 201;
    req.body_received = 5;
    req.bytes_out = 7;
    req.start_ns = pt_now_ns();
    req.start_wall_us = 1700000000123456;
    req.route.route = &route;
    req.upstream_addr = "http://127.0.0.1:9000";
    req.upstream_ns = 1500000;
    req.fail_status = PT_ERR_UPSTREAM;
    req.fail_reason = "connection reset";
    pt_headers_init(&req.headers, a);
    pt_headers_add(&req.headers, PT_STR("user-agent"), PT_STR("curl/7.88"));
    char buf[2048];
    size_t len = 0;
    assert_int_equal(pt_accesslog_format(&req, pt_now_ns(), buf, sizeof(buf), &len), 0);
    assert_true(len > 0 && buf[len - 1] == '\n');
    buf[len] = '\0';
    json_object *o = json_tokener_parse(buf);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "time", &v));
    assert_string_equal(json_object_get_string(v), "2023-11-14T22:13:20.123Z");
    assert_true(json_object_object_get_ex(o, "path", &v));
    assert_string_equal(json_object_get_string(v), "/a\"b\x01\xc3\xbf\xc3\xa9");
    assert_true(json_object_object_get_ex(o, "protocol", &v));
    assert_string_equal(json_object_get_string(v), "HTTP/2");
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), 201);
    assert_true(json_object_object_get_ex(o, "bytes_in", &v));
    assert_int_equal(json_object_get_int(v), 5);
    assert_true(json_object_object_get_ex(o, "bytes_out", &v));
    assert_int_equal(json_object_get_int(v), 7);
    assert_true(json_object_object_get_ex(o, "route", &v));
    assert_string_equal(json_object_get_string(v), "books");
    assert_true(json_object_object_get_ex(o, "upstream", &v));
    assert_string_equal(json_object_get_string(v), "http://127.0.0.1:9000");
    assert_true(json_object_object_get_ex(o, "upstream_ms", &v));
    assert_true(json_object_get_double(v) > 1.49 && json_object_get_double(v) < 1.51);
    assert_true(json_object_object_get_ex(o, "error", &v));
    assert_string_equal(json_object_get_string(v), "UPSTREAM");
    assert_true(json_object_object_get_ex(o, "id", &v));
    assert_string_equal(json_object_get_string(v), "abc-123");
    json_object_put(o);
    /* a line that does not fit leaves *len untouched and says what it needs */
    size_t small = 0;
    assert_int_equal(pt_accesslog_format(&req, pt_now_ns(), buf, 40, &small), len);
    assert_int_equal(small, 0);
    pt_arena_destroy(a);
}

static char *filled(size_t n, char c)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

static json_object *field(json_object *o, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, name, &v))
        fail_msg("no field %s", name);
    return v;
}

/* Regression (issue 14, bug 4): numbers went through one 64-byte buffer, so a
 * 100 MB response logged `"bytes_out":104857600,"duration_ms","route"` and a
 * 10,009 ms request `"duration_ms":1000`. Every field, at its largest. */
static void test_accesslog_huge_values(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_config_t cfg = {0};
    char *route_name = filled(5000, 'r');
    pt_route_t route = {.name = route_name};
    char *path = filled(100000, '"'); /* each escaped: 200,000 bytes of JSON */
    path[0] = '/';
    char *query = filled(50000, 'q');
    char *rid = filled(1000, 'i');
    char *up = filled(3000, 'u');
    char *reason = filled(4000, 'e');
    char *ua = filled(1000, 'a');
    pt_req_t req = {0};
    req.arena = a;
    req.config = &cfg;
    req.method = PT_STR("PROPFIND");
    req.path = pt_str_c(path);
    req.query = pt_str_c(query);
    req.version = 11;
    req.client_addr = PT_STR("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    req.request_id = pt_str_c(rid);
    req.resp_status = 599;
    req.body_received = UINT64_MAX;
    req.bytes_out = 104857600;
    req.start_ns = 5000000000ull;
    req.start_wall_us = 1700000000123456;
    req.route.route = &route;
    req.upstream_addr = up;
    req.upstream_ns = 10008999999ull;
    req.fail_status = PT_ERR_UPSTREAM;
    req.fail_reason = reason;
    pt_headers_init(&req.headers, a);
    pt_headers_add(&req.headers, PT_STR("user-agent"), pt_str_c(ua));
    uint64_t now = req.start_ns + 10009000123ull;

    char *buf = malloc(65536);
    size_t len = 0;
    size_t need = pt_accesslog_format(&req, now, buf, 65536, &len);
    assert_true(need > 65536);
    assert_int_equal(len, 0);
    free(buf);
    buf = malloc(need + 1);
    assert_int_equal(pt_accesslog_format(&req, now, buf, need, &len), 0);
    assert_int_equal(len, need);
    assert_int_equal(buf[len - 1], '\n');
    buf[len] = '\0';
    assert_non_null(strstr(buf, ",\"duration_ms\":10009.000,"));
    assert_non_null(strstr(buf, ",\"upstream_ms\":10008.999,"));

    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    json_tokener_free(tok);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(field(o, "path")), path);
    assert_string_equal(json_object_get_string(field(o, "query")), query);
    assert_string_equal(json_object_get_string(field(o, "id")), rid);
    assert_string_equal(json_object_get_string(field(o, "method")), "PROPFIND");
    assert_string_equal(json_object_get_string(field(o, "client")),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(json_object_get_int(field(o, "status")), 599);
    assert_true(json_object_get_uint64(field(o, "bytes_in")) == UINT64_MAX);
    assert_int_equal(json_object_get_int64(field(o, "bytes_out")), 104857600);
    assert_true(json_object_get_double(field(o, "duration_ms")) == 10009.0);
    assert_true(json_object_get_double(field(o, "upstream_ms")) == 10008.999);
    assert_string_equal(json_object_get_string(field(o, "route")), route_name);
    assert_string_equal(json_object_get_string(field(o, "upstream")), up);
    assert_string_equal(json_object_get_string(field(o, "error")), "UPSTREAM");
    assert_string_equal(json_object_get_string(field(o, "reason")), reason);
    /* the user agent is deliberately capped at 256 bytes (documented) */
    assert_int_equal(strlen(json_object_get_string(field(o, "user_agent"))), 256);
    json_object_put(o);

    /* The smallest line that used to be cut: a 10,009 ms request. */
    pt_req_t small = req;
    small.path = PT_STR("/");
    small.query = PT_STR("");
    small.request_id = PT_STR("x");
    small.route.route = NULL;
    small.upstream_addr = NULL;
    small.fail_status = 0;
    small.body_received = 0;
    small.bytes_out = 2;
    small.resp_status = 200;
    char line[1024];
    len = 0;
    assert_int_equal(pt_accesslog_format(&small, now, line, sizeof(line) - 1, &len), 0);
    line[len] = '\0';
    assert_non_null(strstr(line, "\"bytes_out\":2,\"duration_ms\":10009.000,\"upstream\":null"));
    o = json_tokener_parse(line);
    assert_non_null(o);
    json_object_put(o);

    free(buf);
    free(route_name);
    free(path);
    free(query);
    free(rid);
    free(up);
    free(reason);
    free(ua);
    pt_arena_destroy(a);
}

static size_t file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Regression (issue 14, bug 3): a failed first open was final (the file was
 * reopened only when the configured path changed), and nothing reopened it
 * for rotation. Times are passed in, so the 1 s retry needs no sleeping. */
static void test_accesslog_retry_and_reopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/pt-alog-XXXXXX";
    assert_non_null(pt_test_mkdtemp(dir));
    char sub[64], path[96], rotated[96];
    snprintf(sub, sizeof(sub), "%s/logs", dir);
    snprintf(path, sizeof(path), "%s/access.log", sub);
    snprintf(rotated, sizeof(rotated), "%s/access.log.1", sub);

    pt_arena_t *a = pt_arena_new(0, 0);
    pt_config_t cfg = {.access_log = path};
    pt_req_t req = {0};
    req.arena = a;
    req.config = &cfg;
    req.method = PT_STR("GET");
    req.path = PT_STR("/");
    req.client_addr = PT_STR("127.0.0.1");
    req.resp_status = 200;
    pt_headers_init(&req.headers, a);
    const uint64_t t0 = 1000000000000ull, ms = 1000000ull;
    req.start_ns = t0;

    atomic_uint_fast64_t dropped = 0;
    pt_accesslog_t *l = pt_accesslog_new(&dropped);
    pt_accesslog_write(l, &req, t0);            /* logs/ does not exist: dropped */
    assert_int_equal(atomic_load(&dropped), 1);
    assert_int_equal(mkdir(sub, 0755), 0);
    pt_accesslog_write(l, &req, t0 + 500 * ms); /* no retry before a second */
    assert_int_equal(atomic_load(&dropped), 2);
    pt_accesslog_flush(l);
    assert_int_equal(access(path, F_OK), -1);
    pt_accesslog_write(l, &req, t0 + 1000 * ms); /* retried: opened */
    pt_accesslog_write(l, &req, t0 + 1001 * ms);
    assert_int_equal(atomic_load(&dropped), 2);
    pt_accesslog_flush(l);
    assert_int_equal(file_lines(path), 2);

    /* rotation: the buffered line goes to the old file, later ones to the new */
    pt_accesslog_write(l, &req, t0 + 1002 * ms);
    assert_int_equal(rename(path, rotated), 0);
    pt_accesslog_reopen(l, 1003);
    pt_accesslog_write(l, &req, t0 + 1004 * ms);
    pt_accesslog_flush(l);
    assert_int_equal(file_lines(rotated), 3);
    assert_int_equal(file_lines(path), 1);
    assert_int_equal(atomic_load(&dropped), 2);
    pt_accesslog_free(l);

    unlink(path);
    unlink(rotated);
    rmdir(sub);
    rmdir(dir);
    pt_arena_destroy(a);
}

/* The line's timestamp is computed from the day count (no gmtime/strftime
 * per line): the same text as libc's for days around every kind of year
 * boundary and a spread of instants up to 9999. */
static void test_accesslog_time(void **state)
{
    (void)state;
    static const int64_t secs[] = {0, 59, 86399, 86400, 951782400 /* 2000-02-29 */,
                                   951868799, 951868800, 4107542400 /* 2100-03-01 */,
                                   4107455999, 1700000000, 2147483647, 2147483648,
                                   253402300799 /* 9999-12-31T23:59:59 */};
    char got[40], want[64];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]) + 20000; i++) {
        int64_t us;
        if (i < sizeof(secs) / sizeof(secs[0])) {
            us = secs[i] * 1000000 + (int64_t)(i * 123457 % 1000000);
        } else { /* xorshift: any instant from 1970 to 9999 */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            us = (int64_t)(x % 253402300800000000ull);
        }
        size_t n = pt__accesslog_time(us, got);
        time_t t = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t tn = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + tn, sizeof(want) - tn, ".%03dZ", (int)((us / 1000) % 1000));
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
    }
}

/* Strings go out eight plain bytes at a time: a byte that needs escaping at
 * any position of a 40-byte path comes back from a JSON parser as it was
 * (bytes that are not UTF-8 as U+00XX, as always). */
static void test_accesslog_escapes_at_every_offset(void **state)
{
    (void)state;
    static const unsigned char specials[] = {'"', '\\', 0x01, 0x1f, 0x7f, 0x80, 0xff, 0x20, '~'};
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_config_t cfg = {0};
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t k = 0; k < sizeof(specials); k++) {
            char path[40], want[48];
            size_t wn = 0;
            for (size_t i = 0; i < sizeof(path); i++) {
                unsigned char c = i == pos ? specials[k] : (unsigned char)('a' + i % 26);
                path[i] = (char)c;
                if (c >= 0x80) { /* not UTF-8 on its own: U+00XX */
                    want[wn++] = (char)(0xc0 | (c >> 6));
                    want[wn++] = (char)(0x80 | (c & 0x3f));
                } else {
                    want[wn++] = (char)c;
                }
            }
            want[wn] = '\0';
            pt_req_t req = {0};
            req.arena = a;
            req.config = &cfg;
            req.method = PT_STR("GET");
            req.path = (pt_str_t){path, sizeof(path)};
            req.version = 11;
            req.request_id = PT_STR("r");
            pt_headers_init(&req.headers, a);
            char buf[1024];
            size_t len = 0;
            assert_int_equal(pt_accesslog_format(&req, req.start_ns, buf, sizeof(buf) - 1, &len), 0);
            buf[len] = '\0';
            json_object *o = json_tokener_parse(buf);
            assert_non_null(o);
            json_object *v;
            assert_true(json_object_object_get_ex(o, "path", &v));
            assert_int_equal(json_object_get_string_len(v), wn);
            assert_memory_equal(json_object_get_string(v), want, wn);
            json_object_put(o);
        }
    }
    pt_arena_destroy(a);
}

/* The shard remembers its last route and cluster slots by name pointer: a
 * name whose memory now holds another name (a freed config's string, its
 * address reused) must count under the new name, not the remembered slot. */
static void test_metrics_memo_checks_names(void **state)
{
    (void)state;
    pt_metrics_shard_t *s[1] = {pt_metrics_shard_new()};
    char route[16] = "alpha", cluster[16] = "web-a";
    pt_metrics_request(s[0], route, 200, 300, 200, true, 1, 1);
    pt_metrics_cluster(s[0], cluster, 200, 200);
    pt_metrics_request(s[0], route, 200, 300, 200, true, 1, 1); /* a memo hit */
    pt_metrics_cluster(s[0], cluster, 200, 200);
    pt_metrics_request(s[0], route, 503, 300, 200, true, 1, 1); /* same route, other code */
    strcpy(route, "beta");
    strcpy(cluster, "web-b");
    pt_metrics_request(s[0], route, 200, 300, 200, true, 1, 1);
    pt_metrics_cluster(s[0], cluster, 200, 200);
    char *t = render(s, 1);
    assert_non_null(strstr(t, "portico_requests_total{route=\"alpha\",code=\"200\"} 2\n"));
    assert_non_null(strstr(t, "portico_requests_total{route=\"alpha\",code=\"503\"} 1\n"));
    assert_non_null(strstr(t, "portico_requests_total{route=\"beta\",code=\"200\"} 1\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_count{route=\"alpha\"} 3\n"));
    assert_non_null(strstr(t, "portico_request_duration_seconds_count{route=\"beta\"} 1\n"));
    assert_non_null(strstr(t, "portico_cluster_requests_total{cluster=\"web-a\",class=\"2xx\"} 2\n"));
    assert_non_null(strstr(t, "portico_cluster_requests_total{cluster=\"web-b\",class=\"2xx\"} 1\n"));
    free(t);
    pt_metrics_shard_free(s[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_sum_and_buckets),
        cmocka_unit_test(test_metrics_cardinality_bounded),
        cmocka_unit_test(test_metrics_memo_checks_names),
        cmocka_unit_test(test_accesslog_line),
        cmocka_unit_test(test_accesslog_huge_values),
        cmocka_unit_test(test_accesslog_time),
        cmocka_unit_test(test_accesslog_escapes_at_every_offset),
        cmocka_unit_test(test_accesslog_retry_and_reopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
