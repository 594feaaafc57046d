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
#include "storage/io.h"

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

/* ---- fault injection (CASDISK_FAULT) ---- */

Test (io, fault_parse_valid)
{
  struct cas_fault f[CAS_FAULT_MAX];

  /* The original syntax: every Nth call, EIO. */
  cr_assert_eq (cas_fault_parse ("read:data:20", f, CAS_FAULT_MAX), 1);
  cr_assert_eq (f[0].op, CAS_FAULT_READ);
  cr_assert_str_eq (f[0].file, "data");
  cr_assert_eq (f[0].n, 20);
  cr_assert_eq (f[0].err, EIO);
  cr_assert_eq (f[0].when, CAS_FAULT_EVERY);

  cr_assert_eq (cas_fault_parse ("write:journal:3:enospc:sticky", f, CAS_FAULT_MAX), 1);
  cr_assert_eq (f[0].op, CAS_FAULT_WRITE);
  cr_assert_str_eq (f[0].file, "journal");
  cr_assert_eq (f[0].n, 3);
  cr_assert_eq (f[0].err, ENOSPC);
  cr_assert_eq (f[0].when, CAS_FAULT_STICKY);

  /* Options in either order, either alone. */
  cr_assert_eq (cas_fault_parse ("sync:data:2:once:eio", f, CAS_FAULT_MAX), 1);
  cr_assert_eq (f[0].err, EIO);
  cr_assert_eq (f[0].when, CAS_FAULT_ONCE);
  cr_assert_eq (cas_fault_parse ("sync:data:2:once", f, CAS_FAULT_MAX), 1);
  cr_assert_eq (f[0].when, CAS_FAULT_ONCE);
  cr_assert_eq (cas_fault_parse ("sync:data:2:enospc", f, CAS_FAULT_MAX), 1);
  cr_assert_eq (f[0].err, ENOSPC);
  cr_assert_eq (f[0].when, CAS_FAULT_EVERY);
  cr_assert_eq (cas_fault_parse ("write:data:1:every", f, CAS_FAULT_MAX), 1);

  /* Every op, "*" for every file, several specs. */
  cr_assert_eq (cas_fault_parse ("truncate:data:1,punch:data:2,create:checkpoint.tmp:1,"
                                 "rename:checkpoint.tmp:1,unlink:*:4,dirsync:dir:1",
                                 f, CAS_FAULT_MAX), 6);
  cr_assert_eq (f[0].op, CAS_FAULT_TRUNCATE);
  cr_assert_eq (f[1].op, CAS_FAULT_PUNCH);
  cr_assert_eq (f[1].n, 2);
  cr_assert_eq (f[2].op, CAS_FAULT_CREATE);
  cr_assert_str_eq (f[2].file, "checkpoint.tmp");
  cr_assert_eq (f[3].op, CAS_FAULT_RENAME);
  cr_assert_eq (f[4].op, CAS_FAULT_UNLINK);
  cr_assert_str_eq (f[4].file, "");
  cr_assert_eq (f[5].op, CAS_FAULT_DIRSYNC);
}

Test (io, fault_parse_invalid)
{
  struct cas_fault f[2];
  static const char *const bad[] = {
    "", "read", "read:data", "read:data:", "read:data:0", "read:data:x", "read:data:-1",
    "read:data:3x", "fsync:data:1", "READ:data:1", "read::1", ":data:1",
    "read:data:1:", "read:data:1:eagain", "read:data:1:eio:enospc",
    "read:data:1:once:sticky", "read:data:1:eio:once:x", "read:da/ta:1", "read:d*:1",
    "read:data:1,", ",read:data:1", "read:data:1,,write:data:1",
    "read:data:1,write:data:1,sync:data:1",           /* more than max (2) */
    "read:0123456789012345678901234567890123456789012345678901234567890123456789:1",
  };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    cr_assert_eq (cas_fault_parse (bad[i], f, 2), -1, "\"%s\" parsed", bad[i]);
    cr_assert_eq (errno, EINVAL, "\"%s\"", bad[i]);
  }
  cr_assert_eq (cas_fault_parse ("read:data:1,write:data:1", f, 2), 2);
}

Test (io, fault_hit_modes)
{
  struct cas_fault f;
  static const char every[] = "0010010010", once[] = "0010000000", sticky[] = "0011111111";

  cr_assert_eq (cas_fault_parse ("read:data:3", &f, 1), 1);
  for (unsigned long c = 1; c <= 10; c++)
    cr_assert_eq (cas_fault_hit (&f, c), every[c - 1] == '1', "every, call %lu", c);
  cr_assert_eq (cas_fault_parse ("read:data:3:once", &f, 1), 1);
  for (unsigned long c = 1; c <= 10; c++)
    cr_assert_eq (cas_fault_hit (&f, c), once[c - 1] == '1', "once, call %lu", c);
  cr_assert_eq (cas_fault_parse ("read:data:3:sticky", &f, 1), 1);
  for (unsigned long c = 1; c <= 10; c++)
    cr_assert_eq (cas_fault_hit (&f, c), sticky[c - 1] == '1', "sticky, call %lu", c);
}

