/* Unit tests for check.c (cas_store_check, cas_store_repair): a clean
 * store checks clean with the right counts, and each kind of damage is
 * found and named: a corrupted data block, content that does not match
 * its hash, a block that does not decompress, a wrong refcount, leaked
 * space, blocks sharing space, a map entry naming a missing block, a
 * truncated data file.  Repair fixes what it can.  Check never writes.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
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

#include "casdisk.h"
#include "format.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/util.h"

#include "fixture.h"

static void
setup (void)
{
  fixture_setup ("check");
}

TestSuite (check, .init = setup, .fini = fixture_teardown, .timeout = 20);

/* ---- the checkpoint file, to find and to plant damage ---- */

struct ckpt {
  uint8_t *buf;
  size_t len;
  uint64_t nblocks, npages;
  uint8_t *blocks, *pages;
};

static struct ckpt
read_ckpt (void)
{
  char path[400];
  struct ckpt c;

  path_of (CAS_CKPT_NAME, path, sizeof path);
  c.buf = slurp (path, &c.len);
  cr_assert_geq (c.len, CKPT_HDR_SIZE);
  const uint32_t ndisks = get_le32 (c.buf + CKPT_NDISKS);
  c.nblocks = get_le64 (c.buf + CKPT_NBLOCKS);
  c.npages = get_le64 (c.buf + CKPT_NPAGES);
  c.blocks = c.buf + CKPT_HDR_SIZE + ndisks * CKPT_DISK_SIZE;
  c.pages = c.blocks + c.nblocks * CKPT_BLOCK_SIZE;
  cr_assert_eq (c.len, (size_t) (c.pages - c.buf) + c.npages * CKPT_PAGE_SIZE);
  return c;
}

static void
write_ckpt (struct ckpt *c)
{
  char path[400];

  put_le32 (c->buf + CKPT_BODY_CRC, cas_crc32c (0, c->buf + CKPT_HDR_SIZE, c->len - CKPT_HDR_SIZE));
  put_le32 (c->buf + CKPT_HDR_CRC, 0);
  put_le32 (c->buf + CKPT_HDR_CRC, cas_crc32c (0, c->buf, CKPT_HDR_SIZE));
  path_of (CAS_CKPT_NAME, path, sizeof path);
  spit (path, c->buf, c->len);
}

/* The block record mapped at block V of disk 0. */
static uint8_t *
record_at (struct ckpt *c, uint64_t v)
{
  uint64_t id = 0;

  for (uint64_t i = 0; i < c->npages && id == 0; i++) {
    const uint8_t *p = c->pages + i * CKPT_PAGE_SIZE;
    if (get_le32 (p) == 0 && get_le64 (p + 8) == v / CAS_MAP_PAGE)
      id = get_le64 (p + 16 + 8 * (v % CAS_MAP_PAGE));
  }
  cr_assert_neq (id, 0, "block %" PRIu64 " is not mapped in the checkpoint", v);
  for (uint64_t i = 0; i < c->nblocks; i++)
    if (get_le64 (c->blocks + i * CKPT_BLOCK_SIZE) == id)
      return c->blocks + i * CKPT_BLOCK_SIZE;
  cr_assert_fail ("block id %" PRIu64 " has no record", id);
  return NULL;
}

static void
patch_data (uint64_t off, const void *bytes, size_t len)
{
  char path[400];

  path_of (CAS_DATA_NAME, path, sizeof path);
  const int fd = open (path, O_WRONLY);
  cr_assert_geq (fd, 0);
  cr_assert_eq (pwrite (fd, bytes, len, off), (ssize_t) len);
  close (fd);
}

static uint8_t A[BS], B[BS], C[BS], D[BS];

/* Blocks 0..3 hold A (random), B (random), C (text), D (text); A is also
 * at block 8.
 */
