/* Unit tests for the whole-disk operations (lib/engine/diskops.c): clone,
 * snapshot, delete.  Block sharing and isolation, read-only snapshots,
 * names, space released through the GC, slots reused, crash safety (the
 * operations survive a crash without a checkpoint after them), and a
 * clone taken while writers run, which must be one point in time.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "fixture.h"
#include "meta/state.h"

static void setup (void) { fixture_setup ("diskops"); }

TestSuite (diskops, .init = setup, .fini = fixture_teardown, .timeout = 60);

#define NBLK 64                 /* blocks written by fill_disk */

/* Blocks 0..NBLK-1 of D: random content from SEED; block 5 and 6 equal. */
static void
fill_disk (struct cas_disk *d, uint64_t seed)
{
  uint8_t buf[BS];

  for (int i = 0; i < NBLK; i++) {
    fill_random (buf, sizeof buf, seed * 1000 + (i == 6 ? 5 : i));
    write_ok (d, buf, sizeof buf, (uint64_t) i * BS);
  }
}

static void
expect_disk (struct cas_disk *d, uint64_t seed)
{
  uint8_t buf[BS];

  for (int i = 0; i < NBLK; i++) {
    fill_random (buf, sizeof buf, seed * 1000 + (i == 6 ? 5 : i));
    read_expect (d, buf, sizeof buf, (uint64_t) i * BS);
  }
  read_zero (d, BS, (uint64_t) NBLK * BS);
}

/* Open with the runtime asserts on: every operation is followed by a
 * verification of the space map and of every refcount against the maps.
 */
static struct cas_store *
open_checked (void)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.runtime_asserts = true;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "open: %s (%s)", strerror (errno), errors);
  return s;
}

static struct cas_disk *
find (struct cas_store *s, const char *name)
{
  struct cas_disk *d = cas_disk_find (s, name);
  cr_assert_not_null (d, "no disk '%s'", name);
  return d;
}

Test (diskops, clone_shares_every_block_and_isolates_both_ways)
{
  struct cas_store_stats before, after;
  struct cas_disk_stats ds0, ds1;

  create (3, 1 << 20);
  struct cas_store *s = open_checked ();
  fill_disk (disk0 (s), 1);
  cr_assert_eq (cas_store_stats (s, &before), 0);
  struct cas_disk *c = cas_disk_clone (s, "disk0", "copy");
  cr_assert_not_null (c, "clone: %s", errors);
  cr_assert_eq (cas_disk_size (c), 1 << 20);
  cr_assert (!cas_disk_is_snapshot (c));
  cr_assert_eq (cas_store_stats (s, &after), 0);
  /* No block stored, no data written: the same blocks, now twice referenced. */
  cr_assert_eq (after.nblocks, before.nblocks);
  cr_assert_eq (after.nblocks, NBLK - 1);
  cr_assert_eq (after.stored_bytes, before.stored_bytes);
  cr_assert_eq (after.data_file_end, before.data_file_end);
  cr_assert_eq (after.logical_bytes, 2 * before.logical_bytes);
  cr_assert_eq (cas_disk_stats (disk0 (s), &ds0), 0);
  cr_assert_eq (cas_disk_stats (c, &ds1), 0);
  cr_assert_eq (ds1.logical_bytes, (uint64_t) NBLK * BS);
  cr_assert_eq (ds0.exclusive_bytes, 0, "every block is shared");
  cr_assert_eq (ds1.exclusive_bytes, 0, "every block is shared");
  expect_disk (c, 1);

  /* Writes to either side never show in the other. */
  uint8_t a[BS], b[BS], orig[BS];
  fill_random (a, BS, 777);
  fill_random (b, BS, 888);
  fill_random (orig, BS, 1000 + 3);
  write_ok (c, a, BS, 3 * BS);
  write_ok (disk0 (s), b, 100, 10 * BS + 5);          /* partial: read-modify-write */
  read_expect (disk0 (s), orig, BS, 3 * BS);
  read_expect (c, a, BS, 3 * BS);
  fill_random (orig, BS, 1000 + 10);
  read_expect (c, orig, BS, 10 * BS);
  cr_assert_eq (cas_disk_zero (c, 8 * BS, 20 * BS), 0);
  fill_random (orig, BS, 1000 + 21);
  read_expect (disk0 (s), orig, BS, 21 * BS);
  read_zero (c, 8 * BS, 20 * BS);
  close_ok (s);
  check_clean ();

  /* And after a reopen (from the checkpoint). */
  s = open_checked ();
  c = find (s, "copy");
  read_expect (c, a, BS, 3 * BS);
  read_zero (c, 8 * BS, 20 * BS);
  fill_random (orig, BS, 1000 + 3);
  read_expect (disk0 (s), orig, BS, 3 * BS);
  close_ok (s);
  check_clean ();
}

