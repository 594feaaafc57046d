/* Whole-disk operations: clone, snapshot, delete.
 *
 * A disk is a map from virtual blocks to refcounted blocks, so a copy of a
 * disk is a copy of its map plus one more reference on every block it
 * points at: no data is read or written, and the time is proportional to
 * the map (its allocated pages), not to the data.
 *
 *   clone      a new writable disk whose map is the source's map, now
 *   snapshot   the same, read-only, named "disk@snap" (exported under that
 *              NBD export name)
 *   delete     every map entry released (references dropped: the blocks
 *              nobody else maps go through the delayed GC); the disk's slot
 *              becomes a tombstone that a later disk reuses
 *
 * Each is safe while the store serves I/O.  The operation holds, in the
 * lock order of meta/state.h: ckpt_lock (read: a checkpoint never sees
 * half of it), disks_lock (names and slots), every stripe lock (no write
 * to any disk is between its map change and its MAP_SET record, so the map
 * is exactly what the journal says at this point), then jlock to append
 * one record: DISK_CLONE or DISK_DEL.  Replay applies that record to the map
 * as replay has rebuilt it up to there, which gives the same result: the
 * clone is a point-in-time copy at a journal position.  Then the record is
 * flushed like any other (data file sync, journal write and sync), so a
 * clone or snapshot that returned is durable and crash-consistent: it
 * holds every write completed before it and none after, and after a crash
 * the store has it entirely or not at all.
 *
 * A clone or snapshot that would give a block more than ref_max references
 * (index.h: the cap that keeps counts off the KILLED bit) fails with
 * EOVERFLOW and changes nothing; the references it took are given back
 * before the stripes are released.
 *
 * Writers wait while the stripes are held: for a disk of N mapped blocks
 * the pause is the copy of ceil (N / 4096) map pages and N atomic
 * increments (see docs/design.md for a measurement).
 *
 * With runtime_asserts, the store is verified after each operation
 * (verify.c: refcounts equal the map references).
 *
 * A deleted disk's struct stays allocated until the store closes, because
 * a connection may still hold it: its reads and writes then fail (EIO).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/store_io.h"
#include "engine/verify.h"
#include "format.h"
#include "meta/disk.h"
#include "meta/journal.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "util/log.h"
#include "util/util.h"

static int
check_writable (struct cas_store *s, const char *op, const char *name)
{
  if (s->readonly) {
    errno = EROFS;
    cas_error ("%s '%s': the store is open read-only", op, name);
    return -1;
  }
  return cas_check_failed (s, op);
}

static void
lock_stripes (struct cas_store *s)
{
  for (int i = 0; i < CAS_NSTRIPES; i++)
    pthread_mutex_lock (&s->stripes[i]);
}

static void
unlock_stripes (struct cas_store *s)
{
  for (int i = CAS_NSTRIPES - 1; i >= 0; i--)
    pthread_mutex_unlock (&s->stripes[i]);
}

/* Clone disk SRC_NAME into a new disk DST_NAME with FLAGS (0 or
 * CAS_DISK_SNAPSHOT).  See the top of the file for the locking.
 */
static struct cas_disk *
clone_disk (struct cas_store *s, const char *src_name, const char *dst_name, uint32_t flags)
{
  const char *what = flags & CAS_DISK_SNAPSHOT ? "snapshot" : "clone";
  uint8_t rec[JREC_DISK_CLONE_LEN] = { 0 };
  struct cas_disk *src, *d = NULL;
  uint32_t id;
  uint64_t t0;

  if (check_writable (s, what, dst_name) == -1)
    return NULL;
  if (!cas_disk_name_valid_for (dst_name, flags)) {
    errno = EINVAL;
    cas_error ("%s: '%s' is not a valid %s name: use 1 to %d letters, digits, '-', '_' "
               "or '.', not starting with '-' or '.'%s", what, dst_name,
               flags & CAS_DISK_SNAPSHOT ? "snapshot" : "disk", CAS_DISK_NAME_MAX,
               flags & CAS_DISK_SNAPSHOT ? " (disk@snapshot together)" : "");
    return NULL;
  }
  pthread_rwlock_rdlock (&s->ckpt_lock);
  pthread_mutex_lock (&s->disks_lock);
  src = cas_disk_find_locked (s, src_name);
  if (src == NULL) {
    errno = ENOENT;
    cas_error ("%s: no disk named '%s'", what, src_name);
    goto out;
  }
  if ((flags & CAS_DISK_SNAPSHOT) && (src->flags & CAS_DISK_SNAPSHOT)) {
    errno = EINVAL;
    cas_error ("snapshot: '%s' is a snapshot; clone it into a disk first", src_name);
    goto out;
  }
  if (cas_disk_find_locked (s, dst_name) != NULL) {
    errno = EEXIST;
    cas_error ("%s: '%s' already exists", what, dst_name);
    goto out;
  }
  if (cas_disk_free_slot (s, &id) == -1 ||
      (d = cas_disk_new (s, id, dst_name, src->size, flags)) == NULL)
    goto out;

  t0 = cas_now_ns ();
  lock_stripes (s);
  /* The source's pending small writes become blocks first, so that the
   * copy holds them and a snapshot has none (overlay.h).
   */
  if (cas_ovl_merge_disk (src) == -1 || cas_disk_copy_map (d, src, false) == -1) {
    unlock_stripes (s);
    cas_map_destroy (&d->map);
    free (d);
    d = NULL;
    goto out;
  }
  put_le32 (rec, id);
  put_le32 (rec + 4, strlen (dst_name));
  put_le64 (rec + 8, src->size);
  memcpy (rec + 16, dst_name, strlen (dst_name));
  put_le32 (rec + 80, src->id);
  put_le32 (rec + 84, flags);
  {
    SCOPED_LOCK (jl, &s->jlock);
    cas_journal_append (s, JREC_DISK_CLONE, rec, sizeof rec);
  }
  unlock_stripes (s);
  cas_disk_publish (s, d);
  cas_debug ("%s: '%s' -> '%s' in %" PRIu64 " us (writers paused)", what, src_name, dst_name,
             (cas_now_ns () - t0) / 1000);

 out:
  pthread_mutex_unlock (&s->disks_lock);
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (d == NULL)
    return NULL;
  cas_runtime_assert_fg (s, what);
  if (cas_journal_sync (s) == -1)
    return NULL;                /* exists; durable after the next good flush */
  return d;
}

