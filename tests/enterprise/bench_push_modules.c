/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The producer's cost of a plain class with modules loaded, for callgrind
 * (deterministic: instructions, not time). Pushes N jobs of class Plain
 * (args [i, "bench"]) in one dray_client_push_bulk (measure_bulk) and N
 * single dray_client_push calls (measure_single), with no module, Pro,
 * Enterprise (a unique and an encrypted class configured, neither Plain)
 * or both loaded, against its own redis-server. bench/push_modules.sh runs
 * it under callgrind at two sizes and prints the difference per job, which
 * leaves out start-up and the module loads.
 * Usage: bench_push_modules core|pro|ent|both N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dray/dray.h"
#include "ent_support.h"

static test_redis srv;

/* One bulk push of n Plain jobs; exits on failure. noinline: callgrind
 * collects exactly this call (--toggle-collect=measure_bulk). */
__attribute__((noinline)) static void
measure_bulk(dray_client *c, json_t *list, long n)
{
    size_t pushed = 0;
    if (dray_client_push_bulk(c, "Plain", list, NULL, NULL, &pushed) || (long)pushed != n) {
        fprintf(stderr, "bulk push: %s\n", dray_client_errstr(c));
        exit(1);
    }
}

/* n single pushes of Plain; exits on failure. */
__attribute__((noinline)) static void
measure_single(dray_client *c, json_t *list, long n)
{
    for (long i = 0; i < n; i++)
        if (dray_client_push(c, "Plain", json_array_get(list, (size_t)i), NULL, NULL)) {
            fprintf(stderr, "push: %s\n", dray_client_errstr(c));
            exit(1);
        }
}

/* Load module `path` with the settings both modules accept. */
static void
load(const char *path, const char *key, const char *keyfile)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_server *s;
    char err[1024];
    if (dray_server_new(&o, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    const char *sets[][2] = {
        {"license", key},
        {"enterprise.unique", "Unique for=600"},
        {"enterprise.encrypt_keys", keyfile},
        {"enterprise.encrypt", "Secret"},
        {"enterprise.leader", "no"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        if (dray_server_set_config(s, sets[i][0], sets[i][1]))
            exit(1);
    if (dray_server_load_module(s, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    dray_server_free(s);
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_push_modules core|pro|ent|both N\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    char key[ENT_KEYBUF], keyfile[300];
    if (n < 1 || ent_test_init() || test_redis_start(&srv))
        return 1;
    ent_test_license("enterprise", NULL, key);
    dray_log_set_level(DRAY_LOG_ERROR);
    if (ent_test_keyfile(srv.dir, keyfile, sizeof keyfile))
        return 1;
    if (!strcmp(mode, "pro") || !strcmp(mode, "both"))
        load(PRO_MODULE, key, keyfile);
    if (!strcmp(mode, "ent") || !strcmp(mode, "both"))
        load(ENT_MODULE, key, keyfile);

    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_client *c;
    if (dray_client_new(&o, &c, NULL, 0))
        return 1;
    json_t *list = json_array();
    for (long i = 0; i < n; i++)
        json_array_append_new(list, json_pack("[I, s]", (json_int_t)i, "bench"));
    json_t *warm = json_pack("[[i]]", 0);
    size_t pushed;
    if (dray_client_push_bulk(c, "Plain", warm, NULL, NULL, &pushed)) /* connect outside */
        return 1;
    json_decref(warm);
    measure_bulk(c, list, n);
    measure_single(c, list, n);
    printf("%s: %ld bulk + %ld single pushes of a plain class\n", mode, n, n);
    json_decref(list);
    dray_client_free(c);
    test_redis_stop(&srv);
    return 0;
}
