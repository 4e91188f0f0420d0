/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The module loader (dlopen, two-way ABI handshake, staged registration
 * committed only when every check passes) and the hook chains the client
 * and server run. The chains are immutable tables published through one
 * atomic pointer: dispatchers take no lock, and without modules every
 * dispatcher costs one branch. */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "module_internal.h"

_Static_assert(DRAY_OUTCOME_SUCCESS == DRAY__OUT_SUCCESS &&
                   DRAY_OUTCOME_FAILURE == DRAY__OUT_FAILURE &&
                   DRAY_OUTCOME_SKIPPED == DRAY__OUT_SKIPPED &&
                   DRAY_OUTCOME_DEFERRED == DRAY__OUT_DEFERRED &&
                   DRAY_OUTCOME_REQUEUED == DRAY__OUT_REQUEUED,
               "module.h outcomes must equal the processor's");

#define RECORD_ROOM 1024 /* a newer module's record may be bigger than ours */

_Atomic(dray__hook_table *) dray__hooks;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* loads and the module list */
static struct dray_module **g_mods;                        /* live modules, in load order */
static size_t g_nmods;
static unsigned g_seq;                                          /* registration order */
static pthread_mutex_t g_tick_lock = PTHREAD_MUTEX_INITIALIZER; /* one heartbeat ticks at a time */

static const char *const point_names[DRAY__NPOINTS] = {
    "?", "push", "perform", "retry", "death", "startup", "quiet", "shutdown", "tick",
};

/* The published hook table (NULL before the first commit); lock-free readers. */
static inline dray__hook_table *
table(void)
{
    return atomic_load_explicit(&dray__hooks, memory_order_acquire);
}

/* ---- settings given to modules (dray_server_set_config) ----------------- */

struct dray__modcfg {
    char **key;
    char **val;
    size_t n;
};

/* Frees the module settings s collected (dray_server_set_config); no-op when none. */
void
dray__modcfg_free(struct dray_server *s)
{
    struct dray__modcfg *c = s->modcfg;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        dray__free(c->key[i]);
        dray__free(c->val[i]);
    }
    dray__free(c->key);
    dray__free(c->val);
    dray__free(c);
    s->modcfg = NULL;
}

/* [a-z][a-z0-9_]* shorter than DRAY_MODULE_NAME_MAX, over n bytes. */
static bool
name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= DRAY_MODULE_NAME_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* A section key: "<name>.<key>", key non-empty without whitespace. */
static bool
section_key_ok(const char *key)
{
    const char *dot = strchr(key, '.');
    if (!dot || !name_ok(key, (size_t)(dot - key)) || !dot[1])
        return false;
    for (const char *p = dot + 1; *p; p++)
        if ((unsigned char)*p <= ' ')
            return false;
    return true;
}

/* Stores a copy of one module setting in s for modules loaded later;
 * license and license_file replace, others accumulate. 0, DRAY_EINVAL, DRAY_ECONFIG, DRAY_ENOMEM.
 */
int
dray_server_set_config(dray_server *s, const char *key, const char *value)
{
    if (!key || !value)
        return dray__err(s->errstr, sizeof s->errstr, DRAY_EINVAL,
                         "module setting: NULL key or value");
    bool single = !strcmp(key, "license") || !strcmp(key, "license_file");
    if (!single && !section_key_ok(key))
        return dray__err(s->errstr, sizeof s->errstr, DRAY_ECONFIG,
                         "module setting '%s': expected license, license_file or <module>.<key>",
                         key);
    struct dray__modcfg *c = s->modcfg;
    if (!c && !(c = s->modcfg = dray__calloc(1, sizeof *c)))
        return dray__err(s->errstr, sizeof s->errstr, DRAY_ENOMEM, "out of memory");
    char *v = dray__strdup(value);
    if (!v)
        return dray__err(s->errstr, sizeof s->errstr, DRAY_ENOMEM, "out of memory");
    if (single)
        for (size_t i = 0; i < c->n; i++)
            if (!strcmp(c->key[i], key)) {
                dray__free(c->val[i]);
                c->val[i] = v;
                return 0;
            }
    char *k = dray__strdup(key);
    char **nk = dray__realloc(c->key, (c->n + 1) * sizeof *nk);
    if (nk)
        c->key = nk;
    char **nv = nk ? dray__realloc(c->val, (c->n + 1) * sizeof *nv) : NULL;
    if (nv)
        c->val = nv;
    if (!k || !nk || !nv) {
        dray__free(k);
        dray__free(v);
        return dray__err(s->errstr, sizeof s->errstr, DRAY_ENOMEM, "out of memory");
    }
    c->key[c->n] = k;
    c->val[c->n] = v;
    c->n++;
    return 0;
}

/* Copy the server's settings into the module (its lookups never touch the
 * server again, so they are safe from any thread). */
static int
copy_settings(struct dray_module *mod, const struct dray_server *s)
{
    const struct dray__modcfg *c = s ? s->modcfg : NULL;
    if (!c || !c->n)
        return 0;
    mod->ckey = dray__calloc(c->n, sizeof *mod->ckey);
    mod->cval = dray__calloc(c->n, sizeof *mod->cval);
    if (!mod->ckey || !mod->cval)
        return DRAY_ENOMEM;
    for (size_t i = 0; i < c->n; i++) {
        mod->ckey[i] = dray__strdup(c->key[i]);
        mod->cval[i] = dray__strdup(c->val[i]);
        mod->ncfg = i + 1;
        if (!mod->ckey[i] || !mod->cval[i])
            return DRAY_ENOMEM;
    }
    return 0;
}

/* ---- module objects ------------------------------------------------------- */

