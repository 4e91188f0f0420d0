/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray stats, queues, processes, retries/scheduled/dead and signal: the
 * inspection API as tables for people and JSON for scripts. */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

#define LIST_DEFAULT_LIMIT 50 /* one screen of a busy retry set */
#define ERROR_COLUMN_MAX 60   /* error messages are cut to this in tables */

/* A read-only command's options (cli_read_opts), --limit/--offset refused
 * with a message unless limit is given. -1 to go on, else an exit code. */
static int
parse_opts(cli_ctx *ctx, int argc, char **argv, long *limit, long *offset)
{
    return cli_read_opts(ctx, argc, argv, 1, limit, offset);
}

/* The start of a command without arguments: its options, then the API in
 * *api. -1 to go on (the caller frees *api and closes ctx), else the exit
 * code with ctx closed where it was opened. */
static int
begin_plain(cli_ctx *ctx, int argc, char **argv, dray_api **api)
{
    int r = parse_opts(ctx, argc, argv, NULL, NULL);
    if (r >= 0)
        return r;
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if ((r = cli_open_api(ctx, api))) {
        cli_ctx_close(ctx);
        return r;
    }
    return -1;
}

/* Print the API's error (its text, else the code's) and return the matching CLI exit code. */
static int
api_fail(const cli_ctx *ctx, const dray_api *api, int rc)
{
    cli_err_rc(ctx, dray_api_errstr(api), rc);
    return cli_exit_for(rc);
}

/* ---- stats ----------------------------------------------------------------- */

/* dray stats: Sidekiq's dashboard figures, as a table or --json. A CLI exit code. */
int
cli_cmd_stats(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "stats");
    dray_api *api;
    int r = begin_plain(&ctx, argc, argv, &api);
    if (r >= 0)
        return r;
    r = CLI_OK;
    dray_stats st;
    int rc = dray_api_stats_get(api, &st);
    if (rc) {
        r = api_fail(&ctx, api, rc);
    } else if (ctx.json) {
        r = cli_json_print(json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "processed", (json_int_t)st.processed,
            "failed", (json_int_t)st.failed, "busy", (json_int_t)st.workers_size, "enqueued",
            (json_int_t)st.enqueued, "retries", (json_int_t)st.retry_size, "scheduled",
            (json_int_t)st.scheduled_size, "dead", (json_int_t)st.dead_size, "processes",
            (json_int_t)st.processes_size, "default_queue_latency", st.default_queue_latency));
    } else {
        printf("processed              %lld\n", st.processed);
        printf("failed                 %lld\n", st.failed);
        printf("busy                   %lld\n", st.workers_size);
        printf("enqueued               %lld\n", st.enqueued);
        printf("retries                %lld\n", st.retry_size);
        printf("scheduled              %lld\n", st.scheduled_size);
        printf("dead                   %lld\n", st.dead_size);
        printf("processes              %lld\n", st.processes_size);
        printf("default queue latency  %.2fs\n", st.default_queue_latency);
    }
    dray_api_free(api);
    cli_ctx_close(&ctx);
    return r;
}

/* ---- queues ---------------------------------------------------------------- */

/* `dray queues --pause Q` / `--resume Q`: one change, said on stdout. */
static int
queue_pause_set(cli_ctx *ctx, const char *queue, int pause)
{
    dray_api *api;
    int r = cli_open_api(ctx, &api);
    if (r)
        return r;
    int rc = pause ? dray_api_queue_pause(api, queue) : dray_api_queue_resume(api, queue);
    if (rc == DRAY_EQUEUE)
        r = cli_usage(ctx,
                      "invalid queue name '%s' (empty, too long, or a space, comma or "
                      "control byte)",
                      queue);
    else if (rc)
        r = api_fail(ctx, api, rc);
    else
        printf("queue %s %s\n", queue, pause ? "paused" : "resumed");
    dray_api_free(api);
    return r;
}

/* Whether name is in the sorted list of paused queues. */
static int
is_paused(char **paused, size_t np, const char *name)
{
    for (size_t i = 0; i < np; i++)
        if (!strcmp(paused[i], name))
            return 1;
    return 0;
}

/* dray queues: sizes, latencies and paused state, or --pause/--resume a queue. A CLI exit
 * code. */
