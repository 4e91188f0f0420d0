/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq 7.3.9's Web UI in a real browser against dray (issue 11): the Web
 * UI (shared/peers) served by Debian's Rack + WEBrick, opened in Debian's
 * headless Chromium over the DevTools protocol (webui_driver.py), while a
 * dray server runs. Dashboard, Busy, Queues, Retries, Dead and Metrics show
 * dray's data (asserted on the rendered DOM); the Retry, Delete, Kill, Quiet
 * and Stop buttons act on dray (checked in Redis and in what dray does next).
 * Screenshots are kept in <build>/tests/webui-shots/. Skipped without
 * $DRAY_SIDEKIQ7_ENV, chromium, python3-websocket or ruby-rack/webrick. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "interop_support.h"

#ifndef DRAY_PYTHON3
#define DRAY_PYTHON3 "/usr/bin/python3"
#endif
#ifndef DRAY_SHOTS_DIR
#define DRAY_SHOTS_DIR "webui-shots"
#endif
#define WEB_SERVER DRAY_INTEROP_DIR "/webui_server.rb"
#define DRIVER DRAY_INTEROP_DIR "/webui_driver.py"
#define DRIVER_TIMEOUT_S 90.0

extern char **environ;

static pid_t web_pid = -1;
static char base[128]; /* http://127.0.0.1:PORT */
static char tmpdir[64];

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    it_rec_add(job);
    return dray_result_fail(res, "WebUi::Boom", "failed on purpose for the Web UI");
}

/* Run argv with stdout to out_path (stderr to err_path), bounded; returns the
 * wait status or -1 on timeout (killed). */
static int
run_bounded(char *const argv[], const char *out_path, const char *err_path, double timeout_s)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        fail_msg("cannot run %s: %s", argv[0], strerror(e));
    double end = test_now() + timeout_s;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (test_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        struct timespec ts = {0, 20000000}; /* poll interval for the child's exit */
        nanosleep(&ts, NULL);
    }
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    size_t got = fread(p, 1, (size_t)n, f);
    p[got] = '\0';
    fclose(f);
    return p;
}

/* Run the browser through steps (a JSON array, reference stolen); returns
 * the result's "steps" (new reference). Skips on exit 77. */
static json_t *
browse(json_t *steps)
{
    char *sj = json_dumps(steps, JSON_COMPACT);
    json_decref(steps);
    char out[128], err[128];
    snprintf(out, sizeof out, "%s/driver.out", tmpdir);
    snprintf(err, sizeof err, "%s/driver.err", tmpdir);
    char *argv[] = {DRAY_PYTHON3, DRIVER, DRAY_SHOTS_DIR, sj, NULL};
    int st = run_bounded(argv, out, err, DRIVER_TIMEOUT_S);
    free(sj);
    char *o = slurp(out), *e = slurp(err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SK_SKIP) {
        print_message("SKIP: %s", e);
        free(o);
        free(e);
        TEST_SKIP();
    }
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("browser driver failed (status %d): %s", st, e);
    const char *line = strstr(o, "WEBUI-RESULT ");
    if (!line)
        fail_msg("browser driver printed no result: %s / %s", o, e);
    json_error_t je;
    json_t *r = json_loads(line + 13, JSON_DISABLE_EOF_CHECK, &je);
    if (!r)
        fail_msg("browser driver result is not json: %s", je.text);
    json_t *s = json_incref(jget(r, "steps"));
    json_decref(r);
    free(o);
    free(e);
    return s;
}

static const char *
step_text(json_t *steps, size_t i)
{
    return jstr(json_array_get(steps, i), "text");
}

static void
assert_has(const char *what, const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("%s: rendered page lacks \"%s\"; it shows:\n%.3000s", what, needle, text);
}

