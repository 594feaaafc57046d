/* Unit tests for alloc.c: extending the end, exact-fit reuse, splitting
 * the smallest larger extent, small and large lists, end shrinking,
 * the space map's states (settling and settled junk, erased, free,
 * moving; keep_erased; erasing without the lock), rebuild from used
 * extents, and concurrent get/free that must tile the space exactly.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "format.h"
#include "storage/alloc.h"

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

/* The erase callback: records what it was asked to erase, fails on
 * request, and checks that the allocator's lock is not held (erasing is
 * I/O: fallocate or writes of zeroes; writers must not wait for it).
 */
static unsigned nerase, erase_saw_lock_held;
static uint64_t erased_off[8], erased_len[8];
static bool erase_fails;

static int
erase_cb (void *opaque, uint64_t off, uint64_t len)
{
  cr_assert_eq (opaque, &nerase);
  if (pthread_mutex_trylock (&a.lock) == 0)
    pthread_mutex_unlock (&a.lock);
  else
    erase_saw_lock_held++;
  if (nerase < 8) {
    erased_off[nerase] = off;
    erased_len[nerase] = len;
  }
  nerase++;
  return erase_fails ? -1 : 0;
}

static unsigned nfreed;

static void
freed_cb (void *opaque, uint64_t off, uint64_t len)
{
  if (pthread_mutex_trylock (&a.lock) == 0)
    pthread_mutex_unlock (&a.lock);
  else
    erase_saw_lock_held++;
  nfreed++;
}

static struct cas_space
space (void)
{
  struct cas_space sp;

  cas_alloc_space (&a, &sp);
  return sp;
}

Test (alloc, free_later_settles_by_seq)
{
  const uint64_t x = get (G), y = get (2 * G), z = get (3 * G);

  get (G);                              /* keep them off the end */
  cas_alloc_free_later (&a, x, G - 10, 5);
  cas_alloc_free_later (&a, y, 2 * G, 10);
  cas_alloc_free_later (&a, z, 3 * G, 15);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 6 * G);
  cr_assert_eq (cas_alloc_free_bytes (&a), 0, "pending space must not be reusable");
  /* Settling space is not handed out. */
  const uint64_t n = get (G);
  cr_assert_geq (n, 7 * G);

  cr_assert_eq (cas_alloc_release (&a, 4), 0);
  cr_assert_eq (cas_alloc_release (&a, 9), G);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 5 * G);
  cr_assert_eq (space ().junk, G, "settled space is junk");
  cr_assert_eq (cas_alloc_free_bytes (&a), 0, "junk is not free");

  cr_assert_eq (cas_alloc_release (&a, 100), 5 * G);
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
  cr_assert_eq (space ().junk, 6 * G);
  /* Nothing pending any more: release is a no-op. */
  cr_assert_eq (cas_alloc_release (&a, UINT64_MAX), 0);
}

Test (alloc, junk_is_reused_after_free_space)
{
  const uint64_t x = get (2 * G), y = get (2 * G), z = get (2 * G);

  get (G);
  cas_alloc_free_later (&a, x, 2 * G, 1);
  cas_alloc_release (&a, 1);
  cas_alloc_free (&a, z, 2 * G);
  /* Free space first (z), then settled junk (x), then the end. */
  cr_assert_eq (get (2 * G), z);
  cr_assert_eq (get (G), x, "junk is reused when nothing is free");
  cr_assert_eq (space ().junk, G, "the rest of the split junk stays junk");
  cr_assert_eq (get (G), x + G);
  cr_assert_eq (space ().junk, 0);
  cr_assert_eq (get (G), 7 * G);
  (void) y;
}

Test (alloc, erase_then_flush_makes_free)
{
  const uint64_t x = get (G), y = get (2 * G);

  get (G);
  cas_alloc_free_later (&a, x, G, 1);
  cas_alloc_free_later (&a, y, 2 * G, 1);
  cas_alloc_release (&a, 1);
  nerase = erase_saw_lock_held = nfreed = 0;
  erase_fails = false;
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 3 * G);
  cr_assert_eq (nerase, 2);
  cr_assert ((erased_off[0] == x && erased_len[0] == G && erased_off[1] == y) ||
             (erased_off[1] == x && erased_len[1] == G && erased_off[0] == y));
  struct cas_space sp = space ();
  cr_assert_eq (sp.junk, 0);
  cr_assert_eq (sp.erased, 3 * G);
  cr_assert_eq (sp.free, 0, "erased space is not free before the flush");
  cr_assert_eq (get (G), 4 * G, "erased space must not be handed out before the flush");
  cr_assert_eq (cas_alloc_erased_durable (&a, freed_cb, NULL), 3 * G);
  cr_assert_eq (nfreed, 2);
  sp = space ();
  cr_assert_eq (sp.erased, 0);
  cr_assert_eq (sp.free, 3 * G);
  cr_assert_eq (erase_saw_lock_held, 0, "erasing ran with the allocator lock held");
  cr_assert_eq (get (G), x);
}

Test (alloc, failed_erase_is_free_not_erased)
{
  const uint64_t x = get (G);

  get (G);
  cas_alloc_free_later (&a, x, G, 1);
  cas_alloc_release (&a, 1);
  nerase = 0;
  erase_fails = true;
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 0);
  erase_fails = false;
  cr_assert_eq (nerase, 1);
  const struct cas_space sp = space ();
  cr_assert_eq (sp.erased, 0);
  cr_assert_eq (sp.junk, 0);
  cr_assert_eq (sp.free, G, "space that could not be erased is still reusable");
}

