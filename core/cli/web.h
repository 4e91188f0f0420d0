/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray web: the dashboard's embedded assets and its HTML/URL escaping,
 * shared between web.c and web_assets.c. */
#ifndef DRAY_CLI_WEB_H
#define DRAY_CLI_WEB_H

#include <stddef.h>

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
/* Append s percent-encoded for a path segment or query value. */
void web_buf_url(web_buf *b, const char *s);
/* Append s as a Prometheus label value (\\ \" \n escaped). */
void web_buf_label(web_buf *b, const char *s);

#endif /* DRAY_CLI_WEB_H */
