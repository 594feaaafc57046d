/* The piece-table cache (ptcache.h). */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storage/ptcache.h"

#define WORDS (CAS_PTCACHE_PIECES / 2)  /* two u32 entries per u64 word */

struct slot {
  uint64_t seq;                 /* odd while a writer fills the slot */
  uint64_t id;                  /* 0 = empty (block ids start at 1) */
  uint64_t w[WORDS];            /* the table, as on disk, 8 bytes a word */
};

struct cas_ptcache {
  size_t mask;
  uint64_t hits, misses;        /* atomic, relaxed: statistics only */
  struct slot *slots;
};

struct cas_ptcache *
cas_ptcache_new (size_t nslots)
{
  assert (nslots && !(nslots & (nslots - 1)));
  struct cas_ptcache *c = calloc (1, sizeof *c);
  if (c == NULL || (c->slots = calloc (nslots, sizeof *c->slots)) == NULL) {
    free (c);
    errno = ENOMEM;
    return NULL;
  }
  c->mask = nslots - 1;
  return c;
}

void
cas_ptcache_free (struct cas_ptcache *c)
{
  if (c) {
    free (c->slots);
    free (c);
  }
}

static struct slot *
slot_of (struct cas_ptcache *c, uint64_t id)
{
  /* Consecutive ids (a sequential write) land in consecutive slots. */
  return &c->slots[id & c->mask];
}

bool
cas_ptcache_get (struct cas_ptcache *c, uint64_t id, uint32_t first, uint32_t n,
                 uint8_t *out)
{
  struct slot *s = slot_of (c, id);
  uint64_t w[WORDS];

  assert (first + n <= CAS_PTCACHE_PIECES);
  const uint64_t seq = __atomic_load_n (&s->seq, __ATOMIC_ACQUIRE);
  bool hit = id != 0 && !(seq & 1) && __atomic_load_n (&s->id, __ATOMIC_RELAXED) == id;
  if (hit) {
    for (int i = 0; i < WORDS; i++)
      w[i] = __atomic_load_n (&s->w[i], __ATOMIC_RELAXED);
    __atomic_thread_fence (__ATOMIC_ACQUIRE);
    hit = __atomic_load_n (&s->seq, __ATOMIC_RELAXED) == seq;
  }
  __atomic_add_fetch (hit ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
  if (hit)
    memcpy (out, (const uint8_t *) w + 4 * first, 4 * n);
  return hit;
}

void
cas_ptcache_put (struct cas_ptcache *c, uint64_t id, const uint8_t *table, uint32_t npieces)
{
  struct slot *s = slot_of (c, id);
  uint64_t w[WORDS] = { 0 };

  assert (npieces <= CAS_PTCACHE_PIECES);
  if (id == 0)
    return;                     /* 0 marks an empty slot */
  memcpy (w, table, 4 * npieces);
  uint64_t seq = __atomic_load_n (&s->seq, __ATOMIC_RELAXED);
  if ((seq & 1) ||
      !__atomic_compare_exchange_n (&s->seq, &seq, seq + 1, false,
                                    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return;                     /* another writer is filling it: skip */
  /* The odd sequence number is visible before any word changes. */
  __atomic_thread_fence (__ATOMIC_RELEASE);
  __atomic_store_n (&s->id, id, __ATOMIC_RELAXED);
  for (int i = 0; i < WORDS; i++)
    __atomic_store_n (&s->w[i], w[i], __ATOMIC_RELAXED);
  __atomic_store_n (&s->seq, seq + 2, __ATOMIC_RELEASE);
}

void
cas_ptcache_stats (struct cas_ptcache *c, struct cas_ptcache_stats *st)
{
  st->hits = __atomic_load_n (&c->hits, __ATOMIC_RELAXED);
  st->misses = __atomic_load_n (&c->misses, __ATOMIC_RELAXED);
}
