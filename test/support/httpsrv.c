/*
 * httpsrv.c -- the scripted test upstream (see httpsrv.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpsrv.h"

typedef struct conn {
    int fd;
    tsrv_t *srv;
    char buf[65536];
    size_t len, off;
} conn_t;

static bool fill(conn_t *c)
{
    if (c->off > 0 && c->off == c->len)
        c->off = c->len = 0;
    if (c->len == sizeof(c->buf)) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

/* One line without CRLF into out (NUL-terminated). */
static bool read_line(conn_t *c, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl != NULL) {
            size_t n = (size_t)(nl - (c->buf + c->off));
            size_t k = n > 0 && c->buf[c->off + n - 1] == '\r' ? n - 1 : n;
            if (k >= cap)
                k = cap - 1;
            memcpy(out, c->buf + c->off, k);
            out[k] = '\0';
            c->off += n + 1;
            return true;
        }
        if (!fill(c))
            return false;
    }
}

static bool read_n(conn_t *c, char *out, size_t n)
{
    while (n > 0) {
        if (c->off == c->len && !fill(c))
            return false;
        size_t k = c->len - c->off < n ? c->len - c->off : n;
        memcpy(out, c->buf + c->off, k);
        c->off += k;
        out += k;
        n -= k;
    }
    return true;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *extra, const char *body, size_t len)
{
    char head[1024];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status,
                     len, extra != NULL ? extra : "");
    write_all(fd, head, (size_t)n);
    write_all(fd, body, len);
}

/* Connection threads of every server not yet done (their fd still open): srv_live_conns(). */
static atomic_int live_conns;

