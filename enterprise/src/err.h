/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The Enterprise module's one error helper, shared by every file of the
 * module and by the cron/tz unit test (no dray, Redis or global state).
 * Thread-safe: it formats into the caller's buffer and reads errno text
 * with strerror_r.
 */
#ifndef DRAY_ENT_ERR_H
#define DRAY_ENT_ERR_H

#include <stddef.h>

#define ENT_ERRNO_BYTES 128 /* strerror_r text: glibc's longest is under 60 */

/* Formats into err (truncated, always NUL-terminated; nothing written when
 * err is NULL or errlen 0) and returns code. Thread-safe. */
int ent__err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Text for errno value e in buf (strerror_r, GNU or XSI flavour); returns
 * buf. Thread-safe, cannot fail. */
const char *ent__syserr(int e, char buf[ENT_ERRNO_BYTES]);

#endif /* DRAY_ENT_ERR_H */
