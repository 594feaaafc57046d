/* casdisk: the engine's front door.
 *
 * A store is a directory holding one pool of content-addressed blocks and
 * one or more named disks (virtual block devices) whose blocks point into
 * that pool.  Everything above the engine (the nbdkit plugin, the casdisk
 * tool, the tests) uses only this header.
 *
 * Error convention, everywhere in the engine: a function that can fail
 * returns -1 (or NULL) with errno set, after logging a one-line message
 * through cas_error() at the place the failure happened.
 *
 * Thread safety: after cas_store_open() every function here may be called
 * from any thread, concurrently, except cas_store_start() and
 * cas_store_close(), which the owner calls once each.
 */
#ifndef CASDISK_H
#define CASDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cas_store;
struct cas_disk;

#define CAS_MIN_BLOCK_SIZE     4096u
#define CAS_MAX_BLOCK_SIZE     65536u
#define CAS_DEFAULT_BLOCK_SIZE 65536u
#define CAS_DEFAULT_LEVEL      1       /* zstd level; 0 = compression off */
#define CAS_MAX_LEVEL          19
#define CAS_DEFAULT_GC_DELAY   30      /* seconds */
#define CAS_DEFAULT_GC_PRESSURE 25     /* percent of the live blocks' space */
#define CAS_DEFAULT_COMPACT_AFTER 20   /* percent of the data file free */
#define CAS_DEFAULT_TRANQUILITY 2      /* the recycler works at most a third of the time */
#define CAS_DEFAULT_RECYCLE_RATE (UINT64_C(64) << 20)  /* bytes per second */
#define CAS_DISK_NAME_MAX      64      /* bytes, excluding the NUL */
#define CAS_MAX_DISKS          1024
#define CAS_MAX_DISK_SIZE      (UINT64_C(1) << 46)  /* 64 TiB */
#define CAS_DEFAULT_DISK_NAME  "disk0"
#define CAS_CONTROL_SOCKET     "control.sock"  /* in the store directory */
#define CAS_METRICS_FILE       "metrics.prom"  /* the usual metrics_file, in the store directory */
#define CAS_DEFAULT_METRICS_INTERVAL 10        /* seconds */

/* Parameters fixed when a store is created. */
struct cas_create_opts {
  uint32_t block_size;          /* power of two, 4 KiB .. 64 KiB */
  int compression_level;        /* 0 = off, 1 .. CAS_MAX_LEVEL */
  bool sha256_keys;             /* key blocks by SHA-256 and write format version 3,
                                   as casdisk did before (tests of old stores) */
};

/* Parameters of one open. */
struct cas_open_opts {
  bool readonly;                /* no writes; takes a shared lock */
  unsigned gc_delay;            /* seconds before an unreferenced block is freed */
  unsigned gc_pressure;         /* free unreferenced blocks at once while they take more
                                   than this % of the space live blocks take; 0 = never
                                   (CAS_DEFAULT_GC_PRESSURE by default) */
  uint64_t checkpoint_bytes;    /* checkpoint once the journal is this big; 0 = default */
  unsigned compact_after;       /* compact when free space exceeds this % of the data file */
  uint64_t recycle_rate;        /* bytes per second the recycler may move; 0 = default */
  unsigned recycle_tranquility; /* after a pass that took T, the recycler rests this * T */
  uint64_t keep_erased;         /* erase freed space until this many bytes are erased or
                                   free; CAS_KEEP_ERASED_ALL (default): erase all of it */
  bool secure_erase;            /* erase by writing zeroes (then deallocating) */
  bool runtime_asserts;         /* verify the space map after every recycler step */
  unsigned workers;             /* threads that prepare (hash, compress) the whole blocks
                                   of one write, its own thread included; 0 or 1 = that
                                   thread alone; CAS_WORKERS_AUTO (default): online CPUs.
                                   The helpers start in cas_store_start() or
                                   cas_store_start_workers() */
  bool direct_io;               /* the data path reads and writes blocks with O_DIRECT
                                   and libaio (lib/storage/dio.c); refused where the
                                   file system cannot */
  uint64_t cache_bytes;         /* with direct_io: keep up to this many bytes of recently
                                   written and read blocks in memory (0 = none) */
  bool rewrite_small_writes;    /* no small-write log: a write of part of a block
                                   rebuilds the block at once (always so with
                                   direct_io, and on stores of format 4 and older) */
  uint64_t small_write_log_bytes; /* memory for small writes not yet merged into
                                   their blocks; 0 = CAS_DEFAULT_SMALL_LOG_BYTES */
  unsigned key_bits;            /* testing: index by only this many bits of the key
                                   (1..63; 0 = all 64), so that contents collide */
  /* The control channel (control.c), started by cas_store_start(): */
  bool control;                 /* serve DIR/control.sock (casdisk status, ...) */
  const char *metrics_file;     /* write Prometheus metrics there; NULL = no file */
  unsigned metrics_interval;    /* seconds between rewrites; 0 = default (10) */
};
#define CAS_KEEP_ERASED_ALL UINT64_MAX
#define CAS_DEFAULT_SMALL_LOG_BYTES (64u << 20)
#define CAS_WORKERS_AUTO    UINT32_MAX
#define CAS_MAX_WORKERS     64

