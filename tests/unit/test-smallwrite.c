/* The small-write log (lib/meta/overlay.h): a write into part of a block is
 * logged as a patch, read back through the overlay, merged into a block
 * later, and survives crashes, checkpoints, clones and the map changes
 * that end it.  Stores of 64 KiB blocks, as by default; a "crash" is a
 * child that exits without closing the store (fixture.h).
 */
#include <config.h>
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include "casdisk.h"
#include "engine/store.h"
#include "format.h"
#include "meta/state.h"
#include "util/util.h"

#include "fixture.h"

#define B64 65536u
#define NBLOCKS 80
#define DISK_SIZE (NBLOCKS * (uint64_t) B64)

static uint8_t model[DISK_SIZE];

static void
setup (void)
{
  fixture_setup ("smallwrite");
}

TestSuite (smallwrite, .init = setup, .fini = fixture_teardown, .timeout = 60);

static void
create64 (void)
{
  struct cas_create_opts o = { .block_size = B64, .compression_level = 1 };

  cr_assert_eq (cas_store_create (store, &o, "disk0", DISK_SIZE), 0, "create: %s", errors);
  memset (model, 0, sizeof model);
}

static struct cas_store_stats
sstats (struct cas_store *s)
{
  struct cas_store_stats st;

  cr_assert_eq (cas_store_stats (s, &st), 0);
  return st;
}

/* Write LEN bytes of pattern SEED at OFF, into the disk and the model. */
static void
put (struct cas_disk *d, uint64_t off, uint32_t len, uint64_t seed)
{
  uint8_t *buf = malloc (len);

  cr_assert_not_null (buf);
  fill_random (buf, len, seed);
  write_ok (d, buf, len, off);
  memcpy (model + off, buf, len);
  free (buf);
}

static void
expect_model (struct cas_disk *d)
{
  read_expect (d, model, DISK_SIZE, 0);
}

/* The model as the child left it, for the parent (fork copies memory, so
 * the child writes it to a file; without Criterion's asserts, which
 * belong to the parent).
 */
static int
save_model (void)
{
  char path[400];
  FILE *f;

  path_of ("../model", path, sizeof path);
  f = fopen (path, "w");
  if (f == NULL || fwrite (model, 1, sizeof model, f) != sizeof model || fclose (f) != 0)
    return -1;
  return 0;
}

static void
load_model (void)
{
  char path[400];
  size_t len;
  uint8_t *m;

  path_of ("../model", path, sizeof path);
  m = slurp (path, &len);
  cr_assert_eq (len, sizeof model);
  memcpy (model, m, len);
  free (m);
}

/* In a child (no Criterion there): write LEN bytes of pattern SEED at
 * OFF, or zero COUNT bytes at OFF, into the disk and the model.
 */
static int
cput (struct cas_disk *d, uint64_t off, uint32_t len, uint64_t seed)
{
  static uint8_t buf[B64];

  fill_random (buf, len, seed);
  if (cas_disk_write (d, buf, len, off) != 0)
    return -1;
  memcpy (model + off, buf, len);
  return 0;
}

/* In a child: the store opened, and its disk0 (NULL if either failed). */
static struct cas_disk *
child_disk0 (struct cas_store **sp)
{
  *sp = cas_store_open (store, NULL);
  return *sp ? cas_disk_find (*sp, "disk0") : NULL;
}

static int
czero (struct cas_disk *d, uint32_t count, uint64_t off)
{
  if (cas_disk_zero (d, count, off) != 0)
    return -1;
  memset (model + off, 0, count);
  return 0;
}

/* After a child's crash: the model it saved, the store opened and read
 * back against it.
 */
static struct cas_store *
reopen_expect (void)
{
  load_model ();
  struct cas_store *s = open_rw ();
  expect_model (disk0 (s));
  return s;
}

