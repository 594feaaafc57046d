/* casdisk: the command-line tool for casdisk stores.
 *
 *   casdisk create DIR [--size SIZE] [--block-size SIZE] [--compression N|off] [--disk NAME]
 *   casdisk disk add DIR NAME SIZE
 *   casdisk disk list DIR [--json]
 *   casdisk disk clone DIR SRC DST
 *   casdisk disk delete DIR NAME
 *   casdisk snapshot create|delete DIR DISK SNAP
 *   casdisk snapshot list DIR DISK [--json]
 *   casdisk import DIR NAME FILE [--existing] [--direct-io] [--workers N]
 *   casdisk export DIR NAME FILE
 *   casdisk info DIR [--json]
 *   casdisk check DIR [--json] [--repair]
 *   casdisk scrub DIR [--rate BYTES] [--json]
 *   casdisk compact DIR [--now] [--json]
 *   casdisk status DIR [--json]
 *   casdisk top DIR [--count N] [--interval SECONDS]
 *   casdisk metrics DIR
 *   casdisk remote info|check|scrub|gc rados:POOL [--ceph-conf FILE] [--ceph-id NAME] [--json]
 *
 * Exit status: 0 success (or a clean store), 1 failure (or problems
 * found), 2 usage error (or, for check, a store that could not be read).
 *
 * Each command is one entry of the table `commands` near the end: its
 * name, its options (parsed by run_command() with getopt_long), the number of
 * operands it takes, its --help text, the function that runs it on an idle
 * store, and the one that asks a running server instead (online.c).  The
 * engine's messages reach stderr as "casdisk: ..." through cas_set_log.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "casdisk.h"
#include "cli.h"
#include "image.h"
#include "progress.h"

const char prog[] = "casdisk";

/* The progress display in use, if any: log lines must not land in the
 * middle of a bar.
 */
struct progress *active_progress;

static void
log_stderr (bool error, const char *msg)
{
  if (active_progress)
    progress_interrupt (active_progress);
  fprintf (stderr, "%s: %s%s\n", prog, error ? "" : "debug: ", msg);
}


/* ---- Options shared by the commands ---- */

enum {
  OPT_HELP = 'h',
  OPT_JSON = 256, OPT_REPAIR, OPT_SIZE, OPT_BLOCK_SIZE, OPT_COMPRESSION,
  OPT_DISK, OPT_RATE, OPT_NOW, OPT_EXISTING, OPT_DIRECT_IO, OPT_WORKERS,
  OPT_COUNT, OPT_INTERVAL,
  OPT_CEPH_CONF, OPT_CEPH_ID, OPT_TIMEOUT, OPT_GRACE, OPT_DRY_RUN,
};

#define O_HELP        { "help", no_argument, NULL, OPT_HELP }
#define O_JSON        { "json", no_argument, NULL, OPT_JSON }
#define O_REPAIR      { "repair", no_argument, NULL, OPT_REPAIR }
#define O_SIZE        { "size", required_argument, NULL, OPT_SIZE }
#define O_BLOCK_SIZE  { "block-size", required_argument, NULL, OPT_BLOCK_SIZE }
#define O_COMPRESSION { "compression", required_argument, NULL, OPT_COMPRESSION }
#define O_DISK        { "disk", required_argument, NULL, OPT_DISK }
#define O_RATE        { "rate", required_argument, NULL, OPT_RATE }
#define O_NOW         { "now", no_argument, NULL, OPT_NOW }
#define O_EXISTING    { "existing", no_argument, NULL, OPT_EXISTING }
#define O_DIRECT_IO   { "direct-io", no_argument, NULL, OPT_DIRECT_IO }
#define O_WORKERS     { "workers", required_argument, NULL, OPT_WORKERS }
#define O_COUNT       { "count", required_argument, NULL, OPT_COUNT }
#define O_INTERVAL    { "interval", required_argument, NULL, OPT_INTERVAL }
#define O_CEPH_CONF   { "ceph-conf", required_argument, NULL, OPT_CEPH_CONF }
#define O_CEPH_ID     { "ceph-id", required_argument, NULL, OPT_CEPH_ID }
#define O_TIMEOUT     { "timeout", required_argument, NULL, OPT_TIMEOUT }
#define O_GRACE       { "grace", required_argument, NULL, OPT_GRACE }
#define O_DRY_RUN     { "dry-run", no_argument, NULL, OPT_DRY_RUN }
#define O_END         { NULL, 0, NULL, 0 }


int
usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s %s: ", prog, cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, " (try '%s %s --help')\n", prog, cmd);
  return EXIT_USAGE;
}

/* Parse a size operand or option value into *OUT, within [MIN, MAX]. */
bool
parse_size_arg (const char *cmd, const char *what, const char *str,
                uint64_t min, uint64_t max, uint64_t *out)
{
  if (cas_parse_size (str, out) == -1) {
    usage_error (cmd, "%s: '%s' is not a size (e.g. 4096, 64K, 10G)", what, str);
    return false;
  }
  if (*out < min || *out > max) {
    char h1[32], h2[32];
    usage_error (cmd, "%s: '%s' is out of range (%s .. %s)",
                 what, str, human (min, h1), human (max, h2));
    return false;
  }
  return true;
}

static bool
check_disk_name (const char *cmd, const char *name)
{
  if (cas_disk_name_valid (name))
    return true;
  usage_error (cmd, "'%s' is not a valid disk name: use 1 to %u letters, digits, "
               "'-', '_' or '.', not starting with '-' or '.'", name, CAS_DISK_NAME_MAX);
  return false;
}

/* Open DIR read-only (a shared lock: refused while nbdkit serves it). */
static struct cas_store *
open_readonly (const char *dir)
{
  struct cas_open_opts oo;

  cas_open_opts_default (&oo);
  oo.readonly = true;
  return cas_store_open (dir, &oo);
}

/* ---- create ---- */

