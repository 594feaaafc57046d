/* The merge thread: the writers' deferred work, so that a write request
 * does not wait for it.
 *
 *   - Blocks that are ripe for a merge (MERGE_PATCHES small writes, or a
 *     block's worth of patch bytes) are rebuilt, oldest first; then, while
 *     the small-write log holds more than its budget, the oldest blocks,
 *     down to 3/4 of it (overlay.h, store_io.c).
 *   - Journal records that pass CAS_JBUF_LIMIT are flushed here, not by
 *     the writer that passed it (writers flush themselves only at four
 *     times the limit, so memory stays bounded if this thread falls
 *     behind).
 *   - Writeback of the data file's dirty pages is started every
 *     CAS_WB_BYTES written through the page cache (store_dio.c), so that a
 *     writer does not wait in sync_file_range.
 *
 * Writers kick it (cas_merger_kick) when they make a block ripe, push the
 * log over its budget, or pass the record limit; it also wakes once a
 * second.  Without it (a store that was not started: tools, unit tests)
 * writers do this work inline, as they did before the thread existed.
 * It holds no lock while it sleeps; its work takes the locks of an
 * ordinary write (ckpt_lock for reading, then one stripe at a time).
 */
#include <config.h>

#include <errno.h>
#include <time.h>

#include "background/merger.h"
#include "engine/store_dio.h"
#include "engine/store_io.h"
#include "meta/journal.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "util/log.h"
#include "util/util.h"

#define MERGE_BATCH 64          /* blocks per hold of ckpt_lock */

static bool
has_work (struct cas_store *s)
{
  return __atomic_load_n (&s->wb_wanted, __ATOMIC_ACQUIRE) ||
    cas_ovl_ripe (s) > 0 || cas_ovl_bytes (s) > s->ovl_budget ||
    __atomic_load_n (&s->active.len, __ATOMIC_RELAXED) > CAS_JBUF_LIMIT;
}

static void *
merger_main (void *arg)
{
  struct cas_store *s = arg;

  pthread_mutex_lock (&s->merge_lock);
  while (!s->merge_stop) {
    if (!has_work (s)) {
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait (&s->merge_cond, &s->merge_lock, &ts);
      continue;
    }
    pthread_mutex_unlock (&s->merge_lock);
    if (__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE)) {
      /* Nothing more is written (journal.c); sleep until told to stop. */
      pthread_mutex_lock (&s->merge_lock);
      while (!s->merge_stop)
        pthread_cond_wait (&s->merge_cond, &s->merge_lock);
      break;
    }
    if (__atomic_exchange_n (&s->wb_wanted, false, __ATOMIC_ACQ_REL))
      cas_writeback_start (s);
    if (__atomic_load_n (&s->active.len, __ATOMIC_RELAXED) > CAS_JBUF_LIMIT)
      cas_journal_sync (s);     /* errors were logged; a client's flush reports them */
    /* The ripe ones, then the oldest while over budget.  A failed merge
     * (logged) is retried at the next wake-up, not in a loop.
     */
    const uint64_t target = s->ovl_budget - s->ovl_budget / 4;
    const bool over = cas_ovl_bytes (s) > s->ovl_budget;
    int r = 0;
    while (r == 0 && !s->merge_stop && (cas_ovl_ripe (s) > 0 || (over && cas_ovl_bytes (s) > target)))
      r = cas_ovl_merge_some (s, over ? target : UINT64_MAX, 0, MERGE_BATCH);
    pthread_mutex_lock (&s->merge_lock);
    if (r == -1 && !s->merge_stop) {
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait (&s->merge_cond, &s->merge_lock, &ts);
    }
  }
  pthread_mutex_unlock (&s->merge_lock);
  return NULL;
}

int
cas_merger_start (struct cas_store *s)
{
  int err;

  if (s->merge_started)
    return 0;
  err = pthread_create (&s->merge_thread, NULL, merger_main, s);
  if (err) {
    errno = err;
    cas_error ("start the merge thread: %m");
    return -1;
  }
  __atomic_store_n (&s->merge_started, true, __ATOMIC_RELEASE);
  return 0;
}

void
cas_merger_stop (struct cas_store *s)
{
  if (!s->merge_started)
    return;
  pthread_mutex_lock (&s->merge_lock);
  s->merge_stop = true;
  pthread_cond_signal (&s->merge_cond);
  pthread_mutex_unlock (&s->merge_lock);
  pthread_join (s->merge_thread, NULL);
  __atomic_store_n (&s->merge_started, false, __ATOMIC_RELEASE);
}
