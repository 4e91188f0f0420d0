/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Redis connections: URL parsing, connect with AUTH/SELECT, reconnect
 * backoff, pipelining and the EVALSHA script cache. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/sds.h>

#include "internal.h"

#define DEFAULT_URL "redis://127.0.0.1:6379/0"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000 /* a returning Redis is noticed within ~2 s */

/* Decode %XX escapes of [s, s+n) into a new string; NULL on bad escape/OOM.
 * %00 is a bad escape: the C string would end there, cutting a password. */
static char *
pct_decode(const char *s, size_t n)
{
    char *out = dray__malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2]) || (s[i + 1] == '0' && s[i + 2] == '0')) {
                dray__free(out);
                return NULL;
            }
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[j++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Decimal digits s[0..n) (at most 10) in [lo, hi] into *out; -1 if not. */
static int
parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* True when [s, s+n) can be a host name or address: non-empty, printable,
 * no blanks, no brackets (they only delimit an IPv6 address in a URL). */
static bool
host_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f || s[i] == '[' || s[i] == ']')
            return false;
    return n > 0;
}

/* Parse "?db=N&password=P" query parameters of a unix URL. */
static int
parse_query(dray__redis_cfg *cfg, const char *q, const char *url, char *errbuf, size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (!eq)
            return dray__err(errbuf, errlen, DRAY_EURL,
                             "redis url '%s': query parameter without '='", url);
        size_t kl = (size_t)(eq - q);
        const char *v = eq + 1;
        size_t vl = n - kl - 1;
        long num;
        if (kl == 2 && !memcmp(q, "db", 2)) {
            if (parse_int(v, vl, 0, 1000000, &num))
                return dray__err(errbuf, errlen, DRAY_EURL,
                                 "redis url '%s': db must be a non-negative integer", url);
            cfg->db = (int)num;
        } else if (kl == 8 && !memcmp(q, "password", 8)) {
            dray__free(cfg->pass);
            if (!(cfg->pass = pct_decode(v, vl)))
                return dray__err(errbuf, errlen, DRAY_EURL,
                                 "redis url '%s': bad %%-escape in password", url);
        } else if (kl == 4 && !memcmp(q, "user", 4)) {
            dray__free(cfg->user);
            cfg->user = NULL; /* user= (empty): the default user, as in ":pass@" */
            if (vl && !(cfg->user = pct_decode(v, vl)))
                return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': bad %%-escape in user",
                                 url);
        } else {
            return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': unknown parameter '%.*s'",
                             url, (int)kl, q);
        }
        q += n + (amp ? 1 : 0);
    }
    return 0;
}

/* [[user]:password@] at the start of [p, end): user and password
 * %-decoded into cfg; *rest is just past the '@' (p when there is none).
 * DRAY_EURL for a bad %-escape. */
static int
parse_userinfo(dray__redis_cfg *cfg, const char *p, const char *end, const char **rest,
               char *errbuf, size_t errlen)
{
    *rest = p;
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (!at)
        return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon && colon > p && !(cfg->user = pct_decode(p, (size_t)(colon - p))))
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url: bad %%-escape in user");
    const char *pw = colon ? colon + 1 : p;
    if (!(cfg->pass = pct_decode(pw, (size_t)(at - pw))))
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url: bad %%-escape in password");
    *rest = at + 1;
    return 0;
}

/* unix:///path[?query]: an absolute socket path. DRAY_EURL/DRAY_ENOMEM. */
static int
parse_unix_url(dray__redis_cfg *cfg, const char *url, char *errbuf, size_t errlen)
{
    const char *p = url + 7;
    const char *q = strchr(p, '?');
    size_t pl = q ? (size_t)(q - p) : strlen(p);
    if (pl == 0 || p[0] != '/')
        return dray__err(errbuf, errlen, DRAY_EURL,
                         "redis url '%s': unix socket path must be absolute (unix:///path.sock)",
                         url);
    if (!(cfg->path = dray__strndup(p, pl)))
        return DRAY_ENOMEM;
    snprintf(cfg->where, sizeof cfg->where, "unix:%s", cfg->path);
    return q ? parse_query(cfg, q + 1, url, errbuf, errlen) : 0;
}

/* redis[s]-sentinel://[[user]:password@]host[:port][,host[:port]]...
 * /mastername[/db]: the password is the master's; sentinels use
 * redis_sentinel_password. */
