/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* A mixed fleet (issue 11): one embedded dray server and one real Sidekiq
 * worker process (Debian's 6.4.1, or 7.3.9 in the _sk7 test) on the same
 * queues share 2,000 jobs, half pushed by dray and half by Sidekiq::Client:
 * every jid runs exactly once, on one side or the other (counts printed).
 * Jobs only Ruby works run there when dray pushed them; a retry Sidekiq made
 * runs in dray (retry_queue), and retries dray made are retried through
 * Sidekiq's RetrySet and run by the Ruby worker. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "interop_support.h"

#define FLEET_JOBS 2000
#define N_FAIL 5
#define JOBS_RB DRAY_INTEROP_DIR "/fleet_jobs.rb"

extern char **environ;

static pid_t ruby_pid = -1;
static char logpath[64];

static atomic_int fleet_in_dray; /* FleetJob runs in dray */

static int
h_fleet(dray_job *job, dray_result *res, void *ud)
{
    atomic_fetch_add(&fleet_in_dray, 1);
    return it_h_record(job, res, ud);
}

/* The Ruby worker: Sidekiq's own executable with fleet_jobs.rb. */
static void
ruby_start(void)
{
    char urlvar[400];
    snprintf(urlvar, sizeof urlvar, "DRAY_FLEET_URL=%s", it_srv.url);
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    assert_non_null(env);
    memcpy(env, environ, n * sizeof *env);
    env[n] = urlvar;
    const char *script =
        sk_major() == 7
            ? ". \"$DRAY_SIDEKIQ7_ENV\" && exec ruby \"$SIDEKIQ7_BIN\" -r \"$0\" -c 5 -t 5 "
              "-q fleet -q to_ruby"
            : "exec sidekiq -r \"$0\" -c 5 -t 5 -q fleet -q to_ruby";
    char *argv[] = {"/bin/bash", "-c", (char *)script, JOBS_RB, NULL};
    snprintf(logpath, sizeof logpath, "/tmp/dray-fleet-XXXXXX");
    int fd = mkstemp(logpath);
    assert_true(fd >= 0);
    close(fd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    assert_int_equal(posix_spawn(&ruby_pid, argv[0], &fa, NULL, argv, env), 0);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
}

static void
ruby_stop(void)
{
    if (ruby_pid <= 0)
        return;
    kill(ruby_pid, SIGTERM);
    int st;
    double end = test_now() + 20;
    while (waitpid(ruby_pid, &st, WNOHANG) == 0) {
        if (test_now() > end) {
            kill(ruby_pid, SIGKILL);
            waitpid(ruby_pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 20000000}; /* poll for the worker's exit */
        nanosleep(&ts, NULL);
    }
    ruby_pid = -1;
    if (getenv("TEST_LOG")) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "cat %s", logpath);
        if (system(cmd)) {
        }
    }
    unlink(logpath);
}

/* The Ruby worker first, then the shared teardown. */
static int
fleet_teardown(void **state)
{
    ruby_stop();
    return it_teardown(state);
}

static int
fleet_each_teardown(void **state)
{
    ruby_stop();
    return it_each_teardown(state);
}

static long long
scard(const char *key)
{
    return it_rint(it_rc, "SCARD %s", key);
}

static int
fleet_done(void *arg)
{
    (void)arg;
    return atomic_load(&fleet_in_dray) + scard("fleet:ran:ruby:FleetJob") >= FLEET_JOBS;
}

static const char *const *wait_jids;
static size_t wait_n;
static int
all_ran_in_dray(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < wait_n; i++)
        if (it_rec_runs(wait_jids[i]) < 1)
            return 0;
    return 1;
}

static long long want_ruby_dray_fails;
static int
ruby_ran_dray_fails(void *arg)
{
    (void)arg;
    return scard("fleet:ran:ruby:DrayFails") >= want_ruby_dray_fails;
}

static void
push_bulk(dray_client *c, const char *klass, const char *queue, int retry, const char *rq, int n,
          char *jids)
{
    json_t *extra = rq ? json_pack("{s:s}", "retry_queue", rq) : NULL;
    size_t pushed = 0;
    assert_int_equal(it_push_n(c, klass, queue, retry, extra, n, jids, &pushed), 0);
    assert_int_equal(pushed, (size_t)n);
    json_decref(extra);
}

