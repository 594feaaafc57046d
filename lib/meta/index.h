/* The content index: a key -> stored blocks, a lock-free hash table
 * (liburcu's rculfhash) so that dedup look-ups and reads take no lock.
 *
 * The key is a 64-bit keyed hash of the block's content (hash.h).  It is advice, not
 * identity: blocks are the same only if their contents are, and the caller
 * of cas_index_lookup decides that (the data path compares the bytes,
 * store_io.c).  Two different contents with the same key (by chance, or
 * crafted by a guest) are two blocks under one key.  Keeping 8 bytes
 * instead of a 32-byte SHA-256 is what fits a block in 48 bytes
 * (docs/performance.md, "Memory").
 *
 * A block's life:
 *
 *   created (refcount 1) --get/put--> refcount n --put--> refcount 0 ("dead")
 *      ^                                                  |         |
 *      +--------------- get (dedup finds it again) -------+         |
 *                                                                    v
 *   killed: refcount 0 -> CAS_REF_KILLED, only by the GC, once the block has
 *   been dead for gc-delay seconds (see "Dead blocks" below).  A killed
 *   block is invisible to look-ups; it is then unlinked and freed after an
 *   RCU grace period.
 *
 * n stops at the store's cap (CAS_REF_MAX below): cas_block_get refuses a
 * full block, and the writer stores another copy under the same key.
 *
 * Context: look-ups, insertion and deletion need the RCU read-side lock
 * (rcu_read_lock) held by the caller; the returned pointer stays valid
 * until rcu_read_unlock unless the caller took a reference with
 * cas_block_get.
 *
 * Dead blocks: a put that drops the last reference lists the block on the
 * index's dead list (under dead_lock) with the time; a block listed
 * already is marked REDIED instead, and the GC restarts its wait.  The GC
 * (cas_index_collect_dead) is the only one that removes entries, so an
 * entry always points at a block that exists.  A put decrements inside an
 * RCU read-side section, so the GC may kill and free the block right
 * after the decrement without the putter's listing touching freed memory.
 */
#ifndef CAS_INDEX_H
#define CAS_INDEX_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu-bp.h>        /* the bulletproof flavour: nbdkit threads need no registration */
#include <urcu/rculfhash.h>

#include "format.h"
#include "util/hash.h"

#define CAS_REF_KILLED 0x80000000u

/* The most references a block takes (the store's ref_max, which tests
 * lower).  A guest can point every block of its disks at one content, and
 * clones multiply that: a block with this many references takes no more
 * (cas_block_get refuses), the data path stores another copy of the
 * content instead (a key may have several blocks) and a clone or snapshot
 * fails with EOVERFLOW, so a count never runs into the KILLED bit.  Well
 * below that bit: opening recounts exactly, and a block that older code
 * took past the cap (up to CAS_REF_KILLED - 1) is accepted as it is.
 */
#define CAS_REF_MAX    0x40000000u
static_assert (CAS_REF_MAX < CAS_REF_KILLED - 1, "the cap must leave the KILLED bit alone");

/* The word `where' packs a block's place, length and flags so that the
 * block fits in 48 bytes:
 *
 *   bits 0..6    flags: CAS_BLK_* (format.h: the stored ones) and the
 *                in-memory CAS_BLKM_* below
 *   bits 7..23   stored length in bytes (up to 131071)
 *   bits 24..63  offset in the data file, in granules (up to 512 TiB)
 */
#define CAS_BLKM_DEADLISTED 0x20u   /* on the dead list (dead_lock) */
#define CAS_BLKM_REDIED     0x40u   /* died again while listed (dead_lock) */
#define CAS_WHERE_FLAGS     0x7fu
#define CAS_WHERE_LEN_SHIFT 7
#define CAS_WHERE_LEN_MAX   0x1ffffu
#define CAS_WHERE_OFF_SHIFT 24
#define CAS_DATA_MAX        ((UINT64_C(1) << 40) * CAS_GRANULE)  /* data file limit */

/* One per block: 48 bytes (memory per block is what bounds a store's
 * size, docs/performance.md).
 */
struct cas_block {
  union {
    struct cds_lfht_node node;  /* in the index */
    uint32_t loaded_refs;       /* while loading, before the block is
                                   inserted: refcount as the metadata says */
  };
  uint64_t key;                 /* cas_block_key of the content (hash.h) */
  uint64_t id;                  /* persistent identity, as journal and checkpoint name it */
  uint64_t where;               /* atomic: offset, stored length, flags (above);
                                   the offset changes only by the recycler, under jlock */
  uint32_t refcount;            /* atomic: map references (+ CAS_REF_KILLED) */
  uint32_t crc;                 /* CRC-32C of the stored bytes */
};
static_assert (sizeof (struct cas_block) == 48, "struct cas_block grew");

struct cas_dead {
  struct cas_block *b;
  uint64_t since;               /* cas_now() when it died (or was seen to die again) */
};

struct cas_index {
  struct cds_lfht *ht;
  uint64_t count;               /* atomic: blocks linked in the table */
  unsigned long buckets;        /* current bucket count (resize target) */
  uint64_t key_mask;            /* ~0; tests keep fewer bits so that keys collide */

  pthread_mutex_t dead_lock;    /* a leaf: guards the three below and the
                                   CAS_BLKM_* bits of every block */
  struct cas_dead *dead;        /* blocks whose refcount reached 0, unordered */
  size_t ndead, dead_cap;
};

/* A zeroed block, or NULL (ENOMEM, logged).  Blocks come from slabs (no
 * allocator header per block); free them only with cas_block_free (or
 * cas_index_free_later).  Any thread.
 */
