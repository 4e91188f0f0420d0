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

#include "harness.h"

#ifndef DRAY_CLI_PATH
#error "DRAY_CLI_PATH must name the dray binary"
#endif

#define DRAY(...) test_exec(DRAY_CLI_PATH, (const char *const[]){__VA_ARGS__, NULL})

static int
setup(void **state)
{
    (void)state;
    /* A redis-server that dies must fail a test with a message, not kill
     * it with SIGPIPE; the dray children get the default back. */
    signal(SIGPIPE, SIG_IGN);
    if (test_setup(state))
        return -1;
    setenv("DRAY_REDIS_URL", test_srv.url, 1);
    static const char *const clear[] = {"DRAY_CONFIG",  "DRAY_CONCURRENCY", "DRAY_QUEUES",
                                        "DRAY_MODULES", "DRAY_REQUIRES",    "DRAY_NAMESPACE",
                                        "REDIS_URL"};
    for (size_t i = 0; i < sizeof clear / sizeof *clear; i++)
        unsetenv(clear[i]);
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
parse_json(const test_output *r)
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
        /* the steps of cli_cmd_run and cli_cmd_web, pinned across their split */
        {{"run", "--log-format", "xml"}, 2, "", "--log-format takes text or json, not 'xml'"},
        {{"run", "--statsd-format", "x"}, 2, "", "--statsd-format takes dogstatsd or statsd"},
        {{"run", "--set", "=v"}, 2, "", "--set needs KEY=VALUE, not '=v'"},
        {{"run", "--set", "log_format=xml"}, 4, "", "log_format must be text or json, not 'xml'"},
        {{"run", "--set", "statsd_format=x"}, 4, "", "statsd_format must be dogstatsd or statsd"},
        {{"run", "--metrics-listen", "9", "--processes", "2"}, 4, "", "not with processes/isolate"},
        {{"run", "--metrics-listen", "a:b:c"}, 4, "", "want PORT, HOST:PORT or [IPv6]:PORT"},
        {{"web", "--help"}, 0, "--listen", ""},
        {{"web", "extra"}, 2, "", "unexpected argument 'extra'"},
        {{"web", "--page-size", "0"}, 2, "", "--page-size takes 1-1000, not '0'"},
        {{"web", "--basic-auth", "nocolon"}, 2, "", "--basic-auth takes USER:PASSWORD"},
        {{"web", "--listen", "nowhere"}, 2, "", "--listen takes HOST:PORT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        test_output r = test_exec(DRAY_CLI_PATH, cases[i].args);
        char what[128];
        snprintf(what, sizeof what, "case %zu (%s %s)", i, cases[i].args[0] ? cases[i].args[0] : "",
                 cases[i].args[0] && cases[i].args[1] ? cases[i].args[1] : "");
        test_expect_code(&r, cases[i].code, what);
        if (!strstr(r.out, cases[i].out) || !strstr(r.err, cases[i].err))
            fail_msg("%s: want stdout ~ '%s', stderr ~ '%s'\nstdout: %s\nstderr: %s", what,
                     cases[i].out, cases[i].err, r.out, r.err);
        test_output_free(&r);
    }
    assert_int_equal(test_int("DBSIZE"), 0); /* no usage error wrote anything */
}

/* ---- push, stats, queues -------------------------------------------------- */