static int
parse_sentinel_url(dray__redis_cfg *cfg, const char *url, char *errbuf, size_t errlen)
{
    cfg->sentinel = 1;
    cfg->tls = url[5] == 's';
    const char *p = url + (cfg->tls ? 18 : 17);
    const char *end = p + strcspn(p, "/");
    int rc = parse_userinfo(cfg, p, end, &p, errbuf, errlen);
    if (rc)
        return rc;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *he = comma ? comma : end;
        if (cfg->nsentinels == DRAY__MAX_SENTINELS)
            return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': more than %d sentinels",
                             url, DRAY__MAX_SENTINELS);
        const char *colon = memchr(p, ':', (size_t)(he - p));
        const char *hostend = colon ? colon : he;
        if (hostend == p)
            return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': a sentinel host is empty",
                             url);
        if (!host_ok(p, (size_t)(hostend - p)))
            return dray__err(errbuf, errlen, DRAY_EURL,
                             "redis url '%s': a sentinel host has a blank, control byte or bracket",
                             url);
        long port = 26379;
        if (colon && parse_int(colon + 1, (size_t)(he - colon - 1), 1, 65535, &port))
            return dray__err(errbuf, errlen, DRAY_EURL,
                             "redis url '%s': sentinel port must be 1-65535", url);
        int k = cfg->nsentinels;
        if (!(cfg->sentinel_host[k] = dray__strndup(p, (size_t)(hostend - p))))
            return DRAY_ENOMEM;
        cfg->sentinel_port[k] = (int)port;
        cfg->nsentinels++;
        p = comma ? comma + 1 : end;
    }
    if (cfg->nsentinels == 0)
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': no sentinel given", url);
    if (*end != '/' || end[1] == '\0' || end[1] == '/')
        return dray__err(errbuf, errlen, DRAY_EURL,
                         "redis url '%s': the master's name is missing (.../mastername[/db])", url);
    const char *name = end + 1;
    size_t nl = strcspn(name, "/");
    if (!(cfg->master_name = pct_decode(name, nl)))
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url: bad %%-escape in master name");
    if (name[nl] == '/') {
        long db;
        const char *d = name + nl + 1;
        if (parse_int(d, strlen(d), 0, 1000000, &db))
            return dray__err(errbuf, errlen, DRAY_EURL,
                             "redis url '%s': database must be a non-negative integer", url);
        cfg->db = (int)db;
    }
    snprintf(cfg->where, sizeof cfg->where, "sentinel master '%s'", cfg->master_name);
    return 0;
}

/* Parse url into cfg (zeroed first; dray__redis_cfg_close frees it).
 * DRAY_EURL or DRAY_ETLS with the reason in errbuf. */
int
dray__redis_url_parse(dray__redis_cfg *cfg, const char *url, char *errbuf, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ns = dray__strdup("");
    cfg->connect_timeout_ms = 2000;
    cfg->command_timeout_ms = 5000;
    if (!cfg->ns)
        return DRAY_ENOMEM;
    if (!url || !*url)
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url is empty");
    if (!strncmp(url, "unix://", 7))
        return parse_unix_url(cfg, url, errbuf, errlen);
    if (!strncmp(url, "redis-sentinel://", 17) || !strncmp(url, "rediss-sentinel://", 18))
        return parse_sentinel_url(cfg, url, errbuf, errlen);
    if (!strncmp(url, "rediss://", 9))
        cfg->tls = 1;
    else if (strncmp(url, "redis://", 8))
        return dray__err(errbuf, errlen, DRAY_EURL,
                         "redis url '%s': scheme must be redis://, rediss:// or unix://", url);
    const char *p = url + (cfg->tls ? 9 : 8);
    const char *end = p + strcspn(p, "/?");
    int rc = parse_userinfo(cfg, p, end, &p, errbuf, errlen);
    if (rc)
        return rc;
    const char *hs = p, *he;
    const char *portp = NULL;
    if (*p == '[') {
        he = memchr(p, ']', (size_t)(end - p));
        if (!he)
            return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': unclosed '[' in host",
                             url);
        hs = p + 1;
        if (he + 1 < end) {
            if (he[1] != ':')
                return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': junk after ']'", url);
            portp = he + 2;
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he)
            portp = he + 1;
        else
            he = end;
    }
    if (he == hs)
        return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': host is empty", url);
    if (!host_ok(hs, (size_t)(he - hs)))
        return dray__err(errbuf, errlen, DRAY_EURL,
                         "redis url '%s': host has a blank, control byte or bracket", url);
    if (!(cfg->host = dray__strndup(hs, (size_t)(he - hs))))
        return DRAY_ENOMEM;
    cfg->port = 6379;
    if (portp) {
        long port;
        if (parse_int(portp, (size_t)(end - portp), 1, 65535, &port))
            return dray__err(errbuf, errlen, DRAY_EURL, "redis url '%s': port must be 1-65535",
                             url);
        cfg->port = (int)port;
    }
    snprintf(cfg->where, sizeof cfg->where, "%s:%d", cfg->host, cfg->port);
    if (*end == '/') {
        const char *d = end + 1;
        size_t dl = strcspn(d, "?");
        long db;
        if (dl && parse_int(d, dl, 0, 1000000, &db))
            return dray__err(errbuf, errlen, DRAY_EURL,
                             "redis url '%s': database must be a non-negative integer", url);
        if (dl)
            cfg->db = (int)db;
        end = d + dl;
    }
    if (*end == '?')
        return parse_query(cfg, end + 1, url, errbuf, errlen);
    return 0;
}

/* An option, else its environment variable, else NULL; copied into *dst. */
static int
tls_setting(char **dst, const char *opt, const char *env)
{
    const char *v = opt && *opt ? opt : getenv(env);
    if (!v || !*v)
        return 0;
    return (*dst = dray__strdup(v)) ? 0 : DRAY_ENOMEM;
}

