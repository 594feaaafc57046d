/* The space map and allocator (see alloc.h): exact-size free lists, a list
 * of large free extents, and one list per other state.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "format.h"
#include "storage/alloc.h"
#include "util/log.h"
#include "util/util.h"

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
  a->junk = calloc (1, sizeof *a->junk);
  a->erased = calloc (1, sizeof *a->erased);
  a->moving = calloc (1, sizeof *a->moving);
  a->keep_erased = UINT64_MAX;
  if (!a->small || !a->large || !a->pending || !a->junk || !a->erased || !a->moving) {
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
  struct cas_extent_list **lists[] = { &a->large, &a->pending, &a->junk, &a->erased, &a->moving };
  for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
    if (*lists[i])
      free ((*lists[i])->v);
    free (*lists[i]);
    *lists[i] = NULL;
  }
  a->small = NULL;
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

/* The same for settled junk. */
static void
put_junk (struct cas_alloc *a, uint64_t off, uint64_t len)
{
  assert (len > 0 && len % CAS_GRANULE == 0 && off % CAS_GRANULE == 0);
  assert (off + len <= a->end);
  if (off + len == a->end) {
    a->end = off;
    return;
  }
  if (push (a->junk, off, len, 0) == 0)
    a->junk_bytes += len;
}

/* Take extent I off list L (lock held); the caller accounts for its bytes. */
static struct cas_extent
take (struct cas_extent_list *l, size_t i)
{
  const struct cas_extent e = l->v[i];

  l->v[i] = l->v[--l->n];
  return e;
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
    /* Settled junk: no durable metadata points at it any more. */
    for (size_t i = 0; i < a->junk->n; i++)
      if (a->junk->v[i].len >= g * CAS_GRANULE &&
          (from == NULL || a->junk->v[i].len < a->junk->v[best].len)) {
        from = a->junk;
        best = i;
      }
    if (from == NULL) {
      *off = a->end;
      a->end += g * CAS_GRANULE;
      return 0;
    }
  }
  const struct cas_extent e = take (from, best);
  *off = e.off;
  if (from == a->junk) {
    a->junk_bytes -= e.len;
    if (e.len > g * CAS_GRANULE)
      put_junk (a, e.off + g * CAS_GRANULE, e.len - g * CAS_GRANULE);
  }
  else {
    a->free_bytes -= e.len;
    if (e.len > g * CAS_GRANULE)
      put_free (a, e.off + g * CAS_GRANULE, e.len - g * CAS_GRANULE);
  }
  return 0;
}

int
cas_alloc_get_below (struct cas_alloc *a, uint64_t len, uint64_t limit, uint64_t *off)
{
  SCOPED_LOCK (l, &a->lock);
  const uint64_t need = round_up (len, CAS_GRANULE), g = need / CAS_GRANULE;
  struct cas_extent_list *from = NULL;
  size_t best = 0;

  /* The lowest extent that fits, so blocks move as far forward as they
   * can: free, or settled junk (the copy overwrites it anyway).
   */
#define CONSIDER(list, i)                                               \
  if ((list)->v[i].len >= need && (list)->v[i].off + need <= limit &&    \
      (from == NULL || (list)->v[i].off < from->v[best].off)) {          \
    from = (list);                                                      \
    best = (i);                                                         \
  }
  for (uint64_t k = g; k <= a->small_max; k++)
    for (size_t i = 0; i < a->small[k].n; i++)
      CONSIDER (&a->small[k], i);
  for (size_t i = 0; i < a->large->n; i++)
    CONSIDER (a->large, i);
  for (size_t i = 0; i < a->junk->n; i++)
    CONSIDER (a->junk, i);
#undef CONSIDER
  if (from == NULL || push (a->moving, from->v[best].off, need, 0) == -1)
    return -1;
  const struct cas_extent e = take (from, best);
  a->moving_bytes += need;
  *off = e.off;
  if (from == a->junk) {
    a->junk_bytes -= e.len;
    if (e.len > need)
      put_junk (a, e.off + need, e.len - need);
  }
  else {
    a->free_bytes -= e.len;
    if (e.len > need)
      put_free (a, e.off + need, e.len - need);
  }
  return 0;
}

