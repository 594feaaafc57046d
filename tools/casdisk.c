/* casdisk: the command-line tool for casdisk stores.
 *
 *   casdisk create DIR [--size SIZE] [--block-size SIZE] [--compression N|off] [--disk NAME]
 *   casdisk disk add DIR NAME SIZE
 *   casdisk disk list DIR [--json]
 *   casdisk info DIR [--json]
 *   casdisk check DIR [--json] [--repair]
 *   casdisk scrub DIR [--rate BYTES/s] [--json]
 *
 * Exit status: 0 success (or a clean store), 1 failure (or problems
 * found), 2 usage error.  Each subcommand is one function; the table at
 * the end maps names to them.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casdisk.h"
#include "progress.h"

#define EXIT_USAGE 2

static const char *prog = "casdisk";

static void
log_stderr (bool error, const char *msg)
{
  fprintf (stderr, "%s: %s%s\n", prog, error ? "" : "debug: ", msg);
}

static int
usage_error (const char *cmd, const char *msg)
{
  fprintf (stderr, "%s %s: %s\nTry '%s %s --help'.\n", prog, cmd, msg, prog, cmd);
  return EXIT_USAGE;
}

/* "1.5 GiB" */
static const char *
human (uint64_t bytes, char buf[32])
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = bytes;
  int u = 0;

  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  snprintf (buf, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

static double
ratio (uint64_t a, uint64_t b)
{
  return b ? (double) a / b : 1.0;
}

/* Parse the common "--json"/"--help" style options.  Returns the index of
 * the first operand, or -1 after printing help (*rc set).
 */
struct opts {
  bool json, repair, help;
  const char *size, *block_size, *compression, *disk, *rate;
};

static int
parse_opts (const char *cmd, const char *help, int argc, char **argv,
            const char *allowed, struct opts *o, int *rc)
{
  static const struct option longopts[] = {
    { "json", no_argument, NULL, 'j' },
    { "repair", no_argument, NULL, 'r' },
    { "help", no_argument, NULL, 'h' },
    { "size", required_argument, NULL, 's' },
    { "block-size", required_argument, NULL, 'b' },
    { "compression", required_argument, NULL, 'c' },
    { "disk", required_argument, NULL, 'd' },
    { "rate", required_argument, NULL, 'R' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  memset (o, 0, sizeof *o);
  optind = 1;
  opterr = 0;
  /* GNU getopt permutes: options may come before or after the operands. */
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'h') {
      fputs (help, stdout);
      *rc = 0;
      return -1;
    }
    if (c == '?' || strchr (allowed, c) == NULL) {
      char msg[128];
      snprintf (msg, sizeof msg, "unknown option '%s'", argv[optind - 1]);
      *rc = usage_error (cmd, msg);
      return -1;
    }
    switch (c) {
    case 'j': o->json = true; break;
    case 'r': o->repair = true; break;
    case 's': o->size = optarg; break;
    case 'b': o->block_size = optarg; break;
    case 'c': o->compression = optarg; break;
    case 'd': o->disk = optarg; break;
    case 'R': o->rate = optarg; break;
    }
  }
  return optind;
}

/* ---- create ---- */

static const char create_help[] =
  "Usage: casdisk create DIR [--size SIZE] [--block-size SIZE] [--compression N|off]\n"
  "                          [--disk NAME]\n"
  "Create a store in DIR (created if missing, else it must be empty) with one disk.\n"
  "  --size SIZE          size of the first disk (default 10G)\n"
  "  --block-size SIZE    dedup block size, a power of two from 4K to 64K (default 64K)\n"
  "  --compression N|off  zstd level 1..19, or off (default 3)\n"
  "  --disk NAME          name of the first disk (default disk0)\n";

static int
cmd_create (int argc, char **argv)
{
  struct opts o;
  struct cas_create_opts co;
  uint64_t size = UINT64_C(10) << 30, bs;
  int rc, i = parse_opts ("create", create_help, argc, argv, "sbcd", &o, &rc);

  if (i < 0)
    return rc;
  if (argc - i != 1)
    return usage_error ("create", "expected exactly one DIR");
  cas_create_opts_default (&co);
  if (o.size && (cas_parse_size (o.size, &size) == -1 || size == 0))
    return usage_error ("create", "--size: not a size (e.g. 10G)");
  if (o.block_size) {
    if (cas_parse_size (o.block_size, &bs) == -1 || bs > CAS_MAX_BLOCK_SIZE ||
        bs < CAS_MIN_BLOCK_SIZE || (bs & (bs - 1)))
      return usage_error ("create", "--block-size: must be a power of two from 4K to 64K");
    co.block_size = bs;
  }
  if (o.compression) {
    char *end;
    long level = strcmp (o.compression, "off") == 0 ? 0 : strtol (o.compression, &end, 10);
    if ((strcmp (o.compression, "off") && (*end || end == o.compression)) ||
        level < 0 || level > CAS_MAX_LEVEL)
      return usage_error ("create", "--compression: must be off or a level from 1 to 19");
    co.compression_level = level;
  }
  if (cas_store_create (argv[i], &co, o.disk ? o.disk : CAS_DEFAULT_DISK_NAME, size) == -1)
    return EXIT_FAILURE;
  printf ("created store %s: disk '%s' of %" PRIu64 " bytes, block size %" PRIu32
          ", compression %s\n", argv[i], o.disk ? o.disk : CAS_DEFAULT_DISK_NAME, size,
          co.block_size, co.compression_level ? o.compression ? o.compression : "3" : "off");
  return 0;
}

/* ---- disk ---- */

static const char disk_help[] =
  "Usage: casdisk disk add DIR NAME SIZE\n"
  "       casdisk disk list DIR [--json]\n"
  "Add a disk to a store (the store must not be in use), or list its disks.\n";

static int
cmd_disk (int argc, char **argv)
{
  struct opts o;
  int rc, i = parse_opts ("disk", disk_help, argc, argv, "j", &o, &rc);
  struct cas_open_opts oo;
  struct cas_store *s;

  if (i < 0)
    return rc;
  if (argc - i >= 1 && strcmp (argv[i], "add") == 0) {
    uint64_t size;
    if (argc - i != 4)
      return usage_error ("disk", "usage: casdisk disk add DIR NAME SIZE");
    if (cas_parse_size (argv[i + 3], &size) == -1 || size == 0)
      return usage_error ("disk", "SIZE: not a size (e.g. 10G)");
    s = cas_store_open (argv[i + 1], NULL);
    if (s == NULL)
      return EXIT_FAILURE;
    if (cas_disk_add (s, argv[i + 2], size) == NULL) {
      cas_store_close (s);
      return EXIT_FAILURE;
    }
    if (cas_store_close (s) == -1)
      return EXIT_FAILURE;
    printf ("added disk '%s' of %" PRIu64 " bytes\n", argv[i + 2], size);
    return 0;
  }
  if (argc - i == 2 && strcmp (argv[i], "list") == 0) {
    cas_open_opts_default (&oo);
    oo.readonly = true;
    s = cas_store_open (argv[i + 1], &oo);
    if (s == NULL)
      return EXIT_FAILURE;
    const size_t n = cas_store_ndisks (s);
    if (o.json)
      printf ("[");
    for (size_t k = 0; k < n; k++) {
      struct cas_disk *d = cas_store_disk (s, k);
      if (o.json)
        printf ("%s{\"name\": \"%s\", \"size\": %" PRIu64 "}", k ? ", " : "",
                cas_disk_name (d), cas_disk_size (d));
      else {
        char h[32];
        printf ("%-20s %14" PRIu64 "  %s\n", cas_disk_name (d), cas_disk_size (d),
                human (cas_disk_size (d), h));
      }
    }
    if (o.json)
      printf ("]\n");
    cas_store_close (s);
    return 0;
  }
  return usage_error ("disk", "expected 'add' or 'list'");
}

/* ---- info ---- */

static const char info_help[] =
  "Usage: casdisk info DIR [--json]\n"
  "Space accounting of a store and of each of its disks.  The store must not be\n"
  "in use by nbdkit.\n";

static void
print_disk_json (struct cas_disk *d, const struct cas_disk_stats *ds, bool comma)
{
  printf ("%s\n    {\"name\": \"%s\", \"virtual_size\": %" PRIu64 ", \"logical_bytes\": %" PRIu64
          ", \"unique_bytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64
          ", \"exclusive_bytes\": %" PRIu64 ", \"dedup_ratio\": %.4f, \"compression_ratio\": %.4f}",
          comma ? "," : "", cas_disk_name (d), ds->virtual_size, ds->logical_bytes,
          ds->unique_bytes, ds->stored_bytes, ds->exclusive_bytes,
          ratio (ds->logical_bytes, ds->unique_bytes), ratio (ds->unique_bytes, ds->stored_bytes));
}

static int
cmd_info (int argc, char **argv)
{
  struct opts o;
  int rc, i = parse_opts ("info", info_help, argc, argv, "j", &o, &rc);
  struct cas_open_opts oo;
  struct cas_store_stats st;
  struct cas_store *s;
  char h1[32], h2[32];

  if (i < 0)
    return rc;
  if (argc - i != 1)
    return usage_error ("info", "expected exactly one DIR");
  cas_open_opts_default (&oo);
  oo.readonly = true;
  s = cas_store_open (argv[i], &oo);
  if (s == NULL)
    return EXIT_FAILURE;
  if (cas_store_stats (s, &st) == -1) {
    cas_store_close (s);
    return EXIT_FAILURE;
  }
  if (o.json) {
    printf ("{\"store\": {\"dir\": \"%s\", \"block_size\": %" PRIu32 ", \"compression_level\": %d"
            ", \"ndisks\": %" PRIu64 ", \"logical_bytes\": %" PRIu64 ", \"nblocks\": %" PRIu64
            ", \"unique_bytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64
            ", \"dedup_ratio\": %.4f, \"compression_ratio\": %.4f"
            ", \"dead_blocks\": %" PRIu64 ", \"dead_bytes\": %" PRIu64 ", \"free_bytes\": %" PRIu64
            ", \"data_file_end\": %" PRIu64 ", \"physical_allocated\": %" PRIu64
            ", \"physical_apparent\": %" PRIu64 ", \"journal_bytes\": %" PRIu64
            ", \"quarantined\": %" PRIu64 "},\n \"disks\": [",
            argv[i], st.block_size, st.compression_level, st.ndisks, st.logical_bytes, st.nblocks,
            st.unique_bytes, st.stored_bytes, ratio (st.logical_bytes, st.unique_bytes),
            ratio (st.unique_bytes, st.stored_bytes), st.dead_blocks, st.dead_bytes,
            st.free_bytes, st.data_file_end, st.physical_allocated, st.physical_apparent,
            st.journal_bytes, st.quarantined);
  }
  else {
    printf ("store %s\n", argv[i]);
    printf ("  block size          %" PRIu32 "\n", st.block_size);
    printf ("  compression         %s%.0d\n", st.compression_level ? "zstd level " : "off",
            st.compression_level);
    printf ("  disks               %" PRIu64 "\n", st.ndisks);
    printf ("  logical bytes       %-12s %" PRIu64 "\n", human (st.logical_bytes, h1), st.logical_bytes);
    printf ("  unique bytes        %-12s %" PRIu64 "  (%" PRIu64 " blocks)\n",
            human (st.unique_bytes, h1), st.unique_bytes, st.nblocks - st.dead_blocks);
    printf ("  stored bytes        %-12s %" PRIu64 "\n", human (st.stored_bytes, h1), st.stored_bytes);
    printf ("  dedup ratio         %.2f\n", ratio (st.logical_bytes, st.unique_bytes));
    printf ("  compression ratio   %.2f\n", ratio (st.unique_bytes, st.stored_bytes));
    printf ("  awaiting GC         %-12s %" PRIu64 "  (%" PRIu64 " blocks)\n",
            human (st.dead_bytes, h1), st.dead_bytes, st.dead_blocks);
    printf ("  free in data file   %-12s %" PRIu64 "\n", human (st.free_bytes, h1), st.free_bytes);
    printf ("  quarantined blocks  %" PRIu64 "\n", st.quarantined);
    printf ("  physical size       %s allocated, %s apparent\n",
            human (st.physical_allocated, h1), human (st.physical_apparent, h2));
  }
  for (size_t k = 0; k < st.ndisks; k++) {
    struct cas_disk *d = cas_store_disk (s, k);
    struct cas_disk_stats ds;
    if (cas_disk_stats (d, &ds) == -1) {
      cas_store_close (s);
      return EXIT_FAILURE;
    }
    if (o.json)
      print_disk_json (d, &ds, k > 0);
    else {
      printf ("disk %s\n", cas_disk_name (d));
      printf ("  virtual size        %-12s %" PRIu64 "\n", human (ds.virtual_size, h1), ds.virtual_size);
      printf ("  logical bytes       %-12s %" PRIu64 "\n", human (ds.logical_bytes, h1), ds.logical_bytes);
      printf ("  unique bytes        %-12s %" PRIu64 "\n", human (ds.unique_bytes, h1), ds.unique_bytes);
      printf ("  stored bytes        %-12s %" PRIu64 "  (%s only in this disk)\n",
              human (ds.stored_bytes, h1), ds.stored_bytes, human (ds.exclusive_bytes, h2));
      printf ("  dedup ratio         %.2f\n", ratio (ds.logical_bytes, ds.unique_bytes));
      printf ("  compression ratio   %.2f\n", ratio (ds.unique_bytes, ds.stored_bytes));
    }
  }
  if (o.json)
    printf ("\n ]}\n");
  cas_store_close (s);
  return 0;
}

/* ---- check and scrub ---- */

struct report_ctx {
  bool json;
  uint64_t n;
  struct progress prog;
};

/* Problems go to stdout as lines, or as JSON strings. */
static void
print_problem (void *opaque, const char *msg)
{
  struct report_ctx *r = opaque;

  if (r->json) {
    printf ("%s\n    \"", r->n ? "," : "");
    for (const char *p = msg; *p; p++)
      if (*p == '"' || *p == '\\')
        printf ("\\%c", *p);
      else
        putchar (*p);
    putchar ('"');
  }
  else {
    if (r->prog.tty && r->prog.last_percent >= 0)
      fputc ('\n', stderr);
    printf ("problem: %s\n", msg);
  }
  fflush (stdout);
  r->n++;
}

static void
on_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct report_ctx *r = opaque;

  progress_update (&r->prog, done, total);
}

