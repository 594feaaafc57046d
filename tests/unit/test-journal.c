/* Unit tests for journal.c: the file format (header, records, checksums,
 * consecutive sequence numbers), which change produces which record,
 * durability at flush, replay of every record type after a crash, torn
 * tails (garbage, a cut record), and damage that must not be mistaken for
 * a torn tail.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "format.h"
#include "meta/state.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/hash.h"
#include "util/util.h"

#include "fixture.h"

static void
setup (void)
{
  fixture_setup ("journal");
}

TestSuite (journal, .init = setup, .fini = fixture_teardown, .timeout = 20);

struct jrec {
  uint16_t type, len;
  uint64_t seq;
  const uint8_t *p;
};

/* Parse and validate a whole journal: header and every record.  Returns
 * the number of records; *FIRST_SEQ is the header's first sequence number.
 */
static size_t
parse_journal (const uint8_t *buf, size_t len, uint64_t gen, struct jrec *out, size_t max,
               uint64_t *first_seq)
{
  uint8_t hdr[JRN_HDR_SIZE], sb[CAS_SB_SIZE];
  char path[400];
  size_t n = 0, pos;

  cr_assert_geq (len, JRN_HDR_SIZE);
  cr_assert_arr_eq (buf, CAS_JOURNAL_MAGIC, 8);
  cr_assert_eq (get_le32 (buf + JRN_VERSION), CAS_FORMAT_VERSION);
  memcpy (hdr, buf, sizeof hdr);
  put_le32 (hdr + JRN_HDR_CRC, 0);
  cr_assert_eq (cas_crc32c (0, hdr, sizeof hdr), get_le32 (buf + JRN_HDR_CRC),
                "journal header checksum");
  cr_assert_eq (get_le64 (buf + JRN_GEN), gen);
  path_of ("superblock", path, sizeof path);
  const int fd = open (path, O_RDONLY);
  cr_assert_eq (read (fd, sb, sizeof sb), (ssize_t) sizeof sb);
  close (fd);
  cr_assert_arr_eq (buf + JRN_UUID, sb + SB_UUID, 16, "journal uuid is not the store's");
  *first_seq = get_le64 (buf + JRN_FIRST_SEQ);

  for (pos = JRN_HDR_SIZE; pos < len; ) {
    cr_assert_leq (pos + JREC_HDR_SIZE, len, "partial record header at %zu", pos);
    const uint8_t *r = buf + pos;
    const uint16_t plen = get_le16 (r + 6);
    const size_t total = round_up (JREC_HDR_SIZE + plen, 8);
    cr_assert_leq (pos + total, len, "record at %zu runs past the end", pos);
    cr_assert_eq (cas_crc32c (0, r + 4, total - 4), get_le32 (r), "record %zu: bad crc", n);
    cr_assert_eq (get_le64 (r + 8), *first_seq + n, "record %zu: seq %" PRIu64, n,
                  get_le64 (r + 8));
    for (size_t k = JREC_HDR_SIZE + plen; k < total; k++)
      cr_assert_eq (r[k], 0, "record %zu: padding not zero", n);
    if (get_le16 (r + 4) == JREC_BATCH) {
      /* A flush's batch header: its CRC covers the records that follow. */
      const uint32_t blen = get_le32 (r + JREC_HDR_SIZE);
      cr_assert_eq (plen, JREC_BATCH_LEN);
      cr_assert_leq (pos + total + blen, len, "batch at %zu runs past the end", pos);
      cr_assert_eq (cas_crc32c (0, buf + pos + total, blen), get_le32 (r + JREC_HDR_SIZE + 4),
                    "batch at %zu: bad crc", pos);
      cr_assert_eq (get_le64 (r + 8), *first_seq + n, "batch at %zu: seq", pos);
      pos += total;
      continue;
    }
    if (n < max)
      out[n] = (struct jrec) { .type = get_le16 (r + 4), .len = plen,
                               .seq = get_le64 (r + 8), .p = r + JREC_HDR_SIZE };
    n++;
    pos += total;
  }
  return n;
}

static size_t
current_records (struct jrec *out, size_t max, uint8_t **keep)
{
  int count;
  const uint64_t g = journal_gen (&count);
  char name[64], path[400];
  size_t len;
  uint64_t first;

  snprintf (name, sizeof name, "journal.%" PRIu64, g);
  path_of (name, path, sizeof path);
  *keep = slurp (path, &len);
  return parse_journal (*keep, len, g, out, max, &first);
}