/* mod's name for messages: its record's name, else its file name (borrowed). */
const char *
dray__mod_name(const struct dray_module *mod)
{
    if (mod->name)
        return mod->name;
    if (mod->live_rec && mod->live_rec->magic == DRAY_MODULE_MAGIC &&
        mod->live_rec->abi_major == DRAY_ABI_MAJOR && mod->live_rec->name)
        return mod->live_rec->name;
    const char *slash = strrchr(mod->path, '/');
    return slash ? slash + 1 : mod->path;
}

/* Frees hook entry e; call_free runs its userdata_free first. Accepts NULL. */
static void
free_entry(dray__hook_entry *e, bool call_free)
{
    if (!e)
        return;
    if (call_free && e->h.userdata_free)
        e->h.userdata_free(e->h.userdata);
    dray__free(e->name);
    dray__free(e->label);
    dray__free(e);
}

/* Free a module object; registrations' userdata_free run first (their code
 * is still mapped), then the library is closed when close_dl. */
static void
free_module(struct dray_module *mod, bool call_free, bool close_dl)
{
    if (!mod)
        return;
    for (size_t i = 0; i < mod->nhooks; i++)
        free_entry(mod->hooks[i], call_free);
    dray__free(mod->hooks);
    if (mod->has_fetcher && call_free && mod->fetcher.userdata_free)
        mod->fetcher.userdata_free(mod->fetcher.userdata);
    dray__free(mod->fetcher_name);
    for (struct dray_script *sc = mod->scripts, *next; sc; sc = next) {
        next = sc->next;
        dray__free(sc->text);
        dray__free(sc);
    }
    for (size_t i = 0; i < mod->ncfg; i++) {
        dray__free(mod->ckey[i]);
        dray__free(mod->cval[i]);
    }
    dray__free(mod->ckey);
    dray__free(mod->cval);
    if (mod->license) {
        memset(mod->license, 0, strlen(mod->license));
        dray__free(mod->license);
    }
    dray__free(mod->license_origin);
    dray__free(mod->name);
    dray__free(mod->version);
    dray__free(mod->tier);
    dray__free(mod->required);
    dray__free(mod->path);
    if (close_dl && mod->dl)
        dlclose(mod->dl);
    dray__free(mod);
}

/* ---- checks after init ---------------------------------------------------- */

static int refuse(char *buf, size_t len, const char *fmt, ...) DRAY_PRINTF(3, 4);

/* Formats a refusal into buf (a module that will not load); returns DRAY_EMODULE. */
static int
refuse(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dray__verr(buf, len, DRAY_EMODULE, fmt, ap);
    va_end(ap);
    return DRAY_EMODULE;
}

/* The first build-signature item that differs, with both values. */
static int
check_sig(const dray_build_sig *m, const char *path, const char *name, char *buf, size_t len)
{
    static const dray_build_sig core = DRAY_BUILD_SIG_INIT;
    struct item {
        const char *what;
        unsigned mod, core;
    } items[] = {
        {"pointer size", m->ptr_bytes, core.ptr_bytes},
        {"long size", m->long_bytes, core.long_bytes},
        {"size_t size", m->size_bytes, core.size_bytes},
        {"time_t size", m->time_bytes, core.time_bytes},
        {"json_int_t size", m->json_int_bytes, core.json_int_bytes},
        {"jansson major version", m->jansson_major, core.jansson_major},
    };
    for (size_t i = 0; i < sizeof items / sizeof *items; i++)
        if (items[i].mod != items[i].core)
            return refuse(buf, len,
                          "module %s (%s): build signature mismatch: %s is %u in the module, %u "
                          "in dray; rebuild the module against this dray and its libraries",
                          path, name, items[i].what, items[i].mod, items[i].core);
    if (m->hiredis_major != core.hiredis_major || m->hiredis_minor != core.hiredis_minor)
        return refuse(buf, len,
                      "module %s (%s): build signature mismatch: hiredis %u.%u in the module, "
                      "%u.%u in dray (redisReply differs between them); rebuild the module "
                      "against this dray and its libraries",
                      path, name, (unsigned)m->hiredis_major, (unsigned)m->hiredis_minor,
                      (unsigned)core.hiredis_major, (unsigned)core.hiredis_minor);
    return 0;
}

/* The committed module called name (borrowed), or NULL; caller holds g_lock. */
static struct dray_module *
find_live(const char *name)
{
    for (size_t i = 0; i < g_nmods; i++)
        if (!strcmp(g_mods[i]->name, name))
            return g_mods[i];
    return NULL;
}

/* Every check between "init returned" and "commit", in the order that gives
 * the most precise reason. 0 or DRAY_EMODULE / the module's code, with the
 * message in buf. */
