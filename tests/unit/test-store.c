/* Unit tests for the store through its front door (casdisk.h): create and
 * open, the data path (aligned, unaligned, partial and crossing blocks,
 * zero/trim, extents), dedup, compression, space accounting, disks,
 * read-only opens and locking, crash recovery, the delayed GC, and
 * concurrent writers and readers.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "background/gc.h"
#include "casdisk.h"
#include "engine/store_dio.h"
#include "format.h"
#include "meta/state.h"
#include "storage/ptcache.h"

/* ---- helpers (each store-level test file carries its own copy) ---- */

static char dir[256];           /* scratch directory of this test */
static char store[300];         /* the store: DIR/s */
static char errors[16384];      /* every error the engine logged */
static pthread_mutex_t errors_lock = PTHREAD_MUTEX_INITIALIZER;

static void
capture (bool error, const char *msg)
{
  if (!error)
    return;
  pthread_mutex_lock (&errors_lock);
  const size_t n = strlen (errors);
  snprintf (errors + n, sizeof errors - n, "%s\n", msg);
  pthread_mutex_unlock (&errors_lock);
}

static void
setup (void)
{
  const char *tmp = getenv ("TMPDIR");

  snprintf (dir, sizeof dir, "%s/casdisk-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null (mkdtemp (dir));
  snprintf (store, sizeof store, "%s/s", dir);
  errors[0] = '\0';
  cas_set_log (capture);
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

TestSuite (store, .init = setup, .fini = teardown, .timeout = 20);

static void
fill_random (uint8_t *p, size_t len, uint64_t seed)
{
  uint64_t x = seed * UINT64_C(0x9e3779b97f4a7c15) + 0x1234567;

  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x >> 24;
  }
}

static void
fill_text (uint8_t *p, size_t len, unsigned seed)
{
  static const char *const words[] = {
    "block ", "store ", "journal ", "checkpoint ", "the ", "of ", "zstd ", "dedup\n",
  };
  size_t i = 0;

  while (i < len) {
    seed = seed * 1103515245u + 12345u;
    const char *w = words[(seed >> 16) % 8];
    for (; *w && i < len; w++)
      p[i++] = *w;
  }
}

static void
create (uint32_t bs, int level, uint64_t size)
{
  struct cas_create_opts o = { .block_size = bs, .compression_level = level };

  cr_assert_eq (cas_store_create (store, &o, "disk0", size), 0, "create: %s", errors);
}

static struct cas_store *
open_gc (unsigned gc_delay)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = gc_delay;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "open: %s (%s)", strerror (errno), errors);
  return s;
}

static struct cas_store *
open_rw (void)
{
  return open_gc (3600);
}

static struct cas_disk *
disk0 (struct cas_store *s)
{
  struct cas_disk *d = cas_disk_find (s, "disk0");

  cr_assert_not_null (d);
  return d;
}

static void
write_ok (struct cas_disk *d, const void *buf, uint32_t count, uint64_t off)
{
  cr_assert_eq (cas_disk_write (d, buf, count, off), 0, "write %" PRIu32 " at %" PRIu64 ": %s",
                count, off, errors);
}

static void
read_expect (struct cas_disk *d, const void *want, uint32_t count, uint64_t off)
{
  uint8_t *got = malloc (count ? count : 1);

  cr_assert_not_null (got);
  memset (got, 0xa5, count);
  cr_assert_eq (cas_disk_read (d, got, count, off), 0, "read %" PRIu32 " at %" PRIu64 ": %s",
                count, off, errors);
  for (uint32_t i = 0; i < count; i++)
    if (got[i] != ((const uint8_t *) want)[i])
      cr_assert_fail ("read at %" PRIu64 ": byte %" PRIu32 " (disk offset %" PRIu64
                      ") is 0x%02x, expected 0x%02x", off, i, off + i, got[i],
                      ((const uint8_t *) want)[i]);
  free (got);
}

static void
read_zero (struct cas_disk *d, uint32_t count, uint64_t off)
{
  uint8_t *z = calloc (1, count ? count : 1);

  read_expect (d, z, count, off);
  free (z);
}

static struct cas_store_stats
stats (struct cas_store *s)
{
  struct cas_store_stats st;

  cr_assert_eq (cas_store_stats (s, &st), 0);
  return st;
}

static void
close_ok (struct cas_store *s)
{
  cr_assert_eq (cas_store_close (s), 0, "close: %s", errors);
}

static char reports[16384];

static void
report (void *opaque, const char *problem)
{
  const size_t n = strlen (reports);
  snprintf (reports + n, sizeof reports - n, "%s\n", problem);
}

static void
check_clean (void)
{
  struct cas_check_result res;

  reports[0] = '\0';
  const int r = cas_store_check (store, report, NULL, &res);
  cr_assert_eq (r, 0, "check found %d problems:\n%s%s", r, reports, errors);
  cr_assert_eq (res.problems, 0);
}

/* Run FN in a child process that exits without closing the store (a
 * crash as far as the store is concerned).  FN returns 0 on success, or a
 * line number identifying the check that failed.
 */
static void
in_crashing_child (int (*fn) (void))
{
  pid_t pid = fork ();
  int status;

  cr_assert_neq (pid, -1);
  if (pid == 0)
    _exit (fn ());
  cr_assert_eq (waitpid (pid, &status, 0), pid);
  cr_assert (WIFEXITED (status), "child died with status 0x%x", status);
  cr_assert_eq (WEXITSTATUS (status), 0, "the child failed (see its message above)");
}
#define CHILD_CHECK(x) \
  do { if (!(x)) { fprintf (stderr, "child: line %d: %s\n%s", __LINE__, #x, errors); \
                   return 1; } } while (0)

/* Extents as a per-block map: true = reads as zeroes. */
struct ext_rec {
  uint64_t start, next;         /* range asked, and where the next run must start */
  uint32_t bs;
  bool *hole;                   /* per block; a block must not be split */
  uint64_t calls, stop_after;
};

static int
ext_cb (void *opaque, uint64_t offset, uint64_t length, bool zero)
{
  struct ext_rec *e = opaque;

  cr_assert_eq (offset, e->next, "extent at %" PRIu64 ", expected %" PRIu64, offset, e->next);
  cr_assert_gt (length, 0, "empty extent at %" PRIu64, offset);
  for (uint64_t o = offset; o < offset + length; o++)
    if (o == offset || o % e->bs == 0)
      e->hole[o / e->bs] = zero;
  e->next = offset + length;
  e->calls++;
  return e->stop_after && e->calls == e->stop_after ? -1 : 0;
}

static bool *
extents_of (struct cas_disk *d, uint64_t off, uint64_t count, uint32_t bs)
{
  const uint64_t nblocks = (cas_disk_size (d) + bs - 1) / bs;
  struct ext_rec e = { .start = off, .next = off, .bs = bs };

  e.hole = calloc (nblocks + 1, sizeof *e.hole);
  cr_assert_not_null (e.hole);
  cr_assert_eq (cas_disk_extents (d, off, count, ext_cb, &e), 0);
  cr_assert_eq (e.next, off + count, "extents stop at %" PRIu64 ", asked up to %" PRIu64,
                e.next, off + count);
  return e.hole;
}

/* ---- create and open ---- */

Test (store, create_open_defaults)
{
  struct cas_create_opts co;

  cas_create_opts_default (&co);
  cr_assert_eq (co.block_size, CAS_DEFAULT_BLOCK_SIZE);
  cr_assert_eq (co.compression_level, CAS_DEFAULT_LEVEL);
  cr_assert_not (cas_store_exists (store));
  cr_assert_eq (cas_store_create (store, &co, CAS_DEFAULT_DISK_NAME, UINT64_C(1) << 30), 0);
  cr_assert (cas_store_exists (store));

  struct cas_open_opts oo;
  cas_open_opts_default (&oo);
  cr_assert_not (oo.readonly);
  cr_assert_eq (oo.gc_delay, CAS_DEFAULT_GC_DELAY);
  struct cas_store *s = cas_store_open (store, &oo);
  cr_assert_not_null (s, "%s", errors);
  cr_assert_eq (cas_store_block_size (s), CAS_DEFAULT_BLOCK_SIZE);
  cr_assert_eq (cas_store_compression_level (s), CAS_DEFAULT_LEVEL);
  cr_assert_str_eq (cas_store_dir (s), store);
  cr_assert_eq (cas_store_ndisks (s), 1);
  struct cas_disk *d = cas_store_disk (s, 0);
  cr_assert_not_null (d);
  cr_assert_null (cas_store_disk (s, 1));
  cr_assert_str_eq (cas_disk_name (d), "disk0");
  cr_assert_eq (cas_disk_size (d), UINT64_C(1) << 30);
  cr_assert_eq (cas_disk_find (s, "disk0"), d);
  errno = 0;
  cr_assert_null (cas_disk_find (s, "nope"));
  cr_assert_eq (errno, ENOENT);
  /* A fresh disk reads as zeroes and is one hole. */
  read_zero (d, 65536 * 3, 0);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.nblocks, 0);
  cr_assert_eq (st.logical_bytes, 0);
  cr_assert_eq (st.ndisks, 1);
  cr_assert_eq (st.block_size, CAS_DEFAULT_BLOCK_SIZE);
  close_ok (s);
  check_clean ();
  /* NULL options mean the defaults. */
  s = cas_store_open (store, NULL);
  cr_assert_not_null (s);
  close_ok (s);
  cr_assert_eq (cas_store_close (NULL), 0);
}

Test (store, create_without_disk)
{
  struct cas_create_opts co;

  cas_create_opts_default (&co);
  cr_assert_eq (cas_store_create (store, &co, NULL, 0), 0);
  struct cas_store *s = open_rw ();
  cr_assert_eq (cas_store_ndisks (s), 0);
  close_ok (s);
  check_clean ();
}

