/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Internal cross-file helpers of libdray. Never installed; never used by modules. */
#ifndef DRAY_INTERNAL_H
#define DRAY_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#include "dray/dray.h"

#define DRAY__UNUSED(x) ((void)(x))

/* ---- allocation seam (alloc.c) ------------------------------------------ */
/* Every allocation of libdray goes through these, so tests can make the Nth
 * one fail. They behave as their libc namesakes. */
void *dray__malloc(size_t n);
void *dray__calloc(size_t n, size_t size);
void *dray__realloc(void *p, size_t n);
char *dray__strdup(const char *s);
char *dray__strndup(const char *s, size_t n);
void dray__free(void *p);
/* Tests: fail the allocation after `n` more succeed; -1 disables. */
void dray__alloc_fail_after(long n);

/* ---- growable byte string (alloc.c) -------------------------------------- */
typedef struct dray__buf {
    char *p;    /* NUL-terminated contents, or NULL while empty */
    size_t len; /* bytes used, without the NUL */
    size_t cap; /* bytes allocated */
    int oom;    /* sticky: an append failed; the contents are incomplete */
} dray__buf;
void dray__buf_init(dray__buf *b);
void dray__buf_close(dray__buf *b);
void dray__buf_reset(dray__buf *b);
void dray__buf_add(dray__buf *b, const void *s, size_t n);
void dray__buf_adds(dray__buf *b, const char *s);
void dray__buf_addf(dray__buf *b, const char *fmt, ...) DRAY_PRINTF(2, 3);

/* ---- error text (err.c) ------------------------------------------------------ */
/* The one way core/src reports error detail: format into a caller's buffer
 * (errbuf may be NULL or errlen 0: nothing is written), truncating safely,
 * and return code, so `return dray__err(...)` sets and reports in one step.
 * Thread-safe: no shared state. */
int dray__err(char *errbuf, size_t errlen, int code, const char *fmt, ...) DRAY_PRINTF(4, 5);
int dray__verr(char *errbuf, size_t errlen, int code, const char *fmt, va_list ap)
    DRAY_PRINTF(4, 0);
/* dray__err into obj->errstr, the fixed array every long-lived object
 * (connection, client, server, config, api handle, module) carries. */
#define DRAY__SET_ERR(obj, code, ...)                                                              \
    dray__err((obj)->errstr, sizeof(obj)->errstr, (code), __VA_ARGS__)
/* Text of errno value errnum in buf (strerror_r, GNU or XSI), never NULL:
 * returns buf, or "error N" in buf when the system has no text. Use it
 * wherever strerror would do: strerror is not thread-safe. */
const char *dray__strerror(int errnum, char *buf, size_t n);
/* Size of a buffer for dray__strerror: the longest glibc text is ~50 bytes. */
#define DRAY__STRERROR_BYTES 128

/* The one rule for a library a user names (--module, --require, config,
 * $DRAY_MODULES): a name without '/' is a file in the current directory,
 * as stat() sees it; dlopen's library search is never used. Returns the
 * path to open (path itself, or "./path" in buf); NULL if buf is too small. */
const char *dray__dl_path(const char *path, char *buf, size_t n);

/* ---- logging (log.c) -------------------------------------------------------- */
/* One line per event: time, level, thread, then "jid=… class=…" when given. */
void dray__log(dray_log_level level, const char *fmt, ...) DRAY_PRINTF(2, 3);
void dray__logj(dray_log_level level, const char *jid, const char *klass, double elapsed_ms,
                const char *fmt, ...) DRAY_PRINTF(5, 6);
bool dray__log_enabled(dray_log_level level);
/* Name the calling thread in log lines (e.g. "worker-3"); copied. */
void dray__log_thread_name(const char *name);
/* Escape [in, in+n) so it stays one printable ASCII line: a backslash is
 * doubled, bytes < 0x20 and >= 0x7f become \xNN (undo with printf '%b'). Writes to out
 * (NULL: only count) and returns the escaped length, no NUL. Cannot fail. */
