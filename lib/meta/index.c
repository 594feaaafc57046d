/* The content index over rculfhash.  See index.h for the block life cycle. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>

#include "meta/index.h"
#include "util/log.h"
#include "util/util.h"

/* ---- block allocation ----
 *
 * A malloc'd block costs 64 bytes (48 and the allocator's header and
 * rounding); from a slab it costs 48.  Slabs hold SLAB_BLOCKS blocks and
 * are never returned: freed blocks go on a free list (linked through
 * node.next) and the next new block reuses them.  Builds with
 * AddressSanitizer use calloc and free, so that a use after free is still
 * caught.
 */
#if defined(__SANITIZE_ADDRESS__)
#define USE_SLABS 0
#else
#define USE_SLABS 1
#endif
#define SLAB_BLOCKS 4096

static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;  /* guards the three below */
static struct cas_block *free_blocks;   /* freed blocks, linked through node.next */
static struct cas_block *slab_next;     /* the unused rest of the current slab */
static size_t slab_left;

struct cas_block *
cas_block_new (void)
{
  struct cas_block *b;

  if (!USE_SLABS) {
    b = calloc (1, sizeof *b);
    if (b == NULL)
      cas_error ("block: %m");
    return b;
  }
  {
    SCOPED_LOCK (l, &slab_lock);
    if (free_blocks) {
      b = free_blocks;
      free_blocks = (struct cas_block *) b->node.next;
    }
    else {
      if (slab_left == 0) {
        slab_next = malloc (SLAB_BLOCKS * sizeof *slab_next);
        if (slab_next == NULL) {
          cas_error ("block slab: %m");
          return NULL;
        }
        slab_left = SLAB_BLOCKS;
      }
      b = slab_next++;
      slab_left--;
    }
  }
  memset (b, 0, sizeof *b);
  return b;
}

void
cas_block_free (struct cas_block *b)
{
  if (b == NULL)
    return;
  if (!USE_SLABS) {
    free (b);
    return;
  }
  SCOPED_LOCK (l, &slab_lock);
  b->node.next = (struct cds_lfht_node *) free_blocks;
  free_blocks = b;
}

static unsigned long
pow2_at_least (uint64_t n)
{
  unsigned long v = 1024;
  while (v < n && v < (1UL << 30))
    v <<= 1;
  return v;
}

/* Buckets per block.  A bucket is a 16-byte node of rculfhash; at a load
 * factor of 1 they would cost 16 to 32 bytes per block, half of the
 * memory budget of 64 bytes per block.  A look-up walks the nodes of its
 * bucket comparing each one's reverse hash (a cache miss per node), so a
 * load factor kept between 4 and 8 costs a few cache misses per look-up,
 * little next to hashing the block (one look-up per block written), and 2
 * to 4 bytes per block (docs/performance.md).
 */
#define LOAD_AFTER_RESIZE 4     /* blocks per bucket right after a resize */
#define LOAD_MAX          8     /* resize when the table gets fuller than this */

int
cas_index_init (struct cas_index *idx, uint64_t expected)
{
  idx->count = 0;
  idx->buckets = pow2_at_least (expected / LOAD_AFTER_RESIZE);
  idx->key_mask = ~UINT64_C(0);
  idx->dead = NULL;
  idx->ndead = idx->dead_cap = 0;
  pthread_mutex_init (&idx->dead_lock, NULL);
  /* No CDS_LFHT_AUTO_RESIZE: that starts a worker thread at creation, and
   * nbdkit forks after we open the store.  We resize from our own
   * background thread instead.
   */
  idx->ht = cds_lfht_new (idx->buckets, 1024, 1UL << 30, 0, NULL);
  if (idx->ht == NULL) {
    errno = ENOMEM;
    cas_error ("content index: %m");
    return -1;
  }
  return 0;
}

void
cas_index_destroy (struct cas_index *idx, void (*free_fn) (struct cas_block *))
{
  struct cds_lfht_iter iter;
  struct cds_lfht_node *node;

  free (idx->dead);
  idx->dead = NULL;
  idx->ndead = idx->dead_cap = 0;
  if (idx->ht == NULL)
    return;
  rcu_read_lock ();
  /* Explicit node loop: cds_lfht_for_each_entry computes container_of on
   * the final NULL node, which UBSan rightly flags.
   */
  for (cds_lfht_first (idx->ht, &iter); (node = cds_lfht_iter_get_node (&iter)) != NULL;
       cds_lfht_next (idx->ht, &iter)) {
    struct cas_block *b = caa_container_of (node, struct cas_block, node);
    cds_lfht_del (idx->ht, node);
    if (free_fn)
      free_fn (b);
  }
  rcu_read_unlock ();
  cds_lfht_destroy (idx->ht, NULL);
  idx->ht = NULL;
  pthread_mutex_destroy (&idx->dead_lock);
}