Test (store, create_errors)
{
  struct cas_create_opts o = { .block_size = 4096, .compression_level = 3 };
  const uint32_t bad_bs[] = { 0, 2048, 3000, 4097, 12288, 131072 };

  for (size_t i = 0; i < sizeof bad_bs / sizeof *bad_bs; i++) {
    o.block_size = bad_bs[i];
    errno = 0;
    cr_assert_eq (cas_store_create (store, &o, "disk0", 1 << 20), -1, "block size %u", bad_bs[i]);
    cr_assert_eq (errno, EINVAL);
  }
  o.block_size = 4096;
  o.compression_level = -1;
  errno = 0;
  cr_assert_eq (cas_store_create (store, &o, "disk0", 1 << 20), -1);
  cr_assert_eq (errno, EINVAL);
  o.compression_level = CAS_MAX_LEVEL + 1;
  errno = 0;
  cr_assert_eq (cas_store_create (store, &o, "disk0", 1 << 20), -1);
  cr_assert_eq (errno, EINVAL);
  o.compression_level = 0;

  const char *bad_names[] = { "", "-x", ".x", "a/b", "a b", "é",
    "12345678901234567890123456789012345678901234567890123456789012345" };  /* 65 */
  for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
    errno = 0;
    cr_assert_eq (cas_store_create (store, &o, bad_names[i], 1 << 20), -1, "name '%s'",
                  bad_names[i]);
    cr_assert_eq (errno, EINVAL);
  }
  errno = 0;
  cr_assert_eq (cas_store_create (store, &o, "disk0", 0), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_store_create (store, &o, "disk0", CAS_MAX_DISK_SIZE + 1), -1);
  cr_assert_eq (errno, EINVAL);
  cr_assert_not (cas_store_exists (store), "a failed create left a store behind");

  /* The limits themselves are fine. */
  o.block_size = 65536;
  o.compression_level = CAS_MAX_LEVEL;
  cr_assert_eq (cas_store_create (store, &o,
                                  "1234567890123456789012345678901234567890123456789012345678901234",
                                  CAS_MAX_DISK_SIZE), 0, "%s", errors);
  /* Creating over an existing store. */
  errno = 0;
  cr_assert_eq (cas_store_create (store, &o, "disk0", 1 << 20), -1);
  cr_assert_eq (errno, EEXIST);

  /* A directory with something else in it. */
  char other[300], junk[320];
  snprintf (other, sizeof other, "%s/other", dir);
  cr_assert_eq (mkdir (other, 0700), 0);
  snprintf (junk, sizeof junk, "%s/file.txt", other);
  FILE *f = fopen (junk, "w");
  cr_assert_not_null (f);
  fclose (f);
  errno = 0;
  cr_assert_eq (cas_store_create (other, &o, "disk0", 1 << 20), -1);
  cr_assert_eq (errno, ENOTEMPTY);
  cr_assert_not (cas_store_exists (other));
}

Test (store, create_in_empty_existing_dir)
{
  struct cas_create_opts o = { .block_size = 4096, .compression_level = 1 };

  cr_assert_eq (mkdir (store, 0700), 0);
  cr_assert_eq (cas_store_create (store, &o, "d", 4096), 0, "%s", errors);
  struct cas_store *s = open_rw ();
  cr_assert_not_null (cas_disk_find (s, "d"));
  close_ok (s);
}

Test (store, open_errors)
{
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));        /* does not exist */
  cr_assert_eq (errno, ENOENT);
  cr_assert_eq (mkdir (store, 0700), 0);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));        /* not a store */
  cr_assert_eq (errno, ENOENT);
  cr_assert_not (cas_store_exists (store));
}

static void
patch_file (const char *name, off_t off, const void *bytes, size_t len)
{
  char path[400];
  snprintf (path, sizeof path, "%s/%s", store, name);
  const int fd = open (path, O_WRONLY);
  cr_assert_geq (fd, 0);
  cr_assert_eq (pwrite (fd, bytes, len, off), (ssize_t) len);
  close (fd);
}

Test (store, open_damaged_superblock)
{
  char path[400];
  uint8_t sb[4096];

  create (4096, 3, 1 << 20);
  snprintf (path, sizeof path, "%s/superblock", store);
  int fd = open (path, O_RDONLY);
  cr_assert_eq (read (fd, sb, sizeof sb), (ssize_t) sizeof sb);
  close (fd);

  /* A flipped byte: checksum mismatch. */
  const uint8_t flip = sb[33] ^ 0x10;
  patch_file ("superblock", 33, &flip, 1);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EUCLEAN, "errno %d", errno);
  cr_assert (strstr (errors, "checksum") != NULL, "%s", errors);
  patch_file ("superblock", 33, &sb[33], 1);

  /* A newer format version. */
  const uint8_t newer[4] = { CAS_FORMAT_VERSION + 1, 0, 0, 0 };
  patch_file ("superblock", 8, newer, 4);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, ENOTSUP, "errno %d", errno);
  patch_file ("superblock", 8, &sb[8], 4);

  /* Not our magic. */
  patch_file ("superblock", 0, "NOTADISK", 8);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EINVAL, "errno %d", errno);
  patch_file ("superblock", 0, sb, 8);

  /* Truncated. */
  cr_assert_eq (truncate (path, 100), 0);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EUCLEAN, "errno %d", errno);
  patch_file ("superblock", 0, sb, sizeof sb);

  /* Restored: opens again. */
  struct cas_store *s = open_rw ();
  close_ok (s);
}

Test (store, open_missing_files)
{
  char path[400], moved[400];

  create (4096, 3, 1 << 20);
  const char *files[] = { "data", "checkpoint" };
  for (int i = 0; i < 2; i++) {
    snprintf (path, sizeof path, "%s/%s", store, files[i]);
    snprintf (moved, sizeof moved, "%s/%s.moved", dir, files[i]);
    cr_assert_eq (rename (path, moved), 0);
    errno = 0;
    cr_assert_null (cas_store_open (store, NULL), "opened without %s", files[i]);
    cr_assert_eq (errno, EUCLEAN, "without %s: errno %d", files[i], errno);
    cr_assert_eq (rename (moved, path), 0);
  }
  close_ok (open_rw ());
}

/* ---- the data path ---- */

static void
aligned_round_trip (uint32_t bs, int level)
{
  const uint32_t n = 8 * bs;
  uint8_t *buf = malloc (n);

  create (bs, level, 64 * (uint64_t) bs);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (buf, n / 2, bs);
  fill_text (buf + n / 2, n / 2, bs);
  write_ok (d, buf, n, 4 * (uint64_t) bs);
  read_expect (d, buf, n, 4 * (uint64_t) bs);
  read_zero (d, 4 * bs, 0);
  read_zero (d, 52 * bs, 12 * (uint64_t) bs);
  /* Block by block, and in one read spanning zeroes and data. */
  for (uint32_t i = 0; i < 8; i++)
    read_expect (d, buf + i * bs, bs, (4 + i) * (uint64_t) bs);
  uint8_t *big = calloc (1, 16 * bs);
  memcpy (big + 4 * bs, buf, n);
  read_expect (d, big, 16 * bs, 0);
  close_ok (s);

  s = open_rw ();
  d = disk0 (s);
  read_expect (d, big, 16 * bs, 0);
  close_ok (s);
  check_clean ();
  free (big);
  free (buf);
}

Test (store, aligned_4k_compressed) { aligned_round_trip (4096, 3); }
Test (store, aligned_64k_compressed) { aligned_round_trip (65536, 3); }
Test (store, aligned_16k_raw) { aligned_round_trip (16384, 0); }

Test (store, unaligned_partial_and_crossing)
{
  const uint32_t bs = 4096;
  const uint64_t size = 10 * bs;
  uint8_t *model = calloc (1, size), *buf = malloc (size);

  create (bs, 3, size);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);

  /* Inside one block, not at its start. */
  fill_random (buf, 100, 1);
  write_ok (d, buf, 100, 5000);
  memcpy (model + 5000, buf, 100);
  /* Crossing one block boundary. */
  fill_text (buf, 300, 2);
  write_ok (d, buf, 300, 2 * bs - 150);
  memcpy (model + 2 * bs - 150, buf, 300);
  /* Crossing several blocks, unaligned at both ends. */
  fill_random (buf, 3 * bs + 77, 3);
  write_ok (d, buf, 3 * bs + 77, 4 * bs + 11);
  memcpy (model + 4 * bs + 11, buf, 3 * bs + 77);
  /* One byte, the very last of the disk, and the very first. */
  write_ok (d, "\x42", 1, size - 1);
  model[size - 1] = 0x42;
  write_ok (d, "\x17", 1, 0);
  model[0] = 0x17;
  /* Overwrite part of an already-written block: the rest stays. */
  fill_random (buf, 10, 4);
  write_ok (d, buf, 10, 5050);
  memcpy (model + 5050, buf, 10);

  read_expect (d, model, size, 0);
  /* Unaligned reads. */
  read_expect (d, model + 4999, 102, 4999);
  read_expect (d, model + 2 * bs - 1, 2, 2 * bs - 1);
  read_expect (d, model + 1, size - 2, 1);
  close_ok (s);

  s = open_rw ();
  read_expect (disk0 (s), model, size, 0);
  close_ok (s);
  check_clean ();
  free (model);
  free (buf);
}

Test (store, disk_size_not_a_multiple_of_block_size)
{
  const uint32_t bs = 4096;
  const uint64_t size = 2 * bs + 1000;
  uint8_t buf[5000];

  create (bs, 3, size);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  cr_assert_eq (cas_disk_size (d), size);
  fill_random (buf, sizeof buf, 9);
  write_ok (d, buf, 3000, size - 3000);
  read_expect (d, buf, 3000, size - 3000);
  errno = 0;
  cr_assert_eq (cas_disk_write (d, buf, 1001, 2 * bs), -1);
  cr_assert_eq (errno, EINVAL);
  /* Zero to the end releases the short last block. */
  cr_assert_eq (cas_disk_zero (d, 1000, 2 * bs), 0);
  read_zero (d, 1000, 2 * bs);
  read_expect (d, buf, 2000, size - 3000);
  close_ok (s);
  s = open_rw ();
  d = disk0 (s);
  read_zero (d, 1000, 2 * bs);
  read_expect (d, buf, 2000, size - 3000);
  close_ok (s);
  check_clean ();
}

