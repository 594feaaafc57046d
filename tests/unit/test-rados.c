/* Unit tests for lib/remote/objects.c, the remote tier's block objects.
 *
 * The "frame" and "name" suites need nothing.  The others run against the
 * Ceph cluster named by $CEPH_CONF (pool $CEPH_POOL, default casdisk) and
 * are skipped only when CEPH_CONF is unset: tests/test-rados-objects.sh
 * starts a throwaway cluster (scripts/ceph-cluster.sh) and runs this
 * program against it, and fails if anything here was skipped.
 *
 * The "cls_cas" suite checks, with the class's inputs encoded here
 * independently of objects.c, what objects.h says cls_cas 16.2 does: a
 * holder's second reference is counted twice, the last put removes the
 * object, a put by a holder holding none fails with ENOLINK.  If a Ceph
 * release changes that, this suite says so.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <rados/librados.h>

#include "casdisk.h"
#include "util/crc32c.h"
#include "format.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/util.h"
#include "remote/objects.h"

#define BLK 65536u

/* ---- Helpers ---- */

static void
fill (uint8_t *p, size_t len, uint64_t seed)
{
  for (size_t i = 0; i < len; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = seed >> 56;
  }
}

/* Seeds differ between runs and between the tests' processes, so each
 * test has its own blocks even on a cluster kept from an earlier run. */
static uint64_t
new_seed (void)
{
  static uint64_t n;
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return ((uint64_t) getpid () << 40) ^ ((uint64_t) ts.tv_sec << 20) ^ ts.tv_nsec ^ (++n << 56);
}

/* A raw 64 KiB block: its plain bytes, SHA-256 and frame. */
struct block {
  uint8_t plain[BLK];
  uint8_t sha[32];
  char name[CAS_RADOS_NAME_LEN + 1];
  uint8_t frame[CAS_RADOS_HDR_LEN + BLK];
  uint32_t frame_len;
};

static struct block *
new_block (void)
{
  struct block *b = malloc (sizeof *b);
  struct cas_hash h;
  cr_assert_not_null (b);
  fill (b->plain, BLK, new_seed ());
  cr_assert_eq (cas_hash_block (b->plain, BLK, &h), 0);
  memcpy (b->sha, h.b, 32);
  cas_rados_block_name (b->sha, b->name);
  cr_assert_eq (cas_rados_frame (0, BLK, b->plain, BLK, b->frame, sizeof b->frame, &b->frame_len), 0);
  cr_assert_eq (b->frame_len, CAS_RADOS_HDR_LEN + BLK);
  return b;
}

static struct cas_rados *
connect_or_skip (void)
{
  const char *conf = getenv ("CEPH_CONF");
  const char *pool = getenv ("CEPH_POOL");
  struct cas_rados *r = NULL;

  if (!conf || !*conf)
    cr_skip_test ("CEPH_CONF is unset (tests/test-rados-objects.sh runs this against a cluster)");
  struct cas_rados_opts o = { .pool = pool ? pool : "casdisk", .conf = conf, .op_timeout_s = 10 };
  cr_assert_eq (cas_rados_open (&o, &r), 0, "cas_rados_open: %s", cas_last_error ());
  cr_assert_not_null (r);
  return r;
}

/* The size of object NAME, or -errno. */
static int64_t
stat_size (struct cas_rados *r, const char *name)
{
  uint64_t size;
  time_t mtime;
  int ret = rados_stat (cas_rados_ioctx (r), name, &size, &mtime);
  return ret < 0 ? ret : (int64_t) size;
}

/* The holders of a block, from the chunk_refs xattr. */
struct holders {
  unsigned n;
  char name[16][CAS_RADOS_HOLDER_MAX + 1];
};

static int
add_holder (void *arg, const char *holder)
{
  struct holders *h = arg;
  if (h->n < 16)
    snprintf (h->name[h->n], sizeof h->name[0], "%s", holder);
  h->n++;
  return 0;
}

static bool
has_holder (const struct holders *h, const char *holder)
{
  for (unsigned i = 0; i < h->n && i < 16; i++)
    if (strcmp (h->name[i], holder) == 0)
      return true;
  return false;
}

static struct holders
holders_of (struct cas_rados *r, const struct block *b)
{
  struct holders h = { 0 };
  uint32_t count = 999;
  cr_assert_eq (cas_rados_block_refs (r, b->sha, add_holder, &h, &count), 0,
                "cas_rados_block_refs: %s", cas_last_error ());
  cr_assert_eq (count, h.n, "count %" PRIu32 ", %u holders listed", count, h.n);
  return h;
}

