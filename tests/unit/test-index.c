/* Unit tests for index.c: dedup by hash (add_unique), look-ups, the block
 * life cycle (get / put / try_kill / revive / del), quarantine, walk,
 * resize, and concurrent users under RCU.
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
#include "index.h"

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
  free (b);
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

/* A block whose hash is SHA-256 of the 8-byte little-endian KEY. */
static struct cas_hash
hash_of (uint64_t key)
{
  struct cas_hash h;
  uint8_t buf[8];

  for (int i = 0; i < 8; i++)
    buf[i] = key >> (8 * i);
  cr_assert_eq (cas_hash_block (buf, sizeof buf, &h), 0);
  return h;
}

static struct cas_block *
new_block (uint64_t key, uint64_t id)
{
  struct cas_block *b = calloc (1, sizeof *b);

  cr_assert_not_null (b);
  b->hash = hash_of (key);
  b->id = id;
  b->refcount = 1;
  return b;
}

static struct cas_block *
add (struct cas_block *b)
{
  rcu_read_lock ();
  struct cas_block *got = cas_index_add_unique (&idx, b);
  rcu_read_unlock ();
  return got;
}

static struct cas_block *
lookup (uint64_t key)
{
  const struct cas_hash h = hash_of (key);

  rcu_read_lock ();
  struct cas_block *b = cas_index_lookup (&idx, &h);
  rcu_read_unlock ();
  return b;
}

Test (index, add_and_lookup)
{
  struct cas_block *a = new_block (1, 10), *b = new_block (2, 20);

  cr_assert_null (lookup (1));
  cr_assert_eq (add (a), a);
  cr_assert_eq (add (b), b);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (1), a);
  cr_assert_eq (lookup (2), b);
  cr_assert_null (lookup (3));
}

Test (index, add_unique_dedups_same_hash)
{
  struct cas_block *a = new_block (7, 1), *dup = new_block (7, 2);

  cr_assert_eq (add (a), a);
  cr_assert_eq (add (dup), a, "a second block with the same hash was inserted");
  cr_assert_eq (idx.count, 1);
  cr_assert_eq (lookup (7), a);
  free (dup);                   /* never linked: the caller's to free */
}

Test (index, same_key_different_hash)
{
  /* Two hashes with the same first 8 bytes land on the same table key
   * but are different blocks.
   */
  struct cas_block *a = new_block (1, 1), *b = new_block (1, 2);

  b->hash.b[31] ^= 1;
  cr_assert_eq (cas_hash_key (&a->hash), cas_hash_key (&b->hash));
  cr_assert_eq (add (a), a);
  cr_assert_eq (add (b), b);
  cr_assert_eq (idx.count, 2);

  rcu_read_lock ();
  cr_assert_eq (cas_index_lookup (&idx, &a->hash), a);
  cr_assert_eq (cas_index_lookup (&idx, &b->hash), b);
  struct cas_hash other = a->hash;
  other.b[20] ^= 0x80;
  cr_assert_null (cas_index_lookup (&idx, &other));
  rcu_read_unlock ();
}

Test (index, get_put_counts_and_revives)
{
  struct cas_block *a = new_block (1, 1);
  bool revived = true;

  add (a);
  cr_assert_eq (cas_block_refs (a), 1);
  cr_assert (cas_block_get (a, &revived));
  cr_assert_not (revived);
  cr_assert_eq (cas_block_refs (a), 2);
  cr_assert_not (cas_block_put (a, 5, 100), "put of 2 -> 1 reported the last reference");
  cr_assert (cas_block_put (a, 9, 200), "put of 1 -> 0 did not report the last reference");
  cr_assert_eq (cas_block_refs (a), 0);
  cr_assert_eq (a->dead_seq, 9);
  cr_assert_eq (a->dead_since, 200);
  /* A dead block is still found by dedup, and a get revives it. */
  cr_assert_eq (lookup (1), a);
  cr_assert (cas_block_get (a, &revived));
  cr_assert (revived, "a get of a dead block must report the revival");
  cr_assert_eq (cas_block_refs (a), 1);
}

Test (index, put_records_the_latest_death)
{
  struct cas_block *a = new_block (1, 1);
  bool revived;

  add (a);
  cr_assert (cas_block_put (a, 50, 1000));
  cr_assert (cas_block_get (a, &revived));
  /* Puts may race and arrive out of order: the highest seq and time win. */
  cr_assert (cas_block_put (a, 20, 500));
  cr_assert_eq (a->dead_seq, 50);
  cr_assert_eq (a->dead_since, 1000);
  cr_assert (cas_block_get (a, &revived));
  cr_assert (cas_block_put (a, 70, 2000));
  cr_assert_eq (a->dead_seq, 70);
  cr_assert_eq (a->dead_since, 2000);
}

