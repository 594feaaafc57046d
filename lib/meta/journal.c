/* The write-ahead journal of metadata changes.
 *
 * Records are appended to an in-memory buffer (s->active) under jlock, in
 * the order the changes were made.  A flush then:
 *
 *   1. takes the buffered records (they now cover every completed write),
 *   2. fdatasyncs the data file, so every block those records name is durable,
 *   3. writes the records at the end of journal.G and fdatasyncs it,
 *   4. advances durable_seq.
 *
 * Step 2 before step 3 is what makes a crash safe: a durable record never
 * points at data that is not.  A crash during step 3 leaves a torn tail;
 * replay stops at the first record with a bad checksum or an unexpected
 * sequence number, so it applies a prefix of the last batch: each block
 * written since the previous flush holds its old or its new content.
 *
 * If a flush fails (ENOSPC, EIO), its batch is kept and the next flush
 * writes it again at the same place, followed by newer records: sequence
 * numbers in the file stay consecutive.
 *
 * Full file systems: the journal keeps at least JRESERVE_MIN bytes
 * preallocated ahead of its end.  Without that, a full file system would
 * deadlock: space comes back only when the GC frees blocks, the GC frees
 * only what the journal has made durable, and the journal could not grow.
 * With it, trims and block deletions can still be journaled when the data
 * file can no longer grow.
 *
 * A failed sync of the data file is not retried: the kernel may already
 * have dropped the dirty pages it could not write, so a later sync would
 * "succeed" without them, and journaling references to those blocks would
 * break invariant 3.  The store fails instead (io_failed): writes, flushes
 * and checkpoints return EIO until nbdkit is restarted, and recovery then
 * uses the journal, which never named the unsynced blocks.
 *
 * Linux reports a writeback error to one fdatasync per open file
 * description, and the flush, the GC's erase and the recycler's copies
 * all sync the same descriptor.  So every data-file sync goes through
 * cas_data_sync, which holds sync_lock from its check of io_failed to
 * the store of a failure: whichever sync receives the error, every later
 * sync, the flush's included, sees io_failed and fails.  A failed
 * journal write or sync is retried safely: the whole unsynced batch is
 * written again.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "meta/journal.h"
#include "meta/load.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/io.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"

void
cas_journal_path (const struct cas_store *s, uint64_t gen, char *buf, size_t len)
{
  snprintf (buf, len, "%s/" CAS_JOURNAL_FMT, s->dir, gen);
}

bool
cas_journal_exists (const struct cas_store *s, uint64_t gen)
{
  char path[4096];

  cas_journal_path (s, gen, path, sizeof path);
  return access (path, F_OK) == 0;
}

static int
jbuf_reserve (struct jbuf *b, size_t more)
{
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more)
      cap *= 2;
    uint8_t *p = realloc (b->p, cap);
    if (p == NULL)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  return 0;
}

#define JRESERVE_MIN   (256u << 10)
#define JRESERVE_CHUNK (1u << 20)

/* flush_lock held.  Keep preallocated space ahead of NEED_END; best
 * effort (a full file system refuses, and the headroom is then used).
 */
static void
reserve (struct cas_store *s, uint64_t need_end)
{
  if (need_end + JRESERVE_MIN <= s->jreserved)
    return;
  const uint64_t target = need_end + JRESERVE_CHUNK;
  const uint64_t from = s->jreserved > s->jpos ? s->jreserved : s->jpos;
  if (fallocate (s->jfd, FALLOC_FL_KEEP_SIZE, from, target - from) == 0)
    s->jreserved = target;
}

void
cas_journal_reserve (struct cas_store *s)
{
  reserve (s, s->jpos);
}

/* Append a record whose payload is HDR then DATA (jlock held). */
static uint64_t
append (struct cas_store *s, int type, const void *hdr, uint16_t hlen, const void *data,
        uint32_t dlen)
{
  const size_t len = (size_t) hlen + dlen;
  const size_t total = round_up (JREC_HDR_SIZE + len, 8);
  const uint64_t seq = s->next_seq;
  uint8_t *r;

  assert (len <= UINT16_MAX);
  assert (!s->readonly);
  /* Out of memory for a few bytes: wait rather than lose a record. */
  while (jbuf_reserve (&s->active, total) == -1)
    usleep (1000);
  r = s->active.p + s->active.len;
  memset (r, 0, total);
  put_le16 (r + 4, type);
  put_le16 (r + 6, len);
  put_le64 (r + 8, seq);
  memcpy (r + JREC_HDR_SIZE, hdr, hlen);
  if (dlen)
    memcpy (r + JREC_HDR_SIZE + hlen, data, dlen);
  put_le32 (r, cas_crc32c (0, r + 4, total - 4));
  /* len and first_unflushed_ns are also read without jlock, as hints. */
  if (s->active.len == 0)
    __atomic_store_n (&s->first_unflushed_ns, cas_now_ns (), __ATOMIC_RELAXED);
  __atomic_store_n (&s->active.len, s->active.len + total, __ATOMIC_RELAXED);
  s->next_seq++;
  return seq;
}

