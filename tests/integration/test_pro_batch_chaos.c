/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * A 10,000-job batch while worker processes are SIGKILLed at random points
 * and restarted: jobs run again after recovery (at least once), yet each
 * callback (complete, success) runs exactly once, as counted in Redis by
 * the callback handler. A few jobs fail once and succeed on their retry. PRO_BATCH_CHAOS_JOBS /
 * PRO_BATCH_CHAOS_KILLS change the size (defaults 10000 / 10).
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

#include "dray/pro_batch.h"
#include "pro_test.h"

#define NWORKERS 4

static int
all_idle(void *p)
{
    (void)p;
    return pro_int(pro_rc, "LLEN queue:default") == 0 && pro_int(pro_rc, "LLEN queue:cb") == 0 &&
           pro_int(pro_rc, "ZCARD retry") == 0 && pro_int(pro_rc, "ZCARD schedule") == 0 &&
           pro_wip_len("*") == 0;
}

static void
test_batch_chaos(void **state)
{
    (void)state;
    long njobs = pro_env_long("PRO_BATCH_CHAOS_JOBS", 10000);
    long nkills = pro_env_long("PRO_BATCH_CHAOS_KILLS", 10);
    long nflaky = njobs / 1000;
    dray_server *producer;
    dray_client *cli;
    pro_producer_open(pro_srv.url, pro_license_default(), &producer, &cli);
    dray_pro *p;
    assert_int_equal(dray_pro_new(pro_rc, NULL, &p), 0);
    dray_pro_batch_opts o = {.description = "chaos",
                             .callback_queue = "cb",
                             .on_complete = {"Cb", NULL},
                             .on_success = {"Cb", NULL},
                             .on_death = {"Cb", NULL}};
    char bid[DRAY_PRO_BID_BYTES];
    assert_int_equal(dray_pro_batch_new(p, &o, bid), 0);
    json_t *list = json_array();
    for (long i = 0; i < njobs - nflaky; i++)
        json_array_append_new(list, json_pack("[I, i]", (json_int_t)i, (int)(i % 3)));
    size_t pushed = 0;
    double t0 = pro_now();
    assert_int_equal(dray_pro_batch_push_bulk(p, cli, bid, "Work", list, NULL, NULL, &pushed), 0);
    json_decref(list);
    list = json_array();
    for (long i = 0; i < nflaky; i++)
        json_array_append_new(list, json_pack("[I, i]", (json_int_t)i, 1));
    size_t pf = 0;
    assert_int_equal(dray_pro_batch_push_bulk(p, cli, bid, "Flaky", list, NULL, NULL, &pf), 0);
    json_decref(list);
    assert_int_equal((long)(pushed + pf), njobs);
    assert_int_equal(dray_pro_batch_commit(p, bid, 0), 0);
    char *one = pro_str(pro_rc, "LINDEX queue:default 0");
    assert_non_null(one);
    assert_non_null(strstr(one, bid));
    assert_null(strstr(one, "pro_reg")); /* the helper's mark is not stored */
    free(one);
    fprintf(stderr, "batch %s: %ld jobs pushed and registered in %.2f s\n", bid, njobs,
            pro_now() - t0);

    const char *args[] = {"concurrency=4", "pro.orphan_after=3", "pro.orphan_check=0.5",
                          "retry_backoff=0.5", NULL};
    pro_worker w[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), args), 0);
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    fprintf(stderr, "chaos seed %u\n", seed);
    int kills = 0;
    double start = pro_now(), deadline = start + 150;
    char cbkey[64];
    snprintf(cbkey, sizeof cbkey, "%s:success", bid);
    while (pro_now() < deadline) {
        long long done = pro_int(pro_rc, "HLEN t:runs");
        if (kills < nkills && done >= (long long)(kills + 1) * njobs / (nkills + 1)) {
            int i = rand() % NWORKERS;
            assert_int_equal(pro_worker_stop(&w[i], SIGKILL, 5), 0);
            kills++;
            assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), args), 0);
        }
        for (int i = 0; i < NWORKERS; i++)
            if (pro_worker_reap(&w[i])) {
                pro_worker_dump(&w[i], 20);
                fail_msg("worker %d exited unexpectedly", i);
            }
        if (kills >= nkills && pro_int(pro_rc, "HGET t:cb %s", cbkey) >= 1)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* pacing the observer loop, not synchronisation */
    }
    double took = pro_now() - start;
    /* Let every recovery, retry and duplicate delivery play out. */
    int idle = pro_wait(all_idle, NULL, 60);
    long long runs = pro_int(pro_rc, "HLEN t:runs"), dups = pro_run_dups(NULL);
    long long ncomplete = pro_int(pro_rc, "HGET t:cb %s:complete", bid);
    long long nsuccess = pro_int(pro_rc, "HGET t:cb %s:success", bid);
    long long ndeath = pro_int(pro_rc, "HGET t:cb %s:death", bid);
    fprintf(stderr,
            "batch chaos: %ld jobs (%ld fail once), %d SIGKILLs + restarts, %.1f s to success; "
            "%lld jobs ran, %lld more than once; recovered %lld; callbacks: complete %lld, "
            "success %lld, death %lld\n",
            njobs, nflaky, kills, took, runs, dups, pro_int(pro_rc, "GET pro:stat:recovered"),
            ncomplete, nsuccess, ndeath);
    assert_true(idle);
    assert_int_equal(kills, nkills);
    assert_int_equal(runs, njobs - nflaky + nflaky); /* every job ran (Flaky counts on success) */
    assert_int_equal(ncomplete, 1);
    assert_int_equal(nsuccess, 1);
    assert_int_equal(ndeath, 0);
    dray_pro_batch_status *st;
    assert_int_equal(dray_pro_batch_status_get(p, bid, &st), 0);
    assert_int_equal(st->total, njobs);
    assert_int_equal(st->pending, 0);
    assert_int_equal(st->failures, 0);
    /* complete never after success (they coincide when the last job to
     * run at all is also the last to succeed, e.g. one recovered late) */
    assert_true(st->complete_at > 0 && st->success_at >= st->complete_at);
    dray_pro_batch_status_free(st);
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pro_worker_stop(&w[i], SIGTERM, 20), 0);
    dray_pro_free(p);
    dray_client_free(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_batch_chaos)};
    return cmocka_run_group_tests(tests, pro_setup_redis, pro_teardown);
}