/* TLS settings from options and $DRAY_REDIS_TLS_*; the shared SSL_CTX. */
static int
tls_cfg_init(dray__redis_cfg *cfg, const dray_options *o, char *errbuf, size_t errlen)
{
    static const dray_options none;
    if (!o)
        o = &none;
    if (tls_setting(&cfg->tls_ca_file, o->redis_tls_ca_file, "DRAY_REDIS_TLS_CA_FILE") ||
        tls_setting(&cfg->tls_ca_dir, o->redis_tls_ca_dir, "DRAY_REDIS_TLS_CA_DIR") ||
        tls_setting(&cfg->tls_server_name, o->redis_tls_server_name,
                    "DRAY_REDIS_TLS_SERVER_NAME") ||
        tls_setting(&cfg->tls_cert, o->redis_tls_cert, "DRAY_REDIS_TLS_CERT") ||
        tls_setting(&cfg->tls_key, o->redis_tls_key, "DRAY_REDIS_TLS_KEY"))
        return DRAY_ENOMEM;
    if (tls_setting(&cfg->sentinel_pass, o->redis_sentinel_password,
                    "DRAY_REDIS_SENTINEL_PASSWORD"))
        return DRAY_ENOMEM;
    if (cfg->sentinel_pass && !cfg->sentinel)
        return dray__err(errbuf, errlen, DRAY_ECONFIG,
                         "redis at %s: a sentinel password is set but the url is not "
                         "redis-sentinel://",
                         cfg->where);
    cfg->tls_insecure = o->redis_tls_insecure_skip_verify > 0;
    const char *env = getenv("DRAY_REDIS_TLS_INSECURE_SKIP_VERIFY");
    if (!o->redis_tls_insecure_skip_verify && env && *env) {
        if (!strcmp(env, "1") || !strcmp(env, "yes") || !strcmp(env, "true"))
            cfg->tls_insecure = 1;
        else if (strcmp(env, "0") && strcmp(env, "no") && strcmp(env, "false"))
            return dray__err(
                errbuf, errlen, DRAY_ETLS,
                "DRAY_REDIS_TLS_INSECURE_SKIP_VERIFY='%s': want 1/0, yes/no, true/false", env);
    }
    if (!cfg->tls) {
        /* A TLS setting on a plaintext URL is a mistake, not a wish for plaintext. */
        if (cfg->tls_ca_file || cfg->tls_ca_dir || cfg->tls_server_name || cfg->tls_cert ||
            cfg->tls_key || cfg->tls_insecure)
            return dray__err(errbuf, errlen, DRAY_ETLS,
                             "redis at %s: TLS settings given but the url is not rediss:// "
                             "(refusing to connect in plaintext)",
                             cfg->where);
        return 0;
    }
    return dray__tls_ctx_init(cfg, errbuf, errlen);
}

/* cfg from options (URL, env fallbacks, namespace, timeouts, TLS
 * context). DRAY_EURL/DRAY_ETLS/DRAY_ECONFIG/DRAY_ENOMEM in errbuf. */
int
dray__redis_cfg_init(dray__redis_cfg *cfg, const dray_options *o, char *errbuf, size_t errlen)
{
    const char *url = o && o->redis_url ? o->redis_url : NULL;
    if (!url || !*url)
        url = getenv("DRAY_REDIS_URL");
    if (!url || !*url)
        url = getenv("REDIS_URL");
    if (!url || !*url)
        url = DEFAULT_URL;
    int rc = dray__redis_url_parse(cfg, url, errbuf, errlen);
    if (rc) {
        dray__redis_cfg_close(cfg);
        return rc;
    }
    if (o && o->ns && *o->ns) {
        size_t n = strlen(o->ns);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)o->ns[i] <= ' ') {
                dray__redis_cfg_close(cfg);
                return dray__err(errbuf, errlen, DRAY_ECONFIG,
                                 "namespace '%s' contains whitespace or control bytes", o->ns);
            }
        dray__free(cfg->ns);
        cfg->ns = dray__malloc(n + 2);
        if (!cfg->ns) {
            dray__redis_cfg_close(cfg);
            return DRAY_ENOMEM;
        }
        memcpy(cfg->ns, o->ns, n);
        cfg->ns[n] = ':';
        cfg->ns[n + 1] = '\0';
    }
    cfg->nslen = strlen(cfg->ns);
    if (o && o->connect_timeout_ms > 0)
        cfg->connect_timeout_ms = o->connect_timeout_ms;
    if (o && o->command_timeout_ms > 0)
        cfg->command_timeout_ms = o->command_timeout_ms;
    rc = tls_cfg_init(cfg, o, errbuf, errlen);
    if (rc)
        dray__redis_cfg_close(cfg);
    return rc;
}

/* Free what cfg owns (the password wiped first). Accepts NULL. */
void
dray__redis_cfg_close(dray__redis_cfg *cfg)
{
    if (!cfg)
        return;
    dray__free(cfg->host);
    dray__free(cfg->path);
    dray__free(cfg->user);
    if (cfg->pass) {
        memset(cfg->pass, 0, strlen(cfg->pass));
        dray__free(cfg->pass);
    }
    dray__free(cfg->ns);
    dray__free(cfg->tls_ca_file);
    dray__free(cfg->tls_ca_dir);
    dray__free(cfg->tls_server_name);
    dray__free(cfg->tls_cert);
    dray__free(cfg->tls_key);
    dray__tls_ctx_free(cfg);
    for (int i = 0; i < cfg->nsentinels; i++)
        dray__free(cfg->sentinel_host[i]);
    dray__free(cfg->master_name);
    if (cfg->sentinel_pass) {
        memset(cfg->sentinel_pass, 0, strlen(cfg->sentinel_pass));
        dray__free(cfg->sentinel_pass);
    }
    memset(cfg, 0, sizeof *cfg);
}