uint64_t
cas_journal_append (struct cas_store *s, int type, const void *payload, uint16_t len)
{
  assert (len <= JREC_MAX_LEN);
  return append (s, type, payload, len, NULL, 0);
}

uint64_t
cas_journal_append_patch (struct cas_store *s, uint32_t disk, uint64_t v, uint32_t off,
                          const void *data, uint32_t len)
{
  uint8_t hdr[JREC_PATCH_HDR_LEN] = { 0 };

  assert (len > 0 && len <= CAS_PATCH_MAX);
  put_le32 (hdr, disk);
  put_le32 (hdr + 4, off);
  put_le64 (hdr + 8, v);
  put_le32 (hdr + 16, len);
  return append (s, JREC_PATCH, hdr, sizeof hdr, data, len);
}

int
cas_check_failed (struct cas_store *s, const char *op)
{
  if (!__atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE))
    return 0;
  errno = EIO;
  cas_error ("%s: the store stopped after an I/O error syncing its data file; "
             "restart nbdkit to recover the last flushed state", op);
  return -1;
}

int
cas_data_sync (struct cas_store *s)
{
  SCOPED_LOCK (sl, &s->sync_lock);

  if (cas_check_failed (s, "sync") == -1)
    return -1;
  if (cas_fdatasync (s->data_fd, "data file") == -1) {
    __atomic_store_n (&s->io_failed, true, __ATOMIC_RELEASE);
    errno = EIO;
    return -1;
  }
  return 0;
}

/* How many records P[LEN] holds. */
static uint64_t
records_count (const uint8_t *p, size_t len)
{
  uint64_t count = 0;

  for (size_t n = 0; n < len; n += round_up (JREC_HDR_SIZE + get_le16 (p + n + 6), 8))
    count++;
  return count;
}

/* The length of the longest prefix of the records in P[LEN] (whole
 * records only) that fits in ROOM bytes.
 */
static size_t
records_prefix (const uint8_t *p, size_t len, size_t room)
{
  size_t n = 0;

  while (n < len) {
    const size_t total = round_up (JREC_HDR_SIZE + get_le16 (p + n + 6), 8);
    if (n + total > room)
      break;
    n += total;
  }
  return n;
}

