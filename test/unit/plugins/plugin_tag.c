/*
 * plugin_tag.c -- a tiny filter built as a shared object for test_filters:
 * `- tag: { value: V }` sets the request header x-tag: V. Built in several
 * variants (see test/unit/CMakeLists.txt) to exercise the loader's checks:
 * PT_VARIANT_BAD_ABI, PT_VARIANT_NO_SYMBOL, PT_VARIANT_CLASH.
 * Like any plugin, it includes only the SDK headers.
 */
#include <stddef.h>

#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"

typedef struct tag_conf {
    const char *value;
} tag_conf_t;

static const pt_conf_field_t fields[] = {
    {"value", PT_CONF_T_STR, offsetof(tag_conf_t, value), 0, 0, true, NULL},
    PT_CONF_FIELDS_END,
};

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const tag_conf_t *c = f->conf;
    if (pt_headers_set(pt_req_headers(req), PT_STR("x-tag"), pt_str_c(c->value)) != 0)
        return PT_FILTER_ERROR;
    return PT_FILTER_CONTINUE;
}

#ifdef PT_VARIANT_NO_SYMBOL
#define SYMBOL pt_filter_tag_def
#else
#define SYMBOL pt_filter_def
#endif

const pt_filter_def_t SYMBOL = {
#ifdef PT_VARIANT_BAD_ABI
    .abi = PT_FILTER_ABI + 1,
#else
    .abi = PT_FILTER_ABI,
#endif
#ifdef PT_VARIANT_CLASH
    .name = "headers",
#else
    .name = "tag",
#endif
    .priority = 5,
    .conf_size = sizeof(tag_conf_t),
    .fields = fields,
    .on_request_headers = on_request_headers,
};
