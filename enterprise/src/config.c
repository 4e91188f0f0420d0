/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* Helpers for settings lines (words, durations, names), keys and clocks. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "ent.h"

int
ent__words(const char *line, const char *rest_key, char ***words)
{
    *words = NULL;
    size_t len = strlen(line), cap = len / 2 + 2;
    /* one block: the pointer array, then a copy of the line */
    char **v = malloc(cap * sizeof *v + len + 1);
    if (!v)
        return -1;
    char *text = (char *)(v + cap);
    memcpy(text, line, len + 1);
    size_t rk = rest_key ? strlen(rest_key) : 0;
    int n = 0;
    char *p = text;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        v[n++] = p;
        if (rk && !strncmp(p, rest_key, rk) && p[rk] == '=') {
            /* the rest of the line, trailing blanks trimmed */
            char *e = p + strlen(p);
            while (e > p && isspace((unsigned char)e[-1]))
                *--e = '\0';
            break;
        }
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = '\0';
    }
    v[n] = NULL;
    *words = v;
    return n;
}

int
ent__duration(const char *s, double *out)
{
    static const struct {
        const char *name;
        double secs;
    } units[] = {{"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(s, units[i].name)) {
            *out = units[i].secs;
            return 0;
        }
    if (!*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    double mul = 1;
    if (*end) {
        if (end[1])
            return -1;
        switch (*end) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        default:
            return -1;
        }
    }
    v *= mul;
    if (v > 100.0 * 365 * 86400)
        return -1;
    *out = v;
    return 0;
}

int
ent__long(const char *s, long lo, long hi, long *out)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int
ent__lim_name_ok(const char *name, int placeholders)
{
    size_t n = strlen(name);
    if (n == 0 || n > ENT_LIM_NAME_MAX)
        return 0;
    for (const char *p = name; *p; p++) {
        if (isalnum((unsigned char)*p) || *p == '-' || *p == '_')
            continue;
        if (placeholders && *p == '{' && !strncmp(p + 1, "arg", 3) &&
            isdigit((unsigned char)p[4])) {
            const char *q = p + 4;
            while (isdigit((unsigned char)*q))
                q++;
            if (*q == '}' && q - (p + 4) <= 2) {
                p = q;
                continue;
            }
        }
        return 0;
    }
    return 1;
}

int
ent__class_ok(const char *klass)
{
    size_t n = strlen(klass);
    if (n == 0 || n > ENT_CLASS_MAX || !(isalpha((unsigned char)klass[0]) || klass[0] == '_'))
        return 0;
    for (const char *p = klass; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != ':')
            return 0;
    return 1;
}

int
ent__key(char *buf, size_t len, dray_ctx *ctx, const char *prefix, const char *name)
{
    int n = snprintf(buf, len, "%s%s%s", ent__H->ns(ctx), prefix, name ? name : "");
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

void
ent__rand_hex(char *out, size_t nbytes)
{
    unsigned char b[64];
    if (nbytes > sizeof b)
        nbytes = sizeof b;
    randombytes_buf(b, nbytes);
    sodium_bin2hex(out, nbytes * 2 + 1, b, nbytes);
}

void
ent__strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int
ent__strv_add(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

int
ent__strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return 1;
    return 0;
}

int
ent__clock(const ent_state *E, dray_ctx *ctx, double *out)
{
    if (E->test_clock) {
        char key[ENT_KEY_BYTES];
        if (ent__key(key, sizeof key, ctx, "", E->test_clock))
            return DRAY_EINVAL;
        redisReply *r;
        const char *argv[2] = {"GET", key};
        int rc = ent__H->redis(ctx, &r, 2, argv, NULL);
        if (!rc && r->type == REDIS_REPLY_STRING) {
            *out = atof(r->str);
            freeReplyObject(r);
            return 0;
        }
        if (r)
            freeReplyObject(r);
        if (rc)
            return rc;
    }
    return ent__H->redis_time(ctx, out);
}