static void
test_push(void **state)
{
    (void)state;
    test_output r = DRAY("push", "HardJob", "[1, \"two\", {\"x\": 2.5}]");
    test_expect_code(&r, 0, "push");
    assert_int_equal(jid_lines(r.out), 1);
    r.out[DRAY_JID_LEN] = '\0';
    char *job = test_str("LINDEX queue:default 0");
    json_t *o = json_loads(job, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "jid")), r.out);
    assert_string_equal(json_string_value(json_object_get(o, "class")), "HardJob");
    assert_int_equal(json_array_size(json_object_get(o, "args")), 3);
    assert_true(json_is_true(json_object_get(o, "retry")));
    assert_true(json_is_real(json_object_get(o, "enqueued_at")));
    json_decref(o);
    free(job);
    test_output_free(&r);

    r = DRAY("push", "Other", "-q", "critical", "--retry", "3");
    test_expect_code(&r, 0, "push -q --retry");
    job = test_str("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":3"));
    assert_non_null(strstr(job, "\"args\":[]"));
    free(job);
    test_output_free(&r);
    r = DRAY("push", "Other", "-q", "critical", "--retry", "false");
    test_expect_code(&r, 0, "push --retry false");
    job = test_str("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":false"));
    free(job);
    test_output_free(&r);
    r = DRAY("push", "Other", "-q", "critical", "--retry", "0");
    test_expect_code(&r, 0, "push --retry 0");
    job = test_str("LINDEX queue:critical 0");
    assert_non_null(strstr(job, "\"retry\":0"));
    free(job);
    test_output_free(&r);
    assert_int_equal(test_int("SISMEMBER queues critical"), 1);

    /* scheduled */
    double now = test_now(); /* monotonic: only for the "in" distance below */
    (void)now;
    r = DRAY("push", "Later", "[]", "--in", "3600");
    test_expect_code(&r, 0, "push --in");
    r.out[DRAY_JID_LEN] = '\0';
    redisReply *z = redisCommand(test_rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 2);
    double score = atof(z->element[1]->str);
    assert_non_null(strstr(z->element[0]->str, r.out));
    assert_null(strstr(z->element[0]->str, "enqueued_at"));
    assert_null(strstr(z->element[0]->str, "\"at\""));
    freeReplyObject(z);
    test_output_free(&r);
    r = DRAY("push", "Later", "--at", "2100-01-01T00:00:00+01:00");
    test_expect_code(&r, 0, "push --at iso");
    test_output_free(&r);
    r = DRAY("push", "Later", "--at", "4102444800.5");
    test_expect_code(&r, 0, "push --at epoch");
    test_output_free(&r);
    z = redisCommand(test_rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 6);
    assert_true(atof(z->element[3]->str) == 4102441200.0); /* 2100-01-01 minus one hour */
    assert_true(atof(z->element[5]->str) == 4102444800.5);
    assert_true(score < atof(z->element[3]->str));
    freeReplyObject(z);

    /* namespace */
    r = DRAY("push", "--namespace", "myapp", "NsJob");
    test_expect_code(&r, 0, "push --namespace");
    assert_int_equal(test_int("LLEN myapp:queue:default"), 1);
    assert_int_equal(test_int("SISMEMBER myapp:queues default"), 1);
    test_output_free(&r);
}

static void
test_push_bulk_stats_queues(void **state)
{
    (void)state;
    test_output r = DRAY("push", "Bulk", "[7]", "--count", "25001", "-q", "bulk");
    test_expect_code(&r, 0, "push --count");
    assert_int_equal(jid_lines(r.out), 25001);
    assert_int_equal(test_int("LLEN queue:bulk"), 25001);
    assert_string_equal(r.err, ""); /* no progress line: stderr is not a tty */
    test_output_free(&r);
    r = DRAY("push", "Bulk", "--count", "3", "--in", "100");
    test_expect_code(&r, 0, "push --count --in");
    assert_int_equal(jid_lines(r.out), 3);
    assert_int_equal(test_int("ZCARD schedule"), 3);
    test_output_free(&r);
    test_run("SET stat:processed 42");
    test_run("SET stat:failed 5");
    test_run("LPUSH queue:default {}");
    test_run("SADD queues default");

    r = DRAY("stats", "--json");
    test_expect_code(&r, 0, "stats --json");
    json_t *o = parse_json(&r);
    assert_int_equal(json_integer_value(json_object_get(o, "processed")), 42);
    assert_int_equal(json_integer_value(json_object_get(o, "failed")), 5);
    assert_int_equal(json_integer_value(json_object_get(o, "enqueued")), 25002);
    assert_int_equal(json_integer_value(json_object_get(o, "scheduled")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "retries")), 0);
    assert_true(json_is_real(json_object_get(o, "default_queue_latency")));
    json_decref(o);
    test_output_free(&r);
    r = DRAY("stats");
    test_expect_code(&r, 0, "stats");
    assert_non_null(strstr(r.out, "processed              42\n"));
    assert_non_null(strstr(r.out, "enqueued               25002\n"));
    test_output_free(&r);

    r = DRAY("queues");
    test_expect_code(&r, 0, "queues");
    assert_non_null(strstr(r.out, "QUEUE    SIZE   LATENCY  STATE\n"));
    assert_non_null(strstr(r.out, "\nbulk     25001  "));
    assert_non_null(strstr(r.out, "\ndefault  1      0.00s    running\n"));
    test_output_free(&r);
    r = DRAY("queues", "--json");
    test_expect_code(&r, 0, "queues --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(o, 0), "name")), "bulk");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "size")), 25001);
    json_decref(o);
    test_output_free(&r);
}

/* ---- the job sets ---------------------------------------------------------- */

static const char J1[] = "bbbbbbbbbbbbbbbbbbbbbbb1";
static const char J2[] = "bbbbbbbbbbbbbbbbbbbbbbb2";
static const char J3[] = "bbbbbbbbbbbbbbbbbbbbbbb3";

static void
seed_retry(void)
{
    test_run("ZADD retry 100 {\"class\":\"Fails\",\"args\":[1],\"jid\":\"%s\",\"queue\":\"low\","
             "\"retry\":true,\"retry_count\":4,\"error_class\":\"KeyError\",\"error_message\":"
             "\"key\\u00e9not\\nfound\",\"failed_at\":1700000000.5}",
             J1);
    test_run(
        "ZADD retry 200 {\"class\":\"Fails2\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
        "\"retry_count\":0,\"error_class\":\"E\",\"error_message\":\"m\"}",
        J2);
    test_run("ZADD schedule 4102444800 {\"class\":\"Later\",\"args\":[],\"jid\":\"%s\","
             "\"queue\":\"default\"}",
             J3);
}

static void
test_sets(void **state)
{
    (void)state;
    seed_retry();
    test_output r = DRAY("retries", "list");
    test_expect_code(&r, 0, "retries list");
    assert_non_null(strstr(r.out, "NEXT RETRY"));
    assert_non_null(strstr(r.out, J1));
    assert_non_null(strstr(r.out, "KeyError: key\xc3\xa9not found")); /* newline flattened */
    assert_non_null(strstr(r.out, "1970-01-01T00:01:40Z"));
    assert_null(strstr(r.out, "shown"));
    test_output_free(&r);
    r = DRAY("retries", "list", "--limit", "1");
    test_expect_code(&r, 0, "retries list --limit");
    assert_non_null(strstr(r.out, J1));
    assert_null(strstr(r.out, J2));
    assert_non_null(strstr(r.out, "(1 of 2 shown"));
    test_output_free(&r);
    r = DRAY("retries", "list", "--json", "--offset", "1");
    test_expect_code(&r, 0, "retries list --json");
    json_t *o = parse_json(&r);
    assert_int_equal(json_array_size(o), 1);
    json_t *e = json_array_get(o, 0);
    assert_string_equal(json_string_value(json_object_get(e, "jid")), J2);
    assert_true(json_real_value(json_object_get(e, "score")) == 200);
    assert_int_equal(json_integer_value(json_object_get(e, "retry_count")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "job"), "class")),
                        "Fails2");
    json_decref(o);
    test_output_free(&r);
    r = DRAY("retries", "show", J2);
    test_expect_code(&r, 0, "retries show");
    redisReply *m = redisCommand(test_rc, "ZRANGE retry 1 1");
    assert_int_equal(m->elements, 1);
    char *member = strdup(m->element[0]->str);
    freeReplyObject(m);
    assert_int_equal(strncmp(r.out, member, strlen(member)), 0);
    assert_string_equal(r.out + strlen(member), "\n");
    free(member);
    test_output_free(&r);
    r = DRAY("scheduled", "list", "--json");
    test_expect_code(&r, 0, "scheduled list --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 1);
    json_decref(o);
    test_output_free(&r);

    /* retry now: to queue:low, retry_count 3 */
    r = DRAY("retries", "retry", J1);
    test_expect_code(&r, 0, "retries retry");
    assert_non_null(strstr(r.out, J1));
    test_output_free(&r);
    char *job = test_str("LINDEX queue:low 0");
    assert_non_null(strstr(job, "\"retry_count\":3"));
    free(job);
    r = DRAY("retries", "retry", J1);
    test_expect_code(&r, 3, "retries retry again");
    assert_non_null(strstr(r.err, "no job with jid"));
    test_output_free(&r);
    /* kill: to dead */
    r = DRAY("retries", "kill", J2);
    test_expect_code(&r, 0, "retries kill");
    test_output_free(&r);
    assert_int_equal(test_int("ZCARD retry"), 0);
    assert_int_equal(test_int("ZCARD dead"), 1);
    r = DRAY("scheduled", "kill", J3);
    test_expect_code(&r, 0, "scheduled kill");
    test_output_free(&r);
    r = DRAY("dead", "list", "--json");
    test_expect_code(&r, 0, "dead list --json");
    o = parse_json(&r);
    assert_int_equal(json_array_size(o), 2);
    json_decref(o);
    test_output_free(&r);
    /* dead: retry (decrements, as Sidekiq's SortedEntry#retry) and delete */
    r = DRAY("dead", "retry", J2);
    test_expect_code(&r, 0, "dead retry");
    test_output_free(&r);
    job = test_str("LINDEX queue:default 0");
    assert_non_null(strstr(job, "\"retry_count\":-1"));
    free(job);
    r = DRAY("dead", "delete", J3);
    test_expect_code(&r, 0, "dead delete");
    test_output_free(&r);
    assert_int_equal(test_int("ZCARD dead"), 0);
    r = DRAY("dead", "delete", J3);
    test_expect_code(&r, 3, "dead delete again");
    test_output_free(&r);
    r = DRAY("scheduled", "show", J3);
    test_expect_code(&r, 3, "scheduled show missing");
    test_output_free(&r);
    r = DRAY("signal", "nobody:1:x", "quiet");
    test_expect_code(&r, 3, "signal unknown process");
    test_output_free(&r);
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
    snprintf(conf, sizeof conf, "%s/bad.conf", test_srv.dir);
    write_file(conf, "concurrency 5\nfrobnicate yes\n");
    test_output r = DRAY("stats", "-C", conf);
    test_expect_code(&r, 4, "bad config key");
    assert_non_null(strstr(r.err, "bad.conf:2: unknown key 'frobnicate'"));
    test_output_free(&r);
    write_file(conf, "concurrency \"5\n");
    r = DRAY("run", "--config", conf);
    test_expect_code(&r, 4, "unterminated quote");
    assert_non_null(strstr(r.err, "bad.conf:1: key 'concurrency': unterminated quote"));
    test_output_free(&r);
    r = DRAY("queues", "-C", "/nonexistent/dray.conf");
    test_expect_code(&r, 4, "missing config");
    test_output_free(&r);
    setenv("DRAY_CONFIG", conf, 1);
    r = DRAY("queues");
    test_expect_code(&r, 4, "DRAY_CONFIG");
    test_output_free(&r);
    unsetenv("DRAY_CONFIG");
    setenv("DRAY_CONCURRENCY", "many", 1);
    r = DRAY("stats");
    test_expect_code(&r, 4, "bad env");
    assert_non_null(strstr(r.err, "DRAY_CONCURRENCY"));
    test_output_free(&r);
    unsetenv("DRAY_CONCURRENCY");
    /* a flag overrides the file */
    snprintf(conf, sizeof conf, "%s/ns.conf", test_srv.dir);
    write_file(conf, "namespace fromfile\n");
    r = DRAY("push", "-C", conf, "A");
    test_expect_code(&r, 0, "push with config");
    assert_int_equal(test_int("LLEN fromfile:queue:default"), 1);
    test_output_free(&r);
    r = DRAY("push", "-C", conf, "--namespace", "fromflag", "A");
    test_expect_code(&r, 0, "push flag over config");
    assert_int_equal(test_int("LLEN fromflag:queue:default"), 1);
    test_output_free(&r);
    /* Redis unreachable: runtime error */
    r = DRAY("stats", "--redis-url", "unix:///nonexistent/redis.sock");
    test_expect_code(&r, 1, "unreachable redis");
    assert_non_null(strstr(r.err, "cannot connect"));
    test_output_free(&r);
    r = DRAY("push", "A", "--redis-url", "unix:///nonexistent/redis.sock");
    test_expect_code(&r, 1, "push to unreachable redis");
    test_output_free(&r);
    /* a module that cannot be loaded (here: does not exist) stops run; so
     * does a missing handler library */
    r = DRAY("run", "--module", "/nonexistent/dray-pro.so");
    test_expect_code(&r, 4, "run --module");
    assert_non_null(strstr(r.err, "/nonexistent/dray-pro.so"));
    test_output_free(&r);
    r = DRAY("run", "-r", "/nonexistent/libjobs.so");
    test_expect_code(&r, 4, "run --require missing");
    assert_non_null(strstr(r.err, "/nonexistent/libjobs.so"));
    test_output_free(&r);
    setenv("DRAY_REDIS_URL", "ftp://x", 1);
    r = DRAY("stats");
    test_expect_code(&r, 4, "bad DRAY_REDIS_URL");
    test_output_free(&r);
    setenv("DRAY_REDIS_URL", test_srv.url, 1);
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
    return test_spawn_logged(log, NULL, argv);
}

