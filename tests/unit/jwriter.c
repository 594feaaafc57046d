/* A test-only journal writer and checkpoint reader: see jwriter.h.  The
 * encoding follows docs/format.md and lib/format.h; it shares no code with
 * lib/meta/journal.c on purpose (only the CRC-32C and the little-endian
 * helpers), so that a mistake in one is not repeated in the other.
 */
#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "format.h"
#include "util/crc32c.h"
#include "util/util.h"

#include "fixture.h"
#include "jwriter.h"

static void
grow (struct jw *w, size_t more)
{
  if (w->len + more <= w->cap)
    return;
  size_t cap = w->cap ? w->cap : 4096;
  while (cap < w->len + more)
    cap *= 2;
  w->buf = realloc (w->buf, cap);
  cr_assert_not_null (w->buf);
  w->cap = cap;
}

static size_t
rec_total (uint16_t plen)
{
  return (JREC_HDR_SIZE + plen + 7) & ~(size_t) 7;
}

void
jw_open (struct jw *w)
{
  size_t len, pos;

  memset (w, 0, sizeof *w);
  journal_path (w->path, sizeof w->path);
  w->buf = slurp (w->path, &len);
  w->len = w->cap = len;
  cr_assert_geq (len, JRN_HDR_SIZE, "%s: no header", w->path);
  cr_assert_arr_eq (w->buf, CAS_JOURNAL_MAGIC, 8, "%s: not a journal", w->path);
  w->next_seq = get_le64 (w->buf + JRN_FIRST_SEQ);
  w->gen = get_le64 (w->buf + JRN_GEN);
  /* Skip the complete batches already there. */
  for (pos = JRN_HDR_SIZE; pos + JREC_BATCH_SIZE <= len; ) {
    const uint8_t *h = w->buf + pos;
    cr_assert_eq (get_le16 (h + 4), JREC_BATCH, "%s: no batch at %zu", w->path, pos);
    cr_assert_eq (get_le64 (h + 8), w->next_seq, "%s: batch at %zu: seq", w->path, pos);
    const uint32_t blen = get_le32 (h + JREC_HDR_SIZE);
    const uint32_t count = get_le32 (h + JREC_HDR_SIZE + 8);
    cr_assert_leq (pos + JREC_BATCH_SIZE + blen, len, "%s: batch at %zu is torn", w->path, pos);
    w->next_seq += count;
    pos += JREC_BATCH_SIZE + blen;
  }
  cr_assert_eq (pos, len, "%s: a torn tail at %zu", w->path, pos);
}

void
jw_begin (struct jw *w)
{
  cr_assert_eq (w->batch, 0, "jw_begin: a batch is open");
  grow (w, JREC_BATCH_SIZE);
  w->batch = w->len;
  w->batch_seq = w->next_seq;
  memset (w->buf + w->len, 0, JREC_BATCH_SIZE);
  w->len += JREC_BATCH_SIZE;
}

void
jw_rec (struct jw *w, int type, const void *payload, uint16_t len)
{
  const size_t total = rec_total (len);

  cr_assert_neq (w->batch, 0, "jw_rec: no open batch");
  cr_assert_leq (len, cas_jrec_max_len (type));
  grow (w, total);
  uint8_t *r = w->buf + w->len;
  memset (r, 0, total);
  put_le16 (r + 4, type);
  put_le16 (r + 6, len);
  put_le64 (r + 8, w->next_seq++);
  memcpy (r + JREC_HDR_SIZE, payload, len);
  put_le32 (r, cas_crc32c (0, r + 4, total - 4));
  w->len += total;
  w->nrecords++;
}

void
jw_end (struct jw *w)
{
  cr_assert_neq (w->batch, 0, "jw_end: no open batch");
  uint8_t *h = w->buf + w->batch;
  const uint8_t *recs = h + JREC_BATCH_SIZE;
  const size_t blen = w->buf + w->len - recs;
  const uint32_t count = w->next_seq - w->batch_seq;

  cr_assert_gt (count, 0, "jw_end: an empty batch (replay would take it for a torn tail)");
  put_le16 (h + 4, JREC_BATCH);
  put_le16 (h + 6, JREC_BATCH_LEN);
  put_le64 (h + 8, w->batch_seq);             /* the first record's; consumes none */
  put_le32 (h + JREC_HDR_SIZE, blen);
  put_le32 (h + JREC_HDR_SIZE + 4, cas_crc32c (0, recs, blen));
  put_le32 (h + JREC_HDR_SIZE + 8, count);
  put_le32 (h + JREC_HDR_SIZE + 12, 0);
  put_le32 (h, cas_crc32c (0, h + 4, JREC_BATCH_SIZE - 4));
  w->batch = 0;
  w->nbatches++;
}

