/* Checkpoints: the whole metadata in one file, replaced atomically.
 *
 * Layout (format.h): a 64-byte header with its own checksum, then the body
 * (disks, blocks, map pages) with one checksum over all of it.  A
 * checkpoint of generation G is followed by journal.G, whose first record
 * has sequence number next_seq.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "meta/ckpt.h"
#include "meta/load.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"

struct ser {
  uint8_t *p;
  size_t len, cap;
  uint64_t nblocks;
};

static int
ser_grow (struct ser *w, size_t more)
{
  if (w->len + more > w->cap) {
    size_t cap = w->cap ? w->cap : 1 << 16;
    while (cap < w->len + more)
      cap *= 2;
    uint8_t *p = realloc (w->p, cap);
    if (p == NULL)
      return -1;
    w->p = p;
    w->cap = cap;
  }
  return 0;
}

static void
put_disk (uint8_t *r, uint32_t id, const char *name, uint64_t size, uint32_t flags)
{
  const size_t n = strlen (name);

  memset (r, 0, CKPT_DISK_SIZE);
  put_le32 (r, id);
  put_le32 (r + 4, n);
  put_le64 (r + 8, size);
  memcpy (r + 16, name, n);
  put_le32 (r + CKPT_DISK_FLAGS, flags);
}

static int
ser_block (void *opaque, struct cas_block *b)
{
  struct ser *w = opaque;
  uint8_t *r;

  if (ser_grow (w, CKPT_BLOCK_SIZE) == -1)
    return -1;
  r = w->p + w->len;
  memset (r, 0, CKPT_BLOCK_SIZE);
  put_le64 (r, b->id);
  const uint64_t where = cas_block_where (b);   /* one load: offset, length, flags agree */
  put_le64 (r + 8, (where >> CAS_WHERE_OFF_SHIFT) * CAS_GRANULE);
  put_le64 (r + 16, b->key);    /* the hash field: the key, then zeroes (format.md) */
  put_le32 (r + 48, (where >> CAS_WHERE_LEN_SHIFT) & CAS_WHERE_LEN_MAX);
  put_le32 (r + 52, where & CAS_BLK_FLAGS);
  put_le32 (r + 56, cas_block_refs (b) & ~CAS_REF_KILLED);
  put_le32 (r + 60, b->crc);
  w->len += CKPT_BLOCK_SIZE;
  w->nblocks++;
  return 0;
}

static void
finish_header (uint8_t *p, size_t len, uint64_t gen, uint64_t next_seq, uint32_t ndisks,
               uint64_t nblocks, uint64_t npages, uint64_t next_id)
{
  memset (p, 0, CKPT_HDR_SIZE);
  memcpy (p + CKPT_MAGIC, CAS_CKPT_MAGIC, 8);
  put_le32 (p + CKPT_VERSION, CAS_FORMAT_VERSION);
  put_le64 (p + CKPT_GEN, gen);
  put_le64 (p + CKPT_NEXT_SEQ, next_seq);
  put_le32 (p + CKPT_NDISKS, ndisks);
  put_le64 (p + CKPT_NBLOCKS, nblocks);
  put_le64 (p + CKPT_NPAGES, npages);
  put_le64 (p + CKPT_NEXT_ID, next_id);
  put_le32 (p + CKPT_BODY_CRC, cas_crc32c (0, p + CKPT_HDR_SIZE, len - CKPT_HDR_SIZE));
  put_le32 (p + CKPT_HDR_CRC, cas_crc32c (0, p, CKPT_HDR_SIZE));
}

int
cas_ckpt_serialize (struct cas_store *s, uint64_t gen, uint64_t next_seq,
                    uint8_t **bufp, size_t *lenp)
{
  struct ser w = { 0 };
  const size_t ndisks = s->ndisks;
  uint64_t npages = 0;

  if (ser_grow (&w, CKPT_HDR_SIZE + ndisks * CKPT_DISK_SIZE) == -1)
    goto nomem;
  w.len = CKPT_HDR_SIZE;
  for (size_t i = 0; i < ndisks; i++) {
    const struct cas_disk *d = s->disks[i];
    if (cas_disk_deleted (d))   /* a tombstone keeps the ids of the others */
      put_disk (w.p + w.len, d->id, "", 0, CAS_DISK_DELETED);
    else
      put_disk (w.p + w.len, d->id, d->name, d->size, d->flags);
    w.len += CKPT_DISK_SIZE;
  }
  if (cas_index_walk (&s->index, ser_block, &w) != 0)
    goto nomem;
  for (size_t i = 0; i < ndisks; i++) {
    const struct cas_map *m = &s->disks[i]->map;
    for (uint64_t pg = 0; pg < m->npages; pg++) {
      const struct cas_map_page *p = m->pages[pg];
      bool any = false;
      if (p == NULL)
        continue;
      for (unsigned k = 0; k < CAS_MAP_PAGE && !any; k++)
        any = p->e[k] != NULL;
      if (!any)
        continue;
      if (ser_grow (&w, CKPT_PAGE_SIZE) == -1)
        goto nomem;
      uint8_t *r = w.p + w.len;
      put_le32 (r, s->disks[i]->id);
      put_le32 (r + 4, 0);
      put_le64 (r + 8, pg);
      for (unsigned k = 0; k < CAS_MAP_PAGE; k++)
        put_le64 (r + 16 + 8 * k, p->e[k] ? p->e[k]->id : 0);
      w.len += CKPT_PAGE_SIZE;
      npages++;
    }
  }
  finish_header (w.p, w.len, gen, next_seq, ndisks, w.nblocks, npages, s->next_id);
  *bufp = w.p;
  *lenp = w.len;
  return 0;

 nomem:
  free (w.p);
  errno = ENOMEM;
  cas_error ("checkpoint: %m");
  return -1;
}

