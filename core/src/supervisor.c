/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Process isolation: dray_server_run_processes forks N children after the
 * handlers and modules are loaded (copy-on-write), each running the usual
 * dray_server_run with its own identity and Sidekiq process record. Every
 * child reports the jobs its workers start and end over a socketpair; when a
 * child dies the supervisor knows what it was running and accounts for it:
 * requeued (basic fetch, at-least-once) with a crash count in the payload,
 * dead after crash_limit crashes, or through the retry path with a timeout
 * error when the supervisor killed it for a job past its timeout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"

#define CRASH_ERROR "Dray::ChildCrashed" /* error_class of a job that killed its child */
#define TIMEOUT_ERROR "Dray::JobTimeout" /* error_class of a job killed at its timeout */
#define CRASH_FIELD "dray_crashes"       /* payload field: children this job has killed */
#define BACKOFF_MAX_S 30.0               /* longest wait before restarting a child */
#define QUICK_DEATH_S 30.0               /* a child dying sooner than this backs off */
#define GONE_TTL "600"                   /* s: <ns>dray:gone:<identity> marks a child seen dead */
#define ORPHAN_SCAN_S 5.0   /* how often in-flight lists of dead processes are looked for */
#define ORPHAN_GRACE_S 10.0 /* a list whose owner has no record yet: wait this long (starting) */

/* ---- the child's side ------------------------------------------------------ */

/* One record on the report socket: the header, then jid, class, queue and
 * payload bytes. A start replaces the worker's slot, an end clears it. */
typedef struct rec_hdr {
    char type;        /* 'S' start, 'E' end, 'I' identity (in jid), 'C' cancelled (jid) */
    int worker;       /* worker index in the child */
    double timeout_s; /* 'S': effective timeout, 0 none */
    uint32_t ljid, lclass, lqueue, lpayload;
} rec_hdr;

static int g_report_fd = -1; /* the child's end, -1 outside a child */
static int g_isolate;        /* 1 in an --isolate child */
static pthread_mutex_t g_report_mu = PTHREAD_MUTEX_INITIALIZER; /* one record at a time */

/* True in a supervised child whose fetch is not a module's: it keeps in-flight lists. */
bool
dray__sup_active(void)
{
    return g_report_fd >= 0 && !dray__fetcher_active();
}

/* "<ns>dray:inflight:<identity>:<worker>" (dray__free it), or NULL. */
static char *
inflight_key(const struct dray_server *s, const char *identity, int worker)
{
    char suffix[400];
    snprintf(suffix, sizeof suffix, "dray:inflight:%s:%d", identity, worker);
    return dray__key(&s->cfg, suffix);
}

/* Supervised child's fetch: moves one job from keys (in order) to w's in-flight
 * list; 1 with *u filled (caller owns it), 0 for none, or a DRAY_E* code. */
int
dray__sup_fetch(dray__worker *w, const char **keys, size_t n, dray__unit *u)
{
    struct dray_server *s = w->srv;
    char *dst = inflight_key(s, s->identity, w->index);
    if (!dst)
        return DRAY_ENOMEM;
    int rc = dray__conn_ensure(&w->conn);
    redisReply *r = NULL;
    size_t hit = n;
    /* Non-blocking in queue order, then block briefly on the first queue:
     * a job moved is in the in-flight list even if the reply is lost. */
    for (size_t i = 0; !rc && i < n && hit == n; i++) {
        rc = dray__conn_cmdf(&w->conn, &r, "LMOVE %s %s RIGHT LEFT", keys[i], dst);
        if (!rc && r && r->type == REDIS_REPLY_STRING)
            hit = i;
        else if (r) {
            freeReplyObject(r);
            r = NULL;
        }
    }
    if (!rc && hit == n && n > 0) {
        rc = dray__conn_cmdf(&w->conn, &r, "BLMOVE %s %s RIGHT LEFT 0.5", keys[0], dst);
        if (!rc && r && r->type == REDIS_REPLY_STRING)
            hit = 0;
    }
    dray__free(dst);
    if (rc || hit == n) {
        if (r)
            freeReplyObject(r);
        return rc;
    }
    const char *name = keys[hit];
    for (size_t q = 0; q < s->nqueues; q++)
        if (!strcmp(s->queues[q].key, keys[hit]))
            name = s->queues[q].name;
    u->queue = dray__strdup(name);
    u->payload = dray__malloc(r->len + 1);
    if (!u->queue || !u->payload) {
        dray__unit_clear(u);
        freeReplyObject(r);
        return DRAY_ENOMEM; /* it stays in the in-flight list: the supervisor requeues it */
    }
    memcpy(u->payload, r->str, r->len);
    u->payload[r->len] = '\0';
    u->len = r->len;
    freeReplyObject(r);
    return 1;
}

/* True in an --isolate child (one job, then exit). */
bool
dray__sup_isolate(void)
{
    return g_isolate != 0;
}

/* Seconds job may run: its own "timeout" field, else its handler's, else 0 (none). */
double
dray__job_timeout(const dray_job *job, const dray__handler *h)
{
    json_t *t = json_object_get(job->obj, "timeout");
    if (json_is_number(t) && json_number_value(t) > 0)
        return json_number_value(t);
    return h ? h->timeout_s : 0;
}

/* Sends all n bytes of p on fd, retrying short writes and EINTR; 0 or -1. */
static int
send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Child side: sends one record (type, worker, job fields) to the supervisor;
 * no-op outside a child. Thread-safe (g_report_mu). */