static int
check_module(struct dray_module *mod, const dray_module_record *rec, int irc, char *buf, size_t len)
{
    const char *path = mod->path;
    if (rec->magic != DRAY_MODULE_MAGIC || rec->struct_size < sizeof(uint32_t) * 2 + 4) {
        if (irc)
            return refuse(buf, len, "module %s refused to load: %s", path,
                          mod->errstr[0] ? mod->errstr : dray_strerror(irc));
        return refuse(buf, len,
                      "module %s: not a dray module: dray_module_init returned without filling "
                      "its record (magic or struct_size missing)",
                      path);
    }
    /* Only these four fields are frozen across majors: check them before
     * trusting anything else in the record. */
    if (rec->abi_major != DRAY_ABI_MAJOR)
        return refuse(
            buf, len, "module %s: built for module ABI %u.%u, but this dray speaks %d.%d; %s", path,
            (unsigned)rec->abi_major, (unsigned)rec->abi_minor, DRAY_ABI_MAJOR, DRAY_ABI_MINOR,
            rec->abi_major > DRAY_ABI_MAJOR ? "upgrade dray or use a module built for it"
                                            : "rebuild the module against this dray");
    const char *name = rec->name && name_ok(rec->name, strlen(rec->name)) ? rec->name : "?";
    if (rec->abi_minor > DRAY_ABI_MINOR)
        return refuse(buf, len,
                      "module %s (%s): built for module ABI %u.%u, newer than this dray's %d.%d; "
                      "upgrade dray or use a module built for this ABI",
                      path, name, (unsigned)rec->abi_major, (unsigned)rec->abi_minor,
                      DRAY_ABI_MAJOR, DRAY_ABI_MINOR);
    if (rec->struct_size < offsetof(dray_module_record, sig) + sizeof rec->sig)
        return refuse(buf, len, "module %s: its record is too short (%u bytes)", path,
                      (unsigned)rec->struct_size);
    int rc = check_sig(&rec->sig, path, name, buf, len);
    if (rc)
        return rc;
    if (mod->fetch_conflict) {
        dray__hook_table *t = table();
        return refuse(buf, len,
                      "module %s (%s) provides fetch, but module %s (%s) already does; only one "
                      "fetch provider may be loaded",
                      path, name, t && t->fetch_mod ? t->fetch_mod->name : "?",
                      t && t->fetch_mod ? t->fetch_mod->path : "?");
    }
    if (irc) {
        refuse(buf, len, "module %s (%s) refused to load: %s", path, name,
               mod->errstr[0] ? mod->errstr : dray_strerror(irc));
        if (irc <= -100) /* a licensing library code */
            return DRAY_ELICENSE;
        return irc < 0 && irc >= DRAY_ETIMEOUT ? irc : DRAY_EMODULE;
    }
    if (mod->reg_error)
        return refuse(buf, len, "module %s (%s): invalid registration: %s", path, name,
                      mod->errstr);
    if (!rec->name || !name_ok(rec->name, strlen(rec->name)))
        return refuse(buf, len,
                      "module %s: invalid module name '%s' (want [a-z][a-z0-9_]*, at most %d "
                      "characters)",
                      path, rec->name ? rec->name : "(null)", DRAY_MODULE_NAME_MAX - 1);
    struct dray_module *other = find_live(rec->name);
    if (other)
        return refuse(buf, len, "module %s (%s): a module named %s is already loaded from %s", path,
                      name, name, other->path);
    /* A check loads nothing, so a required module is never "loaded" then. */
    if (!mod->check && rec->required && *rec->required && !find_live(rec->required))
        return refuse(buf, len,
                      "module %s (%s) requires module %s, which is not loaded; load %s first", path,
                      name, rec->required, rec->required);
    return 0;
}

/* ---- commit --------------------------------------------------------------- */

