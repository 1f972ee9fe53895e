/*
 * accesslog.c -- JSON access log lines, buffered per worker (see accesslog.h).
 *
 * Each worker keeps its own 64 KiB buffer and file descriptor (opened with
 * O_APPEND), and writes whole lines only, so lines of different workers never
 * interleave. The buffer is flushed when it is half full and by a 100 ms
 * timer (observe.c), so `tail -f` sees requests promptly. Every reload
 * (SIGHUP) reopens the file, so `mv access.log access.log.1; kill -HUP`
 * rotates it; lines buffered before the reopen go to the old file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "http/ws.h"
#include "observe/accesslog.h"
#include "core/config.h"
#include "observe/trace.h"

#define LOG_BUF (64u * 1024u)
#define RETRY_MS 1000u /* a failed open is tried again at most this often */

struct pt_accesslog {
    char buf[LOG_BUF];
    size_t len;
    int fd;                         /* -1: off, or the open failed */
    bool own_fd;
    bool failing;                   /* the last open failed (reported once) */
    uint64_t retry_at_ms;           /* next open attempt after a failure */
    char *path;                     /* the destination; NULL: no access log */
    atomic_uint_fast64_t *dropped;  /* lines lost (metrics shard), or NULL */
};

/* A line being formatted. Bytes past `cap` are counted in `need` but not
 * written, so a line that does not fit still tells how big it is (the caller
 * then formats it again into a buffer of that size: no field is ever cut). */
typedef struct out {
    char *p;
    size_t cap, need;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->need + n <= o->cap)
        memcpy(o->p + o->need, s, n);
    o->need += n;
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

/* Bytes a JSON string takes as they are: printable ASCII but '"' and '\'. */
static bool json_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* Whether all eight bytes of x are plain (json_plain): none has bit 7 set,
 * none is below 0x20, none is '"', '\\' or DEL (a zero byte of x ^ c). */
static bool word_json_plain(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
#define HAS_ZERO(v) (((v) - ones) & ~(v) & highs)
    uint64_t bad = (x & highs) | ((x - ones * 0x20) & ~x & highs) | HAS_ZERO(x ^ (ones * '"')) |
                   HAS_ZERO(x ^ (ones * '\\')) | HAS_ZERO(x ^ (ones * 0x7f));
#undef HAS_ZERO
    return bad == 0;
}

static void put_u_escape(out_t *o, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
    put(o, esc, 6);
}

/* A JSON string: runs of plain bytes copied whole, the rest escaped (invalid
 * UTF-8 as \u00XX of each byte, as before). */
static void put_json_str(out_t *o, pt_str_t s)
{
    put(o, "\"", 1);
    const unsigned char *p = (const unsigned char *)s.base;
    size_t i = 0;
    while (i < s.len) {
        size_t j = i;
        for (uint64_t x; j + 8 <= s.len; j += 8) { /* eight at a time while all are plain */
            memcpy(&x, p + j, 8);
            if (!word_json_plain(x))
                break;
        }
        while (j < s.len && json_plain(p[j]))
            j++;
        if (j > i) {
            put(o, (const char *)p + i, j - i);
            i = j;
            if (i == s.len)
                break;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(o, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            put_u_escape(o, c);
            i++;
        } else {
            size_t n = utf8_len(p + i, s.len - i);
            if (n == 0) {
                put_u_escape(o, c);
                i++;
            } else {
                put(o, (const char *)p + i, n);
                i += n;
            }
        }
    }
    put(o, "\"", 1);
}

/* Decimal digits of v ending at `end`; returns where they start. Numbers are
 * formatted one at a time into buffers sized for the largest value of their
 * type (20 digits for 64 bits), so none can be cut short. */
static char *dec(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    return end;
}

static void put_u64(out_t *o, uint64_t v)
{
    char tmp[24];
    char *b = dec(tmp + sizeof(tmp), v);
    put(o, b, (size_t)(tmp + sizeof(tmp) - b));
}

static void put_int(out_t *o, int v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_u64(o, (uint64_t)(-(int64_t)v));
        return;
    }
    put_u64(o, (uint64_t)v);
}

/* Nanoseconds as milliseconds with three decimals, in integers: exact for any
 * duration (a double would round, and "%.3f" of a huge value is long). */
static void put_ms(out_t *o, uint64_t ns)
{
    char tmp[32];
    char *end = tmp + sizeof(tmp);
    unsigned frac = (unsigned)(ns / 1000 % 1000);
    *--end = (char)('0' + frac % 10);
    *--end = (char)('0' + frac / 10 % 10);
    *--end = (char)('0' + frac / 100);
    *--end = '.';
    char *b = dec(end, ns / 1000000);
    put(o, b, (size_t)(tmp + sizeof(tmp) - b));
}

/* The civil date (proleptic Gregorian) of day z since 1970-01-01: the
 * 400-year era, the day and year of the era, with March as the first month
 * so that leap days come last. */