void
cas_alloc_move_end (struct cas_alloc *a, uint64_t off, uint64_t len, bool referenced)
{
  SCOPED_LOCK (l, &a->lock);
  size_t i;

  len = round_up (len, CAS_GRANULE);
  for (i = 0; i < a->moving->n && a->moving->v[i].off != off; i++)
    ;
  assert (i < a->moving->n && a->moving->v[i].len == len);
  take (a->moving, i);
  a->moving_bytes -= len;
  if (!referenced)
    put_free (a, off, len);
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

  /* Free and junk extents, tagged with their state (never merged with
   * each other: junk still holds old bytes).
   */
  for (uint32_t k = 0; k <= a->small_max; k++)
    for (size_t i = 0; i < a->small[k].n; i++)
      if (push (&all, a->small[k].v[i].off, a->small[k].v[i].len, CAS_SPACE_FREE) == -1)
        goto out;
  for (size_t i = 0; i < a->large->n; i++)
    if (push (&all, a->large->v[i].off, a->large->v[i].len, CAS_SPACE_FREE) == -1)
      goto out;
  for (size_t i = 0; i < a->junk->n; i++)
    if (push (&all, a->junk->v[i].off, a->junk->v[i].len, CAS_SPACE_JUNK) == -1)
      goto out;
  if (all.n == 0)
    goto out;                   /* nothing free (and qsort wants a non-NULL base) */
  qsort (all.v, all.n, sizeof *all.v, cmp_off);
  for (uint32_t k = 0; k <= a->small_max; k++)
    a->small[k].n = 0;
  a->large->n = 0;
  a->junk->n = 0;
  a->free_bytes = a->junk_bytes = 0;
  /* Merge runs, then put them back from the last one down, so that a run
   * reaching the end lowers it and the one before may follow.
   */
  size_t m = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (m > 0 && all.v[m - 1].off + all.v[m - 1].len == all.v[i].off &&
        all.v[m - 1].tag == all.v[i].tag)
      all.v[m - 1].len += all.v[i].len;
    else
      all.v[m++] = all.v[i];
  }
  for (size_t i = m; i > 0; i--) {
    const struct cas_extent *e = &all.v[i - 1];
    if (e->tag == CAS_SPACE_FREE)
      put_free (a, e->off, e->len);
    else
      put_junk (a, e->off, e->len);
  }
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
cas_alloc_release (struct cas_alloc *a, uint64_t durable_seq)
{
  SCOPED_LOCK (l, &a->lock);
  uint64_t settled = 0;

  for (size_t i = 0; i < a->pending->n; ) {
    if (a->pending->v[i].tag > durable_seq) {
      i++;
      continue;
    }
    const struct cas_extent e = take (a->pending, i);
    a->pending_bytes -= e.len;
    settled += e.len;
    put_junk (a, e.off, e.len);
  }
  return settled;
}