static void
report(char type, int worker, double timeout_s, const char *jid, const char *klass,
       const char *queue, const char *payload, size_t len)
{
    if (g_report_fd < 0)
        return;
    rec_hdr h;
    memset(&h, 0, sizeof h);
    h.type = type;
    h.worker = worker;
    h.timeout_s = timeout_s;
    h.ljid = jid ? (uint32_t)strlen(jid) : 0;
    h.lclass = klass ? (uint32_t)strlen(klass) : 0;
    h.lqueue = queue ? (uint32_t)strlen(queue) : 0;
    h.lpayload = (uint32_t)len;
    pthread_mutex_lock(&g_report_mu);
    /* A failed send means the supervisor is gone: PDEATHSIG stops us. */
    if (!send_all(g_report_fd, &h, sizeof h) && !send_all(g_report_fd, jid, h.ljid) &&
        !send_all(g_report_fd, klass, h.lclass) && !send_all(g_report_fd, queue, h.lqueue))
        send_all(g_report_fd, payload, h.lpayload);
    pthread_mutex_unlock(&g_report_mu);
}

/* Tells the supervisor w started a job (a copy of it, so a crash cannot lose it). */
void
dray__sup_job_start(const dray__worker *w, const char *jid, const char *klass, const char *queue,
                    const char *payload, size_t len, double timeout_s)
{
    report('S', w->index, timeout_s, jid, klass, queue, payload, len);
}

/* Tells the supervisor w's job is over and clears w's in-flight list. */
void
dray__sup_job_end(dray__worker *w)
{
    if (dray__sup_active()) {
        /* Its outcome is recorded: out of the in-flight list. If this fails
         * the supervisor may requeue a finished job (at-least-once). */
        char *k = inflight_key(w->srv, w->srv->identity, w->index);
        if (k && dray__conn_cmdf(&w->conn, NULL, "DEL %s", k))
            dray__log(DRAY_LOG_WARN, "cannot clear in-flight list %s: %s", k, w->conn.errstr);
        dray__free(k);
    }
    report('E', w->index, 0, NULL, NULL, NULL, NULL, 0);
}

/* Ask the supervisor (over the report pipe) to kill this child for jid's cancel. False
 * outside a supervised child. */
bool
dray__sup_cancel(const dray__worker *w, const char *jid)
{
    if (g_report_fd < 0)
        return false;
    report('C', w->index, 0, jid, NULL, NULL, NULL, 0);
    return true;
}

/* Epoch seconds at which job's timeout ends, 0 for none (or NULL job). */
double
dray_job_deadline(const dray_job *job)
{
    return job ? job->deadline : 0;
}

/* 1 once job is flagged to stop, else 0 (also for NULL). */
int
dray_job_cancelled(const dray_job *job)
{
    return job && job->over && atomic_load(job->over);
}

/* Sets the timeout of klass's handler; DRAY_EINVAL, DRAY_ENOTFOUND. */
int
dray_server_set_timeout(dray_server *s, const char *klass, double seconds)
{
    if (!klass || !(seconds >= 0))
        return DRAY_EINVAL;
    for (size_t i = 0; i < s->nhandlers; i++) {
        if (!strcmp(s->handlers[i].klass, klass)) {
            s->handlers[i].timeout_s = seconds;
            return 0;
        }
    }
    return DRAY_ENOTFOUND;
}

/* ---- the supervisor's side ------------------------------------------------- */

typedef struct run_job {
    char *jid, *klass, *queue, *payload; /* owned; jid NULL: idle slot */
    size_t len;
    double started; /* monotonic */
    double timeout_s;
} run_job;

typedef struct child {
    pid_t pid;          /* 0: not running */
    int fd;             /* supervisor's end of the report socket, -1 when closed */
    char identity[256]; /* the child's Sidekiq identity, "" until reported */
    dray__buf in;       /* bytes received, not yet a whole record */
    run_job *jobs;      /* one per worker */
    double started;     /* monotonic start */
    double restart_at;  /* monotonic: start again from then (backoff) */
    int quick_deaths;   /* consecutive deaths soon after start */
    int killed_worker;  /* worker whose job we killed the child for, -1 none */
    int cancelled;      /* 1: killed_worker's job was cancelled (dray cancel), not timed out */
    double kill_at;     /* monotonic: SIGKILL a stopping child from then, 0 none */
} child;

typedef struct sup {
    dray_server *s;
    dray_process_opts po;
    child *kids;
    dray__worker sw;     /* the supervisor's own link and retry context */
    atomic_int *culprit; /* shared with the children: one per child, -1 none */
    int stopping, quiet;
    double next_scan; /* monotonic: next look for orphaned in-flight lists */
    char **cand;      /* in-flight lists whose owner had no record at the last look */
    double *cand_at;  /* when each was first seen so (monotonic) */
    size_t ncand;
} sup;

/* Frees j's strings and marks the slot idle. */
static void
job_clear(run_job *j)
{
    dray__free(j->jid);
    dray__free(j->klass);
    dray__free(j->queue);
    dray__free(j->payload);
    memset(j, 0, sizeof *j);
}

/* A NUL-terminated copy of n bytes at p (dray__free it), or NULL. */
static char *
dupn(const char *p, size_t n)
{
    return dray__strndup(p, n);
}

/* The child's heartbeat found the job of worker w cancelled: kill the child
 * (its other jobs are requeued as after a timeout kill). */
static void
cancel_kill(child *c, int w, const char *jid, size_t len)
{
    run_job *j = &c->jobs[w];
    if (c->pid <= 0 || c->killed_worker >= 0 || !j->jid || strlen(j->jid) != len ||
        memcmp(j->jid, jid, len))
        return; /* already ended, or the child is being killed anyway */
    dray__log(DRAY_LOG_WARN, "supervisor: jid %s was cancelled (dray cancel); killing its child",
              j->jid);
    c->killed_worker = w;
    c->cancelled = 1;
    kill(c->pid, SIGKILL);
}

