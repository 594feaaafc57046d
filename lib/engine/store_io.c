/* The data path: read, write, zero and extents of a disk.
 *
 * Reads take no lock: inside an RCU read-side section they look up the
 * map entry and read the block it points at; a block (and its space) is
 * freed only after a grace period, so it cannot vanish under a reader.
 *
 * A write of virtual block v:
 *   1. builds the new content (a partial write reads the old block and
 *      merges, holding v's stripe lock so concurrent partial writes to the
 *      same block cannot lose each other's bytes);
 *   2. finds it in the index by its key (dedup: take a reference, unless
 *      the block has ref_max references already) or stores it: compress,
 *      allocate, pwrite, then insert + journal BLOCK_NEW;
 *   3. under v's stripe lock: swap the map entry, journal MAP_SET, drop the
 *      reference of the old block (which may then wait for the GC).
 * All-zero content stores nothing: the map entry becomes NULL.  A write of
 * several whole blocks has the CPU work of step 2 (hash, compress) done
 * for all of them first, in parallel, by the worker pool; then each block
 * goes through steps 2 and 3 in order (see "Several whole blocks" below).
 *
 * A write of at most CAS_PATCH_MAX bytes into part of a block goes to the
 * small-write log instead (overlay.h): a PATCH record and an overlay, no
 * read, no hash, no new block; the block is rebuilt later, once, by a
 * merge (merge_locked).  Reads of a block with an overlay apply it.
 *
 * Every step that changes metadata holds ckpt_lock for reading, so a
 * checkpoint never sees half of a write.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "engine/store_dio.h"
#include "engine/store_io.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/io.h"
#include "storage/ptcache.h"
#include "util/compress.h"
#include "util/counters.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"
#include "util/workpool.h"

#define ZERO_RANGE_BIG 64       /* blocks: above this, zero under all stripes */

static int
check_range (const struct cas_disk *d, uint64_t count, uint64_t offset, const char *op)
{
  if (offset > d->size || count > d->size - offset) {
    errno = EINVAL;
    cas_error ("%s: range [%" PRIu64 ", +%" PRIu64 ") is beyond the end of disk '%s' (%"
               PRIu64 " bytes)", op, offset, count, d->name, d->size);
    return -1;
  }
  return 0;
}

/* Operations on a disk deleted while a connection still held it fail. */
static int
check_deleted (const struct cas_disk *d, const char *op)
{
  if (!cas_disk_deleted (d))
    return 0;
  errno = EIO;
  cas_error ("%s: disk '%s' was deleted", op, d->name);
  return -1;
}

int
cas_read_stored (struct cas_store *s, struct cas_block *b, void *out)
{
  CLEANUP_FREE uint8_t *tmp = NULL;
  const uint8_t *stored = out;
  const uint32_t flags = cas_block_flags (b), len = cas_block_len (b);

  if (s->dio)
    return cas_dio_read_stored (s, b, out);
  if (flags & CAS_BLK_SECTORED) {
    /* The block's bytes go straight to OUT, the piece table aside; the
     * block's CRC covers both.
     */
    uint8_t table[4 * (CAS_MAX_BLOCK_SIZE / CAS_PIECE)];
    const uint32_t bs = s->block_size, tlen = len - bs;
    const struct iovec iov[2] = { { out, bs }, { table, tlen } };
    const uint64_t offset = cas_block_offset (b);

    assert (tlen <= sizeof table);
    if (cas_preadv_full (s->data_fd, iov, 2, offset, "data file") == -1)
      return -1;
    if (cas_crc32c (cas_crc32c (0, out, bs), table, tlen) != b->crc)
      return cas_stored_corrupted (s, b, offset, "checksum mismatch, the stored data is corrupted");
    return 0;
  }
  if (flags & CAS_BLK_COMPRESSED) {
    tmp = malloc (len);
    if (tmp == NULL) {
      cas_error ("read: %m");
      return -1;
    }
    stored = tmp;
  }
  const uint64_t offset = cas_block_offset (b);
  if (cas_pread_full (s->data_fd, (void *) stored, len, offset, "data file") == -1)
    return -1;
  if (cas_crc32c (0, stored, len) != b->crc)
    return cas_stored_corrupted (s, b, offset, "checksum mismatch, the stored data is corrupted");
  if (flags & CAS_BLK_COMPRESSED &&
      cas_decompress (out, s->block_size, stored, len) == -1)
    return cas_stored_corrupted (s, b, offset, "cannot decompress");
  return 0;
}

/* Read N bytes at BOFF of the sectored block B into OUT, reading and
 * checking only the pieces they touch.  *TMP is a buffer of block_size
 * bytes, allocated here when first needed (reads of whole pieces go
 * straight to OUT).  rcu_read_lock held.
 */
