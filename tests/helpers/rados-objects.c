/* rados-objects: drives lib/remote/objects.c against a running Ceph
 * cluster, for tests/test-rados-objects.sh (faults) and for measuring
 * (docs/remote-objects.md).
 *
 *   rados-objects [-c CONF] [-p POOL] [-t TIMEOUT] connect
 *       open the pool: prints how long it took to succeed or fail
 *   rados-objects [...] put-ref [-S SEED] [-H HOLDER] [-b N]
 *       put_ref of the 64 KiB block made from SEED (default: a new one)
 *       by HOLDER (default disk.helper); -b N: N blocks SEED.0 .. SEED.N-1
 *       in one batch, waited for together
 *   rados-objects [...] read [-S SEED]
 *       read the block made from SEED back and compare it
 *   rados-objects [...] put [-S SEED] [-H HOLDER]
 *       drop HOLDER's reference to it
 *   rados-objects [...] fill [-n MAX]
 *       put_ref new blocks (by HOLDER) until one fails, at most MAX
 *       (default 100000) or 300 s; prints how many were stored and how
 *       the failing put_ref ended; then takes a reference to the first
 *       block (get_ref by HOLDER.3) and drops its three (HOLDER.2's,
 *       HOLDER's, HOLDER.3's), printing how each ended; exit 0 when the
 *       fill ended in a failure
 *   rados-objects [...] bench [-n COUNT]
 *       COUNT (default 500) blocks of 64 KiB: median and p99 latency of
 *       put_ref (new), put_ref (existing), get_ref, read, put (a reference
 *       stays), put (the last: removed), and batched put_ref (16 in
 *       flight); prints a table
 *
 * One line on stdout per operation: "OP: ok in T s" or "OP: failed after
 * T s: ENAME (message)"; exit status 0 if every operation succeeded, 1 if
 * one failed, 2 on bad usage.  CONF defaults to $CEPH_CONF, POOL to
 * $CEPH_POOL or "casdisk", TIMEOUT to 30 s.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "casdisk.h"
#include "util/hash.h"
#include "util/log.h"
#include "remote/objects.h"

#define BLK 65536u

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

struct block {
  uint8_t plain[BLK];
  uint8_t sha[32];
  uint8_t frame[CAS_RADOS_HDR_LEN + BLK];
  uint32_t frame_len;
};

/* The block made from SEED (a string): deterministic bytes. */
static int
make_block (struct block *b, const char *seed)
{
  uint64_t s = 1469598103934665603ull;
  struct cas_hash h;

  for (const char *p = seed; *p; p++)
    s = (s ^ (uint8_t) *p) * 1099511628211ull;
  for (size_t i = 0; i < BLK; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    b->plain[i] = s >> 56;
  }
  if (cas_hash_block (b->plain, BLK, &h) == -1)
    return -1;
  memcpy (b->sha, h.b, 32);
  return cas_rados_frame (0, BLK, b->plain, BLK, b->frame, sizeof b->frame, &b->frame_len);
}

static int
report (const char *op, int rc, double t0)
{
  double dt = now () - t0;
  if (rc == 0)
    printf ("%s: ok in %.2f s\n", op, dt);
  else {
    const char *en = strerrorname_np (errno);
    printf ("%s: failed after %.2f s: %s (%s)\n", op, dt, en ? en : "?", cas_last_error ());
  }
  fflush (stdout);
  return rc == 0 ? 0 : 1;
}

/* ---- bench ---- */

static double *lat;

static void
row (const char *label, int n, double total)
{
  qsort (lat, n, sizeof *lat, cmp_double);
  int p99 = (int) (n * 0.99) < n ? (int) (n * 0.99) : n - 1;
  printf ("| %-40s | %5d | %9.0f | %9.0f | %7.0f |\n", label, n, lat[n / 2] * 1e6, lat[p99] * 1e6,
          n / total);
  fflush (stdout);
}