void cas_create_opts_default (struct cas_create_opts *o);
void cas_open_opts_default (struct cas_open_opts *o);

/* Create a new store in DIR (created if missing; must be empty if it
 * exists) with one disk named FIRST_DISK of FIRST_SIZE bytes (skipped if
 * FIRST_DISK is NULL).  Durable on return.
 */
int cas_store_create (const char *dir, const struct cas_create_opts *opts,
                      const char *first_disk, uint64_t first_size)
  __attribute__((nonnull (1, 2)));

/* True if DIR looks like a casdisk store (has its superblock file). */
bool cas_store_exists (const char *dir) __attribute__((nonnull));

/* Open (and lock) an existing store, recovering from a crash if needed.
 * Starts no thread: call cas_store_start() for the background work
 * (nbdkit calls it from .after_fork).  Fails with EBUSY if another process
 * has the store open for writing.
 */
struct cas_store *cas_store_open (const char *dir, const struct cas_open_opts *opts)
  __attribute__((nonnull (1)));

/* Start the background threads (delayed GC, periodic checkpoint), the
 * helpers of opts.workers (multi-block writes use them from now on) and,
 * if opts.control, the control channel: a unix socket DIR/control.sock
 * (mode 0600, peers checked with SO_PEERCRED) that answers casdisk status,
 * metrics, compact --now, scrub and disk add while the store is served.
 * A stale socket file left by a crash is replaced.
 */
int cas_store_start (struct cas_store *s) __attribute__((nonnull));

/* Start only the helpers of opts.workers, for a tool that writes much
 * without serving (casdisk import).  Idempotent; cas_store_close stops
 * them.
 */
int cas_store_start_workers (struct cas_store *s) __attribute__((nonnull));

/* Stop the control channel (removing its socket and metrics file) and the
 * background threads, flush, write a checkpoint, unlock and free.
 */
int cas_store_close (struct cas_store *s);

/* Make every write completed before the call durable, on every disk. */
int cas_store_flush (struct cas_store *s) __attribute__((nonnull));

uint32_t cas_store_block_size (const struct cas_store *s) __attribute__((nonnull));
int cas_store_compression_level (const struct cas_store *s) __attribute__((nonnull));
const char *cas_store_dir (const struct cas_store *s) __attribute__((nonnull));

/* Disks.  Disks are never freed while the store is open, so a pointer
 * returned here stays valid until cas_store_close(), even after the disk
 * is deleted (its reads and writes then fail with EIO).
 */
struct cas_disk *cas_disk_add (struct cas_store *s, const char *name, uint64_t size)
  __attribute__((nonnull));
struct cas_disk *cas_disk_find (struct cas_store *s, const char *name)
  __attribute__((nonnull));     /* NULL with errno = ENOENT */
/* Disk slots: cas_store_disk (s, i) for i < cas_store_ndisks (s) is a
 * disk or a snapshot, or NULL for the slot of a deleted disk.
 */