/* Take whole records off c->in. */
static void
parse_records(sup *S, child *c)
{
    size_t off = 0;
    while (c->in.len - off >= sizeof(rec_hdr)) {
        rec_hdr h;
        memcpy(&h, c->in.p + off, sizeof h);
        size_t body = (size_t)h.ljid + h.lclass + h.lqueue + h.lpayload;
        if (c->in.len - off - sizeof h < body)
            break;
        const char *p = c->in.p + off + sizeof h;
        off += sizeof h + body;
        if (h.type == 'I') {
            snprintf(c->identity, sizeof c->identity, "%.*s", (int)h.ljid, p);
            continue;
        }
        if (h.worker < 0 || h.worker >= S->s->opts.concurrency)
            continue;
        run_job *j = &c->jobs[h.worker];
        if (h.type == 'C') {
            cancel_kill(c, h.worker, p, h.ljid);
            continue;
        }
        job_clear(j);
        if (h.type != 'S')
            continue;
        j->jid = dupn(p, h.ljid);
        j->klass = dupn(p + h.ljid, h.lclass);
        j->queue = dupn(p + h.ljid + h.lclass, h.lqueue);
        j->payload = dupn(p + h.ljid + h.lclass + h.lqueue, h.lpayload);
        j->len = h.lpayload;
        j->started = dray__mono();
        j->timeout_s = h.timeout_s;
        if (!j->jid || !j->klass || !j->queue || !j->payload)
            dray__log(DRAY_LOG_ERROR, "supervisor: out of memory recording a running job");
    }
    if (off) {
        memmove(c->in.p, c->in.p + off, c->in.len - off);
        c->in.len -= off;
    }
}

/* Read what the child sent; 0 at EOF or error (then the fd is closed). */
static int
drain(sup *S, child *c)
{
    for (;;) {
        char buf[65536];
        ssize_t k = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (k <= 0) {
            parse_records(S, c);
            close(c->fd);
            c->fd = -1;
            return 0;
        }
        dray__buf_add(&c->in, buf, (size_t)k);
        parse_records(S, c);
    }
    return 1;
}

static void child_main(sup *S, int idx, int fd, const sigset_t *mask) __attribute__((noreturn));

/* Child process body after fork: keep only its own report socket, reset the
 * server, run it and _exit with its status. Never returns. */
static void
child_main(sup *S, int idx, int fd, const sigset_t *mask)
{
    dray_server *s = S->s;
    setpgid(0, 0); /* terminal signals reach the supervisor, which forwards them */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    for (int i = 0; i < S->po.processes; i++)
        if (i != idx && S->kids[i].fd >= 0)
            close(S->kids[i].fd);
    if (dray__server_child_init(s)) {
        fprintf(stderr, "dray: child %d: out of memory\n", idx);
        _exit(70);
    }
    g_report_fd = fd;
    g_isolate = S->po.isolate;
    pthread_sigmask(SIG_SETMASK, mask, NULL);
    dray__crash_culprit = &S->culprit[idx];
    report('I', 0, 0, s->identity, NULL, NULL, NULL, 0);
    int rc = dray_server_run(s);
    if (rc)
        dray__log(DRAY_LOG_ERROR, "child %d: %s", idx, dray_server_errstr(s));
    fflush(NULL);
    _exit(rc ? 1 : 0);
}

/* Forks child idx with a fresh report socketpair; 0, or DRAY_EIO when
 * socketpair or fork fails (the caller retries later). */
