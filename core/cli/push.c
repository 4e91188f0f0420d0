/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray push: one job, or --count N of them in bulk, now or scheduled. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define BULK_SLICE 10000   /* jobs per dray_client_push_bulk call: progress granularity */
#define COUNT_MAX 10000000 /* --count limit: 10 M jobs is a benchmark, not a typo */

/* --retry value (true/yes, false/no or a count) into *out as a DRAY_RETRY_* or count. 0, or
 * -1 for anything else. */
static int
parse_retry(const char *s, int *out)
{
    long n;
    if (!strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = DRAY_RETRY_DEFAULT;
    } else if (!strcmp(s, "false") || !strcmp(s, "no")) {
        *out = DRAY_RETRY_NONE;
    } else if (!cli_parse_long(s, 0, 1000000, &n)) {
#ifdef DRAY_RETRY_ZERO
        *out = n == 0 ? DRAY_RETRY_ZERO : (int)n; /* 0 is DRAY_RETRY_DEFAULT here */
#else
        *out = (int)n;
#endif
    } else {
        return -1;
    }
    return 0;
}

/* dray_config_get_all callback: stops (non-zero) when value is the path in ud. */
static int
is_path(const char *key, const char *value, void *ud)
{
    (void)key;
    return !strcmp(value, (const char *)ud); /* non-zero stops: found */
}

/* Load the modules `dray run` would (config and --module `module` paths,
 * then $DRAY_MODULES), so their push hooks (unique locks, encryption) run
 * for these pushes too. *srv stays NULL when none is configured. Returns a
 * CLI exit code. */
static int
load_modules(cli_ctx *ctx, dray_server **srv)
{
    const char *env = getenv("DRAY_MODULES");
    *srv = NULL;
    if (!dray_config_count(ctx->cfg, "module") && !(env && *env))
        return CLI_OK;
    char err[1024] = "";
    int rc = dray_server_new(&ctx->opts, srv, err, sizeof err);
    if (!rc)
        rc = dray_server_load_modules(*srv, ctx->cfg, err, sizeof err);
    char *paths = !rc && env ? strdup(env) : NULL, *save = NULL;
    if (!rc && env && !paths)
        rc = DRAY_ENOMEM;
    for (char *p = paths ? strtok_r(paths, ":", &save) : NULL; p && !rc;
         p = strtok_r(NULL, ":", &save))
        if (*p && !dray_config_get_all(ctx->cfg, "module", is_path, p))
            rc = dray_server_load_module(*srv, p, err, sizeof err);
    free(paths);
    if (rc) {
        cli_err_rc(ctx, err, rc);
        dray_server_free(*srv);
        *srv = NULL;
        return rc == DRAY_ENOMEM ? CLI_ERUNTIME : CLI_ECONFIG;
    }
    return CLI_OK;
}

/* Push count jobs in slices, printing jids as they are written. */
static int
push_bulk(cli_ctx *ctx, dray_client *cl, const char *klass, json_t *args, const dray_push_opts *po,
          long count)
{
    char *jids = malloc((size_t)BULK_SLICE * DRAY_JID_BYTES);
    json_t *list = json_array();
    if (!jids || !list) {
        free(jids);
        json_decref(list);
        cli_err(ctx, "out of memory");
        return CLI_ERUNTIME;
    }
    size_t total = 0;
    int rc = 0;
    for (long done = 0; done < count && !rc;) {
        long n = count - done < BULK_SLICE ? count - done : BULK_SLICE;
        json_array_clear(list);
        for (long i = 0; i < n; i++)
            json_array_append(list, args);
        size_t pushed = 0;
        rc = dray_client_push_bulk(cl, klass, list, po, jids, &pushed);
        /* Jobs dropped by a client hook have an empty jid; on failure only
         * the first `pushed` jobs of the slice were written. */
        size_t printed = 0;
        for (long i = 0; i < n && (!rc || printed < pushed); i++)
            if (jids[(size_t)i * DRAY_JID_BYTES]) {
                puts(jids + (size_t)i * DRAY_JID_BYTES);
                printed++;
            }
        total += pushed;
        done += n;
        cli_progress("pushed", total, (size_t)count);
    }
    cli_progress_end();
    free(jids);
    json_decref(list);
    if (rc) {
        cli_err(ctx, "%s (%zu of %ld jobs pushed)", dray_client_errstr(cl), total, count);
        return cli_exit_for(rc);
    }
    return CLI_OK;
}

/* Reads push's options into ctx, *po and *count. -1 to go on, else the
 * exit code (help printed, or a usage error). */