uint64_t
cas_alloc_erase (struct cas_alloc *a, int (*erase) (void *, uint64_t, uint64_t), void *opaque)
{
  struct cas_extent_list todo = { 0 };
  uint64_t erased = 0;

  /* Take the extents off the junk list, erase them without the lock
   * (fallocate can take long; writers must not wait for it), then list
   * them as erased.  Nobody can allocate them meanwhile.
   */
  {
    SCOPED_LOCK (l, &a->lock);
    while (a->junk->n > 0 &&
           (a->keep_erased == UINT64_MAX || a->free_bytes + a->erased_bytes < a->keep_erased)) {
      struct cas_extent e = a->junk->v[a->junk->n - 1];
      if (a->keep_erased != UINT64_MAX) {
        /* Only what is missing (whole granules); the rest stays junk. */
        const uint64_t want = round_up (a->keep_erased - a->free_bytes - a->erased_bytes,
                                        CAS_GRANULE);
        if (e.len > want)
          e.len = want;
      }
      if (push (&todo, e.off, e.len, 0) == -1)
        break;                  /* out of memory: the rest waits for the next call */
      struct cas_extent *top = &a->junk->v[a->junk->n - 1];
      if (top->len == e.len)
        take (a->junk, a->junk->n - 1);
      else {
        top->off += e.len;      /* keep the tail of the extent as junk */
        top->len -= e.len;
      }
      a->junk_bytes -= e.len;
      a->erased_bytes += e.len;
    }
  }
  for (size_t i = 0; i < todo.n; i++)
    todo.v[i].tag = erase (opaque, todo.v[i].off, todo.v[i].len) == 0;
  {
    SCOPED_LOCK (l, &a->lock);
    for (size_t i = 0; i < todo.n; i++) {
      const struct cas_extent *e = &todo.v[i];
      if (e->tag && push (a->erased, e->off, e->len, 0) == 0) {
        erased += e->len;
        continue;
      }
      a->erased_bytes -= e->len;
      put_free (a, e->off, e->len);
    }
  }
  free (todo.v);
  return erased;
}

uint64_t
cas_alloc_erased_durable (struct cas_alloc *a, void (*fn) (void *, uint64_t, uint64_t),
                          void *opaque)
{
  struct cas_extent_list done = { 0 };
  uint64_t n = 0;

  {
    SCOPED_LOCK (l, &a->lock);
    done = *a->erased;        /* take the whole list; still counted as erased */
    *a->erased = (struct cas_extent_list) { 0 };
  }
  for (size_t i = 0; fn && i < done.n; i++)
    fn (opaque, done.v[i].off, done.v[i].len);
  {
    SCOPED_LOCK (l, &a->lock);
    /* Highest first, so extents reaching the end lower it in turn. */
    if (done.n > 0)
      qsort (done.v, done.n, sizeof *done.v, cmp_off);
    for (size_t i = done.n; i > 0; i--) {
      a->erased_bytes -= done.v[i - 1].len;
      n += done.v[i - 1].len;
      put_free (a, done.v[i - 1].off, done.v[i - 1].len);
    }
  }
  free (done.v);
  return n;
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

void
cas_alloc_space (struct cas_alloc *a, struct cas_space *sp)
{
  SCOPED_LOCK (l, &a->lock);

  *sp = (struct cas_space) {
    .end = a->end, .free = a->free_bytes, .settling = a->pending_bytes,
    .junk = a->junk_bytes, .erased = a->erased_bytes, .moving = a->moving_bytes,
  };
}

int
cas_alloc_walk (struct cas_alloc *a,
                int (*fn) (void *, uint64_t, uint64_t, enum cas_space_state), void *opaque)
{
  SCOPED_LOCK (l, &a->lock);
  const struct { struct cas_extent_list *l; enum cas_space_state st; } lists[] = {
    { a->large, CAS_SPACE_FREE }, { a->pending, CAS_SPACE_SETTLING },
    { a->junk, CAS_SPACE_JUNK }, { a->erased, CAS_SPACE_ERASED },
    { a->moving, CAS_SPACE_MOVING },
  };

  for (uint32_t k = 0; k <= a->small_max; k++)
    for (size_t i = 0; i < a->small[k].n; i++)
      if (fn (opaque, a->small[k].v[i].off, a->small[k].v[i].len, CAS_SPACE_FREE) == -1)
        return -1;
  for (size_t j = 0; j < sizeof lists / sizeof *lists; j++)
    for (size_t i = 0; i < lists[j].l->n; i++)
      if (fn (opaque, lists[j].l->v[i].off, lists[j].l->v[i].len, lists[j].st) == -1)
        return -1;
  return 0;
}