Test (index, kill_life_cycle)
{
  struct cas_block *a = new_block (1, 1);
  bool revived;

  add (a);
  cr_assert_not (cas_block_try_kill (a), "killed a block that has a reference");
  cr_assert_eq (cas_block_refs (a), 1);
  cr_assert (cas_block_put (a, 1, 1));
  cr_assert (cas_block_try_kill (a));
  cr_assert_eq (cas_block_refs (a), CAS_REF_KILLED);
  /* Killed: invisible to look-ups, and get fails. */
  cr_assert_null (lookup (1));
  cr_assert_not (cas_block_get (a, &revived));
  cr_assert_eq (cas_block_refs (a), CAS_REF_KILLED);
  cr_assert_not (cas_block_try_kill (a), "killed twice");

  /* The same content can be stored again while the killed one is still
   * linked; the new block is the one found.
   */
  struct cas_block *again = new_block (1, 2);
  cr_assert_eq (add (again), again);
  cr_assert_eq (idx.count, 2);
  cr_assert_eq (lookup (1), again);

  rcu_read_lock ();
  cas_index_del (&idx, a);
  rcu_read_unlock ();
  cr_assert_eq (idx.count, 1);
  cr_assert_eq (lookup (1), again);
  rcu_barrier ();               /* a is freed after a grace period */
}

Test (index, revived_block_cannot_be_killed)
{
  struct cas_block *a = new_block (1, 1);
  bool revived;

  add (a);
  cr_assert (cas_block_put (a, 1, 1));
  cr_assert (cas_block_get (a, &revived));
  cr_assert (revived);
  cr_assert_not (cas_block_try_kill (a));
  cr_assert_eq (lookup (1), a);
}

Test (index, quarantine)
{
  struct cas_block *a = new_block (1, 1);

  add (a);
  cr_assert (cas_block_quarantine (a));
  cr_assert_not (cas_block_quarantine (a), "quarantined twice");
  cr_assert (cas_block_quarantined (a));
  cr_assert_null (lookup (1), "a quarantined block must not be used for dedup");

  /* A good copy of the same content is inserted next to it. */
  struct cas_block *good = new_block (1, 2);
  cr_assert_eq (add (good), good);
  cr_assert_eq (lookup (1), good);

  /* A quarantined block is inserted even when a live copy exists. */
  struct cas_block *q = new_block (1, 3);
  q->flags = CAS_BLK_QUARANTINED;
  cr_assert_eq (add (q), q);
  cr_assert_eq (idx.count, 3);
  cr_assert_eq (lookup (1), good);
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
    add (new_block (i, i));
  cr_assert_eq (cas_index_walk (&idx, collect, &mask), 0);
  cr_assert_eq (mask, (UINT64_C(1) << 40) - 1);
  cr_assert_eq (cas_index_walk (&idx, stop_at_3, &n), 42);
  cr_assert_eq (n, 3, "walk went on after the callback stopped it");
}

Test (index, destroy_frees_every_block)
{
  for (uint64_t i = 0; i < 100; i++)
    add (new_block (i, i + 1));
  cas_index_destroy (&idx, count_free);
  cr_assert_eq (nfreed, 100);
  cr_assert_null (idx.ht);
  /* Destroying again (teardown) is harmless. */
}

Test (index, resize_keeps_every_block)
{
  const uint64_t n = 20000;     /* more than 8 per bucket of the initial 1024 */

  for (uint64_t i = 0; i < n; i++)
    cr_assert_neq (add (new_block (i, i + 1)), NULL);
  cr_assert_eq (idx.count, n);
  const unsigned long before = idx.buckets;
  cas_index_resize (&idx);
  cr_assert_gt (idx.buckets, before, "%" PRIu64 " blocks in %lu buckets: no resize", n, before);
  cr_assert_geq (idx.buckets, n / 2, "resized to %lu buckets", idx.buckets);
  for (uint64_t i = 0; i < n; i++) {
    struct cas_block *b = lookup (i);
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
static uint64_t next_id = 1;

/* Each thread takes references on blocks of random keys, storing a new
 * block when none is found (racing with the others), and drops some of
 * them again.  Returns the number of references it still holds per key.
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
    const uint64_t key = (seed >> 16) % NKEYS;
    const struct cas_hash h = hash_of (key);
    bool revived;

    if (held[key] > 0 && (seed & 3) == 0) {
      cas_block_put (refs[key], r, 0);
      held[key]--;
      continue;
    }
    for (;;) {
      rcu_read_lock ();
      struct cas_block *b = cas_index_lookup (&idx, &h);
      if (b && cas_block_get (b, &revived)) {
        rcu_read_unlock ();
        if (refs[key] && refs[key] != b)
          return NULL;          /* two live blocks for one key */
        refs[key] = b;
        held[key]++;
        break;
      }
      if (b == NULL) {
        struct cas_block *nb = calloc (1, sizeof *nb);
        nb->hash = h;
        nb->id = __atomic_fetch_add (&next_id, 1, __ATOMIC_RELAXED);
        nb->refcount = 1;
        struct cas_block *got = cas_index_add_unique (&idx, nb);
        rcu_read_unlock ();
        if (got == nb) {
          if (refs[key] && refs[key] != nb)
            return NULL;
          refs[key] = nb;
          held[key]++;
          break;
        }
        free (nb);              /* lost the race: look it up again */
        continue;
      }
      rcu_read_unlock ();
    }
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

