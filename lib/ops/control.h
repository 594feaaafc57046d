/* What the two ends of the control channel share (control.c, the server;
 * control_client.c, the client), and the server's start and stop.
 * Internal to the engine.
 */
#ifndef CAS_CONTROL_H
#define CAS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>

#include "casdisk.h"

#define CTL_MAX_REQUEST  4096   /* bytes of a request line, newline included */
#define CTL_MAX_LINE     16384  /* bytes of a response line, newline included */

/* The address of DIR's control socket in *SA; *DIR_FD is an O_PATH
 * descriptor to close after use when the path is too long (else -1).
 */
int cas_ctl_address (const char *dir, struct sockaddr_un *sa, int *dir_fd)
  __attribute__((nonnull));
/* Send all of BUF (MSG_NOSIGNAL | FLAGS); false if the peer is gone or
 * stopped reading.
 */
bool cas_ctl_send_all (int fd, const char *buf, size_t len, int flags);
/* "EINVAL" for EINVAL ("EIO" for errnos the protocol does not name), and back. */
const char *cas_ctl_errno_name (int err);
int cas_ctl_errno_of (const char *name, size_t len);

/* ---- control.c ---- */
struct cas_store;
struct cas_control;
/* Start the server thread (cas_store_start); stop and join it, removing
 * the socket and the metrics file (cas_store_close, before the GC stops).
 */
int cas_control_start (struct cas_store *s);
void cas_control_stop (struct cas_store *s);

#endif