/* <ns><suffix>, a new string (dray__free); NULL on OOM. */
char *
dray__key(const dray__redis_cfg *cfg, const char *suffix)
{
    size_t sl = strlen(suffix);
    char *k = dray__malloc(cfg->nslen + sl + 1);
    if (k) {
        memcpy(k, cfg->ns, cfg->nslen);
        memcpy(k + cfg->nslen, suffix, sl + 1);
    }
    return k;
}

/* Append <ns><suffix> to b (b->oom on failure). */
void
dray__key_buf(dray__buf *b, const dray__redis_cfg *cfg, const char *suffix)
{
    dray__buf_add(b, cfg->ns, cfg->nslen);
    dray__buf_adds(b, suffix);
}

/* A write to a Redis that went away must be an error, not a process kill:
 * if the application left SIGPIPE at its default, ignore it (documented in
 * dray.h). An application's own handler is left alone. */
static void
ignore_sigpipe_once(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

/* An unconnected link on cfg (borrowed, must outlive c). Cannot fail. */
void
dray__conn_init(dray__conn *c, const dray__redis_cfg *cfg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ignore_sigpipe_once);
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->backoff_ms = BACKOFF_MIN_MS;
}

/* Close the socket (TLS state too); the next ensure reconnects. Cannot fail. */
void
dray__conn_drop(dray__conn *c)
{
    atomic_store(&c->client_id, 0);
    if (c->ssl)
        dray__tls_free(c);
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}

/* Drop the link for good. Cannot fail. */
void
dray__conn_close(dray__conn *c)
{
    dray__conn_drop(c);
}

/* ms milliseconds as a struct timeval. */
static struct timeval
ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static int set_err(dray__conn *c, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);

/* Record code and its text on c (the link's err and errstr); returns code. */
static int
set_err(dray__conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->err = dray__verr(c->errstr, sizeof c->errstr, code, fmt, ap);
    va_end(ap);
    return code;
}

/* One round trip on the link, plain or TLS: the reply, or NULL with the
 * cause in c->ctx->errstr (then the link must be dropped). */
static redisReply *
roundtrip_argv(dray__conn *c, int argc, const char **argv, const size_t *lens)
{
    if (!c->ssl)
        return redisCommandArgv(c->ctx, argc, argv, lens);
    void *r = NULL;
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK ||
        dray__tls_get_reply(c, &r) != REDIS_OK)
        return NULL;
    return r;
}

/* Send one formatted command and read its reply, over TLS or not; NULL
 * with the cause on c->ctx. */
static redisReply *
roundtrip_v(dray__conn *c, const char *fmt, va_list ap)
{
    if (!c->ssl)
        return redisvCommand(c->ctx, fmt, ap);
    void *r = NULL;
    if (redisvAppendCommand(c->ctx, fmt, ap) != REDIS_OK || dray__tls_get_reply(c, &r) != REDIS_OK)
        return NULL;
    return r;
}

/* Run a setup command (AUTH, SELECT) on a fresh context. */
static int
setup_cmd(dray__conn *c, int code, const char *what, int argc, const char **argv)
{
    redisReply *r = roundtrip_argv(c, argc, argv, NULL);
    if (!r) {
        /* A TLS server that wants a client certificate hangs up right after
         * the handshake; its alert may be lost to the reset. Say so. */
        set_err(c, DRAY_ECONN, "redis at %s: %s failed: %s%s", c->cfg->where, what, c->ctx->errstr,
                c->ssl && !c->cfg->tls_cert ? " (does the server require a TLS client certificate? "
                                              "set redis_tls_cert and redis_tls_key)"
                                            : "");
        dray__conn_drop(c);
        return DRAY_ECONN;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = set_err(c, code, "redis at %s: %s refused: %s", c->cfg->where, what, r->str);
        dray__conn_drop(c);
    }
    freeReplyObject(r);
    return rc;
}

/* Connect to c->cfg's host (or socket): TLS, AUTH, SELECT, CLIENT ID. */
static int
connect_direct(dray__conn *c)
{
    const dray__redis_cfg *cfg = c->cfg;
    struct timeval tv = ms_tv(cfg->connect_timeout_ms);
    double t0 = cfg->tls ? dray__mono() : 0;
    c->ctx = cfg->path ? redisConnectUnixWithTimeout(cfg->path, tv)
                       : redisConnectWithTimeout(cfg->host, cfg->port, tv);
    if (!c->ctx)
        return set_err(c, DRAY_ENOMEM, "redis at %s: out of memory", cfg->where);
    if (c->ctx->err) {
        set_err(c, DRAY_ECONN, "redis at %s: cannot connect: %s", cfg->where, c->ctx->errstr);
        dray__conn_drop(c);
        return DRAY_ECONN;
    }
    if (cfg->tls) {
        /* The handshake shares the connect timeout: a silent peer fails fast. */
        int left = cfg->connect_timeout_ms - (int)((dray__mono() - t0) * 1000);
        if (dray__tls_handshake(c, left)) {
            dray__conn_drop(c);
            return DRAY_ECONN;
        }
    }
    redisSetTimeout(c->ctx, ms_tv(cfg->command_timeout_ms + c->extra_timeout_ms));
    if (cfg->pass) {
        const char *argv[3] = {"AUTH", cfg->user ? cfg->user : cfg->pass, cfg->pass};
        int rc = setup_cmd(c, DRAY_EAUTH, "AUTH", cfg->user ? 3 : 2, argv);
        if (rc)
            return rc;
    }
    if (cfg->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", cfg->db);
        const char *argv[2] = {"SELECT", db};
        int rc = setup_cmd(c, DRAY_ECONN, "SELECT", 2, argv);
        if (rc)
            return rc;
    }
    if (c->ssl && !cfg->pass && !cfg->db) {
        /* A server that refuses our certificate says so after the handshake
         * (TLS 1.3): one PING makes that a connect error, not a lost command. */
        const char *argv[1] = {"PING"};
        int rc = setup_cmd(c, DRAY_ECONN, "PING", 1, argv);
        if (rc)
            return rc;
    }
    if (c->want_client_id) {
        const char *argv[2] = {"CLIENT", "ID"};
        redisReply *r = roundtrip_argv(c, 2, argv, NULL);
        atomic_store(&c->client_id, r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0);
        if (r)
            freeReplyObject(r);
        else
            atomic_store(&c->client_id, 0);
    }
    c->err = 0;
    c->errstr[0] = '\0';
    return 0;
}