/* ---- format ---- */

Test (journal, created_store_has_journal_1)
{
  char path[400];
  size_t len;
  uint64_t first;
  struct jrec r[4];
  int count;

  create (3, 1 << 20);
  cr_assert_eq (journal_gen (&count), 1);
  cr_assert_eq (count, 1);
  path_of ("journal.1", path, sizeof path);
  uint8_t *buf = slurp (path, &len);
  cr_assert_eq (len, JRN_HDR_SIZE, "a new journal holds only its header");
  cr_assert_eq (parse_journal (buf, len, 1, r, 4, &first), 0);
  cr_assert_eq (first, 1);
  free (buf);
}

Test (journal, open_starts_one_fresh_journal)
{
  int count;

  create (3, 1 << 20);
  struct cas_store *s = open_rw ();
  const uint64_t g = journal_gen (&count);
  cr_assert_gt (g, 1, "open did not move to a new generation");
  cr_assert_eq (count, 1, "%d journals after open", count);
  struct jrec r[4];
  uint8_t *buf;
  cr_assert_eq (current_records (r, 4, &buf), 0);
  free (buf);
  close_ok (s);
  const uint64_t g2 = journal_gen (&count);
  cr_assert_gt (g2, g, "close must checkpoint into a new generation");
  cr_assert_eq (count, 1);
}

Test (journal, records_of_a_new_block)
{
  uint8_t data[BS];
  struct jrec r[8];
  uint8_t *buf;

  create (3, 64 * BS);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_text (data, sizeof data, 1);
  write_ok (d, data, BS, 5 * BS);
  cr_assert_eq (cas_store_flush (s), 0);

  const size_t n = current_records (r, 8, &buf);
  cr_assert_eq (n, 2, "%zu records for one new block", n);
  cr_assert_eq (r[0].type, JREC_BLOCK_NEW);
  cr_assert_eq (r[0].len, JREC_BLOCK_NEW_LEN);
  cr_assert_eq (r[1].type, JREC_MAP_SET);
  cr_assert_eq (r[1].len, JREC_MAP_SET_LEN);

  /* BLOCK_NEW: id, offset, hash, stored_len, flags, crc. */
  const uint8_t *p = r[0].p;
  const uint64_t id = get_le64 (p), off = get_le64 (p + 8);
  const uint32_t stored_len = get_le32 (p + 48), flags = get_le32 (p + 52), crc = get_le32 (p + 56);
  cr_assert_eq (s->keyfn.fn, CAS_KEY_SIPHASH13, "a new store keys blocks by SipHash-1-3");
  const uint64_t key = cas_siphash (s->keyfn.secret, data, BS, 1, 3);
  cr_assert_neq (id, 0);
  cr_assert_eq (off % CAS_GRANULE, 0);
  cr_assert_eq (get_le64 (p + 16), key, "BLOCK_NEW does not carry the key of the content");
  static const uint8_t zero[CAS_HASH_LEN - CAS_KEY_LEN];
  cr_assert_arr_eq (p + 16 + CAS_KEY_LEN, zero, sizeof zero, "the hash field is not zero after the key");
  cr_assert_eq (flags, CAS_BLK_COMPRESSED, "text was not stored compressed");
  cr_assert_lt (stored_len, BS);
  cr_assert_eq (get_le32 (p + 60), 0);
  /* The stored bytes at that offset have that crc and decompress to the data. */
  char path[400];
  size_t dlen;
  path_of ("data", path, sizeof path);
  uint8_t *dfile = slurp (path, &dlen);
  cr_assert_leq (off + stored_len, dlen);
  cr_assert_eq (cas_crc32c (0, dfile + off, stored_len), crc);
  uint8_t plain[BS];
  cr_assert_eq (cas_decompress (plain, BS, dfile + off, stored_len), 0);
  cr_assert_arr_eq (plain, data, BS);
  free (dfile);

  /* MAP_SET: disk 0, block 5 -> id. */
  p = r[1].p;
  cr_assert_eq (get_le32 (p), 0);
  cr_assert_eq (get_le32 (p + 4), 0);
  cr_assert_eq (get_le64 (p + 8), 5);
  cr_assert_eq (get_le64 (p + 16), id);
  free (buf);
  close_ok (s);
}

