/* Scrub: read back every stored block and every metadata file and verify
 * them, on an open store (offline through casdisk scrub, or while nbdkit
 * serves it).
 *
 * Blocks: CRC-32C of the stored bytes, decompression, and SHA-256 of the
 * content against the block's identity.  A block that fails is quarantined
 * (see index.h): dedup stops using it, reads of it return EIO, and the
 * next checkpoint records it.  Metadata: the superblock, the checkpoint
 * and the journal are re-read from disk and their checksums verified, so
 * rot after the store was opened is found too.
 *
 * A rate limit in bytes per second keeps a scrub from starving guests.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compress.h"
#include "crc32c.h"
#include "format.h"
#include "hash.h"
#include "io.h"
#include "log.h"
#include "store.h"
#include "util.h"

struct refs {
  struct cas_block **v;
  size_t n, cap;
};

static int
take_ref (void *opaque, struct cas_block *b)
{
  struct refs *r = opaque;
  bool revived;

  if (r->n == r->cap) {
    const size_t cap = r->cap ? 2 * r->cap : 1024;
    struct cas_block **v = realloc (r->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    r->v = v;
    r->cap = cap;
  }
  if (cas_block_get (b, &revived))
    r->v[r->n++] = b;
  return 0;
}

static void
report (cas_report_fn fn, void *opaque, uint64_t *problems, const char *fmt, ...)
  __attribute__((format (printf, 4, 5)));
static void
report (cas_report_fn fn, void *opaque, uint64_t *problems, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  (*problems)++;
  if (fn)
    fn (opaque, msg);
}

/* Re-read the metadata files and verify their checksums. */
static void
scrub_metadata (struct cas_store *s, cas_report_fn fn, void *opaque, uint64_t *problems)
{
  char path[4096];
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t len;

  snprintf (path, sizeof path, "%s/" CAS_SB_NAME, s->dir);
  if (cas_read_file (path, (void **) &buf, &len) == -1)
    report (fn, opaque, problems, "superblock: cannot be read");
  else {
    uint32_t want = len == CAS_SB_SIZE ? get_le32 (buf + SB_CRC) : 0;
    if (len == CAS_SB_SIZE)
      put_le32 (buf + SB_CRC, 0);
    if (len != CAS_SB_SIZE || cas_crc32c (0, buf, len) != want)
      report (fn, opaque, problems, "superblock: checksum mismatch (damaged)");
  }
  free (buf);
  buf = NULL;

  snprintf (path, sizeof path, "%s/" CAS_CKPT_NAME, s->dir);
  if (cas_read_file (path, (void **) &buf, &len) == -1)
    report (fn, opaque, problems, "checkpoint: cannot be read");
  else if (len < CKPT_HDR_SIZE ||
           cas_crc32c (0, buf + CKPT_HDR_SIZE, len - CKPT_HDR_SIZE) != get_le32 (buf + CKPT_BODY_CRC))
    report (fn, opaque, problems, "checkpoint: body checksum mismatch (damaged)");
  else {
    const uint32_t want = get_le32 (buf + CKPT_HDR_CRC);
    put_le32 (buf + CKPT_HDR_CRC, 0);
    if (cas_crc32c (0, buf, CKPT_HDR_SIZE) != want)
      report (fn, opaque, problems, "checkpoint: header checksum mismatch (damaged)");
  }
  free (buf);
  buf = NULL;

  /* The journal, up to what has been written (records past jpos may be
   * being written right now).
   */
  {
    uint64_t end;
    {
      SCOPED_LOCK (fl, &s->flush_lock);
      cas_journal_path (s, s->gen, path, sizeof path);
      end = s->jpos;
    }
    if (s->readonly)
      end = UINT64_MAX;
    if (cas_read_file (path, (void **) &buf, &len) == -1) {
      report (fn, opaque, problems, "journal.%" PRIu64 ": cannot be read", s->gen);
      return;
    }
    if (end > len)
      end = len;
    uint8_t hdr[JRN_HDR_SIZE];
    if (len < JRN_HDR_SIZE) {
      report (fn, opaque, problems, "journal.%" PRIu64 ": truncated header", s->gen);
      return;
    }
    memcpy (hdr, buf, sizeof hdr);
    put_le32 (hdr + JRN_HDR_CRC, 0);
    if (cas_crc32c (0, hdr, sizeof hdr) != get_le32 (buf + JRN_HDR_CRC))
      report (fn, opaque, problems, "journal.%" PRIu64 ": header checksum mismatch", s->gen);
    for (uint64_t pos = JRN_HDR_SIZE; pos + JREC_HDR_SIZE <= end; ) {
      const uint8_t *r = buf + pos;
      const uint16_t plen = get_le16 (r + 6);
      const size_t total = round_up (JREC_HDR_SIZE + plen, 8);
      if (plen > JREC_MAX_LEN || pos + total > end ||
          cas_crc32c (0, r + 4, total - 4) != get_le32 (r)) {
        if (!s->readonly || pos + total < end)
          report (fn, opaque, problems, "journal.%" PRIu64 ": record at offset %" PRIu64
                  " is damaged", s->gen, pos);
        break;
      }
      pos += total;
    }
  }
}

