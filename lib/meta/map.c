/* Disk maps: two-level arrays with lazily allocated pages. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "meta/map.h"
#include "util/log.h"
#include "util/util.h"

int
cas_map_init (struct cas_map *m, uint64_t nblocks)
{
  m->nblocks = nblocks;
  m->npages = (nblocks + CAS_MAP_PAGE - 1) / CAS_MAP_PAGE;
  m->pages = calloc (m->npages ? m->npages : 1, sizeof *m->pages);
  if (m->pages == NULL) {
    cas_error ("disk map of %" PRIu64 " blocks: %m", nblocks);
    return -1;
  }
  pthread_mutex_init (&m->grow_lock, NULL);
  return 0;
}

void
cas_map_destroy (struct cas_map *m)
{
  if (m->pages == NULL)
    return;
  for (uint64_t i = 0; i < m->npages; i++)
    free (m->pages[i]);
  free (m->pages);
  m->pages = NULL;
  pthread_mutex_destroy (&m->grow_lock);
}

int
cas_map_set (struct cas_map *m, uint64_t v, struct cas_block *b, struct cas_block **old)
{
  struct cas_map_page *p;

  assert (v < m->nblocks);
  p = __atomic_load_n (&m->pages[v / CAS_MAP_PAGE], __ATOMIC_ACQUIRE);
  if (p == NULL) {
    if (b == NULL) {            /* zeroing an unallocated page: nothing to do */
      *old = NULL;
      return 0;
    }
    SCOPED_LOCK (l, &m->grow_lock);
    p = m->pages[v / CAS_MAP_PAGE];
    if (p == NULL) {
      p = calloc (1, sizeof *p);
      if (p == NULL) {
        cas_error ("disk map page: %m");
        return -1;
      }
      __atomic_store_n (&m->pages[v / CAS_MAP_PAGE], p, __ATOMIC_RELEASE);
    }
  }
  *old = __atomic_exchange_n (&p->e[v % CAS_MAP_PAGE], b, __ATOMIC_ACQ_REL);
  return 0;
}
