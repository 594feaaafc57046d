/* The store's internals: the state of an open store (struct cas_store),
 * shared by the modules that implement casdisk.h, from the meta layer up:
 * meta/ (disk.c: the disk table; load.c: loading and recovery; journal.c
 * and ckpt.c: persistence; overlay.c: the small-write log's patches),
 * engine/ (store.c: open, create, checkpoint, disks; store_io.c: the data
 * path; store_dio.c: the data file's transfers; diskops.c: clone,
 * snapshot, delete; verify.c: runtime asserts), background/ (bgthread.c,
 * gc.c, merger.c, recycler.c, scrub.c: background work) and ops/
 * (stats.c, metrics.c, control.c; check.c: offline check; lifecycle.c:
 * starting and closing).
 *
 * Each group of fields says which module owns it and which lock guards
 * it; each module declares its functions in its own header.  One struct
 * holds the state of every layer, but calls go down the layers only
 * (docs/design.md, "Layers").
 *
 * Lock order (take them in this order, never the reverse):
 *
 *   recycle_lock -> ckpt_mutex -> ckpt_lock -> disks_lock -> stripes[] (ascending) ->
 *   flush_lock -> jlock -> (alloc.lock, map.grow_lock, index.c's slab_lock and
 *   dead_lock, dio.c's context locks, bcache.c's shard locks, sync_lock, ovl_lock:
 *   leaves)
 *
 * RCU read-side sections may be entered with any of them held, and hold
 * none: readers of maps and of the index never block writers.
 */
#ifndef CAS_STATE_H
#define CAS_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "casdisk.h"
#include "meta/index.h"
#include "meta/disk.h"
#include "meta/map.h"
#include "storage/alloc.h"
#include "util/counters.h"
#include "util/hash.h"
#include "util/util.h"

struct cas_dio;                     /* dio.h */
struct cas_bcache;                  /* bcache.h */
struct cas_ptcache;                 /* ptcache.h */
struct cas_load;                    /* load.h */

#define CAS_NSTRIPES 1024           /* per-block write locks, hashed */
#define CAS_JBUF_LIMIT (8u << 20)   /* flush when this many journal bytes wait */
/* The most bytes one batch holds, BATCH record included.  The batch's
 * length field is 32 bits; a batch retained across failing journal writes
 * must never pass it, so a flush writes several batches when more waits.
 */
#define CAS_BATCH_MAX (64u << 20)
/* gc-pressure counts only once dead blocks take more than this. */
#define CAS_GC_PRESSURE_FLOOR (UINT64_C(64) << 20)
#define CAS_DEFAULT_CKPT_BYTES (64u << 20)

/* The steps of a recycler pass, in order (see recycler.c). */
enum cas_recycle_step {
  CAS_STEP_COPIED,                  /* copies written, not yet flushed */
  CAS_STEP_FLUSHED,                 /* copies durable, not referenced */
  CAS_STEP_REFERENCED,              /* BLOCK_MOVE journaled (not yet durable) */
  CAS_STEP_SETTLED,                 /* old places settled: journal durable, grace passed */
  CAS_STEP_ERASED,                  /* junk erased, not yet flushed */
  CAS_STEP_FREED,                   /* erased space flushed: free */
  CAS_STEP_CUT,                     /* free tail cut off the data file */
};

struct jbuf {
  uint8_t *p;
  size_t len, cap;
};

/* Problems found while loading, for casdisk check (NULL = open normally,
 * where the first problem is fatal).
 */
struct cas_checker {
  cas_report_fn report;
  void *opaque;
  uint64_t problems;
  bool repair;                      /* open writable and fix what can be fixed */
};

struct cas_store {
  char *dir;
  struct cas_open_opts opts;
  bool readonly;
  struct cas_checker *checker;      /* non-NULL when opened by cas_store_check */
  int sb_fd;                        /* superblock; holds the flock */
  int data_fd;                      /* the block pack */
  struct cas_dio *dio;              /* direct-io=true: the data path's O_DIRECT
                                       descriptor (store_dio.c); else NULL */
  struct cas_bcache *bcache;        /* direct-io with cache=SIZE: recent blocks'
                                       contents (bcache.h, its own locks); else NULL */
  struct cas_ptcache *ptcache;      /* piece tables of recently read sectored blocks
                                       (ptcache.h, lock-free); NULL for 4 KiB blocks */
  uint8_t uuid[16];
  struct cas_keyfn keyfn;           /* how blocks are keyed (superblock) */
  uint32_t block_size;
  uint32_t version;                 /* the superblock's format version */
  int level;

