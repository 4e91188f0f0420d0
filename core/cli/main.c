/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The dray command: subcommand dispatch, help and version. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char overview[] =
    "usage: dray COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Background jobs for C, Sidekiq-compatible on Redis.\n"
    "\n"
    "Commands:\n"
    "  run                      run a worker process (handlers from --require)\n"
    "  push CLASS [ARGS-JSON]   enqueue or schedule jobs; prints their jids\n"
    "  stats                    processed/failed counters and set sizes\n"
    "  queues                   queues with size, latency and state; --pause/--resume Q\n"
    "  processes                live worker processes\n"
    "  retries ACTION           the retry set: list, show, retry, delete, kill\n"
    "  scheduled ACTION         the schedule set: list, show, retry, delete, kill\n"
    "  dead ACTION              the dead set: list, show, retry, delete\n"
    "  signal IDENTITY SIGNAL   send TSTP (quiet), TERM (stop) or TTIN (dump) to a process\n"
    "  cancel JID               cancel a job: removed if waiting, stopped if running\n"
    "  license check            verify the license key against the configured modules\n"
    "  limits                   Enterprise rate limiters and their use\n"
    "  periodic                 Enterprise periodic loops: leader, last and next run\n"
    "  unique list|release X    Enterprise unique-job locks; release one by digest or jid\n"
    "  web                      the web dashboard and Prometheus /metrics (127.0.0.1:7433)\n"
    "  version                  print the version\n"
    "  X ...                    any other X runs dray-X (e.g. 'dray batch status BID' with Pro)\n"
    "  help [COMMAND]           this text, or a command's help\n"
    "\n"
    "Options every command takes:\n"
    "  -C, --config FILE        read a config file (default: $DRAY_CONFIG)\n"
    "      --redis-url URL      redis://[user:pass@]host[:port][/db] or unix:///path.sock\n"
    "                           (default: $DRAY_REDIS_URL, $REDIS_URL, redis://127.0.0.1:6379/0)\n"
    "                           rediss://... for TLS (redis_tls_* settings), and\n"
    "                           redis-sentinel://[:pass@]h1:26379,h2/mastername[/db]\n"
    "      --namespace NS       key prefix, as Sidekiq 6's redis-namespace\n"
    "  -h, --help               help for the command\n"
    "Settings apply in order: config file < DRAY_* environment < flags.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  runtime error (Redis unreachable or refused a command)\n"
    "  2  usage error (bad command line or flag value)\n"
    "  3  not found (no job with that jid, no process with that identity)\n"
    "  4  configuration error (config file, environment, redis url, module, library)\n"
    "\n"
    "See docs/cli.md for every flag, config key and environment variable.\n";

static const char help_run[] =
    "usage: dray run [OPTIONS]\n"
    "\n"
    "Run a worker process until TERM or INT. Handlers come from libraries given\n"
    "with --require, each exporting int dray_register_handlers(dray_server *).\n"
    "\n"
    "  -c, --concurrency N      worker threads (1-1000; default 10)\n"
    "  -q, --queue NAME[,W]     queue to work, with optional weight; repeatable, in order\n"
    "                           (default: default). Flags replace the config's queues.\n"
    "  -t, --timeout SECONDS    shutdown wait for running jobs (default 25)\n"
    "  -r, --require LIB        load handlers from a shared library; repeatable\n"
    "      --module PATH        load a dray module (.so); repeatable\n"
    "      --processes N        supervise N forked worker processes (crash isolation)\n"
    "      --isolate            one job per child process (implies -c 1)\n"
    "      --crash-limit K      a job that killed its process K times dies (default 3)\n"
    "      --tag TAG            process tag shown in the Web UI\n"
    "      --label LABEL        process label; repeatable\n"
    "      --set KEY=VALUE      any config key, e.g. --set pro.webhook_url=https://...\n"
    "  -v, --verbose            debug logging\n"
    "      --log-jobs           log a line when each job starts and ends\n"
    "      --log-format FMT     text (default) or json: one JSON object a line, same fields\n"
    "      --statsd HOST:PORT   job metrics over UDP, as Sidekiq Pro's (or $DRAY_STATSD)\n"
    "      --statsd-format F    dogstatsd (default: tags worker, queue) or statsd\n"
    "      --statsd-prefix P    prefix of every metric name (e.g. myapp.)\n"
    "      --metrics-listen A   serve this process's Prometheus /metrics on A (PORT is\n"
    "                           127.0.0.1:PORT; HOST:PORT; no auth: keep it on loopback)\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Signals: TERM or INT stop (wait --timeout, then requeue unfinished jobs; a\n"
    "second INT stops at once), TSTP or USR1 quiet (finish running jobs, fetch no\n"
    "more), TTIN logs what every worker is doing.\n"
    "\n"
    "Exit status: 0 after a clean stop, 1 runtime error, 2 usage, 4 configuration\n"
    "(bad config, a library or module that cannot be loaded).\n";