static int
child_start(sup *S, int idx)
{
    child *c = &S->kids[idx];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return DRAY_EIO;
    atomic_store(&S->culprit[idx], -1);
    /* No Redis link crosses the fork: the child would share its socket. */
    dray__conn_drop(&S->sw.conn);
    /* Signals wait until the child has its own flags (child_init clears
     * them): a TERM in between would be forgotten. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(sv[0]);
        close(sv[1]);
        return DRAY_EIO;
    }
    if (pid == 0) {
        close(sv[0]);
        child_main(S, idx, sv[1], &old);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    c->pid = pid;
    c->fd = sv[0];
    c->identity[0] = '\0';
    c->in.len = 0;
    c->started = dray__mono();
    c->killed_worker = -1;
    c->cancelled = 0;
    c->kill_at = 0;
    if (S->quiet)
        kill(pid, SIGTSTP);
    dray__log(DRAY_LOG_INFO, "supervisor: child %d started (pid %d)", idx, (int)pid);
    return 0;
}

/* Sends sig to every running child. */
static void
signal_all(sup *S, int sig)
{
    for (int i = 0; i < S->po.processes; i++)
        if (S->kids[i].pid > 0)
            kill(S->kids[i].pid, sig);
}

/* A job its child died running: requeue it with its crash count, or to the
 * dead set at crash_limit. Never loses it: a write that fails is logged whole. */
static void
account_crash(sup *S, run_job *j, const char *how, int culprit)
{
    dray_server *s = S->s;
    dray_job *job = NULL;
    char err[256];
    json_t *o = NULL;
    if (!dray_job_parse(j->payload, j->len, s->opts.max_payload, &job, err, sizeof err))
        o = job->obj; /* parsed as a worker does: big integers kept exact */
    json_int_t crashes = 0;
    if (o) {
        json_t *n = json_object_get(o, CRASH_FIELD);
        crashes = (json_is_integer(n) ? json_integer_value(n) : 0) + (culprit ? 1 : 0);
        if (crashes)
            json_object_set_new(o, CRASH_FIELD, json_integer(crashes));
    }
    int dead = crashes >= S->po.crash_limit;
    char msg[300];
    if (culprit)
        snprintf(msg, sizeof msg, "its child process %s while running it (crash %lld of %d)", how,
                 (long long)crashes, S->po.crash_limit);
    else
        snprintf(msg, sizeof msg, "its child process %s while it ran beside the job at fault", how);
    int rc;
    size_t len = 0;
    char *json = NULL;
    if (o && dead) {
        json_object_set_new(o, "error_class", json_string(CRASH_ERROR));
        json_object_set_new(o, "error_message", json_string(msg));
        json_object_set_new(o, "failed_at", dray__time_json(s->opts.timestamps_ms, dray_now()));
    }
    if (o)
        json = dray__json_dump(o, &len);
    dray_job_free(job);
    dray__unit u = {j->queue, json ? json : j->payload, json ? len : j->len, NULL};
    double until = dray__write_deadline(s);
    do {
        rc = dead ? dray__dead_add(&S->sw.conn, s, u.payload, u.len, dray_now())
                  : dray__requeue(&S->sw.conn, s, &u);
    } while (rc && dray__write_again(&S->sw.conn, rc, until));
    if (rc)
        dray__log_payload(DRAY_LOG_ERROR, j->jid, j->klass, u.payload, u.len,
                          "job lost: cannot %s it after its child died (%s)",
                          dead ? "kill" : "requeue", S->sw.conn.errstr);
    else
        dray__logj(DRAY_LOG_WARN, j->jid, j->klass, -1, "%s; %s", msg,
                   dead ? "sent to the dead set as " CRASH_ERROR : "requeued");
    free(json);
}

/* A job we killed its child for at its timeout: the retry path, as a failure
 * of class Dray::JobTimeout. */
static void
account_timeout(sup *S, run_job *j)
{
    dray_job *job = NULL;
    char err[256], msg[200];
    if (dray_job_parse(j->payload, j->len, S->s->opts.max_payload, &job, err, sizeof err)) {
        account_crash(S, j, "could not be parsed after a timeout", 1);
        return;
    }
    if (!json_object_get(job->obj, "queue"))
        json_object_set_new(job->obj, "queue", json_string(j->queue));
    snprintf(msg, sizeof msg, "ran past its timeout of %gs; its child process was killed",
             j->timeout_s);
    dray__logj(DRAY_LOG_WARN, j->jid, j->klass, -1, "%s", msg);
    S->sw.cur.payload = j->payload; /* for the retry code's last-resort logs */
    S->sw.cur.len = j->len;
    S->sw.cur.queue = j->queue;
    dray__retry_or_die(&S->sw, job, dray__handler_find(S->s, j->klass), TIMEOUT_ERROR, msg);
    memset(&S->sw.cur, 0, sizeof S->sw.cur);
    dray_job_free(job);
}

/* A static name for the signals a child commonly dies of. */
static const char *
sig_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGABRT:
        return "SIGABRT";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    default:
        return "a signal";
    }
}

/* Remove a dead child's process record, so Busy stops showing it, and mark
 * it gone (<ns>dray:gone:<identity>, 10 min, holding the jid of the job
 * that killed it or "" when unknown), so a reliable-fetch module recovers
 * its lists at once (no wait for orphan_after) and counts only the culprit. */
static void
forget_identity(sup *S, const child *c, const char *culprit_jid)
{
    if (!c->identity[0])
        return;
    dray__buf b;
    dray__buf_init(&b);
    dray__key_buf(&b, &S->s->cfg, c->identity);
    char *k = b.p;
    if (!k)
        return;
    int rc = dray__conn_cmdf(&S->sw.conn, NULL, "SREM %s %s", S->s->k_processes, c->identity);
    if (!rc)
        rc = dray__conn_cmdf(&S->sw.conn, NULL, "DEL %s %s:work %s:workers", k, k, k);
    /* Known dead (reaped): a reliable-fetch module may recover its lists at
     * once instead of treating a young process as still starting. */
    char gone[320];
    snprintf(gone, sizeof gone, "dray:gone:%s", c->identity);
    char *gk = dray__key(&S->s->cfg, gone);
    if (!rc && gk)
        rc = dray__conn_cmdf(&S->sw.conn, NULL, "SET %s %s EX " GONE_TTL, gk, culprit_jid);
    dray__free(gk);
    if (rc)
        dray__log(DRAY_LOG_WARN, "supervisor: cannot remove the record of %s: %s", c->identity,
                  S->sw.conn.errstr);
    dray__free(k);
}

/* The queue a recovered payload goes back to (borrowed): its "queue" field
 * when dray__queue_check accepts it, else "default", where the worker's
 * parse sends a payload with a bad queue to the dead set with the reason
 * (a hostile name never becomes a key). */
static const char *
recover_queue(const json_t *o)
{
    const json_t *v = json_object_get(o, "queue");
    const char *q = json_string_value(v);
    if (!v)
        return "default";
    if (!q || strlen(q) != json_string_length(v) || dray__queue_check(q, NULL, 0)) {
        dray__log(DRAY_LOG_WARN, "supervisor: a recovered job names an unusable queue; it goes "
                                 "to \"default\" (and from there to the dead set)");
        return "default";
    }
    return q;
}

