/* Disks (disk.c): what a disk is, the table of slots that holds them,
 * and whole-map copies and releases.
 *
 * Locking.  s->disks and s->ndisks change under disks_lock (or while
 * loading, alone) and are read without it: ndisks is published with a
 * release store after its slot is filled, and a tombstone's slot is
 * replaced with an atomic store (state.h).  A disk's flags are atomic;
 * its map is published with RCU (map.h); its ovl_bits belong to
 * overlay.h.
 */
#ifndef CAS_DISK_H
#define CAS_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "casdisk.h"
#include "meta/map.h"
#include "util/counters.h"

struct cas_store;

struct cas_disk {
  struct cas_store *s;
  uint32_t id;                      /* index in s->disks, as the journal names it */
  uint32_t flags;                   /* atomic: CAS_DISK_* (DELETED is set once) */
  char name[CAS_DISK_NAME_MAX + 1]; /* "disk", or "disk@snap" for a snapshot */
  uint64_t size;                    /* bytes */
  struct cas_map map;               /* nblocks = ceil (size / block_size) */
  struct cas_disk *retired_next;    /* on s->retired once its slot was reused */
  struct cas_op_counters ops;       /* requests of this disk (counters.h) */
  uint64_t *ovl_bits;               /* a bit per block with pending small writes
                                       (overlay.h); allocated on the first, under
                                       ovl_lock, published with a release store */
};

static inline bool
cas_disk_deleted (const struct cas_disk *d)
{
  return __atomic_load_n (&d->flags, __ATOMIC_ACQUIRE) & CAS_DISK_DELETED;
}

/* Is NAME valid for a disk with FLAGS (a snapshot's name is "disk@snap")? */
bool cas_disk_name_valid_for (const char *name, uint32_t flags);
/* A new disk struct in slot ID (not yet published).  NULL on ENOMEM. */
struct cas_disk *cas_disk_new (struct cas_store *s, uint32_t id, const char *name,
                               uint64_t size, uint32_t flags);
/* disks_lock held (or loading).  Put D in its slot, retiring a tombstone
 * that was there; publishes ndisks when D is appended.
 */
void cas_disk_publish (struct cas_store *s, struct cas_disk *d);
/* disks_lock held.  The slot for a new disk: the first tombstone, or the
 * next free one; -1 with ENOSPC when the store is full.
 */
int cas_disk_free_slot (struct cas_store *s, uint32_t *id);
/* disks_lock held.  The live disk named NAME, or NULL. */
struct cas_disk *cas_disk_find_locked (struct cas_store *s, const char *name);
/* Free D and its map (D is unpublished, retired, or the store is closing
 * or loading: nobody else can see it).
 */
void cas_disk_free (struct cas_disk *d);

/* Copy SRC's map into DST (new, unpublished, of the same size), taking a
 * reference per entry, or when LOADING one more loaded_refs.  Writers of
 * SRC are excluded by the caller (every stripe, or loading).  -1 with
 * ENOMEM, or EOVERFLOW when a block has ref_max references already; then
 * no reference is held.
 */
int cas_disk_copy_map (struct cas_disk *dst, const struct cas_disk *src, bool loading);
/* Release every entry of D's map (writers of D excluded by the caller;
 * the record that drops the references journaled by it, or LOADING:
 * loaded_refs adjusted instead).  Returns how many blocks became dead.
 */
uint64_t cas_disk_release_map (struct cas_disk *d, bool loading);

#endif
