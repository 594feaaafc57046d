/* The data path (store_io.c): read, write, zero and extents of a disk,
 * the merges of pending small writes into their blocks, and the reads of
 * stored blocks that scrub and the recycler share.
 *
 * Locking: reads take no lock (RCU read-side sections); a write of block v
 * of disk d holds stripe_of (d, v) from reading the old content to
 * journaling the new map entry, and ckpt_lock for reading around its
 * metadata change (state.h has the lock order).
 */
#ifndef CAS_STORE_IO_H
#define CAS_STORE_IO_H

#include <stdint.h>

struct cas_block;
struct cas_disk;
struct cas_store;

/* rcu_read_lock held.  Read and verify block B into OUT (block_size bytes). */
int cas_read_stored (struct cas_store *s, struct cas_block *b, void *out);

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

#endif