Test (smallwrite, logged_then_merged_on_close)
{
  create64 ();
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  put (d, 0, B64, 1);
  cr_assert_eq (cas_store_flush (s), 0);
  const uint64_t blocks = sstats (s).nblocks;

  put (d, 8192, 4096, 2);                       /* inside block 0 */
  put (d, B64 - 100, 200, 3);                   /* across blocks 0 and 1 */
  struct cas_store_stats st = sstats (s);
  cr_assert_eq (st.nblocks, blocks, "a small write stored a block (%" PRIu64 " -> %" PRIu64 ")",
                blocks, st.nblocks);
  cr_assert_eq (st.small_write_blocks, 2);
  cr_assert_eq (st.small_write_bytes, 4096 + 200);
  expect_model (d);
  read_expect (d, model + 8000, 300, 8000);     /* a part over the patch's edge */
  cr_assert_eq (cas_store_flush (s), 0);
  close_ok (s);

  s = open_rw ();
  st = sstats (s);
  cr_assert_eq (st.small_write_blocks, 0, "a clean close left %" PRIu64 " blocks with patches",
                st.small_write_blocks);
  expect_model (disk0 (s));
  close_ok (s);
  check_clean ();
}

Test (smallwrite, sixteen_patches_rebuild_the_block)
{
  create64 ();
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  put (d, 3 * B64, B64, 7);
  for (int i = 0; i < 15; i++)
    put (d, 3 * B64 + i * 4096 + 1, 1000, 100 + i);
  struct cas_store_stats st = sstats (s);
  cr_assert_eq (st.small_write_blocks, 1);
  cr_assert_eq (st.small_write_merges, 0);
  put (d, 3 * B64 + 60000, 5000, 200);
  st = sstats (s);
  cr_assert_eq (st.small_write_blocks, 0, "16 patches did not rebuild the block");
  cr_assert_eq (st.small_write_bytes, 0);
  cr_assert_eq (st.small_write_merges, 1);
  expect_model (d);
  close_ok (s);
  check_clean ();
}

static int
patches_flushed_then_crash (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, B64, B64, 11) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  for (int i = 0; i < 3; i++)
    CHILD_CHECK (cput (d, B64 + 1000 + 1500 * i, 3000, 20 + i) == 0);
  CHILD_CHECK (cput (d, 5 * B64 + 512, 4096, 30) == 0);      /* over zeroes */
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  CHILD_CHECK (cput (d, B64 + 8192, 4096, 40) == 0);        /* not flushed: lost */
  return 0;                                     /* crash */
}

Test (smallwrite, flushed_patches_survive_a_crash)
{
  create64 ();
  in_crashing_child (patches_flushed_then_crash);
  struct cas_store *s = reopen_expect ();
  cr_assert_eq (sstats (s).small_write_blocks, 2, "replay rebuilt the overlays");
  close_ok (s);
  check_clean ();
}

static int
patches_checkpoint_crash (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, 0, B64, 51) == 0);
  for (int i = 0; i < 5; i++)                   /* overlapping patches */
    CHILD_CHECK (cput (d, 2000 + 2500 * i, 6000, 60 + i) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  /* The checkpoint replaces the journal that holds the patches. */
  CHILD_CHECK (cas_store_checkpoint (s) == 0);
  CHILD_CHECK (cput (d, 30000, 100, 70) == 0);  /* and one more after it */
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  return 0;                                     /* crash */
}

Test (smallwrite, a_checkpoint_keeps_pending_patches)
{
  int journals;

  create64 ();
  in_crashing_child (patches_checkpoint_crash);
  journal_gen (&journals);
  cr_assert_eq (journals, 1, "the checkpoint left %d journals", journals);
  close_ok (reopen_expect ());
  check_clean ();
}

