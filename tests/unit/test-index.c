/* Unit tests for index.c: look-ups by key with the caller's content test,
 * the packed place of a block, the block life cycle (get / put / dead list
 * / collect_dead / revive / del), quarantine, walk, resize, and concurrent
 * users under RCU.
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
#include "meta/index.h"
#include "util/util.h"

static void
quiet (bool error, const char *msg)
{
}

static struct cas_index idx;
static unsigned nfreed;

static void
count_free (struct cas_block *b)
{
  __atomic_add_fetch (&nfreed, 1, __ATOMIC_RELAXED);
  cas_block_free (b);
}

static void
setup (void)
{
  cas_set_log (quiet);
  nfreed = 0;
  cr_assert_eq (cas_index_init (&idx, 16), 0);
}

static void
teardown (void)
{
  cas_index_destroy (&idx, count_free);
  rcu_barrier ();               /* blocks freed with call_rcu */
}

TestSuite (index, .init = setup, .fini = teardown);

/* Blocks in these tests: KEY is the index key and the block's crc field
 * stands for its content (the data path compares stored bytes; here the
 * content test compares that number).
 */
static struct cas_block *
new_block (uint64_t key, uint64_t id, uint32_t content)
{
  struct cas_block *b = cas_block_new ();

  cr_assert_not_null (b);
  cas_block_init (b, key, 0, 4096, 0, content);
  b->id = id;
  b->refcount = 1;
  return b;
}

static void
add (struct cas_block *b)
{
  rcu_read_lock ();
  cas_index_add (&idx, b);
  rcu_read_unlock ();
}

static bool
same_content (void *opaque, struct cas_block *b)
{
  return b->crc == *(const uint32_t *) opaque;
}

static bool
any (void *opaque, struct cas_block *b)
{
  return true;
}

/* The block with KEY and CONTENT, or NULL. */
static struct cas_block *
lookup (uint64_t key, uint32_t content)
{
  rcu_read_lock ();
  struct cas_block *b = cas_index_lookup (&idx, key, same_content, &content);
  rcu_read_unlock ();
  return b;
}

/* Blocks on the dead list pointing at B. */
static unsigned
listed (struct cas_block *b)
{
  unsigned n = 0;

  for (size_t i = 0; i < idx.ndead; i++)
    n += idx.dead[i].b == b;
  return n;
}

Test (index, add_and_lookup)
{
  struct cas_block *a = new_block (1, 10, 100), *b = new_block (2, 20, 200);

  cr_assert_null (lookup (1, 100));
  add (a);
  add (b);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (1, 100), a);
  cr_assert_eq (lookup (2, 200), b);
  cr_assert_null (lookup (3, 100));
  cr_assert_null (lookup (1, 200), "found by key alone: the content test was not asked");
}

/* Counts the blocks it is asked about (all must have key 7). */
static bool
count_calls (void *opaque, struct cas_block *b)
{
  cr_assert_eq (b->key, 7);
  ++*(unsigned *) opaque;
  return false;
}

Test (index, same_key_different_content)
{
  /* Two contents under one key (a collision of 8 bytes of SHA-256, by
   * chance or crafted): two blocks, each found only for its content.
   */
  struct cas_block *a = new_block (7, 1, 100), *b = new_block (7, 2, 200);
  unsigned calls = 0;

  add (a);
  add (b);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (7, 100), a);
  cr_assert_eq (lookup (7, 200), b);
  cr_assert_null (lookup (7, 300));

  /* The content test is asked about every block of the key, and only those. */
  for (uint64_t k = 100; k < 140; k++)
    add (new_block (k, k, 1));
  rcu_read_lock ();
  cr_assert_null (cas_index_lookup (&idx, 7, count_calls, &calls));
  rcu_read_unlock ();
  cr_assert_eq (calls, 2, "%u blocks tested for a key that has 2", calls);
}

