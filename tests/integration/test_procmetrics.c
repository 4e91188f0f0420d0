/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray_server_metrics_text (core/src/procmetrics.c), the text behind
 * `dray run --metrics-listen`: class names come from job payloads, so a
 * producer pushing endless distinct classes must not grow a worker's memory
 * without bound (past DRAY__PROC_CLASSES_MAX they count as "(other)", known
 * classes keep counting as themselves), and a hostile class name stays one
 * well-formed label. Served and parsed over HTTP in tests/web (procmetrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server.h"

static dray_server *
new_server(void)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = "redis://127.0.0.1:1/0"; /* never connected */
    o.concurrency = 2;
    o.log_level = DRAY_LOG_OFF;
    dray_server *s;
    char err[256];
    assert_int_equal(dray_server_new(&o, &s, err, sizeof err), 0);
    return s;
}

/* How many lines of text start with prefix. */
static size_t
lines_with(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += !strncmp(p, prefix, len);
    return n;
}

/* The value of the sample line starting with prefix, or -1. */
static double
value(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix)))
            return atof(p + strlen(prefix));
    return -1;
}

static void
test_endless_classes_stay_bounded(void **state)
{
    (void)state;
    dray_server *s = new_server();
    dray__worker *w = &s->workers[0];
    dray__procmetrics_record(w, "Known", 0, 5);
    char klass[64];
    for (int i = 0; i < DRAY__PROC_CLASSES_MAX + 500; i++) {
        snprintf(klass, sizeof klass, "Spam%d", i);
        dray__procmetrics_record(w, klass, i % 2, 1);
    }
    dray__procmetrics_record(w, "Known", 0, 5); /* known: still itself */
    dray__procmetrics_record(&s->workers[1], "Known", 1, 5);
    assert_true(w->cum.n <= DRAY__PROC_CLASSES_MAX + 1);
    char *text;
    size_t len;
    assert_int_equal(dray_server_metrics_text(s, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_int_equal(lines_with(text, "dray_process_jobs_processed_total{"),
                     DRAY__PROC_CLASSES_MAX + 1);
    assert_true(value(text, "dray_process_jobs_processed_total{class=\"(other)\"} ") >= 500);
    assert_int_equal(value(text, "dray_process_jobs_processed_total{class=\"Known\"} "), 3);
    assert_int_equal(value(text, "dray_process_jobs_failed_total{class=\"Known\"} "), 1);
    /* whatever went to (other) plus the named ones is every job */
    double sum = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, "dray_process_jobs_processed_total{", 34))
            sum += atof(strchr(p, '}') + 2);
    assert_int_equal((long)sum, DRAY__PROC_CLASSES_MAX + 500 + 3);
    free(text);
    dray_server_free(s);
}

static void
test_hostile_class_is_one_label(void **state)
{
    (void)state;
    dray_server *s = new_server();
    dray__procmetrics_record(&s->workers[0], "A\"b\\c\nd", 0, 25);
    char *text;
    assert_int_equal(dray_server_metrics_text(s, &text, NULL), 0);
    assert_non_null(
        strstr(text, "dray_process_jobs_processed_total{class=\"A\\\"b\\\\c\\nd\"} 1\n"));
    assert_non_null(strstr(text,
                           "dray_process_job_duration_seconds_bucket{class=\"A\\\"b\\\\c\\nd\","
                           "le=\"0.03\"} 1\n"));
    assert_non_null(strstr(text,
                           "dray_process_job_duration_seconds_bucket{class=\"A\\\"b\\\\c\\nd\","
                           "le=\"0.02\"} 0\n"));
    assert_non_null(strstr(text, "dray_process_redis_rtt_seconds -1\n")); /* no beat yet */
    assert_non_null(strstr(text, "dray_process_concurrency 2\n"));
    free(text);
    dray_server_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endless_classes_stay_bounded),
        cmocka_unit_test(test_hostile_class_is_one_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
