/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The host table given to modules (dray/module.h): logging, memory,
 * settings and the license key, contexts, Redis on the calling thread's
 * connection, enqueue through the client path, verdicts and job access. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module_internal.h"

/* ---- contexts ------------------------------------------------------------- */

/* A stack context of thread kind on conn (may be NULL) for server srv (may be
 * NULL: a client). Cannot fail. */
void
dray__ctx_init(struct dray_ctx *ctx, int kind, struct dray_server *srv, dray__conn *conn,
               const dray__redis_cfg *cfg)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->kind = kind;
    ctx->srv = srv;
    ctx->conn = conn;
    ctx->cfg = cfg;
    ctx->max_payload = srv ? srv->opts.max_payload : DRAY_DEFAULT_MAX_PAYLOAD;
}

/* Deep copy of src into dst (close with dray__redis_cfg_close); 0 or DRAY_ENOMEM. */
int
dray__redis_cfg_copy(dray__redis_cfg *dst, const dray__redis_cfg *src)
{
    *dst = *src;
    dst->host = dst->path = dst->user = dst->pass = dst->ns = NULL;
    if ((src->host && !(dst->host = dray__strdup(src->host))) ||
        (src->path && !(dst->path = dray__strdup(src->path))) ||
        (src->user && !(dst->user = dray__strdup(src->user))) ||
        (src->pass && !(dst->pass = dray__strdup(src->pass))) ||
        !(dst->ns = dray__strdup(src->ns ? src->ns : ""))) {
        dray__redis_cfg_close(dst);
        return DRAY_ENOMEM;
    }
    return 0;
}

/* Each host_* function below implements the dray_host entry of the same
 * name (module.h states their contracts); dray__host at the end lists them. */

static dray_ctx *
host_load_ctx(dray_module *mod)
{
    return mod && mod->state == MOD_STAGING ? mod->lctx : NULL;
}

static int
host_ctx_open(dray_ctx *from, dray_ctx **out)
{
    *out = NULL;
    if (!from || !from->cfg)
        return DRAY_EINVAL;
    struct dray_ctx *c = dray__calloc(1, sizeof *c);
    if (!c)
        return DRAY_ENOMEM;
    dray__ctx_init(c, DRAY_THREAD_MODULE, from->srv, NULL, NULL);
    if (dray__redis_cfg_copy(&c->own_cfg, from->cfg)) {
        dray__free(c);
        return DRAY_ENOMEM;
    }
    c->owned = 1;
    c->mod = from->mod;
    c->max_payload = from->max_payload;
    dray__conn_init(&c->own_conn, &c->own_cfg);
    c->conn = &c->own_conn;
    c->cfg = &c->own_cfg;
    *out = c;
    return 0;
}

static void
host_ctx_close(dray_ctx *ctx)
{
    if (!ctx || !ctx->owned)
        return;
    dray__conn_close(&ctx->own_conn);
    dray__redis_cfg_close(&ctx->own_cfg);
    dray__free(ctx);
}

static int
host_ctx_thread(const dray_ctx *ctx)
{
    return ctx->kind;
}

static char proc_identity[192];
static pthread_once_t proc_identity_once = PTHREAD_ONCE_INIT;

static void
make_proc_identity(void)
{
    char host[128];
    if (gethostname(host, sizeof host - 1))
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(proc_identity, sizeof proc_identity, "%s:%d", host, (int)getpid());
}

static const char *
host_identity(const dray_ctx *ctx)
{
    if (ctx && ctx->srv)
        return ctx->srv->identity;
    pthread_once(&proc_identity_once, make_proc_identity);
    return proc_identity;
}

static const char *
host_ns(const dray_ctx *ctx)
{
    return ctx && ctx->cfg && ctx->cfg->ns ? ctx->cfg->ns : "";
}

/* ---- errors, status, logging -------------------------------------------- */

static int host_set_error(dray_module *mod, const char *fmt, ...) DRAY_PRINTF(2, 3);

static int
host_set_error(dray_module *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dray__verr(mod->errstr, sizeof mod->errstr, DRAY_EMODULE, fmt, ap);
    va_end(ap);
    return DRAY_EMODULE;
}

static void host_set_status(dray_module *mod, const char *fmt, ...) DRAY_PRINTF(2, 3);