int
cli_cmd_queues(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "queues");
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"pause", required_argument, NULL, OPT_PAUSE},
        {"resume", required_argument, NULL, OPT_RESUME},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *change = NULL;
    int pause = 0, c, r = -1;
    while (r < 0 && (c = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(&ctx, c, optarg);
        if (h < 0)
            r = CLI_EUSAGE;
        else if (h > 0)
            continue;
        else if (c == OPT_JSON)
            ctx.json = 1;
        else if ((c == OPT_PAUSE || c == OPT_RESUME) && change)
            r = cli_usage(&ctx, "give one --pause or --resume at a time");
        else if (c == OPT_PAUSE || c == OPT_RESUME) {
            change = optarg;
            pause = c == OPT_PAUSE;
        } else {
            fprintf(stderr, "See 'dray queues --help'.\n");
            r = CLI_EUSAGE;
        }
    }
    if (r < 0 && ctx.help) {
        cli_help(stdout, ctx.cmd);
        r = CLI_OK;
    }
    if (r < 0 && optind < argc)
        r = cli_usage(&ctx, "unexpected argument '%s'", argv[optind]);
    if (r >= 0)
        goto out;
    if (change) {
        r = queue_pause_set(&ctx, change, pause);
        goto out;
    }
    dray_api *api;
    if ((r = cli_open_api(&ctx, &api)))
        goto out;
    dray_queue_info *q;
    size_t n, np = 0;
    char **paused = NULL;
    int rc = dray_api_queues_list(api, &q, &n);
    if (!rc && (rc = dray_api_paused_list(api, &paused, &np)))
        dray_api_queues_free(q, n);
    if (rc) {
        r = api_fail(&ctx, api, rc);
    } else if (ctx.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:I, s:f, s:b}", "name", q[i].name, "size",
                                                 (json_int_t)q[i].size, "latency", q[i].latency,
                                                 "paused", is_paused(paused, np, q[i].name)));
        r = cli_json_print(arr);
    } else {
        cli_table t;
        cli_table_init(&t, 4);
        const char *head[4] = {"QUEUE", "SIZE", "LATENCY", "STATE"};
        cli_table_row(&t, head);
        for (size_t i = 0; i < n; i++) {
            char size[24], lat[32];
            snprintf(size, sizeof size, "%lld", q[i].size);
            snprintf(lat, sizeof lat, "%.2fs", q[i].latency);
            const char *row[4] = {q[i].name, size, lat,
                                  is_paused(paused, np, q[i].name) ? "paused" : "running"};
            cli_table_row(&t, row);
        }
        cli_table_print(&t, stdout);
        cli_table_close(&t);
    }
    if (!rc) {
        dray_api_queues_free(q, n);
        dray_api_paused_free(paused, np);
    }
    dray_api_free(api);
out:
    cli_ctx_close(&ctx);
    return r;
}

/* ---- processes ------------------------------------------------------------- */

/* A comma-separated list as a JSON array of strings (new reference; NULL csv gives []). */
static json_t *
split_json(const char *csv)
{
    json_t *arr = json_array();
    const char *p = csv;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(arr, json_stringn(p, n));
        p = comma ? comma + 1 : NULL;
    }
    return arr;
}

/* dray processes: the live processes from their heartbeats, as a table or --json. A CLI exit
 * code. */