/* Ask the sentinels, in URL order, where the master is: 0 with host and
 * port, else DRAY_ECONN with every sentinel's answer in why. */
static int
sentinel_lookup(const dray__redis_cfg *cfg, char *host, size_t hostlen, int *port, char *why,
                size_t whylen)
{
    size_t wl = 0;
    why[0] = '\0';
    for (int i = 0; i < cfg->nsentinels; i++) {
        dray__redis_cfg s = *cfg; /* borrows cfg's strings and SSL_CTX; never closed */
        s.sentinel = 0;
        s.host = cfg->sentinel_host[i];
        s.port = cfg->sentinel_port[i];
        s.path = NULL;
        s.user = NULL;
        s.pass = cfg->sentinel_pass;
        s.db = 0;
        snprintf(s.where, sizeof s.where, "sentinel %s:%d", s.host, s.port);
        dray__conn sc;
        dray__conn_init(&sc, &s);
        redisReply *r = NULL;
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", cfg->master_name};
        int rc = dray__conn_cmd(&sc, &r, 3, argv, NULL);
        if (!rc && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < hostlen) {
            long p = atol(r->element[1]->str);
            if (p > 0 && p < 65536) {
                memcpy(host, r->element[0]->str, r->element[0]->len + 1);
                *port = (int)p;
                freeReplyObject(r);
                dray__conn_close(&sc);
                return 0;
            }
        }
        /* Short: the message holds every sentinel's answer in 128 bytes. */
        const char *cause = "unknown master";
        if (rc) {
            const char *colon = strrchr(sc.errstr, ':');
            cause = colon ? colon + 1 : sc.errstr;
            while (*cause == ' ')
                cause++;
        }
        snprintf(why + wl, whylen - wl, "%s%.60s:%d: %.60s", wl ? "; " : "", s.host, s.port, cause);
        wl = strlen(why);
        if (r)
            freeReplyObject(r);
        dray__conn_close(&sc);
    }
    return DRAY_ECONN;
}

/* Connect to the master a sentinel names, and check that it is one (a
 * sentinel may still name a demoted master during a failover). */
static int
connect_via_sentinel(dray__conn *c)
{
    const dray__redis_cfg *cfg = c->cfg;
    char host[256], why[DRAY_ERRSTR_BYTES];
    int port = 0;
    if (sentinel_lookup(cfg, host, sizeof host, &port, why, sizeof why))
        return set_err(c, DRAY_ECONN, "redis: no master '%s' from the sentinels: %s",
                       cfg->master_name, why);
    dray__redis_cfg m = *cfg; /* borrowed as in sentinel_lookup, only during the connect */
    m.sentinel = 0;
    m.host = host;
    m.port = port;
    snprintf(m.where, sizeof m.where, "%.100s:%d (master '%.40s')", host, port, cfg->master_name);
    c->cfg = &m;
    int rc = connect_direct(c);
    if (!rc) {
        const char *argv[1] = {"ROLE"};
        redisReply *r = roundtrip_argv(c, 1, argv, NULL);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master")) {
            rc = set_err(c, DRAY_ECONN, "redis at %s: is %s, not a master (failover under way?)",
                         m.where,
                         r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                 r->element[0]->type == REDIS_REPLY_STRING
                             ? r->element[0]->str
                             : "unreachable");
            dray__conn_drop(c);
        }
        if (r)
            freeReplyObject(r);
    }
    c->cfg = cfg;
    return rc;
}

/* Connected (directly or through the sentinels), or DRAY_ECONN/DRAY_EAUTH
 * with the text on c. */
int
dray__conn_ensure(dray__conn *c)
{
    if (c->ctx)
        return 0;
    return c->cfg->sentinel ? connect_via_sentinel(c) : connect_direct(c);
}

/* An error reply that means "this server is no longer the master": the
 * command did not run; reconnecting (through the sentinels) is the cure. */
static bool
failover_error(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR &&
           (!strncmp(r->str, "READONLY", 8) || !strncmp(r->str, "UNBLOCKED", 9) ||
            !strncmp(r->str, "MASTERDOWN", 10));
}

