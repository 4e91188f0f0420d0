/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Configuration: redis.conf-style files, DRAY_* environment variables and
 * values set by a program, layered file < environment < flags. Known keys
 * are validated as they arrive, so an error names the line that caused it;
 * section keys ("pro.webhook_url") are kept verbatim for modules. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Config errors carry a file path, a line, a key and a reason: more than the
 * 128 bytes of a connection error. */
#define CONFIG_ERR_BYTES 512
#define KEY_MAX 128 /* longest key, section keys included */

enum kind {
    K_STR,    /* any string, empty allowed */
    K_PATH,   /* non-empty string */
    K_URL,    /* a redis URL the core can parse */
    K_NS,     /* namespace: no whitespace or control bytes */
    K_INT,    /* integer in [lo, hi] */
    K_DOUBLE, /* number in [lo, hi] */
    K_BOOL,   /* yes/no/true/false/1/0 */
    K_LEVEL,  /* debug/info/warn/error/off */
    K_QUEUE,  /* name[,weight] */
    K_LABEL,  /* non-empty, no blanks or commas (labels travel comma-joined) */
    K_TIMES   /* seconds (6.x/7.x floats) or ms (8.x integers) */
};

enum repeat {
    R_ONE,  /* one value: add replaces */
    R_LIST, /* ordered list: add appends */
    R_SET   /* list without duplicates: add appends unless present */
};

typedef struct key_def {
    const char *name;
    enum kind kind;
    enum repeat repeat;
    double lo, hi;
} key_def;

static const key_def key_defs[] = {
    {"redis_url", K_URL, R_ONE, 0, 0},
    {"namespace", K_NS, R_ONE, 0, 0},
    {"concurrency", K_INT, R_ONE, 1, 1000},
    {"fetch_batch", K_INT, R_ONE, 1, 1000},
    {"queue", K_QUEUE, R_LIST, 0, 0},
    {"timeout", K_INT, R_ONE, 0, 86400},
    {"max_retries", K_INT, R_ONE, 0, 1000000},
    {"dead_max_jobs", K_INT, R_ONE, 1, 1000000000},
    {"dead_timeout", K_INT, R_ONE, 1, 100.0 * 365 * 86400},
    {"poll_interval", K_DOUBLE, R_ONE, 0, 3600},
    {"heartbeat", K_INT, R_ONE, 1, 59}, /* the process hash lives 60 s */
    {"tag", K_STR, R_ONE, 0, 0},
    {"label", K_LABEL, R_LIST, 0, 0},
    {"log_level", K_LEVEL, R_ONE, 0, 0},
    {"log_jobs", K_BOOL, R_ONE, 0, 0},
    {"timestamps", K_TIMES, R_ONE, 0, 0},
    {"metrics", K_BOOL, R_ONE, 0, 0},
    {"max_payload", K_INT, R_ONE, 1024, 512.0 * 1024 * 1024}, /* Redis's string limit */
    {"require", K_PATH, R_SET, 0, 0},
    {"module", K_PATH, R_SET, 0, 0},
    {"license", K_STR, R_ONE, 0, 0},
    {"license_file", K_PATH, R_ONE, 0, 0},
    {"redis_tls_ca_file", K_PATH, R_ONE, 0, 0},
    {"redis_tls_ca_dir", K_PATH, R_ONE, 0, 0},
    {"redis_tls_server_name", K_PATH, R_ONE, 0, 0}, /* K_PATH: any non-empty string */
    {"redis_tls_cert", K_PATH, R_ONE, 0, 0},
    {"redis_tls_key", K_PATH, R_ONE, 0, 0},
    {"redis_tls_insecure_skip_verify", K_BOOL, R_ONE, 0, 0},
    {"redis_sentinel_password", K_STR, R_ONE, 0, 0},
    {"processes", K_INT, R_ONE, 0, 1024}, /* dray run: 0 runs in-process */
    {"isolate", K_BOOL, R_ONE, 0, 0},
    {"crash_limit", K_INT, R_ONE, 1, 1000},
    {"metrics_listen", K_STR, R_ONE, 0, 0}, /* dray run: checked there */
    {"log_format", K_STR, R_ONE, 0, 0},     /* text or json, checked by dray run */
    {"statsd", K_STR, R_ONE, 0, 0},
    {"statsd_format", K_STR, R_ONE, 0, 0}, /* dogstatsd or statsd, checked by dray run */
    {"statsd_prefix", K_STR, R_ONE, 0, 0},
};
#define NKEYS (sizeof key_defs / sizeof *key_defs)

