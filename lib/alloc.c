/* Space allocator: exact-size free lists plus a list of large extents. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "alloc.h"
#include "format.h"
#include "log.h"
#include "util.h"

/* A growable array of extents, used as a stack. */
struct cas_extent_list {
  struct cas_extent *v;
  size_t n, cap;
};

static int
push (struct cas_extent_list *l, uint64_t off, uint64_t len, uint64_t tag)
{
  if (l->n == l->cap) {
    const size_t cap = l->cap ? 2 * l->cap : 16;
    struct cas_extent *v = realloc (l->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (struct cas_extent) { .off = off, .len = len, .tag = tag };
  return 0;
}

int
cas_alloc_init (struct cas_alloc *a, uint32_t max_block_len)
{
  memset (a, 0, sizeof *a);
  a->small_max = round_up (max_block_len, CAS_GRANULE) / CAS_GRANULE;
  a->small = calloc (a->small_max + 1, sizeof *a->small);
  a->large = calloc (1, sizeof *a->large);
  a->pending = calloc (1, sizeof *a->pending);
  if (!a->small || !a->large || !a->pending) {
    cas_alloc_destroy (a);
    errno = ENOMEM;
    cas_error ("allocator: %m");
    return -1;
  }
  pthread_mutex_init (&a->lock, NULL);
  return 0;
}

void
cas_alloc_destroy (struct cas_alloc *a)
{
  if (a->small)
    for (uint32_t i = 0; i <= a->small_max; i++)
      free (a->small[i].v);
  free (a->small);
  if (a->large)
    free (a->large->v);
  free (a->large);
  if (a->pending)
    free (a->pending->v);
  free (a->pending);
  a->small = a->large = a->pending = NULL;
}

/* Put a free extent on its list.  Call with the lock held.  Running out of
 * memory here only leaks the extent until the next open rebuilds the lists.
 */
static void
put_free (struct cas_alloc *a, uint64_t off, uint64_t len)
{
  const uint64_t g = len / CAS_GRANULE;

  assert (len > 0 && len % CAS_GRANULE == 0 && off % CAS_GRANULE == 0);
  assert (off + len <= a->end);
  /* Space at the very end shrinks the allocated end instead. */
  if (off + len == a->end) {
    a->end = off;
    return;
  }
  if (push (g <= a->small_max ? &a->small[g] : a->large, off, len, 0) == 0)
    a->free_bytes += len;
}

int
cas_alloc_rebuild (struct cas_alloc *a, const struct cas_extent *used, size_t n)
{
  SCOPED_LOCK (l, &a->lock);
  uint64_t pos = 0;

  for (size_t i = 0; i < n; i++) {
    if (used[i].off < pos) {
      errno = EINVAL;
      cas_error ("allocator: extent at %" PRIu64 " overlaps the one before", used[i].off);
      return -1;
    }
    pos = used[i].off + round_up (used[i].len, CAS_GRANULE);
  }
  a->end = pos;
  pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (used[i].off > pos)
      put_free (a, pos, used[i].off - pos);
    pos = used[i].off + round_up (used[i].len, CAS_GRANULE);
  }
  return 0;
}

int
cas_alloc_get (struct cas_alloc *a, uint64_t len, uint64_t *off)
{
  SCOPED_LOCK (l, &a->lock);
  const uint64_t g = round_up (len, CAS_GRANULE) / CAS_GRANULE;
  struct cas_extent_list *from = NULL;
  size_t best = 0;

  assert (g > 0);
  /* Exact fit, then the smallest larger small extent. */
  for (uint64_t k = g; k <= a->small_max && from == NULL; k++)
    if (a->small[k].n > 0) {
      from = &a->small[k];
      best = from->n - 1;
    }
  /* Then the smallest large extent that fits. */
  if (from == NULL)
    for (size_t i = 0; i < a->large->n; i++)
      if (a->large->v[i].len >= g * CAS_GRANULE &&
          (from == NULL || a->large->v[i].len < a->large->v[best].len)) {
        from = a->large;
        best = i;
      }
  if (from == NULL) {
    *off = a->end;
    a->end += g * CAS_GRANULE;
    return 0;
  }
  const struct cas_extent e = from->v[best];
  from->v[best] = from->v[--from->n];
  a->free_bytes -= e.len;
  *off = e.off;
  if (e.len > g * CAS_GRANULE)
    put_free (a, e.off + g * CAS_GRANULE, e.len - g * CAS_GRANULE);
  return 0;
}

int
cas_alloc_get_below (struct cas_alloc *a, uint64_t len, uint64_t limit, uint64_t *off)
{
  SCOPED_LOCK (l, &a->lock);
  const uint64_t need = round_up (len, CAS_GRANULE), g = need / CAS_GRANULE;
  struct cas_extent_list *from = NULL;
  size_t best = 0;

  /* The lowest extent that fits, so blocks move as far forward as they can. */
  for (uint64_t k = g; k <= a->small_max; k++)
    for (size_t i = 0; i < a->small[k].n; i++)
      if (a->small[k].v[i].off + need <= limit &&
          (from == NULL || a->small[k].v[i].off < from->v[best].off)) {
        from = &a->small[k];
        best = i;
      }
  for (size_t i = 0; i < a->large->n; i++)
    if (a->large->v[i].len >= need && a->large->v[i].off + need <= limit &&
        (from == NULL || a->large->v[i].off < from->v[best].off)) {
      from = a->large;
      best = i;
    }
  if (from == NULL)
    return -1;
  const struct cas_extent e = from->v[best];
  from->v[best] = from->v[--from->n];
  a->free_bytes -= e.len;
  *off = e.off;
  if (e.len > need)
    put_free (a, e.off + need, e.len - need);
  return 0;
}

static int
cmp_off (const void *x, const void *y)
{
  const struct cas_extent *a = x, *b = y;
  return a->off < b->off ? -1 : a->off > b->off;
}

void
cas_alloc_coalesce (struct cas_alloc *a)
{
  SCOPED_LOCK (l, &a->lock);
  struct cas_extent_list all = { 0 };

  for (uint32_t k = 0; k <= a->small_max; k++)
    for (size_t i = 0; i < a->small[k].n; i++)
      if (push (&all, a->small[k].v[i].off, a->small[k].v[i].len, 0) == -1)
        goto out;
  for (size_t i = 0; i < a->large->n; i++)
    if (push (&all, a->large->v[i].off, a->large->v[i].len, 0) == -1)
      goto out;
  if (all.n == 0)
    goto out;                   /* nothing free (and qsort wants a non-NULL base) */
  qsort (all.v, all.n, sizeof *all.v, cmp_off);
  for (uint32_t k = 0; k <= a->small_max; k++)
    a->small[k].n = 0;
  a->large->n = 0;
  a->free_bytes = 0;
  /* Merge runs, then put them back from the last one down, so that a run
   * reaching the end lowers it (put_free) and the one before may follow.
   */
  size_t m = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (m > 0 && all.v[m - 1].off + all.v[m - 1].len == all.v[i].off)
      all.v[m - 1].len += all.v[i].len;
    else
      all.v[m++] = all.v[i];
  }
  for (size_t i = m; i > 0; i--)
    put_free (a, all.v[i - 1].off, all.v[i - 1].len);
 out:
  free (all.v);
}