Test (journal, records_of_each_change)
{
  uint8_t a[BS], b[BS];
  struct jrec r[32];
  uint8_t *buf;

  create (0, 200 * BS);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  fill_random (a, BS, 1);
  fill_random (b, BS, 2);
  write_ok (d, a, BS, 0);                       /* BLOCK_NEW a, MAP_SET 0 */
  write_ok (d, a, BS, 3 * BS);                  /* dedup: MAP_SET 3 only */
  write_ok (d, a, BS, 3 * BS);                  /* no change: nothing */
  cr_assert_eq (cas_disk_zero (d, BS, 0), 0);   /* MAP_SET 0 -> 0 */
  cr_assert_eq (cas_disk_zero (d, BS, 7 * BS), 0);      /* already zero: nothing */
  cr_assert_eq (cas_disk_zero (d, 100 * BS, 50 * BS), 0); /* MAP_ZERO 50 +100 */
  cr_assert_eq (cas_store_flush (s), 0);

  size_t n = current_records (r, 32, &buf);
  cr_assert_eq (n, 5, "%zu records", n);
  cr_assert_eq (r[0].type, JREC_BLOCK_NEW);
  const uint64_t id = get_le64 (r[0].p);
  cr_assert_eq (r[1].type, JREC_MAP_SET);
  cr_assert_eq (get_le64 (r[1].p + 8), 0);
  cr_assert_eq (get_le64 (r[1].p + 16), id);
  cr_assert_eq (r[2].type, JREC_MAP_SET);
  cr_assert_eq (get_le64 (r[2].p + 8), 3);
  cr_assert_eq (get_le64 (r[2].p + 16), id);
  cr_assert_eq (r[3].type, JREC_MAP_SET);
  cr_assert_eq (get_le64 (r[3].p + 8), 0);
  cr_assert_eq (get_le64 (r[3].p + 16), 0, "zeroing a block must map it to id 0");
  cr_assert_eq (r[4].type, JREC_MAP_ZERO);
  cr_assert_eq (r[4].len, JREC_MAP_ZERO_LEN);
  cr_assert_eq (get_le32 (r[4].p), 0);
  cr_assert_eq (get_le64 (r[4].p + 8), 50);
  cr_assert_eq (get_le64 (r[4].p + 16), 100);
  free (buf);

  /* Adding a disk is durable at once, without a flush. */
  cr_assert_not_null (cas_disk_add (s, "extra", 12345));
  n = current_records (r, 32, &buf);
  cr_assert_eq (n, 6);
  cr_assert_eq (r[5].type, JREC_DISK_ADD);
  cr_assert_eq (r[5].len, JREC_DISK_ADD_LEN);
  cr_assert_eq (get_le32 (r[5].p), 1);
  cr_assert_eq (get_le32 (r[5].p + 4), 5);
  cr_assert_eq (get_le64 (r[5].p + 8), 12345);
  cr_assert_arr_eq (r[5].p + 16, "extra", 5);
  for (int i = 16 + 5; i < JREC_DISK_ADD_LEN; i++)
    cr_assert_eq (r[5].p[i], 0);
  free (buf);
  close_ok (s);
}

Test (journal, records_reach_the_file_at_flush)
{
  uint8_t a[BS];
  char path[400];
  struct stat st;

  create (3, 64 * BS);
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  journal_path (path, sizeof path);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_size, JRN_HDR_SIZE);
  fill_random (a, BS, 1);
  write_ok (d, a, BS, 0);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_size, JRN_HDR_SIZE, "records written before the flush");
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert_eq (stat (path, &st), 0);
  const off_t after = st.st_size;
  cr_assert_eq (after, JRN_HDR_SIZE + JREC_BATCH_SIZE + 16 + JREC_BLOCK_NEW_LEN +
                16 + JREC_MAP_SET_LEN);
  /* Nothing new: a flush writes nothing. */
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_size, after);
  /* Reads do not journal. */
  read_expect (d, a, BS, 0);
  cr_assert_eq (cas_store_flush (s), 0);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_size, after);
  close_ok (s);
}

/* ---- replay ---- */

static uint8_t A[BS], B[BS], C[BS], D[BS];

