/* The delayed GC: dead blocks are killed once they have been dead for
 * gc_delay seconds (at once under gc-pressure), their BLOCK_DEL records
 * appended and their space put on the allocator's pending list; then the
 * pending space is settled once its records are durable and a grace
 * period has passed, erased, and freed after the next sync of the data
 * file.  The background thread (bgthread.c) runs it every tick; an
 * offline compaction (recycler.c) and the close (ops/lifecycle.c) run it
 * too.
 *
 * Why the delay: a block rewritten soon after it was dropped (a guest
 * moving a file, a VM rewriting the same data) is found again by dedup and
 * costs nothing; and why durability first: freed space may be reused at
 * once, so no durable metadata may still point at it (invariant 4).
 */
#include <config.h>

#include <inttypes.h>

#include "background/gc.h"
#include "engine/store_dio.h"
#include "engine/verify.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/log.h"
#include "util/util.h"

#define GC_BATCH 4096             /* blocks killed per hold of ckpt_lock */

/* Is the space of dead blocks more than gc_pressure percent of the space
 * of the live ones, and more than s->gc_pressure_floor bytes?  The delay
 * is a courtesy while space is plentiful (a block rewritten soon is found
 * again); under sustained overwrites it would let the store grow to
 * several times its data.  Dead bytes are estimated as the dead blocks'
 * share of the blocks' space.
 */
static bool
under_pressure (struct cas_store *s)
{
  struct cas_space sp;

  if (s->opts.gc_pressure == 0)
    return false;
  const uint64_t ndead = __atomic_load_n (&s->ndead, __ATOMIC_RELAXED);
  const uint64_t nblocks = __atomic_load_n (&s->index.count, __ATOMIC_RELAXED);
  if (ndead == 0 || nblocks == 0)
    return false;
  cas_alloc_space (&s->alloc, &sp);
  const uint64_t held = sp.free + sp.settling + sp.junk + sp.erased + sp.moving;
  const uint64_t used = sp.end > held ? sp.end - held : 0;
  const double dead = (double) used * (ndead < nblocks ? ndead : nblocks) / nblocks;
  return dead > (double) s->gc_pressure_floor &&
    dead * 100 > (double) (used - dead) * s->opts.gc_pressure;
}

/* Kill the dead blocks whose gc_delay has passed (all of them if FORCE;
 * every one however recent while the store is under pressure),
 * journal BLOCK_DEL for each and put their space on the pending list.
 * No wait for the put that killed a block to be durable: every put comes
 * after the record that dropped the reference (store_io.c, diskops.c), and
 * BLOCK_DEL is appended after the kill, so the journal has them in order,
 * and the space is reused only once BLOCK_DEL is durable (settling).
 */
void
cas_gc_pass (struct cas_store *s, bool force)
{
  struct cas_block *killed[GC_BATCH];
  const uint64_t now = cas_now ();
  /* Once under pressure, stay there while blocks keep dying: killing the
   * dead takes the store below the threshold at once, and falling back
   * to the delay and to erasing the junk that overwrites are about to
   * take again would let the dead pile up for a whole tick of a second
   * (docs/performance.md, "Dead space under overwrites").  When the
   * overwrites stop, the next pass finds no dead block and the pressure
   * ends: the junk is erased and the file shrinks.
   */
  const bool pressed = !force &&
    (under_pressure (s) ||
     (__atomic_load_n (&s->gc_pressed, __ATOMIC_RELAXED) &&
      __atomic_load_n (&s->ndead, __ATOMIC_RELAXED) > 0));
  const uint64_t delay = pressed ? 0 : s->opts.gc_delay;
  uint64_t freed = 0;
  size_t n;

  __atomic_store_n (&s->gc_pressed, pressed, __ATOMIC_RELAXED);
  do {
    pthread_rwlock_rdlock (&s->ckpt_lock);
    n = cas_index_collect_dead (&s->index, now, delay, force, killed, GC_BATCH);
    for (size_t i = 0; i < n; i++) {
      struct cas_block *b = killed[i];
      uint8_t rec[JREC_BLOCK_DEL_LEN];
      uint64_t seq, offset;

      put_le64 (rec, b->id);
      {
        /* Under jlock: a recycler move changes the offset under it too. */
        SCOPED_LOCK (jl, &s->jlock);
        seq = cas_journal_append (s, JREC_BLOCK_DEL, rec, sizeof rec);
        offset = cas_block_offset (b);
      }
      cas_alloc_free_later (&s->alloc, offset, cas_block_len (b), seq);
      rcu_read_lock ();
      cas_index_del (&s->index, b);
      rcu_read_unlock ();
    }
    pthread_rwlock_unlock (&s->ckpt_lock);
    __atomic_sub_fetch (&s->ndead, n, __ATOMIC_RELAXED);
    cas_index_free_later (killed, n);   /* after a grace period */
    freed += n;
  } while (n == GC_BATCH);
  if (freed) {
    __atomic_add_fetch (&s->gc_freed_blocks, freed, __ATOMIC_RELAXED);
    cas_debug ("gc: freed %" PRIu64 " blocks%s", freed,
               pressed ? " (dead space over gc-pressure: without waiting for gc-delay)" : "");
  }
}

