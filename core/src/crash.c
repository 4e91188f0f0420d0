/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Fatal signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT): before the
 * process dies, write the jid, class and queue of every running job and a
 * backtrace of the crashing thread to stderr, using only async-signal-safe
 * calls, then let the signal kill the process as it would have. */
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "server.h"

#define CRASH_SLOTS 1024     /* > the largest concurrency (1000) of one server */
#define CRASH_TEXT 400       /* "jid=… class=… queue=…", cut to fit */
#define CRASH_FRAMES 64      /* backtrace depth */
#define ALTSTACK_BYTES 65536 /* backtrace_symbols_fd needs a few KiB; SIGSTKSZ may be 8 KiB */

enum { SLOT_FREE = 0, SLOT_IDLE = 1, SLOT_RUNNING = 2 };

atomic_int *dray__crash_culprit;

/* One per worker thread, written only by its owner; read by the handler. */
typedef struct crash_slot {
    atomic_int state;      /* SLOT_* */
    atomic_int tid;        /* kernel thread id of the owner */
    int worker;            /* worker index */
    char text[CRASH_TEXT]; /* NUL-terminated, printable ASCII */
    const char *payload;   /* the running job's raw payload (the worker's w->cur, kept until
                              the slot leaves SLOT_RUNNING) */
    size_t len;
} crash_slot;

static crash_slot slots[CRASH_SLOTS];
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define NFATAL (sizeof fatal_signals / sizeof fatal_signals[0])
static struct sigaction old_actions[NFATAL];
static atomic_int crashing; /* tid of the thread writing the report, 0 before */

/* The calling thread's kernel id (async-signal-safe). */
static int
my_tid(void)
{
    return (int)syscall(SYS_gettid);
}

/* ---- async-signal-safe output ---------------------------------------- */

/* Writes s to stderr, retrying short writes (async-signal-safe). */
static void
put(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(STDERR_FILENO, s, n);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

/* Writes v in base (async-signal-safe). */
static void
put_ulong(unsigned long v, int base)
{
    char buf[32];
    int i = (int)sizeof buf;
    buf[--i] = '\0';
    do {
        buf[--i] = "0123456789abcdef"[v % (unsigned long)base];
        v /= (unsigned long)base;
    } while (v && i > 0);
    put(buf + i);
}

/* The payload escaped as dray__escape does, through a stack buffer. */
static void
put_escaped(const char *p, size_t n)
{
    char buf[512];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k + 4 > sizeof buf) {
            buf[k] = '\0';
            put(buf);
            k = 0;
        }
        unsigned char c = (unsigned char)p[i];
        if (c == '\\') {
            buf[k++] = '\\';
            buf[k++] = '\\';
        } else if (c < 0x20 || c >= 0x7f) {
            buf[k++] = '\\';
            buf[k++] = 'x';
            buf[k++] = "0123456789abcdef"[c >> 4];
            buf[k++] = "0123456789abcdef"[c & 15];
        } else {
            buf[k++] = (char)c;
        }
    }
    buf[k] = '\0';
    put(buf);
}

/* A static name for a fatal signal (async-signal-safe). */
static const char *
signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    case SIGABRT:
        return "SIGABRT";
    default:
        return "signal";
    }
}

/* The fatal-signal handler: writes one crash report (signal, the running job of
 * the crashing thread, its payload, a backtrace) then re-raises with the old action. */
static void
on_fatal(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    size_t which = 0;
    while (which < NFATAL && fatal_signals[which] != sig)
        which++;
    int me = my_tid(), first = 0;
    if (atomic_compare_exchange_strong(&crashing, &first, me)) {
        put("dray FATAL: ");
        put(signal_name(sig));
        put(" (");
        put_ulong((unsigned long)sig, 10);
        put(")");
        if (sig != SIGABRT && si) {
            put(" at address 0x");
            put_ulong((unsigned long)(uintptr_t)si->si_addr, 16);
        }
        put(" in thread ");
        put_ulong((unsigned long)me, 10);
        put("; the process dies now. Running jobs:\n");
        int running = 0;
        for (int i = 0; i < CRASH_SLOTS; i++) {
            if (atomic_load(&slots[i].state) != SLOT_RUNNING)
                continue;
            running++;
            put("dray FATAL:   worker-");
            put_ulong((unsigned long)slots[i].worker, 10);
            put(" ");
            put(slots[i].text);
            if (atomic_load(&slots[i].tid) == me) {
                put(" <- crashed in this job");
                if (dray__crash_culprit) /* a supervised child: tell the supervisor */
                    atomic_store(dray__crash_culprit, slots[i].worker);
            }
            put(" payload (");
            put_ulong((unsigned long)slots[i].len, 10);
            put(" bytes, escaped): ");
            put_escaped(slots[i].payload, slots[i].len);
            put("\n");
        }
        if (!running)
            put("dray FATAL:   (none)\n");
        put("dray FATAL: backtrace of thread ");
        put_ulong((unsigned long)me, 10);
        put(":\n");
        void *frames[CRASH_FRAMES];
        int n = backtrace(frames, CRASH_FRAMES);
        backtrace_symbols_fd(frames, n, STDERR_FILENO);
        put("dray FATAL: with basic fetch the running jobs above are gone from Redis (push a "
            "payload back with redis-cli LPUSH queue:<q> \"$(printf '%b' '<payload>')\"); "
            "with Pro reliable fetch they are recovered as orphans\n");
    } else if (first != me) {
        /* Another thread is writing the report; it will end the process. */
        for (;;)
            pause();
    }
    /* Back to what was there before us (default: die, with a core dump);
     * the signal stays blocked until we return, then is delivered again. */
    sigaction(sig, which < NFATAL ? &old_actions[which] : NULL, NULL);
    if (which < NFATAL && (old_actions[which].sa_handler == SIG_IGN)) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
    }
    raise(sig);
}