Test (store, out_of_range_is_einval)
{
  uint8_t buf[8192] = { 1 };

  create (4096, 3, 1 << 20);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  const uint64_t size = 1 << 20;
  struct { uint32_t count; uint64_t off; } bad[] = {
    { 1, size }, { 2, size - 1 }, { 8192, size - 4096 }, { 1, UINT64_MAX },
    { 4096, UINT64_MAX - 100 }, { 1, size + 4096 },
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    errno = 0;
    cr_assert_eq (cas_disk_read (d, buf, bad[i].count, bad[i].off), -1, "read case %zu", i);
    cr_assert_eq (errno, EINVAL);
    errno = 0;
    cr_assert_eq (cas_disk_write (d, buf, bad[i].count, bad[i].off), -1, "write case %zu", i);
    cr_assert_eq (errno, EINVAL);
    errno = 0;
    cr_assert_eq (cas_disk_zero (d, bad[i].count, bad[i].off), -1, "zero case %zu", i);
    cr_assert_eq (errno, EINVAL);
  }
  /* Zero-length requests at the end are fine. */
  cr_assert_eq (cas_disk_read (d, buf, 0, size), 0);
  cr_assert_eq (cas_disk_write (d, buf, 0, size), 0);
  cr_assert_eq (cas_disk_zero (d, 0, size), 0);
  /* Nothing was written by the failed calls. */
  cr_assert_eq (stats (s).nblocks, 0);
  close_ok (s);
}

/* Random reads, writes and zeroes against a model of the disk. */
Test (store, random_ops_against_model)
{
  const uint32_t bs = 4096;
  const uint64_t size = 300 * 1024 + 123;
  uint8_t *model = calloc (1, size), *buf = malloc (64 * 1024);
  uint64_t seed = 12345;

  create (bs, 3, size);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  for (int op = 0; op < 400; op++) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    const uint32_t len = 1 + (seed >> 33) % (20 * 1024);
    const uint64_t off = (seed >> 13) % (size - len + 1);
    const unsigned kind = (seed >> 5) % 8;
    if (kind < 2) {
      fill_random (buf, len, seed);
      write_ok (d, buf, len, off);
      memcpy (model + off, buf, len);
    }
    else if (kind < 4) {
      fill_text (buf, len, seed);
      write_ok (d, buf, len, off);
      memcpy (model + off, buf, len);
    }
    else if (kind == 4) {               /* zeroes written as data */
      memset (buf, 0, len);
      write_ok (d, buf, len, off);
      memset (model + off, 0, len);
    }
    else if (kind == 5) {               /* trim/zero */
      cr_assert_eq (cas_disk_zero (d, len, off), 0);
      memset (model + off, 0, len);
    }
    else if (kind == 6) {               /* copy a range: block-aligned copies dedup */
      const uint64_t src = (seed >> 40) % (size - len + 1);
      memcpy (buf, model + src, len);
      write_ok (d, buf, len, off);
      memcpy (model + off, buf, len);
    }
    else
      read_expect (d, model + off, len, off);
    if (op % 50 == 0)
      cr_assert_eq (cas_store_flush (s), 0);
  }
  read_expect (d, model, size, 0);

  /* Extents: a block is a hole exactly when its content is all zeroes. */
  bool *hole = extents_of (d, 0, size, bs);
  for (uint64_t v = 0; v * bs < size; v++) {
    const uint64_t n = size - v * bs < bs ? size - v * bs : bs;
    bool z = true;
    for (uint64_t i = 0; i < n && z; i++)
      z = model[v * bs + i] == 0;
    cr_assert_eq (hole[v], z, "block %" PRIu64 ": extents say %s, content is %s", v,
                  hole[v] ? "hole" : "data", z ? "zero" : "not zero");
  }
  free (hole);
  close_ok (s);

  s = open_rw ();
  read_expect (disk0 (s), model, size, 0);
  close_ok (s);
  check_clean ();
  free (model);
  free (buf);
}

Test (store, zero_blocks_store_nothing)
{
  const uint32_t bs = 4096;
  uint8_t *z = calloc (1, 16 * bs);

  create (bs, 3, 64 * bs);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  write_ok (d, z, 16 * bs, 0);
  write_ok (d, z, 100, 20 * bs + 7);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.nblocks, 0);
  cr_assert_eq (st.logical_bytes, 0);
  cr_assert_eq (st.data_file_end, 0);
  bool *hole = extents_of (d, 0, 64 * bs, bs);
  for (int v = 0; v < 64; v++)
    cr_assert (hole[v], "block %d is not a hole", v);
  free (hole);

  /* Data, then overwritten with zeroes: the block is dropped again. */
  uint8_t buf[4096];
  fill_random (buf, bs, 5);
  write_ok (d, buf, bs, 3 * bs);
  cr_assert_eq (stats (s).logical_bytes, bs);
  write_ok (d, z, bs, 3 * bs);
  st = stats (s);
  cr_assert_eq (st.logical_bytes, 0);
  cr_assert_eq (st.unique_bytes, 0);
  read_zero (d, bs, 3 * bs);
  /* A partial write of zeroes over the only non-zero bytes. */
  write_ok (d, buf, 10, 5 * bs + 100);
  cr_assert_eq (stats (s).logical_bytes, bs);
  write_ok (d, z, 10, 5 * bs + 100);
  cr_assert_eq (stats (s).logical_bytes, 0);
  close_ok (s);
  free (z);
}

Test (store, zero_and_trim)
{
  const uint32_t bs = 4096;
  const uint64_t size = 200 * bs;
  uint8_t *model = malloc (size);

  create (bs, 0, size);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (model, size, 77);
  write_ok (d, model, size, 0);
  cr_assert_eq (stats (s).nblocks, 200);

  /* Unaligned zero inside one block: written, not released. */
  cr_assert_eq (cas_disk_zero (d, 100, 10 * bs + 50), 0);
  memset (model + 10 * bs + 50, 0, 100);
  /* Unaligned zero over several blocks: the whole ones are released. */
  cr_assert_eq (cas_disk_zero (d, 3 * bs, 20 * bs + 1000), 0);
  memset (model + 20 * bs + 1000, 0, 3 * bs);
  bool *hole = extents_of (d, 0, size, bs);
  cr_assert_not (hole[10]);
  cr_assert_not (hole[20]);
  cr_assert (hole[21]);
  cr_assert (hole[22]);
  cr_assert_not (hole[23]);
  free (hole);
  /* A big range (more than 64 blocks): one record, every block released. */
  cr_assert_eq (cas_disk_zero (d, 100 * bs, 50 * bs), 0);
  memset (model + 50 * bs, 0, 100 * bs);
  read_expect (d, model, size, 0);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.logical_bytes, (200 - 2 - 100) * (uint64_t) bs);
  /* The dropped blocks are dead, waiting for the (long) GC delay. */
  /* Old versions of the 3 partly zeroed blocks 10, 20, 23, and the 102
   * released blocks 21, 22, 50 .. 149.
   */
  cr_assert_eq (st.dead_blocks, 105, "dead_blocks %" PRIu64, st.dead_blocks);
  cr_assert_eq (st.nblocks, 200 + 3);     /* + the new versions of 10, 20, 23 */
  hole = extents_of (d, 0, size, bs);
  for (int v = 50; v < 150; v++)
    cr_assert (hole[v], "block %d", v);
  cr_assert_not (hole[49]);
  cr_assert_not (hole[150]);
  free (hole);
  close_ok (s);

  s = open_rw ();
  d = disk0 (s);
  read_expect (d, model, size, 0);
  /* Zero the whole disk. */
  cr_assert_eq (cas_disk_zero (d, size, 0), 0);
  read_zero (d, size, 0);
  cr_assert_eq (stats (s).logical_bytes, 0);
  close_ok (s);
  check_clean ();
  free (model);
}

Test (store, extents)
{
  const uint32_t bs = 4096;
  /* More than one map page (4096 entries), so unallocated pages too. */
  const uint64_t size = 3 * 4096 * (uint64_t) bs + 5 * bs;
  uint8_t buf[4096];

  create (bs, 3, size);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (buf, bs, 1);
  const uint64_t data_blocks[] = { 1, 3, 4, 4096 * 2 + 7, 3 * 4096 + 4 };
  for (size_t i = 0; i < 5; i++)
    write_ok (d, buf, bs, data_blocks[i] * bs + 0);
  bool *hole = extents_of (d, 0, size, bs);
  for (uint64_t v = 0; v * bs < size; v++) {
    bool is_data = false;
    for (size_t i = 0; i < 5; i++)
      is_data |= data_blocks[i] == v;
    cr_assert_eq (hole[v], !is_data, "block %" PRIu64, v);
  }
  free (hole);

  /* A sub-range starting and ending inside blocks. */
  struct ext_rec e = { .next = bs + 100, .bs = bs, .hole = calloc (8, sizeof (bool)) };
  cr_assert_eq (cas_disk_extents (d, bs + 100, 3 * bs, ext_cb, &e), 0);
  cr_assert_eq (e.next, 4 * bs + 100);
  cr_assert_not (e.hole[1]);
  cr_assert (e.hole[2]);
  cr_assert_not (e.hole[3]);
  cr_assert_not (e.hole[4]);
  cr_assert_eq (e.calls, 3, "[data][hole][data data] took %" PRIu64 " calls", e.calls);

  /* The callback can stop the walk. */
  e = (struct ext_rec) { .next = 0, .bs = bs, .hole = e.hole, .stop_after = 2 };
  cr_assert_eq (cas_disk_extents (d, 0, 8 * bs, ext_cb, &e), -1);
  cr_assert_eq (e.calls, 2);
  free (e.hole);

  /* Empty and out-of-range requests. */
  e = (struct ext_rec) { .next = 5, .bs = bs, .hole = calloc (8, sizeof (bool)) };
  cr_assert_eq (cas_disk_extents (d, 5, 0, ext_cb, &e), 0);
  cr_assert_eq (e.calls, 0);
  errno = 0;
  cr_assert_eq (cas_disk_extents (d, size - 10, 11, ext_cb, &e), -1);
  cr_assert_eq (errno, EINVAL);
  free (e.hole);
  close_ok (s);
}

