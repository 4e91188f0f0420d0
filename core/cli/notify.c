/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* sd_notify without libsystemd: systemd passes an AF_UNIX datagram socket
 * path in $NOTIFY_SOCKET ('@' first: the abstract namespace) and reads
 * newline-separated KEY=VALUE states from it. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "notify.h"

static int g_fd = -1;
static struct sockaddr_un g_addr;
static socklen_t g_addrlen;

/* Take $NOTIFY_SOCKET (unset for handlers) and open a datagram socket to it. 0 without one or
 * when ready; -1 with errbuf filled when it is unusable. */
int
cli_notify_open(char *errbuf, size_t errlen)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof g_addr.sun_path) {
        return cli_errbuf(errbuf, errlen, -1, "NOTIFY_SOCKET '%s' is not a unix socket path", path);
    }
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sun_family = AF_UNIX;
    memcpy(g_addr.sun_path, path, n);
    if (path[0] == '@')
        g_addr.sun_path[0] = '\0';
    g_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    g_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (g_fd < 0) {
        char eb[CLI_ERRNO_BYTES];
        return cli_errbuf(errbuf, errlen, -1, "NOTIFY_SOCKET: socket: %s", cli_syserr(errno, eb));
    }
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

/* Send msg to systemd in one sendto, keeping errno: async-signal-safe. Nothing without a
 * socket. */
void
cli_notify(const char *msg)
{
    if (g_fd < 0)
        return;
    int saved = errno; /* signal handlers must not change errno */
    ssize_t rc =
        sendto(g_fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&g_addr, g_addrlen);
    (void)rc; /* best effort, as sd_notify: systemd's timeouts cover a lost state */
    errno = saved;
}

/* Close the notify socket; later cli_notify calls do nothing. */
void
cli_notify_close(void)
{
    if (g_fd >= 0)
        close(g_fd);
    g_fd = -1;
}
