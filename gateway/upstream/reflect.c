/*
 * reflect.c -- the blocking reflection client of `grpc-reflection://` descriptors
 * (reflect.h).
 *
 * Config loading is synchronous (main thread, before the workers start, and on
 * SIGHUP while the workers keep serving the running snapshot), so this client
 * is too: one socket, poll() with the deadline, nghttp2 driven with
 * mem_send/mem_recv, OpenSSL on the same socket for https:// endpoints with
 * the cluster's tls_verify / ca_file / authority (upstream/tls.h, as h2.c).
 * Not upstream/h2.c: its connections and pools belong to the workers' loops.
 *
 * One connection per endpoint, a few streams on it, one after the other:
 *   1. list_services (unless the config names the services),
 *   2. file_containing_symbol for every service (one stream, all requests,
 *      then END_STREAM; the server answers each in order),
 *   3. file_by_filename for the imports no file received so far satisfies,
 *      again until nothing is missing.
 * The first stream goes to grpc.reflection.v1; UNIMPLEMENTED there switches to
 * grpc.reflection.v1alpha (same messages) for the rest of the session.
 */
#include "upstream/reflect.h"
#include "upstream/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"

#define MAX_ANSWER (64u << 20) /* all answers of one stream together */
#define MAX_ROUNDS 64          /* file_by_filename rounds (import depth) */
#define MAX_PER_ROUND 512      /* file names asked for in one round */

