/* Unit tests for bcache.c: hits return the bytes put, parts of a block,
 * least recently used out first, capacity bounds, refresh on a repeated
 * put, and many threads at once.
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "storage/bcache.h"

#define BS 4096u

static void
stamp (uint8_t *p, uint64_t id)
{
  for (uint32_t i = 0; i < BS; i++)
    p[i] = (uint8_t) (id * 31 + i * 7 + (i >> 8));
}

Test (bcache, hit_returns_the_content_and_parts)
{
  struct cas_bcache *c = cas_bcache_new (64 * BS, BS);
  uint8_t in[BS], out[BS];
  struct cas_bcache_stats st;

  cr_assert_not_null (c);
  cr_assert_not (cas_bcache_get (c, 7, out, 0, BS));
  stamp (in, 7);
  cas_bcache_put (c, 7, in);
  memset (out, 0, sizeof out);
  cr_assert (cas_bcache_get (c, 7, out, 0, BS));
  cr_assert_eq (memcmp (in, out, BS), 0);
  memset (out, 0, sizeof out);
  cr_assert (cas_bcache_get (c, 7, out, 1000, 77));
  cr_assert_eq (memcmp (in + 1000, out, 77), 0);
  cr_assert_not (cas_bcache_get (c, 8, out, 0, BS));
  cas_bcache_stats (c, &st);
  cr_assert_eq (st.hits, 2);
  cr_assert_eq (st.misses, 2);
  cr_assert_eq (st.entries, 1);
  cas_bcache_free (c);
}

Test (bcache, bounded_and_least_recently_used_out)
{
  /* 16 shards of 4 entries each. */
  struct cas_bcache *c = cas_bcache_new (64 * BS, BS);
  uint8_t in[BS], out[BS];
  struct cas_bcache_stats st;
  const uint64_t N = 5000;

  for (uint64_t id = 1; id <= N; id++) {
    stamp (in, id);
    cas_bcache_put (c, id, in);
    /* Block 1 is read after every put: it stays the newest of its shard. */
    cr_assert (cas_bcache_get (c, 1, out, 0, BS), "block 1 evicted after %" PRIu64, id);
  }
  cas_bcache_stats (c, &st);
  cr_assert_eq (st.capacity, 64);
  cr_assert_eq (st.entries, 64, "%" PRIu64 " entries", st.entries);
  /* The last ones put are there (most of them: each shard keeps its 4
   * newest), the first ones are gone, and what is there is right.
   */
  unsigned recent = 0, old = 0;
  for (uint64_t id = 2; id <= N; id++) {
    if (!cas_bcache_get (c, id, out, 0, BS))
      continue;
    stamp (in, id);
    cr_assert_eq (memcmp (in, out, BS), 0, "block %" PRIu64 " has another's bytes", id);
    if (id > N - 200)
      recent++;
    if (id < N - 1000)
      old++;
  }
  cr_assert_eq (old, 0, "%u old blocks still cached", old);
  cr_assert_geq (recent, 60, "only %u of the 200 newest are cached", recent);
  cas_bcache_free (c);
}

Test (bcache, put_again_refreshes)
{
  /* One entry per shard: ids that share a shard evict each other. */
  struct cas_bcache *c = cas_bcache_new (0, BS);
  uint8_t in[BS], out[BS];
  struct cas_bcache_stats st;

  stamp (in, 1);
  cas_bcache_put (c, 1, in);
  cas_bcache_put (c, 1, in);
  cas_bcache_stats (c, &st);
  cr_assert_eq (st.entries, 1);
  cr_assert_eq (st.capacity, 16);
  for (uint64_t id = 2; id < 1000; id++) {
    stamp (in, id);
    cas_bcache_put (c, id, in);
  }
  cas_bcache_stats (c, &st);
  cr_assert_eq (st.entries, 16);
  cr_assert (cas_bcache_get (c, 999, out, 0, BS));
  cr_assert_eq (memcmp (in, out, BS), 0);
  cas_bcache_free (c);
}

struct worker {
  struct cas_bcache *c;
  unsigned id;
  unsigned bad;
};

static void *
work (void *opaque)
{
  struct worker *w = opaque;
  uint8_t in[BS], out[BS];

  for (uint64_t i = 0; i < 3000; i++) {
    const uint64_t id = (i * 13 + w->id * 1000) % 700;
    if (cas_bcache_get (w->c, id, out, 0, BS)) {
      stamp (in, id);
      if (memcmp (in, out, BS) != 0)
        w->bad++;
    }
    else {
      stamp (in, id);
      cas_bcache_put (w->c, id, in);
    }
  }
  return NULL;
}

Test (bcache, threads)
{
  enum { THREADS = 8 };
  struct cas_bcache *c = cas_bcache_new (256 * BS, BS);
  pthread_t t[THREADS];
  struct worker w[THREADS];
  struct cas_bcache_stats st;

  for (unsigned i = 0; i < THREADS; i++) {
    w[i] = (struct worker) { c, i, 0 };
    cr_assert_eq (pthread_create (&t[i], NULL, work, &w[i]), 0);
  }
  for (unsigned i = 0; i < THREADS; i++) {
    pthread_join (t[i], NULL);
    cr_assert_eq (w[i].bad, 0, "thread %u read wrong bytes %u times", i, w[i].bad);
  }
  cas_bcache_stats (c, &st);
  cr_assert_eq (st.hits + st.misses, THREADS * 3000);
  cr_assert_gt (st.hits, 0);
  cr_assert_leq (st.entries, 256);
  cas_bcache_free (c);
}
