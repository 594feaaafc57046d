/* Synchronous file I/O with full transfers and one error convention.
 *
 * This is the engine's only door to the backing storage, which makes it
 * the place for the I/O log of the crash harness: when the environment
 * variable CASDISK_IOLOG names a file, every operation that changes a
 * store file is appended to it *before* it is performed, one record per
 * write(2) (O_APPEND):
 *
 *   W <file> <offset> <length>\n<data>   pwrite
 *   S <file>\n                          fdatasync / fsync
 *   T <file> <size>\n                   ftruncate
 *   P <file> <offset> <length>\n        punch a hole
 *   C <file>\n                          create (or truncate to 0)
 *   U <file>\n                          unlink
 *   R <from> <to>\n                     rename
 *   D\n                                 fsync of the store directory
 *   X <label>\n                         the background thread's step
 *                                       changes (cas_io_context; "-" = none)
 *
 * <file> is the base name inside the store directory.  Logging before the
 * call means the log may show an operation that had not completed when the
 * process died, never miss one that had: a replay that treats every write
 * followed by a sync of its file as durable, and any other write as
 * possibly lost or torn, produces only states a real power loss could
 * produce (tests/crash/ does that).  Off unless the variable is set.
 *
 * Fault injection, for tests of I/O errors from the backing storage:
 * CASDISK_FAULT=OP:FILE:N makes every Nth OP (read, write or sync) on the
 * store files whose names start with FILE (data, journal, checkpoint...)
 * fail with EIO, e.g.
 * CASDISK_FAULT=read:data:20.  Off unless the variable is set.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <pthread.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "util.h"

/* ---- fault injection ---- */

enum fault_op { FAULT_NONE, FAULT_READ, FAULT_WRITE, FAULT_SYNC };
static enum fault_op fault_op;
static char fault_file[64];
static unsigned long fault_every;
static unsigned long fault_count;     /* atomic */
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void
fault_init (void)
{
  const char *spec = getenv ("CASDISK_FAULT");
  char op[16];

  if (spec == NULL ||
      sscanf (spec, "%15[a-z]:%63[a-z0-9.]:%lu", op, fault_file, &fault_every) != 3 ||
      fault_every == 0)
    return;
  fault_op = strcmp (op, "read") == 0 ? FAULT_READ :
    strcmp (op, "write") == 0 ? FAULT_WRITE : strcmp (op, "sync") == 0 ? FAULT_SYNC : FAULT_NONE;
}

static void fd_name (int fd, char *buf, size_t len);

/* Should this OP on FD fail?  Sets errno = EIO if so. */
static bool
fault (enum fault_op op, int fd)
{
  char name[256];

  pthread_once (&fault_once, fault_init);
  if (fault_op != op)
    return false;
  fd_name (fd, name, sizeof name);
  if (strncmp (name, fault_file, strlen (fault_file)) != 0 ||
      __atomic_add_fetch (&fault_count, 1, __ATOMIC_RELAXED) % fault_every != 0)
    return false;
  errno = EIO;
  return true;
}

/* ---- the I/O log ---- */

static int iolog_fd = -1;
static pthread_once_t iolog_once = PTHREAD_ONCE_INIT;