size_t dray__escape(const char *in, size_t n, char *out);
/* Last-resort log of a job that could not be written back: the formatted
 * message, then the whole payload escaped, on one line (in numbered parts of
 * 1 KiB when even that line cannot be allocated). Nothing is cut. */
void dray__log_payload(dray_log_level level, const char *jid, const char *klass,
                       const char *payload, size_t len, const char *fmt, ...) DRAY_PRINTF(6, 7);

/* ---- redis connection (redis.c) ----------------------------------------------- */
#define DRAY__MAX_SENTINELS 16 /* a URL lists a handful; 16 is generous */
typedef struct dray__redis_cfg {
    char *host;             /* TCP host, or NULL for a unix socket */
    int port;               /* TCP port */
    char *path;             /* unix socket path, or NULL */
    int db;                 /* SELECT index; 0 skips SELECT */
    char *user;             /* ACL user, or NULL */
    char *pass;             /* password, or NULL */
    char *ns;               /* "ns:" prefix including the colon, or "" */
    size_t nslen;           /* strlen(ns) */
    int connect_timeout_ms; /* connect timeout */
    int command_timeout_ms; /* per-command read/write timeout */
    char where[160];        /* "host:port" or "unix:/path" for messages */
    int tls;                /* rediss://: every link runs TLS */
    int tls_insecure;       /* skip chain and hostname checks (explicit opt-out) */
    char *tls_ca_file;      /* PEM CA bundle, or NULL */
    char *tls_ca_dir;       /* hashed CA directory, or NULL (both NULL: system store) */
    char *tls_server_name;  /* SNI and the name verified; NULL: host */
    char *tls_cert;         /* client certificate (mutual TLS), or NULL */
    char *tls_key;          /* its private key, or NULL (then in tls_cert) */
    void *tls_ctx;          /* SSL_CTX shared by every link of this cfg, or NULL */
    int sentinel;           /* redis-sentinel://: host/port come from a sentinel */
    int nsentinels;         /* entries in sentinel_host/port */
    char *sentinel_host[DRAY__MAX_SENTINELS]; /* sentinel addresses, in URL order */
    int sentinel_port[DRAY__MAX_SENTINELS];
    char *master_name;   /* the monitored master's name */
    char *sentinel_pass; /* AUTH for the sentinels (not the master's), or NULL */
} dray__redis_cfg;

/* Parse a redis URL into cfg (zeroed first). DRAY_EURL / DRAY_ETLS with the
 * reason in errbuf. */
int dray__redis_url_parse(dray__redis_cfg *cfg, const char *url, char *errbuf, size_t errlen);
/* Resolve URL (options, env fallbacks), namespace and timeouts. */
int dray__redis_cfg_init(dray__redis_cfg *cfg, const dray_options *o, char *errbuf, size_t errlen);
void dray__redis_cfg_close(dray__redis_cfg *cfg);

typedef struct dray__conn {
    const dray__redis_cfg *cfg; /* borrowed */
    redisContext *ctx;          /* NULL while disconnected */
    void *ssl;                  /* SSL over ctx->fd (rediss://), else NULL */
    int extra_timeout_ms;       /* added to the read timeout (blocking commands) */
    int err;                    /* last DRAY_E* code, 0 if none */
    char errstr[DRAY_ERRSTR_BYTES];
    unsigned backoff_ms;    /* current reconnect delay */
    int want_client_id;     /* fetch CLIENT ID at connect (workers: a stop unblocks them) */
    atomic_llong client_id; /* Redis's id of this link, 0 when unknown */
} dray__conn;

/* TLS transport (tls.c), used by redis.c for links with an SSL. ctx_init
 * builds cfg->tls_ctx from the tls_* settings (DRAY_ETLS naming the file and
 * cause); handshake runs TLS on c->ctx's socket within timeout_ms and sets
 * c->ssl (DRAY_ECONN with the cause in c->errstr; the caller drops c). flush
 * and get_reply are redisBufferWrite and redisGetReply over TLS. */