typedef struct entry {
    char *key;
    char *value;
} entry;

struct dray_config {
    entry *e;
    size_t n, cap;
    char *queues_joined; /* dray_options.queues, rebuilt by to_options */
    char *labels_joined; /* dray_options.labels */
    char errstr[CONFIG_ERR_BYTES];
};

/* Put `prefix` in front of the current error text. */
static void
err_prefix(dray_config *c, const char *prefix)
{
    size_t pl = strlen(prefix), el = strlen(c->errstr), cap = sizeof c->errstr - 1;
    if (pl > cap)
        pl = cap;
    if (pl + el > cap)
        el = cap - pl;
    memmove(c->errstr + pl, c->errstr, el);
    memcpy(c->errstr, prefix, pl);
    c->errstr[pl + el] = '\0';
}

/* An empty configuration; *out is the caller's (dray_config_free). */
int
dray_config_new(dray_config **out)
{
    *out = dray__calloc(1, sizeof **out);
    return *out ? 0 : DRAY_ENOMEM;
}

/* Free cfg and every string it owns. Accepts NULL. */
void
dray_config_free(dray_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        dray__free(cfg->e[i].key);
        dray__free(cfg->e[i].value);
    }
    dray__free(cfg->e);
    dray__free(cfg->queues_joined);
    dray__free(cfg->labels_joined);
    dray__free(cfg);
}

/* The last error text (borrowed; never NULL). */
const char *
dray_config_errstr(const dray_config *cfg)
{
    return cfg->errstr;
}

/* The definition of a known (lower-case) key, or NULL. */
static const key_def *
key_find(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(key_defs[i].name, name))
            return &key_defs[i];
    return NULL;
}

/* Lower-case copy of key into buf; DRAY_ECONFIG unless it is a known key or
 * a section key "a.b" of [a-z0-9_-] parts. *def is NULL for section keys. */
static int
key_norm(dray_config *c, const char *key, char buf[KEY_MAX + 1], const key_def **def)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0)
        return DRAY__SET_ERR(c, DRAY_ECONFIG, "empty key");
    if (n > KEY_MAX)
        return DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%.40s...' is longer than %d bytes", key,
                             KEY_MAX);
    int dots = 0;
    for (size_t i = 0; i <= n; i++) {
        char ch = (char)tolower((unsigned char)key[i]);
        buf[i] = ch;
        if (i == n)
            break;
        if (ch == '.') {
            if (i == 0 || i == n - 1 || key[i - 1] == '.')
                return DRAY__SET_ERR(c, DRAY_ECONFIG, "invalid key '%s'", key);
            dots++;
        } else if (!(isalnum((unsigned char)ch) || ch == '_' || ch == '-')) {
            return DRAY__SET_ERR(c, DRAY_ECONFIG, "invalid key '%s'", key);
        }
    }
    *def = key_find(buf);
    if (!*def && !dots)
        return DRAY__SET_ERR(c, DRAY_ECONFIG, "unknown key '%s'", key);
    return 0;
}