int
cli_cmd_processes(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "processes");
    dray_api *api;
    int r = begin_plain(&ctx, argc, argv, &api);
    if (r >= 0)
        return r;
    r = CLI_OK;
    dray_process_info *p;
    size_t n;
    int rc = dray_api_processes_list(api, &p, &n);
    double now = dray_now();
    if (rc) {
        r = api_fail(&ctx, api, rc);
    } else if (ctx.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:s, s:i, s:o, s:o, s:i, s:f, s:b, s:I, s:I, s:f}",
                               "identity", p[i].identity, "hostname", p[i].hostname, "pid",
                               (json_int_t)p[i].pid, "tag", p[i].tag, "concurrency",
                               p[i].concurrency, "queues", split_json(p[i].queues), "labels",
                               split_json(p[i].labels), "busy", p[i].busy, "beat", p[i].beat,
                               "quiet", p[i].quiet, "rss_kb", (json_int_t)p[i].rss_kb, "rtt_us",
                               (json_int_t)p[i].rtt_us, "started_at", p[i].started_at));
        for (size_t i = 0; i < n; i++)
            json_object_set_new(json_array_get(arr, i), "version", json_string(p[i].version));
        r = cli_json_print(arr);
    } else {
        cli_table t;
        cli_table_init(&t, 8);
        const char *head[8] = {"IDENTITY", "TAG",   "BUSY", "QUEUES",
                               "BEAT",     "STATE", "RSS",  "VERSION"};
        cli_table_row(&t, head);
        for (size_t i = 0; i < n; i++) {
            char busy[32], beat[32], rss[32];
            snprintf(busy, sizeof busy, "%d/%d", p[i].busy, p[i].concurrency);
            cli_fmt_duration(now - p[i].beat, beat, sizeof beat - 4);
            strcat(beat, " ago");
            snprintf(rss, sizeof rss, "%.1f MB", (double)p[i].rss_kb / 1024.0);
            const char *row[8] = {p[i].identity, p[i].tag[0] ? p[i].tag : "-",
                                  busy,          p[i].queues,
                                  beat,          p[i].quiet ? "quiet" : "running",
                                  rss,           p[i].version[0] ? p[i].version : "-"};
            cli_table_row(&t, row);
        }
        cli_table_print(&t, stdout);
        cli_table_close(&t);
    }
    if (!rc)
        dray_api_processes_free(p, n);
    dray_api_free(api);
    cli_ctx_close(&ctx);
    return r;
}

/* ---- retries / scheduled / dead -------------------------------------------- */

/* e as an object for --json (new reference, NULL on OOM); a member that is not JSON is kept
 * as a string. */
static json_t *
entry_json(const dray_set_entry *e)
{
    json_t *job = json_loadb(e->member, e->member_len, 0, NULL);
    if (!job)
        job = json_stringn(e->member, e->member_len); /* not JSON: show it raw */
    json_t *o = json_pack("{s:f, s:o}", "score", e->score, "job", job);
    if (!o)
        return NULL;
    json_object_set_new(o, "jid", e->jid ? json_string(e->jid) : json_null());
    json_object_set_new(o, "class", e->klass ? json_string(e->klass) : json_null());
    json_object_set_new(o, "queue", e->queue ? json_string(e->queue) : json_null());
    json_object_set_new(o, "error_class",
                        e->error_class ? json_string(e->error_class) : json_null());
    json_object_set_new(o, "error_message",
                        e->error_message ? json_string(e->error_message) : json_null());
    json_object_set_new(o, "retry_count",
                        e->retry_count >= 0 ? json_integer(e->retry_count) : json_null());
    /* epoch seconds whichever form the job carries (Sidekiq 8 writes ms) */
    const char *tn[4] = {"created_at", "enqueued_at", "failed_at", "retried_at"};
    const double tv[4] = {e->created_at, e->enqueued_at, e->failed_at, e->retried_at};
    for (int i = 0; i < 4; i++)
        json_object_set_new(o, tn[i], tv[i] ? json_real(tv[i]) : json_null());
    return o;
}

