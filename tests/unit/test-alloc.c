/* Unit tests for alloc.c: extending the end, exact-fit reuse, splitting
 * the smallest larger extent, small and large lists, end shrinking,
 * delayed frees released by journal sequence number (with the punch
 * callback), rebuild from used extents, and concurrent get/free.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "alloc.h"
#include "casdisk.h"
#include "format.h"

#define G CAS_GRANULE

static void
quiet (bool error, const char *msg)
{
}

static struct cas_alloc a;

static void
setup (void)
{
  cas_set_log (quiet);
  cr_assert_eq (cas_alloc_init (&a, 65536), 0);
}

static void
teardown (void)
{
  cas_alloc_destroy (&a);
}

TestSuite (alloc, .init = setup, .fini = teardown);

static uint64_t
get (uint64_t len)
{
  uint64_t off = UINT64_MAX;

  cr_assert_eq (cas_alloc_get (&a, len, &off), 0);
  cr_assert_eq (off % G, 0, "offset %" PRIu64 " not granule aligned", off);
  return off;
}

Test (alloc, fresh_extends_the_end)
{
  cr_assert_eq (cas_alloc_end (&a), 0);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
  cr_assert_eq (get (1), 0);
  cr_assert_eq (cas_alloc_end (&a), G);            /* rounded up to a granule */
  cr_assert_eq (get (G), G);
  cr_assert_eq (get (G + 1), 2 * G);
  cr_assert_eq (cas_alloc_end (&a), 4 * G);
  cr_assert_eq (get (65536), 4 * G);
  cr_assert_eq (cas_alloc_end (&a), 4 * G + 65536);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
}

Test (alloc, exact_fit_reuse)
{
  const uint64_t x = get (3 * G), y = get (2 * G), z = get (G);

  (void) z;
  cas_alloc_free (&a, x, 3 * G);
  cas_alloc_free (&a, y, 2 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 5 * G);
  const uint64_t end = cas_alloc_end (&a);
  /* A 2-granule request takes the 2-granule hole, not a piece of the 3. */
  cr_assert_eq (get (2 * G - 100), y);
  cr_assert_eq (cas_alloc_free_bytes (&a), 3 * G);
  cr_assert_eq (get (3 * G), x);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (cas_alloc_end (&a), end, "reuse must not grow the file");
}

