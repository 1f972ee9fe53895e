/*
 * test_redis.c -- upstream/redis.c and redis_conf.c without a Redis server:
 * reply conversion (hiredis reader -> pt_redis_reply_t), the `redis:`
 * section, and the command contract against peers that refuse or never
 * answer (error returns never call back; accepted commands call back exactly
 * once: TIMEOUT, CANCELED inside pt_redis_cancel, CANCELED at worker exit;
 * max_pending; fail fast during the reconnect backoff). The integration test
 * (test/integration/redis) runs the same code against a real redis-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "server.h"
#include "upstream/redis.h"
#include "net/worker.h"

/* ---- reply conversion --------------------------------------------------------- */

/* Parses one RESP reply with hiredis' own reader. */
static redisReply *parse(const char *resp, size_t len)
{
    redisReader *r = redisReaderCreate();
    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

static void test_reply_scalars(void **state)
{
    (void)state;
    pt_redis_reply_t nodes[4], *heap = NULL;
    redisReply *r = parse(":-42\r\n", 6);
    const pt_redis_reply_t *p = pt__redis_reply_convert(r, nodes, 4, &heap);
    assert_non_null(p);
    assert_int_equal(p->type, PT_REDIS_INT);
    assert_int_equal(p->integer, -42);
    assert_null(heap);
    freeReplyObject(r);

    r = parse("$5\r\na\0b\r\n\r\n", 11); /* binary-safe: NUL and CRLF inside */
    p = pt__redis_reply_convert(r, nodes, 4, &heap);
    assert_int_equal(p->type, PT_REDIS_STRING);
    assert_int_equal(p->str.len, 5);
    assert_memory_equal(p->str.base, "a\0b\r\n", 5);
    freeReplyObject(r);

    r = parse("$-1\r\n", 5);
    p = pt__redis_reply_convert(r, nodes, 4, &heap);
    assert_int_equal(p->type, PT_REDIS_NIL);
    freeReplyObject(r);

    r = parse("+OK\r\n", 5);
    p = pt__redis_reply_convert(r, nodes, 4, &heap);
    assert_int_equal(p->type, PT_REDIS_STATUS);
    assert_true(pt_str_eq(p->str, PT_STR("OK")));
    freeReplyObject(r);

    r = parse("-WRONGTYPE no\r\n", 15);
    p = pt__redis_reply_convert(r, nodes, 4, &heap);
    assert_int_equal(p->type, PT_REDIS_ERROR);
    assert_true(pt_str_eq(p->str, PT_STR("WRONGTYPE no")));
    freeReplyObject(r);
}

static void test_reply_nested_array(void **state)
{
    (void)state;
    /* [1, ["a", nil], "x" (status), []] */
    const char resp[] = "*4\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n*0\r\n";
    redisReply *r = parse(resp, sizeof(resp) - 1);
    pt_redis_reply_t nodes[16], *heap = NULL;
    const pt_redis_reply_t *p = pt__redis_reply_convert(r, nodes, 16, &heap);
    assert_null(heap);
    assert_int_equal(p->type, PT_REDIS_ARRAY);
    assert_int_equal(p->element_cnt, 4);
    assert_int_equal(p->elements[0].type, PT_REDIS_INT);
    assert_int_equal(p->elements[0].integer, 1);
    const pt_redis_reply_t *in = &p->elements[1];
    assert_int_equal(in->type, PT_REDIS_ARRAY);
    assert_int_equal(in->element_cnt, 2);
    assert_true(pt_str_eq(in->elements[0].str, PT_STR("a")));
    assert_int_equal(in->elements[1].type, PT_REDIS_NIL);
    assert_int_equal(p->elements[2].type, PT_REDIS_STATUS);
    assert_int_equal(p->elements[3].type, PT_REDIS_ARRAY);
    assert_int_equal(p->elements[3].element_cnt, 0);

    /* the same reply with room for 3 nodes only: one heap block, same tree */
    pt_redis_reply_t few[3];
    p = pt__redis_reply_convert(r, few, 3, &heap);
    assert_non_null(heap);
    assert_ptr_equal(p, heap);
    assert_int_equal(p->element_cnt, 4);
    assert_true(pt_str_eq(p->elements[1].elements[0].str, PT_STR("a")));
    free(heap);
    freeReplyObject(r);
}

/* ---- config ---------------------------------------------------------------------- */

static pt_config_t *load(const char *yaml, char **errs)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pt_config_t *c = pt_config_load_string("t.yaml", yaml, strlen(yaml), f);
    fclose(f);
    *errs = buf;
    return c;
}