static void
store_with_data (int level)
{
  create (level, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_text (C, BS, 3);
  fill_text (D, BS, 4);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  write_ok (d, A, BS, 0);
  write_ok (d, B, BS, BS);
  write_ok (d, C, BS, 2 * BS);
  write_ok (d, D, BS, 3 * BS);
  write_ok (d, A, BS, 8 * BS);
  close_ok (s);
}

static int
expect_problem (const char *what, const char *report_has)
{
  struct cas_check_result res;

  reports[0] = '\0';
  const int r = cas_store_check (store, report, NULL, &res);
  cr_assert_gt (r, 0, "%s: check returned %d", what, r);
  cr_assert_eq (res.problems, (uint64_t) r);
  cr_assert (strstr (reports, report_has) != NULL, "%s: the report lacks '%s':\n%s",
             what, report_has, reports);
  return r;
}

/* ---- a clean store ---- */

Test (check, clean_store_counts)
{
  struct cas_check_result res;
  struct cas_store_stats st;

  store_with_data (3);
  struct cas_store *s = open_rw ();
  write_ok (disk0 (s), B, BS, 20 * BS);         /* dedup */
  write_ok (disk0 (s), C, BS, 3 * BS);          /* D dies */
  cr_assert_eq (cas_store_stats (s, &st), 0);
  close_ok (s);

  memset (&res, 0xff, sizeof res);
  reports[0] = '\0';
  cr_assert_eq (cas_store_check (store, report, NULL, &res), 0, "%s", reports);
  cr_assert_eq (res.problems, 0);
  cr_assert_eq (res.blocks_checked, st.nblocks);
  cr_assert_eq (res.blocks_checked, 4);
  cr_assert_eq (res.refs_checked, 6);           /* blocks 0, 1, 2, 3, 8, 20 */
  cr_assert_eq (res.bytes_verified, st.stored_bytes + st.dead_bytes);
  cr_assert_eq (reports[0], '\0', "a clean check reported: %s", reports);
  /* A NULL report function is allowed. */
  cr_assert_eq (cas_store_check (store, NULL, NULL, &res), 0);
}

Test (check, empty_store)
{
  struct cas_check_result res;

  create (3, 64 * BS);
  cr_assert_eq (cas_store_check (store, report, NULL, &res), 0);
  cr_assert_eq (res.blocks_checked, 0);
  cr_assert_eq (res.refs_checked, 0);
}

Test (check, not_a_store)
{
  struct cas_check_result res;

  errno = 0;
  cr_assert_eq (cas_store_check (store, report, NULL, &res), -1);
  cr_assert_eq (errno, ENOENT);
  cr_assert_eq (mkdir (store, 0700), 0);
  cr_assert_eq (cas_store_check (store, report, NULL, &res), -1);
}

/* ---- damaged data ---- */

Test (check, corrupted_block_is_found_and_quarantined)
{
  store_with_data (3);
  struct ckpt c = read_ckpt ();
  const uint64_t off = get_le64 (record_at (&c, 2) + 8);       /* C, compressed */
  free (c.buf);
  uint8_t byte;
  char path[400];
  path_of (CAS_DATA_NAME, path, sizeof path);
  int fd = open (path, O_RDONLY);
  cr_assert_eq (pread (fd, &byte, 1, off + 10), 1);
  close (fd);
  byte ^= 0x20;
  patch_data (off + 10, &byte, 1);

  cr_assert_eq (expect_problem ("a flipped data byte", "checksum"), 1);

  /* Reading it fails with EIO and quarantines the block; the rest reads. */
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  uint8_t buf[BS];
  errno = 0;
  cr_assert_eq (cas_disk_read (d, buf, BS, 2 * BS), -1);
  cr_assert_eq (errno, EIO);
  errno = 0;
  cr_assert_eq (cas_disk_read (d, buf, 10, 2 * BS + 5), -1, "a partial read of a bad block");
  cr_assert_eq (errno, EIO);
  read_expect (d, A, BS, 0);
  read_expect (d, D, BS, 3 * BS);
  struct cas_store_stats st;
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.quarantined, 1);
  /* A quarantined block is not used for dedup: writing C again stores a
   * good copy, and the block reads again.
   */
  write_ok (d, C, BS, 2 * BS);
  read_expect (d, C, BS, 2 * BS);
  write_ok (d, C, BS, 30 * BS);
  read_expect (d, C, BS, 30 * BS);
  close_ok (s);
  expect_problem ("a quarantined block", "quarantined");
}