static int
cmd_create (const struct cmdline *c)
{
  const char *dir = c->args[0];
  const char *disk = c->disk ? c->disk : CAS_DEFAULT_DISK_NAME;
  struct cas_create_opts co;
  uint64_t size = UINT64_C(10) << 30, bs;

  cas_create_opts_default (&co);
  if (c->size && !parse_size_arg (c->cmd, "--size", c->size, 1, CAS_MAX_DISK_SIZE, &size))
    return EXIT_USAGE;
  if (c->block_size) {
    if (!parse_size_arg (c->cmd, "--block-size", c->block_size,
                         CAS_MIN_BLOCK_SIZE, CAS_MAX_BLOCK_SIZE, &bs))
      return EXIT_USAGE;
    if (bs & (bs - 1))
      return usage_error (c->cmd, "--block-size: %s is not a power of two (4K, 8K, 16K, 32K or 64K)",
                          c->block_size);
    co.block_size = bs;
  }
  if (c->compression) {
    char *end;
    long level = 0;

    if (strcmp (c->compression, "off") != 0) {
      errno = 0;
      level = strtol (c->compression, &end, 10);
      if (errno || end == c->compression || *end || level < 0 || level > CAS_MAX_LEVEL)
        return usage_error (c->cmd, "--compression: '%s' is not 'off' or a level from 1 to %d",
                            c->compression, CAS_MAX_LEVEL);
    }
    co.compression_level = level;
  }
  if (!check_disk_name (c->cmd, disk))
    return EXIT_USAGE;
  /* The engine refuses too; saying so here is clearer. */
  if (cas_store_exists (dir)) {
    fprintf (stderr, "%s: %s: a casdisk store exists there already\n", prog, dir);
    return EXIT_FAILURE;
  }
  if (cas_store_create (dir, &co, disk, size) == -1)
    return EXIT_FAILURE;

  char h[32];
  printf ("created store %s: block size %" PRIu32 ", compression ", dir, co.block_size);
  if (co.compression_level)
    printf ("zstd level %d", co.compression_level);
  else
    printf ("off");
  printf (", disk '%s' of %s (%" PRIu64 " bytes)\n", disk, human (size, h), size);
  return 0;
}

/* ---- disk add, disk list ---- */

