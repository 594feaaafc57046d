/* Pending patches of the small-write log (overlay.h): a hash table of
 * overlays keyed by (disk, block), an age list, and a bit per block.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meta/overlay.h"
#include "meta/state.h"
#include "util/log.h"
#include "util/util.h"

#define TAB_MIN 1024u

static size_t
slot_of (const struct cas_store *s, const struct cas_disk *d, uint64_t v)
{
  const uint64_t h = (v ^ ((uint64_t) d->id << 40)) * UINT64_C(0xff51afd7ed558ccd);
  return (size_t) (h >> 20) & s->ovl_mask;
}

int
cas_ovl_init (struct cas_store *s)
{
  pthread_mutex_init (&s->ovl_lock, NULL);
  s->ovl_tab = calloc (TAB_MIN, sizeof *s->ovl_tab);
  if (s->ovl_tab == NULL) {
    cas_error ("small-write log: %m");
    return -1;
  }
  s->ovl_mask = TAB_MIN - 1;
  return 0;
}

static void
free_patches (struct cas_patch *p)
{
  while (p) {
    struct cas_patch *next = p->next;
    free (p);
    p = next;
  }
}

void
cas_ovl_destroy (struct cas_store *s)
{
  if (s->ovl_tab == NULL)
    return;
  for (size_t i = 0; i <= s->ovl_mask; i++)
    for (struct cas_ovl *o = s->ovl_tab[i], *next; o; o = next) {
      next = o->hnext;
      free_patches (o->head);
      free (o);
    }
  free (s->ovl_tab);
  s->ovl_tab = NULL;
  pthread_mutex_destroy (&s->ovl_lock);
}

const uint64_t *
cas_ovl_bits (const struct cas_disk *d)
{
  return __atomic_load_n (&d->ovl_bits, __ATOMIC_ACQUIRE);
}

/* ovl_lock held. */
static struct cas_ovl *
find_locked (struct cas_store *s, const struct cas_disk *d, uint64_t v)
{
  for (struct cas_ovl *o = s->ovl_tab[slot_of (s, d, v)]; o; o = o->hnext)
    if (o->d == d && o->v == v)
      return o;
  return NULL;
}

struct cas_ovl *
cas_ovl_find (struct cas_store *s, struct cas_disk *d, uint64_t v)
{
  if (cas_ovl_bits (d) == NULL)
    return NULL;
  SCOPED_LOCK (l, &s->ovl_lock);
  return find_locked (s, d, v);
}

/* Double the table when it holds more overlays than slots (ovl_lock).  A
 * failed allocation keeps the old table: chains just grow longer.
 */
static void
maybe_grow (struct cas_store *s)
{
  if (s->ovl_n <= s->ovl_mask + 1)
    return;
  const size_t nslots = 2 * (s->ovl_mask + 1);
  struct cas_ovl **tab = calloc (nslots, sizeof *tab), **old = s->ovl_tab;
  const size_t old_slots = s->ovl_mask + 1;
  if (tab == NULL)
    return;
  s->ovl_tab = tab;
  s->ovl_mask = nslots - 1;
  for (size_t i = 0; i < old_slots; i++)
    for (struct cas_ovl *o = old[i], *next; o; o = next) {
      next = o->hnext;
      const size_t k = slot_of (s, o->d, o->v);
      o->hnext = tab[k];
      tab[k] = o;
    }
  free (old);
}

/* Set or clear bit V of D's bitmap (ovl_lock held; the bitmap exists). */
static void
set_bit (struct cas_disk *d, uint64_t v, bool on)
{
  const uint64_t m = UINT64_C(1) << (v % 64);
  if (on)
    __atomic_fetch_or (&d->ovl_bits[v / 64], m, __ATOMIC_RELEASE);
  else
    __atomic_fetch_and (&d->ovl_bits[v / 64], ~m, __ATOMIC_RELEASE);
}