/* The holders marked in the block's omap ("ref.<holder>" keys). */
static unsigned
omap_marks (struct cas_rados *r, const struct block *b, const char *must_have)
{
  rados_read_op_t op = rados_create_read_op ();
  rados_omap_iter_t it;
  int prval = 0;
  unsigned n = 0;
  bool found = must_have == NULL;
  char want[CAS_RADOS_HOLDER_MAX + 8];

  snprintf (want, sizeof want, "ref.%s", must_have ? must_have : "");
  rados_read_op_omap_get_keys2 (op, "", 1000, &it, NULL, &prval);
  int ret = rados_read_op_operate (op, cas_rados_ioctx (r), b->name, 0);
  rados_release_read_op (op);
  cr_assert_eq (ret, 0, "omap keys of %s: %s", b->name, strerror (-ret));
  cr_assert_eq (prval, 0);
  char *key, *val;
  size_t len;
  while (rados_omap_get_next (it, &key, &val, &len) == 0 && key) {
    n++;
    if (strcmp (key, want) == 0)
      found = true;
  }
  rados_omap_get_end (it);
  cr_assert (found, "%s: no omap key %s", b->name, want);
  return n;
}

static void
put_ok (struct cas_rados *r, const struct block *b, const char *holder, bool expect_removed)
{
  bool removed = !expect_removed;
  cr_assert_eq (cas_rados_block_put (r, b->sha, holder, &removed), 0, "put by %s: %s", holder,
                cas_last_error ());
  cr_assert_eq (removed, expect_removed, "put by %s: removed %d", holder, removed);
}

/* ---- Names ---- */

