/* The background thread: delayed GC, background flush, checkpoints.
 *
 * Once a second, holding recycle_lock, it:
 *   1. grows the content index if it is too full, and merges the small
 *      writes (overlay.h) that have waited 30 seconds into their blocks;
 *   2. kills the dead blocks (refcount 0, on the index's dead list) that
 *      have waited gc_delay seconds, journals BLOCK_DEL for each and puts
 *      their space on the allocator's pending list (junk, settling);
 *   3. flushes when records have waited for a flush for 5 seconds, or when
 *      space is pending (so a disk whose client never flushes still gets
 *      its space back);
 *   4. after an RCU grace period, settles the pending space whose record is
 *      durable (junk), erases junk until keep_erased bytes are erased or
 *      free (all of it by default: punched, so the host gets it back),
 *      flushes the data file and frees the erased space;
 *   5. runs the recycler (recycler.c), then 4 again for the old places;
 *   6. cuts the data file when more than 1 MiB at its end is free, so its
 *      apparent size shrinks too;
 *   7. writes a checkpoint when the journal has grown past checkpoint_bytes
 *      (beyond what the last one restated of the small-write log).
 *
 * Priorities, as in the seed's recycler: erasing comes first (space ready
 * for reuse without moving anything), then the references of flushed
 * moves (a pass always finishes its moves), then new moves, then the cut.
 * With runtime_asserts the space map is verified after every step.
 *
 * On request (cas_gc_compact_now, from the control channel's "compact")
 * it also runs a compaction at once: steps 2 to 5 with the recycler
 * forced (compact_after ignored) until nothing more moves, still at
 * recycle_rate and still freeing only the blocks whose gc_delay has
 * passed: a running store may yet revive the others.
 *
 * The GC itself (steps 2 and 4) is gc.c; the recycler (step 5) is
 * recycler.c.  This file is the thread and the order of its work.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "background/bgthread.h"
#include "background/gc.h"
#include "background/recycler.h"
#include "engine/store.h"
#include "engine/store_io.h"
#include "engine/verify.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/log.h"
#include "util/util.h"

#define BG_FLUSH_NS (UINT64_C(5) * 1000000000)
#define CAS_TRUNCATE_SLACK (1u << 20)   /* cut the file when its free tail exceeds this */

/* Allocator lock held: every allocated extent lies below END, so cutting
 * the file there loses nothing; a later allocation extends it again.
 */
static int
cut_tail (void *opaque, uint64_t end)
{
  struct cas_store *s = opaque;
  struct stat st;

  if (fstat (s->data_fd, &st) == 0 && (uint64_t) st.st_size > end + CAS_TRUNCATE_SLACK)
    return cas_ftruncate (s->data_fd, end, "data file");
  return 0;
}

#define SMALL_LOG_AGE_NS (30 * UINT64_C(1000000000))   /* merge patches this old */