int
cas_ovl_add (struct cas_store *s, struct cas_disk *d, uint64_t v, uint32_t off,
             const void *data, uint32_t len, struct cas_ovl **out)
{
  struct cas_patch *p = malloc (sizeof *p + len);
  struct cas_ovl *o;

  assert (len > 0 && len <= CAS_PATCH_MAX && off + len <= s->block_size);
  assert (v < d->map.nblocks);
  if (p == NULL)
    goto nomem;
  p->next = NULL;
  p->off = off;
  p->len = len;
  memcpy (p->data, data, len);
  {
    SCOPED_LOCK (l, &s->ovl_lock);
    if (d->ovl_bits == NULL) {
      uint64_t *bits = calloc ((d->map.nblocks + 63) / 64, sizeof *bits);
      if (bits == NULL) {
        free (p);
        goto nomem;
      }
      __atomic_store_n (&d->ovl_bits, bits, __ATOMIC_RELEASE);
    }
    o = find_locked (s, d, v);
    if (o == NULL) {
      if ((o = calloc (1, sizeof *o)) == NULL) {
        free (p);
        goto nomem;
      }
      o->d = d;
      o->v = v;
      o->born_ns = cas_now_ns ();
      const size_t k = slot_of (s, d, v);
      o->hnext = s->ovl_tab[k];
      s->ovl_tab[k] = o;
      o->older = s->ovl_newest;
      if (s->ovl_newest)
        s->ovl_newest->newer = o;
      else
        s->ovl_oldest = o;
      s->ovl_newest = o;
      s->ovl_n++;
      maybe_grow (s);
      set_bit (d, v, true);
    }
    __atomic_add_fetch (&s->ovl_bytes, len, __ATOMIC_RELAXED);
  }
  /* The list itself is the stripe's. */
  if (o->tail)
    o->tail->next = p;
  else
    o->head = p;
  o->tail = p;
  o->n++;
  o->bytes += len;
  if (out)
    *out = o;
  return 0;

 nomem:
  errno = ENOMEM;
  cas_error ("small-write log: %m");
  return -1;
}

void
cas_ovl_apply (const struct cas_ovl *o, uint8_t *block)
{
  for (const struct cas_patch *p = o->head; p; p = p->next)
    memcpy (block + p->off, p->data, p->len);
}

/* Unlink O from the table and the age list and clear its bit (ovl_lock). */
static void
unlink_locked (struct cas_store *s, struct cas_ovl *o)
{
  struct cas_ovl **pp = &s->ovl_tab[slot_of (s, o->d, o->v)];
  while (*pp != o)
    pp = &(*pp)->hnext;
  *pp = o->hnext;
  if (o->older)
    o->older->newer = o->newer;
  else
    s->ovl_oldest = o->newer;
  if (o->newer)
    o->newer->older = o->older;
  else
    s->ovl_newest = o->older;
  s->ovl_n--;
  if (o->ripe)
    __atomic_sub_fetch (&s->ovl_ripe, 1, __ATOMIC_RELAXED);
  __atomic_sub_fetch (&s->ovl_bytes, o->bytes, __ATOMIC_RELAXED);
  set_bit (o->d, o->v, false);
}

bool
cas_ovl_drop (struct cas_store *s, struct cas_disk *d, uint64_t v)
{
  struct cas_ovl *o;

  if (!cas_ovl_flagged (cas_ovl_bits (d), v))
    return false;
  {
    SCOPED_LOCK (l, &s->ovl_lock);
    o = find_locked (s, d, v);
    assert (o != NULL);         /* the bit is set only with an overlay */
    unlink_locked (s, o);
  }
  free_patches (o->head);
  free (o);
  return true;
}

void
cas_ovl_drop_range (struct cas_store *s, struct cas_disk *d, uint64_t v0, uint64_t n)
{
  const uint64_t *bits = cas_ovl_bits (d);

  if (bits == NULL)
    return;
  for (uint64_t v = v0; v < v0 + n; v++) {
    if (v % 64 == 0 && bits[v / 64] == 0 && v + 63 < v0 + n) {
      v += 63;                  /* a word of blocks without overlays */
      continue;
    }
    cas_ovl_drop (s, d, v);
  }
}

bool
cas_ovl_disk_has (const struct cas_disk *d)
{
  const uint64_t *bits = cas_ovl_bits (d);

  for (uint64_t w = 0; bits && w < (d->map.nblocks + 63) / 64; w++)
    if (__atomic_load_n (&bits[w], __ATOMIC_ACQUIRE))
      return true;
  return false;
}

