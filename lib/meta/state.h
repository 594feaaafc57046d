/* The store's internals, shared by the modules that implement casdisk.h:
 * store.c (open, create, close, disks, recovery), store_io.c (the data
 * path), diskops.c (clone, snapshot, delete), journal.c and ckpt.c
 * (persistence), overlay.c (the small-write log's patches), gc.c and
 * merger.c (background work), check.c (offline check).
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
#ifndef CAS_STORE_H
#define CAS_STORE_H

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

  /* Background thread (gc.c). */
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

/* ---- store.c ---- */
struct cas_store *cas_store_open_internal (const char *dir, const struct cas_open_opts *opts,
                                           struct cas_checker *checker);
int cas_store_checkpoint (struct cas_store *s);
void cas_free_block (struct cas_block *b);

/* ---- journal.c ---- */
/* jlock held.  Append one record; returns its seq. */
uint64_t cas_journal_append (struct cas_store *s, int type, const void *payload, uint16_t len);
/* A PATCH record: LEN bytes of DATA at OFF within block V of disk DISK. */
uint64_t cas_journal_append_patch (struct cas_store *s, uint32_t disk, uint64_t v, uint32_t off,
                                   const void *data, uint32_t len);
/* Write and sync every appended record (after syncing the data file). */
int cas_journal_sync (struct cas_store *s);
/* Sync the data file; the only way anything syncs it while the store is
 * open.  -1 + EIO if this or any earlier sync failed (io_failed).
 */
int cas_data_sync (struct cas_store *s);
/* -1 with errno = EIO (and a message) if the store has failed. */
int cas_check_failed (struct cas_store *s, const char *op);
int cas_journal_create (struct cas_store *s, uint64_t gen, uint64_t first_seq, int *fd);
/* flush_lock held (or no concurrency).  Preallocate headroom for s->jfd. */
void cas_journal_reserve (struct cas_store *s);
/* Replay journal.GEN into the store.  *SEQ is the expected first seq on
 * entry and the next seq on return; *END the end of the valid records.
 */
int cas_journal_replay (struct cas_store *s, struct cas_load *ld, uint64_t gen,
                        uint64_t *seq, uint64_t *end, bool *torn);
bool cas_journal_exists (const struct cas_store *s, uint64_t gen);
/* True if journal.GEN has no valid header and no complete batch: the
 * remains of a journal whose creation a crash interrupted.
 */
bool cas_journal_unborn (const struct cas_store *s, uint64_t gen);
void cas_journal_path (const struct cas_store *s, uint64_t gen, char *buf, size_t len);

/* ---- ckpt.c ---- */
/* Serialise the whole metadata (writers excluded by the caller). */
int cas_ckpt_serialize (struct cas_store *s, uint64_t gen, uint64_t next_seq,
                        uint8_t **buf, size_t *len);
int cas_ckpt_load (struct cas_store *s, struct cas_load *ld, const uint8_t *buf, size_t len,
                   uint64_t *gen, uint64_t *next_seq);
int cas_ckpt_write_empty (const char *dir, const uint8_t uuid[16], const char *disk,
                          uint64_t size, uint32_t block_size);

/* ---- store_io.c ---- */
/* rcu_read_lock held.  Read and verify block B into OUT (block_size bytes). */
int cas_read_stored (struct cas_store *s, struct cas_block *b, void *out);

/* B's stored bytes at OFFSET are wrong: quarantine B, count it, log WHAT
 * and where; returns -1 with errno = EIO.
 */
int cas_stored_corrupted (struct cas_store *s, struct cas_block *b, uint64_t offset,
                          const char *what);

/* Merge pending small writes (overlay.h) into their blocks, oldest first,
 * until they hold at most TARGET bytes and none is older than BEFORE_NS
 * (cas_now_ns), at most MAX blocks.  No store lock held.  -1 if a merge
 * failed (logged).
 */
int cas_ovl_merge_some (struct cas_store *s, uint64_t target, uint64_t before_ns, uint32_t max);
/* Merge every pending small write of D.  Every stripe and ckpt_lock
 * (read) held.
 */
int cas_ovl_merge_disk (struct cas_disk *d);

/* ---- store_dio.c ---- */
/* Direct-I/O mode only (s->dio).  rcu_read_lock held.  cas_read_stored. */
int cas_dio_read_stored (struct cas_store *s, struct cas_block *b, void *out);
/* Direct-I/O mode only.  Read [OFFSET, +COUNT) of D (range checked) into
 * BUF, submitting the transfers of up to 32 blocks at once.  No lock held.
 */
int cas_dio_read_range (struct cas_disk *d, uint8_t *buf, uint32_t count, uint64_t offset);
/* Block B (may be NULL) now holds CONTENT (block_size bytes): keep it in
 * the block cache if there is one.
 */
void cas_dio_remember (struct cas_store *s, const struct cas_block *b, const void *content);
/* Read LEN bytes at OFF (granule aligned) of the data file: pread, or in
 * direct-I/O mode an aligned read through a bounce buffer.
 */
