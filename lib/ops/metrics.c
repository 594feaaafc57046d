/* Live figures of a running store, for `casdisk status` and for
 * Prometheus: one snapshot, rendered two ways from one table, so that the
 * status keys and the metric names cannot drift apart.
 *
 * A snapshot costs what `casdisk info` costs (cas_store_stats walks the
 * index and every disk's map, lock-free) plus a few atomic loads: fine
 * for an operator's request or a file rewritten every few seconds, not
 * for the data path, which only bumps counters (counters.h).
 *
 * Names: a store-wide status key KEY is the metric casdisk_KEY (with
 * _total for counters), without labels.  A disk's space figure KEY is
 * casdisk_disk_KEY{disk="NAME"}.  Requests are
 * casdisk_requests_total{disk="NAME",op="read"} (and request_bytes_total,
 * request_errors_total); status shows them per disk as read_requests,
 * read_bytes, read_errors ... and summed over the disks for the store.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meta/state.h"
#include "ops/metrics.h"
#include "util/log.h"
#include "util/util.h"

/* The store-wide part of a snapshot. */
struct live {
  struct cas_store_stats st;
  uint64_t uptime_seconds;
  uint64_t block_size;
  uint64_t gc_delay_seconds;
  uint64_t compact_after_percent;
  uint64_t recycle_rate;
  uint64_t compactions, compact_moving;
  uint64_t scrub_running, scrub_done, scrub_total, scrubs, scrub_corrupted;
  uint64_t io_failed;
  uint64_t journal_generation;
  uint64_t errors;              /* failed requests, all disks and operations */
  struct cas_op_stats ops[CAS_OP_COUNT];   /* summed over the disks */
  double dedup_ratio, compression_ratio;
};

/* One disk's part. */
struct disk_live {
  const char *name;
  struct cas_disk_stats ds;
  struct cas_op_stats ops[CAS_OP_COUNT];
  double dedup_ratio, compression_ratio;
};

enum kind { GAUGE, COUNTER };

struct figure {
  const char *key;              /* status key; metric casdisk_[disk_]KEY[_total] */
  enum kind kind;
  const char *help;
  size_t off;                   /* of a uint64_t, or of a double if ratio */
  bool ratio;
};

#define U(key, kind, field, help) { key, kind, help, offsetof (struct live, field), false }
#define R(key, field, help) { key, GAUGE, help, offsetof (struct live, field), true }
static const struct figure store_figures[] = {
  U ("uptime_seconds", GAUGE, uptime_seconds, "Seconds since the store was opened."),
  U ("disks", GAUGE, st.ndisks, "Disks in the store."),
  U ("block_size_bytes", GAUGE, block_size, "Block size (the dedup unit) of the store."),
  U ("logical_bytes", GAUGE, st.logical_bytes, "Bytes of non-zero blocks mapped by all disks."),
  U ("unique_bytes", GAUGE, st.unique_bytes, "Bytes of the distinct referenced blocks."),
  U ("stored_bytes", GAUGE, st.stored_bytes, "Stored (compressed) bytes of the referenced blocks."),
  R ("dedup_ratio", dedup_ratio, "Logical bytes per unique byte."),
  R ("compression_ratio", compression_ratio, "Unique bytes per stored byte."),
  U ("blocks", GAUGE, st.nblocks, "Blocks in the pool, referenced or not."),
  U ("dead_blocks", GAUGE, st.dead_blocks, "Unreferenced blocks waiting for the delayed GC."),
  U ("dead_bytes", GAUGE, st.dead_bytes, "Stored bytes of the dead blocks."),
  U ("free_bytes", GAUGE, st.free_bytes, "Reusable space inside the data file."),
  U ("pending_bytes", GAUGE, st.pending_bytes, "Freed space waiting for a flush and a grace period."),
  U ("data_file_end_bytes", GAUGE, st.data_file_end, "End of the space in use in the data file."),
  U ("physical_allocated_bytes", GAUGE, st.physical_allocated, "Bytes allocated by the store's files."),
  U ("physical_apparent_bytes", GAUGE, st.physical_apparent, "Apparent size of the store's files."),
  U ("space_in_use_bytes", GAUGE, st.space_in_use, "Data file space holding blocks (live or dead)."),
  U ("space_junk_bytes", GAUGE, st.space_junk, "Data file space freed, not erased yet."),
  U ("space_erased_bytes", GAUGE, st.space_erased, "Data file space erased, waiting for a flush."),
  U ("space_free_bytes", GAUGE, st.space_free, "Data file space available."),
  U ("space_moving_bytes", GAUGE, st.space_moving, "Destinations of recycler moves in progress."),
  U ("journal_bytes", GAUGE, st.journal_bytes, "Size of the journal files."),
  U ("journal_generation", GAUGE, journal_generation, "Generation of the current journal (checkpoints written)."),
  U ("quarantined_blocks", GAUGE, st.quarantined, "Blocks that failed verification."),
  U ("errors", COUNTER, errors, "Requests that failed, all disks and operations."),
  U ("io_failed", GAUGE, io_failed, "1 if a data-file sync failed: the store writes nothing more."),
  U ("gc_delay_seconds", GAUGE, gc_delay_seconds, "Seconds a dead block waits before it is freed."),
  U ("gc_freed_blocks", COUNTER, st.gc_freed_blocks, "Blocks freed by the delayed GC since open."),
  U ("compact_after_percent", GAUGE, compact_after_percent, "Free share of the data file that starts compaction."),
  U ("recycle_rate_bytes", GAUGE, recycle_rate, "Bytes per second the recycler may move."),
  U ("recycled_bytes", COUNTER, st.recycled_bytes, "Bytes moved by the recycler since open."),
  U ("erased_bytes", COUNTER, st.erased_bytes, "Bytes erased by the recycler since open."),
  U ("small_write_bytes", GAUGE, st.small_write_bytes, "Bytes of small writes in the log, not merged into blocks yet."),
  U ("small_write_blocks", GAUGE, st.small_write_blocks, "Blocks with small writes not merged yet."),
  U ("small_write_merges", COUNTER, st.small_write_merges, "Blocks rebuilt from small writes since open."),
  U ("writebacks", COUNTER, st.writebacks, "Early writebacks of the data file started since open."),
  U ("compactions", COUNTER, compactions, "Compactions run on request (casdisk compact --now)."),
  U ("compaction_moved_bytes", GAUGE, compact_moving, "Bytes moved by the last or running requested compaction."),
  U ("scrub_running", GAUGE, scrub_running, "1 while an online scrub runs."),
  U ("scrub_done_blocks", GAUGE, scrub_done, "Blocks verified by the running or last scrub."),
  U ("scrub_total_blocks", GAUGE, scrub_total, "Blocks the running or last scrub verifies."),
  U ("scrubs", COUNTER, scrubs, "Online scrubs completed since open."),
  U ("scrub_corrupted_blocks", COUNTER, scrub_corrupted, "Corrupted blocks found by online scrubs."),
};
#undef U
#undef R