Test (index, where_packs_place_length_and_flags)
{
  struct cas_block *b = cas_block_new ();
  const uint64_t far = CAS_DATA_MAX - CAS_GRANULE;

  cr_assert_not_null (b);
  cas_block_init (b, 1, far, 65600, CAS_BLK_SECTORED, 5);
  cr_assert_eq (cas_block_offset (b), far);
  cr_assert_eq (cas_block_len (b), 65600);
  cr_assert_eq (cas_block_flags (b), CAS_BLK_SECTORED);
  cr_assert (cas_block_quarantine (b));
  cr_assert_eq (cas_block_offset (b), far, "quarantine changed the offset");
  cr_assert_eq (cas_block_flags (b), CAS_BLK_SECTORED | CAS_BLK_QUARANTINED);
  cas_block_set_offset (b, 4096);
  cr_assert_eq (cas_block_offset (b), 4096);
  cr_assert_eq (cas_block_len (b), 65600, "a move changed the length");
  cr_assert_eq (cas_block_flags (b), CAS_BLK_SECTORED | CAS_BLK_QUARANTINED,
                "a move changed the flags");
  cas_block_init (b, 1, 0, 1, CAS_BLK_COMPRESSED, 5);
  cr_assert_eq (cas_block_offset (b), 0);
  cr_assert_eq (cas_block_len (b), 1);
  cr_assert_eq (cas_block_flags (b), CAS_BLK_COMPRESSED);
  cas_block_free (b);
}