static int
same_content_after_patch_crash (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, 2 * B64, B64, 81) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (cput (d, 2 * B64 + 4096, 512, 82) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  /* The block's old content again: the map entry does not change, but the
   * patch must end, on replay too.
   */
  CHILD_CHECK (cput (d, 2 * B64, B64, 81) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  return 0;
}

Test (smallwrite, rewriting_the_old_content_ends_the_patches)
{
  create64 ();
  in_crashing_child (same_content_after_patch_crash);
  struct cas_store *s = reopen_expect ();
  cr_assert_eq (sstats (s).small_write_blocks, 0);
  close_ok (s);
  check_clean ();
}

static int
patches_then_map_changes_crash (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, 1 * B64 + 100, 4096, 91) == 0);
  CHILD_CHECK (cput (d, 2 * B64 + 100, 4096, 92) == 0);
  /* Patch blocks 8..9 and 12; then a trim over blocks 6..10 (more than
   * one block, fewer than the big-range path) and one over 11..13.
   */
  CHILD_CHECK (cput (d, 8 * B64 + 10, 2000, 93) == 0);
  CHILD_CHECK (cput (d, 9 * B64 + 10, 2000, 94) == 0);
  CHILD_CHECK (cput (d, 12 * B64 + 10, 2000, 95) == 0);
  CHILD_CHECK (czero (d, 5 * B64, 6 * B64) == 0);
  CHILD_CHECK (czero (d, 3 * B64, 11 * B64) == 0);
  /* Block 1: trimmed whole; block 2: written whole. */
  CHILD_CHECK (czero (d, B64, B64) == 0);
  CHILD_CHECK (cput (d, 2 * B64, B64, 96) == 0);
  /* Blocks 20 and 70 patched, then released by a trim of more than 64
   * blocks (one MAP_ZERO record under every stripe).
   */
  CHILD_CHECK (cput (d, 20 * B64 + 4000, 3000, 97) == 0);
  CHILD_CHECK (cput (d, 70 * B64 + 4000, 3000, 98) == 0);
  CHILD_CHECK (czero (d, 70 * B64, 10 * B64) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  return 0;
}

Test (smallwrite, trim_and_whole_writes_end_the_patches)
{
  create64 ();
  in_crashing_child (patches_then_map_changes_crash);
  struct cas_store *s = reopen_expect ();
  cr_assert_eq (sstats (s).small_write_blocks, 0);
  cr_assert_eq (sstats (s).logical_bytes, B64);
  close_ok (s);
  check_clean ();
}

static int
extent_of (void *opaque, uint64_t offset, uint64_t length, bool zero)
{
  bool *data = opaque;

  for (uint64_t v = offset / B64; v < (offset + length + B64 - 1) / B64; v++)
    data[v] = !zero;
  return 0;
}

Test (smallwrite, patches_over_zeroes_are_data)
{
  bool data[NBLOCKS] = { false };

  create64 ();
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  put (d, 7 * B64 + 300, 700, 5);
  cr_assert_eq (cas_disk_extents (d, 0, DISK_SIZE, extent_of, data), 0);
  for (int v = 0; v < NBLOCKS; v++)
    cr_assert_eq (data[v], v == 7, "block %d: extents say %s", v, data[v] ? "data" : "hole");
  cr_assert_eq (sstats (s).logical_bytes, B64);
  expect_model (d);
  close_ok (s);
}

Test (smallwrite, clones_and_snapshots_hold_the_patches)
{
  create64 ();
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  put (d, 0, B64, 1);
  put (d, 1000, 3000, 2);
  put (d, 4 * B64 + 5, 10, 3);                  /* over zeroes */
  cr_assert_not_null (cas_snapshot_create (s, "disk0", "s1"), "%s", errors);
  cr_assert_not_null (cas_disk_clone (s, "disk0", "c1"), "%s", errors);
  cr_assert_eq (sstats (s).small_write_blocks, 0, "the clone left the source's patches");
  static uint8_t then[DISK_SIZE];
  memcpy (then, model, sizeof then);
  put (d, 2000, 100, 4);                        /* the source goes on */
  struct cas_disk *c = cas_disk_find (s, "c1"), *snap = cas_disk_find (s, "disk0@s1");
  cr_assert_not_null (c);
  cr_assert_not_null (snap);
  read_expect (c, then, DISK_SIZE, 0);
  read_expect (snap, then, DISK_SIZE, 0);
  expect_model (d);
  cr_assert_eq (cas_store_flush (s), 0);
  close_ok (s);

  s = open_rw ();
  read_expect (cas_disk_find (s, "c1"), then, DISK_SIZE, 0);
  read_expect (cas_disk_find (s, "disk0@s1"), then, DISK_SIZE, 0);
  expect_model (disk0 (s));
  close_ok (s);
  check_clean ();
}