static int
bench (struct cas_rados *r, int count)
{
  struct block *b = malloc ((size_t) count * sizeof *b);
  static uint8_t buf[BLK];
  char seed[64];
  struct cas_rados_frame_info info;
  bool created;
  double t0, t, total;
  int i;

  if (!b || !(lat = malloc ((size_t) count * sizeof *lat))) {
    perror ("malloc");
    return 1;
  }
  for (i = 0; i < count; i++) {
    snprintf (seed, sizeof seed, "bench.%ld.%ld.%d", (long) getpid (), (long) time (NULL), i);
    if (make_block (&b[i], seed) == -1)
      return 1;
  }
  printf ("rados-objects bench: pool %s, %d blocks of %u bytes (frames of %u bytes), one client, "
          "sequential\n\n", cas_rados_pool (r), count, BLK, CAS_RADOS_HDR_LEN + BLK);
  printf ("| %-40s | %5s | %9s | %9s | %7s |\n", "operation", "n", "median us", "p99 us", "ops/s");
  printf ("|%s|------:|----------:|----------:|--------:|\n",
          "------------------------------------------");

#define TIMED(label, call, check)                                       \
  do {                                                                  \
    total = now ();                                                     \
    for (i = 0; i < count; i++) {                                       \
      t = now ();                                                       \
      if ((call) == -1 || !(check)) {                                   \
        printf ("%s: op %d failed: %s\n", label, i, cas_last_error ()); \
        return 1;                                                       \
      }                                                                 \
      lat[i] = now () - t;                                              \
    }                                                                   \
    row (label, count, now () - total);                                 \
  } while (0)

  TIMED ("put_ref, new object (created)",
         cas_rados_block_put_ref (r, b[i].sha, "disk.bench-a", b[i].frame, b[i].frame_len, &created),
         created);
  TIMED ("put_ref, existing object (data sent)",
         cas_rados_block_put_ref (r, b[i].sha, "disk.bench-b", b[i].frame, b[i].frame_len, &created),
         !created);
  TIMED ("get_ref, existing object (no data)",
         cas_rados_block_get_ref (r, b[i].sha, "disk.bench-c"), true);
  TIMED ("read (whole frame, checked)",
         cas_rados_block_read (r, b[i].sha, buf, sizeof buf, &info),
         info.stored_len == BLK && memcmp (buf, b[i].plain, 64) == 0);
  bool removed;
  TIMED ("put, a reference stays",
         cas_rados_block_put (r, b[i].sha, "disk.bench-c", &removed), !removed);
  for (i = 0; i < count; i++)
    if (cas_rados_block_put (r, b[i].sha, "disk.bench-b", &removed) == -1 || removed)
      return 1;
  TIMED ("put, the last reference (removed)",
         cas_rados_block_put (r, b[i].sha, "disk.bench-a", &removed), removed);

  /* Batched: 16 in flight; per-op figures are the total over the count. */
  struct cas_rados_batch *bt = cas_rados_batch_new (r, 16);
  if (!bt)
    return 1;
  t0 = now ();
  for (i = 0; i < count; i++)
    if (cas_rados_batch_put_ref (bt, b[i].sha, "disk.bench-a", b[i].frame, b[i].frame_len, NULL) == -1)
      return 1;
  if (cas_rados_batch_wait (bt, NULL) == -1)
    return 1;
  total = now () - t0;
  cas_rados_batch_free (bt);
  printf ("| %-40s | %5d | %9s | %9s | %7.0f |\n", "put_ref, new, batch of 16 in flight", count,
          "-", "-", count / total);
  for (i = 0; i < count; i++)
    if (cas_rados_block_put (r, b[i].sha, "disk.bench-a", &removed) == -1 || !removed)
      return 1;
  free (b);
  free (lat);
  return 0;
}

/* ---- fill ---- */

static int
fill_pool (struct cas_rados *r, const char *seed, const char *holder, int max)
{
  static struct block b;
  char s[128], holder2[CAS_RADOS_HOLDER_MAX + 1];
  double start = now (), t0 = start;
  int i, rc = 0;
  bool removed;

  snprintf (holder2, sizeof holder2, "%.190s.2", holder);
  for (i = 0; i < max && now () - start < 300; i++) {
    snprintf (s, sizeof s, "%s.%d", seed, i);
    if (make_block (&b, s) == -1)
      return 2;
    t0 = now ();
    if ((rc = cas_rados_block_put_ref (r, b.sha, holder, b.frame, b.frame_len, NULL)) == -1)
      break;
    /* The first block has a second holder, for the puts below. */
    if (i == 0 && cas_rados_block_put_ref (r, b.sha, holder2, b.frame, b.frame_len, NULL) == -1)
      return 2;
  }
  printf ("fill: %d blocks stored in %.1f s\n", i, now () - start);
  if (rc == 0) {
    printf ("fill: no put_ref failed\n");
    return 1;
  }
  report ("put-ref", -1, t0);

  /* A reference without data, with the pool full. */
  char holder3[CAS_RADOS_HOLDER_MAX + 1];
  snprintf (s, sizeof s, "%s.0", seed);
  if (make_block (&b, s) == -1)
    return 2;
  snprintf (holder3, sizeof holder3, "%.190s.3", holder);
  t0 = now ();
  report ("get-ref", cas_rados_block_get_ref (r, b.sha, holder3), t0);

  /* Dropping references with the pool full: two that leave the block,
   * then the last one. */
  const char *holders[3] = { holder2, holder, holder3 };
  for (int k = 0; k < 3; k++) {
    removed = false;
    t0 = now ();
    rc = cas_rados_block_put (r, b.sha, holders[k], &removed);
    if (rc == 0)
      printf ("removed: %s\n", removed ? "yes" : "no");
    report (k < 2 ? "put (a reference stays)" : "put (the last reference)", rc, t0);
  }
  return 0;
}