/* Discard the bytes of junk: punch a hole (the host file system gets the
 * space back), or with secure_erase overwrite them with zeroes first (the
 * hole is punched once the zeroes are durable, see freed()).
 */
static int
erase (void *opaque, uint64_t off, uint64_t len)
{
  struct cas_store *s = opaque;

  if (!s->opts.secure_erase)
    return cas_punch_hole (s->data_fd, off, len, "data file");
  static const uint8_t zeroes[65536];
  for (uint64_t done = 0; done < len; ) {
    const size_t n = len - done < sizeof zeroes ? len - done : sizeof zeroes;
    if (cas_data_write (s, zeroes, n, off + done) == -1)
      return -1;
    done += n;
  }
  return 0;
}

static void
freed (void *opaque, uint64_t off, uint64_t len)
{
  struct cas_store *s = opaque;

  if (s->opts.secure_erase)
    cas_punch_hole (s->data_fd, off, len, "data file");
}

/* STEP names the journal flush in the I/O log: "settle" (BLOCK_DEL
 * records), or "reference" (the BLOCK_MOVE records of a recycler pass).
 */
static void
release (struct cas_store *s, const char *step)
{
  /* Settle: the records that freed the pending space are made durable,
   * and every reader that could still be reading it has finished.
   */
  if (cas_alloc_pending_bytes (&s->alloc) > 0) {
    cas_io_context (step);
    const int r = cas_journal_sync (s);
    cas_io_context (NULL);
    if (r == -1)
      return;                   /* logged; retried on the next tick */
    synchronize_rcu ();         /* no reader is still in freed space */
    if (cas_alloc_release (&s->alloc, __atomic_load_n (&s->durable_seq, __ATOMIC_ACQUIRE)) > 0)
      cas_step (s, CAS_STEP_SETTLED, "settle");
  }
  /* Erase junk, then flush so that the erase is durable before the space
   * is reused.  Merge adjacent junk first: a punch costs a system call
   * and about a millisecond on ext4, whatever its length.
   */
  cas_alloc_coalesce (&s->alloc);
  /* Under gc-pressure, settled junk is reused as it is: overwrites are
   * about to take the space again, and erasing it first would cost a
   * punch and a data-file sync for nothing.  Erasing resumes with the
   * pressure's end (a secure erase never skips).
   */
  if (__atomic_load_n (&s->gc_pressed, __ATOMIC_RELAXED) && !s->opts.secure_erase)
    return;
  cas_io_context ("erase");
  const uint64_t erased = cas_alloc_erase (&s->alloc, erase, s);
  cas_io_context (NULL);
  if (erased == 0)
    return;
  __atomic_add_fetch (&s->erased_bytes, erased, __ATOMIC_RELAXED);
  cas_step (s, CAS_STEP_ERASED, "erase");
  cas_io_context ("erase");
  const int r = cas_data_sync (s);
  cas_io_context (NULL);
  if (r == -1)
    return;
  cas_alloc_erased_durable (&s->alloc, freed, s);
  cas_step (s, CAS_STEP_FREED, "free");
}

void
cas_gc_release (struct cas_store *s)
{
  release (s, "settle");
}

void
cas_gc_release_moved (struct cas_store *s)
{
  release (s, "reference");
}
