/* SPDX-License-Identifier: LGPL-3.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "interop_support.h"

#ifndef DRAY_RUBY
#define DRAY_RUBY "ruby"
#endif
#ifndef DRAY_INTEROP_DIR
#error "DRAY_INTEROP_DIR must name tests/interop (set by tests/interop.cmake)"
#endif

#define AGENT DRAY_INTEROP_DIR "/sidekiq_agent.rb"
#define AGENT_TIMEOUT_S 60.0
#define INLINE_PARAMS_MAX 8192 /* larger params go through a file (argv limits) */

extern char **environ;

static char sk_ns[128];

int
sk_major(void)
{
    const char *v = getenv("DRAY_INTEROP_SIDEKIQ");
    return v && !strcmp(v, "7") ? 7 : 6;
}

void
sk_set_namespace(const char *ns)
{
    snprintf(sk_ns, sizeof sk_ns, "%s", ns ? ns : "");
}

typedef struct growbuf {
    char *p;
    size_t len, cap;
} growbuf;

static void
gb_add(growbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* The environment for the child: ours, with DRAY_SK_NAMESPACE set or removed. */
static char **
child_env(char *nsvar, size_t nsvar_len)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    assert_non_null(env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "DRAY_SK_NAMESPACE=", 18))
            env[k++] = environ[i];
    if (sk_ns[0]) {
        snprintf(nsvar, nsvar_len, "DRAY_SK_NAMESPACE=%s", sk_ns);
        env[k++] = nsvar;
    }
    env[k] = NULL;
    return env;
}

/* Spawn the agent and collect stdout/stderr; returns the wait status or -1
 * on timeout (the child is killed). posix_spawn: the test process has
 * threads (dray's), so nothing runs between fork and exec. */
