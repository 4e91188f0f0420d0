/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Reliable fetch under chaos: N jobs over several worker processes, K
 * SIGKILLs of a random worker spread over the run (each restarted at
 * once), orphans recovered by the live processes. Every jid must run at
 * least once, none may be lost or end in the dead set, and every dead
 * process's list must drain. Prints jobs, kills, duplicates and recovery
 * times.
 *
 * Defaults are the full size (100,000 jobs, 20 kills, about 15 s here); smaller or larger:
 *   PRO_CHAOS_JOBS=20000 PRO_CHAOS_KILLS=50 ./test_pro_fetch_chaos
 * and with other worker settings: PRO_CHAOS_SET="pro.fetch_batch=8".
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "pro_test.h"

#define MAX_KILLS 200
#define NWORKERS 4

typedef struct kill_rec {
    pid_t pid;
    double at;        /* when it was killed */
    long long held;   /* jobs in its list right after the kill */
    double recovered; /* seconds until its list was empty; < 0 while not yet */
} kill_rec;

static void
test_chaos(void **state)
{
    (void)state;
    long njobs = pro_env_long("PRO_CHAOS_JOBS", 100000);
    long nkills = pro_env_long("PRO_CHAOS_KILLS", 20);
    if (nkills > MAX_KILLS)
        nkills = MAX_KILLS;
    /* Plain producer: this process does not load the module. */
    dray_client *cli;
    assert_int_equal(pro_plain_client(&cli), 0);
    json_t *list = json_array();
    for (long i = 0; i < njobs; i++)
        json_array_append_new(list, json_pack("[I, i]", (json_int_t)i, (int)(i % 3)));
    size_t pushed = 0;
    double t0 = pro_now();
    assert_int_equal(dray_client_push_bulk(cli, "Work", list, NULL, NULL, &pushed), 0);
    json_decref(list);
    assert_int_equal((long)pushed, njobs);
    fprintf(stderr, "pushed %ld jobs in %.2f s\n", njobs, pro_now() - t0);

    /* PRO_CHAOS_SET="pro.fetch_batch=8 ...": more worker settings */
    const char *args[16] = {"concurrency=4", "pro.orphan_after=3", "pro.orphan_check=0.5"};
    static char extra[512];
    snprintf(extra, sizeof extra, "%s", getenv("PRO_CHAOS_SET") ? getenv("PRO_CHAOS_SET") : "");
    int na = 3;
    char *save = NULL;
    for (char *t = strtok_r(extra, " ", &save); t && na < 15; t = strtok_r(NULL, " ", &save))
        args[na++] = t;
    args[na] = NULL;
    pro_worker w[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), args), 0);
    kill_rec kills[MAX_KILLS];
    int nk = 0;
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "chaos seed %u\n", seed);
    srand(seed);
    double start = pro_now(), deadline = start + 240;
    long long done = 0;
    while (pro_now() < deadline) {
        done = pro_int(pro_rc, "HLEN t:runs");
        if (nk < nkills && done >= (long long)(nk + 1) * njobs / (nkills + 1)) {
            int i = rand() % NWORKERS;
            pid_t pid = w[i].pid;
            assert_int_equal(pro_worker_stop(&w[i], SIGKILL, 5), 0);
            kills[nk].pid = pid;
            kills[nk].at = pro_now();
            kills[nk].held = pro_wip_of(pid);
            kills[nk].recovered = -1;
            nk++;
            assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), args), 0);
        }
        int pending = 0;
        for (int k = 0; k < nk; k++)
            if (kills[k].recovered < 0) {
                if (pro_wip_of(kills[k].pid) == 0)
                    kills[k].recovered = pro_now() - kills[k].at;
                else
                    pending++;
            }
        for (int i = 0; i < NWORKERS; i++)
            if (pro_worker_reap(&w[i])) {
                pro_worker_dump(&w[i], 20);
                fail_msg("worker %d exited unexpectedly", i);
            }
        if (done >= njobs && nk >= nkills && !pending)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* pacing the observer loop, not synchronisation */
    }
    double elapsed = pro_now() - start;
    long long recovered = pro_int(pro_rc, "GET pro:stat:recovered");
    long long maxruns, dups = pro_run_dups(&maxruns);
    double maxrec = 0, sumrec = 0;
    long long held = 0;
    for (int k = 0; k < nk; k++) {
        held += kills[k].held;
        sumrec += kills[k].recovered;
        if (kills[k].recovered > maxrec)
            maxrec = kills[k].recovered;
    }
    fprintf(stderr,
            "chaos: %ld jobs, %d kills (SIGKILL + restart), %d workers x 4 threads, %.1f s "
            "(%.0f jobs/s)\n"
            "chaos: executed %lld distinct jids; %lld ran more than once (max %lld runs); "
            "lost %lld\n"
            "chaos: %lld entries (running jobs, and finished ones not yet trimmed) were in killed "
            "processes' lists; %lld jobs recovered; recovery after a "
            "kill: avg %.1f s, max %.1f s (orphan_after 3 s)\n"
            "chaos: dead set %lld, queue left %lld\n",
            njobs, nk, NWORKERS, elapsed, (double)njobs / elapsed, done, dups, maxruns,
            njobs - done, held, recovered, nk ? sumrec / nk : 0, maxrec,
            pro_int(pro_rc, "ZCARD dead"), pro_int(pro_rc, "LLEN queue:default"));
    if (done != njobs)
        for (int i = 0; i < NWORKERS; i++)
            pro_worker_dump(&w[i], 20);
    assert_int_equal(done, njobs); /* every jid ran at least once: none lost */
    assert_int_equal(nk, nkills);
    for (int k = 0; k < nk; k++)
        assert_true(kills[k].recovered >= 0 && kills[k].recovered < 90);
    assert_int_equal(pro_int(pro_rc, "ZCARD dead"), 0); /* no false poison pill */
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 0);
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pro_worker_stop(&w[i], SIGTERM, 20), 0);
    dray_client_free(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chaos)};
    return cmocka_run_group_tests(tests, pro_setup_redis, pro_teardown);
}
