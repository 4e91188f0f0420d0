/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray limits, dray periodic, dray unique: read-only views (and the one
 * admin action, unique release) of the Enterprise module's Redis keys, as
 * documented in docs/redis-keys.md. They need no module loaded. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Options: the common ones and --json. Returns -1 to go on, else an exit code. */
static int
parse(cli_ctx *ctx, int argc, char **argv)
{
    return cli_read_opts(ctx, argc, argv, 0, NULL, NULL);
}

/* HGETALL's flat array as an object (new reference). */
static json_t *
pairs(json_t *flat)
{
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < json_array_size(flat); i += 2)
        json_object_set(o, json_string_value(json_array_get(flat, i)), json_array_get(flat, i + 1));
    return o;
}

/* HGETALL key as an object in *out (new reference); 0 or the API's error. */
static int
hash_get(dray_api *api, const char *key, json_t **out)
{
    json_t *flat = NULL;
    const char *hg[2] = {"HGETALL", key};
    int rc = dray_api_command(api, 2, hg, &flat);
    if (rc)
        return rc;
    *out = pairs(flat);
    json_decref(flat);
    return 0;
}

/* The start of limits and periodic: ctx for cmd, its options, then the API
 * in *api. -1 to go on (the caller frees *api and closes ctx), else the
 * exit code. */
static int
begin(cli_ctx *ctx, const char *cmd, int argc, char **argv, dray_api **api)
{
    cli_ctx_init(ctx, cmd);
    int r = parse(ctx, argc, argv);
    if (r >= 0)
        return r;
    if ((r = cli_open_api(ctx, api)))
        return r;
    return -1;
}

/* o's string member k (borrowed), or "-" when absent or not a string. */
static const char *
field(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

/* dray limits: the Enterprise limiters and their counters, as a table or --json. A CLI exit
 * code. */
int
cli_cmd_limits(int argc, char **argv)
{
    cli_ctx ctx;
    dray_api *api;
    int r = begin(&ctx, "limits", argc, argv, &api);
    if (r >= 0)
        return r;
    const char *ns = dray_api_namespace(api);
    char key[512];
    snprintf(key, sizeof key, "%sent:limiters", ns);
    json_t *names = NULL;
    const char *zr[5] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
    int rc = dray_api_command(api, 5, zr, &names);
    json_t *all = json_array();
    for (size_t i = 0; !rc && i + 1 < json_array_size(names); i += 2) {
        const char *name = json_string_value(json_array_get(names, i));
        snprintf(key, sizeof key, "%sent:lmtr:%s", ns, name);
        json_t *o;
        if ((rc = hash_get(api, key, &o)))
            break;
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "last_used",
                            json_real(atof(json_string_value(json_array_get(names, i + 1)))));
        if (!strcmp(field(o, "type"), "c")) {
            snprintf(key, sizeof key, "%sent:lmtr:%s:c", ns, name);
            json_t *n = NULL;
            const char *zc[2] = {"ZCARD", key};
            if (!dray_api_command(api, 2, zc, &n))
                json_object_set_new(o, "holders", json_integer(json_integer_value(n)));
            json_decref(n);
        }
        json_array_append_new(all, o);
    }
    json_decref(names);
    if (rc) {
        cli_err(&ctx, "%s", dray_api_errstr(api));
        dray_api_free(api);
        json_decref(all);
        return cli_exit_for(rc);
    }
    static const char *const types[] = {"c", "concurrent", "b", "bucket",
                                        "w", "window",     "l", "leaky"};
    if (ctx.json) {
        char *s = json_dumps(all, JSON_COMPACT);
        puts(s ? s : "[]");
        free(s);
    } else if (json_array_size(all) == 0) {
        puts("no limiters have been used");
    } else {
        printf("%-24s %-10s %6s %9s %8s %8s %9s\n", "LIMITER", "TYPE", "LIMIT", "INTERVAL",
               "HOLDERS", "TAKEN", "OVERAGES");
        size_t i;
        json_t *o;
        json_array_foreach(all, i, o)
        {
            const char *t = field(o, "type");
            for (size_t k = 0; k < sizeof types / sizeof *types; k += 2)
                if (!strcmp(t, types[k]))
                    t = types[k + 1];
            json_t *h = json_object_get(o, "holders");
            char holders[24] = "-";
            if (h)
                snprintf(holders, sizeof holders, "%lld", (long long)json_integer_value(h));
            printf("%-24s %-10s %6s %9s %8s %8s %9s\n", field(o, "name"), t, field(o, "limit"),
                   field(o, "interval"), holders, field(o, "taken"), field(o, "overages"));
        }
    }
    json_decref(all);
    dray_api_free(api);
    cli_ctx_close(&ctx);
    return CLI_OK;
}

/* dray periodic: the periodic loops and the current leader, as a table or --json. A CLI exit
 * code. */