static const char help_push[] =
    "usage: dray push CLASS [ARGS-JSON] [OPTIONS]\n"
    "\n"
    "Push a job of CLASS with ARGS-JSON (a JSON array; default []) and print its\n"
    "jid. With --in or --at it goes to the schedule set.\n"
    "\n"
    "  -q, --queue NAME         queue (default: default)\n"
    "      --in SECONDS         run after this many seconds\n"
    "      --at TIME            run at epoch seconds or ISO 8601 (2024-05-01T12:00:00Z;\n"
    "                           without a zone it is UTC)\n"
    "      --retry N|true|false max retries, true (default: 25) or false (none)\n"
    "      --count N            push N jobs with the same args (bulk; one jid per line)\n"
    "      --module PATH        load a module first (repeatable), as `dray run` does with the\n"
    "                           config's `module` lines and $DRAY_MODULES: its push hooks\n"
    "                           (unique locks, encryption) apply to these jobs\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n";

static const char help_stats[] =
    "usage: dray stats [--json] [OPTIONS]\n"
    "\n"
    "Counters and sizes, as Sidekiq::Stats: processed, failed, busy, enqueued,\n"
    "retries, scheduled, dead, processes and the latency of the default queue.\n"
    "\n"
    "      --json               machine-readable output\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n";

static const char help_queues[] =
    "usage: dray queues [--json] [OPTIONS]\n"
    "       dray queues --pause QUEUE | --resume QUEUE\n"
    "\n"
    "Every known queue with its size, latency (seconds since its oldest job\n"
    "was enqueued) and state (running or paused).\n"
    "\n"
    "      --json               machine-readable output\n"
    "      --pause QUEUE        stop every worker fetching from QUEUE (within 3 s);\n"
    "                           its jobs stay queued, pushes go on\n"
    "      --resume QUEUE       let workers fetch from QUEUE again\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n";

static const char help_processes[] =
    "usage: dray processes [--json] [OPTIONS]\n"
    "\n"
    "Live worker processes (dray or Sidekiq) from their heartbeats: identity,\n"
    "tag, busy/concurrency, queues, last beat, quiet, memory.\n"
    "\n"
    "      --json               machine-readable output\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n";

static const char help_set[] =
    "usage: dray retries|scheduled|dead ACTION [ARGS] [OPTIONS]\n"
    "\n"
    "Actions:\n"
    "  list [--limit N] [--offset N] [--json]\n"
    "                           one page (default 50; --limit 0 for all); retries and\n"
    "                           scheduled soonest first, dead newest first\n"
    "  show JID                 print the job's JSON exactly as stored\n"
    "  retry JID                push the job to its queue now (from retries and dead\n"
    "                           retry_count is decremented first, as Sidekiq does)\n"
    "  delete JID               remove the job\n"
    "  kill JID                 move the job to the dead set (retries, scheduled)\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Exit status 3 when no job in the set has that jid.\n";

static const char help_signal[] =
    "usage: dray signal IDENTITY SIGNAL [OPTIONS]\n"
    "\n"
    "Send a remote signal to a process (dray or Sidekiq); it acts on it at its next\n"
    "heartbeat. SIGNAL is TSTP (or quiet), TERM (or stop) or TTIN (or dump).\n"
    "IDENTITY is as shown by 'dray processes'.\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Exit status 3 when no such process is registered.\n";

static const char help_cancel[] =
    "usage: dray cancel JID [OPTIONS]\n"
    "\n"
    "Cancel a job. The cancellation is recorded first (<ns>dray:cancel:JID, kept\n"
    "24 h): a worker that fetches the job from then on does not run it. A job\n"
    "waiting in a queue, the schedule or the retry set is removed; a running job\n"
    "is flagged at its worker's next heartbeat (dray_job_cancelled returns 1), or\n"
    "under --processes/--isolate its child is killed; it is not retried.\n"
    "Prints 'removed from WHERE', 'running on IDENTITY: ...' or 'not found'.\n"
    "  --json                   print {\"jid\", \"outcome\", \"where\"}\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Exit status 0 when removed or running (stopped at its next heartbeat), 3 when\n"
    "no queue, set or process has the job (done, or never pushed), 1 on a Redis error.\n";

