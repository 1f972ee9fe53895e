/*
 * test_ip_access.c -- the address matcher of the ip_access filter
 * (plugins/ip_access.h): IPv4, IPv6, v4-mapped IPv6, prefix edges, and the
 * CIDR parser's refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "plugins/ip_access.h"

static pt_ipnet_t nets[16];
static size_t cnt;

static void rules(const char *const *list)
{
    cnt = 0;
    for (; *list != NULL; list++) {
        const char *why = pt_ipnet_parse(*list, strlen(*list), &nets[cnt]);
        if (why != NULL)
            fail_msg("%s: %s", *list, why);
        cnt++;
    }
}

static bool in(const char *addr)
{
    pt_ipaddr_t a;
    if (!pt_ipaddr_parse(addr, strlen(addr), &a))
        fail_msg("not an address: %s", addr);
    return pt_ipnet_match(nets, cnt, a);
}

static void test_ipv4(void **state)
{
    (void)state;
    rules((const char *const[]){"10.0.0.0/8", "192.168.1.0/24", "203.0.113.7", NULL});
    assert_true(in("10.0.0.0"));
    assert_true(in("10.255.255.255"));
    assert_false(in("11.0.0.0"));
    assert_false(in("9.255.255.255"));
    assert_true(in("192.168.1.200"));
    assert_false(in("192.168.2.1"));
    assert_true(in("203.0.113.7"));
    assert_false(in("203.0.113.8"));
    /* a dual-stack listener reports an IPv4 peer v4-mapped */
    assert_true(in("::ffff:10.1.2.3"));
    assert_false(in("::ffff:11.1.2.3"));
    /* ... but an IPv6 address with the same low bits is not it */
    assert_false(in("::10.1.2.3"));
    assert_false(in("2001:db8::a01:203"));
}

static void test_ipv6(void **state)
{
    (void)state;
    rules((const char *const[]){"2001:db8::/32", "::1", "fe80::/10", "2001:db8:ffff:ffff::/127", NULL});
    assert_true(in("2001:db8::1"));
    assert_true(in("2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(in("2001:db9::1"));
    assert_true(in("::1"));
    assert_false(in("::2"));
    assert_true(in("fe80::1"));
    assert_true(in("febf:ffff::1"));
    assert_false(in("fec0::1"));
    assert_false(in("127.0.0.1"));
    assert_false(in("::ffff:127.0.0.1"));
}

static void test_prefix_edges(void **state)
{
    (void)state;
    /* /0, a /64 boundary, a /65 (the second half's first bit), a /128 */
    rules((const char *const[]){"0.0.0.0/0", NULL});
    assert_true(in("1.2.3.4"));
    assert_true(in("::ffff:1.2.3.4"));
    assert_false(in("2001:db8::1")); /* an IPv4 rule never matches IPv6 */
    rules((const char *const[]){"::/0", NULL});
    assert_true(in("2001:db8::1"));
    assert_false(in("1.2.3.4")); /* an IPv6 rule wider than /96 names IPv6 space only */
    rules((const char *const[]){"2001:db8:1:2::/64", NULL});
    assert_true(in("2001:db8:1:2:ffff:ffff:ffff:ffff"));
    assert_false(in("2001:db8:1:3::"));
    rules((const char *const[]){"2001:db8:1:2:8000::/65", NULL});
    assert_true(in("2001:db8:1:2:8000::1"));
    assert_false(in("2001:db8:1:2:7fff::1"));
    rules((const char *const[]){"::ffff:10.0.0.0/104", NULL}); /* v4 space written as v6 */
    assert_true(in("10.9.9.9"));
    rules((const char *const[]){"2001:db8::5/128", NULL});
    assert_true(in("2001:db8::5"));
    assert_false(in("2001:db8::4"));
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1",
                                      "10.0.0.0/1x", "10.0.0.0/0008", "2001:db8::/129",
                                      "2001:db8::1/32", "300.0.0.0/8", "example.com", "",
                                      "[::1]", "::1%eth0", NULL};
    for (const char *const *b = bad; *b != NULL; b++) {
        pt_ipnet_t n;
        assert_non_null(pt_ipnet_parse(*b, strlen(*b), &n));
    }
    pt_ipaddr_t a;
    assert_false(pt_ipaddr_parse("1.2.3", 5, &a));
    assert_false(pt_ipaddr_parse("::g", 3, &a));
    char longs[80];
    memset(longs, '1', sizeof(longs));
    assert_false(pt_ipaddr_parse(longs, sizeof(longs), &a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_prefix_edges),
        cmocka_unit_test(test_parse_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
