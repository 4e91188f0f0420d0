/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The dray command: configuration layering, errors, parsing and output
 * helpers shared by the subcommands. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Zero ctx for command cmd (borrowed, for messages); nothing to free until cli_config_build.
 * Cannot fail. */
void
cli_ctx_init(cli_ctx *ctx, const char *cmd)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->cmd = cmd;
    dray_options_init(&ctx->opts);
}

/* Free ctx->cfg (made by cli_config_build) and forget it; safe on an unbuilt ctx and twice. */
void
cli_ctx_close(cli_ctx *ctx)
{
    dray_config_free(ctx->cfg);
    ctx->cfg = NULL;
}

/* Print "dray CMD: message" and a newline to stderr. Cannot fail. */
void
cli_err(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dray %s: ", ctx && ctx->cmd ? ctx->cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* errno text for e in the caller's buf via strerror_r (GNU or XSI), so any thread may call
 * it; returns buf. */
const char *
cli_syserr(int e, char buf[CLI_ERRNO_BYTES])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* GNU strerror_r may return a static string instead of filling buf */
    const char *s = strerror_r(e, buf, CLI_ERRNO_BYTES);
    if (s != buf)
        snprintf(buf, CLI_ERRNO_BYTES, "%s", s);
#else
    if (strerror_r(e, buf, CLI_ERRNO_BYTES))
        snprintf(buf, CLI_ERRNO_BYTES, "error %d", e);
#endif
    return buf;
}

/* Print detail, or dray_strerror(rc) when detail is empty or NULL, as cli_err does. */
void
cli_err_rc(const cli_ctx *ctx, const char *detail, int rc)
{
    cli_err(ctx, "%s", detail && detail[0] ? detail : dray_strerror(rc));
}

/* Format into err (truncated to errlen, which may be 0) and return code. */
int
cli_errbuf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* A usage error: "dray CMD: message", then the pointer to CMD --help. Returns CLI_EUSAGE. */
int
cli_usage(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dray %s: ", ctx->cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nSee 'dray %s --help'.\n", ctx->cmd);
    va_end(ap);
    return CLI_EUSAGE;
}

/* The CLI exit code for a DRAY_E* code: CLI_ENOTFOUND, CLI_ECONFIG, CLI_ERUNTIME, else
 * CLI_EUSAGE (0 stays CLI_OK). */
int
cli_exit_for(int rc)
{
    switch (rc) {
    case 0:
        return CLI_OK;
    case DRAY_ENOTFOUND:
        return CLI_ENOTFOUND;
    case DRAY_EURL:
    case DRAY_ETLS:
    case DRAY_ECONFIG:
    case DRAY_EMODULE:
    case DRAY_ELICENSE:
        return CLI_ECONFIG;
    case DRAY_EJSON: /* a stored job that is not JSON */
    case DRAY_ECONN:
    case DRAY_EREDIS:
    case DRAY_EAUTH:
    case DRAY_ENOMEM:
    case DRAY_EIO:
    case DRAY_ETIMEOUT:
    case DRAY_ESTATE:
        return CLI_ERUNTIME;
    default:
        return CLI_EUSAGE; /* the rest reject what the user gave */
    }
}

/* Queue one config assignment from a flag (strings borrowed until cli_config_build). 0, or -1
 * with a message past CLI_MAX_FLAGS. */
int
cli_flag_push(cli_ctx *ctx, const char *opt, const char *key, const char *value, int add)
{
    if (ctx->nflags == CLI_MAX_FLAGS) {
        cli_err(ctx, "more than %d configuration flags", CLI_MAX_FLAGS);
        return -1;
    }
    if (!strcmp(key, "license"))
        fprintf(stderr,
                "dray %s: warning: %s puts the license key on the command line, where ps and "
                "shell history show it; prefer DRAY_LICENSE_FILE or the license_file setting "
                "(docs/licensing.md)\n",
                ctx->cmd ? ctx->cmd : "", opt);
    cli_flag *f = &ctx->flags[ctx->nflags++];
    f->opt = opt;
    f->key = key;
    f->value = value;
    f->add = add;
    return 0;
}

/* Handle a common option (-C, -h, --redis-url, --namespace): 1 when handled, 0 when c is not
 * one, -1 when the flag list is full. */
