/*
 * limits.h -- the `limits:` and `timeouts:` of a configuration.
 * Types only (the configuration snapshot, core/config.h, holds these; a file
 * that only needs them includes this, not config.h).
 */
#ifndef PT_GATEWAY_LIMITS_H
#define PT_GATEWAY_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

/** Safety limits on untrusted input; every value is a config key under `limits:`. */
typedef struct pt_limits {
    uint32_t max_request_line;     /* bytes of the HTTP/1 request line (8 KiB) -> 414 */
    uint32_t max_header_bytes;     /* sum of name+value+32 per field (64 KiB) -> 431 */
    uint32_t max_header_count;     /* fields, cookie crumbs included (100) -> 431 */
    uint64_t max_body;             /* request body bytes (1 MiB) -> 413; route may override */
    uint32_t max_pipeline;         /* HTTP/1 requests parsed ahead of responses (16) */
    uint32_t max_requests_per_conn;/* then Connection: close / GOAWAY (1000) */
    uint32_t max_connections;      /* client connections, process-wide (10000) */
    uint32_t h2_max_streams;       /* SETTINGS_MAX_CONCURRENT_STREAMS (100) */
    uint32_t h2_stream_window;     /* initial stream window (64 KiB) */
    uint32_t h2_conn_window;       /* connection window (1 MiB) */
    uint32_t h2_reset_burst;       /* client RST_STREAM token bucket burst (1000) */
    uint32_t h2_reset_rate;        /* refill per second (33) */
    uint32_t h2_max_continuations; /* CONTINUATION frames per header block (8) */
    uint32_t h2_glitch_burst;      /* client-provoked errors and zero-progress frames at once (100) ... */
    uint32_t h2_glitch_rate;       /* ... and per second; then GOAWAY(ENHANCE_YOUR_CALM) (10) */
    uint32_t max_chunk_ext;        /* bytes of chunk extensions per request (4 KiB) */
    bool allow_underscores;        /* accept '_' in header names (false: 400) */
    bool merge_slashes;            /* merge empty path segments, "//" -> "/" (true) */
    uint64_t max_response_buffer;  /* output bytes buffered per request before upstream reads pause (256 KiB) */
} pt_limits_t;

typedef struct pt_timeouts {
    uint64_t header_ms;     /* whole request head (10 s) -> 408 */
    uint64_t body_ms;       /* inactivity while reading a body (30 s) -> 408 */
    uint64_t keepalive_ms;  /* idle HTTP/1 connection between requests (60 s) */
    uint64_t h2_idle_ms;    /* HTTP/2 connection with no open stream (60 s) */
    uint64_t send_ms;       /* no write progress to a client (30 s) -> close */
    uint64_t drain_ms;      /* graceful shutdown deadline (30 s) */
    uint64_t tunnel_idle_ms;/* upgraded / CONNECT tunnel with no byte either way (300 s) */
} pt_timeouts_t;

/** `overload:` (core/overload.h): the watermark on bytes buffered for clients. */
typedef struct pt_overload {
    uint64_t memory;        /* bytes; 0 = off (the default) */
    uint32_t retry_after_s; /* Retry-After of the 503s (1 s) */
} pt_overload_t;

#endif /* PT_GATEWAY_LIMITS_H */
