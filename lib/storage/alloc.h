/* The space map of the data file: which bytes hold what, and the
 * allocator that hands out space.
 *
 * Space is handed out in granules (CAS_GRANULE bytes).  Every granule below
 * the end of allocated space is in exactly one state:
 *
 *   in use     holds a block (live, or dead and waiting for the delayed GC).
 *              Blocks are not listed here: the content index knows them.
 *   junk       held a block that was deleted or moved away.  "Settling"
 *              junk (the pending list) still waits for the journal record
 *              that freed it to be durable and for an RCU grace period (a
 *              reader may still be reading it); "settled" junk may be
 *              overwritten, but still holds the old bytes.
 *   erased     settled junk whose bytes were discarded (a punched hole, or
 *              zeroes written with secure-erase), waiting for a flush of
 *              the data file to make the erase durable.
 *   free       erased and flushed: available.
 *   moving     the destination of a recycler move in progress (its source
 *              is still in use until the move is referenced).
 *
 *   deleted / moved (record seq S)        erase          flush
 *   in use -----------------------> junk(settling) -> junk(settled) -> erased -> free
 *                           S durable + grace period        |                  |
 *                                                           +-- reused as is --+-> in use
 *
 * Allocation takes free space first (the exact size, else the smallest
 * larger extent), then settled junk, then extends the end.  The recycler
 * erases settled junk until keep_erased bytes are erased or free (all of
 * it by default), so trimmed space goes back to the host file system.
 *
 * Space that no durable metadata ever referenced (a block that lost an
 * insertion race, a move's copy when the move is cancelled) is free at
 * once: cas_alloc_free().
 *
 * Thread safety: every function takes the allocator's own mutex, a leaf
 * lock.  Erasing and cas_alloc_erased_durable() are called by one thread
 * at a time (the store's recycle_lock).
 */
#ifndef CAS_ALLOC_H
#define CAS_ALLOC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cas_extent_list;

struct cas_alloc {
  pthread_mutex_t lock;         /* guards every field below */
  uint32_t small_max;           /* granules; extents <= this go to small[] */
  struct cas_extent_list *small;/* small[n]: free extents of exactly n granules */
  struct cas_extent_list *large;/* free extents > small_max granules */
  struct cas_extent_list *pending; /* junk, settling (record seq in .tag) */
  struct cas_extent_list *junk; /* junk, settled */
  struct cas_extent_list *erased; /* erased, waiting for a flush */
  struct cas_extent_list *moving; /* move destinations in progress */
  uint64_t end;                 /* bytes: the end of allocated space */
  uint64_t free_bytes;          /* bytes in small + large */
  uint64_t pending_bytes;
  uint64_t junk_bytes;
  uint64_t erased_bytes;        /* including extents being erased now */
  uint64_t moving_bytes;
  uint64_t keep_erased;         /* erase junk until free + erased >= this */
};

/* Bytes in each state (in use = end minus the rest). */
struct cas_space {
  uint64_t end, free, settling, junk, erased, moving;
};

enum cas_space_state {
  CAS_SPACE_FREE, CAS_SPACE_SETTLING, CAS_SPACE_JUNK, CAS_SPACE_ERASED, CAS_SPACE_MOVING,
};

struct cas_extent {
  uint64_t off, len;            /* bytes, granule aligned */
  uint64_t tag;                 /* seq for pending extents */
};

int cas_alloc_init (struct cas_alloc *a, uint32_t max_block_len) __attribute__((nonnull));
void cas_alloc_destroy (struct cas_alloc *a) __attribute__((nonnull));

/* Rebuild from the sorted (by offset), non-overlapping used extents USED[N]:
 * the gaps become free space and END the end of the last one.
 * Returns -1 + EINVAL if they overlap.
 */
int cas_alloc_rebuild (struct cas_alloc *a, const struct cas_extent *used, size_t n)
  __attribute__((nonnull (1)));

/* Allocate LEN bytes (rounded up to a granule).  Returns the offset. */
int cas_alloc_get (struct cas_alloc *a, uint64_t len, uint64_t *off) __attribute__((nonnull));
/* Allocate LEN bytes from free space or settled junk that ends at or
 * below LIMIT, never by extending the file, for the destination of a
 * recycler move: the extent is in the moving state until
 * cas_alloc_move_end().  Returns -1 (no error logged) if nothing fits.
 */
int cas_alloc_get_below (struct cas_alloc *a, uint64_t len, uint64_t limit, uint64_t *off)
  __attribute__((nonnull));
/* Merge adjacent free extents and give free space at the end back (the end
 * shrinks).  O(n log n) in the number of free extents.
 */
void cas_alloc_coalesce (struct cas_alloc *a) __attribute__((nonnull));
/* The move into [OFF, OFF+LEN) ended: REFERENCED, the block lives there
 * now (in use); else the copy was never referenced and the space is free.
 */
void cas_alloc_move_end (struct cas_alloc *a, uint64_t off, uint64_t len, bool referenced)
  __attribute__((nonnull));
void cas_alloc_free (struct cas_alloc *a, uint64_t off, uint64_t len) __attribute__((nonnull));
void cas_alloc_free_later (struct cas_alloc *a, uint64_t off, uint64_t len, uint64_t seq)
  __attribute__((nonnull));
/* Settle pending extents whose seq <= DURABLE_SEQ (they become junk).
 * Call only after an RCU grace period that began after they were freed.
 * Returns the number of bytes settled.
 */
uint64_t cas_alloc_release (struct cas_alloc *a, uint64_t durable_seq) __attribute__((nonnull));

/* Erase settled junk while free + erased space is below keep_erased:
 * ERASE (called without the lock) discards the bytes of each extent and
 * returns 0, or -1 if it could not (the extent is then free, not erased:
 * reusable, its old bytes still there).  Returns the bytes erased.
 */
uint64_t cas_alloc_erase (struct cas_alloc *a, int (*erase) (void *, uint64_t, uint64_t),
                          void *opaque) __attribute__((nonnull (1, 2)));
/* The data file was flushed after the last cas_alloc_erase: erased space
 * becomes free, after FN (may be NULL; called without the lock) saw each
 * extent.  Returns the bytes.
 */
uint64_t cas_alloc_erased_durable (struct cas_alloc *a, void (*fn) (void *, uint64_t, uint64_t),
                                   void *opaque) __attribute__((nonnull (1)));

/* Call FN with the end of allocated space, holding the lock: no extent
 * below END can be handed out or extended past it while FN runs (used to
 * cut the data file's free tail safely).
 */
int cas_alloc_with_end (struct cas_alloc *a, int (*fn) (void *, uint64_t), void *opaque)
  __attribute__((nonnull (1, 2)));

uint64_t cas_alloc_free_bytes (struct cas_alloc *a) __attribute__((nonnull));
uint64_t cas_alloc_end (struct cas_alloc *a) __attribute__((nonnull));
uint64_t cas_alloc_pending_bytes (struct cas_alloc *a) __attribute__((nonnull));
void cas_alloc_space (struct cas_alloc *a, struct cas_space *sp) __attribute__((nonnull));
/* Call FN for every extent the allocator holds (every state but in use),
 * holding the lock.  Stops at the first FN returning -1 (returns -1).
 */
int cas_alloc_walk (struct cas_alloc *a,
                    int (*fn) (void *, uint64_t off, uint64_t len, enum cas_space_state),
                    void *opaque) __attribute__((nonnull (1, 2)));

#endif
