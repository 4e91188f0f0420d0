/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Fuzz the configuration-file parser (dray.conf: `key value` lines, quotes,
 * escapes, comments) and the options built from what it accepts.
 *
 * Each input is a whole file, read through dray_config_load_file from a
 * memfd. Invariants:
 *   - a refusal is DRAY_ECONFIG, DRAY_EIO or DRAY_ENOMEM with a message;
 *   - an accepted file gives options inside every documented range, and
 *     its entries written back as a file (values quoted and escaped) load
 *     to the same entries in the same order;
 *   - each entry can be set again by itself (values were validated);
 *   - everything is freed (ASan leaks).
 * Shared driver and checks: fuzz_driver.h.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_driver.h"
#include "internal.h"

typedef struct list {
    dray__buf text; /* "key\0value\0" per entry */
    size_t n;       /* entries */
} list;

static int
collect(const char *key, const char *value, void *ud)
{
    list *l = ud;
    dray__buf_add(&l->text, key, strlen(key) + 1);
    dray__buf_add(&l->text, value, strlen(value) + 1);
    l->n++;
    return 0;
}

/* Entries of cfg as one comparable block; close with dray__buf_close. */
static void
entries(const dray_config *cfg, list *l)
{
    dray__buf_init(&l->text);
    l->n = 0;
    FUZZ_ASSERT(dray_config_get_all(cfg, NULL, collect, l) == 0, "get_all failed");
    FUZZ_ASSERT(!l->text.oom, "oom");
}

/* Write "key \"value\"\n" with the file format's escapes. */
static int
write_entry(const char *key, const char *value, void *ud)
{
    dray__buf *b = ud;
    dray__buf_addf(b, "%s \"", key);
    for (const char *s = value; *s; s++) {
        if (*s == '\n')
            dray__buf_adds(b, "\\n");
        else if (*s == '\r')
            dray__buf_adds(b, "\\r");
        else if (*s == '\t')
            dray__buf_adds(b, "\\t");
        else if (*s == '"' || *s == '\\')
            dray__buf_addf(b, "\\%c", *s);
        else
            dray__buf_add(b, s, 1);
    }
    dray__buf_adds(b, "\"\n");
    return 0;
}

/* Set every entry again in a fresh config, alone: each must still pass. */
static int
set_again(const char *key, const char *value, void *ud)
{
    (void)ud;
    dray_config *c;
    FUZZ_ASSERT(dray_config_new(&c) == 0, "oom");
    int rc = dray_config_add(c, key, value);
    FUZZ_ASSERT(rc == 0, "entry %s='%s' accepted from a file, refused alone: %s", key, value,
                dray_config_errstr(c));
    dray_config_free(c);
    return 0;
}

static void
check_options(const dray_options *o)
{
    FUZZ_ASSERT(o->concurrency >= 1 && o->concurrency <= 1000, "concurrency %d", o->concurrency);
    /* fetch_batch 0: the server picks */
    FUZZ_ASSERT(o->fetch_batch >= 0 && o->fetch_batch <= 1000, "fetch_batch %d", o->fetch_batch);
    FUZZ_ASSERT(o->shutdown_timeout_s >= 0 && o->shutdown_timeout_s <= 86400, "timeout %d",
                o->shutdown_timeout_s);
    FUZZ_ASSERT(o->max_retries >= 0 && o->max_retries <= 1000000, "max_retries %d", o->max_retries);
    FUZZ_ASSERT(o->dead_max_jobs >= 1 && o->dead_max_jobs <= 1000000000, "dead_max_jobs %ld",
                o->dead_max_jobs);
    FUZZ_ASSERT(o->dead_timeout_s >= 1, "dead_timeout %ld", o->dead_timeout_s);
    FUZZ_ASSERT(o->poll_interval_s >= 0 && o->poll_interval_s <= 3600, "poll_interval %g",
                o->poll_interval_s);
    FUZZ_ASSERT(o->heartbeat_s >= 1 && o->heartbeat_s <= 59, "heartbeat %d", o->heartbeat_s);
    FUZZ_ASSERT(o->max_payload >= 1024, "max_payload %zu", o->max_payload);
}

/* Load text (size bytes) from the memfd fd into a new config; its rc in *rc. */
static dray_config *
load(int fd, const void *text, size_t size, int *rc)
{
    char path[64];
    dray_config *c;
    FUZZ_ASSERT(ftruncate(fd, 0) == 0 && pwrite(fd, text, size, 0) == (ssize_t)size,
                "memfd write failed");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    FUZZ_ASSERT(dray_config_new(&c) == 0, "oom");
    *rc = dray_config_load_file(c, path);
    return c;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    int rc;

    if (fd < 0 && (fd = memfd_create("fuzz_config", 0)) < 0)
        FUZZ_FAIL("memfd_create failed");
    dray_config *cfg = load(fd, data, size, &rc);
    if (rc) {
        const char *msg = dray_config_errstr(cfg);
        FUZZ_ASSERT(rc == DRAY_ECONFIG || rc == DRAY_EIO || rc == DRAY_ENOMEM,
                    "file refused with %s: %s", dray_err_name(rc), msg);
        fuzz_check_refusal("dray_config_load_file", rc, msg, strlen(msg) + 1);
        dray_config_free(cfg);
        return 0;
    }
    dray_options o;
    char msg[256] = "";
    rc = dray_config_to_options(cfg, &o, msg, sizeof msg);
    FUZZ_ASSERT(rc == 0, "accepted file gives no options: %s", msg);
    check_options(&o);
    dray_config_get_all(cfg, NULL, set_again, NULL);

    list before, after;
    dray__buf file;
    dray__buf_init(&file);
    dray_config_get_all(cfg, NULL, write_entry, &file);
    dray__buf_add(&file, "", 0);
    FUZZ_ASSERT(!file.oom, "oom");
    entries(cfg, &before);
    dray_config *again = load(fd, file.p, file.len, &rc);
    FUZZ_ASSERT(rc == 0, "entries written back do not load: %s\n%s", dray_config_errstr(again),
                file.p);
    entries(again, &after);
    FUZZ_ASSERT(before.n == after.n && before.text.len == after.text.len &&
                    (before.text.len == 0 || !memcmp(before.text.p, after.text.p, after.text.len)),
                "entries written back load differently:\n%s", file.p);
    dray__buf_close(&before.text);
    dray__buf_close(&after.text);
    dray__buf_close(&file);
    dray_config_free(again);
    dray_config_free(cfg);
    return 0;
}