size_t cas_store_ndisks (const struct cas_store *s) __attribute__((nonnull));
struct cas_disk *cas_store_disk (struct cas_store *s, size_t i) __attribute__((nonnull));
bool cas_disk_name_valid (const char *name) __attribute__((nonnull));

const char *cas_disk_name (const struct cas_disk *d) __attribute__((nonnull));
uint64_t cas_disk_size (const struct cas_disk *d) __attribute__((nonnull));
/* A snapshot: read-only, named "disk@snap" (writes fail with EROFS). */
bool cas_disk_is_snapshot (const struct cas_disk *d) __attribute__((nonnull));

/* Whole-disk operations (lib/engine/diskops.c).  Each may be called while other
 * threads read and write any disk: it takes its own locks (ckpt_lock,
 * disks_lock, every stripe lock, jlock: see docs/design.md), pauses
 * writers for the time it takes to copy or walk the disk's map (no data is
 * copied), and is durable on return (it flushes).  A clone or snapshot is
 * the disk's content at one point of the journal: every write completed
 * before the call, none started after it.  If the final flush fails the
 * operation has happened in memory and is durable after the next good
 * flush; -1 is returned.
 *
 * cas_disk_clone: a new writable disk DST sharing every block of SRC (a
 * disk or a snapshot); writes to either never show in the other.
 * cas_snapshot_create: a read-only copy of DISK named "DISK@SNAP" (64
 * bytes at most), served under that export name.
 * Both fail with EOVERFLOW, changing nothing, if a block would get more
 * references than a block may have (2^30, lib/meta/index.h).
 * cas_disk_delete: releases every block of disk NAME (their space comes
 * back through the delayed GC); refused (ENOTEMPTY) while it has
 * snapshots.  cas_snapshot_delete: the same for "DISK@SNAP".
 */
struct cas_disk *cas_disk_clone (struct cas_store *s, const char *src, const char *dst)
  __attribute__((nonnull));
struct cas_disk *cas_snapshot_create (struct cas_store *s, const char *disk, const char *snap)
  __attribute__((nonnull));
int cas_disk_delete (struct cas_store *s, const char *name) __attribute__((nonnull));
int cas_snapshot_delete (struct cas_store *s, const char *disk, const char *snap)
  __attribute__((nonnull));

/* Data path.  Any offset and length within the disk; unaligned is fine. */
int cas_disk_read (struct cas_disk *d, void *buf, uint32_t count, uint64_t offset)
  __attribute__((nonnull));
int cas_disk_write (struct cas_disk *d, const void *buf, uint32_t count, uint64_t offset)
  __attribute__((nonnull));
/* Make a range read as zeroes, releasing whole blocks (trim and zero are
 * the same operation here: a released block reads as zeroes).
 */
int cas_disk_zero (struct cas_disk *d, uint32_t count, uint64_t offset)
  __attribute__((nonnull));

/* The same as cas_store_flush(), counted as a flush request of D. */
int cas_disk_flush (struct cas_disk *d) __attribute__((nonnull));

/* Extents: calls FN for consecutive runs of [offset, offset+count) that are
 * either data (zero = false) or holes that read as zeroes (zero = true).
 * Stops early when FN returns -1 (and returns -1).
 */
typedef int (*cas_extent_fn) (void *opaque, uint64_t offset, uint64_t length, bool zero);
int cas_disk_extents (struct cas_disk *d, uint64_t offset, uint64_t count,
                      cas_extent_fn fn, void *opaque)
  __attribute__((nonnull (1, 4)));

/* Requests per disk, counted where they enter the engine (the functions
 * above; a trim is a zero here).  Cheap: relaxed atomic adds, no lock.
 */
enum cas_op { CAS_OP_READ, CAS_OP_WRITE, CAS_OP_ZERO, CAS_OP_FLUSH, CAS_OP_EXTENTS, CAS_OP_COUNT };
struct cas_op_stats {
  uint64_t requests;            /* received, failed or not */
  uint64_t bytes;               /* bytes of the successful ones (0 for flush) */
  uint64_t errors;              /* requests that failed */
};
void cas_disk_op_stats (struct cas_disk *d, struct cas_op_stats out[CAS_OP_COUNT])
  __attribute__((nonnull));