/* Print one page (limit at offset) of set as a table or --json. A CLI exit code. */
static int
set_list(cli_ctx *ctx, dray_api *api, dray_set set, long limit, long offset)
{
    dray_set_entry *e;
    size_t n;
    long long total = 0;
    int rc = dray_api_set_list(api, set, (size_t)offset, (size_t)limit, &e, &n);
    if (rc)
        return api_fail(ctx, api, rc);
    if ((rc = dray_api_set_size(api, set, &total))) {
        dray_api_entries_free(e, n);
        return api_fail(ctx, api, rc);
    }
    int r = CLI_OK;
    if (ctx->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, entry_json(&e[i]));
        r = cli_json_print(arr);
    } else {
        double now = dray_now();
        cli_table t;
        cli_table_init(&t, 8);
        const char *when = set == DRAY_SET_DEAD    ? "DIED"
                           : set == DRAY_SET_RETRY ? "NEXT RETRY"
                                                   : "RUN AT";
        const char *head[8] = {when, "", "JID", "CLASS", "QUEUE", "RETRIES", "FAILED", "ERROR"};
        cli_table_row(&t, head);
        for (size_t i = 0; i < n; i++) {
            char at[40], rel[32], retries[16], failed[40], error[ERROR_COLUMN_MAX + 8];
            cli_fmt_time(e[i].score, at, sizeof at);
            if (e[i].failed_at > 0)
                cli_fmt_time(e[i].failed_at, failed, sizeof failed);
            else
                snprintf(failed, sizeof failed, "-");
            if (now - e[i].score >= 0) {
                cli_fmt_duration(now - e[i].score, rel, sizeof rel - 4);
                strcat(rel, " ago");
            } else {
                cli_fmt_duration(now - e[i].score, rel, sizeof rel);
            }
            if (e[i].retry_count >= 0)
                snprintf(retries, sizeof retries, "%d", e[i].retry_count);
            else
                snprintf(retries, sizeof retries, "-");
            if (e[i].error_class || e[i].error_message) {
                int cut = snprintf(error, sizeof error, "%s: %s",
                                   e[i].error_class ? e[i].error_class : "",
                                   e[i].error_message ? e[i].error_message : "");
                if (cut > ERROR_COLUMN_MAX) {
                    size_t k = ERROR_COLUMN_MAX - 3;
                    while (k > 0 && ((unsigned char)error[k] & 0xC0) == 0x80)
                        k--; /* do not split a UTF-8 sequence */
                    memcpy(error + k, "...", 4);
                }
            } else {
                snprintf(error, sizeof error, "-");
            }
            const char *row[8] = {at,         rel,        e[i].jid ? e[i].jid : "(not json)",
                                  e[i].klass, e[i].queue, retries,
                                  failed,     error};
            cli_table_row(&t, row);
        }
        cli_table_print(&t, stdout);
        cli_table_close(&t);
        if ((long long)n < total)
            printf("(%zu of %lld shown; use --limit and --offset for more)\n", n, total);
    }
    dray_api_entries_free(e, n);
    return r;
}

/* dray retries|scheduled|dead list|show|retry|delete|kill [JID]: list a set, or show or act
 * on one entry (no kill in dead). A CLI exit code. */
int
cli_cmd_set(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, argv[0]);
    dray_set set;
    if (dray_set_parse(argv[0], &set))
        return cli_usage(&ctx, "unknown set");
    long limit = LIST_DEFAULT_LIMIT, offset = 0;
    int r = parse_opts(&ctx, argc, argv, &limit, &offset);
    if (r >= 0)
        return r;
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage(&ctx, "missing ACTION (list, show, retry, delete, kill)");
    const char *action = argv[optind];
    const char *jid = npos > 1 ? argv[optind + 1] : NULL;
    int is_list = !strcmp(action, "list");
    if (!is_list && strcmp(action, "show") && strcmp(action, "retry") && strcmp(action, "delete") &&
        strcmp(action, "kill"))
        return cli_usage(&ctx, "unknown action '%s' (list, show, retry, delete, kill)", action);
    if (is_list && npos > 1)
        return cli_usage(&ctx, "unexpected argument '%s'", argv[optind + 1]);
    if (!is_list && npos != 2)
        return npos < 2 ? cli_usage(&ctx, "%s needs a JID", action)
                        : cli_usage(&ctx, "unexpected argument '%s'", argv[optind + 2]);
    if (!strcmp(action, "kill") && set == DRAY_SET_DEAD)
        return cli_usage(&ctx, "jobs in the dead set are already dead; use retry or delete");
    if (!is_list && (limit != LIST_DEFAULT_LIMIT || offset))
        return cli_usage(&ctx, "--limit and --offset are only for list");
    dray_api *api;
    if ((r = cli_open_api(&ctx, &api)))
        goto out;
    int rc = 0;
    if (is_list) {
        r = set_list(&ctx, api, set, limit, offset);
    } else if (!strcmp(action, "show")) {
        dray_set_entry *e;
        if ((rc = dray_api_set_find(api, set, jid, &e))) {
            r = api_fail(&ctx, api, rc);
        } else {
            if (ctx.json) {
                r = cli_json_print(entry_json(e));
            } else {
                fwrite(e->member, 1, e->member_len, stdout);
                fputc('\n', stdout);
            }
            dray_api_entries_free(e, 1);
        }
    } else {
        const char *done;
        if (!strcmp(action, "retry")) {
            rc = dray_api_set_retry(api, set, jid);
            done = "pushed to its queue";
        } else if (!strcmp(action, "delete")) {
            rc = dray_api_set_delete(api, set, jid);
            done = "deleted";
        } else {
            rc = dray_api_set_kill(api, set, jid);
            done = "moved to the dead set";
        }
        if (rc)
            r = api_fail(&ctx, api, rc);
        else
            printf("%s %s\n", jid, done);
    }
    dray_api_free(api);