int cas_data_read (struct cas_store *s, void *buf, uint32_t len, uint64_t off);
/* Write LEN bytes at OFF (granule aligned; space the caller owns, up to
 * the end of LEN's last granule): pwrite, or in direct-I/O mode an aligned
 * write padded with zeroes to the end of its last granule.  Every write of
 * data to the data file goes through here: in direct-I/O mode a buffered
 * write would leave dirty pages that an O_DIRECT write in flight to a
 * neighbouring granule of the same page cannot drop (design.md).
 */
int cas_data_write (struct cas_store *s, const void *stored, uint32_t len, uint64_t off);
#define CAS_WB_BYTES (8u << 20)     /* buffered data written per early writeback */
void cas_writeback_note (struct cas_store *s, uint32_t len);
void cas_writeback_start (struct cas_store *s);

/* ---- merger.c ---- */
int cas_merger_start (struct cas_store *s);
void cas_merger_stop (struct cas_store *s);
/* Wake the merge thread; false if it is not running (do the work). */
bool cas_merger_kick (struct cas_store *s);

/* ---- gc.c ---- */
int cas_gc_start (struct cas_store *s);
void cas_gc_stop (struct cas_store *s);
/* Free the space of dead blocks whose delay has passed (background thread). */
void cas_gc_pass (struct cas_store *s, bool force);
/* N blocks just died (refcount 0): count them in ndead, and wake the
 * background thread every CAS_GC_KICK_BYTES of them so that overwrites
 * faster than its tick meet gc-pressure at once.  Any lock may be held
 * but bg_lock (a leaf).
 */
#define CAS_GC_KICK_BYTES (UINT64_C(16) << 20)
void cas_gc_note_dead (struct cas_store *s, uint64_t n);
/* Make pending frees durable, wait a grace period, settle them (junk),
 * erase junk (keep_erased), flush and free the erased space.
 */
void cas_gc_release (struct cas_store *s);
/* One round of background work (recycle_lock held): GC, release, moves,
 * cut.  FORCE_COMPACT: compact even below compact_after.
 */
void cas_gc_round (struct cas_store *s, bool force_compact);

/* ---- verify.c ---- */
/* With runtime_asserts: cas_store_verify(), aborting with the problems
 * logged if there is any.  STEP names the step just done.  The caller
 * holds recycle_lock (the background work), so that no erase or move is
 * half done: an extent being punched is in none of the allocator's lists.
 */
void cas_runtime_assert (struct cas_store *s, const char *step);
/* The same from a thread that does not hold recycle_lock (clone, snapshot
 * and delete, from the control channel or the tool): takes it.
 */
void cas_runtime_assert_fg (struct cas_store *s, const char *step);
/* Step STEP (named NAME) of the background work is done: call the test
 * hook, then cas_runtime_assert.
 */
void cas_step (struct cas_store *s, enum cas_recycle_step step, const char *name);

/* Ask the background thread to compact now: free the dead blocks whose
 * gc-delay has passed (never the others), move blocks from the tail at
 * recycle_rate ignoring compact_after, release and cut the file.  Waits
 * for the end, calling PROGRESS (may be NULL) about once a second with
 * the bytes moved so far; stops waiting (ECANCELED) when *CANCEL becomes
 * true, the compaction going on in the background.  Returns the bytes
 * moved, or -1 (EINVAL when the background thread is not running).
 */
int64_t cas_gc_compact_now (struct cas_store *s, const bool *cancel,
                            void (*progress) (void *opaque, uint64_t moved), void *opaque);

/* ---- scrub.c ---- */
/* cas_store_scrub, stopping early (-1, ECANCELED) once *CANCEL (may be
 * NULL) becomes true.  PROGRESS is also called while the rate limit
 * sleeps, at least every 200 ms, repeating the last figures.
 */
int cas_scrub_run (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
                   cas_report_fn fn, void *opaque, struct cas_scrub_result *res,
                   const bool *cancel);

/* ---- control.c ---- */
struct cas_control;
/* Start the server thread (cas_store_start); stop and join it, removing
 * the socket and the metrics file (cas_store_close, before the GC stops).
 */
int cas_control_start (struct cas_store *s);
void cas_control_stop (struct cas_store *s);

/* ---- metrics.c ---- */
/* The live figures, one line at a time through LINE (without newline):
 * STATUS: "store KEY VALUE" and "disk NAME KEY VALUE" lines;
 * PROMETHEUS: the text exposition format, HELP and TYPE lines included.
 */
enum cas_live_format { CAS_LIVE_STATUS, CAS_LIVE_PROMETHEUS };
int cas_live_render (struct cas_store *s, enum cas_live_format fmt,
                     int (*line) (void *opaque, const char *text), void *opaque);
/* Write the Prometheus figures to PATH atomically (PATH.tmp, rename). */
int cas_metrics_write_file (struct cas_store *s, const char *path);

/* ---- recycler.c ---- */
/* Is there enough free space inside the data file to compact?  Yes from
 * compact_after percent until it falls below half that (recycle_lock).
 */
bool cas_recycler_wanted (struct cas_store *s);
/* Move up to BUDGET bytes of blocks from the tail into free space below
 * them (FORCE: even below the compact_after threshold).  Returns the bytes
 * moved.  One caller at a time (the background thread, or compact).
 */
uint64_t cas_recycle_pass (struct cas_store *s, uint64_t budget, bool force);

#endif