static const char check_help[] =
  "Usage: casdisk check DIR [--json] [--repair]\n"
  "Check a store offline: metadata checksums, every reference, every refcount,\n"
  "every stored block (checksum, decompression, SHA-256), leaked or doubly used\n"
  "space.  Exit 0 when clean, 1 when problems were found, 2 if the store could\n"
  "not be read.  --repair fixes what can be fixed without guessing (refcounts,\n"
  "leaked space, damaged journal tails), reports the rest, then checks again.\n";

static int
cmd_check (int argc, char **argv)
{
  struct opts o;
  int rc, i = parse_opts ("check", check_help, argc, argv, "jr", &o, &rc);
  struct report_ctx r = { 0 };
  struct cas_check_result res;
  int n;

  if (i < 0)
    return rc;
  if (argc - i != 1)
    return usage_error ("check", "expected exactly one DIR");
  r.json = o.json;
  progress_init (&r.prog, "check", o.json);
  if (o.json)
    printf ("{\"problems\": [");
  if (o.repair) {
    n = cas_store_repair (argv[i], print_problem, &r, &res);
    if (n >= 0 && !o.json)
      printf ("repair: done; checking again\n");
  }
  else
    n = cas_store_check_progress (argv[i], print_problem, on_progress, &r, &res);
  progress_done (&r.prog);
  if (o.json) {
    printf ("%s],\n \"clean\": %s, \"problems_left\": %" PRIu64 ", \"blocks_checked\": %" PRIu64
            ", \"references_checked\": %" PRIu64 ", \"bytes_verified\": %" PRIu64 "}\n",
            r.n ? "\n  " : "", n == 0 ? "true" : "false", n < 0 ? 0 : res.problems,
            res.blocks_checked, res.refs_checked, res.bytes_verified);
  }
  else if (n >= 0)
    printf ("%s: %" PRIu64 " blocks, %" PRIu64 " references, %" PRIu64 " bytes verified: %s\n",
            argv[i], res.blocks_checked, res.refs_checked, res.bytes_verified,
            n == 0 ? "clean" : "PROBLEMS FOUND");
  if (n < 0)
    return EXIT_USAGE;
  return n == 0 ? 0 : EXIT_FAILURE;
}

