/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray Enterprise costs a plain class nothing in Redis: with the module
 * loaded (a limiter on another class, a fetch-time limit on another queue,
 * a unique class, an encrypted class),
 * pushing and working N jobs of a class with none of these features sends
 * no script to Redis and no more commands per job than the core alone. The
 * figures come from INFO commandstats of this test's own redis-server,
 * counted against the same run without the module. A bad payload (a plain
 * class whose job carries a bad "unique_until") is still refused with a
 * message, and the plain jobs around it are all worked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "ent_support.h"
#include "harness.h"
#include "module_internal.h"

#define N_JOBS_DEFAULT 400 /* enough that one command per job stands far above the background */

static char ent_key[ENT_KEYBUF];
static char keyfile[300];
static atomic_int worked;
static int n_jobs = N_JOBS_DEFAULT; /* TEST_ENT_PLAIN_JOBS: other sizes, for callgrind figures */

/* Calls of one command (lowercase, as INFO spells it) since the last
 * CONFIG RESETSTAT, or of every command when cmd is NULL. */
static long long
calls(const char *cmd)
{
    char *info = test_str("INFO commandstats");
    assert_non_null(info);
    long long total = 0;
    for (char *p = strstr(info, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
        char name[64];
        long long n;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%lld", name, &n) != 2)
            continue;
        if (!cmd || !strcmp(name, cmd))
            total += n;
    }
    free(info);
    return total;
}

/* Scripts Redis ran: what every Enterprise feature sends per job. */
static long long
scripts(void)
{
    return calls("evalsha") + calls("eval") + calls("script|load") + calls("script");
}

typedef struct figures {
    long long push_cmds, push_scripts; /* during N pushes */
    long long work_cmds, work_scripts; /* while a server works them */
} figures;

/* Push n_jobs Plain jobs, then work them with a 4-thread server, counting
 * Redis commands in each phase. The commands the measuring itself sends
 * (INFO) are not counted: INFO is left out of the sums. */
static void
measure(figures *f)
{
    test_run("FLUSHALL");
    dray_client *c = test_client(NULL);
    test_run("CONFIG RESETSTAT");
    for (int i = 0; i < n_jobs; i++)
        assert_int_equal(test_push_arg(c, "Plain", i), 0);
    f->push_cmds = calls(NULL) - calls("info") - calls("config|resetstat");
    f->push_scripts = scripts();
    dray_client_free(c);
    assert_int_equal(test_int("LLEN queue:default"), n_jobs);

    dray_options o;
    test_options(&o, "default", 4);
    o.heartbeat_s = 30; /* background traffic stays small next to n_jobs */
    test_running r;
    test_server_new(&r, &o);
    assert_int_equal(dray_server_register(r.s, "Plain", test_h_count, &worked, NULL), 0);
    atomic_store(&worked, 0);
    test_run("CONFIG RESETSTAT");
    test_server_go(&r);
    test_at_least all = {&worked, n_jobs};
    assert_true(test_wait_until(test_reached, &all, 30));
    f->work_cmds = calls(NULL) - calls("info") - calls("config|resetstat");
    f->work_scripts = scripts();
    test_server_finish(&r);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry"), 0);
    assert_int_equal(test_int("ZCARD dead"), 0);
}

static void
print(const char *what, const figures *f)
{
    printf("# %-34s push: %.2f commands/job, %lld scripts; work: %.2f commands/job, %lld "
           "scripts\n",
           what, (double)f->push_cmds / n_jobs, f->push_scripts, (double)f->work_cmds / n_jobs,
           f->work_scripts);
}

/* Load the module into this process (its hooks are process-wide) with a
 * class limiter, a fetch-time limit on queue slow (so the module's fetcher
 * fetches every queue), a unique class and an encrypted class, none of them
 * Plain or its queue. */
static void
load_module(void)
{
    dray_options o;
    test_options(&o, "default", 1);
    dray_server *s;
    char err[1024] = "";
    assert_int_equal(dray_server_new(&o, &s, err, sizeof err), 0);
    const char *sets[][2] = {
        {"license", ent_key},
        {"enterprise.limiter", "lim window 1000000/1s class=Limited"},
        {"enterprise.limiter", "slow concurrent 5 queue=slow"}, /* the module fetches */
        {"enterprise.unique", "Unique for=600"},
        {"enterprise.encrypt_keys", keyfile},
        {"enterprise.encrypt", "Secret"},
        {"enterprise.leader", "no"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        assert_int_equal(dray_server_set_config(s, sets[i][0], sets[i][1]), 0);
    if (dray_server_load_module(s, ENT_MODULE, err, sizeof err))
        fail_msg("module refused: %s", err);
    dray_server_free(s);
}

static void
test_plain_class_costs_no_redis(void **state)
{
    (void)state;
    figures core, ent;
    measure(&core);
    print("core alone", &core);
    load_module();
    measure(&ent);
    print("core + Enterprise, plain class", &ent);
    dray__modules_reset();

    assert_int_equal(ent.push_scripts, core.push_scripts);
    /* the core's own scripts (poller, heartbeat) stay far below one per job */
    assert_true(core.work_scripts < n_jobs / 10);
    if (ent.work_scripts >= core.work_scripts + n_jobs / 10)
        fail_msg("%lld scripts while working %d plain jobs (core alone: %lld)", ent.work_scripts,
                 n_jobs, core.work_scripts);
    if (ent.push_cmds > core.push_cmds)
        fail_msg("%lld commands for %d plain pushes (core alone: %lld)", ent.push_cmds, n_jobs,
                 core.push_cmds);
    if (ent.work_cmds >= core.work_cmds + n_jobs / 10)
        fail_msg("%lld commands while working %d plain jobs (core alone: %lld)", ent.work_cmds,
                 n_jobs, core.work_cmds);
}

/* A plain class still has its payload checked by the module: a job with
 * unique_until but no unique_for is refused with a message, nothing is
 * written for it, and plain jobs pushed around it are all worked. */
static void
test_plain_class_bad_unique_field_refused(void **state)
{
    (void)state;
    load_module();
    dray_client *c = test_client(NULL);
    assert_int_equal(test_push_arg(c, "Plain", 1), 0);
    dray_push_opts po = {.extra = json_pack("{s:s}", "unique_until", "start")};
    json_t *args = json_pack("[i]", 2);
    int rc = dray_client_push(c, "Plain", args, &po, NULL);
    json_decref(args);
    json_decref(po.extra);
    assert_int_equal(rc, DRAY_EFIELD);
    assert_non_null(strstr(dray_client_errstr(c), "unique_for"));
    assert_int_equal(test_push_arg(c, "Plain", 3), 0);
    dray_client_free(c);
    assert_int_equal(test_int("LLEN queue:default"), 2);

    dray_options o;
    test_options(&o, "default", 2);
    test_running r;
    test_server_new(&r, &o);
    assert_int_equal(dray_server_register(r.s, "Plain", test_h_count, &worked, NULL), 0);
    atomic_store(&worked, 0);
    test_server_go(&r);
    test_at_least all = {&worked, 2};
    assert_true(test_wait_until(test_reached, &all, 10));
    test_server_finish(&r);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry") + test_int("ZCARD dead"), 0);
    dray__modules_reset();
}

static int
blocked_at_least(void *n)
{
    char *info = test_str("INFO clients");
    const char *p = info ? strstr(info, "blocked_clients:") : NULL;
    int v = p ? atoi(p + 16) : -1;
    free(info);
    return v >= *(int *)n;
}

/* Workers of an unlimited queue, blocked in the module's fetch, when Redis
 * dies: they reconnect and work every job pushed after the restart, still
 * without a script per job. */
static void
test_plain_queue_fetch_survives_redis_kill(void **state)
{
    load_module();
    dray_options o;
    test_options(&o, "default", 2);
    test_running r;
    test_server_new(&r, &o);
    assert_int_equal(dray_server_register(r.s, "Plain", test_h_count, &worked, NULL), 0);
    atomic_store(&worked, 0);
    test_server_go(&r);
    int two = 2;
    assert_true(test_wait_until(blocked_at_least, &two, 10));

    test_redis_kill(&test_srv);
    assert_null(redisCommand(test_rc, "PING")); /* test_rc sees the break: test_flush reconnects */
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    assert_int_equal(test_flush(state), 0);
    test_run("CONFIG RESETSTAT");
    dray_client *c = test_client(NULL);
    for (int i = 0; i < 50; i++)
        assert_int_equal(test_push_arg(c, "Plain", i), 0);
    dray_client_free(c);
    test_at_least all = {&worked, 50};
    if (!test_wait_until(test_reached, &all, 30))
        fail_msg("%d of 50 jobs worked after the restart", atomic_load(&worked));
    test_server_finish(&r);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry") + test_int("ZCARD dead"), 0);
    long long ran = scripts();
    if (ran >= 10) /* the module's periodic work only, not one per job */
        fail_msg("%lld scripts while working 50 plain jobs after the restart", ran);
    dray__modules_reset();
}

static int
group_setup(void **state)
{
    if (ent_inproc_setup(state, ent_key, keyfile, sizeof keyfile))
        return -1;
    dray_log_set_level(DRAY_LOG_ERROR);
    const char *nj = getenv("TEST_ENT_PLAIN_JOBS");
    if (nj && atoi(nj) >= 100)
        n_jobs = atoi(nj);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_plain_class_costs_no_redis, test_flush),
        cmocka_unit_test_setup(test_plain_class_bad_unique_field_refused, test_flush),
        cmocka_unit_test_setup(test_plain_queue_fetch_survives_redis_kill, test_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, test_teardown);
}
