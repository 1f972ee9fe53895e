/*
 * test_dashboard.c -- the live dashboard's JSON snapshot (observe/dashboard.c)
 * from metric shards: sums over the shards, routes and clusters of the config
 * listed without traffic, series of removed ones kept and marked, gauges.
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
#include "core/config.h"
#include "observe/dashboard.h"
#include "observe/metrics.h"
#include "portico/status.h"

#define LONG_NAME "a-route-with-a-name-longer-than-the-sixty-three-bytes-a-series-keeps"

static const char CONFIG[] =
    "listeners: [ { address: 127.0.0.1:8080 } ]\n"
    "clusters:\n"
    "  - { name: web, endpoints: [ \"http://127.0.0.1:9001\", \"http://127.0.0.1:9002\" ] }\n"
    "  - { name: idle, endpoints: [ \"http://127.0.0.1:9003\" ] }\n"
    "routes:\n"
    "  - { name: api, match: { prefix: /api }, proxy: { cluster: web } }\n"
    "  - { name: fresh, match: { prefix: /fresh }, respond: { body: ok } }\n"
    "  - { name: " LONG_NAME ", match: { prefix: /long }, respond: { body: ok } }\n";

static pt_config_t *load(void)
{
    pt_config_t *c = pt_config_load_string("d.yaml", CONFIG, strlen(CONFIG), stderr);
    assert_non_null(c);
    return c;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("no \"%s\" in %s", key, json_object_to_json_string(o));
    return v;
}

static uint64_t num(json_object *o, const char *key)
{
    return json_object_get_uint64(get(o, key));
}

static uint64_t at(json_object *a, size_t i)
{
    return json_object_get_uint64(json_object_array_get_idx(a, i));
}

/* The element of array `a` whose "name" is `name`, and its position. */
static json_object *named(json_object *a, const char *name, size_t *pos)
{
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *e = json_object_array_get_idx(a, i);
        if (strcmp(json_object_get_string(get(e, "name")), name) == 0) {
            if (pos != NULL)
                *pos = i;
            return e;
        }
    }
    fail_msg("no element named %s", name);
    return NULL;
}

