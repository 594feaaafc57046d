/* Unit tests of the recycler and the space map (recycler.c, gc.c,
 * bgthread.c, verify.c): the move state machine with a test hook between
 * its steps.
 *
 *   - a discard during Copying cancels the move (the copy is freed);
 *   - an overwrite during Copied or Flushed is superseded safely: the
 *     move completes for a block nobody maps any more, the disk reads the
 *     new data;
 *   - a flush between any two steps changes nothing;
 *   - a crash between any two steps (the files copied as a kill -9 leaves
 *     them) recovers to the same content and a clean check;
 *   - keep-erased and secure-erase;
 *   - compaction runs from compact-after down to half of it;
 *   - a randomized run: thousands of random writes, discards, flushes and
 *     background rounds with runtime asserts on, every block re-read and
 *     compared with a model after every step;
 *   - the runtime check itself finds a leak, space used twice and a wrong
 *     refcount (it can fail).
 *
 * Every store here runs with runtime_asserts on: a step that breaks the
 * space map aborts the test at once.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "background/bgthread.h"
#include "background/gc.h"
#include "background/recycler.h"
#include "casdisk.h"
#include "format.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/util.h"

#include "fixture.h"

#define NB 256                          /* blocks of the disk */

static uint64_t model[NB];              /* content seed of each block, 0 = zeroes */

static void
setup (void)
{
  fixture_setup ("recycler");
  memset (model, 0, sizeof model);
}

TestSuite (recycler, .init = setup, .fini = fixture_teardown);

static struct cas_store *
open_with (const char *path, uint64_t keep_erased, bool secure)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 0;
  o.compact_after = 0;
  o.runtime_asserts = true;
  o.keep_erased = keep_erased;
  o.secure_erase = secure;
  struct cas_store *s = cas_store_open (path, &o);
  cr_assert_not_null (s, "open %s: %s (%s)", path, strerror (errno), errors);
  return s;
}

static void
put (struct cas_disk *d, uint64_t v, uint64_t seed)
{
  uint8_t buf[BS];

  if (seed == 0)
    cr_assert_eq (cas_disk_zero (d, BS, v * BS), 0, "zero block %" PRIu64 ": %s", v, errors);
  else {
    fill_random (buf, BS, seed);
    write_ok (d, buf, BS, v * BS);
  }
  model[v] = seed;
}

static void
expect_model (struct cas_disk *d, const char *when)
{
  uint8_t want[BS], got[BS];

  for (uint64_t v = 0; v < NB; v++) {
    cr_assert_eq (cas_disk_read (d, got, BS, v * BS), 0, "%s: read block %" PRIu64 ": %s",
                  when, v, errors);
    if (model[v])
      fill_random (want, BS, model[v]);
    else
      memset (want, 0, BS);
    cr_assert_arr_eq (got, want, BS, "%s: block %" PRIu64 " holds the wrong data", when, v);
  }
}

/* A fragmented store: NB unique blocks, the first 60% trimmed and their
 * space freed, so the last 40% can move into it.
 */
static struct cas_store *
fragmented (uint64_t keep_erased, bool secure)
{
  create (0, NB * BS);
  struct cas_store *s = open_with (store, keep_erased, secure);
  struct cas_disk *d = disk0 (s);

  for (uint64_t v = 0; v < NB; v++)
    put (d, v, 1000 + v);
  cr_assert_eq (cas_store_flush (s), 0);
  for (uint64_t v = 0; v < NB * 6 / 10; v++)
    put (d, v, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  cas_gc_pass (s, true);
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  cr_assert_eq (cas_store_verify (s), 0, "%s", errors);
  return s;
}

static struct cas_store_stats
stats (struct cas_store *s)
{
  struct cas_store_stats st;

  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.space_in_use + st.space_junk + st.space_erased + st.space_free +
                st.space_moving, st.data_file_end, "the states must add up to the end");
  return st;
}

/* ---- the hook ---- */

