/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* A module's fetch provider in the worker loop: fetch, ack, requeue and the
 * shutdown bulk requeue. fetch.c, processor.c and server.c call these only
 * when dray__fetcher_active(); basic fetch never comes here. */
#include <stdio.h>
#include <string.h>

#include "module_internal.h"

#define PROVIDER_TIMEOUT_S 2.0 /* as basic fetch's BRPOP: workers notice shutdown */
#define UNIT_ROOM 256          /* a newer module's dray_unit may be bigger than ours */

typedef union unit_buf {
    dray_unit u;
    unsigned char room[UNIT_ROOM];
} unit_buf;

/* True when a module provides fetch: then the fetcher calls below replace
 * BRPOP, ack and RPUSH. */
bool
dray__fetcher_active(void)
{
    dray__hook_table *t = atomic_load_explicit(&dray__hooks, memory_order_acquire);
    return t && t->fetcher;
}

/* The fetch provider's name for messages (borrowed). */
static const char *
provider_name(const dray__hook_table *t)
{
    return t->fetcher->name ? t->fetcher->name : t->fetch_mod->name;
}

/* The module's view of one of our units. */
static void
view(dray_unit *v, const dray__unit *u)
{
    memset(v, 0, sizeof *v);
    v->struct_size = sizeof *v;
    v->queue = u->queue;
    v->payload = u->payload;
    v->len = u->len;
    v->token = u->token;
}

/* Fetches one job for w from the provider: 1 with *u filled (caller owns it),
 * 0 for none, or a negative code with the reason in w->conn.errstr. */
int
dray__fetcher_fetch(dray__worker *w, const char **keys, size_t n, dray__unit *u)
{
    dray__hook_table *t = atomic_load_explicit(&dray__hooks, memory_order_acquire);
    const dray_fetcher *f = t->fetcher;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    ctx.mod = t->fetch_mod;
    unit_buf b;
    memset(&b, 0, sizeof b);
    b.u.struct_size = sizeof b.u;
    w->conn.errstr[0] = '\0';
    int rc = f->fetch(&ctx, keys, n, PROVIDER_TIMEOUT_S, &b.u, f->userdata);
    if (rc <= 0) {
        if (rc < 0 && !w->conn.errstr[0])
            snprintf(w->conn.errstr, sizeof w->conn.errstr, "fetch provider %s: %s",
                     provider_name(t), dray_strerror(rc));
        return rc;
    }
    if (!b.u.payload) {
        dray__free(b.u.queue);
        snprintf(w->conn.errstr, sizeof w->conn.errstr,
                 "fetch provider %s returned a job without payload", provider_name(t));
        return DRAY_EINVAL;
    }
    u->queue = b.u.queue ? b.u.queue : dray__strdup("default");
    u->payload = b.u.payload;
    u->len = b.u.len ? b.u.len : strlen(b.u.payload);
    u->token = b.u.token;
    if (!u->queue) {
        dray__log(DRAY_LOG_ERROR, "out of memory holding a fetched job; job left to %s",
                  provider_name(t));
        dray__unit_clear(u);
        return DRAY_ENOMEM;
    }
    return 1;
}

/* Tells the provider u's job is finished (no-op in basic fetch); a failure is
 * logged, never returned. */
void
dray__fetch_ack(dray__worker *w, const dray__unit *u)
{
    dray__hook_table *t = atomic_load_explicit(&dray__hooks, memory_order_acquire);
    if (!t || !t->fetcher || !u->payload)
        return;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    ctx.mod = t->fetch_mod;
    dray_unit v;
    view(&v, u);
    int rc = t->fetcher->ack(&ctx, &v, t->fetcher->userdata);
    if (rc)
        dray__log(DRAY_LOG_ERROR, "fetch provider %s: ack failed: %s", provider_name(t),
                  w->conn.errstr[0] ? w->conn.errstr : dray_strerror(rc));
}