static bool
gc_settled (struct cas_store *s)
{
  for (int i = 0; i < 100; i++) {
    struct cas_store_stats st;
    if (cas_store_stats (s, &st) == -1)
      return false;
    if (st.gc_freed_blocks >= 1 && st.dead_blocks == 0 && st.free_bytes > 0)
      return true;
    const struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  return false;
}

static int
every_record_type (void)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 0;
  struct cas_store *s = cas_store_open (store, &o);
  CHILD_CHECK (s != NULL);
  CHILD_CHECK (cas_store_start (s) == 0);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (d != NULL);
  CHILD_CHECK (cas_disk_write (d, A, BS, 0) == 0);              /* BLOCK_NEW, MAP_SET */
  CHILD_CHECK (cas_disk_write (d, B, BS, BS) == 0);
  for (uint64_t v = 100; v < 180; v++)                          /* a dedup run */
    CHILD_CHECK (cas_disk_write (d, D, BS, v * BS) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  struct cas_disk *d2 = cas_disk_add (s, "second", 4 * BS);     /* DISK_ADD */
  CHILD_CHECK (d2 != NULL);
  CHILD_CHECK (cas_disk_write (d2, B, BS, 2 * BS) == 0);
  CHILD_CHECK (cas_disk_write (d, C, BS, 0) == 0);              /* A dies */
  CHILD_CHECK (cas_disk_zero (d, 70 * BS, 105 * BS) == 0);      /* MAP_ZERO */
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (gc_settled (s));                                 /* BLOCK_DEL, flushed */
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (journal, replay_every_record_type)
{
  struct jrec r[512];
  uint8_t *buf;
  bool seen[JREC_DISK_ADD + 1] = { false };

  create (3, 200 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_text (C, BS, 3);
  fill_text (D, BS, 4);
  in_crashing_child (every_record_type);

  const size_t n = current_records (r, 512, &buf);
  cr_assert_leq (n, 512);
  for (size_t i = 0; i < n; i++) {
    cr_assert (r[i].type >= JREC_BLOCK_NEW && r[i].type <= JREC_DISK_ADD, "type %u", r[i].type);
    seen[r[i].type] = true;
  }
  for (int t = JREC_BLOCK_NEW; t <= JREC_DISK_ADD; t++)
    cr_assert (seen[t], "no record of type %d in the journal", t);
  free (buf);

  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, C, BS, 0);
  read_expect (d, B, BS, BS);
  for (uint64_t v = 100; v < 105; v++)
    read_expect (d, D, BS, v * BS);
  read_zero (d, 70 * BS, 105 * BS);
  struct cas_disk *d2 = cas_disk_find (s, "second");
  cr_assert_not_null (d2);
  cr_assert_eq (cas_disk_size (d2), 4 * BS);
  read_expect (d2, B, BS, 2 * BS);
  read_zero (d2, 2 * BS, 0);
  struct cas_store_stats st;
  cr_assert_eq (cas_store_stats (s, &st), 0);
  cr_assert_eq (st.nblocks, 3, "blocks B, C, D expected, %" PRIu64 " found", st.nblocks);
  cr_assert_eq (st.dead_blocks, 0);
  close_ok (s);
  check_clean ();
}

static int
two_flushed_batches (void)
{
  struct cas_store *s = cas_store_open (store, NULL);
  CHILD_CHECK (s != NULL);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  CHILD_CHECK (cas_disk_write (d, A, BS, 0) == 0);
  CHILD_CHECK (cas_disk_write (d, B, BS, BS) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  CHILD_CHECK (cas_disk_write (d, C, BS, 2 * BS) == 0);
  CHILD_CHECK (cas_disk_write (d, D, BS, 0) == 0);
  CHILD_CHECK (cas_store_flush (s) == 0);
  return 0;
}

Test (journal, torn_tail_garbage)
{
  char path[400];
  uint8_t junk[300];

  create (3, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_random (C, BS, 3);
  fill_random (D, BS, 4);
  in_crashing_child (two_flushed_batches);
  journal_path (path, sizeof path);
  memset (junk, 0xab, sizeof junk);
  const int fd = open (path, O_WRONLY | O_APPEND);
  cr_assert_geq (fd, 0);
  cr_assert_eq (write (fd, junk, sizeof junk), (ssize_t) sizeof junk);
  close (fd);

  /* A torn tail is what a crash leaves: not a problem for check, and a
   * read-only open (which cannot cut it) sees the data.
   */
  check_clean ();
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.readonly = true;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "%s", errors);
  read_expect (disk0 (s), D, BS, 0);
  close_ok (s);

  s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, D, BS, 0);
  read_expect (d, B, BS, BS);
  read_expect (d, C, BS, 2 * BS);
  close_ok (s);
  check_clean ();
}

Test (journal, torn_tail_zeroes)
{
  /* A batch whose data blocks were allocated but whose bytes never made
   * it: the tail reads as zeroes (crc 0 of an all-zero record is wrong).
   */
  char path[400];
  static const uint8_t zeroes[4096];

  create (3, 64 * BS);
  fill_random (A, BS, 11);
  fill_random (B, BS, 12);
  fill_random (C, BS, 13);
  fill_random (D, BS, 14);
  in_crashing_child (two_flushed_batches);
  journal_path (path, sizeof path);
  const int fd = open (path, O_WRONLY | O_APPEND);
  cr_assert_eq (write (fd, zeroes, sizeof zeroes), (ssize_t) sizeof zeroes);
  close (fd);

  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), D, BS, 0);
  read_expect (disk0 (s), C, BS, 2 * BS);
  close_ok (s);
  check_clean ();
}