int
cas_ovl_compact (struct cas_store *s, struct cas_ovl *o, uint32_t block_size)
{
  struct cas_patch *head = NULL, **tailp = &head, *tail = NULL;
  uint32_t n = 0, bytes = 0, lo = block_size, hi = 0;

  if (o->n == 1)
    return 0;                   /* nothing overlaps */
  for (const struct cas_patch *p = o->head; p; p = p->next) {
    if (p->off < lo)
      lo = p->off;
    if (p->off + p->len > hi)
      hi = p->off + p->len;
  }
  /* Only the span the patches touch: the block's content there, and which
   * bytes of it were written.
   */
  CLEANUP_FREE uint8_t *buf = malloc (hi - lo);
  CLEANUP_FREE uint8_t *covered = calloc (hi - lo, 1);
  if (buf == NULL || covered == NULL)
    goto nomem;
  for (const struct cas_patch *p = o->head; p; p = p->next) {
    memcpy (buf + p->off - lo, p->data, p->len);
    memset (covered + p->off - lo, 1, p->len);
  }
  for (uint32_t i = 0; i < hi - lo;) {
    if (!covered[i]) {
      i++;
      continue;
    }
    uint32_t len = 0;
    while (i + len < hi - lo && covered[i + len] && len < CAS_PATCH_MAX)
      len++;
    struct cas_patch *p = malloc (sizeof *p + len);
    if (p == NULL) {
      free_patches (head);
      goto nomem;
    }
    p->next = NULL;
    p->off = lo + i;
    p->len = len;
    memcpy (p->data, buf + i, len);
    *tailp = p;
    tailp = &p->next;
    tail = p;
    n++;
    bytes += len;
    i += len;
  }
  assert (head != NULL);        /* an overlay has at least one patch */
  free_patches (o->head);
  o->head = head;
  o->tail = tail;
  o->n = n;
  {
    SCOPED_LOCK (l, &s->ovl_lock);
    __atomic_sub_fetch (&s->ovl_bytes, o->bytes - bytes, __ATOMIC_RELAXED);
  }
  o->bytes = bytes;
  return 0;

 nomem:
  errno = ENOMEM;
  cas_error ("small-write log: %m");
  return -1;
}

int
cas_ovl_each (struct cas_store *s, int (*fn) (void *opaque, struct cas_ovl *o), void *opaque)
{
  for (struct cas_ovl *o = s->ovl_oldest; o; o = o->newer)
    if (fn (opaque, o) == -1)
      return -1;
  return 0;
}

void
cas_ovl_mark_ripe (struct cas_store *s, struct cas_ovl *o)
{
  SCOPED_LOCK (l, &s->ovl_lock);

  if (o->ripe)
    return;
  o->ripe = true;
  __atomic_add_fetch (&s->ovl_ripe, 1, __ATOMIC_RELAXED);
  if (o->older == NULL)
    return;                     /* first already */
  o->older->newer = o->newer;
  if (o->newer)
    o->newer->older = o->older;
  else
    s->ovl_newest = o->older;
  o->older = NULL;
  o->newer = s->ovl_oldest;
  s->ovl_oldest->older = o;
  s->ovl_oldest = o;
}

uint64_t
cas_ovl_ripe (const struct cas_store *s)
{
  return __atomic_load_n (&s->ovl_ripe, __ATOMIC_RELAXED);
}

bool
cas_ovl_pick (struct cas_store *s, uint64_t target, uint64_t before_ns,
              struct cas_disk **d, uint64_t *v)
{
  SCOPED_LOCK (l, &s->ovl_lock);
  struct cas_ovl *o = s->ovl_oldest;

  if (o == NULL)
    return false;
  if (!o->ripe && __atomic_load_n (&s->ovl_bytes, __ATOMIC_RELAXED) <= target &&
      o->born_ns >= before_ns)
    return false;
  *d = o->d;
  *v = o->v;
  return true;
}

uint64_t
cas_ovl_bytes (const struct cas_store *s)
{
  return __atomic_load_n (&s->ovl_bytes, __ATOMIC_RELAXED);
}

uint64_t
cas_ovl_count (const struct cas_store *s)
{
  return __atomic_load_n (&s->ovl_n, __ATOMIC_RELAXED);
}