static const char help_version[] = "usage: dray version\n\nPrint dray's version.\n";

static const char help_limits[] =
    "usage: dray limits [--json] [-C FILE] [--redis-url URL] [--namespace NS]\n"
    "\n"
    "The Enterprise module's rate limiters (ent:limiters, ent:lmtr:*): type, limit,\n"
    "interval, current holders of concurrent limiters, admissions and overages.\n";

static const char help_periodic[] =
    "usage: dray periodic [--json] [-C FILE] [--redis-url URL] [--namespace NS]\n"
    "\n"
    "The Enterprise module's periodic loops: the leader (dear-leader), and per loop\n"
    "its cron, class, time zone, last tick enqueued and next run.\n";

static const char help_unique[] =
    "usage: dray unique list [--json] | dray unique release DIGEST|JID\n"
    "\n"
    "The Enterprise module's unique-job locks (ent:unique:<digest>) and their owner\n"
    "jids; release deletes one lock, found by digest or by owner jid.\n"
    "Exit status 3 when no such lock exists.\n";

static const char help_web[] =
    "usage: dray web [--listen HOST:PORT] [--token T | --basic-auth USER:PASS] [OPTIONS]\n"
    "\n"
    "Serve the dashboard (queues, busy processes, retries, scheduled, dead, with\n"
    "their actions) and Prometheus text at /metrics until TERM or INT.\n"
    "\n"
    "      --listen HOST:PORT   address to listen on (default 127.0.0.1:7433; port 0\n"
    "                           picks a free one, printed on stderr)\n"
    "      --token TOKEN        require 'Authorization: Bearer TOKEN' (or $DRAY_WEB_TOKEN)\n"
    "      --basic-auth U:P     require HTTP basic auth (or $DRAY_WEB_BASIC_AUTH)\n"
    "      --read-only          show everything, refuse every action\n"
    "      --page-size N        rows per page (1-1000; default 25)\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Exit status: 0 after TERM/INT, 1 when the address cannot be bound, 2 usage.\n";

static const char help_license[] =
    "usage: dray license check [--module PATH]... [--key KEY | --key-file FILE] [OPTIONS]\n"
    "\n"
    "Load each module (from --module and the config's 'module' lines) in check mode,\n"
    "the same code path as 'dray run' start-up, and print whether its license key\n"
    "is accepted: licensee, tier and expiry, or the exact reason it is refused.\n"
    "The key comes from --key/--key-file, else the config's 'license'/'license_file',\n"
    "else $DRAY_LICENSE / $DRAY_LICENSE_FILE. Nothing runs and nothing is written.\n"
    "  --json              one JSON object per module\n"
    "  -C, --config FILE, --redis-url URL, --namespace NS, -h, --help\n"
    "\n"
    "Exit status 0 when every module accepts the key, 4 when one refuses it, 2 on usage.\n";

/* Print the help of cmd (NULL: the overview with every command and exit code) to f. */
void
cli_help(FILE *f, const char *cmd)
{
    const char *text = overview;
    if (!cmd)
        text = overview;
    else if (!strcmp(cmd, "run"))
        text = help_run;
    else if (!strcmp(cmd, "push"))
        text = help_push;
    else if (!strcmp(cmd, "stats"))
        text = help_stats;
    else if (!strcmp(cmd, "queues"))
        text = help_queues;
    else if (!strcmp(cmd, "processes"))
        text = help_processes;
    else if (!strcmp(cmd, "retries") || !strcmp(cmd, "scheduled") || !strcmp(cmd, "dead"))
        text = help_set;
    else if (!strcmp(cmd, "signal"))
        text = help_signal;
    else if (!strcmp(cmd, "cancel"))
        text = help_cancel;
    else if (!strcmp(cmd, "version"))
        text = help_version;
    else if (!strcmp(cmd, "license"))
        text = help_license;
    else if (!strcmp(cmd, "limits"))
        text = help_limits;
    else if (!strcmp(cmd, "periodic"))
        text = help_periodic;
    else if (!strcmp(cmd, "unique"))
        text = help_unique;
    else if (!strcmp(cmd, "web"))
        text = help_web;
    fputs(text, f);
}

