/* Disks: the table of slots (s->disks), their names, and the copy and
 * release of a whole map with its references.
 *
 * A disk's id is its slot, which the journal names, so slots are never
 * renumbered: a deleted disk stays in its slot as a tombstone
 * (CAS_DISK_DELETED) until a new disk reuses it, and the struct it
 * replaces goes on s->retired, freed at close, because an open connection
 * may still hold it.  The table is changed under disks_lock (or while
 * loading, alone) and read without it (state.h): cas_disk_publish fills a
 * slot before it publishes ndisks with a release store, and replaces a
 * tombstone with an atomic store.
 *
 * Used by the store's open and its disk operations (engine/store.c,
 * engine/diskops.c) and by journal replay.  Writing the journal records
 * of these changes is the callers' business.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "meta/disk.h"
#include "meta/state.h"
#include "util/log.h"
#include "util/util.h"

/* ---- names ---- */

bool
cas_disk_name_valid (const char *name)
{
  const size_t n = strlen (name);

  if (n == 0 || n > CAS_DISK_NAME_MAX || name[0] == '-' || name[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
          (name[i] >= '0' && name[i] <= '9') || name[i] == '-' || name[i] == '_' ||
          name[i] == '.'))
      return false;
  return true;
}

bool
cas_disk_name_valid_for (const char *name, uint32_t flags)
{
  char base[CAS_DISK_NAME_MAX + 1];
  const char *at = strchr (name, '@');

  if (!(flags & CAS_DISK_SNAPSHOT))
    return cas_disk_name_valid (name);
  if (at == NULL || strlen (name) > CAS_DISK_NAME_MAX)
    return false;
  memcpy (base, name, at - name);
  base[at - name] = '\0';
  return cas_disk_name_valid (base) && cas_disk_name_valid (at + 1);
}

/* ---- the table ---- */

struct cas_disk *
cas_disk_new (struct cas_store *s, uint32_t id, const char *name, uint64_t size,
              uint32_t flags)
{
  struct cas_disk *d = calloc (1, sizeof *d);

  if (d == NULL || cas_map_init (&d->map, (size + s->block_size - 1) / s->block_size) == -1) {
    free (d);
    cas_error ("disk '%s': %m", name);
    return NULL;
  }
  d->s = s;
  d->id = id;
  d->flags = flags;
  d->size = size;
  strcpy (d->name, name);
  return d;
}

void
cas_disk_free (struct cas_disk *d)
{
  cas_map_destroy (&d->map);
  free (d->ovl_bits);
  free (d);
}

void
cas_disk_publish (struct cas_store *s, struct cas_disk *d)
{
  assert (d->id <= s->ndisks && d->id < CAS_MAX_DISKS);
  if (d->id < s->ndisks) {
    struct cas_disk *old = s->disks[d->id];
    assert (cas_disk_deleted (old));
    old->retired_next = s->retired;
    s->retired = old;
    __atomic_store_n (&s->disks[d->id], d, __ATOMIC_RELEASE);
  }
  else {
    s->disks[d->id] = d;
    __atomic_store_n (&s->ndisks, d->id + 1, __ATOMIC_RELEASE);
  }
}

int
cas_disk_free_slot (struct cas_store *s, uint32_t *id)
{
  for (size_t i = 0; i < s->ndisks; i++)
    if (cas_disk_deleted (s->disks[i])) {
      *id = i;
      return 0;
    }
  if (s->ndisks >= CAS_MAX_DISKS) {
    errno = ENOSPC;
    cas_error ("a store holds at most %d disks and snapshots", CAS_MAX_DISKS);
    return -1;
  }
  *id = s->ndisks;
  return 0;
}

struct cas_disk *
cas_disk_find_locked (struct cas_store *s, const char *name)
{
  for (size_t i = 0; i < s->ndisks; i++)
    if (!cas_disk_deleted (s->disks[i]) && strcmp (s->disks[i]->name, name) == 0)
      return s->disks[i];
  return NULL;
}

/* ---- lock-free readers (casdisk.h) ---- */

struct cas_disk *
cas_disk_find (struct cas_store *s, const char *name)
{
  const size_t n = cas_store_ndisks (s);

  for (size_t i = 0; i < n; i++) {
    struct cas_disk *d = __atomic_load_n (&s->disks[i], __ATOMIC_ACQUIRE);
    if (!cas_disk_deleted (d) && strcmp (d->name, name) == 0)
      return d;
  }
  errno = ENOENT;
  return NULL;
}

size_t
cas_store_ndisks (const struct cas_store *s)
{
  return __atomic_load_n (&s->ndisks, __ATOMIC_ACQUIRE);
}