static void test_snapshot_sums_shards(void **state)
{
    (void)state;
    pt_metrics_shard_t *s[3] = {pt_metrics_shard_new(), NULL, pt_metrics_shard_new()};
    pt_metrics_request(s[0], "api", 200, 300, 200, true, 10, 20);      /* bucket 0 (<= 0.5 ms) */
    pt_metrics_request(s[2], "api", 200, 3000, 2500, true, 0, 5);      /* bucket 3 (<= 5 ms) */
    pt_metrics_request(s[2], "api", 404, 20000000, 0, false, 0, 0);    /* +Inf */
    pt_metrics_request(s[0], "api", 502, 1000, 900, true, 0, 0);       /* bucket 1 (<= 1 ms) */
    pt_metrics_request(s[0], "old", 200, 1, 0, false, 0, 0);           /* a route reload removed */
    pt_metrics_request(s[2], LONG_NAME, 503, 1, 0, false, 0, 0);
    pt_metrics_cluster(s[0], "web", 200, 200);
    pt_metrics_cluster(s[2], "web", 200, 2500);
    pt_metrics_cluster(s[0], "web", 502, 900);
    pt_metrics_cluster(s[2], "gone", 0, 7);
    pt_metrics_upstream_error(s[0], "web", PT_ERR_TIMEOUT);
    pt_metrics_upstream_error(s[2], "web", PT_ERR_TIMEOUT);
    pt_metrics_upstream_event(s[2], "web", 4); /* PT_OBSERVE_UP_EJECTION */
    pt_metrics_gauge_add(&s[0]->h2_streams_active, 3);
    pt_metrics_gauge_add(&s[2]->h2_streams_active, 2);
    pt_metrics_gauge_add(&s[2]->h2_streams_active, -1);
    atomic_store(&s[0]->ws_opened, 5);
    atomic_store(&s[0]->ws_sessions, 2);
    atomic_store(&s[2]->ws_opened, 1);
    pt_metrics_gauge_add(&s[0]->conns_active, 4);
    pt_metrics_gauge_add(&s[2]->tunnels_active, 2);
    atomic_store(&s[2]->tunnels_total, 9);

    pt_config_t *c = load();
    pt_metrics_globals_t g = {.generation = 7, .reloads_ok = 2, .reloads_failed = 1, .workers = 3};
    json_object *o = pt_dashboard_snapshot(s, 3, c, &g, 1234567);
    /* what the admin sends: the text parses back to the same document */
    json_object *back = json_tokener_parse(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    assert_non_null(back);
    assert_true(json_object_equal(o, back));
    json_object_put(back);

    assert_int_equal(num(o, "version"), PT_DASHBOARD_VERSION);
    assert_int_equal(num(o, "time_ms"), 1234567);
    assert_int_equal(num(o, "generation"), 7);
    assert_int_equal(num(o, "workers"), 3);
    assert_int_equal(num(get(o, "reloads"), "ok"), 2);
    assert_int_equal(num(get(o, "reloads"), "failed"), 1);
    json_object *bounds = get(o, "buckets_us");
    assert_int_equal(json_object_array_length(bounds), PT_METRICS_BUCKETS - 1);
    assert_int_equal(at(bounds, 0), 500);
    assert_int_equal(at(bounds, PT_METRICS_BUCKETS - 2), 10000000);
    assert_int_equal(num(get(o, "http2_streams"), "open"), 4);
    assert_int_equal(num(get(o, "websockets"), "open"), 4); /* 6 opened, 2 ended */
    assert_int_equal(num(get(o, "websockets"), "total"), 6);
    assert_int_equal(num(get(o, "connections"), "open"), 4);
    assert_int_equal(num(get(o, "tunnels"), "open"), 2);
    assert_int_equal(num(get(o, "tunnels"), "total"), 9);
    assert_int_equal(num(get(o, "bytes"), "in"), 10);
    assert_int_equal(num(get(o, "bytes"), "out"), 25);

    /* routes: the configured ones in config order (even without traffic), then the others */
    json_object *routes = get(o, "routes");
    assert_int_equal(json_object_array_length(routes), 4);
    size_t pos = 99;
    json_object *api = named(routes, "api", &pos);
    assert_int_equal(pos, 0);
    assert_true(json_object_get_boolean(get(api, "configured")));
    assert_int_equal(num(api, "requests"), 4);
    json_object *cls = get(api, "classes");
    assert_int_equal(json_object_array_length(cls), PT_METRICS_CLASSES);
    assert_int_equal(at(cls, 1), 2); /* 2xx */
    assert_int_equal(at(cls, 3), 1); /* 4xx */
    assert_int_equal(at(cls, 4), 1); /* 5xx */
    assert_int_equal(num(get(api, "codes"), "200"), 2);
    assert_int_equal(num(get(api, "codes"), "502"), 1);
    json_object *lat = get(api, "latency");
    assert_int_equal(num(lat, "count"), 4);
    assert_int_equal(num(lat, "sum_us"), 300 + 3000 + 20000000 + 1000);
    json_object *b = get(lat, "buckets");
    assert_int_equal(json_object_array_length(b), PT_METRICS_BUCKETS);
    assert_int_equal(at(b, 0), 1);
    assert_int_equal(at(b, 1), 1);
    assert_int_equal(at(b, 3), 1);
    assert_int_equal(at(b, PT_METRICS_BUCKETS - 1), 1);
    json_object *ulat = get(api, "upstream_latency");
    assert_int_equal(num(ulat, "count"), 3);
    assert_int_equal(num(ulat, "sum_us"), 200 + 2500 + 900);

    json_object *fresh = named(routes, "fresh", &pos);
    assert_int_equal(pos, 1);
    assert_true(json_object_get_boolean(get(fresh, "configured")));
    assert_int_equal(num(fresh, "requests"), 0);
    assert_int_equal(num(get(fresh, "latency"), "count"), 0);
    assert_int_equal(json_object_array_length(get(get(fresh, "latency"), "buckets")), PT_METRICS_BUCKETS);
    /* a name longer than a series keeps is still its route's series */
    json_object *lng = named(routes, LONG_NAME, &pos);
    assert_int_equal(pos, 2);
    assert_true(json_object_get_boolean(get(lng, "configured")));
    assert_int_equal(num(get(lng, "codes"), "503"), 1);
    json_object *old = named(routes, "old", &pos);
    assert_int_equal(pos, 3);
    assert_false(json_object_get_boolean(get(old, "configured")));
    assert_int_equal(num(old, "requests"), 1);

    /* clusters: configured ones with their endpoints, then series of removed ones */
    json_object *clusters = get(o, "clusters");
    assert_int_equal(json_object_array_length(clusters), 3);
    json_object *web = named(clusters, "web", &pos);
    assert_int_equal(pos, 0);
    assert_int_equal(num(web, "requests"), 3);
    assert_int_equal(at(get(web, "classes"), 1), 2);
    assert_int_equal(at(get(web, "classes"), 4), 1);
    assert_int_equal(num(get(web, "latency"), "count"), 3);
    assert_int_equal(num(get(web, "latency"), "sum_us"), 200 + 2500 + 900);
    assert_int_equal(at(get(get(web, "latency"), "buckets"), 0), 1);
    assert_int_equal(at(get(get(web, "latency"), "buckets"), 1), 1);
    assert_int_equal(at(get(get(web, "latency"), "buckets"), 2), 1); /* 2500 us: le 2.5 ms */
    assert_int_equal(num(get(web, "errors"), "TIMEOUT"), 2);
    assert_int_equal(num(get(web, "events"), "ejections"), 1);
    assert_int_equal(num(get(web, "events"), "retries"), 0);
    assert_true(json_object_is_type(get(web, "health_check"), json_type_null));
    json_object *eps = get(web, "endpoints");
    assert_int_equal(json_object_array_length(eps), 2);
    json_object *ep1 = json_object_array_get_idx(eps, 1);
    assert_string_equal(json_object_get_string(get(ep1, "address")), "http://127.0.0.1:9002");
    assert_true(json_object_get_boolean(get(ep1, "healthy")));
    assert_false(json_object_get_boolean(get(get(ep1, "outlier"), "ejected")));
    json_object *idle = named(clusters, "idle", &pos);
    assert_int_equal(pos, 1);
    assert_int_equal(num(idle, "requests"), 0);
    assert_int_equal(json_object_array_length(get(idle, "endpoints")), 1);
    json_object *gone = named(clusters, "gone", &pos);
    assert_int_equal(pos, 2);
    assert_false(json_object_get_boolean(get(gone, "configured")));
    assert_int_equal(at(get(gone, "classes"), PT_METRICS_CLASSES - 1), 1); /* status 0: other */
    assert_false(json_object_object_get_ex(gone, "endpoints", NULL));

    json_object_put(o);
    pt_config_unref(c);
    pt_metrics_shard_free(s[0]);
    pt_metrics_shard_free(s[2]);
}

/* No config (the admin has none yet) and no globals: the series alone. */
static void test_snapshot_without_config(void **state)
{
    (void)state;
    pt_metrics_shard_t *s = pt_metrics_shard_new();
    pt_metrics_request(s, "_none", 404, 10, 0, false, 0, 0);
    json_object *o = pt_dashboard_snapshot(&s, 1, NULL, NULL, 1);
    assert_false(json_object_object_get_ex(o, "generation", NULL));
    json_object *routes = get(o, "routes");
    assert_int_equal(json_object_array_length(routes), 1);
    json_object *r = json_object_array_get_idx(routes, 0);
    assert_string_equal(json_object_get_string(get(r, "name")), "_none");
    assert_false(json_object_get_boolean(get(r, "configured")));
    assert_int_equal(json_object_array_length(get(o, "clusters")), 0);
    json_object_put(o);
    pt_metrics_shard_free(s);
}

/* More clusters than a shard's table: the rest share the "_other" series. */
static void test_cluster_series_bounded(void **state)
{
    (void)state;
    pt_metrics_shard_t *s = pt_metrics_shard_new();
    char name[32];
    for (int i = 0; i < 3 * PT_METRICS_CLUSTERS; i++) {
        snprintf(name, sizeof(name), "cluster-%d", i);
        pt_metrics_cluster(s, name, 200, 10);
    }
    json_object *o = pt_dashboard_snapshot(&s, 1, NULL, NULL, 1);
    json_object *clusters = get(o, "clusters");
    assert_int_equal(json_object_array_length(clusters), PT_METRICS_CLUSTERS);
    uint64_t total = 0;
    for (size_t i = 0; i < json_object_array_length(clusters); i++)
        total += num(json_object_array_get_idx(clusters, i), "requests");
    assert_int_equal(total, 3 * PT_METRICS_CLUSTERS);
    assert_true(num(named(clusters, "_other", NULL), "requests") >= 2 * PT_METRICS_CLUSTERS);
    json_object_put(o);
    pt_metrics_shard_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_sums_shards),
        cmocka_unit_test(test_snapshot_without_config),
        cmocka_unit_test(test_cluster_series_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