Test (diskops, clone_refusals)
{
  create (3, 1 << 20);
  struct cas_store *s = open_checked ();
  cr_assert_null (cas_disk_clone (s, "nosuch", "x"));
  cr_assert_eq (errno, ENOENT);
  cr_assert_null (cas_disk_clone (s, "disk0", "disk0"));
  cr_assert_eq (errno, EEXIST);
  cr_assert_null (cas_disk_clone (s, "disk0", "bad@name"));
  cr_assert_eq (errno, EINVAL);
  cr_assert_null (cas_disk_clone (s, "disk0", "-x"));
  cr_assert_eq (errno, EINVAL);
  close_ok (s);

  /* A read-only store refuses every whole-disk operation. */
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.readonly = true;
  s = cas_store_open (store, &o);
  cr_assert_not_null (s);
  cr_assert_null (cas_disk_clone (s, "disk0", "x"));
  cr_assert_eq (errno, EROFS);
  cr_assert_null (cas_snapshot_create (s, "disk0", "x"));
  cr_assert_eq (errno, EROFS);
  cr_assert_eq (cas_disk_delete (s, "disk0"), -1);
  cr_assert_eq (errno, EROFS);
  cas_store_close (s);
  check_clean ();
}

Test (diskops, snapshot_is_read_only_and_keeps_its_content)
{
  create (3, 1 << 20);
  struct cas_store *s = open_checked ();
  fill_disk (disk0 (s), 1);
  struct cas_disk *snap = cas_snapshot_create (s, "disk0", "monday");
  cr_assert_not_null (snap, "snapshot: %s", errors);
  cr_assert_str_eq (cas_disk_name (snap), "disk0@monday");
  cr_assert (cas_disk_is_snapshot (snap));
  cr_assert_eq (cas_disk_find (s, "disk0@monday"), snap);

  uint8_t buf[BS] = { 1 };
  cr_assert_eq (cas_disk_write (snap, buf, BS, 0), -1);
  cr_assert_eq (errno, EROFS);
  cr_assert_eq (cas_disk_zero (snap, BS, 0), -1);
  cr_assert_eq (errno, EROFS);
  cr_assert_null (cas_snapshot_create (s, "disk0@monday", "x"));
  cr_assert_eq (errno, EINVAL);
  cr_assert_null (cas_snapshot_create (s, "disk0", "monday"));
  cr_assert_eq (errno, EEXIST);
  char longname[70];
  memset (longname, 'a', 60);
  longname[60] = '\0';
  cr_assert_null (cas_snapshot_create (s, "disk0", longname));   /* 66 bytes together */
  cr_assert_eq (errno, EINVAL);
  cr_assert_eq (cas_disk_delete (s, "disk0"), -1, "a disk with snapshots was deleted");
  cr_assert_eq (errno, ENOTEMPTY);
  cr_assert_eq (cas_snapshot_delete (s, "disk0", "nosuch"), -1);
  cr_assert_eq (errno, ENOENT);

  /* Rewrite the origin entirely: the snapshot does not move. */
  fill_disk (disk0 (s), 2);
  expect_disk (snap, 1);
  expect_disk (disk0 (s), 2);
  close_ok (s);
  check_clean ();

  s = open_checked ();
  snap = find (s, "disk0@monday");
  cr_assert (cas_disk_is_snapshot (snap));
  expect_disk (snap, 1);
  cr_assert_eq (cas_disk_write (snap, buf, BS, 0), -1);
  cr_assert_eq (errno, EROFS);
  /* A clone of the snapshot is writable: the way back. */
  struct cas_disk *back = cas_disk_clone (s, "disk0@monday", "restored");
  cr_assert_not_null (back);
  cr_assert (!cas_disk_is_snapshot (back));
  expect_disk (back, 1);
  write_ok (back, buf, BS, 0);
  close_ok (s);
  check_clean ();
}