/* A whole finite number (no leading space, nothing after) into *out; -1 if not. */
static int
parse_double(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* A whole base-10 integer that fits long long into *out; -1 if not. */
static int
parse_integer(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

/* yes/true/1/on or no/false/0/off, any case, into *out; -1 for anything else. */
static int
parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"yes", "true", "1", "on"};
    static const char *const no[] = {"no", "false", "0", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* A log level name (debug, info, warn[ing], error, off) into *out; -1 if not. */
static int
parse_level(const char *s, dray_log_level *out)
{
    static const struct {
        const char *name;
        dray_log_level level;
    } levels[] = {{"debug", DRAY_LOG_DEBUG},  {"info", DRAY_LOG_INFO},   {"warn", DRAY_LOG_WARN},
                  {"warning", DRAY_LOG_WARN}, {"error", DRAY_LOG_ERROR}, {"off", DRAY_LOG_OFF}};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
        if (!strcasecmp(s, levels[i].name)) {
            *out = levels[i].level;
            return 0;
        }
    return -1;
}

/* True when s has whitespace or control bytes. */
static bool
has_blank(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* Check value against def; the message goes to c->errstr. */
static int
validate(dray_config *c, const key_def *d, const char *v)
{
    long long i;
    double x;
    int b;
    dray_log_level l;
    char why[256];
    switch (d->kind) {
    case K_STR:
        return 0;
    case K_PATH:
        return *v ? 0 : DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': value is empty", d->name);
    case K_URL: {
        dray__redis_cfg rc;
        int e = dray__redis_url_parse(&rc, v, why, sizeof why);
        dray__redis_cfg_close(&rc);
        if (e == DRAY_ENOMEM)
            return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
        return e ? DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': %s", d->name, why) : 0;
    }
    case K_LABEL:
        if (!*v)
            return DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': value is empty", d->name);
        if (strchr(v, ','))
            return DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': '%s' contains a comma", d->name, v);
        if (has_blank(v))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': '%s' contains whitespace or control bytes", d->name, v);
        return 0;
    case K_NS:
        if (has_blank(v))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': '%s' contains whitespace or control bytes", d->name, v);
        return 0;
    case K_INT:
        if (parse_integer(v, &i) || (double)i < d->lo || (double)i > d->hi)
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': must be an integer %.0f-%.0f, not '%s'", d->name, d->lo,
                                 d->hi, v);
        return 0;
    case K_DOUBLE:
        if (parse_double(v, &x) || x < d->lo || x > d->hi)
            return DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': must be a number %g-%g, not '%s'",
                                 d->name, d->lo, d->hi, v);
        return 0;
    case K_BOOL:
        if (parse_bool(v, &b))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': must be yes, no, true, false, 1 or 0, not '%s'",
                                 d->name, v);
        return 0;
    case K_TIMES:
        if (strcmp(v, "seconds") && strcmp(v, "ms"))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': must be seconds (Sidekiq 6/7 floats) or ms (Sidekiq 8 "
                                 "integers), not '%s'",
                                 d->name, v);
        return 0;
    case K_LEVEL:
        if (parse_level(v, &l))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': must be debug, info, warn, error or off, not '%s'",
                                 d->name, v);
        return 0;
    case K_QUEUE: {
        const char *comma = strchr(v, ',');
        size_t nl = comma ? (size_t)(comma - v) : strlen(v);
        char *name = dray__strndup(v, nl);
        if (!name)
            return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
        int e = dray__queue_check(name, why, sizeof why);
        dray__free(name);
        if (e)
            return DRAY__SET_ERR(c, DRAY_ECONFIG, "key '%s': %s", d->name, why);
        if (comma && (parse_integer(comma + 1, &i) || i < 0 || i > 1000))
            return DRAY__SET_ERR(c, DRAY_ECONFIG,
                                 "key '%s': weight must be an integer 0-1000, not '%s'", d->name,
                                 comma + 1);
        return 0;
    }
    }
    return 0;
}

/* Drop every entry of key but the last one (just appended). */
static void
remove_older(dray_config *c, const char *key)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (i + 1 < c->n && !strcmp(c->e[i].key, key)) {
            dray__free(c->e[i].key);
            dray__free(c->e[i].value);
        } else {
            c->e[k++] = c->e[i];
        }
    }
    c->n = k;
}

/* Add a copy of key and value at the end; DRAY_ENOMEM with c unchanged. */
static int
append(dray_config *c, const char *key, const char *value)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        entry *p = dray__realloc(c->e, cap * sizeof *p);
        if (!p)
            return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
        c->e = p;
        c->cap = cap;
    }
    char *k = dray__strdup(key), *v = dray__strdup(value);
    if (!k || !v) {
        dray__free(k);
        dray__free(v);
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    }
    c->e[c->n].key = k;
    c->e[c->n].value = v;
    c->n++;
    return 0;
}

/* Validate and store; replace: drop the earlier values of the key. On
 * failure cfg is unchanged. */
