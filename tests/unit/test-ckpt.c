/* Unit tests for ckpt.c: the checkpoint file format (header, disk, block
 * and page records, checksums), what a checkpoint records (refcounts, dead
 * blocks, sparse map pages), damage detection, a refcount that disagrees
 * with the maps, an interrupted checkpoint (two journals to replay), and
 * the background checkpoint when the journal grows.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "engine/store.h"
#include "format.h"
#include "meta/state.h"
#include "util/crc32c.h"
#include "util/hash.h"
#include "util/util.h"

#include "fixture.h"

static void
setup (void)
{
  fixture_setup ("ckpt");
}

TestSuite (ckpt, .init = setup, .fini = fixture_teardown, .timeout = 20);

/* ---- the checkpoint file ---- */

struct ckpt {
  uint8_t *buf;
  size_t len;
  uint32_t ndisks;
  uint64_t gen, next_seq, nblocks, npages, next_id;
  uint8_t *disks, *blocks, *pages;      /* first record of each kind */
};

/* Read and validate the checkpoint: checksums, counts and size. */
static struct ckpt
read_ckpt (void)
{
  char path[400];
  struct ckpt c;
  uint8_t hdr[CKPT_HDR_SIZE];

  path_of (CAS_CKPT_NAME, path, sizeof path);
  c.buf = slurp (path, &c.len);
  cr_assert_geq (c.len, CKPT_HDR_SIZE);
  cr_assert_arr_eq (c.buf, CAS_CKPT_MAGIC, 8);
  cr_assert_eq (get_le32 (c.buf + CKPT_VERSION), CAS_FORMAT_VERSION);
  memcpy (hdr, c.buf, sizeof hdr);
  put_le32 (hdr + CKPT_HDR_CRC, 0);
  cr_assert_eq (cas_crc32c (0, hdr, sizeof hdr), get_le32 (c.buf + CKPT_HDR_CRC),
                "checkpoint header checksum");
  cr_assert_eq (cas_crc32c (0, c.buf + CKPT_HDR_SIZE, c.len - CKPT_HDR_SIZE),
                get_le32 (c.buf + CKPT_BODY_CRC), "checkpoint body checksum");
  c.gen = get_le64 (c.buf + CKPT_GEN);
  c.next_seq = get_le64 (c.buf + CKPT_NEXT_SEQ);
  c.ndisks = get_le32 (c.buf + CKPT_NDISKS);
  c.nblocks = get_le64 (c.buf + CKPT_NBLOCKS);
  c.npages = get_le64 (c.buf + CKPT_NPAGES);
  c.next_id = get_le64 (c.buf + CKPT_NEXT_ID);
  cr_assert_eq (c.len, CKPT_HDR_SIZE + c.ndisks * CKPT_DISK_SIZE + c.nblocks * CKPT_BLOCK_SIZE
                + c.npages * CKPT_PAGE_SIZE, "checkpoint size does not match its counts");
  c.disks = c.buf + CKPT_HDR_SIZE;
  c.blocks = c.disks + c.ndisks * CKPT_DISK_SIZE;
  c.pages = c.blocks + c.nblocks * CKPT_BLOCK_SIZE;
  return c;
}

/* Write C back with both checksums recomputed. */
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

static uint8_t *
block_record (struct ckpt *c, uint64_t id)
{
  for (uint64_t i = 0; i < c->nblocks; i++)
    if (get_le64 (c->blocks + i * CKPT_BLOCK_SIZE) == id)
      return c->blocks + i * CKPT_BLOCK_SIZE;
  return NULL;
}

/* The block id the checkpoint maps at block V of disk DISK (0 = none). */
static uint64_t
mapped_id (struct ckpt *c, uint32_t disk, uint64_t v)
{
  for (uint64_t i = 0; i < c->npages; i++) {
    const uint8_t *p = c->pages + i * CKPT_PAGE_SIZE;
    if (get_le32 (p) == disk && get_le64 (p + 8) == v / CAS_MAP_PAGE)
      return get_le64 (p + 16 + 8 * (v % CAS_MAP_PAGE));
  }
  return 0;
}

static uint64_t
journal_first_seq (void)
{
  char path[400];
  size_t len;

  journal_path (path, sizeof path);
  uint8_t *j = slurp (path, &len);
  cr_assert_geq (len, JRN_HDR_SIZE);
  const uint64_t seq = get_le64 (j + JRN_FIRST_SEQ);
  free (j);
  return seq;
}

