/* The block cache of direct-I/O mode: sharded, least recently used out.
 *
 * SHARDS shards, a block's shard chosen by a hash of its id.  Each shard
 * is a chained hash table and a doubly linked LRU list under one mutex,
 * with a fixed number of entries; an entry is a header and the block's
 * bytes in one allocation, reused for the next block when evicted.  A
 * hit copies the wanted bytes out under the shard's mutex (at most one
 * block, a few microseconds); the mutexes are leaves.
 */
#include <config.h>

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "storage/bcache.h"
#include "util/log.h"

#define SHARDS 16

struct entry {
  uint64_t id;
  struct entry *chain;          /* next in the bucket */
  struct entry *newer, *older;  /* LRU list */
  uint8_t data[];               /* block_size bytes */
};

struct shard {
  pthread_mutex_t lock;         /* guards everything below */
  struct entry **buckets;       /* nbuckets chains */
  struct entry *newest, *oldest;
  uint64_t n, cap;              /* entries held, at most */
  uint64_t hits, misses;
};

struct cas_bcache {
  uint32_t block_size;
  uint32_t nbuckets;            /* per shard, a power of two */
  struct shard shard[SHARDS];
};

static inline uint64_t
mix (uint64_t id)
{
  return id * UINT64_C(0x9e3779b97f4a7c15);
}

static struct shard *
shard_of (struct cas_bcache *c, uint64_t id)
{
  return &c->shard[mix (id) >> 60];   /* top 4 bits: 16 shards */
}

static struct entry **
bucket_of (struct cas_bcache *c, struct shard *sh, uint64_t id)
{
  return &sh->buckets[(mix (id) >> 20) & (c->nbuckets - 1)];
}

struct cas_bcache *
cas_bcache_new (uint64_t bytes, uint32_t block_size)
{
  struct cas_bcache *c = calloc (1, sizeof *c);
  uint64_t per = bytes / block_size / SHARDS;

  if (c == NULL) {
    cas_error ("cache: %m");
    return NULL;
  }
  if (per == 0)
    per = 1;
  c->block_size = block_size;
  c->nbuckets = 1;
  while (c->nbuckets < per && c->nbuckets < (1u << 30))
    c->nbuckets <<= 1;
  for (int i = 0; i < SHARDS; i++) {
    struct shard *sh = &c->shard[i];
    pthread_mutex_init (&sh->lock, NULL);
    sh->cap = per;
    sh->buckets = calloc (c->nbuckets, sizeof *sh->buckets);
    if (sh->buckets == NULL) {
      cas_error ("cache: %m");
      cas_bcache_free (c);
      return NULL;
    }
  }
  return c;
}

void
cas_bcache_free (struct cas_bcache *c)
{
  if (c == NULL)
    return;
  for (int i = 0; i < SHARDS; i++) {
    struct shard *sh = &c->shard[i];
    for (struct entry *e = sh->newest, *next; e; e = next) {
      next = e->older;
      free (e);
    }
    free (sh->buckets);
    pthread_mutex_destroy (&sh->lock);
  }
  free (c);
}

/* Shard locked.  Unlink E from the LRU list. */
static void
lru_unlink (struct shard *sh, struct entry *e)
{
  if (e->newer)
    e->newer->older = e->older;
  else
    sh->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    sh->oldest = e->newer;
}

/* Shard locked.  Make E the newest. */
static void
lru_push (struct shard *sh, struct entry *e)
{
  e->newer = NULL;
  e->older = sh->newest;
  if (sh->newest)
    sh->newest->newer = e;
  sh->newest = e;
  if (sh->oldest == NULL)
    sh->oldest = e;
}

/* Shard locked.  The entry of ID, or NULL. */
static struct entry *
find (struct cas_bcache *c, struct shard *sh, uint64_t id)
{
  for (struct entry *e = *bucket_of (c, sh, id); e; e = e->chain)
    if (e->id == id)
      return e;
  return NULL;
}

bool
cas_bcache_get (struct cas_bcache *c, uint64_t id, void *out, uint32_t boff, uint32_t n)
{
  struct shard *sh = shard_of (c, id);

  assert (boff + n <= c->block_size);
  pthread_mutex_lock (&sh->lock);
  struct entry *e = find (c, sh, id);
  if (e) {
    memcpy (out, e->data + boff, n);
    lru_unlink (sh, e);
    lru_push (sh, e);
    sh->hits++;
  }
  else
    sh->misses++;
  pthread_mutex_unlock (&sh->lock);
  return e != NULL;
}

void
cas_bcache_put (struct cas_bcache *c, uint64_t id, const void *content)
{
  struct shard *sh = shard_of (c, id);

  pthread_mutex_lock (&sh->lock);
  struct entry *e = find (c, sh, id);
  if (e) {                      /* content never changes: only refresh */
    lru_unlink (sh, e);
    lru_push (sh, e);
    pthread_mutex_unlock (&sh->lock);
    return;
  }
  if (sh->n < sh->cap) {
    e = malloc (sizeof *e + c->block_size);
    if (e == NULL) {
      pthread_mutex_unlock (&sh->lock);
      return;
    }
    sh->n++;
  }
  else {
    /* Evict the oldest and reuse its memory. */
    e = sh->oldest;
    assert (e);
    lru_unlink (sh, e);
    struct entry **pp = bucket_of (c, sh, e->id);
    while (*pp != e)
      pp = &(*pp)->chain;
    *pp = e->chain;
  }
  e->id = id;
  memcpy (e->data, content, c->block_size);
  struct entry **b = bucket_of (c, sh, id);
  e->chain = *b;
  *b = e;
  lru_push (sh, e);
  pthread_mutex_unlock (&sh->lock);
}

void
cas_bcache_stats (struct cas_bcache *c, struct cas_bcache_stats *st)
{
  memset (st, 0, sizeof *st);
  for (int i = 0; i < SHARDS; i++) {
    struct shard *sh = &c->shard[i];
    pthread_mutex_lock (&sh->lock);
    st->hits += sh->hits;
    st->misses += sh->misses;
    st->entries += sh->n;
    st->capacity += sh->cap;
    pthread_mutex_unlock (&sh->lock);
  }
}
