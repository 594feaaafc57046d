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
 * CASDISK_FAULT=SPEC[,SPEC...] (at most CAS_FAULT_MAX specs), each
 *
 *   OP:FILE:N[:ERRNO][:WHEN]
 *
 *   OP     read, write, sync (fdatasync), truncate (ftruncate), punch (hole
 *          punch), create, rename (matched on the old name, e.g.
 *          checkpoint.tmp), unlink, dirsync (fsync of the store directory:
 *          FILE is matched against "dir")
 *   FILE   a prefix of the base name of the store file (data, journal,
 *          checkpoint, checkpoint.tmp, ...); "*" matches every file
 *   N      counts the calls of OP on matching files (from 1), per spec
 *   ERRNO  eio (default) or enospc
 *   WHEN   every (default): calls N, 2N, 3N... fail;
 *          once: only call N fails;
 *          sticky: call N and every later one fail (a file system that
 *          stays full, a disk that died)
 *
 * e.g. CASDISK_FAULT=read:data:20 (every 20th read of the data file gets
 * EIO, as before these options existed), CASDISK_FAULT=write:journal:3:
 * enospc:sticky, CASDISK_FAULT=sync:data:2:once,punch:data:1.  An injected
 * failure is reported with "(injected)" in its message; the operation is
 * neither performed nor written to the I/O log (a state a real error can
 * leave, and one the power-loss replay models exactly).
 * A spec that does not parse is reported and the variable ignored.  Off
 * unless the variable is set.
 *
 * CASDISK_FAULT_ARM=PATH holds the faults back until the file PATH exists
 * (checked at each matching call until it does; calls before do not
 * count), so that a test can aim them at one phase: create PATH just
 * before the client's flush, the garbage collection, the shutdown...
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

#include "storage/io.h"
#include "util/log.h"
#include "util/util.h"

/* ---- fault injection ---- */

static const char *const fault_op_names[] = {
  [CAS_FAULT_READ] = "read", [CAS_FAULT_WRITE] = "write", [CAS_FAULT_SYNC] = "sync",
  [CAS_FAULT_TRUNCATE] = "truncate", [CAS_FAULT_PUNCH] = "punch",
  [CAS_FAULT_CREATE] = "create", [CAS_FAULT_RENAME] = "rename",
  [CAS_FAULT_UNLINK] = "unlink", [CAS_FAULT_DIRSYNC] = "dirsync",
};

static struct cas_fault faults[CAS_FAULT_MAX];
static size_t nfaults;
static unsigned long fault_calls[CAS_FAULT_MAX];    /* atomic */
static unsigned long fault_fired;                   /* atomic */
static char fault_arm_path[4096];
static bool fault_armed;                            /* atomic */
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

/* Parse one OP:FILE:N[:ERRNO][:WHEN] of length LEN at P. */
static int
fault_parse_one (const char *p, size_t len, struct cas_fault *f)
{
  char buf[128], *fields[6], *save = NULL, *tok, *end;
  size_t n = 0;

  if (len == 0 || len >= sizeof buf)
    return -1;
  memcpy (buf, p, len);
  buf[len] = '\0';
  if (buf[len - 1] == ':' || strstr (buf, "::"))
    return -1;                  /* strtok_r would hide an empty field */
  for (tok = strtok_r (buf, ":", &save); tok; tok = strtok_r (NULL, ":", &save)) {
    if (n == 5)
      return -1;
    fields[n++] = tok;
  }
  if (n < 3 || buf[0] == ':')
    return -1;
  memset (f, 0, sizeof *f);
  f->op = CAS_FAULT_NONE;
  for (size_t i = 1; i < sizeof fault_op_names / sizeof fault_op_names[0]; i++)
    if (fault_op_names[i] && strcmp (fields[0], fault_op_names[i]) == 0)
      f->op = i;
  if (f->op == CAS_FAULT_NONE)
    return -1;
  if (strlen (fields[1]) >= sizeof f->file)
    return -1;
  for (const char *c = fields[1]; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
          *c == '-' || *c == '_'))
      if (!(c == fields[1] && c[0] == '*' && c[1] == '\0'))
        return -1;
  strcpy (f->file, strcmp (fields[1], "*") == 0 ? "" : fields[1]);
  if (fields[2][0] < '0' || fields[2][0] > '9')
    return -1;
  errno = 0;
  f->n = strtoul (fields[2], &end, 10);
  if (errno || *end || f->n == 0)
    return -1;
  f->err = EIO;
  f->when = CAS_FAULT_EVERY;
  bool have_err = false, have_when = false;
  for (size_t i = 3; i < n; i++) {
    if (!have_err && strcmp (fields[i], "eio") == 0)
      f->err = EIO, have_err = true;
    else if (!have_err && strcmp (fields[i], "enospc") == 0)
      f->err = ENOSPC, have_err = true;
    else if (!have_when && strcmp (fields[i], "every") == 0)
      f->when = CAS_FAULT_EVERY, have_when = true;
    else if (!have_when && strcmp (fields[i], "once") == 0)
      f->when = CAS_FAULT_ONCE, have_when = true;
    else if (!have_when && strcmp (fields[i], "sticky") == 0)
      f->when = CAS_FAULT_STICKY, have_when = true;
    else
      return -1;
  }
  return 0;
}

int
cas_fault_parse (const char *spec, struct cas_fault *out, size_t max)
{
  size_t k = 0;
  const char *p = spec;

  for (;;) {
    const char *comma = strchr (p, ',');
    const size_t len = comma ? (size_t) (comma - p) : strlen (p);
    if (k == max || fault_parse_one (p, len, &out[k]) == -1) {
      errno = EINVAL;
      return -1;
    }
    k++;
    if (comma == NULL)
      return k;
    p = comma + 1;
  }
}