Test (diskops, delete_releases_blocks_through_the_gc)
{
  struct cas_store_stats st;

  create (3, 1 << 20);
  struct cas_store *s = open_checked ();
  fill_disk (disk0 (s), 1);
  cr_assert_not_null (cas_disk_clone (s, "disk0", "copy"));
  struct cas_disk *old = disk0 (s);
  cr_assert_eq (cas_disk_delete (s, "disk0"), 0, "delete: %s", errors);
  cr_assert_null (cas_disk_find (s, "disk0"));
  cr_assert_null (cas_store_disk (s, 0), "a deleted disk's slot reads as NULL");
  /* Its handle stays valid, and its operations fail. */
  uint8_t buf[BS];
  cr_assert_eq (cas_disk_read (old, buf, BS, 0), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (cas_disk_write (old, buf, BS, 0), -1);
  cr_assert_eq (errno, EIO);
  cr_assert_eq (cas_disk_zero (old, 100 * BS, 0), -1);
  cr_assert_eq (cas_disk_delete (s, "disk0"), -1);
  cr_assert_eq (errno, ENOENT);

  /* The clone still holds every block. */
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.ndisks, 1);
  cr_assert_eq (st.dead_blocks, 0, "%" PRIu64 " dead of %" PRIu64, st.dead_blocks, st.nblocks);
  expect_disk (find (s, "copy"), 1);
  cr_assert_eq (cas_disk_delete (s, "copy"), 0);
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.ndisks, 0);
  cr_assert_eq (st.dead_blocks, NBLK - 1, "every block is now unreferenced");
  cr_assert_eq (st.logical_bytes, 0);
  /* The delayed GC frees them (forced here: compact does not wait). */
  cr_assert_geq (cas_store_compact (s, NULL, NULL), 0);
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.nblocks, 0);
  cr_assert_eq (st.dead_blocks, 0);

  /* The slots are reused, and the name too. */
  const size_t slots = cas_store_ndisks (s);
  struct cas_disk *n = cas_disk_add (s, "disk0", 1 << 20);
  cr_assert_not_null (n);
  cr_assert_eq (cas_store_ndisks (s), slots, "a tombstone was reused");
  read_zero (n, BS, 0);
  fill_disk (n, 3);
  close_ok (s);
  check_clean ();
  s = open_checked ();
  expect_disk (disk0 (s), 3);
  cr_assert_null (cas_disk_find (s, "copy"));
  close_ok (s);
  check_clean ();
}

/* ---- the reference cap (index.h, CAS_REF_MAX) ---- */

/* Every block of the index, by id, with its refcount. */
struct all_refs {
  size_t n;
  uint64_t id[256];
  uint32_t refs[256];
};

static int
note_block (void *opaque, struct cas_block *b)
{
  struct all_refs *a = opaque;

  cr_assert_lt (a->n, 256, "more blocks than the test expects");
  a->id[a->n] = b->id;
  a->refs[a->n++] = cas_block_refs (b);
  return 0;
}

