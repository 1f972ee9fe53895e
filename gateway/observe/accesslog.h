/*
 * accesslog.h -- one JSON line per request (private).
 */
#ifndef PT_GATEWAY_ACCESSLOG_H
#define PT_GATEWAY_ACCESSLOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "core/request.h"

/**
 * Appends the access-log line of `req` (JSON object + '\n') to `buf` of
 * `cap` bytes at offset *len; `now_ns` (pt_now_ns()) ends the request's
 * duration. Strings are JSON-escaped; bytes that are not valid UTF-8 are
 * written as \u00XX escapes. Numbers are exact whatever their size
 * (durations in ms with three decimals, from integer nanoseconds).
 * Returns 0 and advances *len, or, when the line does not fit, the number of
 * bytes the whole line needs (> cap - *len) with *len unchanged and the
 * bytes of `buf` past *len unspecified.
 */
/** The line's "time": wall-clock microseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) in
 * out, NUL-terminated; returns its length. Without gmtime/strftime (every line has one). */
size_t pt__accesslog_time(int64_t wall_us, char out[40]);

size_t pt_accesslog_format(const pt_req_t *req, uint64_t now_ns, char *buf, size_t cap,
                           size_t *len);

/**
 * A per-worker log writer: buffers lines, writes them with O_APPEND. Worker
 * thread only. The file is opened lazily, by the first line; a failed open is
 * retried, at most once a second, by later lines (the ones in between are
 * dropped). Lines that are dropped (no file, a failed write) are added to
 * `*dropped` (relaxed atomic; may be NULL), the worker's metrics counter.
 */
typedef struct pt_accesslog pt_accesslog_t;

pt_accesslog_t *pt_accesslog_new(atomic_uint_fast64_t *dropped);
/**
 * Writes `req`'s line (finished at `now_ns`) to the destination of
 * req->config (opened or reopened as needed). A line longer than the buffer
 * is written on its own, after the buffered ones.
 */
void pt_accesslog_write(pt_accesslog_t *l, const pt_req_t *req, uint64_t now_ns);
/**
 * Flushes the buffered lines to the file they were written for, closes it
 * and opens the destination again (log rotation on SIGHUP). A failure is
 * retried like a failed first open. No-op when there is no access log.
 */
void pt_accesslog_reopen(pt_accesslog_t *l, uint64_t now_ms);
/** Flushes buffered lines (timer, exit). */
void pt_accesslog_flush(pt_accesslog_t *l);
void pt_accesslog_free(pt_accesslog_t *l);

#endif /* PT_GATEWAY_ACCESSLOG_H */
