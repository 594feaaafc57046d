/* Runtime asserts: the space map agrees with the blocks and the blocks
 * with the maps.
 *
 * The recycler changes where blocks live while guests write; a bug there
 * loses data silently, long after the fact.  With runtime_asserts (the
 * plugin's runtime-asserts=true, on in the tests) every step of the
 * background work is followed by this check, which stops the process at
 * the first inconsistency, next to its cause:
 *
 *   - space: every granule below the end of allocated space is in exactly
 *     one state, either in use by exactly one block of the index, or in one
 *     of the allocator's lists (free, junk, erased, moving).  A gap is a
 *     leak, an overlap space used twice;
 *   - references: every block's refcount equals the number of map entries
 *     pointing at it, no map points at a block missing from the index, and
 *     no killed block is still in the index.
 *
 * It takes ckpt_lock for writing, so no writer is between allocating space
 * and inserting its block, or between changing a map entry and a refcount.
 * Cost: a walk of the index and of every map, and a sort: meant for tests
 * and debugging, not for production.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/verify.h"
#include "meta/state.h"
#include "util/bag.h"
#include "util/log.h"
#include "util/util.h"

static const char *const state_names[] = {
  [CAS_SPACE_FREE] = "free", [CAS_SPACE_SETTLING] = "junk (settling)",
  [CAS_SPACE_JUNK] = "junk", [CAS_SPACE_ERASED] = "erased", [CAS_SPACE_MOVING] = "moving",
};
#define IN_USE (-1)

struct span {
  uint64_t off, len;
  int state;                    /* IN_USE or enum cas_space_state */
  uint64_t id;                  /* block id when in use */
};

struct spans {
  struct span *v;
  size_t n, cap;
  bool oom;
  struct cas_bag refs;          /* map references per block */
  uint64_t refs_found;          /* references to blocks seen in the index */
  uint64_t problems;
  struct cas_store *s;
};

static void
add (struct spans *sp, uint64_t off, uint64_t len, int state, uint64_t id)
{
  if (sp->n == sp->cap) {
    const size_t cap = sp->cap ? 2 * sp->cap : 1024;
    struct span *v = realloc (sp->v, cap * sizeof *v);
    if (v == NULL) {
      sp->oom = true;
      return;
    }
    sp->v = v;
    sp->cap = cap;
  }
  sp->v[sp->n++] = (struct span) { .off = off, .len = len, .state = state, .id = id };
}

static int
add_free (void *opaque, uint64_t off, uint64_t len, enum cas_space_state st)
{
  add (opaque, off, len, st, 0);
  return 0;
}

static int
add_block (void *opaque, struct cas_block *b)
{
  struct spans *sp = opaque;
  const uint32_t refs = cas_block_refs (b);
  const uint32_t counted = cas_bag_count (&sp->refs, b);

  add (sp, cas_block_offset (b), round_up (cas_block_len (b), CAS_GRANULE), IN_USE, b->id);
  sp->refs_found += counted;
  if (refs & CAS_REF_KILLED) {
    sp->problems++;
    cas_error ("verify: block id %" PRIu64 " was killed but is still in the index", b->id);
  }
  else if (refs != counted) {
    sp->problems++;
    cas_error ("verify: block id %" PRIu64 " has refcount %" PRIu32 " but %" PRIu32
               " map references", b->id, refs, counted);
  }
  return 0;
}

static int
cmp_span (const void *x, const void *y)
{
  const struct span *a = x, *b = y;
  return a->off < b->off ? -1 : a->off > b->off;
}

static void
describe (const struct span *e, char *buf, size_t len)
{
  if (e->state == IN_USE)
    snprintf (buf, len, "block id %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ")", e->id, e->off, e->len);
  else
    snprintf (buf, len, "%s [%" PRIu64 ", +%" PRIu64 ")", state_names[e->state], e->off, e->len);
}