/* Which thread owns c: a worker's connection, or the main thread's. */
static int
conn_kind(const struct dray_server *s, const dray__conn *c)
{
    for (int i = 0; i < s->opts.concurrency; i++)
        if (c == &s->workers[i].conn)
            return DRAY_THREAD_WORKER;
    return DRAY_THREAD_MAIN;
}

/* Hands u's job back to the provider over c (a worker's or the main link);
 * 0 or the provider's error. */
int
dray__fetcher_requeue(dray__conn *c, const struct dray_server *s, const dray__unit *u)
{
    dray__hook_table *t = atomic_load_explicit(&dray__hooks, memory_order_acquire);
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, conn_kind(s, c), (struct dray_server *)s, c, &s->cfg);
    ctx.mod = t->fetch_mod;
    dray_unit v;
    view(&v, u);
    return t->fetcher->requeue(&ctx, &v, t->fetcher->userdata);
}

/* Shutdown: hands every running job to the provider's bulk requeue. False
 * without a provider; else *n counts the jobs put back. */
bool
dray__fetcher_requeue_running(struct dray_server *s, dray__conn *c, int *n)
{
    dray__hook_table *t = atomic_load_explicit(&dray__hooks, memory_order_acquire);
    *n = 0;
    if (!t || !t->fetcher)
        return false;
    const dray_fetcher *f = t->fetcher;
    int conc = s->opts.concurrency;
    dray_unit *views = dray__calloc((size_t)conc, sizeof *views);
    const dray_unit **ptrs = dray__calloc((size_t)conc, sizeof *ptrs);
    int *who = dray__calloc((size_t)conc, sizeof *who);
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_MAIN, s, c, &s->cfg);
    ctx.mod = t->fetch_mod;
    /* Every worker's lock at once (in index order; nobody else holds two),
     * so no job finishes or starts while the provider takes them back. */
    for (int i = 0; i < conc; i++)
        pthread_mutex_lock(&s->workers[i].mu);
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        dray__worker *w = &s->workers[i];
        if (!w->cur.payload || w->requeued != 0)
            continue;
        if (views && ptrs && who) {
            view(&views[k], &w->cur);
            ptrs[k] = &views[k];
            who[k] = i;
            k++;
        }
    }
    /* Through an outage the provider is asked again until the shutdown's
     * write window closes (its requeue only moves what is still listed). */
    double until = dray__write_deadline(s);
    int rc = 0;
    if (k && f->bulk_requeue) {
        while ((rc = f->bulk_requeue(&ctx, ptrs, k, f->userdata)) &&
               dray__write_again(c, rc, until))
            ;
        if (!rc)
            *n = (int)k;
    }
    for (size_t j = 0; j < k; j++) {
        dray__worker *w = &s->workers[who[j]];
        int one = rc;
        if (!f->bulk_requeue)
            while ((one = f->requeue(&ctx, &views[j], f->userdata)) &&
                   dray__write_again(c, one, until))
                ;
        if (one) {
            /* Left with the provider (its recovery), and if the handler
             * still finishes, its outcome is recorded as usual. */
            dray__log_payload(DRAY_LOG_ERROR, w->cur_jid, w->cur_class, w->cur.payload, w->cur.len,
                              "fetch provider %s cannot requeue unfinished job (%s)",
                              provider_name(t), c->errstr[0] ? c->errstr : dray_strerror(one));
            continue;
        }
        if (!f->bulk_requeue)
            (*n)++;
        w->requeued = 1;
    }
    for (int i = conc; i-- > 0;)
        pthread_mutex_unlock(&s->workers[i].mu);
    if (!views || !ptrs || !who)
        dray__log(DRAY_LOG_ERROR,
                  "out of memory at shutdown: running jobs stay with fetch provider %s "
                  "for its recovery",
                  provider_name(t));
    dray__free(views);
    dray__free(ptrs);
    dray__free(who);
    return true;
}