/* ---- dedup, compression, accounting ---- */

Test (store, dedup_same_data_two_offsets)
{
  const uint32_t bs = 65536;
  uint8_t *buf = malloc (bs);

  create (bs, 3, 16 * bs);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (buf, bs, 42);
  write_ok (d, buf, bs, 0);
  const uint64_t end1 = stats (s).data_file_end;
  write_ok (d, buf, bs, 5 * (uint64_t) bs);
  write_ok (d, buf, bs, 9 * (uint64_t) bs);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.nblocks, 1, "nblocks %" PRIu64, st.nblocks);
  cr_assert_eq (st.unique_bytes, bs);
  cr_assert_eq (st.logical_bytes, 3 * (uint64_t) bs);
  cr_assert_eq (st.data_file_end, end1, "a duplicate used space");
  struct cas_disk_stats ds;
  cr_assert_eq (cas_disk_stats (d, &ds), 0);
  cr_assert_eq (ds.virtual_size, 16 * (uint64_t) bs);
  cr_assert_eq (ds.logical_bytes, 3 * (uint64_t) bs);
  cr_assert_eq (ds.unique_bytes, bs);
  cr_assert_eq (ds.stored_bytes, st.stored_bytes);
  cr_assert_eq (ds.exclusive_bytes, ds.stored_bytes);

  /* Deduplicated across disks: no longer exclusive to either. */
  struct cas_disk *d2 = cas_disk_add (s, "second", 4 * bs);
  cr_assert_not_null (d2, "%s", errors);
  write_ok (d2, buf, bs, bs);
  st = stats (s);
  cr_assert_eq (st.nblocks, 1);
  cr_assert_eq (st.logical_bytes, 4 * (uint64_t) bs);
  cr_assert_eq (cas_disk_stats (d, &ds), 0);
  cr_assert_eq (ds.exclusive_bytes, 0);
  cr_assert_eq (cas_disk_stats (d2, &ds), 0);
  cr_assert_eq (ds.exclusive_bytes, 0);
  cr_assert_eq (ds.unique_bytes, bs);
  read_expect (d2, buf, bs, bs);
  close_ok (s);

  s = open_rw ();
  st = stats (s);
  cr_assert_eq (st.nblocks, 1);
  cr_assert_eq (st.logical_bytes, 4 * (uint64_t) bs);
  read_expect (disk0 (s), buf, bs, 9 * (uint64_t) bs);
  close_ok (s);
  check_clean ();
  free (buf);
}

/* The index keeps 8 bytes of the SHA-256 and the data path compares the
 * bytes: with the key cut to 2 bits, 300 different contents share 4 keys,
 * and still each is stored once and read back as itself.
 */
/* Content number I: half text (stored compressed), half random (raw), so
 * that both ways of comparing stored bytes are used.
 */
static void
content_of (uint8_t *buf, uint32_t bs, uint32_t i)
{
  if (i % 2)
    fill_text (buf, bs, i);
  else
    fill_random (buf, bs, i);
}

Test (store, dedup_by_content_when_keys_collide)
{
  const uint32_t bs = 4096, n = 300;
  uint8_t *buf = malloc (bs);
  struct cas_open_opts o;

  cr_assert_not_null (buf);
  create (bs, 3, 2 * n * (uint64_t) bs);
  cas_open_opts_default (&o);
  o.key_bits = 2;
  o.runtime_asserts = true;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "%s", errors);
  struct cas_disk *d = disk0 (s);
  for (uint32_t i = 0; i < n; i++) {
    content_of (buf, bs, i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
    write_ok (d, buf, bs, (uint64_t) (n + i) * bs);    /* a duplicate */
  }
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.nblocks, n, "%" PRIu64 " blocks for %u contents", st.nblocks, n);
  cr_assert_eq (st.logical_bytes, 2 * (uint64_t) n * bs);
  for (uint32_t i = 0; i < n; i++) {
    content_of (buf, bs, i);
    read_expect (d, buf, bs, (uint64_t) i * bs);
    read_expect (d, buf, bs, (uint64_t) (n + i) * bs);
  }
  close_ok (s);
  /* Reopened with full keys, the same contents are still found. */
  s = open_rw ();
  d = disk0 (s);
  fill_random (buf, bs, 0);
  write_ok (d, buf, bs, 5 * (uint64_t) bs);
  cr_assert_eq (stats (s).nblocks, n, "a reopened store did not deduplicate");
  read_expect (d, buf, bs, 5 * (uint64_t) bs);
  close_ok (s);
  check_clean ();
  free (buf);
}

Test (store, dedup_unaligned_content)
{
  /* Two partial writes that build the same block content dedup too. */
  const uint32_t bs = 4096;
  uint8_t buf[4096];

  create (bs, 3, 8 * bs);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (buf, bs, 3);
  write_ok (d, buf, bs, 0);
  write_ok (d, buf, 1000, 2 * bs);
  write_ok (d, buf + 1000, bs - 1000, 2 * bs + 1000);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.logical_bytes, 2 * bs);
  cr_assert_eq (st.unique_bytes, bs, "unique %" PRIu64, st.unique_bytes);
  read_expect (d, buf, bs, 2 * bs);
  close_ok (s);
}

Test (store, compression_saves_space)
{
  const uint32_t bs = 65536;
  uint8_t *buf = malloc (8 * bs);

  create (bs, 3, 16 * bs);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_text (buf, 8 * bs, 1);
  write_ok (d, buf, 8 * bs, 0);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.unique_bytes, 8 * (uint64_t) bs);
  cr_assert_lt (st.stored_bytes, st.unique_bytes / 2, "text stored in %" PRIu64 " bytes",
                st.stored_bytes);
  cr_assert_lt (st.data_file_end, st.unique_bytes / 2);
  cr_assert_eq (st.compression_level, 3);
  /* Random data is stored raw, with its table of piece CRCs. */
  fill_random (buf, bs, 2);
  write_ok (d, buf, bs, 10 * (uint64_t) bs);
  struct cas_store_stats st2 = stats (s);
  cr_assert_eq (st2.stored_bytes - st.stored_bytes, cas_sectored_len (bs));
  close_ok (s);

  s = open_rw ();
  fill_text (buf, 8 * bs, 1);
  read_expect (disk0 (s), buf, 8 * bs, 0);
  close_ok (s);
  check_clean ();
  free (buf);
}

Test (store, compression_off_stores_raw)
{
  const uint32_t bs = 4096;
  uint8_t buf[4 * 4096];

  create (bs, 0, 16 * bs);
  struct cas_store *s = open_rw ();
  fill_text (buf, sizeof buf, 1);
  write_ok (disk0 (s), buf, sizeof buf, 0);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.compression_level, 0);
  cr_assert_eq (st.stored_bytes, st.unique_bytes);
  cr_assert_eq (st.data_file_end, sizeof buf);
  close_ok (s);
}

/* Flip a bit of the byte at OFF of the store's data file. */
static void
flip_data_byte (off_t off)
{
  char path[400];
  uint8_t b;

  snprintf (path, sizeof path, "%s/data", store);
  int fd = open (path, O_RDWR);
  cr_assert_geq (fd, 0);
  cr_assert_eq (pread (fd, &b, 1, off), 1);
  b ^= 0x40;
  cr_assert_eq (pwrite (fd, &b, 1, off), 1);
  close (fd);
}

/* A new store of 64 KiB blocks whose disk holds two blocks of random
 * data (seed SEED), open in *SP; returns those 128 KiB (to be freed).
 */
static uint8_t *
two_random_blocks (uint64_t seed, struct cas_store **sp)
{
  const uint32_t bs = 65536;
  uint8_t *buf = malloc (2 * bs);

  cr_assert_not_null (buf);
  create (bs, 3, 4 * bs);
  *sp = open_rw ();
  fill_random (buf, 2 * bs, seed);
  write_ok (disk0 (*sp), buf, 2 * bs, 0);
  return buf;
}

/* Sectored raw blocks: every partial read (within one piece, across
 * pieces, through the last piece whose table follows it, whole pieces read
 * straight into the caller's buffer) returns the right bytes, also after a
 * reopen; a flipped byte in one piece fails reads of that piece with EIO.
 */
