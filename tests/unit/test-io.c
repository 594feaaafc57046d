/* Unit tests for io.c: full transfers, error convention (-1 + errno),
 * atomic file replacement, hole punching, usage, and the CASDISK_IOLOG
 * record format used by the crash harness.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "io.h"

static char dir[256];
static char last_error[1024];

static void
capture (bool error, const char *msg)
{
  if (error)
    snprintf (last_error, sizeof last_error, "%s", msg);
}

static void
setup (void)
{
  const char *tmp = getenv ("TMPDIR");

  snprintf (dir, sizeof dir, "%s/casdisk-io-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null (mkdtemp (dir));
  cas_set_log (capture);
  last_error[0] = '\0';
}

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

static void
teardown (void)
{
  nftw (dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite (io, .init = setup, .fini = teardown);

static char *
path_in (const char *name)
{
  static char p[2][PATH_MAX];
  static int k;

  k ^= 1;
  snprintf (p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static void
fill (uint8_t *p, size_t len, unsigned seed)
{
  for (size_t i = 0; i < len; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = seed >> 16;
  }
}

Test (io, write_read_round_trip)
{
  static uint8_t a[1 << 20], b[1 << 20];
  int fd;

  fill (a, sizeof a, 1);
  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, a, sizeof a, 12345, "f"), 0);
  cr_assert_eq (cas_pread_full (fd, b, sizeof b, 12345, "f"), 0);
  cr_assert_arr_eq (a, b, sizeof a);
  /* The gap before reads as zeroes. */
  cr_assert_eq (cas_pread_full (fd, b, 12345, 0, "f"), 0);
  for (int i = 0; i < 12345; i++)
    cr_assert_eq (b[i], 0);
  /* Zero-length transfers succeed and do nothing. */
  cr_assert_eq (cas_pread_full (fd, b, 0, 99999999, "f"), 0);
  cr_assert_eq (cas_pwrite_full (fd, a, 0, 0, "f"), 0);
  close (fd);
}

Test (io, read_past_eof_is_eio)
{
  uint8_t buf[100] = { 1 };
  int fd;

  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, buf, 50, 0, "myfile"), 0);
  errno = 0;
  cr_assert_eq (cas_pread_full (fd, buf, 100, 0, "myfile"), -1);
  cr_assert_eq (errno, EIO);
  cr_assert (strstr (last_error, "myfile") != NULL, "message does not name the file: %s",
             last_error);
  cr_assert (strstr (last_error, "truncated") != NULL, "message: %s", last_error);
  errno = 0;
  cr_assert_eq (cas_pread_full (fd, buf, 1, 50, "myfile"), -1);
  cr_assert_eq (errno, EIO);
  close (fd);
}

Test (io, bad_fd_errors_keep_errno)
{
  uint8_t buf[16] = { 0 };
  int fd;

  errno = 0;
  cr_assert_eq (cas_pread_full (-1, buf, sizeof buf, 0, "nothing"), -1);
  cr_assert_eq (errno, EBADF);
  errno = 0;
  cr_assert_eq (cas_pwrite_full (-1, buf, sizeof buf, 0, "nothing"), -1);
  cr_assert_eq (errno, EBADF);
  errno = 0;
  cr_assert_eq (cas_fdatasync (-1, "nothing"), -1);
  cr_assert_eq (errno, EBADF);
  errno = 0;
  cr_assert_eq (cas_ftruncate (-1, 0, "nothing"), -1);
  cr_assert_eq (errno, EBADF);

  /* Writing through a read-only descriptor. */
  cr_assert_eq (cas_create_file (path_in ("ro"), &fd), 0);
  close (fd);
  fd = open (path_in ("ro"), O_RDONLY);
  cr_assert_geq (fd, 0);
  errno = 0;
  cr_assert_eq (cas_pwrite_full (fd, buf, sizeof buf, 0, "ro"), -1);
  cr_assert_eq (errno, EBADF);
  close (fd);

  /* A pipe cannot be read at an offset. */
  int p[2];
  cr_assert_eq (pipe (p), 0);
  errno = 0;
  cr_assert_eq (cas_pread_full (p[0], buf, 1, 0, "pipe"), -1);
  cr_assert_eq (errno, ESPIPE);
  close (p[0]);
  close (p[1]);
}

