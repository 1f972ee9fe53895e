/*
 * redis_conf.c -- the `redis:` section: named targets, and their lookup by
 * filters at load time (pt_redis_conf_target).
 *
 *   redis:
 *     main: { address: "127.0.0.1:6379", timeout: 200ms, connections: 2,
 *             password_file: redis.pass, db: 1, prefix: "portico:" }
 *
 * Addresses are IP literals or `unix:/path` (a load never waits for DNS, as
 * for listeners). The password is read from its file at load time, so a
 * reload picks up a rotated password and the file's contents never reach
 * /config (only the path does, and it is redacted).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/confparse.h"
#include "core/confvalue.h"
#include "upstream/redis.h"
#include "portico/arena.h"
#include "portico/status.h"

#define MAX_PASSWORD 4096

typedef struct target_raw {
    const char *address, *username, *password_file, *prefix;
    uint64_t timeout_ms, connect_timeout_ms;
    uint32_t connections, max_pending, db;
} target_raw_t;

static const pt_conf_field_t target_fields[] = {
    {"address", PT_CONF_T_STR, offsetof(target_raw_t, address), 0, 0, true, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(target_raw_t, timeout_ms), 1, 60000, false, NULL},
    {"connect_timeout", PT_CONF_T_DURATION, offsetof(target_raw_t, connect_timeout_ms), 1, 60000,
     false, NULL},
    {"connections", PT_CONF_T_UINT32, offsetof(target_raw_t, connections), 1, 64, false, NULL},
    {"max_pending", PT_CONF_T_UINT32, offsetof(target_raw_t, max_pending), 1, 1000000, false, NULL},
    {"db", PT_CONF_T_UINT32, offsetof(target_raw_t, db), 0, 100000, false, NULL},
    {"username", PT_CONF_T_STR, offsetof(target_raw_t, username), 0, 0, false, NULL},
    {"password_file", PT_CONF_T_PATH, offsetof(target_raw_t, password_file), 0, 0, false, NULL},
    {"prefix", PT_CONF_T_STR, offsetof(target_raw_t, prefix), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* `IPv4:PORT`, `[IPv6]:PORT` (the listeners' parser) or `unix:/absolute/path`. */
static int parse_address(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_redis_target_t *t)
{
    const char *text = t->address;
    if (strncmp(text, "unix:", 5) == 0) {
        if (text[5] != '/' || strlen(text + 5) >= 108)
            return pt_conf_error(cx, n,
                                 "bad redis address '%s': expected unix:/ABSOLUTE/PATH "
                                 "(at most 107 bytes)",
                                 text);
        t->unix_path = text + 5;
        return 0;
    }
    pt_sockaddr_t sa;
    if (pt__config_sockaddr(cx, n, &sa) != 0)
        return PT_ERR_INVALID;
    /* hiredis takes the IP as text and the port apart */
    char host[INET6_ADDRSTRLEN];
    const void *ip = sa.ss.ss_family == AF_INET
                         ? (const void *)&((const struct sockaddr_in *)&sa.ss)->sin_addr
                         : (const void *)&((const struct sockaddr_in6 *)&sa.ss)->sin6_addr;
    if (inet_ntop(sa.ss.ss_family, ip, host, sizeof(host)) == NULL)
        return pt_conf_error(cx, n, "bad redis address '%s'", text);
    t->host = pt_conf_strdup(cx, host, strlen(host));
    t->port = ntohs(sa.ss.ss_family == AF_INET ? ((const struct sockaddr_in *)&sa.ss)->sin_port
                                               : ((const struct sockaddr_in6 *)&sa.ss)->sin6_port);
    return 0;
}

/* The first line of the file, without its line end; never empty. */
static int read_password(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *path,
                         pt_redis_target_t *t)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return pt_conf_error(cx, n, "cannot read password_file '%s': %s", path, strerror(errno));
    char buf[MAX_PASSWORD + 2];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    len = strcspn(buf, "\r\n");
    if (len == 0)
        return pt_conf_error(cx, n, "password_file '%s': the first line is empty", path);
    if (len > MAX_PASSWORD)
        return pt_conf_error(cx, n, "password_file '%s': longer than %d bytes", path, MAX_PASSWORD);
    t->password = pt_conf_strdup(cx, buf, len);
    return 0;
}

