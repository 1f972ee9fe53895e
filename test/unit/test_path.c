/*
 * test_path.c -- request path normalisation (AU-12 path confusion cases).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "path.h"
#include "portico/status.h"

static pt_arena_t *arena;

static const char *norm(const char *in)
{
    pt_str_t out;
    const char *why = NULL;
    if (pt_path_normalize(arena, pt_str_c(in), false, &out, &why) != 0) {
        assert_non_null(why);
        return NULL;
    }
    return pt_arena_cstr(arena, out);
}

static void test_plain_paths_unchanged(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    assert_string_equal(norm("/"), "/");
    assert_string_equal(norm("/api/v1/books"), "/api/v1/books");
    assert_string_equal(norm("/a;x=1/b:c@d"), "/a;x=1/b:c@d");
    assert_string_equal(norm("/admin/"), "/admin/");
    pt_arena_destroy(arena);
}

static void test_dot_segments(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    assert_string_equal(norm("/a/./b/../c"), "/a/c");
    assert_string_equal(norm("/admin/."), "/admin/");
    assert_string_equal(norm("/a/b/.."), "/a/");
    assert_string_equal(norm("/a/.."), "/");
    assert_string_equal(norm("/public/../admin"), "/admin");
    assert_string_equal(norm("/public/%2e%2e/admin"), "/admin");
    assert_string_equal(norm("/.hidden/..x"), "/.hidden/..x");
    assert_null(norm("/.."));
    assert_null(norm("/a/../.."));
    pt_arena_destroy(arena);
}

static void test_percent(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    assert_string_equal(norm("/%61dmin"), "/admin");
    assert_string_equal(norm("/a%7e%2D"), "/a~-");
    assert_string_equal(norm("/q%3fx%20y"), "/q%3Fx%20y");
    assert_null(norm("/admin%2f"));
    assert_null(norm("/admin%2F..%2Fx"));
    assert_null(norm("/a%5cb"));
    assert_null(norm("/a%00"));
    assert_null(norm("/a%zz"));
    assert_null(norm("/a%4"));
    assert_null(norm("/public/..%2fadmin"));
    pt_arena_destroy(arena);
}

static void test_bad_bytes(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    assert_null(norm(""));
    assert_null(norm("admin"));
    assert_null(norm("/a b"));
    assert_null(norm("/a\\b"));
    assert_null(norm("/a#b"));
    assert_null(norm("/a\x01"));
    assert_null(norm("/\xc3\xa9"));
    pt_str_t out;
    const char *why;
    assert_int_equal(pt_path_normalize(arena, PT_STR("/a%2Fb"), true, &out, &why), 0);
    assert_int_equal(out.len, 6);
    assert_memory_equal(out.base, "/a%2Fb", 6);
    pt_arena_destroy(arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths_unchanged),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_bad_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