/* Hook order for qsort: priority, then module load order, then registration order. */
static int
entry_cmp(const void *a, const void *b)
{
    const dray__hook_entry *x = *(dray__hook_entry *const *)a, *y = *(dray__hook_entry *const *)b;
    if (x->h.priority != y->h.priority)
        return x->h.priority < y->h.priority ? -1 : 1;
    if (x->mod->index != y->mod->index)
        return x->mod->index < y->mod->index ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Build the table with mod's registrations added and publish it. The old
 * table is kept (a dispatcher may still be walking it). */
static int
commit(struct dray_module *mod)
{
    dray__hook_table *old = table();
    dray__hook_table *t = dray__calloc(1, sizeof *t);
    void *grown = dray__realloc(g_mods, (g_nmods + 1) * sizeof *g_mods);
    if (!t || !grown) {
        dray__free(t);
        return DRAY_ENOMEM;
    }
    g_mods = grown;
    mod->index = (int)g_nmods; /* ties in every chain break by load order */
    for (size_t i = 0; i < mod->nhooks; i++) {
        dray__hook_entry *e = mod->hooks[i];
        dray__buf b;
        dray__buf_init(&b);
        dray__buf_adds(&b, mod->name);
        if (e->name) {
            dray__buf_adds(&b, ".");
            dray__buf_adds(&b, e->name);
        }
        e->label = b.p;
        if (b.oom || !e->label)
            goto oom;
    }
    for (int p = 1; p < DRAY__NPOINTS; p++) {
        size_t n = old ? old->n[p] : 0, add = 0;
        for (size_t i = 0; i < mod->nhooks; i++)
            add += mod->hooks[i]->h.point == p;
        if (!n && !add)
            continue;
        t->chain[p] = dray__malloc((n + add) * sizeof *t->chain[p]);
        if (!t->chain[p])
            goto oom;
        if (n)
            memcpy(t->chain[p], old->chain[p], n * sizeof *t->chain[p]);
        for (size_t i = 0; i < mod->nhooks; i++)
            if (mod->hooks[i]->h.point == p)
                t->chain[p][n++] = mod->hooks[i];
        t->n[p] = n;
        qsort(t->chain[p], n, sizeof *t->chain[p], entry_cmp);
    }
    if (mod->has_fetcher) {
        t->fetch_mod = mod;
        t->fetcher = &mod->fetcher;
    } else if (old) {
        t->fetch_mod = old->fetch_mod;
        t->fetcher = old->fetcher;
    }
    t->retired = old;
    g_mods[g_nmods++] = mod;
    mod->state = MOD_LIVE;
    atomic_store_explicit(&dray__hooks, t, memory_order_release);
    return 0;
oom:
    for (int p = 0; p < DRAY__NPOINTS; p++)
        dray__free(t->chain[p]);
    dray__free(t);
    return DRAY_ENOMEM;
}

/* ---- load ----------------------------------------------------------------- */

/* src (NULL: "") into dst of n bytes, truncated. */
static void
copy_field(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* The path to dlopen for path: itself when it has a '/', else "./path" in buf
 * (n bytes); NULL when that does not fit. */
const char *
dray__dl_path(const char *path, char *buf, size_t n)
{
    if (strchr(path, '/'))
        return path;
    int w = snprintf(buf, n, "./%s", path);
    return w >= 0 && (size_t)w < n ? buf : NULL;
}

/* dlopens mod's library at path and finds its entry point (*init). 0, or
 * DRAY_EMODULE with the reason in buf; on failure mod is freed. */
static int
open_module(struct dray_module *mod, const char *path, dray_module_init_fn *init, char *buf,
            size_t len)
{
    char pbuf[PATH_MAX];
    const char *open_path = dray__dl_path(path, pbuf, sizeof pbuf);
    dlerror();
    mod->dl = open_path ? dlopen(open_path, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!mod->dl) {
        const char *e = dlerror();
        refuse(buf, len, "module %s: not a loadable shared object: %s", path,
               e ? e : "path too long");
        free_module(mod, false, false);
        return DRAY_EMODULE;
    }
    *(void **)init = dlsym(mod->dl, DRAY_MODULE_ENTRY_NAME);
    if (!*init) {
        refuse(buf, len, "module %s: not a dray module: it does not export %s", path,
               DRAY_MODULE_ENTRY_NAME);
        free_module(mod, false, true);
        return DRAY_EMODULE;
    }
    return 0;
}

/* Calls the module's init with a load context (its own Redis link, used on
 * demand) and checks the record it fills; on success mod owns copies of the
 * record's name, version, tier and requirement. 0, or an error with the
 * reason in buf (mod is then still the caller's to free). */
static int
run_init(struct dray_server *s, struct dray_module *mod, dray_module_init_fn init, const char *path,
         char *buf, size_t len)
{
    /* Room past our record: a module built for a newer minor writes its
     * bigger record without overrunning ours. */
    union {
        dray_module_record rec;
        unsigned char room[RECORD_ROOM];
    } rb;
    memset(&rb, 0, sizeof rb);
    struct dray_ctx lctx;
    dray__ctx_init(&lctx, DRAY_THREAD_MAIN, s, NULL, s ? &s->cfg : NULL);
    dray__conn lconn;
    if (s) {
        dray__conn_init(&lconn, &s->cfg); /* connects on first use only */
        lctx.conn = &lconn;
    }
    lctx.mod = mod;
    mod->lctx = &lctx;
    mod->live_rec = &rb.rec;
    mod->state = MOD_STAGING;
    int irc = init(&dray__host, mod, &rb.rec);
    mod->state = MOD_CLOSED;
    mod->lctx = NULL;
    if (s)
        dray__conn_close(&lconn);

    int rc = check_module(mod, &rb.rec, irc, buf, len);
    if (!rc) {
        mod->name = dray__strdup(rb.rec.name);
        mod->version = dray__strdup(rb.rec.version ? rb.rec.version : "");
        mod->tier = dray__strdup(rb.rec.tier ? rb.rec.tier : "");
        mod->required = rb.rec.required && *rb.rec.required ? dray__strdup(rb.rec.required) : NULL;
        if (!mod->name || !mod->version || !mod->tier ||
            (rb.rec.required && *rb.rec.required && !mod->required))
            rc = dray__err(buf, len, DRAY_ENOMEM, "module %s: out of memory", path);
    }
    mod->live_rec = NULL;
    return rc;
}

/* Check mode's report on mod (rc: the load's outcome, buf: its refusal). */
static void
fill_verdict(dray_module_verdict *verdict, const struct dray_module *mod, int rc, const char *buf)
{
    memset(verdict, 0, sizeof *verdict);
    verdict->rc = rc;
    verdict->warnings = mod->nwarn;
    copy_field(verdict->warning, sizeof verdict->warning, mod->lastwarn);
    if (rc == 0) {
        copy_field(verdict->name, sizeof verdict->name, mod->name);
        copy_field(verdict->version, sizeof verdict->version, mod->version);
        copy_field(verdict->tier, sizeof verdict->tier, mod->tier);
        if (mod->status[0])
            copy_field(verdict->message, sizeof verdict->message, mod->status);
        else
            snprintf(verdict->message, sizeof verdict->message, "module %s %s loads", mod->name,
                     mod->version);
    } else {
        copy_field(verdict->message, sizeof verdict->message, buf);
    }
}

/*
 * Load (or, with verdict, check) the module at path for server s. Holds
 * g_lock throughout: loads are serialised and the module list is stable.
 * On refusal the staged registrations are dropped (userdata_free called),
 * the library is closed and the message is in buf.
 */
static int
load(struct dray_server *s, const char *path, dray_module_verdict *verdict, char *buf, size_t len)
{
    if (!path || !*path)
        return refuse(buf, len, "module path is empty");
    struct stat st;
    char why[DRAY__STRERROR_BYTES];
    if (stat(path, &st))
        return refuse(
            buf, len, "module %s: cannot open: %s%s", path, dray__strerror(errno, why, sizeof why),
            strchr(path, '/') ? "" : " (a name without '/' is a file in the current directory)");
    for (size_t i = 0; i < g_nmods; i++)
        if (g_mods[i]->dev == st.st_dev && g_mods[i]->ino == st.st_ino)
            return refuse(buf, len, "module %s: already loaded (module %s from %s)", path,
                          g_mods[i]->name, g_mods[i]->path);
    struct dray_module *mod = dray__calloc(1, sizeof *mod);
    if (!mod || !(mod->path = dray__strdup(path)) || copy_settings(mod, s)) {
        free_module(mod, false, false);
        return dray__err(buf, len, DRAY_ENOMEM, "module %s: out of memory", path);
    }
    mod->dev = st.st_dev;
    mod->ino = st.st_ino;
    mod->check = verdict != NULL;
    mod->srv = s;
    dray__mod_resolve_license(mod);

    dray_module_init_fn init;
    int rc = open_module(mod, path, &init, buf, len);
    if (rc)
        return rc;
    rc = run_init(s, mod, init, path, buf, len);
    if (verdict) {
        /* Check mode never commits: report and unload. */
        fill_verdict(verdict, mod, rc, buf);
        free_module(mod, true, true);
        return rc;
    }
    if (!rc && (rc = commit(mod)))
        dray__err(buf, len, rc, "module %s: out of memory", path);
    if (rc) {
        free_module(mod, true, true);
        return rc;
    }
    dray__log(DRAY_LOG_INFO, "module %s %s (%s) loaded from %s%s%s", mod->name, mod->version,
              mod->tier[0] ? mod->tier : "no tier", mod->path, mod->status[0] ? ": " : "",
              mod->status);
    return 0;
}

/* True once s's worker threads were started. */
static bool
server_started(const struct dray_server *s)
{
    return s->workers && s->workers[0].started;
}

/* Loads and commits the module at path for s, before run; 0, or a DRAY_E*
 * code with the refusal in errbuf and s->errstr. */
int
dray_server_load_module(dray_server *s, const char *path, char *errbuf, size_t errlen)
{
    int rc;
    if (server_started(s)) {
        rc = dray__err(s->errstr, sizeof s->errstr, DRAY_ESTATE,
                       "module %s: modules load before dray_server_run starts threads", path);
    } else {
        pthread_mutex_lock(&g_lock);
        rc = load(s, path, NULL, s->errstr, sizeof s->errstr);
        pthread_mutex_unlock(&g_lock);
    }
    if (rc)
        dray__err(errbuf, errlen, rc, "%s", s->errstr);
    return rc;
}

/* Loads the module at path in check mode (nothing committed) and reports in
 * *out; returns out->rc. */
int
dray_server_check_module(dray_server *s, const char *path, dray_module_verdict *out)
{
    char buf[sizeof out->message];
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&g_lock);
    int rc = load(s, path, out, buf, sizeof buf);
    pthread_mutex_unlock(&g_lock);
    if (rc && !out->message[0]) { /* refused before init ran */
        memset(out, 0, sizeof *out);
        out->rc = rc;
        copy_field(out->message, sizeof out->message, buf);
    }
    return rc;
}

/* dray_config walkers for the two convenience functions. */
typedef struct cfg_walk {
    dray_server *s;
    int rc;
    int refused;
    char *errbuf;
    size_t errlen;
    dray_module_verdict_fn fn;
    void *ud;
} cfg_walk;

/* dray_config walker: passes each module setting (license*, a.b keys) to s. */
static int
walk_setting(const char *key, const char *value, void *ud)
{
    cfg_walk *w = ud;
    if (strcmp(key, "license") && strcmp(key, "license_file") && !strchr(key, '.'))
        return 0;
    w->rc = dray_server_set_config(w->s, key, value);
    if (w->rc)
        dray__err(w->errbuf, w->errlen, w->rc, "%s", w->s->errstr);
    return w->rc;
}

/* dray_config walker: loads each `module` path, stopping at the first refusal. */
static int
walk_load(const char *key, const char *path, void *ud)
{
    (void)key;
    cfg_walk *w = ud;
    w->rc = dray_server_load_module(w->s, path, w->errbuf, w->errlen);
    return w->rc;
}

/* dray_config walker: checks each `module` path, counting refusals. */
static int
walk_check(const char *key, const char *path, void *ud)
{
    (void)key;
    cfg_walk *w = ud;
    dray_module_verdict v;
    if (dray_server_check_module(w->s, path, &v))
        w->refused++;
    if (w->fn)
        w->fn(path, &v, w->ud);
    return 0;
}

/* Applies cfg's module settings, then loads each `module` path; 0 or the
 * first refusal's code (message in errbuf). */
int
dray_server_load_modules(dray_server *s, const struct dray_config *cfg, char *errbuf, size_t errlen)
{
    cfg_walk w = {.s = s, .errbuf = errbuf, .errlen = errlen};
    if (dray_config_get_all(cfg, NULL, walk_setting, &w) || w.rc)
        return w.rc ? w.rc : DRAY_ECONFIG;
    dray_config_get_all(cfg, "module", walk_load, &w);
    return w.rc;
}

/* Applies cfg's module settings, then checks each `module` path, calling fn
 * with each verdict; returns how many were refused (or a settings error). */
int
dray_server_check_modules(dray_server *s, const struct dray_config *cfg, dray_module_verdict_fn fn,
                          void *userdata)
{
    cfg_walk w = {.s = s, .fn = fn, .ud = userdata};
    if (dray_config_get_all(cfg, NULL, walk_setting, &w) || w.rc)
        return w.rc ? w.rc : DRAY_ECONFIG;
    dray_config_get_all(cfg, "module", walk_check, &w);
    return w.refused;
}

/* ---- run start ------------------------------------------------------------ */

/* True when the file at path is a module already loaded (same device and inode). */
static bool
loaded_file(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return false;
    for (size_t i = 0; i < g_nmods; i++)
        if (g_mods[i]->dev == st.st_dev && g_mods[i]->ino == st.st_ino)
            return true;
    return false;
}

/* One line per non-empty chain: the resolved order, with priorities. */
static void
log_order(void)
{
    dray__hook_table *t = table();
    if (!t)
        return;
    for (int p = 1; p < DRAY__NPOINTS; p++) {
        if (!t->n[p])
            continue;
        dray__buf b;
        dray__buf_init(&b);
        for (size_t i = 0; i < t->n[p]; i++)
            dray__buf_addf(&b, "%s%s(%d)", i ? " > " : "", t->chain[p][i]->label,
                           t->chain[p][i]->h.priority);
        dray__log(DRAY_LOG_INFO, "module hooks, %s: %s", point_names[p], b.p ? b.p : "");
        dray__buf_close(&b);
    }
    if (t->fetcher)
        dray__log(DRAY_LOG_INFO, "module hooks, fetch: %s (module %s) replaces basic fetch",
                  t->fetch_mod->fetcher_name ? t->fetch_mod->fetcher_name : t->fetch_mod->name,
                  t->fetch_mod->name);
}

/* At run start: loads $DRAY_MODULES (skipping loaded ones) and logs the hook
 * order. 0, or a DRAY_E* code with the refusal in s->errstr. */
int
dray__modules_start(struct dray_server *s)
{
    int rc = 0;
    const char *env = getenv("DRAY_MODULES");
    pthread_mutex_lock(&g_lock);
    if (env && *env) {
        char *copy = dray__strdup(env), *save = NULL;
        if (!copy)
            rc = dray__err(s->errstr, sizeof s->errstr, DRAY_ENOMEM, "out of memory");
        for (char *p = copy ? strtok_r(copy, ":", &save) : NULL; p && !rc;
             p = strtok_r(NULL, ":", &save))
            if (!loaded_file(p))
                rc = load(s, p, NULL, s->errstr, sizeof s->errstr);
        dray__free(copy);
    }
    if (!rc && g_nmods)
        log_order();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- registration (host table, init only) --------------------------------- */

static int reg_fail(struct dray_module *mod, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);

/* Records why mod's registration failed in its error text; returns code. */
static int
reg_fail(struct dray_module *mod, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dray__verr(mod->errstr, sizeof mod->errstr, code, fmt, ap);
    va_end(ap);
    mod->reg_error = 1;
    return code;
}

/* Copy a module-built struct of `given` bytes into ours (zero tail). */
static void
copy_sized(void *dst, size_t dstsize, const void *src, uint32_t given)
{
    memset(dst, 0, dstsize);
    memcpy(dst, src, given < dstsize ? given : dstsize);
}

/* Host table hook(): stages desc (copied, sized by struct_size) for mod while
 * its init runs; 0, or a DRAY_E* code with the reason recorded on mod. */
int
dray__mod_hook(dray_module *mod, const dray_hook *desc)
{
    if (!mod || mod->state != MOD_STAGING)
        return DRAY_ESTATE;
    if (!desc ||
        desc->struct_size < offsetof(dray_hook, userdata_free) + sizeof desc->userdata_free)
        return reg_fail(mod, DRAY_EINVAL, "hook descriptor too short (use DRAY_HOOK)");
    dray_hook h;
    copy_sized(&h, sizeof h, desc, desc->struct_size);
    const char *label =
        h.name ? h.name : point_names[h.point > 0 && h.point < DRAY__NPOINTS ? h.point : 0];
    if (h.point < DRAY_HOOK_PUSH || h.point > DRAY_HOOK_TICK)
        return reg_fail(mod, DRAY_EINVAL, "hook '%s': unknown hook point %d", label, h.point);
    if (h.priority < DRAY_PRIO_FIRST || h.priority > DRAY_PRIO_LAST)
        return reg_fail(mod, DRAY_EINVAL, "hook '%s': priority %d outside %d..%d", label,
                        h.priority, DRAY_PRIO_FIRST, DRAY_PRIO_LAST);
    if (h.name && (!*h.name || strlen(h.name) > 64))
        return reg_fail(mod, DRAY_EINVAL, "hook name must be 1-64 characters");
    bool is_event =
        h.point == DRAY_HOOK_STARTUP || h.point == DRAY_HOOK_QUIET || h.point == DRAY_HOOK_SHUTDOWN;
    bool want = h.point == DRAY_HOOK_PUSH      ? h.push != NULL
                : h.point == DRAY_HOOK_PERFORM ? (h.before || h.after || h.record)
                : h.point == DRAY_HOOK_RETRY   ? h.retry != NULL
                : h.point == DRAY_HOOK_DEATH   ? h.death != NULL
                : h.point == DRAY_HOOK_TICK    ? h.tick != NULL
                                               : h.event != NULL;
    bool stray = ((h.push || h.push_wants) && h.point != DRAY_HOOK_PUSH) ||
                 ((h.before || h.after || h.record) && h.point != DRAY_HOOK_PERFORM) ||
                 (h.retry && h.point != DRAY_HOOK_RETRY) ||
                 (h.death && h.point != DRAY_HOOK_DEATH) || (h.tick && h.point != DRAY_HOOK_TICK) ||
                 (h.event && !is_event);
    if (!want || stray)
        return reg_fail(mod, DRAY_EINVAL,
                        "hook '%s' (%s): set exactly the function field of its point", label,
                        point_names[h.point]);
    dray__hook_entry *e = dray__calloc(1, sizeof *e);
    void *grown = e ? dray__realloc(mod->hooks, (mod->nhooks + 1) * sizeof *mod->hooks) : NULL;
    if (grown)
        mod->hooks = grown;
    if (!e || !grown || (h.name && !(e->name = dray__strdup(h.name)))) {
        free_entry(e, false);
        return reg_fail(mod, DRAY_ENOMEM, "out of memory");
    }
    e->h = h;
    e->h.name = NULL; /* the module's string may not outlive init; e->name is ours */
    e->mod = mod;
    e->seq = g_seq++;
    atomic_init(&e->next_due_ms, 0);
    mod->hooks[mod->nhooks++] = e;
    return 0;
}

/* Host table set_fetcher(): stages f (copied) as mod's fetch provider during
 * init; at most one provider per process. 0 or a DRAY_E* code. */
int
dray__mod_set_fetcher(dray_module *mod, const dray_fetcher *f)
{
    if (!mod || mod->state != MOD_STAGING)
        return DRAY_ESTATE;
    if (!f || f->struct_size < offsetof(dray_fetcher, userdata_free) + sizeof f->userdata_free)
        return reg_fail(mod, DRAY_EINVAL, "fetcher descriptor too short (use DRAY_FETCHER)");
    if (mod->has_fetcher)
        return reg_fail(mod, DRAY_EINVAL, "a module may register one fetch provider");
    dray_fetcher c;
    copy_sized(&c, sizeof c, f, f->struct_size);
    if (!c.fetch || !c.ack || !c.requeue)
        return reg_fail(mod, DRAY_EINVAL, "fetch provider needs fetch, ack and requeue");
    if (c.name && !(mod->fetcher_name = dray__strdup(c.name)))
        return reg_fail(mod, DRAY_ENOMEM, "out of memory");
    c.name = mod->fetcher_name;
    mod->fetcher = c;
    mod->has_fetcher = 1;
    dray__hook_table *t = table();
    if (t && t->fetcher) {
        mod->fetch_conflict = 1; /* reported by check_module, naming both */
        return DRAY_EEXIST;
    }
    return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

/* True when no module hooks push (the client skips building a context). */
bool
dray__hooks_push_empty(void)
{
    dray__hook_table *t = table();
    return !t || !t->n[DRAY_HOOK_PUSH];
}

/* True when some push hook must see job: one without push_wants, or whose predicate says
 * so. False lets the push take the core's fast path. On the pushing thread. */
bool
dray__hooks_push_wanted(dray__conn *conn, const dray_job *job)
{
    dray__hook_table *t = table();
    if (!t || !t->n[DRAY_HOOK_PUSH])
        return false;
    struct dray_ctx ctx;
    bool ready = false;
    for (size_t i = 0; i < t->n[DRAY_HOOK_PUSH]; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_PUSH][i];
        if (!e->h.push_wants)
            return true;
        if (!ready) {
            dray__ctx_init(&ctx, DRAY_THREAD_CLIENT, NULL, conn, conn ? conn->cfg : NULL);
            ready = true;
        }
        ctx.mod = e->mod;
        if (e->h.push_wants(&ctx, job, e->h.userdata))
            return true;
    }
    return false;
}

/* Turn a hook's message into "module NAME: text" in buf. */
static void
prefix_msg(char *buf, size_t len, const dray__hook_entry *e, const char *dflt)
{
    if (!buf || !len)
        return;
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", buf[0] ? buf : dflt);
    snprintf(buf, len, "module %s: %s", e->label, tmp);
}

/* Runs the push chain on job over conn: DRAY__PUSH_CONTINUE, DRAY__PUSH_DROP,
 * or a negative error with "module NAME: ..." in errbuf. */
int
dray__hooks_push(dray__conn *conn, dray_job *job, char *errbuf, size_t errlen)
{
    dray__hook_table *t = table();
    if (!t || !t->n[DRAY_HOOK_PUSH])
        return DRAY__PUSH_CONTINUE;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_CLIENT, NULL, conn, conn ? conn->cfg : NULL);
    for (size_t i = 0; i < t->n[DRAY_HOOK_PUSH]; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_PUSH][i];
        ctx.mod = e->mod;
        ctx.msg = errbuf;
        ctx.msglen = errlen;
        ctx.fail_code = 0;
        if (errbuf && errlen)
            errbuf[0] = '\0';
        int v = e->h.push(&ctx, job, e->h.userdata);
        if (v == DRAY_CONTINUE)
            continue;
        if (v == DRAY_DROP)
            return DRAY__PUSH_DROP;
        if (v == DRAY_FAIL) {
            prefix_msg(errbuf, errlen, e, "push refused");
            return ctx.fail_code < 0 ? ctx.fail_code : DRAY_EINVAL;
        }
        if (errbuf && errlen)
            errbuf[0] = '\0';
        prefix_msg(errbuf, errlen, e, "push hook returned an invalid verdict");
        return DRAY_EINVAL;
    }
    return DRAY__PUSH_CONTINUE;
}