Test (io, create_truncates)
{
  uint8_t buf[4096] = { 7 };
  uint64_t alloc, size;
  int fd;

  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, buf, sizeof buf, 0, "f"), 0);
  close (fd);
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc, &size), 0);
  cr_assert_eq (size, 4096);
  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  close (fd);
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc, &size), 0);
  cr_assert_eq (size, 0);
  errno = 0;
  cr_assert_eq (cas_create_file (path_in ("no/such/dir"), &fd), -1);
  cr_assert_eq (errno, ENOENT);
}

Test (io, ftruncate_sets_size)
{
  uint64_t alloc, size;
  int fd;

  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_ftruncate (fd, 1 << 20, "f"), 0);
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc, &size), 0);
  cr_assert_eq (size, 1 << 20);
  cr_assert_lt (alloc, 1 << 20, "ftruncate allocated %" PRIu64 " bytes", alloc);
  cr_assert_eq (cas_ftruncate (fd, 100, "f"), 0);
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc, &size), 0);
  cr_assert_eq (size, 100);
  close (fd);
}

Test (io, read_file_whole)
{
  static uint8_t a[300000];
  void *buf;
  size_t len;
  int fd;

  fill (a, sizeof a, 3);
  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, a, sizeof a, 0, "f"), 0);
  close (fd);
  cr_assert_eq (cas_read_file (path_in ("f"), &buf, &len), 0);
  cr_assert_eq (len, sizeof a);
  cr_assert_arr_eq (buf, a, sizeof a);
  free (buf);

  /* Empty file: a valid (freeable) buffer of length 0. */
  cr_assert_eq (cas_create_file (path_in ("empty"), &fd), 0);
  close (fd);
  buf = NULL;
  len = 99;
  cr_assert_eq (cas_read_file (path_in ("empty"), &buf, &len), 0);
  cr_assert_eq (len, 0);
  cr_assert_not_null (buf);
  free (buf);

  errno = 0;
  cr_assert_eq (cas_read_file (path_in ("missing"), &buf, &len), -1);
  cr_assert_eq (errno, ENOENT);
}

Test (io, write_file_atomic_replaces)
{
  void *buf;
  size_t len;

  cr_assert_eq (cas_write_file_atomic (dir, "meta", "first version", 13), 0);
  cr_assert_eq (cas_read_file (path_in ("meta"), &buf, &len), 0);
  cr_assert_eq (len, 13);
  cr_assert_arr_eq (buf, "first version", 13);
  free (buf);
  cr_assert_eq (cas_write_file_atomic (dir, "meta", "v2", 2), 0);
  cr_assert_eq (cas_read_file (path_in ("meta"), &buf, &len), 0);
  cr_assert_eq (len, 2);
  cr_assert_arr_eq (buf, "v2", 2);
  free (buf);
  /* No temporary file is left behind. */
  cr_assert_eq (access (path_in ("meta.tmp"), F_OK), -1);
  cr_assert_eq (errno, ENOENT);
}

Test (io, write_file_atomic_failure)
{
  errno = 0;
  cr_assert_eq (cas_write_file_atomic (path_in ("nodir"), "meta", "x", 1), -1);
  cr_assert_eq (errno, ENOENT);

  /* The target is a non-empty directory: rename fails, the temporary
   * file is removed and the directory is untouched.
   */
  cr_assert_eq (mkdir (path_in ("target"), 0700), 0);
  cr_assert_eq (mkdir (path_in ("target/sub"), 0700), 0);
  errno = 0;
  cr_assert_eq (cas_write_file_atomic (dir, "target", "x", 1), -1);
  cr_assert (errno == EISDIR || errno == ENOTEMPTY, "errno %d", errno);
  cr_assert_eq (access (path_in ("target.tmp"), F_OK), -1);
  cr_assert_eq (access (path_in ("target/sub"), F_OK), 0);
}

Test (io, unlink)
{
  int fd;

  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  close (fd);
  cr_assert_eq (cas_unlink (path_in ("f")), 0);
  cr_assert_eq (access (path_in ("f"), F_OK), -1);
  /* A missing file is not an error. */
  cr_assert_eq (cas_unlink (path_in ("f")), 0);
  /* A directory is. */
  cr_assert_eq (mkdir (path_in ("d"), 0700), 0);
  errno = 0;
  cr_assert_eq (cas_unlink (path_in ("d")), -1);
  cr_assert (errno == EISDIR || errno == EPERM, "errno %d", errno);
}