struct hook {
  int at;                               /* the step to act at, -1 = every step */
  enum { H_NONE, H_DISCARD, H_OVERWRITE, H_FLUSH, H_CRASH } what;
  struct cas_disk *d;
  int fired;
  unsigned steps;                       /* bit per step seen */
  uint64_t crash_model[12][NB];         /* the model at each crash copy */
  int ncrash;
};

/* Copy the store's files as a kill -9 would leave them (the page cache
 * survives a process's death) into DIR/crash-N.
 */
static void
crash_copy (int n)
{
  char dst[512], from[1024], to[1024];
  DIR *dh = opendir (store);
  struct dirent *de;

  snprintf (dst, sizeof dst, "%s/crash-%d", dir, n);
  cr_assert_eq (mkdir (dst, 0700), 0);
  cr_assert_not_null (dh);
  while ((de = readdir (dh)) != NULL) {
    struct stat st;
    snprintf (from, sizeof from, "%s/%s", store, de->d_name);
    if (stat (from, &st) != 0 || !S_ISREG (st.st_mode))
      continue;
    snprintf (to, sizeof to, "%s/%s", dst, de->d_name);
    size_t len;
    uint8_t *buf = slurp (from, &len);
    const int fd = open (to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, buf, len), (ssize_t) len);
    close (fd);
    free (buf);
  }
  closedir (dh);
}

static void
hook_fn (void *opaque, struct cas_store *s, enum cas_recycle_step step)
{
  struct hook *h = opaque;

  if (h->at != -1 && (int) step != h->at)
    return;
  h->fired++;
  h->steps |= 1u << step;
  switch (h->what) {
  case H_NONE:
    break;
  case H_DISCARD:                       /* trim every live block, and let the GC kill them */
    for (uint64_t v = 0; v < NB; v++)
      if (model[v])
        put (h->d, v, 0);
    cr_assert_eq (cas_store_flush (s), 0);
    cas_gc_pass (s, true);
    break;
  case H_OVERWRITE:
    for (uint64_t v = 0; v < NB; v++)
      if (model[v])
        put (h->d, v, 5000 + v);
    break;
  case H_FLUSH:
    cr_assert_eq (cas_store_flush (s), 0);
    break;
  case H_CRASH:
    cr_assert_lt (h->ncrash, 12);
    memcpy (h->crash_model[h->ncrash], model, sizeof model);
    crash_copy (h->ncrash++);
    break;
  }
}

static void
set_hook (struct cas_store *s, struct hook *h)
{
  s->recycle_hook = hook_fn;
  s->recycle_hook_opaque = h;
}

/* A whole background round on a fragmented store, with fresh discards in
 * the middle of the file for the round's GC, so that every step happens:
 * copied, flushed, referenced (the moves), settled, erased, freed (the
 * discards' space and the moves' old places), cut.
 */
#define ALL_STEPS ((1u << CAS_STEP_COPIED) | (1u << CAS_STEP_FLUSHED) |          \
                   (1u << CAS_STEP_REFERENCED) | (1u << CAS_STEP_SETTLED) |     \
                   (1u << CAS_STEP_ERASED) | (1u << CAS_STEP_FREED) |           \
                   (1u << CAS_STEP_CUT))

static void
round_with_discards (struct cas_store *s, struct hook *h)
{
  for (uint64_t v = NB * 6 / 10; v < NB * 7 / 10; v++)
    put (h->d, v, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  set_hook (s, h);
  pthread_mutex_lock (&s->recycle_lock);
  cas_gc_round (s, true);
  pthread_mutex_unlock (&s->recycle_lock);
  cr_assert_eq (h->steps & ALL_STEPS, ALL_STEPS, "steps seen: 0x%x, want 0x%x",
                h->steps, ALL_STEPS);
  cr_assert_eq (stats (s).data_file_end, (NB - NB * 7 / 10) * BS);
}

/* ---- the move state machine ---- */

Test (recycler, moves_shrink_the_file)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct cas_disk *d = disk0 (s);
  const struct cas_store_stats before = stats (s);

  cr_assert_eq (before.space_free, NB * 6 / 10 * BS, "the trimmed blocks' space is free");
  cr_assert_eq (before.space_junk + before.space_erased + before.space_moving, 0);
  const uint64_t moved = cas_recycle_pass (s, UINT64_MAX, true);
  cr_assert_gt (moved, 0);
  const struct cas_store_stats mid = stats (s);
  cr_assert_eq (mid.space_junk, moved, "the old places are junk until settled");
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  const struct cas_store_stats after = stats (s);
  cr_assert_eq (after.space_junk + after.space_erased + after.space_moving, 0);
  cr_assert_eq (after.data_file_end, (NB - NB * 6 / 10) * BS,
                "end %" PRIu64 ": every live block moved to the front", after.data_file_end);
  cr_assert_eq (after.space_in_use, after.data_file_end);
  expect_model (d, "after the moves");
  close_ok (s);
  s = open_with (store, CAS_KEEP_ERASED_ALL, false);
  expect_model (disk0 (s), "after reopening");
  close_ok (s);
  check_clean ();
}

