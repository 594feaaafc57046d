/* The small-write log's in-memory side: pending patches over stored blocks.
 *
 * A write smaller than a block does not rebuild the block at once (read
 * it, merge, hash, compress, store 64 KiB for 4 KiB written).  Its bytes
 * go into the journal as a PATCH record (format.h), which the next flush
 * makes durable like any other record, and into an overlay here: for
 * virtual block v of disk d, the list of patches written since its map
 * entry last changed, oldest first.  What block v holds is its map
 * entry's content with the patches applied in order.  Later, once many
 * patches have landed in the block, or the overlays use too much memory,
 * or they have waited long enough, the block is rebuilt once (a "merge":
 * an ordinary whole-block write of the patched content, whose MAP_SET
 * record ends the patches in the journal too).
 *
 *   state of (d, v)      what moves it on
 *   ---------------      ------------------------------------------------
 *   no overlay           a small write: PATCH record, overlay created,
 *                        flag bit set
 *   overlay, n patches   a small write: PATCH record, patch appended
 *                        any map change (write of the whole block, a
 *                        larger partial write, zero, trim, merge): the new
 *                        entry is set, then the overlay dropped and the
 *                        flag cleared; its MAP_SET / MAP_ZERO record drops
 *                        the patches on replay too
 *
 * Replay rebuilds overlays from PATCH records; a checkpoint, which does
 * not store them, restates every overlay as PATCH records at the head of
 * the new journal and syncs it before the checkpoint is renamed into place
 * (store.c).
 *
 * Locking.  An overlay's patch list is read and changed only under the
 * stripe lock of its (d, v) (readers of the block take it too: a
 * checkpoint, which excludes writers with ckpt_lock, still takes it to
 * compact the list), or in replay, which is alone.  ovl_lock, a leaf, guards the table and the age list, so that
 * finding an overlay takes it briefly.  Readers of the data path take no
 * lock unless a block has an overlay: each disk has a bitmap with a bit
 * per block, set while it has one.  A reader loads the bit (acquire)
 * before the map entry; the writer that drops an overlay stores the new
 * map entry before it clears the bit (release), so a reader that sees the
 * bit clear also sees the entry that replaced the patches.  A reader that
 * sees it set takes the stripe lock and reads entry and patches together.
 */
#ifndef CAS_OVERLAY_H
#define CAS_OVERLAY_H

#include <stdbool.h>
#include <stdint.h>

struct cas_store;
struct cas_disk;

#include "format.h"             /* CAS_PATCH_MAX: the largest patch; a write
                                   of more goes through the whole-block path */

struct cas_patch {
  struct cas_patch *next;
  uint32_t off, len;               /* within the block */
  uint8_t data[];
};

struct cas_ovl {
  struct cas_ovl *hnext;           /* hash chain (ovl_lock) */
  struct cas_ovl *older, *newer;   /* age list (ovl_lock) */
  struct cas_disk *d;
  uint64_t v;
  uint64_t born_ns;                /* when its first patch came */
  struct cas_patch *head, *tail;   /* stripe lock of (d, v) */
  uint32_t n;                      /* patches */
  uint32_t bytes;                  /* their data bytes */
  bool ripe;                       /* due for a merge: first in the age list (ovl_lock) */
};

/* Set up and tear down the store's table (no concurrency). */
int cas_ovl_init (struct cas_store *s);
void cas_ovl_destroy (struct cas_store *s);

/* Does block V of D have an overlay?  No lock needed (see above). */
static inline bool
cas_ovl_flagged (const uint64_t *bits, uint64_t v)
{
  if (bits == NULL)
    return false;
  return __atomic_load_n (&bits[v / 64], __ATOMIC_ACQUIRE) & (UINT64_C(1) << (v % 64));
}

/* D's bitmap, or NULL if no block of D ever had an overlay. */
const uint64_t *cas_ovl_bits (const struct cas_disk *d);

/* The overlay of (D, V), or NULL.  Stripe lock of (D, V) held (or
 * replay); the result stays valid while it is.
 */
struct cas_ovl *cas_ovl_find (struct cas_store *s, struct cas_disk *d, uint64_t v);

/* Append a patch of LEN bytes at OFF to the overlay of (D, V), creating
 * it.  Stripe lock held (or replay).  -1 with ENOMEM: nothing changed.
 */
int cas_ovl_add (struct cas_store *s, struct cas_disk *d, uint64_t v, uint32_t off,
                 const void *data, uint32_t len, struct cas_ovl **out);

/* Apply O's patches, in order, to the block content BLOCK. */
void cas_ovl_apply (const struct cas_ovl *o, uint8_t *block);

/* Drop the overlay of (D, V), if any, and clear its bit.  The new map
 * entry is already stored.  Returns whether there was one.
 */
bool cas_ovl_drop (struct cas_store *s, struct cas_disk *d, uint64_t v);

/* Drop every overlay of D in [V0, V0+N) (every stripe held, or replay). */
void cas_ovl_drop_range (struct cas_store *s, struct cas_disk *d, uint64_t v0, uint64_t n);

/* Does any block of D have an overlay? */
bool cas_ovl_disk_has (const struct cas_disk *d);

/* Rewrite O's patches as non-overlapping runs of at most CAS_PATCH_MAX
 * bytes with the same result, so that restating them does not repeat
 * bytes overwritten since.  O's stripe lock held.  -1 with ENOMEM: O
 * unchanged.
 */
int cas_ovl_compact (struct cas_store *s, struct cas_ovl *o, uint32_t block_size);

/* Call FN for every overlay, oldest first (every writer excluded). */
int cas_ovl_each (struct cas_store *s, int (*fn) (void *opaque, struct cas_ovl *o),
                  void *opaque);

/* Mark O due for a merge (the merge thread's first work): it moves to
 * the head of the age list.  Stripe lock held.
 */
void cas_ovl_mark_ripe (struct cas_store *s, struct cas_ovl *o);

/* Overlays marked ripe (atomic load). */
uint64_t cas_ovl_ripe (const struct cas_store *s);

/* The first overlay of the age list (the ripe ones, then the oldest): its
 * (D, V) if it is ripe, or was born before BEFORE_NS, or memory is over
 * TARGET bytes.  Only a hint: the caller locks its stripe and looks it up
 * again.
 */
bool cas_ovl_pick (struct cas_store *s, uint64_t target, uint64_t before_ns,
                   struct cas_disk **d, uint64_t *v);

/* Bytes of patch data held, and overlays (atomic loads, for statistics). */
uint64_t cas_ovl_bytes (const struct cas_store *s);
uint64_t cas_ovl_count (const struct cas_store *s);

#endif
