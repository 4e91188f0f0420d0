/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Real Sidekiq reads dray's Sidekiq 7/8 fields: ProcessSet shows dray's
 * version (the Web UI's Busy page), RetrySet/DeadSet decode dray's
 * error_backtrace to the handler's lines or the captured stack.
 *   test_interop_compat      Debian's Sidekiq 6.4.1
 *   test_interop_compat 7    Sidekiq 7.3.9 from $DRAY_SIDEKIQ7_ENV
 *                            (sidekiq7.env); Skipped when it is unset */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "dray/dray.h"
#include "harness.h"
#include "test_skip.h"

static int want7; /* run against Sidekiq 7.3.9 */
static char rubylib[4096];

static int
sets_filled(void *arg)
{
    (void)arg;
    return test_int("ZCARD retry") == 1 && test_int("ZCARD dead") == 1 &&
           test_int("SCARD processes") == 1;
}

/* Run compat_probe.rb against test_srv; its DRAY-RESULT as JSON (new reference). */
static json_t *
probe(void)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (want7)
            setenv("RUBYLIB", rubylib, 1);
        else
            unsetenv("RUBYLIB");
        alarm(60);
        execlp(DRAY_RUBY, DRAY_RUBY, DRAY_INTEROP_DIR "/compat_probe.rb", test_srv.url,
               (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 20, len = 0;
    char *buf = calloc(1, cap);
    ssize_t k;
    while ((k = read(fd[0], buf + len, cap - 1 - len)) > 0)
        len += (size_t)k;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *line = strstr(buf, "DRAY-RESULT ");
    assert_non_null(line);
    json_t *o = json_loads(line + 12, JSON_DISABLE_EOF_CHECK, NULL);
    free(buf);
    assert_non_null(o);
    return o;
}

static void
test_sidekiq_reads_dray(void **state)
{
    (void)state;
    if (want7 && !rubylib[0]) {
        printf("DRAY_SIDEKIQ7_ENV is unset: Sidekiq 7.3.9 not available\n");
        TEST_SKIP();
    }
    dray_options o;
    test_options(&o, "critical,3 default,1", 2);
    o.log_level = DRAY_LOG_OFF;
    test_running r = {0};
    dray_class_opts kill = {0};
    kill.backoff = test_backoff_kill;
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Lines", test_h_fail_lines, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r.s, "Stack", test_h_fail, NULL, &kill), 0);
    test_server_go(&r);

    dray_client *c;
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    json_t *args = json_array();
    dray_push_opts po = {0};
    po.extra = json_pack("{s:i}", "backtrace", 2);
    assert_int_equal(dray_client_push(c, "Lines", args, &po, NULL), 0);
    json_decref(po.extra);
    po.extra = json_pack("{s:b}", "backtrace", 1);
    assert_int_equal(dray_client_push(c, "Stack", args, &po, NULL), 0);
    json_decref(po.extra);
    json_decref(args);
    dray_client_free(c);
    int filled = test_wait_until(sets_filled, NULL, 15);

    json_t *res = filled ? probe() : NULL;
    test_server_stop(&r);
    char identity[256];
    snprintf(identity, sizeof identity, "%s", dray_server_identity(r.s));
    dray_server_free(r.s);
    assert_true(filled);
    assert_int_equal(r.rc, 0);

    const char *ver = json_string_value(json_object_get(res, "sidekiq"));
    printf("Sidekiq %s\n", ver);
    assert_non_null(ver);
    assert_int_equal(ver[0], want7 ? '7' : '6');
    json_t *procs = json_object_get(res, "processes");
    assert_int_equal(json_array_size(procs), 1);
    json_t *p = json_array_get(procs, 0);
    assert_string_equal(json_string_value(json_object_get(p, "identity")), identity);
    const char *pv = json_string_value(json_object_get(p, "version"));
    printf("ProcessSet version: %s\n", pv ? pv : "(none: the Busy page says Unknown)");
    assert_non_null(pv);
    assert_string_equal(pv, "dray " DRAY_VERSION_STRING);
    if (want7) /* Sidekiq::Process#version, which the Busy page prints */
        assert_string_equal(json_string_value(json_object_get(p, "version_method")),
                            "dray " DRAY_VERSION_STRING);
    assert_true(json_is_false(json_object_get(p, "embedded")));
    assert_int_equal(json_integer_value(json_object_get(p, "concurrency")), 2);

    json_t *rt = json_array_get(json_object_get(res, "retries"), 0);
    json_t *want = json_pack("[s,s]", "parse.c:12:in `parse_row'", "import.c:40:in `import'");
    char *got = json_dumps(json_object_get(rt, "error_backtrace"), JSON_COMPACT);
    printf("RetrySet error_backtrace: %s\n", got);
    free(got);
    assert_true(json_equal(json_object_get(rt, "error_backtrace"), want));
    json_decref(want);

    json_t *dd = json_array_get(json_object_get(res, "dead"), 0);
    json_t *bt = json_object_get(dd, "error_backtrace");
    printf("DeadSet error_backtrace: %zu lines, first %s\n", json_array_size(bt),
           json_string_value(json_array_get(bt, 0)));
    assert_true(json_array_size(bt) >= 1);
    assert_non_null(strstr(json_string_value(json_array_get(bt, 0)), "test_interop_compat"));
    json_decref(res);
}

/* RUBYLIB as sidekiq7.env sets it, or "" when $DRAY_SIDEKIQ7_ENV is unset. */
static void
load_sidekiq7_env(void)
{
    const char *env = getenv("DRAY_SIDEKIQ7_ENV");
    if (!env || !*env || access(env, R_OK))
        return;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash -c '. \"$0\" && printf %%s \"$RUBYLIB\"' '%s'", env);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    size_t n = fread(rubylib, 1, sizeof rubylib - 1, f);
    rubylib[n] = '\0';
    pclose(f);
}

int
main(int argc, char **argv)
{
    want7 = argc > 1 && !strcmp(argv[1], "7");
    if (want7)
        load_sidekiq7_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sidekiq_reads_dray, test_setup, test_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, NULL, NULL));
}
