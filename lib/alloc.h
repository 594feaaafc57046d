/* The space allocator of the data file.
 *
 * Space is handed out in granules (CAS_GRANULE bytes).  Free extents are
 * kept in exact-size lists for small sizes (one per granule count up to the
 * largest block) and one list for larger extents; an allocation takes an
 * exact fit, else splits the smallest larger extent, else extends the end
 * of the file.
 *
 * Freed space has two kinds:
 *  - space that no durable metadata ever referenced (a block that lost an
 *    insertion race, or whose BLOCK_NEW never reached the journal): reusable
 *    at once, cas_alloc_free();
 *  - space of a block that was deleted: reusable only once the journal
 *    record deleting it is durable (seq <= durable seq) and no reader can
 *    still be reading it (an RCU grace period): cas_alloc_free_later(),
 *    then cas_alloc_release() from the thread that waited the grace period.
 *
 * Thread safety: every function takes the allocator's own mutex.
 */
#ifndef CAS_ALLOC_H
#define CAS_ALLOC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct cas_extent_list;

struct cas_alloc {
  pthread_mutex_t lock;         /* guards every field below */
  uint32_t small_max;           /* granules; extents <= this go to small[] */
  struct cas_extent_list *small;/* small[n]: free extents of exactly n granules */
  struct cas_extent_list *large;/* free extents > small_max granules */
  struct cas_extent_list *pending; /* freed, waiting for durability (seq in .tag) */
  uint64_t end;                 /* bytes: the end of allocated space */
  uint64_t free_bytes;          /* bytes in small + large */
  uint64_t pending_bytes;
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
/* Allocate LEN bytes from free space that ends at or below LIMIT, never
 * by extending the file (the recycler moving a block towards the start).
 * Returns -1 (no error logged) if no such space is free.
 */
int cas_alloc_get_below (struct cas_alloc *a, uint64_t len, uint64_t limit, uint64_t *off)
  __attribute__((nonnull));
/* Merge adjacent free extents and give free space at the end back (the end
 * shrinks).  O(n log n) in the number of free extents.
 */
void cas_alloc_coalesce (struct cas_alloc *a) __attribute__((nonnull));
void cas_alloc_free (struct cas_alloc *a, uint64_t off, uint64_t len) __attribute__((nonnull));
void cas_alloc_free_later (struct cas_alloc *a, uint64_t off, uint64_t len, uint64_t seq)
  __attribute__((nonnull));
/* Move pending extents whose seq <= DURABLE_SEQ to the free lists.  Call
 * only after an RCU grace period that began after they were freed.
 * Returns the number of bytes released; if PUNCH is not NULL it is called
 * for each released extent (to deallocate it in the file).
 */
uint64_t cas_alloc_release (struct cas_alloc *a, uint64_t durable_seq,
                            void (*punch) (void *, uint64_t, uint64_t), void *opaque)
  __attribute__((nonnull (1)));

/* Call FN with the end of allocated space, holding the lock: no extent
 * below END can be handed out or extended past it while FN runs (used to
 * cut the data file's free tail safely).
 */
int cas_alloc_with_end (struct cas_alloc *a, int (*fn) (void *, uint64_t), void *opaque)
  __attribute__((nonnull (1, 2)));

uint64_t cas_alloc_free_bytes (struct cas_alloc *a) __attribute__((nonnull));
uint64_t cas_alloc_end (struct cas_alloc *a) __attribute__((nonnull));
uint64_t cas_alloc_pending_bytes (struct cas_alloc *a) __attribute__((nonnull));

#endif
