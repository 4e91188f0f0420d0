/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The demo: enqueue jobs in bulk, process them with an embedded server that
 * loads the example handler library, show live progress, print throughput
 * and the Sidekiq-compatible stats from Redis.
 * Usage: dray-demo REDIS_URL HANDLER_LIBRARY [JOBS] [CONCURRENCY] [FETCH_BATCH] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dray/dray.h>

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
run_server(void *arg)
{
    int rc = dray_server_run(arg);
    if (rc)
        fprintf(stderr, "server stopped with %s\n", dray_strerror(rc));
    return NULL;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s REDIS_URL HANDLER_LIBRARY [JOBS] [CONCURRENCY]\n", argv[0]);
        return 2;
    }
    long jobs = argc > 3 ? atol(argv[3]) : 100000;
    int conc = argc > 4 ? atoi(argv[4]) : 10;
    int batch = argc > 5 ? atoi(argv[5]) : 1;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = argv[1];
    o.concurrency = conc;
    o.fetch_batch = batch;
    o.queues = "images,3 default,1";
    o.log_level = DRAY_LOG_ERROR; /* the Flaky failures would drown the progress line */
    o.shutdown_timeout_s = 5;
    char err[256];

    /* 1. enqueue: 99% ImageResize on "images", 1% Flaky on "default" */
    dray_client *c;
    if (dray_client_new(&o, &c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    json_t *images = json_array(), *flakies = json_array();
    for (long i = 0; i < jobs; i++) {
        if (i % 100 == 99)
            json_array_append_new(flakies, json_pack("[I]", (json_int_t)i));
        else
            json_array_append_new(images,
                                  json_pack("[I,I]", (json_int_t)(640 + i % 7), (json_int_t)480));
    }
    double t0 = mono();
    size_t pushed_a = 0, pushed_b = 0;
    dray_push_opts qa = {.queue = "images"}, qb = {.queue = "default"};
    if (dray_client_push_bulk(c, "ImageResize", images, &qa, NULL, &pushed_a) ||
        dray_client_push_bulk(c, "Flaky", flakies, &qb, NULL, &pushed_b)) {
        fprintf(stderr, "enqueue failed: %s\n", dray_client_errstr(c));
        return 1;
    }
    double enq = mono() - t0;
    printf("enqueued %zu jobs in %.3f s (%.0f jobs/s, bulk push)\n", pushed_a + pushed_b, enq,
           (double)(pushed_a + pushed_b) / enq);
    json_decref(images);
    json_decref(flakies);
    dray_client_free(c);

    /* 2. process */
    dray_server *s;
    if (dray_server_new(&o, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (dray_server_require(s, argv[2])) {
        fprintf(stderr, "%s\n", dray_server_errstr(s));
        return 1;
    }
    pthread_t th;
    t0 = mono();
    pthread_create(&th, NULL, run_server, s);
    int tty = isatty(1);
    dray_server_counts n;
    for (;;) {
        dray_server_counts_get(s, &n);
        double el = mono() - t0;
        if (tty) {
            printf("\rprocessed %8llu / %ld  failed %5llu  busy %2llu  %7.0f jobs/s",
                   (unsigned long long)n.processed, jobs, (unsigned long long)n.failed,
                   (unsigned long long)n.busy, (double)n.processed / (el > 0 ? el : 1));
            fflush(stdout);
        }
        if ((long)n.processed >= jobs)
            break;
        if (el > 300) {
            fprintf(stderr, "\ngave up after 300 s\n");
            break;
        }
        usleep(100000); /* progress display rate, not synchronisation */
    }
    double took = mono() - t0;
    if (tty)
        printf("\n");
    dray_server_stop(s);
    pthread_join(th, NULL);
    printf("processed %llu jobs in %.3f s with %d threads: %.0f jobs/s (%llu failed and went to "
           "the retry set)\n",
           (unsigned long long)n.processed, took, conc, (double)n.processed / took,
           (unsigned long long)n.failed);
    dray_server_free(s);

    /* 3. what Sidekiq's Web UI would show */
    dray_api *api;
    if (dray_api_new(&o, &api, err, sizeof err) == 0) {
        dray_stats st;
        if (dray_api_stats_get(api, &st) == 0)
            printf("stats: processed %lld, failed %lld, enqueued %lld, scheduled %lld, retries "
                   "%lld, dead %lld\n",
                   (long long)st.processed, (long long)st.failed, (long long)st.enqueued,
                   (long long)st.scheduled_size, (long long)st.retry_size, (long long)st.dead_size);
        dray_api_free(api);
    }
    return (long)n.processed >= jobs ? 0 : 1;
}