void
jw_commit (struct jw *w)
{
  cr_assert_eq (w->batch, 0, "jw_commit: a batch is still open");
  const int fd = open (w->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert_geq (fd, 0, "open %s", w->path);
  cr_assert_eq (write (fd, w->buf, w->len), (ssize_t) w->len);
  cr_assert_eq (close (fd), 0);
  free (w->buf);
  w->buf = NULL;
}

void
jw_next_generation (struct jw *w)
{
  char path[400], name[64];
  size_t len;

  cr_assert_null (w->buf, "jw_next_generation: commit first");
  path_of (CAS_SB_NAME, path, sizeof path);
  uint8_t *sb = slurp (path, &len);
  w->gen++;
  snprintf (name, sizeof name, CAS_JOURNAL_FMT, w->gen);
  path_of (name, w->path, sizeof w->path);
  w->cap = w->len = JRN_HDR_SIZE;
  w->buf = calloc (1, w->cap);
  cr_assert_not_null (w->buf);
  memcpy (w->buf + JRN_MAGIC, CAS_JOURNAL_MAGIC, 8);
  put_le32 (w->buf + JRN_VERSION, CAS_FORMAT_VERSION);
  put_le64 (w->buf + JRN_GEN, w->gen);
  put_le64 (w->buf + JRN_FIRST_SEQ, w->next_seq);
  memcpy (w->buf + JRN_UUID, sb + SB_UUID, 16);
  put_le32 (w->buf + JRN_HDR_CRC, cas_crc32c (0, w->buf, JRN_HDR_SIZE));
  free (sb);
}

/* ---- typed records ---- */

void
jw_block_new (struct jw *w, uint64_t id, uint64_t offset, uint64_t key,
              uint32_t stored_len, uint32_t flags, uint32_t crc)
{
  uint8_t p[JREC_BLOCK_NEW_LEN] = { 0 };

  put_le64 (p, id);
  put_le64 (p + 8, offset);
  put_le64 (p + 16, key);                     /* then 24 zero bytes */
  put_le32 (p + 48, stored_len);
  put_le32 (p + 52, flags);
  put_le32 (p + 56, crc);
  jw_rec (w, JREC_BLOCK_NEW, p, sizeof p);
}

void
jw_block_del (struct jw *w, uint64_t id)
{
  uint8_t p[JREC_BLOCK_DEL_LEN];

  put_le64 (p, id);
  jw_rec (w, JREC_BLOCK_DEL, p, sizeof p);
}

void
jw_map_set (struct jw *w, uint32_t disk, uint64_t vblock, uint64_t id)
{
  uint8_t p[JREC_MAP_SET_LEN] = { 0 };

  put_le32 (p, disk);
  put_le64 (p + 8, vblock);
  put_le64 (p + 16, id);
  jw_rec (w, JREC_MAP_SET, p, sizeof p);
}

void
jw_map_zero (struct jw *w, uint32_t disk, uint64_t first, uint64_t count)
{
  uint8_t p[JREC_MAP_ZERO_LEN] = { 0 };

  put_le32 (p, disk);
  put_le64 (p + 8, first);
  put_le64 (p + 16, count);
  jw_rec (w, JREC_MAP_ZERO, p, sizeof p);
}

void
jw_disk_add (struct jw *w, uint32_t id, const char *name, uint64_t size)
{
  uint8_t p[JREC_DISK_ADD_LEN] = { 0 };
  const size_t n = strlen (name);

  cr_assert_leq (n, 64);
  put_le32 (p, id);
  put_le32 (p + 4, n);
  put_le64 (p + 8, size);
  memcpy (p + 16, name, n);
  jw_rec (w, JREC_DISK_ADD, p, sizeof p);
}

void
jw_block_move (struct jw *w, uint64_t id, uint64_t offset)
{
  uint8_t p[JREC_BLOCK_MOVE_LEN];

  put_le64 (p, id);
  put_le64 (p + 8, offset);
  jw_rec (w, JREC_BLOCK_MOVE, p, sizeof p);
}

void
jw_disk_clone (struct jw *w, uint32_t id, const char *name, uint64_t size,
               uint32_t src, uint32_t flags)
{
  uint8_t p[JREC_DISK_CLONE_LEN] = { 0 };
  const size_t n = strlen (name);

  cr_assert_leq (n, 64);
  put_le32 (p, id);
  put_le32 (p + 4, n);
  put_le64 (p + 8, size);
  memcpy (p + 16, name, n);
  put_le32 (p + 80, src);
  put_le32 (p + 84, flags);
  jw_rec (w, JREC_DISK_CLONE, p, sizeof p);
}

void
jw_patch (struct jw *w, uint32_t disk, uint64_t vblock, uint32_t off, const void *data,
          uint32_t len)
{
  uint8_t p[JREC_PATCH_HDR_LEN + CAS_PATCH_MAX] = { 0 };

  cr_assert_leq (len, CAS_PATCH_MAX);
  put_le32 (p, disk);
  put_le32 (p + 4, off);
  put_le64 (p + 8, vblock);
  put_le32 (p + 16, len);
  memcpy (p + JREC_PATCH_HDR_LEN, data, len);
  jw_rec (w, JREC_PATCH, p, JREC_PATCH_HDR_LEN + len);
}

void
jw_disk_del (struct jw *w, uint32_t id)
{
  uint8_t p[JREC_DISK_DEL_LEN] = { 0 };

  put_le32 (p, id);
  jw_rec (w, JREC_DISK_DEL, p, sizeof p);
}

/* ---- reading the checkpoint ---- */

void
jw_ckpt_read (struct jw_ckpt *c)
{
  char path[400];
  size_t len;

  memset (c, 0, sizeof *c);
  path_of (CAS_CKPT_NAME, path, sizeof path);
  uint8_t *buf = slurp (path, &len);
  cr_assert_geq (len, CKPT_HDR_SIZE);
  cr_assert_arr_eq (buf, CAS_CKPT_MAGIC, 8);
  c->gen = get_le64 (buf + CKPT_GEN);
  c->next_seq = get_le64 (buf + CKPT_NEXT_SEQ);
  c->next_id = get_le64 (buf + CKPT_NEXT_ID);
  c->ndisks = get_le32 (buf + CKPT_NDISKS);
  c->nblocks = get_le64 (buf + CKPT_NBLOCKS);
  const uint64_t npages = get_le64 (buf + CKPT_NPAGES);
  cr_assert_leq (c->ndisks, JW_MAX_DISKS);
  cr_assert_leq (c->nblocks, JW_MAX_BLOCKS);
  cr_assert_eq (len, CKPT_HDR_SIZE + CKPT_DISK_SIZE * c->ndisks + CKPT_BLOCK_SIZE * c->nblocks +
                CKPT_PAGE_SIZE * npages, "checkpoint length");
  const uint8_t *p = buf + CKPT_HDR_SIZE;
  for (size_t i = 0; i < c->ndisks; i++, p += CKPT_DISK_SIZE) {
    struct jw_disk *d = &c->disks[i];
    const uint32_t n = get_le32 (p + 4);
    cr_assert_eq (get_le32 (p), i);
    cr_assert_leq (n, 64);
    memcpy (d->name, p + 16, n);
    d->name[n] = '\0';
    d->size = get_le64 (p + 8);
    d->flags = get_le32 (p + CKPT_DISK_FLAGS);
    cr_assert_leq ((d->size + BS - 1) / BS, JW_MAX_VBLOCKS, "disk %zu is too big for jwriter", i);
  }
  for (size_t i = 0; i < c->nblocks; i++, p += CKPT_BLOCK_SIZE) {
    struct jw_block *b = &c->blocks[i];
    b->id = get_le64 (p);
    b->offset = get_le64 (p + 8);
    b->key = get_le64 (p + 16);
    b->stored_len = get_le32 (p + 48);
    b->flags = get_le32 (p + 52);
    b->refcount = get_le32 (p + 56);
    b->crc = get_le32 (p + 60);
  }
  for (uint64_t k = 0; k < npages; k++, p += CKPT_PAGE_SIZE) {
    const uint32_t disk = get_le32 (p);
    const uint64_t page = get_le64 (p + 8);
    cr_assert_lt (disk, c->ndisks);
    for (unsigned e = 0; e < CAS_MAP_PAGE; e++) {
      const uint64_t v = page * CAS_MAP_PAGE + e, id = get_le64 (p + 16 + 8 * e);
      if (id == 0)
        continue;
      cr_assert_lt (v, JW_MAX_VBLOCKS);
      c->disks[disk].map[v] = id;
    }
  }
  free (buf);
}

void
jw_secret (uint8_t secret[16])
{
  char path[400];
  size_t len;

  path_of (CAS_SB_NAME, path, sizeof path);
  uint8_t *sb = slurp (path, &len);
  cr_assert_eq (len, CAS_SB_SIZE);
  memcpy (secret, sb + SB_KEY_SECRET, 16);
  free (sb);
}

uint64_t
jw_data_size (void)
{
  char path[400];
  struct stat st;

  path_of (CAS_DATA_NAME, path, sizeof path);
  cr_assert_eq (stat (path, &st), 0);
  return st.st_size;
}