/* After a child ended: jobs left in its workers' in-flight lists that the
 * supervisor had no record of (moved, not yet reported) go back to their
 * queues when it crashed; then the lists are deleted. A clean exit requeued
 * its unfinished jobs itself. Records still in c->jobs were accounted. */
static void
inflight_recover(sup *S, child *c, int crashed)
{
    dray_server *s = S->s;
    for (int w = 0; w < s->opts.concurrency; w++) {
        char *k = inflight_key(s, c->identity, w);
        if (!k)
            continue;
        redisReply *r = NULL;
        int rc = crashed ? dray__conn_cmdf(&S->sw.conn, &r, "LRANGE %s 0 -1", k) : 0;
        for (size_t i = 0; !rc && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            json_t *o = dray__json_load(e->str, e->len, NULL); /* bigints too */
            dray__unit u = {(char *)recover_queue(o), e->str, e->len, NULL};
            double until = dray__write_deadline(s);
            int wr;
            do {
                wr = dray__requeue(&S->sw.conn, s, &u);
            } while (wr && dray__write_again(&S->sw.conn, wr, until));
            if (wr)
                dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, e->str, e->len,
                                  "job lost: cannot requeue it from a dead child's in-flight "
                                  "list (%s)",
                                  S->sw.conn.errstr);
            else
                dray__log(DRAY_LOG_WARN,
                          "supervisor: requeued a job the dead child had fetched, not started");
            json_decref(o);
        }
        if (r)
            freeReplyObject(r);
        if (!rc)
            rc = dray__conn_cmdf(&S->sw.conn, NULL, "DEL %s", k);
        if (rc)
            dray__log(DRAY_LOG_ERROR, "supervisor: in-flight list %s: %s", k, S->sw.conn.errstr);
        dray__free(k);
    }
}

/* Record that the supervisor accounted for jid (retry after a timeout, or a
 * cancel) in <ns>dray:gone:<identity>:accounted (a set, GONE_TTL), before
 * the gone marker: a reliable-fetch module recovering the dead child's
 * lists drops that job instead of running it a second time. Failure is
 * logged: the job may then run twice, never zero times. */
static void
mark_accounted(sup *S, const child *c, const char *jid)
{
    char name[340];
    snprintf(name, sizeof name, "dray:gone:%s:accounted", c->identity);
    char *k = dray__key(&S->s->cfg, name);
    int rc = k ? dray__conn_cmdf(&S->sw.conn, NULL, "SADD %s %s", k, jid) : DRAY_ENOMEM;
    if (!rc)
        rc = dray__conn_cmdf(&S->sw.conn, NULL, "EXPIRE %s " GONE_TTL, k);
    if (rc)
        dray__log(DRAY_LOG_WARN,
                  "supervisor: cannot note jid %s as accounted for (%s): the reliable-fetch "
                  "module may run it again",
                  jid, k ? S->sw.conn.errstr : "out of memory");
    dray__free(k);
}

/* Accounts for child idx's exit: its running jobs are retried, timed out or
 * left to its own requeue, its in-flight lists recovered, and its restart scheduled with backoff.
 */
static void
child_died(sup *S, int idx, int status)
{
    child *c = &S->kids[idx];
    if (c->fd >= 0)
        while (drain(S, c))
            ; /* the child is gone: read to EOF */
    char how[96];
    int crashed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "pid %d was killed by %s (%d)", (int)c->pid,
                 sig_name(WTERMSIG(status)), WTERMSIG(status));
    else
        snprintf(how, sizeof how, "pid %d exited with status %d", (int)c->pid, WEXITSTATUS(status));
    int culprit = atomic_load(&S->culprit[idx]);
    int cw = culprit >= 0 ? culprit : c->killed_worker;
    char culprit_jid[200] = "";
    if (cw >= 0 && cw < S->s->opts.concurrency && c->jobs[cw].jid)
        snprintf(culprit_jid, sizeof culprit_jid, "%s", c->jobs[cw].jid);
    int running = 0;
    for (int w = 0; w < S->s->opts.concurrency; w++)
        running += c->jobs[w].jid != NULL;
    if (crashed || running)
        dray__log(crashed ? DRAY_LOG_ERROR : DRAY_LOG_INFO,
                  "supervisor: child %d (%s) %s, running %d job%s", idx, c->identity, how, running,
                  running == 1 ? "" : "s");
    for (int w = 0; w < S->s->opts.concurrency; w++) {
        run_job *j = &c->jobs[w];
        if (!j->jid)
            continue;
        dray__log(DRAY_LOG_WARN, "supervisor: child %d was running jid %s class %s queue %s", idx,
                  j->jid, j->klass ? j->klass : "?", j->queue ? j->queue : "?");
        /* A clean exit requeued its unfinished jobs itself (shutdown). A
         * crash counts against the job whose thread took the fatal signal
         * when the child's handler named it, else against every job there
         * (SIGKILL, the OOM killer: no way to tell). */
        int late = j->timeout_s > 0 && dray__mono() - j->started > j->timeout_s;
        if (c->identity[0] && !dray__fetcher_active()) {
            /* accounted from the record below: not again from the list */
            char *k = inflight_key(S->s, c->identity, w);
            if (k && dray__conn_cmdf(&S->sw.conn, NULL, "LREM %s 1 %b", k, j->payload, j->len))
                dray__log(DRAY_LOG_WARN, "supervisor: %s: %s", k, S->sw.conn.errstr);
            dray__free(k);
        }
        int ours = w == c->killed_worker || (c->killed_worker >= 0 && late);
        if (ours && c->identity[0] && dray__fetcher_active())
            mark_accounted(S, c, j->jid);
        if (w == c->killed_worker && c->cancelled) {
            dray__logj(DRAY_LOG_WARN, j->jid, j->klass, -1,
                       "cancelled (dray cancel): its child was killed; not retried");
            dray__cancel_note(&S->sw.conn, S->s, j->jid, "killed", c->identity);
        } else if (w == c->killed_worker || (c->killed_worker >= 0 && late)) {
            account_timeout(S, j);
        } else if (crashed && !dray__fetcher_active()) {
            account_crash(S, j, how, culprit < 0 ? c->killed_worker < 0 : culprit == w);
        }
        job_clear(j);
    }
    if (c->identity[0] && !dray__fetcher_active())
        inflight_recover(S, c, crashed);
    if (crashed)
        forget_identity(S, c, culprit_jid);
    double lived = dray__mono() - c->started;
    c->pid = 0;
    c->quick_deaths = crashed && lived < QUICK_DEATH_S ? c->quick_deaths + 1 : 0;
    double wait = 0;
    if (c->quick_deaths > 0) {
        wait = 0.1;
        for (int i = 1; i < c->quick_deaths && wait < BACKOFF_MAX_S; i++)
            wait *= 2;
        if (wait > BACKOFF_MAX_S)
            wait = BACKOFF_MAX_S;
    }
    c->restart_at = dray__mono() + wait;
    if (wait >= 1)
        dray__log(DRAY_LOG_WARN, "supervisor: child %d died %d times in a row; restarting in %.1fs",
                  idx, c->quick_deaths, wait);
}

