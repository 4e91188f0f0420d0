/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* systemd's readiness protocol (sd_notify) for `dray run` under Type=notify,
 * spoken directly: one datagram per state to $NOTIFY_SOCKET, no libsystemd. */
#ifndef DRAY_CLI_NOTIFY_H
#define DRAY_CLI_NOTIFY_H

/* Read and unset $NOTIFY_SOCKET (handlers and their children do not see it)
 * and open the socket. Returns 0 when there is none (not under systemd) or
 * it is ready; -1 with errbuf filled when it is set but unusable. Main
 * thread, before cli_notify is used. */
int cli_notify_open(char *errbuf, size_t errlen);
/* Send msg ("READY=1", "STOPPING=1", ...). Does nothing without a socket.
 * Async-signal-safe (one sendto), so signal handlers may call it. */
void cli_notify(const char *msg);
/* Close the socket. */
void cli_notify_close(void);

#endif
