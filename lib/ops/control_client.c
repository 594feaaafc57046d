/* The control channel, client side, and what both ends share: the
 * socket's address, errno names on the wire, sending whole buffers.  The
 * server is control.c; the protocol is docs/control.md.
 *
 * Paths: sun_path holds 107 bytes; a longer store path is reached through
 * /proc/self/fd/N of an O_PATH descriptor of the directory.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ops/control.h"
#include "util/log.h"
#include "util/util.h"

/* ---- errno names on the wire ---- */

static const struct { int err; const char *name; } errnames[] = {
  { EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" }, { E2BIG, "E2BIG" },
  { ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" },
  { EINVAL, "EINVAL" }, { ENOSPC, "ENOSPC" }, { EROFS, "EROFS" }, { ENOSYS, "ENOSYS" },
  { ETIMEDOUT, "ETIMEDOUT" }, { ECANCELED, "ECANCELED" }, { EUCLEAN, "EUCLEAN" },
  { ENOTSUP, "ENOTSUP" }, { EAGAIN, "EAGAIN" }, { EPROTO, "EPROTO" },
  { EOVERFLOW, "EOVERFLOW" }, { ENOTEMPTY, "ENOTEMPTY" },
};

const char *
cas_ctl_errno_name (int err)
{
  for (size_t i = 0; i < sizeof errnames / sizeof *errnames; i++)
    if (errnames[i].err == err)
      return errnames[i].name;
  return "EIO";
}

int
cas_ctl_errno_of (const char *name, size_t len)
{
  for (size_t i = 0; i < sizeof errnames / sizeof *errnames; i++)
    if (strlen (errnames[i].name) == len && memcmp (errnames[i].name, name, len) == 0)
      return errnames[i].err;
  return EIO;
}

/* ---- addresses ---- */

/* The address of DIR's control socket in *SA; *DIR_FD is an O_PATH
 * descriptor to close after use when the path is too long (else -1).
 */
int
cas_ctl_address (const char *dir, struct sockaddr_un *sa, int *dir_fd)
{
  memset (sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  *dir_fd = -1;
  if (strlen (dir) + 1 + strlen (CAS_CONTROL_SOCKET) < sizeof sa->sun_path) {
    snprintf (sa->sun_path, sizeof sa->sun_path, "%s/%s", dir, CAS_CONTROL_SOCKET);
    return 0;
  }
  *dir_fd = open (dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dir_fd == -1) {
    cas_error ("control: open %s: %m", dir);
    return -1;
  }
  snprintf (sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/%s", *dir_fd,
            CAS_CONTROL_SOCKET);
  return 0;
}

/* Send all of BUF; false if the peer is gone or stopped reading. */
bool
cas_ctl_send_all (int fd, const char *buf, size_t len, int flags)
{
  while (len > 0) {
    const ssize_t r = send (fd, buf, len, MSG_NOSIGNAL | flags);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    buf += r;
    len -= r;
  }
  return true;
}

/* ---- client ---- */

int
cas_control_connect (const char *dir)
{
  struct sockaddr_un sa;
  int dir_fd, fd, r;

  if (cas_ctl_address (dir, &sa, &dir_fd) == -1)
    return -1;
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    cas_error ("control: socket: %m");
    if (dir_fd >= 0)
      close (dir_fd);
    return -1;
  }
  do
    r = connect (fd, (struct sockaddr *) &sa, sizeof sa);
  while (r == -1 && errno == EINTR);
  if (dir_fd >= 0)
    close (dir_fd);
  if (r == 0)
    return fd;
  const int err = errno;
  close (fd);
  errno = err;
  if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR)
    return -1;                  /* no server: the caller decides */
  if (err == EACCES)
    cas_error ("%s/%s: permission denied: only the store's owner and root may "
               "control the server", dir, CAS_CONTROL_SOCKET);
  else
    cas_error ("%s/%s: connect: %m", dir, CAS_CONTROL_SOCKET);
  return -1;
}

int
cas_control_call (int fd, const char *request, cas_control_fn fn, void *opaque)
{
  CLEANUP_FREE char *buf = malloc (CTL_MAX_LINE + 1);
  size_t len = 0;
  const size_t rlen = strlen (request);

  if (buf == NULL) {
    cas_error ("control: %m");
    return -1;
  }
  if (rlen >= CTL_MAX_REQUEST || strchr (request, '\n')) {
    errno = EINVAL;
    cas_error ("control: a request is one line of less than %d bytes", CTL_MAX_REQUEST);
    return -1;
  }
  memcpy (buf, request, rlen);
  buf[rlen] = '\n';
  /* If this fails, the server may have refused us: read its answer. */
  cas_ctl_send_all (fd, buf, rlen + 1, 0);

  for (;;) {
    char *nl;
    while ((nl = memchr (buf, '\n', len)) == NULL) {
      struct pollfd p = { .fd = fd, .events = POLLIN };
      ssize_t n;
      if (len == CTL_MAX_LINE) {
        errno = EPROTO;
        cas_error ("control: a response line is longer than %d bytes", CTL_MAX_LINE);
        return -1;
      }
      const int r = poll (&p, 1, CAS_CONTROL_CLIENT_TIMEOUT * 1000);
      if (r == -1 && errno == EINTR)
        continue;
      if (r == 0) {
        errno = ETIMEDOUT;
        cas_error ("control: the server said nothing for %d s", CAS_CONTROL_CLIENT_TIMEOUT);
        return -1;
      }
      n = recv (fd, buf + len, CTL_MAX_LINE - len, 0);
      if (n == -1 && errno == EINTR)
        continue;
      if (n <= 0) {
        if (n == 0)
          errno = EPROTO;
        cas_error ("control: the server closed the connection without an answer%s%s",
                   n == 0 ? "" : ": ", n == 0 ? "" : strerror (errno));
        return -1;
      }
      len += n;
    }
    *nl = '\0';
    char *tag = buf, *rest = strchr (buf, ' ');
    if (rest)
      *rest++ = '\0';
    else
      rest = nl;                /* "" */
    if (strcmp (tag, "ok") == 0)
      return 0;
    if (strcmp (tag, "error") == 0) {
      const size_t nlen = strcspn (rest, " ");
      const int err = cas_ctl_errno_of (rest, nlen);
      cas_error ("%s", rest[nlen] ? rest + nlen + 1 : rest);
      errno = err;
      return -1;
    }
    if (fn && fn (opaque, tag, rest) == -1)
      return -1;
    len -= nl + 1 - buf;
    memmove (buf, nl + 1, len);
  }
}