static int
spawn_agent(char *const argv[], growbuf *out, growbuf *err)
{
    int po[2], pe[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    char nsvar[160];
    char **env = child_env(nsvar, sizeof nsvar);
    /* Sidekiq 7.3.9: the same command with sidekiq7.env's RUBYLIB */
    char *wrapped[16];
    if (sk_major() == 7) {
        size_t n = 0;
        wrapped[n++] = "/bin/bash"; /* sidekiq7.env uses BASH_SOURCE */
        wrapped[n++] = "-c";
        wrapped[n++] = ". \"$DRAY_SIDEKIQ7_ENV\" && exec \"$0\" \"$@\"";
        for (size_t i = 0; argv[i] && n < 15; i++)
            wrapped[n++] = argv[i];
        wrapped[n] = NULL;
        argv = wrapped;
    }
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(po[1]);
    close(pe[1]);
    if (e) {
        close(po[0]);
        close(pe[0]);
        fail_msg("cannot run %s: %s (install ruby and ruby-sidekiq)", argv[0], strerror(e));
    }
    double end = test_now() + AGENT_TIMEOUT_S;
    struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && test_now() < end) {
        int n = poll(pf, 2, 200);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[8192];
            ssize_t r = read(pf[i].fd, buf, sizeof buf);
            if (r > 0) {
                gb_add(i == 0 ? out : err, buf, (size_t)r);
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    int timed_out = open_fds > 0;
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return timed_out ? -1 : st;
}

json_t *
sk_run(const char *url, const char *cmd, json_t *params)
{
    char *pj = params ? json_dumps(params, JSON_COMPACT) : NULL;
    char path[64] = "";
    char *arg = pj;
    char *fileref = NULL;
    if (pj && strlen(pj) > INLINE_PARAMS_MAX) {
        snprintf(path, sizeof path, "/tmp/dray-interop-params-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        size_t n = strlen(pj);
        assert_int_equal(write(fd, pj, n), (ssize_t)n);
        close(fd);
        fileref = malloc(strlen(path) + 2);
        assert_non_null(fileref);
        sprintf(fileref, "@%s", path);
        arg = fileref;
    }
    char *argv[] = {DRAY_RUBY, AGENT, (char *)url, (char *)cmd, arg, NULL};
    growbuf out = {0}, err = {0};
    gb_add(&out, "", 0);
    gb_add(&err, "", 0);
    int st = spawn_agent(argv, &out, &err);
    if (path[0])
        unlink(path);
    free(fileref);
    free(pj);
    if (st == -1)
        fail_msg("sidekiq agent '%s' timed out after %.0f s; stderr:\n%s", cmd, AGENT_TIMEOUT_S,
                 err.p);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SK_SKIP) {
        print_message("SKIP: %s", err.p);
        free(out.p);
        free(err.p);
        TEST_SKIP();
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("sidekiq agent '%s' failed (status %d); stderr:\n%s", cmd, st, err.p);
    const char *line = strstr(out.p, "DRAY-RESULT ");
    if (!line)
        fail_msg("sidekiq agent '%s' printed no result; stdout:\n%s\nstderr:\n%s", cmd, out.p,
                 err.p);
    json_error_t je;
    json_t *res = json_loads(line + 12, JSON_DISABLE_EOF_CHECK, &je);
    if (!res)
        fail_msg("sidekiq agent '%s' result is not json (%s): %s", cmd, je.text, line);
    if (getenv("TEST_LOG"))
        print_message("agent %s stderr:\n%s", cmd, err.p);
    free(out.p);
    free(err.p);
    return res;
}

json_t *
sk_runf(const char *url, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t e;
    json_t *p = json_vpack_ex(&e, 0, fmt, ap);
    va_end(ap);
    if (!p)
        fail_msg("json_pack for agent '%s': %s", cmd, e.text);
    json_t *r = sk_run(url, cmd, p);
    json_decref(p);
    return r;
}

void
sk_require_sidekiq(void)
{
    const char *e7 = getenv("DRAY_SIDEKIQ7_ENV");
    if (sk_major() == 7 && (!e7 || !*e7 || access(e7, R_OK))) {
        /* the whole binary: CTest reports it Skipped, never Passed */
        printf("SKIP: DRAY_SIDEKIQ7_ENV does not name a readable sidekiq7.env (%s); "
               "set it to shared/peers/sidekiq7.env to run this against Sidekiq 7.3.9\n",
               e7 ? e7 : "unset");
        fflush(stdout);
        exit(TEST_SKIP_CODE);
    }
    char *argv[] = {DRAY_RUBY, "-e",
                    sk_major() == 7
                        ? "require 'sidekiq'; require 'sidekiq/api'; "
                          "abort \"need Sidekiq 7.x, found #{Sidekiq::VERSION}\" unless "
                          "Sidekiq::VERSION.start_with?('7.'); "
                          "puts Sidekiq::VERSION"
                        : "require 'sidekiq'; require 'sidekiq/api'; "
                          "abort \"need Sidekiq 6.x, found #{Sidekiq::VERSION}\" unless "
                          "Sidekiq::VERSION.start_with?('6.'); "
                          "puts Sidekiq::VERSION",
                    NULL};
    growbuf out = {0}, err = {0};
    gb_add(&out, "", 0);
    gb_add(&err, "", 0);
    int st = spawn_agent(argv, &out, &err);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg(
            "real Sidekiq is needed for the interop tests (apt-get install ruby ruby-sidekiq): %s",
            err.p);
    print_message("interop against Sidekiq %s", out.p);
    free(out.p);
    free(err.p);
}

void
assert_json_eq(const char *what, const json_t *want, const json_t *got)
{
    if (want && got && json_equal((json_t *)want, (json_t *)got))
        return;
    char *a = want ? json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *b = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fail_msg("%s differs:\n  want %s\n  got  %s", what, a ? a : "(missing)", b ? b : "(missing)");
}

void
assert_json_eqn(const char *what, json_t *want, const json_t *got)
{
    assert_json_eq(what, want, got);
    json_decref(want);
}

void
assert_close(const char *what, double want, double got, double tol)
{
    if (fabs(want - got) <= tol)
        return;
    fail_msg("%s: want %.6f, got %.6f (diff %.3g, tolerance %.3g)", what, want, got, got - want,
             tol);
}

json_t *
jget(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        char *s = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("member '%s' missing in %.600s", key, s ? s : "(null)");
    }
    return v;
}

const char *
jstr(const json_t *obj, const char *key)
{
    json_t *v = jget(obj, key);
    if (!json_is_string(v))
        fail_msg("member '%s' is not a string", key);
    return json_string_value(v);
}

long long
jint(const json_t *obj, const char *key)
{
    json_t *v = jget(obj, key);
    if (!json_is_integer(v))
        fail_msg("member '%s' is not an integer", key);
    return json_integer_value(v);
}

double
jnum(const json_t *obj, const char *key)
{
    json_t *v = jget(obj, key);
    if (!json_is_number(v))
        fail_msg("member '%s' is not a number", key);
    return json_number_value(v);
}

json_t *
jfind(const json_t *arr, const char *key, const char *val)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *s = json_string_value(json_object_get(e, key));
        if (s && !strcmp(s, val))
            return e;
    }
    return NULL;
}

