/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Internals of the module loader (module.c), its host table (module_host.c)
 * and the fetch-provider glue (module_fetch.c). Never installed. */
#ifndef DRAY_MODULE_INTERNAL_H
#define DRAY_MODULE_INTERNAL_H

#include <stdatomic.h>
#include <sys/types.h>

#include "dray/module.h"
#include "server.h"

#define DRAY__NPOINTS (DRAY_HOOK_TICK + 1)   /* chains indexed by dray_hook_point */
#define DRAY__STATUS_BYTES 256               /* a module's status line */
#define DRAY__LICENSE_FILE_MAX 16384         /* a license file holds one key, not a book */
#define DRAY__LICENSE_FILE_RAW_MAX (1 << 20) /* its bytes, whitespace included */

/* One committed or staged registration. Entries never move once
 * allocated, so tick bookkeeping can live in them. */
typedef struct dray__hook_entry {
    dray_hook h;              /* the module's descriptor, unknown tail zeroed */
    char *name;               /* the descriptor's name (copied) or NULL */
    char *label;              /* "module" or "module.name", set at commit */
    struct dray_module *mod;  /* owner */
    unsigned seq;             /* process-wide registration order: stable ties */
    atomic_llong next_due_ms; /* tick: monotonic ms when due; LLONG_MAX: stopped */
} dray__hook_entry;

/* The published chains: immutable once stored in dray__hooks. A load
 * builds a new table and retires the old one (kept: readers may hold it). */
typedef struct dray__hook_table {
    dray__hook_entry **chain[DRAY__NPOINTS]; /* sorted: priority, load order, seq */
    size_t n[DRAY__NPOINTS];
    struct dray_module *fetch_mod;    /* owner of the fetch provider, or NULL */
    const dray_fetcher *fetcher;      /* the provider (in fetch_mod), or NULL */
    struct dray__hook_table *retired; /* the table this one replaced */
} dray__hook_table;

/* NULL until the first module loads: every dispatcher's first branch. */
extern _Atomic(dray__hook_table *) dray__hooks;

enum { MOD_STAGING = 1, MOD_CLOSED = 2, MOD_LIVE = 3 };

struct dray_script {
    dray__script s;           /* src points at text below; sha cached by redis.c */
    char *text;               /* the Lua source (owned) */
    struct dray_script *next; /* the module's list */
};

/* The core's handle for one module (opaque to modules). */
struct dray_module {
    char *path; /* as given */
    dev_t dev;  /* identity of the file: refuse it twice */
    ino_t ino;
    void *dl;                     /* dlopen handle; never closed once live */
    int index;                    /* load order */
    int state;                    /* MOD_* */
    int check;                    /* loaded by dray_server_check_module */
    dray_module_record *live_rec; /* the record during init (its strings are the module's) */
    char *name, *version, *tier, *required; /* copies, set once init returned */
    char errstr[DRAY_MODULE_ERR_BYTES];
    char status[DRAY__STATUS_BYTES];
    int reg_error;      /* a registration during init was invalid */
    int fetch_conflict; /* it staged a fetcher while another module has one */
    /* settings from the loading server, copied before init */
    char **ckey, **cval;
    size_t ncfg;
    /* the license key, resolved before init */
    int license_rc;       /* 0, DRAY_ENOTFOUND or DRAY_EIO */
    char *license;        /* text (owned) */
    char *license_origin; /* "config license", "DRAY_LICENSE_FILE /path", ... */
    char license_err[DRAY_MODULE_ERR_BYTES];
    /* registrations, staged during init and owned here */
    dray__hook_entry **hooks;
    size_t nhooks;
    dray_fetcher fetcher; /* valid when has_fetcher */
    int has_fetcher;
    char *fetcher_name;
    struct dray_script *scripts;
    /* init */
    struct dray_server *srv; /* the loading server (during init only) */
    struct dray_ctx *lctx;   /* load_ctx (during init only) */
    /* check mode: warnings captured instead of logged */
    int nwarn;
    char lastwarn[DRAY_MODULE_ERR_BYTES];
};

/* One call's context. Hook dispatchers build it on their stack. */
struct dray_ctx {
    int kind;                   /* dray_thread_kind */
    struct dray_server *srv;    /* NULL on a client thread */
    dray__conn *conn;           /* the calling thread's link, or NULL */
    const dray__redis_cfg *cfg; /* where conn points */
    struct dray_module *mod;    /* owner of the hook running now */
    size_t max_payload;         /* for enqueue */
    double defer_s;             /* host->defer */
    int fail_code;              /* host->fail */
    char *msg;                  /* verdict message buffer, or NULL */
    size_t msglen;
    int owned; /* ctx_open: the fields below belong to it */
    dray__redis_cfg own_cfg;
    dray__conn own_conn;
};

extern const dray_host dray__host;

/* A stack context for `kind` on conn (may be NULL). Cannot fail. */
void dray__ctx_init(struct dray_ctx *ctx, int kind, struct dray_server *srv, dray__conn *conn,
                    const dray__redis_cfg *cfg);
/* Deep copy of a Redis configuration (close with dray__redis_cfg_close). */
int dray__redis_cfg_copy(dray__redis_cfg *dst, const dray__redis_cfg *src);
/* The module's name for messages: its record's name, else its path. */
const char *dray__mod_name(const struct dray_module *mod);
/* Resolve the license key for mod from its settings and the environment. */
void dray__mod_resolve_license(struct dray_module *mod);

/* Registration (module.c): the host table's hook and set_fetcher. */
int dray__mod_hook(dray_module *mod, const dray_hook *desc);
int dray__mod_set_fetcher(dray_module *mod, const dray_fetcher *f);

/* Tests only: drop every module (userdata_free, dlclose) and every chain, so
 * the next test starts from an empty process. Production never unloads. */
void dray__modules_reset(void);

#endif /* DRAY_MODULE_INTERNAL_H */