static void
host_set_status(dray_module *mod, const char *fmt, ...)
{
    if (mod->state != MOD_STAGING)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mod->status, sizeof mod->status, fmt, ap);
    va_end(ap);
}

static int
host_check_only(dray_module *mod)
{
    return mod->check;
}

static int
host_log_enabled(dray_log_level level)
{
    return dray__log_enabled(level);
}

static void host_log(dray_module *mod, dray_log_level level, const char *fmt, ...)
    DRAY_PRINTF(3, 4);

static void
host_log(dray_module *mod, dray_log_level level, const char *fmt, ...)
{
    if (level < DRAY_LOG_DEBUG || level >= DRAY_LOG_OFF)
        return;
    /* Check mode captures warnings for the verdict instead of printing. */
    bool capture = mod->check && level >= DRAY_LOG_WARN;
    if (!capture && (mod->check || !dray__log_enabled(level)))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (capture) {
        mod->nwarn++;
        dray__err(mod->lastwarn, sizeof mod->lastwarn, 0, "%s", line);
        return;
    }
    dray__log(level, "[%s] %s", dray__mod_name(mod), line);
}

/* ---- settings ------------------------------------------------------------- */

/* The last value of "<name>.<key>", else $DRAY_<NAME>_<KEY>, else NULL. */
static const char *
setting(dray_module *mod, const char *key)
{
    const char *name = dray__mod_name(mod);
    size_t nl = strlen(name);
    for (size_t i = mod->ncfg; i-- > 0;) {
        const char *k = mod->ckey[i];
        if (!strncmp(k, name, nl) && k[nl] == '.' && !strcmp(k + nl + 1, key))
            return mod->cval[i];
    }
    char var[160] = "DRAY_";
    size_t n = strlen(var);
    for (const char *p = name; *p && n < sizeof var - 2; p++)
        var[n++] = (char)toupper((unsigned char)*p);
    var[n++] = '_';
    for (const char *p = key; *p && n < sizeof var - 1; p++)
        var[n++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    var[n] = '\0';
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

static int
bad_setting(dray_module *mod, const char *key, const char *value, const char *why)
{
    snprintf(mod->errstr, sizeof mod->errstr, "setting %s.%s: '%s' %s", dray__mod_name(mod), key,
             value, why);
    return DRAY_ECONFIG;
}

static int
host_config_str(dray_module *mod, const char *key, const char *dflt, const char **out)
{
    const char *v = setting(mod, key);
    *out = v ? v : dflt;
    return 0;
}

static int
host_config_int(dray_module *mod, const char *key, long long dflt, long long lo, long long hi,
                long long *out)
{
    const char *v = setting(mod, key);
    *out = dflt;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return bad_setting(mod, key, v, "is not an integer");
    if (x < lo || x > hi) {
        char why[96];
        snprintf(why, sizeof why, "is outside %lld..%lld", lo, hi);
        return bad_setting(mod, key, v, why);
    }
    *out = x;
    return 0;
}

static int
host_config_double(dray_module *mod, const char *key, double dflt, double lo, double hi,
                   double *out)
{
    const char *v = setting(mod, key);
    *out = dflt;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return bad_setting(mod, key, v, "is not a number");
    if (x < lo || x > hi) {
        char why[96];
        snprintf(why, sizeof why, "is outside %g..%g", lo, hi);
        return bad_setting(mod, key, v, why);
    }
    *out = x;
    return 0;
}

static int
host_config_bool(dray_module *mod, const char *key, int dflt, int *out)
{
    const char *v = setting(mod, key);
    *out = dflt;
    if (!v)
        return 0;
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false",
                                                                                "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return bad_setting(mod, key, v, "is not a boolean (yes/no, true/false, on/off, 1/0)");
}

static int
host_config_each(dray_module *mod, const char *key,
                 int (*fn)(const char *key, const char *value, void *ud), void *ud)
{
    const char *name = dray__mod_name(mod);
    size_t nl = strlen(name);
    for (size_t i = 0; i < mod->ncfg; i++) {
        const char *k = mod->ckey[i];
        if (strncmp(k, name, nl) || k[nl] != '.' || (key && strcmp(k + nl + 1, key)))
            continue;
        int rc = fn(k + nl + 1, mod->cval[i], ud);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- license key ---------------------------------------------------------- */

static const char *
cfg_get(const struct dray_module *mod, const char *key)
{
    for (size_t i = mod->ncfg; i-- > 0;)
        if (!strcmp(mod->ckey[i], key))
            return *mod->cval[i] ? mod->cval[i] : NULL;
    return NULL;
}

/* Read a license file: one key; whitespace anywhere is dropped and does not
 * count against the size limit. A FIFO, device or directory is refused
 * without blocking (opened O_NONBLOCK, then fstat); a NUL byte is refused,
 * since C strings would silently drop what follows it. */
static int
read_license_file(struct dray_module *mod, const char *path, const char *what)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    char *buf = fd >= 0 ? dray__malloc(DRAY__LICENSE_FILE_MAX + 1) : NULL;
    size_t total = 0, raw = 0;
    int err = 0;
    const char *why = NULL;
    struct stat st;
    if (fd < 0) {
        err = errno;
    } else if (!buf) {
        err = ENOMEM;
    } else if (fstat(fd, &st) != 0) {
        err = errno;
    } else if (!S_ISREG(st.st_mode)) {
        why = "not a regular file (a FIFO, device or directory cannot hold a license key)";
    } else {
        char chunk[4096];
        for (;;) {
            ssize_t n = read(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0)
                break;
            if (memchr(chunk, '\0', (size_t)n)) {
                why = "it contains a NUL byte: it holds something besides the key";
                break;
            }
            raw += (size_t)n;
            if (raw > DRAY__LICENSE_FILE_RAW_MAX) {
                err = EFBIG;
                break;
            }
            for (ssize_t i = 0; i < n && !err; i++) {
                if (isspace((unsigned char)chunk[i]))
                    continue;
                if (total == DRAY__LICENSE_FILE_MAX)
                    err = EFBIG;
                else
                    buf[total++] = chunk[i];
            }
            if (err)
                break;
        }
    }
    if (fd >= 0)
        close(fd);
    if (err || why) {
        char text[DRAY__STRERROR_BYTES];
        dray__err(mod->license_err, sizeof mod->license_err, DRAY_EIO,
                  "cannot read license file %s (%s): %s", path, what,
                  why ? why : dray__strerror(err, text, sizeof text));
        dray__free(buf);
        return DRAY_EIO;
    }
    buf[total] = '\0';
    mod->license = buf;
    return 0;
}

/* Resolves mod's license key (its license setting, license_file, then
 * $DRAY_LICENSE/$DRAY_LICENSE_FILE) into mod->license (owned by mod); the
 * outcome is left in mod->license_rc and license_origin, never returned. */
void
dray__mod_resolve_license(struct dray_module *mod)
{
    const char *v, *path = NULL, *what = NULL;
    dray__buf origin;
    dray__buf_init(&origin);
    mod->license_rc = 0;
    if ((v = cfg_get(mod, "license"))) {
        dray__buf_adds(&origin, "setting license");
    } else if ((path = cfg_get(mod, "license_file"))) {
        what = "setting license_file";
    } else if ((v = getenv("DRAY_LICENSE")) && *v) {
        dray__buf_adds(&origin, "DRAY_LICENSE");
    } else if ((path = getenv("DRAY_LICENSE_FILE")) && *path) {
        what = "DRAY_LICENSE_FILE";
    } else {
        v = NULL;
        path = NULL;
        mod->license_rc = DRAY_ENOTFOUND;
    }
    if (path) {
        dray__buf_addf(&origin, "%s %s", what, path);
        mod->license_rc = read_license_file(mod, path, what);
    } else if (v && !(mod->license = dray__strdup(v))) {
        mod->license_rc = DRAY_ENOMEM;
    }
    mod->license_origin = origin.p;
}

static int
host_license_key(dray_module *mod, const char **key, const char **origin)
{
    *key = NULL;
    if (origin)
        *origin = mod->license_origin;
    if (mod->license_rc == DRAY_EIO)
        snprintf(mod->errstr, sizeof mod->errstr, "%s", mod->license_err);
    else if (mod->license_rc == DRAY_ENOTFOUND)
        snprintf(mod->errstr, sizeof mod->errstr,
                 "no license key configured (setting license or license_file, or "
                 "DRAY_LICENSE / DRAY_LICENSE_FILE)");
    if (mod->license_rc)
        return mod->license_rc;
    *key = mod->license;
    return 0;
}

/* ---- Redis ---------------------------------------------------------------- */

static int
no_conn(dray_ctx *ctx)
{
    (void)ctx;
    return DRAY_ESTATE;
}

static int
host_redis(dray_ctx *ctx, redisReply **out, int argc, const char **argv, const size_t *lens)
{
    if (out)
        *out = NULL;
    if (!ctx || !ctx->conn)
        return no_conn(ctx);
    if (argc < 1 || !argv)
        return DRAY_EINVAL;
    return dray__conn_cmd(ctx->conn, out, argc, argv, lens);
}

static int
host_redisf(dray_ctx *ctx, redisReply **out, const char *fmt, ...)
{
    if (out)
        *out = NULL;
    if (!ctx || !ctx->conn)
        return no_conn(ctx);
    dray__conn *c = ctx->conn;
    int rc = dray__conn_ensure(c);
    if (rc)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c->ctx, fmt, ap);
    va_end(ap);
    if (!r) {
        c->err =
            dray__err(c->errstr, sizeof c->errstr, DRAY_ECONN, "redis at %s: connection lost: %s",
                      c->cfg->where, c->ctx->errstr[0] ? c->ctx->errstr : "eof");
        dray__conn_drop(c);
        return DRAY_ECONN;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        c->err = rc = dray__err(c->errstr, sizeof c->errstr, DRAY_EREDIS, "redis at %s: %s",
                                c->cfg->where, r->str);
    }
    if (out)
        *out = r;
    else
        freeReplyObject(r);
    return rc;
}

static int
host_script(dray_module *mod, const char *lua, dray_script **out)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    *out = NULL;
    if (!lua || !*lua)
        return DRAY_EINVAL;
    struct dray_script *sc = dray__calloc(1, sizeof *sc);
    if (!sc || !(sc->text = dray__strdup(lua))) {
        dray__free(sc);
        return DRAY_ENOMEM;
    }
    sc->s.src = sc->text;
    pthread_mutex_lock(&lock);
    sc->next = mod->scripts;
    mod->scripts = sc;
    pthread_mutex_unlock(&lock);
    *out = sc;
    return 0;
}

static int
host_eval(dray_ctx *ctx, dray_script *script, redisReply **out, int nkeys, int argc,
          const char **argv, const size_t *lens)
{
    if (out)
        *out = NULL;
    if (!ctx || !ctx->conn)
        return no_conn(ctx);
    if (!script || nkeys < 0 || nkeys > argc || argc < 0)
        return DRAY_EINVAL;
    redisReply *r;
    int rc = dray__conn_eval(ctx->conn, &script->s, &r, nkeys, argc, argv, lens);
    if (out)
        *out = r;
    else if (r)
        freeReplyObject(r);
    return rc;
}

static const char *
host_redis_errstr(const dray_ctx *ctx)
{
    return ctx && ctx->conn ? ctx->conn->errstr : "";
}

static int
host_redis_time(dray_ctx *ctx, double *out)
{
    *out = 0;
    redisReply *r;
    const char *argv[1] = {"TIME"};
    int rc = host_redis(ctx, &r, 1, argv, NULL);
    if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                r->element[0]->type != REDIS_REPLY_STRING))
        rc = DRAY_EREDIS;
    if (!rc)
        *out = atof(r->element[0]->str) + atof(r->element[1]->str) / 1e6;
    if (r)
        freeReplyObject(r);
    return rc;
}