struct cas_disk *
cas_store_disk (struct cas_store *s, size_t i)
{
  struct cas_disk *d;

  if (i >= cas_store_ndisks (s))
    return NULL;
  d = __atomic_load_n (&s->disks[i], __ATOMIC_ACQUIRE);
  return cas_disk_deleted (d) ? NULL : d;
}

const char *cas_disk_name (const struct cas_disk *d) { return d->name; }
bool
cas_disk_is_snapshot (const struct cas_disk *d)
{
  return __atomic_load_n (&d->flags, __ATOMIC_RELAXED) & CAS_DISK_SNAPSHOT;
}
uint64_t cas_disk_size (const struct cas_disk *d) { return d->size; }

/* ---- whole maps ---- */

/* Give back the references cas_disk_copy_map took for the entries of
 * DST's map before page PG, entry K (a failed copy).  Each block is still
 * mapped by the source: none dies.
 */
static void
unref_copied (struct cas_map *dm, uint64_t pg, unsigned k)
{
  for (uint64_t p = 0; p <= pg && p < dm->npages; p++) {
    const struct cas_map_page *q = dm->pages[p];
    const unsigned end = p == pg ? k : CAS_MAP_PAGE;

    for (unsigned i = 0; q && i < end; i++)
      if (q->e[i]) {
        const uint32_t r = __atomic_sub_fetch (&q->e[i]->refcount, 1, __ATOMIC_RELAXED);
        assert (r >= 1 && !(r & CAS_REF_KILLED));
        (void) r;
      }
  }
}

/* Copy SRC's map into DST (new, unpublished, of the same size), taking one
 * reference per entry: a live reference, or when LOADING one more
 * loaded_refs (the journal's count, see load.c).  Writers of SRC are
 * excluded by the caller.  Fails with ENOMEM, or EOVERFLOW when a block
 * has ref_max references already (index.h), and then holds no reference:
 * those taken are given back.  (Writers' dedup takes references outside
 * the stripe locks, even meanwhile: hence no count first.)  Journal
 * replay is not capped: it repeats what happened.
 */
int
cas_disk_copy_map (struct cas_disk *dst, const struct cas_disk *src, bool loading)
{
  struct cas_store *s = dst->s;
  const struct cas_map *sm = &src->map;
  struct cas_map *dm = &dst->map;

  assert (sm->nblocks == dm->nblocks);
  for (uint64_t pg = 0; pg < sm->npages; pg++)
    if (sm->pages[pg] && (dm->pages[pg] = malloc (sizeof *dm->pages[pg])) == NULL) {
      cas_error ("copy the map of disk '%s': %m", src->name);
      for (uint64_t k = 0; k < pg; k++) {
        free (dm->pages[k]);
        dm->pages[k] = NULL;
      }
      return -1;
    }
  for (uint64_t pg = 0; pg < sm->npages; pg++) {
    const struct cas_map_page *p = sm->pages[pg];
    struct cas_map_page *q = dm->pages[pg];

    if (p == NULL)
      continue;
    memcpy (q, p, sizeof *q);
    for (unsigned k = 0; k < CAS_MAP_PAGE; k++) {
      struct cas_block *b = q->e[k];
      bool revived;

      if (b == NULL)
        continue;
      if (loading)
        b->loaded_refs++;
      else if (!cas_block_get (b, s->ref_max, &revived)) {
        /* A mapped block has a reference already: never dead, never
         * killed; so it is full.
         */
        unref_copied (dm, pg, k);
        errno = EOVERFLOW;
        cas_error ("%s '%s' of '%s': block id %" PRIu64 " (at disk block %" PRIu64
                   ") would have more than the %" PRIu32 " references a block may have",
                   dst->flags & CAS_DISK_SNAPSHOT ? "snapshot" : "clone", dst->name,
                   src->name, b->id, pg * CAS_MAP_PAGE + k, s->ref_max);
        return -1;
      }
      else
        assert (!revived);
    }
  }
  return 0;
}

/* Release every entry of D's map; returns how many blocks became dead.
 * Writers of D are excluded by the caller, and the record that drops the
 * references is journaled (when LOADING, loaded_refs are adjusted instead).
 */
uint64_t
cas_disk_release_map (struct cas_disk *d, bool loading)
{
  struct cas_map *m = &d->map;
  const uint64_t now = cas_now ();
  uint64_t dead = 0;

  for (uint64_t pg = 0; pg < m->npages; pg++) {
    struct cas_map_page *p = m->pages[pg];
    if (p == NULL)
      continue;
    for (unsigned k = 0; k < CAS_MAP_PAGE; k++) {
      struct cas_block *b = __atomic_exchange_n (&p->e[k], NULL, __ATOMIC_ACQ_REL);
      if (b == NULL)
        continue;
      if (loading)
        b->loaded_refs--;
      else if (cas_block_put (&d->s->index, b, now))
        dead++;
    }
  }
  return dead;
}