static uint8_t A[BS], B[BS], C[BS], D[BS];

static void
make_data (unsigned seed)
{
  fill_random (A, BS, seed + 1);
  fill_random (B, BS, seed + 2);
  fill_text (C, BS, seed + 3);
  fill_text (D, BS, seed + 4);
}

Test (ckpt, created_store_layout)
{
  create (3, 123456789);
  struct ckpt c = read_ckpt ();
  cr_assert_eq (c.gen, 1);
  cr_assert_eq (c.next_seq, 1);
  cr_assert_eq (c.ndisks, 1);
  cr_assert_eq (c.nblocks, 0);
  cr_assert_eq (c.npages, 0);
  cr_assert_eq (c.next_id, 1);
  cr_assert_eq (c.len, CKPT_HDR_SIZE + CKPT_DISK_SIZE);
  cr_assert_eq (get_le32 (c.disks), 0);                 /* id */
  cr_assert_eq (get_le32 (c.disks + 4), 5);             /* name length */
  cr_assert_eq (get_le64 (c.disks + 8), 123456789);
  cr_assert_arr_eq (c.disks + 16, "disk0", 5);
  for (int i = 16 + 5; i < CKPT_DISK_SIZE; i++)
    cr_assert_eq (c.disks[i], 0, "disk record byte %d not zero", i);
  free (c.buf);
  cr_assert_eq (journal_first_seq (), c.next_seq);
}

Test (ckpt, records_after_close)
{
  create (3, 3 * CAS_MAP_PAGE * (uint64_t) BS);
  make_data (0);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  write_ok (d, A, BS, 0);
  write_ok (d, A, BS, 10 * BS);                         /* A twice */
  write_ok (d, B, BS, (2 * CAS_MAP_PAGE + 5) * (uint64_t) BS);  /* page 2 */
  write_ok (d, C, BS, 3 * BS);
  write_ok (d, D, BS, 3 * BS);                          /* C dead */
  struct cas_disk *d2 = cas_disk_add (s, "other", 8 * BS);
  cr_assert_not_null (d2);
  write_ok (d2, B, BS, 7 * BS);                         /* B on both disks */
  close_ok (s);

  struct ckpt c = read_ckpt ();
  cr_assert_gt (c.gen, 1);
  cr_assert_eq (journal_first_seq (), c.next_seq, "checkpoint and journal disagree on the seq");
  cr_assert_eq (c.ndisks, 2);
  cr_assert_eq (get_le32 (c.disks + CKPT_DISK_SIZE), 1);
  cr_assert_arr_eq (c.disks + CKPT_DISK_SIZE + 16, "other", 5);
  cr_assert_eq (get_le64 (c.disks + CKPT_DISK_SIZE + 8), 8 * BS);
  cr_assert_eq (c.nblocks, 4, "A, B, D and the dead C: %" PRIu64, c.nblocks);
  cr_assert_eq (c.npages, 3, "disk0 pages 0 and 2, disk1 page 0: %" PRIu64, c.npages);

  const uint64_t ida = mapped_id (&c, 0, 0), idb = mapped_id (&c, 0, 2 * CAS_MAP_PAGE + 5),
    idd = mapped_id (&c, 0, 3);
  cr_assert_neq (ida, 0);
  cr_assert_eq (mapped_id (&c, 0, 10), ida);
  cr_assert_eq (mapped_id (&c, 1, 7), idb);
  cr_assert_eq (mapped_id (&c, 0, 1), 0);
  cr_assert_eq (mapped_id (&c, 0, CAS_MAP_PAGE), 0, "an empty page was recorded");
  uint8_t *ra = block_record (&c, ida), *rb = block_record (&c, idb), *rd = block_record (&c, idd);
  cr_assert (ra && rb && rd);
  cr_assert_eq (get_le32 (ra + 56), 2, "refcount of A");
  cr_assert_eq (get_le32 (rb + 56), 2, "refcount of B");
  cr_assert_eq (get_le32 (rd + 56), 1, "refcount of D");
  uint64_t dead = 0;
  for (uint64_t i = 0; i < c.nblocks; i++) {
    const uint8_t *r = c.blocks + i * CKPT_BLOCK_SIZE;
    const uint64_t id = get_le64 (r);
    cr_assert_lt (id, c.next_id, "block id %" PRIu64 " not below next_id", id);
    cr_assert_eq (get_le64 (r + 8) % CAS_GRANULE, 0);
    cr_assert_eq (get_le32 (r + 52) & ~CAS_BLK_FLAGS, 0);
    if (get_le32 (r + 56) == 0)
      dead++;
  }
  cr_assert_eq (dead, 1, "the dead block C must be recorded, with refcount 0");
  /* A and B are random (raw), C and D text (compressed). */
  cr_assert_eq (get_le32 (ra + 52), 0);
  cr_assert_eq (get_le32 (ra + 48), BS);
  cr_assert_eq (get_le32 (rd + 52), CAS_BLK_COMPRESSED);
  cr_assert_lt (get_le32 (rd + 48), BS);
  free (c.buf);

  s = open_rw ();
  d = disk0 (s);
  read_expect (d, A, BS, 10 * BS);
  read_expect (d, D, BS, 3 * BS);
  read_zero (d, BS, BS);
  read_expect (cas_disk_find (s, "other"), B, BS, 7 * BS);
  struct cas_store_stats st;
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.dead_blocks, 1);
  close_ok (s);
  check_clean ();
}

