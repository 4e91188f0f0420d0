/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* One rule for a library named without '/' (docs/cli.md): a file in the
 * current directory, for --module (dray_server_load_module, the loader
 * behind `module`, $DRAY_MODULES and `dray license check`) and --require
 * (dray_server_require) alike; the dynamic linker's search path is not
 * used. The binary re-executes itself with LD_LIBRARY_PATH set, because the
 * loader reads it only at process start. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "harness.h"

static char search_dir[256]; /* on LD_LIBRARY_PATH */
static char cwd_dir[256];    /* the current directory */

static int
copy_file(const char *from, const char *dir, const char *name)
{
    char to[512];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    int rc = in < 0 || out < 0 ? -1 : 0;
    char buf[65536];
    ssize_t n;
    while (!rc && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static dray_server *
new_server(void)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.log_level = DRAY_LOG_ERROR;
    dray_server *s;
    char err[256];
    if (dray_server_new(&o, &s, err, sizeof err))
        fail_msg("server_new: %s", err);
    return s;
}

/* A bare name that exists only on the search path: both flags refuse it,
 * and both messages name the file they looked for. */
static void
test_bare_name_on_search_path_refused(void **state)
{
    (void)state;
    dray_server *s = new_server();
    char err[512] = "";
    int mrc = dray_server_load_module(s, "libpathmod.so", err, sizeof err);
    int rrc = dray_server_require(s, "libpathjobs.so");
    print_message("--module libpathmod.so: %d %s\n", mrc, err);
    print_message("--require libpathjobs.so: %d %s\n", rrc, dray_server_errstr(s));
    assert_int_equal(mrc, DRAY_EMODULE);
    assert_int_equal(rrc, DRAY_EMODULE);
    assert_non_null(strstr(err, "libpathmod.so"));
    assert_non_null(strstr(dray_server_errstr(s), "libpathjobs.so"));
    dray_server_free(s);
}

/* A bare name of a file in the current directory: both flags load it. */
static void
test_bare_name_in_cwd_loads(void **state)
{
    (void)state;
    dray_server *s = new_server();
    char err[512] = "";
    int mrc = dray_server_load_module(s, "cwdmod.so", err, sizeof err);
    if (mrc)
        print_message("--module cwdmod.so: %s\n", err);
    int rrc = dray_server_require(s, "cwdjobs.so");
    if (rrc)
        print_message("--require cwdjobs.so: %s\n", dray_server_errstr(s));
    assert_int_equal(mrc, 0);
    assert_int_equal(rrc, 0);
    dray_server_free(s);
}

/* A path with '/' is used as given (here: relative to the search dir). */
static void
test_path_with_slash_as_given(void **state)
{
    (void)state;
    dray_server *s = new_server();
    char p[512];
    snprintf(p, sizeof p, "%s/libpathjobs.so", search_dir);
    assert_int_equal(dray_server_require(s, p), 0);
    assert_int_equal(dray_server_require(s, "./cwdjobs.so"), 0);
    dray_server_free(s);
}

int
main(int argc, char **argv)
{
    (void)argc;
    const char *dir = getenv("PATH_TEST_SEARCH_DIR");
    if (!dir) {
        /* First run: lay out the files, then again with the search path. */
        snprintf(search_dir, sizeof search_dir, "/tmp/dray-path-XXXXXX");
        if (!mkdtemp(search_dir) || copy_file(MOD_PATH, search_dir, "libpathmod.so") ||
            copy_file(JOBS_PATH, search_dir, "libpathjobs.so")) {
            fprintf(stderr, "cannot prepare %s: %s\n", search_dir, strerror(errno));
            return 1;
        }
        setenv("LD_LIBRARY_PATH", search_dir, 1);
        setenv("PATH_TEST_SEARCH_DIR", search_dir, 1);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "cannot re-execute: %s\n", strerror(errno));
        return 1;
    }
    snprintf(search_dir, sizeof search_dir, "%s", dir);
    snprintf(cwd_dir, sizeof cwd_dir, "/tmp/dray-cwd-XXXXXX");
    if (!mkdtemp(cwd_dir) || copy_file(MOD_PATH, cwd_dir, "cwdmod.so") ||
        copy_file(JOBS_PATH, cwd_dir, "cwdjobs.so") || chdir(cwd_dir)) {
        fprintf(stderr, "cannot prepare %s: %s\n", cwd_dir, strerror(errno));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_name_on_search_path_refused),
        cmocka_unit_test(test_bare_name_in_cwd_loads),
        cmocka_unit_test(test_path_with_slash_as_given),
    };
    int rc = cmocka_run_group_tests(tests, test_start, test_teardown);
    const char *names[][2] = {{search_dir, "libpathmod.so"},
                              {search_dir, "libpathjobs.so"},
                              {cwd_dir, "cwdmod.so"},
                              {cwd_dir, "cwdjobs.so"}};
    for (size_t i = 0; i < 4; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", names[i][0], names[i][1]);
        unlink(p);
    }
    if (chdir("/") == 0) {
        rmdir(cwd_dir);
        rmdir(search_dir);
    }
    return rc;
}
