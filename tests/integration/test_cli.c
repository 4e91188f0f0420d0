/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The dray command end to end: the built binary against a private
 * redis-server. Exit codes, usage errors, push (now, scheduled, bulk),
 * stats/queues/processes, the job sets, config errors, and `dray run` with
 * a --require'd handler library, remote and local signals. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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

#ifndef DRAY_CLI_PATH
#error "DRAY_CLI_PATH must name the dray binary"
#endif

static test_redis srv;
static redisContext *rc;

typedef struct result {
    int code;  /* exit status, or 128 + signal */
    char *out; /* stdout (malloc'ed, NUL-terminated) */
    char *err; /* stderr */
} result;

static void
result_free(result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static void
append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Run dray with a NULL-terminated argument list; capture both streams. */
static result
dray_argv(const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = DRAY_CLI_PATH;
    for (; args[n - 1] && n < 63; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    int po[2], pe[2];
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        signal(SIGPIPE, SIG_DFL);
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    result r = {0, NULL, NULL};
    size_t lo = 0, le = 0;
    append(&r.out, &lo, "", 0);
    append(&r.err, &le, "", 0);
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, 60000) <= 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char buf[65536];
            ssize_t k = read(fds[i].fd, buf, sizeof buf);
            if (k <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                append(&r.out, &lo, buf, (size_t)k);
            } else {
                append(&r.err, &le, buf, (size_t)k);
            }
        }
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

#define DRAY(...) dray_argv((const char *const[]){__VA_ARGS__, NULL})

/* Assert the exit code, and print both streams when it is wrong. */
static void
expect_code(const result *r, int code, const char *what)
{
    if (r->code != code)
        fail_msg("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r->code, code, r->out,
                 r->err);
}

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

static char *
string(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

static void
run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static int
setup(void **state)
{
    (void)state;
    /* A redis-server that dies must fail a test with a message, not kill
     * it with SIGPIPE; the dray children get the default back. */
    signal(SIGPIPE, SIG_IGN);
    if (test_redis_start(&srv))
        return -1;
    rc = test_redis_connect(&srv);
    setenv("DRAY_REDIS_URL", srv.url, 1);
    static const char *const clear[] = {"DRAY_CONFIG",  "DRAY_CONCURRENCY", "DRAY_QUEUES",
                                        "DRAY_MODULES", "DRAY_REQUIRES",    "DRAY_NAMESPACE",
                                        "REDIS_URL"};
    for (size_t i = 0; i < sizeof clear / sizeof *clear; i++)
        unsetenv(clear[i]);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    redisFree(rc);
    test_redis_stop(&srv);
    return 0;
}

static int
flush(void **state)
{
    (void)state;
    run("FLUSHALL");
    return 0;
}

static bool
is_jid_line(const char *s, size_t len)
{
    if (len != DRAY_JID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

/* Number of lines of out that are jids; -1 if any line is not. */
static long
jid_lines(const char *out)
{
    long n = 0;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl || !is_jid_line(p, (size_t)(nl - p)))
            return -1;
        n++;
        p = nl + 1;
    }
    return n;
}

static json_t *
parse_json(const result *r)
{
    json_error_t e;
    json_t *v = json_loads(r->out, 0, &e);
    if (!v)
        fail_msg("not json (%s): %s", e.text, r->out);
    return v;
}

/* ---- usage --------------------------------------------------------------- */

static void
test_usage_and_help(void **state)
{
    (void)state;
    static const struct {
        const char *args[8];
        int code;
        const char *out;
        const char *err;
    } cases[] = {
        {{NULL}, 2, "", "usage: dray"},
        {{"--help"}, 0, "Exit status", ""},
        {{"help"}, 0, "4  configuration error", ""},
        {{"help", "push"}, 0, "--count N", ""},
        {{"help", "nope"}, 2, "", "unknown command"},
        {{"bogus"}, 2, "", "unknown command 'bogus'"},
        {{"version"}, 0, "dray " DRAY_VERSION_STRING, ""},
        {{"--version"}, 0, "dray " DRAY_VERSION_STRING, ""},
        {{"version", "x"}, 2, "", "no arguments"},
        {{"run", "--help"}, 0, "--require LIB", ""},
        {{"push", "-h"}, 0, "ARGS-JSON", ""},
        {{"stats", "--help"}, 0, "--json", ""},
        {{"queues", "--help"}, 0, "latency", ""},
        {{"processes", "--help"}, 0, "heartbeats", ""},
        {{"retries", "--help"}, 0, "retry JID", ""},
        {{"dead", "list", "--help"}, 0, "delete JID", ""},
        {{"signal", "--help"}, 0, "TTIN", ""},
        {{"push"}, 2, "", "missing CLASS"},
        {{"push", "A", "notjson"}, 2, "", "not JSON"},
        {{"push", "A", "{}"}, 2, "", "must be a JSON array"},
        {{"push", "A", "[]", "extra"}, 2, "", "unexpected argument 'extra'"},
        {{"push", "A", "--in", "5", "--at", "2030-01-01"}, 2, "", "not both"},
        {{"push", "A", "--in", "soon"}, 2, "", "--in"},
        {{"push", "A", "--at", "yesterday"}, 2, "", "--at"},
        {{"push", "A", "--retry", "maybe"}, 2, "", "--retry"},
        {{"push", "A", "--count", "0"}, 2, "", "--count"},
        {{"push", "A", "--bogus"}, 2, "", "dray push --help"},
        {{"push", "", "[]"}, 2, "", "CLASS is empty"},
        {{"push", "A", "-q", "bad queue"}, 2, "", "queue"},
        {{"stats", "extra"}, 2, "", "unexpected argument"},
        {{"stats", "--limit", "3"}, 2, "", "only for list"},
        {{"retries"}, 2, "", "missing ACTION"},
        {{"retries", "frob"}, 2, "", "unknown action 'frob'"},
        {{"retries", "retry"}, 2, "", "needs a JID"},
        {{"retries", "list", "x"}, 2, "", "unexpected argument"},
        {{"retries", "delete", "a", "b"}, 2, "", "unexpected argument 'b'"},
        {{"retries", "list", "--limit", "-1"}, 2, "", "--limit"},
        {{"retries", "retry", "x", "--limit", "3"}, 2, "", "only for list"},
        {{"dead", "kill", "abc"}, 2, "", "already dead"},
        {{"signal", "x"}, 2, "", "IDENTITY and SIGNAL"},
        {{"signal", "x", "HUP"}, 2, "", "SIGNAL must be"},
        {{"run", "extra"}, 2, "", "unexpected argument"},
        {{"run", "-c", "abc"}, 2, "", "--concurrency"},
        {{"run", "-c", "0"}, 2, "", "1-1000"},
        {{"run", "-q", "a,x"}, 2, "", "weight"},
        {{"run", "--set", "novalue"}, 2, "", "KEY=VALUE"},
        {{"run", "--set", "bogus=1"}, 2, "", "unknown key 'bogus'"},
        {{"run", "--redis-url", "http://x"}, 2, "", "--redis-url"},
        {{"run", "--frob"}, 2, "", "dray run --help"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        result r = dray_argv(cases[i].args);
        char what[128];
        snprintf(what, sizeof what, "case %zu (%s %s)", i, cases[i].args[0] ? cases[i].args[0] : "",
                 cases[i].args[0] && cases[i].args[1] ? cases[i].args[1] : "");
        expect_code(&r, cases[i].code, what);
        if (!strstr(r.out, cases[i].out) || !strstr(r.err, cases[i].err))
            fail_msg("%s: want stdout ~ '%s', stderr ~ '%s'\nstdout: %s\nstderr: %s", what,
                     cases[i].out, cases[i].err, r.out, r.err);
        result_free(&r);
    }
    assert_int_equal(integer("DBSIZE"), 0); /* no usage error wrote anything */
}

/* ---- push, stats, queues -------------------------------------------------- */

static void
test_push(void **state)
{
    (void)state;
    result r = DRAY("push", "HardJob", "[1, \"two\", {\"x\": 2.5}]");
    expect_code(&r, 0, "push");
    assert_int_equal(jid_lines(r.out), 1);
    r.out[DRAY_JID_LEN] = '\0';
    char *job = string("LINDEX queue:default 0");
    json_t *o = json_loads(job, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "jid")), r.out);
    assert_string_equal(json_string_value(json_object_get(o, "class")), "HardJob");
    assert_int_equal(json_array_size(json_object_get(o, "args")), 3);
    assert_true(json_is_true(json_object_get(o, "retry")));
    assert_true(json_is_real(json_object_get(o, "enqueued_at")));
    json_decref(o);
    free(job);
    result_free(&r);

    r = DRAY("push", "Other", "-q", "critical", "--retry", "3");
    expect_code(&r, 0, "push -q --retry");
    job = string("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":3"));
    assert_non_null(strstr(job, "\"args\":[]"));
    free(job);
    result_free(&r);
    r = DRAY("push", "Other", "-q", "critical", "--retry", "false");
    expect_code(&r, 0, "push --retry false");
    job = string("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":false"));
    free(job);
    result_free(&r);
    r = DRAY("push", "Other", "-q", "critical", "--retry", "0");
    expect_code(&r, 0, "push --retry 0");
    job = string("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":0"));
    free(job);
    result_free(&r);
    assert_int_equal(integer("SISMEMBER queues critical"), 1);

    /* scheduled */
    double now = test_now(); /* monotonic: only for the "in" distance below */
    (void)now;
    r = DRAY("push", "Later", "[]", "--in", "3600");
    expect_code(&r, 0, "push --in");
    r.out[DRAY_JID_LEN] = '\0';
    redisReply *z = redisCommand(rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 2);
    double score = atof(z->element[1]->str);
    assert_non_null(strstr(z->element[0]->str, r.out));
    assert_null(strstr(z->element[0]->str, "enqueued_at"));
    assert_null(strstr(z->element[0]->str, "\"at\""));
    freeReplyObject(z);
    result_free(&r);
    r = DRAY("push", "Later", "--at", "2100-01-01T00:00:00+01:00");
    expect_code(&r, 0, "push --at iso");
    result_free(&r);
    r = DRAY("push", "Later", "--at", "4102444800.5");
    expect_code(&r, 0, "push --at epoch");
    result_free(&r);
    z = redisCommand(rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 6);
    assert_true(atof(z->element[3]->str) == 4102441200.0); /* 2100-01-01 minus one hour */
    assert_true(atof(z->element[5]->str) == 4102444800.5);
    assert_true(score < atof(z->element[3]->str));
    freeReplyObject(z);

    /* namespace */
    r = DRAY("push", "--namespace", "myapp", "NsJob");
    expect_code(&r, 0, "push --namespace");
    assert_int_equal(integer("LLEN myapp:queue:default"), 1);
    assert_int_equal(integer("SISMEMBER myapp:queues default"), 1);
    result_free(&r);
}

static void
test_push_bulk_stats_queues(void **state)
{
    (void)state;
    result r = DRAY("push", "Bulk", "[7]", "--count", "25001", "-q", "bulk");
    expect_code(&r, 0, "push --count");
    assert_int_equal(jid_lines(r.out), 25001);
    assert_int_equal(integer("LLEN queue:bulk"), 25001);
    assert_string_equal(r.err, ""); /* no progress line: stderr is not a tty */
    result_free(&r);
    r = DRAY("push", "Bulk", "--count", "3", "--in", "100");
    expect_code(&r, 0, "push --count --in");
    assert_int_equal(jid_lines(r.out), 3);
    assert_int_equal(integer("ZCARD schedule"), 3);
    result_free(&r);
    run("SET stat:processed 42");
    run("SET stat:failed 5");
    run("LPUSH queue:default {}");
    run("SADD queues default");

    r = DRAY("stats", "--json");
    expect_code(&r, 0, "stats --json");
    json_t *o = parse_json(&r);
    assert_int_equal(json_integer_value(json_object_get(o, "processed")), 42);
    assert_int_equal(json_integer_value(json_object_get(o, "failed")), 5);
    assert_int_equal(json_integer_value(json_object_get(o, "enqueued")), 25002);
    assert_int_equal(json_integer_value(json_object_get(o, "scheduled")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "retries")), 0);
    assert_true(json_is_real(json_object_get(o, "default_queue_latency")));
    json_decref(o);
    result_free(&r);
    r = DRAY("stats");
    expect_code(&r, 0, "stats");
    assert_non_null(strstr(r.out, "processed              42\n"));
    assert_non_null(strstr(r.out, "enqueued               25002\n"));
    result_free(&r);

    r = DRAY("queues");
    expect_code(&r, 0, "queues");
    assert_non_null(strstr(r.out, "QUEUE    SIZE   LATENCY  STATE\n"));
    assert_non_null(strstr(r.out, "\nbulk     25001  "));
    assert_non_null(strstr(r.out, "\ndefault  1      0.00s    running\n"));
    result_free(&r);
    r = DRAY("queues", "--json");
    expect_code(&r, 0, "queues --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(o, 0), "name")), "bulk");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "size")), 25001);
    json_decref(o);
    result_free(&r);
}

/* ---- the job sets ---------------------------------------------------------- */

static const char J1[] = "bbbbbbbbbbbbbbbbbbbbbbb1";
static const char J2[] = "bbbbbbbbbbbbbbbbbbbbbbb2";
static const char J3[] = "bbbbbbbbbbbbbbbbbbbbbbb3";

static void
seed_retry(void)
{
    run("ZADD retry 100 {\"class\":\"Fails\",\"args\":[1],\"jid\":\"%s\",\"queue\":\"low\","
        "\"retry\":true,\"retry_count\":4,\"error_class\":\"KeyError\",\"error_message\":"
        "\"key\\u00e9not\\nfound\",\"failed_at\":1700000000.5}",
        J1);
    run("ZADD retry 200 {\"class\":\"Fails2\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
        "\"retry_count\":0,\"error_class\":\"E\",\"error_message\":\"m\"}",
        J2);
    run("ZADD schedule 4102444800 {\"class\":\"Later\",\"args\":[],\"jid\":\"%s\","
        "\"queue\":\"default\"}",
        J3);
}

static void
test_sets(void **state)
{
    (void)state;
    seed_retry();
    result r = DRAY("retries", "list");
    expect_code(&r, 0, "retries list");
    assert_non_null(strstr(r.out, "NEXT RETRY"));
    assert_non_null(strstr(r.out, J1));
    assert_non_null(strstr(r.out, "KeyError: key\xc3\xa9not found")); /* newline flattened */
    assert_non_null(strstr(r.out, "1970-01-01T00:01:40Z"));
    assert_null(strstr(r.out, "shown"));
    result_free(&r);
    r = DRAY("retries", "list", "--limit", "1");
    expect_code(&r, 0, "retries list --limit");
    assert_non_null(strstr(r.out, J1));
    assert_null(strstr(r.out, J2));
    assert_non_null(strstr(r.out, "(1 of 2 shown"));
    result_free(&r);
    r = DRAY("retries", "list", "--json", "--offset", "1");
    expect_code(&r, 0, "retries list --json");
    json_t *o = parse_json(&r);
    assert_int_equal(json_array_size(o), 1);
    json_t *e = json_array_get(o, 0);
    assert_string_equal(json_string_value(json_object_get(e, "jid")), J2);
    assert_true(json_real_value(json_object_get(e, "score")) == 200);
    assert_int_equal(json_integer_value(json_object_get(e, "retry_count")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "job"), "class")),
                        "Fails2");
    json_decref(o);
    result_free(&r);
    r = DRAY("retries", "show", J2);
    expect_code(&r, 0, "retries show");
    redisReply *m = redisCommand(rc, "ZRANGE retry 1 1");
    assert_int_equal(m->elements, 1);
    char *member = strdup(m->element[0]->str);
    freeReplyObject(m);
    assert_int_equal(strncmp(r.out, member, strlen(member)), 0);
    assert_string_equal(r.out + strlen(member), "\n");
    free(member);
    result_free(&r);
    r = DRAY("scheduled", "list", "--json");
    expect_code(&r, 0, "scheduled list --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 1);
    json_decref(o);
    result_free(&r);

    /* retry now: to queue:low, retry_count 3 */
    r = DRAY("retries", "retry", J1);
    expect_code(&r, 0, "retries retry");
    assert_non_null(strstr(r.out, J1));
    result_free(&r);
    char *job = string("LINDEX queue:low 0");
    assert_non_null(strstr(job, "\"retry_count\":3"));
    free(job);
    r = DRAY("retries", "retry", J1);
    expect_code(&r, 3, "retries retry again");
    assert_non_null(strstr(r.err, "no job with jid"));
    result_free(&r);
    /* kill: to dead */
    r = DRAY("retries", "kill", J2);
    expect_code(&r, 0, "retries kill");
    result_free(&r);
    assert_int_equal(integer("ZCARD retry"), 0);
    assert_int_equal(integer("ZCARD dead"), 1);
    r = DRAY("scheduled", "kill", J3);
    expect_code(&r, 0, "scheduled kill");
    result_free(&r);
    r = DRAY("dead", "list", "--json");
    expect_code(&r, 0, "dead list --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 2);
    json_decref(o);
    result_free(&r);
    /* dead: retry (decrements, as Sidekiq's SortedEntry#retry) and delete */
    r = DRAY("dead", "retry", J2);
    expect_code(&r, 0, "dead retry");
    result_free(&r);
    job = string("LINDEX queue:default 0");
    assert_non_null(strstr(job, "\"retry_count\":-1"));
    free(job);
    r = DRAY("dead", "delete", J3);
    expect_code(&r, 0, "dead delete");
    result_free(&r);
    assert_int_equal(integer("ZCARD dead"), 0);
    r = DRAY("dead", "delete", J3);
    expect_code(&r, 3, "dead delete again");
    result_free(&r);
    r = DRAY("scheduled", "show", J3);
    expect_code(&r, 3, "scheduled show missing");
    result_free(&r);
    r = DRAY("signal", "nobody:1:x", "quiet");
    expect_code(&r, 3, "signal unknown process");
    result_free(&r);
}

/* ---- configuration errors ------------------------------------------------ */

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_config_errors(void **state)
{
    (void)state;
    char conf[400];
    snprintf(conf, sizeof conf, "%s/bad.conf", srv.dir);
    write_file(conf, "concurrency 5\nfrobnicate yes\n");
    result r = DRAY("stats", "-C", conf);
    expect_code(&r, 4, "bad config key");
    assert_non_null(strstr(r.err, "bad.conf:2: unknown key 'frobnicate'"));
    result_free(&r);
    write_file(conf, "concurrency \"5\n");
    r = DRAY("run", "--config", conf);
    expect_code(&r, 4, "unterminated quote");
    assert_non_null(strstr(r.err, "bad.conf:1: key 'concurrency': unterminated quote"));
    result_free(&r);
    r = DRAY("queues", "-C", "/nonexistent/dray.conf");
    expect_code(&r, 4, "missing config");
    result_free(&r);
    setenv("DRAY_CONFIG", conf, 1);
    r = DRAY("queues");
    expect_code(&r, 4, "DRAY_CONFIG");
    result_free(&r);
    unsetenv("DRAY_CONFIG");
    setenv("DRAY_CONCURRENCY", "many", 1);
    r = DRAY("stats");
    expect_code(&r, 4, "bad env");
    assert_non_null(strstr(r.err, "DRAY_CONCURRENCY"));
    result_free(&r);
    unsetenv("DRAY_CONCURRENCY");
    /* a flag overrides the file */
    snprintf(conf, sizeof conf, "%s/ns.conf", srv.dir);
    write_file(conf, "namespace fromfile\n");
    r = DRAY("push", "-C", conf, "A");
    expect_code(&r, 0, "push with config");
    assert_int_equal(integer("LLEN fromfile:queue:default"), 1);
    result_free(&r);
    r = DRAY("push", "-C", conf, "--namespace", "fromflag", "A");
    expect_code(&r, 0, "push flag over config");
    assert_int_equal(integer("LLEN fromflag:queue:default"), 1);
    result_free(&r);
    /* Redis unreachable: runtime error */
    r = DRAY("stats", "--redis-url", "unix:///nonexistent/redis.sock");
    expect_code(&r, 1, "unreachable redis");
    assert_non_null(strstr(r.err, "cannot connect"));
    result_free(&r);
    r = DRAY("push", "A", "--redis-url", "unix:///nonexistent/redis.sock");
    expect_code(&r, 1, "push to unreachable redis");
    result_free(&r);
    /* a module that cannot be loaded (here: does not exist) stops run; so
     * does a missing handler library */
    r = DRAY("run", "--module", "/nonexistent/dray-pro.so");
    expect_code(&r, 4, "run --module");
    assert_non_null(strstr(r.err, "/nonexistent/dray-pro.so"));
    result_free(&r);
    r = DRAY("run", "-r", "/nonexistent/libjobs.so");
    expect_code(&r, 4, "run --require missing");
    assert_non_null(strstr(r.err, "/nonexistent/libjobs.so"));
    result_free(&r);
    setenv("DRAY_REDIS_URL", "ftp://x", 1);
    r = DRAY("stats");
    expect_code(&r, 4, "bad DRAY_REDIS_URL");
    result_free(&r);
    setenv("DRAY_REDIS_URL", srv.url, 1);
}

/* ---- dray run ---------------------------------------------------------------- */

static pid_t
spawn_run(const char *log, const char *const *extra)
{
    char *argv[32];
    int n = 0;
    argv[n++] = DRAY_CLI_PATH;
    argv[n++] = "run";
    for (; extra[n - 2] && n < 31; n++)
        argv[n] = (char *)extra[n - 2];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        signal(SIGPIPE, SIG_DFL);
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    return pid;
}

static int
registered(void *arg)
{
    (void)arg;
    return integer("SCARD processes") == 1;
}

static int
unregistered(void *arg)
{
    (void)arg;
    return integer("SCARD processes") == 0;
}

static char identity[256];

static int
is_quiet(void *arg)
{
    (void)arg;
    char *q = string("HGET %s quiet", identity);
    int yes = q && !strcmp(q, "true");
    free(q);
    return yes;
}

static int
work_done(void *arg)
{
    (void)arg;
    return integer("LLEN queue:default") == 0 && integer("ZCARD retry") == 1;
}

static void
print_log(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    if (f)
        fclose(f);
}

static void
get_identity(void)
{
    redisReply *m = redisCommand(rc, "SMEMBERS processes");
    assert_int_equal(m->elements, 1);
    snprintf(identity, sizeof identity, "%s", m->element[0]->str);
    freeReplyObject(m);
}

static int
wait_exit(pid_t pid, double timeout_s)
{
    double end = test_now() + timeout_s;
    int st;
    while (test_now() < end) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void
test_run_end_to_end(void **state)
{
    (void)state;
    char conf[400], log[400];
    snprintf(conf, sizeof conf, "%s/run.conf", srv.dir);
    snprintf(log, sizeof log, "%s/run.log", srv.dir);
    write_file(conf, "# test\nheartbeat 1\nconcurrency 2\npoll_interval 1\ntimeout 2\n"
                     "queue ignored\n");
    pid_t pid = spawn_run(log, (const char *const[]){"-C", conf, "-r", DRAY_CLI_JOBS, "-q",
                                                     "default", "--tag", "clitest", "--label", "l1",
                                                     "--log-jobs", NULL});
    if (!test_wait_until(registered, NULL, 15)) {
        print_log(log);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("dray run did not register");
    }
    get_identity();
    result r = DRAY("push", "CliOk");
    expect_code(&r, 0, "push CliOk");
    result_free(&r);
    r = DRAY("push", "CliFail", "[1]");
    expect_code(&r, 0, "push CliFail");
    result_free(&r);
    if (!test_wait_until(work_done, NULL, 15)) {
        print_log(log);
        fail_msg("jobs were not worked");
    }
    r = DRAY("retries", "list");
    expect_code(&r, 0, "retries list after failure");
    assert_non_null(strstr(r.out, "CliFail"));
    assert_non_null(strstr(r.out, "CliError: boom"));
    result_free(&r);
    r = DRAY("processes", "--json");
    expect_code(&r, 0, "processes --json");
    json_t *o = parse_json(&r);
    assert_int_equal(json_array_size(o), 1);
    json_t *p = json_array_get(o, 0);
    assert_string_equal(json_string_value(json_object_get(p, "identity")), identity);
    assert_string_equal(json_string_value(json_object_get(p, "tag")), "clitest");
    assert_int_equal(json_integer_value(json_object_get(p, "concurrency")), 2);
    assert_int_equal(json_integer_value(json_object_get(p, "pid")), pid);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "queues"), 0)),
                        "default"); /* -q replaced the config's queues */
    assert_int_equal(json_array_size(json_object_get(p, "queues")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "labels"), 0)), "l1");
    json_decref(o);
    result_free(&r);
    r = DRAY("processes");
    expect_code(&r, 0, "processes");
    assert_non_null(strstr(r.out, "IDENTITY"));
    assert_non_null(strstr(r.out, "running"));
    result_free(&r);

    /* Remote quiet, then a local TERM: a clean stop, exit 0. */
    r = DRAY("signal", identity, "TSTP");
    expect_code(&r, 0, "signal TSTP");
    result_free(&r);
    if (!test_wait_until(is_quiet, NULL, 10)) {
        print_log(log);
        fail_msg("process did not go quiet");
    }
    r = DRAY("processes");
    assert_non_null(strstr(r.out, "quiet"));
    result_free(&r);
    kill(pid, SIGTERM);
    int code = wait_exit(pid, 20);
    if (code != 0) {
        print_log(log);
        fail_msg("dray run exited %d after TERM", code);
    }
    assert_true(test_wait_until(unregistered, NULL, 5));
    assert_true(integer("GET stat:processed") >= 2);
    assert_true(integer("GET stat:failed") >= 1);
}

