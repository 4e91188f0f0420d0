/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray web: the dashboard's embedded assets and its HTML/URL escaping,
 * shared between web.c and web_assets.c. */
#ifndef DRAY_CLI_WEB_H
#define DRAY_CLI_WEB_H

#include <stddef.h>
#include <sys/socket.h>
#include <dray/inspect.h>

extern const char web_css[]; /* /assets/dray.css */
extern const char web_js[];  /* /assets/dray.js: live chart, confirmations */

/* A growing string; on allocation failure it sets oom and stops growing, so
 * a page is either whole or answered 500. */
typedef struct web_buf {
    char *s;    /* NUL-terminated; owned */
    size_t len; /* bytes without the NUL */
    size_t cap; /* allocated bytes */
    int oom;    /* 1 after a failed allocation */
} web_buf;

void web_buf_cat(web_buf *b, const char *s, size_t n);
void web_buf_puts(web_buf *b, const char *s);
void web_buf_printf(web_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s (n bytes) with & < > " ' as entities: safe in text and in
 * double-quoted attributes. NUL bytes become U+FFFD. */
void web_buf_html(web_buf *b, const char *s, size_t n);
/* web_buf_html of a C string; NULL appends nothing. */
void web_buf_text(web_buf *b, const char *s);
/* Append s percent-encoded for a path segment or query value. */
void web_buf_url(web_buf *b, const char *s);
/* Append s as a Prometheus label value (\\ \" \n escaped). */
void web_buf_label(web_buf *b, const char *s);
/* A Prometheus "# HELP" and "# TYPE" pair for name. */
void web_metric_head(web_buf *b, const char *name, const char *type, const char *help);

/* "host:port" (IPv4, localhost, or [IPv6]) into sa; *loopback 1 for a
 * loopback address. 0, or -1 when it is not such an address. */
int web_parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *len, int *loopback);

struct MHD_Daemon;
/* The port daemon d listens on (the kernel's pick for port 0), or 0 when
 * it cannot be read. */
unsigned web_bound_port(struct MHD_Daemon *d);

/* ---- paid modules' pages and figures (web_modules.c) ---- */

/* Which modules have data in Redis (bits of web_modules_present). */
#define WEB_MOD_BATCHES 1u  /* pro:batches exists */
#define WEB_MOD_LIMITS 2u   /* ent:limiters exists */
#define WEB_MOD_PERIODIC 4u /* ent:periodic:loops or dear-leader exists */
#define WEB_MOD_UNIQUE 8u   /* Enterprise data, or a unique lock met by one SCAN step */

/* *mask: the WEB_MOD_* bits, in one script. 0 or a DRAY_E* code (*mask 0). */
int web_modules_present(dray_api *api, unsigned *mask);
/* A page (0-based) of the module's index as an HTML table appended to b;
 * *more 1 when a next page has rows. One script each. 0 or a DRAY_E* code
 * (the error text in dray_api_errstr). */
int web_batches_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more);
int web_limits_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more);
int web_periodic_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more);
/* Unique locks from SCAN cursor ("" or "0" to start): about page_size rows
 * (whole SCAN steps), at most 50 SCAN calls; next gets the cursor to go on
 * from, "" at the end. */
int web_unique_table(dray_api *api, const char *cursor, size_t page_size, web_buf *b,
                     char next[32]);
/* Prometheus text of the modules in mask, appended to b. */
int web_module_metrics(dray_api *api, unsigned mask, web_buf *b);

#endif /* DRAY_CLI_WEB_H */
