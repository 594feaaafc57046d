/* The recycler: online compaction of the data file.
 *
 * After guests trim, the data file is full of holes: the space is free for
 * new blocks and deallocated on the host, but the file's apparent size
 * stays, and free space scattered everywhere cannot shrink it.  The
 * recycler moves blocks from the tail of the file into free space nearer
 * its start, until the tail is free; then the allocator's end comes down
 * (cas_alloc_coalesce) and the background thread cuts the file.
 *
 * A move follows the state machine of the mirage qcow recycler, adapted to
 * content-addressed blocks.  Maps point at block ids, not at offsets, so
 * one reference is rewritten per move (the block's own location), and
 * blocks are immutable, so an overwrite of a disk never invalidates a move:
 * only the deletion of the block can, and that cancels it.
 *
 *   Copying     new space allocated below the block; data read (and its
 *               CRC verified) and written there.  Nothing refers to the
 *               copy: a crash leaves unreferenced space, reclaimed on open.
 *   Copied      -> fdatasync of the data file ->
 *   Flushed     the copy is durable.
 *   Referenced  under ckpt_lock (read) and jlock: if the GC killed the block
 *               meanwhile, cancel (the copy is freed at once, it was never
 *               referenced); else set the block's offset to the copy and
 *               journal BLOCK_MOVE; the old extent goes on the pending list
 *               with that record's seq.
 *   done        once BLOCK_MOVE is durable (the next flush) and a grace
 *               period has passed (readers that loaded the old offset have
 *               finished), the old extent is released and hole-punched by
 *               cas_gc_release, like any freed block.
 *
 * A crash at any point leaves either the old location referenced (intact:
 * never reused before BLOCK_MOVE is durable) or the new one (durable before
 * it was referenced).
 *
 * Destinations are free space or settled junk (the copy overwrites it).
 * The destination is in the "moving" state of the space map from Copying
 * until Referenced (or the cancellation) ends the move.
 *
 * When: a compaction starts once free space (free and settled junk)
 * inside the file reaches compact_after percent of it (and 1 MiB), and
 * goes on until it falls below half that.  Without the gap, compaction
 * would stop just under the threshold, leaving the file compact_after
 * percent larger than its data for good.  Dead blocks (refcount 0,
 * waiting for the delayed GC) are never moved: their discards have not settled, and they are about to
 * be freed anyway.  How fast: at most recycle_rate bytes a second, copied in
 * batches of up to 8 MiB per flush, so guests keep most of their I/O.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "background/gc.h"
#include "background/recycler.h"
#include "engine/store_dio.h"
#include "engine/verify.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"

#define BATCH_BYTES (8u << 20)
#define MIN_FREE    (1u << 20)

struct move {
  struct cas_block *b;
  uint64_t from, to;
};

struct candidates {
  struct move *v;
  size_t n, cap;
  uint64_t above;               /* only blocks at or after this offset */
};

