/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* "Never lose a job" in the core, against a real redis-server: a Redis that
 * stalls while a worker is blocked in BRPOP/BLMPOP, a handler that crashes
 * the process, malformed payloads in the dead set, and last-resort logs of
 * payloads that could not be written back. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "harness.h"
#include "server.h"

static atomic_int ran;

/* ---- server helpers -------------------------------------------------------- */

static void
opts_for_test(dray_options *o, int conc)
{
    test_options(o, NULL, conc);
    o->log_level = DRAY_LOG_WARN;
}

static void
go(test_running *r, dray_options *o)
{
    test_server_new(r, o);
    assert_int_equal(dray_server_register(r->s, "Ok", test_h_count, &ran, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "Fail", test_h_fail, "ArgumentError", NULL), 0);
    test_server_go(r);
}

static int
ran_at_least(void *n)
{
    return atomic_load(&ran) >= *(int *)n;
}

static int
blocked_clients(void *n)
{
    redisReply *r = test_redis_cmd(test_rc, "INFO clients");
    const char *p = strstr(r->str, "blocked_clients:");
    int v = p ? atoi(p + 16) : -1;
    freeReplyObject(r);
    return v >= *(int *)n;
}

static int
dead_at_least(void *n)
{
    return test_int("ZCARD dead") >= *(int *)n;
}

/* ---- 1. a Redis stall while a worker is blocked in its fetch --------------- */

/* With the worker blocked in its fetch, push one job and freeze Redis for
 * stall_s in the same write: Redis pops the job for the worker at once, but
 * its reply leaves only after the sleep. */
static void
push_then_stall(int stall_s)
{
    redisContext *c = test_redis_connect(&test_srv);
    redisAppendCommand(c, "LPUSH queue:default %s",
                       "{\"class\":\"Ok\",\"args\":[],\"jid\":"
                       "\"0123456789abcdef01234567\",\"queue\":"
                       "\"default\"}");
    redisAppendCommand(c, "DEBUG SLEEP %d", stall_s);
    void *r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(redisGetReply(c, &r), REDIS_OK);
        freeReplyObject(r);
    }
    redisFree(c);
}

static void
stall_case(int fetch_batch, int stall_s, int expect_lost)
{
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    atomic_store(&ran, 0);
    test_log_reset(DRAY_LOG_WARN);
    test_running r;
    dray_options o;
    opts_for_test(&o, 1);
    o.command_timeout_ms = 500; /* the old read timeout was this + 2 s */
    o.fetch_batch = fetch_batch;
    go(&r, &o);
    int one = 1;
    assert_true(test_wait_until(blocked_clients, &one, 10));
    double t0 = test_now();
    push_then_stall(stall_s);
    if (expect_lost) {
        assert_true(test_wait_until(test_log_has, "may have popped a job", 20));
        char *l = test_log_line("may have popped a job");
        assert_non_null(strstr(l, "ERROR"));
        assert_non_null(strstr(l, "queue(s) default"));
        free(l);
        dray_server_counts cnt;
        dray_server_counts_get(r.s, &cnt);
        assert_int_equal(cnt.fetch_lost, 1);
        /* the worker adds it to stat:fetch_lost once Redis answers again */
        double deadline = test_now() + 15;
        while (test_int("GET stat:fetch_lost") != 1 && test_now() < deadline)
            dray__sleep_ms(20);
        assert_int_equal(test_int("GET stat:fetch_lost"), 1);
        assert_int_equal(atomic_load(&ran), 0); /* the residual loss, now reported */
    } else {
        assert_true(test_wait_until(ran_at_least, &one, 20));
        dray_server_counts cnt;
        dray_server_counts_get(r.s, &cnt);
        assert_int_equal(cnt.fetch_lost, 0);
        assert_null(test_log_line("may have popped"));
    }
    printf("# fetch_batch %d, stall %d s: job %s after %.1f s\n", fetch_batch, stall_s,
           atomic_load(&ran) ? "ran" : "lost (reported)", test_now() - t0);
    test_server_finish(&r);
    assert_int_equal(test_int("LLEN queue:default"), 0);
}

/* A stall longer than the old read timeout (command timeout + 2 s) but
 * shorter than block + 5 s loses nothing. */
static void
test_short_stall_loses_nothing(void **state)
{
    (void)state;
    stall_case(1, 4, 0); /* BRPOP */
    stall_case(4, 4, 0); /* BLMPOP */
}

