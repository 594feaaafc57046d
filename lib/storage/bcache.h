/* A bounded cache of block contents, keyed by block id (cache=SIZE, with
 * direct-io=true): what the page cache did for the data path before it
 * bypassed it, for recently written and read blocks only.
 *
 * A block's content never changes and its id is never given to another
 * block, so an entry never goes stale: it only ages out (least recently
 * used first).  Entries of blocks that were freed are never asked for
 * again and age out like the others.
 */
#ifndef CAS_BCACHE_H
#define CAS_BCACHE_H

#include <stdbool.h>
#include <stdint.h>

struct cas_bcache;

/* A cache of at most BYTES of blocks of BLOCK_SIZE bytes (at least one
 * block per shard).  NULL on ENOMEM (logged).
 */
struct cas_bcache *cas_bcache_new (uint64_t bytes, uint32_t block_size);
void cas_bcache_free (struct cas_bcache *c);

/* Any thread; each shard has its own mutex (a leaf lock).  Copy N bytes
 * at BOFF of block ID's content into OUT if it is cached: true on a hit.
 */
bool cas_bcache_get (struct cas_bcache *c, uint64_t id, void *out, uint32_t boff, uint32_t n)
  __attribute__((nonnull));
/* Remember block ID's CONTENT (block_size bytes, verified or just
 * written), evicting the least recently used entry of its shard if full.
 * Without memory it does nothing: a cache may forget.
 */
void cas_bcache_put (struct cas_bcache *c, uint64_t id, const void *content)
  __attribute__((nonnull));

struct cas_bcache_stats {
  uint64_t hits, misses, entries, capacity;   /* capacity in entries */
};
void cas_bcache_stats (struct cas_bcache *c, struct cas_bcache_stats *st)
  __attribute__((nonnull));

#endif
