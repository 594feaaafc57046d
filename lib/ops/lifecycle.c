/* The store's life around its threads.
 *
 *   cas_store_open (engine/store.c)   open and recover; no thread yet
 *   cas_store_start                   the workers (workpool.h), the
 *                                     background thread (bgthread.c), the
 *                                     merge thread (merger.c), the control
 *                                     channel (control.c)
 *   cas_store_close                   stop them (the workers, the control
 *                                     channel, the merge thread, the
 *                                     background thread); then merge the
 *                                     small writes, flush, release what the
 *                                     GC freed, checkpoint, tidy the data
 *                                     file and free the store
 *
 * nbdkit opens the store in .get_ready, starts it in .after_fork and closes
 * it in .cleanup; the tool opens and closes, and starts only the workers
 * for an import.  This is the one module that knows every thread, at the
 * top of the layers, so that nothing below calls up to start or stop one.
 */
#include <config.h>

#include <unistd.h>

#include "background/bgthread.h"
#include "background/gc.h"
#include "background/merger.h"
#include "casdisk.h"
#include "engine/store.h"
#include "engine/store_io.h"
#include "meta/journal.h"
#include "meta/load.h"
#include "meta/state.h"
#include "ops/control.h"
#include "util/log.h"
#include "util/workpool.h"

/* The threads that prepare one write's blocks, the writer included. */
static unsigned
workers_wanted (const struct cas_store *s)
{
  unsigned n = s->opts.workers;

  if (n == CAS_WORKERS_AUTO) {
    const long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? cpus : 1;
  }
  return n < CAS_MAX_WORKERS ? n : CAS_MAX_WORKERS;
}

int
cas_store_start_workers (struct cas_store *s)
{
  if (s->readonly || s->pool != NULL || workers_wanted (s) <= 1)
    return 0;
  s->pool = cas_workpool_start (workers_wanted (s) - 1);
  if (s->pool == NULL)
    return -1;
  cas_debug ("%u threads prepare the blocks of multi-block writes", workers_wanted (s));
  return 0;
}

int
cas_store_start (struct cas_store *s)
{
  if (s->readonly)
    return 0;
  if (cas_store_start_workers (s) == -1)
    return -1;
  if (cas_gc_start (s) == -1)
    return -1;
  if (s->small_log && cas_merger_start (s) == -1)
    return -1;                  /* cas_store_close stops the threads */
  if (s->opts.control && cas_control_start (s) == -1)
    return -1;                  /* cas_store_close stops the GC */
  return 0;
}

int
cas_store_close (struct cas_store *s)
{
  int r = 0;

  if (s == NULL)
    return 0;
  cas_workpool_free (s->pool);   /* no write is running any more */
  s->pool = NULL;
  cas_control_stop (s);         /* its requests may wait for the GC thread */
  cas_merger_stop (s);
  cas_gc_stop (s);
  /* Rebuild the blocks with pending small writes, so that a store closed
   * cleanly holds none; what fails is restated by the checkpoint.
   */
  if (!s->readonly && !__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE))
    cas_ovl_merge_some (s, 0, UINT64_MAX, UINT32_MAX);
  if (__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE)) {
    cas_error ("%s: closing after an I/O error: nothing more is written; the next "
               "open recovers the last flushed state", s->dir);
    r = -1;
  }
  else if (!s->readonly) {
    if (cas_journal_sync (s) == -1) {
      /* Records that freed space are not durable: the durable journal may
       * still name that space, so nothing may be erased or cut.  The next
       * open recovers the last flushed state and tidies then.
       */
      cas_error ("%s: closing after a failed flush: the last unflushed changes are lost, "
                 "the file is left as it is", s->dir);
      r = -1;
    }
    else {
      /* Release what the delayed GC already freed, then checkpoint. */
      cas_gc_release (s);
      if (cas_store_checkpoint (s) == -1)
        r = -1;
      /* Give back partly freed file-system blocks; cut the file's tail. */
      if (cas_tidy_at_close (s) == -1)
        r = -1;
    }
  }
  rcu_barrier ();               /* blocks freed with call_rcu */
  cas_store_free (s);
  return r;
}