static int
collect (void *opaque, struct cas_block *b)
{
  struct candidates *c = opaque;
  const uint64_t off = cas_block_offset (b);

  /* Dead blocks (refcount 0) are about to be freed by the GC: moving them
   * would be wasted work, and the discards that killed them have not
   * settled yet.
   */
  const uint32_t refs = cas_block_refs (b);
  if (off < c->above || refs == 0 || (refs & CAS_REF_KILLED) || cas_block_quarantined (b))
    return 0;
  if (c->n == c->cap) {
    const size_t cap = c->cap ? 2 * c->cap : 256;
    struct move *v = realloc (c->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = (struct move) { .b = b, .from = off };
  return 0;
}

static int
cmp_desc (const void *x, const void *y)
{
  const struct move *a = x, *b = y;
  return a->from > b->from ? -1 : a->from < b->from;
}

/* recycle_lock held (it guards s->compacting). */
bool
cas_recycler_wanted (struct cas_store *s)
{
  struct cas_space sp;

  cas_alloc_space (&s->alloc, &sp);
  const uint64_t spare = sp.free + sp.junk;
  /* High water to start, low water (half of it) to stop. */
  const uint64_t pct = s->compacting ? s->opts.compact_after / 2 : s->opts.compact_after;
  s->compacting = spare >= MIN_FREE && spare * 100 >= pct * sp.end;
  return s->compacting;
}

/* Steps Referenced for every copied move (ckpt_lock held for reading). */
static uint64_t
reference (struct cas_store *s, struct move *m, size_t n)
{
  uint64_t moved = 0;

  for (size_t i = 0; i < n; i++) {
    uint8_t rec[JREC_BLOCK_MOVE_LEN];
    bool cancelled;
    uint64_t seq = 0;

    put_le64 (rec, m[i].b->id);
    put_le64 (rec + 8, m[i].to);
    {
      SCOPED_LOCK (jl, &s->jlock);
      cancelled = cas_block_refs (m[i].b) & CAS_REF_KILLED;
      if (!cancelled) {
        assert (cas_block_offset (m[i].b) == m[i].from);
        cas_block_set_offset (m[i].b, m[i].to);
        seq = cas_journal_append (s, JREC_BLOCK_MOVE, rec, sizeof rec);
        /* Under jlock, like the offset: the copy is in use, the old
         * place junk, in one step for anyone verifying the space map.
         */
        cas_alloc_move_end (&s->alloc, m[i].to, cas_block_len (m[i].b), true);
        cas_alloc_free_later (&s->alloc, m[i].from, cas_block_len (m[i].b), seq);
      }
    }
    if (cancelled)              /* deleted while moving: the copy was never referenced */
      cas_alloc_move_end (&s->alloc, m[i].to, cas_block_len (m[i].b), false);
    else
      moved += cas_block_len (m[i].b);
  }
  return moved;
}

static int
cut (void *opaque, uint64_t end)
{
  struct cas_store *s = opaque;
  struct stat st;

  if (fstat (s->data_fd, &st) == 0 && (uint64_t) st.st_size > end)
    return cas_ftruncate (s->data_fd, end, "data file");
  return 0;
}

int64_t
cas_store_compact (struct cas_store *s, cas_progress_fn progress, void *opaque)
{
  uint64_t total = 0, moved;
  int64_t r = -1;

  if (s->readonly) {
    errno = EROFS;
    cas_error ("compact: the store is open read-only");
    return -1;
  }
  pthread_mutex_lock (&s->recycle_lock);
  if (cas_check_failed (s, "compact") == -1)
    goto out;
  /* Offline, nothing can revive a dead block (the delay exists for writes
   * that rewrite the same content while the store is served): free them
   * all now, so that their space counts.
   */
  cas_gc_pass (s, true);
  cas_runtime_assert (s, "gc");
  cas_gc_release (s);
  cas_alloc_coalesce (&s->alloc);
  const uint64_t could = cas_alloc_free_bytes (&s->alloc) + s->alloc.junk_bytes;
  do {
    moved = cas_recycle_pass (s, 64u << 20, true);
    total += moved;
    cas_gc_release (s);
    cas_alloc_coalesce (&s->alloc);
    if (progress)
      progress (opaque, total < could ? total : could, could);
  } while (moved > 0);
  if (cas_check_failed (s, "compact") == -1 ||
      cas_alloc_with_end (&s->alloc, cut, s) == -1)
    goto out;
  cas_runtime_assert (s, "cut");
  r = total;
 out:
  pthread_mutex_unlock (&s->recycle_lock);
  return r;
}

uint64_t
cas_recycle_pass (struct cas_store *s, uint64_t budget, bool force)
{
  struct candidates c = { 0 };
  CLEANUP_FREE uint8_t *buf = malloc (cas_stored_max (s->block_size));
  uint64_t moved = 0, copied = 0;
  size_t ncopied = 0;

  if (buf == NULL || (!force && !cas_recycler_wanted (s)))
    return 0;
  /* Candidates: blocks in the last part of the file, highest first.  The
   * whole pass runs in one RCU read-side section, so no block we hold can
   * be freed under us; a deletion can still kill one (see reference).
   */
  {
    struct cas_space sp;
    cas_alloc_space (&s->alloc, &sp);
    const uint64_t spare = sp.free + sp.junk;
    c.above = sp.end > spare ? sp.end - spare : 0;
  }
  rcu_read_lock ();
  if (cas_index_walk (&s->index, collect, &c) != 0 || c.n == 0)
    goto out;
  qsort (c.v, c.n, sizeof *c.v, cmp_desc);

  for (size_t i = 0; i < c.n && copied < budget; i++) {
    struct move *m = &c.v[i];
    const uint32_t len = cas_block_len (m->b);

    /* Copying: space below the block, or stop: nothing fits lower. */
    if (cas_alloc_get_below (&s->alloc, len, m->from, &m->to) == -1)
      break;
    cas_io_context ("move");
    if (cas_data_read (s, buf, len, m->from) == -1 ||
        cas_crc32c (0, buf, len) != m->b->crc ||
        cas_data_write (s, buf, len, m->to) == -1) {
      cas_io_context (NULL);
      cas_alloc_move_end (&s->alloc, m->to, len, false);
      continue;                 /* a bad block stays where it is; scrub finds it */
    }
    cas_io_context (NULL);
    c.v[ncopied++] = *m;        /* Copied */
    copied += len;
  }
  if (ncopied == 0)
    goto out;
  cas_step (s, CAS_STEP_COPIED, "copy");
  /* Flushed. */
  cas_io_context ("move");
  if (cas_data_sync (s) == -1) {
    cas_io_context (NULL);
    for (size_t i = 0; i < ncopied; i++)
      cas_alloc_move_end (&s->alloc, c.v[i].to, cas_block_len (c.v[i].b), false);
    goto out;
  }
  cas_io_context (NULL);
  cas_step (s, CAS_STEP_FLUSHED, "flush copies");
  /* Referenced. */
  pthread_rwlock_rdlock (&s->ckpt_lock);
  moved = reference (s, c.v, ncopied);
  pthread_rwlock_unlock (&s->ckpt_lock);
  __atomic_add_fetch (&s->recycled_bytes, moved, __ATOMIC_RELAXED);
  cas_debug ("recycler: moved %zu blocks (%" PRIu64 " bytes) towards the start", ncopied, moved);
  cas_step (s, CAS_STEP_REFERENCED, "reference");

 out:
  rcu_read_unlock ();
  free (c.v);
  return moved;
}