static void
iolog_open (void)
{
  const char *path = getenv ("CASDISK_IOLOG");

  if (path && *path)
    iolog_fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

/* The base name of the file behind FD. */
static void
fd_name (int fd, char *buf, size_t len)
{
  char link[64], target[4096];
  ssize_t n;

  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  target[n > 0 ? n : 0] = '\0';
  const char *slash = strrchr (target, '/');
  const char *base = slash ? slash + 1 : target;
  size_t n2 = strlen (base);
  if (n2 >= len)
    n2 = len - 1;
  memcpy (buf, base, n2);
  buf[n2] = '\0';
}

static const char *
base_name (const char *path)
{
  const char *slash = strrchr (path, '/');
  return slash ? slash + 1 : path;
}

/* Append one record: a header line and optional data, in one write. */
static void
iolog (const void *data, size_t len, const char *fmt, ...)
  __attribute__((format (printf, 3, 4)));
static void
iolog (const void *data, size_t len, const char *fmt, ...)
{
  char hdr[512];
  va_list ap;
  int n;

  pthread_once (&iolog_once, iolog_open);
  if (iolog_fd < 0)
    return;
  va_start (ap, fmt);
  n = vsnprintf (hdr, sizeof hdr, fmt, ap);
  va_end (ap);
  char *rec = malloc (n + len);
  if (rec == NULL)
    abort ();                   /* a log with a hole would prove nothing */
  memcpy (rec, hdr, n);
  if (len)
    memcpy (rec + n, data, len);
  if (write (iolog_fd, rec, n + len) != (ssize_t) (n + len))
    abort ();
  free (rec);
}

static bool
iolog_on (void)
{
  pthread_once (&iolog_once, iolog_open);
  return iolog_fd >= 0;
}

void
cas_io_context (const char *label)
{
  static __thread const char *current;

  if (label == current || !iolog_on ())
    return;
  current = label;
  iolog (NULL, 0, "X %s\n", label ? label : "-");
}

int
cas_create_file (const char *path, int *fdp)
{
  if (iolog_on ())
    iolog (NULL, 0, "C %s\n", base_name (path));
  *fdp = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (*fdp == -1) {
    cas_error ("create %s: %m", path);
    return -1;
  }
  return 0;
}

int
cas_ftruncate (int fd, uint64_t size, const char *what)
{
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (NULL, 0, "T %s %" PRIu64 "\n", name, size);
  }
  if (ftruncate (fd, size) == -1) {
    cas_error ("truncate %s: %m", what);
    return -1;
  }
  return 0;
}

int
cas_unlink (const char *path)
{
  if (iolog_on ())
    iolog (NULL, 0, "U %s\n", base_name (path));
  if (unlink (path) == -1 && errno != ENOENT) {
    cas_error ("unlink %s: %m", path);
    return -1;
  }
  return 0;
}

int
cas_pread_full (int fd, void *buf, size_t len, uint64_t off, const char *what)
{
  char *p = buf;

  if (fault (FAULT_READ, fd)) {
    cas_error ("read %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  while (len > 0) {
    const ssize_t r = pread (fd, p, len, off);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      cas_error ("read %s at offset %" PRIu64 ": %m", what, off);
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      cas_error ("read %s at offset %" PRIu64 ": file is truncated", what, off);
      return -1;
    }
    p += r;
    len -= r;
    off += r;
  }
  return 0;
}

int
cas_preadv_full (int fd, const struct iovec *iov_in, int iovcnt, uint64_t off, const char *what)
{
  struct iovec iov[8];
  int i = 0;

  if (iovcnt > 8) {
    errno = EINVAL;
    cas_error ("read %s: too many buffers (%d)", what, iovcnt);
    return -1;
  }
  memcpy (iov, iov_in, iovcnt * sizeof *iov);
  if (fault (FAULT_READ, fd)) {
    cas_error ("read %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  while (i < iovcnt) {
    ssize_t r = preadv (fd, iov + i, iovcnt - i, off);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      cas_error ("read %s at offset %" PRIu64 ": %m", what, off);
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      cas_error ("read %s at offset %" PRIu64 ": file is truncated", what, off);
      return -1;
    }
    off += r;
    while (i < iovcnt && (size_t) r >= iov[i].iov_len) {
      r -= iov[i].iov_len;
      i++;
    }
    if (i < iovcnt) {
      iov[i].iov_base = (char *) iov[i].iov_base + r;
      iov[i].iov_len -= r;
    }
  }
  return 0;
}