void
cas_alloc_free (struct cas_alloc *a, uint64_t off, uint64_t len)
{
  SCOPED_LOCK (l, &a->lock);

  put_free (a, off, round_up (len, CAS_GRANULE));
}

void
cas_alloc_free_later (struct cas_alloc *a, uint64_t off, uint64_t len, uint64_t seq)
{
  SCOPED_LOCK (l, &a->lock);

  len = round_up (len, CAS_GRANULE);
  if (push (a->pending, off, len, seq) == 0)
    a->pending_bytes += len;
}

uint64_t
cas_alloc_release (struct cas_alloc *a, uint64_t durable_seq,
                   void (*punch) (void *, uint64_t, uint64_t), void *opaque)
{
  struct cas_extent_list ready = { 0 };
  uint64_t released = 0;

  /* Take the ready extents off the pending list, punch them without the
   * lock (fallocate can take long; writers must not wait for it), and only
   * then make them allocatable, so no new block is punched by mistake.
   */
  {
    SCOPED_LOCK (l, &a->lock);
    for (size_t i = 0; i < a->pending->n; ) {
      const struct cas_extent e = a->pending->v[i];
      if (e.tag > durable_seq) {
        i++;
        continue;
      }
      if (push (&ready, e.off, e.len, e.tag) == -1)
        break;                  /* out of memory: the rest waits for the next call */
      a->pending->v[i] = a->pending->v[--a->pending->n];
    }
  }
  for (size_t i = 0; punch && i < ready.n; i++)
    punch (opaque, ready.v[i].off, ready.v[i].len);
  {
    SCOPED_LOCK (l, &a->lock);
    for (size_t i = 0; i < ready.n; i++) {
      a->pending_bytes -= ready.v[i].len;
      released += ready.v[i].len;
      put_free (a, ready.v[i].off, ready.v[i].len);
    }
  }
  free (ready.v);
  return released;
}

int
cas_alloc_with_end (struct cas_alloc *a, int (*fn) (void *, uint64_t), void *opaque)
{
  SCOPED_LOCK (l, &a->lock);
  return fn (opaque, a->end);
}

uint64_t
cas_alloc_free_bytes (struct cas_alloc *a)
{
  SCOPED_LOCK (l, &a->lock);
  return a->free_bytes;
}

uint64_t
cas_alloc_end (struct cas_alloc *a)
{
  SCOPED_LOCK (l, &a->lock);
  return a->end;
}

uint64_t
cas_alloc_pending_bytes (struct cas_alloc *a)
{
  SCOPED_LOCK (l, &a->lock);
  return a->pending_bytes;
}