static int
cmd_disk_add (const struct cmdline *c)
{
  const char *dir = c->args[0], *name = c->args[1];
  struct cas_store *s;
  uint64_t size;
  char h[32];

  if (!check_disk_name (c->cmd, name) ||
      !parse_size_arg (c->cmd, "SIZE", c->args[2], 1, CAS_MAX_DISK_SIZE, &size))
    return EXIT_USAGE;
  s = cas_store_open (dir, NULL);
  if (s == NULL)
    return EXIT_FAILURE;
  if (cas_disk_add (s, name, size) == NULL) {
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  if (cas_store_close (s) == -1)
    return EXIT_FAILURE;
  printf ("added disk '%s' of %s (%" PRIu64 " bytes) to %s\n", name, human (size, h), size, dir);
  return 0;
}

static int
cmd_disk_list (const struct cmdline *c)
{
  struct cas_store *s = open_readonly (c->args[0]);
  char h[32];

  if (s == NULL)
    return EXIT_FAILURE;
  const size_t n = cas_store_ndisks (s);
  if (c->json)
    json_open (NULL, '[');
  for (size_t k = 0; k < n; k++) {
    const struct cas_disk *d = cas_store_disk (s, k);
    if (d == NULL || cas_disk_is_snapshot (d))
      continue;                 /* deleted; snapshots: casdisk snapshot list */
    if (c->json) {
      json_open (NULL, '{');
      json_str ("name", cas_disk_name (d));
      json_u64 ("size", cas_disk_size (d));
      json_close ('}');
    }
    else
      printf ("%-24s %10s  (%" PRIu64 " bytes)\n", cas_disk_name (d),
              human (cas_disk_size (d), h), cas_disk_size (d));
  }
  if (c->json)
    json_close (']');
  return cas_store_close (s) == -1 ? EXIT_FAILURE : 0;
}


/* ---- disk clone, disk delete, snapshots ---- */

/* Open DIR for writing, run FN, close (flush and checkpoint). */
static int
with_store (const char *dir, int (*fn) (struct cas_store *s, const struct cmdline *c),
            const struct cmdline *c)
{
  struct cas_store *s = cas_store_open (dir, NULL);
  int r;

  if (s == NULL)
    return EXIT_FAILURE;
  r = fn (s, c);
  fflush (stdout);              /* the result is known before the close */
  if (cas_store_close (s) == -1)
    r = EXIT_FAILURE;
  return r;
}

static double
seconds_since (const struct timespec *t0)
{
  struct timespec t1;

  clock_gettime (CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int
do_disk_clone (struct cas_store *s, const struct cmdline *c)
{
  struct timespec t0;
  char h[32];

  clock_gettime (CLOCK_MONOTONIC, &t0);
  struct cas_disk *d = cas_disk_clone (s, c->args[1], c->args[2]);
  if (d == NULL)
    return EXIT_FAILURE;
  printf ("cloned disk '%s' into '%s' (%s, no data copied) in %.3f s\n", c->args[1],
          c->args[2], human (cas_disk_size (d), h), seconds_since (&t0));
  return 0;
}

static int
cmd_disk_clone (const struct cmdline *c)
{
  if (!check_disk_name (c->cmd, c->args[2]))
    return EXIT_USAGE;
  return with_store (c->args[0], do_disk_clone, c);
}

static int
do_disk_delete (struct cas_store *s, const struct cmdline *c)
{
  if (cas_disk_delete (s, c->args[1]) == -1)
    return EXIT_FAILURE;
  printf ("deleted disk '%s'; its blocks are freed after gc-delay by the next open "
          "(nbdkit or casdisk compact)\n", c->args[1]);
  return 0;
}

static int
cmd_disk_delete (const struct cmdline *c)
{
  if (strchr (c->args[1], '@'))
    return usage_error (c->cmd, "'%s' is a snapshot: use 'casdisk snapshot delete'", c->args[1]);
  return with_store (c->args[0], do_disk_delete, c);
}

static int
do_snapshot_create (struct cas_store *s, const struct cmdline *c)
{
  struct timespec t0;

  clock_gettime (CLOCK_MONOTONIC, &t0);
  struct cas_disk *d = cas_snapshot_create (s, c->args[1], c->args[2]);
  if (d == NULL)
    return EXIT_FAILURE;
  printf ("created snapshot '%s' (read-only export name '%s') in %.3f s\n", c->args[2],
          cas_disk_name (d), seconds_since (&t0));
  return 0;
}

static int
cmd_snapshot_create (const struct cmdline *c)
{
  if (!check_disk_name (c->cmd, c->args[1]) || !check_disk_name (c->cmd, c->args[2]))
    return EXIT_USAGE;
  return with_store (c->args[0], do_snapshot_create, c);
}

static int
do_snapshot_delete (struct cas_store *s, const struct cmdline *c)
{
  if (cas_snapshot_delete (s, c->args[1], c->args[2]) == -1)
    return EXIT_FAILURE;
  printf ("deleted snapshot '%s@%s'\n", c->args[1], c->args[2]);
  return 0;
}

static int
cmd_snapshot_delete (const struct cmdline *c)
{
  return with_store (c->args[0], do_snapshot_delete, c);
}

static int
cmd_snapshot_list (const struct cmdline *c)
{
  struct cas_store *s = open_readonly (c->args[0]);
  const char *disk = c->args[1];
  const size_t len = strlen (disk);
  char h[32];

  if (s == NULL)
    return EXIT_FAILURE;
  if (cas_disk_find (s, disk) == NULL) {
    fprintf (stderr, "%s: %s: no disk named '%s'\n", prog, c->args[0], disk);
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  if (c->json)
    json_open (NULL, '[');
  for (size_t k = 0; k < cas_store_ndisks (s); k++) {
    const struct cas_disk *d = cas_store_disk (s, k);
    if (d == NULL || !cas_disk_is_snapshot (d) || strncmp (cas_disk_name (d), disk, len) != 0 ||
        cas_disk_name (d)[len] != '@')
      continue;
    if (c->json) {
      json_open (NULL, '{');
      json_str ("name", cas_disk_name (d) + len + 1);
      json_str ("export", cas_disk_name (d));
      json_u64 ("size", cas_disk_size (d));
      json_close ('}');
    }
    else
      printf ("%-24s %-32s %10s\n", cas_disk_name (d) + len + 1, cas_disk_name (d),
              human (cas_disk_size (d), h));
  }
  if (c->json)
    json_close (']');
  return cas_store_close (s) == -1 ? EXIT_FAILURE : 0;
}

/* ---- import, export ---- */

static int
cmd_import (const struct cmdline *c)
{
  const char *dir = c->args[0], *name = c->args[1], *file = c->args[2];
  struct image_result res;
  struct progress bar;
  struct cas_store *s;
  struct cas_disk *d;
  struct timespec t0;
  uint64_t size;
  char h1[32], h2[32], h3[32];
  unsigned workers = CAS_WORKERS_AUTO;
  int fd, r;

  if (!check_disk_name (c->cmd, name))
    return EXIT_USAGE;
  if (c->workers) {
    char *end;
    errno = 0;
    const unsigned long n = strtoul (c->workers, &end, 10);
    if (errno || end == c->workers || *end || n < 1 || n > CAS_MAX_WORKERS)
      return usage_error (c->cmd, "--workers: '%s' is not a number of threads (1 to %d)",
                          c->workers, CAS_MAX_WORKERS);
    workers = n;
  }
  fd = open (file, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    fprintf (stderr, "%s: open %s: %m\n", prog, file);
    return EXIT_FAILURE;
  }
  if (image_size (fd, file, &size) == -1) {
    close (fd);
    return EXIT_FAILURE;
  }
  if (size == 0 || size > CAS_MAX_DISK_SIZE) {
    fprintf (stderr, "%s: %s: size %" PRIu64 " is out of range (1 byte .. 64 TiB)\n",
             prog, file, size);
    close (fd);
    return EXIT_FAILURE;
  }
  {
    struct cas_open_opts o;
    cas_open_opts_default (&o);
    o.direct_io = c->direct_io;
    o.workers = workers;
    s = cas_store_open (dir, &o);
  }
  if (s == NULL) {
    close (fd);
    return EXIT_FAILURE;
  }
  if (cas_store_start_workers (s) == -1) {
    cas_store_close (s);
    close (fd);
    return EXIT_FAILURE;
  }
  d = cas_disk_find (s, name);
  if (c->existing) {
    if (d == NULL)
      fprintf (stderr, "%s: %s has no disk '%s' (without --existing, import creates it)\n",
               prog, dir, name);
    else if (cas_disk_size (d) < size) {
      fprintf (stderr, "%s: %s (%" PRIu64 " bytes) is larger than disk '%s' (%" PRIu64
               " bytes)\n", prog, file, size, name, cas_disk_size (d));
      d = NULL;
    }
  }
  else if (d != NULL) {
    fprintf (stderr, "%s: disk '%s' exists already (--existing writes into it)\n", prog, name);
    d = NULL;
  }
  else
    d = cas_disk_add (s, name, size);
  if (d == NULL) {
    cas_store_close (s);
    close (fd);
    return EXIT_FAILURE;
  }
  clock_gettime (CLOCK_MONOTONIC, &t0);
  progress_init (&bar, "import", false);
  bar.unit = "MiB";
  active_progress = &bar;
  r = image_import (d, cas_store_block_size (s), fd, file, size, c->existing, &bar, &res);
  progress_done (&bar);
  active_progress = NULL;
  close (fd);
  /* A disk this import created is not left half-imported. */
  if (r == -1 && !c->existing && cas_disk_delete (s, name) == 0)
    fprintf (stderr, "%s: import failed: disk '%s' was not created\n", prog, name);
  if (cas_store_close (s) == -1 || r == -1)
    return EXIT_FAILURE;
  printf ("imported %s into disk '%s' (%s) in %.1f s: %s of data, %s of zeroes not stored\n",
          file, name, human (size, h1), seconds_since (&t0), human (res.data_bytes, h2),
          human (res.zero_bytes, h3));
  return 0;
}

static int
cmd_export (const struct cmdline *c)
{
  const char *dir = c->args[0], *name = c->args[1], *file = c->args[2];
  struct image_result res;
  struct progress bar;
  struct cas_store *s;
  struct cas_disk *d;
  struct timespec t0;
  char h1[32], h2[32], h3[32];
  int fd, r;

  s = open_readonly (dir);
  if (s == NULL)
    return EXIT_FAILURE;
  d = cas_disk_find (s, name);
  if (d == NULL) {
    fprintf (stderr, "%s: %s has no disk or snapshot '%s'\n", prog, dir, name);
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  fd = open (file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd == -1) {
    fprintf (stderr, "%s: create %s: %m\n", prog, file);
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  clock_gettime (CLOCK_MONOTONIC, &t0);
  progress_init (&bar, "export", false);
  bar.unit = "MiB";
  active_progress = &bar;
  r = image_export (d, cas_store_block_size (s), fd, file, &bar, &res);
  progress_done (&bar);
  active_progress = NULL;
  if (close (fd) == -1 && r == 0) {
    fprintf (stderr, "%s: close %s: %m\n", prog, file);
    r = -1;
  }
  cas_store_close (s);
  if (r == -1)
    return EXIT_FAILURE;
  printf ("exported disk '%s' (%s) to %s in %.1f s: %s of data written, %s of zeroes left "
          "as holes\n", name, human (res.size, h1), file, seconds_since (&t0),
          human (res.data_bytes, h2), human (res.zero_bytes, h3));
  return 0;
}

/* ---- info ---- */

static void
print_disk (const char *name, bool snapshot, const struct cas_disk_stats *ds, bool as_json)
{
  const double dedup = ratio (ds->logical_bytes, ds->unique_bytes);
  const double comp = ratio (ds->unique_bytes, ds->stored_bytes);

  if (as_json) {
    json_open (NULL, '{');
    json_str ("name", name);
    json_bool ("snapshot", snapshot);
    json_u64 ("virtual_size", ds->virtual_size);
    json_u64 ("logical_bytes", ds->logical_bytes);
    json_u64 ("unique_bytes", ds->unique_bytes);
    json_u64 ("stored_bytes", ds->stored_bytes);
    json_u64 ("exclusive_bytes", ds->exclusive_bytes);
    json_ratio ("dedup_ratio", dedup);
    json_ratio ("compression_ratio", comp);
    json_close ('}');
    return;
  }
  printf ("%s %s\n", snapshot ? "snapshot" : "disk", name);
  print_bytes ("virtual size", ds->virtual_size);
  print_bytes ("logical bytes in use", ds->logical_bytes);
  print_bytes ("unique bytes", ds->unique_bytes);
  print_bytes ("stored bytes", ds->stored_bytes);
  print_bytes ("only in this disk", ds->exclusive_bytes);
  printf ("  %-22s %10.2f\n", "dedup ratio", dedup);
  printf ("  %-22s %10.2f\n", "compression ratio", comp);
}

static void
print_store (const char *dir, const struct cas_store_stats *st, uint64_t virtual_size,
             bool as_json)
{
  const double dedup = ratio (st->logical_bytes, st->unique_bytes);
  const double comp = ratio (st->unique_bytes, st->stored_bytes);
  const uint64_t live_blocks = st->nblocks - st->dead_blocks;
  /* What an offline compact frees (it frees dead blocks first) and moves. */
  const uint64_t reclaimable = st->space_free + st->space_junk + st->space_erased +
    st->dead_bytes;

  if (as_json) {
    json_open ("store", '{');
    json_str ("dir", dir);
    json_u64 ("block_size", st->block_size);
    json_int ("compression_level", st->compression_level);
    json_str ("key_function", st->key_function);
    json_u64 ("ndisks", st->ndisks);
    json_u64 ("virtual_size", virtual_size);
    json_u64 ("logical_bytes", st->logical_bytes);
    json_u64 ("nblocks", st->nblocks);
    json_u64 ("unique_bytes", st->unique_bytes);
    json_u64 ("stored_bytes", st->stored_bytes);
    json_ratio ("dedup_ratio", dedup);
    json_ratio ("compression_ratio", comp);
    json_u64 ("dead_blocks", st->dead_blocks);
    json_u64 ("dead_bytes", st->dead_bytes);
    json_u64 ("free_bytes", st->free_bytes);
    json_u64 ("pending_bytes", st->pending_bytes);
    json_u64 ("reclaimable_bytes", reclaimable);
    json_open ("space", '{');
    json_u64 ("in_use", st->space_in_use);
    json_u64 ("junk", st->space_junk);
    json_u64 ("erased", st->space_erased);
    json_u64 ("free", st->space_free);
    json_u64 ("moving", st->space_moving);
    json_close ('}');
    json_u64 ("data_file_end", st->data_file_end);
    json_u64 ("physical_allocated", st->physical_allocated);
    json_u64 ("physical_apparent", st->physical_apparent);
    json_u64 ("journal_bytes", st->journal_bytes);
    json_u64 ("quarantined", st->quarantined);
    json_close ('}');
    return;
  }
  printf ("store %s\n", dir);
  printf ("  %-22s %10" PRIu32 "\n", "block size", st->block_size);
  if (st->compression_level)
    printf ("  %-22s %10s  (level %d)\n", "compression", "zstd", st->compression_level);
  else
    printf ("  %-22s %10s\n", "compression", "off");
  printf ("  %-22s %10s\n", "block key", st->key_function);
  printf ("  %-22s %10" PRIu64 "\n", "disks", st->ndisks);
  print_bytes ("virtual size", virtual_size);
  print_bytes ("logical bytes in use", st->logical_bytes);
  print_bytes ("unique bytes", st->unique_bytes);
  print_bytes ("stored bytes", st->stored_bytes);
  printf ("  %-22s %10.2f\n", "dedup ratio", dedup);
  printf ("  %-22s %10.2f\n", "compression ratio", comp);
  printf ("  %-22s %10" PRIu64 "  (%" PRIu64 " referenced)\n", "blocks", st->nblocks,
          live_blocks);
  printf ("  %-22s %10" PRIu64 "\n", "dead blocks (for GC)", st->dead_blocks);
  print_bytes ("dead bytes (for GC)", st->dead_bytes);
  print_bytes ("data file in use", st->data_file_end);
  printf ("  space map of the data file:\n");
  print_bytes ("  in use", st->space_in_use);
  print_bytes ("  junk", st->space_junk);
  print_bytes ("  erased", st->space_erased);
  print_bytes ("  free", st->space_free);
  print_bytes ("  moving", st->space_moving);
  print_bytes ("compact would reclaim", reclaimable);
  print_bytes ("journal", st->journal_bytes);
  print_bytes ("physical allocated", st->physical_allocated);
  print_bytes ("physical apparent", st->physical_apparent);
  printf ("  %-22s %10" PRIu64 "\n", "quarantined blocks", st->quarantined);
}

static int
cmd_info (const struct cmdline *c)
{
  const char *dir = c->args[0];
  struct cas_store *s = open_readonly (dir);
  struct cas_disk_stats *ds = NULL;
  struct cas_store_stats st;
  uint64_t virtual_size = 0;
  size_t n;

  if (s == NULL)
    return EXIT_FAILURE;
  n = cas_store_ndisks (s);
  ds = calloc (n ? n : 1, sizeof *ds);
  if (ds == NULL) {
    fprintf (stderr, "%s: %m\n", prog);
    goto fail;
  }
  if (cas_store_stats (s, &st) == -1)
    goto fail;
  for (size_t k = 0; k < n; k++) {
    if (cas_store_disk (s, k) == NULL)
      continue;                 /* deleted */
    if (cas_disk_stats (cas_store_disk (s, k), &ds[k]) == -1)
      goto fail;
    virtual_size += ds[k].virtual_size;
  }

  if (c->json)
    json_open (NULL, '{');
  print_store (dir, &st, virtual_size, c->json);
  if (c->json)
    json_open ("disks", '[');
  for (size_t k = 0; k < n; k++)
    if (cas_store_disk (s, k))
      print_disk (cas_disk_name (cas_store_disk (s, k)), cas_disk_is_snapshot (cas_store_disk (s, k)),
                  &ds[k], c->json);
  if (c->json) {
    json_close (']');
    json_close ('}');
  }
  free (ds);
  return cas_store_close (s) == -1 ? EXIT_FAILURE : 0;

 fail:
  free (ds);
  cas_store_close (s);
  return EXIT_FAILURE;
}


static int
cmd_check (const struct cmdline *c)
{
  const char *dir = c->args[0];
  struct report_ctx r = { .json = c->json, .prefix = c->repair ? "repair" : "problem" };
  struct cas_check_result res = { 0 };
  int n;

  progress_init (&r.prog, "check", c->json);
  active_progress = &r.prog;
  if (c->json) {
    json_open (NULL, '{');
    json_open ("problems", '[');
  }
  /* Repair reports what it found (and fixed or not), then checks again. */
  if (c->repair)
    n = cas_store_repair (dir, print_problem, &r, &res);
  else
    n = cas_store_check_progress (dir, print_problem, on_progress, &r, &res);
  progress_done (&r.prog);
  active_progress = NULL;

  if (c->json) {
    json_close (']');
    json_bool ("clean", n == 0);
    if (n < 0)
      json_str ("error", "the store could not be read");
    json_u64 ("problems_left", n < 0 ? 0 : res.problems);
    json_u64 ("blocks_checked", res.blocks_checked);
    json_u64 ("references_checked", res.refs_checked);
    json_u64 ("bytes_verified", res.bytes_verified);
    json_close ('}');
  }
  else if (n >= 0)
    printf ("%s: %" PRIu64 " blocks, %" PRIu64 " references, %" PRIu64
            " bytes verified; %" PRIu64 " problem%s%s: %s\n",
            dir, res.blocks_checked, res.refs_checked, res.bytes_verified, res.problems,
            res.problems == 1 ? "" : "s", c->repair ? " left after repair" : "",
            n == 0 ? "clean" : "PROBLEMS FOUND");
  /* When n < 0 the engine has said why. */
  if (n < 0)
    return EXIT_USAGE;          /* documented: 2 = could not read the store */
  return n == 0 ? 0 : EXIT_FAILURE;
}

static int
cmd_scrub (const struct cmdline *c)
{
  const char *dir = c->args[0];
  struct report_ctx r = { .json = c->json, .prefix = "problem" };
  struct cas_scrub_result res = { 0 };
  struct cas_store *s;
  uint64_t rate = 0;
  int n;

  if (c->rate && !parse_size_arg (c->cmd, "--rate", c->rate, 0, UINT64_MAX, &rate))
    return EXIT_USAGE;
  s = cas_store_open (dir, NULL);
  if (s == NULL)
    return EXIT_FAILURE;
  progress_init (&r.prog, "scrub", c->json);
  active_progress = &r.prog;
  if (c->json) {
    json_open (NULL, '{');
    json_open ("problems", '[');
  }
  n = cas_store_scrub (s, rate, on_progress, print_problem, &r, &res);
  progress_done (&r.prog);
  active_progress = NULL;
  if (cas_store_close (s) == -1 && n >= 0)
    n++;

  if (c->json) {
    json_close (']');
    json_bool ("clean", n == 0);
    json_u64 ("blocks", res.blocks);
    json_u64 ("bytes", res.bytes);
    json_u64 ("corrupted", res.corrupted);
    json_u64 ("already_quarantined", res.already_quarantined);
    json_close ('}');
  }
  else if (n >= 0)
    printf ("%s: %" PRIu64 " blocks, %" PRIu64 " bytes verified, %" PRIu64
            " corrupted (quarantined), %" PRIu64 " quarantined earlier: %s\n",
            dir, res.blocks, res.bytes, res.corrupted, res.already_quarantined,
            n == 0 ? "clean" : "PROBLEMS FOUND");
  return n == 0 ? 0 : EXIT_FAILURE;
}

static void
on_compact_progress (void *opaque, uint64_t done, uint64_t total)
{
  progress_update (opaque, done >> 20, total >> 20);
}

static int
cmd_compact (const struct cmdline *c)
{
  const char *dir = c->args[0];
  struct cas_store_stats before, after;
  struct progress bar;
  struct cas_store *s;
  int64_t moved;
  char h1[32], h2[32];

  s = cas_store_open (dir, NULL);
  if (s == NULL)
    return EXIT_FAILURE;
  if (cas_store_stats (s, &before) == -1) {
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  progress_init (&bar, "compact", c->json);
  bar.unit = "MiB";
  moved = cas_store_compact (s, on_compact_progress, &bar);
  progress_done (&bar);
  if (moved < 0 || cas_store_stats (s, &after) == -1) {
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  if (cas_store_close (s) == -1)
    return EXIT_FAILURE;
  /* The close cut the file and released the last space: measure again. */
  {
    struct cas_open_opts oo;
    cas_open_opts_default (&oo);
    oo.readonly = true;
    s = cas_store_open (dir, &oo);
    if (s == NULL || cas_store_stats (s, &after) == -1)
      return EXIT_FAILURE;
    cas_store_close (s);
  }
  if (c->json) {
    json_open (NULL, '{');
    json_u64 ("moved_bytes", moved);
    json_u64 ("allocated_before", before.physical_allocated);
    json_u64 ("apparent_before", before.physical_apparent);
    json_u64 ("allocated_after", after.physical_allocated);
    json_u64 ("apparent_after", after.physical_apparent);
    json_close ('}');
  }
  else {
    printf ("%s: moved %s; allocated %s", dir, human (moved, h1), human (before.physical_allocated, h2));
    printf (" -> %s, apparent %s", human (after.physical_allocated, h1),
            human (before.physical_apparent, h2));
    printf (" -> %s\n", human (after.physical_apparent, h1));
  }
  return 0;
}

/* ---- The table of commands ---- */

/* FN works on a store nobody serves (NULL: only online); ONLINE (NULL:
 * none) asks the server that holds the store, through its control socket.
 * A command whose first operand is a store tries the socket first: if a
 * server answers, ONLINE runs, or the command says that the store is in
 * use; if none does, FN runs.
 */
static const struct command {
  const char *name;             /* "create", "disk add" ... */
  int nargs;                    /* operands, exactly */
  const char *operands;         /* for messages: "DIR NAME SIZE" */
  int (*fn) (const struct cmdline *c);
  int (*online) (const struct cmdline *c, int fd);
  bool store;                   /* args[0] is an existing store */
  const char *summary;
  const char *help;
  const struct option *options; /* always includes --help */
} commands[] = {
  { "create", 1, "DIR", cmd_create, NULL, false, "create a store with a first disk",
    "Usage: casdisk create DIR [--size SIZE] [--block-size SIZE] [--compression N|off]\n"
    "                          [--disk NAME]\n"
    "Create a store in DIR (created if missing, else it must be empty) with one disk.\n"
    "  --size SIZE          size of the first disk (default 10G)\n"
    "  --block-size SIZE    dedup block size, a power of two from 4K to 64K (default 64K);\n"
    "                       fixed for the life of the store\n"
    "  --compression N|off  zstd level 1 to 19, or off (default 1)\n"
    "  --disk NAME          name of the first disk (default disk0)\n",
    (const struct option[]) { O_SIZE, O_BLOCK_SIZE, O_COMPRESSION, O_DISK, O_HELP, O_END } },
  { "disk add", 3, "DIR NAME SIZE", cmd_disk_add, online_disk_add, true,
    "add an empty disk to a store",
    "Usage: casdisk disk add DIR NAME SIZE\n"
    "Add an empty disk NAME of SIZE bytes (e.g. 20G) to the store in DIR; on a served\n"
    "store, the server adds it and clients see it at once.  NAME: letters, digits,\n"
    "'-', '_' and '.', up to 64.\n",
    (const struct option[]) { O_HELP, O_END } },
  { "disk list", 1, "DIR", cmd_disk_list, online_disk_list, true, "list the disks of a store",
    "Usage: casdisk disk list DIR [--json]\n"
    "List the disks of the store in DIR and their sizes.\n"
    "  --json   print a JSON array of {\"name\", \"size\"}\n",
    (const struct option[]) { O_JSON, O_HELP, O_END } },
  { "disk clone", 3, "DIR SRC DST", cmd_disk_clone, online_disk_clone, true,
    "a new disk sharing every block of another",
    "Usage: casdisk disk clone DIR SRC DST\n"
    "Create disk DST as a copy of SRC (a disk, or a snapshot 'disk@snap') in the\n"
    "store in DIR (stopped, or served: then through nbdkit).  No data is copied:\n"
    "DST shares every block of SRC, so the clone takes time in proportion to the\n"
    "disk's map, not its data, and costs no space until one of them is written.\n"
    "Writes to either never show in the other.\n",
    (const struct option[]) { O_HELP, O_END } },
  { "disk delete", 2, "DIR NAME", cmd_disk_delete, online_disk_delete, true,
    "delete a disk and release its blocks",
    "Usage: casdisk disk delete DIR NAME\n"
    "Delete disk NAME from the store in DIR (stopped or served).  Blocks no other\n"
    "disk or snapshot uses are freed by the delayed GC (after gc-delay, once nbdkit\n"
    "serves the store, or at once by 'casdisk compact').  Refused while the disk\n"
    "has snapshots.\n",
    (const struct option[]) { O_HELP, O_END } },
  { "snapshot create", 3, "DIR DISK SNAP", cmd_snapshot_create, online_snapshot_create, true,
    "a read-only point-in-time copy of a disk",
    "Usage: casdisk snapshot create DIR DISK SNAP\n"
    "Take snapshot SNAP of disk DISK in the store in DIR (stopped, or served: then\n"
    "at a flush point, while clients write): a read-only copy sharing every block,\n"
    "served by nbdkit under the export name DISK@SNAP (64 bytes at most).  To go\n"
    "back to it, clone it into a new disk\n"
    "('casdisk disk clone DIR DISK@SNAP NEWDISK').\n",
    (const struct option[]) { O_HELP, O_END } },
  { "snapshot list", 2, "DIR DISK", cmd_snapshot_list, online_snapshot_list, true,
    "list the snapshots of a disk",
    "Usage: casdisk snapshot list DIR DISK [--json]\n"
    "List the snapshots of disk DISK: name, export name and size.\n"
    "  --json   print a JSON array of {\"name\", \"export\", \"size\"}\n",
    (const struct option[]) { O_JSON, O_HELP, O_END } },
  { "snapshot delete", 3, "DIR DISK SNAP", cmd_snapshot_delete, online_snapshot_delete, true,
    "delete a snapshot",
    "Usage: casdisk snapshot delete DIR DISK SNAP\n"
    "Delete snapshot SNAP of disk DISK; blocks nothing else uses are freed by the\n"
    "delayed GC.\n",
    (const struct option[]) { O_HELP, O_END } },
  { "import", 3, "DIR NAME FILE", cmd_import, NULL, true,
    "import a raw image into a new disk",
    "Usage: casdisk import DIR NAME FILE [--existing] [--direct-io] [--workers N]\n"
    "Create disk NAME of FILE's size in the store in DIR (not in use) and copy the\n"
    "raw image FILE (a file or a block device) into it.  Holes and blocks of zeroes\n"
    "are not stored.  For qcow2 and other formats, or a store nbdkit is serving,\n"
    "use qemu-img convert or nbdcopy to the export (see casdisk(1)).\n"
    "  --existing   write into the existing disk NAME instead (at least FILE's size);\n"
    "               its first FILE-size bytes become FILE's content\n"
    "  --direct-io  write the store's data file with O_DIRECT (as the plugin's\n"
    "               direct-io=true), leaving the host's page cache alone\n"
    "  --workers N  threads that hash and compress the blocks, this one included\n"
    "               (1 to 64; default: the online CPUs, as the plugin's workers=N)\n",
    (const struct option[]) { O_EXISTING, O_DIRECT_IO, O_WORKERS, O_HELP, O_END } },
  { "export", 3, "DIR NAME FILE", cmd_export, NULL, true,
    "export a disk or snapshot as a raw image",
    "Usage: casdisk export DIR NAME FILE\n"
    "Write disk or snapshot NAME of the store in DIR (not in use: opened read-only)\n"
    "to the raw image FILE, created or overwritten.  A regular file is sparse:\n"
    "blocks of zeroes are left as holes.\n",
    (const struct option[]) { O_HELP, O_END } },
  { "info", 1, "DIR", cmd_info, NULL, true, "space accounting: sizes, dedup and compression ratios",
    "Usage: casdisk info DIR [--json]\n"
    "Space accounting of the store in DIR and of each of its disks: virtual size,\n"
    "logical bytes in use, unique and stored (compressed) bytes, dedup and\n"
    "compression ratios, dead blocks awaiting GC, free space in the data file and\n"
    "the physical size of the store's files.  Opens the store read-only; while a\n"
    "server holds the store, 'casdisk status' shows the same figures live.\n"
    "  --json   print one JSON object {\"store\": {...}, \"disks\": [{...}]}\n",
    (const struct option[]) { O_JSON, O_HELP, O_END } },
  { "check", 1, "DIR", cmd_check, NULL, true, "offline consistency check (--repair to fix)",
    "Usage: casdisk check DIR [--json] [--repair]\n"
    "Check the store in DIR offline: metadata checksums, every reference, every\n"
    "refcount, every stored block (checksum, decompression, key), leaked or\n"
    "doubly used space.  Prints each problem and a summary.  Exit 0 when clean, 1\n"
    "when problems were found, 2 if the store could not be read.\n"
    "  --repair  fix what can be fixed without guessing (refcounts, leaked space,\n"
    "            damaged journal tails), report the rest, then check again\n"
    "  --json    print one JSON object {\"problems\": [...], \"clean\": ..., ...}\n",
    (const struct option[]) { O_JSON, O_REPAIR, O_HELP, O_END } },
  { "scrub", 1, "DIR", cmd_scrub, online_scrub, true,
    "verify every stored block, quarantine bad ones",
    "Usage: casdisk scrub DIR [--rate BYTES] [--json]\n"
    "Read back every stored block and metadata file of the store in DIR and verify\n"
    "them; on a served store, the server does it while it serves.  Blocks that\n"
    "fail are quarantined: reads of them return I/O errors and dedup stops using\n"
    "them.  Exit 0 when everything verified, 1 when problems were found.\n"
    "  --rate BYTES  read at most BYTES per second (e.g. 50M; default no limit)\n"
    "  --json        print one JSON object\n",
    (const struct option[]) { O_RATE, O_JSON, O_HELP, O_END } },
  { "compact", 1, "DIR", cmd_compact, online_compact, true,
    "shrink the data file: move blocks into free space",
    "Usage: casdisk compact DIR [--now] [--json]\n"
    "Compact the store in DIR: move blocks from the end of the data file into free\n"
    "space before them, give the freed space back and cut the file, so that its\n"
    "apparent size shrinks too.  Offline, dead blocks are freed at once.  A server\n"
    "does the same in the background once compact-after= percent is free (see\n"
    "nbdkit-casdisk-plugin(1)); --now asks it for a compaction now, which frees\n"
    "only the dead blocks whose gc-delay has passed.\n"
    "  --now    on a served store: compact now (required there)\n"
    "  --json   print one JSON object\n",
    (const struct option[]) { O_NOW, O_JSON, O_HELP, O_END } },
  { "status", 1, "DIR", NULL, online_status, true,
    "live figures of a served store: requests, space, GC, scrub",
    "Usage: casdisk status DIR [--json]\n"
    "Ask the server holding the store in DIR for its live figures: requests, bytes\n"
    "and errors per operation and disk, dedup and compression ratios, space (as\n"
    "'casdisk info' shows it), the delayed GC, the recycler, scrubs, quarantined\n"
    "blocks and uptime.  Needs a running server; 'casdisk info' reads an idle store.\n"
    "  --json   print one JSON object {\"store\": {...}, \"disks\": [{...}]}\n",
    (const struct option[]) { O_JSON, O_HELP, O_END } },
  { "top", 1, "DIR", NULL, online_top, true,
    "a live view of a served store, refreshed every second",
    "Usage: casdisk top DIR [--count N] [--interval SECONDS]\n"
    "Show the server holding the store in DIR live, refreshed every second (like\n"
    "'zpool iostat 1'): read and write MiB/s and IOPS per disk and for the store,\n"
    "logical bytes, dedup and compression ratios, space by state (in use, junk,\n"
    "erased, free, moving), the delayed GC and the recycler, scrubs and errors.\n"
    "The first rates are averages since the store was opened.  On a terminal the\n"
    "screen is redrawn in place ('q' or Ctrl-C quits); otherwise each refresh is\n"
    "a block of plain lines ended by a blank line.\n"
    "  --count N            stop after N refreshes (default: until stopped)\n"
    "  --interval SECONDS   time between refreshes, 0.1 to 3600 (default 1)\n",
    (const struct option[]) { O_COUNT, O_INTERVAL, O_HELP, O_END } },
  { "metrics", 1, "DIR", NULL, online_metrics, true,
    "live figures of a served store for Prometheus",
    "Usage: casdisk metrics DIR\n"
    "Print the live figures of the server holding the store in DIR in Prometheus'\n"
    "text format (the metrics= plugin key writes them to a file periodically).\n",
    (const struct option[]) { O_HELP, O_END } },
  { "remote info", 1, "rados:POOL", cmd_remote_info, NULL, false,
    "the block objects of a remote pool: sizes, dedup, holders",
    "Usage: casdisk remote info rados:POOL [--ceph-conf FILE] [--ceph-id NAME] [--json]\n"
    "Count the block objects of RADOS pool POOL (the remote tier): references, holders\n"
    "(the disks referencing blocks) and their blocks, logical bytes (each block's\n"
    "plain bytes once per holder), unique (plain) and stored bytes, dedup and\n"
    "compression ratios.  Exit 0, or 1 if the cluster or pool cannot be read.\n"
    "  --ceph-conf FILE    the cluster's ceph.conf (default $CEPH_CONF, then librados's\n"
    "                      search: /etc/ceph/ceph.conf ...)\n"
    "  --ceph-id NAME      the client's id: client.NAME's key (default admin)\n"
    "  --timeout SECONDS   every cluster operation's timeout (default\n"
    "                      $CASDISK_RADOS_TIMEOUT, else 30)\n"
    "  --json              print one JSON object {\"pool\": {...}, \"holders\": [{...}]}\n",
    (const struct option[]) { O_CEPH_CONF, O_CEPH_ID, O_TIMEOUT, O_JSON, O_HELP, O_END } },
  { "remote check", 1, "rados:POOL", cmd_remote_check, NULL, false,
    "check a remote pool's block objects and their references",
    "Usage: casdisk remote check rados:POOL [--ceph-conf FILE] [--ceph-id NAME] [--json]\n"
    "Check every block object of RADOS pool POOL: its frame header, its cls_cas\n"
    "references against its ref.<holder> marks, at least one holder, and references\n"
    "whose holder object does not exist (leaks: 'casdisk remote gc' drops them).\n"
    "Prints each problem and a summary.  Exit 0 when clean, 1 when problems were\n"
    "found or the cluster failed.\n"
    "  --ceph-conf FILE    the cluster's ceph.conf (default $CEPH_CONF, then librados's\n"
    "                      search: /etc/ceph/ceph.conf ...)\n"
    "  --ceph-id NAME      the client's id: client.NAME's key (default admin)\n"
    "  --timeout SECONDS   every cluster operation's timeout (default\n"
    "                      $CASDISK_RADOS_TIMEOUT, else 30)\n"
    "  --json              print one JSON object {\"problems\": [...], \"clean\": ..., ...}\n",
    (const struct option[]) { O_CEPH_CONF, O_CEPH_ID, O_TIMEOUT, O_JSON, O_HELP, O_END } },
  { "remote scrub", 1, "rados:POOL", cmd_remote_scrub, NULL, false,
    "read and verify every block object of a remote pool",
    "Usage: casdisk remote scrub rados:POOL [--rate BYTES] [--ceph-conf FILE] [--ceph-id NAME]\n"
    "                                       [--json]\n"
    "Read every block object of RADOS pool POOL whole: check its frame (header and\n"
    "data CRC), decode it and compare the SHA-256 of its content with its name.\n"
    "Changes nothing.  Exit 0 when everything verified, 1 when problems were found\n"
    "or the cluster failed.\n"
    "  --rate BYTES        read at most BYTES per second (e.g. 50M; default no limit)\n"
    "  --ceph-conf FILE    the cluster's ceph.conf (default $CEPH_CONF, then librados's\n"
    "                      search: /etc/ceph/ceph.conf ...)\n"
    "  --ceph-id NAME      the client's id: client.NAME's key (default admin)\n"
    "  --timeout SECONDS   every cluster operation's timeout (default\n"
    "                      $CASDISK_RADOS_TIMEOUT, else 30)\n"
    "  --json              print one JSON object\n",
    (const struct option[]) { O_RATE, O_CEPH_CONF, O_CEPH_ID, O_TIMEOUT, O_JSON, O_HELP, O_END } },
  { "remote gc", 1, "rados:POOL", cmd_remote_gc, NULL, false,
    "drop a remote pool's leaked references",
    "Usage: casdisk remote gc rados:POOL [--grace SECONDS] [--dry-run] [--ceph-conf FILE]\n"
    "                                    [--ceph-id NAME] [--json]\n"
    "Drop every reference of a block object of RADOS pool POOL whose holder object\n"
    "does not exist, if the block object is older than the grace period; a block\n"
    "object goes with its last reference.  Never drops the reference of a holder\n"
    "that exists.  Prints what it dropped and a summary.  Exit 0, or 1 if anything\n"
    "failed.\n"
    "  --grace SECONDS     leave objects changed in the last SECONDS alone (default\n"
    "                      3600; 0: none)\n"
    "  --dry-run           report what would be dropped, change nothing\n"
    "  --ceph-conf FILE    the cluster's ceph.conf (default $CEPH_CONF, then librados's\n"
    "                      search: /etc/ceph/ceph.conf ...)\n"
    "  --ceph-id NAME      the client's id: client.NAME's key (default admin)\n"
    "  --timeout SECONDS   every cluster operation's timeout (default\n"
    "                      $CASDISK_RADOS_TIMEOUT, else 30)\n"
    "  --json              print one JSON object {\"dropped\": [...], ...}\n",
    (const struct option[]) { O_GRACE, O_DRY_RUN, O_CEPH_CONF, O_CEPH_ID, O_TIMEOUT, O_JSON,
                              O_HELP, O_END } },
};

static void
main_help (FILE *f)
{
  fprintf (f, "Usage: casdisk COMMAND [ARGS...]\n"
           "       casdisk --help | --version\n"
           "Manage casdisk stores: deduplicated, compressed virtual disks served over\n"
           "NBD by nbdkit's casdisk plugin.  Commands:\n");
  for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
    fprintf (f, "  %-16s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "Run 'casdisk COMMAND --help' for a command's options.  See casdisk(1).\n"
           "Exit status: 0 success, 1 failure or problems found, 2 usage error.\n");
}

/* A command without an online form, on a store a server holds. */
static int
in_use (const struct cmdline *c)
{
  fprintf (stderr, "%s %s: %s is in use: a server (nbdkit) is serving it.  Stop the server "
           "first, or use a command that works on a served store:", prog, c->cmd, c->args[0]);
  for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
    if (commands[i].online)
      fprintf (stderr, " '%s'", commands[i].name);
  fprintf (stderr, "\n");
  return EXIT_FAILURE;
}

/* Parse the options of command CMD from ARGV (ARGV[0] is the last word of
 * the command's name) and run it.
 */
static int
run_command (const struct command *cmd, int argc, char **argv)
{
  struct cmdline c = { .cmd = cmd->name };
  int opt;

  optind = 1;
  opterr = 0;
  /* GNU getopt permutes: options may come before or after the operands.
   * The leading ':' makes a missing option argument return ':'.
   */
  while ((opt = getopt_long (argc, argv, ":h", cmd->options, NULL)) != -1) {
    switch (opt) {
    case OPT_HELP: fputs (cmd->help, stdout); return 0;
    case OPT_JSON: c.json = true; break;
    case OPT_REPAIR: c.repair = true; break;
    case OPT_SIZE: c.size = optarg; break;
    case OPT_BLOCK_SIZE: c.block_size = optarg; break;
    case OPT_COMPRESSION: c.compression = optarg; break;
    case OPT_DISK: c.disk = optarg; break;
    case OPT_RATE: c.rate = optarg; break;
    case OPT_NOW: c.now = true; break;
    case OPT_EXISTING: c.existing = true; break;
    case OPT_DIRECT_IO: c.direct_io = true; break;
    case OPT_WORKERS: c.workers = optarg; break;
    case OPT_COUNT: c.count = optarg; break;
    case OPT_INTERVAL: c.interval = optarg; break;
    case OPT_CEPH_CONF: c.ceph_conf = optarg; break;
    case OPT_CEPH_ID: c.ceph_id = optarg; break;
    case OPT_TIMEOUT: c.timeout = optarg; break;
    case OPT_GRACE: c.grace = optarg; break;
    case OPT_DRY_RUN: c.dry_run = true; break;
    case ':':
      return usage_error (cmd->name, "option '%s' needs a value", argv[optind - 1]);
    default:
      return usage_error (cmd->name, "unknown option '%s'", argv[optind - 1]);
    }
  }
  c.nargs = argc - optind;
  c.args = argv + optind;
  if (c.nargs != cmd->nargs)
    return usage_error (cmd->name, "expected %s", cmd->operands);
  if (cmd->store) {
    const int fd = cas_control_connect (c.args[0]);
    if (fd >= 0) {
      const int r = cmd->online ? cmd->online (&c, fd) : in_use (&c);
      close (fd);
      return r;
    }
    if (errno != ENOENT && errno != ECONNREFUSED && errno != ENOTDIR)
      return EXIT_FAILURE;      /* cas_control_connect said why */
  }
  if (cmd->fn == NULL) {
    fprintf (stderr, "%s %s: no server is serving %s (nothing answers on its %s; or the "
             "server runs with control=false)%s\n", prog, cmd->name, c.args[0], CAS_CONTROL_SOCKET,
             strcmp (cmd->name, "status") == 0 ? "; 'casdisk info' reads an idle store" : "");
    return EXIT_FAILURE;
  }
  return cmd->fn (&c);
}

int
main (int argc, char **argv)
{
  cas_set_log (log_stderr);
  if (getenv ("CASDISK_DEBUG"))
    cas_set_debug (true);

  if (argc < 2) {
    main_help (stderr);
    return EXIT_USAGE;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 ||
      strcmp (argv[1], "help") == 0) {
    main_help (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "-V") == 0) {
    printf ("casdisk %s\n", PACKAGE_VERSION);
    return 0;
  }

  /* Commands of one word ("info") or two ("disk add"). */
  bool group = false;
  for (size_t i = 0; i < ARRAY_SIZE (commands); i++) {
    const char *name = commands[i].name, *space = strchr (name, ' ');
    const size_t len = space ? (size_t) (space - name) : strlen (name);

    if (strncmp (argv[1], name, len) != 0 || argv[1][len] != '\0')
      continue;
    if (!space)
      return run_command (&commands[i], argc - 1, argv + 1);
    group = true;
    if (argc > 2 && strcmp (argv[2], space + 1) == 0)
      return run_command (&commands[i], argc - 2, argv + 2);
  }
  if (group) {
    /* "casdisk disk" without a known subcommand: --help, or an error. */
    const size_t len = strlen (argv[1]);
    const bool help = argc > 2 && (strcmp (argv[2], "--help") == 0 || strcmp (argv[2], "-h") == 0);

    if (!help) {
      fprintf (stderr, "%s %s: expected one of:", prog, argv[1]);
      for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
        if (strncmp (commands[i].name, argv[1], len) == 0 && commands[i].name[len] == ' ')
          fprintf (stderr, " '%s'", commands[i].name + len + 1);
      fprintf (stderr, " (try '%s %s --help')\n", prog, argv[1]);
      return EXIT_USAGE;
    }
    for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
      if (strncmp (commands[i].name, argv[1], len) == 0 && commands[i].name[len] == ' ')
        fputs (commands[i].help, stdout);
    return 0;
  }
  fprintf (stderr, "%s: unknown command '%s' (try '%s --help')\n", prog, argv[1], prog);
  return EXIT_USAGE;
}