Test (alloc, split_smallest_larger)
{
  /* Holes of 1, 5 and 3 granules, separated by used space. */
  const uint64_t h1 = get (G);
  get (G);
  const uint64_t h5 = get (5 * G);
  get (G);
  const uint64_t h3 = get (3 * G);
  get (G);
  cas_alloc_free (&a, h1, G);
  cas_alloc_free (&a, h5, 5 * G);
  cas_alloc_free (&a, h3, 3 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 9 * G);
  const uint64_t end = cas_alloc_end (&a);

  /* 2 granules: no exact fit; the smallest larger hole is the 3. */
  cr_assert_eq (get (2 * G), h3);
  cr_assert_eq (cas_alloc_free_bytes (&a), 7 * G);
  /* Its remainder (1 granule) is an exact fit now, as is h1. */
  const uint64_t r1 = get (G), r2 = get (G);
  cr_assert ((r1 == h1 && r2 == h3 + 2 * G) || (r1 == h3 + 2 * G && r2 == h1),
             "got %" PRIu64 " and %" PRIu64, r1, r2);
  /* 4 granules come out of the 5; then its last granule. */
  cr_assert_eq (get (4 * G), h5);
  cr_assert_eq (get (G), h5 + 4 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (cas_alloc_end (&a), end);
  /* Nothing free: back to extending the end. */
  cr_assert_eq (get (G), end);
}

Test (alloc, large_extents)
{
  /* small_max is 128 granules for 64 KiB blocks: 300 granules is large. */
  const uint64_t big = get (300 * G);
  get (G);
  const uint64_t big2 = get (200 * G);
  get (G);
  cas_alloc_free (&a, big, 300 * G);
  cas_alloc_free (&a, big2, 200 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 500 * G);
  /* A 64 KiB request splits the smallest large extent that fits. */
  cr_assert_eq (get (65536), big2);
  cr_assert_eq (cas_alloc_free_bytes (&a), 500 * G - 65536);
  /* The 72-granule remainder is now a small extent: exact fit. */
  cr_assert_eq (get (72 * G), big2 + 65536);
  /* 250 granules only fit the 300 one. */
  cr_assert_eq (get (250 * G), big);
  cr_assert_eq (cas_alloc_free_bytes (&a), 50 * G);
  cr_assert_eq (get (50 * G), big + 250 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
}

Test (alloc, end_shrinks)
{
  const uint64_t x = get (G), y = get (2 * G), z = get (4 * G);

  cr_assert_eq (cas_alloc_end (&a), 7 * G);
  cas_alloc_free (&a, z, 4 * G);
  cr_assert_eq (cas_alloc_end (&a), 3 * G, "freeing the last extent must cut the end");
  cr_assert_eq (cas_alloc_free_bytes (&a), 0, "space past the end is not free space");
  cas_alloc_free (&a, y, 2 * G);
  cr_assert_eq (cas_alloc_end (&a), G);
  cas_alloc_free (&a, x, G);
  cr_assert_eq (cas_alloc_end (&a), 0);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (get (G), 0);
}

Test (alloc, end_shrinks_after_split_remainder)
{
  /* A free extent at the end whose remainder after a split reaches the
   * end: the remainder shrinks the end instead of being listed.
   */
  const uint64_t x = get (4 * G), y = get (G);

  cas_alloc_free (&a, x, 4 * G);
  cas_alloc_free (&a, y, G);            /* end shrinks to 4G */
  cr_assert_eq (cas_alloc_end (&a), 4 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 4 * G);
  cr_assert_eq (get (G), 0);
  cr_assert_eq (cas_alloc_end (&a), G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (get (G), G, "no allocation may overlap");
}

static unsigned npunch;
static uint64_t punched_off[8], punched_len[8];

static void
punch (void *opaque, uint64_t off, uint64_t len)
{
  cr_assert_eq (opaque, &npunch);
  if (npunch < 8) {
    punched_off[npunch] = off;
    punched_len[npunch] = len;
  }
  npunch++;
}

Test (alloc, free_later_released_by_seq)
{
  const uint64_t x = get (G), y = get (2 * G), z = get (3 * G);

  get (G);                              /* keep them off the end */
  npunch = 0;
  cas_alloc_free_later (&a, x, G - 10, 5);
  cas_alloc_free_later (&a, y, 2 * G, 10);
  cas_alloc_free_later (&a, z, 3 * G, 15);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 6 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0, "pending space must not be reusable");
  /* Pending space is not handed out. */
  const uint64_t n = get (G);
  cr_assert_geq (n, 7 * G);

  cr_assert_eq (cas_alloc_release (&a, 4, punch, &npunch), 0);
  cr_assert_eq (npunch, 0);
  cr_assert_eq (cas_alloc_release (&a, 9, punch, &npunch), G);
  cr_assert_eq (npunch, 1);
  cr_assert_eq (punched_off[0], x);
  cr_assert_eq (punched_len[0], G);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 5 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), G);

  cr_assert_eq (cas_alloc_release (&a, 100, punch, &npunch), 5 * G);
  cr_assert_eq (npunch, 3);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
  cr_assert_eq (cas_alloc_free_bytes (&a), 6 * G);
  cr_assert ((punched_off[1] == y && punched_len[1] == 2 * G &&
              punched_off[2] == z && punched_len[2] == 3 * G) ||
             (punched_off[2] == y && punched_len[2] == 2 * G &&
              punched_off[1] == z && punched_len[1] == 3 * G));
  /* Released space is reused. */
  cr_assert_eq (get (3 * G), z);
  /* Nothing pending any more: release is a no-op. */
  cr_assert_eq (cas_alloc_release (&a, UINT64_MAX, punch, &npunch), 0);
  cr_assert_eq (npunch, 3);
}

