/* The data path's transfers of stored blocks in direct-I/O mode
 * (direct-io=true, s->dio set), and the one door for writing a new stored
 * block in either mode.
 *
 * The format is the same as in buffered mode (store_io.c reads it there):
 * what differs is how the bytes travel.  Every transfer goes through an
 * aligned bounce buffer, its length rounded up inside the block's own
 * granules (a block starts on a granule and owns the granules its
 * stored_len covers, so the padding read or written belongs to nobody
 * else; written padding is zeroes).  A read of several blocks plans every
 * block's transfers first, submits them all at once (dio.c, libaio) and
 * then checks each block: the same checks as store_io.c, on the bounce
 * buffer.
 *
 * With cache=SIZE (s->bcache), blocks just written and blocks read whole
 * (and verified) are kept in casdisk's own cache (bcache.c), and reads
 * look there first.  A read of a few pieces of a block is not cached: it
 * does not have the whole block.
 *
 * Every write of data goes through here (cas_data_write: new blocks, the
 * recycler's copies, secure erase's zeroes), so that in direct-I/O mode
 * nothing dirties the page cache of the data file.  Reads by scrub, check
 * and the dedup comparison, hole punching, fdatasync and truncation keep
 * the buffered descriptor: design.md ("Direct I/O") says why that is
 * coherent and why a buffered write would not be.
 *
 * The verdict on a stored block that fails its checks, in either mode, is
 * here too (cas_stored_corrupted), below the buffered path that shares it.
 */
#include <config.h>

#include <fcntl.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/store_dio.h"
#include "engine/store_io.h"
#include "format.h"
#include "meta/state.h"
#include "storage/bcache.h"
#include "storage/dio.h"
#include "storage/io.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"

#define DIO_BATCH 32            /* blocks whose transfers are submitted together */

/* One block's part of a read. */
struct part {
  struct cas_block *b;
  uint64_t offset;              /* where B was when planned (cas_block_offset) */
  uint8_t *out;                 /* the caller's bytes: N of them */
  uint32_t boff, n;             /* the part of the block wanted */
  uint8_t *bounce;              /* aligned; the transfers land here */
  bool pieces;                  /* sectored, only pieces [first, first+np) read */
  uint32_t first, np;
  const uint8_t *table;         /* pieces: the whole piece table landed here */
};

/* Bytes of bounce buffer one block's part may need, keeping each slot
 * aligned.
 */
static size_t
slot_size (uint32_t bs)
{
  return round_up (round_up (cas_stored_max (bs), CAS_GRANULE), 4096);
}

/* Plan the transfers of part P (P->b, offset, out, boff, n set) into
 * OPS[*NOPS...] (at most 2).  rcu_read_lock held.
 */
static void
plan (struct cas_store *s, struct part *p, uint8_t *bounce, struct cas_dio_op *ops,
      unsigned *nops)
{
  const uint32_t bs = s->block_size;
  const uint32_t flags = cas_block_flags (p->b), len = cas_block_len (p->b);

  p->bounce = bounce;
  p->pieces = (flags & CAS_BLK_SECTORED) && p->n < bs;
  if (!p->pieces) {
    ops[(*nops)++] = (struct cas_dio_op) { bounce, p->offset, len };
    return;
  }
  /* Whole pieces, then the table (granule aligned: it follows bs bytes). */
  const uint32_t tlen = len - bs;
  p->first = p->boff / CAS_PIECE;
  p->np = (p->boff + p->n - 1) / CAS_PIECE - p->first + 1;
  p->table = bounce + p->np * CAS_PIECE;
  assert (tlen <= 4 * (CAS_MAX_BLOCK_SIZE / CAS_PIECE) && bs % CAS_GRANULE == 0);
  if (p->first + p->np == bs / CAS_PIECE)   /* the table follows the last piece */
    ops[(*nops)++] = (struct cas_dio_op) {
      bounce, p->offset + p->first * CAS_PIECE, p->np * CAS_PIECE + tlen };
  else {
    ops[(*nops)++] = (struct cas_dio_op) {
      bounce, p->offset + p->first * CAS_PIECE, p->np * CAS_PIECE };
    ops[(*nops)++] = (struct cas_dio_op) { (void *) p->table, p->offset + bs, tlen };
  }
}