Test (smallwrite, format_4_stores_rewrite_blocks)
{
  create_sha256_keys (1, 64 * BS);              /* format 3 */
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  uint8_t buf[BS];
  fill_random (buf, BS, 9);
  write_ok (d, buf, BS, 0);
  write_ok (d, buf, 512, 512);
  struct cas_store_stats st = sstats (s);
  cr_assert_eq (st.small_write_blocks, 0);
  cr_assert_eq (st.nblocks, 2, "the partial write did not store a block");
  close_ok (s);
}

Test (smallwrite, memory_stays_within_the_budget)
{
  struct cas_open_opts o;

  create64 ();
  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.small_write_log_bytes = 1u << 20;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "%s", errors);
  struct cas_disk *d = disk0 (s);
  uint64_t most = 0;
  /* 16 blocks x 15 patches of 4 KiB + 1: 960 KiB at most per round. */
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 15; i++)
      for (int v = 0; v < 16; v++) {
        put (d, (uint64_t) v * B64 + i * 4096 + round, 4096, round * 1000 + i * 16 + v);
        const uint64_t b = sstats (s).small_write_bytes;
        if (b > most)
          most = b;
      }
  cr_assert_leq (most, (1u << 20) + 4096, "the patches held %" PRIu64 " bytes", most);
  cr_assert_gt (sstats (s).small_write_merges, 0);
  expect_model (d);
  close_ok (s);
  check_clean ();
}

static int
patches_for_direct_io (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, 0, B64, 111) == 0);
  CHILD_CHECK (cput (d, 500, 1000, 112) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  return 0;
}

Test (smallwrite, a_direct_io_open_merges_what_a_buffered_one_left)
{
  struct cas_open_opts o;

  create64 ();
  in_crashing_child (patches_for_direct_io);
  load_model ();
  cas_open_opts_default (&o);
  o.direct_io = true;
  struct cas_store *s = cas_store_open (store, &o);
  if (s == NULL && strstr (errors, "direct I/O cannot be used"))
    cr_skip_test ("%s cannot do direct I/O (as test-dio): %s", dir, errors);
  cr_assert_not_null (s, "%s", errors);
  cr_assert_eq (sstats (s).small_write_blocks, 0);
  struct cas_disk *d = disk0 (s);
  expect_model (d);
  /* Direct I/O logs no small writes. */
  put (d, 9000, 100, 113);
  cr_assert_eq (sstats (s).small_write_blocks, 0);
  expect_model (d);
  close_ok (s);
  check_clean ();
}

/* With the store started, the merge thread does the writers' deferred
 * work: ripe blocks and the budget.  Bounded waits: it wakes when kicked,
 * and once a second.
 */