static void
expect_same_refs (struct cas_store *s, const struct all_refs *want)
{
  struct all_refs got = { 0 };

  cas_index_walk (&s->index, note_block, &got);
  cr_assert_eq (got.n, want->n, "%zu blocks, %zu before", got.n, want->n);
  for (size_t i = 0; i < want->n; i++) {
    size_t j = 0;
    while (j < got.n && got.id[j] != want->id[i])
      j++;
    cr_assert_lt (j, got.n, "block id %" PRIu64 " is gone", want->id[i]);
    cr_assert_eq (got.refs[j], want->refs[i], "block id %" PRIu64 " has %" PRIu32
                  " references, %" PRIu32 " before", want->id[i], got.refs[j], want->refs[i]);
  }
}

/* Ten different blocks, then one content three times (blocks 10..12). */
static void
fill_for_cap (struct cas_disk *d, uint8_t *x)
{
  uint8_t buf[BS];

  for (int i = 0; i < 10; i++) {
    fill_random (buf, BS, 5000 + i);
    write_ok (d, buf, BS, (uint64_t) i * BS);
  }
  fill_random (x, BS, 6000);
  for (int i = 10; i < 13; i++)
    write_ok (d, x, BS, (uint64_t) i * BS);
}

static void
expect_for_cap (struct cas_disk *d, const uint8_t *x)
{
  uint8_t buf[BS];

  for (int i = 0; i < 10; i++) {
    fill_random (buf, BS, 5000 + i);
    read_expect (d, buf, BS, (uint64_t) i * BS);
  }
  for (int i = 10; i < 13; i++)
    read_expect (d, x, BS, (uint64_t) i * BS);
}

static unsigned
lines (const char *text)
{
  unsigned n = 0;

  for (; *text; text++)
    n += *text == '\n';
  return n;
}

Test (diskops, clone_past_the_ref_cap_fails_and_changes_nothing)
{
  struct cas_store_stats before, after;
  struct all_refs refs = { 0 };
  uint8_t x[BS];

  create (0, 1 << 20);
  struct cas_store *s = open_checked ();
  s->ref_max = 8;
  fill_for_cap (disk0 (s), x);
  /* x has 3 references, 6 with a clone: a second clone would need 9.  The
   * ten blocks before it in the map get their reference first, so a
   * failure must give those back too.
   */
  cr_assert_not_null (cas_disk_clone (s, "disk0", "c1"), "clone: %s", errors);
  cr_assert_eq (cas_store_stats (s, &before), 0);
  cas_index_walk (&s->index, note_block, &refs);
  const size_t slots = cas_store_ndisks (s);
  errors[0] = '\0';
  cr_assert_null (cas_disk_clone (s, "disk0", "c2"), "a clone took a block past the cap");
  cr_assert_eq (errno, EOVERFLOW, "errno %d (%s)", errno, strerror (errno));
  cr_assert_eq (lines (errors), 1, "not one line: %s", errors);
  cr_assert (strstr (errors, "'c2'") && strstr (errors, "references"), "%s", errors);
  errors[0] = '\0';
  cr_assert_null (cas_snapshot_create (s, "disk0", "mon"), "a snapshot took a block past the cap");
  cr_assert_eq (errno, EOVERFLOW);
  cr_assert_eq (lines (errors), 1, "not one line: %s", errors);

  /* Nothing changed: no disk, no slot, every refcount as before. */
  cr_assert_null (cas_disk_find (s, "c2"));
  cr_assert_null (cas_disk_find (s, "disk0@mon"));
  cr_assert_eq (cas_store_ndisks (s), slots);
  cr_assert_eq (cas_store_stats (s, &after), 0);
  cr_assert_eq (after.ndisks, before.ndisks);
  cr_assert_eq (after.nblocks, before.nblocks);
  cr_assert_eq (after.logical_bytes, before.logical_bytes);
  cr_assert_eq (after.dead_blocks, 0);
  expect_same_refs (s, &refs);
  cr_assert_eq (cas_store_verify (s), 0, "verify: %s", errors);
  expect_for_cap (disk0 (s), x);
  expect_for_cap (find (s, "c1"), x);

  /* Once x has room again, the same clone succeeds. */
  cr_assert_eq (cas_disk_zero (find (s, "c1"), 3 * BS, 10 * BS), 0);
  struct cas_disk *c2 = cas_disk_clone (s, "disk0", "c2");
  cr_assert_not_null (c2, "clone: %s", errors);
  expect_for_cap (c2, x);
  close_ok (s);
  check_clean ();

  s = open_checked ();
  expect_for_cap (disk0 (s), x);
  expect_for_cap (find (s, "c2"), x);
  read_zero (find (s, "c1"), 3 * BS, 10 * BS);
  close_ok (s);
  check_clean ();
}