/* Bytes of the shared culprit page: one atomic_int per child. */
static size_t
sup_shm_len(const sup *S)
{
    return (size_t)S->po.processes * sizeof(atomic_int);
}

/* SIGKILLs a child whose job ran past its timeout, remembering which worker. */
static void
check_timeouts(sup *S)
{
    double now = dray__mono();
    for (int i = 0; i < S->po.processes; i++) {
        child *c = &S->kids[i];
        if (c->pid <= 0 || c->killed_worker >= 0)
            continue;
        for (int w = 0; w < S->s->opts.concurrency; w++) {
            run_job *j = &c->jobs[w];
            if (j->jid && j->timeout_s > 0 && now - j->started > j->timeout_s) {
                c->killed_worker = w;
                kill(c->pid, SIGKILL);
                break;
            }
        }
    }
}

/* Move every job of an in-flight list back to its queue's head, then the
 * list is gone. One script: two supervisors recovering the same list cannot
 * both requeue a job. A queue name dray__queue_check would refuse goes to
 * "default", as in recover_queue. KEYS: list; ARGV: "<ns>queue:",
 * "<ns>queues", DRAY_QUEUE_MAX. */
static dray__script orphan_script = {
    .src = "local n = 0\n"
           "local max = tonumber(ARGV[3])\n"
           "while true do\n"
           "  local v = redis.call('RPOP', KEYS[1])\n"
           "  if not v then break end\n"
           "  local ok, o = pcall(cjson.decode, v)\n"
           "  local q = 'default'\n"
           "  if ok and type(o) == 'table' and type(o['queue']) == 'string' then\n"
           "    local c = o['queue']\n"
           "    if #c > 0 and #c <= max and not c:find('[%c ,]') then q = c end\n"
           "  end\n"
           "  redis.call('RPUSH', ARGV[1] .. q, v)\n"
           "  redis.call('SADD', ARGV[2], q)\n"
           "  n = n + 1\n"
           "end\n"
           "return n\n",
};