Test (io, fsync_dir)
{
  cr_assert_eq (cas_fsync_dir (dir), 0);
  errno = 0;
  cr_assert_eq (cas_fsync_dir (path_in ("missing")), -1);
  cr_assert_eq (errno, ENOENT);
}

Test (io, punch_hole_reads_zero_and_frees)
{
  static uint8_t a[1 << 20], b[1 << 20];
  uint64_t alloc0, alloc1, size;
  int fd;

  fill (a, sizeof a, 5);
  cr_assert_eq (cas_create_file (path_in ("f"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, a, sizeof a, 0, "f"), 0);
  cr_assert_eq (cas_fdatasync (fd, "f"), 0);
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc0, &size), 0);
  cr_assert_geq (alloc0, sizeof a);
  cr_assert_eq (cas_punch_hole (fd, 65536, 512 * 1024, "f"), 0);
  cr_assert_eq (cas_punch_hole (fd, 0, 0, "f"), 0);   /* nothing */
  cr_assert_eq (cas_file_usage (path_in ("f"), &alloc1, &size), 0);
  cr_assert_eq (size, sizeof a, "punching changed the file size");
  cr_assert_leq (alloc1, alloc0 - 512 * 1024, "allocated %" PRIu64 " -> %" PRIu64,
                 alloc0, alloc1);
  cr_assert_eq (cas_pread_full (fd, b, sizeof b, 0, "f"), 0);
  cr_assert_arr_eq (b, a, 65536);
  for (size_t i = 65536; i < 65536 + 512 * 1024; i++)
    cr_assert_eq (b[i], 0, "byte %zu not zero after punch", i);
  cr_assert_arr_eq (b + 65536 + 512 * 1024, a + 65536 + 512 * 1024,
                    sizeof a - 65536 - 512 * 1024);
  close (fd);
  errno = 0;
  cr_assert_eq (cas_punch_hole (fd, 0, 4096, "f"), -1);
  cr_assert_eq (errno, EBADF);
}

Test (io, file_usage_missing_is_zero)
{
  uint64_t alloc = 1, size = 1;

  cr_assert_eq (cas_file_usage (path_in ("missing"), &alloc, &size), 0);
  cr_assert_eq (alloc, 0);
  cr_assert_eq (size, 0);
  errno = 0;
  cr_assert_eq (cas_file_usage (path_in ("missing/below"), &alloc, &size), 0);
}

/* ---- the I/O log ---- */

Test (io, iolog_records)
{
  char logpath[PATH_MAX + 16];
  void *buf;
  size_t len;
  int fd;

  /* Each Criterion test runs in its own process, so setting the variable
   * before the first I/O call turns the log on for this test only.
   */
  snprintf (logpath, sizeof logpath, "%s.iolog", dir);
  setenv ("CASDISK_IOLOG", logpath, 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, "hello", 5, 512, "data"), 0);
  cr_assert_eq (cas_fdatasync (fd, "data"), 0);
  cr_assert_eq (cas_ftruncate (fd, 8192, "data"), 0);
  cr_assert_eq (cas_punch_hole (fd, 4096, 4096, "data"), 0);
  close (fd);
  cr_assert_eq (cas_write_file_atomic (dir, "meta", "AB", 2), 0);
  cr_assert_eq (cas_unlink (path_in ("data")), 0);
  unsetenv ("CASDISK_IOLOG");

  cr_assert_eq (cas_read_file (logpath, &buf, &len), 0);
  unlink (logpath);
  const char want[] =
    "C data\n"
    "W data 512 5\nhello"
    "S data\n"
    "T data 8192\n"
    "P data 4096 4096\n"
    "C meta.tmp\n"
    "W meta.tmp 0 2\nAB"
    "S meta.tmp\n"
    "R meta.tmp meta\n"
    "D\n"
    "U data\n";
  cr_assert_eq (len, sizeof want - 1, "log is %zu bytes:\n%.*s", len, (int) len, (char *) buf);
  cr_assert_arr_eq (buf, want, len, "log:\n%.*s", (int) len, (char *) buf);
  free (buf);
}

Test (io, iolog_off_by_default)
{
  char logpath[PATH_MAX + 16];
  int fd;

  unsetenv ("CASDISK_IOLOG");
  snprintf (logpath, sizeof logpath, "%s.iolog", dir);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, "x", 1, 0, "data"), 0);
  close (fd);
  cr_assert_eq (access (logpath, F_OK), -1);
}