/* A stall beyond block + margin is the one case basic fetch can lose: it is
 * logged at ERROR with the queue and counted. */
static void
test_long_stall_is_reported(void **state)
{
    (void)state;
    stall_case(1, 8, 1);
}

/* ---- 2. a handler that crashes the process ------------------------------- */

static int
h_segv(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    volatile uintptr_t addr = 16; /* opaque to the compiler: a real fault, not raise() */
    *(volatile char *)addr = 1;
    return 0;
}

static int
h_abort(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    abort();
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void
crash_case(const char *klass, int want_sig)
{
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    const char *jid = "c0ffee0123456789abcdef01";
    char raw[200];
    snprintf(raw, sizeof raw, "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\"}",
             klass, jid);
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:default %s", raw));
    char path[400];
    snprintf(path, sizeof path, "%s/crash-%s.log", test_srv.dir, klass);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        /* a plain process: cmocka's own crash handlers stay in the parent */
        const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        dray_options o;
        opts_for_test(&o, 2);
        dray_server *s;
        if (dray_server_new(&o, &s, NULL, 0) ||
            dray_server_register(s, "Segv", h_segv, NULL, NULL) ||
            dray_server_register(s, "Abort", h_abort, NULL, NULL))
            _exit(3);
        int e = dray_server_run(s);
        _exit(e ? 4 : 5); /* not reached: the handler kills the process */
    }
    int status = 0;
    double deadline = test_now() + 30;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && test_now() < deadline)
        dray__sleep_ms(20);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the crashing worker did not die within 30 s");
    }
    char *out = slurp(path);
    assert_non_null(out);
    printf("# %s: child %s %d; report:\n%s", klass,
           WIFSIGNALED(status) ? "died by signal" : "exited with",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), want_sig);
    assert_non_null(strstr(out, "dray FATAL"));
    char want[128];
    snprintf(want, sizeof want, "jid=%s class=%s queue=default <- crashed in this job", jid, klass);
    assert_non_null(strstr(out, want));
    /* the whole payload, so it can be pushed again */
    char payload[300];
    snprintf(payload, sizeof payload, "payload (%zu bytes, escaped): %s\n", strlen(raw), raw);
    assert_non_null(strstr(out, payload));
    assert_non_null(strstr(out, "backtrace of thread"));
    assert_non_null(strstr(out, "[0x")); /* a frame of backtrace_symbols_fd */
    free(out);
    /* basic fetch: the job is gone from Redis, only the report names it */
    assert_int_equal(test_int("LLEN queue:default"), 0);
}

static void
test_fatal_signal_reports_running_jobs(void **state)
{
    (void)state;
    crash_case("Segv", SIGSEGV);
    crash_case("Abort", SIGABRT);
}

/* ---- 3. malformed payloads in the dead set -------------------------------- */