Test (name, sha256_hex)
{
  struct cas_hash h;
  char name[CAS_RADOS_NAME_LEN + 1];

  cr_assert_eq (cas_hash_block ("abc", 3, &h), 0);
  memset (name, 'x', sizeof name);
  cas_rados_block_name (h.b, name);
  cr_assert_str_eq (name, "blk.ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  cr_assert_eq (strlen (name), CAS_RADOS_NAME_LEN);
}

/* ---- Frames ---- */

static uint8_t frame_buf[CAS_RADOS_HDR_LEN + 2 * BLK];

static void
roundtrip (uint32_t flags, uint32_t plain, uint32_t stored_len)
{
  static uint8_t stored[2 * BLK];
  uint32_t len = 0;
  struct cas_rados_frame_info info;
  const void *p;

  fill (stored, stored_len, flags * 1000 + stored_len);
  cr_assert_eq (cas_rados_frame (flags, plain, stored, stored_len, frame_buf, sizeof frame_buf, &len),
                0, "frame flags %u plain %u stored %u: %s", flags, plain, stored_len,
                cas_last_error ());
  cr_assert_eq (len, CAS_RADOS_HDR_LEN + stored_len);
  cr_assert_eq (memcmp (frame_buf, "CASBLK1", 8), 0);
  cr_assert_eq (get_le32 (frame_buf + 8), 1);
  cr_assert_eq (get_le32 (frame_buf + 12), flags);
  cr_assert_eq (get_le32 (frame_buf + 16), plain);
  cr_assert_eq (get_le32 (frame_buf + 20), stored_len);
  cr_assert_eq (get_le32 (frame_buf + 24), cas_crc32c (0, stored, stored_len));
  cr_assert_eq (get_le32 (frame_buf + 28), cas_crc32c (0, frame_buf, 28));
  cr_assert_eq (cas_rados_unframe ("t", frame_buf, len, &info, &p), 0, "%s", cas_last_error ());
  cr_assert_eq (info.flags, flags);
  cr_assert_eq (info.plain_len, plain);
  cr_assert_eq (info.stored_len, stored_len);
  cr_assert_eq (p, frame_buf + CAS_RADOS_HDR_LEN);
  cr_assert_eq (memcmp (p, stored, stored_len), 0);
}

Test (frame, roundtrip)
{
  roundtrip (0, BLK, BLK);
  roundtrip (0, 4096, 4096);
  roundtrip (0, 1, 1);
  roundtrip (CAS_BLK_COMPRESSED, BLK, 1234);
  roundtrip (CAS_BLK_COMPRESSED, BLK, BLK);
  roundtrip (CAS_BLK_SECTORED, BLK, cas_sectored_len (BLK));
  roundtrip (CAS_BLK_SECTORED, 16384, cas_sectored_len (16384));
}

/* A good frame in FRAME_BUF: raw, 4096 bytes. */
static uint32_t
good_frame (void)
{
  static uint8_t stored[4096];
  uint32_t len;
  fill (stored, sizeof stored, 7);
  cr_assert_eq (cas_rados_frame (0, 4096, stored, 4096, frame_buf, sizeof frame_buf, &len), 0);
  return len;
}

static void
reseal (void)                   /* a header CRC that matches the header */
{
  put_le32 (frame_buf + 28, cas_crc32c (0, frame_buf, 28));
}

static void
refused (uint32_t len, const char *what, const char *msg_part)
{
  struct cas_rados_frame_info info;
  const void *p = NULL;

  cas_clear_last_error ();
  errno = 0;
  cr_assert_eq (cas_rados_unframe ("blk.test", frame_buf, len, &info, &p), -1,
                "a frame with %s was accepted", what);
  cr_assert_eq (errno, EUCLEAN, "%s: errno %d (%s), not EUCLEAN", what, errno, strerror (errno));
  cr_assert (strstr (cas_last_error (), "blk.test") != NULL, "%s: message \"%s\" does not name "
             "the object", what, cas_last_error ());
  cr_assert (strstr (cas_last_error (), msg_part) != NULL, "%s: message \"%s\" lacks \"%s\"",
             what, cas_last_error (), msg_part);
}

Test (frame, bad_fields_refused)
{
  uint32_t len;

  len = good_frame ();
  frame_buf[0] = 'X';
  reseal ();
  refused (len, "a bad magic", "magic");

  len = good_frame ();
  put_le32 (frame_buf + 8, 2);
  reseal ();
  refused (len, "version 2", "version");

  len = good_frame ();
  frame_buf[16] ^= 1;           /* plain length, CRC not resealed */
  refused (len, "a bad header CRC", "header CRC");

  len = good_frame ();
  put_le32 (frame_buf + 12, CAS_BLK_QUARANTINED);
  reseal ();
  refused (len, "the quarantine flag", "flags");

  len = good_frame ();
  put_le32 (frame_buf + 12, CAS_BLK_COMPRESSED | CAS_BLK_SECTORED);
  reseal ();
  refused (len, "two flags", "flags");

  len = good_frame ();
  put_le32 (frame_buf + 16, 0);
  put_le32 (frame_buf + 20, 0);
  reseal ();
  refused (len, "a zero plain length", "plain length");

  len = good_frame ();
  put_le32 (frame_buf + 16, CAS_MAX_BLOCK_SIZE + 1);
  reseal ();
  refused (len, "a plain length over the block size", "plain length");

  len = good_frame ();
  put_le32 (frame_buf + 16, 4095);      /* raw: stored != plain */
  reseal ();
  refused (len, "raw with stored != plain", "raw");

  len = good_frame ();
  put_le32 (frame_buf + 12, CAS_BLK_SECTORED);
  reseal ();
  refused (len, "sectored without its CRC table", "sectored");

  len = good_frame ();
  put_le32 (frame_buf + 12, CAS_BLK_COMPRESSED);
  put_le32 (frame_buf + 16, 4000);      /* stored 4096 > plain */
  reseal ();
  refused (len, "compressed larger than plain", "compressed");

  len = good_frame ();
  refused (len - 1, "a stored length longer than the object", "follow the header");
  len = good_frame ();
  refused (len + 1, "trailing bytes", "follow the header");

  len = good_frame ();
  frame_buf[CAS_RADOS_HDR_LEN + 4000] ^= 0x40;
  refused (len, "a flipped data bit", "data CRC");

  len = good_frame ();
  refused (31, "a truncated header", "shorter than a frame header");
  refused (0, "nothing", "shorter than a frame header");
}

Test (frame, build_refuses_bad_input)
{
  static uint8_t stored[BLK + 64];
  uint32_t len = 77;

  errno = 0;
  cr_assert_eq (cas_rados_frame (CAS_BLK_QUARANTINED, 4096, stored, 4096, frame_buf, sizeof frame_buf,
                                 &len), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_rados_frame (0, 4096, stored, 4095, frame_buf, sizeof frame_buf, &len), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_rados_frame (0, CAS_MAX_BLOCK_SIZE + 1, stored, CAS_MAX_BLOCK_SIZE + 1, frame_buf,
                                 sizeof frame_buf, &len), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_rados_frame (0, 4096, stored, 4096, frame_buf, CAS_RADOS_HDR_LEN + 4095, &len), -1);
  cr_assert_eq (errno, ERANGE);
  cr_assert_eq (len, 77, "frame_len written on failure");
}

/* ---- Against the cluster ----
 *
 * No Criterion timeouts: Criterion 2.4's timeout timers leak memory now
 * and then (LeakSanitizer fails the sanitizer build).  Every call here
 * is bounded by the op timeout (10 s), and tests/test-rados-objects.sh
 * runs this program under timeout(1). */

Test (rados, open_errors)
{
  struct cas_rados *r = connect_or_skip ();
  cas_rados_close (r);

  struct cas_rados_opts o = { .pool = "casdisk-no-such-pool", .conf = getenv ("CEPH_CONF"),
                              .op_timeout_s = 10 };
  r = (struct cas_rados *) 1;
  errno = 0;
  cr_assert_eq (cas_rados_open (&o, &r), -1);
  cr_assert_eq (errno, ENOENT, "errno %d (%s)", errno, strerror (errno));
  cr_assert (strstr (cas_last_error (), "remote rados:casdisk-no-such-pool: cannot open the pool") &&
             strstr (cas_last_error (), "No such file or directory"), "%s", cas_last_error ());

  o.pool = "casdisk";
  o.conf = "/nonexistent/ceph.conf";
  errno = 0;
  cr_assert_eq (cas_rados_open (&o, &r), -1);
  cr_assert_eq (errno, ENOENT, "errno %d (%s)", errno, strerror (errno));
  cr_assert (strstr (cas_last_error (), "/nonexistent/ceph.conf"), "%s", cas_last_error ());

  o.pool = NULL;
  errno = 0;
  cr_assert_eq (cas_rados_open (&o, &r), -1);
  cr_assert_eq (errno, EINVAL);
}

Test (rados, put_ref_creates)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  bool created = false;

  cr_assert_eq (stat_size (r, b->name), -ENOENT, "%s exists before the test", b->name);
  cr_assert_eq (cas_rados_block_exists (r, b->sha), 0);
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, &created), 0,
                "%s", cas_last_error ());
  cr_assert (created, "a new block's put_ref did not report created");
  cr_assert_eq (stat_size (r, b->name), (int64_t) b->frame_len, "rados_stat after put_ref");
  cr_assert_eq (cas_rados_block_exists (r, b->sha), 1);

  /* The same holder again: still exactly one reference. */
  created = true;
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, &created), 0,
                "%s", cas_last_error ());
  cr_assert (!created);
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 1, "disk.a's second put_ref made %u references", h.n);
  cr_assert_str_eq (h.name[0], "disk.a");
  cr_assert_eq (omap_marks (r, b, "disk.a"), 1);

  put_ok (r, b, "disk.a", true);
  cr_assert_eq (stat_size (r, b->name), -ENOENT);
  free (b);
  cas_rados_close (r);
}

