/* Raw images in and out of a disk: casdisk import and casdisk export.
 *
 * Both stream in chunks of CHUNK bytes and look at each block of the disk
 * on its own: a block of zeroes is never written (a disk's unwritten
 * blocks read as zeroes, and an exported file's holes too), so a sparse
 * image stays sparse both ways and a hole is never even read on import.
 * Progress goes to a struct progress in MiB.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

#define CHUNK (UINT32_C(4) << 20)       /* a multiple of every block size */
#define ZERO_STEP (UINT32_C(1) << 30)   /* cas_disk_zero takes 32-bit counts */

static void __attribute__((format (printf, 2, 3)))
image_error (struct progress *prog, const char *fmt, ...)
{
  va_list ap;
  const int saved = errno;

  progress_interrupt (prog);
  fprintf (stderr, "casdisk: ");
  va_start (ap, fmt);
  errno = saved;
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

static bool
all_zero (const uint8_t *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

static uint64_t
min64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

int
image_size (int fd, const char *path, uint64_t *size)
{
  struct stat st;
  off_t end;

  if (fstat (fd, &st) == -1) {
    fprintf (stderr, "casdisk: stat %s: %m\n", path);
    return -1;
  }
  if (S_ISREG (st.st_mode)) {
    *size = st.st_size;
    return 0;
  }
  end = lseek (fd, 0, SEEK_END);
  if (end == -1) {
    fprintf (stderr, "casdisk: %s: not a regular file or block device (%m)\n", path);
    return -1;
  }
  *size = end;
  return 0;
}

static void
report (struct progress *prog, uint64_t done, uint64_t total)
{
  progress_update (prog, done >> 20, (total + (1 << 20) - 1) >> 20);
}

/* Zero [off, off+len) of D. */
static int
zero_range (struct cas_disk *d, uint64_t off, uint64_t len)
{
  while (len > 0) {
    const uint32_t n = min64 (len, ZERO_STEP);
    if (cas_disk_zero (d, n, off) == -1)
      return -1;
    off += n;
    len -= n;
  }
  return 0;
}

/* Write BUF (N bytes, at disk offset OFF) block by block: runs of
 * non-zero blocks in one call; zero blocks skipped, or zeroed.
 */
static int
import_chunk (struct cas_disk *d, uint32_t bs, const uint8_t *buf, uint32_t n, uint64_t off,
              bool zero_holes, struct image_result *res)
{
  uint32_t run = 0, p = 0;      /* non-zero bytes waiting at buf + p - run */

  while (p < n) {
    const uint32_t len = min64 (n - p, bs - (off + p) % bs);
    if (all_zero (buf + p, len)) {
      if (run && cas_disk_write (d, buf + p - run, run, off + p - run) == -1)
        return -1;
      run = 0;
      if (zero_holes && cas_disk_zero (d, len, off + p) == -1)
        return -1;
      res->zero_bytes += len;
    }
    else {
      run += len;
      res->data_bytes += len;
    }
    p += len;
  }
  if (run && cas_disk_write (d, buf + n - run, run, off + n - run) == -1)
    return -1;
  return 0;
}

int
image_import (struct cas_disk *d, uint32_t bs, int fd, const char *path, uint64_t size,
              bool zero_holes, struct progress *prog, struct image_result *res)
{
  uint8_t *buf = malloc (CHUNK);
  uint64_t off = 0;
  int r = -1;

  memset (res, 0, sizeof *res);
  res->size = size;
  if (buf == NULL) {
    image_error (prog, "import: %m");
    return -1;
  }
  while (off < size) {
    /* A hole up to the next data (or the end): nothing to read.  Holes
     * and data are cut at block edges (the data's block read whole, its
     * hole parts reading as zeroes), so that a block holding both is
     * stored once, not once per piece with the older copies left dead.
     */
    off_t data = lseek (fd, off, SEEK_DATA);
    if (data == -1)
      data = errno == ENXIO ? (off_t) size : (off_t) off;   /* no hole information */
    const off_t first = data;   /* where the data really starts */
    data = (off_t) ((uint64_t) data / bs * bs);
    if ((uint64_t) data > off) {
      const uint64_t end = min64 (data, size);
      if (zero_holes && zero_range (d, off, end - off) == -1)
        goto out;
      res->zero_bytes += end - off;
      off = end;
      report (prog, off, size);
      continue;
    }
    off_t hole = lseek (fd, first, SEEK_HOLE);
    if (hole == -1 || (uint64_t) hole <= (uint64_t) first)
      hole = size;
    hole = (off_t) min64 ((uint64_t) hole + bs - 1 - ((uint64_t) hole + bs - 1) % bs, size);
    const uint32_t n = min64 (min64 (CHUNK, size - off), hole - off);
    for (uint32_t got = 0; got < n; ) {
      const ssize_t k = pread (fd, buf + got, n - got, off + got);
      if (k <= 0) {
        if (k == 0)
          errno = EIO;
        image_error (prog, "read %s at offset %" PRIu64 ": %s", path, off + got,
                     k == 0 ? "unexpected end of file" : strerror (errno));
        goto out;
      }
      got += k;
    }
    if (import_chunk (d, bs, buf, n, off, zero_holes, res) == -1)
      goto out;
    off += n;
    report (prog, off, size);
  }
  r = 0;
 out:
  free (buf);
  return r;
}

struct export_ctx {
  struct cas_disk *d;
  uint32_t bs;
  int fd;
  const char *path;
  bool sparse;                  /* a regular file: leave zero blocks as holes */
  uint8_t *buf;
  struct progress *prog;
  struct image_result *res;
};

static int
write_out (struct export_ctx *x, const uint8_t *p, size_t n, uint64_t off)
{
  while (n > 0) {
    const ssize_t k = pwrite (x->fd, p, n, off);
    if (k <= 0) {
      if (k == 0)
        errno = EIO;
      image_error (x->prog, "write %s at offset %" PRIu64 ": %m", x->path, off);
      return -1;
    }
    p += k;
    off += k;
    n -= k;
  }
  return 0;
}

static int
export_extent (void *opaque, uint64_t offset, uint64_t length, bool zero)
{
  struct export_ctx *x = opaque;
  const uint64_t end = offset + length;

  for (uint64_t off = offset; off < end; ) {
    const uint32_t n = min64 (CHUNK, end - off);
    if (zero) {
      if (!x->sparse) {
        memset (x->buf, 0, n);
        if (write_out (x, x->buf, n, off) == -1)
          return -1;
      }
      x->res->zero_bytes += n;
    }
    else {
      uint32_t run = 0, p = 0;
      if (cas_disk_read (x->d, x->buf, n, off) == -1)
        return -1;
      while (p < n) {
        const uint32_t len = min64 (n - p, x->bs - (off + p) % x->bs);
        if (x->sparse && all_zero (x->buf + p, len)) {
          if (run && write_out (x, x->buf + p - run, run, off + p - run) == -1)
            return -1;
          run = 0;
          x->res->zero_bytes += len;
        }
        else {
          run += len;
          x->res->data_bytes += len;
        }
        p += len;
      }
      if (run && write_out (x, x->buf + n - run, run, off + n - run) == -1)
        return -1;
    }
    off += n;
    report (x->prog, off, x->res->size);
  }
  return 0;
}

int
image_export (struct cas_disk *d, uint32_t bs, int fd, const char *path,
              struct progress *prog, struct image_result *res)
{
  struct export_ctx x = { .d = d, .bs = bs, .fd = fd, .path = path, .prog = prog, .res = res };
  const uint64_t size = cas_disk_size (d);
  struct stat st;
  int r = -1;

  memset (res, 0, sizeof *res);
  res->size = size;
  if (fstat (fd, &st) == -1) {
    image_error (prog, "stat %s: %m", path);
    return -1;
  }
  x.sparse = S_ISREG (st.st_mode);
  if (x.sparse && (ftruncate (fd, 0) == -1 || ftruncate (fd, size) == -1)) {
    image_error (prog, "truncate %s: %m", path);
    return -1;
  }
  x.buf = malloc (CHUNK);
  if (x.buf == NULL) {
    image_error (prog, "export: %m");
    return -1;
  }
  if (cas_disk_extents (d, 0, size, export_extent, &x) == -1)
    goto out;
  if (fsync (fd) == -1 && errno != EINVAL) {
    image_error (prog, "fsync %s: %m", path);
    goto out;
  }
  r = 0;
 out:
  free (x.buf);
  return r;
}