/* ---- crash safety: every operation survives a crash right after it ---- */

static int
ops_then_crash (void)
{
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.runtime_asserts = true;
  struct cas_store *s = cas_store_open (store, &o);
  uint8_t buf[BS];

  CHILD_CHECK (s != NULL);
  for (int i = 0; i < NBLK; i++) {
    fill_random (buf, sizeof buf, 1000 + (i == 6 ? 5 : i));
    CHILD_CHECK (cas_disk_write (cas_disk_find (s, "disk0"), buf, BS, (uint64_t) i * BS) == 0);
  }
  CHILD_CHECK (cas_disk_clone (s, "disk0", "copy") != NULL);
  CHILD_CHECK (cas_snapshot_create (s, "disk0", "snap") != NULL);
  CHILD_CHECK (cas_disk_clone (s, "disk0", "gone") != NULL);
  CHILD_CHECK (cas_disk_delete (s, "gone") == 0);
  CHILD_CHECK (cas_disk_add (s, "reuse", 8192) != NULL);      /* takes gone's slot */
  /* Unflushed writes after the operations: they may be lost, the
   * operations may not.
   */
  memset (buf, 0xee, sizeof buf);
  CHILD_CHECK (cas_disk_write (cas_disk_find (s, "copy"), buf, BS, 0) == 0);
  return 0;
}

Test (diskops, operations_survive_a_crash)
{
  create (3, 1 << 20);
  in_crashing_child (ops_then_crash);
  struct cas_store *s = open_checked ();
  expect_disk (disk0 (s), 1);
  expect_disk (find (s, "disk0@snap"), 1);
  cr_assert_null (cas_disk_find (s, "gone"));
  cr_assert_eq (cas_disk_size (find (s, "reuse")), 8192);
  cr_assert_eq (cas_store_ndisks (s), 4, "disk0, copy, snap, reuse in gone's slot");
  /* copy: block 0 is the old content or 0xee (written after, not flushed). */
  uint8_t buf[BS], want[BS], ee[BS];
  memset (ee, 0xee, sizeof ee);
  fill_random (want, sizeof want, 1000);
  cr_assert_eq (cas_disk_read (find (s, "copy"), buf, BS, 0), 0);
  cr_assert (memcmp (buf, want, BS) == 0 || memcmp (buf, ee, BS) == 0);
  for (int i = 1; i < NBLK; i++) {
    fill_random (want, sizeof want, 1000 + (i == 6 ? 5 : i));
    read_expect (find (s, "copy"), want, BS, (uint64_t) i * BS);
  }
  close_ok (s);
  check_clean ();
}

/* ---- a clone taken under write load is one point in time ---- */

#define NW 4                    /* writers */
#define WBLK 48                 /* blocks per writer, written in order, round after round */

static struct cas_disk *load_disk;
static volatile int load_stop;

/* Block i of writer t in round r: its first 8 bytes say (t, i, r). */
static void
load_block (uint8_t *buf, uint64_t t, uint64_t i, uint64_t r)
{
  fill_random (buf, BS, (t << 40) ^ (i << 20) ^ r);
  memcpy (buf, &r, sizeof r);
}