int dray__tls_ctx_init(dray__redis_cfg *cfg, char *errbuf, size_t errlen);
void dray__tls_ctx_free(dray__redis_cfg *cfg);
int dray__tls_handshake(dray__conn *c, int timeout_ms);
void dray__tls_free(dray__conn *c);
int dray__tls_flush(dray__conn *c, int *done);
int dray__tls_get_reply(dray__conn *c, void **reply);
bool dray__tls_idle_ok(dray__conn *c);

void dray__conn_init(dray__conn *c, const dray__redis_cfg *cfg);
void dray__conn_close(dray__conn *c);
/* Connect, AUTH and SELECT unless connected. DRAY_ECONN / DRAY_EAUTH. */
int dray__conn_ensure(dray__conn *c);
/* Drop the connection (after an I/O error); the next ensure reconnects. */
void dray__conn_drop(dray__conn *c);
/* Run one command. *out (may be NULL) receives the reply, freed by the
 * caller. An error reply gives DRAY_EREDIS with its text in errstr (reply
 * still returned); an I/O failure gives DRAY_ECONN and drops the link. */
int dray__conn_cmd(dray__conn *c, redisReply **out, int argc, const char **argv,
                   const size_t *lens);
int dray__conn_cmdf(dray__conn *c, redisReply **out, const char *fmt, ...);
/* Pipelines and MULTI blocks: dray__pipe, below. */
/* ---- pipelines (redis.c) ------------------------------------------------------ */
/* Every multi-command round trip (MULTI blocks and plain pipelines) goes
 * through dray__pipe: append all, send all, read all. Any I/O failure or a
 * reply that shows the link out of step drops the link, so no later call can
 * read a stale reply or flush a half-built block. */
typedef struct dray__pipe_cmd {
    int kind; /* DRAY__PIPE_PLAIN, _MULTI, _QUEUED, _EXEC */
    int st;   /* after run: 0, DRAY_EREDIS, DRAY_EUNSURE (sent, no reply), DRAY_ECONN (not sent) */
    size_t end;    /* bytes of the write buffer up to this command's end */
    redisReply *r; /* after run: the reply (owned by the pipe), or NULL */
} dray__pipe_cmd;
#define DRAY__PIPE_PLAIN 0
#define DRAY__PIPE_MULTI 1
#define DRAY__PIPE_QUEUED 2
#define DRAY__PIPE_EXEC 3
typedef struct dray__pipe {
    dray__conn *c;       /* borrowed */
    dray__pipe_cmd *cmd; /* commands appended, in order */
    size_t n;            /* commands appended */
    size_t cap;          /* slots in cmd */
    int err;             /* sticky: an append failed (the link was dropped) */
    int intx;            /* inside MULTI */
} dray__pipe;
/* Start a pipeline on c. Cannot fail; a link that the server closed while
 * idle, or that holds unread bytes, is dropped here (reconnected on add). */
void dray__pipe_init(dray__pipe *p, dray__conn *c);
/* Append one command (MULTI and EXEC through begin/commit). Errors are
 * sticky and reported by run; the return value is the same code. */
int dray__pipe_add(dray__pipe *p, int argc, const char **argv, const size_t *lens);
int dray__pipe_addf(dray__pipe *p, const char *fmt, ...);
int dray__pipe_begin(dray__pipe *p);  /* MULTI */
int dray__pipe_commit(dray__pipe *p); /* EXEC */
/* Send everything and read one reply per command. Returns 0 when every
 * reply came and none is an error (an EXEC array holds no error element);
 * DRAY_EREDIS when all replies came and one is an error (link kept, in step);
 * DRAY_ECONN when the link failed before every command was sent (a command
 * not wholly sent never runs; with st DRAY_EUNSURE some before it were);
 * DRAY_EUNSURE when all was sent but a reply is missing (it may have run);
 * DRAY_ENOMEM. On every error but DRAY_EREDIS the link is dropped. The text
 * is in c->errstr. Per-command results: cmd[i].st and dray__pipe_reply. */