Test (recycler, discard_during_copying_cancels)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct hook h = { .at = CAS_STEP_COPIED, .what = H_DISCARD, .d = disk0 (s) };

  set_hook (s, &h);
  const uint64_t moved = cas_recycle_pass (s, UINT64_MAX, true);
  cr_assert_eq (h.fired, 1);
  cr_assert_eq (moved, 0, "every moving block was deleted: every move is cancelled");
  const struct cas_store_stats st = stats (s);
  cr_assert_eq (st.space_moving, 0, "cancelled moves leave nothing moving");
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  cr_assert_eq (stats (s).data_file_end, 0, "everything was trimmed: the file is empty");
  expect_model (h.d, "after the cancelled moves");
  close_ok (s);
  s = open_with (store, CAS_KEEP_ERASED_ALL, false);
  expect_model (disk0 (s), "after reopening");
  close_ok (s);
  check_clean ();
}

static void
overwrite_at (enum cas_recycle_step at)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct hook h = { .at = at, .what = H_OVERWRITE, .d = disk0 (s) };

  set_hook (s, &h);
  const uint64_t moved = cas_recycle_pass (s, UINT64_MAX, true);
  cr_assert_eq (h.fired, 1);
  cr_assert_gt (moved, 0, "an overwrite does not cancel a move: blocks are immutable");
  expect_model (h.d, "right after the pass");
  /* The moved blocks are dead now: the GC frees them at their new place. */
  cr_assert_eq (cas_store_flush (s), 0);
  cas_gc_pass (s, true);
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  const struct cas_store_stats st = stats (s);
  cr_assert_eq (st.dead_blocks, 0);
  cr_assert_eq (st.nblocks, NB - NB * 6 / 10, "only the new blocks remain");
  expect_model (h.d, "after the GC");
  close_ok (s);
  s = open_with (store, CAS_KEEP_ERASED_ALL, false);
  expect_model (disk0 (s), "after reopening");
  close_ok (s);
  check_clean ();
}

Test (recycler, overwrite_during_copied)
{
  overwrite_at (CAS_STEP_COPIED);
}

Test (recycler, overwrite_during_flushed)
{
  overwrite_at (CAS_STEP_FLUSHED);
}

Test (recycler, flush_between_every_step)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct hook h = { .at = -1, .what = H_FLUSH, .d = disk0 (s) };

  round_with_discards (s, &h);
  expect_model (h.d, "after a round with flushes between the steps");
  close_ok (s);
  check_clean ();
}

Test (recycler, crash_between_every_step)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct hook h = { .at = -1, .what = H_CRASH, .d = disk0 (s) };

  round_with_discards (s, &h);
  cr_assert_geq (h.ncrash, 7, "crash copies at %d steps", h.ncrash);
  close_ok (s);
  for (int i = 0; i < h.ncrash; i++) {
    char path[512];
    snprintf (path, sizeof path, "%s/crash-%d", dir, i);
    memcpy (model, h.crash_model[i], sizeof model);
    s = open_with (path, CAS_KEEP_ERASED_ALL, false);   /* recovery */
    expect_model (disk0 (s), path);
    cr_assert_eq (cas_store_verify (s), 0, "%s: %s", path, errors);
    close_ok (s);
    struct cas_check_result res;
    reports[0] = '\0';
    cr_assert_eq (cas_store_check (path, report, NULL, &res), 0,
                  "crash copy %d: check found problems:\n%s%s", i, reports, errors);
  }
}

