/* Data-loss regressions: each test here failed on the code before its fix
 * (issue 11 of the tracker), and reproduces the sequence that lost data.
 *
 * Fault injection (CASDISK_FAULT, lib/storage/io.c) and the I/O log
 * (CASDISK_IOLOG) are read once per process, at the first I/O call.  Criterion runs each
 * test in its own process, so a test sets them before its first I/O, or in
 * a forked child for one phase only (the parent then must not do I/O
 * through the engine before that child).
 */
#include <config.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include "background/gc.h"
#include "casdisk.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/util.h"

#include "fixture.h"

static void
setup (void)
{
  fixture_setup ("durability");
}

TestSuite (durability, .init = setup, .fini = fixture_teardown, .timeout = 30);

static struct cas_store *
open_opts (unsigned gc_delay, uint64_t keep_erased)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = gc_delay;
  o.keep_erased = keep_erased;
  o.runtime_asserts = true;
  return cas_store_open (store, &o);
}

static uint8_t blk_x[BS], blk_y[BS];

/* Create the store in a child: the parent's first I/O would fix its fault
 * and log settings (and every later child's) before the test sets them.
 */
static int
create_store (void)
{
  struct cas_create_opts o = { .block_size = BS, .compression_level = 0 };

  CHILD_CHECK (cas_store_create (store, &o, "disk0", 8 << 20) == 0);
  return 0;
}

/* ---- 1. close after a failed journal sync ----
 *
 * Write X and Y, flush; trim X without a flush; the GC kills X (BLOCK_DEL
 * appended, X's space pending); close while every data-file sync fails.
 * The trim never became durable, so after reopening X must read back.
 * Before the fix, close punched X's space (or cut the file below it).
 */

static uint64_t x_block, y_block;