struct cas_disk *
cas_disk_clone (struct cas_store *s, const char *src, const char *dst)
{
  return clone_disk (s, src, dst, 0);
}

static void
snapshot_name (const char *disk, const char *snap, char *buf, size_t len)
{
  snprintf (buf, len, "%s@%s", disk, snap);
}

struct cas_disk *
cas_snapshot_create (struct cas_store *s, const char *disk, const char *snap)
{
  char name[2 * CAS_DISK_NAME_MAX + 2];

  if (!cas_disk_name_valid (disk) || !cas_disk_name_valid (snap) ||
      strlen (disk) + 1 + strlen (snap) > CAS_DISK_NAME_MAX) {
    errno = EINVAL;
    cas_error ("snapshot: '%s@%s' is not a valid snapshot name: disk and snapshot names use "
               "letters, digits, '-', '_' or '.', %d bytes at most together",
               disk, snap, CAS_DISK_NAME_MAX - 1);
    return NULL;
  }
  snapshot_name (disk, snap, name, sizeof name);
  return clone_disk (s, disk, name, CAS_DISK_SNAPSHOT);
}

/* disks_lock held.  Does disk NAME have snapshots? */
static bool
has_snapshots (struct cas_store *s, const char *name)
{
  const size_t n = strlen (name);

  for (size_t i = 0; i < s->ndisks; i++) {
    const struct cas_disk *d = s->disks[i];
    if (!cas_disk_deleted (d) && (d->flags & CAS_DISK_SNAPSHOT) &&
        strncmp (d->name, name, n) == 0 && d->name[n] == '@')
      return true;
  }
  return false;
}

static int
delete_disk (struct cas_store *s, const char *name, bool snapshot)
{
  const char *what = snapshot ? "delete snapshot" : "delete disk";
  struct cas_disk *d;
  uint8_t rec[JREC_DISK_DEL_LEN] = { 0 };
  uint64_t dead;
  int r = -1;

  if (check_writable (s, what, name) == -1)
    return -1;
  pthread_rwlock_rdlock (&s->ckpt_lock);
  pthread_mutex_lock (&s->disks_lock);
  d = cas_disk_find_locked (s, name);
  if (d == NULL || (snapshot && !(d->flags & CAS_DISK_SNAPSHOT))) {
    errno = ENOENT;
    cas_error ("%s: no %s named '%s'", what, snapshot ? "snapshot" : "disk", name);
    goto out;
  }
  if (has_snapshots (s, name)) {
    errno = ENOTEMPTY;
    cas_error ("%s: '%s' has snapshots: delete them first (or clone one into a new disk "
               "to keep it)", what, name);
    goto out;
  }
  lock_stripes (s);
  __atomic_or_fetch (&d->flags, CAS_DISK_DELETED, __ATOMIC_RELEASE);
  put_le32 (rec, d->id);
  {
    SCOPED_LOCK (jl, &s->jlock);
    cas_journal_append (s, JREC_DISK_DEL, rec, sizeof rec);
  }
  dead = cas_disk_release_map (d, false);
  cas_ovl_drop_range (s, d, 0, d->map.nblocks);
  cas_gc_note_dead (s, dead);
  unlock_stripes (s);
  cas_debug ("%s: '%s': %" PRIu64 " blocks now unreferenced", what, name, dead);
  r = 0;

 out:
  pthread_mutex_unlock (&s->disks_lock);
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (r == 0) {
    cas_runtime_assert_fg (s, what);
    r = cas_journal_sync (s);
  }
  return r;
}

int
cas_disk_delete (struct cas_store *s, const char *name)
{
  return delete_disk (s, name, false);
}

int
cas_snapshot_delete (struct cas_store *s, const char *disk, const char *snap)
{
  char name[2 * CAS_DISK_NAME_MAX + 2];

  snapshot_name (disk, snap, name, sizeof name);
  return delete_disk (s, name, true);
}