int
cas_ckpt_write_empty (const char *dir, const uint8_t uuid[16], const char *disk,
                      uint64_t size, uint32_t block_size)
{
  uint8_t buf[CKPT_HDR_SIZE + CKPT_DISK_SIZE];
  const uint32_t ndisks = disk ? 1 : 0;

  (void) uuid;
  (void) block_size;
  if (disk)
    put_disk (buf + CKPT_HDR_SIZE, 0, disk, size, 0);
  finish_header (buf, CKPT_HDR_SIZE + ndisks * CKPT_DISK_SIZE, 1, 1, ndisks, 0, 0, 1);
  return cas_write_file_atomic (dir, CAS_CKPT_NAME, buf, CKPT_HDR_SIZE + ndisks * CKPT_DISK_SIZE);
}

/* A problem that leaves nothing to check further: fail even in check mode. */
#define fatal(s, ...) (cas_problem ((s), __VA_ARGS__), errno = EUCLEAN, -1)

int
cas_ckpt_load (struct cas_store *s, struct cas_load *ld, const uint8_t *buf, size_t len,
               uint64_t *gen, uint64_t *next_seq)
{
  uint8_t hdr[CKPT_HDR_SIZE];
  uint64_t nblocks, npages, need;
  uint32_t ndisks;
  const uint8_t *p;

  if (len < CKPT_HDR_SIZE || memcmp (buf, CAS_CKPT_MAGIC, 8) != 0)
    return fatal (s, "checkpoint: not a casdisk checkpoint (bad magic or truncated)");
  memcpy (hdr, buf, sizeof hdr);
  put_le32 (hdr + CKPT_HDR_CRC, 0);
  if (cas_crc32c (0, hdr, sizeof hdr) != get_le32 (buf + CKPT_HDR_CRC))
    return fatal (s, "checkpoint: header checksum mismatch (file is damaged)");
  if (get_le32 (buf + CKPT_VERSION) > CAS_FORMAT_VERSION)
    return fatal (s, "checkpoint: format version %" PRIu32
                        " is newer than this casdisk supports (%d)",
                        get_le32 (buf + CKPT_VERSION), CAS_FORMAT_VERSION);
  ndisks = get_le32 (buf + CKPT_NDISKS);
  nblocks = get_le64 (buf + CKPT_NBLOCKS);
  npages = get_le64 (buf + CKPT_NPAGES);
  if (ndisks > CAS_MAX_DISKS || nblocks > len / CKPT_BLOCK_SIZE || npages > len / CKPT_PAGE_SIZE)
    return fatal (s, "checkpoint: counts do not fit the file (damaged)");
  need = CKPT_HDR_SIZE + (uint64_t) ndisks * CKPT_DISK_SIZE +
    nblocks * CKPT_BLOCK_SIZE + npages * CKPT_PAGE_SIZE;
  if (need != len)
    return fatal (s, "checkpoint: %zu bytes, expected %" PRIu64 " (truncated or damaged)",
                        len, need);
  if (cas_crc32c (0, buf + CKPT_HDR_SIZE, len - CKPT_HDR_SIZE) != get_le32 (buf + CKPT_BODY_CRC))
    return fatal (s, "checkpoint: body checksum mismatch (file is damaged)");
  *gen = get_le64 (buf + CKPT_GEN);
  *next_seq = get_le64 (buf + CKPT_NEXT_SEQ);
  s->next_id = get_le64 (buf + CKPT_NEXT_ID);

  p = buf + CKPT_HDR_SIZE;
  for (uint32_t i = 0; i < ndisks; i++, p += CKPT_DISK_SIZE) {
    char name[CAS_DISK_NAME_MAX + 1];
    const uint32_t n = get_le32 (p + 4), flags = get_le32 (p + CKPT_DISK_FLAGS);
    if ((n == 0 && !(flags & CAS_DISK_DELETED)) || n > CAS_DISK_NAME_MAX)
      return cas_problem (s, "checkpoint: disk %" PRIu32 " has a bad name length", i);
    memcpy (name, p + 16, n);
    name[n] = '\0';
    if (cas_load_disk_add (s, get_le32 (p), name, get_le64 (p + 8), flags) == -1)
      return -1;
  }
  for (uint64_t i = 0; i < nblocks; i++, p += CKPT_BLOCK_SIZE)
    if (cas_load_block_new (s, ld, get_le64 (p), get_le64 (p + 8), p + 16, get_le32 (p + 48),
                            get_le32 (p + 52), get_le32 (p + 60), get_le32 (p + 56)) == -1)
      return -1;
  for (uint64_t i = 0; i < npages; i++, p += CKPT_PAGE_SIZE) {
    const uint32_t disk = get_le32 (p);
    const uint64_t pg = get_le64 (p + 8);
    for (unsigned k = 0; k < CAS_MAP_PAGE; k++) {
      const uint64_t id = get_le64 (p + 16 + 8 * k);
      if (id != 0 &&
          cas_load_map_set (s, ld, disk, pg * CAS_MAP_PAGE + k, id, false) == -1)
        return -1;
    }
  }
  assert (p == buf + len);
  return 0;
}