Test (alloc, keep_erased_limits_erasing)
{
  uint64_t x[6];

  for (int i = 0; i < 6; i++)
    x[i] = get (G), get (G);            /* every other granule */
  for (int i = 0; i < 6; i++)
    cas_alloc_free_later (&a, x[i], G, 1);
  cas_alloc_release (&a, 1);
  a.keep_erased = 2 * G;
  nerase = 0;
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 2 * G);
  cr_assert_eq (space ().junk, 4 * G, "junk beyond keep_erased stays junk");
  cas_alloc_erased_durable (&a, NULL, NULL);
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 0, "free space counts as erased");
  get (G);
  get (G);                              /* uses the free (erased) space */
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 2 * G);
}

Test (alloc, keep_erased_splits_an_extent)
{
  const uint64_t x = get (6 * G);

  get (G);
  cas_alloc_free_later (&a, x, 6 * G, 1);
  cas_alloc_release (&a, 1);
  a.keep_erased = 2 * G;
  nerase = 0;
  cr_assert_eq (cas_alloc_erase (&a, erase_cb, &nerase), 2 * G, "only what keep_erased asks");
  cr_assert_eq (nerase, 1);
  cr_assert_eq (erased_off[0], x);
  cr_assert_eq (erased_len[0], 2 * G);
  cr_assert_eq (space ().junk, 4 * G, "the rest of the extent stays junk");
  cas_alloc_erased_durable (&a, NULL, NULL);
  cr_assert_eq (get (2 * G), x, "the erased part is free");
  cr_assert_eq (get (4 * G), x + 2 * G, "the junk part is reused");
}

Test (alloc, settled_junk_at_end_cuts_end)
{
  const uint64_t x = get (2 * G);

  cas_alloc_free_later (&a, x, 2 * G, 1);
  cr_assert_eq (cas_alloc_end (&a), 2 * G);
  cr_assert_eq (cas_alloc_release (&a, 1), 2 * G);
  cr_assert_eq (cas_alloc_end (&a), 0, "settled space at the end must cut the end");
  cr_assert_eq (cas_alloc_pending_bytes (&a), 0);
  cr_assert_eq (space ().junk, 0);
}

Test (alloc, move_destination_is_moving)
{
  const uint64_t x = get (G), y = get (G), z = get (2 * G), w = get (G);
  uint64_t to;

  cas_alloc_free (&a, x, G);
  cas_alloc_free_later (&a, y, G, 1);
  cas_alloc_release (&a, 1);            /* y is junk */
  cr_assert_eq (cas_alloc_get_below (&a, 2 * G, w, &to), -1, "no 2G extent below w");
  cr_assert_eq (cas_alloc_get_below (&a, G, x + G, &to), 0);
  cr_assert_eq (to, x, "the lowest extent that fits");
  cr_assert_eq (cas_alloc_get_below (&a, G, w, &to), 0);
  cr_assert_eq (to, y, "junk is a move destination too");
  struct cas_space sp = space ();
  cr_assert_eq (sp.moving, 2 * G);
  cr_assert_eq (sp.free + sp.junk, 0);
  cas_alloc_move_end (&a, x, G, false);   /* cancelled: free */
  cas_alloc_move_end (&a, y, G, true);    /* referenced: in use */
  sp = space ();
  cr_assert_eq (sp.moving, 0);
  cr_assert_eq (sp.free, G);
  cr_assert_eq (cas_alloc_get_below (&a, G, x, &to), -1, "nothing ends at or below x");
  (void) z;
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
  int state;                            /* -1 = live, else enum cas_space_state */
};

static int
erase_ok (void *opaque, uint64_t off, uint64_t len)
{
  return 0;
}

/* Every extent the allocator lists, appended to the live ones. */
static struct { struct live *v; size_t n, cap; } walked;

static int
collect (void *opaque, uint64_t off, uint64_t len, enum cas_space_state st)
{
  if (walked.n == walked.cap) {
    walked.cap = walked.cap ? 2 * walked.cap : 1024;
    walked.v = realloc (walked.v, walked.cap * sizeof *walked.v);
    cr_assert_not_null (walked.v);
  }
  walked.v[walked.n++] = (struct live) { .off = off, .len = len, .state = st };
  return 0;
}

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
      cas_alloc_release (&a, i);
    if (i % 1000 == 0 && arg == 0) {    /* one eraser at a time */
      cas_alloc_erase (&a, erase_ok, NULL);
      cas_alloc_erased_durable (&a, NULL, NULL);
    }
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
  /* The space map: live extents plus every listed state tile [0, end)
   * exactly: nothing leaked, nothing used twice.
   */
  for (size_t i = 0; i < n; i++)
    all[i].state = -1;
  walked.v = all;
  walked.n = walked.cap = n;
  cr_assert_eq (cas_alloc_walk (&a, collect, &walked), 0);
  qsort (walked.v, walked.n, sizeof *walked.v, cmp_live);
  uint64_t pos = 0;
  for (size_t i = 0; i < walked.n; i++) {
    cr_assert_eq (walked.v[i].off, pos, "extent at %" PRIu64 " (state %d): expected %" PRIu64
                  " (%s)", walked.v[i].off, walked.v[i].state, pos,
                  walked.v[i].off > pos ? "leaked space" : "space used twice");
    pos += walked.v[i].len;
  }
  cr_assert_eq (pos, cas_alloc_end (&a));
  free (walked.v);
}