int
cas_journal_sync (struct cas_store *s)
{
  SCOPED_LOCK (fl, &s->flush_lock);
  uint64_t last, target = 0;
  bool more;

  if (cas_check_failed (s, "flush") == -1)
    return -1;

 again:
  /* 1. Take the records appended so far (after any batch that failed), as
   * many as fit in one batch; the rest go in the next batch of this flush.
   */
  more = false;
  {
    SCOPED_LOCK (jl, &s->jlock);
    if (target == 0)
      target = s->next_seq - 1;   /* this flush covers every record up to here */
    if (s->active.len > 0) {
      const size_t used = s->flushing.len ? s->flushing.len : JREC_BATCH_SIZE;
      const size_t take = used >= s->batch_max ? 0 :
        records_prefix (s->active.p, s->active.len, s->batch_max - used);
      if (take > 0) {
        if (jbuf_reserve (&s->flushing, take + JREC_BATCH_SIZE) == -1) {
          cas_error ("flush: %m");
          return -1;
        }
        if (s->flushing.len == 0) {
          memset (s->flushing.p, 0, JREC_BATCH_SIZE);   /* the BATCH record, filled below */
          s->flushing.len = JREC_BATCH_SIZE;
        }
        memcpy (s->flushing.p + s->flushing.len, s->active.p, take);
        s->flushing.len += take;
        memmove (s->active.p, s->active.p + take, s->active.len - take);
        __atomic_store_n (&s->active.len, s->active.len - take, __ATOMIC_RELAXED);
        if (s->active.len == 0)
          __atomic_store_n (&s->first_unflushed_ns, 0, __ATOMIC_RELAXED);
        s->flushing_last_seq = s->next_seq - 1 - records_count (s->active.p, s->active.len);
      }
      more = s->flushing_last_seq < target;
    }
    last = s->flushing_last_seq;
  }
  assert (s->flushing.len <= s->batch_max);

  /* 2. Data before the records that point at it.  Also when there is no
   * record: a client may flush after writes that deduplicated onto blocks
   * whose data another connection has not synced yet... those always have
   * a record too, so nothing to write means nothing new to make durable.
   */
  if (s->flushing.len == 0)
    return 0;
  if (s->data_sync_hook)
    s->data_sync_hook (s);
  if (cas_data_sync (s) == -1)
    return -1;

  /* 3. The batch, then its sync. */
  {
    uint8_t *h = s->flushing.p;
    const uint8_t *recs = h + JREC_BATCH_SIZE;
    const size_t len = s->flushing.len - JREC_BATCH_SIZE;
    uint32_t count = 0;
    for (size_t p = 0; p < len; p += round_up (JREC_HDR_SIZE + get_le16 (recs + p + 6), 8))
      count++;
    put_le16 (h + 4, JREC_BATCH);
    put_le16 (h + 6, JREC_BATCH_LEN);
    put_le64 (h + 8, get_le64 (recs + 8));              /* the first record's seq */
    put_le32 (h + JREC_HDR_SIZE, len);
    put_le32 (h + JREC_HDR_SIZE + 4, cas_crc32c (0, recs, len));
    put_le32 (h + JREC_HDR_SIZE + 8, count);
    put_le32 (h + JREC_HDR_SIZE + 12, 0);
    put_le32 (h, cas_crc32c (0, h + 4, JREC_BATCH_SIZE - 4));
  }
  reserve (s, s->jpos + s->flushing.len);
  if (cas_pwrite_full (s->jfd, s->flushing.p, s->flushing.len, s->jpos, "journal") == -1 ||
      cas_fdatasync (s->jfd, "journal") == -1)
    return -1;                  /* the batch stays in s->flushing for the retry */
  __atomic_store_n (&s->jpos, s->jpos + s->flushing.len, __ATOMIC_RELAXED);
  s->flushing.len = 0;

  /* 4. */
  __atomic_store_n (&s->durable_seq, last, __ATOMIC_RELEASE);
  if (more)
    goto again;
  return 0;
}

int
cas_journal_create (struct cas_store *s, uint64_t gen, uint64_t first_seq, int *fdp)
{
  char path[4096];
  uint8_t hdr[JRN_HDR_SIZE] = { 0 };
  int fd;

  cas_journal_path (s, gen, path, sizeof path);
  if (cas_create_file (path, &fd) == -1)
    return -1;
  memcpy (hdr + JRN_MAGIC, CAS_JOURNAL_MAGIC, 8);
  put_le32 (hdr + JRN_VERSION, CAS_FORMAT_VERSION);
  put_le64 (hdr + JRN_GEN, gen);
  put_le64 (hdr + JRN_FIRST_SEQ, first_seq);
  memcpy (hdr + JRN_UUID, s->uuid, 16);
  put_le32 (hdr + JRN_HDR_CRC, cas_crc32c (0, hdr, sizeof hdr));
  if (cas_pwrite_full (fd, hdr, sizeof hdr, 0, path) == -1 ||
      cas_fdatasync (fd, path) == -1 ||
      cas_fsync_dir (s->dir) == -1) {
    close (fd);
    cas_unlink (path);
    return -1;
  }
  *fdp = fd;
  return 0;
}