Test (rados, second_holder_adds_ref)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  bool created = false;

  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, &created), 0);
  cr_assert (created);
  created = true;
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.b", b->frame, b->frame_len, &created), 0,
                "%s", cas_last_error ());
  cr_assert (!created, "the second holder's put_ref created the object again");
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 2, "%u references, expected 2", h.n);
  cr_assert (has_holder (&h, "disk.a") && has_holder (&h, "disk.b"), "holders %s, %s",
             h.name[0], h.name[1]);
  cr_assert_eq (omap_marks (r, b, "disk.b"), 2);
  cr_assert_eq (stat_size (r, b->name), (int64_t) b->frame_len);

  put_ok (r, b, "disk.a", false);
  put_ok (r, b, "disk.b", true);
  free (b);
  cas_rados_close (r);
}

Test (rados, read_back)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  static uint8_t buf[BLK + 100];
  struct cas_rados_frame_info info;

  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, NULL), 0);
  memset (buf, 0, sizeof buf);
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), 0, "%s", cas_last_error ());
  cr_assert_eq (info.flags, 0);
  cr_assert_eq (info.plain_len, BLK);
  cr_assert_eq (info.stored_len, BLK);
  cr_assert_eq (memcmp (buf, b->plain, BLK), 0, "the bytes read back differ");
  struct cas_hash h;
  cr_assert_eq (cas_hash_block (buf, info.stored_len, &h), 0);
  cr_assert_eq (memcmp (h.b, b->sha, 32), 0, "the content read back does not match its name");

  /* A buffer exactly the size works; one byte short is ERANGE. */
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, BLK, &info), 0, "%s", cas_last_error ());
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, BLK - 1, &info), -1);
  cr_assert_eq (errno, ERANGE, "errno %d (%s)", errno, strerror (errno));

  put_ok (r, b, "disk.a", true);
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1);
  cr_assert_eq (errno, ENOENT);
  cr_assert (strstr (cas_last_error (), b->name), "the message does not name the object: %s",
             cas_last_error ());
  free (b);
  cas_rados_close (r);
}

/* Damage block B's object by writing LEN bytes at OFF; reading it must
 * fail with EUCLEAN, the message containing WHAT. */