/* ---- enqueue -------------------------------------------------------------- */

static int
push_json(dray_ctx *ctx, json_t *job, double at, char *jid_out)
{
    if (!ctx || !ctx->conn)
        return no_conn(ctx);
    if (!json_is_object(job))
        return DRAY_EINVAL;
    json_t *copy = json_deep_copy(job);
    dray_job *j = copy ? dray__job_wrap(copy) : NULL;
    if (!j)
        return DRAY_ENOMEM;
    dray_push_opts po;
    memset(&po, 0, sizeof po);
    po.at = at;
    int rc = dray__client_push_conn(ctx->conn, ctx->max_payload, j, &po, ctx->conn->errstr,
                                    sizeof ctx->conn->errstr);
    if (!rc && jid_out)
        snprintf(jid_out, DRAY_JID_BYTES, "%s", dray_job_jid(j));
    dray_job_free(j);
    return rc;
}

static int
host_enqueue(dray_ctx *ctx, json_t *job, char *jid_out)
{
    return push_json(ctx, job, 0, jid_out);
}

static int
host_schedule(dray_ctx *ctx, json_t *job, double at, char *jid_out)
{
    if (!(at > 0))
        return DRAY_EINVAL;
    return push_json(ctx, job, at, jid_out);
}

/* ---- verdicts ------------------------------------------------------------- */