/* Runs the perform chain before the handler; returns a DRAY__BEFORE_* verdict
 * (defer seconds or the failure text in errbuf); *entered counts hooks that continued. */
int
dray__hooks_before(void *wctx, dray_job *job, double *defer_s, char *errbuf, size_t errlen,
                   int *entered)
{
    dray__hook_table *t = table();
    *entered = 0;
    if (!t || !t->n[DRAY_HOOK_PERFORM])
        return DRAY__BEFORE_CONTINUE;
    dray__worker *w = wctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    size_t n = t->n[DRAY_HOOK_PERFORM];
    for (size_t i = 0; i < n; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_PERFORM][i];
        if (!e->h.before) {
            *entered = (int)i + 1;
            continue;
        }
        ctx.mod = e->mod;
        ctx.msg = errbuf;
        ctx.msglen = errlen;
        ctx.defer_s = 0;
        errbuf[0] = '\0';
        int v = e->h.before(&ctx, job, e->h.userdata);
        switch (v) {
        case DRAY_CONTINUE:
            *entered = (int)i + 1;
            continue;
        case DRAY_SKIP:
            return DRAY__BEFORE_SKIP;
        case DRAY_DEFER:
            *defer_s = ctx.defer_s > 0 ? ctx.defer_s : 1.0;
            if (!errbuf[0])
                snprintf(errbuf, errlen, "deferred by module %s", e->label);
            return DRAY__BEFORE_DEFER;
        case DRAY_FAIL:
            prefix_msg(errbuf, errlen, e, "before_perform refused the job");
            return DRAY__BEFORE_FAIL;
        default:
            errbuf[0] = '\0';
            prefix_msg(errbuf, errlen, e, "before_perform hook returned an invalid verdict");
            return DRAY__BEFORE_FAIL;
        }
    }
    return DRAY__BEFORE_CONTINUE;
}