out:
    cli_ctx_close(&ctx);
    return r;
}

/* ---- signal ---------------------------------------------------------------- */

/* dray signal IDENTITY TSTP|TERM|TTIN (quiet, stop, dump) through Redis. A CLI exit code
 * (CLI_ENOTFOUND for no such process). */
int
cli_cmd_signal(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "signal");
    int r = parse_opts(&ctx, argc, argv, NULL, NULL);
    if (r >= 0)
        return r;
    int npos = argc - optind;
    if (npos != 2)
        return npos < 2 ? cli_usage(&ctx, "needs IDENTITY and SIGNAL")
                        : cli_usage(&ctx, "unexpected argument '%s'", argv[optind + 2]);
    const char *identity = argv[optind];
    char sig[16];
    const char *s = argv[optind + 1];
    if (!strncasecmp(s, "SIG", 3))
        s += 3;
    size_t k = 0;
    for (; s[k] && k < sizeof sig - 1; k++)
        sig[k] = (char)toupper((unsigned char)s[k]);
    sig[k] = '\0';
    if (!strcmp(sig, "QUIET") || !strcmp(sig, "USR1"))
        strcpy(sig, "TSTP");
    else if (!strcmp(sig, "STOP"))
        strcpy(sig, "TERM");
    else if (!strcmp(sig, "DUMP"))
        strcpy(sig, "TTIN");
    if (strcmp(sig, "TSTP") && strcmp(sig, "TERM") && strcmp(sig, "TTIN"))
        return cli_usage(&ctx, "SIGNAL must be TSTP (quiet), TERM (stop) or TTIN (dump), not '%s'",
                         argv[optind + 1]);
    dray_api *api;
    if ((r = cli_open_api(&ctx, &api)))
        goto out;
    int rc = dray_api_signal(api, identity, sig);
    if (rc)
        r = api_fail(&ctx, api, rc);
    else
        printf("sent %s to %s\n", sig, identity);
    dray_api_free(api);
out:
    cli_ctx_close(&ctx);
    return r;
}

/* ---- cancel ---------------------------------------------------------------- */

/* The word printed for a cancel outcome (static string). */
static const char *
outcome_word(dray_cancel_outcome o)
{
    return o == DRAY_CANCEL_REMOVED   ? "removed"
           : o == DRAY_CANCEL_RUNNING ? "running"
                                      : "not_found";
}

/* dray cancel JID: dray_api_cancel, its outcome printed. */
int
cli_cmd_cancel(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "cancel");
    int r = parse_opts(&ctx, argc, argv, NULL, NULL);
    if (r >= 0)
        return r;
    int npos = argc - optind;
    if (npos != 1)
        return npos < 1 ? cli_usage(&ctx, "needs a JID")
                        : cli_usage(&ctx, "unexpected argument '%s'", argv[optind + 1]);
    const char *jid = argv[optind];
    if (!*jid)
        return cli_usage(&ctx, "JID is empty");
    dray_api *api;
    if ((r = cli_open_api(&ctx, &api)))
        goto out;
    dray_cancel_result res;
    int rc = dray_api_cancel(api, jid, &res);
    if (rc && rc != DRAY_ENOTFOUND) {
        r = api_fail(&ctx, api, rc);
    } else if (ctx.json) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "jid", jid, "outcome", outcome_word(res.outcome),
                              "where", res.where);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(o);
        r = rc ? CLI_ENOTFOUND : CLI_OK;
    } else if (res.outcome == DRAY_CANCEL_REMOVED) {
        printf("removed %s from %s: it will not run\n", jid, res.where);
    } else if (res.outcome == DRAY_CANCEL_RUNNING) {
        printf("running on %s: cancellation recorded; its worker stops it at its next heartbeat\n",
               res.where);
    } else {
        printf("not found: %s is not queued, scheduled, in the retry set or running "
               "(recorded anyway: it will not run if it shows up within 24 h)\n",
               jid);
        r = CLI_ENOTFOUND;
    }
    dray_api_free(api);
out:
    cli_ctx_close(&ctx);
    return r;
}