static void
test_run_local_signals(void **state)
{
    (void)state;
    char log[400];
    snprintf(log, sizeof log, "%s/run2.log", srv.dir);
    pid_t pid = spawn_run(log, (const char *const[]){"--set", "heartbeat=1", "-c", "1", "-t", "1",
                                                     "-r", DRAY_CLI_JOBS, NULL});
    if (!test_wait_until(registered, NULL, 15)) {
        print_log(log);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("dray run did not register");
    }
    get_identity();
    kill(pid, SIGTTIN); /* dump: logs and keeps running */
    kill(pid, SIGTSTP); /* quiet, not stopped by the terminal */
    if (!test_wait_until(is_quiet, NULL, 10)) {
        print_log(log);
        fail_msg("SIGTSTP did not quiet the process");
    }
    kill(pid, SIGINT);
    int code = wait_exit(pid, 20);
    if (code != 0) {
        print_log(log);
        fail_msg("dray run exited %d after INT", code);
    }
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "idle")); /* the TTIN dump */
    assert_non_null(strstr(buf, "quiet"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_usage_and_help, flush),
        cmocka_unit_test_setup(test_push, flush),
        cmocka_unit_test_setup(test_push_bulk_stats_queues, flush),
        cmocka_unit_test_setup(test_sets, flush),
        cmocka_unit_test_setup(test_config_errors, flush),
        cmocka_unit_test_setup(test_run_end_to_end, flush),
        cmocka_unit_test_setup(test_run_local_signals, flush),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