Test (journal, torn_tail_cut_record)
{
  char path[400];
  size_t len;

  create (3, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_random (C, BS, 3);
  fill_random (D, BS, 4);
  in_crashing_child (two_flushed_batches);
  journal_path (path, sizeof path);
  free (slurp (path, &len));
  /* Cut into the last record (MAP_SET of block 0 -> D): the second
   * flush's batch is torn, and none of it is applied.
   */
  cr_assert_eq (truncate (path, len - 5), 0);

  static const uint8_t zero[BS];
  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, A, BS, 0);            /* the torn batch is not applied */
  read_expect (d, B, BS, BS);
  read_expect (d, zero, BS, 2 * BS);
  close_ok (s);
  check_clean ();
  s = open_rw ();
  read_expect (disk0 (s), A, BS, 0);
  close_ok (s);
}

Test (journal, torn_tail_then_more_sessions)
{
  /* After recovering from a torn tail, the next session's records must
   * replay too (nothing valid may be written after a torn tail).
   */
  char path[400];
  uint8_t junk[100];

  create (3, 64 * BS);
  fill_random (A, BS, 21);
  fill_random (B, BS, 22);
  fill_random (C, BS, 23);
  fill_random (D, BS, 24);
  in_crashing_child (two_flushed_batches);
  journal_path (path, sizeof path);
  memset (junk, 0x5c, sizeof junk);
  int fd = open (path, O_WRONLY | O_APPEND);
  cr_assert_eq (write (fd, junk, sizeof junk), (ssize_t) sizeof junk);
  close (fd);
  fill_random (A, BS, 31);              /* the second session writes new data */
  fill_random (B, BS, 32);
  fill_random (C, BS, 33);
  fill_random (D, BS, 34);
  in_crashing_child (two_flushed_batches);

  struct cas_store *s = open_rw ();
  struct cas_disk *d = disk0 (s);
  read_expect (d, D, BS, 0);
  read_expect (d, B, BS, BS);
  read_expect (d, C, BS, 2 * BS);
  close_ok (s);
  check_clean ();
}

/* ---- damage ---- */

Test (journal, damaged_record_before_valid_ones)
{
  char path[400];
  size_t len;
  struct jrec r[16];
  uint64_t first;

  create (3, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_random (C, BS, 3);
  fill_random (D, BS, 4);
  in_crashing_child (two_flushed_batches);
  journal_path (path, sizeof path);
  uint8_t *buf = slurp (path, &len);
  int count;
  const size_t n = parse_journal (buf, len, journal_gen (&count), r, 16, &first);
  cr_assert_geq (n, 4);
  /* Flip a payload byte of the third record (BLOCK_NEW of B); valid
   * records follow it.
   */
  cr_assert_eq (r[2].type, JREC_BLOCK_NEW);
  const size_t at = (size_t) (r[2].p - buf) + 3;
  buf[at] ^= 0x01;
  spit (path, buf, len);

  errno = 0;
  cr_assert_null (cas_store_open (store, NULL), "a damaged journal was taken for a torn tail");
  cr_assert_eq (errno, EUCLEAN, "errno %d", errno);
  const int problems = check ();
  cr_assert_gt (problems, 0, "check did not see the damage");
  cr_assert (strstr (reports, "damaged") != NULL, "%s", reports);

  /* Repair drops the damaged batch and what follows it: block 0 was
   * written only in those, so it reads as zeroes again.
   */
  static const uint8_t zero[BS];
  struct cas_check_result res;
  reports[0] = '\0';
  const int left = cas_store_repair (store, report, NULL, &res);
  cr_assert_eq (left, 0, "repair left %d problems:\n%s%s", left, reports, errors);
  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), zero, BS, 0);
  close_ok (s);
  check_clean ();
  free (buf);
}

