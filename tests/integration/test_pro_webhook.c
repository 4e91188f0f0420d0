/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Webhook notifications against an HTTP receiver this test runs on
 * 127.0.0.1 (a thread; one request per connection). The receiver checks
 * X-Dray-Signature (HMAC-SHA256 of "<timestamp>.<body>" with the shared
 * secret) and the timestamp's freshness, and can answer 500 on purpose or
 * be shut down.
 *
 *   batch and job.death events arrive with their JSON body, signed
 *   a 500 is retried until it is accepted (same delivery id)
 *   the receiver is down, the worker is killed, the receiver comes back,
 *     a new worker delivers the event kept in Redis
 *   a delivery that never succeeds is parked in pro:notify:failed
 *   the Slack body
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "dray/pro_batch.h"
#include "pro_test.h"

#define SECRET "s3cret-for-tests"
#define MAX_REQS 64

static dray_pro *P;

/* ---- the receiver ---------------------------------------------------------- */

typedef struct request {
    char path[64];
    char event[64];
    char delivery[64];
    char *body;
    int sig_ok; /* signature valid and timestamp fresh */
    int status; /* what we answered */
} request;

static struct {
    pthread_mutex_t mu;
    int fd; /* listening socket, -1 when down */
    int port;
    pthread_t th;
    int running;
    int fail_next; /* answer 500 to this many requests */
    int always_fail;
    request reqs[MAX_REQS];
    int nreqs;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static const char *
header(const char *head, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = head; (p = strchr(p, '\n'));) {
        p++;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t k = strcspn(v, "\r\n");
            snprintf(out, n, "%.*s", (int)(k < n ? k : n - 1), v);
            break;
        }
    }
    return out;
}

static void
serve(int c)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (len < sizeof buf - 1 && !end) {
        ssize_t k = read(c, buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            return;
        len += (size_t)k;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return;
    char cl[32];
    header(buf, "Content-Length", cl, sizeof cl);
    size_t blen = (size_t)atol(cl), have = len - (size_t)(end + 4 - buf);
    while (have < blen && len < sizeof buf - 1) {
        ssize_t k = read(c, buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            return;
        len += (size_t)k;
        have += (size_t)k;
    }
    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
    *end = '\0';
    const char *body = end + 4;
    request q;
    memset(&q, 0, sizeof q);
    sscanf(buf, "POST %63s", q.path);
    header(buf, "X-Dray-Event", q.event, sizeof q.event);
    header(buf, "X-Dray-Delivery", q.delivery, sizeof q.delivery);
    char ts[32], sig[128];
    header(buf, "X-Dray-Timestamp", ts, sizeof ts);
    header(buf, "X-Dray-Signature", sig, sizeof sig);
    /* what a receiver does: recompute, compare in constant time, check age */
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET, strlen(SECRET));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    size_t glen = 0;
    long age = labs((long)time(NULL) - atol(ts));
    q.sig_ok = !strncmp(sig, "v1=", 3) &&
               sodium_hex2bin(got, sizeof got, sig + 3, strlen(sig + 3), NULL, &glen, NULL) == 0 &&
               glen == sizeof got && sodium_memcmp(got, mac, sizeof mac) == 0 && age < 300;
    q.body = strdup(body);
    pthread_mutex_lock(&R.mu);
    q.status = R.always_fail || R.fail_next > 0 ? 500 : 200;
    if (R.fail_next > 0)
        R.fail_next--;
    if (R.nreqs < MAX_REQS)
        R.reqs[R.nreqs++] = q;
    else
        free(q.body);
    pthread_mutex_unlock(&R.mu);
    char resp[256];
    const char *text = q.status == 200 ? "ok" : "on purpose!";
    int n = snprintf(
        resp, sizeof resp, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
        q.status, q.status == 200 ? "OK" : "Internal Server Error", strlen(text), text);
    if (write(c, resp, (size_t)n) < 0)
        return;
}

static void *
receiver_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            break; /* the socket was shut down */
        serve(c);
        close(c);
    }
    return NULL;
}

static void
receiver_up(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)R.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    R.port = ntohs(a.sin_port);
    R.fd = fd;
    assert_int_equal(pthread_create(&R.th, NULL, receiver_main, (void *)(intptr_t)fd), 0);
    R.running = 1;
}

static void
receiver_down(void)
{
    if (!R.running)
        return;
    shutdown(R.fd, SHUT_RDWR);
    close(R.fd);
    pthread_join(R.th, NULL);
    R.fd = -1;
    R.running = 0;
}

static void
receiver_reset(void)
{
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < R.nreqs; i++)
        free(R.reqs[i].body);
    R.nreqs = 0;
    R.fail_next = 0;
    R.always_fail = 0;
    pthread_mutex_unlock(&R.mu);
}

/* Accepted (200) requests for event ev whose body mentions `needle`. */
typedef struct seek {
    const char *event;
    const char *needle;
    int status;
} seek;

