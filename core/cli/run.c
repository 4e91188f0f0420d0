/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run: configuration (file < environment < flags), modules, handler
 * libraries, signals, then dray_server_run until stopped. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "notify.h"

/* The running server, for the signal handlers. They only call the
 * async-signal-safe dray_server_stop/stop_now/quiet/dump. */
static dray_server *volatile g_server;
static volatile sig_atomic_t g_interrupts;

static void
on_signal(int sig)
{
    dray_server *s = g_server;
    if (!s)
        return;
    switch (sig) {
    case SIGINT:
        cli_notify("STOPPING=1");
        /* A second Ctrl-C means "now": requeue running jobs without waiting. */
        if (g_interrupts++ > 0)
            dray_server_stop_now(s);
        else
            dray_server_stop(s);
        break;
    case SIGTERM:
        cli_notify("STOPPING=1");
        dray_server_stop(s);
        break;
    case SIGTSTP:
    case SIGUSR1:
        dray_server_quiet(s);
        cli_notify("STATUS=quiet: finishing running jobs, fetching no new ones");
        break;
    case SIGTTIN:
        dray_server_dump(s);
        break;
    default:
        break;
    }
}

static const int handled_signals[] = {SIGINT, SIGTERM, SIGTSTP, SIGUSR1, SIGTTIN};
#define NSIGNALS (sizeof handled_signals / sizeof *handled_signals)

static void
signals_install(dray_server *s, struct sigaction *saved)
{
    g_server = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaddset(&sa.sa_mask, handled_signals[i]);
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &sa, &saved[i]);
}

static void
signals_restore(const struct sigaction *saved)
{
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &saved[i], NULL);
    g_server = NULL;
}

typedef struct require_ctx {
    dray_server *srv;
    int rc; /* the first failure */
} require_ctx;

/* Load the configured modules (`module` paths in order, `license`,
 * `license_file`, section keys such as `pro.webhook_url`) after the server
 * is built and before handler libraries load. A module that refuses stops
 * `dray run`: a user who asked for a module must not run without it. */
static int
load_modules(dray_server *srv, dray_config *cfg, char *err, size_t errlen)
{
    return dray_server_load_modules(srv, cfg, err, errlen);
}

static int
require_one(const char *key, const char *path, void *ud)
{
    (void)key;
    require_ctx *lc = ud;
    int rc = dray_server_require(lc->srv, path);
    if (rc) {
        fprintf(stderr, "dray run: --require %s: %s\n", path, dray_server_errstr(lc->srv));
        lc->rc = rc;
        return 1;
    }
    return 0;
}

/* processes / isolate / crash_limit from the configuration. A supervisor
 * forks its children with one fetch at a time (a child's prefetched jobs
 * are not in the supervisor's record) and --isolate with one thread. */