/* Classify a reply: NULL → I/O failure, error reply → DRAY_EREDIS. A
 * failover refusal is freed (*rp = NULL) and drops the link: DRAY_ECONN. */
static int
check_reply(dray__conn *c, redisReply **rp)
{
    redisReply *r = *rp;
    if (!r) {
        set_err(c, DRAY_ECONN, "redis at %s: connection lost: %s", c->cfg->where,
                c->ctx && c->ctx->errstr[0] ? c->ctx->errstr : "eof");
        dray__conn_drop(c);
        return DRAY_ECONN;
    }
    if (failover_error(r)) {
        set_err(c, DRAY_ECONN, "redis at %s: %s (not the master now: reconnecting)", c->cfg->where,
                r->str);
        freeReplyObject(r);
        *rp = NULL;
        dray__conn_drop(c);
        return DRAY_ECONN;
    }
    if (r->type == REDIS_REPLY_ERROR)
        return set_err(c, DRAY_EREDIS, "redis at %s: %s", c->cfg->where, r->str);
    return 0;
}

/* Classify r (check_reply), then hand it to *out, or free it when out is
 * NULL. Returns check_reply's code. */
static int
reply_out(dray__conn *c, redisReply *r, redisReply **out)
{
    int rc = check_reply(c, &r);
    if (out)
        *out = r;
    else if (r)
        freeReplyObject(r);
    return rc;
}

/* One command by argv (lens may be NULL); see internal.h for which
 * errors keep the link. */
int
dray__conn_cmd(dray__conn *c, redisReply **out, int argc, const char **argv, const size_t *lens)
{
    if (out)
        *out = NULL;
    int rc = dray__conn_ensure(c);
    if (rc)
        return rc;
    return reply_out(c, roundtrip_argv(c, argc, argv, lens), out);
}

/* One command in hiredis's format; as dray__conn_cmd. */
int
dray__conn_cmdf(dray__conn *c, redisReply **out, const char *fmt, ...)
{
    if (out)
        *out = NULL;
    int rc = dray__conn_ensure(c);
    if (rc)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = roundtrip_v(c, fmt, ap);
    va_end(ap);
    return reply_out(c, r, out);
}

/* The next backoff starts at the minimum again. */
void
dray__conn_backoff_reset(dray__conn *c)
{
    c->backoff_ms = BACKOFF_MIN_MS;
}

/* Sleep the jittered backoff (DRAY_ESTATE as soon as *stop), double it,
 * try to connect; 0 once connected. */
int
dray__conn_backoff(dray__conn *c, atomic_int *stop)
{
    /* Full jitter in [d/2, d): many workers do not reconnect in lockstep. */
    unsigned d = c->backoff_ms / 2 + (unsigned)(dray__rand01() * (c->backoff_ms / 2));
    for (unsigned slept = 0; slept < d; slept += 50) {
        if (stop && atomic_load(stop))
            return DRAY_ESTATE;
        dray__sleep_ms(d - slept < 50 ? d - slept : 50);
    }
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    int rc = dray__conn_ensure(c);
    if (!rc)
        dray__conn_backoff_reset(c);
    return rc;
}

static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;

/* SCRIPT LOAD on c; stores the sha in s (under script_lock). */
static int
script_load(dray__conn *c, dray__script *s)
{
    redisReply *r;
    const char *argv[3] = {"SCRIPT", "LOAD", s->src};
    int rc = dray__conn_cmd(c, &r, 3, argv, NULL);
    if (!rc && (r->type != REDIS_REPLY_STRING || r->len != 40))
        rc = set_err(c, DRAY_EREDIS, "redis at %s: SCRIPT LOAD gave no sha", c->cfg->where);
    if (!rc) {
        pthread_mutex_lock(&script_lock);
        if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
            memcpy(s->sha, r->str, 40); /* the same text always hashes alike */
            s->sha[40] = '\0';
            atomic_store_explicit(&s->ready, 1, memory_order_release);
        }
        pthread_mutex_unlock(&script_lock);
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* EVALSHA of s (loaded on first use and after NOSCRIPT); *out (may be
 * NULL) the reply, as dray__conn_cmd. */
int
dray__conn_eval(dray__conn *c, dray__script *s, redisReply **out, int nkeys, int argc,
                const char **argv, const size_t *lens)
{
    *out = NULL;
    char sha[41] = "";
    if (atomic_load_explicit(&s->ready, memory_order_acquire))
        memcpy(sha, s->sha, sizeof sha); /* written once, before ready */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!sha[0]) {
            int rc = script_load(c, s);
            if (rc)
                return rc;
            memcpy(sha, s->sha, sizeof sha);
        }
        const char *stackv[32];
        size_t stackl[32];
        const char **v = stackv;
        size_t *l = stackl;
        if (argc + 3 > 32) {
            v = dray__malloc(sizeof *v * (size_t)(argc + 3));
            l = dray__malloc(sizeof *l * (size_t)(argc + 3));
            if (!v || !l) {
                dray__free(v == stackv ? NULL : v);
                dray__free(l == stackl ? NULL : l);
                return DRAY_ENOMEM;
            }
        }
        char nk[16];
        snprintf(nk, sizeof nk, "%d", nkeys);
        v[0] = "EVALSHA";
        l[0] = 7;
        v[1] = sha;
        l[1] = 40;
        v[2] = nk;
        l[2] = strlen(nk);
        for (int i = 0; i < argc; i++) {
            v[i + 3] = argv[i];
            l[i + 3] = lens ? lens[i] : strlen(argv[i]);
        }
        redisReply *r;
        int rc = dray__conn_cmd(c, &r, argc + 3, v, l);
        if (v != stackv) {
            dray__free(v);
            dray__free(l);
        }
        if (rc == DRAY_EREDIS && r && !strncmp(r->str, "NOSCRIPT", 8)) {
            freeReplyObject(r);
            sha[0] = '\0'; /* Redis restarted or SCRIPT FLUSH: load again */
            continue;
        }
        *out = r;
        return rc;
    }
    return set_err(c, DRAY_EREDIS, "redis at %s: script vanished twice", c->cfg->where);
}

