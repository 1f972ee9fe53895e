/*
 * fuzz_config.c -- pt_config_load_string() on arbitrary bytes: the YAML
 * front end (libyaml events, caps, aliases), every section's validation and,
 * when a config loads, the router on a few requests.
 *
 * Inputs naming `plugins` are skipped: loading a shared object picked by
 * the fuzzer would run foreign code, which is not what this target tests.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (sink == NULL)
        sink = fopen("/dev/null", "w");
    if (memmem(data, size, "plugins", 7) != NULL)
        return 0;
    pt_config_t *c = pt_config_load_string("fuzz.yaml", (const char *)data, size, sink);
    if (c == NULL)
        return 0;
    static const char *const paths[] = {"/", "/api/x", "/users/1/books/2", "/a/b/c", ""};
    static const char *const methods[] = {"GET", "POST", "PROPFIND"};
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_headers_t h;
    pt_headers_init(&h, a);
    pt_headers_add(&h, PT_STR("x-env"), PT_STR("prod"));
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        pt_route_result_t r;
        pt_router_match(c->router, pt_str_c(methods[i % 3]), PT_STR("a.example.com:80"),
                        pt_str_c(paths[i]), &h, a, &r);
    }
    pt_arena_destroy(a);
    pt_config_unref(c);
    return 0;
}