Test (index, get_put_counts_and_revives)
{
  struct cas_block *a = new_block (1, 1, 100);
  bool revived = true;

  add (a);
  cr_assert_eq (cas_block_refs (a), 1);
  cr_assert (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert_not (revived);
  cr_assert_eq (cas_block_refs (a), 2);
  cr_assert_not (cas_block_put (&idx, a, 100), "put of 2 -> 1 reported the last reference");
  cr_assert_eq (cas_index_dead_listed (&idx), 0);
  cr_assert (cas_block_put (&idx, a, 200), "put of 1 -> 0 did not report the last reference");
  cr_assert_eq (cas_block_refs (a), 0);
  cr_assert_eq (listed (a), 1);
  cr_assert_eq (idx.dead[0].since, 200);
  /* A dead block is still found by dedup, and a get revives it. */
  cr_assert_eq (lookup (1, 100), a);
  cr_assert (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert (revived, "a get of a dead block must report the revival");
  cr_assert_eq (cas_block_refs (a), 1);
  /* The GC drops the entry of a revived block and kills nothing. */
  struct cas_block *killed[4];
  cr_assert_eq (cas_index_collect_dead (&idx, 10000, 0, true, killed, 4), 0);
  cr_assert_eq (cas_index_dead_listed (&idx), 0);
  cr_assert_eq (cas_block_where (a) & (CAS_BLKM_DEADLISTED | CAS_BLKM_REDIED), 0);
  /* Dying again lists it again. */
  cr_assert (cas_block_put (&idx, a, 300));
  cr_assert_eq (listed (a), 1);
}

/* A block with MAX references takes no more; once one is dropped it
 * does again.  CAS_REF_MAX itself is refused the same way.
 */
Test (index, get_stops_at_the_cap)
{
  struct cas_block *a = new_block (1, 1, 100);
  bool revived = false;

  add (a);
  for (uint32_t n = 1; n < 4; n++)
    cr_assert (cas_block_get (a, 4, &revived), "get refused at %" PRIu32, n);
  cr_assert_eq (cas_block_refs (a), 4);
  cr_assert_not (cas_block_get (a, 4, &revived), "a fifth reference under a cap of 4");
  cr_assert_eq (cas_block_refs (a), 4, "a refused get changed the count");
  cr_assert_not (cas_block_put (&idx, a, 100));
  cr_assert (cas_block_get (a, 4, &revived), "get refused below the cap");
  cr_assert_not (revived);
  __atomic_store_n (&a->refcount, CAS_REF_MAX, __ATOMIC_RELAXED);
  cr_assert_not (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert_eq (cas_block_refs (a), CAS_REF_MAX);
  __atomic_store_n (&a->refcount, CAS_REF_MAX - 1, __ATOMIC_RELAXED);
  cr_assert (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert_eq (cas_block_refs (a), CAS_REF_MAX);
  __atomic_store_n (&a->refcount, 1, __ATOMIC_RELAXED);
}

Test (index, collect_dead_waits_the_delay)
{
  struct cas_block *a = new_block (1, 1, 100), *b = new_block (2, 2, 200);
  struct cas_block *killed[4];

  add (a);
  add (b);
  cr_assert (cas_block_put (&idx, a, 100));
  cr_assert (cas_block_put (&idx, b, 105));
  cr_assert_eq (cas_index_collect_dead (&idx, 109, 10, false, killed, 4), 0,
                "killed before its delay");
  cr_assert_eq (cas_index_dead_listed (&idx), 2);
  cr_assert_eq (cas_index_collect_dead (&idx, 110, 10, false, killed, 4), 1);
  cr_assert_eq (killed[0], a);
  cr_assert_eq (cas_block_refs (a), CAS_REF_KILLED);
  cr_assert_eq (listed (a), 0);
  cr_assert_eq (cas_index_dead_listed (&idx), 1);
  /* MAX bounds a call: b waits for the next. */
  cr_assert_eq (cas_index_collect_dead (&idx, 1000, 10, false, killed, 0), 0);
  cr_assert_eq (cas_block_refs (b), 0);
  cr_assert_eq (cas_index_collect_dead (&idx, 1000, 10, false, killed, 4), 1);
  cr_assert_eq (killed[0], b);
  cr_assert_eq (cas_index_dead_listed (&idx), 0);
  rcu_read_lock ();
  cas_index_del (&idx, a);
  cas_index_del (&idx, b);
  rcu_read_unlock ();
  cas_index_free_later (killed, 0);
  struct cas_block *both[2] = { a, b };
  cas_index_free_later (both, 2);
  cr_assert_eq (idx.count, 0);
}

Test (index, died_again_restarts_the_wait)
{
  struct cas_block *a = new_block (1, 1, 100);
  struct cas_block *killed[4];
  bool revived;

  add (a);
  cr_assert (cas_block_put (&idx, a, 100));
  cr_assert (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert (revived);
  cr_assert (cas_block_put (&idx, a, 108));     /* listed already: marked */
  cr_assert_eq (listed (a), 1, "a block listed twice");
  cr_assert (cas_block_where (a) & CAS_BLKM_REDIED);
  /* Its first death was 10 s ago, its second 2 s ago: not yet. */
  cr_assert_eq (cas_index_collect_dead (&idx, 110, 10, false, killed, 4), 0);
  cr_assert_eq (listed (a), 1);
  cr_assert_eq (cas_block_where (a) & CAS_BLKM_REDIED, 0);
  cr_assert_eq (cas_index_collect_dead (&idx, 119, 10, false, killed, 4), 0);
  cr_assert_eq (cas_index_collect_dead (&idx, 120, 10, false, killed, 4), 1);
  cr_assert_eq (killed[0], a);
}

Test (index, kill_life_cycle)
{
  struct cas_block *a = new_block (1, 1, 100);
  bool revived;

  add (a);
  cr_assert_not (cas_block_try_kill (a), "killed a block that has a reference");
  cr_assert_eq (cas_block_refs (a), 1);
  cr_assert (cas_block_put (&idx, a, 1));
  cr_assert (cas_block_try_kill (a));
  cr_assert_eq (cas_block_refs (a), CAS_REF_KILLED);
  /* Killed: invisible to look-ups, and get fails. */
  cr_assert_null (lookup (1, 100));
  cr_assert_not (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert_eq (cas_block_refs (a), CAS_REF_KILLED);
  cr_assert_not (cas_block_try_kill (a), "killed twice");

  /* The same content can be stored again while the killed one is still
   * linked; the new block is the one found.
   */
  struct cas_block *again = new_block (1, 2, 100);
  add (again);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (1, 100), again);

  rcu_read_lock ();
  cas_index_del (&idx, a);
  rcu_read_unlock ();
  cas_index_free_later (&a, 1);
  cr_assert_eq (idx.count, 1);
  cr_assert_eq (lookup (1, 100), again);
  rcu_barrier ();               /* a is freed after a grace period */
}

Test (index, revived_block_cannot_be_killed)
{
  struct cas_block *a = new_block (1, 1, 100);
  bool revived;

  add (a);
  cr_assert (cas_block_put (&idx, a, 1));
  cr_assert (cas_block_get (a, CAS_REF_MAX, &revived));
  cr_assert (revived);
  cr_assert_not (cas_block_try_kill (a));
  cr_assert_eq (lookup (1, 100), a);
}

Test (index, quarantine)
{
  struct cas_block *a = new_block (1, 1, 100);

  add (a);
  cr_assert (cas_block_quarantine (a));
  cr_assert_not (cas_block_quarantine (a), "quarantined twice");
  cr_assert (cas_block_quarantined (a));
  cr_assert_null (lookup (1, 100), "a quarantined block must not be used for dedup");
  rcu_read_lock ();
  cr_assert_null (cas_index_lookup (&idx, 1, any, NULL));
  rcu_read_unlock ();

  /* A good copy of the same content is inserted next to it. */
  struct cas_block *good = new_block (1, 2, 100);
  add (good);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (1, 100), good);
}

static int
collect (void *opaque, struct cas_block *b)
{
  uint64_t *mask = opaque;

  cr_assert_lt (b->id, 64);
  cr_assert_eq (*mask & (UINT64_C(1) << b->id), 0, "walk visited block %" PRIu64 " twice", b->id);
  *mask |= UINT64_C(1) << b->id;
  return 0;
}

static int
stop_at_3 (void *opaque, struct cas_block *b)
{
  unsigned *n = opaque;

  return ++*n == 3 ? 42 : 0;
}

Test (index, walk)
{
  uint64_t mask = 0;
  unsigned n = 0;

  cr_assert_eq (cas_index_walk (&idx, collect, &mask), 0);
  cr_assert_eq (mask, 0);
  for (uint64_t i = 0; i < 40; i++)
    add (new_block (i, i, 0));
  cr_assert_eq (cas_index_walk (&idx, collect, &mask), 0);
  cr_assert_eq (mask, (UINT64_C(1) << 40) - 1);
  cr_assert_eq (cas_index_walk (&idx, stop_at_3, &n), 42);
  cr_assert_eq (n, 3, "walk went on after the callback stopped it");
}

Test (index, destroy_frees_every_block)
{
  for (uint64_t i = 0; i < 100; i++)
    add (new_block (i, i + 1, 0));
  cas_index_destroy (&idx, count_free);
  cr_assert_eq (nfreed, 100);
  cr_assert_null (idx.ht);
  /* Destroying again (teardown) is harmless. */
}

Test (index, resize_keeps_every_block)
{
  const uint64_t n = 20000;     /* more than 8 per bucket of the initial 1024 */

  for (uint64_t i = 0; i < n; i++)
    add (new_block (i, i + 1, 0));
  cr_assert_eq (idx.count, n);
  const unsigned long before = idx.buckets;
  cas_index_resize (&idx);
  cr_assert_gt (idx.buckets, before, "%" PRIu64 " blocks in %lu buckets: no resize", n, before);
  cr_assert_geq (idx.buckets, n / 4, "resized to %lu buckets", idx.buckets);
  for (uint64_t i = 0; i < n; i++) {
    struct cas_block *b = lookup (i, 0);
    cr_assert_not_null (b, "block %" PRIu64 " lost by the resize", i);
    cr_assert_eq (b->id, i + 1);
  }
  /* Below the load factor: no change. */
  const unsigned long after = idx.buckets;
  cas_index_resize (&idx);
  cr_assert_eq (idx.buckets, after);
}

/* ---- concurrency ---- */

#define NTHREADS 6
#define NKEYS 64
#define ROUNDS 3000

static pthread_barrier_t barrier;
static pthread_mutex_t add_lock = PTHREAD_MUTEX_INITIALIZER;  /* as jlock in the data path */
static uint64_t next_id = 1;

/* A reference on the block of CONTENT (key CONTENT % 16: four contents per
 * key), stored if absent the way the data path does: look up, and if
 * absent look up again and add under add_lock.
 */
static struct cas_block *
get_or_store (uint32_t content)
{
  const uint64_t key = content % 16;
  struct cas_block *b;
  bool revived;

  for (;;) {
    rcu_read_lock ();
    b = cas_index_lookup (&idx, key, same_content, &content);
    if (b && cas_block_get (b, CAS_REF_MAX, &revived)) {
      rcu_read_unlock ();
      return b;
    }
    rcu_read_unlock ();
    if (b == NULL)
      break;
  }
  struct cas_block *nb = new_block (key, __atomic_fetch_add (&next_id, 1, __ATOMIC_RELAXED),
                                    content);
  SCOPED_LOCK (l, &add_lock);
  rcu_read_lock ();
  b = cas_index_lookup (&idx, key, same_content, &content);
  if (b && cas_block_get (b, CAS_REF_MAX, &revived)) {
    rcu_read_unlock ();
    cas_block_free (nb);        /* lost the race */
    return b;
  }
  cas_index_add (&idx, nb);
  rcu_read_unlock ();
  return nb;
}

/* Each thread takes references on blocks of random contents, storing a
 * new block when none is found (racing with the others), and drops some of
 * them again.  Returns the number of references it still holds per
 * content.
 */
static void *
dedup_worker (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg * 977 + 3;
  uint32_t *held = calloc (NKEYS, sizeof *held);
  struct cas_block **refs = calloc (NKEYS, sizeof *refs);

  pthread_barrier_wait (&barrier);
  for (int r = 0; held && refs && r < ROUNDS; r++) {
    seed = seed * 1103515245u + 12345u;
    const uint32_t content = (seed >> 16) % NKEYS;

    if (held[content] > 0 && (seed & 3) == 0) {
      cas_block_put (&idx, refs[content], 0);
      held[content]--;
      continue;
    }
    struct cas_block *b = get_or_store (content);
    if (refs[content] && refs[content] != b)
      return NULL;              /* two live blocks for one content */
    refs[content] = b;
    held[content]++;
  }
  free (refs);
  return held;
}

static int
sum_refs (void *opaque, struct cas_block *b)
{
  uint64_t *total = opaque;

  *total += cas_block_refs (b);
  return 0;
}

Test (index, concurrent_dedup_one_block_per_content, .timeout = 30)
{
  pthread_t th[NTHREADS];
  uint64_t want[NKEYS] = { 0 }, total = 0, expected = 0;

  pthread_barrier_init (&barrier, NULL, NTHREADS);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, dedup_worker, (void *) (uintptr_t) t), 0);
  for (int t = 0; t < NTHREADS; t++) {
    uint32_t *held;
    pthread_join (th[t], (void **) &held);
    cr_assert_not_null (held, "thread %d saw two live blocks with one content", t);
    for (int k = 0; k < NKEYS; k++)
      want[k] += held[k];
    free (held);
  }
  pthread_barrier_destroy (&barrier);
  /* One block per content (none was ever killed), refcount = references
   * held (a block whose count fell to 0 is dead, not gone).
   */
  cr_assert_eq (idx.count, NKEYS, "%" PRIu64 " blocks for %d contents", idx.count, NKEYS);
  for (int k = 0; k < NKEYS; k++) {
    struct cas_block *b = lookup (k % 16, k);
    cr_assert_not_null (b);
    cr_assert_eq (cas_block_refs (b), want[k],
                  "content %d: refcount %" PRIu32 ", %" PRIu64 " references held",
                  k, cas_block_refs (b), want[k]);
    expected += want[k];
  }
  cas_index_walk (&idx, sum_refs, &total);
  cr_assert_eq (total, expected);
}

/* Getters race with a killer on dead blocks: a block is either killed and
 * nobody got it, or alive and its count is exactly the successful gets.
 */
#define NRACE 2000
static struct cas_block *race[NRACE];
static uint32_t race_gets[NRACE];
static bool race_killed[NRACE];

static void *
getter (void *arg)
{
  pthread_barrier_wait (&barrier);
  for (int i = 0; i < NRACE; i++) {
    bool revived;
    uint32_t content = i;
    rcu_read_lock ();
    struct cas_block *b = cas_index_lookup (&idx, i, same_content, &content);
    if (b) {
      if (b != race[i])
        abort ();
      if (cas_block_get (b, CAS_REF_MAX, &revived))
        __atomic_add_fetch (&race_gets[i], 1, __ATOMIC_RELAXED);
    }
    rcu_read_unlock ();
  }
  return NULL;
}

static void *
killer (void *arg)
{
  pthread_barrier_wait (&barrier);
  for (int i = NRACE - 1; i >= 0; i--)
    if (cas_block_try_kill (race[i])) {
      race_killed[i] = true;
      rcu_read_lock ();
      cas_index_del (&idx, race[i]);
      rcu_read_unlock ();
      cas_index_free_later (&race[i], 1);
    }
  return NULL;
}

Test (index, concurrent_get_versus_kill, .timeout = 30)
{
  pthread_t th[4];

  for (int i = 0; i < NRACE; i++) {
    race[i] = new_block (i, i + 1, i);
    race[i]->refcount = 0;      /* dead: the GC may kill it */
    add (race[i]);
  }
  pthread_barrier_init (&barrier, NULL, 4);
  for (int t = 0; t < 3; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, getter, NULL), 0);
  cr_assert_eq (pthread_create (&th[3], NULL, killer, NULL), 0);
  for (int t = 0; t < 4; t++)
    pthread_join (th[t], NULL);
  pthread_barrier_destroy (&barrier);

  uint64_t alive = 0;
  for (int i = 0; i < NRACE; i++) {
    if (race_killed[i])         /* race[i] is freed (or about to be) */
      cr_assert_eq (race_gets[i], 0, "block %d was killed after %u gets", i, race_gets[i]);
    else {
      cr_assert_gt (race_gets[i], 0, "block %d survived the killer with no get", i);
      cr_assert_eq (cas_block_refs (race[i]), race_gets[i]);
      cr_assert_eq (lookup (i, i), race[i]);
      alive++;
    }
  }
  cr_assert_eq (idx.count, alive);
  rcu_barrier ();
}

#define NCHURN 8
#define CHURN_OPS 20000
static struct cas_block *churn[NCHURN];
static bool churn_dead[NCHURN];         /* killed (collector thread only) */
static unsigned churners_done;          /* atomic */

static void *
churner (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg * 7919 + 1;
  uint32_t *held = calloc (NCHURN, sizeof *held);

  pthread_barrier_wait (&barrier);
  for (int r = 0; held && r < CHURN_OPS; r++) {
    seed = seed * 1103515245u + 12345u;
    const unsigned k = (seed >> 16) % NCHURN;
    bool revived;
    if (held[k] > 0) {          /* at most one reference each: blocks keep dying */
      cas_block_put (&idx, churn[k], 0);
      held[k]--;
    }
    else {
      uint32_t content = k;
      rcu_read_lock ();
      struct cas_block *b = cas_index_lookup (&idx, k, same_content, &content);
      if (b && b != churn[k])
        abort ();
      if (b && cas_block_get (b, CAS_REF_MAX, &revived))
        held[k]++;
      rcu_read_unlock ();
    }
  }
  __atomic_add_fetch (&churners_done, 1, __ATOMIC_RELEASE);
  return held;
}

/* One GC pass (kill everything dead: force, no delay); returns the kills. */
static uint64_t
collect_churn (void)
{
  struct cas_block *killed[NCHURN];
  const size_t n = cas_index_collect_dead (&idx, 0, 0, true, killed, NCHURN);

  for (size_t i = 0; i < n; i++) {
    int k = -1;
    for (int j = 0; j < NCHURN; j++)
      if (churn[j] == killed[i])
        k = j;
    cr_assert_geq (k, 0);
    cr_assert_not (churn_dead[k], "block %d killed twice", k);
    cr_assert_eq (cas_block_refs (killed[i]), CAS_REF_KILLED);
    churn_dead[k] = true;
    rcu_read_lock ();
    cas_index_del (&idx, killed[i]);
    rcu_read_unlock ();
  }
  cas_index_free_later (killed, n);
  return n;
}

/* Puts, gets and the GC race on a few blocks: every block the GC kills had
 * no reference left and is never touched again, no block is listed twice
 * or killed twice, and once the users stop, every block nobody holds is
 * killed (ASan catches a use after free; the dead list's asserts catch a
 * stale entry).
 */
Test (index, concurrent_puts_and_gc, .timeout = 30)
{
  pthread_t th[3];
  uint64_t kills = 0, passes = 0;
  uint32_t held_total[NCHURN] = { 0 };

  for (int i = 0; i < NCHURN; i++) {
    churn[i] = new_block (i, i + 1, i);
    add (churn[i]);
    cr_assert (cas_block_put (&idx, churn[i], 0));   /* dead, listed */
  }
  churners_done = 0;
  pthread_barrier_init (&barrier, NULL, 4);
  for (int t = 0; t < 3; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, churner, (void *) (uintptr_t) t), 0);
  pthread_barrier_wait (&barrier);
  while (__atomic_load_n (&churners_done, __ATOMIC_ACQUIRE) < 3) {
    kills += collect_churn ();
    passes++;
  }
  for (int t = 0; t < 3; t++) {
    uint32_t *held;
    pthread_join (th[t], (void **) &held);
    cr_assert_not_null (held);
    for (int k = 0; k < NCHURN; k++) {
      cr_assert (held[k] == 0 || !churn_dead[k], "a reference on killed block %d", k);
      held_total[k] += held[k];
    }
    free (held);
  }
  pthread_barrier_destroy (&barrier);
  /* Quiet now: one pass clears the "died again" marks, the next kills. */
  kills += collect_churn ();
  kills += collect_churn ();
  for (int k = 0; k < NCHURN; k++) {
    if (held_total[k] == 0)
      cr_assert (churn_dead[k], "block %d: no reference left, not killed (%" PRIu64
                 " passes during the churn)", k, passes);
    else
      cr_assert_eq (cas_block_refs (churn[k]), held_total[k]);
  }
  cr_assert_eq (cas_index_dead_listed (&idx), 0, "entries left for live blocks");
  cr_assert_eq (idx.count, NCHURN - kills);
  rcu_barrier ();
}