static int
parse_push_opts(cli_ctx *ctx, int argc, char **argv, dray_push_opts *po, long *count)
{
    static const struct option longopts[] = {
        {"queue", required_argument, NULL, 'q'},
        {"in", required_argument, NULL, OPT_IN},
        {"at", required_argument, NULL, OPT_AT},
        {"retry", required_argument, NULL, OPT_RETRY},
        {"count", required_argument, NULL, OPT_COUNT},
        {"module", required_argument, NULL, OPT_MODULE},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int c;
    const char *in_s = NULL, *at_s = NULL;
    while ((c = getopt_long(argc, argv, "q:" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(ctx, c, optarg);
        if (h < 0)
            return CLI_EUSAGE;
        if (h > 0)
            continue;
        switch (c) {
        case 'q':
            po->queue = optarg;
            break;
        case OPT_IN:
            in_s = optarg;
            if (cli_parse_double(optarg, 0, 1e10, &po->in))
                return cli_usage(ctx, "--in must be a number of seconds >= 0, not '%s'", optarg);
            break;
        case OPT_AT:
            at_s = optarg;
            if (cli_parse_time(optarg, &po->at) || po->at < 1e9)
                return cli_usage(ctx,
                                 "--at must be epoch seconds or ISO 8601 "
                                 "(2024-05-01T12:00:00Z), not '%s'",
                                 optarg);
            break;
        case OPT_RETRY:
            if (parse_retry(optarg, &po->retry))
                return cli_usage(ctx, "--retry must be a number >= 0, true or false, not '%s'",
                                 optarg);
            break;
        case OPT_COUNT:
            if (cli_parse_long(optarg, 1, COUNT_MAX, count))
                return cli_usage(ctx, "--count must be 1-%d, not '%s'", COUNT_MAX, optarg);
            break;
        case OPT_MODULE:
            if (cli_flag_push(ctx, "--module", "module", optarg, 1))
                return CLI_EUSAGE;
            break;
        default:
            fprintf(stderr, "See 'dray push --help'.\n");
            return CLI_EUSAGE;
        }
    }
    if (ctx->help) {
        cli_help(stdout, "push");
        return CLI_OK;
    }
    if (in_s && at_s)
        return cli_usage(ctx, "give --in or --at, not both");
    return -1;
}

/* CLASS and ARGS-JSON from the operands: *klass borrowed from argv, *args a
 * new reference (an empty array when ARGS-JSON is absent). -1 to go on,
 * else the exit code of a usage error. */
static int
parse_operands(cli_ctx *ctx, int argc, char **argv, const char **klass, json_t **args)
{
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage(ctx, "missing CLASS");
    if (npos > 2)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind + 2]);
    *klass = argv[optind];
    if (!**klass)
        return cli_usage(ctx, "CLASS is empty");
    if (npos < 2) {
        *args = json_array();
        return -1;
    }
    json_error_t je;
    *args = json_loads(argv[optind + 1], JSON_DECODE_ANY, &je);
    if (!*args)
        return cli_usage(ctx, "ARGS-JSON is not JSON: %s (column %d)", je.text, je.column);
    if (!json_is_array(*args)) {
        json_decref(*args);
        *args = NULL;
        return cli_usage(ctx, "ARGS-JSON must be a JSON array, e.g. '[1, \"two\"]'");
    }
    return -1;
}

/* Pushes count jobs of klass with args through a new client (the loaded
 * modules' hooks run); prints the jids. Returns the exit code. */
static int
push_jobs(cli_ctx *ctx, const char *klass, json_t *args, const dray_push_opts *po, long count)
{
    dray_client *cl;
    char err[512];
    int r = CLI_OK;
    int rc = dray_client_new(&ctx->opts, &cl, err, sizeof err);
    if (rc) {
        cli_err(ctx, "%s", err);
        return cli_exit_for(rc);
    }
    if (count == 1) {
        char jid[DRAY_JID_BYTES];
        rc = dray_client_push(cl, klass, args, po, jid);
        if (rc) {
            cli_err(ctx, "%s", dray_client_errstr(cl));
            r = cli_exit_for(rc);
        } else {
            puts(jid);
        }
    } else {
        r = push_bulk(ctx, cl, klass, args, po, count);
    }
    dray_client_free(cl);
    return r;
}

/* dray push: one job, or --count N in bulk slices, now or scheduled, through the configured
 * modules' push hooks. A CLI exit code. */
int
cli_cmd_push(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "push");
    dray_push_opts po;
    memset(&po, 0, sizeof po);
    po.retry = DRAY_RETRY_DEFAULT;
    long count = 1;
    int r = parse_push_opts(&ctx, argc, argv, &po, &count);
    if (r >= 0)
        return r;
    const char *klass = NULL;
    json_t *args = NULL;
    if ((r = parse_operands(&ctx, argc, argv, &klass, &args)) >= 0)
        return r;
    dray_server *mods = NULL;
    if (!(r = cli_config_build(&ctx)) && !(r = load_modules(&ctx, &mods))) {
        r = push_jobs(&ctx, klass, args, &po, count);
        dray_server_free(mods); /* the modules stay loaded for the process; hooks ran above */
    }
    json_decref(args);
    cli_ctx_close(&ctx);
    return r;
}
