/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray license check: load each configured module in check mode (the same
 * code path as `dray run` start-up) and print its verdict, so operators can
 * test a new key before they deploy it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_KEY = 2000, OPT_KEY_FILE };

typedef struct tally {
    int json;
    int shown;
} tally;

/* dray_server_check_modules callback: print one module's verdict (a line, or JSON when ud's
 * tally asks) and count it in ud. */
static void
print_verdict(const char *path, const dray_module_verdict *v, void *ud)
{
    tally *t = ud;
    t->shown++;
    if (t->json) {
        json_t *o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:s}", "path", path, "ok", v->rc == 0,
                              "name", v->name, "version", v->version, "tier", v->tier, "message",
                              v->message, "warning", v->warning);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(o);
        return;
    }
    if (v->rc == 0)
        printf("OK       %s %s (%s tier) from %s: %s\n", v->name[0] ? v->name : "?", v->version,
               v->tier[0] ? v->tier : "?", path, v->message);
    else
        printf("REFUSED  %s: %s\n", path, v->message);
    if (v->warning[0])
        printf("         warning: %s\n", v->warning);
}

/* dray license check: load each configured module in check mode and print its verdict. A CLI
 * exit code (CLI_ECONFIG when one refuses). */
int
cli_cmd_license(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "license");
    if (argc < 2 || strcmp(argv[1], "check")) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            cli_help(stdout, "license");
            return CLI_OK;
        }
        return cli_usage(&ctx, "the only action is 'check'");
    }
    static const struct option longopts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"key", required_argument, NULL, OPT_KEY},
        {"key-file", required_argument, NULL, OPT_KEY_FILE},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    argc--;
    argv++;
    int c, r;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(&ctx, c, optarg);
        if (h < 0)
            return CLI_EUSAGE;
        if (h > 0)
            continue;
        switch (c) {
        case OPT_MODULE:
            r = cli_flag_push(&ctx, "--module", "module", optarg, 1);
            break;
        case OPT_KEY:
            r = cli_flag_push(&ctx, "--key", "license", optarg, 0);
            break;
        case OPT_KEY_FILE:
            r = cli_flag_push(&ctx, "--key-file", "license_file", optarg, 0);
            break;
        case OPT_JSON:
            ctx.json = 1;
            r = 0;
            break;
        default:
            fprintf(stderr, "See 'dray license --help'.\n");
            return CLI_EUSAGE;
        }
        if (r)
            return r;
    }
    if ((r = cli_opts_done(&ctx, argc, argv)))
        return r < 0 ? CLI_OK : r;
    if ((r = cli_config_build(&ctx)))
        return r;
    if (dray_config_count(ctx.cfg, "module") == 0) {
        cli_ctx_close(&ctx);
        return cli_usage(&ctx,
                         "no module configured: give --module PATH or 'module' in the config");
    }
    dray_server *s;
    char err[512];
    int rc = dray_server_new(&ctx.opts, &s, err, sizeof err);
    if (rc) {
        cli_err(&ctx, "%s", err);
        cli_ctx_close(&ctx);
        return cli_exit_for(rc);
    }
    tally t = {ctx.json, 0};
    int refused = dray_server_check_modules(s, ctx.cfg, print_verdict, &t);
    int exit_code = CLI_OK;
    if (refused < 0) {
        cli_err_rc(&ctx, dray_server_errstr(s), refused);
        exit_code = cli_exit_for(refused);
    } else if (refused > 0) {
        exit_code = CLI_ECONFIG;
    }
    dray_server_free(s);
    cli_ctx_close(&ctx);
    return exit_code;
}
