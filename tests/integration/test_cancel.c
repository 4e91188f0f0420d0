/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray cancel / dray_api_cancel against a real redis-server and real `dray
 * run` processes: a queued, a scheduled and a retry job are removed and
 * never run; a running job is flagged in thread mode and its child killed
 * under --processes (not retried, the other jobs complete); and jobs
 * cancelled while workers drain a full queue never run once the
 * cancellation was recorded, while every other job runs exactly once. Runs
 * are counted from the handlers' own log (test_cancel_jobs.c).
 * Also, with the same harness (issue 14): the supervisor's recovery of
 * in-flight lists left by a supervisor killed with its children, and
 * weighted queues in supervised children. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include <dray/dray.h>

#include "redis_fixture.h"

static test_redis srv;
static redisContext *rc;
static char runlog[400], logpath[400], outpath[400];
static pid_t g_run; /* the dray run of the current test, killed if the test fails */

static long long
integer(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

/* HGET dray:cancel:<jid> field into out ("" when absent). */
static void
record_field(const char *jid, const char *field, char *out, size_t n)
{
    redisReply *r = redisCommand(rc, "HGET dray:cancel:%s %s", jid, field);
    snprintf(out, n, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

static pid_t
spawn_run(const char *const *extra)
{
    char *argv[40];
    int n = 0;
    argv[n++] = DRAY_CLI_PATH;
    argv[n++] = "run";
    argv[n++] = "--redis-url";
    argv[n++] = srv.url;
    argv[n++] = "-r";
    argv[n++] = DRAY_CANCEL_JOBS;
    argv[n++] = "--set";
    argv[n++] = "heartbeat=1";
    argv[n++] = "--set";
    argv[n++] = "poll_interval=0.2";
    for (int i = 0; extra[i] && n < 39; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    g_run = pid;
    if (pid == 0) {
        setpgid(0, 0); /* its own group: a failed test kills the whole tree */
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        setenv("CANCEL_RUNLOG", runlog, 1);
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    return pid;
}

/* `dray cancel jid [--json]`: its exit code; its stdout in outpath. */
static int
cli_cancel(const char *jid, int json)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        close(fd);
        char *argv[] = {DRAY_CLI_PATH,          "cancel", (char *)jid, "--redis-url", srv.url,
                        json ? "--json" : NULL, NULL};
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void
read_out(char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen(outpath, "r");
    if (f) {
        size_t k = fread(buf, 1, n - 1, f);
        buf[k] = '\0';
        fclose(f);
    }
}

static void
print_log(void)
{
    FILE *f = fopen(logpath, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    if (f)
        fclose(f);
}

static int
wait_exit(pid_t pid, double timeout_s)
{
    double end = test_now() + timeout_s;
    int st;
    while (test_now() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void
job_json(char *json, size_t n, const char *klass, const char *jid)
{
    snprintf(json, n,
             "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
             "\"retry\":true,\"created_at\":1,\"enqueued_at\":1}",
             klass, jid);
}

static void
push(const char *klass, const char *jid)
{
    char json[512];
    job_json(json, sizeof json, klass, jid);
    freeReplyObject(redisCommand(rc, "LPUSH queue:default %s", json));
    freeReplyObject(redisCommand(rc, "SADD queues default"));
}

/* Runs of jid in the handlers' log; *first (if given) gets its first start. */
static int
runs_at(const char *jid, double *first)
{
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int pid, n = 0;
    double t;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %63s %d %lf", k, j, &pid, &t) == 4 && !strcmp(j, jid)) {
            if (n++ == 0 && first)
                *first = t;
        }
    if (f)
        fclose(f);
    return n;
}

static int
runs_of(const char *jid)
{
    return runs_at(jid, NULL);
}

static int
log_lines(void)
{
    FILE *f = fopen(runlog, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

static int
nprocs(void *arg)
{
    return integer("SCARD processes") == *(int *)arg;
}

static int
ran(void *jid)
{
    return runs_of(jid) > 0;
}

static int
lines_at_least(void *n)
{
    return log_lines() >= *(int *)n;
}

typedef struct field_want {
    const char *jid, *field, *value;
} field_want;

static int
field_is(void *arg)
{
    field_want *w = arg;
    char v[64];
    record_field(w->jid, w->field, v, sizeof v);
    return !strcmp(v, w->value);
}

/* True when some <identity>:work hash (the Busy page's) holds jid. */
static int
busy_with(void *jid)
{
    redisReply *k = redisCommand(rc, "KEYS *:work");
    int hit = 0;
    for (size_t i = 0; k && i < k->elements && !hit; i++) {
        redisReply *v = redisCommand(rc, "HVALS %s", k->element[i]->str);
        for (size_t j = 0; v && j < v->elements && !hit; j++)
            hit = strstr(v->element[j]->str, jid) != NULL;
        freeReplyObject(v);
    }
    freeReplyObject(k);
    return hit;
}

static int
log_has(void *needle)
{
    FILE *f = fopen(logpath, "r");
    char line[2048];
    int hit = 0;
    while (f && !hit && fgets(line, sizeof line, f))
        hit = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return hit;
}

static int
setup(void **state)
{
    (void)state;
    if (test_redis_start(&srv))
        return -1;
    rc = test_redis_connect(&srv);
    snprintf(runlog, sizeof runlog, "%s/runs.log", srv.dir);
    snprintf(logpath, sizeof logpath, "%s/dray.log", srv.dir);
    snprintf(outpath, sizeof outpath, "%s/cli.out", srv.dir);
    return rc ? 0 : -1;
}

/* A test that failed left its dray run: kill it and its children. */
static void
reap_run(void)
{
    if (g_run > 0 && waitpid(g_run, NULL, WNOHANG) == 0) {
        kill(-g_run, SIGKILL);
        kill(g_run, SIGKILL);
        waitpid(g_run, NULL, 0);
    }
    g_run = 0;
}

static int
teardown(void **state)
{
    (void)state;
    reap_run();
    redisFree(rc);
    test_redis_stop(&srv);
    return 0;
}

static int
flush(void **state)
{
    (void)state;
    reap_run();
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    unlink(runlog);
    unlink(logpath);
    return 0;
}

static pid_t
start_and_wait(const char *const *extra, int nproc)
{
    pid_t pid = spawn_run(extra);
    if (!test_wait_until(nprocs, &nproc, 15)) {
        print_log();
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("dray run did not register %d process(es)", nproc);
    }
    return pid;
}

static void
stop_clean(pid_t pid)
{
    kill(pid, SIGTERM);
    int code = wait_exit(pid, 30);
    if (code != 0) {
        print_log();
        fail_msg("dray run exited %d after TERM", code);
    }
}

/* A queued job (with 300 others around it, more than a page), a scheduled
 * and a retry job are removed by `dray cancel`, exit 0, outcome recorded;
 * an unknown jid is exit 3. Then workers start: every other job runs once,
 * the cancelled ones never. */
static void
test_waiting(void **state)
{
    (void)state;
    for (int i = 0; i < 300; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "q%d", i);
        push("CxOk", jid);
    }
    char json[512];
    job_json(json, sizeof json, "CxOk", "sched1");
    /* due in 1 s: the poller would move it soon if the cancel did not */
    freeReplyObject(redisCommand(rc, "ZADD schedule %f %s", dray_now() + 1, json));
    job_json(json, sizeof json, "CxOk", "retry1");
    freeReplyObject(redisCommand(rc, "ZADD retry %f %s", dray_now() + 1, json));

    char out[1024], v[64];
    assert_int_equal(cli_cancel("q17", 0), 0); /* index 282: third page from the head */
    read_out(out, sizeof out);
    assert_non_null(strstr(out, "removed q17 from queue:default"));
    assert_int_equal(integer("LLEN queue:default"), 299);
    record_field("q17", "outcome", v, sizeof v);
    assert_string_equal(v, "removed");
    record_field("q17", "where", v, sizeof v);
    assert_string_equal(v, "queue:default");
    assert_true(integer("TTL dray:cancel:q17") > 86000);

    assert_int_equal(cli_cancel("sched1", 1), 0);
    read_out(out, sizeof out);
    assert_non_null(strstr(out, "\"outcome\":\"removed\""));
    assert_non_null(strstr(out, "\"where\":\"schedule\""));
    assert_int_equal(integer("ZCARD schedule"), 0);

    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_api *a;
    assert_int_equal(dray_api_new(&o, &a, NULL, 0), 0);
    dray_cancel_result res;
    assert_int_equal(dray_api_cancel(a, "retry1", &res), 0);
    assert_int_equal(res.outcome, DRAY_CANCEL_REMOVED);
    assert_string_equal(res.where, "retry");
    assert_int_equal(integer("ZCARD retry"), 0);
    assert_int_equal(dray_api_cancel(a, "nosuchjid", &res), DRAY_ENOTFOUND);
    assert_int_equal(res.outcome, DRAY_CANCEL_NOT_FOUND);
    assert_int_equal(dray_api_cancel(a, "", &res), DRAY_EINVAL);
    dray_api_free(a);
    assert_int_equal(cli_cancel("alsonothere", 0), 3);
    read_out(out, sizeof out);
    assert_non_null(strstr(out, "not found"));

    pid_t pid = start_and_wait((const char *const[]){"-c", "4", NULL}, 1);
    int want = 299;
    if (!test_wait_until(lines_at_least, &want, 30)) {
        print_log();
        fail_msg("only %d of 299 jobs ran", log_lines());
    }
    stop_clean(pid);
    assert_int_equal(log_lines(), 299);
    for (int i = 0; i < 300; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "q%d", i);
        assert_int_equal(runs_of(jid), i == 17 ? 0 : 1);
    }
    assert_int_equal(runs_of("sched1"), 0);
    assert_int_equal(runs_of("retry1"), 0);
}

/* Thread mode: a running job sees dray_job_cancelled at the next heartbeat
 * (logged, recorded "flagged"); its failure is not retried. */
static void
test_running_thread(void **state)
{
    (void)state;
    pid_t pid = start_and_wait((const char *const[]){"-c", "2", NULL}, 1);
    push("CxPatient", "pat1");
    if (!test_wait_until(ran, "pat1", 15)) {
        print_log();
        fail_msg("pat1 did not start");
    }
    /* The Busy record shows it within a heartbeat: then the cancel finds it. */
    if (!test_wait_until(busy_with, "pat1", 10))
        fail_msg("pat1 never showed in the process's work record");
    char out[1024];
    assert_int_equal(cli_cancel("pat1", 0), 0);
    read_out(out, sizeof out);
    assert_non_null(strstr(out, "running on "));
    double t0 = test_now();
    field_want fw = {"pat1", "worker", "flagged"};
    if (!test_wait_until(field_is, &fw, 10)) {
        print_log();
        fail_msg("pat1 was not flagged");
    }
    fprintf(stderr, "  flagged %.2fs after the cancel (heartbeat 1 s)\n", test_now() - t0);
    /* It stops (fails); the failure is logged, not retried. */
    if (!test_wait_until(log_has, "cancelled (dray cancel): not retried", 10)) {
        print_log();
        fail_msg("pat1's failure was not reported as not retried");
    }
    stop_clean(pid);
    assert_int_equal(runs_of("pat1"), 1);
    assert_int_equal(integer("ZCARD retry"), 0);
    assert_int_equal(integer("ZCARD dead"), 0);
    assert_int_equal(integer("LLEN queue:default"), 0);
    assert_true(log_has("cancelled (dray cancel) while running: flagged"));
}

/* --processes 2 -c 2: a job looping forever is cancelled; its child is killed
 * (recorded "killed"), it ran once and is in neither the retry nor the dead
 * set, and 40 other jobs all complete. */
static void
test_running_processes(void **state)
{
    (void)state;
    pid_t pid = start_and_wait((const char *const[]){"--processes", "2", "-c", "2", NULL}, 2);
    push("CxSpin", "spin1");
    if (!test_wait_until(ran, "spin1", 15)) {
        print_log();
        fail_msg("spin1 did not start");
    }
    for (int i = 0; i < 40; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        push("CxOk", jid);
    }
    if (!test_wait_until(busy_with, "spin1", 10))
        fail_msg("spin1 never showed in a process's work record");
    char out[1024];
    assert_int_equal(cli_cancel("spin1", 0), 0);
    read_out(out, sizeof out);
    assert_non_null(strstr(out, "running on "));
    double t0 = test_now();
    field_want fw = {"spin1", "worker", "killed"};
    if (!test_wait_until(field_is, &fw, 15)) {
        print_log();
        fail_msg("the child running spin1 was not killed");
    }
    fprintf(stderr, "  child killed %.2fs after the cancel (heartbeat 1 s)\n", test_now() - t0);
    int want = 41;
    if (!test_wait_until(lines_at_least, &want, 30)) {
        print_log();
        fail_msg("only %d of 41 runs", log_lines());
    }
    int two = 2;
    assert_true(test_wait_until(nprocs, &two, 15)); /* the child came back */
    stop_clean(pid);
    assert_int_equal(runs_of("spin1"), 1);
    for (int i = 0; i < 40; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        assert_true(runs_of(jid) >= 1);
    }
    assert_int_equal(integer("ZCARD retry"), 0);
    assert_int_equal(integer("ZCARD dead"), 0);
    assert_int_equal(integer("LLEN queue:default"), 0);
}

/* Schedule and queue empty, and at least *want runs logged. */
static int
drained(void *want)
{
    return integer("ZCARD schedule") == 0 && integer("LLEN queue:default") == 0 &&
           log_lines() >= *(int *)want;
}

#define RACE_JOBS 12000
#define RACE_CANCELS 40

/* The race: 2 workers drain 12,000 jobs of 2 ms while jobs near the popping end (a
 * few places from it) are cancelled one after another. A cancelled job never
 * runs unless it started before every live process had acknowledged its
 * cancellation (the record's "acked"; before that a worker may still take
 * and start it, as before the record existed); one seen in the queue but
 * popped before the LREM ("taken") never runs; every other job runs exactly
 * once. */
static void
test_race(void **state)
{
    (void)state;
    for (int i = 0; i < RACE_JOBS; i += 500) {
        /* 500 jobs per LPUSH: the queue is full before the workers start */
        const char *argv[502];
        char(*jobs)[256] = malloc(500 * sizeof *jobs);
        argv[0] = "LPUSH";
        argv[1] = "queue:default";
        for (int k = 0; k < 500; k++) {
            char jid[32];
            snprintf(jid, sizeof jid, "r%d", i + k);
            job_json(jobs[k], sizeof jobs[k], "CxMs", jid);
            argv[2 + k] = jobs[k];
        }
        freeReplyObject(redisCommandArgv(rc, 502, argv, NULL));
        free(jobs);
    }
    freeReplyObject(redisCommand(rc, "SADD queues default"));
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_api *a;
    assert_int_equal(dray_api_new(&o, &a, NULL, 0), 0);
    pid_t pid = spawn_run((const char *const[]){"-c", "2", NULL});
    while (integer("LLEN queue:default") == RACE_JOBS)
        usleep(1000); /* draining has begun */
    char cancelled[RACE_CANCELS][32];
    dray_cancel_result res[RACE_CANCELS];
    int nc = 0, taken = 0, removed = 0;
    srand(14);
    while (nc < RACE_CANCELS && integer("LLEN queue:default") > 100) {
        /* a job up to 1,500 pops (about 1.5 s, the acknowledgements take
         * up to a refresh period) from the end: workers take some before
         * the handshake ends, the scan (from the other end) reaches some
         * before the workers, the workers others */
        redisReply *r = redisCommand(rc, "LINDEX queue:default %d", -(3 + rand() % 1500));
        json_t *j = r && r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL) : NULL;
        const char *jid = json_string_value(json_object_get(j, "jid"));
        if (jid) {
            snprintf(cancelled[nc], sizeof cancelled[nc], "%s", jid);
            int e = dray_api_cancel(a, cancelled[nc], &res[nc]);
            assert_true(e == 0 || e == DRAY_ENOTFOUND);
            taken +=
                res[nc].outcome == DRAY_CANCEL_RUNNING && !strncmp(res[nc].where, "a worker", 8);
            removed += res[nc].outcome == DRAY_CANCEL_REMOVED;
            nc++;
        }
        json_decref(j);
        freeReplyObject(r);
    }
    dray_api_free(a);
    /* everything not cancelled runs; wait for the queue to drain and the
     * workers to finish */
    int want = RACE_JOBS - nc; /* and the queue empty: some cancelled ones ran too */
    if (!test_wait_until(drained, &want, 60)) {
        print_log();
        fail_msg("only %d runs", log_lines());
    }
    assert_true(test_wait_until(nprocs, &(int){1}, 5));
    stop_clean(pid);
    int ran_before = 0;
    for (int c = 0; c < nc; c++) {
        double first = 0;
        int n = runs_at(cancelled[c], &first);
        char ack[64];
        record_field(cancelled[c], "acked", ack, sizeof ack);
        assert_true(atof(ack) > 0);
        if (n > 0) {
            /* allowed only when it started before every process had
             * acknowledged the cancellation */
            if (res[c].outcome == DRAY_CANCEL_REMOVED || !strncmp(res[c].where, "a worker", 8) ||
                first > atof(ack) + 0.005)
                fail_msg("cancelled %s ran (outcome %d, where '%s', started %.6f, acked %s)",
                         cancelled[c], res[c].outcome, res[c].where, first, ack);
            ran_before++;
        }
        assert_true(n <= 1);
    }
    int total = 0, *count = calloc(RACE_JOBS, sizeof *count);
    FILE *f = fopen(runlog, "r");
    char line[256], k[64];
    int num, rpid;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s r%d %d", k, &num, &rpid) == 3 && num >= 0 && num < RACE_JOBS)
            count[num]++;
    if (f)
        fclose(f);
    for (int i = 0; i < RACE_JOBS; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "r%d", i);
        int was = 0;
        for (int c = 0; c < nc; c++)
            was |= !strcmp(cancelled[c], jid);
        if (!was && count[i] != 1)
            fail_msg("%s ran %d times", jid, count[i]);
        total += count[i];
    }
    free(count);
    fprintf(stderr,
            "  %d cancels while draining %d jobs: %d removed, %d seen then taken by a worker, "
            "%d popped before the scan reached them (both skipped by the worker), %d started "
            "before the handshake; %d runs, none lost\n",
            nc, RACE_JOBS, removed, taken, nc - removed - taken - ran_before, ran_before, total);
    assert_int_equal(total, RACE_JOBS - nc + ran_before);
    assert_true(removed > 0);
}

#define SCHED_JOBS 2000
#define SCHED_CANCELS 30
#define SCHED_GAP 0.005 /* s between due times: 2,000 jobs over 10 s */

/* The poller race: 2,000 scheduled jobs fall due over ten seconds while the
 * poller (every 0.2 s) moves them to the queue and 4 workers run them; up to
 * 30 of them, due from just before to about a second after the cancel
 * starts, are cancelled meanwhile. A cancelled job never runs unless it started
 * before every process acknowledged its cancellation ("acked"); every other
 * job runs exactly once. */
static void
test_sched_race(void **state)
{
    (void)state;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_api *a;
    assert_int_equal(dray_api_new(&o, &a, NULL, 0), 0);
    pid_t pid = start_and_wait((const char *const[]){"-c", "4", NULL}, 1);
    double due = dray_now() + 0.5;
    for (int i = 0; i < SCHED_JOBS; i += 500) {
        const char *argv[1002];
        char(*jobs)[256] = malloc(500 * sizeof *jobs);
        char(*scores)[32] = malloc(500 * sizeof *scores);
        argv[0] = "ZADD";
        argv[1] = "schedule";
        for (int k = 0; k < 500; k++) {
            char jid[32];
            snprintf(jid, sizeof jid, "s%d", i + k);
            job_json(jobs[k], sizeof jobs[k], "CxOk", jid);
            snprintf(scores[k], sizeof scores[k], "%.6f", due + (i + k) * SCHED_GAP);
            argv[2 + 2 * k] = scores[k];
            argv[3 + 2 * k] = jobs[k];
        }
        freeReplyObject(redisCommandArgv(rc, 1002, argv, NULL));
        free(jobs);
        free(scores);
    }
    char cancelled[SCHED_CANCELS][32];
    dray_cancel_result res[SCHED_CANCELS];
    int removed_set = 0, removed_queue = 0, nc = 0;
    srand(15);
    for (int c = 0; c < SCHED_CANCELS && dray_now() < due + SCHED_JOBS * SCHED_GAP - 1; c++) {
        /* spread over the seconds the jobs fall due in */
        while (dray_now() < due + c * (SCHED_JOBS * SCHED_GAP / SCHED_CANCELS))
            usleep(1000);
        int pick = (int)((dray_now() - due) / SCHED_GAP) + rand() % 300 - 50;
        int seen;
        do { /* distinct jids */
            snprintf(cancelled[c], sizeof cancelled[c], "s%d", (pick++ + SCHED_JOBS) % SCHED_JOBS);
            seen = 0;
            for (int d = 0; d < c; d++)
                seen |= !strcmp(cancelled[d], cancelled[c]);
        } while (seen);
        int e = dray_api_cancel(a, cancelled[c], &res[c]);
        assert_true(e == 0 || e == DRAY_ENOTFOUND);
        removed_set += res[c].outcome == DRAY_CANCEL_REMOVED && !strcmp(res[c].where, "schedule");
        removed_queue +=
            res[c].outcome == DRAY_CANCEL_REMOVED && !strcmp(res[c].where, "queue:default");
        nc++;
    }
    dray_api_free(a);
    /* cancelled jobs that started before their handshake add lines: wait
     * for the schedule and the queue to be empty too */
    int want = SCHED_JOBS - nc;
    if (!test_wait_until(drained, &want, 60)) {
        print_log();
        fail_msg("only %d runs", log_lines());
    }
    stop_clean(pid);
    assert_int_equal(integer("ZCARD schedule"), 0);
    int ran_before = 0, total = log_lines();
    for (int c = 0; c < nc; c++) {
        double first = 0;
        int n = runs_at(cancelled[c], &first);
        char ack[64];
        record_field(cancelled[c], "acked", ack, sizeof ack);
        assert_true(atof(ack) > 0);
        if (n > 0 && (res[c].outcome == DRAY_CANCEL_REMOVED || first > atof(ack) + 0.005))
            fail_msg("cancelled %s ran (outcome %d, where '%s', started %.6f, acked %s)",
                     cancelled[c], res[c].outcome, res[c].where, first, ack);
        ran_before += n;
        assert_true(n <= 1);
    }
    fprintf(stderr,
            "  %d cancels while the poller moved %d jobs: %d removed from the schedule, %d from "
            "the queue, %d started before the handshake; %d runs\n",
            nc, SCHED_JOBS, removed_set, removed_queue, ran_before, total);
    assert_int_equal(total, SCHED_JOBS - nc + ran_before);
    assert_true(removed_set + removed_queue > 0);
}

/* calls of one command on the test's redis-server since the last
 * CONFIG RESETSTAT (INFO commandstats). */
static long long
cmd_calls(const char *cmd)
{
    redisReply *r = redisCommand(rc, "INFO commandstats");
    char want[64];
    snprintf(want, sizeof want, "cmdstat_%s:calls=", cmd);
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, want) : NULL;
    long long n = p ? atoll(p + strlen(want)) : 0;
    freeReplyObject(r);
    return n;
}

/* n CxOk jobs <prefix>0.. into queue:default, 500 per LPUSH. */
static void
push_many(const char *prefix, int n)
{
    for (int i = 0; i < n; i += 500) {
        const char *argv[502];
        char(*jobs)[256] = malloc(500 * sizeof *jobs);
        int k = 0;
        argv[0] = "LPUSH";
        argv[1] = "queue:default";
        for (; k < 500 && i + k < n; k++) {
            char jid[32];
            snprintf(jid, sizeof jid, "%s%d", prefix, i + k);
            job_json(jobs[k], sizeof jobs[k], "CxOk", jid);
            argv[2 + k] = jobs[k];
        }
        freeReplyObject(redisCommandArgv(rc, 2 + k, argv, NULL));
        free(jobs);
    }
    freeReplyObject(redisCommand(rc, "SADD queues default"));
}

#define HOT_JOBS 2000

/* The hot path asks Redis nothing per job about cancels: 2,000 jobs run
 * with no cancellation outstanding, then 2,000 more with one outstanding
 * (a second copy of its jid is among them and is skipped by the local
 * lookup), and EXISTS calls (INFO commandstats) stay at the heartbeat's
 * few per second instead of one per job. */
static void
test_hotpath(void **state)
{
    (void)state;
    pid_t pid = start_and_wait((const char *const[]){"-c", "4", NULL}, 1);
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    double t0 = test_now();
    push_many("h", HOT_JOBS);
    int want = HOT_JOBS;
    if (!test_wait_until(lines_at_least, &want, 60)) {
        print_log();
        fail_msg("only %d of %d jobs ran", log_lines(), HOT_JOBS);
    }
    long long none = cmd_calls("exists"), secs = (long long)(test_now() - t0) + 1;
    fprintf(stderr, "  %d jobs, no cancel outstanding: %lld EXISTS in %llds\n", HOT_JOBS, none,
            secs);
    /* the heartbeat (1 s) sends one, plus one per running job (4 workers) */
    assert_true(none <= 10 * secs + 10);

    /* one cancellation outstanding: a job scheduled for tomorrow */
    char json[512];
    job_json(json, sizeof json, "CxOk", "dup1");
    freeReplyObject(redisCommand(rc, "ZADD schedule %f %s", dray_now() + 86000, json));
    assert_int_equal(cli_cancel("dup1", 0), 0);
    char v[64];
    record_field("dup1", "where", v, sizeof v);
    assert_string_equal(v, "schedule");
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    t0 = test_now();
    push("CxOk", "dup1"); /* pushed again: among the first to be taken */
    push_many("k", HOT_JOBS);
    want = 2 * HOT_JOBS;
    if (!test_wait_until(lines_at_least, &want, 60)) {
        print_log();
        fail_msg("only %d of %d jobs ran", log_lines(), 2 * HOT_JOBS);
    }
    field_want fw = {"dup1", "worker", "skipped"};
    if (!test_wait_until(field_is, &fw, 10)) {
        print_log();
        fail_msg("the second copy of dup1 was not skipped");
    }
    long long one = cmd_calls("exists");
    secs = (long long)(test_now() - t0) + 1;
    fprintf(stderr, "  %d jobs, one cancel outstanding: %lld EXISTS in %llds\n", HOT_JOBS, one,
            secs);
    assert_true(one <= 10 * secs + 10);
    stop_clean(pid);
    assert_int_equal(runs_of("dup1"), 0);
    assert_int_equal(log_lines(), 2 * HOT_JOBS);
    assert_int_equal(integer("LLEN queue:default"), 0);
}

/* A process that does not acknowledge (stopped with SIGSTOP) holds a cancel
 * up for the bound (6 s) and no longer; it is counted in the record
 * ("late") and logged; the job is still removed and never runs. A Sidekiq
 * process (its info names no dray version) is not waited for: a cancel
 * with only it and a live dray process around takes about a refresh
 * period. */
static void
test_unacked(void **state)
{
    (void)state;
    /* a Ruby Sidekiq process: registered and beating, never acknowledging */
    freeReplyObject(redisCommand(rc, "SADD processes rubyhost:7:abc"));
    freeReplyObject(
        redisCommand(rc, "HSET rubyhost:7:abc info {\"version\":\"7.2.4\"} beat %f", dray_now()));
    pid_t pid = start_and_wait((const char *const[]){"-c", "2", NULL}, 2);
    char json[512];
    job_json(json, sizeof json, "CxOk", "ua1");
    freeReplyObject(redisCommand(rc, "ZADD schedule %f %s", dray_now() + 86000, json));
    job_json(json, sizeof json, "CxOk", "ua2");
    freeReplyObject(redisCommand(rc, "ZADD schedule %f %s", dray_now() + 86000, json));
    double t0 = test_now();
    assert_int_equal(cli_cancel("ua1", 0), 0);
    double took = test_now() - t0;
    char v[64];
    record_field("ua1", "late", v, sizeof v);
    fprintf(stderr, "  cancel with a live dray and a Sidekiq process: %.2fs, late %s\n", took, v);
    assert_string_equal(v, "0");
    assert_true(took < 4.0);

    kill(pid, SIGSTOP); /* alive (its beat is recent) but deaf */
    t0 = test_now();
    int code = cli_cancel("ua2", 0);
    took = test_now() - t0;
    kill(pid, SIGCONT);
    record_field("ua2", "late", v, sizeof v);
    fprintf(stderr, "  cancel with a stopped dray process: %.2fs, late %s\n", took, v);
    assert_int_equal(code, 0);
    assert_string_equal(v, "1");
    assert_true(took >= 5.5 && took < 10.0);
    record_field("ua2", "outcome", v, sizeof v);
    assert_string_equal(v, "removed");
    assert_int_equal(integer("ZCARD schedule"), 0);
    /* the process goes on working after SIGCONT */
    push("CxOk", "after1");
    if (!test_wait_until(ran, "after1", 15)) {
        print_log();
        fail_msg("the process did not work after SIGCONT");
    }
    stop_clean(pid);
    assert_int_equal(runs_of("ua1") + runs_of("ua2"), 0);
}

/* A bad byte in the epoch: `dray cancel` refuses with a clear error and
 * records nothing (the job runs as usual); workers that read the bad epoch
 * check every job in Redis instead, so a recorded cancellation still stops
 * a job. Once the epoch is deleted, cancels work again. */
static void
test_bad_epoch(void **state)
{
    (void)state;
    freeReplyObject(redisCommand(rc, "SET dray:cancels:epoch x7"));
    push("CxOk", "be1");
    assert_int_not_equal(cli_cancel("be1", 0), 0);
    assert_int_equal(integer("EXISTS dray:cancel:be1"), 0);
    assert_int_equal(integer("LLEN queue:default"), 1);
    /* a record as an older dray cancel wrote it (no index, no epoch) */
    freeReplyObject(redisCommand(rc, "HSET dray:cancel:be2 requested %f", dray_now()));
    freeReplyObject(redisCommand(rc, "EXPIRE dray:cancel:be2 600"));
    push("CxOk", "be2");
    push("CxOk", "be3");
    pid_t pid = start_and_wait((const char *const[]){"-c", "2", NULL}, 1);
    if (!test_wait_until(ran, "be3", 15)) {
        print_log();
        fail_msg("be3 did not run");
    }
    field_want fw = {"be2", "worker", "skipped"};
    if (!test_wait_until(field_is, &fw, 10)) {
        print_log();
        fail_msg("be2 was not skipped");
    }
    assert_true(log_has("dray:cancels:epoch is not a count"));
    freeReplyObject(redisCommand(rc, "DEL dray:cancels:epoch"));
    char json[512];
    job_json(json, sizeof json, "CxOk", "be4");
    freeReplyObject(redisCommand(rc, "ZADD schedule %f %s", dray_now() + 86000, json));
    assert_int_equal(cli_cancel("be4", 0), 0);
    stop_clean(pid);
    assert_int_equal(runs_of("be1"), 1);
    assert_int_equal(runs_of("be2"), 0);
    assert_int_equal(runs_of("be3"), 1);
    assert_int_equal(integer("ZCARD schedule"), 0);
}

static int
queue_empty(void *arg)
{
    (void)arg;
    return integer("LLEN queue:default") == 0;
}

/* A job a worker popped before the handshake and starts after it is skipped
 * by the local lookup: with fetch_batch 5 and one thread, a job that never
 * stops runs while four fetched jobs wait in the worker; one of those is
 * cancelled (in no queue, set or running record: not found, exit 3), then
 * the running one; the other three run once, the waiting one never. */
static void
test_prefetched(void **state)
{
    (void)state;
    const char *argv[7] = {"LPUSH", "queue:default"};
    char jobs[5][256];
    for (int i = 0; i < 5; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "pf%d", i);
        job_json(jobs[i], sizeof jobs[i], i ? "CxOk" : "CxPatient", jid);
        argv[2 + i] = jobs[i];
    }
    freeReplyObject(redisCommandArgv(rc, 7, argv, NULL));
    freeReplyObject(redisCommand(rc, "SADD queues default"));
    pid_t pid = start_and_wait((const char *const[]){"-c", "1", "--set", "fetch_batch=5", NULL}, 1);
    if (!test_wait_until(ran, "pf0", 15) || !test_wait_until(queue_empty, NULL, 10)) {
        print_log();
        fail_msg("pf0 did not start with the others fetched");
    }
    assert_int_equal(cli_cancel("pf2", 0), 3);
    if (!test_wait_until(busy_with, "pf0", 10))
        fail_msg("pf0 never showed in the process's work record");
    assert_int_equal(cli_cancel("pf0", 0), 0);
    if (!test_wait_until(ran, "pf4", 15)) {
        print_log();
        fail_msg("the fetched jobs did not run after pf0 stopped");
    }
    field_want fw = {"pf2", "worker", "skipped"};
    assert_true(test_wait_until(field_is, &fw, 10));
    stop_clean(pid);
    assert_int_equal(runs_of("pf0"), 1);
    assert_int_equal(runs_of("pf1"), 1);
    assert_int_equal(runs_of("pf2"), 0);
    assert_int_equal(runs_of("pf3"), 1);
    assert_int_equal(runs_of("pf4"), 1);
}

/* True when the one dray process acknowledged epoch *arg. */
static int
acked_epoch(void *arg)
{
    redisReply *r = redisCommand(rc, "HVALS dray:cancels:seen");
    int hit = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        hit |= atoll(r->element[i]->str) >= *(long long *)arg;
    freeReplyObject(r);
    return hit;
}

/* More than 4,096 cancellations outstanding: the processes check every job
 * with one EXISTS (a recorded one is still skipped) while that lasts, and go
 * back to the local lookup once the index is small again. */
static void
test_many_outstanding(void **state)
{
    (void)state;
    double now = dray_now();
    const char **argv = malloc(sizeof *argv * (2 + 2 * 4097));
    char(*members)[16] = malloc(4097 * sizeof *members), score[32];
    snprintf(score, sizeof score, "%.6f", now);
    argv[0] = "ZADD";
    argv[1] = "dray:cancels";
    for (int i = 0; i < 4097; i++) {
        snprintf(members[i], sizeof members[i], "gone%d", i);
        argv[2 + 2 * i] = score;
        argv[3 + 2 * i] = members[i];
    }
    freeReplyObject(redisCommandArgv(rc, 2 + 2 * 4097, argv, NULL));
    free(argv);
    free(members);
    /* mo1's cancellation, as dray cancel records it */
    freeReplyObject(redisCommand(rc, "HSET dray:cancel:mo1 requested %f", now));
    freeReplyObject(redisCommand(rc, "EXPIRE dray:cancel:mo1 600"));
    freeReplyObject(redisCommand(rc, "ZADD dray:cancels %f mo1", now));
    long long e = integer("INCR dray:cancels:epoch");
    push("CxOk", "mo1");
    push_many("m", 200);
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    pid_t pid = start_and_wait((const char *const[]){"-c", "2", NULL}, 1);
    int want = 200;
    if (!test_wait_until(lines_at_least, &want, 30)) {
        print_log();
        fail_msg("only %d of 200 jobs ran", log_lines());
    }
    field_want fw = {"mo1", "worker", "skipped"};
    assert_true(test_wait_until(field_is, &fw, 10));
    long long many = cmd_calls("exists");
    fprintf(stderr, "  4,098 outstanding: %lld EXISTS for 201 jobs\n", many);
    assert_true(many >= 201);

    /* the index shrinks to mo1 alone: back to the local copy */
    freeReplyObject(redisCommand(rc, "DEL dray:cancels"));
    freeReplyObject(redisCommand(rc, "ZADD dray:cancels %f mo1", now));
    e = integer("INCR dray:cancels:epoch");
    if (!test_wait_until(acked_epoch, &e, 10)) {
        print_log();
        fail_msg("epoch %lld was not acknowledged", e);
    }
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    double t0 = test_now();
    push("CxOk", "mo1");
    push_many("n", 1000);
    want = 1200;
    if (!test_wait_until(lines_at_least, &want, 30)) {
        print_log();
        fail_msg("only %d of 1,200 jobs ran", log_lines());
    }
    long long few = cmd_calls("exists"), secs = (long long)(test_now() - t0) + 1;
    fprintf(stderr, "  1 outstanding again: %lld EXISTS for 1,001 jobs in %llds\n", few, secs);
    assert_true(few <= 10 * secs + 10);
    stop_clean(pid);
    assert_int_equal(runs_of("mo1"), 0);
    assert_int_equal(log_lines(), 1200);
}

static int
inflight_keys(void)
{
    redisReply *r = redisCommand(rc, "KEYS dray:inflight:*");
    int n = r && r->type == REDIS_REPLY_ARRAY ? (int)r->elements : -1;
    freeReplyObject(r);
    return n;
}

static int
all_slow_ran(void *n)
{
    for (int i = 0; i < *(int *)n; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        if (runs_of(jid) < 1)
            return 0;
    }
    return integer("LLEN queue:default") == 0 && inflight_keys() == 0;
}

/* pids of the registered processes (children of a supervisor). */
static int
child_pids(pid_t *out, int max)
{
    redisReply *r = redisCommand(rc, "SMEMBERS processes");
    int n = 0;
    for (size_t i = 0; r && i < r->elements && n < max; i++) {
        const char *id = r->element[i]->str, *c2 = strrchr(id, ':'), *c1 = c2;
        while (c1 > id && *--c1 != ':')
            ;
        out[n++] = (pid_t)atol(c1 + 1);
    }
    freeReplyObject(r);
    return n;
}

/* A host crash: a supervisor and its busy children all killed with SIGKILL
 * (the supervisor stopped first, so it cannot account for them). Their jobs
 * sit in in-flight lists; a new supervisor requeues them at once (their pids
 * are gone) and every job runs, at least once. */
static void
test_orphans(void **state)
{
    (void)state;
    int njobs = 60;
    for (int i = 0; i < njobs; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        push("CxSlow", jid);
    }
    const char *const args[] = {"--processes", "2", "-c", "4", NULL};
    pid_t pid = start_and_wait(args, 2);
    int eight = 8;
    if (!test_wait_until(lines_at_least, &eight, 15)) {
        print_log();
        fail_msg("children not busy");
    }
    pid_t kids[8];
    int nk = child_pids(kids, 8);
    assert_int_equal(nk, 2);
    kill(pid, SIGSTOP);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    g_run = 0;
    int before = log_lines(), left = inflight_keys();
    fprintf(stderr, "  killed the tree after %d runs; %d in-flight lists left\n", before, left);
    assert_true(left > 0);
    double t0 = test_now();
    pid = spawn_run(args);
    if (!test_wait_until(all_slow_ran, &njobs, 60)) {
        print_log();
        fail_msg("jobs left: queue %lld, in-flight lists %d", integer("LLEN queue:default"),
                 inflight_keys());
    }
    fprintf(stderr, "  new supervisor: every job ran %.2fs after its start\n", test_now() - t0);
    stop_clean(pid);
    int again = 0;
    for (int i = 0; i < njobs; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        int n = runs_of(jid);
        assert_true(n >= 1);
        again += n - 1;
    }
    fprintf(stderr, "  %d jobs, %d runs: %d ran again (they were running when killed)\n", njobs,
            log_lines(), again);
    assert_true(again <= left);
    assert_true(log_has("a process that is gone"));
}

/* In-flight lists of processes on another host: one whose heartbeat record
 * is there is left alone; one with no record is requeued only after the
 * 10 s grace (its owner may be starting), and the first one once its record
 * is gone (and the grace has passed). */
static void
test_orphans_foreign(void **state)
{
    (void)state;
    char json[512];
    job_json(json, sizeof json, "CxOk", "live1");
    freeReplyObject(redisCommand(rc, "LPUSH dray:inflight:otherhost:1:aa:0 %s", json));
    freeReplyObject(redisCommand(rc, "HSET otherhost:1:aa beat %f", dray_now()));
    freeReplyObject(redisCommand(rc, "EXPIRE otherhost:1:aa 60"));
    job_json(json, sizeof json, "CxOk", "gone1");
    freeReplyObject(redisCommand(rc, "LPUSH dray:inflight:otherhost:2:bb:0 %s", json));
    double t0 = test_now();
    pid_t pid = start_and_wait((const char *const[]){"--processes", "1", NULL}, 1);
    if (!test_wait_until(ran, "gone1", 30)) {
        print_log();
        fail_msg("gone1 was never requeued");
    }
    double took = test_now() - t0;
    fprintf(stderr, "  no-record list requeued %.1fs after the supervisor started\n", took);
    assert_true(took >= 9.5); /* not before the grace */
    assert_int_equal(runs_of("live1"), 0);
    assert_int_equal(integer("LLEN dray:inflight:otherhost:1:aa:0"), 1);
    freeReplyObject(redisCommand(rc, "DEL otherhost:1:aa")); /* that host died */
    if (!test_wait_until(ran, "live1", 30)) {
        print_log();
        fail_msg("live1 was never requeued after its owner's record went");
    }
    stop_clean(pid);
    assert_int_equal(runs_of("gone1"), 1);
    assert_int_equal(runs_of("live1"), 1);
    assert_int_equal(inflight_keys(), 0);
}

/* Weighted queues in supervised children: -q a,3 -q b,1 with 4,000 jobs in
 * each. Over the first 4,000 runs (both queues full all along) a:b is about
 * 3:1 and b is never starved. */
static void
test_weighted(void **state)
{
    (void)state;
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < 4000; i += 500) {
            const char *argv[502];
            char(*jobs)[256] = malloc(500 * sizeof *jobs);
            argv[0] = "LPUSH";
            argv[1] = q ? "queue:b" : "queue:a";
            for (int k = 0; k < 500; k++) {
                snprintf(jobs[k], sizeof jobs[k],
                         "{\"class\":\"CxOk\",\"args\":[],\"jid\":\"%c%d\",\"queue\":\"%c\","
                         "\"created_at\":1,\"enqueued_at\":1}",
                         q ? 'b' : 'a', i + k, q ? 'b' : 'a');
                argv[2 + k] = jobs[k];
            }
            freeReplyObject(redisCommandArgv(rc, 502, argv, NULL));
            free(jobs);
        }
    freeReplyObject(redisCommand(rc, "SADD queues a b"));
    pid_t pid = spawn_run(
        (const char *const[]){"--processes", "2", "-c", "2", "-q", "a,3", "-q", "b,1", NULL});
    int want = 4000;
    if (!test_wait_until(lines_at_least, &want, 60)) {
        print_log();
        fail_msg("only %d runs", log_lines());
    }
    stop_clean(pid);
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int na = 0, nb = 0;
    while (f && na + nb < 4000 && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %63s", k, j) == 2) {
            na += j[0] == 'a';
            nb += j[0] == 'b';
        }
    if (f)
        fclose(f);
    fprintf(stderr, "  first 4000 runs: %d from a (weight 3), %d from b (weight 1): %.2f:1\n", na,
            nb, nb ? (double)na / nb : 0.0);
    assert_true(nb > 0);
    assert_true(na > 2 * nb && na < 5 * nb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_waiting, flush),
        cmocka_unit_test_setup(test_running_thread, flush),
        cmocka_unit_test_setup(test_running_processes, flush),
        cmocka_unit_test_setup(test_race, flush),
        cmocka_unit_test_setup(test_sched_race, flush),
        cmocka_unit_test_setup(test_orphans, flush),
        cmocka_unit_test_setup(test_orphans_foreign, flush),
        cmocka_unit_test_setup(test_weighted, flush),
        cmocka_unit_test_setup(test_hotpath, flush),
        cmocka_unit_test_setup(test_unacked, flush),
        cmocka_unit_test_setup(test_bad_epoch, flush),
        cmocka_unit_test_setup(test_prefetched, flush),
        cmocka_unit_test_setup(test_many_outstanding, flush),
    };
    if (getenv("CANCEL_TEST")) /* one test while working on it, e.g. test_hotpath */
        cmocka_set_test_filter(getenv("CANCEL_TEST"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