/* Punching is I/O (fallocate on the data file): it must not run with the
 * allocator's lock held, or every writer waits for it (cas_alloc_get).
 */
static int punch_saw_lock_held;

static void
punch_checks_lock (void *opaque, uint64_t off, uint64_t len)
{
  if (pthread_mutex_trylock (&a.lock) == 0)
    pthread_mutex_unlock (&a.lock);
  else
    punch_saw_lock_held++;
}

Test (alloc, punch_runs_without_the_lock)
{
  const uint64_t x = get (G), y = get (G);

  get (G);
  cas_alloc_free_later (&a, x, G, 1);
  cas_alloc_free_later (&a, y, G, 1);
  punch_saw_lock_held = 0;
  cr_assert_eq (cas_alloc_release (&a, 1, punch_checks_lock, NULL), 2 * G);
  cr_assert_eq (punch_saw_lock_held, 0,
                "the punch callback ran %d times with the allocator lock held",
                punch_saw_lock_held);
  cr_assert_eq (cas_alloc_free_bytes (&a), 2 * G);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
}

Test (alloc, release_without_punch_and_at_end)
{
  const uint64_t x = get (2 * G);

  cas_alloc_free_later (&a, x, 2 * G, 1);
  cr_assert_eq (cas_alloc_end (&a), 2 * G);
  cr_assert_eq (cas_alloc_release (&a, 1, NULL, NULL), 2 * G);
  cr_assert_eq (cas_alloc_end (&a), 0, "released space at the end must cut the end");
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
}

Test (alloc, rebuild_gaps_become_free)
{
  const struct cas_extent used[] = {
    { .off = 2 * G, .len = G },         /* gap [0, 2G) before it */
    { .off = 3 * G, .len = 100 },       /* adjacent, rounds up to G */
    { .off = 10 * G, .len = 2 * G },    /* gap [4G, 10G) */
    { .off = 12 * G, .len = 65536 },
  };

  cr_assert_eq (cas_alloc_rebuild (&a, used, 4), 0);
  cr_assert_eq (cas_alloc_end (&a), 12 * G + 65536);
  cr_assert_eq (cas_alloc_free_bytes (&a), 8 * G);
  /* The gaps are handed out, nothing that is used. */
  uint64_t got[8];
  for (int i = 0; i < 8; i++) {
    got[i] = get (G);
    cr_assert ((got[i] < 2 * G) || (got[i] >= 4 * G && got[i] < 10 * G),
               "allocated %" PRIu64 " inside a used extent", got[i]);
    for (int k = 0; k < i; k++)
      cr_assert_neq (got[i], got[k], "offset %" PRIu64 " handed out twice", got[i]);
  }
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
  cr_assert_eq (get (G), 12 * G + 65536);
}

Test (alloc, rebuild_empty)
{
  cr_assert_eq (cas_alloc_rebuild (&a, NULL, 0), 0);
  cr_assert_eq (cas_alloc_end (&a), 0);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
}

Test (alloc, rebuild_overlap_is_einval)
{
  const struct cas_extent overlap[] = {
    { .off = 0, .len = 2 * G },
    { .off = G, .len = G },
  };
  const struct cas_extent rounding_overlap[] = {
    { .off = 0, .len = G + 1 },         /* occupies two granules */
    { .off = G, .len = G },
  };
  const struct cas_extent unsorted[] = {
    { .off = 4 * G, .len = G },
    { .off = 0, .len = G },
  };

  errno = 0;
  cr_assert_eq (cas_alloc_rebuild (&a, overlap, 2), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_alloc_rebuild (&a, rounding_overlap, 2), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_alloc_rebuild (&a, unsorted, 2), -1);
  cr_assert_eq (errno, EINVAL);
  /* A failed rebuild changed nothing. */
  cr_assert_eq (cas_alloc_end (&a), 0);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0);
}