/* ---- pipelines ---------------------------------------------------------------- */

/* True when the idle link is still usable: no EOF, no error and no unread
 * bytes (a reply nobody asked for means the link is out of step). */
static bool
link_idle_ok(dray__conn *c)
{
    if (!c->ctx || c->ctx->err || sdslen(c->ctx->obuf) != 0)
        return false;
    if (c->ctx->reader && c->ctx->reader->pos < c->ctx->reader->len)
        return false;
    if (c->ssl)
        return dray__tls_idle_ok(c);
    char b;
    ssize_t n = recv(c->ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* An empty pipeline on c; a link with unread bytes is dropped first. */
void
dray__pipe_init(dray__pipe *p, dray__conn *c)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    if (c->ctx && !link_idle_ok(c))
        dray__conn_drop(c);
}

/* Room for one more command, then run `append` and record where it ends. */
static int
pipe_slot(dray__pipe *p)
{
    if (p->err)
        return p->err;
    int rc = dray__conn_ensure(p->c);
    if (rc)
        return p->err = rc;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        dray__pipe_cmd *v = dray__realloc(p->cmd, cap * sizeof *v);
        if (!v) {
            set_err(p->c, DRAY_ENOMEM, "redis at %s: out of memory building a pipeline",
                    p->c->cfg->where);
            dray__conn_drop(p->c); /* part of the pipeline may be buffered */
            return p->err = DRAY_ENOMEM;
        }
        p->cmd = v;
        p->cap = cap;
    }
    return 0;
}

/* Record the command just appended (ok: it was); on failure the link is
 * dropped and the pipe's sticky error set. */
static int
pipe_added(dray__pipe *p, int ok, int kind)
{
    if (!ok) {
        set_err(p->c, DRAY_ENOMEM, "redis at %s: cannot buffer command", p->c->cfg->where);
        dray__conn_drop(p->c);
        return p->err = DRAY_ENOMEM;
    }
    dray__pipe_cmd *m = &p->cmd[p->n++];
    m->kind = kind == DRAY__PIPE_PLAIN && p->intx ? DRAY__PIPE_QUEUED : kind;
    m->st = DRAY_ECONN;
    m->end = sdslen(p->c->ctx->obuf);
    m->r = NULL;
    return 0;
}

/* Append one command by argv; the pipe's sticky error, if any. */
int
dray__pipe_add(dray__pipe *p, int argc, const char **argv, const size_t *lens)
{
    int rc = pipe_slot(p);
    if (rc)
        return rc;
    return pipe_added(p, redisAppendCommandArgv(p->c->ctx, argc, argv, lens) == REDIS_OK,
                      DRAY__PIPE_PLAIN);
}

/* Append one command in hiredis's format; as dray__pipe_add. */
int
dray__pipe_addf(dray__pipe *p, const char *fmt, ...)
{
    int rc = pipe_slot(p);
    if (rc)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    int r = redisvAppendCommand(p->c->ctx, fmt, ap);
    va_end(ap);
    return pipe_added(p, r == REDIS_OK, DRAY__PIPE_PLAIN);
}

/* Append MULTI: the commands until commit run as one block. */
int
dray__pipe_begin(dray__pipe *p)
{
    int rc = pipe_slot(p);
    if (rc)
        return rc;
    rc = pipe_added(p, redisAppendCommand(p->c->ctx, "MULTI") == REDIS_OK, DRAY__PIPE_MULTI);
    if (!rc)
        p->intx = 1;
    return rc;
}

/* Append EXEC, closing the block. */
int
dray__pipe_commit(dray__pipe *p)
{
    int rc = pipe_slot(p);
    if (rc)
        return rc;
    p->intx = 0;
    return pipe_added(p, redisAppendCommand(p->c->ctx, "EXEC") == REDIS_OK, DRAY__PIPE_EXEC);
}

/* Check one reply against what its command must answer. 0, DRAY_EREDIS (a
 * refusal, link in step) or DRAY_ECONN (the link is out of step). */
