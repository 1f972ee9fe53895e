/*
 * loopback.h -- the test seam: runs a request through the router, the filter
 * chain and the route's handler with no client socket (h2o's loopback
 * connection). A fake codec records the response. Handlers that go upstream
 * (proxy) really do, so the worker's loop is run until the exchange ends.
 */
#ifndef PT_TEST_LOOPBACK_H
#define PT_TEST_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/config.h"
#include "core/request.h"
#include "net/worker.h"

typedef struct pt_lb_resp {
    int status;
    int64_t content_length;          /* what the codec was told to frame with (-1: none) */
    size_t header_cnt;
    char *names[128], *values[128]; /* lowercase names, malloc'd */
    char *body;                      /* NUL-terminated, malloc'd */
    size_t body_len;
    unsigned body_calls;             /* send_body calls that carried bytes */
    bool ended;                      /* the response ended cleanly */
    bool reset;                      /* the codec was asked to cut it */
    bool sent_continue;
    int fail_status;                 /* req->fail_status at the end */
} pt_lb_resp_t;

typedef struct pt_lb {
    pt_config_t *config;
    pt_worker_t *worker;
} pt_lb_t;

/** Loads `yaml` (failing the test on a config error) and makes a detached worker. */
void pt_lb_init(pt_lb_t *lb, const char *yaml);
void pt_lb_dispose(pt_lb_t *lb);

/**
 * Runs one request: `headers` is a NULL-terminated list of "name", "value"
 * pairs; `body` may be NULL. Runs the loop up to 10 s until the response
 * ends. Returns 0, or -1 on timeout.
 */
int pt_lb_run(pt_lb_t *lb, const char *method, const char *target, const char *const *headers,
              const char *body, size_t body_len, pt_lb_resp_t *out);

/** The first value of response header `name` (lowercase), or NULL. */
const char *pt_lb_header(const pt_lb_resp_t *r, const char *name);

void pt_lb_resp_free(pt_lb_resp_t *r);

/**
 * The abort check of a suspended request: `req` waits on exactly one event of
 * w's loop beyond the `idle` count taken before it started (a filter's timer).
 * Aborts it (which may free it) and asserts that its abort hooks took that
 * event away at once; then runs the loop for `run_ms` (make it many times the
 * filter's delay), so an event left behind would fire into the freed request
 * (ASan) or send through a codec that must not be called.
 */
void pt_lb_abort_suspended(pt_worker_t *w, pt_req_t *req, int idle, unsigned run_ms);

#endif /* PT_TEST_LOOPBACK_H */
