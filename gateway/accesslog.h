/*
 * accesslog.h -- one JSON line per request (private).
 */
#ifndef PT_GATEWAY_ACCESSLOG_H
#define PT_GATEWAY_ACCESSLOG_H

#include <stddef.h>
#include "request.h"

/**
 * Appends the access-log line of `req` (JSON object + '\n') to `buf` of
 * `cap` bytes at offset *len. Strings are JSON-escaped; bytes that are not
 * valid UTF-8 are written as \u00XX escapes. Returns 0, or -1 when the line
 * does not fit (then *len is unchanged).
 */
int pt_accesslog_format(const pt_req_t *req, char *buf, size_t cap, size_t *len);

/** A per-worker log writer: buffers lines, writes them with O_APPEND. */
typedef struct pt_accesslog pt_accesslog_t;

pt_accesslog_t *pt_accesslog_new(void);
/** Writes `req`'s line to the destination of req->config (opened or reopened as needed). */
void pt_accesslog_write(pt_accesslog_t *l, const pt_req_t *req);
/** Flushes buffered lines (timer, exit). */
void pt_accesslog_flush(pt_accesslog_t *l);
void pt_accesslog_free(pt_accesslog_t *l);

#endif /* PT_GATEWAY_ACCESSLOG_H */