Test (index, concurrent_dedup_one_block_per_hash, .timeout = 30)
{
  pthread_t th[NTHREADS];
  uint64_t want[NKEYS] = { 0 }, total = 0, expected = 0;

  pthread_barrier_init (&barrier, NULL, NTHREADS);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, dedup_worker, (void *) (uintptr_t) t), 0);
  for (int t = 0; t < NTHREADS; t++) {
    uint32_t *held;
    pthread_join (th[t], (void **) &held);
    cr_assert_not_null (held, "thread %d saw two live blocks with one hash", t);
    for (int k = 0; k < NKEYS; k++)
      want[k] += held[k];
    free (held);
  }
  pthread_barrier_destroy (&barrier);
  /* One block per key (none was ever killed), refcount = references held
   * (a block whose count fell to 0 is dead, not gone).
   */
  cr_assert_eq (idx.count, NKEYS, "%" PRIu64 " blocks for %d keys", idx.count, NKEYS);
  for (int k = 0; k < NKEYS; k++) {
    struct cas_block *b = lookup (k);
    cr_assert_not_null (b);
    /* The creator's reference is counted in held[] too. */
    cr_assert_eq (cas_block_refs (b), want[k],
                  "key %d: refcount %" PRIu32 ", %" PRIu64 " references held",
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
static struct cas_hash race_hash[NRACE];  /* race[i] may be freed: keep its hash */
static uint32_t race_gets[NRACE];
static bool race_killed[NRACE];

static void *
getter (void *arg)
{
  pthread_barrier_wait (&barrier);
  for (int i = 0; i < NRACE; i++) {
    bool revived;
    rcu_read_lock ();
    struct cas_block *b = cas_index_lookup (&idx, &race_hash[i]);
    if (b) {
      if (b != race[i])
        abort ();
      if (cas_block_get (b, &revived))
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
    }
  return NULL;
}

Test (index, concurrent_get_versus_kill, .timeout = 30)
{
  pthread_t th[4];

  for (int i = 0; i < NRACE; i++) {
    race[i] = new_block (i, i + 1);
    race[i]->refcount = 0;      /* dead: the GC may kill it */
    race_hash[i] = race[i]->hash;
    cr_assert_eq (add (race[i]), race[i]);
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
      cr_assert_eq (lookup (i), race[i]);
      alive++;
    }
  }
  cr_assert_eq (idx.count, alive);
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
      const struct cas_hash h = hash_of (k);
      rcu_read_lock ();
      struct cas_block *b = cas_index_lookup (&idx, &h);
      if (b) {
        if (memcmp (&b->hash, &h, sizeof h) != 0)
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
    add (new_block (k, k + 1));
  stop_readers = false;
  for (int t = 0; t < 3; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, reader, NULL), 0);
  /* Replace every block a few times: kill + delete the old, add a new. */
  for (int round = 0; round < 20; round++)
    for (uint64_t k = 0; k < 256; k++) {
      struct cas_block *old = lookup (k);
      cr_assert_not_null (old);
      cr_assert (cas_block_put (old, 1, 1));
      cr_assert (cas_block_try_kill (old));
      struct cas_block *nb = new_block (k, k + 1);
      cr_assert_eq (add (nb), nb);
      rcu_read_lock ();
      cas_index_del (&idx, old);
      rcu_read_unlock ();
    }
  __atomic_store_n (&stop_readers, true, __ATOMIC_RELEASE);
  for (int t = 0; t < 3; t++)
    pthread_join (th[t], NULL);
  cr_assert_eq (idx.count, 256);
  for (uint64_t k = 0; k < 256; k++)
    cr_assert_not_null (lookup (k));
  rcu_barrier ();
}