static int
count_reqs(const seek *s)
{
    int n = 0;
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < R.nreqs; i++)
        if ((!s->event || !strcmp(R.reqs[i].event, s->event)) &&
            (!s->needle || strstr(R.reqs[i].body, s->needle)) &&
            (!s->status || R.reqs[i].status == s->status))
            n++;
    pthread_mutex_unlock(&R.mu);
    return n;
}

static int
got(void *p)
{
    return count_reqs(p) > 0;
}

/* ---- workers ------------------------------------------------------------------- */

static void
worker(pro_worker *w, const char *extra)
{
    char url[128], slack[128];
    snprintf(url, sizeof url, "pro.webhook_url=http://127.0.0.1:%d/hook", R.port);
    snprintf(slack, sizeof slack, "pro.webhook_slack_url=http://127.0.0.1:%d/slack", R.port);
    const char *args[] = {"concurrency=2",
                          url,
                          slack,
                          "pro.webhook_secret=" SECRET,
                          "pro.webhook_poll=0.1",
                          "pro.webhook_backoff=0.2",
                          "pro.webhook_timeout=2",
                          extra ? extra : "retry_backoff=0.2",
                          NULL};
    assert_int_equal(pro_worker_start(w, pro_srv.url, pro_license_default(), args), 0);
}

static void
dying_job(char *jid)
{
    json_t *args = json_pack("[s]", "x");
    dray_push_opts zero = {.retry = DRAY_RETRY_ZERO};
    assert_int_equal(dray_client_push(pro_cli, "Fail", args, &zero, jid), 0);
    json_decref(args);
}

/* ---- tests --------------------------------------------------------------------- */

static void
test_signed_events(void **state)
{
    (void)state;
    dray_pro_batch_opts o = {.description = "hooked"};
    char bid[DRAY_PRO_BID_BYTES], jid[DRAY_JID_BYTES];
    assert_int_equal(dray_pro_batch_new(P, &o, bid), 0);
    json_t *args = json_pack("[i]", 1);
    assert_int_equal(dray_pro_batch_push(P, pro_cli, bid, "Work", args, NULL, NULL), 0);
    json_decref(args);
    assert_int_equal(dray_pro_batch_commit(P, bid, 0), 0);
    dying_job(jid);
    pro_worker w;
    worker(&w, NULL);
    seek success = {"batch.success", bid, 200}, death = {"job.death", jid, 200},
         complete = {"batch.complete", bid, 200};
    if (!pro_wait(got, &success, 20) || !pro_wait(got, &death, 20) ||
        !pro_wait(got, &complete, 20)) {
        pro_worker_dump(&w, 30);
        fail_msg("events missing");
    }
    /* Every delivery (3 events to 2 URLs) is acknowledged before the bodies
     * are counted: an event seen at one URL may still be on its way to the
     * other (the receiver records a request before it answers 200). */
    assert_true(pro_wait_int(pro_rc, 0, 20, "ZCARD pro:notify:due"));
    assert_true(pro_wait_int(pro_rc, 0, 20, "HLEN pro:notify:deliveries"));
    pthread_mutex_lock(&R.mu);
    int json_bodies = 0, slack_bodies = 0;
    for (int i = 0; i < R.nreqs; i++) {
        request *q = &R.reqs[i];
        assert_true(q->sig_ok);
        json_t *b = json_loads(q->body, 0, NULL);
        assert_non_null(b);
        if (!strcmp(q->path, "/slack")) {
            slack_bodies++;
            const char *text = json_string_value(json_object_get(b, "text"));
            assert_non_null(text);
            assert_true(strstr(text, bid) || strstr(text, jid));
        } else {
            json_bodies++;
            assert_string_equal(json_string_value(json_object_get(b, "event")), q->event);
            if (!strcmp(q->event, "batch.success")) {
                assert_string_equal(json_string_value(json_object_get(b, "bid")), bid);
                assert_string_equal(json_string_value(json_object_get(b, "description")), "hooked");
                assert_int_equal(json_integer_value(json_object_get(b, "total")), 1);
                assert_int_equal(json_integer_value(json_object_get(b, "pending")), 0);
            } else if (!strcmp(q->event, "job.death")) {
                assert_string_equal(json_string_value(json_object_get(b, "jid")), jid);
                assert_string_equal(json_string_value(json_object_get(b, "class")), "Fail");
                assert_string_equal(json_string_value(json_object_get(b, "error_class")),
                                    "ArgumentError");
            }
        }
        json_decref(b);
    }
    pthread_mutex_unlock(&R.mu);
    assert_true(json_bodies >= 3);
    assert_true(slack_bodies >= 1); /* the Slack URL gets the same events */
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
    /* Nothing is left to deliver. */
    assert_int_equal(pro_int(pro_rc, "ZCARD pro:notify:due"), 0);
    assert_int_equal(pro_int(pro_rc, "HLEN pro:notify:deliveries"), 0);
    assert_int_equal(pro_int(pro_rc, "LLEN pro:notify:events"), 0);
}