static void test_conf_targets(void **state)
{
    (void)state;
    char *errs;
    pt_config_t *c = load("listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                          "redis:\n"
                          "  a: { address: \"127.0.0.1:6379\" }\n"
                          "  b: { address: \"[::1]:7000\", db: 2, connections: 3, timeout: 50ms,"
                          " max_pending: 10, prefix: \"p:\" }\n"
                          "  c: { address: \"unix:/run/redis/redis.sock\" }\n"
                          "  d: { address: \"127.0.0.1:6379\" }\n",
                          &errs);
    assert_non_null(c);
    assert_string_equal(errs, "");
    assert_int_equal(c->redis_target_cnt, 4);
    const pt_redis_target_t *a = &c->redis_targets[0], *b = &c->redis_targets[1],
                            *u = &c->redis_targets[2], *d = &c->redis_targets[3];
    assert_string_equal(a->host, "127.0.0.1");
    assert_int_equal(a->port, 6379);
    assert_int_equal(a->timeout_ms, 200);
    assert_int_equal(a->connect_timeout_ms, 1000);
    assert_int_equal(a->connections, 1);
    assert_int_equal(a->max_pending, 1024);
    assert_int_equal(pt_redis_target_prefix(a).len, 0);
    assert_string_equal(b->host, "::1");
    assert_int_equal(b->port, 7000);
    assert_int_equal(b->db, 2);
    assert_int_equal(b->connections, 3);
    assert_true(pt_str_eq(pt_redis_target_prefix(b), PT_STR("p:")));
    assert_string_equal(pt_redis_target_name(b), "b");
    assert_null(u->host);
    assert_string_equal(u->unix_path, "/run/redis/redis.sock");
    /* same definition -> same worker connection set; different -> not */
    assert_string_equal(a->key, d->key);
    assert_string_not_equal(a->key, b->key);
    free(errs);
    pt_config_unref(c);
}

static void test_conf_errors(void **state)
{
    (void)state;
    char *errs;
    pt_config_t *c = load("listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                          "redis:\n"
                          "  a: { address: \"localhost:6379\" }\n"
                          "  b: { address: \"127.0.0.1:6379\", connections: 0 }\n"
                          "  c: { address: \"unix:relative.sock\" }\n"
                          "  d: { address: \"127.0.0.1:6379\", username: u }\n"
                          "  e: 5\n",
                          &errs);
    assert_null(c);
    assert_non_null(strstr(errs, "t.yaml:3:"));
    assert_non_null(strstr(errs, "'localhost' is not an IP address"));
    assert_non_null(strstr(errs, "t.yaml:4:"));
    assert_non_null(strstr(errs, "t.yaml:5:"));
    assert_non_null(strstr(errs, "expected unix:/ABSOLUTE/PATH"));
    assert_non_null(strstr(errs, "t.yaml:6:"));
    assert_non_null(strstr(errs, "username needs a password_file"));
    assert_non_null(strstr(errs, "t.yaml:7:"));
    free(errs);
    c = load("listeners: [ { address: \"127.0.0.1:1\" } ]\nredis: [ a ]\n", &errs);
    assert_null(c);
    assert_non_null(strstr(errs, "t.yaml:2:8: redis: expected a map"));
    free(errs);
}

/* ---- the command contract --------------------------------------------------------- */

typedef struct calls {
    int n;
    int status;
    bool had_reply;
} calls_t;

static void on_done(int status, const pt_redis_reply_t *reply, void *ud)
{
    calls_t *c = ud;
    c->n++;
    c->status = status;
    c->had_reply = reply != NULL;
}

/* A listening socket that never accepts: the kernel completes the TCP
 * handshake (backlog), then nothing is ever answered -- a hung Redis. */
static int blackhole(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port nothing listens on (bound, then closed). */
static uint16_t closed_port(void)
{
    uint16_t port;
    close(blackhole(&port));
    return port;
}

static void run_until(pt_worker_t *w, const int *n, int want)
{
    for (int i = 0; i < 1000 && *n < want; i++) /* 10 s at most */
        event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(10000);
    assert_int_equal(*n, want);
}

static pt_config_t *config_for(uint16_t port, const char *extra)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "redis: { r: { address: \"127.0.0.1:%u\", timeout: 100ms%s } }\n",
             port, extra);
    char *errs;
    pt_config_t *c = load(yaml, &errs);
    assert_non_null(c);
    free(errs);
    return c;
}