/* B's stored bytes are wrong: take it out of dedup, count it, say where. */
int
cas_stored_corrupted (struct cas_store *s, struct cas_block *b, uint64_t offset,
                      const char *what)
{
  if (cas_block_quarantine (b))
    __atomic_add_fetch (&s->quarantined, 1, __ATOMIC_RELAXED);
  errno = EIO;
  cas_error ("block id %" PRIu64 " at data file offset %" PRIu64 " (%" PRIu32
             " bytes): %s; the block is quarantined", b->id, offset, cas_block_len (b), what);
  return -1;
}

/* Check part P, whose transfers are done, and copy (or decompress) its
 * bytes to P->out.  rcu_read_lock held.
 */
static int
finish (struct cas_store *s, struct part *p)
{
  const uint32_t bs = s->block_size;
  struct cas_block *b = p->b;
  const uint32_t len = cas_block_len (b);

  if (p->pieces) {
    for (uint32_t i = 0; i < p->np; i++)
      if (cas_crc32c (cas_piece_seed (b->key, p->first + i), p->bounce + i * CAS_PIECE,
                      CAS_PIECE) != get_le32 (p->table + 4 * (p->first + i)))
        return cas_stored_corrupted (s, b, p->offset, "checksum mismatch in a piece, "
                                     "the stored data is corrupted");
    memcpy (p->out, p->bounce + p->boff % CAS_PIECE, p->n);
    return 0;
  }
  if (cas_crc32c (0, p->bounce, len) != b->crc)
    return cas_stored_corrupted (s, b, p->offset,
                                 "checksum mismatch, the stored data is corrupted");
  if (!(cas_block_flags (b) & CAS_BLK_COMPRESSED)) {
    memcpy (p->out, p->bounce + p->boff, p->n);
    if (s->bcache)
      cas_bcache_put (s->bcache, b->id, p->bounce);
    return 0;
  }
  if (p->n == bs) {
    if (cas_decompress (p->out, bs, p->bounce, len) == -1)
      return cas_stored_corrupted (s, b, p->offset, "cannot decompress");
    if (s->bcache)
      cas_bcache_put (s->bcache, b->id, p->out);
    return 0;
  }
  CLEANUP_FREE uint8_t *tmp = malloc (bs);
  if (tmp == NULL) {
    cas_error ("read: %m");
    return -1;
  }
  if (cas_decompress (tmp, bs, p->bounce, len) == -1)
    return cas_stored_corrupted (s, b, p->offset, "cannot decompress");
  memcpy (p->out, tmp + p->boff, p->n);
  if (s->bcache)
    cas_bcache_put (s->bcache, b->id, tmp);
  return 0;
}

int
cas_dio_read_stored (struct cas_store *s, struct cas_block *b, void *out)
{
  struct part p = { .b = b, .offset = cas_block_offset (b), .out = out, .n = s->block_size };
  struct cas_dio_op ops[2];
  unsigned nops = 0;
  CLEANUP_FREE uint8_t *bounce = cas_dio_alloc (slot_size (s->block_size));

  assert (s->dio);
  if (s->bcache && cas_bcache_get (s->bcache, b->id, out, 0, s->block_size))
    return 0;
  if (bounce == NULL)
    return -1;
  plan (s, &p, bounce, ops, &nops);
  if (cas_dio_read (s->dio, ops, nops, "data file") == -1)
    return -1;
  return finish (s, &p);
}