static void
test_retry_after_500(void **state)
{
    (void)state;
    pthread_mutex_lock(&R.mu);
    R.fail_next = 2;
    pthread_mutex_unlock(&R.mu);
    char jid[DRAY_JID_BYTES];
    pro_worker w;
    worker(&w, "pro.webhook_job_death=yes");
    dying_job(jid);
    seek ok = {"job.death", jid, 200}, failed = {"job.death", jid, 500};
    /* Two deliveries (JSON and Slack) fail once each or one fails twice;
     * both end accepted, with the same delivery id as their failure. */
    if (!pro_wait(got, &ok, 20)) {
        pro_worker_dump(&w, 30);
        fail_msg("the retried delivery never arrived");
    }
    assert_true(count_reqs(&failed) >= 1);
    /* everything delivered in the end: each 500 was followed by a 200 for
     * the same delivery id */
    assert_true(pro_wait_int(pro_rc, 0, 20, "HLEN pro:notify:deliveries"));
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < R.nreqs; i++) {
        if (R.reqs[i].status != 500)
            continue;
        int retried = 0;
        for (int j = i + 1; j < R.nreqs; j++)
            retried |= !strcmp(R.reqs[j].delivery, R.reqs[i].delivery) && R.reqs[j].status == 200;
        assert_true(retried);
    }
    pthread_mutex_unlock(&R.mu);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -q 'failed (HTTP 500: on purpose!), attempt 1 of 20' '%s'",
             w.log);
    assert_int_equal(system(cmd), 0);
}

static int
delivery_tried(void *p)
{
    (void)p;
    redisReply *v = test_redis_cmd(pro_rc, "HVALS pro:notify:deliveries");
    int tried = 0;
    for (size_t i = 0; i < v->elements; i++)
        tried |= strstr(v->element[i]->str, "\"attempts\":1") != NULL;
    freeReplyObject(v);
    return tried;
}

/* The worker's log (path p) reports the refused connection. */
static int
log_says_refused(void *p)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -q \"Couldn't connect to server\" '%s'", (const char *)p);
    return system(cmd) == 0;
}

static void
test_delivery_after_restart(void **state)
{
    (void)state;
    receiver_down();
    char jid[DRAY_JID_BYTES];
    pro_worker w1;
    worker(&w1, NULL);
    dying_job(jid);
    /* the worker tried and failed (connection refused): attempts >= 1 */
    int tried = pro_wait(delivery_tried, NULL, 20);
    assert_true(tried);
    /* the attempt is in Redis before its log line is written: wait for both */
    assert_true(pro_wait(log_says_refused, w1.log, 20));
    assert_int_equal(pro_worker_stop(&w1, SIGKILL, 5), 0);
    receiver_up();
    pro_worker w2;
    worker(&w2, NULL);
    seek ok = {"job.death", jid, 200};
    if (!pro_wait(got, &ok, 30)) {
        pro_worker_dump(&w2, 30);
        fail_msg("the event kept in Redis was not delivered after the restart");
    }
    assert_true(pro_wait_int(pro_rc, 0, 20, "HLEN pro:notify:deliveries"));
    assert_int_equal(pro_worker_stop(&w2, SIGTERM, 20), 0);
}

static void
test_parked_after_attempts(void **state)
{
    (void)state;
    pthread_mutex_lock(&R.mu);
    R.always_fail = 1;
    pthread_mutex_unlock(&R.mu);
    char jid[DRAY_JID_BYTES];
    pro_worker w;
    worker(&w, "pro.webhook_attempts=2");
    dying_job(jid);
    assert_true(pro_wait_int(pro_rc, 2, 20, "LLEN pro:notify:failed")); /* JSON and Slack */
    assert_int_equal(pro_int(pro_rc, "HLEN pro:notify:deliveries"), 0);
    char *parked = pro_str(pro_rc, "LINDEX pro:notify:failed 0");
    json_t *d = json_loads(parked, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 2);
    assert_non_null(strstr(json_string_value(json_object_get(d, "last_error")), "HTTP 500"));
    assert_non_null(strstr(json_string_value(json_object_get(d, "event")), jid));
    assert_true(pro_int(pro_rc, "TTL pro:notify:failed") > 0);
    json_decref(d);
    free(parked);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
}

/* ---- fixture ------------------------------------------------------------------ */

static int
setup(void **state)
{
    if (sodium_init() < 0 || pro_setup(state))
        return -1;
    receiver_up();
    return dray_pro_new(pro_rc, NULL, &P);
}

static int
teardown(void **state)
{
    (void)state;
    receiver_down();
    receiver_reset();
    dray_pro_free(P);
    return pro_teardown(state);
}

static int
fresh(void **state)
{
    pro_flush(state);
    receiver_reset();
    if (!R.running)
        receiver_up();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signed_events, fresh, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_retry_after_500, fresh, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_delivery_after_restart, fresh, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_parked_after_attempts, fresh, pro_leftovers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