/* Write a byte at offset I of FD N times; return the calls that failed as
 * a string of 0/1, and their errno in *ERR.
 */
static void
write_pattern (int fd, int n, char *out, int *err)
{
  for (int i = 0; i < n; i++) {
    errno = 0;
    const int r = cas_pwrite_full (fd, "w", 1, i, "f");
    out[i] = r == -1 ? '1' : '0';
    if (r == -1)
      *err = errno;
  }
  out[n] = '\0';
}

Test (io, fault_write_once_enospc)
{
  char got[16];
  int fd, err = 0;
  uint8_t buf[6];

  setenv ("CASDISK_FAULT", "write:data:2:enospc:once", 1);
  cr_assert_eq (cas_create_file (path_in ("data.x"), &fd), 0);
  write_pattern (fd, 6, got, &err);
  cr_assert_str_eq (got, "010000");
  cr_assert_eq (err, ENOSPC);
  cr_assert_eq (cas_fault_count (), 1);
  cr_assert (strstr (last_error, "(injected)"), "message: %s", last_error);
  /* The failed write was not performed. */
  cr_assert_eq (cas_pread_full (fd, buf, 6, 0, "f"), 0);
  cr_assert_arr_eq (buf, "w\0wwww", 6);
  close (fd);
}

Test (io, fault_write_sticky_and_file_prefix)
{
  char got[16];
  int fd, other, err = 0;

  setenv ("CASDISK_FAULT", "write:journal:3:enospc:sticky", 1);
  cr_assert_eq (cas_create_file (path_in ("journal.1"), &fd), 0);
  cr_assert_eq (cas_create_file (path_in ("data"), &other), 0);
  write_pattern (fd, 8, got, &err);
  cr_assert_str_eq (got, "00111111");
  cr_assert_eq (err, ENOSPC);
  /* Other files are not affected, nor do they count. */
  write_pattern (other, 8, got, &err);
  cr_assert_str_eq (got, "00000000");
  cr_assert_eq (cas_fault_count (), 6);
  close (fd);
  close (other);
}