json_t *
it_loads(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, 0, &e);
    if (!v)
        fail_msg("bad json literal in test (%s): %s", e.text, s);
    return v;
}

/* ---- embedded server ----------------------------------------------------- */

void
it_opts(dray_options *o, const test_redis *r, const char *queues, int concurrency)
{
    test_options(o, queues, concurrency);
    o->redis_url = r->url;
}

#define IT_SLOTS 4
static it_server slots[IT_SLOTS];

it_server *
it_new(const dray_options *o)
{
    it_server *t = NULL;
    for (int i = 0; i < IT_SLOTS && !t; i++)
        if (!slots[i].s)
            t = &slots[i];
    if (!t)
        fail_msg("more than %d embedded servers at once", IT_SLOTS);
    memset(t, 0, sizeof *t);
    char err[256] = "";
    int e = dray_server_new(o, &t->s, err, sizeof err);
    if (e)
        fail_msg("dray_server_new: %s", err);
    snprintf(t->identity, sizeof t->identity, "%s", dray_server_identity(t->s));
    return t;
}

static void *
run_main(void *arg)
{
    it_server *t = arg;
    t->rc = dray_server_run(t->s);
    atomic_store(&t->done, 1);
    return NULL;
}

void
it_go(it_server *t)
{
    assert_int_equal(pthread_create(&t->th, NULL, run_main, t), 0);
    t->started = 1;
}

static int
is_done(void *arg)
{
    return atomic_load(&((it_server *)arg)->done);
}

void
it_wait_done(it_server *t, double timeout_s)
{
    if (!test_wait_until(is_done, t, timeout_s))
        fail_msg("dray_server_run did not return within %.0f s", timeout_s);
    pthread_join(t->th, NULL);
    t->joined = 1;
    assert_int_equal(t->rc, 0);
}

void
it_finish(it_server *t)
{
    if (!t->s)
        return;
    if (t->started && !t->joined) {
        dray_server_stop(t->s);
        it_wait_done(t, 15);
    }
    dray_server_free(t->s);
    t->s = NULL;
}

void
it_cleanup(void)
{
    it_gate_release();
    for (int i = 0; i < IT_SLOTS; i++) {
        it_server *t = &slots[i];
        if (!t->s)
            continue;
        if (t->started && !t->joined) {
            dray_server_stop_now(t->s);
            if (test_wait_until(is_done, t, 15)) {
                pthread_join(t->th, NULL);
                t->joined = 1;
            }
        }
        if (!t->started || t->joined)
            dray_server_free(t->s);
        t->s = NULL; /* a server that would not stop is leaked, not freed under it */
    }
    it_gate_reset();
}

/* ---- the shared fixture -------------------------------------------------- */

int
it_client_new(const char *ns, dray_client **c)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = it_srv.url;
    o.ns = ns;
    char err[256] = "";
    int e = dray_client_new(&o, c, err, sizeof err);
    if (e)
        print_error("dray_client_new: %s\n", err);
    return e;
}

int
it_push_n(dray_client *c, const char *klass, const char *queue, int retry, json_t *extra, int n,
          char *jids, size_t *pushed)
{
    dray_push_opts po = {.queue = queue, .retry = retry, .extra = extra};
    json_t *list = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_pack("[i]", i));
    *pushed = 0;
    int e = dray_client_push_bulk(c, klass, list, &po, jids, pushed);
    json_decref(list);
    return e;
}

int
it_setup(void **state)
{
    sk_require_sidekiq();
    return test_setup(state);
}

int
it_teardown(void **state)
{
    it_cleanup();
    return test_teardown(state);
}

int
it_each_setup(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(it_rc, "FLUSHALL"));
    sk_set_namespace(NULL);
    it_rec_reset();
    it_gate_reset();
    return 0;
}

int
it_each_teardown(void **state)
{
    (void)state;
    it_cleanup();
    return 0;
}

/* ---- shared handlers and waits ------------------------------------------- */

int
it_h_record(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    it_rec_add(job);
    return 0;
}

int
it_h_block(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    it_rec_add(job);
    it_gate_enter_and_wait();
    return 0;
}

int
it_h_fail(dray_job *job, dray_result *res, void *ud)
{
    it_rec_add(job);
    return dray_result_fail(res, "ArgumentError", "%s", (const char *)ud);
}

double
it_quick_then_slow(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)ud;
    return count == 0 ? 0.3 : 3600.0;
}