static json_t *
dead_entry_for(const char *raw, size_t rawlen)
{
    redisReply *d = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    json_t *found = NULL;
    for (size_t i = 0; i < d->elements && !found; i++) {
        json_t *o = json_loadb(d->element[i]->str, d->element[i]->len, 0, NULL);
        json_t *a = json_array_get(json_object_get(o, "args"), 0);
        json_t *b64 = json_object_get(o, "payload_base64");
        int match = 0;
        if (json_is_string(b64)) {
            unsigned char *bin = malloc(rawlen + 1);
            size_t blen = 0;
            match =
                sodium_base642bin(bin, rawlen + 1, json_string_value(b64), json_string_length(b64),
                                  NULL, &blen, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
                blen == rawlen && !memcmp(bin, raw, rawlen);
            free(bin);
        } else if (json_is_string(a)) {
            match = json_string_length(a) == rawlen && !memcmp(json_string_value(a), raw, rawlen);
        }
        if (match)
            found = o;
        else
            json_decref(o);
    }
    freeReplyObject(d);
    return found;
}

static void
test_malformed_payloads_are_readable_dead_jobs(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    const char *bad_json = "{not json";
    const char bad_utf8[] = "{\"class\":\"Ok\",\"args\":[\"\xff\xfe\"]}";
    const char *array = "[1,2,3]";
    size_t hlen = 64 * 1024;
    char *huge = malloc(hlen + 1);
    snprintf(huge, hlen + 1, "{\"class\":\"Ok\",\"args\":[\"");
    size_t k = strlen(huge);
    memset(huge + k, 'x', hlen - k - 3);
    memcpy(huge + hlen - 3, "\"]}", 4);
    struct {
        const char *p;
        size_t n;
    } raws[4] = {{bad_json, strlen(bad_json)},
                 {bad_utf8, sizeof bad_utf8 - 1},
                 {array, strlen(array)},
                 {huge, hlen}};
    for (int i = 0; i < 4; i++) {
        const char *argv[3] = {"LPUSH", "queue:default", raws[i].p};
        size_t lens[3] = {5, 13, raws[i].n};
        freeReplyObject(redisCommandArgv(test_rc, 3, argv, lens));
    }
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:default {\"class\":\"Ok\",\"args\":[]}"));
    atomic_store(&ran, 0);
    test_running r;
    dray_options o;
    opts_for_test(&o, 1);
    o.max_payload = 16 * 1024; /* the 64 KiB job is too big */
    o.log_level = DRAY_LOG_OFF;
    go(&r, &o);
    int one = 1, four = 4;
    assert_true(test_wait_until(ran_at_least, &one, 10));
    assert_true(test_wait_until(dead_at_least, &four, 10));
    for (int i = 0; i < 4; i++) {
        json_t *e = dead_entry_for(raws[i].p, raws[i].n);
        if (!e)
            fail_msg("payload %d is not in the dead set whole", i);
        assert_string_equal(json_string_value(json_object_get(e, "class")), "Dray::MalformedJob");
        assert_string_equal(json_string_value(json_object_get(e, "error_class")),
                            "Dray::MalformedPayload");
        const char *msg = json_string_value(json_object_get(e, "error_message"));
        assert_non_null(msg);
        assert_true(strlen(msg) > 0);
        assert_string_equal(json_string_value(json_object_get(e, "queue")), "default");
        assert_int_equal(strlen(json_string_value(json_object_get(e, "jid"))), 24);
        assert_true(json_is_number(json_object_get(e, "failed_at")));
        /* a valid job now: `dray dead retry` can move it */
        char err[256];
        dray_job *j;
        const char *txt = json_dumps(e, JSON_COMPACT);
        assert_int_equal(dray_job_parse(txt, strlen(txt), 0, &j, err, sizeof err), 0);
        dray_job_free(j);
        free((void *)txt);
        printf("# dead entry %d: %s: %.80s\n", i,
               json_string_value(json_object_get(e, "error_class")), msg);
        json_decref(e);
    }
    /* What `dray dead list` reads: the reason, not only the log. */
    dray_api *api;
    assert_int_equal(dray_api_new(&o, &api, NULL, 0), 0);
    dray_set_entry *ents;
    size_t n;
    assert_int_equal(dray_api_set_list(api, DRAY_SET_DEAD, 0, 0, &ents, &n), 0);
    assert_int_equal(n, 4);
    char jid[DRAY_JID_BYTES] = "";
    char first_msg[512] = "";
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ents[i].klass, "Dray::MalformedJob");
        assert_string_equal(ents[i].error_class, "Dray::MalformedPayload");
        assert_non_null(ents[i].error_message);
        if (strstr(ents[i].member, "not json")) {
            snprintf(jid, sizeof jid, "%s", ents[i].jid);
            snprintf(first_msg, sizeof first_msg, "%s", ents[i].error_message);
        }
    }
    dray_api_entries_free(ents, n);
    assert_true(jid[0]);
    /* `dray dead retry`: it runs, dies again with the same reason */
    assert_int_equal(dray_api_set_retry(api, DRAY_SET_DEAD, jid), 0);
    double deadline = test_now() + 10;
    dray_set_entry *again = NULL;
    while (test_now() < deadline) {
        if (test_int("LLEN queue:default") == 0 &&
            dray_api_set_find(api, DRAY_SET_DEAD, jid, &again) == 0)
            break;
        dray__sleep_ms(20);
    }
    assert_non_null(again);
    assert_string_equal(again->error_class, "Dray::MalformedPayload");
    assert_string_equal(again->error_message, first_msg);
    dray_api_entries_free(again, 1);
    dray_api_free(api);
    test_server_finish(&r);
    assert_int_equal(test_int("ZCARD dead"), 4);
    free(huge);
}

/* ---- 4. last-resort logs hold the whole payload, escaped ------------------ */