/* ---- erasing ---- */

static uint64_t
allocated_bytes (const char *name)
{
  char path[512];
  struct stat st;

  snprintf (path, sizeof path, "%s/%s", store, name);
  cr_assert_eq (stat (path, &st), 0);
  return (uint64_t) st.st_blocks * 512;
}

Test (recycler, keep_erased_leaves_junk_for_reuse)
{
  struct cas_store *s;

  create (0, NB * BS);
  s = open_with (store, 16 * BS, false);
  struct cas_disk *d = disk0 (s);
  for (uint64_t v = 0; v < NB; v++)
    put (d, v, 1000 + v);
  cr_assert_eq (cas_store_flush (s), 0);
  for (uint64_t v = 0; v < NB / 2; v++)
    put (d, v, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  cas_gc_pass (s, true);
  cas_gc_release (s);
  struct cas_store_stats st = stats (s);
  cr_assert_eq (st.space_free, 16 * BS, "erased only until keep-erased");
  cr_assert_eq (st.space_junk, (NB / 2 - 16) * BS, "the rest stays junk");
  cr_assert_eq (st.erased_bytes, 16 * BS);
  /* New blocks reuse free space, then junk: the file does not grow. */
  const uint64_t end = st.data_file_end;
  for (uint64_t v = 0; v < NB / 2; v++)
    put (d, v, 9000 + v);
  st = stats (s);
  cr_assert_eq (st.data_file_end, end, "junk must be reused before the file grows");
  cr_assert_eq (st.space_junk + st.space_free, 0);
  expect_model (d, "after reusing junk");
  close_ok (s);
  check_clean ();
}

Test (recycler, erase_punches_and_secure_erase_zeroes)
{
  for (int secure = 0; secure <= 1; secure++) {
    fixture_teardown ();
    fixture_setup ("recycler");
    create (0, NB * BS);
    struct cas_store *s = open_with (store, CAS_KEEP_ERASED_ALL, secure);
    struct cas_disk *d = disk0 (s);
    for (uint64_t v = 0; v < NB; v++)
      put (d, v, 1000 + v);
    cr_assert_eq (cas_store_flush (s), 0);
    const uint64_t full = allocated_bytes (CAS_DATA_NAME);
    /* Where block 10 lives: its bytes must be gone after the erase. */
    rcu_read_lock ();
    const uint64_t off = cas_block_offset (cas_map_get (&d->map, 10));
    rcu_read_unlock ();
    for (uint64_t v = 0; v < NB / 2; v++)
      put (d, v, 0);
    cr_assert_eq (cas_store_flush (s), 0);
    cas_gc_pass (s, true);
    cas_gc_release (s);
    cr_assert_eq (stats (s).space_free, NB / 2 * BS);
    uint8_t got[BS], zero[BS] = { 0 };
    cr_assert_eq (cas_pread_full (s->data_fd, got, BS, off, "data file"), 0);
    cr_assert_arr_eq (got, zero, BS, "erased space still holds the old bytes (secure=%d)", secure);
    const uint64_t now = allocated_bytes (CAS_DATA_NAME);
    cr_assert_leq (now + NB / 2 * BS, full + 4096,
                   "the erase gives the space back to the file system (secure=%d): "
                   "%" PRIu64 " -> %" PRIu64, secure, full, now);
    expect_model (d, "after erasing");
    close_ok (s);
    check_clean ();
  }
}

/* ---- the runtime check can fail ---- */

Test (recycler, verify_finds_leaks_overlaps_and_refcounts)
{
  struct cas_store *s = fragmented (CAS_KEEP_ERASED_ALL, false);
  struct cas_disk *d = disk0 (s);
  uint64_t off;

  cr_assert_eq (cas_store_verify (s), 0);
  /* Leak: space taken from the allocator that no block holds. */
  cr_assert_eq (cas_alloc_get (&s->alloc, BS, &off), 0);
  cr_assert_gt (cas_store_verify (s), 0, "a leak must be found");
  cr_assert (strstr (errors, "leaked space"), "%s", errors);
  cas_alloc_free (&s->alloc, off, BS);
  cr_assert_eq (cas_store_verify (s), 0);
  /* A refcount that does not match the maps. */
  rcu_read_lock ();
  struct cas_block *b = cas_map_get (&d->map, NB - 20);
  rcu_read_unlock ();
  errors[0] = '\0';
  __atomic_add_fetch (&b->refcount, 1, __ATOMIC_RELAXED);
  cr_assert_gt (cas_store_verify (s), 0, "a wrong refcount must be found");
  cr_assert (strstr (errors, "map references"), "%s", errors);
  __atomic_sub_fetch (&b->refcount, 1, __ATOMIC_RELAXED);
  cr_assert_eq (cas_store_verify (s), 0);
  /* Space used twice: a live block's extent listed as free (left broken:
   * closing does not verify).
   */
  errors[0] = '\0';
  cas_alloc_free (&s->alloc, cas_block_offset (b), BS);
  cr_assert_gt (cas_store_verify (s), 0, "an overlap must be found");
  cr_assert (strstr (errors, "space used twice"), "%s", errors);
  close_ok (s);
}

/* ---- when to compact ---- */

/* Big enough that the spare space stays above the recycler's 1 MiB
 * minimum down to the low water.
 */
#define NBIG 4096
#define PER_ROUND 16                    /* blocks moved per round (the rate) */

static bool trimmed[NBIG];

/* Trim blocks [FROM, TO) and free their space now (GC, settle, erase). */
static void
trim_and_free (struct cas_store *s, struct cas_disk *d, uint64_t from, uint64_t to)
{
  for (uint64_t v = from; v < to; v++) {
    cr_assert_eq (cas_disk_zero (d, BS, v * BS), 0, "trim block %" PRIu64 ": %s", v, errors);
    trimmed[v] = true;
  }
  cr_assert_eq (cas_store_flush (s), 0);
  pthread_mutex_lock (&s->recycle_lock);
  cas_gc_pass (s, true);
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  pthread_mutex_unlock (&s->recycle_lock);
}

static void
expect_big (struct cas_disk *d)
{
  uint8_t want[BS], got[BS];

  for (uint64_t v = 0; v < NBIG; v++) {
    cr_assert_eq (cas_disk_read (d, got, BS, v * BS), 0, "read block %" PRIu64 ": %s", v, errors);
    if (trimmed[v])
      memset (want, 0, BS);
    else
      fill_random (want, BS, 1000 + v);
    cr_assert_arr_eq (got, want, BS, "block %" PRIu64 " holds the wrong data", v);
  }
}

/* Background rounds, each after its rest, until one moves nothing; the
 * rounds that moved.
 */
static unsigned
compact_until_idle (struct cas_store *s)
{
  for (unsigned rounds = 0; rounds < NBIG; rounds++) {
    const uint64_t before = s->recycled_bytes;
    pthread_mutex_lock (&s->recycle_lock);
    s->recycle_rest_until = 0;
    cas_gc_round (s, false);
    pthread_mutex_unlock (&s->recycle_lock);
    if (s->recycled_bytes == before)
      return rounds;
  }
  cr_assert_fail ("the recycler never stops");
  return 0;
}

static uint64_t
spare (struct cas_store *s)
{
  const struct cas_store_stats st = stats (s);
  return st.space_free + st.space_junk;
}

/* Compaction starts at compact_after percent spare and goes on down to
 * half of it; it does not start again until the spare is back at
 * compact_after percent.
 */
Test (recycler, compaction_runs_from_high_to_low_water)
{
  struct cas_open_opts o;
  uint8_t buf[BS];

  create (0, NBIG * BS);
  cas_open_opts_default (&o);
  o.gc_delay = 0;
  o.compact_after = 20;
  o.runtime_asserts = true;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "%s", errors);
  struct cas_disk *d = disk0 (s);
  memset (trimmed, 0, sizeof trimmed);
  for (uint64_t v = 0; v < NBIG; v++) {
    fill_random (buf, BS, 1000 + v);
    write_ok (d, buf, BS, v * BS);
  }
  cr_assert_eq (cas_store_flush (s), 0);
  const uint64_t blk = stats (s).data_file_end / NBIG;
  s->opts.recycle_rate = PER_ROUND * blk;

  /* 19% trimmed: below the high water, nothing moves. */
  trim_and_free (s, d, 0, NBIG * 19 / 100);
  cr_assert_eq (spare (s), NBIG * 19 / 100 * blk);
  cr_assert_eq (compact_until_idle (s), 0, "compaction started below compact-after");

  /* 25%: it starts, and runs on below 20% down to under 10%. */
  trim_and_free (s, d, NBIG * 19 / 100, NBIG / 4);
  const unsigned rounds = compact_until_idle (s);
  const uint64_t end = stats (s).data_file_end, sp = spare (s);
  cr_log_info ("compacted in %u rounds: %" PRIu64 " of %" PRIu64 " bytes spare", rounds, sp, end);
  cr_assert_lt (sp * 100, 10 * end, "compaction stopped at %" PRIu64 " of %" PRIu64
                " bytes spare, above the low water", sp, end);
  cr_assert_geq ((sp + PER_ROUND * blk) * 100, 10 * (end + PER_ROUND * blk),
                 "compaction went on past the low water");
  cr_assert_eq (end, (NBIG - rounds * PER_ROUND) * blk, "every move let the file be cut");
  expect_big (d);

  /* Back up to just under the high water: it does not start again. */
  uint64_t v = NBIG / 4;
  while ((spare (s) + blk) * 100 < 20 * stats (s).data_file_end) {
    trim_and_free (s, d, v, v + 1);
    v++;
  }
  cr_assert_eq (compact_until_idle (s), 0, "compaction restarted below compact-after");
  trim_and_free (s, d, v, v + 1);       /* the high water */
  cr_assert_gt (compact_until_idle (s), 0, "compaction did not start at compact-after");
  expect_big (d);
  close_ok (s);
  check_clean ();
}

