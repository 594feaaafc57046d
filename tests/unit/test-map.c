/* Unit tests for map.c: set/get with the old value returned, lazily
 * allocated pages, NULL into an unallocated page allocating nothing, page
 * boundaries, and concurrent writers and lock-free readers.
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include <urcu-bp.h>

#include "casdisk.h"
#include "meta/index.h"
#include "meta/map.h"

static void
quiet (bool error, const char *msg)
{
}

static struct cas_map m;

/* Map entries only need distinct addresses: the map never dereferences. */
#define NFAKE 64
static struct cas_block fake[NFAKE];

static void
setup (void)
{
  cas_set_log (quiet);
}

static void
teardown (void)
{
  cas_map_destroy (&m);
}

TestSuite (map, .init = setup, .fini = teardown);

static uint64_t
npages_allocated (const struct cas_map *map)
{
  uint64_t n = 0;

  for (uint64_t i = 0; i < map->npages; i++)
    n += map->pages[i] != NULL;
  return n;
}

static struct cas_block *
get (uint64_t v)
{
  rcu_read_lock ();
  struct cas_block *b = cas_map_get (&m, v);
  rcu_read_unlock ();
  return b;
}

static struct cas_block *
set (uint64_t v, struct cas_block *b)
{
  struct cas_block *old = &fake[NFAKE - 1];   /* must be overwritten */

  cr_assert_eq (cas_map_set (&m, v, b, &old), 0);
  return old;
}

Test (map, init_sizes)
{
  cr_assert_eq (cas_map_init (&m, 1), 0);
  cr_assert_eq (m.nblocks, 1);
  cr_assert_eq (m.npages, 1);
  cas_map_destroy (&m);
  cr_assert_null (m.pages);

  cr_assert_eq (cas_map_init (&m, CAS_MAP_PAGE), 0);
  cr_assert_eq (m.npages, 1);
  cas_map_destroy (&m);
  cr_assert_eq (cas_map_init (&m, CAS_MAP_PAGE + 1), 0);
  cr_assert_eq (m.npages, 2);
  cas_map_destroy (&m);

  /* A 64 TiB disk of 4 KiB blocks: only the page table is allocated. */
  cr_assert_eq (cas_map_init (&m, (UINT64_C(1) << 46) / 4096), 0);
  cr_assert_eq (m.npages, (UINT64_C(1) << 34) / CAS_MAP_PAGE);
  cr_assert_eq (npages_allocated (&m), 0);
  cr_assert_null (get (m.nblocks - 1));
}

Test (map, empty_reads_null)
{
  cr_assert_eq (cas_map_init (&m, 3 * CAS_MAP_PAGE), 0);
  for (uint64_t v = 0; v < m.nblocks; v += 97)
    cr_assert_null (get (v));
  cr_assert_null (cas_map_page_of (&m, 0));
  cr_assert_eq (npages_allocated (&m), 0);
}

Test (map, set_get_returns_old)
{
  cr_assert_eq (cas_map_init (&m, 10000), 0);
  cr_assert_null (set (5, &fake[0]), "first set of an entry returned a non-NULL old value");
  cr_assert_eq (get (5), &fake[0]);
  cr_assert_eq (set (5, &fake[1]), &fake[0]);
  cr_assert_eq (get (5), &fake[1]);
  cr_assert_eq (set (5, &fake[1]), &fake[1]);          /* same value */
  cr_assert_eq (set (5, NULL), &fake[1]);
  cr_assert_null (get (5));
  cr_assert_null (set (5, NULL));
  /* Neighbours untouched. */
  cr_assert_null (get (4));
  cr_assert_null (get (6));
}

Test (map, pages_allocated_lazily)
{
  cr_assert_eq (cas_map_init (&m, 4 * CAS_MAP_PAGE), 0);
  set (1, &fake[0]);
  cr_assert_eq (npages_allocated (&m), 1);
  cr_assert_not_null (cas_map_page_of (&m, 0));
  cr_assert_eq (cas_map_page_of (&m, CAS_MAP_PAGE - 1), cas_map_page_of (&m, 0));
  cr_assert_null (cas_map_page_of (&m, CAS_MAP_PAGE));
  set (CAS_MAP_PAGE - 1, &fake[1]);                    /* same page */
  cr_assert_eq (npages_allocated (&m), 1);
  set (3 * CAS_MAP_PAGE, &fake[2]);                    /* first of the last page */
  cr_assert_eq (npages_allocated (&m), 2);
  cr_assert_null (cas_map_page_of (&m, CAS_MAP_PAGE));
  cr_assert_null (cas_map_page_of (&m, 2 * CAS_MAP_PAGE));
  cr_assert_eq (get (1), &fake[0]);
  cr_assert_eq (get (CAS_MAP_PAGE - 1), &fake[1]);
  cr_assert_eq (get (3 * CAS_MAP_PAGE), &fake[2]);
  cr_assert_null (get (CAS_MAP_PAGE));
  cr_assert_null (get (3 * CAS_MAP_PAGE - 1));
  /* Clearing an entry keeps its page (pages are never freed). */
  cr_assert_eq (set (1, NULL), &fake[0]);
  cr_assert_eq (npages_allocated (&m), 2);
}

Test (map, null_into_unallocated_page_allocates_nothing)
{
  cr_assert_eq (cas_map_init (&m, 4 * CAS_MAP_PAGE), 0);
  for (uint64_t v = 0; v < m.nblocks; v += 511)
    cr_assert_null (set (v, NULL));
  cr_assert_eq (npages_allocated (&m), 0);
}