static void
test_mixed_fleet(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(it_rc, "FLUSHALL"));
    it_rec_reset();
    atomic_store(&fleet_in_dray, 0);
    dray_options o;
    it_opts(&o, &it_srv, "fleet to_dray", 5);
    it_server *t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "FleetJob", h_fleet, NULL, NULL), 0);
    assert_int_equal(
        dray_server_register(t->s, "DrayFails", it_h_fail, "failed in dray on purpose", NULL), 0);
    assert_int_equal(dray_server_register(t->s, "RubyFails", it_h_record, NULL, NULL), 0);
    ruby_start();
    it_go(t);
    /* both workers up (Sidekiq's heartbeat registered it) before any push */
    if (!it_wait_rint(it_rc, 2, 60, "SCARD processes"))
        fail_msg("the Sidekiq worker never registered (processes: %lld)",
                 it_rint(it_rc, "SCARD processes"));

    dray_client *c;
    assert_int_equal(it_client_new(NULL, &c), 0);
    static char djids[FLEET_JOBS / 2 * DRAY_JID_BYTES];
    push_bulk(c, "FleetJob", "fleet", 0, NULL, FLEET_JOBS / 2, djids);
    json_t *args = json_array();
    for (int i = 0; i < FLEET_JOBS / 2; i++)
        json_array_append_new(args, json_pack("[i]", i));
    json_t *rb = sk_runf(it_srv.url, "push_bulk", "{s:{s:s, s:s, s:o}}", "item", "class",
                         "FleetJob", "queue", "fleet", "args", args);
    json_t *rjids = jget(rb, "jids");
    assert_int_equal(json_array_size(rjids), FLEET_JOBS / 2);
    char fail_d[N_FAIL * DRAY_JID_BYTES], fail_r[N_FAIL * DRAY_JID_BYTES];
    push_bulk(c, "DrayFails", "to_dray", 3, "to_ruby", N_FAIL, fail_d);
    push_bulk(c, "RubyFails", "to_ruby", 3, "to_dray", N_FAIL, fail_r);
    /* pushed by dray to a queue only the Sidekiq worker works */
    char to_ruby[N_FAIL * DRAY_JID_BYTES];
    push_bulk(c, "DrayFails", "to_ruby", 0, NULL, N_FAIL, to_ruby);

    if (!test_wait_until(fleet_done, NULL, 90))
        fail_msg("fleet ran %lld in Ruby + %d in dray of %d", scard("fleet:ran:ruby:FleetJob"),
                 atomic_load(&fleet_in_dray), FLEET_JOBS);

    /* every jid ran exactly once, on one side */
    int on_dray = 0, on_ruby = 0, twice = 0, never = 0;
    for (int i = 0; i < FLEET_JOBS; i++) {
        const char *jid =
            i < FLEET_JOBS / 2
                ? djids + (size_t)i * DRAY_JID_BYTES
                : json_string_value(json_array_get(rjids, (size_t)(i - FLEET_JOBS / 2)));
        int d = it_rec_runs(jid);
        int r = (int)it_rint(it_rc, "SISMEMBER fleet:ran:ruby:FleetJob %s", jid);
        on_dray += d;
        on_ruby += r;
        twice += d + r > 1;
        never += d + r == 0;
    }
    print_message("mixed fleet (Sidekiq %d): %d jobs, %d ran in dray, %d in Sidekiq, %d twice, "
                  "%d never\n",
                  sk_major(), FLEET_JOBS, on_dray, on_ruby, twice, never);
    assert_int_equal(never, 0);
    assert_int_equal(twice, 0);
    assert_int_equal(on_dray + on_ruby, FLEET_JOBS);
    assert_true(on_dray > 0);
    assert_true(on_ruby > 0);

    /* dray's pushes to to_ruby ran in the Sidekiq worker */
    want_ruby_dray_fails = N_FAIL;
    if (!test_wait_until(ruby_ran_dray_fails, NULL, 30))
        fail_msg("Sidekiq ran %lld of the %d jobs dray pushed to to_ruby",
                 scard("fleet:ran:ruby:DrayFails"), N_FAIL);
    for (int i = 0; i < N_FAIL; i++)
        assert_int_equal(it_rint(it_rc, "SISMEMBER fleet:ran:ruby:DrayFails %s",
                                 to_ruby + (size_t)i * DRAY_JID_BYTES),
                         1);

    /* Sidekiq's retries (retry_queue to_dray, 1 s) run in dray */
    const char *rf[N_FAIL];
    for (int i = 0; i < N_FAIL; i++)
        rf[i] = fail_r + (size_t)i * DRAY_JID_BYTES;
    wait_jids = rf;
    wait_n = N_FAIL;
    if (!test_wait_until(all_ran_in_dray, NULL, 60))
        fail_msg("Sidekiq's retries of RubyFails did not all run in dray");
    for (int i = 0; i < N_FAIL; i++)
        assert_int_equal(it_rint(it_rc, "SISMEMBER fleet:ran:ruby:RubyFails %s", rf[i]), 1);

    /* dray's retries of DrayFails, retried through Sidekiq's RetrySet, run in Ruby */
    for (int i = 0; i < N_FAIL; i++)
        assert_int_equal(it_rec_runs(fail_d + (size_t)i * DRAY_JID_BYTES), 1);
    json_decref(sk_run(it_srv.url, "retry_all", NULL));
    want_ruby_dray_fails = 2 * N_FAIL;
    if (!test_wait_until(ruby_ran_dray_fails, NULL, 60))
        fail_msg("Ruby ran %lld of dray's %d retried DrayFails", scard("fleet:ran:ruby:DrayFails"),
                 N_FAIL);
    for (int i = 0; i < N_FAIL; i++)
        assert_int_equal(it_rint(it_rc, "SISMEMBER fleet:ran:ruby:DrayFails %s",
                                 fail_d + (size_t)i * DRAY_JID_BYTES),
                         1);
    json_decref(rb);
    dray_client_free(c);
    ruby_stop();
    it_finish(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mixed_fleet, fleet_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, fleet_teardown));
}