/* ---- randomized ---- */

Test (recycler, randomized_against_a_model, .timeout = 600)
{
  const char *env = getenv ("CASDISK_RECYCLER_OPS");
  const int nops = env ? atoi (env) : 2000;
  uint64_t x = 42;
  struct cas_store *s;
  int rounds = 0, flushes = 0;
  uint64_t moved_before;

  create (0, NB * BS);
  s = open_with (store, CAS_KEEP_ERASED_ALL, false);
  struct cas_disk *d = disk0 (s);
  for (int i = 0; i < nops; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    const unsigned r = x % 100;
    const uint64_t v = (x >> 8) % NB;
    if (r < 45)                         /* a write: a few contents repeat (dedup) */
      put (d, v, 1 + (x >> 20) % (NB * 2));
    else if (r < 75) {                  /* a discard of a run */
      const uint64_t n = 1 + (x >> 32) % 16;
      for (uint64_t k = v; k < v + n && k < NB; k++)
        put (d, k, 0);
    }
    else if (r < 85) {
      cr_assert_eq (cas_store_flush (s), 0);
      flushes++;
    }
    else {                              /* a background round, compacting */
      pthread_mutex_lock (&s->recycle_lock);
      cas_gc_round (s, true);
      pthread_mutex_unlock (&s->recycle_lock);
      rounds++;
    }
    expect_model (d, "randomized step");
  }
  moved_before = s->recycled_bytes;
  cr_assert_gt (moved_before, 0, "the recycler never moved anything: the test is too weak");
  cr_assert_eq (cas_store_verify (s), 0, "%s", errors);
  close_ok (s);
  s = open_with (store, CAS_KEEP_ERASED_ALL, false);
  expect_model (disk0 (s), "after reopening");
  close_ok (s);
  check_clean ();
  cr_log_info ("randomized: %d ops, %d flushes, %d rounds, %" PRIu64 " bytes moved",
               nops, flushes, rounds, moved_before);
}
