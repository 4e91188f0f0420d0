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

/* Signal handler: INT stops (twice: now), TERM stops, TSTP/USR1 quiet, TTIN
 * dumps (dray_server_dump). Async-signal-safe calls only. */
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

/* Route the handled signals to on_signal for s, each blocking the others while it runs;
 * previous actions into saved. */
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

/* Put back the actions signals_install saved and forget the server. */
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

/* dray_config_get_all callback: load one handler library into ud's server. Non-zero (stop)
 * after printing why it failed. */
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

/* Flags that push a config key with no check of their own: option code,
 * flag, config key, fixed value (NULL: the argument) and whether repeats add. */
typedef struct run_flag {
    int c;
    const char *opt, *key, *value;
    int add;
} run_flag;

static const run_flag run_flags[] = {
    {'c', "--concurrency", "concurrency", NULL, 0},
    {'t', "--timeout", "timeout", NULL, 0},
    {'r', "--require", "require", NULL, 1},
    {'v', "--verbose", "log_level", "debug", 0},
    {OPT_TAG, "--tag", "tag", NULL, 0},
    {OPT_MODULE, "--module", "module", NULL, 1},
    {OPT_LOG_JOBS, "--log-jobs", "log_jobs", "yes", 0},
    {OPT_PROCESSES, "--processes", "processes", NULL, 0},
    {OPT_ISOLATE, "--isolate", "isolate", "yes", 0},
    {OPT_CRASH_LIMIT, "--crash-limit", "crash_limit", NULL, 0},
    {OPT_STATSD, "--statsd", "statsd", NULL, 0},
    {OPT_STATSD_PREFIX, "--statsd-prefix", "statsd_prefix", NULL, 0},
    {OPT_METRICS_LISTEN, "--metrics-listen", "metrics_listen", NULL, 0},
};

/* The run_flags entry for option code c, or NULL. */
static const run_flag *
run_flag_for(int c)
{
    for (size_t i = 0; i < sizeof run_flags / sizeof *run_flags; i++)
        if (run_flags[i].c == c)
            return &run_flags[i];
    return NULL;
}

/* --set KEY=VALUE: KEY is copied into set_keys[*nset] (the caller frees
 * them after ctx, which borrows them) and pushed as a repeatable flag.
 * Returns 0, CLI_EUSAGE after the message for a missing '=', or -1 after
 * a "too many" message (the caller adds the --help pointer). */
static int
run_set_flag(cli_ctx *ctx, const char *arg, char **set_keys, size_t *nset)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return cli_usage(ctx, "--set needs KEY=VALUE, not '%s'", arg);
    char *key = strndup(arg, (size_t)(eq - arg));
    if (!key || *nset == CLI_MAX_FLAGS) {
        free(key);
        cli_err(ctx, "too many --set flags");
        return -1;
    }
    set_keys[(*nset)++] = key;
    /* add: a module's repeatable section keys can be given twice */
    return cli_flag_push(ctx, "--set", key, eq + 1, 1);
}

/* dray run's flags into ctx's flag list. Returns 0 to run, -1 after
 * printing --help, or CLI_EUSAGE after the usage message. */