/* Apply one decoded record to the store being loaded. */
static int
apply (struct cas_store *s, struct cas_load *ld, int type, const uint8_t *p, uint16_t len)
{
  static const uint16_t want[] = {
    [JREC_BLOCK_NEW] = JREC_BLOCK_NEW_LEN, [JREC_BLOCK_DEL] = JREC_BLOCK_DEL_LEN,
    [JREC_MAP_SET] = JREC_MAP_SET_LEN, [JREC_MAP_ZERO] = JREC_MAP_ZERO_LEN,
    [JREC_DISK_ADD] = JREC_DISK_ADD_LEN, [JREC_BLOCK_MOVE] = JREC_BLOCK_MOVE_LEN,
    [JREC_BATCH] = 0,           /* never inside a batch */
    [JREC_DISK_CLONE] = JREC_DISK_CLONE_LEN, [JREC_DISK_DEL] = JREC_DISK_DEL_LEN,
  };

  if (type == JREC_PATCH) {
    if (s->version < 5)
      return cas_problem (s, "journal: a small-write record in a store of format %" PRIu32, s->version);
    if (len < JREC_PATCH_HDR_LEN || get_le32 (p + 16) == 0 ||
        get_le32 (p + 16) > CAS_PATCH_MAX || len != JREC_PATCH_HDR_LEN + get_le32 (p + 16))
      return cas_problem (s, "journal: small-write record of bad length %u", len);
    return cas_load_patch (s, ld, get_le32 (p), get_le64 (p + 8), get_le32 (p + 4),
                           p + JREC_PATCH_HDR_LEN, get_le32 (p + 16));
  }
  if (type < JREC_BLOCK_NEW || type >= JREC_PATCH || type == JREC_BATCH ||
      len != want[type])
    return cas_problem (s, "journal: record of unknown type %d or bad length %u", type, len);
  switch (type) {
  case JREC_BLOCK_NEW:
    return cas_load_block_new (s, ld, get_le64 (p), get_le64 (p + 8), p + 16,
                               get_le32 (p + 48), get_le32 (p + 52), get_le32 (p + 56), 0);
  case JREC_BLOCK_DEL:
    return cas_load_block_del (s, ld, get_le64 (p));
  case JREC_MAP_SET:
    return cas_load_map_set (s, ld, get_le32 (p), get_le64 (p + 8), get_le64 (p + 16), true);
  case JREC_MAP_ZERO:
    return cas_load_map_zero (s, ld, get_le32 (p), get_le64 (p + 8), get_le64 (p + 16));
  case JREC_BLOCK_MOVE:
    return cas_load_block_move (s, ld, get_le64 (p), get_le64 (p + 8));
  case JREC_DISK_ADD: {
    char name[CAS_DISK_NAME_MAX + 1];
    const uint32_t n = get_le32 (p + 4);
    if (n == 0 || n > CAS_DISK_NAME_MAX)
      return cas_problem (s, "journal: disk record with a bad name length %" PRIu32, n);
    memcpy (name, p + 16, n);
    name[n] = '\0';
    return cas_load_disk_add (s, get_le32 (p), name, get_le64 (p + 8), 0);
  }
  case JREC_DISK_CLONE: {
    char name[CAS_DISK_NAME_MAX + 1];
    const uint32_t n = get_le32 (p + 4);
    if (n == 0 || n > CAS_DISK_NAME_MAX)
      return cas_problem (s, "journal: disk clone record with a bad name length %" PRIu32, n);
    memcpy (name, p + 16, n);
    name[n] = '\0';
    return cas_load_disk_clone (s, ld, get_le32 (p), name, get_le64 (p + 8), get_le32 (p + 80),
                                get_le32 (p + 84));
  }
  case JREC_DISK_DEL:
    return cas_load_disk_del (s, get_le32 (p));
  }
  abort ();
}

/* Is there a whole record at POS with a good checksum and sequence number
 * SEQ (or any sequence number above 0 when SEQ is 0)?
 */
static bool
record_ok (const uint8_t *buf, size_t len, size_t pos, uint64_t seq)
{
  const uint8_t *r = buf + pos;
  if (pos + JREC_HDR_SIZE > len)
    return false;
  const uint16_t plen = get_le16 (r + 6);
  const size_t total = round_up (JREC_HDR_SIZE + plen, 8);

  return plen <= cas_jrec_max_len (get_le16 (r + 4)) && pos + total <= len &&
    get_le16 (r + 4) >= JREC_BLOCK_NEW && get_le16 (r + 4) <= JREC_LAST_TYPE &&
    (seq ? get_le64 (r + 8) == seq : get_le64 (r + 8) != 0) &&
    cas_crc32c (0, r + 4, total - 4) == get_le32 (r);
}

/* Is there a complete batch at POS (BATCH record, then records whose CRC
 * matches), starting with sequence number SEQ (any when SEQ is 0)?  Sets
 * *END to the end of the batch.
 */
static bool
batch_ok (const uint8_t *buf, size_t len, size_t pos, uint64_t seq, size_t *end)
{
  if (!record_ok (buf, len, pos, seq) || get_le16 (buf + pos + 4) != JREC_BATCH ||
      get_le16 (buf + pos + 6) != JREC_BATCH_LEN)
    return false;
  const uint32_t blen = get_le32 (buf + pos + JREC_HDR_SIZE);
  const size_t start = pos + JREC_BATCH_SIZE;
  if (blen == 0 || blen > len - start ||
      cas_crc32c (0, buf + start, blen) != get_le32 (buf + pos + JREC_HDR_SIZE + 4))
    return false;
  *end = start + blen;
  return true;
}