static void
usage (void)
{
  fprintf (stderr, "usage: rados-objects [-c CONF] [-p POOL] [-t TIMEOUT] "
           "connect | put-ref [-S SEED] [-H HOLDER] [-b N] | read [-S SEED] | "
           "put [-S SEED] [-H HOLDER] | fill [-n MAX] | bench [-n COUNT]\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  struct cas_rados_opts o = { .pool = getenv ("CEPH_POOL") };
  const char *seed = NULL, *holder = "disk.helper";
  char seedbuf[64];
  int c, batch = 0, count = 500;

  while ((c = getopt (argc, argv, "+c:p:t:")) != -1) {
    switch (c) {
    case 'c': o.conf = optarg; break;
    case 'p': o.pool = optarg; break;
    case 't': o.op_timeout_s = atoi (optarg); break;
    default: usage ();
    }
  }
  if (optind >= argc)
    usage ();
  const char *cmd = argv[optind];
  optind++;
  while ((c = getopt (argc, argv, "S:H:b:n:")) != -1) {
    switch (c) {
    case 'S': seed = optarg; break;
    case 'H': holder = optarg; break;
    case 'b': batch = atoi (optarg); break;
    case 'n': count = atoi (optarg); break;
    default: usage ();
    }
  }
  if (!o.pool)
    o.pool = "casdisk";
  if (!seed) {
    snprintf (seedbuf, sizeof seedbuf, "helper.%ld.%ld", (long) getpid (), (long) time (NULL));
    seed = seedbuf;
  }
  if (count < 1 || batch < 0)
    usage ();

  struct cas_rados *r;
  double t0 = now ();
  if (cas_rados_open (&o, &r) == -1)
    return report ("connect", -1, t0);
  if (strcmp (cmd, "connect") == 0) {
    report ("connect", 0, t0);
    cas_rados_close (r);
    return 0;
  }
  if (strcmp (cmd, "fill") == 0) {
    int rc = fill_pool (r, seed, holder, count == 500 ? 100000 : count);
    cas_rados_close (r);
    return rc;
  }
  if (strcmp (cmd, "bench") == 0) {
    int rc = bench (r, count);
    cas_rados_close (r);
    return rc;
  }

  static struct block b;
  int rc;
  if (strcmp (cmd, "put-ref") == 0 && batch > 0) {
    struct cas_rados_batch *bt = cas_rados_batch_new (r, 0);
    unsigned failed = 0;
    char s[128];
    if (!bt)
      return 1;
    t0 = now ();
    rc = 0;
    for (int i = 0; i < batch && rc == 0; i++) {
      snprintf (s, sizeof s, "%s.%d", seed, i);
      rc = make_block (&b, s);
      if (rc == 0)
        rc = cas_rados_batch_put_ref (bt, b.sha, holder, b.frame, b.frame_len, NULL);
    }
    if (rc == 0) {
      rc = cas_rados_batch_wait (bt, &failed);
      if (rc == -1)
        printf ("batch: %u of %d failed\n", failed, batch);
    }
    cas_rados_batch_free (bt);
    rc = report ("batch put-ref", rc, t0);
  }
  else if (make_block (&b, seed) == -1)
    rc = 1;
  else if (strcmp (cmd, "put-ref") == 0) {
    bool created = false;
    t0 = now ();
    rc = cas_rados_block_put_ref (r, b.sha, holder, b.frame, b.frame_len, &created);
    if (rc == 0)
      printf ("created: %s\n", created ? "yes" : "no");
    rc = report ("put-ref", rc, t0);
  }
  else if (strcmp (cmd, "read") == 0) {
    static uint8_t buf[BLK];
    struct cas_rados_frame_info info;
    t0 = now ();
    rc = cas_rados_block_read (r, b.sha, buf, sizeof buf, &info);
    if (rc == 0 && (info.stored_len != BLK || memcmp (buf, b.plain, BLK) != 0)) {
      errno = EIO;
      cas_error ("the block read back differs");
      rc = -1;
    }
    rc = report ("read", rc, t0);
  }
  else if (strcmp (cmd, "put") == 0) {
    bool removed = false;
    t0 = now ();
    rc = cas_rados_block_put (r, b.sha, holder, &removed);
    if (rc == 0)
      printf ("removed: %s\n", removed ? "yes" : "no");
    rc = report ("put", rc, t0);
  }
  else
    usage ();
  cas_rados_close (r);
  return rc;
}