int
cli_common_opt(cli_ctx *ctx, int c, const char *arg)
{
    switch (c) {
    case 'C':
        ctx->config_path = arg;
        return 1;
    case 'h':
        ctx->help = 1;
        return 1;
    case OPT_REDIS_URL:
        return cli_flag_push(ctx, "--redis-url", "redis_url", arg, 0) ? -1 : 1;
    case OPT_NAMESPACE:
        return cli_flag_push(ctx, "--namespace", "namespace", arg, 0) ? -1 : 1;
    default:
        return 0;
    }
}

/* Build ctx->cfg and ctx->opts: file < DRAY_* environment < flags. A CLI exit code, the
 * message printed on failure. */
int
cli_config_build(cli_ctx *ctx)
{
    if (dray_config_new(&ctx->cfg)) {
        cli_err(ctx, "out of memory");
        return CLI_ERUNTIME;
    }
    const char *path = ctx->config_path;
    if (!path) {
        const char *env = getenv("DRAY_CONFIG");
        if (env && *env)
            path = env;
    }
    if (path && dray_config_load_file(ctx->cfg, path)) {
        cli_err(ctx, "%s", dray_config_errstr(ctx->cfg));
        return CLI_ECONFIG;
    }
    if (dray_config_load_env(ctx->cfg)) {
        cli_err(ctx, "%s", dray_config_errstr(ctx->cfg));
        return CLI_ECONFIG;
    }
    for (size_t i = 0; i < ctx->nflags; i++) {
        const cli_flag *f = &ctx->flags[i];
        int rc = f->add ? dray_config_add(ctx->cfg, f->key, f->value)
                        : dray_config_set(ctx->cfg, f->key, f->value);
        if (rc)
            return cli_usage(ctx, "%s: %s", f->opt, dray_config_errstr(ctx->cfg));
    }
    char err[512];
    if (dray_config_to_options(ctx->cfg, &ctx->opts, err, sizeof err)) {
        cli_err(ctx, "%s", err);
        return CLI_ECONFIG;
    }
    return CLI_OK;
}

/* Parse all of s as a decimal long within [lo, hi] into *out. 0, or -1 leaving *out alone. */
int
cli_parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Parse all of s as a finite double within [lo, hi] into *out. 0, or -1 leaving *out alone. */
int
cli_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Read exactly n digits at *p into *out; advances *p. */
static int
digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Epoch seconds from digits or ISO 8601 (see cli.h for the forms) into *out. 0, or -1 for
 * anything else. */
int
cli_parse_time(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    double epoch;
    if (!cli_parse_double(s, 0, 1e12, &epoch)) {
        *out = epoch;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    double frac = 0;
    long offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -1;
            if (*p == '.' || *p == ',') {
                double scale = 0.1;
                p++;
                if (!isdigit((unsigned char)*p))
                    return -1;
                while (isdigit((unsigned char)*p)) {
                    frac += (*p++ - '0') * scale;
                    scale /= 10;
                }
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (digits(&p, 2, &oh))
                return -1;
            if (*p == ':')
                p++;
            if (*p && digits(&p, 2, &om))
                return -1;
            offset = sign * (oh * 3600L + om * 60L);
        }
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (double)t - (double)offset + frac;
    return 0;
}

/* epoch as "YYYY-MM-DDTHH:MM:SSZ" (UTC; the bare number if that fails) in buf. Cannot fail. */
void
cli_fmt_time(double epoch, char *buf, size_t n)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "%.0f", epoch);
}

/* s as "42s", "5m", "3.5h" or "2.0d" (negative: "in 5m") in buf, truncated to n. Cannot fail. */
void
cli_fmt_duration(double s, char *buf, size_t n)
{
    double a = fabs(s);
    const char *pre = s < 0 ? "in " : "";
    if (a < 60)
        snprintf(buf, n, "%s%.0fs", pre, a);
    else if (a < 3600)
        snprintf(buf, n, "%s%.0fm", pre, a / 60);
    else if (a < 86400 * 2)
        snprintf(buf, n, "%s%.1fh", pre, a / 3600);
    else
        snprintf(buf, n, "%s%.1fd", pre, a / 86400);
}