  /* Disks: added, cloned and deleted under disks_lock, read without it
   * (ndisks is published with a release store after the slot is filled;
   * a slot is replaced with an atomic store).  A deleted disk keeps its
   * slot (a tombstone) until a new disk reuses it; the replaced struct
   * goes on the retired list, freed at close, because an open connection
   * may still hold it (its operations then fail).
   */
  pthread_mutex_t disks_lock;
  struct cas_disk *disks[CAS_MAX_DISKS];
  size_t ndisks;
  struct cas_disk *retired;         /* disks_lock */

  struct cas_index index;           /* lock-free, see index.h */
  uint64_t gc_pressure_floor;       /* CAS_GC_PRESSURE_FLOOR (gc.c); tests lower it */
  bool gc_pressed;                  /* atomic: the last GC pass was under pressure */
  uint32_t ref_max;                 /* references a block may take: CAS_REF_MAX
                                       (index.h); tests lower it after opening */
  struct cas_alloc alloc;           /* its own lock, see alloc.h */
  uint64_t ndead;                   /* atomic: blocks with refcount 0 */

  /* Per-block write serialisation: writers of virtual block v of disk d
   * hold stripes[stripe_of (d, v)] from reading the old content to
   * journaling the new mapping.
   */
  pthread_mutex_t stripes[CAS_NSTRIPES];

  /* Checkpoints.  Every mutation of metadata (map entry, block insert or
   * delete, disk add) holds ckpt_lock for reading from its change to its
   * journal record; a checkpoint holds it for writing while it takes its
   * snapshot, so the snapshot and the journal position agree.
   */
  pthread_mutex_t ckpt_mutex;       /* one checkpoint at a time */
  pthread_rwlock_t ckpt_lock;

  /* The journal.  jlock guards active, next_seq, next_id and makes
   * "insert a block into the index + append its BLOCK_NEW" atomic.
   */
  pthread_mutex_t jlock;
  struct jbuf active;               /* records not yet handed to a flush */
  uint64_t next_seq;                /* seq of the next record */
  uint64_t next_id;                 /* next block id */
  uint64_t first_unflushed_ns;      /* when active became non-empty (0 = empty) */

  /* flush_lock guards the journal file (jfd, jpos, gen) and flushing. */
  pthread_mutex_t flush_lock;
  struct jbuf flushing;             /* a batch being written (kept on failure) */
  size_t batch_max;                 /* CAS_BATCH_MAX; smaller in tests */
  uint64_t flushing_last_seq;
  int jfd;
  uint64_t jpos;                    /* where the next batch goes */
  uint64_t jreserved;               /* journal bytes preallocated (see journal.c) */
  uint64_t jrestated;               /* atomic: journal bytes right after the last
                                       checkpoint restated the pending small writes */
  uint64_t gen;                     /* generation of the journal file jfd */
  uint64_t durable_seq;             /* atomic: every record <= this is durable */
  /* sync_lock serialises every fdatasync of the data file with the
   * io_failed store that follows a failure (cas_data_sync, journal.c).
   * A leaf, taken under flush_lock or recycle_lock.
   */
  pthread_mutex_t sync_lock;
  bool io_failed;                   /* atomic: a data-file sync failed; see journal.c */

  /* Background thread (bgthread.c). */
  pthread_t bg_thread;
  uint64_t recycle_rest_until;      /* cas_now_ns(): no background moves before
                                       (recycle_lock) */
  bool compacting;                  /* a compaction started and has not reached
                                       its low-water mark (recycle_lock) */
  bool bg_started;
  pthread_mutex_t bg_lock;          /* guards bg_stop, with bg_cond */
  pthread_cond_t bg_cond;
  bool bg_stop;
  bool gc_kickable;                 /* atomic: the thread runs; cas_gc_note_dead may wake it */
  uint64_t gc_freed_blocks;         /* atomic, statistics */
  uint64_t quarantined;             /* atomic: blocks that failed verification */
  uint64_t recycled_bytes;          /* atomic: bytes moved by the recycler since open */
  uint64_t erased_bytes;            /* atomic: bytes erased by the recycler since open */

  /* One thread at a time does background space work (the GC, erasing,
   * moves, cutting the file): the background thread's tick, or an
   * explicit compaction.  Held across a whole tick or compaction.
   */
  pthread_mutex_t recycle_lock;
  /* Tests only: called between the steps of a move (recycler.c). */
  void (*recycle_hook) (void *opaque, struct cas_store *s, enum cas_recycle_step step);
  void *recycle_hook_opaque;
  /* Tests only: called by a flush just before it syncs the data file. */
  void (*data_sync_hook) (struct cas_store *s);