/* True when pid is a zombie (dead, not yet reaped by its new parent). */
static bool
zombie(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* Whether the process named by identity ("host:pid:nonce") is gone: 1 dead
 * (a pid of this host that no longer exists), 0 alive (its heartbeat record
 * exists), -1 unknown (no record: dead, or starting and not yet beating). */
static int
owner_state(sup *S, const char *identity)
{
    dray_server *s = S->s;
    const char *c2 = strrchr(identity, ':');
    const char *c1 = c2 ? c2 - 1 : NULL;
    while (c1 && c1 > identity && *c1 != ':')
        c1--;
    if (c1 && *c1 == ':' && (size_t)(c1 - identity) == strlen(s->hostname) &&
        !strncmp(identity, s->hostname, (size_t)(c1 - identity))) {
        long pid = strtol(c1 + 1, NULL, 10);
        if (pid > 0 && ((kill((pid_t)pid, 0) && errno == ESRCH) || zombie((pid_t)pid)))
            return 1;
    }
    dray__buf b;
    dray__buf_init(&b);
    dray__key_buf(&b, &s->cfg, identity);
    redisReply *r = NULL;
    int alive = 0;
    if (!b.oom && !dray__conn_cmdf(&S->sw.conn, &r, "EXISTS %s", b.p))
        alive = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    else
        alive = 1; /* cannot tell: leave it */
    if (r)
        freeReplyObject(r);
    dray__buf_close(&b);
    return alive ? 0 : -1;
}

/* Requeue one orphaned in-flight list (its owner is dead). */
static void
orphan_requeue(sup *S, const char *key, const char *identity)
{
    char *qp = dray__key(&S->s->cfg, "queue:"), max[16];
    snprintf(max, sizeof max, "%d", DRAY_QUEUE_MAX);
    const char *av[4] = {key, qp, S->s->k_queues, max};
    redisReply *r = NULL;
    int rc = qp ? dray__conn_eval(&S->sw.conn, &orphan_script, &r, 1, 4, av, NULL) : DRAY_ENOMEM;
    if (rc)
        dray__log(DRAY_LOG_ERROR, "supervisor: cannot requeue in-flight list %s: %s", key,
                  S->sw.conn.errstr);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        dray__log(DRAY_LOG_WARN,
                  "supervisor: requeued %lld job%s left in flight by %s, a process that is gone",
                  r->integer, r->integer == 1 ? "" : "s", identity);
    if (r)
        freeReplyObject(r);
    dray__free(qp);
}

/* Look for in-flight lists of processes that died with nobody to account
 * for them (a supervisor killed with SIGKILL with its children, a host
 * crash) and requeue them: at once when the owner was a pid of this host
 * that is gone; after ORPHAN_GRACE_S without a heartbeat record otherwise
 * (another host's child may fetch before its first beat lands). */
static void
orphans_scan(sup *S)
{
    dray_server *s = S->s;
    char *pat = dray__key(&s->cfg, "dray:inflight:*");
    size_t pre = s->cfg.nslen + strlen("dray:inflight:");
    char **cand = NULL;
    double *cand_at = NULL;
    size_t ncand = 0;
    char cursor[32] = "0";
    double now = dray__mono();
    do {
        redisReply *r = NULL;
        if (!pat || dray__conn_cmdf(&S->sw.conn, &r, "SCAN %s MATCH %s COUNT 1000", cursor, pat) ||
            r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            break; /* next time */
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *key = keys->element[i]->str;
            if (keys->element[i]->type != REDIS_REPLY_STRING || strlen(key) <= pre)
                continue;
            char identity[300];
            snprintf(identity, sizeof identity, "%s", key + pre);
            char *w = strrchr(identity, ':'); /* ":<worker>" */
            if (!w)
                continue;
            *w = '\0';
            int mine = 0; /* our children are accounted when reaped, never here */
            for (int k = 0; k < S->po.processes; k++)
                mine |= S->kids[k].pid > 0 && !strcmp(S->kids[k].identity, identity);
            if (mine)
                continue;
            int st = owner_state(S, identity);
            size_t old = S->ncand;
            for (size_t k = 0; k < S->ncand; k++)
                if (!strcmp(S->cand[k], key))
                    old = k;
            if (st == 1 || (st < 0 && old < S->ncand && now - S->cand_at[old] >= ORPHAN_GRACE_S)) {
                orphan_requeue(S, key, identity);
            } else if (st < 0) {
                char **c2 = dray__realloc(cand, (ncand + 1) * sizeof *cand);
                if (c2)
                    cand = c2;
                double *a2 = c2 ? dray__realloc(cand_at, (ncand + 1) * sizeof *cand_at) : NULL;
                if (a2)
                    cand_at = a2;
                if (c2 && a2 && (cand[ncand] = dray__strdup(key)))
                    cand_at[ncand++] = old < S->ncand ? S->cand_at[old] : now;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    for (size_t k = 0; k < S->ncand; k++)
        dray__free(S->cand[k]);
    dray__free(S->cand);
    dray__free(S->cand_at);
    S->cand = cand;
    S->cand_at = cand_at;
    S->ncand = ncand;
    dray__free(pat);
}

/* Logs every child and the jobs it is running (TTIN). */
static void
dump(sup *S)
{
    for (int i = 0; i < S->po.processes; i++) {
        child *c = &S->kids[i];
        dray__log(DRAY_LOG_INFO, "supervisor: child %d pid %d %s", i, (int)c->pid, c->identity);
        for (int w = 0; w < S->s->opts.concurrency; w++)
            if (c->jobs[w].jid)
                dray__log(DRAY_LOG_INFO, "supervisor:   worker %d: jid %s class %s queue %s", w,
                          c->jobs[w].jid, c->jobs[w].klass, c->jobs[w].queue);
    }
}

/* Fills *S for po's children: the kids table and the shared culprit page.
 * 0, or DRAY_ENOMEM with nothing left to free. */
static int
sup_alloc(sup *S, dray_server *s, const dray_process_opts *po)
{
    memset(S, 0, sizeof *S);
    S->s = s;
    S->po = *po;
    if (S->po.crash_limit <= 0)
        S->po.crash_limit = 3;
    S->kids = dray__calloc((size_t)S->po.processes, sizeof *S->kids);
    if (!S->kids)
        return DRAY_ENOMEM;
    S->culprit =
        mmap(NULL, sup_shm_len(S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S->culprit == MAP_FAILED) {
        dray__free(S->kids);
        return DRAY_ENOMEM;
    }
    return 0;
}

/* Readies each child slot and the supervisor's own worker (its Redis
 * connection); sup_close undoes it whatever this returns (DRAY_ENOMEM when
 * a slot's job table could not be had). */
static int
sup_init(sup *S)
{
    dray_server *s = S->s;
    int rc = 0;
    for (int i = 0; i < S->po.processes && !rc; i++) {
        S->kids[i].fd = -1;
        dray__buf_init(&S->kids[i].in);
        S->kids[i].jobs = dray__calloc((size_t)s->opts.concurrency, sizeof(run_job));
        if (!S->kids[i].jobs)
            rc = DRAY_ENOMEM;
    }
    S->sw.srv = s;
    S->sw.index = -1;
    S->sw.crash_slot = -1;
    pthread_mutex_init(&S->sw.mu, NULL);
    dray__metrics_init(&S->sw.metrics);
    dray__conn_init(&S->sw.conn, &s->cfg);
    dray__handlers_sort(s);
    return rc;
}

/* Passes the server's pending stop, stop-now, quiet and dump requests on to
 * the children (alive: how many there are, for the log). */
static void
sup_relay_flags(sup *S, double now, int alive)
{
    dray_server *s = S->s;
    if (!S->stopping && atomic_load(&s->stop_flag)) {
        S->stopping = 1;
        dray__log(DRAY_LOG_INFO, "supervisor: stopping %d children", alive);
        signal_all(S, SIGTERM);
        for (int i = 0; i < S->po.processes; i++)
            S->kids[i].kill_at = now + s->opts.shutdown_timeout_s + 10;
    }
    if (S->stopping && atomic_exchange(&s->stop_now_flag, 0)) {
        signal_all(S, SIGINT); /* a child's second INT requeues at once */
        signal_all(S, SIGINT);
    }
    if (atomic_exchange(&s->quiet_flag, 0)) {
        S->quiet = 1;
        signal_all(S, SIGTSTP);
    }
    if (atomic_exchange(&s->dump_flag, 0)) {
        dump(S);
        signal_all(S, SIGTTIN);
    }
}

/* Waits up to 50 ms for the wake pipe or a child's report pipe and reads
 * whatever arrived. */
static void
sup_poll(sup *S)
{
    struct pollfd fds[1025];
    int map[1025], n = 0;
    fds[n].fd = S->s->wake_pipe[0];
    fds[n].events = POLLIN;
    map[n++] = -1;
    for (int i = 0; i < S->po.processes; i++)
        if (S->kids[i].fd >= 0) {
            fds[n].fd = S->kids[i].fd;
            fds[n].events = POLLIN;
            map[n++] = i;
        }
    int k = poll(fds, (nfds_t)n, 50);
    if (k <= 0)
        return;
    for (int f = 0; f < n; f++) {
        if (!(fds[f].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        if (map[f] < 0) {
            char b[64];
            while (read(S->s->wake_pipe[0], b, sizeof b) > 0)
                ;
        } else {
            drain(S, &S->kids[map[f]]);
        }
    }
}

/* SIGKILLs every child still running past its shutdown deadline. */
static void
sup_kill_overdue(sup *S)
{
    double now = dray__mono();
    for (int i = 0; i < S->po.processes; i++)
        if (S->kids[i].pid > 0 && S->kids[i].kill_at > 0 && now > S->kids[i].kill_at) {
            dray__log(DRAY_LOG_WARN, "supervisor: child %d outlived the shutdown; killing it", i);
            kill(S->kids[i].pid, SIGKILL);
            S->kids[i].kill_at = 0;
        }
}

/* One turn of the supervisor loop: relay signals, (re)start children that
 * are due, read reports, enforce timeouts, reap the dead. Returns 1 once
 * stopping with no child left; *alive is the count of running children. */
static int
sup_turn(sup *S, int *alive)
{
    double now = dray__mono();
    if (!S->stopping && !dray__fetcher_active() && now >= S->next_scan) {
        orphans_scan(S);
        S->next_scan = now + ORPHAN_SCAN_S;
    }
    sup_relay_flags(S, now, *alive);
    for (int i = 0; i < S->po.processes && !S->stopping; i++)
        if (S->kids[i].pid == 0 && now >= S->kids[i].restart_at) {
            if (child_start(S, i))
                S->kids[i].restart_at = now + 1;
        }
    *alive = 0;
    for (int i = 0; i < S->po.processes; i++)
        *alive += S->kids[i].pid > 0;
    if (S->stopping && *alive == 0)
        return 1;
    sup_poll(S);
    check_timeouts(S);
    sup_kill_overdue(S);
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < S->po.processes; i++)
            if (S->kids[i].pid == p)
                child_died(S, i, status);
    }
    return 0;
}

/* Frees what sup_alloc and sup_init set up; a child still running (only
 * after out of memory) is stopped and reaped first, never orphaned. */
static void
sup_close(sup *S)
{
    for (int i = 0; i < S->po.processes; i++) {
        if (S->kids[i].pid > 0) { /* only on out of memory: do not leave orphans */
            kill(S->kids[i].pid, SIGTERM);
            waitpid(S->kids[i].pid, NULL, 0);
        }
        if (S->kids[i].fd >= 0)
            close(S->kids[i].fd);
        for (int w = 0; S->kids[i].jobs && w < S->s->opts.concurrency; w++)
            job_clear(&S->kids[i].jobs[w]);
        dray__free(S->kids[i].jobs);
        dray__buf_close(&S->kids[i].in);
    }
    dray__free(S->kids);
    for (size_t k = 0; k < S->ncand; k++)
        dray__free(S->cand[k]);
    dray__free(S->cand);
    dray__free(S->cand_at);
    munmap(S->culprit, sup_shm_len(S));
    dray__conn_close(&S->sw.conn);
    dray__metrics_close(&S->sw.metrics);
    pthread_mutex_destroy(&S->sw.mu);
}

/* Runs s as a supervisor of po->processes children until stopped; see dray.h. */
int
dray_server_run_processes(dray_server *s, const dray_process_opts *po)
{
    if (!po || po->processes < 1 || po->processes > 1024)
        return DRAY_EINVAL;
    sup S;
    int rc = sup_alloc(&S, s, po);
    if (rc)
        return rc;
    rc = sup_init(&S);
    dray__log(DRAY_LOG_INFO, "supervisor pid %d: %d child process%s%s, concurrency %d each",
              (int)getpid(), S.po.processes, S.po.processes == 1 ? "" : "es",
              S.po.isolate ? " (isolate: one job per child)" : "", s->opts.concurrency);
    int alive = 0;
    while (!rc && !sup_turn(&S, &alive))
        ;
    sup_close(&S);
    dray__log(DRAY_LOG_INFO, "supervisor: stopped");
    return rc;
}