static const char *const PATHS[2] = {
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

typedef struct sess {
    const pt_cluster_t *c;
    const pt_endpoint_t *ep;
    const char *authority;
    uint64_t deadline, timeout_ms;
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nghttp2_session *ng;
    int version; /* index in PATHS */

    /* the stream in progress */
    int32_t sid;
    const uint8_t *body;
    size_t body_len, body_off;
    uint8_t *ans;
    size_t ans_len, ans_cap;
    int http_status, grpc_status;
    char grpc_message[256];
    bool done, too_big;
    uint32_t rst;

    char *err;
    size_t errlen;
} sess_t;

enum { E_TRANSPORT = -1, E_ANSWER = -2 }; /* try the next endpoint / stop */

static void set_err(sess_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(sess_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, s->errlen, fmt, ap);
    va_end(ap);
}

/* Sets the message, evaluates to `rc` (a macro, so that analyzers see the code) */
#define FAIL(s, rc, ...) (set_err((s), __VA_ARGS__), (rc))

/* "Connection refused" -> "connection refused", as our messages are written */
static const char *errtext(int e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(e));
    if (buf[0] != '\0' && buf[1] != '\0' && !isupper((unsigned char)buf[1]))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* "5s" or "300ms" */
static const char *dur(uint64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

static int timeout_error(sess_t *s)
{
    char b[32];
    return FAIL(s, E_TRANSPORT, "%s: timeout after %s", s->authority,
                dur(s->timeout_ms, b, sizeof(b)));
}

/* Waits for `events` on the socket until the deadline: 1 ready, 0 timed out. */
static int wait_fd(sess_t *s, short events)
{
    for (;;) {
        uint64_t now = pt_now_ms();
        if (now >= s->deadline)
            return 0;
        struct pollfd p = {.fd = s->fd, .events = events};
        uint64_t left = s->deadline - now;
        int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return 0;
    }
}

/* ---- connecting ------------------------------------------------------------------- */

static int connect_tcp(sess_t *s)
{
    char port[8], eb[128];
    snprintf(port, sizeof(port), "%u", (unsigned)s->ep->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *ai = NULL;
    int g = getaddrinfo(s->ep->host, port, &hints, &ai);
    if (g != 0)
        return FAIL(s, E_TRANSPORT, "%s: cannot resolve %s: %s", s->authority, s->ep->host,
                    gai_strerror(g));
    int last = ECONNREFUSED;
    uint64_t connect_deadline = pt_now_ms() + s->c->connect_timeout_ms;
    if (connect_deadline > s->deadline)
        connect_deadline = s->deadline;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            continue;
        }
        s->fd = fd;
        uint64_t saved = s->deadline;
        s->deadline = connect_deadline;
        int ready = wait_fd(s, POLLOUT);
        s->deadline = saved;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (ready && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(ai);
            return 0;
        }
        close(fd);
        s->fd = -1;
        if (!ready) {
            freeaddrinfo(ai);
            char b[32];
            if (connect_deadline < s->deadline)
                return FAIL(s, E_TRANSPORT, "%s: connect timeout after %s", s->authority,
                            dur(s->c->connect_timeout_ms, b, sizeof(b)));
            return timeout_error(s);
        }
        last = soerr != 0 ? soerr : errno;
    }
    freeaddrinfo(ai);
    return FAIL(s, E_TRANSPORT, "%s: %s", s->authority, errtext(last, eb, sizeof(eb)));
}

static int tls_error(sess_t *s, const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    long vr = s->ssl != NULL ? SSL_get_verify_result(s->ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        return FAIL(s, E_TRANSPORT, "%s: TLS certificate verification failed: %s", s->authority,
                    X509_verify_cert_error_string(vr));
    return FAIL(s, E_TRANSPORT, "%s: %s%s%s", s->authority, what, buf[0] ? ": " : "", buf);
}

static int connect_tls(sess_t *s)
{
    s->ctx = pt__uptls_ctx_new(s->c->tls_verify, s->c->ca_file, PT_UPTLS_ALPN_H2,
                               sizeof(PT_UPTLS_ALPN_H2) - 1);
    if (s->ctx == NULL)
        return tls_error(s, s->c->tls_verify ? "cannot load the CA certificates" : "TLS setup failed");
    s->ssl = SSL_new(s->ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1)
        return tls_error(s, "TLS setup failed");
    /* the certificate names the cluster's authority when it has one (gRPC's rule) */
    char name[256];
    if (pt__uptls_set_peer(s->ssl, pt__uptls_name(s->c, s->ep, name, sizeof(name)),
                           s->c->tls_verify) != 0)
        return tls_error(s, "TLS setup failed");
    for (;;) {
        int rc = SSL_connect(s->ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(s->ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return tls_error(s, "TLS handshake failed");
        if (!wait_fd(s, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
            return timeout_error(s);
    }
    if (strcmp(pt__uptls_alpn(s->ssl), "h2") != 0)
        return FAIL(s, E_TRANSPORT, "%s: the server did not agree to HTTP/2 (ALPN h2)",
                    s->authority);
    return 0;
}

/* ---- bytes ------------------------------------------------------------------------- */

static int send_all(sess_t *s, const uint8_t *p, size_t n)
{
    char eb[128];
    while (n > 0) {
        ssize_t w;
        short ev = POLLOUT;
        if (s->ssl != NULL) {
            int rc = SSL_write(s->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (rc > 0) {
                w = rc;
            } else {
                int e = SSL_get_error(s->ssl, rc);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    return tls_error(s, "TLS write failed");
                ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                w = 0;
            }
        } else {
            w = send(s->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return FAIL(s, E_TRANSPORT, "%s: %s", s->authority, errtext(errno, eb, sizeof(eb)));
            if (w < 0)
                w = 0;
        }
        p += w;
        n -= (size_t)w;
        if (n > 0 && w == 0 && !wait_fd(s, ev))
            return timeout_error(s);
    }
    return 0;
}

/* Reads what is there (waiting for something): >0 bytes, or an error code. */
static ssize_t recv_some(sess_t *s, uint8_t *buf, size_t cap)
{
    char eb[128];
    for (;;) {
        short ev = POLLIN;
        if (s->ssl != NULL) {
            int rc = SSL_read(s->ssl, buf, (int)cap);
            if (rc > 0)
                return rc;
            int e = SSL_get_error(s->ssl, rc);
            if (e == SSL_ERROR_ZERO_RETURN)
                return FAIL(s, E_TRANSPORT, "%s: the server closed the connection", s->authority);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return tls_error(s, "TLS read failed");
            ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t n = recv(s->fd, buf, cap, 0);
            if (n > 0)
                return n;
            if (n == 0)
                return FAIL(s, E_TRANSPORT, "%s: the server closed the connection", s->authority);
            if (errno != EAGAIN && errno != EINTR)
                return FAIL(s, E_TRANSPORT, "%s: %s", s->authority, errtext(errno, eb, sizeof(eb)));
        }
        if (!wait_fd(s, ev))
            return timeout_error(s);
    }
}

/* ---- HTTP/2 ------------------------------------------------------------------------- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)ng;
    (void)flags;
    sess_t *s = ud;
    if (f->hd.stream_id != s->sid)
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        s->http_status = vlen == 3 ? (int)strtol((const char *)value, NULL, 10) : 0;
    } else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char b[12] = "";
        memcpy(b, value, vlen < sizeof(b) - 1 ? vlen : sizeof(b) - 1);
        s->grpc_status = (int)strtol(b, NULL, 10);
    } else if (nlen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t n = vlen < sizeof(s->grpc_message) - 1 ? vlen : sizeof(s->grpc_message) - 1;
        memcpy(s->grpc_message, value, n);
        s->grpc_message[n] = '\0';
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    (void)ng;
    (void)flags;
    sess_t *s = ud;
    if (sid != s->sid || s->too_big)
        return 0;
    if (len > MAX_ANSWER - s->ans_len) {
        s->too_big = true;
        return 0;
    }
    if (s->ans_len + len > s->ans_cap) {
        size_t nc = s->ans_cap != 0 ? s->ans_cap : 16384;
        while (nc < s->ans_len + len)
            nc *= 2;
        uint8_t *nb = realloc(s->ans, nc);
        if (nb == NULL) {
            s->too_big = true;
            return 0;
        }
        s->ans = nb;
        s->ans_cap = nc;
    }
    memcpy(s->ans + s->ans_len, data, len);
    s->ans_len += len;
    return 0;
}

static int on_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)ng;
    sess_t *s = ud;
    if (sid == s->sid) {
        s->done = true;
        s->rst = code;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)sid;
    (void)src;
    sess_t *s = ud;
    size_t n = s->body_len - s->body_off;
    if (n > len)
        n = len;
    memcpy(buf, s->body + s->body_off, n);
    s->body_off += n;
    if (s->body_off == s->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int start_h2(sess_t *s)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return FAIL(s, E_TRANSPORT, "out of memory");
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rv = nghttp2_session_client_new(&s->ng, cb, s);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return FAIL(s, E_TRANSPORT, "out of memory");
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0)
        return FAIL(s, E_TRANSPORT, "out of memory");
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    return 0;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                                  \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

/*
 * One ServerReflectionInfo stream: sends `body` (request messages), half-closes,
 * collects the answer into s->ans. 0 when the call ended with grpc-status 0;
 * 12 for UNIMPLEMENTED; else an error code with s->err set.
 */
static int call(sess_t *s, const uint8_t *body, size_t blen)
{
    s->body = body;
    s->body_len = blen;
    s->body_off = 0;
    s->ans_len = 0;
    s->http_status = 0;
    s->grpc_status = -1;
    s->grpc_message[0] = '\0';
    s->done = s->too_big = false;
    s->rst = 0;
    nghttp2_nv hdrs[] = {
        NV(":method", "POST"),
        NV(":scheme", s->ep->tls ? "https" : "http"),
        NV(":path", PATHS[s->version]),
        NV(":authority", s->c->authority != NULL ? s->c->authority : s->authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "portico-reflection"),
    };
    nghttp2_data_provider dp = {.read_callback = read_body};
    s->sid = nghttp2_submit_request(s->ng, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp, NULL);
    if (s->sid < 0)
        return FAIL(s, E_TRANSPORT, "%s: %s", s->authority, nghttp2_strerror(s->sid));
    uint8_t buf[16384];
    for (;;) {
        for (;;) {
            const uint8_t *out;
            ssize_t n = nghttp2_session_mem_send(s->ng, &out);
            if (n < 0)
                return FAIL(s, E_TRANSPORT, "%s: HTTP/2: %s", s->authority,
                            nghttp2_strerror((int)n));
            if (n == 0)
                break;
            int rc = send_all(s, out, (size_t)n);
            if (rc != 0)
                return rc;
        }
        if (s->done)
            break;
        if (!nghttp2_session_want_read(s->ng))
            return FAIL(s, E_TRANSPORT, "%s: the server ended the HTTP/2 connection", s->authority);
        ssize_t n = recv_some(s, buf, sizeof(buf));
        if (n < 0)
            return (int)n;
        ssize_t used = nghttp2_session_mem_recv(s->ng, buf, (size_t)n);
        if (used < 0)
            return FAIL(s, E_TRANSPORT, "%s: HTTP/2: %s", s->authority,
                        nghttp2_strerror((int)used));
    }
    if (s->too_big)
        return FAIL(s, E_ANSWER, "%s: reflection answer over %u MiB", s->authority,
                    MAX_ANSWER >> 20);
    if (s->http_status == 404 || s->grpc_status == 12)
        return 12;
    if (s->http_status != 200)
        return FAIL(s, E_ANSWER, "%s: reflection call answered HTTP status %d", s->authority,
                    s->http_status);
    if (s->grpc_status < 0)
        return FAIL(s, E_TRANSPORT, "%s: reflection stream reset (HTTP/2 error %u)", s->authority,
                    s->rst);
    if (s->grpc_status != 0)
        return FAIL(s, E_ANSWER, "%s: reflection call failed: grpc-status %d%s%s", s->authority,
                    s->grpc_status, s->grpc_message[0] ? ": " : "", s->grpc_message);
    return 0;
}

/* Calls with fallback to v1alpha on the first stream of the session. */
static int call_any(sess_t *s, const uint8_t *body, size_t blen, bool *first)
{
    int rc = call(s, body, blen);
    if (rc == 12 && *first) {
        s->version = 1;
        rc = call(s, body, blen);
    }
    if (rc == 12)
        return FAIL(s, E_ANSWER,
                    *first ? "the server has no reflection service (grpc.reflection.v1 and "
                             "v1alpha: UNIMPLEMENTED)"
                           : "reflection call UNIMPLEMENTED");
    *first = false;
    return rc;
}

/*
 * The i-th answer of s->ans: decodes the next length-prefixed message at *off.
 * 1 with *r filled, 0 at the end, or E_ANSWER.
 */
static int next_answer(sess_t *s, size_t *off, pt_refl_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    if (*off == s->ans_len)
        return 0;
    if (s->ans_len - *off < 5)
        return FAIL(s, E_ANSWER, "%s: truncated gRPC message", s->authority);
    const uint8_t *h = s->ans + *off;
    uint32_t n = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
    if (h[0] != 0)
        return FAIL(s, E_ANSWER, "%s: compressed reflection answer (not asked for)", s->authority);
    if (n > s->ans_len - *off - 5)
        return FAIL(s, E_ANSWER, "%s: truncated gRPC message", s->authority);
    const char *why = NULL;
    if (pt_refl_decode_response(h + 5, n, r, &why) != 0)
        return FAIL(s, E_ANSWER, "%s: %s", s->authority, why);
    *off += 5 + n;
    return 1;
}

static bool is_infra_service(const char *n, size_t len)
{
    return (len > 16 && memcmp(n, "grpc.reflection.", 16) == 0) ||
           (len == 21 && memcmp(n, "grpc.health.v1.Health", 21) == 0);
}

/* Round 1: the service names the server lists (malloc'd strings). */
static int list_services(sess_t *s, bool *first, char ***names, size_t *cnt)
{
    uint8_t *req = NULL;
    size_t rlen = 0;
    if (pt_refl_encode_request(PT_REFL_LIST_SERVICES, "*", &req, &rlen) != 0)
        return FAIL(s, E_ANSWER, "out of memory");
    int rc = call_any(s, req, rlen, first);
    free(req);
    if (rc != 0)
        return rc;
    size_t off = 0;
    pt_refl_resp_t r;
    while ((rc = next_answer(s, &off, &r)) == 1) {
        if (r.kind == PT_REFL_R_ERROR) {
            rc = FAIL(s, E_ANSWER, "list_services: %.*s (code %d)", (int)r.error_message.len,
                      (const char *)r.error_message.p, (int)r.error_code);
            pt_refl_resp_free(&r);
            return rc;
        }
        for (size_t i = 0; r.kind == PT_REFL_R_SERVICES && i < r.item_cnt; i++) {
            pt_refl_str_t it = r.items[i];
            if (it.len == 0 || it.len > 512 || is_infra_service((const char *)it.p, it.len))
                continue;
            char **nv = realloc(*names, (*cnt + 1) * sizeof(*nv));
            char *n = malloc(it.len + 1);
            if (nv != NULL)
                *names = nv;
            if (nv == NULL || n == NULL) {
                free(n);
                pt_refl_resp_free(&r);
                return FAIL(s, E_ANSWER, "out of memory");
            }
            memcpy(n, it.p, it.len);
            n[it.len] = '\0';
            (*names)[(*cnt)++] = n;
        }
        pt_refl_resp_free(&r);
    }
    if (rc != 0)
        return rc;
    if (*cnt == 0)
        return FAIL(s, E_ANSWER, "the server lists no services");
    return 0;
}

/*
 * One round of requests of `kind`, one per name; adds the files of the answers.
 * `label` says what the names are in messages ("service", "file"), `by` (may be
 * NULL) the importing file of each name.
 */
static int ask_files(sess_t *s, bool *first, pt_refl_req_t kind, const char *const *args,
                     const char *const *by, size_t n, pt_refl_files_t *fs)
{
    const char *label = kind == PT_REFL_FILE_CONTAINING_SYMBOL ? "service" : "file";
    if (n == 0)
        return 0;
    uint8_t *req = NULL;
    size_t rlen = 0;
    for (size_t i = 0; i < n; i++) {
        if (pt_refl_encode_request(kind, args[i], &req, &rlen) != 0) {
            free(req);
            return FAIL(s, E_ANSWER, "out of memory");
        }
    }
    int rc = call_any(s, req, rlen, first);
    free(req);
    if (rc != 0)
        return rc;
    size_t off = 0, idx = 0;
    pt_refl_resp_t r;
    while ((rc = next_answer(s, &off, &r)) == 1) {
        /* which request this answers: original_request when sent, else the order */
        size_t which = idx < n ? idx : n - 1;
        if (r.req_kind == (int)kind) {
            for (size_t i = 0; i < n; i++)
                if (strlen(args[i]) == r.req_arg.len &&
                    memcmp(args[i], r.req_arg.p, r.req_arg.len) == 0)
                    which = i;
        }
        idx++;
        char imp[600] = "";
        if (by != NULL)
            snprintf(imp, sizeof(imp), " (imported by %s)", by[which]);
        if (r.kind == PT_REFL_R_ERROR) {
            if (r.error_code == 5)
                rc = FAIL(s, E_ANSWER, "%s %s%s: not found", label, args[which], imp);
            else
                rc = FAIL(s, E_ANSWER, "%s %s%s: %.*s (code %d)", label, args[which], imp,
                          (int)r.error_message.len, (const char *)r.error_message.p,
                          (int)r.error_code);
            pt_refl_resp_free(&r);
            return rc;
        }
        for (size_t i = 0; r.kind == PT_REFL_R_FILES && i < r.item_cnt; i++) {
            const char *why = NULL;
            if (pt_refl_files_add(fs, r.items[i].p, r.items[i].len, &why) < 0) {
                rc = FAIL(s, E_ANSWER, "%s %s%s: %s", label, args[which], imp, why);
                pt_refl_resp_free(&r);
                return rc;
            }
        }
        pt_refl_resp_free(&r);
    }
    if (rc != 0)
        return rc;
    if (idx < n)
        return FAIL(s, E_ANSWER, "%s %s: no answer", label, args[idx]);
    return 0;
}

static int walk(sess_t *s, const char *const *services, size_t svc_cnt, pt_refl_files_t *fs)
{
    bool first = true;
    char **listed = NULL;
    size_t listed_cnt = 0;
    int rc = 0;
    if (svc_cnt == 0) {
        rc = list_services(s, &first, &listed, &listed_cnt);
        services = (const char *const *)listed;
        svc_cnt = listed_cnt;
    }
    if (rc == 0)
        rc = ask_files(s, &first, PT_REFL_FILE_CONTAINING_SYMBOL, services, NULL, svc_cnt, fs);
    for (unsigned round = 0; rc == 0; round++) {
        const char *miss[MAX_PER_ROUND] = {0}, *by[MAX_PER_ROUND] = {0};
        size_t n = pt_refl_files_missing(fs, miss, by, MAX_PER_ROUND);
        if (n == 0)
            break;
        if (round == MAX_ROUNDS) {
            rc = FAIL(s, E_ANSWER, "imports nested deeper than %d files", MAX_ROUNDS);
            break;
        }
        if (n > MAX_PER_ROUND)
            n = MAX_PER_ROUND;
        /* the names point into fs, which this round grows: copy them first */
        char *own[MAX_PER_ROUND] = {0}, *own_by[MAX_PER_ROUND] = {0};
        size_t k = 0;
        for (; k < n; k++) {
            own[k] = strdup(miss[k]);
            own_by[k] = strdup(by[k]);
            if (own[k] == NULL || own_by[k] == NULL) {
                free(own[k]);
                free(own_by[k]);
                rc = FAIL(s, E_ANSWER, "out of memory");
                break;
            }
        }
        if (rc == 0)
            rc = ask_files(s, &first, PT_REFL_FILE_BY_FILENAME, (const char *const *)own,
                           (const char *const *)own_by, n, fs);
        for (size_t i = 0; rc == 0 && i < n; i++)
            if (pt_refl_files_find(fs, own[i]) == NULL)
                rc = FAIL(s, E_ANSWER, "file %s (imported by %s): the server did not send it",
                          own[i], own_by[i]);
        for (size_t i = 0; i < k; i++) {
            free(own[i]);
            free(own_by[i]);
        }
    }
    for (size_t i = 0; i < listed_cnt; i++)
        free(listed[i]);
    free(listed);
    return rc;
}

static void sess_close(sess_t *s)
{
    if (s->ng != NULL)
        nghttp2_session_del(s->ng);
    if (s->ssl != NULL)
        SSL_free(s->ssl);
    if (s->ctx != NULL)
        SSL_CTX_free(s->ctx);
    if (s->fd >= 0)
        close(s->fd);
    free(s->ans);
    ERR_clear_error();
}

int pt_reflect_fetch(const pt_cluster_t *c, const char *const *services, size_t svc_cnt,
                     uint64_t timeout_ms, pt_refl_files_t *fs, char *err, size_t errlen, char *used,
                     size_t usedlen)
{
    int rc = E_TRANSPORT;
    size_t elen = 0;
    err[0] = '\0';
    for (size_t i = 0; i < c->endpoint_cnt; i++) {
        const pt_endpoint_t *ep = &c->endpoints[i];
        const char *auth = strstr(ep->url, "://");
        char one[512] = "";
        sess_t s = {.c = c,
                    .ep = ep,
                    .authority = auth != NULL ? auth + 3 : ep->url,
                    .timeout_ms = timeout_ms,
                    .deadline = pt_now_ms() + timeout_ms,
                    .fd = -1,
                    .err = one,
                    .errlen = sizeof(one)};
        rc = connect_tcp(&s);
        if (rc == 0 && ep->tls)
            rc = connect_tls(&s);
        if (rc == 0)
            rc = start_h2(&s);
        if (rc == 0) {
            pt_refl_files_t got = {0};
            rc = walk(&s, services, svc_cnt, &got);
            if (rc == 0) {
                pt_refl_files_free(fs);
                *fs = got;
                if (used != NULL)
                    snprintf(used, usedlen, "%s, grpc.reflection.%s", s.authority,
                             s.version == 0 ? "v1" : "v1alpha");
            } else {
                pt_refl_files_free(&got);
            }
        }
        sess_close(&s);
        if (rc == 0)
            return 0;
        if (rc == E_ANSWER) { /* the server answered: its answer is the error */
            snprintf(err, errlen, "%s", one);
            return -1;
        }
        /* transport failures: list every endpoint's */
        int w = snprintf(err + elen, errlen - elen, "%s%s", elen != 0 ? "; " : "", one);
        if (w > 0)
            elen = (size_t)w >= errlen - elen ? errlen - 1 : elen + (size_t)w;
    }
    if (c->endpoint_cnt == 0)
        snprintf(err, errlen, "the cluster has no endpoints");
    return -1;
}