static void
damaged_read_refused (struct cas_rados *r, struct block *b, uint64_t off, const void *bytes,
                      size_t len, const char *what)
{
  static uint8_t buf[BLK];
  struct cas_rados_frame_info info;

  cr_assert_eq (rados_write (cas_rados_ioctx (r), b->name, bytes, len, off), 0);
  errno = 0;
  cas_clear_last_error ();
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1,
                "a frame damaged at %" PRIu64 " was read", off);
  cr_assert_eq (errno, EUCLEAN, "damage at %" PRIu64 ": errno %d (%s), not EUCLEAN", off, errno,
                strerror (errno));
  cr_assert (strstr (cas_last_error (), b->name) && strstr (cas_last_error (), what),
             "damage at %" PRIu64 ": message \"%s\"", off, cas_last_error ());
  /* Repair it: the original bytes. */
  cr_assert_eq (rados_write (cas_rados_ioctx (r), b->name, (const char *) b->frame + off, len, off), 0);
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), 0, "%s", cas_last_error ());
}

Test (rados, corrupted_object_refused)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  static uint8_t buf[BLK];
  struct cas_rados_frame_info info;

  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, NULL), 0);
  char c = b->frame[CAS_RADOS_HDR_LEN + 100] ^ 0x01;
  damaged_read_refused (r, b, CAS_RADOS_HDR_LEN + 100, &c, 1, "data CRC");
  c = b->frame[CAS_RADOS_HDR_LEN + BLK - 1] ^ 0x80;
  damaged_read_refused (r, b, CAS_RADOS_HDR_LEN + BLK - 1, &c, 1, "data CRC");
  c = b->frame[17] ^ 0x01;
  damaged_read_refused (r, b, 17, &c, 1, "header CRC");
  c = 'Y';
  damaged_read_refused (r, b, 3, &c, 1, "magic");

  /* Longer or shorter than its header says. */
  cr_assert_eq (rados_append (cas_rados_ioctx (r), b->name, "z", 1), 0);
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1);
  cr_assert_eq (errno, EUCLEAN, "a frame with a trailing byte: errno %d", errno);
  cr_assert_eq (rados_trunc (cas_rados_ioctx (r), b->name, b->frame_len - 1), 0);
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1);
  cr_assert_eq (errno, EUCLEAN, "a frame one byte short: errno %d", errno);
  cr_assert_eq (rados_trunc (cas_rados_ioctx (r), b->name, 20), 0);
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1);
  cr_assert_eq (errno, EUCLEAN, "a 20-byte object: errno %d", errno);

  put_ok (r, b, "disk.a", true);
  free (b);
  cas_rados_close (r);
}

Test (rados, put_ref_refuses_bad_frame)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  bool created = true;

  b->frame[CAS_RADOS_HDR_LEN + 5] ^= 1;
  errno = 0;
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, &created), -1);
  cr_assert_eq (errno, EINVAL, "errno %d (%s)", errno, strerror (errno));
  b->frame[CAS_RADOS_HDR_LEN + 5] ^= 1;
  errno = 0;
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len - 1, &created), -1);
  cr_assert_eq (errno, EINVAL);
  errno = 0;
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "", b->frame, b->frame_len, &created), -1);
  cr_assert_eq (errno, EINVAL);
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk a", b->frame, b->frame_len, &created), -1);
  cr_assert_eq (errno, EINVAL);
  cr_assert_eq (stat_size (r, b->name), -ENOENT, "a refused put_ref stored something");
  free (b);
  cas_rados_close (r);
}

Test (rados, put_semantics)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();

  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, NULL), 0);
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.b", b->frame, b->frame_len, NULL), 0);
  put_ok (r, b, "disk.a", false);
  cr_assert_eq (stat_size (r, b->name), (int64_t) b->frame_len, "put by one holder removed the object");
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 1);
  cr_assert_str_eq (h.name[0], "disk.b");

  /* disk.a holds none now. */
  errno = 0;
  cr_assert_eq (cas_rados_block_put (r, b->sha, "disk.a", NULL), -1);
  cr_assert_eq (errno, ENOLINK, "errno %d (%s)", errno, strerror (errno));
  cr_assert (strstr (cas_last_error (), b->name) && strstr (cas_last_error (), "disk.a"), "%s",
             cas_last_error ());
  cr_assert_eq (stat_size (r, b->name), (int64_t) b->frame_len);

  put_ok (r, b, "disk.b", true);
  cr_assert_eq (stat_size (r, b->name), -ENOENT, "the last put left the object");
  cr_assert_eq (cas_rados_block_exists (r, b->sha), 0);

  errno = 0;
  cr_assert_eq (cas_rados_block_put (r, b->sha, "disk.b", NULL), -1);
  cr_assert_eq (errno, ENOENT, "errno %d (%s)", errno, strerror (errno));
  errno = 0;
  cr_assert_eq (cas_rados_block_refs (r, b->sha, NULL, NULL, NULL), -1);
  cr_assert_eq (errno, ENOENT);
  free (b);
  cas_rados_close (r);
}