/* Undo dray__escape: "\\" and "\xNN". */
static size_t
unescape(const char *in, char *out)
{
    size_t k = 0;
    for (size_t i = 0; in[i]; i++) {
        if (in[i] == '\\' && in[i + 1] == '\\') {
            out[k++] = '\\';
            i++;
        } else if (in[i] == '\\' && in[i + 1] == 'x' && in[i + 2] && in[i + 3]) {
            char hex[3] = {in[i + 2], in[i + 3], 0};
            out[k++] = (char)strtol(hex, NULL, 16);
            i += 3;
        } else {
            out[k++] = in[i];
        }
    }
    return k;
}

static void
test_unrecordable_payload_logged_whole(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    /* The dead set will not take it: the key has the wrong type. */
    freeReplyObject(test_redis_cmd(test_rc, "SET dead not-a-zset"));
    size_t plen = 100 * 1024;
    char *p = malloc(plen);
    for (size_t i = 0; i < plen; i++)
        p[i] = (char)("{bad\n\x1b[31m\\\xff\x01payload}"[i % 20]);
    const char *argv[3] = {"LPUSH", "queue:default", p};
    size_t lens[3] = {5, 13, plen};
    freeReplyObject(redisCommandArgv(test_rc, 3, argv, lens));
    test_log_reset(DRAY_LOG_WARN);
    test_running r;
    dray_options o;
    opts_for_test(&o, 1);
    go(&r, &o);
    assert_true(test_wait_until(test_log_has, "malformed job not recorded", 20));
    test_server_finish(&r);
    char *l = test_log_line("malformed job not recorded");
    assert_non_null(l);
    assert_non_null(strstr(l, "ERROR"));
    for (const char *c = l; *c; c++) /* one printable line: no control byte got through */
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            fail_msg("raw byte 0x%02x in the log line", (unsigned char)*c);
    const char *tag = "escaped): ";
    char *at = strstr(l, tag);
    assert_non_null(at);
    char *back = malloc(strlen(at));
    size_t blen = unescape(at + strlen(tag), back);
    printf("# log line %zu bytes; payload %zu bytes, %zu recovered\n", strlen(l), plen, blen);
    assert_int_equal(blen, plen);
    assert_memory_equal(back, p, plen);
    free(back);
    free(l);
    free(p);

    /* A failed job the retry set will not take: its whole JSON in the log. */
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    freeReplyObject(test_redis_cmd(test_rc, "SET retry not-a-zset"));
    size_t alen = 100 * 1024;
    char *arg = malloc(alen + 1);
    for (size_t i = 0; i < alen; i++)
        arg[i] = (char)('a' + i % 26);
    arg[alen] = '\0';
    json_t *job = json_pack("{s:s, s:[s], s:s, s:s}", "class", "Fail", "args", arg, "jid",
                            "feedfacefeedfacefeedface", "queue", "default");
    char *txt = json_dumps(job, JSON_COMPACT);
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:default %s", txt));
    test_log_reset(DRAY_LOG_WARN);
    go(&r, &o);
    assert_true(test_wait_until(test_log_has, "retry not recorded", 20));
    test_server_finish(&r);
    l = test_log_line("retry not recorded");
    assert_non_null(strstr(l, "jid=feedfacefeedfacefeedface"));
    assert_non_null(strstr(l, arg)); /* every byte of the argument, not 2 KiB of it */
    printf("# retry-set failure: log line %zu bytes for a %zu-byte argument\n", strlen(l), alen);
    free(l);
    free(txt);
    free(arg);
    json_decref(job);
}

/* Out of memory, the last-resort log still holds every byte: in parts. */
static void
test_payload_log_parts_under_oom(void **state)
{
    (void)state;
    size_t plen = 3000;
    char *p = malloc(plen);
    for (size_t i = 0; i < plen; i++)
        p[i] = (char)(i % 251 + 1);
    test_log_reset(DRAY_LOG_WARN);
    dray_log_set_level(DRAY_LOG_WARN);
    dray__alloc_fail_after(0);
    dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, p, plen, "test %s", "oom");
    dray__alloc_fail_after(-1);
    char *back = malloc(plen * 2);
    size_t blen = 0;
    for (int part = 1; part <= 3; part++) {
        char needle[64];
        snprintf(needle, sizeof needle, "payload part %d/3 ", part);
        char *l = test_log_line(needle);
        if (!l)
            fail_msg("no line with '%s'", needle);
        char *at = strstr(strstr(l, needle), "): ");
        assert_non_null(at);
        blen += unescape(at + 3, back + blen);
        free(l);
    }
    assert_int_equal(blen, plen);
    assert_memory_equal(back, p, plen);
    free(back);
    free(p);
}