static int
run_opts(cli_ctx *ctx, int argc, char **argv, char **set_keys, size_t *nset)
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
    int queues_seen = 0, labels_seen = 0, c, r = 0;
    while ((c = getopt_long(argc, argv, "c:q:t:r:v" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(ctx, c, optarg);
        if (h < 0)
            goto usage_fail;
        if (h > 0)
            continue;
        const run_flag *f = run_flag_for(c);
        if (f) {
            r = cli_flag_push(ctx, f->opt, f->key, f->value ? f->value : optarg, f->add);
        } else if (c == 'q') {
            r = cli_flag_push(ctx, "--queue", "queue", optarg, queues_seen++ > 0);
        } else if (c == OPT_LABEL) {
            r = cli_flag_push(ctx, "--label", "label", optarg, labels_seen++ > 0);
        } else if (c == OPT_LOG_FORMAT) {
            if (strcmp(optarg, "text") && strcmp(optarg, "json"))
                return cli_usage(ctx, "--log-format takes text or json, not '%s'", optarg);
            r = cli_flag_push(ctx, "--log-format", "log_format", optarg, 0);
        } else if (c == OPT_STATSD_FORMAT) {
            if (strcmp(optarg, "dogstatsd") && strcmp(optarg, "statsd"))
                return cli_usage(ctx, "--statsd-format takes dogstatsd or statsd, not '%s'",
                                 optarg);
            r = cli_flag_push(ctx, "--statsd-format", "statsd_format", optarg, 0);
        } else if (c == OPT_SET) {
            r = run_set_flag(ctx, optarg, set_keys, nset);
        } else {
            goto usage_fail;
        }
        if (r)
            goto usage_fail;
    }
    return cli_opts_done(ctx, argc, argv);

usage_fail:
    if (r != CLI_EUSAGE)
        fprintf(stderr, "See 'dray run --help'.\n");
    return CLI_EUSAGE;
}
/* log_format and statsd_format from the built configuration (file <
 * DRAY_* < flags), checked before anything logs; sets the log format.
 * Returns 0 with *dogstatsd set, or CLI_ECONFIG after the message. */
static int
run_formats(cli_ctx *ctx, int *dogstatsd)
{
    const char *log_format = dray_config_get(ctx->cfg, "log_format");
    const char *statsd_format = dray_config_get(ctx->cfg, "statsd_format");
    if (log_format && strcmp(log_format, "text") && strcmp(log_format, "json")) {
        cli_err(ctx, "log_format must be text or json, not '%s'", log_format);
        return CLI_ECONFIG;
    }
    if (statsd_format && strcmp(statsd_format, "dogstatsd") && strcmp(statsd_format, "statsd")) {
        cli_err(ctx, "statsd_format must be dogstatsd or statsd, not '%s'", statsd_format);
        return CLI_ECONFIG;
    }
    if (log_format)
        dray_log_set_format(strcmp(log_format, "json") ? DRAY_LOG_FORMAT_TEXT
                                                       : DRAY_LOG_FORMAT_JSON);
    *dogstatsd = !statsd_format || !strcmp(statsd_format, "dogstatsd");
    return 0;
}

/* Everything after the server is built that can still refuse to start:
 * modules, --require libraries, NOTIFY_SOCKET, statsd and metrics_listen.
 * Returns 0 (*metrics set or NULL) or a CLI_E* code after the message;
 * the caller frees srv either way. */
static int
run_prepare(cli_ctx *ctx, dray_server *srv, int dogstatsd, cli_metrics **metrics)
{
    char err[512];
    err[0] = '\0';
    int rc = load_modules(srv, ctx->cfg, err, sizeof err);
    if (rc) {
        cli_err_rc(ctx, err, rc);
        return CLI_ECONFIG;
    }
    require_ctx lc = {srv, 0};
    if (dray_config_get_all(ctx->cfg, "require", require_one, &lc))
        return CLI_ECONFIG;
    if (cli_notify_open(err, sizeof err)) {
        cli_err(ctx, "%s", err);
        return CLI_ECONFIG;
    }
    const char *statsd = dray_config_get(ctx->cfg, "statsd");
    const char *statsd_prefix = dray_config_get(ctx->cfg, "statsd_prefix");
    if (statsd && *statsd && dray_server_statsd(srv, statsd, dogstatsd, statsd_prefix)) {
        cli_err(ctx, "%s", dray_server_errstr(srv));
        return CLI_ECONFIG;
    }
    const char *metrics_listen = dray_config_get(ctx->cfg, "metrics_listen");
    if (metrics_listen && *metrics_listen &&
        (rc = cli_metrics_start(srv, metrics_listen, metrics, err, sizeof err))) {
        cli_err(ctx, "%s", err);
        return rc;
    }
    return 0;
}

/* Run srv (supervised children when po asks) under the signal handlers
 * until it stops, then tear down metrics and notify. Frees srv unless
 * handlers outlived the shutdown. Returns CLI_OK or CLI_ERUNTIME. */
static int
run_serve(cli_ctx *ctx, dray_server *srv, dray_process_opts *po, cli_metrics *metrics)
{
    struct sigaction saved[NSIGNALS];
    signals_install(srv, saved);
    /* Type=notify: configuration, modules and handlers are loaded; what
     * can still fail is Redis, which the server retries in the background. */
    cli_notify("READY=1\nSTATUS=running");
    int rc = po->processes > 0 ? dray_server_run_processes(srv, po) : dray_server_run(srv);
    signals_restore(saved);
    cli_metrics_stop(metrics); /* before srv can be freed */
    cli_notify_close();
    if (rc)
        cli_err(ctx, "%s", dray_server_errstr(srv));
    /* Handlers that outlived the shutdown had their jobs requeued; the
     * process exits without waiting for them (free would). */
    if (dray_server_wait(srv, 0) == 0)
        dray_server_free(srv);
    return rc ? CLI_ERUNTIME : CLI_OK;
}

/* Build the configuration, check it, build the server and run it. Returns
 * a CLI_E* code after the message. */
static int
run_main(cli_ctx *ctx)
{
    int dogstatsd, r;
    if ((r = cli_config_build(ctx)) || (r = run_formats(ctx, &dogstatsd)))
        return r;
    dray_process_opts po = {0, 0, 0};
    if ((r = process_opts(ctx, &po)))
        return r;
    const char *metrics_listen = dray_config_get(ctx->cfg, "metrics_listen");
    if (metrics_listen && *metrics_listen && po.processes > 0) {
        cli_err(ctx, "metrics_listen serves one process's figures: not with processes/isolate "
                     "(scrape dray web's /metrics)");
        return CLI_ECONFIG;
    }
    char err[512];
    dray_server *srv;
    int rc = dray_server_new(&ctx->opts, &srv, err, sizeof err);
    if (rc) {
        cli_err(ctx, "%s", err);
        return rc == DRAY_ENOMEM ? CLI_ERUNTIME : CLI_ECONFIG;
    }
    cli_metrics *metrics = NULL;
    if ((r = run_prepare(ctx, srv, dogstatsd, &metrics))) {
        dray_server_free(srv);
        return r;
    }
    return run_serve(ctx, srv, &po, metrics);
}

/* dray run: parse, configure, run until stopped. A CLI exit code; the --set keys it copied
 * are freed here. */
int
cli_cmd_run(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "run");
    /* --set KEY=VALUE keys are copied here so the flags can borrow them */
    char *set_keys[CLI_MAX_FLAGS];
    size_t nset = 0;
    int r = run_opts(&ctx, argc, argv, set_keys, &nset);
    if (r < 0)
        r = CLI_OK; /* --help */
    else if (r == 0)
        r = run_main(&ctx);
    cli_ctx_close(&ctx);
    for (size_t i = 0; i < nset; i++)
        free(set_keys[i]);
    return r;
}