static int
setup(void **state)
{
    (void)state;
    sk_require_sidekiq();
    if (access(DRAY_PYTHON3, X_OK)) {
        printf("SKIP: %s is missing (apt-get install python3 python3-websocket)\n", DRAY_PYTHON3);
        exit(TEST_SKIP_CODE);
    }
    mkdir(DRAY_SHOTS_DIR, 0755);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dray-webui-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    if (test_redis_start(&it_srv))
        return -1;
    it_rc = test_redis_connect(&it_srv);

    /* the Web UI, with sidekiq7.env's RUBYLIB */
    char port_file[128], url_arg[400], log[128];
    snprintf(port_file, sizeof port_file, "%s/port", tmpdir);
    snprintf(log, sizeof log, "%s/web.log", tmpdir);
    snprintf(url_arg, sizeof url_arg, "%s", it_srv.url);
    char *argv[] = {"/bin/bash", "-c",       ". \"$DRAY_SIDEKIQ7_ENV\" && exec ruby \"$@\"",
                    "web",       WEB_SERVER, url_arg,
                    port_file,   NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_int_equal(posix_spawn(&web_pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    double end = test_now() + 30;
    while (access(port_file, R_OK) && test_now() < end) {
        int st;
        if (waitpid(web_pid, &st, WNOHANG) == web_pid) {
            web_pid = -1;
            char *l = slurp(log);
            if (WIFEXITED(st) && WEXITSTATUS(st) == SK_SKIP) {
                printf("SKIP: %s\n", l);
                exit(TEST_SKIP_CODE);
            }
            fail_msg("the Web UI server exited: %s", l);
        }
        struct timespec ts = {0, 20000000}; /* poll for the port file */
        nanosleep(&ts, NULL);
    }
    char *port = slurp(port_file);
    if (!*port)
        fail_msg("the Web UI server wrote no port in 30 s");
    snprintf(base, sizeof base, "http://127.0.0.1:%d", atoi(port));
    free(port);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    if (web_pid > 0) {
        kill(web_pid, SIGTERM);
        waitpid(web_pid, NULL, 0);
    }
    redisFree(it_rc);
    test_redis_stop(&it_srv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {
    }
    return 0;
}

static json_t *
visit(const char *path, const char *shot)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    return json_pack("{s:s, s:s}", "visit", url, "shot", shot);
}

static void
push(dray_client *c, const char *klass, const char *queue, int retry, int n, char *jids)
{
    json_t *extra = json_pack("{s:b}", "backtrace", 1);
    size_t pushed = 0;
    assert_int_equal(it_push_n(c, klass, queue, retry, extra, n, jids, &pushed), 0);
    assert_int_equal(pushed, (size_t)n);
    json_decref(extra);
}

static void
test_web_ui_in_chromium(void **state)
{
    (void)state;
    it_rec_reset();
    it_gate_reset();
    /* 1. a first dray run leaves processed jobs, failures and metrics */
    dray_options o;
    it_opts(&o, &it_srv, "default", 3);
    o.tag = "webui-dray";
    it_server *t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "WebUi::Ok", it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, "WebUi::Fails", h_fail, NULL, NULL), 0);
    it_go(t);
    dray_client *c;
    assert_int_equal(it_client_new(NULL, &c), 0);
    char rjids[2 * DRAY_JID_BYTES], djids[2 * DRAY_JID_BYTES];
    push(c, "WebUi::Ok", NULL, 0, 20, NULL);
    push(c, "WebUi::Fails", NULL, 5, 2, rjids);               /* to the retry set */
    push(c, "WebUi::Fails", NULL, DRAY_RETRY_ZERO, 2, djids); /* to the dead set */
    push(c, "WebUi::Waiting", "webui_waiting", 0, 3, NULL);   /* a queue no one works */
    if (!it_wait_runs(24, 30))
        fail_msg("dray ran %d of 24 jobs", it_rec_total());
    assert_true(it_wait_rint(it_rc, 2, 10, "ZCARD retry"));
    assert_true(it_wait_rint(it_rc, 2, 10, "ZCARD dead"));
    it_finish(t); /* flushes the metrics */
    const char *r1 = rjids, *r2 = rjids + DRAY_JID_BYTES;
    const char *d1 = djids, *d2 = djids + DRAY_JID_BYTES;

    /* 2. the dray the buttons act on, one job running */
    it_opts(&o, &it_srv, "default", 3);
    o.tag = "webui-dray";
    o.shutdown_timeout_s = 10;
    t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "WebUi::Ok", it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, "WebUi::Fails", h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, "WebUi::Block", it_h_block, NULL, NULL), 0);
    it_go(t);
    push(c, "WebUi::Block", NULL, 0, 1, NULL);
    if (!it_wait_gate(1, 15))
        fail_msg("the blocking job never started");
    char busy_key[300];
    snprintf(busy_key, sizeof busy_key, "%s", t->identity);
    if (!it_wait_rint(it_rc, 1, 10, "HGET %s busy", busy_key))
        fail_msg("heartbeat never published busy 1");

    /* 3. every page renders dray's data */
    json_t *steps = json_array();
    json_array_append_new(steps, visit("/", "dashboard.png"));
    json_array_append_new(steps, visit("/busy", "busy.png"));
    json_array_append_new(steps, visit("/queues", "queues.png"));
    json_array_append_new(steps, visit("/retries", "retries.png"));
    json_array_append_new(steps, visit("/morgue", "dead.png"));
    json_t *m = visit("/metrics", "metrics.png");
    json_object_set_new(m, "wait_js", json_string("document.querySelector('canvas') !== null"));
    json_object_set_new(m, "eval", json_string("document.querySelectorAll('canvas').length"));
    json_array_append_new(steps, m);
    json_array_append_new(steps, visit("/metrics/WebUi::Ok", "metrics_job.png"));
    json_t *r = browse(steps);
    const char *dash = step_text(r, 0);
    assert_has("Dashboard", dash, "Processed");
    assert_has("Dashboard", dash, "Sidekiq v7.3.9");
    const char *busy = step_text(r, 1);
    assert_has("Busy", busy, t->identity);
    assert_has("Busy", busy, "webui-dray");
    assert_has("Busy", busy, "WebUi::Block");
    const char *queues = step_text(r, 2);
    assert_has("Queues", queues, "webui_waiting");
    const char *retries = step_text(r, 3);
    assert_has("Retries", retries, "WebUi::Fails");
    assert_has("Retries", retries, "failed on purpose for the Web UI");
    const char *dead = step_text(r, 4);
    assert_has("Dead", dead, "WebUi::Fails");
    const char *metrics = step_text(r, 5);
    assert_has("Metrics", metrics, "WebUi::Ok");
    assert_has("Metrics", metrics, "WebUi::Fails");
    assert_true(json_integer_value(jget(json_array_get(r, 5), "value")) >= 1);
    assert_has("Metrics for a job", step_text(r, 6), "WebUi::Ok");
    json_decref(r);

    /* 4. Retry Now on a retry's page: dray runs it again (it fails again) */
    char path[256];
    snprintf(path, sizeof path, "/retries");
    steps = json_array();
    json_t *s = visit(path, "retries_before.png");
    char sel[256];
    snprintf(sel, sizeof sel, "a[href*='%s']", r1);
    json_object_set_new(s, "click", json_string(sel));
    json_array_append_new(steps, s);
    json_array_append_new(steps, json_pack("{s:s, s:s}", "click", "input[name=retry]", "shot",
                                           "retry_detail_after.png"));
    r = browse(steps);
    const char *detail = step_text(r, 0);
    assert_has("Retry page", detail, "WebUi::Boom");
    assert_has("Retry page", detail, r1);
    /* error_backtrace (sk7a's part of issue 11) is asserted only when dray wrote one */
    redisReply *rr = test_redis_cmd(it_rc, "ZRANGE retry 0 -1");
    int has_bt = 0;
    for (size_t i = 0; i < rr->elements; i++)
        has_bt |= strstr(rr->element[i]->str, "error_backtrace") != NULL;
    freeReplyObject(rr);
    if (has_bt)
        assert_has("Retry page backtrace", detail, "Backtrace");
    else
        print_message("note: no error_backtrace in dray's retries yet; not asserted\n");
    json_decref(r);
    it_wait_jid_runs(r1, 2, 15);
    assert_int_equal(it_rec_runs(r1), 2);
    assert_true(it_wait_rint(it_rc, 2, 10, "ZCARD retry")); /* back, retry_count 1 */

    /* 5. Kill from the Retries list: r2 moves to the dead set */
    steps = json_array();
    s = visit("/retries", "retries_kill.png");
    char pre[400];
    snprintf(pre, sizeof pre,
             "document.querySelector(\"input[name='key[]'][value$='%s']\").checked = true", r2);
    json_object_set_new(s, "pre", json_string(pre));
    json_object_set_new(s, "click", json_string("input[name=kill]"));
    json_array_append_new(steps, s);
    json_decref(browse(steps));
    assert_true(it_wait_rint(it_rc, 1, 10, "ZCARD retry"));
    assert_true(it_wait_rint(it_rc, 3, 10, "ZCARD dead"));

    /* 6. Dead: Delete d1, Retry Now d2 (dray runs it; it dies again) */
    steps = json_array();
    s = visit("/morgue", "dead_before.png");
    snprintf(sel, sizeof sel, "a[href*='%s']", d1);
    json_object_set_new(s, "click", json_string(sel));
    json_array_append_new(steps, s);
    json_array_append_new(steps, json_pack("{s:s}", "click", "input[name=delete]"));
    s = visit("/morgue", "dead_after_delete.png");
    snprintf(sel, sizeof sel, "a[href*='%s']", d2);
    json_object_set_new(s, "click", json_string(sel));
    json_array_append_new(steps, s);
    json_array_append_new(steps, json_pack("{s:s}", "click", "input[name=retry]"));
    json_decref(browse(steps));
    it_wait_jid_runs(d2, 2, 15);
    assert_int_equal(it_rec_runs(d2), 2);
    assert_int_equal(it_rec_runs(d1), 1); /* deleted: never ran again */
    char zs[64];
    snprintf(zs, sizeof zs, "*%s*", d1);
    redisReply *sc = test_redis_cmd(it_rc, "ZSCAN dead 0 MATCH %s COUNT 1000", zs);
    assert_int_equal(sc->element[1]->elements, 0);
    freeReplyObject(sc);

    /* 7. Quiet, then Stop, on the Busy page: dray goes quiet, then stops */
    char prej[600];
    snprintf(prej, sizeof prej,
             "document.querySelector(\"input[name=identity][value='%s']\").form"
             ".querySelector(\"button[name=quiet]\").id = 'dray-target'",
             t->identity);
    steps = json_array();
    s = visit("/busy", "busy_before_quiet.png");
    json_object_set_new(s, "pre", json_string(prej));
    json_object_set_new(s, "click", json_string("#dray-target"));
    json_array_append_new(steps, s);
    json_decref(browse(steps));
    it_wait_quiet(t->identity, 10);
    redisReply *q = test_redis_cmd(it_rc, "HGET %s quiet", t->identity);
    assert_string_equal(q->str, "true");
    freeReplyObject(q);
    json_t *sh = browse(json_pack("[o]", visit("/busy", "busy_quiet.png")));
    assert_has("Busy after Quiet", step_text(sh, 0), "quiet");
    json_decref(sh);
    it_gate_release();
    snprintf(prej, sizeof prej,
             "document.querySelector(\"input[name=identity][value='%s']\").form"
             ".querySelector(\"button[name=stop]\").id = 'dray-target'",
             t->identity);
    steps = json_array();
    s = visit("/busy", "busy_before_stop.png");
    json_object_set_new(s, "pre", json_string(prej));
    json_object_set_new(s, "click", json_string("#dray-target"));
    json_array_append_new(steps, s);
    json_decref(browse(steps));
    it_wait_done(t, 20); /* the Stop button ended dray_server_run */
    assert_int_equal(it_rint(it_rc, "SISMEMBER processes %s", t->identity), 0);
    it_finish(t);
    dray_client_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_web_ui_in_chromium, it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, setup, teardown));
}