int dray__pipe_run(dray__pipe *p);
/* Reply of command i after run (borrowed; NULL if none). */
redisReply *dray__pipe_reply(const dray__pipe *p, size_t i);
/* Free the replies and the command list. Cannot fail. */
void dray__pipe_close(dray__pipe *p);
/* Give up a pipeline before run: nothing buffered is ever sent (the link is
 * dropped if anything was), then close. Cannot fail. */
void dray__pipe_discard(dray__pipe *p);

/* Sleep the current backoff (exponential, jittered, capped at 2 s) unless
 * *stop becomes true, then try to reconnect. 0 when connected. */
int dray__conn_backoff(dray__conn *c, atomic_int *stop);
void dray__conn_backoff_reset(dray__conn *c);

/* A Lua script, loaded lazily and run by EVALSHA (reloaded on NOSCRIPT). */
typedef struct dray__script {
    const char *src;  /* Lua source, static */
    char sha[41];     /* hex SHA1, computed once */
    atomic_int ready; /* sha is set (release/acquire): later reads take no lock */
} dray__script;
int dray__conn_eval(dray__conn *c, dray__script *s, redisReply **out, int nkeys, int argc,
                    const char **argv, const size_t *lens);

/* Key with namespace: returns a new string (dray__free). NULL on OOM. */
char *dray__key(const dray__redis_cfg *cfg, const char *suffix);
/* api.c: the handle's connection, key settings and error buffer, for the
 * other files of the inspection API (cancel.c). Cannot fail. */
void dray__api_parts(dray_api *a, dray__conn **conn, const dray__redis_cfg **cfg, char **errbuf,
                     size_t *errlen);
/* api_sets.c: a ZSCAN MATCH pattern "*<jid>*" with glob characters escaped
 * (dray__free it), or NULL on out of memory. */
char *dray__jid_glob(const char *jid);
/* api_sets.c: true when the JSON job m[0..len) has "jid" equal to jid. */
bool dray__member_has_jid(const char *m, size_t len, const char *jid);
/* cancel.c: "<ns>dray:cancel:<jid>" (dray__free it), or NULL. */
char *dray__cancel_key(const dray__redis_cfg *cfg, const char *jid);
/* Append a namespaced key to b. */
void dray__key_buf(dray__buf *b, const dray__redis_cfg *cfg, const char *suffix);

/* ---- jobs (job.c) ---------------------------------------------------------------- */
struct dray_job {
    json_t *obj;   /* the payload object (owned) */
    char *payload; /* raw text as fetched, or NULL (owned) */
    size_t payload_len;
    double deadline;  /* epoch seconds its timeout ends while running, 0 none */
    atomic_int *over; /* set once running past its deadline (the worker's), or NULL */
};
/* Wrap an object (reference stolen) without validation. */
dray_job *dray__job_wrap(json_t *obj);
/* Queue name validity (non-empty, <= DRAY_QUEUE_MAX, no control bytes). */
int dray__queue_check(const char *q, char *errbuf, size_t errlen);
/* The field checks of dray_job_validate, without the size check. */
int dray__job_check_fields(const dray_job *job, char *errbuf, size_t errlen);
/* Serialize with the flags every writer must use (floats keep a '.'); an
 * integer beyond 64 bits that dray__json_load read is written with its exact
 * digits. Returns malloc'ed text (free()), NULL on OOM. */
char *dray__json_dump(const json_t *v, size_t *len);
/* A job timestamp for epoch seconds t: a JSON real of seconds, or with ms
 * set an integer of milliseconds (Sidekiq 8). New reference; NULL on OOM. */