/* How many of t's perform hooks were entered (returned CONTINUE): entered,
 * capped by the chain's length. */
static size_t
perform_entered(const dray__hook_table *t, int entered)
{
    return t->n[DRAY_HOOK_PERFORM] < (size_t)entered ? t->n[DRAY_HOOK_PERFORM] : (size_t)entered;
}

/* Runs the after hooks of the entered perform hooks, in reverse, with outcome. */
void
dray__hooks_after(void *wctx, dray_job *job, int outcome, int entered)
{
    if (entered <= 0)
        return;
    dray__hook_table *t = table();
    dray__worker *w = wctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    size_t n = perform_entered(t, entered);
    for (size_t i = n; i-- > 0;) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_PERFORM][i];
        if (!e->h.after)
            continue;
        ctx.mod = e->mod;
        e->h.after(&ctx, job, outcome, e->h.userdata);
    }
}

/* Runs the record callbacks of the entered perform hooks (a failed or deferred
 * run), in reverse; they may rewrite message (size bytes). */
void
dray__hooks_record(void *wctx, dray_job *job, int outcome, char *message, size_t size, int entered)
{
    if (entered <= 0)
        return;
    dray__hook_table *t = table();
    dray__worker *w = wctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    size_t n = perform_entered(t, entered);
    for (size_t i = n; i-- > 0;) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_PERFORM][i];
        if (!e->h.record)
            continue;
        ctx.mod = e->mod;
        e->h.record(&ctx, job, outcome, message, size, e->h.userdata);
        message[size - 1] = '\0';
    }
}

