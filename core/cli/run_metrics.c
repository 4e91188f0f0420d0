/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run --metrics-listen ADDR: this process's Prometheus endpoint, served
 * by the worker itself on libmicrohttpd (as dray web). GET /metrics answers
 * dray_server_metrics_text (in-memory counters, no Redis round trip); every
 * other path is 404. No auth: it binds to loopback unless told otherwise. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "web.h"

struct cli_metrics {
    struct MHD_Daemon *d;
    dray_server *srv;
};

/* Queue a response of status with body (freed here when mode is MUST_FREE, even on failure).
 * MHD_NO when it cannot be built. */
static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *ctype, char *body, size_t len,
      enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* libmicrohttpd handler: GET/HEAD /metrics from the server's in-memory counters; 404 or 405
 * otherwise; bodies are dropped. */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
    (void)version;
    (void)upload;
    cli_metrics *m = cls;
    if (!*con_cls) { /* first call: headers only */
        *con_cls = m;
        return MHD_YES;
    }
    if (*upload_len) {
        *upload_len = 0; /* a body is read and dropped */
        return MHD_YES;
    }
    static char not_found[] = "not found: GET /metrics\n";
    static char bad_method[] = "GET only\n";
    static char oom[] = "out of memory\n";
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", bad_method,
                     strlen(bad_method), MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/metrics"))
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", not_found,
                     strlen(not_found), MHD_RESPMEM_PERSISTENT);
    char *text;
    size_t len;
    if (dray_server_metrics_text(m->srv, &text, &len))
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", oom,
                     strlen(oom), MHD_RESPMEM_PERSISTENT);
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                 MHD_RESPMEM_MUST_FREE);
}

/* Serve GET /metrics for srv on addr (a bare port means loopback) from a libmicrohttpd
 * thread. 0 with *out, or CLI_ECONFIG / CLI_ERUNTIME with err set. */
int
cli_metrics_start(dray_server *srv, const char *addr, cli_metrics **out, char *err, size_t errlen)
{
    *out = NULL;
    char full[300];
    /* a bare port means loopback */
    if (!strchr(addr, ':'))
        snprintf(full, sizeof full, "127.0.0.1:%s", addr);
    else
        snprintf(full, sizeof full, "%s", addr);
    struct sockaddr_storage sa;
    socklen_t salen;
    int loopback = 0;
    if (web_parse_listen(full, &sa, &salen, &loopback)) {
        return cli_errbuf(err, errlen, CLI_ECONFIG,
                          "metrics_listen '%s': want PORT, HOST:PORT or [IPv6]:PORT", addr);
    }
    cli_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        return cli_errbuf(err, errlen, CLI_ERUNTIME, "out of memory");
    }
    m->srv = srv;
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                                (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                            0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
    if (!m->d) {
        free(m);
        return cli_errbuf(err, errlen, CLI_ERUNTIME,
                          "metrics_listen: cannot listen on %s (in use, or not an address "
                          "of this host)",
                          full);
    }
    unsigned port = web_bound_port(m->d);
    fprintf(stderr, "dray run: metrics on http://%.*s:%u/metrics%s\n",
            (int)(strrchr(full, ':') - full), full, port,
            loopback ? "" : " (not loopback, and no auth: firewall it)");
    fflush(stderr);
    *out = m;
    return 0;
}

/* Stop the endpoint (joins its thread) and free m; accepts NULL. Call before freeing the
 * server. */
void
cli_metrics_stop(cli_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m);
}