/* Installs on_fatal for every fatal signal, keeping the old actions; warms up
 * backtrace() first so the handler does not load libgcc_s. */
static void
install_once(void)
{
    /* backtrace() loads libgcc_s on first use (malloc, dlopen): do it now,
     * outside any signal handler. */
    void *frames[4];
    backtrace(frames, 4);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFATAL; i++)
        sigaction(fatal_signals[i], &sa, &old_actions[i]);
}

/* Installs the crash reporter once per process. Thread-safe. */
void
dray__crash_install(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_once);
}

/* Claims a crash slot for worker (-1 when none is free) and gives the thread
 * an alternate signal stack in *altstack (free with dray__crash_thread_end). */
int
dray__crash_thread_start(int worker, void **altstack)
{
    *altstack = NULL;
    int slot = -1;
    for (int i = 0; i < CRASH_SLOTS && slot < 0; i++) {
        int expected = SLOT_FREE;
        if (atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_IDLE))
            slot = i;
    }
    if (slot >= 0) {
        slots[slot].worker = worker;
        atomic_store(&slots[slot].tid, my_tid());
    }
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = dray__malloc(ALTSTACK_BYTES);
    ss.ss_size = ALTSTACK_BYTES;
    if (ss.ss_sp && sigaltstack(&ss, NULL) == 0)
        *altstack = ss.ss_sp;
    else
        dray__free(ss.ss_sp); /* a crash report may then overflow the stack: still safe */
    return slot;
}

/* Releases the thread's slot and alternate stack from dray__crash_thread_start. */
void
dray__crash_thread_end(int slot, void *altstack)
{
    if (altstack) {
        stack_t ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_flags = SS_DISABLE;
        sigaltstack(&ss, NULL);
        dray__free(altstack);
    }
    if (slot >= 0)
        atomic_store(&slots[slot].state, SLOT_FREE);
}

/* Append s to dst[*n..cap) as printable ASCII (others as '?'). */
static void
add_clean(char *dst, size_t *n, size_t cap, const char *s)
{
    for (; s && *s && *n + 1 < cap; s++)
        dst[(*n)++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    dst[*n] = '\0';
}

/* Records the job the thread now runs in its slot (payload borrowed until
 * dray__crash_job_end), for the crash report. No-op for slot -1. */
void
dray__crash_job_start(int slot, const char *jid, const char *klass, const char *queue,
                      const char *payload, size_t len)
{
    if (slot < 0)
        return;
    crash_slot *c = &slots[slot];
    atomic_store(&c->state, SLOT_IDLE); /* the handler skips it while the text changes */
    size_t n = 0;
    c->text[0] = '\0';
    add_clean(c->text, &n, sizeof c->text, "jid=");
    add_clean(c->text, &n, sizeof c->text, jid ? jid : "?");
    add_clean(c->text, &n, sizeof c->text, " class=");
    add_clean(c->text, &n, sizeof c->text, klass ? klass : "?");
    add_clean(c->text, &n, sizeof c->text, " queue=");
    add_clean(c->text, &n, sizeof c->text, queue ? queue : "?");
    c->payload = payload ? payload : "";
    c->len = payload ? len : 0;
    atomic_store(&c->state, SLOT_RUNNING);
}

/* Marks the thread's slot idle: a crash now reports no job. */
void
dray__crash_job_end(int slot)
{
    if (slot >= 0)
        atomic_store(&slots[slot].state, SLOT_IDLE);
}
