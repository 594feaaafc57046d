/* Unit tests for dio.c (batches of O_DIRECT transfers with libaio) and
 * the direct-I/O data path of store_dio.c: round trips in batches bigger
 * than a context's depth, padding, short reads at the end of the file,
 * the pool under concurrent threads, the refusal on tmpfs, and a store
 * opened with direct_io (partial writes, reopen buffered, corruption
 * detected on the direct path).
 *
 * Every test is skipped if the test directory's file system cannot do
 * direct I/O.
 */
#include <config.h>

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
#include <sys/vfs.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "format.h"
#include "storage/dio.h"
#include "util/util.h"

static char dir[256];
static char file[300];
static char last_error[1024];
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

static void
capture (bool error, const char *msg)
{
  if (error) {
    pthread_mutex_lock (&error_lock);
    snprintf (last_error, sizeof last_error, "%s", msg);
    pthread_mutex_unlock (&error_lock);
  }
}

static void
setup (void)
{
  const char *tmp = getenv ("TMPDIR");

  snprintf (dir, sizeof dir, "%s/casdisk-dio-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null (mkdtemp (dir));
  snprintf (file, sizeof file, "%s/data", dir);
  cas_set_log (capture);
  last_error[0] = '\0';
}

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

static void
teardown (void)
{
  nftw (dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite (dio, .init = setup, .fini = teardown);

static void
fill (uint8_t *p, size_t len, uint64_t seed)
{
  uint64_t x = seed * 0x9e3779b97f4a7c15 + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x;
  }
}

/* A file of SIZE bytes opened for direct I/O, or skip the test. */
static struct cas_dio *
open_file (off_t size)
{
  struct cas_dio *dio;
  const int fd = open (file, O_RDWR | O_CREAT, 0600);

  cr_assert_neq (fd, -1);
  cr_assert_eq (ftruncate (fd, size), 0);
  close (fd);
  if (cas_dio_open (file, false, &dio) == -1) {
    cr_assert_str_not_empty (last_error);
    cr_skip_test ("%s cannot do direct I/O: %s", dir, last_error);
  }
  cr_assert_leq (cas_dio_align (dio), CAS_GRANULE);
  return dio;
}

Test (dio, batch_round_trip_with_padding)
{
  enum { N = 150 };               /* more than a context's depth: several rounds */
  struct cas_dio *dio = open_file (N * 8192);
  struct cas_dio_op w[N], r[N];

  for (unsigned i = 0; i < N; i++) {
    const uint32_t len = 1 + (i * 2711) % 8000;   /* most not multiples of 512 */
    w[i] = (struct cas_dio_op) { cas_dio_alloc (8192), (uint64_t) i * 8192, len };
    r[i] = (struct cas_dio_op) { cas_dio_alloc (8192), (uint64_t) i * 8192, len };
    cr_assert (w[i].buf && r[i].buf);
    fill (w[i].buf, len, i);
    memset ((uint8_t *) w[i].buf + len, 0, round_up (len, CAS_GRANULE) - len);
  }
  cr_assert_eq (cas_dio_write (dio, w, N, "data file"), 0, "%s", last_error);
  cr_assert_eq (cas_dio_read (dio, r, N, "data file"), 0, "%s", last_error);
  for (unsigned i = 0; i < N; i++)
    cr_assert_eq (memcmp (w[i].buf, r[i].buf, w[i].len), 0, "transfer %u differs", i);

  /* The buffered view of the file agrees, padding zeroed up to the granule. */
  const int fd = open (file, O_RDONLY);
  uint8_t got[8192];
  for (unsigned i = 0; i < N; i += 7) {
    const size_t padded = round_up (w[i].len, CAS_GRANULE);
    cr_assert_eq (pread (fd, got, padded, w[i].off), (ssize_t) padded);
    cr_assert_eq (memcmp (got, w[i].buf, w[i].len), 0);
    for (size_t k = w[i].len; k < padded; k++)
      cr_assert_eq (got[k], 0, "padding byte %zu of transfer %u", k, i);
  }
  close (fd);
  for (unsigned i = 0; i < N; i++) {
    free (w[i].buf);
    free (r[i].buf);
  }
  cas_dio_close (dio);
}

Test (dio, short_read_at_end_of_file)
{
  struct cas_dio *dio = open_file (0);
  uint8_t data[1000];
  void *buf = cas_dio_alloc (1024);
  const int fd = open (file, O_WRONLY);

  fill (data, sizeof data, 3);
  cr_assert_eq (pwrite (fd, data, sizeof data, 0), (ssize_t) sizeof data);
  close (fd);
  /* A block that ends in the file's partial last granule reads whole. */
  struct cas_dio_op op = { buf, 512, 488 };
  cr_assert_eq (cas_dio_read (dio, &op, 1, "data file"), 0, "%s", last_error);
  cr_assert_eq (memcmp (buf, data + 512, 488), 0);
  /* One that would need bytes past the end is a truncated file. */
  op.len = 600;
  errno = 0;
  cr_assert_eq (cas_dio_read (dio, &op, 1, "data file"), -1);
  cr_assert_eq (errno, EIO);
  cr_assert (strstr (last_error, "truncated") && strstr (last_error, "offset 512"),
             "%s", last_error);
  free (buf);
  cas_dio_close (dio);
}

struct worker {
  struct cas_dio *dio;
  unsigned id;
  int failures;
};

static void *
work (void *opaque)
{
  struct worker *w = opaque;
  uint8_t want[4096];

  for (unsigned round = 0; round < 100; round++) {
    struct cas_dio_op ops[4];
    for (unsigned k = 0; k < 4; k++) {
      const unsigned slot = (w->id * 4 + k + round) % 64;
      ops[k] = (struct cas_dio_op) { cas_dio_alloc (4096), slot * 4096, 4096 };
    }
    if (cas_dio_read (w->dio, ops, 4, "data file") == -1)
      w->failures++;
    for (unsigned k = 0; k < 4; k++) {
      fill (want, sizeof want, ops[k].off / 4096);
      if (memcmp (ops[k].buf, want, 4096) != 0)
        w->failures++;
      free (ops[k].buf);
    }
  }
  return NULL;
}

Test (dio, pool_shared_by_threads)
{
  enum { THREADS = 20 };          /* more threads than contexts */
  struct cas_dio *dio = open_file (64 * 4096);
  struct cas_dio_op ops[64];
  pthread_t t[THREADS];
  struct worker w[THREADS];

  for (unsigned i = 0; i < 64; i++) {
    ops[i] = (struct cas_dio_op) { cas_dio_alloc (4096), i * 4096, 4096 };
    fill (ops[i].buf, 4096, i);
  }
  cr_assert_eq (cas_dio_write (dio, ops, 64, "data file"), 0, "%s", last_error);
  for (unsigned i = 0; i < 64; i++)
    free (ops[i].buf);
  for (unsigned i = 0; i < THREADS; i++) {
    w[i] = (struct worker) { dio, i, 0 };
    cr_assert_eq (pthread_create (&t[i], NULL, work, &w[i]), 0);
  }
  for (unsigned i = 0; i < THREADS; i++) {
    pthread_join (t[i], NULL);
    cr_assert_eq (w[i].failures, 0, "thread %u: %d failures (%s)", i, w[i].failures,
                  last_error);
  }
  cas_dio_close (dio);
}

Test (dio, tmpfs_is_refused_with_the_numbers)
{
  struct statfs sf;
  char shm[64] = "/dev/shm/casdisk-dio-XXXXXX", path[96];
  struct cas_dio *dio = NULL;

  if (statfs ("/dev/shm", &sf) == -1 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */)
    cr_skip_test ("no tmpfs at /dev/shm");
  cr_assert_not_null (mkdtemp (shm));
  snprintf (path, sizeof path, "%s/data", shm);
  close (open (path, O_RDWR | O_CREAT, 0600));
  errno = 0;
  const int r = cas_dio_open (path, false, &dio);
  const int saved = errno;
  unlink (path);
  rmdir (shm);
  cr_assert_eq (r, -1);
  cr_assert_eq (saved, EINVAL);
  cr_assert (strstr (last_error, "4096") && strstr (last_error, "512-byte granule"),
             "%s", last_error);
}

/* ---- a store with direct_io ---- */

#define SBS 65536u

static struct cas_store *
open_store (const char *st, bool direct)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.direct_io = direct;
  struct cas_store *s = cas_store_open (st, &o);
  if (s == NULL && direct && strstr (last_error, "direct-io"))
    cr_skip_test ("%s cannot do direct I/O: %s", dir, last_error);
  cr_assert_not_null (s, "open: %s", last_error);
  return s;
}

Test (dio, store_partial_writes_and_reopen)
{
  char st[300];
  const size_t size = 4u << 20;
  uint8_t *model = calloc (1, size), *got = malloc (size);
  struct cas_create_opts co = { .block_size = SBS, .compression_level = 1 };

  snprintf (st, sizeof st, "%s/store", dir);
  cr_assert_eq (cas_store_create (st, &co, "disk0", size), 0, "%s", last_error);
  struct cas_store *s = open_store (st, true);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  cr_assert_not_null (d);

  /* Random blocks, a compressible one, then small writes at odd places. */
  fill (model, 2u << 20, 1);
  for (size_t i = 0; i < SBS; i++)
    model[(2u << 20) + i] = "casdisk "[i % 8];
  cr_assert_eq (cas_disk_write (d, model, 3u << 20, 0), 0, "%s", last_error);
  for (unsigned i = 0; i < 200; i++) {
    const uint32_t n = 1 + (i * 977) % 9000;
    const uint64_t off = ((uint64_t) i * 104729) % (size - n);
    fill (model + off, n, 100 + i);
    cr_assert_eq (cas_disk_write (d, model + off, n, off), 0, "%s", last_error);
    cr_assert_eq (cas_disk_read (d, got, n + 100 < size - off ? n + 100 : n, off), 0);
    cr_assert_eq (memcmp (got, model + off, n + 100 < size - off ? n + 100 : n), 0,
                  "write %u (%u bytes at %" PRIu64 ")", i, n, off);
  }
  cr_assert_eq (cas_disk_read (d, got, size, 0), 0, "%s", last_error);
  cr_assert_eq (memcmp (got, model, size), 0);
  cr_assert_eq (cas_store_close (s), 0);

  /* The same bytes through the buffered path. */
  s = open_store (st, false);
  d = cas_disk_find (s, "disk0");
  memset (got, 0, size);
  cr_assert_eq (cas_disk_read (d, got, size, 0), 0, "%s", last_error);
  cr_assert_eq (memcmp (got, model, size), 0);
  cr_assert_eq (cas_store_close (s), 0);
  free (model);
  free (got);
}

Test (dio, corruption_is_detected_on_the_direct_path)
{
  char st[300], data[320];
  uint8_t *block = malloc (SBS), *got = malloc (SBS);
  struct cas_create_opts co = { .block_size = SBS, .compression_level = 0 };

  snprintf (st, sizeof st, "%s/store", dir);
  snprintf (data, sizeof data, "%s/data", st);
  cr_assert_eq (cas_store_create (st, &co, "disk0", 1u << 20), 0, "%s", last_error);
  struct cas_store *s = open_store (st, true);
  fill (block, SBS, 9);
  cr_assert_eq (cas_disk_write (cas_disk_find (s, "disk0"), block, SBS, 0), 0);
  cr_assert_eq (cas_store_close (s), 0);

  /* The only block is at offset 0: damage a byte of its second piece. */
  const int fd = open (data, O_RDWR);
  uint8_t x;
  cr_assert_eq (pread (fd, &x, 1, 4096 + 10), 1);
  x ^= 0x40;
  cr_assert_eq (pwrite (fd, &x, 1, 4096 + 10), 1);
  close (fd);

  s = open_store (st, true);
  struct cas_disk *d = cas_disk_find (s, "disk0");
  cr_assert_eq (cas_disk_read (d, got, 4096, 0), 0, "piece 0 is intact: %s", last_error);
  cr_assert_eq (memcmp (got, block, 4096), 0);
  errno = 0;
  cr_assert_eq (cas_disk_read (d, got, 4096, 4096), -1, "the damaged piece was returned");
  cr_assert_eq (errno, EIO);
  cr_assert (strstr (last_error, "checksum mismatch"), "%s", last_error);
  cr_assert_eq (cas_disk_read (d, got, SBS, 0), -1, "the damaged block was returned");
  cr_assert_eq (errno, EIO);
  cas_store_close (s);
  free (block);
  free (got);
}
