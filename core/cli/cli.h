/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The dray command: shared helpers of its subcommands. Uses only the public
 * API (dray.h, inspect.h): libdray's internals are hidden in the .so. */
#ifndef DRAY_CLI_H
#define DRAY_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <dray/dray.h>

/* Exit codes (documented in docs/cli.md and `dray --help`). */
#define CLI_OK 0        /* success */
#define CLI_ERUNTIME 1  /* Redis unreachable, command failed, job failed to load */
#define CLI_EUSAGE 2    /* bad command line */
#define CLI_ENOTFOUND 3 /* no job with that jid, no process with that identity */
#define CLI_ECONFIG 4   /* bad config file, environment, redis url, module or library */

#define CLI_MAX_FLAGS 256 /* config-setting flags on one command line */

/* getopt_long codes of the options without a short form. */
enum {
    OPT_REDIS_URL = 1000,
    OPT_NAMESPACE,
    OPT_JSON,
    OPT_TAG,
    OPT_LABEL,
    OPT_MODULE,
    OPT_LOG_JOBS,
    OPT_SET,
    OPT_IN,
    OPT_AT,
    OPT_RETRY,
    OPT_COUNT,
    OPT_LIMIT,
    OPT_OFFSET,
    OPT_PROCESSES,
    OPT_ISOLATE,
    OPT_CRASH_LIMIT,
    OPT_LOG_FORMAT,
    OPT_STATSD,
    OPT_STATSD_FORMAT,
    OPT_STATSD_PREFIX,
    OPT_PAUSE,
    OPT_RESUME,
    OPT_METRICS_LISTEN,
};

/* The options every command accepts (see cli_common_opt). */
#define CLI_COMMON_LONGOPTS                                                                        \
    {"config", required_argument, NULL, 'C'},                                                      \
        {"redis-url", required_argument, NULL, OPT_REDIS_URL},                                     \
        {"namespace", required_argument, NULL, OPT_NAMESPACE},                                     \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }
#define CLI_COMMON_SHORTOPTS "C:h"

/* One config assignment from the command line, applied after the file and
 * the environment. */
typedef struct cli_flag {
    const char *key;
    const char *value; /* borrowed from argv */
    int add;           /* 1: dray_config_add, 0: dray_config_set */
    const char *opt;   /* the option, for messages ("--concurrency") */
} cli_flag;

typedef struct cli_ctx {
    const char *cmd;         /* subcommand name ("push") */
    const char *config_path; /* -C, else $DRAY_CONFIG, else NULL */
    cli_flag flags[CLI_MAX_FLAGS];
    size_t nflags;
    int help;          /* -h given */
    int json;          /* --json given */
    dray_config *cfg;  /* built by cli_config_build */
    dray_options opts; /* from cfg by cli_config_build */
} cli_ctx;

/* Subcommands: argc/argv start at the subcommand name. Each returns an exit
 * code. */
int cli_cmd_run(int argc, char **argv);
int cli_cmd_push(int argc, char **argv);
int cli_cmd_stats(int argc, char **argv);
int cli_cmd_queues(int argc, char **argv);
int cli_cmd_processes(int argc, char **argv);
int cli_cmd_set(int argc, char **argv); /* retries, scheduled, dead */
int cli_cmd_signal(int argc, char **argv);
int cli_cmd_cancel(int argc, char **argv);
int cli_cmd_license(int argc, char **argv); /* license check */
int cli_cmd_limits(int argc, char **argv);  /* Enterprise keys, read-only */
int cli_cmd_periodic(int argc, char **argv);
int cli_cmd_unique(int argc, char **argv);
int cli_cmd_web(int argc, char **argv); /* dashboard and /metrics (web.c) */

/* Help text of a command (NULL: the overview). Printed to f. */
void cli_help(FILE *f, const char *cmd);

/* Build the configuration (file < env < flags), then an API handle on it.
 * Returns an exit code; on failure the message is printed. */
int cli_open_api(cli_ctx *ctx, dray_api **api);

/* Start a context for cmd. */
void cli_ctx_init(cli_ctx *ctx, const char *cmd);
/* Release what cli_config_build made. */
void cli_ctx_close(cli_ctx *ctx);
/* Handle a common option (C, h, redis-url, namespace). 1 when handled, 0
 * when c is not a common option, -1 when there are too many flags. */
