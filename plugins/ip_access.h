/*
 * ip_access.h -- the address matcher of the `ip_access` filter (ip_access.c),
 * exposed for its unit tests.
 *
 * Every address is kept as 16 bytes: IPv4 as the IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) with the prefix length + 96, so one rule list serves both
 * families and a v4-mapped client address ("::ffff:10.0.0.1", what a dual-stack
 * listener reports for an IPv4 peer) matches an IPv4 rule. An IPv6 rule shorter
 * than /96 ("::/0", "2001:db8::/32") never matches an IPv4 client: it names IPv6
 * space, and only a rule written inside ::ffff:0:0/96 (an IPv4 rule) speaks of
 * IPv4 clients. Each rule keeps its
 * network already masked and its mask precomputed, so a match is two 64-bit
 * AND-and-compare per rule.
 */
#ifndef PT_PLUGINS_IP_ACCESS_H
#define PT_PLUGINS_IP_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pt_ipaddr {
    uint64_t hi, lo; /* host order, most significant first */
} pt_ipaddr_t;

typedef struct pt_ipnet {
    pt_ipaddr_t net, mask; /* net is already masked */
    bool v6_only;          /* prefix shorter than /96: never matches an IPv4 (mapped) client */
} pt_ipnet_t;

/** Parses "10.0.0.1", "::1", "::ffff:10.0.0.1" (len bytes, no brackets). Returns true on success. */
bool pt_ipaddr_parse(const char *s, size_t len, pt_ipaddr_t *out);

/**
 * Parses a CIDR "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or
 * /128). Host bits set below the prefix ("10.0.0.1/8") are refused, so a typo
 * cannot widen a rule silently. Returns NULL or a static error message.
 */
const char *pt_ipnet_parse(const char *s, size_t len, pt_ipnet_t *out);

/** True when `a` is inside one of the `cnt` networks. */
static inline bool pt_ipnet_match(const pt_ipnet_t *nets, size_t cnt, pt_ipaddr_t a)
{
    bool v4 = a.hi == 0 && (a.lo >> 32) == 0xffffu; /* ::ffff:a.b.c.d */
    for (size_t i = 0; i < cnt; i++)
        if ((a.hi & nets[i].mask.hi) == nets[i].net.hi && (a.lo & nets[i].mask.lo) == nets[i].net.lo &&
            !(v4 && nets[i].v6_only))
            return true;
    return false;
}

#endif /* PT_PLUGINS_IP_ACCESS_H */