int
cli_cmd_periodic(int argc, char **argv)
{
    cli_ctx ctx;
    dray_api *api;
    int r = begin(&ctx, "periodic", argc, argv, &api);
    if (r >= 0)
        return r;
    const char *ns = dray_api_namespace(api);
    char key[512];
    snprintf(key, sizeof key, "%sent:periodic:loops", ns);
    json_t *loops = NULL, *leader = NULL;
    const char *zr[4] = {"ZRANGE", key, "0", "-1"};
    int rc = dray_api_command(api, 4, zr, &loops);
    char lkey[512];
    snprintf(lkey, sizeof lkey, "%sdear-leader", ns);
    const char *gl[2] = {"GET", lkey};
    if (!rc)
        rc = dray_api_command(api, 2, gl, &leader);
    json_t *all = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(loops, i, v)
    {
        if (rc)
            break;
        snprintf(key, sizeof key, "%sent:periodic:%s", ns, json_string_value(v));
        json_t *o;
        if ((rc = hash_get(api, key, &o)))
            break;
        json_object_set(o, "loop", v);
        json_array_append_new(all, o);
    }
    json_decref(loops);
    if (rc) {
        cli_err(&ctx, "%s", dray_api_errstr(api));
        json_decref(all);
        json_decref(leader);
        dray_api_free(api);
        return cli_exit_for(rc);
    }
    if (ctx.json) {
        json_t *o = json_pack("{s:O, s:O}", "leader", leader ? leader : json_null(), "loops", all);
        char *s = json_dumps(o, JSON_COMPACT);
        puts(s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("leader: %s\n", json_is_string(leader) ? json_string_value(leader) : "(none)");
        if (json_array_size(all) == 0)
            puts("no periodic loops registered");
        else
            printf("%-20s %-18s %-24s %-12s %-20s %-20s\n", "LOOP", "CRON", "CLASS", "TZ",
                   "LAST RUN", "NEXT RUN");
        json_array_foreach(all, i, v)
        {
            char last[32] = "-", next[32] = "-";
            if (strcmp(field(v, "last"), "-"))
                cli_fmt_time(atof(field(v, "last")), last, sizeof last);
            if (strcmp(field(v, "next"), "-"))
                cli_fmt_time(atof(field(v, "next")), next, sizeof next);
            printf("%-20s %-18s %-24s %-12s %-20s %-20s\n", field(v, "loop"), field(v, "cron"),
                   field(v, "class"), field(v, "tz"), last, next);
        }
    }
    json_decref(all);
    json_decref(leader);
    dray_api_free(api);
    cli_ctx_close(&ctx);
    return CLI_OK;
}

/* dray unique list|release: unique locks, or release one by digest or owner jid. A CLI exit
 * code. */
int
cli_cmd_unique(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "unique");
    if (argc < 2 || (strcmp(argv[1], "list") && strcmp(argv[1], "release"))) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            cli_help(stdout, "unique");
            return CLI_OK;
        }
        return cli_usage(&ctx, "actions: list, release DIGEST|JID");
    }
    int release = !strcmp(argv[1], "release");
    int r = parse(&ctx, argc - 1, argv + 1);
    if (r >= 0)
        return r;
    const char *target = NULL;
    if (release) {
        if (optind + 1 != argc - 1)
            return cli_usage(&ctx, "release takes one DIGEST (64 hex) or the owner JID");
        target = argv[1 + optind];
    } else if (optind != argc - 1) {
        return cli_usage(&ctx, "list takes no arguments");
    }
    dray_api *api;
    if ((r = cli_open_api(&ctx, &api)))
        return r;
    const char *ns = dray_api_namespace(api);
    char pattern[512], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "%sent:unique:*", ns);
    int rc = 0, found = 0;
    json_t *rows = json_array();
    do {
        json_t *page = NULL;
        const char *sc[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        if ((rc = dray_api_command(api, 6, sc, &page)))
            break;
        snprintf(cursor, sizeof cursor, "%s", json_string_value(json_array_get(page, 0)));
        size_t i;
        json_t *k;
        json_array_foreach(json_array_get(page, 1), i, k)
        {
            const char *key = json_string_value(k);
            json_t *owner = NULL;
            const char *hg[3] = {"HGET", key, "jid"};
            if ((rc = dray_api_command(api, 3, hg, &owner)))
                break;
            const char *digest = key + strlen(ns) + strlen("ent:unique:");
            const char *jid = json_is_string(owner) ? json_string_value(owner) : "";
            if (release && (!strcmp(digest, target) || !strcmp(jid, target))) {
                json_t *n = NULL;
                const char *del[2] = {"DEL", key};
                if (!(rc = dray_api_command(api, 2, del, &n)) && json_integer_value(n) == 1) {
                    printf("released %s (owner %s)\n", digest, jid[0] ? jid : "?");
                    found++;
                }
                json_decref(n);
            } else if (!release) {
                json_array_append_new(rows,
                                      json_pack("{s:s, s:s}", "digest", digest, "owner", jid));
            }
            json_decref(owner);
        }
        json_decref(page);
    } while (!rc && strcmp(cursor, "0"));
    int exit_code = CLI_OK;
    if (rc) {
        cli_err(&ctx, "%s", dray_api_errstr(api));
        exit_code = cli_exit_for(rc);
    } else if (release && !found) {
        cli_err(&ctx, "no unique lock %s", target);
        exit_code = CLI_ENOTFOUND;
    } else if (!release) {
        if (ctx.json) {
            char *s = json_dumps(rows, JSON_COMPACT);
            puts(s ? s : "[]");
            free(s);
        } else {
            printf("%-64s  %s\n", "LOCK (DIGEST)", "OWNER JID");
            size_t i;
            json_t *o;
            json_array_foreach(rows, i, o)
                printf("%-64s  %s\n", field(o, "digest"), field(o, "owner"));
        }
    }
    json_decref(rows);
    dray_api_free(api);
    cli_ctx_close(&ctx);
    return exit_code;
}
