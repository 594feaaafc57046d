/* The piece-table cache: the CRC-32C tables of recently read sectored
 * blocks (format.h), so that a read of part of a block costs one pread
 * (its pieces) instead of two (its pieces, then their table entries at
 * the block's end).
 *
 * Keyed by block id (id 0 is never cached).  Ids are never reused and a block's bytes never
 * change (a move copies them, table included), so an entry is never
 * stale: nothing is ever invalidated.  Direct-mapped: each id has one
 * slot, and a newer table simply replaces the slot's.
 *
 * Lock-free: each slot is a seqlock.  A reader copies the slot's words
 * and keeps them only if the sequence number was even and unchanged
 * around the copy; a writer that finds the slot being written skips
 * (it is only a cache).  All words are accessed atomically (relaxed),
 * so concurrent readers and writers are not data races.
 */
#ifndef CAS_PTCACHE_H
#define CAS_PTCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most pieces a table of the cache holds (64 KiB blocks / 4 KiB). */
#define CAS_PTCACHE_PIECES 16

struct cas_ptcache;

/* A cache of NSLOTS slots (a power of two), or NULL (ENOMEM).  Its
 * memory is calloc'ed: slots never used cost no resident memory.
 */
struct cas_ptcache *cas_ptcache_new (size_t nslots);
void cas_ptcache_free (struct cas_ptcache *c);

/* Copy entries [FIRST, FIRST + N) of block ID's table into OUT (N
 * little-endian u32 values, as on disk).  False on a miss.
 */
bool cas_ptcache_get (struct cas_ptcache *c, uint64_t id, uint32_t first, uint32_t n,
                      uint8_t *out) __attribute__((nonnull));

/* Remember block ID's whole table TABLE (NPIECES <= CAS_PTCACHE_PIECES
 * little-endian u32 values, as on disk).
 */
void cas_ptcache_put (struct cas_ptcache *c, uint64_t id, const uint8_t *table,
                      uint32_t npieces) __attribute__((nonnull));

struct cas_ptcache_stats {
  uint64_t hits, misses;
};
void cas_ptcache_stats (struct cas_ptcache *c, struct cas_ptcache_stats *st)
  __attribute__((nonnull));

#endif