#define D(key, field, help) { key, GAUGE, help, offsetof (struct disk_live, field), false }
static const struct figure disk_figures[] = {
  D ("virtual_size_bytes", ds.virtual_size, "Virtual size of the disk."),
  D ("logical_bytes", ds.logical_bytes, "Bytes of non-zero blocks the disk maps."),
  D ("unique_bytes", ds.unique_bytes, "Bytes of the distinct blocks the disk maps."),
  D ("stored_bytes", ds.stored_bytes, "Stored bytes of those blocks."),
  D ("exclusive_bytes", ds.exclusive_bytes, "Stored bytes of blocks only this disk maps."),
  { "dedup_ratio", GAUGE, "Logical bytes per unique byte of the disk.",
    offsetof (struct disk_live, dedup_ratio), true },
  { "compression_ratio", GAUGE, "Unique bytes per stored byte of the disk.",
    offsetof (struct disk_live, compression_ratio), true },
};
#undef D

static const struct {
  const char *suffix;           /* status: read_SUFFIX */
  const char *metric;           /* casdisk_METRIC{disk,op} */
  const char *help;
  size_t off;
} op_figures[] = {
  { "requests", "requests_total", "Requests received, by disk and operation (zero includes trim).",
    offsetof (struct cas_op_stats, requests) },
  { "bytes", "request_bytes_total", "Bytes of successful requests, by disk and operation.",
    offsetof (struct cas_op_stats, bytes) },
  { "errors", "request_errors_total", "Requests that failed, by disk and operation.",
    offsetof (struct cas_op_stats, errors) },
};

#define ARRAY_SIZE(a) (sizeof (a) / sizeof *(a))

static double
ratio (uint64_t a, uint64_t b)
{
  return b ? (double) a / b : 1.0;
}

static uint64_t
u64_at (const void *base, size_t off)
{
  uint64_t v;
  memcpy (&v, (const char *) base + off, sizeof v);
  return v;
}

static double
double_at (const void *base, size_t off)
{
  double v;
  memcpy (&v, (const char *) base + off, sizeof v);
  return v;
}

/* "123" or "1.2345" */
static void
format_value (const struct figure *f, const void *base, char *buf, size_t len)
{
  if (f->ratio)
    snprintf (buf, len, "%.4f", double_at (base, f->off));
  else
    snprintf (buf, len, "%" PRIu64, u64_at (base, f->off));
}