Test (store, sectored_partial_reads)
{
  const uint32_t bs = 65536;
  struct cas_store *s;
  uint8_t *buf = two_random_blocks (9, &s);
  struct cas_disk *d = disk0 (s);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.stored_bytes, 2 * (uint64_t) cas_sectored_len (bs), "stored %" PRIu64,
                st.stored_bytes);
  for (int pass = 0; pass < 2; pass++) {
    const uint32_t cases[][2] = {
      { 0, 1 }, { 0, 4096 }, { 4096, 4096 }, { 100, 5000 }, { 4095, 2 }, { 61440, 4096 },
      { 61000, 4536 }, { 8192, 57344 }, { 1, 65534 }, { 60000, 7000 }, { 65535, 2 },
      { 12288, 12288 }, { 0, 131072 }, { 70000, 61072 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      read_expect (d, buf + cases[i][0], cases[i][1], cases[i][0]);
    close_ok (s);
    s = open_rw ();
    d = disk0 (s);
  }
  close_ok (s);

  /* Flip a byte in piece 5 of the first stored block (it is at offset 0). */
  flip_data_byte (5 * 4096 + 17);
  s = open_rw ();
  d = disk0 (s);
  uint8_t got[4096];
  errno = 0;
  cr_assert_eq (cas_disk_read (d, got, 100, 5 * 4096 + 10), -1);
  cr_assert_eq (errno, EIO);
  cr_assert (strstr (errors, "checksum mismatch") != NULL, "%s", errors);
  close_ok (s);
  free (buf);
}

/* A partial read of a sectored block caches its piece table (ptcache.h):
 * later partial reads of the block take one pread and still check every
 * piece they read, so damage made after the table was cached is an I/O
 * error too.
 */
Test (store, sectored_reads_use_cached_tables)
{
  const uint32_t bs = 65536;
  struct cas_ptcache_stats before, after;
  struct cas_store *s;
  uint8_t *buf = two_random_blocks (11, &s);
  struct cas_disk *d = disk0 (s);
  cas_ptcache_stats (s->ptcache, &before);
  read_expect (d, buf + 4096, 100, 4096);               /* a miss: fills block 0's table */
  for (uint32_t p = 0; p < 16; p++)                     /* every piece, from the cache */
    read_expect (d, buf + p * 4096 + 7, 300, p * 4096 + 7);
  read_expect (d, buf + bs + 8192, 4096, bs + 8192);    /* block 1: a miss */
  read_expect (d, buf + bs + 4096, 4096, bs + 4096);    /* and a hit */
  cas_ptcache_stats (s->ptcache, &after);
  cr_assert_eq (after.misses - before.misses, 2, "%" PRIu64 " misses",
                after.misses - before.misses);
  cr_assert_eq (after.hits - before.hits, 17, "%" PRIu64 " hits", after.hits - before.hits);

  /* Damage piece 5 of block 0 (at data offset 0) under the running store. */
  flip_data_byte (5 * 4096 + 17);
  uint8_t got[4096];
  errno = 0;
  cr_assert_eq (cas_disk_read (d, got, 100, 5 * 4096 + 10), -1, "damaged piece read with a cached table");
  cr_assert_eq (errno, EIO);
  cr_assert (strstr (errors, "checksum mismatch") != NULL, "%s", errors);
  close_ok (s);
  free (buf);
}

Test (store, stats_physical_and_journal)
{
  uint8_t buf[65536];

  create (65536, 3, 1 << 24);
  struct cas_store *s = open_rw ();
  fill_random (buf, sizeof buf, 1);
  write_ok (disk0 (s), buf, sizeof buf, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  struct cas_store_stats st = stats (s);
  cr_assert_gt (st.journal_bytes, 64, "the flushed records are not counted");
  cr_assert_geq (st.physical_apparent, 4096 + 65536 + st.journal_bytes);
  cr_assert_gt (st.physical_allocated, 65536);
  cr_assert_eq (st.quarantined, 0);
  cr_assert_eq (st.gc_freed_blocks, 0);
  close_ok (s);
}

/* ---- disks ---- */

Test (store, disks_add_find_persist)
{
  uint8_t a[4096], b[4096];

  create (4096, 3, 1 << 20);
  struct cas_store *s = open_rw ();
  struct cas_disk *d1 = cas_disk_add (s, "vm-1.img", 1 << 20);
  cr_assert_not_null (d1, "%s", errors);
  struct cas_disk *d2 = cas_disk_add (s, "vm_2", 12345);
  cr_assert_not_null (d2);
  cr_assert_eq (cas_store_ndisks (s), 3);
  cr_assert_eq (cas_disk_find (s, "vm-1.img"), d1);
  cr_assert_eq (cas_store_disk (s, 2), d2);
  cr_assert_eq (cas_disk_size (d2), 12345);
  errno = 0;
  cr_assert_null (cas_disk_add (s, "vm_2", 4096));
  cr_assert_eq (errno, EEXIST);
  errno = 0;
  cr_assert_null (cas_disk_add (s, "bad/name", 4096));
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_null (cas_disk_add (s, "zero", 0));
  cr_assert_eq (errno, EINVAL);
  cr_assert_eq (cas_store_ndisks (s), 3);
  cr_assert (cas_disk_name_valid ("a.b-c_D9"));
  cr_assert_not (cas_disk_name_valid (".hidden"));

  /* Disks are independent. */
  fill_random (a, sizeof a, 1);
  fill_random (b, sizeof b, 2);
  write_ok (d1, a, sizeof a, 0);
  write_ok (d2, b, sizeof b, 8192);
  read_zero (disk0 (s), 4096, 0);
  read_zero (d2, 4096, 0);
  close_ok (s);

  s = open_rw ();
  cr_assert_eq (cas_store_ndisks (s), 3);
  cr_assert_str_eq (cas_disk_name (cas_store_disk (s, 1)), "vm-1.img");
  d2 = cas_disk_find (s, "vm_2");
  cr_assert_not_null (d2);
  cr_assert_eq (cas_disk_size (d2), 12345);
  read_expect (cas_disk_find (s, "vm-1.img"), a, sizeof a, 0);
  read_expect (d2, b, sizeof b, 8192);
  close_ok (s);
  check_clean ();
}

/* ---- read-only and locking ---- */

Test (store, readonly_open)
{
  uint8_t buf[4096];
  struct cas_open_opts o;

  create (4096, 3, 1 << 20);
  struct cas_store *s = open_rw ();
  fill_random (buf, sizeof buf, 1);
  write_ok (disk0 (s), buf, sizeof buf, 4096);
  close_ok (s);

  cas_open_opts_default (&o);
  o.readonly = true;
  s = cas_store_open (store, &o);
  cr_assert_not_null (s);
  struct cas_store *s2 = cas_store_open (store, &o);
  cr_assert_not_null (s2, "two read-only opens must share the lock: %s", errors);
  struct cas_disk *d = disk0 (s);
  read_expect (d, buf, sizeof buf, 4096);
  read_expect (disk0 (s2), buf, sizeof buf, 4096);
  errno = 0;
  cr_assert_eq (cas_disk_write (d, buf, sizeof buf, 0), -1);
  cr_assert_eq (errno, EROFS);
  errno = 0;
  cr_assert_eq (cas_disk_zero (d, 4096, 0), -1);
  cr_assert_eq (errno, EROFS);
  errno = 0;
  cr_assert_null (cas_disk_add (s, "new", 4096));
  cr_assert_eq (errno, EROFS);
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert_eq (cas_store_start (s), 0);
  /* A writer is locked out while readers hold the store. */
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EBUSY);
  close_ok (s2);
  close_ok (s);
  /* Nothing changed on disk. */
  check_clean ();
  s = open_rw ();
  read_expect (disk0 (s), buf, sizeof buf, 4096);
  read_zero (disk0 (s), 4096, 0);
  close_ok (s);
}

Test (store, second_open_is_ebusy)
{
  create (4096, 3, 1 << 20);
  struct cas_store *s = open_rw ();

  /* Another process (flock is per open file description, so a child
   * opening the store itself is a real second opener).
   */
  pid_t pid = fork ();
  cr_assert_neq (pid, -1);
  if (pid == 0) {
    struct cas_open_opts o;
    cas_open_opts_default (&o);
    errno = 0;
    if (cas_store_open (store, &o) != NULL || errno != EBUSY)
      _exit (1);
    o.readonly = true;
    errno = 0;
    if (cas_store_open (store, &o) != NULL || errno != EBUSY)
      _exit (2);
    errno = 0;
    struct cas_check_result res;
    if (cas_store_check (store, NULL, NULL, &res) != -1 || errno != EBUSY)
      _exit (3);
    errno = 0;
    if (cas_store_repair (store, NULL, NULL, &res) != -1 || errno != EBUSY)
      _exit (4);
    _exit (0);
  }
  int status;
  cr_assert_eq (waitpid (pid, &status, 0), pid);
  cr_assert (WIFEXITED (status));
  cr_assert_eq (WEXITSTATUS (status), 0, "child case %d: a second open did not fail with EBUSY",
                WEXITSTATUS (status));
  /* The same process opening it again is a second opener too. */
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EBUSY);
  cr_assert (strstr (errors, "locked") != NULL, "%s", errors);
  /* The failed opens did not take the first one's lock away. */
  pid = fork ();
  if (pid == 0)
    _exit (cas_store_open (store, NULL) == NULL && errno == EBUSY ? 0 : 1);
  cr_assert_eq (waitpid (pid, &status, 0), pid);
  cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  close_ok (s);
  /* Unlocked by close. */
  s = open_rw ();
  close_ok (s);
}

/* ---- crash recovery ---- */

#define CRASH_BS 4096
static uint8_t flushed[16 * CRASH_BS], unflushed[16 * CRASH_BS];

static int
crash_writer (void)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  struct cas_store *s = cas_store_open (store, &o);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cas_disk_write (d, flushed, sizeof flushed, 0) == 0);
  CHILD_CHECK (cas_disk_write (d, flushed, 100, 40 * CRASH_BS + 10) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  /* Not flushed: over the flushed data and after it. */
  CHILD_CHECK (cas_disk_write (d, unflushed, 4 * CRASH_BS, 2 * CRASH_BS) == 0);
  CHILD_CHECK (cas_disk_write (d, unflushed, sizeof unflushed, 20 * CRASH_BS) == 0);
  CHILD_CHECK (cas_disk_zero (d, CRASH_BS, 0) == 0);
  return 0;                     /* _exit: no close, no checkpoint */
}

Test (store, crash_keeps_flushed_data)
{
  create (CRASH_BS, 3, 64 * CRASH_BS);
  fill_random (flushed, sizeof flushed, 1);
  fill_text (unflushed, sizeof unflushed, 2);
  in_crashing_child (crash_writer);

  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  uint8_t *got = malloc (sizeof flushed);
  cr_assert_eq (cas_disk_read (d, got, sizeof flushed, 0), 0);
  /* Each block holds its flushed content or the later, unflushed one. */
  for (int v = 0; v < 16; v++) {
    const uint8_t *g = got + v * CRASH_BS;
    const bool old = memcmp (g, flushed + v * CRASH_BS, CRASH_BS) == 0;
    bool newer = false;
    if (v == 0) {
      static const uint8_t zero[CRASH_BS];
      newer = memcmp (g, zero, CRASH_BS) == 0;
    }
    else if (v >= 2 && v < 6)
      newer = memcmp (g, unflushed + (v - 2) * CRASH_BS, CRASH_BS) == 0;
    cr_assert (old || newer, "block %d holds neither its flushed nor its later content", v);
  }
  read_expect (d, flushed, 100, 40 * CRASH_BS + 10);
  free (got);
  close_ok (s);
  check_clean ();
  s = open_rw ();
  read_expect (disk0 (s), flushed, 100, 40 * CRASH_BS + 10);
  close_ok (s);
}