Test (io, fault_every_nth_is_the_old_behaviour)
{
  char got[16];
  int fd, err = 0;
  uint8_t b;

  setenv ("CASDISK_FAULT", "read:data:3", 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  write_pattern (fd, 1, got, &err);
  for (int i = 0; i < 9; i++) {
    errno = 0;
    const int r = cas_pread_full (fd, &b, 1, 0, "data");
    got[i] = r == -1 ? '1' : '0';
    if (r == -1)
      cr_assert_eq (errno, EIO);
  }
  got[9] = '\0';
  cr_assert_str_eq (got, "001001001");
  close (fd);
}

Test (io, fault_sync_truncate_punch)
{
  int fd;

  setenv ("CASDISK_FAULT", "sync:data:2:once,truncate:data:1:enospc:once,punch:data:1", 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, "abcd", 4, 0, "data"), 0);
  cr_assert_eq (cas_fdatasync (fd, "data"), 0);
  cr_assert_eq (cas_fdatasync (fd, "data"), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (cas_fdatasync (fd, "data"), 0);
  cr_assert_eq (cas_ftruncate (fd, 2, "data"), -1);
  cr_assert_eq (errno, ENOSPC);
  struct stat st;
  cr_assert_eq (fstat (fd, &st), 0);
  cr_assert_eq (st.st_size, 4, "the failed truncate was performed");
  cr_assert_eq (cas_ftruncate (fd, 2, "data"), 0);
  cr_assert_eq (cas_punch_hole (fd, 0, 2, "data"), -1);
  cr_assert_eq (errno, EIO);
  char b[2];
  cr_assert_eq (cas_pread_full (fd, b, 2, 0, "data"), 0);
  cr_assert_arr_eq (b, "ab", 2, "the failed punch was performed");
  cr_assert_eq (cas_fault_count (), 3);
  close (fd);
}

Test (io, fault_checkpoint_create_rename)
{
  void *buf;
  size_t len;

  /* The faults are read once, at the first operation: set them first.
   * The first write (create 1, rename 1, directory sync 1) succeeds. */
  setenv ("CASDISK_FAULT", "create:checkpoint.tmp:2:once,rename:checkpoint:2:enospc:once,"
          "dirsync:dir:4:once", 1);
  cr_assert_eq (cas_write_file_atomic (dir, "checkpoint", "old", 3), 0);
  /* 1: the create fails. */
  cr_assert_eq (cas_write_file_atomic (dir, "checkpoint", "new", 3), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (access (path_in ("checkpoint.tmp"), F_OK), -1);
  /* 2: the rename fails: the old file stays, the temporary is removed. */
  cr_assert_eq (cas_write_file_atomic (dir, "checkpoint", "new", 3), -1);
  cr_assert_eq (errno, ENOSPC);
  cr_assert_eq (access (path_in ("checkpoint.tmp"), F_OK), -1);
  cr_assert_eq (cas_read_file (path_in ("checkpoint"), &buf, &len), 0);
  cr_assert_eq (len, 3);
  cr_assert_arr_eq (buf, "old", 3);
  free (buf);
  /* 3: succeeds (directory sync 2); then the fourth directory sync fails. */
  cr_assert_eq (cas_write_file_atomic (dir, "checkpoint", "new", 3), 0);
  cr_assert_eq (cas_fsync_dir (dir), 0);
  cr_assert_eq (cas_fsync_dir (dir), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (cas_fsync_dir (dir), 0);
  cr_assert_eq (cas_fault_count (), 3);
}

Test (io, fault_unlink)
{
  int fd;

  setenv ("CASDISK_FAULT", "unlink:*:1:once", 1);
  cr_assert_eq (cas_create_file (path_in ("journal.7"), &fd), 0);
  close (fd);
  cr_assert_eq (cas_unlink (path_in ("journal.7")), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (access (path_in ("journal.7"), F_OK), 0);
  cr_assert_eq (cas_unlink (path_in ("journal.7")), 0);
  cr_assert_eq (access (path_in ("journal.7"), F_OK), -1);
}

/* An injected failure is not in the I/O log: the power-loss replay must
 * not apply an operation that never happened.
 */
Test (io, fault_not_in_iolog)
{
  char logpath[PATH_MAX + 16];
  void *buf;
  size_t len;
  int fd;

  snprintf (logpath, sizeof logpath, "%s.iolog", dir);
  setenv ("CASDISK_IOLOG", logpath, 1);
  setenv ("CASDISK_FAULT", "write:data:2:once,sync:data:1:once", 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, "a", 1, 0, "data"), 0);
  cr_assert_eq (cas_pwrite_full (fd, "b", 1, 1, "data"), -1);
  cr_assert_eq (cas_fdatasync (fd, "data"), -1);
  cr_assert_eq (cas_pwrite_full (fd, "c", 1, 2, "data"), 0);
  cr_assert_eq (cas_fdatasync (fd, "data"), 0);
  close (fd);
  unsetenv ("CASDISK_IOLOG");
  cr_assert_eq (cas_read_file (logpath, &buf, &len), 0);
  unlink (logpath);
  const char want[] = "C data\nW data 0 1\naW data 2 1\ncS data\n";
  cr_assert_eq (len, sizeof want - 1, "log:\n%.*s", (int) len, (char *) buf);
  cr_assert_arr_eq (buf, want, len, "log:\n%.*s", (int) len, (char *) buf);
  free (buf);
}

Test (io, fault_bad_spec_injects_nothing)
{
  int fd;
  uint8_t b;

  setenv ("CASDISK_FAULT", "read:data:1:sometimes", 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  cr_assert_eq (cas_pwrite_full (fd, "x", 1, 0, "data"), 0);
  cr_assert_eq (cas_pread_full (fd, &b, 1, 0, "data"), 0);
  cr_assert_eq (cas_fault_count (), 0);
  cr_assert (strstr (last_error, "CASDISK_FAULT"), "message: %s", last_error);
  close (fd);
}

/* CASDISK_FAULT_ARM: nothing counts or fails until the file exists. */
Test (io, fault_arm_file)
{
  char got[16], arm[PATH_MAX + 8];
  int fd, err = 0;

  snprintf (arm, sizeof arm, "%s.arm", dir);
  unlink (arm);
  setenv ("CASDISK_FAULT", "write:data:2:once", 1);
  setenv ("CASDISK_FAULT_ARM", arm, 1);
  cr_assert_eq (cas_create_file (path_in ("data"), &fd), 0);
  write_pattern (fd, 4, got, &err);
  cr_assert_str_eq (got, "0000");
  cr_assert_eq (cas_fault_count (), 0);
  const int a = open (arm, O_CREAT | O_WRONLY, 0600);
  cr_assert_geq (a, 0);
  close (a);
  write_pattern (fd, 4, got, &err);
  cr_assert_str_eq (got, "0100");
  /* Armed for good: removing the file changes nothing. */
  unlink (arm);
  cr_assert_eq (cas_fault_count (), 1);
  close (fd);
}