bool
cas_fault_hit (const struct cas_fault *f, unsigned long call)
{
  switch (f->when) {
  case CAS_FAULT_ONCE: return call == f->n;
  case CAS_FAULT_STICKY: return call >= f->n;
  default: return call % f->n == 0;
  }
}

static void
fault_init (void)
{
  const char *spec = getenv ("CASDISK_FAULT");
  int r;

  if (spec == NULL || *spec == '\0')
    return;
  r = cas_fault_parse (spec, faults, CAS_FAULT_MAX);
  if (r == -1) {
    cas_error ("CASDISK_FAULT=%s: not OP:FILE:N[:eio|enospc][:every|once|sticky][,...]; "
               "no faults injected", spec);
    return;
  }
  nfaults = r;
  const char *arm = getenv ("CASDISK_FAULT_ARM");
  if (arm && *arm)
    snprintf (fault_arm_path, sizeof fault_arm_path, "%s", arm);
  else
    fault_armed = true;
}

/* Are the faults armed (CASDISK_FAULT_ARM)? */
static bool
fault_is_armed (void)
{
  if (__atomic_load_n (&fault_armed, __ATOMIC_ACQUIRE))
    return true;
  const int saved = errno;
  const bool now = access (fault_arm_path, F_OK) == 0;
  errno = saved;
  if (now)
    __atomic_store_n (&fault_armed, true, __ATOMIC_RELEASE);
  return now;
}

unsigned long
cas_fault_count (void)
{
  return __atomic_load_n (&fault_fired, __ATOMIC_RELAXED);
}

static void fd_name (int fd, char *buf, size_t len);

/* Should this OP on the file NAME fail?  Sets errno if so. */
static bool
fault_name (enum cas_fault_op op, const char *name)
{
  bool hit = false;
  int err = 0;

  pthread_once (&fault_once, fault_init);
  for (size_t i = 0; i < nfaults; i++) {
    const struct cas_fault *f = &faults[i];
    if (f->op != op || strncmp (name, f->file, strlen (f->file)) != 0 || !fault_is_armed ())
      continue;
    const unsigned long call = __atomic_add_fetch (&fault_calls[i], 1, __ATOMIC_RELAXED);
    if (!hit && cas_fault_hit (f, call)) {
      hit = true;
      err = f->err;
    }
  }
  if (!hit)
    return false;
  __atomic_add_fetch (&fault_fired, 1, __ATOMIC_RELAXED);
  errno = err;
  return true;
}

/* The same for an OP on FD. */
static bool
fault (enum cas_fault_op op, int fd)
{
  char name[256];

  pthread_once (&fault_once, fault_init);
  if (nfaults == 0)
    return false;
  fd_name (fd, name, sizeof name);
  return fault_name (op, name);
}

static const char *base_name (const char *path);

/* The same for an OP on the file at PATH. */
static bool
fault_path (enum cas_fault_op op, const char *path)
{
  pthread_once (&fault_once, fault_init);
  return nfaults > 0 && fault_name (op, base_name (path));
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
  if (fault_path (CAS_FAULT_CREATE, path)) {
    cas_error ("create %s: %m (injected)", path);
    *fdp = -1;
    return -1;
  }
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
  if (fault (CAS_FAULT_TRUNCATE, fd)) {
    cas_error ("truncate %s: %m (injected)", what);
    return -1;
  }
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
  if (fault_path (CAS_FAULT_UNLINK, path)) {
    cas_error ("unlink %s: %m (injected)", path);
    return -1;
  }
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

  if (fault (CAS_FAULT_READ, fd)) {
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
  if (fault (CAS_FAULT_READ, fd)) {
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

  if (fault (CAS_FAULT_WRITE, fd)) {
    cas_error ("write %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (buf, len, "W %s %" PRIu64 " %zu\n", name, off, len);
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
  if (fault (CAS_FAULT_WRITE, fd)) {
    cas_error ("write %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (buf, len, "W %s %" PRIu64 " %zu\n", name, off, len);
  }
  return 0;
}

int
cas_io_before_read (int fd, uint64_t off, const char *what)
{
  if (fault (CAS_FAULT_READ, fd)) {
    cas_error ("read %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
  return 0;
}

int
cas_fdatasync (int fd, const char *what)
{
  if (fault (CAS_FAULT_SYNC, fd)) {
    cas_error ("fdatasync %s: %m (injected)", what);
    return -1;
  }
  if (iolog_on ()) {
    char name[256];
    fd_name (fd, name, sizeof name);
    iolog (NULL, 0, "S %s\n", name);
  }
  if (fdatasync (fd) == -1) {
    cas_error ("fdatasync %s: %m", what);
    return -1;
  }
  return 0;
}

int
cas_fsync_dir (const char *dir)
{
  const int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd != -1 && fault_name (CAS_FAULT_DIRSYNC, "dir")) {
    const int saved = errno;
    cas_error ("fsync %s: %m (injected)", dir);
    close (fd);
    errno = saved;
    return -1;
  }
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
  if (fault (CAS_FAULT_PUNCH, fd)) {
    cas_error ("punch hole in %s at offset %" PRIu64 ": %m (injected)", what, off);
    return -1;
  }
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
  if (fault_path (CAS_FAULT_RENAME, tmp)) {
    const int saved = errno;
    cas_error ("rename %s: %m (injected)", tmp);
    cas_unlink (tmp);
    errno = saved;
    return -1;
  }
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