static int
crash_after_close_and_reopen (void)
{
  /* A second session after a clean close: open, write, flush, crash. */
  struct cas_store *s = cas_store_open (store, NULL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cas_disk_write (d, unflushed, 3 * CRASH_BS, 30 * CRASH_BS) == 0);
  CHILD_CHECK (cas_disk_zero (d, CRASH_BS, 3 * CRASH_BS) == 0);
  if (cas_disk_find (s, "late") == NULL)
    CHILD_CHECK (cas_disk_add (s, "late", 8 * CRASH_BS) != NULL);
  CHILD_CHECK (cas_disk_write (cas_disk_find (s, "late"), flushed, CRASH_BS, 0) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (store, crash_replays_every_session)
{
  create (CRASH_BS, 3, 64 * CRASH_BS);
  fill_random (flushed, sizeof flushed, 3);
  fill_text (unflushed, sizeof unflushed, 4);
  struct cas_store *s = open_rw ();
  write_ok (disk0 (s), flushed, sizeof flushed, 0);
  close_ok (s);
  in_crashing_child (crash_after_close_and_reopen);
  in_crashing_child (crash_after_close_and_reopen);    /* recovery, then again */

  s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, flushed, 3 * CRASH_BS, 0);
  read_zero (d, CRASH_BS, 3 * CRASH_BS);
  read_expect (d, flushed + 4 * CRASH_BS, 12 * CRASH_BS, 4 * CRASH_BS);
  read_expect (d, unflushed, 3 * CRASH_BS, 30 * CRASH_BS);
  struct cas_disk *late = cas_disk_find (s, "late");
  cr_assert_not_null (late, "a disk added before the crash is gone");
  read_expect (late, flushed, CRASH_BS, 0);
  cr_assert_eq (cas_store_ndisks (s), 2);
  close_ok (s);
  check_clean ();
}

/* ---- delayed GC ---- */

static bool
wait_for (struct cas_store *s, bool (*cond) (const struct cas_store_stats *), int seconds)
{
  for (int i = 0; i < seconds * 20; i++) {
    struct cas_store_stats st;
    cr_assert_eq (cas_store_stats (s, &st), 0);
    if (cond (&st))
      return true;
    const struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  return false;
}

static bool
gc_done (const struct cas_store_stats *st)
{
  return st->dead_blocks == 0 && st->gc_freed_blocks >= 1 && st->free_bytes > 0;
}

Test (store, gc_frees_overwritten_block)
{
  const uint32_t bs = 4096;
  uint8_t a[4096], b[4096], c[4096];

  create (bs, 0, 64 * bs);
  struct cas_store *s = open_gc (0);
  cr_assert_eq (cas_store_start (s), 0);
  struct cas_disk *d = disk0 (s);
  fill_random (a, bs, 1);
  fill_random (b, bs, 2);
  fill_random (c, bs, 3);
  write_ok (d, a, bs, 0);               /* data file offset 0 */
  write_ok (d, b, bs, bs);              /* offset 4096: keeps a off the end */
  write_ok (d, c, bs, 0);               /* a is now dead */
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.dead_blocks, 1);
  cr_assert_eq (st.dead_bytes, bs);
  cr_assert_eq (st.nblocks, 3);
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert (wait_for (s, gc_done, 5), "the GC did not free the dead block in 5 s");
  st = stats (s);
  cr_assert_eq (st.nblocks, 2);
  cr_assert_eq (st.free_bytes, bs);
  cr_assert_eq (st.gc_freed_blocks, 1);
  read_expect (d, c, bs, 0);
  read_expect (d, b, bs, bs);
  /* The freed space is reused. */
  write_ok (d, a, bs, 2 * bs);
  st = stats (s);
  cr_assert_eq (st.free_bytes, 0);
  cr_assert_eq (st.data_file_end, 3 * bs);
  read_expect (d, a, bs, 2 * bs);
  close_ok (s);
  check_clean ();
  s = open_rw ();
  read_expect (disk0 (s), c, bs, 0);
  read_expect (disk0 (s), a, bs, 2 * bs);
  close_ok (s);
}

Test (store, gc_delay_lets_dedup_revive)
{
  const uint32_t bs = 4096;
  uint8_t a[4096], b[4096];

  create (bs, 3, 64 * bs);
  struct cas_store *s = open_gc (3600);
  cr_assert_eq (cas_store_start (s), 0);
  struct cas_disk *d = disk0 (s);
  fill_random (a, bs, 1);
  fill_random (b, bs, 2);
  write_ok (d, a, bs, 0);
  write_ok (d, b, bs, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.dead_blocks, 1);
  cr_assert_eq (st.nblocks, 2);
  const uint64_t end = st.data_file_end;
  /* Writing a's content again finds the dead block: nothing is stored. */
  write_ok (d, a, bs, 7 * bs);
  st = stats (s);
  cr_assert_eq (st.dead_blocks, 0);
  cr_assert_eq (st.nblocks, 2);
  cr_assert_eq (st.data_file_end, end);
  read_expect (d, a, bs, 7 * bs);
  close_ok (s);

  /* Dead blocks survive a close and reopen (still waiting for the GC). */
  s = open_gc (3600);
  d = disk0 (s);
  write_ok (d, a, bs, 0);               /* b dies, a has two references */
  close_ok (s);
  s = open_gc (3600);
  st = stats (s);
  cr_assert_eq (st.nblocks, 2);
  cr_assert_eq (st.dead_blocks, 1);
  write_ok (disk0 (s), b, bs, 9 * bs);
  cr_assert_eq (stats (s).dead_blocks, 0);
  cr_assert_eq (stats (s).nblocks, 2);
  close_ok (s);
  check_clean ();
}

/* ---- the reference cap (index.h, CAS_REF_MAX) ----
 *
 * A guest can point every block of its disk at one content; 2^31
 * references would run into the KILLED bit.  Past the store's ref_max the
 * data path stores another copy instead of taking a reference.  These
 * tests lower ref_max (the tests' hook) so that a few writes reach it.
 */

/* The blocks of the index that hold references: their ids and refcounts. */
struct live_refs {
  size_t n;
  uint64_t id[64];
  uint32_t refs[64];
  uint64_t total;               /* sum of refs */
  uint32_t max;                 /* the largest */
};

static int
note_live (void *opaque, struct cas_block *b)
{
  struct live_refs *l = opaque;
  const uint32_t r = cas_block_refs (b);

  if (r == 0)
    return 0;
  cr_assert_lt (l->n, 64, "more live blocks than the test expects");
  l->id[l->n] = b->id;
  l->refs[l->n++] = r;
  l->total += r;
  if (r > l->max)
    l->max = r;
  return 0;
}

static struct live_refs
live_refs (struct cas_store *s)
{
  struct live_refs l = { 0 };

  cas_index_walk (&s->index, note_live, &l);
  return l;
}

/* Refcount of block ID, or UINT32_MAX if it is not in the index. */
struct id_refs {
  uint64_t id;
  uint32_t refs;
};

static int
find_id (void *opaque, struct cas_block *b)
{
  struct id_refs *w = opaque;

  if (b->id != w->id)
    return 0;
  w->refs = cas_block_refs (b);
  return 1;
}

static uint32_t
refs_of_id (struct cas_store *s, uint64_t id)
{
  struct id_refs w = { .id = id, .refs = UINT32_MAX };

  cas_index_walk (&s->index, find_id, &w);
  return w.refs;
}

Test (store, ref_cap_stores_copies_of_one_content)
{
  const uint32_t bs = 4096, cap = 8, n = 21;
  uint8_t x[4096], y[4096], many[8 * 4096];

  create (bs, 0, 64 * bs);
  struct cas_store *s = open_rw ();
  s->ref_max = cap;
  struct cas_disk *d = disk0 (s);
  fill_random (x, bs, 5);
  /* 21 references to one content, by every way of writing a block: whole
   * single blocks, one multi-block write, and a partial write that
   * completes a block (read, merge, store under the stripe lock).
   */
  for (uint32_t v = 0; v < 12; v++)
    write_ok (d, x, bs, (uint64_t) v * bs);
  for (uint32_t i = 0; i < 8; i++)
    memcpy (many + i * bs, x, bs);
  write_ok (d, many, sizeof many, 12 * (uint64_t) bs);
  write_ok (d, x, bs / 2, 20 * (uint64_t) bs);
  write_ok (d, x + bs / 2, bs / 2, 20 * (uint64_t) bs + bs / 2);
  for (uint32_t v = 0; v < n; v++)
    read_expect (d, x, bs, (uint64_t) v * bs);

  struct live_refs l = live_refs (s);
  cr_assert_eq (l.total, n, "%" PRIu64 " references, %" PRIu32 " written", l.total, n);
  cr_assert_leq (l.max, cap, "a block has %" PRIu32 " references, the cap is %" PRIu32,
                 l.max, cap);
  cr_assert_eq (l.n, (n + cap - 1) / cap, "%zu blocks hold the content, expected %" PRIu32
                " (copies of at most %" PRIu32 " references)", l.n, (n + cap - 1) / cap, cap);
  cr_assert_eq (cas_store_verify (s), 0, "verify: %s", errors);
  close_ok (s);
  check_clean ();

  /* Reopened (the cap back at CAS_REF_MAX): the recount finds the same
   * copies and counts, and the content reads back from each.
   */
  s = open_rw ();
  d = disk0 (s);
  const struct live_refs again = live_refs (s);
  cr_assert_eq (again.n, l.n);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq (refs_of_id (s, l.id[i]), l.refs[i], "block id %" PRIu64 " recounted to %"
                  PRIu32 ", had %" PRIu32, l.id[i], refs_of_id (s, l.id[i]), l.refs[i]);
  for (uint32_t v = 0; v < n; v++)
    read_expect (d, x, bs, (uint64_t) v * bs);

  /* Blocks past the cap (as a store from older code may hold: the cap
   * lowered below the counts here) are accepted: they take no new
   * reference and still lose theirs.
   */
  s->ref_max = cap / 2;
  write_ok (d, x, bs, 30 * (uint64_t) bs);
  l = live_refs (s);
  cr_assert_eq (l.n, again.n + 1, "a full block took a reference: %zu blocks", l.n);
  cr_assert_eq (l.total, n + 1);
  fill_random (y, bs, 6);
  write_ok (d, y, bs, 0);
  cr_assert_eq (live_refs (s).total, n + 1, "x lost one, y has one");
  read_expect (d, y, bs, 0);
  read_expect (d, x, bs, 30 * (uint64_t) bs);
  cr_assert_eq (cas_store_verify (s), 0, "verify: %s", errors);
  close_ok (s);
  check_clean ();
}

Test (store, ref_cap_copies_are_freed_by_overwrite_and_trim)
{
  const uint32_t bs = 4096, cap = 4, n = 10;
  uint8_t x[4096], other[4096];

  create (bs, 3, 64 * bs);
  struct cas_store *s = open_rw ();
  s->ref_max = cap;
  struct cas_disk *d = disk0 (s);
  fill_text (x, bs, 7);                 /* compressed copies */
  for (uint32_t v = 0; v < n; v++)
    write_ok (d, x, bs, (uint64_t) v * bs);
  const struct live_refs l = live_refs (s);
  cr_assert_eq (l.n, 3, "%zu blocks hold the content, expected 3 (4 + 4 + 2)", l.n);
  cr_assert_eq (l.total, n);

  /* Overwrite half of them with other contents, trim the rest: every
   * copy loses every reference and is dead.
   */
  for (uint32_t v = 0; v < n / 2; v++) {
    fill_random (other, bs, 100 + v);
    write_ok (d, other, bs, (uint64_t) v * bs);
  }
  cr_assert_eq (cas_disk_zero (d, (n / 2) * bs, (uint64_t) (n / 2) * bs), 0, "%s", errors);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq (refs_of_id (s, l.id[i]), 0, "block id %" PRIu64 " still has %" PRIu32
                  " references", l.id[i], refs_of_id (s, l.id[i]));
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.dead_blocks, l.n, "%" PRIu64 " dead blocks", st.dead_blocks);
  cr_assert_eq (st.nblocks, l.n + n / 2);

  /* The GC kills and frees them (compact does not wait for gc-delay). */
  cr_assert_geq (cas_store_compact (s, NULL, NULL), 0, "compact: %s", errors);
  st = stats (s);
  cr_assert_eq (st.dead_blocks, 0);
  cr_assert_eq (st.nblocks, n / 2, "%" PRIu64 " blocks left", st.nblocks);
  cr_assert_eq (st.gc_freed_blocks, l.n);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq (refs_of_id (s, l.id[i]), UINT32_MAX, "block id %" PRIu64 " is still indexed",
                  l.id[i]);
  /* The content is stored afresh when written again. */
  write_ok (d, x, bs, (uint64_t) (n - 1) * bs);
  read_expect (d, x, bs, (uint64_t) (n - 1) * bs);
  read_zero (d, bs, (uint64_t) (n / 2) * bs);
  cr_assert_eq (live_refs (s).total, n / 2 + 1);
  cr_assert_eq (cas_store_verify (s), 0, "verify: %s", errors);
  close_ok (s);
  check_clean ();
}