/* ---- 5. fetch under memory pressure and against a Redis that sends too much */

/* dray__fetch on a worker of a server that is not running (this thread is
 * the worker): with the Nth allocation failing, for every N, the job is
 * either fetched or back in its queue, never gone. */
static void
test_fetch_oom_keeps_the_job(void **state)
{
    (void)state;
    for (int batch = 1; batch <= 3; batch += 2) {
        freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
        dray_options o;
        opts_for_test(&o, 1);
        o.fetch_batch = batch;
        dray_server *s;
        assert_int_equal(dray_server_new(&o, &s, NULL, 0), 0);
        dray__worker *w = &s->workers[0];
        int fetched = 0, kept = 0;
        for (long k = 0; k < 30; k++) {
            freeReplyObject(test_redis_cmd(
                test_rc, "LPUSH queue:default {\"class\":\"Ok\",\"args\":[%ld]}", k));
            dray__unit u;
            dray__alloc_fail_after(k);
            int r = dray__fetch(w, &u);
            dray__alloc_fail_after(-1);
            long long left = test_int("LLEN queue:default");
            if (r == 1) {
                fetched++;
                assert_int_equal(left, 0);
                assert_non_null(strstr(u.payload, "\"args\""));
                dray__unit_clear(&u);
            } else {
                kept++;
                if (left != 1)
                    fail_msg("batch %d, allocation %ld failed: fetch gave %d and the queue holds "
                             "%lld jobs: the job is lost",
                             batch, k, r, left);
                freeReplyObject(test_redis_cmd(test_rc, "DEL queue:default"));
            }
        }
        printf("# fetch_batch %d: 30 runs, %d fetched, %d kept in Redis under OOM, 0 lost\n", batch,
               fetched, kept);
        assert_true(kept > 0 && fetched > 0);
        dray_server_free(s);
    }
}

/* A fake Redis on a unix socket: answers BLMPOP with `njobs` jobs whatever
 * COUNT asked for, records RPUSHed values. */
typedef struct fake_redis {
    char path[300];
    int lfd;
    int njobs;
    pthread_t th;
    char pushed[64][64];
    atomic_int npushed;
} fake_redis;

static int
read_cmd(int fd, char *buf, size_t cap, size_t *have, char **argv, size_t *lens, int *argc)
{
    for (;;) {
        /* try to parse one "*N\r\n($L\r\narg\r\n)*" from buf */
        char *p = buf, *end = buf + *have;
        if (*have > 0 && *p == '*') {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            int n = nl ? atoi(p + 1) : -1, i = 0;
            p = nl ? nl + 1 : end;
            for (; i < n && p < end; i++) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                    break;
                size_t l = (size_t)atol(p + 1);
                p = nl + 1;
                if ((size_t)(end - p) < l + 2)
                    break;
                argv[i] = p;
                lens[i] = l;
                p += l + 2;
            }
            if (n > 0 && i == n && p <= end) {
                *argc = n;
                return (int)(p - buf); /* bytes consumed */
            }
        }
        if (*have == cap)
            return -1;
        ssize_t k = read(fd, buf + *have, cap - *have);
        if (k <= 0)
            return -1;
        *have += (size_t)k;
    }
}