static int
read_pieces (struct cas_store *s, struct cas_block *b, uint8_t *out, uint32_t boff,
             uint32_t n, uint8_t **tmp)
{
  const uint32_t bs = s->block_size;
  const uint32_t first = boff / CAS_PIECE, np = (boff + n - 1) / CAS_PIECE - first + 1;
  const uint64_t offset = cas_block_offset (b);
  const bool direct = boff % CAS_PIECE == 0 && n % CAS_PIECE == 0;
  uint8_t table[4 * (CAS_MAX_BLOCK_SIZE / CAS_PIECE)];

  assert (n > 0 && boff + n <= bs && np <= bs / CAS_PIECE);
  if (!direct && *tmp == NULL && (*tmp = malloc (bs)) == NULL) {
    cas_error ("read: %m");
    return -1;
  }
  uint8_t *const data = direct ? out : *tmp;
  const uint32_t npieces = bs / CAS_PIECE;
  if (cas_ptcache_get (s->ptcache, b->id, first, np, table)) {
    /* The table is cached: one read. */
    if (cas_pread_full (s->data_fd, data, np * CAS_PIECE, offset + first * CAS_PIECE,
                        "data file") == -1)
      return -1;
  }
  else {
    /* The pieces and the whole table (it follows the last piece), then
     * keep the table.  The table is checked piece by piece below, each
     * entry against the bytes it covers; entries of pieces not read now
     * are checked when they are, so a damaged entry cached here is an
     * I/O error then, never wrong data.
     */
    if (first + np == npieces) {
      const struct iovec iov[2] = { { data, np * CAS_PIECE }, { table, 4 * npieces } };
      if (cas_preadv_full (s->data_fd, iov, 2, offset + first * CAS_PIECE, "data file") == -1)
        return -1;
    }
    else if (cas_pread_full (s->data_fd, data, np * CAS_PIECE, offset + first * CAS_PIECE,
                             "data file") == -1 ||
             cas_pread_full (s->data_fd, table, 4 * npieces, offset + bs, "data file") == -1)
      return -1;
    cas_ptcache_put (s->ptcache, b->id, table, npieces);
    memmove (table, table + 4 * first, 4 * np);
  }
  for (uint32_t i = 0; i < np; i++)
    if (cas_crc32c (cas_piece_seed (b->key, first + i), data + i * CAS_PIECE, CAS_PIECE) !=
        get_le32 (table + 4 * i))
      return cas_stored_corrupted (s, b, offset, "checksum mismatch in a piece, the stored data is corrupted");
  if (!direct)
    memcpy (out, data + boff % CAS_PIECE, n);
  return 0;
}

/* A read of several blocks: tell the kernel which parts of the data file
 * it will read (POSIX_FADV_WILLNEED, merged into runs of adjacent
 * blocks), so that it fetches them all at once rather than one pread
 * after another: the readahead of one descriptor shared by every
 * connection cannot follow several sequential readers by itself.
 * Only a hint: the blocks are read and verified as always.
 */
#define HINT_GAP (64u << 10)    /* blocks this close are one run */

static void
hint_reads (struct cas_store *s, struct cas_disk *d, uint64_t v, uint64_t nblocks)
{
  uint64_t run_off = 0, run_end = 0;

  rcu_read_lock ();
  for (uint64_t i = 0; i < nblocks; i++) {
    struct cas_block *b = cas_map_get (&d->map, v + i);
    if (b == NULL)
      continue;
    const uint64_t off = cas_block_offset (b), end = off + cas_block_len (b);
    if (run_end != 0 && off >= run_off && off <= run_end + HINT_GAP) {
      if (end > run_end)
        run_end = end;
      continue;
    }
    if (run_end != 0)
      posix_fadvise (s->data_fd, run_off, run_end - run_off, POSIX_FADV_WILLNEED);
    run_off = off;
    run_end = end;
  }
  rcu_read_unlock ();
  if (run_end != 0)
    posix_fadvise (s->data_fd, run_off, run_end - run_off, POSIX_FADV_WILLNEED);
}

/* What block V of D holds: its stored block (or zeroes) with its pending
 * small writes applied.  V's stripe lock held.
 */
static int
read_current (struct cas_disk *d, uint64_t v, uint8_t *buf)
{
  struct cas_store *s = d->s;
  int r = 0;

  rcu_read_lock ();
  struct cas_block *b = cas_map_get (&d->map, v);
  if (b)
    r = cas_read_stored (s, b, buf);
  else
    memset (buf, 0, s->block_size);
  rcu_read_unlock ();
  if (r == 0) {
    const struct cas_ovl *o = cas_ovl_find (s, d, v);
    if (o)
      cas_ovl_apply (o, buf);
  }
  return r;
}

/* Read N bytes at BOFF of block V, which has (or had, a moment ago)
 * pending small writes: entry and patches together, under the stripe.
 * *TMP as in read_pieces.
 */
static int
read_patched (struct cas_disk *d, uint64_t v, uint8_t *out, uint32_t boff, uint32_t n,
              uint8_t **tmp)
{
  struct cas_store *s = d->s;

  if (*tmp == NULL && (*tmp = malloc (s->block_size)) == NULL) {
    cas_error ("read: %m");
    return -1;
  }
  SCOPED_LOCK (l, stripe_of (s, d, v));
  if (read_current (d, v, *tmp) == -1)
    return -1;
  memcpy (out, *tmp + boff, n);
  return 0;
}