Test (smallwrite, the_merge_thread_rebuilds_ripe_blocks)
{
  struct cas_open_opts o;

  create64 ();
  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.small_write_log_bytes = 1u << 20;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "%s", errors);
  cr_assert_eq (cas_store_start (s), 0, "%s", errors);
  struct cas_disk *d = disk0 (s);
  for (int i = 0; i < 16; i++)
    put (d, 2 * B64 + i * 4000, 3000, 300 + i);
  struct cas_store_stats st = sstats (s);
  for (int t = 0; t < 100 && st.small_write_merges == 0; t++) {
    usleep (50000);
    st = sstats (s);
  }
  cr_assert_eq (st.small_write_merges, 1, "the ripe block was not merged within 5 s");
  cr_assert_eq (st.small_write_blocks, 0);
  expect_model (d);
  /* Past the budget: a 12 KiB patch in each of the 80 blocks is 960 KiB
   * a round; three rounds are 2.8 times the 1 MiB budget.
   */
  for (int round = 0; round < 3; round++)
    for (int v = 0; v < NBLOCKS; v++)
      put (d, (uint64_t) v * B64 + round * 12288, 12288, 1000 + round * 100 + v);
  st = sstats (s);
  for (int t = 0; t < 100 && st.small_write_bytes > (1u << 20); t++) {
    usleep (50000);
    st = sstats (s);
  }
  cr_assert_leq (st.small_write_bytes, 1u << 20, "still %" PRIu64 " bytes of patches after 5 s",
                 st.small_write_bytes);
  expect_model (d);
  close_ok (s);
  s = open_rw ();
  expect_model (disk0 (s));
  close_ok (s);
  check_clean ();
}

/* A checkpoint compacts the patches of each block while readers may be
 * reading them: it must hold the block's stripe lock to do so (the
 * sanitizer build sees a use after free otherwise).  A reader thread
 * reads the patched block while the test writes patches and checkpoints.
 */
struct reader_arg {
  struct cas_disk *d;
  bool stop;
  unsigned reads, errors;
};

static void *
reader (void *p)
{
  struct reader_arg *a = p;
  static uint8_t buf[B64];

  while (!__atomic_load_n (&a->stop, __ATOMIC_ACQUIRE)) {
    if (cas_disk_read (a->d, buf, B64, 0) != 0)
      a->errors++;
    a->reads++;
  }
  return NULL;
}

Test (smallwrite, checkpoints_race_readers_of_patched_blocks)
{
  pthread_t t;

  create64 ();
  struct cas_store *s = open_rw ();
  struct reader_arg a = { .d = disk0 (s) };
  put (a.d, 0, B64, 1);
  cr_assert_eq (pthread_create (&t, NULL, reader, &a), 0);
  for (int i = 0; i < 100; i++) {
    for (int k = 0; k < 3; k++)                 /* overlapping: compaction rewrites them */
      put (a.d, 1000 + k * 700 + i, 1500, 10 * i + k);
    cr_assert_eq (cas_store_checkpoint (s), 0, "%s", errors);
    if (i % 10 == 9)
      put (a.d, 0, B64, 5000 + i);              /* and end them now and then */
  }
  __atomic_store_n (&a.stop, true, __ATOMIC_RELEASE);
  cr_assert_eq (pthread_join (t, NULL), 0);
  cr_assert_eq (a.errors, 0, "%u of %u reads failed", a.errors, a.reads);
  cr_assert_gt (a.reads, 0);
  expect_model (a.d);
  close_ok (s);
  check_clean ();
}

/* The checkpoint itself makes the restated patches durable: nothing is
 * flushed after it here.
 */
static int
patches_checkpoint_no_flush_crash (void)
{
  struct cas_store *s;
  struct cas_disk *d = child_disk0 (&s);
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cput (d, 3 * B64 + 10, 3000, 121) == 0);
  CHILD_CHECK (cput (d, 3 * B64 + 2000, 3000, 122) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (save_model () == 0);
  CHILD_CHECK (cas_store_checkpoint (s) == 0);
  return 0;                                     /* crash, no flush since */
}

Test (smallwrite, a_checkpoint_makes_its_restated_patches_durable)
{
  int journals;

  create64 ();
  in_crashing_child (patches_checkpoint_no_flush_crash);
  journal_gen (&journals);
  cr_assert_eq (journals, 1, "the checkpoint left %d journals", journals);
  close_ok (reopen_expect ());
  check_clean ();
}