static int host_fail(dray_ctx *ctx, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);

static int
host_fail(dray_ctx *ctx, int code, const char *fmt, ...)
{
    ctx->fail_code = code < 0 ? code : DRAY_EINVAL;
    if (ctx->msg && ctx->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, ctx->msglen, fmt, ap);
        va_end(ap);
    }
    return DRAY_FAIL;
}

static int host_defer(dray_ctx *ctx, double seconds, const char *fmt, ...) DRAY_PRINTF(3, 4);

static int
host_defer(dray_ctx *ctx, double seconds, const char *fmt, ...)
{
    ctx->defer_s = seconds >= 0.001 ? seconds : 0.001;
    if (ctx->msg && ctx->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, ctx->msglen, fmt, ap);
        va_end(ap);
    }
    return DRAY_DEFER;
}

/* ---- the table ------------------------------------------------------------ */

static const char *
host_job_payload(const dray_job *job)
{
    return dray_job_payload(job);
}

static int
host_job_dump(const dray_job *job, char **out, size_t *len)
{
    return dray_job_dump(job, out, len);
}

static double
host_heartbeat_interval(dray_module *mod)
{
    return mod && mod->srv && mod->state == MOD_STAGING ? (double)mod->srv->opts.heartbeat_s : 0;
}

/* Host table json_dump: json_dumps with the core's bigint digits. */
static char *
host_json_dump(const json_t *v, size_t flags, size_t *len)
{
    return dray__json_dumpf(v, flags, len);
}