static int
pipe_check(dray__pipe *p, const dray__pipe_cmd *m)
{
    const redisReply *r = m->r;
    const char *where = p->c->cfg->where;
    switch (m->kind) {
    case DRAY__PIPE_MULTI:
        if (r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK"))
            return 0;
        return set_err(p->c, DRAY_ECONN, "redis at %s: MULTI answered '%s': link out of step",
                       where, r->type == REDIS_REPLY_ERROR ? r->str : "?");
    case DRAY__PIPE_QUEUED:
        if (r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "QUEUED"))
            return 0;
        if (r->type == REDIS_REPLY_ERROR)
            return set_err(p->c, DRAY_EREDIS, "redis at %s: %s", where, r->str);
        return set_err(p->c, DRAY_ECONN,
                       "redis at %s: a command in MULTI was not queued: link out of step", where);
    case DRAY__PIPE_EXEC:
        if (r->type == REDIS_REPLY_ERROR)
            return set_err(p->c, DRAY_EREDIS, "redis at %s: %s", where, r->str);
        if (r->type == REDIS_REPLY_NIL)
            return set_err(p->c, DRAY_EREDIS, "redis at %s: transaction aborted", where);
        if (r->type != REDIS_REPLY_ARRAY)
            return set_err(p->c, DRAY_ECONN, "redis at %s: EXEC gave no array: link out of step",
                           where);
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_ERROR)
                return set_err(p->c, DRAY_EREDIS, "redis at %s: in transaction: %s", where,
                               r->element[i]->str);
        return 0;
    default:
        if (r->type == REDIS_REPLY_ERROR)
            return set_err(p->c, DRAY_EREDIS, "redis at %s: %s", where, r->str);
        return 0;
    }
}

/* Send everything, read every reply, check each (contract in internal.h). */
int
dray__pipe_run(dray__pipe *p)
{
    dray__conn *c = p->c;
    if (p->err || p->intx) {
        if (!p->err)
            set_err(c, DRAY_EINVAL, "pipeline: MULTI without EXEC");
        dray__conn_drop(c); /* whatever was buffered must never be sent */
        return p->err ? p->err : DRAY_EINVAL;
    }
    if (p->n == 0)
        return 0;
    /* Send all first: then a failure tells which commands were wholly sent. */
    size_t total = p->cmd[p->n - 1].end;
    int done = 0;
    while (!done) {
        if ((c->ssl ? dray__tls_flush(c, &done) : redisBufferWrite(c->ctx, &done)) != REDIS_OK) {
            size_t sent = total - sdslen(c->ctx->obuf);
            int any = 0;
            for (size_t i = 0; i < p->n; i++)
                if (p->cmd[i].end <= sent) {
                    p->cmd[i].st = DRAY_EUNSURE;
                    any = 1;
                }
            set_err(c, DRAY_ECONN, "redis at %s: connection lost while sending: %s", c->cfg->where,
                    c->ctx->errstr[0] ? c->ctx->errstr : "eof");
            dray__conn_drop(c);
            return any ? DRAY_EUNSURE : DRAY_ECONN;
        }
    }
    for (size_t i = 0; i < p->n; i++)
        p->cmd[i].st = DRAY_EUNSURE;
    int first = 0, failover = 0;
    char firsterr[DRAY_ERRSTR_BYTES] = "";
    for (size_t i = 0; i < p->n; i++) {
        void *r = NULL;
        if ((c->ssl ? dray__tls_get_reply(c, &r) : redisGetReply(c->ctx, &r)) != REDIS_OK || !r) {
            set_err(c, DRAY_EUNSURE, "redis at %s: connection lost after sending: %s",
                    c->cfg->where, c->ctx->errstr[0] ? c->ctx->errstr : "eof");
            dray__conn_drop(c);
            return DRAY_EUNSURE;
        }
        p->cmd[i].r = r;
        if (failover_error(r) || (failover && p->cmd[i].kind == DRAY__PIPE_EXEC)) {
            /* Refused by a demoted master: not run (EXEC aborts with it). */
            if (!failover)
                set_err(c, DRAY_ECONN, "redis at %s: %s (not the master now: reconnecting)",
                        c->cfg->where, ((redisReply *)r)->str);
            p->cmd[i].st = DRAY_ECONN;
            failover = 1;
            continue;
        }
        int e = pipe_check(p, &p->cmd[i]);
        if (e == DRAY_ECONN) {
            dray__conn_drop(c);
            p->cmd[i].st = DRAY_EUNSURE;
            return DRAY_EUNSURE;
        }
        p->cmd[i].st = e;
        if (e && !first) {
            first = e;
            memcpy(firsterr, c->errstr, sizeof firsterr);
        }
    }
    if (failover) {
        /* A role change mid-pipeline could leave earlier commands run: then
         * the outcome is unsure; else nothing was written. */
        int ran = 0;
        for (size_t i = 0; i < p->n; i++)
            ran |= p->cmd[i].st == 0 && p->cmd[i].kind != DRAY__PIPE_MULTI;
        int code = ran ? DRAY_EUNSURE : DRAY_ECONN;
        c->err = code;
        dray__conn_drop(c);
        return code;
    }
    if (first)
        memcpy(c->errstr, firsterr, sizeof firsterr);
    c->err = first;
    return first;
}

/* The reply of command i (borrowed from p), or NULL. */
redisReply *
dray__pipe_reply(const dray__pipe *p, size_t i)
{
    return i < p->n ? p->cmd[i].r : NULL;
}

/* Free the replies and commands; p is empty again. Cannot fail. */
void
dray__pipe_close(dray__pipe *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->cmd[i].r)
            freeReplyObject(p->cmd[i].r);
    dray__free(p->cmd);
    memset(p, 0, sizeof *p);
}

/* Never send what p buffered (the link is dropped if anything was),
 * then close. Cannot fail. */
void
dray__pipe_discard(dray__pipe *p)
{
    if (p->n || p->err)
        dray__conn_drop(p->c);
    dray__pipe_close(p);
}