static int
registered(void *arg)
{
    (void)arg;
    return test_int("SCARD processes") == 1;
}

static int
unregistered(void *arg)
{
    (void)arg;
    return test_int("SCARD processes") == 0;
}

static char identity[256];

static int
is_quiet(void *arg)
{
    (void)arg;
    char *q = test_str("HGET %s quiet", identity);
    int yes = q && !strcmp(q, "true");
    free(q);
    return yes;
}

static int
work_done(void *arg)
{
    (void)arg;
    return test_int("LLEN queue:default") == 0 && test_int("ZCARD retry") == 1;
}

static void
get_identity(void)
{
    redisReply *m = redisCommand(test_rc, "SMEMBERS processes");
    assert_int_equal(m->elements, 1);
    snprintf(identity, sizeof identity, "%s", m->element[0]->str);
    freeReplyObject(m);
}

static void
test_run_end_to_end(void **state)
{
    (void)state;
    char conf[400], log[400];
    snprintf(conf, sizeof conf, "%s/run.conf", test_srv.dir);
    snprintf(log, sizeof log, "%s/run.log", test_srv.dir);
    write_file(conf, "# test\nheartbeat 1\nconcurrency 2\npoll_interval 1\ntimeout 2\n"
                     "queue ignored\n");
    pid_t pid = spawn_run(log, (const char *const[]){"-C", conf, "-r", DRAY_CLI_JOBS, "-q",
                                                     "default", "--tag", "clitest", "--label", "l1",
                                                     "--log-jobs", NULL});
    test_child_wait(pid, log, registered, NULL, 15, "dray run did not register");
    get_identity();
    test_output r = DRAY("push", "CliOk");
    test_expect_code(&r, 0, "push CliOk");
    test_output_free(&r);
    r = DRAY("push", "CliFail", "[1]");
    test_expect_code(&r, 0, "push CliFail");
    test_output_free(&r);
    if (!test_wait_until(work_done, NULL, 15)) {
        test_print_file(log);
        fail_msg("jobs were not worked");
    }
    r = DRAY("retries", "list");
    test_expect_code(&r, 0, "retries list after failure");
    assert_non_null(strstr(r.out, "CliFail"));
    assert_non_null(strstr(r.out, "CliError: boom"));
    test_output_free(&r);
    r = DRAY("processes", "--json");
    test_expect_code(&r, 0, "processes --json");
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
    test_output_free(&r);
    r = DRAY("processes");
    test_expect_code(&r, 0, "processes");
    assert_non_null(strstr(r.out, "IDENTITY"));
    assert_non_null(strstr(r.out, "running"));
    test_output_free(&r);

    /* Remote quiet, then a local TERM: a clean stop, exit 0. */
    r = DRAY("signal", identity, "TSTP");
    test_expect_code(&r, 0, "signal TSTP");
    test_output_free(&r);
    if (!test_wait_until(is_quiet, NULL, 10)) {
        test_print_file(log);
        fail_msg("process did not go quiet");
    }
    r = DRAY("processes");
    assert_non_null(strstr(r.out, "quiet"));
    test_output_free(&r);
    kill(pid, SIGTERM);
    int code = test_wait_exit(pid, 20);
    if (code != 0) {
        test_print_file(log);
        fail_msg("dray run exited %d after TERM", code);
    }
    assert_true(test_wait_until(unregistered, NULL, 5));
    assert_true(test_int("GET stat:processed") >= 2);
    assert_true(test_int("GET stat:failed") >= 1);
}