/* An empty table of ncols columns; release with cli_table_close. */
void
cli_table_init(cli_table *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

/* Append a row: copies ncols strings (NULL prints "-"). On OOM the row is dropped. */
void
cli_table_row(cli_table *t, const char *const *cols)
{
    if (t->nrows == t->caprows) {
        size_t cap = t->caprows ? t->caprows * 2 : 16;
        char **p = realloc(t->cells, cap * t->ncols * sizeof *p);
        if (!p)
            return; /* out of memory: the row is left out */
        t->cells = p;
        t->caprows = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = cols[i] ? cols[i] : "-";
        char *d = strdup(s);
        /* one line per row: control bytes would break the alignment */
        for (char *c = d; c && *c; c++)
            if ((unsigned char)*c < 0x20)
                *c = ' ';
        t->cells[t->nrows * t->ncols + i] = d;
    }
    t->nrows++;
}

/* Display width of UTF-8 text: code points, not bytes. */
static size_t
width(const char *s)
{
    size_t w = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Print t to f with each column padded to its widest cell (UTF-8 aware). */
void
cli_table_print(const cli_table *t, FILE *f)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = width(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            fputs(s ? s : "", f);
            if (c + 1 < t->ncols)
                for (size_t k = width(s); k < w[c] + 2; k++)
                    fputc(' ', f);
        }
        fputc('\n', f);
    }
    free(w);
}

/* Free t's cells; t may be initialised again. */
void
cli_table_close(cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Print v indented and a newline to stdout, taking v's reference. CLI_OK, or CLI_ERUNTIME
 * when v is NULL or cannot be dumped. */
int
cli_json_print(json_t *v)
{
    if (!v) {
        fprintf(stderr, "dray: out of memory\n");
        return CLI_ERUNTIME;
    }
    int rc = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
    json_decref(v);
    return rc ? CLI_ERUNTIME : CLI_OK;
}

static int progress_shown;

/* Redraw "what done/total" on stderr when it is a terminal; nothing otherwise. */
void
cli_progress(const char *what, size_t done, size_t total)
{
    if (!isatty(STDERR_FILENO))
        return;
    fprintf(stderr, "\r%s %zu/%zu (%.0f%%)", what, done, total,
            total ? 100.0 * (double)done / (double)total : 100.0);
    fflush(stderr);
    progress_shown = 1;
}

/* Clear the progress line when one is shown. */
void
cli_progress_end(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stderr); /* clear the line */
        fflush(stderr);
        progress_shown = 0;
    }
}

/* The options of a read-only command (common ones, --json, and with list --limit/--offset).
 * -1 to go on, else an exit code after help or the message. */
int
cli_read_opts(cli_ctx *ctx, int argc, char **argv, int list, long *limit, long *offset)
{
    static const struct option list_longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"offset", required_argument, NULL, OPT_OFFSET},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static const struct option json_longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, list ? list_longopts : json_longopts,
                            NULL)) != -1) {
        int h = cli_common_opt(ctx, c, optarg);
        if (h < 0)
            return CLI_EUSAGE;
        if (h > 0)
            continue;
        switch (c) {
        case OPT_JSON:
            ctx->json = 1;
            break;
        case OPT_LIMIT:
        case OPT_OFFSET:
            if (!limit)
                return cli_usage(ctx, "--%s is only for list", c == OPT_LIMIT ? "limit" : "offset");
            if (cli_parse_long(optarg, 0, 1000000000L, c == OPT_LIMIT ? limit : offset))
                return cli_usage(ctx, "--%s must be a number >= 0, not '%s'",
                                 c == OPT_LIMIT ? "limit" : "offset", optarg);
            break;
        default:
            fprintf(stderr, "See 'dray %s --help'.\n", ctx->cmd);
            return CLI_EUSAGE;
        }
    }
    if (ctx->help) {
        cli_help(stdout, ctx->cmd);
        return CLI_OK;
    }
    return -1;
}

/* -1 after printing ctx->cmd's help when --help was given, CLI_EUSAGE after
 * the message for an argument getopt left, else 0. */
int
cli_opts_done(const cli_ctx *ctx, int argc, char **argv)
{
    if (ctx->help) {
        cli_help(stdout, ctx->cmd);
        return -1;
    }
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Build the configuration, then an API handle in *api (the caller frees it). A CLI exit code,
 * the message printed on failure. */
int
cli_open_api(cli_ctx *ctx, dray_api **api)
{
    *api = NULL;
    int r = cli_config_build(ctx);
    if (r)
        return r;
    char err[512];
    int rc = dray_api_new(&ctx->opts, api, err, sizeof err);
    if (rc) {
        cli_err(ctx, "%s", err);
        return cli_exit_for(rc);
    }
    return CLI_OK;
}