static int
put(dray_config *c, const char *key, const char *value, bool replace)
{
    char norm[KEY_MAX + 1];
    const key_def *d = NULL;
    if (!value)
        return DRAY__SET_ERR(c, DRAY_EINVAL, "key '%s': value is NULL", key ? key : "");
    int rc = key_norm(c, key, norm, &d);
    if (rc)
        return rc;
    if (d && (rc = validate(c, d, value)))
        return rc;
    if (!replace && d && d->repeat == R_SET)
        for (size_t i = 0; i < c->n; i++)
            if (!strcmp(c->e[i].key, norm) && !strcmp(c->e[i].value, value))
                return 0;
    if ((rc = append(c, norm, value)))
        return rc;
    if (replace || (d && d->repeat == R_ONE))
        remove_older(c, norm);
    return 0;
}

/* Replace every value of key with value (validated); text on cfg. */
int
dray_config_set(dray_config *cfg, const char *key, const char *value)
{
    cfg->errstr[0] = '\0';
    return put(cfg, key, value, true);
}

/* Add a value: appended for repeatable and section keys, else replacing
 * (as dray_config_set); text on cfg. */
int
dray_config_add(dray_config *cfg, const char *key, const char *value)
{
    cfg->errstr[0] = '\0';
    return put(cfg, key, value, false);
}

/* The last value of key (borrowed until cfg changes), or NULL. */
const char *
dray_config_get(const dray_config *cfg, const char *key)
{
    for (size_t i = cfg->n; i-- > 0;)
        if (!strcasecmp(cfg->e[i].key, key))
            return cfg->e[i].value;
    return NULL;
}

/* How many values key has (case-insensitive). */
size_t
dray_config_count(const dray_config *cfg, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n; i++)
        if (!strcasecmp(cfg->e[i].key, key))
            n++;
    return n;
}

/* fn on every entry of key (NULL: all; "sec.": the section), in
 * order; stops at and returns the first non-zero from fn. */
int
dray_config_get_all(const dray_config *cfg, const char *key, dray_config_fn fn, void *userdata)
{
    size_t kl = key ? strlen(key) : 0;
    bool section = kl && key[kl - 1] == '.';
    for (size_t i = 0; i < cfg->n; i++) {
        const char *k = cfg->e[i].key;
        if (key && (section ? strncasecmp(k, key, kl) : strcasecmp(k, key)))
            continue;
        int rc = fn(k, cfg->e[i].value, userdata);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- files ----------------------------------------------------------------- */

/* Parse the value at p (after the key and its blanks) into out.
 * Returns NULL on success, else the reason. */
static const char *
parse_value(const char *p, dray__buf *out)
{
    if (*p == '"' || *p == '\'') {
        char q = *p++;
        for (;; p++) {
            if (!*p)
                return "unterminated quote";
            if (*p == q)
                break;
            if (q == '"' && *p == '\\' && p[1]) {
                char ch = *++p;
                switch (ch) {
                case 'n':
                    ch = '\n';
                    break;
                case 't':
                    ch = '\t';
                    break;
                case 'r':
                    ch = '\r';
                    break;
                case '"':
                case '\\':
                    break;
                default:
                    dray__buf_add(out, "\\", 1); /* unknown escape: kept as written */
                }
                dray__buf_add(out, &ch, 1);
            } else {
                dray__buf_add(out, p, 1);
            }
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != '#')
            return "text after the closing quote";
        dray__buf_add(out, "", 0);
        return NULL;
    }
    /* Unquoted: the rest of the line, up to a '#' that follows a blank. */
    const char *end = p;
    for (const char *s = p; *s; s++) {
        if (*s == '#' && s > p && (s[-1] == ' ' || s[-1] == '\t'))
            break;
        end = s + 1;
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    dray__buf_add(out, p, (size_t)(end - p));
    return NULL;
}

/* Read `key value` lines of path into cfg; the first bad line stops the
 * load with "path:line: ..." on cfg (entries before it stay). */
int
dray_config_load_file(dray_config *cfg, const char *path)
{
    cfg->errstr[0] = '\0';
    FILE *f = fopen(path, "r");
    char sys[DRAY__STRERROR_BYTES];
    if (!f)
        return DRAY__SET_ERR(cfg, DRAY_EIO, "%s: cannot open: %s", path,
                             dray__strerror(errno, sys, sizeof sys));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    dray__buf val;
    dray__buf_init(&val);
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            rc = DRAY__SET_ERR(cfg, DRAY_ECONFIG, "%s:%d: line contains a NUL byte", path, lineno);
            break;
        }
        char *p = line;
        if (lineno == 1 && !strncmp(p, "\xEF\xBB\xBF", 3))
            p += 3; /* UTF-8 byte order mark */
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        char *k = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t klen = (size_t)(p - k);
        if (klen > KEY_MAX) {
            rc = DRAY__SET_ERR(cfg, DRAY_ECONFIG, "%s:%d: key '%.40s...' is longer than %d bytes",
                               path, lineno, k, KEY_MAX);
            break;
        }
        char key[KEY_MAX + 1];
        memcpy(key, k, klen);
        key[klen] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#') {
            rc =
                DRAY__SET_ERR(cfg, DRAY_ECONFIG, "%s:%d: key '%s' has no value", path, lineno, key);
            break;
        }
        dray__buf_reset(&val);
        const char *why = parse_value(p, &val);
        if (why) {
            rc = DRAY__SET_ERR(cfg, DRAY_ECONFIG, "%s:%d: key '%s': %s", path, lineno, key, why);
            break;
        }
        if (val.oom) {
            rc = DRAY__SET_ERR(cfg, DRAY_ENOMEM, "out of memory");
            break;
        }
        if ((rc = dray_config_add(cfg, key, val.p ? val.p : ""))) {
            char where[CONFIG_ERR_BYTES];
            snprintf(where, sizeof where, "%s:%d: ", path, lineno);
            err_prefix(cfg, where);
        }
    }
    if (!rc && ferror(f))
        rc = DRAY__SET_ERR(cfg, DRAY_EIO, "%s: read error after line %d", path, lineno);
    dray__buf_close(&val);
    free(line);
    fclose(f);
    return rc;
}