  /* Compaction on request (cas_gc_compact_now): tickets, under bg_lock. */
  pthread_cond_t bg_done;           /* broadcast when a requested compaction ends */
  uint64_t compact_requested;       /* tickets handed out */
  uint64_t compact_done;            /* every ticket <= this has been served */
  uint64_t compact_last_moved;      /* bytes the last requested compaction moved */

  /* Live figures for status and metrics (metrics.c); atomics. */
  uint64_t opened_ns;               /* cas_now_ns () at open */
  uint64_t compact_moving;          /* bytes moved by the requested compaction running */
  uint64_t compactions;             /* requested compactions completed */
  bool scrub_running;               /* one online scrub at a time */
  uint64_t scrub_done, scrub_total; /* its progress, in blocks */
  uint64_t scrubs;                  /* scrubs completed since open */
  uint64_t scrub_corrupted;         /* blocks they found bad */

  struct cas_control *control;      /* the control channel (control.c), or NULL */

  /* Helpers for the whole blocks of multi-block writes (workpool.h):
   * set by cas_store_start before the owner serves I/O, freed by
   * cas_store_close after it; NULL = none (each write prepares its
   * blocks alone).
   */
  struct cas_workpool *pool;

  /* The small-write log (overlay.h).  ovl_lock, a leaf, guards the table
   * and the age list; a patch list is its block's stripe's.
   */
  bool small_log;                   /* small writes go to the log (format 5,
                                       buffered, small_write_log) */
  pthread_mutex_t ovl_lock;
  struct cas_ovl **ovl_tab;
  size_t ovl_mask;                  /* slots - 1 */
  size_t ovl_n;                     /* overlays (atomic reads for statistics) */
  struct cas_ovl *ovl_oldest, *ovl_newest;
  uint64_t ovl_bytes;               /* atomic: patch bytes held */
  uint64_t ovl_budget;              /* over this, writers merge the oldest */
  uint64_t ovl_merges;              /* atomic, statistics: blocks rebuilt */
  uint64_t ovl_ripe;                /* atomic: overlays marked ripe (ovl_lock) */

  /* The merge thread (merger.c).  merge_lock guards merge_stop, with
   * merge_cond; merge_started is read without it (atomic).
   */
  pthread_t merge_thread;
  bool merge_started;
  pthread_mutex_t merge_lock;
  pthread_cond_t merge_cond;
  bool merge_stop;

  /* Early writeback (store_dio.c): bytes written to the data file through
   * the page cache since writeback was last started, and whether the
   * merge thread is asked to start it.  Both atomic, no lock.
   */
  uint64_t wb_pending;
  bool wb_wanted;
  uint64_t wb_starts;               /* atomic, statistics */
};

static inline pthread_mutex_t *
stripe_of (struct cas_store *s, const struct cas_disk *d, uint64_t v)
{
  const uint64_t h = (v ^ ((uint64_t) d->id << 40)) * UINT64_C(0x9e3779b97f4a7c15);
  return &s->stripes[h >> 54];      /* top 10 bits: 1024 stripes */
}

/* N blocks just died (refcount 0): count them in ndead, and wake the
 * background thread every CAS_GC_KICK_BYTES of them so that overwrites
 * faster than its tick meet gc-pressure at once.  Any lock may be held
 * but bg_lock (a leaf).
 *
 * Like cas_merger_kick below, a doorbell: the data path and the disk
 * operations (engine) ring the background thread (background/bgthread.c,
 * which waits on bg_cond) through the fields here, without calling up.
 */
#define CAS_GC_KICK_BYTES (UINT64_C(16) << 20)
static inline void
cas_gc_note_dead (struct cas_store *s, uint64_t n)
{
  if (n == 0)
    return;
  const uint64_t every = CAS_GC_KICK_BYTES / s->block_size;
  const uint64_t before = __atomic_fetch_add (&s->ndead, n, __ATOMIC_RELAXED);
  if (before / every == (before + n) / every ||
      !__atomic_load_n (&s->gc_kickable, __ATOMIC_ACQUIRE))
    return;
  SCOPED_LOCK (l, &s->bg_lock);
  pthread_cond_signal (&s->bg_cond);
}

/* Wake the merge thread; false if it is not running (do the work).
 *
 * The thread (background/merger.c) waits on merge_cond; the data path,
 * below it, wakes it here, next to the fields it signals, so that the
 * engine never calls up into the background layer.  Holds merge_lock
 * only to signal: nothing is taken under it.
 */
static inline bool
cas_merger_kick (struct cas_store *s)
{
  if (!__atomic_load_n (&s->merge_started, __ATOMIC_ACQUIRE))
    return false;
  pthread_mutex_lock (&s->merge_lock);
  pthread_cond_signal (&s->merge_cond);
  pthread_mutex_unlock (&s->merge_lock);
  return true;
}

#endif