/* Runs the retry chain for job scheduled again at next_at. */
void
dray__hooks_retry(void *wctx, const dray_job *job, const char *error_class, const char *message,
                  int attempt, double next_at)
{
    dray__hook_table *t = table();
    if (!t || !t->n[DRAY_HOOK_RETRY])
        return;
    dray__worker *w = wctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    for (size_t i = 0; i < t->n[DRAY_HOOK_RETRY]; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_RETRY][i];
        ctx.mod = e->mod;
        e->h.retry(&ctx, job, error_class, message, attempt, next_at, e->h.userdata);
    }
}

/* Runs the death chain for job (dead set or discarded). */
void
dray__hooks_death(void *wctx, const dray_job *job, const char *error_class, const char *message)
{
    dray__hook_table *t = table();
    if (!t || !t->n[DRAY_HOOK_DEATH])
        return;
    dray__worker *w = wctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_WORKER, w->srv, &w->conn, &w->srv->cfg);
    for (size_t i = 0; i < t->n[DRAY_HOOK_DEATH]; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_DEATH][i];
        ctx.mod = e->mod;
        e->h.death(&ctx, job, error_class, message, e->h.userdata);
    }
}

/* Runs the startup, quiet or shutdown chain (and, at startup, the fetch
 * provider's recover) on a lazily connected main-thread link. */