Test (ckpt, emptied_page_is_not_recorded)
{
  create (3, 3 * CAS_MAP_PAGE * (uint64_t) BS);
  make_data (10);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  write_ok (d, A, BS, 0);
  write_ok (d, B, BS, (CAS_MAP_PAGE + 1) * (uint64_t) BS);
  cr_assert_eq (cas_disk_zero (d, BS, (CAS_MAP_PAGE + 1) * (uint64_t) BS), 0);
  close_ok (s);
  struct ckpt c = read_ckpt ();
  cr_assert_eq (c.npages, 1);
  cr_assert_neq (mapped_id (&c, 0, 0), 0);
  free (c.buf);
}

Test (ckpt, generations_advance)
{
  create (3, 64 * BS);
  uint64_t last = 1;
  for (int i = 0; i < 3; i++) {
    struct cas_store *s = open_rw ();
    struct ckpt c = read_ckpt ();
    cr_assert_gt (c.gen, last, "open did not write a newer checkpoint");
    int n;
    cr_assert_eq (journal_gen (&n), c.gen);
    cr_assert_eq (n, 1, "old journals left behind");
    free (c.buf);
    close_ok (s);
    c = read_ckpt ();
    last = c.gen;
    cr_assert_eq (journal_gen (&n), c.gen);
    free (c.buf);
  }
}

/* ---- damage ---- */

static void
expect_open_euclean (const char *what, const char *report_has)
{
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL), "opened with %s", what);
  cr_assert_eq (errno, EUCLEAN, "%s: errno %d (%s)", what, errno, strerror (errno));
  const int problems = check ();
  cr_assert_gt (problems, 0, "check: %s not reported (returned %d)", what, problems);
  cr_assert (strstr (reports, report_has) != NULL, "%s: report lacks '%s':\n%s", what,
             report_has, reports);
}

static void
store_with_data_keyed (bool sha256_keys)
{
  if (sha256_keys)
    create_sha256_keys (3, 64 * BS);
  else
    create (3, 64 * BS);
  make_data (20);
  struct cas_store *s = open_rw ();
  write_ok (disk0 (s), A, BS, 0);
  write_ok (disk0 (s), C, BS, BS);
  close_ok (s);
}

static void
store_with_data (void)
{
  store_with_data_keyed (false);
}

Test (ckpt, body_damage)
{
  store_with_data ();
  struct ckpt c = read_ckpt ();
  c.blocks[20] ^= 0x01;                                 /* a hash byte */
  char path[400];
  path_of (CAS_CKPT_NAME, path, sizeof path);
  spit (path, c.buf, c.len);
  free (c.buf);
  expect_open_euclean ("a flipped checkpoint byte", "checksum");
}

Test (ckpt, header_damage)
{
  store_with_data ();
  struct ckpt c = read_ckpt ();
  c.buf[CKPT_NEXT_ID] ^= 0x04;
  char path[400];
  path_of (CAS_CKPT_NAME, path, sizeof path);
  spit (path, c.buf, c.len);
  free (c.buf);
  expect_open_euclean ("a damaged checkpoint header", "header checksum");
}