Test (alloc, small_max_for_small_blocks)
{
  struct cas_alloc b;

  /* With 4 KiB blocks, small lists cover 8 granules; larger extents go
   * to the large list and are still found.
   */
  cr_assert_eq (cas_alloc_init (&b, 4096), 0);
  uint64_t x, y, z;
  cr_assert_eq (cas_alloc_get (&b, 20 * G, &x), 0);
  cr_assert_eq (cas_alloc_get (&b, G, &y), 0);
  cas_alloc_free (&b, x, 20 * G);
  cr_assert_eq (cas_alloc_free_bytes (&b), 20 * G);
  cr_assert_eq (cas_alloc_get (&b, 8 * G, &z), 0);
  cr_assert_eq (z, x);
  cr_assert_eq (cas_alloc_get (&b, 12 * G, &z), 0);
  cr_assert_eq (z, x + 8 * G);
  cr_assert_eq (cas_alloc_free_bytes (&b), 0);
  cr_assert_eq (cas_alloc_end (&b), 21 * G);
  (void) y;
  cas_alloc_destroy (&b);
}

/* ---- concurrency: no two live allocations overlap ---- */

#define NTHREADS 6
#define NOPS 4000

struct live {
  uint64_t off, len;
};

static int
cmp_live (const void *x, const void *y)
{
  const struct live *p = x, *q = y;
  return p->off < q->off ? -1 : p->off > q->off;
}

static void *
churn (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg * 7919 + 1;
  struct live *v = calloc (NOPS, sizeof *v);
  size_t n = 0;

  for (int i = 0; v && i < NOPS; i++) {
    seed = seed * 1103515245u + 12345u;
    if (n > 0 && (seed >> 16) % 3 == 0) {
      const size_t k = (seed >> 8) % n;
      if ((seed >> 20) & 1)
        cas_alloc_free (&a, v[k].off, v[k].len);
      else
        cas_alloc_free_later (&a, v[k].off, v[k].len, i);
      v[k] = v[--n];
    }
    else {
      const uint64_t len = (1 + (seed >> 16) % 140) * G - (seed & 255);
      uint64_t off;
      if (cas_alloc_get (&a, len, &off) == -1)
        break;
      v[n++] = (struct live) { .off = off, .len = (len + G - 1) / G * G };
    }
    if (i % 500 == 0)
      cas_alloc_release (&a, i, NULL, NULL);
  }
  /* Terminate the list with a zero-length entry. */
  if (v && n < NOPS)
    v[n].len = 0;
  return v;
}

Test (alloc, concurrent_no_overlap)
{
  pthread_t th[NTHREADS];
  struct live *all = calloc (NTHREADS * NOPS, sizeof *all);
  size_t n = 0;

  cr_assert_not_null (all);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, churn, (void *) (uintptr_t) t), 0);
  for (int t = 0; t < NTHREADS; t++) {
    struct live *v;
    pthread_join (th[t], (void **) &v);
    cr_assert_not_null (v);
    for (size_t i = 0; i < NOPS && v[i].len; i++)
      all[n++] = v[i];
    free (v);
  }
  qsort (all, n, sizeof *all, cmp_live);
  for (size_t i = 1; i < n; i++)
    cr_assert_geq (all[i].off, all[i - 1].off + all[i - 1].len,
                   "live extents [%" PRIu64 ", +%" PRIu64 ") and [%" PRIu64 ", +%" PRIu64
                   ") overlap", all[i - 1].off, all[i - 1].len, all[i].off, all[i].len);
  if (n > 0)
    cr_assert_leq (all[n - 1].off + all[n - 1].len, cas_alloc_end (&a));
  /* Accounting: free + pending + live never exceeds the end. */
  uint64_t live = 0;
  for (size_t i = 0; i < n; i++)
    live += all[i].len;
  cr_assert_leq (live + cas_alloc_free_bytes (&a) + cas_alloc_pending_bytes (&a),
                 cas_alloc_end (&a));
  free (all);
}
