/*
 * bench_transcoder.c -- throughput of Portico's JSON <-> protobuf transcoder.
 *
 *   bench_transcoder --gen DIR            writes the workload JSON files
 *   bench_transcoder SET.pb DIR [SECS [WORKLOAD [json2pb|pb2json]]]
 *                                         converts them both ways, prints results
 *                                         (the filters help when profiling one cell)
 *
 * Workloads (bench.proto): small, nested (a message tree), repeated (time
 * series), map (four map kinds), wkt (Timestamp/Duration/Struct/Any/...).
 * For each, JSON->binary and binary->JSON run in a timed loop (at least SECS
 * seconds, default 0.3) that reuses one output buffer, as the gateway does.
 * Output lines, one per workload and direction, for bench/transcoder.sh:
 *
 *   RESULT ours <workload> <json2pb|pb2json> <msgs/s> <MB/s of JSON> <json bytes> <pb bytes>
 *
 * MB/s is counted on the JSON text in both directions, so the two directions
 * and the two implementations compare on the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/transcoder/descpool.h"
#include "portico/transcoder/json.h"

/* ---- workload generation ------------------------------------------------ */

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static const char *const words[] = {"alpha", "bravo", "charlie", "delta",  "echo", "foxtrot",
                                    "golf",  "hotel", "india",   "juliet", "kilo", "lima"};
static const char *word(void)
{
    return words[rnd(12)];
}

static void gen_small(FILE *f)
{
    fprintf(f, "{\"id\":12345,\"name\":\"user-12345\",\"active\":true,\"score\":98.25,"
               "\"status\":\"ACTIVE\",\"createdAtMs\":\"1700000000123\"}");
}

static void gen_node(FILE *f, int depth, int *id)
{
    int me = (*id)++;
    fprintf(f,
            "{\"name\":\"node-%d-%s\",\"value\":%d,\"leaf\":{\"key\":\"%s\",\"weight\":%u,"
            "\"ratio\":0.5},\"status\":\"%s\"",
            me, word(), me * 7, word(), rnd(1000), me % 2 ? "ACTIVE" : "SUSPENDED");
    if (depth > 0) {
        fprintf(f, ",\"children\":[");
        for (int i = 0; i < 3; i++) {
            if (i)
                fputc(',', f);
            gen_node(f, depth - 1, id);
        }
        fputc(']', f);
    }
    fputc('}', f);
}

static void gen_repeated(FILE *f)
{
    fprintf(f, "{\"metric\":\"http_requests_total\",\"timestamps\":[");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "%s\"%lld\"", i ? "," : "", 1700000000000LL + i * 1000LL);
    fprintf(f, "],\"values\":[");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "%s%d.25", i ? "," : "", (int)rnd(100000));
    fprintf(f, "],\"labels\":[");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s\"%s-%d\"", i ? "," : "", word(), i);
    fprintf(f, "],\"points\":[");
    for (int i = 0; i < 100; i++)
        fprintf(f, "%s{\"x\":%d.5,\"y\":-%d.75}", i ? "," : "", i, (int)rnd(1000));
    fprintf(f, "],\"flags\":[");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s%s", i ? "," : "", rnd(2) ? "true" : "false");
    fprintf(f, "],\"states\":[");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", rnd(2) ? "ACTIVE" : "SUSPENDED");
    fprintf(f, "]}");
}

static void gen_map(FILE *f)
{
    fprintf(f, "{\"attrs\":{");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s\"attr-%d-%s\":\"%s %s\"", i ? "," : "", i, word(), word(), word());
    fprintf(f, "},\"points\":{");
    for (int i = 0; i < 100; i++)
        fprintf(f, "%s\"%d\":{\"x\":%d.5,\"y\":%d.125}", i ? "," : "", i * 3 - 50, i, (int)rnd(99));
    fprintf(f, "},\"counters\":{");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s\"counter_%d\":\"%u\"", i ? "," : "", i, rnd(1u << 30));
    fprintf(f, "},\"seen\":{");
    for (int i = 0; i < 100; i++)
        fprintf(f, "%s\"%llu\":%s", i ? "," : "", 1000000007ULL * (unsigned long long)(i + 1),
                rnd(2) ? "true" : "false");
    fprintf(f, "}}");
}