static int
process_opts(cli_ctx *ctx, dray_process_opts *po)
{
    const char *v = dray_config_get(ctx->cfg, "processes");
    po->processes = v ? atoi(v) : 0;
    v = dray_config_get(ctx->cfg, "isolate");
    po->isolate =
        v && (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"));
    v = dray_config_get(ctx->cfg, "crash_limit");
    po->crash_limit = v ? atoi(v) : 3;
    if (po->isolate && po->processes == 0)
        po->processes = 1;
    if (po->processes > 0) {
        ctx->opts.fetch_batch = 1;
        if (po->isolate)
            ctx->opts.concurrency = 1;
    }
    return CLI_OK;
}

int
cli_cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"concurrency", required_argument, NULL, 'c'},
        {"queue", required_argument, NULL, 'q'},
        {"timeout", required_argument, NULL, 't'},
        {"require", required_argument, NULL, 'r'},
        {"verbose", no_argument, NULL, 'v'},
        {"tag", required_argument, NULL, OPT_TAG},
        {"label", required_argument, NULL, OPT_LABEL},
        {"module", required_argument, NULL, OPT_MODULE},
        {"log-jobs", no_argument, NULL, OPT_LOG_JOBS},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"statsd", required_argument, NULL, OPT_STATSD},
        {"statsd-format", required_argument, NULL, OPT_STATSD_FORMAT},
        {"statsd-prefix", required_argument, NULL, OPT_STATSD_PREFIX},
        {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
        {"set", required_argument, NULL, OPT_SET},
        {"processes", required_argument, NULL, OPT_PROCESSES},
        {"isolate", no_argument, NULL, OPT_ISOLATE},
        {"crash-limit", required_argument, NULL, OPT_CRASH_LIMIT},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    cli_ctx ctx;
    cli_ctx_init(&ctx, "run");
    int queues_seen = 0, labels_seen = 0, c, r = 0;
    /* --set KEY=VALUE keys are copied here so the flags can borrow them */
    char *set_keys[CLI_MAX_FLAGS];
    size_t nset = 0;
    while ((c = getopt_long(argc, argv, "c:q:t:r:v" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(&ctx, c, optarg);
        if (h < 0)
            goto usage_fail;
        if (h > 0)
            continue;
        switch (c) {
        case 'c':
            r = cli_flag_push(&ctx, "--concurrency", "concurrency", optarg, 0);
            break;
        case 'q':
            r = cli_flag_push(&ctx, "--queue", "queue", optarg, queues_seen++ > 0);
            break;
        case 't':
            r = cli_flag_push(&ctx, "--timeout", "timeout", optarg, 0);
            break;
        case 'r':
            r = cli_flag_push(&ctx, "--require", "require", optarg, 1);
            break;
        case 'v':
            r = cli_flag_push(&ctx, "--verbose", "log_level", "debug", 0);
            break;
        case OPT_TAG:
            r = cli_flag_push(&ctx, "--tag", "tag", optarg, 0);
            break;
        case OPT_LABEL:
            r = cli_flag_push(&ctx, "--label", "label", optarg, labels_seen++ > 0);
            break;
        case OPT_MODULE:
            r = cli_flag_push(&ctx, "--module", "module", optarg, 1);
            break;
        case OPT_LOG_JOBS:
            r = cli_flag_push(&ctx, "--log-jobs", "log_jobs", "yes", 0);
            break;
        case OPT_PROCESSES:
            r = cli_flag_push(&ctx, "--processes", "processes", optarg, 0);
            break;
        case OPT_ISOLATE:
            r = cli_flag_push(&ctx, "--isolate", "isolate", "yes", 0);
            break;
        case OPT_CRASH_LIMIT:
            r = cli_flag_push(&ctx, "--crash-limit", "crash_limit", optarg, 0);
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json")) {
                r = cli_usage(&ctx, "--log-format takes text or json, not '%s'", optarg);
                goto fail;
            }
            r = cli_flag_push(&ctx, "--log-format", "log_format", optarg, 0);
            break;
        case OPT_STATSD:
            r = cli_flag_push(&ctx, "--statsd", "statsd", optarg, 0);
            break;
        case OPT_STATSD_FORMAT:
            if (strcmp(optarg, "dogstatsd") && strcmp(optarg, "statsd")) {
                r = cli_usage(&ctx, "--statsd-format takes dogstatsd or statsd, not '%s'", optarg);
                goto fail;
            }
            r = cli_flag_push(&ctx, "--statsd-format", "statsd_format", optarg, 0);
            break;
        case OPT_STATSD_PREFIX:
            r = cli_flag_push(&ctx, "--statsd-prefix", "statsd_prefix", optarg, 0);
            break;
        case OPT_METRICS_LISTEN:
            r = cli_flag_push(&ctx, "--metrics-listen", "metrics_listen", optarg, 0);
            break;
        case OPT_SET: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                r = cli_usage(&ctx, "--set needs KEY=VALUE, not '%s'", optarg);
                goto fail;
            }
            char *key = strndup(optarg, (size_t)(eq - optarg));
            if (!key || nset == CLI_MAX_FLAGS) {
                free(key);
                cli_err(&ctx, "too many --set flags");
                goto usage_fail;
            }
            set_keys[nset++] = key;
            /* add: a module's repeatable section keys can be given twice */
            r = cli_flag_push(&ctx, "--set", key, eq + 1, 1);
            break;
        }
        default:
            goto usage_fail;
        }
        if (r)
            goto usage_fail;
    }
    if (ctx.help) {
        cli_help(stdout, "run");
        r = CLI_OK;
        goto fail;
    }
    if (optind < argc) {
        r = cli_usage(&ctx, "unexpected argument '%s'", argv[optind]);
        goto fail;
    }
    if ((r = cli_config_build(&ctx)))
        goto fail;
    /* config file < DRAY_* < flags, like every key; checked before anything logs */
    const char *log_format = dray_config_get(ctx.cfg, "log_format");
    const char *statsd = dray_config_get(ctx.cfg, "statsd");
    const char *statsd_format = dray_config_get(ctx.cfg, "statsd_format");
    const char *statsd_prefix = dray_config_get(ctx.cfg, "statsd_prefix");
    const char *metrics_listen = dray_config_get(ctx.cfg, "metrics_listen");
    if (log_format && strcmp(log_format, "text") && strcmp(log_format, "json")) {
        cli_err(&ctx, "log_format must be text or json, not '%s'", log_format);
        r = CLI_ECONFIG;
        goto fail;
    }
    if (statsd_format && strcmp(statsd_format, "dogstatsd") && strcmp(statsd_format, "statsd")) {
        cli_err(&ctx, "statsd_format must be dogstatsd or statsd, not '%s'", statsd_format);
        r = CLI_ECONFIG;
        goto fail;
    }
    if (log_format)
        dray_log_set_format(strcmp(log_format, "json") ? DRAY_LOG_FORMAT_TEXT
                                                       : DRAY_LOG_FORMAT_JSON);
    int dogstatsd = !statsd_format || !strcmp(statsd_format, "dogstatsd");

    dray_process_opts po = {0, 0, 0};
    if ((r = process_opts(&ctx, &po)))
        goto fail;
    if (metrics_listen && *metrics_listen && po.processes > 0) {
        cli_err(&ctx, "metrics_listen serves one process's figures: not with processes/isolate "
                      "(scrape dray web's /metrics)");
        r = CLI_ECONFIG;
        goto fail;
    }
    char err[512];
    dray_server *srv;
    int rc = dray_server_new(&ctx.opts, &srv, err, sizeof err);
    if (rc) {
        cli_err(&ctx, "%s", err);
        r = rc == DRAY_ENOMEM ? CLI_ERUNTIME : CLI_ECONFIG;
        goto fail;
    }
    err[0] = '\0';
    if ((rc = load_modules(srv, ctx.cfg, err, sizeof err))) {
        cli_err(&ctx, "%s", err[0] ? err : dray_strerror(rc));
        dray_server_free(srv);
        r = CLI_ECONFIG;
        goto fail;
    }
    require_ctx lc = {srv, 0};
    if (dray_config_get_all(ctx.cfg, "require", require_one, &lc)) {
        dray_server_free(srv);
        r = CLI_ECONFIG;
        goto fail;
    }
    if (cli_notify_open(err, sizeof err)) {
        cli_err(&ctx, "%s", err);
        dray_server_free(srv);
        r = CLI_ECONFIG;
        goto fail;
    }
    if (statsd && *statsd && dray_server_statsd(srv, statsd, dogstatsd, statsd_prefix)) {
        cli_err(&ctx, "%s", dray_server_errstr(srv));
        dray_server_free(srv);
        r = CLI_ECONFIG;
        goto fail;
    }
    cli_metrics *metrics = NULL;
    if (metrics_listen && *metrics_listen &&
        (r = cli_metrics_start(srv, metrics_listen, &metrics, err, sizeof err))) {
        cli_err(&ctx, "%s", err);
        dray_server_free(srv);
        goto fail;
    }
    struct sigaction saved[NSIGNALS];
    signals_install(srv, saved);
    /* Type=notify: configuration, modules and handlers are loaded; what
     * can still fail is Redis, which the server retries in the background. */
    cli_notify("READY=1\nSTATUS=running");
    rc = po.processes > 0 ? dray_server_run_processes(srv, &po) : dray_server_run(srv);
    signals_restore(saved);
    cli_metrics_stop(metrics); /* before srv can be freed */
    cli_notify_close();
    if (rc)
        cli_err(&ctx, "%s", dray_server_errstr(srv));
    /* Handlers that outlived the shutdown had their jobs requeued; the
     * process exits without waiting for them (free would). */
    if (dray_server_wait(srv, 0) == 0)
        dray_server_free(srv);
    r = rc ? CLI_ERUNTIME : CLI_OK;
    goto fail;

usage_fail:
    if (r != CLI_EUSAGE)
        fprintf(stderr, "See 'dray run --help'.\n");
    r = CLI_EUSAGE;
fail:
    cli_ctx_close(&ctx);
    for (size_t i = 0; i < nset; i++)
        free(set_keys[i]);
    return r;
}
