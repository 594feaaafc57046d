/* Scrub: read back every stored block and every metadata file and verify
 * them, on an open store (offline through casdisk scrub, or while nbdkit
 * serves it).
 *
 * Blocks: CRC-32C of the stored bytes, decompression, and the key of the
 * content against the block's.  A block that fails is quarantined
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

#include "background/scrub.h"
#include "format.h"
#include "meta/journal.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/util.h"

#define SLICE_NS 200000000u      /* rate-limit sleeps, at most */

/* What to verify: a block is named by its key and id and looked up again
 * when its turn comes, instead of being pinned by a reference for the
 * whole scrub: a pin would make its refcount disagree with the maps (the
 * runtime check would fail) and keep a deleted block alive.
 */
struct target {
  uint64_t key, id;
};

struct targets {
  struct target *v;
  size_t n, cap;
  uint64_t quarantined;         /* skipped: quarantined before */
};

static int
collect (void *opaque, struct cas_block *b)
{
  struct targets *t = opaque;

  if (cas_block_quarantined (b)) {
    t->quarantined++;
    return 0;
  }
  if (t->n == t->cap) {
    const size_t cap = t->cap ? 2 * t->cap : 1024;
    struct target *v = realloc (t->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    t->v = v;
    t->cap = cap;
  }
  t->v[t->n++] = (struct target) { .key = b->key, .id = b->id };
  return 0;
}

/* The block with the id *OPAQUE (cas_index_lookup's test). */
static bool
has_id (void *opaque, struct cas_block *b)
{
  return b->id == *(const uint64_t *) opaque;
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
      if (plen > cas_jrec_max_len (get_le16 (r + 4)) || pos + total > end ||
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

static bool
cancelled (const bool *cancel)
{
  return cancel && __atomic_load_n (cancel, __ATOMIC_RELAXED);
}

int
cas_store_scrub (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
                 cas_report_fn fn, void *opaque, struct cas_scrub_result *res)
{
  return cas_scrub_run (s, rate, progress, fn, opaque, res, NULL);
}

int
cas_scrub_run (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
               cas_report_fn fn, void *opaque, struct cas_scrub_result *res,
               const bool *cancel)
{
  struct targets t = { 0 };
  CLEANUP_FREE uint8_t *stored = malloc (cas_stored_max (s->block_size));
  CLEANUP_FREE uint8_t *plain = malloc (s->block_size);
  const uint64_t t0 = cas_now_ns ();
  uint64_t problems = 0;

  memset (res, 0, sizeof *res);
  if (stored == NULL || plain == NULL || cas_index_walk (&s->index, collect, &t) != 0) {
    free (t.v);
    errno = ENOMEM;
    cas_error ("scrub: %m");
    return -1;
  }
  res->already_quarantined = t.quarantined;
  scrub_metadata (s, fn, opaque, &problems);
  for (size_t i = 0; i < t.n; i++) {
    const char *bad = NULL;
    uint64_t offset = 0;
    uint32_t len = 0;
    uint64_t key;

    if (progress)
      progress (opaque, i, t.n);
    /* Verify inside one RCU read-side section, as a read does: the block
     * and its space outlive it.  Gone or replaced since the walk: skip.
     */
    rcu_read_lock ();
    struct cas_block *b = cas_index_lookup (&s->index, t.v[i].key, has_id, &t.v[i].id);
    if (b) {
      const uint32_t flags = cas_block_flags (b);
      offset = cas_block_offset (b);
      len = cas_block_len (b);
      if (cas_pread_full (s->data_fd, stored, len, offset, "data file") == -1)
        bad = "cannot be read";
      else if (cas_crc32c (0, stored, len) != b->crc)
        bad = "checksum mismatch";
      else if (flags & CAS_BLK_COMPRESSED &&
               cas_decompress (plain, s->block_size, stored, len) == -1)
        bad = "does not decompress";
      else {
        if (!(flags & CAS_BLK_COMPRESSED))
          memcpy (plain, stored, s->block_size);
        if (cas_block_key (&s->keyfn, plain, s->block_size, &key) == 0 && key != b->key)
          bad = "content does not match its key";
      }
      if (bad && cas_block_quarantine (b))
        __atomic_add_fetch (&s->quarantined, 1, __ATOMIC_RELAXED);
      res->blocks++;
      res->bytes += len;
    }
    rcu_read_unlock ();
    /* Reported outside the section: REPORT may block (a slow client). */
    if (bad) {
      char hex[2 * CAS_KEY_LEN + 1];
      cas_key_hex (t.v[i].key, hex);
      res->corrupted++;
      report (fn, opaque, &problems, "block id %" PRIu64 " (%.16s) at data offset %" PRIu64
              ": %s; quarantined", t.v[i].id, hex, offset, bad);
    }
    /* Rate limit: sleep until the bytes so far fit the budget, in slices
     * so that a cancel is seen and the caller hears from us.
     */
    if (rate) {
      const uint64_t due = t0 + res->bytes * UINT64_C(1000000000) / rate;
      for (uint64_t now = cas_now_ns (); due > now && !cancelled (cancel); now = cas_now_ns ()) {
        const uint64_t ns = due - now < SLICE_NS ? due - now : SLICE_NS;
        const struct timespec ts = { ns / 1000000000, ns % 1000000000 };
        nanosleep (&ts, NULL);
        if (progress)
          progress (opaque, i + 1, t.n);
      }
    }
    if (cancelled (cancel)) {
      free (t.v);
      errno = ECANCELED;
      cas_error ("scrub: cancelled after %zu of %zu blocks", i + 1, t.n);
      return -1;
    }
  }
  if (progress)
    progress (opaque, t.n, t.n);
  free (t.v);
  res->problems = problems;
  return problems;
}
