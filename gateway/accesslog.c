/*
 * accesslog.c -- JSON access log lines, buffered per worker (see accesslog.h).
 *
 * Each worker keeps its own 64 KiB buffer and file descriptor (opened with
 * O_APPEND), and writes whole lines only, so lines of different workers never
 * interleave. The buffer is flushed when it is half full and by a 100 ms
 * timer (observe.c), so `tail -f` sees requests promptly.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "accesslog.h"

#define LOG_BUF (64u * 1024u)

struct pt_accesslog {
    char buf[LOG_BUF];
    size_t len;
    int fd;             /* -1: off */
    bool own_fd;
    char *path;         /* what fd was opened for */
};

typedef struct out {
    char *p;
    size_t cap, len;
    bool over;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->over || o->len + n > o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return need;
}

static void put_json_str(out_t *o, pt_str_t s)
{
    put(o, "\"", 1);
    const unsigned char *p = (const unsigned char *)s.base;
    for (size_t i = 0; i < s.len;) {
        unsigned char c = p[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, 6);
            i++;
        } else {
            size_t n = utf8_len(p + i, s.len - i);
            if (n == 0) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                put(o, esc, 6);
                i++;
            } else {
                put(o, (const char *)p + i, n);
                i += n;
            }
        }
    }
    put(o, "\"", 1);
}

static void put_num(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_num(out_t *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

int pt_accesslog_format(const pt_req_t *req, char *buf, size_t cap, size_t *len)
{
    out_t o = {buf + *len, cap - *len, 0, false};
    time_t secs = (time_t)(req->start_wall_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[40];
    size_t tn = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, sizeof(ts) - tn, ".%03dZ", (int)((req->start_wall_us / 1000) % 1000));

    uint64_t dur_ns = pt_now_ns() - req->start_ns;
    puts_(&o, "{\"time\":\"");
    puts_(&o, ts);
    puts_(&o, "\",\"id\":");
    put_json_str(&o, req->request_id.base != NULL ? req->request_id : PT_STR("-"));
    puts_(&o, ",\"client\":");
    put_json_str(&o, req->client_addr);
    puts_(&o, ",\"method\":");
    put_json_str(&o, req->method);
    puts_(&o, ",\"path\":");
    put_json_str(&o, req->path);
    if (req->query.len != 0) {
        puts_(&o, ",\"query\":");
        put_json_str(&o, req->query);
    }
    puts_(&o, ",\"protocol\":\"");
    puts_(&o, req->version == 20 ? "HTTP/2" : req->version == 10 ? "HTTP/1.0" : "HTTP/1.1");
    put_num(&o, "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f",
            req->resp_status, (unsigned long long)req->body_received,
            (unsigned long long)req->bytes_out, (double)dur_ns / 1e6);
    if (req->route.route != NULL) {
        puts_(&o, ",\"route\":");
        put_json_str(&o, pt_str_c(req->route.route->name));
    }
    puts_(&o, ",\"upstream\":");
    if (req->upstream_addr != NULL) {
        put_json_str(&o, pt_str_c(req->upstream_addr));
        put_num(&o, ",\"upstream_ms\":%.3f", (double)req->upstream_ns / 1e6);
    } else {
        puts_(&o, "null");
    }
    if (req->fail_status != 0) {
        puts_(&o, ",\"error\":\"");
        puts_(&o, pt_status_name(req->fail_status));
        puts_(&o, "\"");
        if (req->fail_reason != NULL) {
            puts_(&o, ",\"reason\":");
            put_json_str(&o, pt_str_c(req->fail_reason));
        }
    }
    pt_str_t ua = pt_headers_get(&req->headers, PT_STR("user-agent"));
    if (ua.base != NULL) {
        puts_(&o, ",\"user_agent\":");
        put_json_str(&o, ua.len > 256 ? (pt_str_t){ua.base, 256} : ua);
    }
    puts_(&o, "}\n");
    if (o.over)
        return -1;
    *len += o.len;
    return 0;
}

pt_accesslog_t *pt_accesslog_new(void)
{
    pt_accesslog_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        abort();
    l->fd = -1;
    return l;
}

void pt_accesslog_flush(pt_accesslog_t *l)
{
    size_t off = 0;
    while (l->fd >= 0 && off < l->len) {
        ssize_t n = write(l->fd, l->buf + off, l->len - off);
        if (n <= 0)
            break; /* a full disk or closed pipe drops lines rather than blocking requests */
        off += (size_t)n;
    }
    l->len = 0;
}

static void reopen(pt_accesslog_t *l, const char *dest)
{
    pt_accesslog_flush(l);
    if (l->own_fd)
        close(l->fd);
    free(l->path);
    l->path = dest != NULL ? strdup(dest) : NULL;
    l->own_fd = false;
    l->fd = -1;
    if (dest == NULL)
        return;
    if (strcmp(dest, "stdout") == 0) {
        l->fd = 1;
    } else if (strcmp(dest, "stderr") == 0) {
        l->fd = 2;
    } else {
        l->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        l->own_fd = l->fd >= 0;
        if (l->fd < 0)
            fprintf(stderr, "portico: cannot open access log %s\n", dest);
    }
}

void pt_accesslog_write(pt_accesslog_t *l, const pt_req_t *req)
{
    const char *dest = req->config->access_log;
    if ((dest == NULL) != (l->path == NULL) ||
        (dest != NULL && strcmp(dest, l->path) != 0))
        reopen(l, dest);
    if (l->fd < 0)
        return;
    if (pt_accesslog_format(req, l->buf, sizeof(l->buf), &l->len) != 0) {
        pt_accesslog_flush(l);
        if (pt_accesslog_format(req, l->buf, sizeof(l->buf), &l->len) != 0)
            return;
    }
    if (l->len > LOG_BUF / 2)
        pt_accesslog_flush(l);
}

void pt_accesslog_free(pt_accesslog_t *l)
{
    if (l == NULL)
        return;
    pt_accesslog_flush(l);
    if (l->own_fd)
        close(l->fd);
    free(l->path);
    free(l);
}
