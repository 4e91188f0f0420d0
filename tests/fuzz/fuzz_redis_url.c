/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Fuzz the Redis URL parser (redis://, rediss://, unix://, redis[s]-sentinel://
 * with query options), as it sees $REDIS_URL, --redis-url and config files.
 *
 * Invariants:
 *   - a refusal is DRAY_EURL (or DRAY_ENOMEM) with a message;
 *   - an accepted URL has its fields in bounds: a host without blanks,
 *     control bytes or brackets and a port
 *     1-65535, or an absolute socket path, or 1-DRAY__MAX_SENTINELS sentinels
 *     with ports 1-65535 and a master name; db 0-1000000; `where` terminated;
 *   - no %-escape is lost: a credential holding %00 would be cut at the NUL,
 *     so an accepted URL may only carry %00 in fields used verbatim;
 *   - a user, when given, is not empty (AUTH "" pass always fails);
 *   - written back as a URL (credentials %-escaped) it parses to the same
 *     fields;
 *   - the cfg is freed whole after success and after refusal (ASan leaks).
 * Shared driver and checks: fuzz_driver.h.
 */
#include "fuzz_driver.h"
#include "internal.h"

#define URL_MAX 4096 /* longer inputs are cut: URLs are short */

static int
same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && !strcmp(a, b));
}

/* Occurrences of "%00" in s (NULL: none). */
static size_t
count_nul_escapes(const char *s)
{
    size_t n = 0;
    for (const char *p = s; p && (p = strstr(p, "%00")) != NULL; p += 3)
        n++;
    return n;
}

/* Append s to b with every byte outside [A-Za-z0-9._~-] %-escaped. */
static void
add_escaped(dray__buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '.' || ch == '_' || ch == '~' || ch == '-')
            dray__buf_add(b, s, 1);
        else
            dray__buf_addf(b, "%%%02X", ch);
    }
}

/* A host name or address as a resolver sees it: printable, no blanks, no
 * brackets (those only delimit an IPv6 address in the URL). */
static int
host_ok(const char *h)
{
    if (!h || !*h)
        return 0;
    for (; *h; h++)
        if ((unsigned char)*h <= ' ' || *h == 0x7f || *h == '[' || *h == ']')
            return 0;
    return 1;
}

/* Fields in bounds, whatever the scheme. */
static void
check_fields(const dray__redis_cfg *c, const char *url)
{
    FUZZ_ASSERT(c->db >= 0 && c->db <= 1000000, "db %d from '%s'", c->db, url);
    FUZZ_ASSERT(c->tls == 0 || c->tls == 1, "tls %d", c->tls);
    FUZZ_ASSERT(memchr(c->where, '\0', sizeof c->where) && c->where[0], "where is empty");
    FUZZ_ASSERT(c->ns && c->ns[0] == '\0', "namespace set by a url");
    /* AUTH "" pass never logs in: an empty user must mean the default one */
    FUZZ_ASSERT(!c->user || c->user[0], "empty user from '%s'", url);
    if (c->path) {
        FUZZ_ASSERT(c->path[0] == '/' && !c->host && !c->sentinel, "unix url '%s'", url);
        return;
    }
    if (c->sentinel) {
        FUZZ_ASSERT(c->nsentinels >= 1 && c->nsentinels <= DRAY__MAX_SENTINELS,
                    "%d sentinels from '%s'", c->nsentinels, url);
        for (int i = 0; i < c->nsentinels; i++)
            FUZZ_ASSERT(host_ok(c->sentinel_host[i]) && c->sentinel_port[i] >= 1 &&
                            c->sentinel_port[i] <= 65535,
                        "sentinel %d of '%s'", i, url);
        FUZZ_ASSERT(c->master_name && c->master_name[0], "no master name from '%s'", url);
        return;
    }
    FUZZ_ASSERT(host_ok(c->host), "host '%s' from '%s'", c->host ? c->host : "(null)", url);
    FUZZ_ASSERT(c->port >= 1 && c->port <= 65535, "port %d from '%s'", c->port, url);
}

/* Credentials as query parameters, starting with sep ('?' or '&'). */
static void
write_query(dray__buf *b, const dray__redis_cfg *c, char sep)
{
    if (c->user) {
        dray__buf_addf(b, "%cuser=", sep);
        add_escaped(b, c->user);
        sep = '&';
    }
    if (c->pass) {
        dray__buf_addf(b, "%cpassword=", sep);
        add_escaped(b, c->pass);
    }
}