static void test_cmd_refused_at_once(void **state)
{
    (void)state;
    pt_config_t *c = config_for(closed_port(), "");
    pt_worker_t *w = pt__worker_new_detached(c);
    const pt_redis_target_t *t = &c->redis_targets[0];
    calls_t k = {0};
    const pt_str_t get[] = {PT_STR("GET"), PT_STR("k")};
    const pt_str_t sub[] = {PT_STR("subscribe"), PT_STR("ch")};
    assert_int_equal(pt_redis_command(w, t, 0, get, on_done, &k, NULL), PT_ERR_INVALID);
    assert_int_equal(pt_redis_command(w, t, 2, get, NULL, &k, NULL), PT_ERR_INVALID);
    assert_int_equal(pt_redis_command(w, t, 2, sub, on_done, &k, NULL), PT_ERR_INVALID);
    assert_int_equal(pt_redis_command(w, NULL, 2, get, on_done, &k, NULL), PT_ERR_INVALID);

    /* Connection refused: reported either at once or through the one callback. */
    int rc = pt_redis_command(w, t, 2, get, on_done, &k, NULL);
    if (rc == 0) {
        run_until(w, &k.n, 1);
        assert_int_equal(k.status, PT_ERR_UNAVAILABLE);
        assert_false(k.had_reply);
    } else {
        assert_int_equal(rc, PT_ERR_UNAVAILABLE);
    }
    /* now in backoff: the next command fails fast, without a callback */
    int before = k.n;
    assert_int_equal(pt_redis_command(w, t, 2, get, on_done, &k, NULL), PT_ERR_UNAVAILABLE);
    event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(k.n, before);
    pt__worker_free_detached(w);
    pt_config_unref(c);
}

static void test_cmd_timeout_cancel_limit_dispose(void **state)
{
    (void)state;
    uint16_t port;
    int hole = blackhole(&port);
    pt_config_t *c = config_for(port, ", max_pending: 3");
    pt_worker_t *w = pt__worker_new_detached(c);
    const pt_redis_target_t *t = &c->redis_targets[0];
    const pt_str_t incr[] = {PT_STR("INCR"), PT_STR("k")};
    calls_t k1 = {0}, k2 = {0}, k3 = {0}, k4 = {0};
    pt_redis_cmd_t *h1 = NULL, *h2 = NULL;
    assert_int_equal(pt_redis_command(w, t, 2, incr, on_done, &k1, &h1), 0);
    assert_int_equal(pt_redis_command(w, t, 2, incr, on_done, &k2, &h2), 0);
    assert_int_equal(pt_redis_command(w, t, 2, incr, on_done, &k3, NULL), 0);
    assert_int_equal(pt_redis_command(w, t, 2, incr, on_done, &k4, NULL), PT_ERR_LIMIT);
    assert_int_equal(k1.n + k2.n + k3.n + k4.n, 0); /* never synchronously */

    /* cancel: the callback runs inside pt_redis_cancel */
    pt_redis_cancel(h1);
    assert_int_equal(k1.n, 1);
    assert_int_equal(k1.status, PT_ERR_CANCELED);

    /* timeout: exactly once, no reply */
    run_until(w, &k2.n, 1);
    assert_int_equal(k2.status, PT_ERR_TIMEOUT);
    assert_false(k2.had_reply);
    run_until(w, &k3.n, 1);
    assert_int_equal(k3.status, PT_ERR_TIMEOUT);
    /* timed-out and canceled commands still wait for their replies: still full */
    assert_int_equal(pt_redis_command(w, t, 2, incr, on_done, &k4, NULL), PT_ERR_LIMIT);

    /* the stall watchdog (1 s here) closes the silent connection by itself;
     * the backoff expires; then commands are taken again */
    int rc = PT_ERR_LIMIT;
    for (int i = 0; i < 1000 && rc != 0; i++) {
        event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(10000);
        rc = pt_redis_command(w, t, 2, incr, on_done, &k4, NULL);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(k4.n, 0);

    /* worker exit with the command pending: CANCELED, once; then nothing more */
    pt__worker_free_detached(w);
    assert_int_equal(k4.n, 1);
    assert_int_equal(k4.status, PT_ERR_CANCELED);
    assert_int_equal(k1.n + k2.n + k3.n, 3);
    close(hole);
    pt_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_scalars),
        cmocka_unit_test(test_reply_nested_array),
        cmocka_unit_test(test_conf_targets),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_cmd_refused_at_once),
        cmocka_unit_test(test_cmd_timeout_cancel_limit_dispose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