int
cas_dio_read_range (struct cas_disk *d, uint8_t *buf, uint32_t count, uint64_t offset)
{
  struct cas_store *s = d->s;
  const uint32_t bs = s->block_size;
  const uint64_t nblocks = (offset % bs + count + bs - 1) / bs;
  const size_t slot = slot_size (bs);
  CLEANUP_FREE uint8_t *bounce = cas_dio_alloc (slot * (nblocks < DIO_BATCH ? nblocks : DIO_BATCH));
  struct part parts[DIO_BATCH];
  struct cas_dio_op ops[2 * DIO_BATCH];

  assert (s->dio);
  if (bounce == NULL)
    return -1;
  while (count > 0) {
    unsigned nparts = 0, nops = 0;
    int r = 0;

    /* One RCU read-side section from the look-ups to the last check: no
     * block planned can be freed, nor its old place reused, meanwhile.
     */
    rcu_read_lock ();
    while (count > 0 && nparts < DIO_BATCH) {
      const uint64_t v = offset / bs;
      const uint32_t boff = offset % bs;
      const uint32_t n = count < bs - boff ? count : bs - boff;
      struct cas_block *b = cas_map_get (&d->map, v);

      if (b == NULL)
        memset (buf, 0, n);
      else if (s->bcache && cas_bcache_get (s->bcache, b->id, buf, boff, n))
        ;                       /* a hit */
      else {
        struct part *p = &parts[nparts];
        *p = (struct part) { .b = b, .offset = cas_block_offset (b), .out = buf,
                             .boff = boff, .n = n };
        plan (s, p, bounce + nparts * slot, ops, &nops);
        nparts++;
      }
      buf += n;
      offset += n;
      count -= n;
    }
    if (nops > 0)
      r = cas_dio_read (s->dio, ops, nops, "data file");
    for (unsigned i = 0; i < nparts && r == 0; i++)
      r = finish (s, &parts[i]);
    rcu_read_unlock ();
    if (r == -1)
      return -1;
  }
  return 0;
}

void
cas_dio_remember (struct cas_store *s, const struct cas_block *b, const void *content)
{
  if (s->bcache && b)
    cas_bcache_put (s->bcache, b->id, content);
}

int
cas_data_read (struct cas_store *s, void *buf, uint32_t len, uint64_t off)
{
  if (s->dio == NULL)
    return cas_pread_full (s->data_fd, buf, len, off, "data file");

  CLEANUP_FREE uint8_t *b = cas_dio_alloc (round_up (len, CAS_GRANULE));
  if (b == NULL)
    return -1;
  const struct cas_dio_op op = { b, off, len };
  if (cas_dio_read (s->dio, &op, 1, "data file") == -1)
    return -1;
  memcpy (buf, b, len);
  return 0;
}

/* Start writeback of the data file's dirty pages (not waiting for it),
 * so that the device writes while the guest is still writing and the
 * next flush finds little left to do.  Without this the kernel starts
 * only at its dirty threshold (a tenth of RAM), the device idles, and a
 * flush pays for everything at once (docs/performance.md, "Early
 * writeback").  Errors are not lost: writeback
 * errors are reported by the next fdatasync, as they are without it.
 */
void
cas_writeback_start (struct cas_store *s)
{
  if (sync_file_range (s->data_fd, 0, 0, SYNC_FILE_RANGE_WRITE) == -1)
    cas_debug ("sync_file_range: %m");
  __atomic_add_fetch (&s->wb_starts, 1, __ATOMIC_RELAXED);
}

/* LEN bytes were written through the page cache: every CAS_WB_BYTES, ask
 * the merge thread to start writeback, or start it here without one.
 */
void
cas_writeback_note (struct cas_store *s, uint32_t len)
{
  if (__atomic_add_fetch (&s->wb_pending, len, __ATOMIC_RELAXED) < CAS_WB_BYTES ||
      __atomic_exchange_n (&s->wb_pending, 0, __ATOMIC_RELAXED) < CAS_WB_BYTES)
    return;                     /* not yet, or another writer took it */
  __atomic_store_n (&s->wb_wanted, true, __ATOMIC_RELEASE);
  if (!cas_merger_kick (s)) {
    __atomic_store_n (&s->wb_wanted, false, __ATOMIC_RELAXED);
    cas_writeback_start (s);
  }
}

int
cas_data_write (struct cas_store *s, const void *stored, uint32_t len, uint64_t off)
{
  if (s->dio == NULL) {
    if (cas_pwrite_full (s->data_fd, stored, len, off, "data file") == -1)
      return -1;
    cas_writeback_note (s, len);
    return 0;
  }

  const size_t padded = round_up (len, CAS_GRANULE);
  CLEANUP_FREE uint8_t *b = cas_dio_alloc (padded);
  if (b == NULL)
    return -1;
  memcpy (b, stored, len);
  memset (b + len, 0, padded - len);
  const struct cas_dio_op op = { b, off, len };
  return cas_dio_write (s->dio, &op, 1, "data file");
}