static void
test_run_local_signals(void **state)
{
    (void)state;
    char log[400];
    snprintf(log, sizeof log, "%s/run2.log", test_srv.dir);
    pid_t pid = spawn_run(log, (const char *const[]){"--set", "heartbeat=1", "-c", "1", "-t", "1",
                                                     "-r", DRAY_CLI_JOBS, NULL});
    test_child_wait(pid, log, registered, NULL, 15, "dray run did not register");
    get_identity();
    kill(pid, SIGTTIN); /* dump: logs and keeps running */
    kill(pid, SIGTSTP); /* quiet, not stopped by the terminal */
    if (!test_wait_until(is_quiet, NULL, 10)) {
        test_print_file(log);
        fail_msg("SIGTSTP did not quiet the process");
    }
    kill(pid, SIGINT);
    int code = test_wait_exit(pid, 20);
    if (code != 0) {
        test_print_file(log);
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
        cmocka_unit_test_setup(test_usage_and_help, test_flush),
        cmocka_unit_test_setup(test_push, test_flush),
        cmocka_unit_test_setup(test_push_bulk_stats_queues, test_flush),
        cmocka_unit_test_setup(test_sets, test_flush),
        cmocka_unit_test_setup(test_config_errors, test_flush),
        cmocka_unit_test_setup(test_run_end_to_end, test_flush),
        cmocka_unit_test_setup(test_run_local_signals, test_flush),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
