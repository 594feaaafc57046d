/* A disk's map: virtual block number -> stored block (NULL = zeroes).
 *
 * Two levels: a fixed array of page pointers, and pages of CAS_MAP_PAGE
 * entries allocated on the first write into them, so a sparse disk costs
 * memory only for the parts that were written.  Pages are never freed
 * while the map exists.
 *
 * Readers take no lock: they call cas_map_get inside an RCU read-side
 * section, and the block they get stays valid until rcu_read_unlock.
 * Writers of an entry must serialise per entry (the store's stripe locks);
 * page allocation is serialised by the map's own mutex.
 */
#ifndef CAS_MAP_H
#define CAS_MAP_H

#include <pthread.h>
#include <stdint.h>

#include "format.h"

struct cas_block;

struct cas_map_page {
  struct cas_block *e[CAS_MAP_PAGE];
};

struct cas_map {
  uint64_t nblocks;             /* entries */
  uint64_t npages;              /* length of pages[] */
  struct cas_map_page **pages;  /* RCU-published; NULL = all zeroes */
  pthread_mutex_t grow_lock;    /* guards allocation of pages */
};

int cas_map_init (struct cas_map *m, uint64_t nblocks) __attribute__((nonnull));
/* Frees the pages, not the blocks.  No concurrent user. */
void cas_map_destroy (struct cas_map *m) __attribute__((nonnull));

/* rcu_read_lock held. */
static inline struct cas_block *
cas_map_get (const struct cas_map *m, uint64_t v)
{
  struct cas_map_page *p = __atomic_load_n (&m->pages[v / CAS_MAP_PAGE], __ATOMIC_CONSUME);

  return p ? __atomic_load_n (&p->e[v % CAS_MAP_PAGE], __ATOMIC_CONSUME) : NULL;
}

/* Set entry V to B and return the previous one.  The caller serialises
 * writers of V.  Fails (-1, ENOMEM) only when a page cannot be allocated;
 * *OLD is then untouched.
 */
int cas_map_set (struct cas_map *m, uint64_t v, struct cas_block *b, struct cas_block **old)
  __attribute__((nonnull (1, 4)));

/* The page holding V, or NULL (rcu_read_lock held, or no writers). */
static inline struct cas_map_page *
cas_map_page_of (const struct cas_map *m, uint64_t v)
{
  return __atomic_load_n (&m->pages[v / CAS_MAP_PAGE], __ATOMIC_CONSUME);
}

#endif