Test (ckpt, truncated)
{
  char path[400];

  store_with_data ();
  path_of (CAS_CKPT_NAME, path, sizeof path);
  struct ckpt c = read_ckpt ();
  cr_assert_eq (truncate (path, c.len - 1), 0);
  expect_open_euclean ("a truncated checkpoint", "checkpoint");
  cr_assert_eq (truncate (path, 10), 0);
  expect_open_euclean ("a checkpoint shorter than its header", "checkpoint");
  spit (path, c.buf, c.len);
  free (c.buf);
  close_ok (open_rw ());
}

Test (ckpt, consistent_checksums_but_bad_content)
{
  /* Damage that the checksums do not catch (they were recomputed): the
   * loader's own checks must.
   */
  store_with_data ();
  struct ckpt c = read_ckpt ();
  const size_t len = c.len;
  uint8_t *orig = malloc (len);
  memcpy (orig, c.buf, len);

  put_le32 (c.buf + CKPT_VERSION, CAS_FORMAT_VERSION + 1);
  write_ckpt (&c);
  expect_open_euclean ("a newer checkpoint version", "version");

  memcpy (c.buf, orig, len);
  put_le64 (c.buf + CKPT_NBLOCKS, UINT64_C(1) << 40);
  write_ckpt (&c);
  expect_open_euclean ("absurd block count", "checkpoint");

  memcpy (c.buf, orig, len);
  put_le64 (c.blocks + CKPT_BLOCK_SIZE, get_le64 (c.blocks));   /* same id twice */
  write_ckpt (&c);
  expect_open_euclean ("a block id defined twice", "twice");

  memcpy (c.buf, orig, len);
  put_le64 (c.blocks + 8, 100);                                  /* not granule aligned */
  write_ckpt (&c);
  expect_open_euclean ("a misaligned block", "location");

  memcpy (c.buf, orig, len);
  put_le32 (c.disks + 4, 0);                                     /* empty disk name */
  write_ckpt (&c);
  expect_open_euclean ("a disk without a name", "name");

  memcpy (c.buf, orig, len);
  put_le64 (c.blocks + 8, UINT64_C(1) << 30);                    /* past the data file */
  write_ckpt (&c);
  expect_open_euclean ("a block beyond the data file", "truncated");

  memcpy (c.buf, orig, len);
  write_ckpt (&c);
  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), A, BS, 0);
  read_expect (disk0 (s), C, BS, BS);
  close_ok (s);
  free (orig);
  free (c.buf);
}

Test (ckpt, wrong_refcount)
{
  store_with_data ();
  struct ckpt c = read_ckpt ();
  cr_assert_eq (c.nblocks, 2);
  cr_assert_eq (get_le32 (c.blocks + 56), 1);
  put_le32 (c.blocks + 56, 5);
  write_ckpt (&c);
  free (c.buf);

  const int problems = check ();
  cr_assert_eq (problems, 1, "check returned %d:\n%s", problems, reports);
  cr_assert (strstr (reports, "refcount") != NULL, "%s", reports);

  /* Opening recounts from the maps: the data is intact, and the next
   * checkpoint has the right count.
   */
  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), A, BS, 0);
  read_expect (disk0 (s), C, BS, BS);
  close_ok (s);
  check_clean ();
  c = read_ckpt ();
  for (uint64_t i = 0; i < c.nblocks; i++)
    cr_assert_eq (get_le32 (c.blocks + i * CKPT_BLOCK_SIZE + 56), 1);
  free (c.buf);
}

/* ---- interrupted and background checkpoints ---- */

