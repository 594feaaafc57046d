/* The content index: SHA-256 -> stored block, a lock-free hash table
 * (liburcu's rculfhash) so that dedup look-ups and reads take no lock.
 *
 * A block's life:
 *
 *   created (refcount 1) --get/put--> refcount n --put--> refcount 0 ("dead")
 *      ^                                                  |         |
 *      +--------------- get (dedup finds it again) -------+         |
 *                                                                    v
 *   killed: refcount 0 -> CAS_REF_KILLED, only by the GC, once the block has
 *   been dead for gc-delay seconds and the put that made it dead is durable.
 *   A killed block is invisible to look-ups; it is then unlinked and freed
 *   after an RCU grace period.
 *
 * Context: look-ups, insertion and deletion need the RCU read-side lock
 * (rcu_read_lock) held by the caller; the returned pointer stays valid
 * until rcu_read_unlock unless the caller took a reference with
 * cas_block_get.
 */
#ifndef CAS_INDEX_H
#define CAS_INDEX_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include <urcu-bp.h>        /* the bulletproof flavour: nbdkit threads need no registration */
#include <urcu/rculfhash.h>

#include "format.h"
#include "hash.h"

#define CAS_REF_KILLED 0x80000000u

/* One per block in the pool: 96 bytes (memory per block is what bounds a
 * store's size, docs/performance.md).  Fields that are never needed at
 * the same time share space: the RCU head is used only once the block is
 * killed and unlinked, when nothing reads dead_since or dead_seq any more
 * (the GC reads them only while refcount is 0, and a killed block's
 * refcount is CAS_REF_KILLED for good); loaded_refs only while loading,
 * before dead_since is first set.
 */
struct cas_block {
  struct cds_lfht_node node;    /* in the index */
  struct cas_hash hash;         /* SHA-256 of the uncompressed content */
  uint64_t id;                  /* persistent identity, as journal and checkpoint name it */
  uint64_t offset;              /* atomic: bytes into the data file, granule aligned;
                                   changed only by the recycler, under jlock */
  uint32_t stored_len;          /* bytes stored there */
  uint32_t flags;               /* atomic: CAS_BLK_*; QUARANTINED is set once */
  uint32_t crc;                 /* CRC-32C of the stored bytes */
  uint32_t refcount;            /* atomic: map references (+ CAS_REF_KILLED) */
  union {
    struct rcu_head rcu;        /* killed and unlinked: the deferred free */
    struct {
      union {
        uint64_t dead_since;    /* atomic: cas_now() when refcount last hit 0 */
        uint32_t loaded_refs;   /* while loading: refcount as the metadata says */
      };
      uint64_t dead_seq;        /* atomic: journal seq of the put that made it 0 */
    };
  };
};
static_assert (sizeof (struct cas_block) == 96, "struct cas_block grew");

struct cas_index {
  struct cds_lfht *ht;
  uint64_t count;               /* atomic: blocks linked in the table */
  unsigned long buckets;        /* current bucket count (resize target) */
};

/* A zeroed block, or NULL (ENOMEM, logged).  Blocks come from slabs (no
 * allocator header per block); free them only with cas_block_free (or
 * the deferred free of cas_index_del).  Any thread.
 */
struct cas_block *cas_block_new (void);
void cas_block_free (struct cas_block *b);

/* EXPECTED sizes the table; no thread is started (cas_index_resize later). */
int cas_index_init (struct cas_index *idx, uint64_t expected) __attribute__((nonnull));
/* Unlink and free every block (FREE_FN on each).  No concurrent user. */
void cas_index_destroy (struct cas_index *idx, void (*free_fn) (struct cas_block *))
  __attribute__((nonnull (1)));

/* rcu_read_lock held.  Returns a live (not killed) block or NULL. */
struct cas_block *cas_index_lookup (struct cas_index *idx, const struct cas_hash *h)
  __attribute__((nonnull));
/* rcu_read_lock held.  Inserts B unless a live block with the same hash is
 * there already; returns B or that other block.  A quarantined B is always
 * inserted (it may share its hash with the good copy that replaced it).
 */
struct cas_block *cas_index_add_unique (struct cas_index *idx, struct cas_block *b)
  __attribute__((nonnull));
/* rcu_read_lock held.  Unlink a killed block; free it with call_rcu. */
void cas_index_del (struct cas_index *idx, struct cas_block *b) __attribute__((nonnull));
/* rcu_read_lock NOT held; registered thread.  Grow the table if the load
 * factor is above 8, to 2 (runs in the background thread).
 */
void cas_index_resize (struct cas_index *idx) __attribute__((nonnull));

/* Call FN on every linked block, inside one RCU read-side section.  Stops
 * and returns FN's value if it is non-zero.
 */
int cas_index_walk (struct cas_index *idx, int (*fn) (void *, struct cas_block *), void *opaque)
  __attribute__((nonnull (1, 2)));

/* Take a reference; false if the block was killed (look it up again).
 * *REVIVED is set if the block was dead (refcount 0) before.
 */
bool cas_block_get (struct cas_block *b, bool *revived) __attribute__((nonnull));
/* Drop a reference taken away by the journal record SEQ.  Returns true if
 * that was the last one (the block is now dead).
 */
bool cas_block_put (struct cas_block *b, uint64_t seq, uint64_t now) __attribute__((nonnull));
/* GC: kill a dead block (refcount 0 -> KILLED).  False if it was revived. */
bool cas_block_try_kill (struct cas_block *b) __attribute__((nonnull));
/* Mark B as corrupted: look-ups no longer find it, so the next write of
 * its content stores a good copy.  Returns true if B was not marked yet.
 */
bool cas_block_quarantine (struct cas_block *b) __attribute__((nonnull));
static inline bool
cas_block_quarantined (const struct cas_block *b)
{
  return __atomic_load_n (&b->flags, __ATOMIC_ACQUIRE) & CAS_BLK_QUARANTINED;
}

/* Where the block is now (the recycler may move it; the old place stays
 * readable until a grace period after the move).
 */
static inline uint64_t
cas_block_offset (const struct cas_block *b)
{
  return __atomic_load_n (&b->offset, __ATOMIC_ACQUIRE);
}

static inline uint32_t
cas_block_refs (const struct cas_block *b)
{
  return __atomic_load_n (&b->refcount, __ATOMIC_ACQUIRE);
}

#endif