static void
send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static void *
fake_main(void *arg)
{
    fake_redis *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    static char buf[65536];
    size_t have = 0;
    char *argv[64];
    size_t lens[64];
    int argc, used;
    while ((used = read_cmd(fd, buf, sizeof buf, &have, argv, lens, &argc)) > 0) {
        char out[8192];
        size_t n = 0;
        if (lens[0] == 6 && !strncasecmp(argv[0], "BLMPOP", 6)) {
            n = (size_t)snprintf(out, sizeof out, "*2\r\n$13\r\nqueue:default\r\n*%d\r\n",
                                 f->njobs);
            for (int i = 0; i < f->njobs; i++) {
                char job[64];
                int jl = snprintf(job, sizeof job, "{\"class\":\"Ok\",\"args\":[%d]}", i);
                n += (size_t)snprintf(out + n, sizeof out - n, "$%d\r\n%s\r\n", jl, job);
            }
        } else if (lens[0] == 5 && !strncasecmp(argv[0], "RPUSH", 5) && argc == 3) {
            int i = atomic_load(&f->npushed);
            if (i < 64) {
                snprintf(f->pushed[i], sizeof f->pushed[i], "%.*s", (int)lens[2], argv[2]);
                atomic_store(&f->npushed, i + 1);
            }
            n = (size_t)snprintf(out, sizeof out, ":1\r\n");
        } else if (lens[0] == 6 && !strncasecmp(argv[0], "CLIENT", 6)) {
            n = (size_t)snprintf(out, sizeof out, ":7\r\n");
        } else if (lens[0] == 8 && !strncasecmp(argv[0], "SMEMBERS", 8)) {
            n = (size_t)snprintf(out, sizeof out, "*0\r\n"); /* no paused queues */
        } else {
            n = (size_t)snprintf(out, sizeof out, "+OK\r\n");
        }
        send_all(fd, out, n);
        memmove(buf, buf + used, have - (size_t)used);
        have -= (size_t)used;
    }
    close(fd);
    return NULL;
}

/* A BLMPOP reply with 10 jobs for fetch_batch 4: 4 kept (one to run, three
 * waiting), the 6 extra pushed back last first, nothing overflows. */
static void
test_fetch_reply_longer_than_batch(void **state)
{
    (void)state;
    fake_redis f;
    memset(&f, 0, sizeof f);
    f.njobs = 10;
    snprintf(f.path, sizeof f.path, "%s/fake.sock", test_srv.dir);
    f.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(f.path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, f.path, strlen(f.path) + 1);
    assert_int_equal(bind(f.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f.lfd, 4), 0);
    assert_int_equal(pthread_create(&f.th, NULL, fake_main, &f), 0);
    char url[400];
    snprintf(url, sizeof url, "unix://%s", f.path);
    dray_options o;
    opts_for_test(&o, 1);
    o.redis_url = url;
    o.fetch_batch = 4;
    dray_server *s;
    assert_int_equal(dray_server_new(&o, &s, NULL, 0), 0);
    dray__worker *w = &s->workers[0];
    dray__unit u;
    assert_int_equal(dray__fetch(w, &u), 1);
    assert_string_equal(u.payload, "{\"class\":\"Ok\",\"args\":[0]}");
    dray__unit_clear(&u);
    assert_int_equal(w->npre - w->ipre, 3);
    for (int i = 1; i <= 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"class\":\"Ok\",\"args\":[%d]}", i);
        assert_string_equal(w->pre[w->ipre + (size_t)i - 1].payload, want);
    }
    assert_int_equal(atomic_load(&f.npushed), 6);
    for (int i = 0; i < 6; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"class\":\"Ok\",\"args\":[%d]}", 9 - i);
        assert_string_equal(f.pushed[i], want);
    }
    printf("# 10 jobs for fetch_batch 4: 4 held, %d pushed back, 0 lost\n",
           atomic_load(&f.npushed));
    dray_server_free(s); /* closes the link: the fake's thread ends */
    pthread_join(f.th, NULL);
    close(f.lfd);
    unlink(f.path);
}

static int
setup(void **state)
{
    (void)state;
    snprintf(test_srv.extra, sizeof test_srv.extra, "--enable-debug-command local");
    test_log_reset(DRAY_LOG_WARN);
    dray_log_set_sink(test_log_capture, NULL);
    return test_setup(state);
}

static int
teardown(void **state)
{
    dray_log_set_sink(NULL, NULL);
    test_log_reset(DRAY_LOG_WARN);
    return test_teardown(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: fork while this process has no other threads */
        cmocka_unit_test(test_fatal_signal_reports_running_jobs),
        cmocka_unit_test(test_short_stall_loses_nothing),
        cmocka_unit_test(test_long_stall_is_reported),
        cmocka_unit_test(test_malformed_payloads_are_readable_dead_jobs),
        cmocka_unit_test(test_unrecordable_payload_logged_whole),
        cmocka_unit_test(test_payload_log_parts_under_oom),
        cmocka_unit_test(test_fetch_oom_keeps_the_job),
        cmocka_unit_test(test_fetch_reply_longer_than_batch),
    };
    if (getenv("TEST_FILTER")) /* e.g. TEST_FILTER='*stall*' */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
