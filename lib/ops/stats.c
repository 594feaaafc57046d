/* Space accounting for casdisk info. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "format.h"
#include "meta/journal.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/bag.h"
#include "util/log.h"
#include "util/util.h"

struct store_sum {
  struct cas_store_stats *st;
};

static int
sum_block (void *opaque, struct cas_block *b)
{
  struct cas_store_stats *st = opaque;
  const uint32_t r = cas_block_refs (b);

  st->nblocks++;
  if (r == 0) {
    st->dead_blocks++;
    st->dead_bytes += cas_block_len (b);
  }
  else {
    st->unique_bytes += st->block_size;
    st->stored_bytes += cas_block_len (b);
  }
  return 0;
}

int
cas_store_stats (struct cas_store *s, struct cas_store_stats *st)
{
  static const char *const files[] = { CAS_SB_NAME, CAS_DATA_NAME, CAS_CKPT_NAME };
  char path[4096];

  memset (st, 0, sizeof *st);
  st->block_size = s->block_size;
  st->compression_level = s->level;
  st->key_function = s->keyfn.fn == CAS_KEY_SIPHASH13 ? "siphash-1-3" : "sha256";
  cas_index_walk (&s->index, sum_block, st);
  for (size_t i = 0; i < cas_store_ndisks (s); i++) {
    struct cas_disk *d = cas_store_disk (s, i);
    struct cas_disk_stats ds;
    if (d == NULL)
      continue;                 /* deleted */
    if (cas_disk_stats (d, &ds) == -1)
      return -1;
    st->ndisks++;
    st->logical_bytes += ds.logical_bytes;
  }
  st->free_bytes = cas_alloc_free_bytes (&s->alloc);
  st->quarantined = __atomic_load_n (&s->quarantined, __ATOMIC_RELAXED);
  st->gc_freed_blocks = __atomic_load_n (&s->gc_freed_blocks, __ATOMIC_RELAXED);
  st->pending_bytes = cas_alloc_pending_bytes (&s->alloc);
  st->recycled_bytes = __atomic_load_n (&s->recycled_bytes, __ATOMIC_RELAXED);
  st->small_write_bytes = cas_ovl_bytes (s);
  st->small_write_blocks = cas_ovl_count (s);
  st->small_write_merges = __atomic_load_n (&s->ovl_merges, __ATOMIC_RELAXED);
  st->writebacks = __atomic_load_n (&s->wb_starts, __ATOMIC_RELAXED);
  st->data_file_end = cas_alloc_end (&s->alloc);
  {
    struct cas_space sp;
    cas_alloc_space (&s->alloc, &sp);
    st->data_file_end = sp.end;
    st->space_junk = sp.settling + sp.junk;
    st->space_erased = sp.erased;
    st->space_free = sp.free;
    st->space_moving = sp.moving;
    const uint64_t other = st->space_junk + sp.erased + sp.free + sp.moving;
    st->space_in_use = sp.end > other ? sp.end - other : 0;
  }
  st->erased_bytes = __atomic_load_n (&s->erased_bytes, __ATOMIC_RELAXED);
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    uint64_t a, p;
    snprintf (path, sizeof path, "%s/%s", s->dir, files[i]);
    if (cas_file_usage (path, &a, &p) == -1)
      return -1;
    st->physical_allocated += a;
    st->physical_apparent += p;
  }
  for (uint64_t g = s->gen; g > 0 && cas_journal_exists (s, g); g--) {
    uint64_t a, p;
    cas_journal_path (s, g, path, sizeof path);
    if (cas_file_usage (path, &a, &p) == -1)
      return -1;
    st->physical_allocated += a;
    st->physical_apparent += p;
    st->journal_bytes += p;
  }
  return 0;
}

int
cas_disk_stats (struct cas_disk *d, struct cas_disk_stats *st)
{
  struct cas_bag g = { 0 };
  const uint32_t bs = d->s->block_size;
  int r = 0;

  memset (st, 0, sizeof *st);
  st->virtual_size = d->size;
  rcu_read_lock ();
  for (uint64_t pg = 0; pg < d->map.npages && r == 0; pg++) {
    const struct cas_map_page *p = cas_map_page_of (&d->map, pg * CAS_MAP_PAGE);
    if (p == NULL)
      continue;
    for (unsigned k = 0; k < CAS_MAP_PAGE && r == 0; k++) {
      const struct cas_block *b = __atomic_load_n (&p->e[k], __ATOMIC_CONSUME);
      if (b) {
        st->logical_bytes += bs;
        r = cas_bag_add (&g, b);
      }
    }
  }
  /* Blocks that hold only small writes (over zeroes) hold data too. */
  const uint64_t *bits = cas_ovl_bits (d);
  for (uint64_t v = 0; bits && v < d->map.nblocks; v++)
    if (cas_ovl_flagged (bits, v) && cas_map_get (&d->map, v) == NULL)
      st->logical_bytes += bs;
  for (size_t i = 0; r == 0 && g.mask && i <= g.mask; i++)
    if (g.v[i].b) {
      st->unique_bytes += bs;
      st->stored_bytes += cas_block_len (g.v[i].b);
      if ((cas_block_refs (g.v[i].b) & ~CAS_REF_KILLED) == g.v[i].n)
        st->exclusive_bytes += cas_block_len (g.v[i].b);
    }
  rcu_read_unlock ();
  free (g.v);
  if (r == -1) {
    errno = ENOMEM;
    cas_error ("disk stats: %m");
  }
  return r;
}