static void
count_map_refs (struct spans *sp, struct cas_map *m)
{
  for (uint64_t pg = 0; pg < m->npages; pg++) {
    const struct cas_map_page *p = cas_map_page_of (m, pg * CAS_MAP_PAGE);
    if (p == NULL)
      continue;
    for (unsigned k = 0; k < CAS_MAP_PAGE; k++) {
      const struct cas_block *b = __atomic_load_n (&p->e[k], __ATOMIC_CONSUME);
      if (b && cas_bag_add (&sp->refs, b) == -1)
        sp->oom = true;
    }
  }
}

int
cas_store_verify (struct cas_store *s)
{
  struct spans sp = { .s = s };
  uint64_t total_refs = 0, end;

  pthread_rwlock_wrlock (&s->ckpt_lock);
  rcu_read_lock ();
  const size_t ndisks = cas_store_ndisks (s);
  for (size_t i = 0; i < ndisks; i++)
    count_map_refs (&sp, &s->disks[i]->map);
  for (size_t i = 0; sp.refs.v && i <= sp.refs.mask; i++)
    total_refs += sp.refs.v[i].n;
  cas_index_walk (&s->index, add_block, &sp);
  /* The allocator last: the background work that changes it (erase, moves)
   * is excluded by recycle_lock, which the caller holds (meta/state.h). */
  cas_alloc_walk (&s->alloc, add_free, &sp);
  end = cas_alloc_end (&s->alloc);
  rcu_read_unlock ();
  pthread_rwlock_unlock (&s->ckpt_lock);

  if (sp.oom) {
    cas_bag_free (&sp.refs);
    free (sp.v);
    errno = ENOMEM;
    cas_error ("verify: %m");
    return -1;
  }
  if (sp.refs_found != total_refs) {
    sp.problems++;
    cas_error ("verify: the maps hold %" PRIu64 " references, %" PRIu64
               " of them to blocks in the index", total_refs, sp.refs_found);
  }
  if (sp.n > 0)
    qsort (sp.v, sp.n, sizeof *sp.v, cmp_span);
  uint64_t pos = 0;
  for (size_t i = 0; i < sp.n; i++) {
    const struct span *e = &sp.v[i];
    char a[128], b[128];
    if (e->off > pos) {
      sp.problems++;
      describe (e, a, sizeof a);
      cas_error ("verify: leaked space [%" PRIu64 ", %" PRIu64 ") before %s", pos, e->off, a);
    }
    else if (e->off < pos) {
      sp.problems++;
      describe (&sp.v[i - 1], a, sizeof a);
      describe (e, b, sizeof b);
      cas_error ("verify: space used twice: %s overlaps %s", b, a);
    }
    if (e->off + e->len > pos)
      pos = e->off + e->len;
  }
  if (pos != end) {
    sp.problems++;
    cas_error ("verify: the extents end at %" PRIu64 " but allocated space ends at %" PRIu64,
               pos, end);
  }
  cas_bag_free (&sp.refs);
  free (sp.v);
  return sp.problems > INT32_MAX ? INT32_MAX : (int) sp.problems;
}

void
cas_runtime_assert (struct cas_store *s, const char *step)
{
  if (!s->opts.runtime_asserts)
    return;
  const int r = cas_store_verify (s);
  if (r != 0) {
    cas_error ("runtime assert failed after the recycler step '%s' (%d problems): stopping",
               step, r);
    abort ();
  }
}

void
cas_runtime_assert_fg (struct cas_store *s, const char *step)
{
  if (!s->opts.runtime_asserts)
    return;
  SCOPED_LOCK (l, &s->recycle_lock);
  cas_runtime_assert (s, step);
}

void
cas_step (struct cas_store *s, enum cas_recycle_step step, const char *name)
{
  if (s->recycle_hook)
    s->recycle_hook (s->recycle_hook_opaque, s, step);
  cas_runtime_assert (s, name);
}