const char *cas_op_name (enum cas_op op);    /* "read", "write", ... */

/* Space accounting (casdisk info). */
struct cas_disk_stats {
  uint64_t virtual_size;        /* bytes */
  uint64_t logical_bytes;       /* bytes of non-zero blocks mapped */
  uint64_t unique_bytes;        /* bytes of the distinct blocks this disk maps */
  uint64_t stored_bytes;        /* stored (compressed) bytes of those blocks */
  uint64_t exclusive_bytes;     /* stored bytes of blocks only this disk maps */
};
struct cas_store_stats {
  uint32_t block_size;
  int compression_level;
  const char *key_function;     /* "siphash-1-3" or "sha256" (stores before version 4) */
  uint64_t ndisks;
  uint64_t logical_bytes;       /* sum over disks */
  uint64_t nblocks;             /* blocks in the pool, referenced or not */
  uint64_t unique_bytes;        /* nblocks referenced * block size */
  uint64_t stored_bytes;        /* stored bytes of referenced blocks */
  uint64_t dead_blocks;         /* unreferenced, waiting for the delayed GC */
  uint64_t dead_bytes;          /* their stored bytes */
  uint64_t free_bytes;          /* reusable space inside the data file */
  uint64_t data_file_end;       /* bytes of the data file in use (high water mark) */
  uint64_t physical_allocated;  /* bytes allocated by all the store's files (du) */
  uint64_t physical_apparent;   /* their apparent size (ls -l) */
  uint64_t journal_bytes;
  uint64_t quarantined;         /* blocks that failed verification */
  uint64_t gc_freed_blocks;     /* blocks freed by the delayed GC since open */
  uint64_t pending_bytes;       /* freed, waiting for a flush and a grace period */
  uint64_t recycled_bytes;      /* moved by the recycler since open */
  /* The space map of the data file, bytes in each state (see docs/design.md):
   * in use + junk + erased + free + moving = data_file_end.
   */
  uint64_t space_in_use;        /* holding blocks (live or dead) */
  uint64_t space_junk;          /* freed, not erased yet (pending_bytes included) */
  uint64_t space_erased;        /* erased, waiting for a flush */
  uint64_t space_free;          /* available (= free_bytes) */
  uint64_t space_moving;        /* destinations of recycler moves in progress */
  uint64_t erased_bytes;        /* erased by the recycler since open */
  uint64_t small_write_bytes;   /* in the small-write log, not merged into blocks yet */
  uint64_t small_write_blocks;  /* blocks with such writes */
  uint64_t small_write_merges;  /* blocks rebuilt from them since open */
  uint64_t writebacks;          /* early writebacks of the data file started since open */
};
int cas_store_stats (struct cas_store *s, struct cas_store_stats *st)
  __attribute__((nonnull));
int cas_disk_stats (struct cas_disk *d, struct cas_disk_stats *st)
  __attribute__((nonnull));

/* Offline consistency check of the store in DIR (see check.c).  Reports
 * each problem through REPORT (may be NULL) and returns the number of
 * problems found (0 = clean), or -1 if the store could not be read at all.
 */
typedef void (*cas_report_fn) (void *opaque, const char *problem);
typedef void (*cas_progress_fn) (void *opaque, uint64_t done, uint64_t total);
struct cas_check_result {
  uint64_t blocks_checked;
  uint64_t refs_checked;
  uint64_t bytes_verified;
  uint64_t problems;
};
int cas_store_check (const char *dir, cas_report_fn report, void *opaque,
                     struct cas_check_result *res)
  __attribute__((nonnull (1, 4)));
/* The same, calling PROGRESS (blocks verified, blocks in all). */
int cas_store_check_progress (const char *dir, cas_report_fn report, cas_progress_fn progress,
                              void *opaque, struct cas_check_result *res)
  __attribute__((nonnull (1, 5)));