static const char scrub_help[] =
  "Usage: casdisk scrub DIR [--rate BYTES_PER_SECOND] [--json]\n"
  "Read back every stored block and metadata file of a store that is not in use\n"
  "and verify them (checksum, decompression, SHA-256).  Blocks that fail are\n"
  "quarantined: reads of them return I/O errors and dedup stops using them.\n"
  "--rate limits reading (e.g. 50M).  Exit 0 when everything verified, 1 when\n"
  "problems were found.\n";

static int
cmd_scrub (int argc, char **argv)
{
  struct opts o;
  int rc, i = parse_opts ("scrub", scrub_help, argc, argv, "jR", &o, &rc);
  struct report_ctx r = { 0 };
  struct cas_scrub_result res;
  struct cas_store *s;
  uint64_t rate = 0;
  int n;

  if (i < 0)
    return rc;
  if (argc - i != 1)
    return usage_error ("scrub", "expected exactly one DIR");
  if (o.rate && cas_parse_size (o.rate, &rate) == -1)
    return usage_error ("scrub", "--rate: not a number of bytes per second (e.g. 50M)");
  s = cas_store_open (argv[i], NULL);
  if (s == NULL)
    return EXIT_FAILURE;
  r.json = o.json;
  progress_init (&r.prog, "scrub", o.json);
  if (o.json)
    printf ("{\"problems\": [");
  n = cas_store_scrub (s, rate, on_progress, print_problem, &r, &res);
  progress_done (&r.prog);
  if (cas_store_close (s) == -1)
    n = n < 0 ? n : n + 1;
  if (o.json)
    printf ("%s],\n \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"corrupted\": %" PRIu64
            ", \"already_quarantined\": %" PRIu64 "}\n", r.n ? "\n  " : "",
            res.blocks, res.bytes, res.corrupted, res.already_quarantined);
  else if (n >= 0)
    printf ("%s: %" PRIu64 " blocks, %" PRIu64 " bytes verified, %" PRIu64
            " corrupted (quarantined), %" PRIu64 " quarantined earlier: %s\n",
            argv[i], res.blocks, res.bytes, res.corrupted, res.already_quarantined,
            n == 0 ? "clean" : "PROBLEMS FOUND");
  return n == 0 ? 0 : EXIT_FAILURE;
}

/* ---- main ---- */

static const struct command {
  const char *name;
  int (*fn) (int argc, char **argv);
  const char *summary;
} commands[] = {
  { "create", cmd_create, "create a store with a first disk" },
  { "disk",   cmd_disk,   "add or list disks" },
  { "info",   cmd_info,   "space accounting: sizes, dedup and compression ratios" },
  { "check",  cmd_check,  "offline consistency check (--repair to fix)" },
  { "scrub",  cmd_scrub,  "verify every stored block and metadata checksum" },
};

static void
main_help (FILE *f)
{
  fprintf (f, "Usage: casdisk COMMAND [ARGS...]\n"
           "Manage casdisk stores (deduplicated, compressed virtual disks served by\n"
           "nbdkit casdisk).  Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf (f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "Run 'casdisk COMMAND --help' for a command's options.  See casdisk(1).\n");
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
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    main_help (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("casdisk %s (on-disk format 1)\n", PACKAGE_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].fn (argc - 1, argv + 1);
  fprintf (stderr, "%s: unknown command '%s'\n", prog, argv[1]);
  main_help (stderr);
  return EXIT_USAGE;
}