Test (check, content_does_not_match_hash)
{
  store_with_data (0);
  struct ckpt c = read_ckpt ();
  uint8_t *r = record_at (&c, 1);                               /* B, raw */
  /* Put other content there with a matching crc: only the hash can tell. */
  uint8_t other[BS];
  fill_random (other, BS, 99);
  patch_data (get_le64 (r + 8), other, BS);
  put_le32 (r + 60, cas_crc32c (0, other, BS));
  write_ckpt (&c);
  free (c.buf);
  cr_assert_eq (expect_problem ("content swapped", "does not match its key"), 1);
}

Test (check, block_does_not_decompress)
{
  store_with_data (3);
  struct ckpt c = read_ckpt ();
  uint8_t *r = record_at (&c, 3);                               /* D, compressed */
  cr_assert_eq (get_le32 (r + 52), CAS_BLK_COMPRESSED);
  const uint32_t len = get_le32 (r + 48);
  uint8_t junk[BS];
  fill_random (junk, len, 5);
  patch_data (get_le64 (r + 8), junk, len);
  put_le32 (r + 60, cas_crc32c (0, junk, len));
  write_ckpt (&c);
  free (c.buf);
  cr_assert_eq (expect_problem ("garbage in a compressed block", "decompress"), 1);
}

Test (check, truncated_data_file)
{
  char path[400];
  struct stat st;

  store_with_data (0);
  path_of (CAS_DATA_NAME, path, sizeof path);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (truncate (path, st.st_size - 100), 0);
  expect_problem ("a truncated data file", "truncated");
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EUCLEAN);
}

/* ---- damaged metadata ---- */

Test (check, wrong_refcount)
{
  store_with_data (3);
  struct ckpt c = read_ckpt ();
  uint8_t *r = record_at (&c, 0);                               /* A: 2 references */
  cr_assert_eq (get_le32 (r + 56), 2);
  put_le32 (r + 56, 1);
  write_ckpt (&c);
  free (c.buf);
  cr_assert_eq (expect_problem ("a refcount one too low", "refcount"), 1);

  struct cas_check_result res;
  reports[0] = '\0';
  cr_assert_eq (cas_store_repair (store, report, NULL, &res), 0, "%s", reports);
  cr_assert (strstr (reports, "refcount") != NULL, "repair did not report: %s", reports);
  check_clean ();
  c = read_ckpt ();
  cr_assert_eq (get_le32 (record_at (&c, 0) + 56), 2, "repair did not fix the refcount");
  free (c.buf);
  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), A, BS, 8 * BS);
  close_ok (s);
}

Test (check, blocks_sharing_space)
{
  store_with_data (0);
  struct ckpt c = read_ckpt ();
  uint8_t *a = record_at (&c, 0), *b = record_at (&c, 1);
  put_le64 (b + 8, get_le64 (a + 8));
  write_ckpt (&c);
  free (c.buf);
  expect_problem ("two blocks at one offset", "same space");
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EUCLEAN);
}

Test (check, map_entry_to_missing_block)
{
  store_with_data (3);
  struct ckpt c = read_ckpt ();
  cr_assert_eq (c.npages, 1);
  put_le64 (c.pages + 16 + 8 * 1, 999999);                      /* block 1 */
  write_ckpt (&c);
  free (c.buf);
  expect_problem ("a map entry naming no block", "unknown block id");
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL));
  cr_assert_eq (errno, EUCLEAN);

  /* Repair: the entry reads as zeroes, the rest is intact. */
  struct cas_check_result res;
  reports[0] = '\0';
  cr_assert_eq (cas_store_repair (store, report, NULL, &res), 0, "%s%s", reports, errors);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_zero (d, BS, BS);
  read_expect (d, A, BS, 0);
  read_expect (d, C, BS, 2 * BS);
  close_ok (s);
  check_clean ();
}

Test (check, leaked_space)
{
  char path[400];
  struct stat st;
  uint8_t junk[3 * 4096];

  store_with_data (0);
  path_of (CAS_DATA_NAME, path, sizeof path);
  cr_assert_eq (stat (path, &st), 0);
  /* Data past the last block, as a crashed write would leave it. */
  fill_random (junk, sizeof junk, 7);
  patch_data (round_up (st.st_size, 4096) + 8192, junk, sizeof junk);
  expect_problem ("data past the last block", "leaked");

  struct cas_check_result res;
  reports[0] = '\0';
  cr_assert_eq (cas_store_repair (store, report, NULL, &res), 0, "%s", reports);
  check_clean ();
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq ((uint64_t) st.st_size, 4 * BS, "repair did not cut the data file");
}