struct cas_block *cas_block_new (void);
void cas_block_free (struct cas_block *b);

/* Fill in a new block (not yet visible to other threads). */
void cas_block_init (struct cas_block *b, uint64_t key, uint64_t offset,
                     uint32_t stored_len, uint32_t flags, uint32_t crc)
  __attribute__((nonnull));

/* EXPECTED sizes the table; no thread is started (cas_index_resize later). */
int cas_index_init (struct cas_index *idx, uint64_t expected) __attribute__((nonnull));
/* Unlink and free every block (FREE_FN on each).  No concurrent user. */
void cas_index_destroy (struct cas_index *idx, void (*free_fn) (struct cas_block *))
  __attribute__((nonnull (1)));

/* rcu_read_lock held.  Calls SAME (OPAQUE, b) for each live (not killed,
 * not quarantined) block with KEY until it returns true, and returns that
 * block; NULL if none did.  SAME may read the block's stored bytes: its
 * space is not reused before a grace period after the block is killed.
 */
struct cas_block *cas_index_lookup (struct cas_index *idx, uint64_t key,
                                    bool (*same) (void *opaque, struct cas_block *b),
                                    void *opaque)
  __attribute__((nonnull (1, 3)));
/* rcu_read_lock held.  Link B (its key may be there already).  The caller
 * makes "look up, then add if absent" atomic for one content (the data
 * path holds jlock).
 */
void cas_index_add (struct cas_index *idx, struct cas_block *b) __attribute__((nonnull));
/* rcu_read_lock held.  Unlink a killed block; the caller frees it with
 * cas_index_free_later.
 */
void cas_index_del (struct cas_index *idx, struct cas_block *b) __attribute__((nonnull));
/* Free the N unlinked blocks V[] after an RCU grace period (V is copied). */
void cas_index_free_later (struct cas_block *const *v, size_t n);
/* rcu_read_lock NOT held; registered thread.  Grow the table if the load
 * factor is above 8, to 4 (runs in the background thread).
 */
void cas_index_resize (struct cas_index *idx) __attribute__((nonnull));

/* Call FN on every linked block, inside one RCU read-side section.  Stops
 * and returns FN's value if it is non-zero.
 */
int cas_index_walk (struct cas_index *idx, int (*fn) (void *, struct cas_block *), void *opaque)
  __attribute__((nonnull (1, 2)));

/* Take a reference unless the block has MAX (at most CAS_REF_MAX) already:
 * false if it has, or if it was killed (look it up again, or store a new
 * copy).  *REVIVED is set if the block was dead (refcount 0) before.
 */
bool cas_block_get (struct cas_block *b, uint32_t max, bool *revived) __attribute__((nonnull));
/* Drop a reference.  Returns true if that was the last one: the block is
 * now dead, listed on IDX's dead list with NOW.
 */
bool cas_block_put (struct cas_index *idx, struct cas_block *b, uint64_t now)
  __attribute__((nonnull));
/* GC: kill a dead block (refcount 0 -> KILLED).  False if it was revived. */
bool cas_block_try_kill (struct cas_block *b) __attribute__((nonnull));
/* List B as dead since NOW (loading: a block nothing points at). */
void cas_index_note_dead (struct cas_index *idx, struct cas_block *b, uint64_t now)
  __attribute__((nonnull));
/* GC: go through the dead list.  A revived block leaves it; a block dead
 * for DELAY seconds at NOW (or at once if FORCE) is killed and stored in
 * KILLED[] (up to MAX; the rest wait for the next call).  Returns how many
 * were killed.  One caller at a time (the GC holds recycle_lock).
 */
size_t cas_index_collect_dead (struct cas_index *idx, uint64_t now, uint64_t delay, bool force,
                               struct cas_block **killed, size_t max)
  __attribute__((nonnull));
/* Blocks on the dead list (for statistics and "anything to do?"). */
size_t cas_index_dead_listed (struct cas_index *idx) __attribute__((nonnull));

/* Mark B as corrupted: look-ups no longer find it, so the next write of
 * its content stores a good copy.  Returns true if B was not marked yet.
 */
bool cas_block_quarantine (struct cas_block *b) __attribute__((nonnull));

static inline uint64_t
cas_block_where (const struct cas_block *b)
{
  return __atomic_load_n (&b->where, __ATOMIC_ACQUIRE);
}

/* CAS_BLK_* flags as stored (compressed, quarantined, sectored). */
static inline uint32_t
cas_block_flags (const struct cas_block *b)
{
  return cas_block_where (b) & CAS_BLK_FLAGS;
}

static inline bool
cas_block_quarantined (const struct cas_block *b)
{
  return cas_block_where (b) & CAS_BLK_QUARANTINED;
}

static inline uint32_t
cas_block_len (const struct cas_block *b)
{
  return (cas_block_where (b) >> CAS_WHERE_LEN_SHIFT) & CAS_WHERE_LEN_MAX;
}

/* Where the block is now (the recycler may move it; the old place stays
 * readable until a grace period after the move).
 */
static inline uint64_t
cas_block_offset (const struct cas_block *b)
{
  return (cas_block_where (b) >> CAS_WHERE_OFF_SHIFT) * CAS_GRANULE;
}

/* The recycler moved B to OFFSET (jlock held). */
void cas_block_set_offset (struct cas_block *b, uint64_t offset) __attribute__((nonnull));

static inline uint32_t
cas_block_refs (const struct cas_block *b)
{
  return __atomic_load_n (&b->refcount, __ATOMIC_ACQUIRE);
}

#endif