Test (rados, get_ref)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();

  errno = 0;
  cr_assert_eq (cas_rados_block_get_ref (r, b->sha, "disk.a"), -1);
  cr_assert_eq (errno, ENOENT, "get_ref of a missing block: errno %d (%s)", errno, strerror (errno));
  cr_assert_eq (stat_size (r, b->name), -ENOENT, "get_ref created an object");

  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, NULL), 0);
  cr_assert_eq (cas_rados_block_get_ref (r, b->sha, "disk.b"), 0, "%s", cas_last_error ());
  cr_assert_eq (cas_rados_block_get_ref (r, b->sha, "disk.b"), 0, "%s", cas_last_error ());
  cr_assert_eq (cas_rados_block_get_ref (r, b->sha, "disk.a"), 0, "%s", cas_last_error ());
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 2, "%u references after get_refs by 2 holders", h.n);
  cr_assert (has_holder (&h, "disk.a") && has_holder (&h, "disk.b"));
  cr_assert_eq (omap_marks (r, b, "disk.a"), 2);

  put_ok (r, b, "disk.b", false);
  put_ok (r, b, "disk.a", true);
  free (b);
  cas_rados_close (r);
}

Test (rados, many_holders)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  char holder[64];
  unsigned created = 0;

  for (int i = 0; i < 12; i++) {
    bool c;
    snprintf (holder, sizeof holder, "disk.%08x-%d", (unsigned) i * 2654435761u, i);
    cr_assert_eq (cas_rados_block_put_ref (r, b->sha, holder, b->frame, b->frame_len, &c), 0);
    created += c;
  }
  cr_assert_eq (created, 1);
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 12);
  for (int i = 0; i < 12; i++) {
    snprintf (holder, sizeof holder, "disk.%08x-%d", (unsigned) i * 2654435761u, i);
    cr_assert (has_holder (&h, holder), "%s missing", holder);
  }
  for (int i = 0; i < 12; i++) {
    snprintf (holder, sizeof holder, "disk.%08x-%d", (unsigned) i * 2654435761u, i);
    put_ok (r, b, holder, i == 11);
  }
  free (b);
  cas_rados_close (r);
}

/* ---- Two threads taking and dropping references to one block ---- */

#define RACE_OPS 200

struct racer {
  struct cas_rados *r;
  struct block *b;
  const char *holder;
  uint64_t seed;
  bool held;
  unsigned creations, removals, lost, errors;
  char error[256];
};

static void *
race (void *arg)
{
  struct racer *t = arg;
  static __thread uint8_t buf[BLK];
  struct cas_rados_frame_info info;

  for (int i = 0; i < RACE_OPS; i++) {
    t->seed = t->seed * 6364136223846793005ull + 1442695040888963407ull;
    bool take = !t->held || (t->seed >> 60) < 4;        /* when held, mostly drop */
    if (take) {
      bool created;
      if (cas_rados_block_put_ref (t->r, t->b->sha, t->holder, t->b->frame, t->b->frame_len,
                                   &created) == -1) {
        t->errors++;
        snprintf (t->error, sizeof t->error, "put_ref: %s", cas_last_error ());
        continue;
      }
      t->creations += created;
      t->held = true;
    }
    else {
      bool removed;
      if (cas_rados_block_put (t->r, t->b->sha, t->holder, &removed) == -1) {
        t->errors++;
        snprintf (t->error, sizeof t->error, "put: %s", cas_last_error ());
        continue;
      }
      t->removals += removed;
      t->held = false;
    }
    /* While this thread holds a reference the object must be there. */
    if (t->held && cas_rados_block_read (t->r, t->b->sha, buf, sizeof buf, &info) == -1)
      t->lost++;
  }
  return NULL;
}

