/*
 * h2_fake.h -- test seam for the HTTP/2 codec (unit tests and the fuzz target).
 *
 * Provides a fake request layer (the pt__req_* functions of request.h that
 * the codec calls) with a scriptable handler, and a server connection on one
 * end of a socketpair (the real connection I/O layer, conn_io.c), the test's
 * end being a socket bufferevent, so tests drive gateway/http/h2.c with an
 * nghttp2 client session or raw frames and no network.
 *
 * Linking: the test's own definitions of pt__req_* come before portico_core,
 * so request.o is never pulled from the archive.
 */
#ifndef PT_TEST_H2_FAKE_H
#define PT_TEST_H2_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/config.h"
#include "net/conn.h"
#include "core/request.h"
#include "net/worker.h"

struct bufferevent;
struct event_base;

typedef enum fake_mode {
    FAKE_ECHO = 0, /* respond 200 once the body ended: the body (or the path), x-path header */
    FAKE_HOLD,     /* do nothing; the test answers with fake_respond() */
} fake_mode_t;

/** What the fake recorded about one request (copies; valid after the request died). */
typedef struct fake_rec {
    pt_req_t *req;           /* live request, NULL once released */
    char method[16], path[256], query[256], authority[256], scheme[8];
    char headers[4096];      /* "name: value\n" per header */
    int version;
    int64_t content_length;
    bool expect_body;
    bool headers_done;       /* pt__req_headers_done was called */
    int rejected;            /* PT_ERR_* of pt__req_reject, or 0 */
    bool done, aborted;      /* codec_done / abort */
    bool body_end;
    size_t body_len;         /* bytes received */
    unsigned char *body;     /* bytes received (malloc) */
    unsigned writable_calls;
} fake_rec_t;

typedef struct fake_env {
    fake_mode_t mode;
    bool auto_consume;       /* consume body bytes as they arrive (else fake_consume) */
    const char *trailer_name, *trailer_value; /* FAKE_ECHO: add one response trailer */
    size_t echo_repeat;      /* FAKE_ECHO: send the echo body this many times (0 = once) */
    fake_rec_t *recs;
    size_t rec_cnt, rec_cap;
    unsigned live;           /* requests not yet released */
} fake_env_t;

extern fake_env_t fake;

/** Resets the fake (frees recorded data); mode ECHO, auto_consume on. */
void fake_reset(void);

/** Answers a request: status, optional body (ended when `end`), optional trailer. */
void fake_respond(fake_rec_t *r, int status, const char *body, size_t len, bool end);
/** More body for a response started with fake_respond(..., end=false). */
void fake_body(fake_rec_t *r, const void *data, size_t len, bool end);
/** The handler consumed `len` queued body bytes. */
void fake_consume(fake_rec_t *r, size_t len);

/** A config with the SECURITY-CASES default limits and timeouts. */
void fake_config_defaults(pt_config_t *cfg);

/** A server connection on one end of a socketpair; the other end is `client`. */
typedef struct fake_conn {
    struct event_base *base;
    pt_worker_t worker;
    pt_config_t config;
    pt_conn_t *conn;             /* NULL once closed */
    struct bufferevent *client;  /* the test's end */
    bool closed;                 /* conn->close was called */
} fake_conn_t;

/** Creates the socketpair and the pt_conn_t (no codec yet). `cfg` may be NULL for defaults. */
void fake_conn_init(fake_conn_t *fc, const pt_config_t *cfg);
/** Runs the loop without blocking until nothing happens (or `max_rounds`). */
void fake_conn_run(fake_conn_t *fc, int max_rounds);
/** Runs the loop for about `ms` milliseconds of wall time. */
void fake_conn_run_for(fake_conn_t *fc, unsigned ms);
/** Destroys whatever is left (codec destroy + close), frees the client end and the base. */
void fake_conn_dispose(fake_conn_t *fc);

#endif /* PT_TEST_H2_FAKE_H */