static bool
header_ok (const uint8_t *buf, size_t len)
{
  uint8_t hdr[JRN_HDR_SIZE];

  if (len < JRN_HDR_SIZE || memcmp (buf + JRN_MAGIC, CAS_JOURNAL_MAGIC, 8) != 0)
    return false;
  memcpy (hdr, buf, sizeof hdr);
  put_le32 (hdr + JRN_HDR_CRC, 0);
  return cas_crc32c (0, hdr, sizeof hdr) == get_le32 (buf + JRN_HDR_CRC);
}

bool
cas_journal_unborn (const struct cas_store *s, uint64_t gen)
{
  char path[4096];
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t len, end;

  cas_journal_path (s, gen, path, sizeof path);
  if (cas_read_file (path, (void **) &buf, &len) == -1 || header_ok (buf, len))
    return false;
  for (size_t p = JRN_HDR_SIZE; p + JREC_BATCH_SIZE <= len; p += 8)
    if (batch_ok (buf, len, p, 0, &end))
      return false;             /* it held data: damage, not an unfinished creation */
  return true;
}

int
cas_journal_replay (struct cas_store *s, struct cas_load *ld, uint64_t gen,
                    uint64_t *seq, uint64_t *end, bool *torn)
{
  char path[4096];
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t len, pos;

  cas_journal_path (s, gen, path, sizeof path);
  if (cas_read_file (path, (void **) &buf, &len) == -1)
    return -1;
  *torn = false;
  if (len < JRN_HDR_SIZE || memcmp (buf + JRN_MAGIC, CAS_JOURNAL_MAGIC, 8) != 0)
    return cas_problem (s, "%s: not a casdisk journal (bad magic or truncated header)", path);
  {
    uint8_t hdr[JRN_HDR_SIZE];
    memcpy (hdr, buf, sizeof hdr);
    put_le32 (hdr + JRN_HDR_CRC, 0);
    if (cas_crc32c (0, hdr, sizeof hdr) != get_le32 (buf + JRN_HDR_CRC))
      return cas_problem (s, "%s: header checksum mismatch", path);
  }
  if (get_le32 (buf + JRN_VERSION) > CAS_FORMAT_VERSION)
    return cas_problem (s, "%s: format version %" PRIu32 " is newer than this casdisk supports (%d)",
                        path, get_le32 (buf + JRN_VERSION), CAS_FORMAT_VERSION);
  if (get_le64 (buf + JRN_GEN) != gen || memcmp (buf + JRN_UUID, s->uuid, 16) != 0)
    return cas_problem (s, "%s: belongs to another store or generation", path);
  if (get_le64 (buf + JRN_FIRST_SEQ) != *seq)
    return cas_problem (s, "%s: starts at record %" PRIu64 ", expected %" PRIu64,
                        path, get_le64 (buf + JRN_FIRST_SEQ), *seq);

  for (pos = JRN_HDR_SIZE; pos + JREC_HDR_SIZE <= len; ) {
    size_t bend;
    if (!batch_ok (buf, len, pos, *seq, &bend))
      break;                    /* the torn tail of the last flush, or damage */
    for (size_t p = pos + JREC_BATCH_SIZE; p < bend; ) {
      const uint8_t *r = buf + p;
      const uint16_t plen = get_le16 (r + 6);
      if (!record_ok (buf, bend, p, *seq) || get_le16 (r + 4) == JREC_BATCH)
        return cas_problem (s, "%s: a batch at offset %zu has a valid checksum but a bad "
                            "record at offset %zu", path, pos, p);
      cas_load_set_seq (ld, *seq);
      if (apply (s, ld, get_le16 (r + 4), r + JREC_HDR_SIZE, plen) == -1)
        return -1;
      (*seq)++;
      p += round_up (JREC_HDR_SIZE + plen, 8);
    }
    pos = bend;
  }
  *end = pos;
  *torn = pos < len;
  /* Each batch is written after the previous one was synced, so nothing
   * complete can follow a torn one.  A complete batch after a bad one
   * means the bad one was damaged in place: changes were lost, say so.
   */
  for (size_t p = pos + 8, e; *torn && p + JREC_BATCH_SIZE <= len; p += 8)
    if (batch_ok (buf, len, p, 0, &e))
      return cas_problem (s, "%s: the batch at offset %zu is damaged and complete batches "
                          "follow it (from offset %zu): the journal was corrupted, "
                          "changes after offset %zu are lost", path, pos, p, pos);
  return 0;
}