Test (rados, concurrent_put_ref_and_put)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  struct racer t[2] = {
    { .r = r, .b = b, .holder = "disk.race0", .seed = 1 },
    { .r = r, .b = b, .holder = "disk.race1", .seed = 2 },
  };
  pthread_t th[2];

  for (int i = 0; i < 2; i++)
    cr_assert_eq (pthread_create (&th[i], NULL, race, &t[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join (th[i], NULL);

  for (int i = 0; i < 2; i++) {
    cr_assert_eq (t[i].errors, 0, "%s: %u errors, the last: %s", t[i].holder, t[i].errors, t[i].error);
    cr_assert_eq (t[i].lost, 0, "%s: the object was missing %u times while it held a reference",
                  t[i].holder, t[i].lost);
  }
  cr_assert (t[0].creations + t[1].creations > 1, "only %u creations: no race happened",
             t[0].creations + t[1].creations);
  bool some_held = t[0].held || t[1].held;
  int64_t size = stat_size (r, b->name);
  cr_assert_eq (size >= 0, some_held, "after the race: object %s, held by %s%s",
                size >= 0 ? "exists" : "is gone", t[0].held ? "race0 " : "", t[1].held ? "race1" : "");
  unsigned created = t[0].creations + t[1].creations, removed = t[0].removals + t[1].removals;
  cr_assert_eq (created, removed + (some_held ? 1 : 0), "%u creations, %u removals, %s", created,
                removed, some_held ? "held" : "not held");
  if (some_held) {
    struct holders h = holders_of (r, b);
    cr_assert_eq (h.n, (unsigned) t[0].held + t[1].held);
    for (int i = 0; i < 2; i++)
      cr_assert_eq (has_holder (&h, t[i].holder), t[i].held, "%s", t[i].holder);
  }
  for (int i = 0; i < 2; i++)
    if (t[i].held)
      cr_assert_eq (cas_rados_block_put (r, b->sha, t[i].holder, NULL), 0);
  cr_assert_eq (stat_size (r, b->name), -ENOENT);
  free (b);
  cas_rados_close (r);
}

/* ---- Batches ---- */

Test (rados, batch_put_ref)
{
  struct cas_rados *r = connect_or_skip ();
  enum { N = 40 };
  struct block *b[N];
  bool created[N];
  unsigned failed = 99;

  for (int i = 0; i < N; i++)
    b[i] = new_block ();
  struct cas_rados_batch *bt = cas_rados_batch_new (r, 8);
  cr_assert_not_null (bt);
  for (int i = 0; i < N; i++) {
    created[i] = false;
    cr_assert_eq (cas_rados_batch_put_ref (bt, b[i]->sha, "disk.a", b[i]->frame, b[i]->frame_len,
                                           &created[i]), 0, "%s", cas_last_error ());
  }
  cr_assert_eq (cas_rados_batch_wait (bt, &failed), 0, "%s", cas_last_error ());
  cr_assert_eq (failed, 0);
  for (int i = 0; i < N; i++) {
    cr_assert (created[i], "block %d not created", i);
    cr_assert_eq (stat_size (r, b[i]->name), (int64_t) b[i]->frame_len);
  }

  /* Again, by another holder, and one by disk.a again: none created. */
  for (int i = 0; i < N; i++) {
    created[i] = true;
    cr_assert_eq (cas_rados_batch_put_ref (bt, b[i]->sha, i == 7 ? "disk.a" : "disk.b", b[i]->frame,
                                           b[i]->frame_len, &created[i]), 0);
  }
  /* A bad frame is refused at once; the others go on. */
  b[0]->frame[40] ^= 1;
  errno = 0;
  cr_assert_eq (cas_rados_batch_put_ref (bt, b[0]->sha, "disk.c", b[0]->frame, b[0]->frame_len, NULL), -1);
  cr_assert_eq (errno, EINVAL);
  b[0]->frame[40] ^= 1;
  cr_assert_eq (cas_rados_batch_wait (bt, &failed), 0, "%s", cas_last_error ());
  for (int i = 0; i < N; i++) {
    cr_assert (!created[i], "block %d created again", i);
    struct holders h = holders_of (r, b[i]);
    cr_assert_eq (h.n, i == 7 ? 1 : 2, "block %d: %u holders", i, h.n);
  }
  cas_rados_batch_free (bt);

  for (int i = 0; i < N; i++) {
    if (i != 7)
      put_ok (r, b[i], "disk.b", false);
    put_ok (r, b[i], "disk.a", true);
    free (b[i]);
  }
  cas_rados_close (r);
}

Test (rados, errors_name_the_object)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();
  static uint8_t buf[BLK];
  struct cas_rados_frame_info info;

  /* An object that is not a frame at all. */
  cr_assert_eq (rados_write_full (cas_rados_ioctx (r), b->name, "not a frame, just some bytes", 28), 0);
  errno = 0;
  cr_assert_eq (cas_rados_block_read (r, b->sha, buf, sizeof buf, &info), -1);
  cr_assert_eq (errno, EUCLEAN);
  cr_assert (strstr (cas_last_error (), "remote rados:") && strstr (cas_last_error (), b->name),
             "%s", cas_last_error ());
  /* Made outside cls_cas: no chunk_refs. */
  errno = 0;
  cr_assert_eq (cas_rados_block_refs (r, b->sha, NULL, NULL, NULL), -1);
  cr_assert_eq (errno, EUCLEAN, "errno %d (%s)", errno, strerror (errno));
  cr_assert_eq (rados_remove (cas_rados_ioctx (r), b->name), 0);
  free (b);
  cas_rados_close (r);
}

/* ---- cls_cas itself, with inputs encoded here ---- */

struct enc {
  uint8_t b[512];
  size_t n;
};

static void
e_le (struct enc *e, uint64_t v, int n)
{
  cr_assert (e->n + n <= sizeof e->b);
  for (int i = 0; i < n; i++)
    e->b[e->n++] = v >> (8 * i);
}

static void
e_str (struct enc *e, const char *s)
{
  size_t n = strlen (s);
  e_le (e, n, 4);
  cr_assert (e->n + n <= sizeof e->b);
  memcpy (e->b + e->n, s, n);
  e->n += n;
}

/* { hobject_t source } v1, the input of chunk_get_ref and chunk_put_ref */
static void
e_source_op (struct enc *e, const char *holder, int64_t pool)
{
  e->n = 0;
  e_le (e, 1, 1); e_le (e, 1, 1);
  size_t at = e->n;
  e_le (e, 0, 4);
  e_le (e, 4, 1); e_le (e, 3, 1);
  size_t hat = e->n;
  e_le (e, 0, 4);
  e_str (e, "");
  e_str (e, holder);
  e_le (e, (uint64_t) -2, 8);
  e_le (e, 0, 4);
  e_le (e, 0, 1);
  e_str (e, "");
  e_le (e, (uint64_t) pool, 8);
  put_le32 (e->b + hat, e->n - hat - 4);
  put_le32 (e->b + at, e->n - at - 4);
}

static int
cls_call (struct cas_rados *r, const char *obj, const char *method, const char *holder)
{
  struct enc e;
  int prval = 0;

  e_source_op (&e, holder, rados_ioctx_get_id (cas_rados_ioctx (r)));
  rados_write_op_t op = rados_create_write_op ();
  rados_write_op_exec (op, "cas", method, (const char *) e.b, e.n, &prval);
  int ret = rados_write_op_operate (op, cas_rados_ioctx (r), obj, NULL, 0);
  rados_release_write_op (op);
  return ret ? ret : prval;
}

Test (cls_cas, refs_are_a_multiset)
{
  struct cas_rados *r = connect_or_skip ();
  struct block *b = new_block ();

  /* One reference through objects.c, then two more by one holder
   * straight through cls_cas (no omap guard). */
  cr_assert_eq (cas_rados_block_put_ref (r, b->sha, "disk.a", b->frame, b->frame_len, NULL), 0);
  cr_assert_eq (cls_call (r, b->name, "chunk_get_ref", "disk.x"), 0);
  cr_assert_eq (cls_call (r, b->name, "chunk_get_ref", "disk.x"), 0);
  struct holders h = holders_of (r, b);
  cr_assert_eq (h.n, 3, "cls_cas counted %u references, not 3: is a holder's second reference "
                "still counted twice (a multiset)? objects.h says so", h.n);
  cr_assert (has_holder (&h, "disk.a") && has_holder (&h, "disk.x"));

  /* A holder holding none: ENOLINK.  Each put drops one. */
  cr_assert_eq (cls_call (r, b->name, "chunk_put_ref", "disk.nobody"), -ENOLINK);
  cr_assert_eq (cls_call (r, b->name, "chunk_put_ref", "disk.x"), 0);
  cr_assert_eq (cls_call (r, b->name, "chunk_put_ref", "disk.x"), 0);
  cr_assert_eq (cls_call (r, b->name, "chunk_put_ref", "disk.x"), -ENOLINK);
  cr_assert_eq (stat_size (r, b->name), (int64_t) b->frame_len);
  h = holders_of (r, b);
  cr_assert_eq (h.n, 1);
  cr_assert_str_eq (h.name[0], "disk.a");

  /* The last reference's put removes the object (data, xattrs, omap). */
  cr_assert_eq (cls_call (r, b->name, "chunk_put_ref", "disk.a"), 0);
  cr_assert_eq (stat_size (r, b->name), -ENOENT, "cls_cas kept an object without references");
  cr_assert_eq (cls_call (r, b->name, "chunk_get_ref", "disk.a"), -ENOENT);
  cr_assert_eq (stat_size (r, b->name), -ENOENT, "chunk_get_ref created an object");
  free (b);
  cas_rados_close (r);
}