static void
damage_header (size_t off, uint8_t xor, bool fix_crc)
{
  char path[400];
  size_t len;

  journal_path (path, sizeof path);
  uint8_t *buf = slurp (path, &len);
  buf[off] ^= xor;
  if (fix_crc) {
    put_le32 (buf + JRN_HDR_CRC, 0);
    put_le32 (buf + JRN_HDR_CRC, cas_crc32c (0, buf, JRN_HDR_SIZE));
  }
  spit (path, buf, len);
  free (buf);
}

static void
expect_open_euclean (const char *what)
{
  errno = 0;
  cr_assert_null (cas_store_open (store, NULL), "opened with %s", what);
  cr_assert_eq (errno, EUCLEAN, "%s: errno %d (%s)", what, errno, strerror (errno));
  const int problems = check ();
  cr_assert_gt (problems, 0, "check: %s not reported (returned %d)", what, problems);
}

Test (journal, damaged_header)
{
  create (3, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_random (C, BS, 3);
  fill_random (D, BS, 4);
  in_crashing_child (two_flushed_batches);
  damage_header (20, 0x40, false);
  expect_open_euclean ("a bad journal header checksum");
  cr_assert (strstr (reports, "checksum") != NULL, "%s", reports);
}

Test (journal, wrong_uuid_generation_or_seq)
{
  create (3, 64 * BS);
  fill_random (A, BS, 1);
  fill_random (B, BS, 2);
  fill_random (C, BS, 3);
  fill_random (D, BS, 4);
  in_crashing_child (two_flushed_batches);

  damage_header (JRN_UUID + 5, 0x01, true);
  expect_open_euclean ("another store's journal");
  damage_header (JRN_UUID + 5, 0x01, true);             /* undo */

  damage_header (JRN_GEN, 0x08, true);
  expect_open_euclean ("a journal of another generation");
  damage_header (JRN_GEN, 0x08, true);

  damage_header (JRN_FIRST_SEQ, 0x02, true);
  expect_open_euclean ("a journal starting at the wrong record");
  damage_header (JRN_FIRST_SEQ, 0x02, true);

  damage_header (JRN_VERSION, 0x08, true);              /* version 10 */
  expect_open_euclean ("a newer journal version");
  damage_header (JRN_VERSION, 0x08, true);

  damage_header (0, 0x20, false);                       /* magic */
  expect_open_euclean ("a bad journal magic");
  damage_header (0, 0x20, false);

  /* All undone: the store opens with its data. */
  struct cas_store *s = open_rw ();
  read_expect (disk0 (s), D, BS, 0);
  close_ok (s);
  check_clean ();
}

Test (journal, missing_journal)
{
  char path[400];

  create (3, 64 * BS);
  fill_random (A, BS, 1);
  struct cas_store *s = open_rw ();
  write_ok (disk0 (s), A, BS, 0);
  close_ok (s);                         /* A is in the checkpoint */
  journal_path (path, sizeof path);
  cr_assert_eq (unlink (path), 0);
  expect_open_euclean ("no journal");
  cr_assert (strstr (reports, "missing") != NULL, "%s", reports);

  /* The checkpoint alone is a consistent store: repair starts a new
   * journal and nothing in the checkpoint is lost.
   */
  struct cas_check_result res;
  reports[0] = '\0';
  const int left = cas_store_repair (store, report, NULL, &res);
  cr_assert_eq (left, 0, "repair returned %d:\n%s%s", left, reports, errors);
  s = open_rw ();
  read_expect (disk0 (s), A, BS, 0);
  close_ok (s);
  check_clean ();
}
