/*
 * ip_access.c -- the `ip_access` filter: allow and deny lists of networks.
 *
 *   - ip_access:
 *       allow: [ 10.0.0.0/8, "2001:db8::/32" ]
 *       deny:  [ 10.1.2.0/24 ]
 *       trusted_proxies: [ 192.168.0.10, "fd00::/8" ]
 *
 * The client is the connection's peer. When that peer is one of
 * `trusted_proxies`, X-Forwarded-For is read from the right (the entry the
 * last proxy appended) and the first address that is not itself a trusted
 * proxy is the client (the rightmost untrusted one: what a client writes into
 * the header is left of it and never believed). Without trusted_proxies the
 * header is ignored. Decision: a client inside `deny` is refused; else, when
 * `allow` is set, a client outside it is refused; else it passes. Refusals are
 * 403 (PERMISSION_DENIED for gRPC clients) through pt_req_reject, before any
 * upstream sees the request. An X-Forwarded-For entry that the decision would
 * rest on but is not an address is refused too (fail closed).
 *
 * IPv4 and IPv6 share one representation (see ip_access.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "plugins/ip_access.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

typedef struct netlist {
    pt_ipnet_t *v;
    size_t cnt;
} netlist_t;

typedef struct ip_access_conf {
    netlist_t allow, deny, trusted;
} ip_access_conf_t;

/* ---- addresses ------------------------------------------------------------------ */

static uint64_t load_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Parses into 16 bytes; *v4 says the text was an IPv4 address. */
static bool parse_bytes(const char *s, size_t len, unsigned char out[16], bool *v4)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    unsigned char a4[4];
    if (inet_pton(AF_INET, tmp, a4) == 1) {
        memset(out, 0, 10);
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, tmp, out) == 1;
}

bool pt_ipaddr_parse(const char *s, size_t len, pt_ipaddr_t *out)
{
    unsigned char b[16];
    bool v4;
    if (!parse_bytes(s, len, b, &v4))
        return false;
    out->hi = load_be64(b);
    out->lo = load_be64(b + 8);
    return true;
}

/* The mask of a prefix of `bits` (0..64) in one 64-bit half. */
static uint64_t half_mask(int bits)
{
    if (bits <= 0)
        return 0;
    if (bits >= 64)
        return UINT64_MAX;
    return ~(UINT64_MAX >> bits);
}

const char *pt_ipnet_parse(const char *s, size_t len, pt_ipnet_t *out)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    unsigned char b[16];
    bool v4;
    if (!parse_bytes(s, alen, b, &v4))
        return "not an IPv4 or IPv6 address";
    int bits = v4 ? 32 : 128;
    if (slash != NULL) {
        const char *p = slash + 1, *end = s + len;
        if (p == end || end - p > 3)
            return "prefix length must be a number";
        int n = 0;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return "prefix length must be a number";
            n = n * 10 + (*p - '0');
        }
        if (n > bits)
            return v4 ? "IPv4 prefix length over 32" : "IPv6 prefix length over 128";
        bits = n;
    }
    if (v4)
        bits += 96;
    pt_ipaddr_t a = {load_be64(b), load_be64(b + 8)};
    out->mask.hi = half_mask(bits);
    out->mask.lo = half_mask(bits - 64);
    out->net.hi = a.hi & out->mask.hi;
    out->net.lo = a.lo & out->mask.lo;
    out->v6_only = bits < 96;
    if (out->net.hi != a.hi || out->net.lo != a.lo)
        return "address has bits set past the prefix length (write the network address)";
    return NULL;
}

/* ---- config ----------------------------------------------------------------------- */

static int parse_list(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *key, netlist_t *out)
{
    if (node == NULL)
        return 0;
    if (node->kind == PT_CONF_SCALAR) /* a single network is a list of one */
        ;
    else if (node->kind != PT_CONF_SEQ)
        return pt_conf_error(cx, node, "ip_access: %s must be a list of CIDR networks", key);
    size_t cnt = node->kind == PT_CONF_SEQ ? node->cnt : 1;
    out->v = pt_conf_alloc(cx, (cnt ? cnt : 1) * sizeof(*out->v));
    int rc = 0;
    for (size_t i = 0; i < cnt; i++) {
        const pt_conf_node_t *it = node->kind == PT_CONF_SEQ ? node->items[i] : node;
        if (it->kind != PT_CONF_SCALAR) {
            rc = pt_conf_error(cx, it, "ip_access: %s: expected a CIDR network like 10.0.0.0/8", key);
            continue;
        }
        const char *why = pt_ipnet_parse(it->str, it->len, &out->v[out->cnt]);
        if (why != NULL) {
            rc = pt_conf_error(cx, it, "ip_access: %s: '%s': %s", key, it->str, why);
            continue;
        }
        out->cnt++;
    }
    return rc;
}

