/* Engine micro-benchmark: drives the data path directly (no NBD, no
 * nbdkit), so that a profiler sees only the engine.  Used for the
 * instruction counts in docs/performance.md:
 *
 *   bench/engine [-b BS] [-l LEVEL] [-n OPS] [-s MiB] [-t DIR] [-w N] WORKLOAD
 *   valgrind --tool=callgrind --toggle-collect=measured bench/engine ...
 *
 * Workloads (each on a fresh store; "prefilled" = the region of -s MiB is
 * first written with 1 MiB writes of the same kind of data, not measured):
 *
 *   write4k      random 4 KiB writes of fresh random data, prefilled
 *   read4k       random 4 KiB reads, prefilled
 *   write1m      sequential 1 MiB writes of fresh random data
 *   write1mc     as write1m, compressible data (see compress64k)
 *   write64k     random 64 KiB (block-aligned) writes of fresh random data
 *   compress64k  as write64k, data that compresses to about 40% (each
 *                512-byte chunk: 40% random bytes, 60% zeroes, like fio's
 *                --buffer_compress_percentage=60)
 *   read4kc      random 4 KiB reads of a region of compressible data
 *   write4kc     random 4 KiB writes of compressible data into compressible blocks
 *   parts        the cost of each step alone on one block (SHA-256, SipHash-1-3,
 *                CRC-32C, zstd at several levels, decompression), natively;
 *                with -f FILE: zstd level versus stored size on FILE's blocks
 *   reopen       the time to open a store after a crash: a child process
 *                writes -n MiB of unique, compressible blocks spread
 *                evenly over a disk of -s MiB (default 100 GiB), flushes,
 *                writes 64 MiB more without flushing and exits without
 *                closing the store (as kill -9 would leave it); the parent
 *                times cas_store_open (journal replay, recount, free-space
 *                rebuild, hole punching, a fresh checkpoint)
 *   memory       -s MiB of unique blocks, each a block-number stamp and
 *                zeroes (unique but highly compressible, so the data file
 *                stays small), written with 1 MiB writes; reports resident
 *                memory per GiB of unique data
 *
 * -w N: the store's workers (threads preparing the blocks of one write,
 * the writer included; 0 or 1 = the writer alone; default: online CPUs).
 * -k sha256: key the store's blocks by SHA-256, as stores created before
 * format version 4 do (default: SipHash-1-3).
 *
 * Only measured() runs the timed operations; everything else (store
 * creation, data generation, prefill) is outside it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "casdisk.h"
#include "util/compress.h"
#include "util/crc32c.h"
#include "util/hash.h"

static uint64_t rng = 0x9e3779b97f4a7c15;

static uint64_t
next_rand (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void
fill_random (uint8_t *p, size_t n)
{
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t r = next_rand ();
    memcpy (p + i, &r, 8);
  }
}

/* 40% random bytes then 60% zeroes in each 512-byte chunk. */
static void
fill_compressible (uint8_t *p, size_t n)
{
  for (size_t c = 0; c < n; c += 512) {
    fill_random (p + c, 208);
    memset (p + c + 208, 0, 512 - 208);
  }
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process, all threads. */
static double
cpu_s (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
static double
machine_busy_s (void)
{
  FILE *f = fopen ("/proc/stat", "r");
  unsigned long long v[8] = { 0 };

  if (f == NULL)
    return 0;
  if (fscanf (f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
              &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
    v[0] = v[1] = v[2] = v[5] = v[6] = v[7] = 0;
  fclose (f);
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double) sysconf (_SC_CLK_TCK);
}

static long
rss_kib (void)
{
  FILE *f = fopen ("/proc/self/status", "r");
  char line[256];
  long kib = -1;

  if (f == NULL)
    return -1;
  while (fgets (line, sizeof line, f))
    if (sscanf (line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose (f);
  return kib;
}

enum op { OP_WRITE, OP_READ };

struct job {
  struct cas_disk *d;
  enum op op;
  uint32_t len;                 /* bytes per operation */
  uint64_t n;                   /* operations */
  const uint64_t *offsets;      /* n of them */
  uint8_t *bufs;                /* n * len for writes, len for reads */
};

/* The timed part (callgrind: --toggle-collect=measured). */
__attribute__((noinline)) static int
measured (const struct job *j)
{
  for (uint64_t i = 0; i < j->n; i++) {
    if (j->op == OP_WRITE) {
      if (cas_disk_write (j->d, j->bufs + i * j->len, j->len, j->offsets[i]) == -1)
        return -1;
    }
    else if (cas_disk_read (j->d, j->bufs, j->len, j->offsets[i]) == -1)
      return -1;
  }
  return 0;
}

static int
prefill (struct cas_disk *d, uint64_t bytes, bool compressible)
{
  uint8_t *buf = malloc (1 << 20);

  if (buf == NULL)
    return -1;
  for (uint64_t off = 0; off < bytes; off += 1 << 20) {
    if (compressible)
      fill_compressible (buf, 1 << 20);
    else
      fill_random (buf, 1 << 20);
    if (cas_disk_write (d, buf, 1 << 20, off) == -1) {
      free (buf);
      return -1;
    }
  }
  free (buf);
  return 0;
}

/* The memory workload: unique, compressible blocks; RSS per GiB unique. */
static int
memory (struct cas_store *s, struct cas_disk *d, uint64_t bytes)
{
  const uint32_t bs = cas_store_block_size (s);
  uint8_t *buf = calloc (1, 1 << 20);
  const long rss0 = rss_kib ();
  const double t0 = now_s ();
  struct cas_store_stats st;
  long rss_q = -1;              /* after a quarter of the data */
  const uint64_t quarter = bytes / 4 / (1 << 20) * (1 << 20);

  if (buf == NULL)
    return -1;
  for (uint64_t off = 0; off < bytes; off += 1 << 20) {
    for (uint32_t b = 0; b < (1u << 20); b += bs) {
      const uint64_t stamp = (off + b) / bs + 1;
      memcpy (buf + b, &stamp, 8);
    }
    if (cas_disk_write (d, buf, 1 << 20, off) == -1) {
      free (buf);
      return -1;
    }
    if (off % (UINT64_C(1) << 30) == 0 && cas_store_flush (s) == -1) {
      free (buf);
      return -1;
    }
    if (off + (1 << 20) == quarter) {
      if (cas_store_flush (s) == -1) {
        free (buf);
        return -1;
      }
      rss_q = rss_kib ();
    }
  }
  free (buf);
  if (cas_store_flush (s) == -1 || cas_store_stats (s, &st) == -1)
    return -1;
  const long rss1 = rss_kib ();
  const double gib = st.unique_bytes / (double) (UINT64_C(1) << 30);
  /* The growth over the last three quarters: what each further GiB costs,
   * without the fixed costs (libraries, zstd contexts, journal buffers).
   */
  const double marginal = rss_q < 0 ? 0 : (rss1 - rss_q) / 1024.0 / (gib * 3 / 4);
  printf ("memory: %.1f GiB unique in %" PRIu64 " blocks, %.1f s; RSS %ld -> %ld KiB: "
          "%.2f MiB per GiB unique, %.1f bytes per block; marginal %.2f MiB per GiB, "
          "%.1f bytes per block; data file %.1f MiB\n",
          gib, st.nblocks, now_s () - t0, rss0, rss1, (rss1 - rss0) / 1024.0 / gib,
          (rss1 - rss0) * 1024.0 / st.nblocks, marginal,
          marginal * 1048576.0 / ((UINT64_C(1) << 30) / bs), st.physical_allocated / 1048576.0);
  return 0;
}

/* Time FN over REPS calls: microseconds per call. */
#define TIME_US(reps, stmt) ({                    \
      const double t0_ = now_s ();                 \
      for (int i_ = 0; i_ < (reps); i_++) { stmt; } \
      (now_s () - t0_) / (reps) * 1e6; })

/* Compress FILE block by block at several levels: ratio and speed on real data. */
static int
parts_file (uint32_t bs, const char *path)
{
  FILE *f = fopen (path, "r");
  uint8_t *out = malloc (bs);
  uint8_t *all = NULL;
  size_t n = 0, cap = 0, got;
  const int levels[] = { -5, -3, -1, 1, 2, 3 };

  if (f == NULL || out == NULL) {
    perror (path);
    return -1;
  }
  for (;;) {
    if (n + bs > cap && (all = realloc (all, cap = 2 * cap + bs)) == NULL)
      return -1;
    if ((got = fread (all + n, 1, bs, f)) < bs)
      break;
    n += bs;
  }
  fclose (f);
  printf ("%s: %zu blocks of %" PRIu32 " bytes (all-zero blocks skipped)\n", path, n / bs, bs);
  for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
    uint64_t stored = 0, blocks = 0;
    const double t0 = now_s ();
    for (size_t off = 0; off < n; off += bs) {
      bool zero = true;
      for (uint32_t i = 0; i < bs && zero; i += 8)
        zero = memcmp (all + off + i, "\0\0\0\0\0\0\0\0", 8) == 0;
      if (zero)
        continue;
      const long c = cas_compress (out, bs - 512, all + off, bs, levels[k]);
      stored += c > 0 && (uint64_t) (c + 511) / 512 * 512 < bs ? (uint64_t) (c + 511) / 512 * 512 : bs;
      blocks++;
    }
    const double t = now_s () - t0;
    printf ("  level %3d: stored %.1f%% of %" PRIu64 " non-zero blocks, %.1f us per block, %.0f MiB/s\n",
            levels[k], 100.0 * stored / (blocks * (double) bs), blocks, t / blocks * 1e6,
            blocks * (double) bs / t / 1048576.0);
  }
  free (all);
  free (out);
  return 0;
}

static int
parts (uint32_t bs)
{
  uint8_t *rnd = malloc (bs), *cmp = malloc (bs), *out = malloc (bs), *back = malloc (bs);
  struct cas_hash h;
  const int reps = 2000;
  volatile uint32_t sink = 0;

  if (rnd == NULL || cmp == NULL || out == NULL || back == NULL)
    return -1;
  fill_random (rnd, bs);
  fill_compressible (cmp, bs);
  printf ("parts, per %" PRIu32 "-byte block (microseconds):\n", bs);
  static const uint8_t secret[CAS_KEY_SECRET_LEN] = { 1, 2, 3 };
  printf ("  sha256           %8.2f\n", TIME_US (reps, cas_hash_block (rnd, bs, &h)));
  printf ("  siphash-1-3      %8.2f\n", TIME_US (reps, sink += cas_siphash (secret, rnd, bs, 1, 3)));
  printf ("  crc32c           %8.2f\n", TIME_US (reps, sink += cas_crc32c (0, rnd, bs)));
  printf ("  crc32c 4 KiB     %8.2f\n", TIME_US (reps, sink += cas_crc32c (0, rnd, 4096)));
  printf ("  memcpy           %8.2f\n", TIME_US (reps, memcpy (out, rnd, bs); sink += out[7]));
  const int levels[] = { -5, -1, 1, 2, 3 };
  for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
    const int lv = levels[k];
    long cr = 0, cc = 0;
    const double tr = TIME_US (reps, cr = cas_compress (out, bs - 512, rnd, bs, lv));
    const double tc = TIME_US (reps, cc = cas_compress (out, bs - 512, cmp, bs, lv));
    const double td = TIME_US (reps, cas_decompress (back, bs, out, cc));
    printf ("  zstd %3d random  %8.2f (%ld bytes)  compressible %8.2f (%ld bytes)  "
            "decompress %8.2f\n", lv, tr, cr, tc, cc, td);
  }
  free (rnd);
  free (cmp);
  free (out);
  free (back);
  return 0;
}

static double
file_mib (const char *dir, const char *name)
{
  char path[4200];
  struct stat st;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return stat (path, &st) == 0 ? st.st_size / 1048576.0 : 0;
}

/* The child of the reopen workload: write, flush, write more, _exit. */
static void
reopen_child (const char *dir, uint64_t written_mib)
{
  struct cas_open_opts oo;
  cas_open_opts_default (&oo);
  struct cas_store *s = cas_store_open (dir, &oo);
  if (s == NULL || cas_store_start (s) == -1)
    _exit (1);
  struct cas_disk *d = cas_disk_find (s, "d");
  const uint32_t bs = cas_store_block_size (s);
  const uint64_t nblocks = cas_disk_size (d) / bs;
  const uint64_t nwrite = (written_mib << 20) / bs, extra = (UINT64_C(64) << 20) / bs;
  uint8_t *buf = calloc (1, bs);
  if (buf == NULL || nwrite == 0 || nwrite + extra > nblocks)
    _exit (1);
  const uint64_t stride = nblocks / (nwrite + extra);
  for (uint64_t i = 0; i < nwrite + extra; i++) {
    const uint64_t stamp = i + 1;
    memcpy (buf, &stamp, 8);
    if (cas_disk_write (d, buf, bs, i * stride * bs) == -1)
      _exit (1);
    if (i + 1 == nwrite && cas_store_flush (s) == -1)
      _exit (1);
  }
  _exit (0);                    /* no close: the store is left as after a crash */
}

static int
reopen (const char *dir, uint64_t virt_mib, uint64_t written_mib)
{
  const pid_t pid = fork ();
  int status;

  if (pid == -1) {
    perror ("fork");
    return -1;
  }
  if (pid == 0)
    reopen_child (dir, written_mib);
  if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    fprintf (stderr, "reopen: the writer failed\n");
    return -1;
  }
  const double ckpt = file_mib (dir, "checkpoint"), data = file_mib (dir, "data");
  double journal = 0;
  char name[64];
  for (int g = 0; g < 1000; g++) {
    snprintf (name, sizeof name, "journal.%d", g);
    journal += file_mib (dir, name);
  }
  struct cas_open_opts oo;
  cas_open_opts_default (&oo);
  const double t0 = now_s ();
  struct cas_store *s = cas_store_open (dir, &oo);
  const double t = now_s () - t0;
  if (s == NULL)
    return -1;
  printf ("reopen: virtual %.1f GiB, %" PRIu64 " MiB written and flushed + 64 MiB not flushed; "
          "before open: checkpoint %.1f MiB, journals %.1f MiB, data %.1f MiB; "
          "open after the crash took %.3f s, %.3f s per 100 GiB of virtual size\n",
          virt_mib / 1024.0, written_mib, ckpt, journal, data, t, t * 102400.0 / virt_mib);
  return cas_store_close (s);
}