void
cas_gc_round (struct cas_store *s, bool force_compact)
{
  const uint64_t since = __atomic_load_n (&s->first_unflushed_ns, __ATOMIC_RELAXED);

  if (__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE))
    return;                     /* nothing more is written: see journal.c */
  cas_index_resize (&s->index);
  /* Small writes that waited long enough become blocks (overlay.h). */
  if (s->small_log && cas_ovl_bytes (s) > 0)
    cas_ovl_merge_some (s, s->ovl_budget, cas_now_ns () - SMALL_LOG_AGE_NS, 4096);
  cas_gc_pass (s, false);
  cas_runtime_assert (s, "gc");
  if (since != 0 && cas_now_ns () - since >= BG_FLUSH_NS)
    cas_journal_sync (s);       /* errors were logged; the next tick retries */
  /* Compact (the recycler skips dead blocks: they are about to go). */
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  /* Tranquility (as in Garage's tranquilizer): after a pass that took T,
   * rest tranquility * T.  When guest I/O slows the recycler down, it
   * backs off in proportion; on an idle disk it still moves recycle_rate
   * bytes a pass.
   */
  const uint64_t t0 = cas_now_ns ();
  /* Not while overwrites keep the store under gc-pressure: they reuse the
   * junk themselves, and moves would compete with them for it.
   */
  const bool pressed = __atomic_load_n (&s->gc_pressed, __ATOMIC_RELAXED);
  if (force_compact || (!pressed && t0 >= s->recycle_rest_until)) {
    if (cas_recycle_pass (s, s->opts.recycle_rate, force_compact) > 0) {
      cas_gc_release_moved (s); /* BLOCK_MOVE durable; the old places */
      const uint64_t t1 = cas_now_ns ();
      s->recycle_rest_until = t1 + (t1 - t0) * s->opts.recycle_tranquility;
    }
  }
  cas_alloc_coalesce (&s->alloc);
  cas_io_context ("cut");
  cas_alloc_with_end (&s->alloc, cut_tail, s);
  cas_io_context (NULL);
  cas_step (s, CAS_STEP_CUT, "cut");
  /* Past checkpoint_bytes of journal since the last checkpoint, not
   * counting the small writes it restated (a journal that starts with as
   * many bytes of them must not checkpoint at every tick).
   */
  if (__atomic_load_n (&s->jpos, __ATOMIC_RELAXED) >
      __atomic_load_n (&s->jrestated, __ATOMIC_RELAXED) + s->opts.checkpoint_bytes) {
    cas_io_context ("checkpoint");
    cas_store_checkpoint (s);
    cas_io_context (NULL);
  }
}

static void
tick (struct cas_store *s)
{
  pthread_mutex_lock (&s->recycle_lock);
  cas_gc_round (s, false);
  pthread_mutex_unlock (&s->recycle_lock);
}

static int
cut_exact (void *opaque, uint64_t end)
{
  struct cas_store *s = opaque;
  struct stat st;

  if (fstat (s->data_fd, &st) == 0 && (uint64_t) st.st_size > end)
    return cas_ftruncate (s->data_fd, end, "data file");
  return 0;
}

/* Sleep until DEADLINE_NS (cas_now_ns) unless the thread is told to stop.
 * Returns true if it is.
 */
static bool
bg_sleep_until (struct cas_store *s, uint64_t deadline_ns)
{
  SCOPED_LOCK (l, &s->bg_lock);
  while (!s->bg_stop) {
    const uint64_t now = cas_now_ns ();
    if (now >= deadline_ns)
      break;
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    const uint64_t t = (uint64_t) ts.tv_nsec + (deadline_ns - now);
    ts.tv_sec += t / 1000000000;
    ts.tv_nsec = t % 1000000000;
    pthread_cond_timedwait (&s->bg_cond, &s->bg_lock, &ts);
  }
  return s->bg_stop;
}

/* A compaction asked for by cas_gc_compact_now (background thread).
 * recycle_lock is held for each step, not across the rate-limit sleeps.
 */