Test (map, last_entry_of_odd_sized_map)
{
  const uint64_t n = 2 * CAS_MAP_PAGE + 3;

  cr_assert_eq (cas_map_init (&m, n), 0);
  cr_assert_eq (m.npages, 3);
  set (n - 1, &fake[3]);
  cr_assert_eq (get (n - 1), &fake[3]);
  cr_assert_eq (npages_allocated (&m), 1);
  cr_assert_not_null (cas_map_page_of (&m, n - 1));
}

Test (map, every_entry_of_a_page)
{
  cr_assert_eq (cas_map_init (&m, 2 * CAS_MAP_PAGE), 0);
  for (uint64_t v = 0; v < 2 * CAS_MAP_PAGE; v++)
    cr_assert_null (set (v, &fake[v % NFAKE]));
  for (uint64_t v = 0; v < 2 * CAS_MAP_PAGE; v++)
    cr_assert_eq (get (v), &fake[v % NFAKE], "entry %" PRIu64, v);
  cr_assert_eq (npages_allocated (&m), 2);
}

/* ---- concurrency ---- */

#define NTHREADS 8
#define NPAGES 64
static pthread_barrier_t barrier;

/* All threads write their own entries of the same fresh pages at once:
 * every page must be allocated exactly once, or entries are lost.
 */
static void *
page_racer (void *arg)
{
  const uint64_t t = (uintptr_t) arg;

  pthread_barrier_wait (&barrier);
  for (uint64_t pg = 0; pg < NPAGES; pg++)
    for (uint64_t k = t; k < 64; k += NTHREADS) {
      struct cas_block *old;
      if (cas_map_set (&m, pg * CAS_MAP_PAGE + k * 61, &fake[t], &old) == -1 || old != NULL)
        return (void *) 1;
    }
  return NULL;
}

Test (map, concurrent_page_allocation)
{
  pthread_t th[NTHREADS];

  cr_assert_eq (cas_map_init (&m, NPAGES * CAS_MAP_PAGE), 0);
  pthread_barrier_init (&barrier, NULL, NTHREADS);
  for (uintptr_t t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, page_racer, (void *) t), 0);
  for (int t = 0; t < NTHREADS; t++) {
    void *r;
    pthread_join (th[t], &r);
    cr_assert_null (r, "thread %d: set failed or found an entry set", t);
  }
  pthread_barrier_destroy (&barrier);
  cr_assert_eq (npages_allocated (&m), NPAGES);
  for (uint64_t pg = 0; pg < NPAGES; pg++)
    for (uint64_t k = 0; k < 64; k++)
      cr_assert_eq (get (pg * CAS_MAP_PAGE + k * 61), &fake[k % NTHREADS],
                    "page %" PRIu64 " entry %" PRIu64 " lost", pg, k * 61);
}

/* Writers own disjoint entries and cycle each through NULL and values of
 * their own; readers may see only NULL or one of the owner's values.
 */
#define NENTRIES (4 * CAS_MAP_PAGE)
#define NWRITERS 4
static volatile bool stop;

static void *
writer (void *arg)
{
  const uint64_t t = (uintptr_t) arg;

  for (int round = 0; round < 40; round++)
    for (uint64_t v = t; v < NENTRIES; v += NWRITERS) {
      struct cas_block *old;
      struct cas_block *nb = round % 4 == 3 ? NULL : &fake[t * 4 + round % 4];
      if (cas_map_set (&m, v, nb, &old) == -1)
        return (void *) 1;
      /* The old value is the one this thread wrote last round. */
      struct cas_block *want = round == 0 || (round - 1) % 4 == 3 ? NULL
        : &fake[t * 4 + (round - 1) % 4];
      if (old != want)
        return (void *) 2;
    }
  return NULL;
}

static void *
map_reader (void *arg)
{
  uint64_t bad = 0;

  while (!__atomic_load_n (&stop, __ATOMIC_ACQUIRE))
    for (uint64_t v = 0; v < NENTRIES; v += 7) {
      rcu_read_lock ();
      struct cas_block *b = cas_map_get (&m, v);
      rcu_read_unlock ();
      const uint64_t owner = v % NWRITERS;
      if (b != NULL && (b < &fake[owner * 4] || b >= &fake[owner * 4 + 4]))
        bad++;
    }
  return (void *) (uintptr_t) bad;
}

Test (map, concurrent_set_get, .timeout = 30)
{
  pthread_t w[NWRITERS], r[3];

  cr_assert_eq (cas_map_init (&m, NENTRIES), 0);
  stop = false;
  for (int i = 0; i < 3; i++)
    cr_assert_eq (pthread_create (&r[i], NULL, map_reader, NULL), 0);
  for (uintptr_t t = 0; t < NWRITERS; t++)
    cr_assert_eq (pthread_create (&w[t], NULL, writer, (void *) t), 0);
  for (int t = 0; t < NWRITERS; t++) {
    void *res;
    pthread_join (w[t], &res);
    cr_assert_null (res, "writer %d: %s", t,
                    (uintptr_t) res == 1 ? "set failed" : "wrong old value");
  }
  __atomic_store_n (&stop, true, __ATOMIC_RELEASE);
  for (int i = 0; i < 3; i++) {
    void *bad;
    pthread_join (r[i], &bad);
    cr_assert_eq ((uintptr_t) bad, 0, "reader %d saw %" PRIuPTR " foreign values", i,
                  (uintptr_t) bad);
  }
  /* 40 rounds: the last (round 39) wrote value 39 % 4 == 3, i.e. NULL. */
  for (uint64_t v = 0; v < NENTRIES; v++)
    cr_assert_null (get (v));
}
