/* A multiset of block pointers (open addressing): counts how many times
 * each block is referenced while walking maps (space accounting, runtime
 * checks).  Not thread-safe: one owner.
 */
#ifndef CAS_BAG_H
#define CAS_BAG_H

#include <stddef.h>
#include <stdint.h>

struct cas_block;

struct cas_bag {
  struct { const struct cas_block *b; uint32_t n; } *v;
  size_t mask, n;               /* v has mask + 1 slots, n of them used */
};

/* Count one more reference to B.  -1 (ENOMEM, not logged) on failure. */
int cas_bag_add (struct cas_bag *g, const struct cas_block *b) __attribute__((nonnull));
/* How many times B was added. */
uint32_t cas_bag_count (const struct cas_bag *g, const struct cas_block *b) __attribute__((nonnull));
void cas_bag_free (struct cas_bag *g) __attribute__((nonnull));

#endif
