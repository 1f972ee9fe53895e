/*
 * tmpdir.h -- temporary directories of C unit tests, removed when the test
 * program exits: also after a failed assertion (cmocka goes on with the next
 * test, so the test's own cleanup at its end never ran). Header-only; a test
 * program may call pt_test_mkdtemp() up to PT_TEST_TMPDIRS times.
 */
#ifndef PT_TEST_TMPDIR_H
#define PT_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PT_TEST_TMPDIRS 16

static char pt_test_tmpdirs_[PT_TEST_TMPDIRS][128];
static int pt_test_tmpdir_cnt_;

static int pt_test_rm_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void pt_test_tmpdirs_remove_(void)
{
    for (int i = 0; i < pt_test_tmpdir_cnt_; i++)
        nftw(pt_test_tmpdirs_[i], pt_test_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/** mkdtemp(tmpl), and the directory (with whatever is in it) is removed at exit. */
static inline char *pt_test_mkdtemp(char *tmpl)
{
    char *d = mkdtemp(tmpl);
    if (d == NULL || strlen(d) >= sizeof(pt_test_tmpdirs_[0]) ||
        pt_test_tmpdir_cnt_ == PT_TEST_TMPDIRS)
        return d; /* not tracked: the test's own cleanup still runs */
    if (pt_test_tmpdir_cnt_ == 0)
        atexit(pt_test_tmpdirs_remove_);
    strcpy(pt_test_tmpdirs_[pt_test_tmpdir_cnt_++], d);
    return d;
}

#endif /* PT_TEST_TMPDIR_H */
