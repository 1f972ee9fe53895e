/*
 * test_trace.c -- the W3C traceparent parser (gateway/observe/trace.c):
 * valid values of version 00 and later versions, and every malformed form the
 * spec says starts a new trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "observe/trace.h"
#include "portico/status.h"

static int parse(const char *v, uint8_t t[16], uint8_t p[8], bool *sampled)
{
    return pt_traceparent_parse(pt_str_c(v), t, p, sampled);
}

static void test_valid(void **state)
{
    (void)state;
    uint8_t t[16], p[8];
    bool sampled = false;
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &sampled), 0);
    assert_true(sampled);
    assert_int_equal(t[0], 0x4b);
    assert_int_equal(t[15], 0x36);
    assert_int_equal(p[0], 0x00);
    assert_int_equal(p[7], 0xb7);
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", t, p, &sampled), 0);
    assert_false(sampled);
    /* other flag bits are ignored; only bit 0 is "sampled" */
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", t, p, &sampled), 0);
    assert_true(sampled);
    /* surrounding whitespace (OWS) */
    assert_int_equal(parse(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", t, p, &sampled), 0);
    /* a later version: exactly 55, or more after a '-' */
    assert_int_equal(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &sampled), 0);
    assert_int_equal(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever", t, p, &sampled), 0);
}

static void test_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",      /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",    /* 00 longer */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",   /* 00 with more */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",    /* later version, no '-' */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* version ff */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* version not hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     /* uppercase */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     /* zero parent id */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",     /* flags not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",     /* shifted field */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t t[16], p[8];
        bool sampled;
        if (parse(bad[i], t, p, &sampled) != PT_ERR_INVALID)
            fail_msg("accepted: '%s'", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