/* Readers look blocks up and read their fields while a writer kills and
 * deletes them: RCU must keep every block readable until the readers
 * leave their read-side sections (ASan catches a use after free).
 */
static volatile bool stop_readers;

static void *
reader (void *arg)
{
  uint64_t seen = 0;

  while (!__atomic_load_n (&stop_readers, __ATOMIC_ACQUIRE))
    for (uint64_t k = 0; k < 256; k++) {
      rcu_read_lock ();
      struct cas_block *b = cas_index_lookup (&idx, k, any, NULL);
      if (b) {
        if (b->key != k)
          abort ();
        seen += b->id;
      }
      rcu_read_unlock ();
    }
  return (void *) (uintptr_t) seen;
}

Test (index, concurrent_readers_and_deletes, .timeout = 30)
{
  pthread_t th[3];

  for (uint64_t k = 0; k < 256; k++)
    add (new_block (k, k + 1, k));
  stop_readers = false;
  for (int t = 0; t < 3; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, reader, NULL), 0);
  /* Replace every block a few times: kill + delete the old, add a new. */
  for (int round = 0; round < 20; round++)
    for (uint64_t k = 0; k < 256; k++) {
      struct cas_block *old = lookup (k, k);
      cr_assert_not_null (old);
      cr_assert (cas_block_put (&idx, old, 1));
      struct cas_block *killed[1];
      cr_assert_eq (cas_index_collect_dead (&idx, 1, 0, true, killed, 1), 1);
      cr_assert_eq (killed[0], old);
      add (new_block (k, k + 1, k));
      rcu_read_lock ();
      cas_index_del (&idx, old);
      rcu_read_unlock ();
      cas_index_free_later (&old, 1);
    }
  __atomic_store_n (&stop_readers, true, __ATOMIC_RELEASE);
  for (int t = 0; t < 3; t++)
    pthread_join (th[t], NULL);
  cr_assert_eq (idx.count, 256);
  for (uint64_t k = 0; k < 256; k++)
    cr_assert_not_null (lookup (k, k));
  rcu_barrier ();
}