static void gen_wkt(FILE *f)
{
    fprintf(f, "{\"ts\":\"2024-05-01T12:34:56.789Z\",\"elapsed\":\"3.250s\",\"payload\":{");
    for (int i = 0; i < 40; i++) {
        if (i)
            fputc(',', f);
        switch (i % 5) {
        case 0:
            fprintf(f, "\"k%d\":\"%s\"", i, word());
            break;
        case 1:
            fprintf(f, "\"k%d\":%d.5", i, i);
            break;
        case 2:
            fprintf(f, "\"k%d\":true", i);
            break;
        case 3:
            fprintf(f, "\"k%d\":null", i);
            break;
        default:
            fprintf(f, "\"k%d\":{\"a\":[1,2,\"%s\"],\"b\":{\"c\":false}}", i, word());
            break;
        }
    }
    fprintf(f, "},\"mask\":\"user.displayName,photo,settings.themeColor\",\"count\":\"42\","
               "\"note\":\"hello world\",\"history\":[");
    for (int i = 0; i < 50; i++)
        fprintf(f, "%s\"2024-05-%02dT%02d:%02d:%02dZ\"", i ? "," : "", 1 + i % 28, i % 24, i % 60,
                (i * 7) % 60);
    fprintf(f, "],\"detail\":{\"@type\":\"type.googleapis.com/pt.bench.Small\",\"id\":7,"
               "\"name\":\"inner\",\"status\":\"SUSPENDED\"},\"samples\":[");
    for (int i = 0; i < 50; i++)
        fprintf(f, "%s%d.5", i ? "," : "", i * 3);
    fprintf(f, "],\"tags\":[");
    for (int i = 0; i < 20; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", word());
    fprintf(f, "]}");
}

static const struct workload {
    const char *name, *type;
} workloads[] = {
    {"small", "pt.bench.Small"}, {"nested", "pt.bench.Node"}, {"repeated", "pt.bench.Series"},
    {"map", "pt.bench.Dict"},    {"wkt", "pt.bench.Event"},
};
#define NWORK (sizeof(workloads) / sizeof(workloads[0]))

static int gen(const char *dir)
{
    for (size_t i = 0; i < NWORK; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.json", dir, workloads[i].name);
        FILE *f = fopen(path, "w");
        if (f == NULL) {
            perror(path);
            return 1;
        }
        int id = 0;
        switch (i) {
        case 0:
            gen_small(f);
            break;
        case 1:
            gen_node(f, 5, &id);
            break;
        case 2:
            gen_repeated(f);
            break;
        case 3:
            gen_map(f);
            break;
        default:
            gen_wkt(f);
            break;
        }
        fclose(f);
    }
    return 0;
}

/* ---- timing ------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--gen") == 0)
        return gen(argv[2]);
    if (argc < 3) {
        fprintf(stderr, "usage: %s --gen DIR | %s SET.pb DIR [SECS]\n", argv[0], argv[0]);
        return 2;
    }
    double min_secs = argc > 3 ? atof(argv[3]) : 0.3;
    size_t slen;
    char *set = slurp(argv[1], &slen);
    if (set == NULL) {
        perror(argv[1]);
        return 1;
    }
    pt_descpool_t *pool;
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &pool, &err) != 0 ||
        pt_descpool_add_set(pool, (const uint8_t *)set, slen, argv[1], &err) != 0 ||
        pt_descpool_build(pool, &err) != 0) {
        fprintf(stderr, "pool: %s\n", err.msg);
        return 1;
    }
    free(set);
    int ret = 0;
    const char *only_w = argc > 4 ? argv[4] : NULL, *only_d = argc > 5 ? argv[5] : NULL;
    for (size_t w = 0; w < NWORK; w++) {
        if (only_w != NULL && strcmp(only_w, workloads[w].name) != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.json", argv[2], workloads[w].name);
        size_t jlen;
        char *json = slurp(path, &jlen);
        const pt_msgdesc_t *md =
            pt_descpool_message(pool, workloads[w].type, strlen(workloads[w].type));
        if (json == NULL || md == NULL) {
            fprintf(stderr, "%s: missing input or type\n", workloads[w].name);
            return 1;
        }
        pt_xbuf_t pb, js;
        pt_xbuf_init(&pb, NULL);
        pt_xbuf_init(&js, NULL);
        if (pt_json_to_pb(pool, md, json, jlen, NULL, &pb, &err) != 0) {
            fprintf(stderr, "%s: json->pb: %s: %s\n", workloads[w].name, err.path, err.msg);
            return 1;
        }
        if (pt_pb_to_json(pool, md, pb.data, pb.len, NULL, &js, &err) != 0) {
            fprintf(stderr, "%s: pb->json: %s: %s\n", workloads[w].name, err.path, err.msg);
            return 1;
        }
        for (int dir = 0; dir < 2; dir++) {
            if (only_d != NULL && strcmp(only_d, dir == 0 ? "json2pb" : "pb2json") != 0)
                continue;
            pt_xbuf_t *out = dir == 0 ? &pb : &js;
            long iters = 0, batch = 16;
            double t0 = now(), el = 0;
            int rc = 0;
            while (el < min_secs && rc == 0) {
                for (long i = 0; i < batch && rc == 0; i++) {
                    pt_xbuf_reset(out);
                    if (dir == 0)
                        rc = pt_json_to_pb(pool, md, json, jlen, NULL, out, &err);
                    else
                        rc = pt_pb_to_json(pool, md, pb.data, pb.len, NULL, out, &err);
                }
                iters += batch;
                batch *= 2;
                el = now() - t0;
            }
            if (rc != 0) {
                fprintf(stderr, "%s: %s\n", workloads[w].name, err.msg);
                ret = 1;
                break;
            }
            double mps = (double)iters / el;
            printf("RESULT ours %s %s %.0f %.2f %zu %zu\n", workloads[w].name,
                   dir == 0 ? "json2pb" : "pb2json", mps, mps * (double)jlen / 1e6, jlen, pb.len);
        }
        pt_xbuf_dispose(&pb);
        pt_xbuf_dispose(&js);
        free(json);
    }
    pt_descpool_unref(pool);
    return ret;
}