void
cas_block_init (struct cas_block *b, uint64_t key, uint64_t offset,
                uint32_t stored_len, uint32_t flags, uint32_t crc)
{
  assert (offset % CAS_GRANULE == 0 && offset < CAS_DATA_MAX);
  assert (stored_len <= CAS_WHERE_LEN_MAX && !(flags & ~CAS_BLK_FLAGS));
  b->key = key;
  b->where = (offset / CAS_GRANULE) << CAS_WHERE_OFF_SHIFT |
    (uint64_t) stored_len << CAS_WHERE_LEN_SHIFT | flags;
  b->crc = crc;
}

void
cas_block_set_offset (struct cas_block *b, uint64_t offset)
{
  const uint64_t low = (UINT64_C(1) << CAS_WHERE_OFF_SHIFT) - 1;
  uint64_t w = __atomic_load_n (&b->where, __ATOMIC_RELAXED);

  assert (offset % CAS_GRANULE == 0 && offset < CAS_DATA_MAX);
  /* A loop: the flag bits may change under us (quarantine, dead list). */
  while (!__atomic_compare_exchange_n (&b->where, &w,
                                       (offset / CAS_GRANULE) << CAS_WHERE_OFF_SHIFT | (w & low),
                                       true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
}

/* What a look-up matches: live blocks whose key, masked, is KEY. */
struct wanted {
  uint64_t key, mask;
};

static int
match (struct cds_lfht_node *node, const void *opaque)
{
  const struct cas_block *b = caa_container_of (node, struct cas_block, node);
  const struct wanted *w = opaque;

  return (b->key & w->mask) == w->key &&
    !(cas_block_refs (b) & CAS_REF_KILLED) && !cas_block_quarantined (b);
}

struct cas_block *
cas_index_lookup (struct cas_index *idx, uint64_t key,
                  bool (*same) (void *opaque, struct cas_block *b), void *opaque)
{
  struct cds_lfht_iter iter;
  struct cds_lfht_node *node;
  const struct wanted w = { .key = key & idx->key_mask, .mask = idx->key_mask };

  for (cds_lfht_lookup (idx->ht, w.key, match, &w, &iter);
       (node = cds_lfht_iter_get_node (&iter)) != NULL;
       cds_lfht_next_duplicate (idx->ht, match, &w, &iter)) {
    struct cas_block *b = caa_container_of (node, struct cas_block, node);
    if (same (opaque, b))
      return b;
  }
  return NULL;
}

void
cas_index_add (struct cas_index *idx, struct cas_block *b)
{
  cds_lfht_add (idx->ht, b->key & idx->key_mask, &b->node);
  __atomic_add_fetch (&idx->count, 1, __ATOMIC_RELAXED);
}

void
cas_index_del (struct cas_index *idx, struct cas_block *b)
{
  assert (cas_block_refs (b) == CAS_REF_KILLED);
  if (cds_lfht_del (idx->ht, &b->node) == 0)
    __atomic_sub_fetch (&idx->count, 1, __ATOMIC_RELAXED);
}

/* Blocks have no room for an rcu_head: the GC frees them in batches. */
struct free_batch {
  struct rcu_head rcu;
  size_t n;
  struct cas_block *v[];
};

static void
free_batch_rcu (struct rcu_head *head)
{
  struct free_batch *fb = caa_container_of (head, struct free_batch, rcu);

  for (size_t i = 0; i < fb->n; i++)
    cas_block_free (fb->v[i]);
  free (fb);
}

void
cas_index_free_later (struct cas_block *const *v, size_t n)
{
  if (n == 0)
    return;
  struct free_batch *fb = malloc (sizeof *fb + n * sizeof *v);
  if (fb == NULL) {
    /* No memory for the batch: wait for the grace period here. */
    synchronize_rcu ();
    for (size_t i = 0; i < n; i++)
      cas_block_free (v[i]);
    return;
  }
  fb->n = n;
  memcpy (fb->v, v, n * sizeof *v);
  call_rcu (&fb->rcu, free_batch_rcu);
}

void
cas_index_resize (struct cas_index *idx)
{
  const uint64_t n = __atomic_load_n (&idx->count, __ATOMIC_RELAXED);

  if (n > LOAD_MAX * idx->buckets && idx->buckets < (1UL << 30)) {
    idx->buckets = pow2_at_least (n / LOAD_AFTER_RESIZE);
    cds_lfht_resize (idx->ht, idx->buckets);
  }
}

int
cas_index_walk (struct cas_index *idx, int (*fn) (void *, struct cas_block *), void *opaque)
{
  struct cds_lfht_iter iter;
  struct cds_lfht_node *node;
  int r = 0;

  rcu_read_lock ();
  for (cds_lfht_first (idx->ht, &iter); (node = cds_lfht_iter_get_node (&iter)) != NULL;
       cds_lfht_next (idx->ht, &iter)) {
    r = fn (opaque, caa_container_of (node, struct cas_block, node));
    if (r != 0)
      break;
  }
  rcu_read_unlock ();
  return r;
}

bool
cas_block_get (struct cas_block *b, uint32_t max, bool *revived)
{
  uint32_t r = __atomic_load_n (&b->refcount, __ATOMIC_ACQUIRE);

  assert (max <= CAS_REF_MAX);
  do {
    if ((r & CAS_REF_KILLED) || r >= max)
      return false;             /* killed, or full (index.h) */
  } while (!__atomic_compare_exchange_n (&b->refcount, &r, r + 1, true,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  *revived = r == 0;
  return true;
}

/* ---- the dead list ---- */

/* dead_lock held. */
static void
list_dead (struct cas_index *idx, struct cas_block *b, uint64_t now)
{
  const uint64_t w = cas_block_where (b);

  if (cas_block_refs (b) & CAS_REF_KILLED)
    return;                     /* the GC was quicker (see index.h) */
  if (w & CAS_BLKM_DEADLISTED) {
    __atomic_fetch_or (&b->where, CAS_BLKM_REDIED, __ATOMIC_RELEASE);
    return;
  }
  if (idx->ndead == idx->dead_cap) {
    const size_t cap = idx->dead_cap ? 2 * idx->dead_cap : 1024;
    struct cas_dead *v = realloc (idx->dead, cap * sizeof *v);
    if (v == NULL) {
      /* The block stays (never freed while this store is open; the next
       * open finds it unreferenced and lists it again).
       */
      cas_error ("dead list: %m: block id %" PRIu64 " is kept until the store is reopened",
                 b->id);
      return;
    }
    idx->dead = v;
    idx->dead_cap = cap;
  }
  idx->dead[idx->ndead++] = (struct cas_dead) { .b = b, .since = now };
  __atomic_fetch_or (&b->where, CAS_BLKM_DEADLISTED, __ATOMIC_RELEASE);
}

void
cas_index_note_dead (struct cas_index *idx, struct cas_block *b, uint64_t now)
{
  SCOPED_LOCK (l, &idx->dead_lock);
  list_dead (idx, b, now);
}

bool
cas_block_put (struct cas_index *idx, struct cas_block *b, uint64_t now)
{
  bool dead;

  rcu_read_lock ();             /* B outlives the listing below (index.h) */
  const uint32_t r = __atomic_sub_fetch (&b->refcount, 1, __ATOMIC_ACQ_REL);
  assert (!(r & CAS_REF_KILLED));
  dead = r == 0;
  if (dead)
    cas_index_note_dead (idx, b, now);
  rcu_read_unlock ();
  return dead;
}

#define COLLECT_CHUNK 65536     /* entries looked at per hold of dead_lock */

size_t
cas_index_collect_dead (struct cas_index *idx, uint64_t now, uint64_t delay, bool force,
                        struct cas_block **killed, size_t max)
{
  const uint64_t marks = CAS_BLKM_DEADLISTED | CAS_BLKM_REDIED;
  size_t r = 0, w = 0, nk = 0;

  /* Entries [0, w) are kept, [w, r) dropped, [r, ndead) not looked at yet;
   * puts append after ndead meanwhile.  Only this function removes
   * entries, so r and w stay valid across releases of the lock.
   */
  for (;;) {
    SCOPED_LOCK (l, &idx->dead_lock);
    const size_t stop = r + COLLECT_CHUNK < idx->ndead ? r + COLLECT_CHUNK : idx->ndead;
    for (; r < stop; r++) {
      struct cas_dead e = idx->dead[r];
      struct cas_block *b = e.b;
      const uint32_t refs = cas_block_refs (b);

      assert (cas_block_where (b) & CAS_BLKM_DEADLISTED);
      if (refs != 0) {
        assert (!(refs & CAS_REF_KILLED));
        __atomic_fetch_and (&b->where, ~marks, __ATOMIC_RELEASE);   /* revived */
        continue;
      }
      if (cas_block_where (b) & CAS_BLKM_REDIED) {
        __atomic_fetch_and (&b->where, ~(uint64_t) CAS_BLKM_REDIED, __ATOMIC_RELEASE);
        e.since = now;          /* died again: its wait starts again */
      }
      else if (nk < max && (force || e.since + delay <= now) && cas_block_try_kill (b)) {
        __atomic_fetch_and (&b->where, ~marks, __ATOMIC_RELEASE);
        killed[nk++] = b;
        continue;
      }
      idx->dead[w++] = e;
    }
    if (r == idx->ndead) {
      idx->ndead = w;
      return nk;
    }
  }
}

size_t
cas_index_dead_listed (struct cas_index *idx)
{
  SCOPED_LOCK (l, &idx->dead_lock);
  return idx->ndead;
}

bool
cas_block_quarantine (struct cas_block *b)
{
  const uint64_t old = __atomic_fetch_or (&b->where, CAS_BLK_QUARANTINED, __ATOMIC_ACQ_REL);
  return !(old & CAS_BLK_QUARANTINED);
}

bool
cas_block_try_kill (struct cas_block *b)
{
  uint32_t zero = 0;

  return __atomic_compare_exchange_n (&b->refcount, &zero, CAS_REF_KILLED, false,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