/* The URL that means what c holds; written to b. Credentials go in the
 * query where the scheme has one (it can say user without password). */
static void
write_url(dray__buf *b, const dray__redis_cfg *c)
{
    if (c->path) {
        dray__buf_addf(b, "unix://%s?db=%d", c->path, c->db);
        write_query(b, c, '&');
        return;
    }
    if (!c->sentinel) {
        dray__buf_adds(b, c->tls ? "rediss://" : "redis://");
        if (strchr(c->host, ':'))
            dray__buf_addf(b, "[%s]:%d/%d", c->host, c->port, c->db);
        else
            dray__buf_addf(b, "%s:%d/%d", c->host, c->port, c->db);
        write_query(b, c, '?');
        return;
    }
    dray__buf_adds(b, c->tls ? "rediss-sentinel://" : "redis-sentinel://");
    if (c->user || c->pass) {
        if (c->user)
            add_escaped(b, c->user);
        dray__buf_adds(b, ":");
        if (c->pass)
            add_escaped(b, c->pass);
        dray__buf_adds(b, "@");
    }
    for (int i = 0; i < c->nsentinels; i++)
        dray__buf_addf(b, "%s%s:%d", i ? "," : "", c->sentinel_host[i], c->sentinel_port[i]);
    dray__buf_adds(b, "/");
    add_escaped(b, c->master_name);
    dray__buf_addf(b, "/%d", c->db);
}

static void
check_same(const dray__redis_cfg *a, const dray__redis_cfg *b, const char *url, const char *again)
{
    FUZZ_ASSERT(same(a->host, b->host) && a->port == b->port && same(a->path, b->path) &&
                    a->db == b->db && same(a->user, b->user) && same(a->pass, b->pass) &&
                    a->tls == b->tls && a->sentinel == b->sentinel &&
                    a->nsentinels == b->nsentinels && same(a->master_name, b->master_name),
                "'%s' written back as '%s' means something else", url, again);
    for (int i = 0; i < a->nsentinels; i++)
        FUZZ_ASSERT(same(a->sentinel_host[i], b->sentinel_host[i]) &&
                        a->sentinel_port[i] == b->sentinel_port[i],
                    "sentinel %d of '%s' changed when written back as '%s'", i, url, again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char url[URL_MAX + 1];
    char msg[256];
    dray__redis_cfg cfg, cfg2;

    if (size > URL_MAX)
        size = URL_MAX;
    memcpy(url, data, size);
    url[size] = '\0'; /* a URL is a C string: it ends at the first NUL */

    memset(msg, 0, sizeof msg);
    int rc = dray__redis_url_parse(&cfg, url, msg, sizeof msg);
    if (rc) {
        FUZZ_ASSERT(rc == DRAY_EURL || rc == DRAY_ENOMEM, "url refused with %s", dray_err_name(rc));
        fuzz_check_refusal("dray__redis_url_parse", rc, msg, sizeof msg);
        dray__redis_cfg_close(&cfg);
        return 0;
    }
    check_fields(&cfg, url);
    /* fields used verbatim may hold the text %00; decoded ones may not */
    size_t verbatim = count_nul_escapes(cfg.host) + count_nul_escapes(cfg.path);
    for (int i = 0; i < cfg.nsentinels; i++)
        verbatim += count_nul_escapes(cfg.sentinel_host[i]);
    FUZZ_ASSERT(count_nul_escapes(url) == verbatim,
                "'%s' accepted with a %%00 escape: a decoded field was cut at the NUL", url);

    dray__buf b;
    dray__buf_init(&b);
    write_url(&b, &cfg);
    dray__buf_add(&b, "", 0); /* b.p is never NULL */
    FUZZ_ASSERT(!b.oom, "oom");
    rc = dray__redis_url_parse(&cfg2, b.p, msg, sizeof msg);
    FUZZ_ASSERT(rc == 0, "'%s' written back as '%s' is refused: %s", url, b.p, msg);
    check_same(&cfg, &cfg2, url, b.p);
    dray__redis_cfg_close(&cfg2);
    dray__buf_close(&b);
    dray__redis_cfg_close(&cfg);
    return 0;
}