/* Scrub an open store: verify every stored block (checksum, decompression,
 * key) and re-read every metadata file, quarantining blocks that fail.
 * RATE limits reading to that many bytes per second (0 = no limit).
 * PROGRESS (may be NULL) is called with (blocks done, blocks total).
 * Returns the number of problems found, or -1 on error.
 */
struct cas_scrub_result {
  uint64_t blocks;              /* blocks verified */
  uint64_t bytes;               /* stored bytes read */
  uint64_t corrupted;           /* blocks found bad (now quarantined) */
  uint64_t already_quarantined; /* blocks skipped: quarantined before */
  uint64_t problems;            /* corrupted blocks + metadata problems */
};
int cas_store_scrub (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
                     cas_report_fn report, void *opaque, struct cas_scrub_result *res)
  __attribute__((nonnull (1, 6)));

/* Repair the store in DIR, which must not be open elsewhere: recount
 * refcounts from the references, release leaked space, drop a torn or
 * damaged journal tail, and write a fresh checkpoint.  What cannot be
 * repaired without guessing (a damaged checkpoint, blocks sharing space,
 * quarantined blocks) is reported and left alone; a map entry that points
 * at a block that does not exist is reported and made to read as zeroes
 * (the store cannot be opened otherwise).  Reports everything found
 * through REPORT, then checks the result: returns the number of problems
 * left (0 = clean now), or -1 if the store could not be repaired at all.
 */
int cas_store_repair (const char *dir, cas_report_fn report, void *opaque,
                      struct cas_check_result *res)
  __attribute__((nonnull (1, 4)));

/* Verify the space map against the index and the maps (the
 * runtime-asserts check, see verify.c): every granule below the end of the
 * data file is in exactly one state, and every refcount equals the number
 * of references.  Returns the number of problems (each logged), 0 = sound.
 */
int cas_store_verify (struct cas_store *s) __attribute__((nonnull));

/* Compact an open store now: free every dead block (without waiting for
 * gc-delay: meant for a store nobody else uses), move blocks from the end
 * of the data file into free space until nothing more fits lower, release
 * the old space, and cut the file.  PROGRESS gets (bytes moved, bytes that could move).
 * Returns the bytes moved, or -1.
 */
int64_t cas_store_compact (struct cas_store *s, cas_progress_fn progress, void *opaque)
  __attribute__((nonnull (1)));

/* The control channel, client side (control.c).  The protocol is in
 * docs/control.md: one request line, response lines each starting with a
 * tag ("data", "progress", "problem"), ended by "ok" or "error ERRNO text".
 *
 * cas_control_connect: connect to the server of the store in DIR.
 * Returns the socket, or -1 with errno set: ENOENT or ECONNREFUSED (no
 * server is running; nothing is logged), EACCES (not allowed), others.
 */
int cas_control_connect (const char *dir) __attribute__((nonnull));
/* Send REQUEST (one line, without its newline) on FD, then call FN with
 * the tag and the rest of each response line until the final one.
 * Returns 0 on "ok"; on "error" logs the server's message and returns -1
 * with errno set from it; -1 also if FN returns -1 or the server goes
 * quiet for CAS_CONTROL_CLIENT_TIMEOUT seconds (ETIMEDOUT).  FD stays open.
 */
#define CAS_CONTROL_CLIENT_TIMEOUT 60
typedef int (*cas_control_fn) (void *opaque, const char *tag, const char *rest);
int cas_control_call (int fd, const char *request, cas_control_fn fn, void *opaque)
  __attribute__((nonnull (2)));

/* Parse a size such as "10G", "512K", "4096" (binary units).  -1 + EINVAL
 * on bad syntax or overflow.
 */
int cas_parse_size (const char *str, uint64_t *out) __attribute__((nonnull));

/* Logging hooks: the plugin routes them to nbdkit, the tool to stderr. */
typedef void (*cas_log_fn) (bool error, const char *msg);
void cas_set_log (cas_log_fn fn);
void cas_set_debug (bool on);

#endif /* CASDISK_H */
