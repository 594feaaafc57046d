/* Loading a store: the id -> block table that the checkpoint and the
 * journal replay fill (ckpt.c, journal.c), the functions that apply each
 * of their records to the disks, maps, index and overlays, and the end of
 * loading (steps 3 to 5 of opening, store.c): references recounted,
 * blocks indexed, space checked and rebuilt, the data file tidied.
 *
 * No concurrency: the store is not yet visible to anyone, so nothing here
 * takes a lock (the lock comments of state.h apply once it is open).
 * Every problem found goes through cas_problem: when opening for real the
 * first one fails the open; in check mode (s->checker) each is counted and
 * reported, and loading goes on where it safely can.
 *
 * The tidying of the data file is shared with the close (cas_tidy_at_close).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format.h"
#include "meta/disk.h"
#include "meta/load.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/log.h"
#include "util/util.h"

int
cas_problem (struct cas_store *s, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (s->checker) {
    s->checker->problems++;
    if (s->checker->report)
      s->checker->report (s->checker->opaque, msg);
    return 0;
  }
  cas_error ("%s: corrupted store: %s", s->dir, msg);
  errno = EUCLEAN;
  return -1;
}

/* Where blocks lay while the journal was written, so that replay can
 * refuse a journal placing a block (BLOCK_NEW, BLOCK_MOVE) on space that
 * another block still used at that point, even if that block leaves it
 * later: the engine reuses space only after the record that freed it.
 * Each span is an extent a block held from the record START placed it
 * there (0: the checkpoint) up to the record END that took it away
 * (BLOCK_DEL, or the source of a BLOCK_MOVE).  Only extents that ended,
 * and placements, are kept: the journal's size bounds them.
 */
struct load_span {
  uint64_t off, len, id, start, end;
};

struct load_spans {
  struct load_span *v;
  size_t n, cap;
};

struct load_history {
  struct load_spans ended;      /* extents left, with START and END */
  struct load_spans placed;     /* placements: START only */
};

void
cas_load_set_seq (struct cas_load *ld, uint64_t seq)
{
  ld->seq = seq;
}

