/* The content index over rculfhash.  See index.h for the block life cycle. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>

#include "index.h"
#include "log.h"
#include "util.h"

/* ---- block allocation ----
 *
 * A malloc'd block costs 112 bytes (96 and the allocator's header and
 * rounding); from a slab it costs 96.  Slabs hold SLAB_BLOCKS blocks and
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
 * factor of 1 they cost 16 to 32 bytes per block, a sixth of the memory
 * budget.  A look-up walks the nodes of its bucket comparing each one's
 * reverse hash (a cache miss per node), so a load factor kept between 2
 * and 8 costs a few cache misses per look-up, little next to hashing the
 * block (one look-up per block written; docs/performance.md).
 */
#define LOAD_AFTER_RESIZE 2     /* blocks per bucket right after a resize */
#define LOAD_MAX          8     /* resize when the table gets fuller than this */

int
cas_index_init (struct cas_index *idx, uint64_t expected)
{
  idx->count = 0;
  idx->buckets = pow2_at_least (expected / LOAD_AFTER_RESIZE);
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
}

/* Match a live block with the hash KEY. */
static int
match (struct cds_lfht_node *node, const void *key)
{
  const struct cas_block *b = caa_container_of (node, struct cas_block, node);

  return memcmp (&b->hash, key, sizeof b->hash) == 0 &&
    !(cas_block_refs (b) & CAS_REF_KILLED) && !cas_block_quarantined (b);
}

struct cas_block *
cas_index_lookup (struct cas_index *idx, const struct cas_hash *h)
{
  struct cds_lfht_iter iter;
  struct cds_lfht_node *node;

  cds_lfht_lookup (idx->ht, cas_hash_key (h), match, h, &iter);
  node = cds_lfht_iter_get_node (&iter);
  return node ? caa_container_of (node, struct cas_block, node) : NULL;
}

struct cas_block *
cas_index_add_unique (struct cas_index *idx, struct cas_block *b)
{
  struct cds_lfht_node *node;

  if (cas_block_quarantined (b)) {
    cds_lfht_add (idx->ht, cas_hash_key (&b->hash), &b->node);
    node = &b->node;
  }
  else
    node = cds_lfht_add_unique (idx->ht, cas_hash_key (&b->hash), match, &b->hash, &b->node);

  if (node == &b->node)
    __atomic_add_fetch (&idx->count, 1, __ATOMIC_RELAXED);
  return caa_container_of (node, struct cas_block, node);
}

static void
free_block_rcu (struct rcu_head *head)
{
  cas_block_free (caa_container_of (head, struct cas_block, rcu));
}

void
cas_index_del (struct cas_index *idx, struct cas_block *b)
{
  assert (cas_block_refs (b) == CAS_REF_KILLED);
  if (cds_lfht_del (idx->ht, &b->node) == 0) {
    __atomic_sub_fetch (&idx->count, 1, __ATOMIC_RELAXED);
    call_rcu (&b->rcu, free_block_rcu);
  }
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
cas_block_get (struct cas_block *b, bool *revived)
{
  uint32_t r = __atomic_load_n (&b->refcount, __ATOMIC_ACQUIRE);

  do {
    if (r & CAS_REF_KILLED)
      return false;
    assert (r < CAS_REF_KILLED - 1);
  } while (!__atomic_compare_exchange_n (&b->refcount, &r, r + 1, true,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  *revived = r == 0;
  return true;
}

/* Raise *P to V if it is lower (several puts may race to record theirs). */
static void
store_max (uint64_t *p, uint64_t v)
{
  uint64_t cur = __atomic_load_n (p, __ATOMIC_RELAXED);

  while (cur < v &&
         !__atomic_compare_exchange_n (p, &cur, v, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
}

bool
cas_block_put (struct cas_block *b, uint64_t seq, uint64_t now)
{
  /* Record when and by which journal record it died before the count can
   * be seen as zero by the GC.
   */
  store_max (&b->dead_seq, seq);
  store_max (&b->dead_since, now);
  const uint32_t r = __atomic_sub_fetch (&b->refcount, 1, __ATOMIC_ACQ_REL);
  assert (!(r & CAS_REF_KILLED));
  return r == 0;
}

bool
cas_block_quarantine (struct cas_block *b)
{
  const uint32_t old = __atomic_fetch_or (&b->flags, CAS_BLK_QUARANTINED, __ATOMIC_ACQ_REL);
  return !(old & CAS_BLK_QUARANTINED);
}

bool
cas_block_try_kill (struct cas_block *b)
{
  uint32_t zero = 0;

  return __atomic_compare_exchange_n (&b->refcount, &zero, CAS_REF_KILLED, false,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