/* Take the snapshot.  *DISKS is allocated (free it). */
static int
snapshot (struct cas_store *s, struct live *l, struct disk_live **disks, size_t *ndisks)
{
  const size_t n = cas_store_ndisks (s);
  struct disk_live *dl = calloc (n ? n : 1, sizeof *dl);

  memset (l, 0, sizeof *l);
  if (dl == NULL) {
    cas_error ("status: %m");
    return -1;
  }
  if (cas_store_stats (s, &l->st) == -1) {
    free (dl);
    return -1;
  }
  size_t i = 0;                 /* disks seen: deleted slots are skipped */
  for (size_t k = 0; k < n; k++) {
    struct cas_disk *d = cas_store_disk (s, k);
    if (d == NULL)
      continue;
    dl[i].name = cas_disk_name (d);
    if (cas_disk_stats (d, &dl[i].ds) == -1) {
      free (dl);
      return -1;
    }
    dl[i].dedup_ratio = ratio (dl[i].ds.logical_bytes, dl[i].ds.unique_bytes);
    dl[i].compression_ratio = ratio (dl[i].ds.unique_bytes, dl[i].ds.stored_bytes);
    cas_disk_op_stats (d, dl[i].ops);
    for (int op = 0; op < CAS_OP_COUNT; op++) {
      l->ops[op].requests += dl[i].ops[op].requests;
      l->ops[op].bytes += dl[i].ops[op].bytes;
      l->ops[op].errors += dl[i].ops[op].errors;
      l->errors += dl[i].ops[op].errors;
    }
    i++;
  }
  l->uptime_seconds = (cas_now_ns () - s->opened_ns) / 1000000000;
  l->block_size = s->block_size;
  l->gc_delay_seconds = s->opts.gc_delay;
  l->compact_after_percent = s->opts.compact_after;
  l->recycle_rate = s->opts.recycle_rate;
  l->compactions = __atomic_load_n (&s->compactions, __ATOMIC_RELAXED);
  l->compact_moving = __atomic_load_n (&s->compact_moving, __ATOMIC_RELAXED);
  l->scrub_running = __atomic_load_n (&s->scrub_running, __ATOMIC_RELAXED);
  l->scrub_done = __atomic_load_n (&s->scrub_done, __ATOMIC_RELAXED);
  l->scrub_total = __atomic_load_n (&s->scrub_total, __ATOMIC_RELAXED);
  l->scrubs = __atomic_load_n (&s->scrubs, __ATOMIC_RELAXED);
  l->scrub_corrupted = __atomic_load_n (&s->scrub_corrupted, __ATOMIC_RELAXED);
  l->io_failed = __atomic_load_n (&s->io_failed, __ATOMIC_ACQUIRE);
  {
    SCOPED_LOCK (fl, &s->flush_lock);
    l->journal_generation = s->gen;
  }
  l->dedup_ratio = ratio (l->st.logical_bytes, l->st.unique_bytes);
  l->compression_ratio = ratio (l->st.unique_bytes, l->st.stored_bytes);
  *disks = dl;
  *ndisks = i;
  return 0;
}

static int
render_status (const struct live *l, const struct disk_live *dl, size_t n,
               int (*line) (void *, const char *), void *opaque)
{
  char buf[512], v[64];

  for (size_t i = 0; i < ARRAY_SIZE (store_figures); i++) {
    format_value (&store_figures[i], l, v, sizeof v);
    snprintf (buf, sizeof buf, "store %s %s", store_figures[i].key, v);
    if (line (opaque, buf) == -1)
      return -1;
  }
  for (int op = 0; op < CAS_OP_COUNT; op++)
    for (size_t k = 0; k < ARRAY_SIZE (op_figures); k++) {
      snprintf (buf, sizeof buf, "store %s_%s %" PRIu64, cas_op_name (op),
                op_figures[k].suffix, u64_at (&l->ops[op], op_figures[k].off));
      if (line (opaque, buf) == -1)
        return -1;
    }
  for (size_t d = 0; d < n; d++) {
    for (size_t i = 0; i < ARRAY_SIZE (disk_figures); i++) {
      format_value (&disk_figures[i], &dl[d], v, sizeof v);
      snprintf (buf, sizeof buf, "disk %s %s %s", dl[d].name, disk_figures[i].key, v);
      if (line (opaque, buf) == -1)
        return -1;
    }
    for (int op = 0; op < CAS_OP_COUNT; op++)
      for (size_t k = 0; k < ARRAY_SIZE (op_figures); k++) {
        snprintf (buf, sizeof buf, "disk %s %s_%s %" PRIu64, dl[d].name, cas_op_name (op),
                  op_figures[k].suffix, u64_at (&dl[d].ops[op], op_figures[k].off));
        if (line (opaque, buf) == -1)
          return -1;
      }
  }
  return 0;
}