/* The scratch directory, removed at exit whatever happened. */
static char scratch[4096];

static void
remove_scratch (void)
{
  char cmd[4200];

  if (scratch[0] == '\0')
    return;
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", scratch);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", scratch);
}

static void
usage (void)
{
  fprintf (stderr, "usage: bench/engine [-b BS] [-l LEVEL] [-n OPS] [-s MiB] [-t DIR] [-f FILE] "
           "[-w N] [-k sha256|siphash] write4k|read4k|write1m|write1mc|write64k|compress64k|read4kc|write4kc|parts|reopen|memory\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  struct cas_create_opts co;
  struct cas_open_opts oo;
  uint64_t nops = 2000, region_mib = 256;
  bool size_given = false;
  const char *tmpdir = "/var/tmp", *parts_file_path = NULL;
  int c;

  cas_create_opts_default (&co);
  cas_open_opts_default (&oo);
  while ((c = getopt (argc, argv, "b:f:k:l:n:s:t:w:")) != -1) {
    switch (c) {
    case 'b': co.block_size = strtoul (optarg, NULL, 0); break;
    case 'k':
      if (strcmp (optarg, "sha256") != 0 && strcmp (optarg, "siphash") != 0)
        usage ();
      co.sha256_keys = strcmp (optarg, "sha256") == 0;
      break;
    case 'f': parts_file_path = optarg; break;
    case 'l': co.compression_level = atoi (optarg); break;
    case 'n': nops = strtoull (optarg, NULL, 0); break;
    case 's': region_mib = strtoull (optarg, NULL, 0); size_given = true; break;
    case 't': tmpdir = optarg; break;
    case 'w': oo.workers = strtoul (optarg, NULL, 0); break;
    default: usage ();
    }
  }
  if (optind != argc - 1)
    usage ();
  const char *w = argv[optind];

  char dir[4096];
  snprintf (dir, sizeof dir, "%s/casdisk-engine-XXXXXX", tmpdir);
  if (mkdtemp (dir) == NULL) {
    perror ("mkdtemp");
    return 1;
  }
  snprintf (scratch, sizeof scratch, "%s", dir);
  atexit (remove_scratch);      /* not run by the reopen child's _exit */
  if (strcmp (w, "reopen") == 0 && !size_given)
    region_mib = 102400;
  const uint64_t region = region_mib << 20;
  const bool seq1m = strcmp (w, "write1m") == 0 || strcmp (w, "write1mc") == 0;
  const uint64_t disk_size = seq1m ? region + (nops << 20) : region;
  strcat (dir, "/s");
  if (cas_store_create (dir, &co, "d", disk_size) == -1)
    return 1;
  struct cas_store *s = NULL;
  struct cas_disk *d = NULL;
  int r = 0;

  /* reopen forks its writer: no thread may exist yet. */
  if (strcmp (w, "reopen") != 0) {
    s = cas_store_open (dir, &oo);
    if (s == NULL || cas_store_start (s) == -1)
      return 1;
    d = cas_disk_find (s, "d");
  }
  if (strcmp (w, "reopen") == 0)
    r = reopen (dir, region_mib, nops);
  else if (strcmp (w, "memory") == 0)
    r = memory (s, d, region);
  else if (strcmp (w, "parts") == 0)
    r = parts_file_path ? parts_file (co.block_size, parts_file_path) : parts (co.block_size);
  else {
    struct job j = { .d = d, .n = nops, .op = OP_WRITE };
    bool compressible = false, fill = true;
    const uint32_t bs = co.block_size;

    if (strcmp (w, "write4k") == 0)
      j.len = 4096;
    else if (strcmp (w, "write4kc") == 0)
      j.len = 4096, compressible = true;
    else if (strcmp (w, "read4k") == 0)
      j.len = 4096, j.op = OP_READ;
    else if (strcmp (w, "read4kc") == 0)
      j.len = 4096, j.op = OP_READ, compressible = true;
    else if (strcmp (w, "write1m") == 0)
      j.len = 1 << 20, fill = false;
    else if (strcmp (w, "write1mc") == 0)
      j.len = 1 << 20, fill = false, compressible = true;
    else if (strcmp (w, "write64k") == 0)
      j.len = bs;
    else if (strcmp (w, "compress64k") == 0)
      j.len = bs, compressible = true;
    else
      usage ();

    uint64_t *offs = malloc (nops * sizeof *offs);
    j.bufs = malloc (j.op == OP_WRITE ? nops * j.len : j.len);
    if (offs == NULL || j.bufs == NULL) {
      perror ("malloc");
      return 1;
    }
    for (uint64_t i = 0; i < nops; i++) {
      if (j.len == (1u << 20))
        offs[i] = region + (i << 20);
      else
        offs[i] = next_rand () % (region / j.len) * j.len;
      if (j.op == OP_WRITE) {
        if (compressible)
          fill_compressible (j.bufs + i * j.len, j.len);
        else
          fill_random (j.bufs + i * j.len, j.len);
      }
    }
    j.offsets = offs;
    if (fill && prefill (d, region, compressible) == -1)
      return 1;
    if (cas_store_flush (s) == -1)
      return 1;
    const double t0 = now_s (), cpu0 = cpu_s (), m0 = machine_busy_s ();
    r = measured (&j);
    const double t = now_s () - t0, cpu = cpu_s () - cpu0, m = machine_busy_s () - m0;
    /* Our CPU per operation, and how many cores the rest of the machine
     * kept busy meanwhile (the helpers can only use idle ones).
     */
    if (r == 0)
      printf ("%s: %" PRIu64 " ops of %" PRIu32 " bytes in %.3f s: %.1f us/op, %.1f MiB/s, "
              "cpu %.1f us/op, others busy %.2f cores\n",
              w, nops, j.len, t, t / nops * 1e6, nops * (double) j.len / t / 1048576.0,
              cpu / nops * 1e6, m > cpu ? (m - cpu) / t : 0.0);
    free (offs);
    free (j.bufs);
  }
  if (s && cas_store_close (s) == -1)
    r = -1;
  return r == 0 ? 0 : 1;
}