static void civil_date(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468; /* from 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);                          /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                                    /* [0, 11], March = 0 */
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

size_t pt__accesslog_time(int64_t wall_us, char out[40])
{
    int64_t secs = wall_us / 1000000;
    unsigned ms = (unsigned)(wall_us / 1000 % 1000);
    int64_t days = secs / 86400, sod = secs % 86400;
    int64_t y;
    unsigned m, d;
    civil_date(days, &y, &m, &d);
    if (wall_us < 0 || y > 9999) { /* not a clock of this era: as libc renders it */
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t tn = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
        int n = snprintf(out + tn, 40 - tn, ".%03dZ", (int)((wall_us / 1000) % 1000));
        return tn + (n > 0 ? (size_t)n : 0);
    }
    two(out, (unsigned)(y / 100));
    two(out + 2, (unsigned)(y % 100));
    out[4] = '-';
    two(out + 5, m);
    out[7] = '-';
    two(out + 8, d);
    out[10] = 'T';
    two(out + 11, (unsigned)(sod / 3600));
    out[13] = ':';
    two(out + 14, (unsigned)(sod / 60 % 60));
    out[16] = ':';
    two(out + 17, (unsigned)(sod % 60));
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    two(out + 21, ms % 100);
    out[23] = 'Z';
    out[24] = '\0';
    return 24;
}

size_t pt_accesslog_format(const pt_req_t *req, uint64_t now_ns, char *buf, size_t cap,
                           size_t *len)
{
    out_t o = {buf + *len, cap - *len, 0};
    char ts[40];
    size_t tn = pt__accesslog_time(req->start_wall_us, ts);

    uint64_t dur_ns = now_ns > req->start_ns ? now_ns - req->start_ns : 0;
    puts_(&o, "{\"time\":\"");
    put(&o, ts, tn);
    puts_(&o, "\",\"id\":");
    put_json_str(&o, req->request_id.base != NULL ? req->request_id : PT_STR("-"));
    if (req->trace != NULL) {
        puts_(&o, ",\"trace_id\":\"");
        puts_(&o, req->trace->trace_hex);
        puts_(&o, "\"");
    }
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
    puts_(&o, "\",\"status\":");
    put_int(&o, req->resp_status);
    puts_(&o, ",\"bytes_in\":");
    put_u64(&o, req->body_received);
    puts_(&o, ",\"bytes_out\":");
    put_u64(&o, req->bytes_out);
    puts_(&o, ",\"duration_ms\":");
    put_ms(&o, dur_ns);
    if (req->is_tunnel) { /* bytes_in/out are the tunnel's, duration the session's */
        puts_(&o, ",\"tunnel\":");
        put_json_str(&o, req->upgrade);
    }
    if (req->ws != NULL) { /* the WebSocket session, as the client saw it */
        const pt_ws_stats_t *st = pt_ws_stats(req->ws);
        puts_(&o, ",\"ws\":{\"msgs_in\":");
        put_u64(&o, st->msgs_in);
        puts_(&o, ",\"msgs_out\":");
        put_u64(&o, st->msgs_out);
        puts_(&o, ",\"bytes_in\":");
        put_u64(&o, st->bytes_in);
        puts_(&o, ",\"bytes_out\":");
        put_u64(&o, st->bytes_out);
        puts_(&o, ",\"close_in\":");
        put_u64(&o, st->close_in);
        puts_(&o, ",\"close_out\":");
        put_u64(&o, st->close_out != 0 ? st->close_out : PT_WS_CLOSE_ABNORMAL);
        puts_(&o, "}");
    }
    if (req->route.route != NULL) {
        puts_(&o, ",\"route\":");
        put_json_str(&o, pt_str_c(req->route.route->name));
    }
    puts_(&o, ",\"upstream\":");
    if (req->upstream_addr != NULL) {
        put_json_str(&o, pt_str_c(req->upstream_addr));
        puts_(&o, ",\"upstream_ms\":");
        put_ms(&o, req->upstream_ns);
    } else {
        puts_(&o, "null");
    }
    if (req->subcall_cnt != 0) { /* an aggregate's calls, in config order */
        puts_(&o, ",\"calls\":[");
        for (size_t i = 0; i < req->subcall_cnt; i++) {
            const pt_req_subcall_t *c = &req->subcalls[i];
            puts_(&o, i ? ",{\"name\":" : "{\"name\":");
            put_json_str(&o, pt_str_c(c->name));
            puts_(&o, ",\"upstream\":");
            if (c->upstream != NULL)
                put_json_str(&o, pt_str_c(c->upstream));
            else
                puts_(&o, "null");
            puts_(&o, ",\"status\":");
            put_int(&o, c->status);
            puts_(&o, ",\"ms\":");
            put_ms(&o, c->ns);
            puts_(&o, "}");
        }
        puts_(&o, "]");
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
    /* WAF detections (plugins/waf.c sets the variable: "blocked 942100,942190"). */
    pt_str_t waf = pt_req_var((pt_req_t *)req, PT_STR("waf"));
    if (waf.base != NULL) {
        puts_(&o, ",\"waf\":");
        put_json_str(&o, waf);
    }
    pt_str_t ua = pt_headers_get(&req->headers, PT_STR("user-agent"));
    if (ua.base != NULL) {
        puts_(&o, ",\"user_agent\":");
        put_json_str(&o, ua.len > 256 ? (pt_str_t){ua.base, 256} : ua);
    }
    puts_(&o, "}\n");
    if (o.need > o.cap)
        return o.need;
    *len += o.need;
    return 0;
}

pt_accesslog_t *pt_accesslog_new(atomic_uint_fast64_t *dropped)
{
    pt_accesslog_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        abort();
    l->fd = -1;
    l->dropped = dropped;
    return l;
}

static void count_dropped(pt_accesslog_t *l, uint64_t lines)
{
    if (l->dropped != NULL && lines != 0)
        atomic_fetch_add_explicit(l->dropped, lines, memory_order_relaxed);
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* Writes everything or gives up: a full disk or a closed pipe drops lines
 * (counted) rather than blocking requests. */
static void write_all(pt_accesslog_t *l, const char *p, size_t n)
{
    size_t off = 0;
    while (l->fd >= 0 && off < n) {
        ssize_t w = write(l->fd, p + off, n - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    /* a line cut by a failed write counts as dropped */
    if (off < n) {
        while (off > 0 && p[off - 1] != '\n')
            off--;
        count_dropped(l, count_lines(p + off, n - off));
    }
}

void pt_accesslog_flush(pt_accesslog_t *l)
{
    write_all(l, l->buf, l->len);
    l->len = 0;
}

/*
 * Opens l->path. A failure (EMFILE during fd exhaustion, a directory not yet
 * created, a permission fixed later) is not final: the next line after
 * RETRY_MS tries again, and the lines in between are dropped and counted in
 * portico_access_log_dropped_total. Only the first failure of a streak and
 * the recovery are reported, so a broken log cannot flood stderr.
 */
static void open_path(pt_accesslog_t *l, uint64_t now_ms)
{
    if (strcmp(l->path, "stdout") == 0) {
        l->fd = 1;
        return;
    }
    if (strcmp(l->path, "stderr") == 0) {
        l->fd = 2;
        return;
    }
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    l->own_fd = l->fd >= 0;
    if (l->fd < 0) {
        if (!l->failing)
            fprintf(stderr,
                    "portico: cannot open access log %s: %s (retrying every second; lines "
                    "are dropped meanwhile)\n",
                    l->path, strerror(errno));
        l->failing = true;
        l->retry_at_ms = now_ms + RETRY_MS;
    } else if (l->failing) {
        fprintf(stderr, "portico: access log %s opened\n", l->path);
        l->failing = false;
    }
}

/* Flushes what is buffered to the file it was written for, then opens `dest`
 * (which may be l->path itself: rotation). */
static void reopen(pt_accesslog_t *l, const char *dest, uint64_t now_ms)
{
    pt_accesslog_flush(l);
    if (l->own_fd)
        close(l->fd);
    l->own_fd = false;
    l->fd = -1;
    char *path = dest != NULL ? strdup(dest) : NULL;
    if (dest != NULL && path == NULL)
        abort();
    free(l->path);
    l->path = path;
    l->failing = false;
    if (path != NULL)
        open_path(l, now_ms);
}

void pt_accesslog_reopen(pt_accesslog_t *l, uint64_t now_ms)
{
    if (l->path != NULL)
        reopen(l, l->path, now_ms);
}

void pt_accesslog_write(pt_accesslog_t *l, const pt_req_t *req, uint64_t now_ns)
{
    const char *dest = req->config->access_log;
    uint64_t now_ms = now_ns / 1000000u;
    if ((dest == NULL) != (l->path == NULL) ||
        (dest != NULL && strcmp(dest, l->path) != 0))
        reopen(l, dest, now_ms);
    if (l->path == NULL)
        return;
    if (l->fd < 0 && now_ms >= l->retry_at_ms)
        open_path(l, now_ms);
    if (l->fd < 0) {
        count_dropped(l, 1);
        return;
    }
    size_t need = pt_accesslog_format(req, now_ns, l->buf, sizeof(l->buf), &l->len);
    if (need != 0) {
        pt_accesslog_flush(l);
        need = pt_accesslog_format(req, now_ns, l->buf, sizeof(l->buf), &l->len);
    }
    if (need != 0) {
        /* Longer than the whole buffer (a long path, say): written on its own,
         * after the lines before it, rather than cut or dropped. */
        char *big = malloc(need);
        if (big == NULL)
            abort();
        size_t n = 0;
        if (pt_accesslog_format(req, now_ns, big, need, &n) == 0)
            write_all(l, big, n);
        free(big);
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