void
dray__hooks_event(void *sctx, int event)
{
    dray__hook_table *t = table();
    if (!t)
        return;
    int point = event == DRAY__EV_STARTUP ? DRAY_HOOK_STARTUP
                : event == DRAY__EV_QUIET ? DRAY_HOOK_QUIET
                                          : DRAY_HOOK_SHUTDOWN;
    bool recover = point == DRAY_HOOK_STARTUP && t->fetcher && t->fetcher->recover;
    if (!t->n[point] && !recover)
        return;
    struct dray_server *s = sctx;
    dray__conn conn; /* the main thread's link for these rare calls; lazy */
    dray__conn_init(&conn, &s->cfg);
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_MAIN, s, &conn, &s->cfg);
    if (recover) {
        ctx.mod = t->fetch_mod;
        int rc = t->fetcher->recover(&ctx, t->fetcher->userdata);
        if (rc)
            dray__log(DRAY_LOG_ERROR, "module %s: fetch recovery failed: %s%s%s",
                      t->fetch_mod->name, dray_strerror(rc), conn.errstr[0] ? ": " : "",
                      conn.errstr);
    }
    for (size_t i = 0; i < t->n[point]; i++) {
        dray__hook_entry *e = t->chain[point][i];
        ctx.mod = e->mod;
        e->h.event(&ctx, point, e->h.userdata);
    }
    dray__conn_close(&conn);
}

/* Runs the tick hooks that are due, on the heartbeat's conn; skipped when
 * another server's heartbeat is ticking. */
void
dray__hooks_tick(void *sctx, dray__conn *conn)
{
    dray__hook_table *t = table();
    if (!t || !t->n[DRAY_HOOK_TICK])
        return;
    if (pthread_mutex_trylock(&g_tick_lock))
        return; /* another server's heartbeat is ticking this process's modules */
    struct dray_server *s = sctx;
    struct dray_ctx ctx;
    dray__ctx_init(&ctx, DRAY_THREAD_HEARTBEAT, s, conn, &s->cfg);
    for (size_t i = 0; i < t->n[DRAY_HOOK_TICK]; i++) {
        dray__hook_entry *e = t->chain[DRAY_HOOK_TICK][i];
        long long now = (long long)(dray__mono() * 1000.0);
        long long due = atomic_load(&e->next_due_ms);
        if (due == LLONG_MAX || now < due)
            continue;
        ctx.mod = e->mod;
        double next = e->h.tick(&ctx, e->h.userdata);
        atomic_store(&e->next_due_ms, next < 0 ? LLONG_MAX : now + (long long)(next * 1000.0));
    }
    pthread_mutex_unlock(&g_tick_lock);
}

/* ---- tests ---------------------------------------------------------------- */

/* Tests only: drops every module and hook table (userdata_free, dlclose). */
void
dray__modules_reset(void)
{
    pthread_mutex_lock(&g_lock);
    dray__hook_table *t = atomic_exchange(&dray__hooks, NULL);
    while (t) {
        dray__hook_table *prev = t->retired;
        for (int p = 0; p < DRAY__NPOINTS; p++)
            dray__free(t->chain[p]);
        dray__free(t);
        t = prev;
    }
    for (size_t i = g_nmods; i-- > 0;)
        free_module(g_mods[i], true, true);
    dray__free(g_mods);
    g_mods = NULL;
    g_nmods = 0;
    pthread_mutex_unlock(&g_lock);
}