static int
read_range (struct cas_disk *d, void *buf, uint32_t count, uint64_t offset)
{
  struct cas_store *s = d->s;
  const uint32_t bs = s->block_size;
  CLEANUP_FREE uint8_t *tmp = NULL;
  uint8_t *p = buf;

  if (check_range (d, count, offset, "read") == -1 || check_deleted (d, "read") == -1)
    return -1;
  /* A disk that had small writes is read here (a buffered open left them;
   * direct I/O writes none).
   */
  if (s->dio && cas_ovl_bits (d) == NULL)
    return cas_dio_read_range (d, buf, count, offset);
  {
    const uint64_t v0 = offset / bs, v1 = (offset + count - 1) / bs;
    if (v1 > v0)
      hint_reads (s, d, v0, v1 - v0 + 1);
  }
  while (count > 0) {
    const uint64_t v = offset / bs;
    const uint32_t boff = offset % bs;
    const uint32_t n = count < bs - boff ? count : bs - boff;
    int r = 0;

    /* The bit before the entry: see overlay.h. */
    if (cas_ovl_flagged (cas_ovl_bits (d), v)) {
      if (read_patched (d, v, p, boff, n, &tmp) == -1)
        return -1;
      p += n;
      offset += n;
      count -= n;
      continue;
    }
    rcu_read_lock ();
    struct cas_block *b = cas_map_get (&d->map, v);
    if (b == NULL)
      memset (p, 0, n);
    else if (n == bs)
      r = cas_read_stored (s, b, p);
    else if (cas_block_flags (b) & CAS_BLK_SECTORED)
      r = read_pieces (s, b, p, boff, n, &tmp);
    else {
      if (tmp == NULL && (tmp = malloc (bs)) == NULL) {
        cas_error ("read: %m");
        r = -1;
      }
      if (r == 0 && (r = cas_read_stored (s, b, tmp)) == 0)
        memcpy (p, tmp + boff, n);
    }
    rcu_read_unlock ();
    if (r == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* The largest compressed size worth keeping for a block of BS bytes:
 * granules covering at most 7/8 of it.
 */
static uint32_t
compressed_max (uint32_t bs)
{
  return (bs - bs / 8) / CAS_GRANULE * CAS_GRANULE;
}

/* Deciding that a block found by its key holds the content being written:
 * the key is only 64 bits of a hash (index.h), so the stored bytes
 * are compared with the new ones.  rcu_read_lock held (the block's space
 * is not reused before a grace period after it is killed).
 */
struct same_ctx {
  struct cas_store *s;
  const uint8_t *data;          /* block_size bytes being written */
  uint8_t *stored, *plain;      /* buffers, allocated on the first candidate */
  bool revived;                 /* the block taken was dead (refcount 0) before */
};

static bool
same_content (void *opaque, struct cas_block *b)
{
  struct same_ctx *c = opaque;
  struct cas_store *s = c->s;
  const uint32_t bs = s->block_size, flags = cas_block_flags (b), len = cas_block_len (b);
  const bool compressed = flags & CAS_BLK_COMPRESSED;

  if (c->stored == NULL && (c->stored = malloc (cas_stored_max (bs))) == NULL)
    return false;               /* not deduplicated: a new copy is stored */
  if (compressed && c->plain == NULL && (c->plain = malloc (bs)) == NULL)
    return false;
  /* Sectored and raw blocks start with their block_size bytes. */
  if (cas_pread_full (s->data_fd, c->stored, compressed ? len : bs, cas_block_offset (b),
                      "data file") == -1)
    return false;
  if (!compressed)
    return memcmp (c->stored, c->data, bs) == 0;
  return cas_decompress (c->plain, bs, c->stored, len) == 0 &&
    memcmp (c->plain, c->data, bs) == 0;
}

/* cas_index_lookup's test for a block to reference: it holds the content
 * and a reference was taken on it.  A block with ref_max references takes
 * no more (index.h): the look-up goes on to the next candidate, and if
 * none is left the caller stores another copy.  A block killed since the
 * index found it is passed over the same way.
 */
static bool
same_and_get (void *opaque, struct cas_block *b)
{
  struct same_ctx *c = opaque;
  const uint32_t max = c->s->ref_max;

  if (cas_block_refs (b) >= max)
    return false;               /* full: not worth reading */
  return same_content (c, b) && cas_block_get (b, max, &c->revived);
}

/* A live block holding DATA (key KEY) with a reference taken, or NULL. */
static struct cas_block *
find_block (struct cas_store *s, uint64_t key, struct same_ctx *c)
{
  rcu_read_lock ();
  c->revived = false;
  struct cas_block *b = cas_index_lookup (&s->index, key, same_and_get, c);
  rcu_read_unlock ();
  if (b && c->revived)
    __atomic_sub_fetch (&s->ndead, 1, __ATOMIC_RELAXED);
  return b;
}

/* How a block's content is stored in the data file. */
struct encoded {
  const void *bytes;            /* the content itself, or the caller's buffer */
  uint32_t len;                 /* stored length */
  uint32_t flags;               /* CAS_BLK_COMPRESSED, CAS_BLK_SECTORED or 0 */
  uint32_t crc;                 /* CRC-32C of the stored bytes */
};

/* Encode DATA (block_size bytes, index key KEY) for the data file into
 * BUF (cas_stored_max (block_size) bytes).  No lock, any thread.
 */
static int
encode_block (const struct cas_store *s, const void *data, uint64_t key, uint8_t *buf,
              struct encoded *e)
{
  const uint32_t bs = s->block_size;

  e->bytes = data;
  e->len = bs;
  e->flags = 0;
  /* Compress it if that saves at least an eighth of the block: a
   * compressed block costs a decompression of the whole block on every
   * read of any part of it, which a saving of a granule or two does not
   * repay (docs/performance.md).
   */
  if (s->level > 0) {
    const uint32_t cap = compressed_max (bs);
    const long c = cas_compress (buf, cap, data, bs, s->level);
    if (c < 0)
      return -1;
    if (c > 0 && round_up (c, CAS_GRANULE) <= cap) {
      e->bytes = buf;
      e->len = c;
      e->flags = CAS_BLK_COMPRESSED;
    }
  }
  if (e->flags == 0 && bs > CAS_PIECE) {
    /* Raw: the bytes and a CRC per piece, so that small reads check only
     * what they read.
     */
    memcpy (buf, data, bs);
    for (uint32_t i = 0; i < bs / CAS_PIECE; i++)
      put_le32 (buf + bs + 4 * i,
                cas_crc32c (cas_piece_seed (key, i), buf + i * CAS_PIECE, CAS_PIECE));
    e->bytes = buf;
    e->len = cas_sectored_len (bs);
    e->flags = CAS_BLK_SECTORED;
  }
  e->crc = cas_crc32c (0, e->bytes, e->len);
  return 0;
}

/* A whole block of a multi-block write, prepared by prepare_one. */
struct prepared {
  const uint8_t *data;          /* its content, in the request's buffer */
  bool zero;                    /* all zero: nothing to store */
  bool known;                   /* its key was in the index: not encoded */
  int err;                      /* errno of a failure (logged there), or 0 */
  uint64_t key;                 /* unless zero */
  struct encoded e;             /* unless zero or known */
};

/* Find DATA (block_size bytes, not all zero) in the index or store it.
 * PRE, if not NULL, is DATA's preparation (its hash and, unless its key
 * was known, its encoding).  Returns the block with a reference held for
 * the caller.  ckpt_lock held for reading.
 */
static struct cas_block *
store_block (struct cas_store *s, const void *data, const struct prepared *pre)
{
  const uint32_t bs = s->block_size;
  uint64_t key;
  CLEANUP_FREE uint8_t *cbuf = NULL;
  struct same_ctx same = { .s = s, .data = data };
  struct cas_block *b = NULL, *got;
  struct encoded e;

  if (pre) {
    assert (!pre->zero && pre->err == 0);
    key = pre->key;
  }
  else if (cas_block_key (&s->keyfn, data, bs, &key) == -1)
    return NULL;
  if ((got = find_block (s, key, &same)) != NULL)
    goto out;

  /* New content: encoded by prepare_one, or now. */
  if (pre && !pre->known)
    e = pre->e;
  else {
    if ((cbuf = malloc (cas_stored_max (bs))) == NULL) {
      cas_error ("write: %m");
      goto out;
    }
    if (encode_block (s, data, key, cbuf, &e) == -1)
      goto out;
  }
  const void *stored = e.bytes;
  uint32_t stored_len = e.len, flags = e.flags;
  uint64_t off;
  if (cas_alloc_get (&s->alloc, stored_len, &off) == -1)
    goto out;
  if (off + stored_len > CAS_DATA_MAX) {
    cas_alloc_free (&s->alloc, off, stored_len);
    errno = EFBIG;
    cas_error ("write: the data file would grow past %" PRIu64 " bytes", CAS_DATA_MAX);
    goto out;
  }
  if (cas_data_write (s, stored, stored_len, off) == -1) {
    /* Part of it may have been written (ENOSPC half-way): give it back. */
    const int saved = errno;
    cas_punch_hole (s->data_fd, off, round_up (stored_len, CAS_GRANULE), "data file");
    cas_alloc_free (&s->alloc, off, stored_len);
    errno = saved;
    goto out;
  }
  b = cas_block_new ();
  if (b == NULL) {
    cas_alloc_free (&s->alloc, off, stored_len);
    goto out;
  }
  cas_block_init (b, key, off, stored_len, flags, e.crc);
  b->refcount = 1;

  /* Publish: look up again and insert, with its journal record, under
   * jlock, so that no other writer can store the same content meanwhile
   * nor journal a reference to it before its BLOCK_NEW.
   */
  {
    SCOPED_LOCK (jl, &s->jlock);
    rcu_read_lock ();
    same.revived = false;
    /* None (killed, or full: ours is another copy), or a reference taken. */
    got = cas_index_lookup (&s->index, key, same_and_get, &same);
    if (got == NULL) {
      b->id = s->next_id++;
      cas_index_add (&s->index, b);
    }
    rcu_read_unlock ();
    if (got == NULL) {
      uint8_t rec[JREC_BLOCK_NEW_LEN] = { 0 };
      put_le64 (rec, b->id);
      put_le64 (rec + 8, off);
      put_le64 (rec + 16, key);
      put_le32 (rec + 48, stored_len);
      put_le32 (rec + 52, flags);
      put_le32 (rec + 56, b->crc);
      cas_journal_append (s, JREC_BLOCK_NEW, rec, sizeof rec);
      got = b;
      b = NULL;
    }
    else if (same.revived)
      __atomic_sub_fetch (&s->ndead, 1, __ATOMIC_RELAXED);
  }
  if (b) {
    /* Another writer stored the same content first: ours was never
     * referenced, so its space is reusable at once.
     */
    cas_alloc_free (&s->alloc, off, stored_len);
    cas_block_free (b);
  }
 out:
  free (same.stored);
  free (same.plain);
  return got;
}

/* Point block V of D at NB (NULL = zeroes), which carries a reference for
 * the map.  V's stripe lock and ckpt_lock (read) held.
 */
static int
set_entry (struct cas_disk *d, uint64_t v, struct cas_block *nb)
{
  struct cas_store *s = d->s;
  struct cas_block *old;

  if (check_deleted (d, "write") == -1)   /* deletion holds every stripe */
    return -1;
  if (cas_map_set (&d->map, v, nb, &old) == -1)
    return -1;
  /* The new entry first, then the patches go (overlay.h). */
  const bool patched = cas_ovl_drop (s, d, v);
  if (old == nb) {              /* same content: the map already had a reference */
    if (nb)
      cas_block_put (&s->index, nb, cas_now ());
    if (!patched)
      return 0;                 /* else MAP_SET ends the patches on replay too */
  }
  {
    uint8_t rec[JREC_MAP_SET_LEN] = { 0 };
    put_le32 (rec, d->id);
    put_le64 (rec + 8, v);
    put_le64 (rec + 16, nb ? nb->id : 0);
    SCOPED_LOCK (jl, &s->jlock);
    cas_journal_append (s, JREC_MAP_SET, rec, sizeof rec);
  }
  if (old && old != nb && cas_block_put (&s->index, old, cas_now ()))
    cas_gc_note_dead (s, 1);
  return 0;
}

/* Drop a reference that will not be stored in a map (an error path). */
static void
unref (struct cas_store *s, struct cas_block *b)
{
  if (b && cas_block_put (&s->index, b, cas_now ()))
    cas_gc_note_dead (s, 1);
}

/* Write the whole block V from SRC, prepared as PRE (NULL: not yet).
 * ckpt_lock held for reading.
 */
static int
write_whole (struct cas_disk *d, uint64_t v, const uint8_t *src, const struct prepared *pre)
{
  struct cas_store *s = d->s;
  struct cas_block *nb = NULL;
  const bool zero = pre ? pre->zero : cas_is_zero (src, s->block_size);

  /* Hash and compress without holding the stripe. */
  if (!zero && (nb = store_block (s, src, pre)) == NULL)
    return -1;
  cas_dio_remember (s, nb, src);
  SCOPED_LOCK (l, stripe_of (s, d, v));
  if (set_entry (d, v, nb) == -1) {
    unref (s, nb);
    return -1;
  }
  return 0;
}

/* ---- The small-write log (overlay.h) ---- */

static int maybe_flush (struct cas_store *s);

#define MERGE_PATCHES 16        /* a block with this many patches is rebuilt */
#define MAX_PATCHES (4 * MERGE_PATCHES) /* never more: write through instead */

/* Does a write of N bytes into part of a block go to the log?  Not when
 * the pending patches hold twice their budget: merges are failing (a full
 * file system), and the write goes the way that reports it.  Nor zeroes:
 * the whole-block path may release the block, and extents stay exact (a
 * block with patches is reported as data).
 */
static bool
use_log (struct cas_store *s, const uint8_t *src, uint32_t n)
{
  return s->small_log && n <= CAS_PATCH_MAX && cas_ovl_bytes (s) < 2 * s->ovl_budget &&
    !cas_is_zero (src, n);
}

/* Rebuild block V of D from its entry and patches: an ordinary store of
 * the whole block, whose MAP_SET ends the patches.  V's stripe lock and
 * ckpt_lock (read) held.
 */
static int
merge_locked (struct cas_disk *d, uint64_t v)
{
  struct cas_store *s = d->s;
  struct cas_block *nb = NULL;

  if (!cas_ovl_flagged (cas_ovl_bits (d), v))
    return 0;                   /* merged meanwhile */
  CLEANUP_FREE uint8_t *buf = malloc (s->block_size);
  if (buf == NULL) {
    cas_error ("merge small writes: %m");
    return -1;
  }
  if (read_current (d, v, buf) == -1)
    return -1;
  if (!cas_is_zero (buf, s->block_size) && (nb = store_block (s, buf, NULL)) == NULL)
    return -1;
  cas_dio_remember (s, nb, buf);
  if (set_entry (d, v, nb) == -1) {
    unref (s, nb);
    return -1;
  }
  __atomic_add_fetch (&s->ovl_merges, 1, __ATOMIC_RELAXED);
  return 0;
}

/* Write N bytes of SRC at BOFF into block V as a patch.  V's stripe lock
 * and ckpt_lock (read) held.  A block that reaches MERGE_PATCHES is ripe:
 * the merge thread rebuilds it (or this writer, when none runs; a failure
 * leaves the patch, which is journaled).  A block that still has
 * MAX_PATCHES (merges failing, or the thread behind) is rebuilt by its
 * next writer first, which fails if that fails.
 */
static int
log_write (struct cas_disk *d, uint64_t v, const uint8_t *src, uint32_t boff, uint32_t n)
{
  struct cas_store *s = d->s;
  struct cas_ovl *o = NULL;

  if (check_deleted (d, "write") == -1)
    return -1;
  if (cas_ovl_flagged (cas_ovl_bits (d), v) && (o = cas_ovl_find (s, d, v)) != NULL &&
      o->n >= MAX_PATCHES && merge_locked (d, v) == -1)
    return -1;
  if (cas_ovl_add (s, d, v, boff, src, n, &o) == -1)
    return -1;
  {
    SCOPED_LOCK (jl, &s->jlock);
    cas_journal_append_patch (s, d->id, v, boff, src, n);
  }
  if (o->n >= MERGE_PATCHES || o->bytes >= s->block_size) {
    /* Ripe: the merge thread's work, or this writer's without one. */
    if (!__atomic_load_n (&s->merge_started, __ATOMIC_ACQUIRE))
      merge_locked (d, v);      /* a failure was logged; the patch stands */
    else if (!o->ripe) {
      cas_ovl_mark_ripe (s, o);
      cas_merger_kick (s);
    }
  }
  return 0;
}

int
cas_ovl_merge_some (struct cas_store *s, uint64_t target, uint64_t before_ns, uint32_t max)
{
  struct cas_disk *d;
  uint64_t v;
  int r = 0;

  if (cas_check_failed (s, "merge small writes") == -1)
    return -1;
  pthread_rwlock_rdlock (&s->ckpt_lock);
  for (uint32_t k = 0; k < max && r == 0 && cas_ovl_pick (s, target, before_ns, &d, &v); k++) {
    SCOPED_LOCK (l, stripe_of (s, d, v));
    r = merge_locked (d, v);
  }
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (r == 0)
    r = maybe_flush (s);
  return r;
}

int
cas_ovl_merge_disk (struct cas_disk *d)
{
  const uint64_t *bits = cas_ovl_bits (d);

  if (bits == NULL)
    return 0;
  for (uint64_t v = 0; v < d->map.nblocks; v++) {
    if (v % 64 == 0 && __atomic_load_n (&bits[v / 64], __ATOMIC_ACQUIRE) == 0) {
      v += 63;
      continue;
    }
    if (cas_ovl_flagged (bits, v) && merge_locked (d, v) == -1)
      return -1;
  }
  return 0;
}

/* Write N bytes of SRC (NULL = zeroes) at BOFF within block V.  ckpt_lock
 * held for reading.
 */
static int
write_block (struct cas_disk *d, uint64_t v, const uint8_t *src, uint32_t boff, uint32_t n)
{
  struct cas_store *s = d->s;
  const uint32_t bs = s->block_size;
  struct cas_block *nb = NULL;

  if (boff == 0 && n == bs && src)
    return write_whole (d, v, src, NULL);

  /* Part of a block: read, merge, store under the stripe lock; or a small
   * write into the log.
   */
  SCOPED_LOCK (l, stripe_of (s, d, v));
  if (src && use_log (s, src, n))
    return log_write (d, v, src, boff, n);
  CLEANUP_FREE uint8_t *buf = malloc (bs);
  if (buf == NULL) {
    cas_error ("write: %m");
    return -1;
  }
  if (read_current (d, v, buf) == -1)
    return -1;
  if (src)
    memcpy (buf + boff, src, n);
  else
    memset (buf + boff, 0, n);
  if (!cas_is_zero (buf, bs) && (nb = store_block (s, buf, NULL)) == NULL)
    return -1;
  cas_dio_remember (s, nb, buf);
  if (set_entry (d, v, nb) == -1) {
    unref (s, nb);
    return -1;
  }
  return 0;
}

/* Flush if too many journal records wait in memory: the merge thread's
 * work (merger.c), or this writer's without one or when it falls behind.
 */
static int
maybe_flush (struct cas_store *s)
{
  const size_t len = __atomic_load_n (&s->active.len, __ATOMIC_RELAXED);

  if (len > 4 * (size_t) CAS_JBUF_LIMIT || (len > CAS_JBUF_LIMIT && !cas_merger_kick (s)))
    return cas_journal_sync (s);
  return 0;
}

/* ---- Several whole blocks of one request, prepared in parallel ----
 *
 * The CPU work of a whole block (the all-zero test, its key, and, for
 * content the index does not know yet, compression and the CRCs) depends
 * on nothing but its bytes, so the whole blocks of a request are prepared
 * in parallel by the store's worker pool (workpool.h) and the writing
 * thread, up to PREP_BYTES at a time.  Then the writing thread stores and
 * maps them one by one, in order, exactly as it does a single block:
 * index look-up, allocation, pwrite, BLOCK_NEW under jlock, MAP_SET under
 * the stripe.  Preparing takes no lock: the items read only the request's
 * buffer and, for the "known" hint, the index inside an RCU read-side
 * section (keys only: no stored bytes are read there).  A block found
 * known may be gone by the time it is stored (the GC killed it), or hold
 * other content under the same key; store_block then encodes it itself.
 */
#define PREP_BYTES (1u << 20)   /* whole blocks prepared per round */

struct prep_round {
  struct cas_store *s;
  struct prepared *items;
  uint8_t *bufs;                /* cas_stored_max (block_size) bytes per item */
};

/* cas_index_lookup's test for the hint below: any block with the key. */
static bool
any_block (void *opaque, struct cas_block *b)
{
  return true;
}

/* Prepare item I of the round (a cas_work_fn: no lock held, any thread). */
static void
prepare_one (void *opaque, size_t i)
{
  const struct prep_round *r = opaque;
  struct cas_store *s = r->s;
  struct prepared *p = &r->items[i];
  const uint32_t bs = s->block_size;

  p->zero = cas_is_zero (p->data, bs);
  if (p->zero)
    return;
  if (cas_block_key (&s->keyfn, p->data, bs, &p->key) == -1) {
    p->err = errno;
    return;
  }
  /* Content the index probably has already (a block with the same key)
   * is probably not stored again: skip its encoding.  Only a hint: the
   * bytes are compared when the block is stored, and store_block encodes
   * the block itself if it was not the same after all.
   */
  rcu_read_lock ();
  p->known = cas_index_lookup (&s->index, p->key, any_block, NULL) != NULL;
  rcu_read_unlock ();
  if (!p->known &&
      encode_block (s, p->data, p->key, r->bufs + i * (size_t) cas_stored_max (bs), &p->e) == -1)
    p->err = errno;
}

/* Write N (>= 2) whole blocks from SRC at block V0.  ckpt_lock held for
 * reading.
 */
static int
write_whole_blocks (struct cas_disk *d, uint64_t v0, const uint8_t *src, uint32_t n)
{
  struct cas_store *s = d->s;
  const uint32_t bs = s->block_size;
  CLEANUP_FREE struct prepared *items = calloc (n, sizeof *items);
  CLEANUP_FREE uint8_t *bufs = malloc ((size_t) n * cas_stored_max (bs));
  struct prep_round round = { .s = s, .items = items, .bufs = bufs };

  if (items == NULL || bufs == NULL) {
    cas_error ("write: %m");
    return -1;
  }
  for (uint32_t i = 0; i < n; i++)
    items[i].data = src + (size_t) i * bs;
  cas_workpool_run (s->pool, prepare_one, &round, n);
  for (uint32_t i = 0; i < n; i++) {
    if (items[i].err) {
      errno = items[i].err;     /* logged where it failed */
      return -1;
    }
    if (write_whole (d, v0 + i, items[i].data, &items[i]) == -1)
      return -1;
  }
  return 0;
}

/* Apply SRC (NULL = zeroes) to [offset, offset+count) block by block. */
static int
write_range (struct cas_disk *d, const uint8_t *src, uint32_t count, uint64_t offset)
{
  struct cas_store *s = d->s;
  const uint32_t bs = s->block_size;
  int r = 0;

  pthread_rwlock_rdlock (&s->ckpt_lock);
  while (count > 0 && r == 0) {
    const uint64_t v = offset / bs;
    const uint32_t boff = offset % bs;
    uint32_t n = count < bs - boff ? count : bs - boff;

    if (s->pool && src && boff == 0 && count / bs >= 2) {
      const uint32_t nblocks = count / bs < PREP_BYTES / bs ? count / bs : PREP_BYTES / bs;
      n = nblocks * bs;
      r = write_whole_blocks (d, v, src, nblocks);
    }
    else
      r = write_block (d, v, src, boff, n);
    if (src)
      src += n;
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (r == 0)
    r = maybe_flush (s);
  /* Over budget: the merge thread's work, or this writer's without one. */
  if (r == 0 && s->small_log && cas_ovl_bytes (s) > s->ovl_budget && !cas_merger_kick (s))
    cas_ovl_merge_some (s, s->ovl_budget - s->ovl_budget / 4, 0, 32);
  return r;
}

/* Writes to a snapshot or a read-only store fail with EROFS. */
static int
check_writable (const struct cas_disk *d, const char *op)
{
  if (d->s->readonly) {
    errno = EROFS;
    cas_error ("%s: the store is open read-only", op);
    return -1;
  }
  if (cas_disk_is_snapshot (d)) {
    errno = EROFS;
    cas_error ("%s: '%s' is a snapshot (read-only)", op, d->name);
    return -1;
  }
  return 0;
}

static int
write_request (struct cas_disk *d, const void *buf, uint32_t count, uint64_t offset)
{
  if (check_writable (d, "write") == -1 || check_deleted (d, "write") == -1)
    return -1;
  if (check_range (d, count, offset, "write") == -1 || cas_check_failed (d->s, "write") == -1)
    return -1;
  return write_range (d, buf, count, offset);
}

/* Release whole blocks [v0, v0+n): map entries become NULL. */
static int
zero_blocks (struct cas_disk *d, uint64_t v0, uint64_t n)
{
  struct cas_store *s = d->s;
  const uint64_t now = cas_now ();
  int r = 0;

  pthread_rwlock_rdlock (&s->ckpt_lock);
  if (n <= ZERO_RANGE_BIG) {
    for (uint64_t v = v0; v < v0 + n && r == 0; v++) {
      SCOPED_LOCK (l, stripe_of (s, d, v));
      r = set_entry (d, v, NULL);   /* fails only on a deleted disk: no page is allocated */
    }
  }
  else {
    /* One record for the whole range, under every stripe (ascending). */
    uint8_t rec[JREC_MAP_ZERO_LEN] = { 0 };
    uint64_t dead = 0;

    for (int i = 0; i < CAS_NSTRIPES; i++)
      pthread_mutex_lock (&s->stripes[i]);
    if (check_deleted (d, "zero") == -1) {
      for (int i = CAS_NSTRIPES - 1; i >= 0; i--)
        pthread_mutex_unlock (&s->stripes[i]);
      pthread_rwlock_unlock (&s->ckpt_lock);
      return -1;
    }
    put_le32 (rec, d->id);
    put_le64 (rec + 8, v0);
    put_le64 (rec + 16, n);
    {
      SCOPED_LOCK (jl, &s->jlock);
      cas_journal_append (s, JREC_MAP_ZERO, rec, sizeof rec);
    }
    for (uint64_t v = v0; v < v0 + n; v++) {
      struct cas_block *old;
      if (cas_map_page_of (&d->map, v) == NULL) {
        v |= CAS_MAP_PAGE - 1;  /* nothing mapped in this page */
        continue;
      }
      cas_map_set (&d->map, v, NULL, &old);
      if (old && cas_block_put (&s->index, old, now))
        dead++;
    }
    cas_ovl_drop_range (s, d, v0, n);   /* after the entries (overlay.h) */
    cas_gc_note_dead (s, dead);
    for (int i = CAS_NSTRIPES - 1; i >= 0; i--)
      pthread_mutex_unlock (&s->stripes[i]);
  }
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (r == -1)
    return -1;
  return maybe_flush (s);
}

static int
zero_range (struct cas_disk *d, uint32_t count, uint64_t offset)
{
  const uint32_t bs = d->s->block_size;
  uint64_t first, last;

  if (check_writable (d, "zero") == -1 || check_deleted (d, "zero") == -1)
    return -1;
  if (check_range (d, count, offset, "zero") == -1 || cas_check_failed (d->s, "zero") == -1)
    return -1;
  /* Whole blocks in the middle are released; the partial ends are written
   * with zeroes.  A range reaching the end of the disk covers its last
   * (possibly short) block entirely.
   */
  first = round_up (offset, bs) / bs;
  last = offset + count == d->size ? d->map.nblocks : (offset + count) / bs;
  if (first >= last)
    return write_range (d, NULL, count, offset);
  if (offset < first * bs && write_range (d, NULL, first * bs - offset, offset) == -1)
    return -1;
  if (zero_blocks (d, first, last - first) == -1)
    return -1;
  if (last * bs < offset + count &&
      write_range (d, NULL, offset + count - last * bs, last * bs) == -1)
    return -1;
  return 0;
}

static int
extents_range (struct cas_disk *d, uint64_t offset, uint64_t count,
               cas_extent_fn fn, void *opaque)
{
  const uint32_t bs = d->s->block_size;
  const uint64_t end = offset + count;
  uint64_t start = offset, pos = offset;
  bool zero = false, first = true;

  if (check_range (d, count, offset, "extents") == -1 || check_deleted (d, "extents") == -1)
    return -1;
  rcu_read_lock ();
  while (pos < end) {
    const uint64_t v = pos / bs;
    uint64_t next;
    bool z;

    const uint64_t *bits = cas_ovl_bits (d);
    if (cas_ovl_flagged (bits, v)) {
      z = false;                /* pending small writes: data */
      next = (v + 1) * bs;
    }
    else if (cas_map_page_of (&d->map, v) == NULL && bits == NULL) {
      z = true;
      next = (v / CAS_MAP_PAGE + 1) * CAS_MAP_PAGE * bs;
    }
    else {
      z = cas_map_get (&d->map, v) == NULL;
      next = (v + 1) * bs;
    }
    if (next > end)
      next = end;
    if (first) {
      zero = z;
      first = false;
    }
    else if (z != zero) {
      rcu_read_unlock ();
      if (fn (opaque, start, pos - start, zero) == -1)
        return -1;
      rcu_read_lock ();
      start = pos;
      zero = z;
    }
    pos = next;
  }
  rcu_read_unlock ();
  if (count > 0 && fn (opaque, start, end - start, zero) == -1)
    return -1;
  return 0;
}

/* ---- Where requests enter: each is counted (counters.h). ---- */

int
cas_disk_read (struct cas_disk *d, void *buf, uint32_t count, uint64_t offset)
{
  return cas_op_done (&d->ops, CAS_OP_READ, count, read_range (d, buf, count, offset));
}

int
cas_disk_write (struct cas_disk *d, const void *buf, uint32_t count, uint64_t offset)
{
  return cas_op_done (&d->ops, CAS_OP_WRITE, count, write_request (d, buf, count, offset));
}

int
cas_disk_zero (struct cas_disk *d, uint32_t count, uint64_t offset)
{
  return cas_op_done (&d->ops, CAS_OP_ZERO, count, zero_range (d, count, offset));
}

int
cas_disk_extents (struct cas_disk *d, uint64_t offset, uint64_t count,
                  cas_extent_fn fn, void *opaque)
{
  return cas_op_done (&d->ops, CAS_OP_EXTENTS, count,
                      extents_range (d, offset, count, fn, opaque));
}

int
cas_store_flush (struct cas_store *s)
{
  if (s->readonly)
    return 0;
  return cas_journal_sync (s);
}

int
cas_disk_flush (struct cas_disk *d)
{
  return cas_op_done (&d->ops, CAS_OP_FLUSH, 0, cas_store_flush (d->s));
}

void
cas_disk_op_stats (struct cas_disk *d, struct cas_op_stats out[CAS_OP_COUNT])
{
  memset (out, 0, CAS_OP_COUNT * sizeof *out);
  for (int k = 0; k < CAS_OP_SHARDS; k++) {
    const struct cas_op_shard *sh = &d->ops.shard[k];
    for (int op = 0; op < CAS_OP_COUNT; op++) {
      out[op].requests += __atomic_load_n (&sh->requests[op], __ATOMIC_RELAXED);
      out[op].bytes += __atomic_load_n (&sh->bytes[op], __ATOMIC_RELAXED);
      out[op].errors += __atomic_load_n (&sh->errors[op], __ATOMIC_RELAXED);
    }
  }
}

const char *
cas_op_name (enum cas_op op)
{
  static const char *const names[CAS_OP_COUNT] = {
    [CAS_OP_READ] = "read", [CAS_OP_WRITE] = "write", [CAS_OP_ZERO] = "zero",
    [CAS_OP_FLUSH] = "flush", [CAS_OP_EXTENTS] = "extents",
  };
  return (unsigned) op < CAS_OP_COUNT ? names[op] : "unknown";
}