static int ip_access_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    ip_access_conf_t *c = vconf;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "ip_access: expected a map with allow, deny, trusted_proxies");
    int rc = 0;
    for (size_t i = 0; i < node->cnt; i++) {
        const char *k = node->keys[i]->str;
        if (strcmp(k, "allow") != 0 && strcmp(k, "deny") != 0 && strcmp(k, "trusted_proxies") != 0)
            rc = pt_conf_error(cx, node->keys[i],
                               "ip_access: unknown key '%s' (allow, deny, trusted_proxies)", k);
    }
    if (parse_list(cx, pt_conf_map_get(node, "allow"), "allow", &c->allow) != 0)
        rc = PT_ERR_INVALID;
    if (parse_list(cx, pt_conf_map_get(node, "deny"), "deny", &c->deny) != 0)
        rc = PT_ERR_INVALID;
    if (parse_list(cx, pt_conf_map_get(node, "trusted_proxies"), "trusted_proxies", &c->trusted) != 0)
        rc = PT_ERR_INVALID;
    if (rc == 0 && c->allow.cnt == 0 && c->deny.cnt == 0)
        rc = pt_conf_error(cx, node, "ip_access: needs at least one network in allow or deny");
    return rc;
}

/* ---- request time ------------------------------------------------------------------- */

/* One X-Forwarded-For element: trims blanks, "[v6]:port" and "v4:port" forms. */
static pt_str_t xff_addr(const char *b, const char *e)
{
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (b < e && *b == '[') {
        const char *close = memchr(b, ']', (size_t)(e - b));
        if (close != NULL)
            return (pt_str_t){b + 1, (size_t)(close - b - 1)};
    }
    const char *colon = memchr(b, ':', (size_t)(e - b));
    if (colon != NULL && memchr(colon + 1, ':', (size_t)(e - colon - 1)) == NULL)
        e = colon; /* exactly one colon: IPv4 with a port */
    return (pt_str_t){b, (size_t)(e - b)};
}

typedef enum { CLIENT_OK, CLIENT_BAD } client_rc_t;

/*
 * The client's address: the peer, or -- when the peer is a trusted proxy --
 * the rightmost X-Forwarded-For entry that is not a trusted proxy (the
 * leftmost one when all are). CLIENT_BAD when that entry is not an address.
 */
static client_rc_t find_client(const ip_access_conf_t *c, pt_req_t *req, pt_ipaddr_t *out)
{
    pt_str_t peer = pt_req_client_addr(req);
    if (!pt_ipaddr_parse(peer.base, peer.len, out))
        return CLIENT_BAD;
    if (c->trusted.cnt == 0 || !pt_ipnet_match(c->trusted.v, c->trusted.cnt, *out))
        return CLIENT_OK;
    const pt_headers_t *h = pt_req_headers(req);
    for (size_t i = h->cnt; i-- > 0;) {
        if (!pt_str_eq(h->v[i].name, PT_STR("x-forwarded-for")))
            continue;
        const char *b = h->v[i].value.base, *e = b + h->v[i].value.len;
        while (e > b) {
            const char *p = e;
            while (p > b && p[-1] != ',')
                p--;
            pt_str_t s = xff_addr(p, e);
            e = p > b ? p - 1 : b;
            if (s.len == 0)
                continue; /* "a,,b" */
            pt_ipaddr_t a;
            if (!pt_ipaddr_parse(s.base, s.len, &a))
                return CLIENT_BAD;
            *out = a;
            if (!pt_ipnet_match(c->trusted.v, c->trusted.cnt, a))
                return CLIENT_OK;
        }
    }
    return CLIENT_OK;
}

static pt_fstatus_t ip_access_request(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const ip_access_conf_t *c = f->conf;
    pt_ipaddr_t a;
    const char *why = NULL;
    if (find_client(c, req, &a) != CLIENT_OK)
        why = "client address not recognised (X-Forwarded-For)";
    else if (pt_ipnet_match(c->deny.v, c->deny.cnt, a))
        why = "client address denied";
    else if (c->allow.cnt != 0 && !pt_ipnet_match(c->allow.v, c->allow.cnt, a))
        why = "client address not allowed";
    if (why == NULL)
        return PT_FILTER_CONTINUE;
    pt_req_reject(req, PT_ERR_FORBIDDEN, why);
    return PT_FILTER_RESPOND;
}

const pt_filter_def_t pt_filter_ip_access = {
    .abi = PT_FILTER_ABI,
    .name = "ip_access",
    .priority = 950, /* cheapest refusal first among global filters (after cors, 1000) */
    .conf_size = sizeof(ip_access_conf_t),
    .parse_conf = ip_access_parse,
    .on_request_headers = ip_access_request,
};
