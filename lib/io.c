/* Synchronous file I/O with full transfers and one error convention. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "util.h"

int
cas_pread_full (int fd, void *buf, size_t len, uint64_t off, const char *what)
{
  char *p = buf;

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
cas_pwrite_full (int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
  const char *p = buf;

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
cas_fdatasync (int fd, const char *what)
{
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
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    cas_error ("create %s: %m", tmp);
    return -1;
  }
  if (cas_pwrite_full (fd, buf, len, 0, tmp) == -1 || cas_fdatasync (fd, tmp) == -1) {
    close (fd);
    unlink (tmp);
    return -1;
  }
  close (fd);
  if (rename (tmp, path) == -1) {
    cas_error ("rename %s: %m", tmp);
    unlink (tmp);
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