static void *
load_writer (void *arg)
{
  const uint64_t t = (uintptr_t) arg;
  uint8_t buf[BS];
  intptr_t bad = 0;

  for (uint64_t r = 1; !load_stop && r < 100000; r++)
    for (uint64_t i = 0; i < WBLK; i++) {
      load_block (buf, t, i, r);
      if (cas_disk_write (load_disk, buf, BS, (t * WBLK + i) * BS) == -1)
        bad++;
    }
  return (void *) bad;
}

/* The clone is a point in time iff, for each writer, the rounds it shows
 * go down by one at most once along the blocks (r, ..., r, r-1, ..., r-1)
 * and every block's content matches its round.  Returns 0 if so.
 */
static int
verify_point_in_time (struct cas_disk *c, uint64_t rounds[NW][WBLK])
{
  uint8_t buf[BS], want[BS];

  for (uint64_t t = 0; t < NW; t++) {
    int drops = 0;
    for (uint64_t i = 0; i < WBLK; i++) {
      uint64_t r;
      if (cas_disk_read (c, buf, BS, (t * WBLK + i) * BS) == -1)
        return -1;
      memcpy (&r, buf, sizeof r);
      rounds[t][i] = r;
      if (r == 0) {             /* never written: zeroes */
        if (memcmp (buf, (uint8_t[BS]) { 0 }, BS) != 0)
          return -1;
      }
      else {
        load_block (want, t, i, r);
        if (memcmp (buf, want, BS) != 0)
          return -1;
      }
      if (i > 0 && r != rounds[t][i - 1]) {
        if (r + 1 != rounds[t][i - 1] || ++drops > 1) {
          fprintf (stderr, "writer %" PRIu64 ": block %" PRIu64 " round %" PRIu64
                   " after round %" PRIu64 "\n", t, i, r, rounds[t][i - 1]);
          return -1;
        }
      }
    }
  }
  return 0;
}

static char rounds_file[400];

static int
clone_under_load (void)
{
  static uint64_t rounds[NW][WBLK];
  struct cas_open_opts o;
  pthread_t th[NW];
  struct timespec ts = { 0, 150 * 1000000 };

  cas_open_opts_default (&o);
  o.gc_delay = 0;
  o.runtime_asserts = true;     /* verified after each clone, and each background step */
  struct cas_store *s = cas_store_open (store, &o);
  CHILD_CHECK (s != NULL);
  CHILD_CHECK (cas_store_start (s) == 0);    /* the GC and background flushes run too */
  load_disk = cas_disk_find (s, "disk0");
  CHILD_CHECK (load_disk != NULL);
  for (uintptr_t t = 0; t < NW; t++)
    CHILD_CHECK (pthread_create (&th[t], NULL, load_writer, (void *) t) == 0);
  nanosleep (&ts, NULL);
  struct cas_disk *c = cas_disk_clone (s, "disk0", "clone");
  CHILD_CHECK (c != NULL);
  struct cas_disk *snap = cas_snapshot_create (s, "disk0", "snap");
  CHILD_CHECK (snap != NULL);
  /* Let writer 0 rewrite its first block at least once more (10 s at most). */
  {
    uint64_t r0 = 0, r1 = 0;
    uint8_t buf[BS];
    CHILD_CHECK (cas_disk_read (snap, buf, BS, 0) == 0);
    memcpy (&r0, buf, sizeof r0);
    for (int i = 0; i < 200 && r1 <= r0; i++) {
      nanosleep (&(struct timespec) { 0, 50 * 1000000 }, NULL);
      CHILD_CHECK (cas_disk_read (load_disk, buf, BS, 0) == 0);
      memcpy (&r1, buf, sizeof r1);
    }
    CHILD_CHECK (r1 > r0);
  }
  load_stop = 1;
  for (int t = 0; t < NW; t++) {
    void *bad;
    pthread_join (th[t], &bad);
    CHILD_CHECK (bad == NULL);
  }
  CHILD_CHECK (verify_point_in_time (c, rounds) == 0);
  {
    /* The writers went on after the clone and the snapshot; neither moved. */
    static uint64_t srounds[NW][WBLK], drounds[NW][WBLK];
    CHILD_CHECK (verify_point_in_time (snap, srounds) == 0);
    CHILD_CHECK (verify_point_in_time (load_disk, drounds) == 0);
    CHILD_CHECK (drounds[0][0] > srounds[0][0] && srounds[0][0] >= rounds[0][0]);
  }
  /* Keep what the clone showed for the parent, then crash. */
  FILE *f = fopen (rounds_file, "w");
  CHILD_CHECK (f && fwrite (rounds, sizeof rounds, 1, f) == 1 && fclose (f) == 0);
  return 0;
}