int
cas_pwrite_full (int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
  const char *p = buf;

  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (buf, len, "W %s %" PRIu64 " %zu\n", name, off, len);
  }
  if (fault (FAULT_WRITE, fd)) {
    cas_error ("write %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  while (len > 0) {
    const ssize_t r = pwrite (fd, p, len, off);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      cas_error ("write %s at offset %" PRIu64 ": %m", what, off);
      return -1;
    }
    p += r;
    len -= r;
    off += r;
  }
  return 0;
}

int
cas_io_before_write (int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (buf, len, "W %s %" PRIu64 " %zu\n", name, off, len);
  }
  if (fault (FAULT_WRITE, fd)) {
    cas_error ("write %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  return 0;
}

int
cas_io_before_read (int fd, uint64_t off, const char *what)
{
  if (fault (FAULT_READ, fd)) {
    cas_error ("read %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  return 0;
}

int
cas_fdatasync (int fd, const char *what)
{
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (NULL, 0, "S %s\n", name);
  }
  if (fault (FAULT_SYNC, fd) || fdatasync (fd) == -1) {
    cas_error ("fdatasync %s: %m", what);
    return -1;
  }
  return 0;
}

int
cas_fsync_dir (const char *dir)
{
  const int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  iolog (NULL, 0, "D\n");
  if (fd == -1) {
    cas_error ("open %s: %m", dir);
    return -1;
  }
  if (fsync (fd) == -1) {
    cas_error ("fsync %s: %m", dir);
    close (fd);
    return -1;
  }
  close (fd);
  return 0;
}

int
cas_punch_hole (int fd, uint64_t off, uint64_t len, const char *what)
{
  if (len == 0)
    return 0;
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (NULL, 0, "P %s %" PRIu64 " %" PRIu64 "\n", name, off, len);
  }
  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == -1) {
    if (errno == EOPNOTSUPP)
      return 0;                 /* the space stays allocated: still correct */
    cas_error ("punch hole in %s at offset %" PRIu64 ": %m", what, off);
    return -1;
  }
  return 0;
}

int
cas_read_file (const char *path, void **bufp, size_t *lenp)
{
  struct stat st;
  void *buf;
  const int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    cas_error ("open %s: %m", path);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    cas_error ("stat %s: %m", path);
    close (fd);
    return -1;
  }
  buf = malloc (st.st_size > 0 ? st.st_size : 1);
  if (buf == NULL) {
    cas_error ("malloc: %m");
    close (fd);
    return -1;
  }
  if (cas_pread_full (fd, buf, st.st_size, 0, path) == -1) {
    free (buf);
    close (fd);
    return -1;
  }
  close (fd);
  *bufp = buf;
  *lenp = st.st_size;
  return 0;
}

int
cas_write_file_atomic (const char *dir, const char *name, const void *buf, size_t len)
{
  char tmp[PATH_MAX], path[PATH_MAX];
  int fd;

  snprintf (tmp, sizeof tmp, "%s/%s.tmp", dir, name);
  snprintf (path, sizeof path, "%s/%s", dir, name);
  if (cas_create_file (tmp, &fd) == -1)
    return -1;
  if (cas_pwrite_full (fd, buf, len, 0, tmp) == -1 || cas_fdatasync (fd, tmp) == -1) {
    close (fd);
    cas_unlink (tmp);
    return -1;
  }
  close (fd);
  iolog (NULL, 0, "R %s %s\n", base_name (tmp), base_name (path));
  if (rename (tmp, path) == -1) {
    cas_error ("rename %s: %m", tmp);
    cas_unlink (tmp);
    return -1;
  }
  return cas_fsync_dir (dir);
}

int
cas_file_usage (const char *path, uint64_t *allocated, uint64_t *apparent)
{
  struct stat st;

  if (stat (path, &st) == -1) {
    if (errno == ENOENT) {
      *allocated = *apparent = 0;
      return 0;
    }
    cas_error ("stat %s: %m", path);
    return -1;
  }
  *allocated = (uint64_t) st.st_blocks * 512;
  *apparent = st.st_size;
  return 0;
}