/* ---- concurrency ---- */

#define NWRITERS 4
static struct cas_disk *cdisk;
static pthread_barrier_t barrier;

/* Each thread writes its own quarter of every block, in small pieces:
 * partial writes of one block from different threads must not lose each
 * other's bytes.
 */
static void *
quarter_writer (void *arg)
{
  const uintptr_t t = (uintptr_t) arg;
  uint8_t piece[1024];
  intptr_t bad = 0;

  pthread_barrier_wait (&barrier);
  for (int round = 0; round < 3; round++)
    for (uint64_t v = 0; v < 64; v++) {
      memset (piece, (int) (1 + t + 16 * round), sizeof piece);
      piece[0] = v;
      if (cas_disk_write (cdisk, piece, sizeof piece, v * 4096 + t * 1024) == -1)
        bad++;
    }
  return (void *) bad;
}

Test (store, concurrent_partial_writes_same_blocks)
{
  pthread_t th[NWRITERS];

  create (4096, 3, 64 * 4096);
  struct cas_store *s = open_rw ();
  cdisk = disk0 (s);
  pthread_barrier_init (&barrier, NULL, NWRITERS);
  for (uintptr_t t = 0; t < NWRITERS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, quarter_writer, (void *) t), 0);
  for (int t = 0; t < NWRITERS; t++) {
    void *bad;
    pthread_join (th[t], &bad);
    cr_assert_null (bad, "thread %d: %ld writes failed: %s", t, (long) (intptr_t) bad, errors);
  }
  pthread_barrier_destroy (&barrier);
  uint8_t want[4096];
  for (uint64_t v = 0; v < 64; v++) {
    for (int t = 0; t < NWRITERS; t++) {
      memset (want + t * 1024, 1 + t + 32, 1024);
      want[t * 1024] = v;
    }
    read_expect (cdisk, want, 4096, v * 4096);
  }
  close_ok (s);
  check_clean ();
}

/* All threads write the same contents at the same time to their own
 * offsets: dedup races (64 KiB blocks make the window between look-up and
 * insertion wide enough to lose some), and each content must end up
 * stored once.
 */
#define RACE_BS 65536
#define RACE_ROUNDS 40

static void *
same_content_writer (void *arg)
{
  const uintptr_t t = (uintptr_t) arg;
  uint8_t *buf = malloc (RACE_BS);
  intptr_t bad = 0;

  for (uint64_t r = 0; buf && r < RACE_ROUNDS; r++) {
    fill_random (buf, RACE_BS, r);
    pthread_barrier_wait (&barrier);
    if (cas_disk_write (cdisk, buf, RACE_BS, (r * NWRITERS + t) * RACE_BS) == -1)
      bad++;
  }
  free (buf);
  return buf ? (void *) bad : (void *) 1;
}

Test (store, concurrent_identical_writes_dedup)
{
  pthread_t th[NWRITERS];
  uint8_t *buf = malloc (RACE_BS);

  create (RACE_BS, 0, RACE_ROUNDS * NWRITERS * RACE_BS);
  struct cas_store *s = open_rw ();
  cdisk = disk0 (s);
  pthread_barrier_init (&barrier, NULL, NWRITERS);
  for (uintptr_t t = 0; t < NWRITERS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, same_content_writer, (void *) t), 0);
  for (int t = 0; t < NWRITERS; t++) {
    void *bad;
    pthread_join (th[t], &bad);
    cr_assert_null (bad, "thread %d: writes failed: %s", t, errors);
  }
  pthread_barrier_destroy (&barrier);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.nblocks, RACE_ROUNDS, "%" PRIu64 " blocks stored for %d contents",
                st.nblocks, RACE_ROUNDS);
  cr_assert_eq (st.logical_bytes, (uint64_t) RACE_ROUNDS * NWRITERS * RACE_BS);
  cr_assert_eq (st.dead_blocks, 0);
  cr_assert_eq (st.unique_bytes, (uint64_t) RACE_ROUNDS * RACE_BS);
  for (uint64_t r = 0; r < RACE_ROUNDS; r++) {
    fill_random (buf, RACE_BS, r);
    for (int t = 0; t < NWRITERS; t++)
      read_expect (cdisk, buf, RACE_BS, (r * NWRITERS + t) * RACE_BS);
  }
  close_ok (s);
  free (buf);
  /* Space written by the losers of a race was never referenced: a clean
   * close must not leave it behind as leaked space.
   */
  check_clean ();
}

/* Writers keep rewriting a few blocks (the GC frees the old versions and
 * their space is reused) while readers check that every block they read
 * is one whole, self-consistent version: never torn, never someone
 * else's data, never an I/O error.
 */
#define HOT_BLOCKS 32
static struct cas_store *hot_store;
static volatile bool stop_all;

static void
make_version (uint8_t *p, uint64_t v, uint64_t version)
{
  fill_random (p, 4096, v * 1000003 + version);
  memcpy (p, &v, 8);
  memcpy (p + 8, &version, 8);
}

static void *
hot_writer (void *arg)
{
  const uintptr_t t = (uintptr_t) arg;
  uint8_t buf[4096];
  intptr_t bad = 0;
  uint64_t version = 1;

  while (!__atomic_load_n (&stop_all, __ATOMIC_ACQUIRE) && !bad) {
    for (uint64_t v = t; v < HOT_BLOCKS; v += 2) {
      make_version (buf, v, version);
      if (cas_disk_write (cdisk, buf, sizeof buf, v * 4096) == -1)
        bad = 1;
    }
    if (version++ % 8 == 0 && cas_store_flush (hot_store) == -1)
      bad = 2;
    /* A steady, bounded rate: a few thousand blocks die per second. */
    const struct timespec pause = { .tv_nsec = 5 * 1000 * 1000 };
    nanosleep (&pause, NULL);
  }
  return (void *) bad;
}

static void *
hot_reader (void *arg)
{
  uint8_t got[4096], want[4096];
  static const uint8_t zero[4096];
  uintptr_t bad = 0;
  uint64_t x = (uintptr_t) arg + 1;

  while (!__atomic_load_n (&stop_all, __ATOMIC_ACQUIRE) && !bad) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    const uint64_t v = (x >> 33) % HOT_BLOCKS;
    uint64_t tag, version;
    if (cas_disk_read (cdisk, got, sizeof got, v * 4096) == -1) {
      bad = 1;                  /* EIO: read freed or reused space */
      break;
    }
    if (memcmp (got, zero, sizeof got) == 0)
      continue;                 /* not written yet */
    memcpy (&tag, got, 8);
    memcpy (&version, got + 8, 8);
    make_version (want, v, version);
    if (tag != v || memcmp (got, want, sizeof got) != 0)
      bad = 2;
  }
  return (void *) bad;
}