const dray_host dray__host = {
    .struct_size = sizeof(dray_host),
    .abi_major = DRAY_ABI_MAJOR,
    .abi_minor = DRAY_ABI_MINOR,
    .core_version = dray_version,
    .strerror = dray_strerror,
    .set_error = host_set_error,
    .set_status = host_set_status,
    .check_only = host_check_only,
    .log = host_log,
    .log_enabled = host_log_enabled,
    .alloc = dray__malloc,
    .calloc = dray__calloc,
    .realloc = dray__realloc,
    .strdup = dray__strdup,
    .free = dray__free,
    .hook = dray__mod_hook,
    .set_fetcher = dray__mod_set_fetcher,
    .script = host_script,
    .license_key = host_license_key,
    .config_str = host_config_str,
    .config_int = host_config_int,
    .config_double = host_config_double,
    .config_bool = host_config_bool,
    .config_each = host_config_each,
    .load_ctx = host_load_ctx,
    .ctx_open = host_ctx_open,
    .ctx_close = host_ctx_close,
    .ctx_thread = host_ctx_thread,
    .identity = host_identity,
    .ns = host_ns,
    .now = dray_now,
    .redis_time = host_redis_time,
    .redis = host_redis,
    .redisf = host_redisf,
    .eval = host_eval,
    .redis_errstr = host_redis_errstr,
    .enqueue = host_enqueue,
    .schedule = host_schedule,
    .fail = host_fail,
    .defer = host_defer,
    .job_class = dray_job_class,
    .job_jid = dray_job_jid,
    .job_queue = dray_job_queue,
    .job_args = dray_job_args,
    .job_retry_count = dray_job_retry_count,
    .job_get = dray_job_get,
    .job_set = dray_job_set,
    .job_payload = host_job_payload,
    .job_dump = host_job_dump,
    .heartbeat_interval = host_heartbeat_interval,
    .json_load = dray__json_loadf,
    .json_dump = host_json_dump,
};