Test (diskops, clone_under_write_load_is_a_point_in_time_and_durable)
{
  static uint64_t before[NW][WBLK], after[NW][WBLK];

  create (3, NW * WBLK * BS);
  snprintf (rounds_file, sizeof rounds_file, "%s/rounds", dir);
  in_crashing_child (clone_under_load);
  FILE *f = fopen (rounds_file, "r");
  cr_assert_not_null (f);
  cr_assert_eq (fread (before, sizeof before, 1, f), 1);
  fclose (f);
  int written = 0;
  for (int t = 0; t < NW; t++)
    for (int i = 0; i < WBLK; i++)
      written += before[t][i] > 0;
  cr_assert_gt (written, 0, "the clone caught no write at all");

  /* After the crash: the clone is exactly what it was when it returned. */
  struct cas_store *s = open_checked ();
  cr_assert_eq (verify_point_in_time (find (s, "clone"), after), 0);
  cr_assert_arr_eq (after, before, sizeof before, "the clone changed across the crash");
  cr_assert (cas_disk_is_snapshot (find (s, "disk0@snap")));
  cr_assert_eq (verify_point_in_time (find (s, "disk0@snap"), after), 0);
  cr_assert_eq (verify_point_in_time (disk0 (s), after), 0);
  close_ok (s);
  check_clean ();
}

/* Cost: a clone of a disk of many blocks takes time in proportion to its
 * map, and no data is written.
 */
Test (diskops, clone_time_of_a_large_map)
{
  struct cas_store_stats before, after;
  const uint64_t nblk = 65536;          /* 256 MiB of 4 KiB blocks */
  uint8_t *buf = malloc (64 * BS);
  struct timespec t0, t1;

  create (0, nblk * BS);
  struct cas_store *s = open_rw ();   /* no runtime asserts: timed */
  cr_assert_not_null (buf);
  for (uint64_t i = 0; i < nblk; i += 64) {
    for (int k = 0; k < 64; k++)
      memcpy (buf + k * BS, &(uint64_t) { i + k + 1 }, 8);   /* distinct, compressible */
    write_ok (disk0 (s), buf, 64 * BS, i * BS);
  }
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert_eq (cas_store_stats (s, &before), 0);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  struct cas_disk *c = cas_disk_clone (s, "disk0", "big");
  clock_gettime (CLOCK_MONOTONIC, &t1);
  cr_assert_not_null (c);
  cr_assert_eq (cas_store_stats (s, &after), 0);
  cr_assert_eq (after.data_file_end, before.data_file_end, "the clone wrote data");
  cr_assert_eq (after.nblocks, nblk);
  const double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  cr_log_info ("clone of %" PRIu64 " mapped blocks: %.1f ms", nblk, secs * 1e3);
  cr_assert_lt (secs, 5.0, "clone of %" PRIu64 " blocks took %.2f s", nblk, secs);
  read_expect (c, buf, 64 * BS, (nblk - 64) * BS);
  free (buf);
  close_ok (s);
}