/* ---- environment ----------------------------------------------------------- */

/* Apply a list variable: tokens split on any of seps; replace or add. */
static int
env_list(dray_config *c, const char *var, const char *key, const char *seps, bool replace)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return 0;
    char *copy = dray__strdup(v);
    if (!copy)
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    int rc = 0;
    bool first = true;
    char *save = NULL;
    for (char *t = strtok_r(copy, seps, &save); t && !rc; t = strtok_r(NULL, seps, &save)) {
        rc = first && replace ? dray_config_set(c, key, t) : dray_config_add(c, key, t);
        first = false;
    }
    dray__free(copy);
    if (rc) {
        char where[64];
        snprintf(where, sizeof where, "environment %s: ", var);
        err_prefix(c, where);
    }
    return rc;
}

/* Apply the DRAY_<KEY> variables of the single-valued keys; the first
 * bad value stops with its text on cfg. */
int
dray_config_load_env(dray_config *cfg)
{
    cfg->errstr[0] = '\0';
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *d = &key_defs[i];
        if (d->repeat != R_ONE)
            continue;
        char var[64] = "DRAY_";
        size_t n = strlen(var);
        for (const char *s = d->name; *s && n < sizeof var - 1; s++)
            var[n++] = (char)toupper((unsigned char)*s);
        var[n] = '\0';
        const char *v = getenv(var);
        if (!v || !*v)
            continue;
        int rc = dray_config_set(cfg, d->name, v);
        if (rc) {
            char where[80];
            snprintf(where, sizeof where, "environment %s: ", var);
            err_prefix(cfg, where);
            return rc;
        }
    }
    int rc;
    if ((rc = env_list(cfg, "DRAY_QUEUES", "queue", " \t\n", true)) ||
        (rc = env_list(cfg, "DRAY_LABELS", "label", " \t\n,", true)) ||
        (rc = env_list(cfg, "DRAY_REQUIRES", "require", ":", false)) ||
        (rc = env_list(cfg, "DRAY_MODULES", "module", ":", false)))
        return rc;
    return 0;
}