/* Git-style extensions: `dray X ...` runs `dray-X ...` from the directory of
 * this executable or from $PATH. Commercial modules ship their tools this
 * way (`dray batch status BID` runs Pro's dray-batch) without the LGPL core
 * linking them. */
static int
external(const char *cmd, int argc, char **argv)
{
    char name[128];
    int ok = 1;
    for (const char *p = cmd; *p; p++)
        ok &= (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
    if (ok && snprintf(name, sizeof name, "dray-%s", cmd) < (int)sizeof name) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            char *slash = strrchr(self, '/');
            if (slash && (size_t)(slash - self) + 1 + strlen(name) < sizeof self) {
                strcpy(slash + 1, name);
                argv[1] = self;
                execv(self, argv + 1);
            }
        }
        argv[1] = name;
        execvp(name, argv + 1);
    }
    fprintf(stderr, "dray: unknown command '%s'\nSee 'dray --help'.\n", cmd);
    (void)argc;
    return CLI_EUSAGE;
}

/* Print the dray and libdray versions. Returns CLI_OK. */
static int
version(void)
{
    printf("dray %s (libdray %s)\n", DRAY_VERSION_STRING, dray_version());
    return CLI_OK;
}

/* Dispatch argv[1] to its command; returns that command's exit code (CLI_EUSAGE for an
 * unknown one). */
int
main(int argc, char **argv)
{
    if (argc < 2) {
        cli_help(stderr, NULL);
        return CLI_EUSAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help"))
        return cli_help(stdout, NULL), CLI_OK;
    if (!strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(argv[2], "run") && strcmp(argv[2], "push") &&
            strcmp(argv[2], "stats") && strcmp(argv[2], "queues") && strcmp(argv[2], "processes") &&
            strcmp(argv[2], "retries") && strcmp(argv[2], "scheduled") && strcmp(argv[2], "dead") &&
            strcmp(argv[2], "signal") && strcmp(argv[2], "version") && strcmp(argv[2], "license") &&
            strcmp(argv[2], "limits") && strcmp(argv[2], "periodic") && strcmp(argv[2], "unique") &&
            strcmp(argv[2], "web") && strcmp(argv[2], "cancel")) {
            fprintf(stderr, "dray help: unknown command '%s'\n", argv[2]);
            return CLI_EUSAGE;
        }
        cli_help(stdout, argc > 2 ? argv[2] : NULL);
        return CLI_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        if (argc > 2 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")))
            return cli_help(stdout, "version"), CLI_OK;
        if (argc > 2) {
            fprintf(stderr, "dray version: takes no arguments\n");
            return CLI_EUSAGE;
        }
        return version();
    }
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    if (!strcmp(cmd, "run"))
        return cli_cmd_run(sub_argc, sub_argv);
    if (!strcmp(cmd, "push"))
        return cli_cmd_push(sub_argc, sub_argv);
    if (!strcmp(cmd, "stats"))
        return cli_cmd_stats(sub_argc, sub_argv);
    if (!strcmp(cmd, "queues"))
        return cli_cmd_queues(sub_argc, sub_argv);
    if (!strcmp(cmd, "processes"))
        return cli_cmd_processes(sub_argc, sub_argv);
    if (!strcmp(cmd, "retries") || !strcmp(cmd, "scheduled") || !strcmp(cmd, "dead"))
        return cli_cmd_set(sub_argc, sub_argv);
    if (!strcmp(cmd, "signal"))
        return cli_cmd_signal(sub_argc, sub_argv);
    if (!strcmp(cmd, "cancel"))
        return cli_cmd_cancel(sub_argc, sub_argv);
    if (!strcmp(cmd, "license"))
        return cli_cmd_license(sub_argc, sub_argv);
    if (!strcmp(cmd, "limits"))
        return cli_cmd_limits(sub_argc, sub_argv);
    if (!strcmp(cmd, "periodic"))
        return cli_cmd_periodic(sub_argc, sub_argv);
    if (!strcmp(cmd, "unique"))
        return cli_cmd_unique(sub_argc, sub_argv);
    if (!strcmp(cmd, "web"))
        return cli_cmd_web(sub_argc, sub_argv);
    return external(cmd, argc, argv);
}