int
cas_store_scrub (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
                 cas_report_fn fn, void *opaque, struct cas_scrub_result *res)
{
  struct refs refs = { 0 };
  CLEANUP_FREE uint8_t *stored = malloc (cas_stored_max (s->block_size));
  CLEANUP_FREE uint8_t *plain = malloc (s->block_size);
  const uint64_t t0 = cas_now_ns ();
  uint64_t problems = 0;

  memset (res, 0, sizeof *res);
  if (stored == NULL || plain == NULL || cas_index_walk (&s->index, take_ref, &refs) != 0) {
    free (refs.v);
    errno = ENOMEM;
    cas_error ("scrub: %m");
    return -1;
  }
  scrub_metadata (s, fn, opaque, &problems);
  for (size_t i = 0; i < refs.n; i++) {
    struct cas_block *b = refs.v[i];
    const char *bad = NULL;
    struct cas_hash h;
    char hex[65];

    if (progress)
      progress (opaque, i, refs.n);
    if (cas_block_quarantined (b))
      res->already_quarantined++;
    else if (cas_pread_full (s->data_fd, stored, b->stored_len, cas_block_offset (b),
                             "data file") == -1)
      bad = "cannot be read";
    else if (cas_crc32c (0, stored, b->stored_len) != b->crc)
      bad = "checksum mismatch";
    else if (b->flags & CAS_BLK_COMPRESSED &&
             cas_decompress (plain, s->block_size, stored, b->stored_len) == -1)
      bad = "does not decompress";
    else {
      if (!(b->flags & CAS_BLK_COMPRESSED))
        memcpy (plain, stored, s->block_size);
      if (cas_hash_block (plain, s->block_size, &h) == 0 && memcmp (&h, &b->hash, sizeof h))
        bad = "content does not match its SHA-256";
    }
    if (bad) {
      cas_hash_hex (&b->hash, hex);
      if (cas_block_quarantine (b))
        __atomic_add_fetch (&s->quarantined, 1, __ATOMIC_RELAXED);
      res->corrupted++;
      report (fn, opaque, &problems, "block id %" PRIu64 " (%.16s) at data offset %" PRIu64
              ": %s; quarantined", b->id, hex, cas_block_offset (b), bad);
    }
    res->blocks++;
    res->bytes += b->stored_len;
    /* Drop our reference; it can be the last one if the block died meanwhile. */
    {
      uint64_t seq;
      {
        SCOPED_LOCK (jl, &s->jlock);
        seq = s->next_seq - 1;
      }
      if (cas_block_put (b, seq, cas_now ()))
        __atomic_add_fetch (&s->ndead, 1, __ATOMIC_RELAXED);
    }
    /* Rate limit: sleep until the bytes so far fit the budget. */
    if (rate) {
      const uint64_t due = t0 + res->bytes * UINT64_C(1000000000) / rate;
      const uint64_t now = cas_now_ns ();
      if (due > now) {
        const struct timespec ts = { (due - now) / 1000000000, (due - now) % 1000000000 };
        nanosleep (&ts, NULL);
      }
    }
  }
  if (progress)
    progress (opaque, refs.n, refs.n);
  free (refs.v);
  res->problems = problems;
  return problems;
}