static uint64_t
compact_now (struct cas_store *s)
{
  uint64_t total = 0, moved;

  __atomic_store_n (&s->compact_moving, 0, __ATOMIC_RELAXED);
  if (__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock (&s->recycle_lock);
  cas_gc_pass (s, false);       /* only blocks dead for gc_delay: see above */
  cas_runtime_assert (s, "gc");
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  pthread_mutex_unlock (&s->recycle_lock);
  do {
    const uint64_t t0 = cas_now_ns ();
    pthread_mutex_lock (&s->recycle_lock);
    moved = cas_recycle_pass (s, s->opts.recycle_rate, true);
    cas_gc_release (s);         /* the moved blocks' old places */
    cas_alloc_coalesce (&s->alloc);
    pthread_mutex_unlock (&s->recycle_lock);
    total += moved;
    __atomic_store_n (&s->compact_moving, total, __ATOMIC_RELAXED);
    /* At most recycle_rate bytes a second, as in the background. */
    if (moved > 0 && bg_sleep_until (s, t0 + UINT64_C(1000000000)))
      break;
  } while (moved > 0);
  pthread_mutex_lock (&s->recycle_lock);
  cas_alloc_with_end (&s->alloc, cut_exact, s);
  cas_runtime_assert (s, "cut");
  pthread_mutex_unlock (&s->recycle_lock);
  return total;
}

static void *
bg_main (void *arg)
{
  struct cas_store *s = arg;

  pthread_mutex_lock (&s->bg_lock);
  while (!s->bg_stop) {
    if (s->compact_requested == s->compact_done) {
      /* A tick a second; ten while dead blocks are over gc-pressure, so
       * that space comes back as fast as overwrites make it dead.
       */
      const uint64_t wait_ns = __atomic_load_n (&s->gc_pressed, __ATOMIC_RELAXED) ?
        UINT64_C(100000000) : UINT64_C(1000000000);
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      const uint64_t t = (uint64_t) ts.tv_nsec + wait_ns;
      ts.tv_sec += t / 1000000000;
      ts.tv_nsec = t % 1000000000;
      pthread_cond_timedwait (&s->bg_cond, &s->bg_lock, &ts);
      if (s->bg_stop)
        break;
    }
    const uint64_t ticket = s->compact_requested;
    const bool compact = ticket != s->compact_done;
    pthread_mutex_unlock (&s->bg_lock);
    tick (s);
    const uint64_t moved = compact ? compact_now (s) : 0;
    pthread_mutex_lock (&s->bg_lock);
    if (compact) {
      /* Every request made before this compaction started is served. */
      s->compact_done = ticket;
      s->compact_last_moved = moved;
      __atomic_add_fetch (&s->compactions, 1, __ATOMIC_RELAXED);
      pthread_cond_broadcast (&s->bg_done);
    }
  }
  /* Nobody waits for a compaction that will not run. */
  pthread_cond_broadcast (&s->bg_done);
  pthread_mutex_unlock (&s->bg_lock);
  return NULL;
}

int64_t
cas_gc_compact_now (struct cas_store *s, const bool *cancel,
                    void (*progress) (void *opaque, uint64_t moved), void *opaque)
{
  SCOPED_LOCK (l, &s->bg_lock);
  uint64_t ticket;

  if (!s->bg_started || s->bg_stop) {
    errno = EINVAL;
    cas_error ("compact: the store's background thread is not running");
    return -1;
  }
  ticket = ++s->compact_requested;
  pthread_cond_signal (&s->bg_cond);
  while (s->compact_done < ticket) {
    if (s->bg_stop || (cancel && __atomic_load_n (cancel, __ATOMIC_RELAXED))) {
      errno = ECANCELED;
      cas_error ("compact: cancelled (the server is stopping or the client left); "
                 "the compaction goes on in the background");
      return -1;
    }
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait (&s->bg_done, &s->bg_lock, &ts);
    if (progress && s->compact_done < ticket) {
      pthread_mutex_unlock (&s->bg_lock);
      progress (opaque, __atomic_load_n (&s->compact_moving, __ATOMIC_RELAXED));
      pthread_mutex_lock (&s->bg_lock);
    }
  }
  return s->compact_last_moved;
}

int
cas_gc_start (struct cas_store *s)
{
  int err;

  if (s->bg_started)
    return 0;
  err = pthread_create (&s->bg_thread, NULL, bg_main, s);
  if (err) {
    errno = err;
    cas_error ("start background thread: %m");
    return -1;
  }
  s->bg_started = true;
  __atomic_store_n (&s->gc_kickable, true, __ATOMIC_RELEASE);
  return 0;
}

void
cas_gc_stop (struct cas_store *s)
{
  if (!s->bg_started)
    return;
  __atomic_store_n (&s->gc_kickable, false, __ATOMIC_RELEASE);
  pthread_mutex_lock (&s->bg_lock);
  s->bg_stop = true;
  pthread_cond_signal (&s->bg_cond);
  pthread_mutex_unlock (&s->bg_lock);
  pthread_join (s->bg_thread, NULL);
}