/* "# HELP NAME TEXT" and "# TYPE NAME KIND" */
static int
family (const char *name, enum kind kind, const char *help,
        int (*line) (void *, const char *), void *opaque)
{
  char buf[512];

  snprintf (buf, sizeof buf, "# HELP %s %s", name, help);
  if (line (opaque, buf) == -1)
    return -1;
  snprintf (buf, sizeof buf, "# TYPE %s %s", name, kind == COUNTER ? "counter" : "gauge");
  return line (opaque, buf);
}

static int
render_prometheus (const struct live *l, const struct disk_live *dl, size_t n,
                   int (*line) (void *, const char *), void *opaque)
{
  char name[128], buf[512], v[64];

  for (size_t i = 0; i < ARRAY_SIZE (store_figures); i++) {
    const struct figure *f = &store_figures[i];
    snprintf (name, sizeof name, "casdisk_%s%s", f->key, f->kind == COUNTER ? "_total" : "");
    format_value (f, l, v, sizeof v);
    snprintf (buf, sizeof buf, "%s %s", name, v);
    if (family (name, f->kind, f->help, line, opaque) == -1 || line (opaque, buf) == -1)
      return -1;
  }
  /* Disk names are letters, digits, '-', '_' and '.': no label escaping. */
  for (size_t i = 0; i < ARRAY_SIZE (disk_figures); i++) {
    const struct figure *f = &disk_figures[i];
    snprintf (name, sizeof name, "casdisk_disk_%s", f->key);
    if (family (name, f->kind, f->help, line, opaque) == -1)
      return -1;
    for (size_t d = 0; d < n; d++) {
      format_value (f, &dl[d], v, sizeof v);
      snprintf (buf, sizeof buf, "%s{disk=\"%s\"} %s", name, dl[d].name, v);
      if (line (opaque, buf) == -1)
        return -1;
    }
  }
  for (size_t k = 0; k < ARRAY_SIZE (op_figures); k++) {
    snprintf (name, sizeof name, "casdisk_%s", op_figures[k].metric);
    if (family (name, COUNTER, op_figures[k].help, line, opaque) == -1)
      return -1;
    for (size_t d = 0; d < n; d++)
      for (int op = 0; op < CAS_OP_COUNT; op++) {
        snprintf (buf, sizeof buf, "%s{disk=\"%s\",op=\"%s\"} %" PRIu64, name, dl[d].name,
                  cas_op_name (op), u64_at (&dl[d].ops[op], op_figures[k].off));
        if (line (opaque, buf) == -1)
          return -1;
      }
  }
  return 0;
}

int
cas_live_render (struct cas_store *s, enum cas_live_format fmt,
                 int (*line) (void *opaque, const char *text), void *opaque)
{
  struct live l;
  struct disk_live *dl;
  size_t n;
  int r;

  if (snapshot (s, &l, &dl, &n) == -1)
    return -1;
  if (fmt == CAS_LIVE_STATUS)
    r = render_status (&l, dl, n, line, opaque);
  else
    r = render_prometheus (&l, dl, n, line, opaque);
  free (dl);
  return r;
}

static int
line_to_file (void *opaque, const char *text)
{
  FILE *f = opaque;

  return fputs (text, f) == EOF || fputc ('\n', f) == EOF ? -1 : 0;
}

int
cas_metrics_write_file (struct cas_store *s, const char *path)
{
  CLEANUP_FREE char *tmp = NULL;
  FILE *f;
  int fd;

  if (asprintf (&tmp, "%s.tmp", path) == -1) {
    tmp = NULL;
    cas_error ("metrics: %m");
    return -1;
  }
  /* 0644: a metrics collector usually runs as another user. */
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1 || (f = fdopen (fd, "w")) == NULL) {
    cas_error ("metrics: create %s: %m", tmp);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  if (cas_live_render (s, CAS_LIVE_PROMETHEUS, line_to_file, f) == -1 || ferror (f)) {
    const int e = errno ? errno : EIO;
    fclose (f);
    unlink (tmp);
    errno = e;
    cas_error ("metrics: write %s: %m", tmp);
    return -1;
  }
  if (fclose (f) == EOF) {
    cas_error ("metrics: write %s: %m", tmp);
    unlink (tmp);
    return -1;
  }
  /* No fsync: the figures are rewritten every few seconds anyway. */
  if (rename (tmp, path) == -1) {
    cas_error ("metrics: rename %s to %s: %m", tmp, path);
    unlink (tmp);
    return -1;
  }
  return 0;
}