static int
spans_push (struct load_spans *l, const struct cas_block *b, uint64_t start, uint64_t end)
{
  if (l->n == l->cap) {
    const size_t cap = l->cap ? 2 * l->cap : 256;
    struct load_span *v = realloc (l->v, cap * sizeof *v);
    if (v == NULL) {
      cas_error ("replaying the journal: %m");
      return -1;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (struct load_span) {
    .off = cas_block_offset (b), .len = round_up (cas_block_len (b), CAS_GRANULE),
    .id = b->id, .start = start, .end = end };
  return 0;
}

static void
history_free (struct cas_load *ld)
{
  if (ld->hist) {
    free (ld->hist->ended.v);
    free (ld->hist->placed.v);
    free (ld->hist);
    ld->hist = NULL;
  }
}

void
cas_load_free (struct cas_load *ld)
{
  /* Blocks not yet in the index are only in LD. */
  for (uint64_t i = 0; !ld->indexed && ld->mask && i <= ld->mask; i++)
    cas_block_free (ld->slot[i]);
  free (ld->slot);
  ld->slot = NULL;
  history_free (ld);
}

static int
history_get (struct cas_load *ld)
{
  if (ld->hist == NULL && (ld->hist = calloc (1, sizeof *ld->hist)) == NULL) {
    cas_error ("replaying the journal: %m");
    return -1;
  }
  return 0;
}

/* B leaves its place at the record being replayed (its START is found
 * among the placements at the end: history_check).
 */
static int
history_left (struct cas_load *ld, const struct cas_block *b)
{
  if (ld->seq == 0)
    return 0;
  return history_get (ld) == -1 ? -1 : spans_push (&ld->hist->ended, b, 0, ld->seq);
}

/* B was just placed by the record being replayed. */
static int
history_placed (struct cas_load *ld, const struct cas_block *b)
{
  if (ld->seq == 0)
    return 0;                   /* the checkpoint: its blocks are checked at the end */
  return history_get (ld) == -1 ? -1 :
    spans_push (&ld->hist->placed, b, ld->seq, UINT64_MAX);
}

static uint64_t
id_hash (uint64_t id)
{
  return id * UINT64_C(0x9e3779b97f4a7c15);
}

static struct cas_block **
ld_find (struct cas_load *ld, uint64_t id)
{
  for (uint64_t i = id_hash (id) & ld->mask; ; i = (i + 1) & ld->mask)
    if (ld->slot[i] == NULL || ld->slot[i]->id == id)
      return &ld->slot[i];
}

static struct cas_block *
ld_get (struct cas_load *ld, uint64_t id)
{
  return ld->slot ? *ld_find (ld, id) : NULL;
}

static int
ld_insert (struct cas_load *ld, struct cas_block *b)
{
  if ((ld->n + 1) * 2 > ld->mask + 1) {
    /* Only the table changes: every other field of LD stays as it is. */
    struct cas_load bigger = { .mask = ld->mask ? 2 * ld->mask + 1 : 1023 };
    bigger.slot = calloc (bigger.mask + 1, sizeof *bigger.slot);
    if (bigger.slot == NULL)
      return -1;
    for (uint64_t i = 0; ld->mask && i <= ld->mask; i++)
      if (ld->slot[i])
        *ld_find (&bigger, ld->slot[i]->id) = ld->slot[i];
    free (ld->slot);
    ld->slot = bigger.slot;
    ld->mask = bigger.mask;
  }
  *ld_find (ld, b->id) = b;
  ld->n++;
  return 0;
}

/* Remove by re-inserting the rest of the cluster (linear probing). */
static void
ld_remove (struct cas_load *ld, uint64_t id)
{
  struct cas_block **p = ld_find (ld, id);
  uint64_t i = p - ld->slot;

  assert (*p != NULL);
  *p = NULL;
  ld->n--;
  for (i = (i + 1) & ld->mask; ld->slot[i]; i = (i + 1) & ld->mask) {
    struct cas_block *b = ld->slot[i];
    ld->slot[i] = NULL;
    *ld_find (ld, b->id) = b;
  }
}

/* Loading: disk ID is appended, or replaces a tombstone. */
int
cas_load_disk_add (struct cas_store *s, uint32_t id, const char *name, uint64_t size,
                   uint32_t flags)
{
  struct cas_disk *d;

  if (id > s->ndisks || id >= CAS_MAX_DISKS ||
      (id < s->ndisks && !cas_disk_deleted (s->disks[id])))
    return cas_problem (s, "disk '%s' has id %" PRIu32 ", expected %zu or a deleted disk's",
                        name, id, s->ndisks);
  if (flags & ~CAS_DISK_FLAGS)
    return cas_problem (s, "disk %" PRIu32 " has unknown flags 0x%" PRIx32, id, flags);
  if (flags & CAS_DISK_DELETED) {
    if (name[0] != '\0' || size != 0)
      return cas_problem (s, "deleted disk %" PRIu32 " has a name or a size", id);
  }
  else if (!cas_disk_name_valid_for (name, flags) || size == 0 || size > CAS_MAX_DISK_SIZE)
    return cas_problem (s, "disk %" PRIu32 " has a bad name or size", id);
  else if (cas_disk_find_locked (s, name) != NULL)
    return cas_problem (s, "two disks are named '%s'", name);
  d = cas_disk_new (s, id, name, size, flags);
  if (d == NULL)
    return -1;
  if (id < s->ndisks) {
    cas_disk_free (s->disks[id]);   /* nobody else can see it while loading */
    s->disks[id] = d;
  }
  else
    s->disks[s->ndisks++] = d;
  return 0;
}

int
cas_load_block_new (struct cas_store *s, struct cas_load *ld, uint64_t id, uint64_t offset,
                    const uint8_t hash[32], uint32_t stored_len, uint32_t flags,
                    uint32_t crc, uint32_t refcount)
{
  struct cas_block *b;

  if (id == 0 || ld_get (ld, id) != NULL)
    return cas_problem (s, "block id %" PRIu64 " is zero or defined twice", id);
  const bool compressed = flags & CAS_BLK_COMPRESSED, sectored = flags & CAS_BLK_SECTORED;
  if (stored_len == 0 || offset % CAS_GRANULE || offset >= CAS_DATA_MAX ||
      (flags & ~CAS_BLK_FLAGS) ||
      (compressed && (sectored || stored_len > s->block_size)) ||
      (sectored && (s->block_size <= CAS_PIECE ||
                    stored_len != cas_sectored_len (s->block_size))) ||
      (!compressed && !sectored && stored_len != s->block_size))
    return cas_problem (s, "block id %" PRIu64 " has a bad location or length", id);
  b = cas_block_new ();
  if (b == NULL)
    return -1;
  b->id = id;
  cas_block_init (b, get_le64 (hash), offset, stored_len, flags, crc);
  b->loaded_refs = refcount;
  if (flags & CAS_BLK_QUARANTINED)
    s->quarantined++;
  if (id >= s->next_id)
    s->next_id = id + 1;
  if (ld_insert (ld, b) == -1) {
    cas_block_free (b);
    cas_error ("loading blocks: %m");
    return -1;
  }
  return history_placed (ld, b);
}

int
cas_load_block_del (struct cas_store *s, struct cas_load *ld, uint64_t id)
{
  struct cas_block *b = ld_get (ld, id);

  if (b == NULL)
    return cas_problem (s, "journal deletes unknown block id %" PRIu64, id);
  /* Map entries still point at it: the journal contradicts itself.  Freeing
   * the block would leave them pointing at freed memory (and the next
   * block would take its place); a check keeps it and reports it.
   */
  if (b->loaded_refs != 0)
    return cas_problem (s, "journal deletes block id %" PRIu64 " that still has %" PRIu32
                        " references%s", id, b->loaded_refs,
                        s->checker && s->checker->repair ? " (repaired: the block is kept)" :
                        s->checker ? " (the block is kept)" : "");
  if (history_left (ld, b) == -1)
    return -1;
  ld_remove (ld, id);
  cas_block_free (b);           /* nobody else can see it while loading */
  return 0;
}

int
cas_load_block_move (struct cas_store *s, struct cas_load *ld, uint64_t id, uint64_t offset)
{
  struct cas_block *b = ld_get (ld, id);

  if (b == NULL)
    return cas_problem (s, "journal moves unknown block id %" PRIu64, id);
  if (offset % CAS_GRANULE || offset >= CAS_DATA_MAX)
    return cas_problem (s, "journal moves block id %" PRIu64 " to a bad offset", id);
  if (history_left (ld, b) == -1)
    return -1;
  cas_block_set_offset (b, offset);
  return history_placed (ld, b);
}

/* The disk a map record of the journal (FROM_JOURNAL) or the checkpoint
 * names, or NULL after reporting the problem.  Snapshots are read-only:
 * only the checkpoint sets their entries (DISK_CLONE copies them).
 */
static struct cas_disk *
load_disk (struct cas_store *s, uint32_t disk, uint64_t v, uint64_t count, bool from_journal)
{
  if (disk >= s->ndisks || cas_disk_deleted (s->disks[disk])) {
    cas_problem (s, "map entry for unknown or deleted disk %" PRIu32, disk);
    return NULL;
  }
  if (from_journal && (s->disks[disk]->flags & CAS_DISK_SNAPSHOT)) {
    cas_problem (s, "journal changes the map of snapshot '%s', which is read-only",
                 s->disks[disk]->name);
    return NULL;
  }
  if (v > s->disks[disk]->map.nblocks || count > s->disks[disk]->map.nblocks - v) {
    cas_problem (s, "map entry beyond the end of disk '%s'", s->disks[disk]->name);
    return NULL;
  }
  return s->disks[disk];
}

int
cas_load_map_set (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                  uint64_t id, bool from_journal)
{
  struct cas_disk *d = load_disk (s, disk, v, 1, from_journal);
  struct cas_block *b = NULL, *old;

  if (d == NULL)
    return s->checker ? 0 : -1;
  if (id != 0) {
    b = ld_get (ld, id);
    if (b == NULL)
      return cas_problem (s, "disk '%s' block %" PRIu64 " points at unknown block id %" PRIu64
                          "%s", d->name, v, id, s->checker && s->checker->repair ?
                          " (cannot be repaired: that block now reads as zeroes)" : "");
  }
  if (cas_map_set (&d->map, v, b, &old) == -1)
    return -1;
  cas_ovl_drop (s, d, v);       /* the block's small writes end here */
  /* The checkpoint stores refcounts; the journal's changes adjust them. */
  if (from_journal) {
    if (b)
      b->loaded_refs++;
    if (old)
      old->loaded_refs--;
  }
  return 0;
}

int
cas_load_map_zero (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                   uint64_t count)
{
  struct cas_disk *d = load_disk (s, disk, v, count, true);
  struct cas_block *old;

  (void) ld;
  if (d == NULL)
    return s->checker ? 0 : -1;
  cas_ovl_drop_range (s, d, v, count);
  for (uint64_t i = v; i < v + count; i++) {
    if (cas_map_page_of (&d->map, i) == NULL) {
      i |= CAS_MAP_PAGE - 1;    /* skip the rest of an empty page */
      continue;
    }
    cas_map_set (&d->map, i, NULL, &old);
    if (old)
      old->loaded_refs--;
  }
  return 0;
}

int
cas_load_patch (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                uint32_t off, const uint8_t *data, uint32_t len)
{
  struct cas_disk *d = load_disk (s, disk, v, 1, true);

  (void) ld;
  if (d == NULL)
    return s->checker ? 0 : -1;
  if (v >= d->map.nblocks || off > s->block_size || len > s->block_size - off)
    return cas_problem (s, "journal: small write beyond the end of block %" PRIu64
                        " of disk '%s'", v, d->name);
  return cas_ovl_add (s, d, v, off, data, len, NULL);
}

/* Recount references from the maps into refcount and compare with what the
 * metadata said.  A refcount has 31 bits (the top one is the GC's KILLED
 * mark, index.h).  New references stop at ref_max, far below; a block that
 * older code took past it is accepted with its exact count (it takes no
 * new reference: writes store another copy, clones fail).  A block with
 * more references than 31 bits hold, which only older code without
 * asserts or damage can leave, cannot be counted: opening fails (EUCLEAN),
 * check reports it, and repair refuses (EOVERFLOW): it cannot fix it.
 */
static int
recount (struct cas_store *s)
{
  const uint32_t most = CAS_REF_KILLED - 1;
  bool overflow = false;

  for (size_t i = 0; i < s->ndisks; i++) {
    const struct cas_disk *d = s->disks[i];
    const struct cas_map *m = &d->map;
    for (uint64_t pg = 0; pg < m->npages; pg++)
      for (unsigned k = 0; m->pages[pg] && k < CAS_MAP_PAGE; k++) {
        struct cas_block *b = m->pages[pg]->e[k];
        if (b == NULL)
          continue;
        if (b->refcount < most) {
          b->refcount++;
          continue;
        }
        if (overflow)
          continue;             /* reported once; the count stays at MOST */
        overflow = true;
        if (s->checker && s->checker->repair) {
          errno = EOVERFLOW;
          cas_error ("%s: block id %" PRIu64 " has more than %" PRIu32 " references (disk '%s' "
                     "block %" PRIu64 "), more than a refcount holds: cannot repair",
                     s->dir, b->id, most, d->name, pg * CAS_MAP_PAGE + k);
          return -1;
        }
        if (cas_problem (s, "block id %" PRIu64 " has more than %" PRIu32 " references (disk "
                         "'%s' block %" PRIu64 "), more than a refcount holds", b->id, most,
                         d->name, pg * CAS_MAP_PAGE + k) == -1)
          return -1;
      }
  }
  return 0;
}

struct used_list {
  struct cas_extent *v;
  size_t n;
  struct cas_store *s;
  int err;
};

static void
verify_refs (struct used_list *u, struct cas_block *b)
{
  struct cas_store *s = u->s;
  char hex[2 * CAS_KEY_LEN + 1];

  if (b->refcount != b->loaded_refs) {
    cas_key_hex (b->key, hex);
    if (s->checker)
      cas_problem (s, "block id %" PRIu64 " (%.16s): refcount is %" PRIu32
                   " but %" PRIu32 " references point at it%s", b->id, hex,
                   b->loaded_refs, b->refcount,
                   s->checker->repair ? " (repaired: recounted)" : "");
    else
      cas_debug ("block id %" PRIu64 ": stored refcount %" PRIu32 " corrected to %" PRIu32,
                 b->id, b->loaded_refs, b->refcount);
  }
  if (b->refcount > s->ref_max)
    cas_debug ("block id %" PRIu64 " has %" PRIu32 " references, more than the %" PRIu32
               " a block may take: it takes no more (writes of its content store a copy)",
               b->id, b->refcount, s->ref_max);
  if (b->refcount == 0) {
    s->ndead++;
    cas_index_note_dead (&s->index, b, cas_now ());
  }
  u->v[u->n++] = (struct cas_extent) { .off = cas_block_offset (b), .len = cas_block_len (b),
                                       .tag = b->id };
}

static int
cmp_extent (const void *a, const void *b)
{
  const struct cas_extent *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Deallocate the gaps between the blocks USED[N] (sorted by offset) and
 * cut the data file after the last one.  Freed extents are punched one by
 * one as they are released, but a file-system block shared by two freed
 * extents stays allocated until the whole gap is punched: this does that,
 * at open and at close.
 */
static int
tidy_data_file (struct cas_store *s, const struct cas_extent *used, size_t n)
{
  struct stat st;
  uint64_t pos = 0;

  for (size_t i = 0; i < n; i++) {
    if (used[i].off > pos)
      cas_punch_hole (s->data_fd, pos, used[i].off - pos, "data file");
    pos = used[i].off + round_up (used[i].len, CAS_GRANULE);
  }
  if (fstat (s->data_fd, &st) == -1) {
    cas_error ("stat data file: %m");
    return -1;
  }
  if ((uint64_t) st.st_size > pos)
    return cas_ftruncate (s->data_fd, pos, "data file");
  return 0;
}

static int
collect_extent (void *opaque, struct cas_block *b)
{
  struct used_list *u = opaque;

  u->v[u->n++] = (struct cas_extent) { .off = cas_block_offset (b), .len = cas_block_len (b),
                                       .tag = b->id };
  return 0;
}

/* Count, then collect, the allocator's extents that tidying must keep. */
struct kept_list {
  struct used_list *u;
  size_t cap, n;
};

static int
collect_kept (void *opaque, uint64_t off, uint64_t len, enum cas_space_state st)
{
  struct kept_list *k = opaque;

  if (st != CAS_SPACE_SETTLING && st != CAS_SPACE_MOVING)
    return 0;
  if (k->u == NULL) {
    k->n++;
    return 0;
  }
  if (k->u->n == k->cap)
    return -1;                  /* cannot happen: nothing else runs at close */
  k->u->v[k->u->n++] = (struct cas_extent) { .off = off, .len = len };
  return 0;
}

/* At close: tidy around every block's extent and every extent that may
 * still be named by durable metadata or hold a copy in progress, sorted.
 * Only free, erased and settled junk space lies between them (the space
 * map tiles the file), so only that is punched, and the file is never cut
 * below a pending extent: a BLOCK_DEL or BLOCK_MOVE whose record is not
 * durable leaves the old place named by the durable journal.
 */
int
cas_tidy_at_close (struct cas_store *s)
{
  struct used_list u = { .s = s };
  struct kept_list k = { 0 };
  int r;

  cas_alloc_walk (&s->alloc, collect_kept, &k);
  k.cap = s->index.count + k.n + 1;
  u.v = malloc (k.cap * sizeof *u.v);
  if (u.v == NULL) {
    cas_error ("close: %m");
    return -1;
  }
  cas_index_walk (&s->index, collect_extent, &u);
  k.u = &u;
  k.cap = u.n + k.n;
  if (cas_alloc_walk (&s->alloc, collect_kept, &k) == -1) {
    free (u.v);
    errno = EAGAIN;
    cas_error ("close: the space map changed while tidying");
    return -1;
  }
  qsort (u.v, u.n, sizeof *u.v, cmp_extent);
  r = tidy_data_file (s, u.v, u.n);
  free (u.v);
  return r;
}

static int
cmp_placed (const void *a, const void *b)
{
  const struct load_span *x = a, *y = b;

  if (x->id != y->id)
    return x->id < y->id ? -1 : 1;
  if (x->off != y->off)
    return x->off < y->off ? -1 : 1;
  return x->start < y->start ? -1 : x->start > y->start;
}

static int
cmp_span_off (const void *a, const void *b)
{
  const struct load_span *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The record that last placed block ID at OFF before record BEFORE, from
 * PLACED (sorted by cmp_placed); 0 (the checkpoint) if none did.
 */
static uint64_t
placed_at (const struct load_spans *placed, uint64_t id, uint64_t off, uint64_t before)
{
  size_t lo = 0, hi = placed->n;        /* first entry >= (id, off, before) */

  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const struct load_span *p = &placed->v[mid];
    if (p->id < id || (p->id == id && (p->off < off || (p->off == off && p->start < before))))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0 && placed->v[lo - 1].id == id && placed->v[lo - 1].off == off)
    return placed->v[lo - 1].start;
  return 0;
}

static bool
spans_meet (const struct load_span *a, const struct load_span *b)
{
  return a->off < b->off + b->len && b->off < a->off + a->len &&
    a->start < b->end && b->start < a->end && a->id != b->id;
}

static int
span_problem (struct cas_store *s, const struct load_span *a, const struct load_span *b)
{
  const struct load_span *early = a->start <= b->start ? a : b, *late = early == a ? b : a;

  return cas_problem (s, "journal places block %" PRIu64 " at data offset %" PRIu64
                      " (record %" PRIu64 ") while block %" PRIu64 " still uses the same space "
                      "(until record %" PRIu64 ")", late->id, late->off, late->start,
                      early->id, early->end == UINT64_MAX ? 0 : early->end);
}

/* Refuse a journal that placed a block on space another block still held
 * at that point (see struct load_history): compare every extent a block
 * left during the journal with every other extent, ended or final, that
 * overlaps it in space, for an overlap in time.  FINAL[N]: the blocks'
 * extents now, sorted by offset, tagged with their id.
 */
static int
history_check (struct cas_store *s, struct cas_load *ld, const struct cas_extent *final,
               size_t n)
{
  struct load_history *h = ld->hist;
  struct load_span *active = NULL;
  size_t nactive = 0, i = 0, j = 0;
  int r = -1;

  if (h == NULL || h->ended.n == 0)
    return 0;                   /* nothing left its place: the final check covers it */
  if (h->placed.n > 0)
    qsort (h->placed.v, h->placed.n, sizeof *h->placed.v, cmp_placed);
  for (size_t k = 0; k < h->ended.n; k++) {
    struct load_span *e = &h->ended.v[k];
    e->start = placed_at (&h->placed, e->id, e->off, e->end);
  }
  qsort (h->ended.v, h->ended.n, sizeof *h->ended.v, cmp_span_off);
  active = malloc (h->ended.n * sizeof *active);
  if (active == NULL) {
    cas_error ("replaying the journal: %m");
    return -1;
  }
  /* Sweep both lists by offset.  Final extents never overlap each other
   * (cas_load_finish checks), so the last one seen is the only final extent
   * that can reach the next; ended extents stay active until passed.
   */
  struct load_span last = { .len = 0 };
  while (i < n || j < h->ended.n) {
    const bool take_final = j == h->ended.n || (i < n && final[i].off <= h->ended.v[j].off);
    struct load_span x;
    if (take_final) {
      x = (struct load_span) { .off = final[i].off, .len = round_up (final[i].len, CAS_GRANULE),
                               .id = final[i].tag, .end = UINT64_MAX };
      x.start = placed_at (&h->placed, x.id, x.off, UINT64_MAX);
      i++;
    }
    else
      x = h->ended.v[j++];
    size_t keep = 0;
    for (size_t k = 0; k < nactive; k++)
      if (active[k].off + active[k].len > x.off)
        active[keep++] = active[k];
    nactive = keep;
    for (size_t k = 0; k < nactive; k++)
      if (spans_meet (&active[k], &x) && span_problem (s, &active[k], &x) == -1)
        goto out;
    if (take_final)
      last = x;
    else {
      if (last.len && spans_meet (&last, &x) && span_problem (s, &last, &x) == -1)
        goto out;
      active[nactive++] = x;
    }
  }
  r = 0;
 out:
  free (active);
  return r;
}

/* Steps 3 and 4 of opening (store.c), and 5 when writable. */
int
cas_load_finish (struct cas_store *s, struct cas_load *ld)
{
  struct used_list u = { .s = s };
  struct stat st;
  int r = -1;

  if (recount (s) == -1)
    return -1;
  u.v = malloc ((ld->n + 1) * sizeof *u.v);
  if (u.v == NULL) {
    cas_error ("loading: %m");
    return -1;
  }
  /* Compare the counts, then put each block into the index (which
   * overwrites loaded_refs).
   */
  rcu_read_lock ();
  for (uint64_t i = 0; ld->mask && i <= ld->mask; i++)
    if (ld->slot[i]) {
      verify_refs (&u, ld->slot[i]);
      cas_index_add (&s->index, ld->slot[i]);
    }
  rcu_read_unlock ();
  ld->indexed = true;
  qsort (u.v, u.n, sizeof *u.v, cmp_extent);
  for (size_t i = 1; i < u.n; i++)
    if (u.v[i].off < u.v[i - 1].off + round_up (u.v[i - 1].len, CAS_GRANULE) &&
        cas_problem (s, "blocks %" PRIu64 " and %" PRIu64 " use the same space at offset %"
                     PRIu64, u.v[i - 1].tag, u.v[i].tag, u.v[i].off) == -1)
      goto out;
  if (history_check (s, ld, u.v, u.n) == -1)
    goto out;
  if (fstat (s->data_fd, &st) == -1) {
    cas_error ("stat data file: %m");
    goto out;
  }
  if (u.n > 0 && u.v[u.n - 1].off + u.v[u.n - 1].len > (uint64_t) st.st_size &&
      cas_problem (s, "block %" PRIu64 " lies beyond the end of the data file (%" PRIu64
                   " bytes): the data file is truncated", u.v[u.n - 1].tag,
                   (uint64_t) st.st_size) == -1)
    goto out;
  if (s->checker && !s->checker->repair) {  /* check.c looks at the rest */
    r = 0;
    goto out;
  }
  if (cas_alloc_rebuild (&s->alloc, u.v, u.n) == -1)
    goto out;
  /* Deallocate what crashed writes may have left between blocks. */
  if (!s->readonly && tidy_data_file (s, u.v, u.n) == -1)
    goto out;
  r = 0;
 out:
  history_free (ld);
  free (u.v);
  return r;
}

/* ---- loading (journal replay; no concurrency) ---- */

int
cas_load_disk_clone (struct cas_store *s, struct cas_load *ld, uint32_t id, const char *name,
                     uint64_t size, uint32_t src, uint32_t flags)
{
  (void) ld;
  if (src >= s->ndisks || cas_disk_deleted (s->disks[src]) || s->disks[src]->size != size ||
      (flags & ~CAS_DISK_SNAPSHOT))
    return cas_problem (s, "journal: clone '%s' of an unknown disk %" PRIu32
                        " or with a bad size or flags", name, src);
  /* A clone merges its source's small writes first (clone_disk,
   * diskops.c), so the journal has their MAP_SETs before the DISK_CLONE.
   */
  if (cas_ovl_disk_has (s->disks[src]))
    return cas_problem (s, "journal: clone '%s' of disk '%s' while it has small writes "
                        "not merged into its blocks", name, s->disks[src]->name);
  /* Only into a free slot: in check mode a taken one is reported and the
   * disk there (maybe SRC itself) must not be copied over.
   */
  const bool slot_free = id == s->ndisks || (id < s->ndisks && cas_disk_deleted (s->disks[id]));
  if (cas_load_disk_add (s, id, name, size, flags) == -1)
    return -1;
  if (!slot_free || id >= s->ndisks || cas_disk_deleted (s->disks[id]) ||
      strcmp (s->disks[id]->name, name) != 0)
    return 0;                   /* check mode: reported, not added */
  assert (id != src);
  return cas_disk_copy_map (s->disks[id], s->disks[src], true);
}

int
cas_load_disk_del (struct cas_store *s, uint32_t id)
{
  struct cas_disk *d;

  if (id >= s->ndisks || cas_disk_deleted (s->disks[id]))
    return cas_problem (s, "journal: deletes unknown disk %" PRIu32, id);
  d = s->disks[id];
  cas_disk_release_map (d, true);
  cas_ovl_drop_range (s, d, 0, d->map.nblocks);
  d->flags |= CAS_DISK_DELETED;
  return 0;
}