struct it_want {
    const char *jid; /* NULL: all runs */
    int n;
};

static int
runs_reached(void *arg)
{
    const struct it_want *w = arg;
    return (w->jid ? it_rec_runs(w->jid) : it_rec_total()) >= w->n;
}

int
it_wait_runs(int want, double timeout_s)
{
    struct it_want w = {NULL, want};
    return test_wait_until(runs_reached, &w, timeout_s);
}

int
it_wait_jid_runs(const char *jid, int want, double timeout_s)
{
    struct it_want w = {jid, want};
    return test_wait_until(runs_reached, &w, timeout_s);
}

static int
quiet_true(void *arg)
{
    redisReply *r = test_redis_cmd(it_rc, "HGET %s quiet", (const char *)arg);
    int ok = r->type == REDIS_REPLY_STRING && !strcmp(r->str, "true");
    freeReplyObject(r);
    return ok;
}

int
it_wait_quiet(const char *key, double timeout_s)
{
    return test_wait_until(quiet_true, (void *)key, timeout_s);
}

static int
gate_reached(void *arg)
{
    return it_gate_inside() == *(const int *)arg;
}

int
it_wait_gate(int want, double timeout_s)
{
    return test_wait_until(gate_reached, &want, timeout_s);
}

/* ---- recorder ------------------------------------------------------------ */

#define REC_MAX 4096 /* the mixed fleet records 2,000 jobs */
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static it_seen rec[REC_MAX];
static int nrec;

void
it_rec_reset(void)
{
    pthread_mutex_lock(&rec_mu);
    for (int i = 0; i < nrec; i++) {
        json_decref(rec[i].first);
        json_decref(rec[i].last);
    }
    memset(rec, 0, sizeof rec);
    nrec = 0;
    pthread_mutex_unlock(&rec_mu);
}

static it_seen *
rec_find(const char *jid)
{
    for (int i = 0; i < nrec; i++)
        if (!strcmp(rec[i].jid, jid))
            return &rec[i];
    return NULL;
}

int
it_rec_add(const dray_job *job)
{
    json_t *copy = json_deep_copy(dray_job_json(job));
    pthread_mutex_lock(&rec_mu);
    it_seen *e = rec_find(dray_job_jid(job));
    if (!e && nrec < REC_MAX) {
        e = &rec[nrec++];
        snprintf(e->jid, sizeof e->jid, "%s", dray_job_jid(job));
        e->first = json_incref(copy);
    }
    int runs = 0;
    if (e) {
        runs = ++e->runs;
        json_decref(e->last);
        e->last = copy;
    } else {
        json_decref(copy);
    }
    pthread_mutex_unlock(&rec_mu);
    return runs;
}

int
it_rec_runs(const char *jid)
{
    pthread_mutex_lock(&rec_mu);
    it_seen *e = rec_find(jid);
    int n = e ? e->runs : 0;
    pthread_mutex_unlock(&rec_mu);
    return n;
}

static json_t *
rec_get(const char *jid, int first)
{
    pthread_mutex_lock(&rec_mu);
    it_seen *e = rec_find(jid);
    json_t *v = e ? json_deep_copy(first ? e->first : e->last) : NULL;
    pthread_mutex_unlock(&rec_mu);
    return v;
}

json_t *
it_rec_last(const char *jid)
{
    return rec_get(jid, 0);
}

json_t *
it_rec_first(const char *jid)
{
    return rec_get(jid, 1);
}

int
it_rec_total(void)
{
    pthread_mutex_lock(&rec_mu);
    int n = 0;
    for (int i = 0; i < nrec; i++)
        n += rec[i].runs;
    pthread_mutex_unlock(&rec_mu);
    return n;
}

/* ---- gate ---------------------------------------------------------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_inside;

void
it_gate_reset(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 0;
    gate_inside = 0;
    pthread_mutex_unlock(&gate_mu);
}

void
it_gate_enter_and_wait(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_inside++;
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_mu);
    gate_inside--;
    pthread_mutex_unlock(&gate_mu);
}

int
it_gate_inside(void)
{
    pthread_mutex_lock(&gate_mu);
    int n = gate_inside;
    pthread_mutex_unlock(&gate_mu);
    return n;
}

void
it_gate_release(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_mu);
}

/* ---- redis --------------------------------------------------------------- */

static long long
reply_int(redisReply *r)
{
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    return v;
}

long long
it_rint(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("redis: %s", c->errstr);
    long long v = reply_int(r);
    freeReplyObject(r);
    return v;
}