int cli_common_opt(cli_ctx *ctx, int c, const char *arg);
/* Queue a config assignment from a flag; -1 (with a message) when full. */
int cli_flag_push(cli_ctx *ctx, const char *opt, const char *key, const char *value, int add);
/* Build ctx->cfg and ctx->opts: file < environment < flags. Returns an exit
 * code (CLI_OK, CLI_ECONFIG for the file or environment, CLI_EUSAGE for a
 * bad flag value) with the message printed. */
int cli_config_build(cli_ctx *ctx);

/* The options of a read-only command: the common ones, --json and, with
 * list, --limit and --offset (into *limit and *offset; refused when limit is NULL).
 * -1 to go on, else an exit code (help printed, or a usage error). */
int cli_read_opts(cli_ctx *ctx, int argc, char **argv, int list, long *limit, long *offset);
/* After getopt_long: -1 once ctx->cmd's help is printed for --help,
 * CLI_EUSAGE after the message for a leftover argument, else 0. */
int cli_opts_done(const cli_ctx *ctx, int argc, char **argv);
/* Exit code for a libdray error code. */
int cli_exit_for(int rc);
/* Print "dray CMD: message" to stderr. */
void cli_err(const cli_ctx *ctx, const char *fmt, ...) DRAY_PRINTF(2, 3);
/* A usage error: message, then a pointer to --help. Returns CLI_EUSAGE. */
int cli_usage(const cli_ctx *ctx, const char *fmt, ...) DRAY_PRINTF(2, 3);
#define CLI_ERRNO_BYTES 128 /* strerror_r text: glibc's longest is under 60 */
/* Text for errno value e in buf (strerror_r, GNU or XSI flavour), for
 * messages; returns buf. Thread-safe (the CLI's one errno helper); cannot fail. */
const char *cli_syserr(int e, char buf[CLI_ERRNO_BYTES]);
/* Print detail (an object's error text) as cli_err does, or dray_strerror(rc)
 * when detail is empty or NULL. */
void cli_err_rc(const cli_ctx *ctx, const char *detail, int rc);
/* Format a message into the caller's err (truncated to errlen) and return
 * code: how CLI helpers that report through a buffer fail. */
int cli_errbuf(char *err, size_t errlen, int code, const char *fmt, ...) DRAY_PRINTF(4, 5);

/* Strict number parsing: the whole string, within [lo, hi]. 0 or -1. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* Epoch seconds from "1714564800[.5]" or ISO 8601
 * ("2024-05-01T12:00:00Z", "...+02:00", "2024-05-01 12:00:00" as UTC,
 * "2024-05-01" at midnight UTC). 0 or -1. */
int cli_parse_time(const char *s, double *out);

/* "2024-05-01T12:00:00Z" (UTC). */
void cli_fmt_time(double epoch, char *buf, size_t n);
/* "42s", "5m", "3h", "2d"; negative durations as "in 5m" when future is 1. */
void cli_fmt_duration(double seconds, char *buf, size_t n);

/* A table printed with aligned columns (to stdout). */
typedef struct cli_table {
    size_t ncols;
    char **cells; /* rows * ncols owned strings */
    size_t nrows, caprows;
} cli_table;
void cli_table_init(cli_table *t, size_t ncols);
/* Add a row of ncols strings (copied; NULL prints as "-"). */
void cli_table_row(cli_table *t, const char *const *cols);
void cli_table_print(const cli_table *t, FILE *f);
void cli_table_close(cli_table *t);

/* Print a JSON value (steals the reference) to stdout with a newline. */
int cli_json_print(json_t *v);

/* dray run --metrics-listen (run_metrics.c): this process's /metrics. */
typedef struct cli_metrics cli_metrics;
/* Serve GET /metrics for srv on addr ("PORT" is 127.0.0.1:PORT). 0, or
 * CLI_ECONFIG (bad address) / CLI_ERUNTIME (cannot bind) with err set.
 * Stop it with cli_metrics_stop before freeing srv. */
int cli_metrics_start(dray_server *srv, const char *addr, cli_metrics **out, char *err,
                      size_t errlen);
void cli_metrics_stop(cli_metrics *m); /* accepts NULL */

/* A progress line on stderr, only when stderr is a terminal. */
void cli_progress(const char *what, size_t done, size_t total);
void cli_progress_end(void);

#endif /* DRAY_CLI_H */
