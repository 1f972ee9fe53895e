/*
 * agg_merge.c -- select / omit / rename on a call's JSON result (agg_merge.h).
 */
#include "handlers/agg_merge.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/xalloc.h"

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '$' || c == '@';
}

int pt_agg_fpath_parse(const char *s, pt_agg_fpath_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(s);
    if (len == 0) {
        *why = "empty field path";
        return -1;
    }
    char **steps = pt_xcalloc(PT_AGG_FPATH_MAX, sizeof(char *));
    size_t cnt = 0, i = 0;
    while (i < len) {
        if (cnt == PT_AGG_FPATH_MAX) {
            *why = "field path too long (at most 32 steps)";
            goto fail;
        }
        if (s[i] == '[') {
            if (i + 1 >= len || s[i + 1] != ']') {
                *why = "only `[]` (each element) may follow a field name";
                goto fail;
            }
            steps[cnt++] = NULL;
            i += 2;
            if (i < len && s[i] != '.' && s[i] != '[') {
                *why = "expected `.` after `[]`";
                goto fail;
            }
            continue;
        }
        if (s[i] == '.') {
            if (i == 0 || i + 1 >= len) {
                *why = "a field path does not start or end with `.`";
                goto fail;
            }
            i++;
        }
        size_t j = i;
        while (j < len && name_char(s[j]))
            j++;
        if (j == i) {
            *why = "expected a field name (letters, digits, `_`, `-`)";
            goto fail;
        }
        char *n = pt_xcheck(malloc(j - i + 1));
        memcpy(n, s + i, j - i);
        n[j - i] = '\0';
        steps[cnt++] = n;
        i = j;
    }
    out->steps = steps;
    out->cnt = cnt;
    out->text = pt_xcheck(strdup(s));
    return 0;
fail:
    for (size_t k = 0; k < cnt; k++)
        free(steps[k]);
    free(steps);
    return -1;
}

void pt_agg_fpath_dispose(pt_agg_fpath_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->cnt; i++)
        free(p->steps[i]);
    free(p->steps);
    free(p->text);
    memset(p, 0, sizeof(*p));
}

/* The value at steps[0..n) of src as a new reference; `[]` collects. */
static struct json_object *collect(struct json_object *src, char *const *steps, size_t n,
                                   bool *found)
{
    if (n == 0) {
        *found = true;
        return json_object_get(src);
    }
    if (steps[0] != NULL) {
        struct json_object *v = NULL;
        if (!json_object_is_type(src, json_type_object) ||
            !json_object_object_get_ex(src, steps[0], &v)) {
            *found = false;
            return NULL;
        }
        return collect(v, steps + 1, n - 1, found);
    }
    if (!json_object_is_type(src, json_type_array)) {
        *found = false;
        return NULL;
    }
    size_t len = json_object_array_length(src);
    struct json_object *arr = json_object_new_array_ext((int)len);
    for (size_t i = 0; i < len; i++) {
        bool f = false;
        struct json_object *v = collect(json_object_array_get_idx(src, i), steps + 1, n - 1, &f);
        if (f)
            json_object_array_add(arr, v);
    }
    *found = true;
    return arr;
}

/* dst[steps...] = v along the field names before the first `[]` (objects made as needed). */
static void place(struct json_object *dst, const pt_agg_fpath_t *p, struct json_object *v)
{
    size_t last = 0;
    while (last < p->cnt && p->steps[last] != NULL)
        last++;
    /* the value goes under the last name before `[]` (or the last name) */
    size_t key = last == p->cnt ? p->cnt - 1 : last - 1;
    struct json_object *cur = dst;
    for (size_t i = 0; i < key; i++) {
        struct json_object *next = NULL;
        if (!json_object_object_get_ex(cur, p->steps[i], &next) ||
            !json_object_is_type(next, json_type_object)) {
            next = json_object_new_object();
            json_object_object_add(cur, p->steps[i], next);
        }
        cur = next;
    }
    json_object_object_add(cur, p->steps[key], v);
}

static void omit_at(struct json_object *cur, char *const *steps, size_t n)
{
    if (n == 0 || cur == NULL)
        return;
    if (steps[0] == NULL) {
        if (!json_object_is_type(cur, json_type_array))
            return;
        for (size_t i = 0; i < json_object_array_length(cur); i++)
            omit_at(json_object_array_get_idx(cur, i), steps + 1, n - 1);
        return;
    }
    if (!json_object_is_type(cur, json_type_object))
        return;
    if (n == 1) {
        json_object_object_del(cur, steps[0]);
        return;
    }
    struct json_object *next = NULL;
    if (json_object_object_get_ex(cur, steps[0], &next))
        omit_at(next, steps + 1, n - 1);
}

bool pt_agg_shape_empty(const pt_agg_shape_t *s)
{
    return s->select_cnt == 0 && s->omit_cnt == 0 && s->rename_cnt == 0;
}

struct json_object *pt_agg_shape_apply(const pt_agg_shape_t *s, struct json_object *result)
{
    struct json_object *out;
    if (s->select_cnt != 0) {
        out = NULL;
        for (size_t i = 0; i < s->select_cnt; i++) {
            const pt_agg_fpath_t *p = &s->select[i];
            bool found = false;
            struct json_object *v = collect(result, p->steps, p->cnt, &found);
            if (!found)
                continue;
            if (p->steps[0] == NULL) { /* `[].x`: the result is the collected array */
                json_object_put(out);
                out = v;
                continue;
            }
            if (out == NULL || !json_object_is_type(out, json_type_object)) {
                json_object_put(out);
                out = json_object_new_object();
            }
            /* a copy, so omit/rename below never touch the call's own result */
            struct json_object *copy = NULL;
            if (v != NULL && json_object_deep_copy(v, &copy, NULL) != 0)
                copy = NULL;
            json_object_put(v);
            place(out, p, copy);
        }
        if (out == NULL)
            out = json_object_new_object();
    } else {
        out = json_object_get(result);
    }
    for (size_t i = 0; i < s->omit_cnt; i++)
        omit_at(out, s->omit[i].steps, s->omit[i].cnt);
    if (s->rename_cnt != 0 && json_object_is_type(out, json_type_object)) {
        for (size_t i = 0; i < s->rename_cnt; i++) {
            const pt_agg_fpath_t *p = &s->rename_from[i];
            bool found = false;
            struct json_object *v = collect(out, p->steps, p->cnt, &found);
            if (!found)
                continue;
            omit_at(out, p->steps, p->cnt);
            json_object_object_add(out, s->rename_to[i], v);
        }
    }
    return out;
}

void pt_agg_shape_dispose(pt_agg_shape_t *s)
{
    for (size_t i = 0; i < s->select_cnt; i++)
        pt_agg_fpath_dispose(&s->select[i]);
    for (size_t i = 0; i < s->omit_cnt; i++)
        pt_agg_fpath_dispose(&s->omit[i]);
    for (size_t i = 0; i < s->rename_cnt; i++) {
        pt_agg_fpath_dispose(&s->rename_from[i]);
        free(s->rename_to[i]);
    }
    free(s->select);
    free(s->omit);
    free(s->rename_from);
    free(s->rename_to);
    memset(s, 0, sizeof(*s));
}