static int
checkpoint_interrupted (void)
{
  char cpath[400], jpath[400];
  size_t clen, jlen;

  struct cas_store *s = cas_store_open (store, NULL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (cas_disk_write (d, A, BS, 0) == 0);
  CHILD_CHECK (cas_disk_write (d, B, BS, BS) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  /* Keep checkpoint G and journal.G as they are before the checkpoint... */
  path_of (CAS_CKPT_NAME, cpath, sizeof cpath);
  journal_path (jpath, sizeof jpath);
  uint8_t *ckpt = slurp (cpath, &clen), *journal = slurp (jpath, &jlen);
  CHILD_CHECK (cas_store_checkpoint (s) == 0);
  /* ...and put them back: as if we crashed before the rename. */
  const int fd = open (jpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHILD_CHECK (fd >= 0 && write (fd, journal, jlen) == (ssize_t) jlen);
  close (fd);
  spit (cpath, ckpt, clen);
  /* Records after the snapshot go to journal.G+1. */
  CHILD_CHECK (cas_disk_write (d, C, BS, 2 * BS) == 0);
  CHILD_CHECK (cas_disk_write (d, D, BS, 0) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (ckpt, interrupted_checkpoint_replays_two_journals)
{
  create (3, 64 * BS);
  make_data (30);
  in_crashing_child (checkpoint_interrupted);
  int n;
  journal_gen (&n);
  cr_assert_eq (n, 2, "the simulated crash should leave two journals");

  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, D, BS, 0);
  read_expect (d, B, BS, BS);
  read_expect (d, C, BS, 2 * BS);
  close_ok (s);
  journal_gen (&n);
  cr_assert_eq (n, 1, "the old journals were not removed");
  check_clean ();
}

static bool
wait_gen_above (uint64_t gen)
{
  for (int i = 0; i < 100; i++) {
    int n;
    if (journal_gen (&n) > gen)
      return true;
    const struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  return false;
}

static int
background_checkpoint (void)
{
  struct cas_open_opts o;
  uint8_t buf[BS];

  cas_open_opts_default (&o);
  o.checkpoint_bytes = 4096;
  struct cas_store *s = cas_store_open (store, &o);
  CHILD_CHECK (s != NULL);
  CHILD_CHECK (cas_store_start (s) == 0);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  int n;
  const uint64_t gen = journal_gen (&n);
  for (uint64_t v = 0; v < 60; v++) {
    fill_random (buf, BS, 1000 + v);
    CHILD_CHECK (cas_disk_write (d, buf, BS, v * BS) == 0);
  }
  CHILD_CHECK (cas_store_flush (s) == 0);       /* ~6 KiB of records > 4 KiB */
  CHILD_CHECK (wait_gen_above (gen));
  /* journal.G+1 exists before the checkpoint is renamed into place: wait
   * for the checkpoint to finish (it holds ckpt_mutex throughout).
   */
  pthread_mutex_lock (&s->ckpt_mutex);
  pthread_mutex_unlock (&s->ckpt_mutex);
  for (uint64_t v = 60; v < 64; v++) {
    fill_random (buf, BS, 1000 + v);
    CHILD_CHECK (cas_disk_write (d, buf, BS, v * BS) == 0);
  }
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (ckpt, background_checkpoint_when_journal_grows)
{
  uint8_t buf[BS];

  create (3, 64 * BS);
  in_crashing_child (background_checkpoint);
  struct ckpt c = read_ckpt ();
  cr_assert_geq (c.nblocks, 1, "the background checkpoint holds no block");
  free (c.buf);
  struct cas_store *s = open_rw ();
  for (uint64_t v = 0; v < 64; v++) {
    fill_random (buf, BS, 1000 + v);
    read_expect (disk0 (s), buf, BS, v * BS);
  }
  close_ok (s);
  check_clean ();
}

/* ---- everything at once ---- */

/* Writers (whole blocks, partial blocks, zeroes) on their own regions,
 * while the background thread checkpoints often (small checkpoint_bytes)
 * and the GC frees overwritten blocks at once; then a crash after a final
 * flush.  Every block must read back as its last content.
 */
#define STRESS_THREADS 3
#define STRESS_BLOCKS 16                /* per thread */
#define NB (STRESS_THREADS * STRESS_BLOCKS)

struct shared {
  uint8_t model[NB][BS];                /* what each block must hold */
  uint64_t gc_freed, gen_start, gen_end;
};
static struct shared *sh;
static struct cas_store *sstore;
static struct cas_disk *sdisk;
static volatile bool stop;

static void *
stress_writer (void *arg)
{
  const uintptr_t t = (uintptr_t) arg;
  uint64_t x = t * 7919 + 17, n = 0;
  uint8_t buf[BS];

  while (!__atomic_load_n (&stop, __ATOMIC_ACQUIRE)) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    const uint64_t v = t * STRESS_BLOCKS + (x >> 33) % STRESS_BLOCKS;
    const unsigned kind = (x >> 20) % 8;
    if (kind < 5) {                     /* a whole block, sometimes a repeat (dedup) */
      fill_random (buf, BS, kind == 0 ? v : x);
      if (cas_disk_write (sdisk, buf, BS, v * BS) == -1)
        return (void *) 1;
      memcpy (sh->model[v], buf, BS);
    }
    else if (kind < 7) {                /* part of a block */
      const uint32_t off = (x >> 40) % (BS - 700), len = 1 + (x >> 8) % 700;
      fill_text (buf, len, x);
      if (cas_disk_write (sdisk, buf, len, v * BS + off) == -1)
        return (void *) 2;
      memcpy (sh->model[v] + off, buf, len);
    }
    else {
      if (cas_disk_zero (sdisk, BS, v * BS) == -1)
        return (void *) 3;
      memset (sh->model[v], 0, BS);
    }
    if (++n % 16 == 0 && cas_store_flush (sstore) == -1)
      return (void *) 4;
  }
  return NULL;
}

static int
stress_child (void)
{
  struct cas_open_opts o;
  pthread_t th[STRESS_THREADS];
  int n;

  cas_open_opts_default (&o);
  o.gc_delay = 0;
  o.checkpoint_bytes = 16384;
  sh->gen_start = journal_gen (&n);
  sstore = cas_store_open (store, &o);
  CHILD_CHECK (sstore != NULL);
  CHILD_CHECK (cas_store_start (sstore) == 0);
  sdisk = cas_disk_find (sstore, "disk0");
  CHILD_CHECK (sdisk != NULL);
  stop = false;
  for (uintptr_t t = 0; t < STRESS_THREADS; t++)
    CHILD_CHECK (pthread_create (&th[t], NULL, stress_writer, (void *) t) == 0);
  const struct timespec ts = { .tv_sec = 2, .tv_nsec = 500 * 1000 * 1000 };
  nanosleep (&ts, NULL);
  __atomic_store_n (&stop, true, __ATOMIC_RELEASE);
  for (int t = 0; t < STRESS_THREADS; t++) {
    void *r;
    pthread_join (th[t], &r);
    if (r != NULL)
      fprintf (stderr, "stress writer %d failed at step %ld: %s\n", t, (long) (intptr_t) r,
               errors);
    CHILD_CHECK (r == NULL);
  }
  CHILD_CHECK (cas_store_flush (sstore) == 0);
  struct cas_store_stats st;
  CHILD_CHECK (cas_store_stats (sstore, &st) == 0);
  sh->gc_freed = st.gc_freed_blocks;
  sh->gen_end = journal_gen (&n);
  return 0;
}

Test (ckpt, concurrent_writes_checkpoints_gc_then_crash)
{
  sh = mmap (NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq (sh, MAP_FAILED);
  create (3, NB * BS);
  in_crashing_child (stress_child);
  /* Open moves one generation on; each background checkpoint one more. */
  cr_assert_geq (sh->gen_end, sh->gen_start + 2, "no background checkpoint happened (gen %"
                PRIu64 " -> %" PRIu64 ")", sh->gen_start, sh->gen_end);
  cr_assert_gt (sh->gc_freed, 0, "the GC freed nothing");

  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  for (uint64_t v = 0; v < NB; v++)
    read_expect (d, sh->model[v], BS, v * BS);
  close_ok (s);
  check_clean ();
  munmap (sh, sizeof *sh);
}

/* A version 2 checkpoint carries the whole SHA-256 in its block records;
 * version 3 reads its first 8 bytes as the key, finds the blocks again by
 * content, and writes the current version (the key, then zeroes) from
 * then on.
 */
Test (ckpt, version_2_store_opens)
{
  store_with_data_keyed (true);
  struct ckpt c = read_ckpt ();
  uint8_t *ra = block_record (&c, mapped_id (&c, 0, 0));
  uint8_t *rc = block_record (&c, mapped_id (&c, 0, 1));
  struct cas_hash ha, hc;
  cr_assert_not_null (ra);
  cr_assert_not_null (rc);
  cr_assert_eq (cas_hash_block (A, BS, &ha), 0);
  cr_assert_eq (cas_hash_block (C, BS, &hc), 0);
  cr_assert_arr_eq (ra + 16, ha.b, CAS_KEY_LEN, "the record does not carry the key");
  memcpy (ra + 16, ha.b, CAS_HASH_LEN);         /* as version 2 wrote them */
  memcpy (rc + 16, hc.b, CAS_HASH_LEN);
  put_le32 (c.buf + CKPT_VERSION, 2);
  write_ckpt (&c);
  free (c.buf);

  struct cas_store *s = open_rw ();              /* writes a current checkpoint */
  struct cas_store_stats st;
  cr_assert_eq (cas_store_stats (s, &st), 0);
  const uint64_t before = st.nblocks;
  read_expect (disk0 (s), A, BS, 0);
  read_expect (disk0 (s), C, BS, BS);
  write_ok (disk0 (s), A, BS, 5 * BS);          /* found again by its key and bytes */
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.nblocks, before, "a copy of a version 2 block was stored again");
  close_ok (s);

  c = read_ckpt ();                             /* asserts the current version */
  ra = block_record (&c, mapped_id (&c, 0, 0));
  cr_assert_not_null (ra);
  static const uint8_t zero[CAS_HASH_LEN - CAS_KEY_LEN];
  cr_assert_arr_eq (ra + 16, ha.b, CAS_KEY_LEN);
  cr_assert_arr_eq (ra + 16 + CAS_KEY_LEN, zero, sizeof zero);
  free (c.buf);
  check_clean ();
}

static uint8_t *
read_superblock_file (void)
{
  char path[400];
  size_t n;

  path_of (CAS_SB_NAME, path, sizeof path);
  uint8_t *sb = slurp (path, &n);
  cr_assert_eq (n, CAS_SB_SIZE);
  return sb;
}

/* A new store (version 4) keys blocks by SipHash-1-3 under a random
 * secret of its superblock; a store created as version 3 keeps the
 * SHA-256's 8 bytes.  Either way the records carry the key, the same
 * content is stored once across a reopen, and check finds every key
 * right (it recomputes them with the store's function).
 */
static void
keys_of_store (bool sha256_keys)
{
  store_with_data_keyed (sha256_keys);
  uint8_t *sb = read_superblock_file ();
  uint8_t secret[CAS_KEY_SECRET_LEN];
  static const uint8_t zero[CAS_KEY_SECRET_LEN];
  memcpy (secret, sb + SB_KEY_SECRET, sizeof secret);
  cr_assert_eq (get_le32 (sb + SB_VERSION), sha256_keys ? 3 : CAS_FORMAT_VERSION);
  cr_assert_eq (get_le32 (sb + SB_KEY_FN), sha256_keys ? CAS_KEY_SHA256 : CAS_KEY_SIPHASH13);
  if (sha256_keys)
    cr_assert_arr_eq (secret, zero, sizeof zero);
  else
    cr_assert_arr_neq (secret, zero, sizeof zero, "the secret is not random");
  free (sb);

  uint64_t want;
  struct cas_hash h;
  cr_assert_eq (cas_hash_block (A, BS, &h), 0);
  want = sha256_keys ? cas_hash_key (&h) : cas_siphash (secret, A, BS, 1, 3);
  struct ckpt c = read_ckpt ();
  uint8_t *ra = block_record (&c, mapped_id (&c, 0, 0));
  cr_assert_not_null (ra);
  cr_assert_eq (get_le64 (ra + 16), want, "the block record does not carry the key");
  free (c.buf);

  struct cas_store *s = open_rw ();
  struct cas_store_stats st;
  cr_assert_eq (cas_store_stats (s, &st), 0);
  const uint64_t before = st.nblocks;
  write_ok (disk0 (s), A, BS, 7 * BS);
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.nblocks, before, "the same content was stored again after a reopen");
  read_expect (disk0 (s), A, BS, 7 * BS);
  close_ok (s);
  check_clean ();
}

Test (ckpt, new_store_keys_by_siphash)
{
  keys_of_store (false);
}

Test (ckpt, version_3_store_keeps_sha256_keys)
{
  keys_of_store (true);
}

Test (ckpt, unknown_key_function_refused)
{
  create (3, 64 * BS);
  uint8_t *sb = read_superblock_file ();
  char path[400];
  put_le32 (sb + SB_KEY_FN, 7);
  put_le32 (sb + SB_CRC, 0);
  put_le32 (sb + SB_CRC, cas_crc32c (0, sb, CAS_SB_SIZE));
  path_of (CAS_SB_NAME, path, sizeof path);
  spit (path, sb, CAS_SB_SIZE);
  free (sb);
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL), "opened with an unknown key function");
  cr_assert_eq (errno, EUCLEAN, "errno %d (%s)", errno, strerror (errno));
  cr_assert (strstr (errors, "unknown key function 7") != NULL, "no message: %s", errors);
}
