/*
 * test_path.c -- request path normalisation (AU-12 path confusion cases).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "core/path.h"
#include "portico/status.h"

static pt_arena_t *arena;

static const char *norm(const char *in)
{
    pt_str_t out;
    const char *why = NULL;
    if (pt_path_normalize(arena, pt_str_c(in), 0, &out, &why) != 0) {
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

/* Issue 14: "//admin/x" passed a "/admin/" deny rule that nginx enforces. */
static void test_empty_segments_merged(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    assert_string_equal(norm("//admin/x"), "/admin/x");
    assert_string_equal(norm("///admin"), "/admin");
    assert_string_equal(norm("/admin//x///y"), "/admin/x/y");
    assert_string_equal(norm("/admin//"), "/admin/");
    assert_string_equal(norm("//"), "/");
    assert_string_equal(norm("/a/.//b"), "/a/b");
    assert_string_equal(norm("/a/..//admin"), "/admin");
    assert_null(norm("//%2F")); /* still refused */
    /* limits.merge_slashes: false keeps them (raw paths for back ends that need them) */
    pt_str_t out;
    const char *why;
    assert_int_equal(pt_path_normalize(arena, PT_STR("//admin//x"), PT_PATH_KEEP_EMPTY_SEGMENTS,
                                       &out, &why), 0);
    assert_string_equal(pt_arena_cstr(arena, out), "//admin//x");
    assert_int_equal(pt_path_normalize(arena, PT_STR("/a//./b"), PT_PATH_KEEP_EMPTY_SEGMENTS,
                                       &out, &why), 0);
    assert_string_equal(pt_arena_cstr(arena, out), "/a//b");
    pt_arena_destroy(arena);
}

/* Issue 14: "/public/..;/admin/x" reached the upstream as "/..;/admin/x",
 * which Tomcat reads as "/admin/x". */
static void test_dot_segments_with_params_refused(void **state)
{
    (void)state;
    arena = pt_arena_new(0, 0);
    static const char *const bad[] = {
        "/public/..;/admin/x", "/..;/admin", "/%2e%2e;/admin", "/%2E%2e;x=1/admin",
        "/public/.%2e;/admin", "/public/..;jsessionid=1/admin", "/.;/admin", "/a/.;x/admin",
        "/public/..%3b/admin", "/public/..%3B/admin", "/public/%2e;/x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_str_t out;
        const char *why = NULL;
        print_message("%s\n", bad[i]);
        assert_int_equal(pt_path_normalize(arena, pt_str_c(bad[i]), 0, &out, &why), PT_ERR_INVALID);
        assert_string_equal(why, "dot segment with parameters (like '..;') in path");
        assert_int_equal(pt_path_normalize(arena, pt_str_c(bad[i]), PT_PATH_KEEP_EMPTY_SEGMENTS,
                                           &out, &why), PT_ERR_INVALID);
    }
    /* parameters elsewhere, and dots that are not a whole segment, are fine */
    assert_string_equal(norm("/a;x=1/b"), "/a;x=1/b");
    assert_string_equal(norm("/a/...;x"), "/a/...;x");
    assert_string_equal(norm("/a/.x;y"), "/a/.x;y");
    assert_string_equal(norm("/a/x.;y"), "/a/x.;y");
    assert_string_equal(norm("/a/..x;/b"), "/a/..x;/b");
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
    assert_int_equal(pt_path_normalize(arena, PT_STR("/a%2Fb"), PT_PATH_ALLOW_ENCODED_SLASH, &out, &why), 0);
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
        cmocka_unit_test(test_empty_segments_merged),
        cmocka_unit_test(test_dot_segments_with_params_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
