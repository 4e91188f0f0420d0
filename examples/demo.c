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

/* Step 1: bulk-push `jobs` jobs, 99% ImageResize on "images" and 1% Flaky
 * on "default", and print the enqueue rate. Returns 0, or 1 after the
 * message. */
static int
enqueue(const dray_options *o, long jobs)
{
    char err[256];
    dray_client *c;
    if (dray_client_new(o, &c, err, sizeof err)) {
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
    return 0;
}

/* Poll s's counters until jobs are processed (or 300 s pass), drawing a
 * progress line on a terminal. Fills *n with the last counts and returns
 * the seconds since t0. */
static double
watch(dray_server *s, long jobs, double t0, dray_server_counts *n)
{
    int tty = isatty(1);
    for (;;) {
        dray_server_counts_get(s, n);
        double el = mono() - t0;
        if (tty) {
            printf("\rprocessed %8llu / %ld  failed %5llu  busy %2llu  %7.0f jobs/s",
                   (unsigned long long)n->processed, jobs, (unsigned long long)n->failed,
                   (unsigned long long)n->busy, (double)n->processed / (el > 0 ? el : 1));
            fflush(stdout);
        }
        if ((long)n->processed >= jobs)
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
    return took;
}

/* Step 2: run an embedded server with the handler library until jobs are
 * processed, then stop it and print the throughput. Returns 0 when all
 * were processed, 1 when some were not, -1 when the server could not
 * start (after the message). */
static int
process(const dray_options *o, const char *handlers, long jobs)
{
    char err[256];
    dray_server *s;
    if (dray_server_new(o, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (dray_server_require(s, handlers)) {
        fprintf(stderr, "%s\n", dray_server_errstr(s));
        return -1;
    }
    pthread_t th;
    double t0 = mono();
    pthread_create(&th, NULL, run_server, s);
    dray_server_counts n;
    double took = watch(s, jobs, t0, &n);
    dray_server_stop(s);
    pthread_join(th, NULL);
    printf("processed %llu jobs in %.3f s with %d threads: %.0f jobs/s (%llu failed and went to "
           "the retry set)\n",
           (unsigned long long)n.processed, took, o->concurrency, (double)n.processed / took,
           (unsigned long long)n.failed);
    dray_server_free(s);
    return (long)n.processed >= jobs ? 0 : 1;
}

/* Step 3: print what Sidekiq's Web UI would show; prints nothing when
 * Redis cannot be read. */
static void
show_stats(const dray_options *o)
{
    char err[256];
    dray_api *api;
    if (dray_api_new(o, &api, err, sizeof err) == 0) {
        dray_stats st;
        if (dray_api_stats_get(api, &st) == 0)
            printf("stats: processed %lld, failed %lld, enqueued %lld, scheduled %lld, retries "
                   "%lld, dead %lld\n",
                   (long long)st.processed, (long long)st.failed, (long long)st.enqueued,
                   (long long)st.scheduled_size, (long long)st.retry_size, (long long)st.dead_size);
        dray_api_free(api);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s REDIS_URL HANDLER_LIBRARY [JOBS] [CONCURRENCY]\n", argv[0]);
        return 2;
    }
    long jobs = argc > 3 ? atol(argv[3]) : 100000;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = argv[1];
    o.concurrency = argc > 4 ? atoi(argv[4]) : 10;
    o.fetch_batch = argc > 5 ? atoi(argv[5]) : 1;
    o.queues = "images,3 default,1";
    o.log_level = DRAY_LOG_ERROR; /* the Flaky failures would drown the progress line */
    o.shutdown_timeout_s = 5;
    if (enqueue(&o, jobs))
        return 1;
    int rc = process(&o, argv[2], jobs);
    if (rc < 0)
        return 1;
    show_stats(&o);
    return rc;
}