/* ---- options ----------------------------------------------------------------- */

/* Join every value of key with sep into a new string (NULL when none). */
static int
join_values(dray_config *c, const char *key, const char *sep, char **out)
{
    dray__free(*out);
    *out = NULL;
    dray__buf b;
    dray__buf_init(&b);
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].key, key))
            continue;
        if (b.len)
            dray__buf_adds(&b, sep);
        dray__buf_adds(&b, c->e[i].value);
    }
    if (b.oom) {
        dray__buf_close(&b);
        return DRAY_ENOMEM;
    }
    *out = b.p;
    return 0;
}

/* dray_options_init, then every key set in cfg; strings borrowed from
 * cfg. DRAY_ECONFIG with the reason in errbuf and on cfg. */
int
dray_config_to_options(dray_config *cfg, dray_options *out, char *errbuf, size_t errlen)
{
    dray_options_init(out);
    cfg->errstr[0] = '\0';
    /* Values were validated when added; parse them again for their types. */
    long long i;
    double x;
    int b;
    const char *v;
    if ((v = dray_config_get(cfg, "redis_url")))
        out->redis_url = v;
    if ((v = dray_config_get(cfg, "namespace")))
        out->ns = v;
    out->redis_tls_ca_file = dray_config_get(cfg, "redis_tls_ca_file");
    out->redis_tls_ca_dir = dray_config_get(cfg, "redis_tls_ca_dir");
    out->redis_tls_server_name = dray_config_get(cfg, "redis_tls_server_name");
    out->redis_tls_cert = dray_config_get(cfg, "redis_tls_cert");
    out->redis_tls_key = dray_config_get(cfg, "redis_tls_key");
    out->redis_sentinel_password = dray_config_get(cfg, "redis_sentinel_password");
    if ((v = dray_config_get(cfg, "redis_tls_insecure_skip_verify")) && !parse_bool(v, &b))
        out->redis_tls_insecure_skip_verify = b;
    if ((v = dray_config_get(cfg, "concurrency")) && !parse_integer(v, &i))
        out->concurrency = (int)i;
    if ((v = dray_config_get(cfg, "fetch_batch")) && !parse_integer(v, &i))
        out->fetch_batch = (int)i;
    if ((v = dray_config_get(cfg, "timeout")) && !parse_integer(v, &i))
        out->shutdown_timeout_s = (int)i;
    if ((v = dray_config_get(cfg, "max_retries")) && !parse_integer(v, &i))
        out->max_retries = (int)i;
    if ((v = dray_config_get(cfg, "dead_max_jobs")) && !parse_integer(v, &i))
        out->dead_max_jobs = (long)i;
    if ((v = dray_config_get(cfg, "dead_timeout")) && !parse_integer(v, &i))
        out->dead_timeout_s = (long)i;
    if ((v = dray_config_get(cfg, "poll_interval")) && !parse_double(v, &x))
        out->poll_interval_s = x;
    if ((v = dray_config_get(cfg, "heartbeat")) && !parse_integer(v, &i))
        out->heartbeat_s = (int)i;
    if ((v = dray_config_get(cfg, "tag")))
        out->tag = v;
    if ((v = dray_config_get(cfg, "log_level")))
        parse_level(v, &out->log_level);
    if ((v = dray_config_get(cfg, "log_jobs")) && !parse_bool(v, &b))
        out->log_jobs = b;
    if ((v = dray_config_get(cfg, "metrics")) && !parse_bool(v, &b))
        out->no_metrics = !b;
    if ((v = dray_config_get(cfg, "max_payload")) && !parse_integer(v, &i))
        out->max_payload = (size_t)i;
    if ((v = dray_config_get(cfg, "timestamps")))
        out->timestamps_ms = !strcmp(v, "ms");
    if (join_values(cfg, "queue", " ", &cfg->queues_joined) ||
        join_values(cfg, "label", ",", &cfg->labels_joined))
        return dray__err(errbuf, errlen, DRAY__SET_ERR(cfg, DRAY_ENOMEM, "out of memory"),
                         "out of memory");
    out->queues = cfg->queues_joined;
    out->labels = cfg->labels_joined;
    return 0;
}