Test (check, leaked_space_between_blocks)
{
  /* A block freed by the GC leaves a punched hole; data written back into
   * that hole belongs to no block.
   */
  store_with_data (0);
  struct ckpt c = read_ckpt ();
  const uint64_t off_b = get_le64 (record_at (&c, 1) + 8);
  free (c.buf);
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.gc_delay = 0;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s);
  cr_assert_eq (cas_store_start (s), 0);
  cr_assert_eq (cas_disk_zero (disk0 (s), BS, BS), 0);          /* B dies */
  cr_assert_eq (cas_store_flush (s), 0);
  struct cas_store_stats st;
  for (int i = 0; i < 100; i++) {
    cr_assert_eq (cas_store_stats (s, &st), 0);
    if (st.gc_freed_blocks == 1 && st.free_bytes == BS)
      break;
    const struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  cr_assert_eq (st.gc_freed_blocks, 1, "the GC did not run");
  cr_assert_eq (st.free_bytes, BS);
  close_ok (s);
  check_clean ();                       /* the freed space was punched */

  patch_data (off_b, B, BS);
  expect_problem ("data in freed space", "leaked");
  struct cas_check_result res;
  cr_assert_eq (cas_store_repair (store, report, NULL, &res), 0, "%s", reports);
  check_clean ();
}

/* ---- check is read-only ---- */

static uint32_t
file_crc (const char *name)
{
  char path[400];
  size_t len;

  if (strcmp (name, "journal") == 0)
    journal_path (path, sizeof path);
  else
    path_of (name, path, sizeof path);
  uint8_t *buf = slurp (path, &len);
  const uint32_t crc = cas_crc32c (0, buf, len);
  free (buf);
  return crc;
}

Test (check, never_writes)
{
  int n;

  store_with_data (3);
  struct ckpt c = read_ckpt ();
  put_le32 (record_at (&c, 0) + 56, 7);                 /* something to find */
  write_ckpt (&c);
  free (c.buf);
  const uint64_t gen = journal_gen (&n);
  const uint32_t sb = file_crc ("superblock"), ck = file_crc ("checkpoint"),
    da = file_crc ("data"), jo = file_crc ("journal");
  expect_problem ("a wrong refcount", "refcount");
  cr_assert_eq (file_crc ("superblock"), sb);
  cr_assert_eq (file_crc ("checkpoint"), ck);
  cr_assert_eq (file_crc ("data"), da);
  cr_assert_eq (file_crc ("journal"), jo);
  int n2;
  cr_assert_eq (journal_gen (&n2), gen);
  cr_assert_eq (n2, n, "check created or removed a journal");
}

/* ---- after a crash ---- */

static int
crash_with_unflushed_writes (void)
{
  struct cas_store *s = cas_store_open (store, NULL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (cas_disk_write (d, B, BS, 10 * BS) == 0);
  CHILD_CHECK (cas_disk_write (d, D, BS, 0) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  for (uint64_t v = 20; v < 40; v++) {          /* never flushed */
    uint8_t buf[BS];
    fill_random (buf, BS, v);
    CHILD_CHECK (cas_disk_write (d, buf, BS, v * BS) == 0);
  }
  return 0;
}

Test (check, crashed_store_checks_and_repairs)
{
  struct cas_check_result res;

  store_with_data (0);
  in_crashing_child (crash_with_unflushed_writes);
  /* The metadata is sound; unflushed blocks may show as leaked space. */
  reports[0] = '\0';
  const int r = cas_store_check (store, report, NULL, &res);
  cr_assert_geq (r, 0, "check could not read a crashed store: %s", errors);
  if (r > 0)
    cr_assert (strstr (reports, "leaked") != NULL, "unexpected problems after a crash:\n%s",
               reports);
  reports[0] = '\0';
  cr_assert_eq (cas_store_repair (store, report, NULL, &res), 0, "%s", reports);
  check_clean ();
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, D, BS, 0);
  read_expect (d, B, BS, 10 * BS);
  read_expect (d, A, BS, 8 * BS);
  read_zero (d, 20 * BS, 20 * BS);
  close_ok (s);
}
