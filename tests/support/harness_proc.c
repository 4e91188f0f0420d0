/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The harness's child processes: run a binary and capture its output, or
 * start one logging to a file and wait for it (harness.h). */
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* Append n bytes at p to the NUL-terminated growing buffer *buf of *len. */
static void
append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Read the child's two pipes until both close (or 60 s pass idle). */
static void
drain(int fd_out, int fd_err, test_output *r)
{
    size_t lo = 0, le = 0;
    append(&r->out, &lo, "", 0);
    append(&r->err, &le, "", 0);
    struct pollfd fds[2] = {{fd_out, POLLIN, 0}, {fd_err, POLLIN, 0}};
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
                append(&r->out, &lo, buf, (size_t)k);
            } else {
                append(&r->err, &le, buf, (size_t)k);
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
}

test_output
test_exec(const char *prog, const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)prog;
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
        execv(prog, argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    test_output r = {0, NULL, NULL};
    drain(po[0], pe[0], &r);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

void
test_output_free(test_output *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

void
test_expect_code(const test_output *r, int code, const char *what)
{
    if (r->code != code)
        fail_msg("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r->code, code, r->out,
                 r->err);
}

pid_t
test_spawn_logged(const char *logpath, const char *env, char *const *argv)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        signal(SIGPIPE, SIG_DFL);
        if (env)
            putenv((char *)env);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int
test_wait_exit(pid_t pid, double timeout_s)
{
    double end = test_now() + timeout_s;
    int st;
    while (test_now() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

void
test_child_wait(pid_t pid, const char *logpath, int (*cond)(void *), void *arg, double timeout_s,
                const char *what)
{
    if (test_wait_until(cond, arg, timeout_s))
        return;
    test_print_file(logpath);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("%s", what);
}

void
test_print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    if (f)
        fclose(f);
}