static int
write_x_and_y (void)
{
  struct cas_store *s = open_opts (0, CAS_KEEP_ERASED_ALL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  /* Lower virtual block first: it comes first in the data file. */
  const bool x_first = x_block < y_block;
  CHILD_CHECK (cas_disk_write (d, x_first ? blk_x : blk_y, BS, (x_first ? x_block : y_block) * BS) == 0);
  CHILD_CHECK (cas_disk_write (d, x_first ? blk_y : blk_x, BS, (x_first ? y_block : x_block) * BS) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (cas_store_close (s) == 0);
  return 0;
}

static int
trim_x_kill_close_failing (void)
{
  setenv ("CASDISK_FAULT", "sync:data:1", 1);     /* every sync of the data file */
  struct cas_store *s = open_opts (0, CAS_KEEP_ERASED_ALL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (cas_disk_zero (d, BS, x_block * BS) == 0);
  cas_gc_pass (s, true);                          /* kills X: BLOCK_DEL, space pending */
  CHILD_CHECK (s->gc_freed_blocks == 1);
  CHILD_CHECK (cas_alloc_pending_bytes (&s->alloc) > 0);
  CHILD_CHECK (cas_store_close (s) == -1);       /* its flush failed */
  return 0;
}

static void
close_after_failed_sync (uint64_t x, uint64_t y)
{
  x_block = x;
  y_block = y;
  fill_random (blk_x, BS, 1);
  fill_random (blk_y, BS, 2);
  in_crashing_child (create_store);
  in_crashing_child (write_x_and_y);
  in_crashing_child (trim_x_kill_close_failing);

  errors[0] = '\0';
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  cr_assert_not_null (s, "reopen after the failed close: %s", errors);
  read_expect (disk0 (s), blk_x, BS, x * BS);     /* the trim was never durable */
  read_expect (disk0 (s), blk_y, BS, y * BS);
  close_ok (s);
  check_clean ();
}

/* X before Y in the data file: close punched X ("checksum mismatch"). */
Test (durability, close_after_failed_sync_keeps_unflushed_deletes)
{
  close_after_failed_sync (0, 1);
}

/* X last in the data file: close cut the file below it, and the store
 * would not open ("block lies beyond the end of the data file").
 */
Test (durability, close_after_failed_sync_does_not_cut_below_pending)
{
  close_after_failed_sync (1, 0);
}

/* ---- 2. BLOCK_DEL of a referenced block in the journal ----
 *
 * A journal that deletes a block maps still point at is damaged.  Opening
 * must refuse it; before the fix the block was freed while map entries
 * still pointed at it (a read then returned another block's content).
 */

static int
journal_deletes_referenced_block (void)
{
  struct cas_store *s = open_rw ();
  struct cas_disk *d = cas_disk_find (s, "disk0");
  uint8_t p[JREC_BLOCK_DEL_LEN];

  CHILD_CHECK (cas_disk_write (d, blk_x, BS, 0) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (s->next_id >= 2);
  put_le64 (p, s->next_id - 1);                   /* X's id: still mapped at block 0 */
  pthread_mutex_lock (&s->jlock);
  cas_journal_append (s, JREC_BLOCK_DEL, p, sizeof p);
  pthread_mutex_unlock (&s->jlock);
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;                                       /* crash: no close, no checkpoint */
}

Test (durability, journal_delete_of_referenced_block_refuses_open)
{
  fill_random (blk_x, BS, 3);
  in_crashing_child (create_store);
  in_crashing_child (journal_deletes_referenced_block);

  errors[0] = '\0';
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  cr_assert_null (s, "a journal deleting a referenced block was accepted");
  cr_assert_eq (errno, EUCLEAN, "errno %d (%s)", errno, strerror (errno));
  cr_assert (strstr (errors, "still has 1 references") != NULL, "error: %s", errors);

  /* check reports it and keeps the block (it reads back in check). */
  const int r = check ();
  cr_assert_gt (r, 0, "check found nothing: %s", errors);
  cr_assert (strstr (reports, "still has 1 references (the block is kept)") != NULL,
             "reports: %s", reports);
  cr_assert (strstr (reports, "unknown block") == NULL, "the block was dropped: %s", reports);
  /* A second open still refuses: check changed nothing. */
  cr_assert_null (open_opts (3600, CAS_KEEP_ERASED_ALL));
}

/* ---- 3. a background data-file sync consumes a writeback error ----
 *
 * Linux reports a writeback error to one fdatasync per file description.
 * If the background thread's sync (after an erase) gets it, the flush's
 * own sync returns 0: before the fix the flush then journaled records
 * naming lost data and succeeded.  The hook runs the GC's erase and its
 * sync (which fails: the third data sync) between the flush's check of
 * io_failed and its own sync (the fourth, which succeeds, as the kernel's
 * would once the error was consumed).
 */

static bool hook_ran;

static void
erase_in_background (struct cas_store *s)
{
  if (hook_ran)
    return;
  hook_ran = true;
  s->alloc.keep_erased = CAS_KEEP_ERASED_ALL;     /* now erase the junk */
  cas_gc_release (s);
}

Test (durability, background_sync_error_fails_the_flush)
{
  fill_random (blk_x, BS, 4);
  fill_random (blk_y, BS, 5);
  in_crashing_child (create_store);
  setenv ("CASDISK_FAULT", "sync:data:3", 1);
  struct cas_store *s = open_opts (0, 0);         /* keep junk unerased for now */
  cr_assert_not_null (s, "open: %s", errors);
  struct cas_disk *d = disk0 (s);

  write_ok (d, blk_x, BS, 0);
  write_ok (d, blk_y, BS, BS);
  fill_random (blk_y, BS, 9);
  write_ok (d, blk_y, BS, 3 * BS);                /* keeps the junk off the end */
  cr_assert_eq (cas_store_flush (s), 0, "%s", errors);          /* data sync 1 */
  cr_assert_eq (cas_disk_zero (d, 2 * BS, 0), 0);
  cas_gc_pass (s, true);
  cas_gc_release (s);                             /* data sync 2; the space settles */
  cr_assert_eq (s->io_failed, false, "%s", errors);
  fill_random (blk_y, BS, 8);
  write_ok (d, blk_y, BS, 2 * BS);                /* its pages "fail writeback"; it */
  struct cas_space sp;                            /* reuses half of the junk */
  cas_alloc_space (&s->alloc, &sp);
  cr_assert_eq (sp.junk, BS, "junk: %" PRIu64, sp.junk);
  s->data_sync_hook = erase_in_background;
  const int r = cas_store_flush (s);
  cr_assert (hook_ran);
  cr_assert_eq (s->io_failed, true, "the background sync did not fail: %s", errors);
  cr_assert_eq (r, -1, "the flush succeeded after a data-file sync error");
  cr_assert_eq (errno, EIO);
  cr_assert_eq (cas_store_close (s), -1);
}

/* ---- 4. open acts on a replayed journal tail that is not durable ----
 *
 * After kill -9 between a journal write and its fsync, the tail is only in
 * the page cache.  Open replays it and punches the space it frees: the
 * journal must be synced first, or a power loss brings back the journal
 * without the tail, pointing at punched space.  The I/O log shows the
 * order of what the open did.
 */

static int
write_trim_kill_flush_crash (void)
{
  struct cas_store *s = open_opts (0, 0);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (cas_disk_write (d, blk_x, BS, 0) == 0);
  CHILD_CHECK (cas_disk_write (d, blk_y, BS, BS) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (cas_disk_zero (d, BS, 0) == 0);
  cas_gc_pass (s, true);                          /* BLOCK_DEL of X */
  CHILD_CHECK (cas_store_flush (s) == 0);         /* the tail a kill would leave unsynced */
  return 0;                                       /* crash */
}

Test (durability, open_syncs_the_replayed_journal_before_punching)
{
  char logpath[400], jname[64];
  void *log;
  size_t len;
  int njournals;

  fill_random (blk_x, BS, 6);
  fill_random (blk_y, BS, 7);
  in_crashing_child (create_store);
  in_crashing_child (write_trim_kill_flush_crash);
  const uint64_t gen = journal_gen (&njournals);
  snprintf (jname, sizeof jname, "S " CAS_JOURNAL_FMT "\n", gen);

  snprintf (logpath, sizeof logpath, "%s/iolog", dir);
  setenv ("CASDISK_IOLOG", logpath, 1);
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  cr_assert_not_null (s, "%s", errors);
  read_zero (disk0 (s), BS, 0);
  read_expect (disk0 (s), blk_y, BS, BS);
  close_ok (s);
  cr_assert_eq (cas_read_file (logpath, &log, &len), 0);
  char *text = log;
  text[len - 1] = '\0';                           /* the log ends with a newline */
  const char *punch = strstr (text, "P data ");
  const char *cut = strstr (text, "T data ");
  const char *first = punch == NULL ? cut : cut == NULL || punch < cut ? punch : cut;
  cr_assert_not_null (first, "open freed nothing in the data file:\n%s", text);
  const char *sync = strstr (text, jname);
  cr_assert (sync != NULL && sync < first,
             "the data file was punched or cut before %.*s was synced:\n%.*s",
             (int) strlen (jname) - 1, jname, (int) (first - text) + 32, text);
  free (log);
  check_clean ();
}

/* ---- the batch length field ----
 *
 * A batch retained across failing journal writes grows with every flush
 * that merges newer records into it; its length field is 32 bits.  With a
 * small batch limit and every third journal write failing, no batch may
 * pass the limit, and every record must still become durable in order.
 */

#define NBATCHED 64

static size_t largest_batch;

static void
note_batch (struct cas_store *s)                  /* the batch is built: its size */
{
  if (s->flushing.len > largest_batch)
    largest_batch = s->flushing.len;
}

static int
flush_through_failures (void)
{
  setenv ("CASDISK_FAULT", "write:journal:3", 1);
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  uint8_t buf[BS];
  int failed = 0;

  s->batch_max = 600;              /* the 4 writes between flushes fit, 8 do not */
  s->data_sync_hook = note_batch;
  for (unsigned i = 0; i < NBATCHED; i++) {
    fill_random (buf, BS, 100 + i);
    CHILD_CHECK (cas_disk_write (d, buf, BS, (uint64_t) i * BS) == 0);
    if (i % 4 == 3 && cas_store_flush (s) == -1)
      failed++;
  }
  int tries = 0;
  while (cas_store_flush (s) == -1 && ++tries < 10)
    ;
  CHILD_CHECK (tries < 10);
  CHILD_CHECK (failed > 0);                       /* the faults did hit flushes */
  if (largest_batch > s->batch_max) {
    fprintf (stderr, "child: a batch of %zu bytes, over the limit of %zu\n",
             largest_batch, s->batch_max);
    return 1;
  }
  CHILD_CHECK (s->durable_seq == s->next_seq - 1);
  return 0;                                       /* crash: recovery replays the journal */
}

Test (durability, batches_stay_below_the_limit_across_failed_flushes)
{
  uint8_t buf[BS];

  in_crashing_child (create_store);
  in_crashing_child (flush_through_failures);
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  cr_assert_not_null (s, "%s", errors);
  for (unsigned i = 0; i < NBATCHED; i++) {
    fill_random (buf, BS, 100 + i);
    read_expect (disk0 (s), buf, BS, (uint64_t) i * BS);
  }
  close_ok (s);
  check_clean ();
}

/* ---- replay's check of reused space on a real journal ----
 *
 * Replay refuses a journal that places a block on space another block still
 * holds (struct load_history, meta/load.c).  A journal the engine wrote
 * must never be refused.  The loader once lost its record number when its
 * table of blocks grew (at 512 and 1024 blocks), so the placement of the
 * block inserted then was missed, and if that block sat on space another
 * block had used earlier and was deleted later, replay refused the store
 * ("journal places block ... while block ... still uses the same space");
 * the crash soak found it.  Here the 1025th block the loader holds is
 * written on the space of a deleted one, then deleted too.
 */

static void
write_range_of (struct cas_disk *d, unsigned first, unsigned n, unsigned seed, int *ok)
{
  uint8_t buf[BS];

  for (unsigned i = first; i < first + n && *ok; i++) {
    fill_random (buf, BS, seed + i);
    *ok = cas_disk_write (d, buf, BS, (uint64_t) i * BS) == 0;
  }
}

static int
write_free_reuse_crash (void)
{
  struct cas_store *s = open_opts (0, CAS_KEEP_ERASED_ALL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  int ok = 1;

  write_range_of (d, 0, 900, 10000, &ok);         /* L: kept */
  write_range_of (d, 900, 100, 20000, &ok);       /* T: deleted below */
  write_range_of (d, 1000, 1, 30000, &ok);        /* G: keeps T off the end */
  CHILD_CHECK (ok && cas_store_flush (s) == 0);
  CHILD_CHECK (cas_disk_zero (d, 100 * BS, 900 * BS) == 0);
  cas_gc_pass (s, true);                          /* T dies; its space pending */
  write_range_of (d, 1001, 100, 40000, &ok);      /* E: new space (T is pending) */
  CHILD_CHECK (ok);
  cas_gc_release (s);                             /* T's space: durable, then free */
  const uint64_t end = cas_alloc_end (&s->alloc);
  write_range_of (d, 900, 100, 50000, &ok);       /* U: on T's space */
  CHILD_CHECK (ok && cas_alloc_end (&s->alloc) == end);
  CHILD_CHECK (cas_disk_zero (d, 100 * BS, 900 * BS) == 0);
  cas_gc_pass (s, true);                          /* U dies too */
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;                                       /* crash: the journal is replayed */
}

Test (durability, replay_accepts_space_reused_after_its_delete)
{
  uint8_t buf[BS];

  in_crashing_child (create_store);
  in_crashing_child (write_free_reuse_crash);
  struct cas_store *s = open_opts (3600, CAS_KEEP_ERASED_ALL);
  cr_assert_not_null (s, "a journal the engine wrote was refused: %s", errors);
  for (unsigned i = 0; i < 1101; i++) {
    const unsigned seed = i < 900 ? 10000 : i < 1000 ? 0 : i < 1001 ? 30000 : 40000;
    if (seed == 0)
      read_zero (disk0 (s), BS, (uint64_t) i * BS);
    else {
      fill_random (buf, BS, seed + i);
      read_expect (disk0 (s), buf, BS, (uint64_t) i * BS);
    }
  }
  close_ok (s);
  check_clean ();
}