json_t *dray__time_json(int ms, double t);
/* json_loadb for job payloads: accepts integers beyond 64 bits (read them
 * with dray_json_bigint). e (may be NULL) as json_loadb's. New reference. */
json_t *dray__json_load(const char *buf, size_t len, json_error_t *e);
/* The two with the caller's jansson flags (module host json_load/json_dump). */
json_t *dray__json_loadf(const char *buf, size_t len, size_t flags, json_error_t *e);
char *dray__json_dumpf(const json_t *v, size_t flags, size_t *len);

/* ---- hooks (module.c) ---------------------------------------------------------- */
/* The process-wide hook chains that modules fill (module.h); empty without
 * modules. `wctx` is the calling worker (struct dray__worker *), NULL on a
 * client thread. */
#define DRAY__PUSH_CONTINUE 0
#define DRAY__PUSH_DROP 1
/* Run the client hook chain on job; DRAY__PUSH_CONTINUE, DRAY__PUSH_DROP or a
 * negative error with errbuf set. `conn` is the pusher's link (hooks may use
 * it: it must be idle, no replies pending). */
int dray__hooks_push(dray__conn *conn, dray_job *job, char *errbuf, size_t errlen);
bool dray__hooks_push_empty(void);
/* true when some push hook must see job (one without push_wants, or whose
 * push_wants says so); false with no push hooks, or when the chain would
 * leave job as it is, so the push may skip it. On the pushing thread. */
bool dray__hooks_push_wanted(dray__conn *conn, const dray_job *job);

#define DRAY__BEFORE_CONTINUE 0
#define DRAY__BEFORE_SKIP 1  /* treat as done: acked, no handler call */
#define DRAY__BEFORE_DEFER 2 /* back to the schedule set after *defer_s, retry not spent */
#define DRAY__BEFORE_FAIL 3  /* a failure with the message in errbuf */
/* Outcomes given to after_perform hooks. */
#define DRAY__OUT_SUCCESS 0
#define DRAY__OUT_FAILURE 1
#define DRAY__OUT_SKIPPED 2
#define DRAY__OUT_DEFERRED 3
#define DRAY__OUT_REQUEUED 4 /* shutdown put it back */
/* before_perform chain; *entered counts hooks that returned CONTINUE (their
 * after hooks run, in reverse). */
int dray__hooks_before(void *wctx, dray_job *job, double *defer_s, char *errbuf, size_t errlen,
                       int *entered);
void dray__hooks_after(void *wctx, dray_job *job, int outcome, int entered);
/* The record callbacks (module.h dray_record_fn) of a failed or deferred run,
 * before its outcome is written; message is res.message (size bytes). */
void dray__hooks_record(void *wctx, dray_job *job, int outcome, char *message, size_t size,
                        int entered);
void dray__hooks_retry(void *wctx, const dray_job *job, const char *error_class,
                       const char *message, int attempt, double next_at);
void dray__hooks_death(void *wctx, const dray_job *job, const char *error_class,
                       const char *message);
#define DRAY__EV_STARTUP 0
#define DRAY__EV_QUIET 1
#define DRAY__EV_SHUTDOWN 2
void dray__hooks_event(void *sctx, int event);
/* Module ticks on the heartbeat thread, on its connection. */
void dray__hooks_tick(void *sctx, dray__conn *conn);
/* Push through the client path (hooks, validation, write) on a borrowed
 * connection: host->enqueue for modules. The job is the caller's. */
int dray__client_push_conn(dray__conn *conn, size_t max_payload, dray_job *job,
                           const dray_push_opts *opts, char *errbuf, size_t errlen);

/* ---- time ---------------------------------------------------------------------- */
double dray__mono(void); /* monotonic seconds */
void dray__sleep_ms(unsigned ms);
uint32_t dray__rand32(void); /* libsodium randombytes */
double dray__rand01(void);

#endif /* DRAY_INTERNAL_H */