static void load_target(pt_conf_cx_t *cx, const char *name, const pt_conf_node_t *val,
                        pt_redis_target_t *t)
{
    target_raw_t raw = {.timeout_ms = 200,
                        .connect_timeout_ms = 1000,
                        .connections = 1,
                        .max_pending = 1024,
                        .prefix = ""};
    unsigned before = pt_conf_error_count(cx);
    if (val->kind != PT_CONF_MAP) {
        pt_conf_error(cx, val,
                      "redis target '%s': expected a map (e.g. { address: "
                      "\"127.0.0.1:6379\" })",
                      name);
        return;
    }
    pt_conf_parse_fields(cx, val, target_fields, &raw);
    if (pt_conf_error_count(cx) != before)
        return;
    t->name = name;
    t->node = val;
    t->address = raw.address;
    t->username = raw.username;
    t->db = raw.db;
    t->prefix = raw.prefix;
    t->prefix_len = strlen(raw.prefix);
    t->timeout_ms = raw.timeout_ms;
    t->connect_timeout_ms = raw.connect_timeout_ms;
    t->connections = raw.connections;
    t->max_pending = raw.max_pending;
    parse_address(cx, pt_conf_map_get(val, "address"), t);
    if (raw.username != NULL && raw.password_file == NULL)
        pt_conf_error(cx, pt_conf_map_get(val, "username"), "username needs a password_file");
    if (raw.password_file != NULL)
        read_password(cx, pt_conf_map_get(val, "password_file"), raw.password_file, t);
    if (pt_conf_error_count(cx) != before)
        return;
    /* Everything that shapes a worker's connection set, as one comparable
     * string (the prefix only shapes keys, so it is left out). */
    t->key = pt_arena_printf(cx->arena, "%s|%u|%s|%s|%u|%llu|%llu|%u", t->address, t->db,
                             t->username != NULL ? t->username : "",
                             t->password != NULL ? t->password : "", t->connections,
                             (unsigned long long)t->timeout_ms,
                             (unsigned long long)t->connect_timeout_ms, t->max_pending);
}

void pt__redis_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_redis_target_t **out,
                         size_t *cnt)
{
    *out = NULL;
    *cnt = 0;
    if (n->kind == PT_CONF_NULL)
        return;
    if (n->kind != PT_CONF_MAP) {
        pt_conf_error(cx, n,
                      "redis: expected a map of named targets (e.g. `redis: { main: { "
                      "address: \"127.0.0.1:6379\" } }`)");
        return;
    }
    pt_redis_target_t *v = pt_conf_alloc(cx, (n->cnt != 0 ? n->cnt : 1) * sizeof(*v));
    for (size_t i = 0; i < n->cnt; i++) {
        unsigned before = pt_conf_error_count(cx);
        if (!pt__config_valid_name(n->keys[i]->str))
            pt_conf_error(cx, n->keys[i],
                          "redis target name '%s' may only contain letters, digits, '_', "
                          "'-', '.'",
                          n->keys[i]->str);
        load_target(cx, n->keys[i]->str, n->items[i], &v[*cnt]);
        if (pt_conf_error_count(cx) == before)
            (*cnt)++;
    }
    *out = v;
}

const pt_redis_target_t *pt_redis_conf_inline(pt_conf_cx_t *cx, const pt_conf_node_t *n,
                                              const char *name, const char *const *skip)
{
    if (n->kind != PT_CONF_MAP) {
        pt_conf_error(cx, n, "%s: expected a map (e.g. { address: \"127.0.0.1:6379\" })", name);
        return NULL;
    }
    /* the same map without the caller's keys, for the target's field table */
    pt_conf_node_t *m = pt_conf_alloc(cx, sizeof(*m));
    *m = *n;
    m->keys = pt_conf_alloc(cx, (n->cnt + 1) * sizeof(*m->keys));
    m->items = pt_conf_alloc(cx, (n->cnt + 1) * sizeof(*m->items));
    m->cnt = 0;
    for (size_t i = 0; i < n->cnt; i++) {
        bool skipped = false;
        for (size_t k = 0; skip != NULL && skip[k] != NULL && !skipped; k++)
            skipped = n->keys[i]->str != NULL && strcmp(n->keys[i]->str, skip[k]) == 0;
        if (!skipped) {
            m->keys[m->cnt] = n->keys[i];
            m->items[m->cnt++] = n->items[i];
        }
    }
    pt_redis_target_t *t = pt_conf_alloc(cx, sizeof(*t));
    unsigned before = pt_conf_error_count(cx);
    load_target(cx, name, m, t);
    if (pt_conf_error_count(cx) != before)
        return NULL;
    pt_config_t *c = cx->user;
    if (c != NULL) {
        t->next_inline = c->redis_inline;
        c->redis_inline = t;
    }
    return t;
}

/* ---- SDK: lookup at load time --------------------------------------------- */

int pt_redis_conf_target(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *out)
{
    const char *name = NULL;
    if (pt_conf_get_str(cx, node, &name) != 0)
        return PT_ERR_INVALID;
    const pt_config_t *c = cx->user;
    for (size_t i = 0; c != NULL && i < c->redis_target_cnt; i++)
        if (strcmp(c->redis_targets[i].name, name) == 0) {
            *(const pt_redis_target_t **)out = &c->redis_targets[i];
            return 0;
        }
    char known[256];
    size_t k = 0;
    known[0] = '\0';
    for (size_t i = 0; c != NULL && i < c->redis_target_cnt && k < sizeof(known); i++) {
        int m = snprintf(known + k, sizeof(known) - k, "%s%s", i != 0 ? ", " : "",
                         c->redis_targets[i].name);
        if (m < 0)
            break;
        k += (size_t)m;
    }
    if (known[0] == '\0')
        return pt_conf_error(cx, node,
                             "unknown redis target '%s' (no `redis:` targets are "
                             "configured)",
                             name);
    return pt_conf_error(cx, node, "unknown redis target '%s' (configured: %s)", name, known);
}

const char *pt_redis_target_name(const pt_redis_target_t *t)
{
    return t->name;
}

pt_str_t pt_redis_target_prefix(const pt_redis_target_t *t)
{
    return (pt_str_t){t->prefix, t->prefix_len};
}