int srv_live_conns(void)
{
    return atomic_load(&live_conns);
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    char line[8192];
    char head[16384];
    for (;;) {
        if (!read_line(c, line, sizeof(line)))
            break;
        char method[16] = "", target[4096] = "";
        sscanf(line, "%15s %4095s", method, target);
        size_t hl = (size_t)snprintf(head, sizeof(head), "%s\n", line);
        long long cl = -1;
        bool chunked = false;
        char host[256] = "";
        for (;;) {
            if (!read_line(c, line, sizeof(line)))
                goto out;
            if (line[0] == '\0')
                break;
            if (hl + strlen(line) + 2 < sizeof(head))
                hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "%s\n", line);
            if (strncasecmp(line, "content-length:", 15) == 0)
                cl = atoll(line + 15);
            if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked"))
                chunked = true;
            if (strncasecmp(line, "host:", 5) == 0)
                snprintf(host, sizeof(host), "%.*s", (int)(sizeof(host) - 1), line + 6);
        }
        size_t blen = 0, bcap = 1024;
        char *body = malloc(bcap);
        if (chunked) {
            for (;;) {
                if (!read_line(c, line, sizeof(line)))
                    goto out_body;
                size_t n = strtoul(line, NULL, 16);
                if (n == 0) {
                    while (read_line(c, line, sizeof(line)) && line[0] != '\0') {
                    }
                    break;
                }
                if (blen + n > bcap) {
                    while (blen + n > bcap)
                        bcap *= 2;
                    body = realloc(body, bcap);
                }
                if (!read_n(c, body + blen, n) || !read_line(c, line, sizeof(line)))
                    goto out_body;
                blen += n;
            }
        } else if (cl > 0) {
            bcap = (size_t)cl;
            body = realloc(body, bcap);
            if (!read_n(c, body, (size_t)cl))
                goto out_body;
            blen = (size_t)cl;
        }

        char *q = strchr(target, '?');
        const char *arg_s = q != NULL ? q + 1 : "";
        if (q != NULL)
            *q = '\0';
        int fd = c->fd;
        if (strcmp(target, "/hello") == 0) {
            respond(fd, 200, "x-test: 1\r\n", "hello", 5);
        } else if (strcmp(target, "/echo") == 0) {
            char extra[512];
            snprintf(extra, sizeof(extra), "x-method: %s\r\nx-host: %s\r\n%s", method, host,
                     chunked ? "x-chunked: 1\r\n" : "");
            respond(fd, 200, extra, body, blen);
        } else if (strcmp(target, "/head") == 0) {
            respond(fd, 200, NULL, head, hl);
        } else if (strcmp(target, "/big") == 0) {
            size_t n = strtoul(arg_s, NULL, 10);
            char h[256];
            int k = snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
            write_all(fd, h, (size_t)k);
            char *chunk = malloc(65536);
            size_t sent = 0;
            while (sent < n) {
                size_t m = n - sent < 65536 ? n - sent : 65536;
                for (size_t i = 0; i < m; i++)
                    chunk[i] = (char)((sent + i) % 251);
                write_all(fd, chunk, m);
                sent += m;
            }
            free(chunk);
        } else if (strcmp(target, "/slow") == 0) {
            usleep((useconds_t)atoi(arg_s) * 1000);
            respond(fd, 200, NULL, "late", 4);
        } else if (strcmp(target, "/truncate") == 0) {
            const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
            write_all(fd, h, strlen(h));
            free(body);
            goto out;
        } else if (strcmp(target, "/truncchunk") == 0) {
            const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n";
            write_all(fd, h, strlen(h));
            free(body);
            goto out;
        } else if (strcmp(target, "/closeon") == 0) {
            if (arg_s[0] == c->srv->name) {
                free(body);
                goto out;
            }
            respond(fd, 200, NULL, "ok", 2);
        } else if (strcmp(target, "/hop") == 0) {
            respond(fd, 200,
                    "Connection: x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\n"
                    "x-keep: yes\r\nx-request-id: from-upstream\r\nSet-Cookie: a=1\r\n"
                    "Set-Cookie: b=2\r\n",
                    "hop", 3);
        } else if (strcmp(target, "/bye") == 0) { /* keep-alive timeout: close after answering */
            respond(fd, 200, NULL, "bye", 3);
            free(body);
            goto out;
        } else if (strcmp(target, "/continue") == 0) {
            const char *h = "HTTP/1.1 100 Continue\r\n\r\n";
            write_all(fd, h, strlen(h));
            respond(fd, 200, NULL, "after", 5);
        } else if (strcmp(target, "/trailers") == 0) {
            const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
                            "3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n";
            write_all(fd, h, strlen(h));
        } else if (strcmp(target, "/clte") == 0) {
            const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "3\r\nabc\r\n0\r\n\r\n";
            write_all(fd, h, strlen(h));
        } else if (strcmp(target, "/s101") == 0) {
            const char *h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n";
            write_all(fd, h, strlen(h));
        } else {
            respond(fd, 404, NULL, "nope", 4);
        }
        free(body);
        continue;
    out_body:
        free(body);
        break;
    }
out:
    close(c->fd);
    free(c);
    atomic_fetch_sub(&live_conns, 1);
    return NULL;
}

static void *accept_main(void *arg)
{
    tsrv_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->accepted, 1);
        atomic_fetch_add(&live_conns, 1);
        conn_t *c = calloc(1, sizeof(*c));
        c->fd = fd;
        c->srv = s;
        pthread_t th;
        pthread_create(&th, NULL, conn_main, c);
        pthread_detach(th);
    }
    return NULL;
}

int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0)
        return -1;
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

void srv_start(tsrv_t *s, char name)
{
    memset(s, 0, sizeof(*s));
    s->name = name;
    s->fd = listen_any(&s->port);
    assert_true(s->fd >= 0);
    pthread_create(&s->th, NULL, accept_main, s);
}

void srv_stop(tsrv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->fd);
}

/** A port with nothing listening (bound, then closed). */
int dead_port(void)
{
    int port;
    int fd = listen_any(&port);
    close(fd);
    return port;
}

