/* casdisk check: an offline proof that a store is consistent.
 *
 * Loading the store in check mode (store.c, meta/load.c) already
 * verifies every metadata checksum, that every map entry points at a
 * block that exists, that every refcount equals the number of references,
 * and that no two blocks share space.  Here we add what loading does not read:
 *
 *   - every stored block is read back: its CRC-32C, its decompression and
 *     the key of its content must match the index;
 *   - no space is leaked: every allocated region of the data file belongs
 *     to some block (file system blocks only partly used count as used).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/store.h"
#include "format.h"
#include "meta/load.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/util.h"

#define FS_BLOCK 4096

struct verify {
  struct cas_store *s;
  cas_progress_fn progress;
  void *opaque;
  uint64_t total;
  struct cas_check_result *res;
  struct cas_extent *used;
  size_t n;
  uint8_t *stored, *plain;
};

static int
verify_block (void *opaque, struct cas_block *b)
{
  struct verify *v = opaque;
  struct cas_store *s = v->s;
  uint64_t key;
  char hex[2 * CAS_KEY_LEN + 1];
  const uint64_t off = cas_block_offset (b);
  const uint32_t len = cas_block_len (b);

  v->used[v->n++] = (struct cas_extent) { .off = off, .len = len, .tag = b->id };
  v->res->blocks_checked++;
  if (v->progress)
    v->progress (v->opaque, v->res->blocks_checked, v->total);
  cas_key_hex (b->key, hex);
  if (cas_block_quarantined (b)) {
    cas_problem (s, "block id %" PRIu64 " (%.16s) is quarantined: it failed verification "
                 "earlier; disks that reference it read errors there", b->id, hex);
    return 0;
  }
  if (pread (s->data_fd, v->stored, len, off) != (ssize_t) len) {
    cas_problem (s, "block id %" PRIu64 " (%.16s): cannot read %" PRIu32 " bytes at data offset %"
                 PRIu64, b->id, hex, len, off);
    return 0;
  }
  v->res->bytes_verified += len;
  if (cas_crc32c (0, v->stored, len) != b->crc) {
    cas_problem (s, "block id %" PRIu64 " (%.16s) at data offset %" PRIu64
                 ": checksum mismatch (stored data is corrupted)", b->id, hex, off);
    return 0;
  }
  if (cas_block_flags (b) & CAS_BLK_COMPRESSED) {
    if (cas_decompress (v->plain, s->block_size, v->stored, len) == -1) {
      cas_problem (s, "block id %" PRIu64 " (%.16s): does not decompress", b->id, hex);
      return 0;
    }
  }
  else
    memcpy (v->plain, v->stored, s->block_size);
  if (cas_block_key (&s->keyfn, v->plain, s->block_size, &key) == 0 && key != b->key)
    cas_problem (s, "block id %" PRIu64 " (%.16s): content does not match its key",
                 b->id, hex);
  return 0;
}

static int
cmp_extent (const void *a, const void *b)
{
  const struct cas_extent *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Count the file-system blocks of [a, b) that no used extent touches. */
static uint64_t
leaked_in (const struct cas_extent *used, size_t n, size_t *i, uint64_t a, uint64_t b)
{
  uint64_t leaked = 0, pos = a;

  while (pos < b) {
    /* Skip extents that end before pos. */
    while (*i < n && used[*i].off + used[*i].len <= pos)
      (*i)++;
    const uint64_t next_used = *i < n ? used[*i].off : UINT64_MAX;
    if (next_used > pos) {
      /* [pos, min(next_used, b)) is free: count whole fs blocks inside. */
      const uint64_t end = next_used < b ? next_used : b;
      const uint64_t lo = round_up (pos, FS_BLOCK), hi = end / FS_BLOCK * FS_BLOCK;
      if (hi > lo)
        leaked += hi - lo;
      pos = end;
    }
    else
      pos = used[*i].off + used[*i].len;
  }
  return leaked;
}

static void
check_leaks (struct cas_store *s, struct cas_extent *used, size_t n)
{
  const off_t size = lseek (s->data_fd, 0, SEEK_END);
  uint64_t leaked = 0;
  size_t i = 0;
  off_t pos = 0;

  qsort (used, n, sizeof *used, cmp_extent);
  while (pos < size) {
    const off_t data = lseek (s->data_fd, pos, SEEK_DATA);
    if (data == -1)
      break;                    /* ENXIO: no more data */
    off_t hole = lseek (s->data_fd, data, SEEK_HOLE);
    if (hole == -1)
      hole = size;
    leaked += leaked_in (used, n, &i, data, hole);
    pos = hole;
  }
  if (leaked)
    cas_problem (s, "%" PRIu64 " bytes of the data file are allocated but belong to no block "
                 "(leaked space)", leaked);
}

int
cas_store_check (const char *dir, cas_report_fn report, void *opaque,
                 struct cas_check_result *res)
{
  return cas_store_check_progress (dir, report, NULL, opaque, res);
}

int
cas_store_check_progress (const char *dir, cas_report_fn report, cas_progress_fn progress,
                          void *opaque, struct cas_check_result *res)
{
  struct cas_checker ck = { .report = report, .opaque = opaque };
  struct cas_open_opts o;
  struct cas_store *s;
  struct verify v = { .res = res, .progress = progress, .opaque = opaque };

  memset (res, 0, sizeof *res);
  cas_open_opts_default (&o);
  o.readonly = true;
  s = cas_store_open_internal (dir, &o, &ck);
  if (s == NULL) {
    if (ck.problems == 0)
      return -1;
    res->problems = ck.problems;
    return ck.problems;
  }
  v.s = s;
  v.total = s->index.count;
  v.used = malloc ((s->index.count + 1) * sizeof *v.used);
  v.stored = malloc (cas_stored_max (s->block_size));
  v.plain = malloc (s->block_size);
  if (!v.used || !v.stored || !v.plain) {
    cas_error ("check: %m");
    free (v.used); free (v.stored); free (v.plain);
    cas_store_close (s);
    return -1;
  }
  for (size_t i = 0; i < s->ndisks; i++) {
    const struct cas_map *m = &s->disks[i]->map;
    for (uint64_t pg = 0; pg < m->npages; pg++)
      if (m->pages[pg])
        for (unsigned k = 0; k < CAS_MAP_PAGE; k++)
          res->refs_checked += m->pages[pg]->e[k] != NULL;
  }
  cas_index_walk (&s->index, verify_block, &v);
  check_leaks (s, v.used, v.n);
  res->problems = ck.problems;
  free (v.used);
  free (v.stored);
  free (v.plain);
  cas_store_close (s);
  return res->problems;
}

int
cas_store_repair (const char *dir, cas_report_fn report, void *opaque,
                  struct cas_check_result *res)
{
  struct cas_checker ck = { .report = report, .opaque = opaque, .repair = true };
  struct cas_open_opts o;
  struct cas_store *s;

  memset (res, 0, sizeof *res);
  cas_open_opts_default (&o);
  /* Opening writable in repair mode recounts, punches leaked space, cuts
   * the journal and checkpoints; problems it meets are reported, not fatal.
   */
  s = cas_store_open_internal (dir, &o, &ck);
  if (s == NULL)
    return -1;
  if (cas_store_close (s) == -1)
    return -1;
  /* What is left is what could not be repaired. */
  return cas_store_check (dir, report, opaque, res);
}