Test (store, concurrent_readers_writers_and_gc)
{
  pthread_t w[2], r[3];
  struct timespec ts = { .tv_sec = 2 };   /* two GC ticks */

  create (4096, 0, HOT_BLOCKS * 4096);
  hot_store = open_gc (0);
  cr_assert_eq (cas_store_start (hot_store), 0);
  cdisk = disk0 (hot_store);
  stop_all = false;
  for (uintptr_t t = 0; t < 2; t++)
    cr_assert_eq (pthread_create (&w[t], NULL, hot_writer, (void *) t), 0);
  for (uintptr_t t = 0; t < 3; t++)
    cr_assert_eq (pthread_create (&r[t], NULL, hot_reader, (void *) t), 0);
  nanosleep (&ts, NULL);
  __atomic_store_n (&stop_all, true, __ATOMIC_RELEASE);
  for (int t = 0; t < 2; t++) {
    void *bad;
    pthread_join (w[t], &bad);
    cr_assert_null (bad, "writer %d failed (%ld): %s", t, (long) (intptr_t) bad, errors);
  }
  for (int t = 0; t < 3; t++) {
    void *bad;
    pthread_join (r[t], &bad);
    cr_assert_null (bad, "reader %d: %s: %s", t,
                    (uintptr_t) bad == 1 ? "read failed" : "read a torn or foreign block",
                    errors);
  }
  struct cas_store_stats st = stats (hot_store);
  cr_assert_gt (st.gc_freed_blocks, 0, "the GC never ran: the test proved nothing");
  cr_assert_eq (st.quarantined, 0);
  close_ok (hot_store);
  check_clean ();
  /* That writes never wait for the GC's I/O (erasing freed space runs
   * outside the allocator's lock) is checked without timing, in
   * test-alloc's erase_then_flush_makes_free.
   */
}

/* Writers on disjoint ranges of two disks, with flushes, then a crash:
 * everything flushed must be there.
 */
static struct cas_disk *cdisks[2];

static void *
range_writer (void *arg)
{
  const uintptr_t t = (uintptr_t) arg;
  uint8_t buf[8192];
  intptr_t bad = 0;

  for (uint64_t i = 0; i < 64; i++) {
    fill_random (buf, sizeof buf, t * 1000 + i);
    if (cas_disk_write (cdisks[t % 2], buf, sizeof buf, ((t / 2) * 64 + i) * 8192 + 100) == -1)
      bad++;
  }
  return (void *) bad;
}

static int
concurrent_then_crash (void)
{
  pthread_t th[NWRITERS];
  struct cas_store *s = cas_store_open (store, NULL);

  CHILD_CHECK (s != NULL);
  cdisks[0] = cas_disk_find (s, "disk0");
  cdisks[1] = cas_disk_add (s, "disk1", 2 * 64 * 8192 + 8192);
  CHILD_CHECK (cdisks[0] && cdisks[1]);
  for (uintptr_t t = 0; t < NWRITERS; t++)
    CHILD_CHECK (pthread_create (&th[t], NULL, range_writer, (void *) t) == 0);
  for (int t = 0; t < NWRITERS; t++) {
    void *bad;
    pthread_join (th[t], &bad);
    CHILD_CHECK (bad == NULL);
  }
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (store, concurrent_writers_then_crash)
{
  create (4096, 3, 2 * 64 * 8192 + 8192);
  in_crashing_child (concurrent_then_crash);
  struct cas_store *s = open_rw ();
  uint8_t buf[8192];
  for (uintptr_t t = 0; t < NWRITERS; t++)
    for (uint64_t i = 0; i < 64; i++) {
      fill_random (buf, sizeof buf, t * 1000 + i);
      read_expect (cas_disk_find (s, t % 2 ? "disk1" : "disk0"), buf, sizeof buf,
                   ((t / 2) * 64 + i) * 8192 + 100);
    }
  close_ok (s);
  check_clean ();
}

/* Under pressure (dead blocks taking more than gc-pressure percent of the
 * live blocks' space), the GC frees dead blocks without waiting for
 * gc-delay; below it, the delay holds.
 */
Test (store, gc_pressure_frees_dead_blocks_early)
{
  const uint32_t bs = 4096;
  uint8_t buf[4096];

  create (bs, 0, 256 * bs);
  struct cas_store *s = open_gc (3600);           /* gc-pressure: the default 25% */
  s->gc_pressure_floor = 0;
  struct cas_disk *d = disk0 (s);
  for (unsigned i = 0; i < 100; i++) {
    fill_random (buf, bs, 1000 + i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
  }
  /* 20 overwritten: 20 dead against 100 live, under 25%: they wait. */
  for (unsigned i = 0; i < 20; i++) {
    fill_random (buf, bs, 2000 + i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
  }
  cr_assert_eq (cas_store_flush (s), 0);
  cas_gc_pass (s, false);
  cr_assert_eq (stats (s).dead_blocks, 20);
  cr_assert_eq (s->gc_freed_blocks, 0);
  /* 20 more: 40 dead against 100 live, over 25%: all freed at once. */
  for (unsigned i = 20; i < 40; i++) {
    fill_random (buf, bs, 2000 + i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
  }
  cas_gc_pass (s, false);
  cr_assert_eq (s->gc_freed_blocks, 40, "freed %" PRIu64, s->gc_freed_blocks);
  cr_assert_eq (stats (s).dead_blocks, 0);
  cr_assert (s->gc_pressed);
  /* Under pressure the freed space is reused as it is, not erased. */
  cas_gc_release (s);
  struct cas_space sp;
  cas_alloc_space (&s->alloc, &sp);
  cr_assert_eq (sp.junk, 40 * bs, "junk %" PRIu64, sp.junk);
  cr_assert_eq (s->erased_bytes, 0);
  /* The overwrites go on: 5 more dead, far under 25%, but the pressure
   * holds while blocks keep dying, so they are freed at once too (the
   * writes took 5 of the junk, their victims give 5 back).
   */
  for (unsigned i = 40; i < 45; i++) {
    fill_random (buf, bs, 2000 + i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
  }
  cas_gc_pass (s, false);
  cr_assert_eq (s->gc_freed_blocks, 45, "freed %" PRIu64, s->gc_freed_blocks);
  cr_assert (s->gc_pressed);
  cas_gc_release (s);
  cas_alloc_space (&s->alloc, &sp);
  cr_assert_eq (sp.junk, 40 * bs, "junk %" PRIu64, sp.junk);
  cr_assert_eq (s->erased_bytes, 0);
  /* Pressure over (nothing dead): erasing resumes. */
  cas_gc_pass (s, false);
  cr_assert (!s->gc_pressed);
  cas_gc_release (s);
  cas_alloc_space (&s->alloc, &sp);
  cr_assert_eq (sp.junk, 0, "junk %" PRIu64, sp.junk);
  cr_assert_eq (s->erased_bytes, 40 * bs);
  for (unsigned i = 0; i < 100; i++) {
    fill_random (buf, bs, (i < 45 ? 2000 : 1000) + i);
    read_expect (d, buf, bs, (uint64_t) i * bs);
  }
  close_ok (s);
  check_clean ();

  /* gc-pressure off: the delay holds whatever the dead space. */
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.gc_pressure = 0;
  s = cas_store_open (store, &o);
  cr_assert_not_null (s);
  s->gc_pressure_floor = 0;
  d = disk0 (s);
  for (unsigned i = 0; i < 100; i++) {
    fill_random (buf, bs, 3000 + i);
    write_ok (d, buf, bs, (uint64_t) i * bs);
  }
  cas_gc_pass (s, false);
  cr_assert_eq (stats (s).dead_blocks, 100);
  cr_assert_eq (s->gc_freed_blocks, 0);
  close_ok (s);
}

/* ---- Early writeback (store_dio.c) ---- */

static bool
two_writebacks (const struct cas_store_stats *st)
{
  return st->writebacks >= 2;
}

/* Write MIB MiB of unique random data in 1 MiB requests from block V0. */
static void
write_unique_mib (struct cas_disk *d, unsigned mib, uint64_t v0, uint64_t seed)
{
  uint8_t *buf = malloc (1u << 20);

  cr_assert_not_null (buf);
  for (unsigned i = 0; i < mib; i++) {
    fill_random (buf, 1u << 20, seed + i);
    write_ok (d, buf, 1u << 20, (v0 + i) * (1u << 20));
  }
  free (buf);
}

/* Every CAS_WB_BYTES written to the data file through the page cache,
 * writeback is started: by the writer in a store that was not started,
 * by the merge thread in one that was; never in direct-I/O mode.
 */
Test (store, writeback_starts_every_few_mib)
{
  const unsigned mib = 2 * (CAS_WB_BYTES >> 20) + 4;    /* 20: two of them */

  create (65536, 1, 64u << 20);
  struct cas_store *s = open_rw ();
  write_unique_mib (disk0 (s), mib, 0, 1);
  cr_assert_eq (stats (s).writebacks, 2, "not started: %" PRIu64 " writebacks", stats (s).writebacks);
  cr_assert_eq (cas_store_flush (s), 0);
  close_ok (s);

  s = open_rw ();
  cr_assert_eq (cas_store_start (s), 0);
  write_unique_mib (disk0 (s), mib, mib, 100);
  cr_assert (wait_for (s, two_writebacks, 5), "started: %" PRIu64 " writebacks in 5 s",
             stats (s).writebacks);
  cr_assert_leq (stats (s).writebacks, 2);
  close_ok (s);

  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.direct_io = true;
  s = cas_store_open (store, &o);
  if (s == NULL && strstr (errors, "direct I/O cannot be used"))
    cr_skip_test ("%s cannot do direct I/O (as test-dio): %s", dir, errors);
  cr_assert_not_null (s, "%s", errors);
  write_unique_mib (disk0 (s), mib, 2 * mib, 200);
  cr_assert_eq (stats (s).writebacks, 0);
  close_ok (s);
  check_clean ();
}
