/* Block-size sweep: import a raw image into a fresh store at every block
 * size and report what each costs and saves.  Used to choose the default
 * block size (docs/design.md).
 *
 *   bench/blocksize IMAGE [IMAGE2]   (IMAGE2, if given, goes into a second disk)
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casdisk.h"
#include "meta/index.h"
#include "util/util.h"

static int
import (struct cas_disk *d, const char *path)
{
  FILE *f = fopen (path, "r");
  static char buf[1 << 20];
  uint64_t off = 0;
  size_t n;

  if (f == NULL) {
    perror (path);
    return -1;
  }
  while ((n = fread (buf, 1, sizeof buf, f)) > 0) {
    if (cas_disk_write (d, buf, n, off) == -1)
      return -1;
    off += n;
  }
  fclose (f);
  return 0;
}

int
main (int argc, char **argv)
{
  struct stat st;
  char dir[] = "/tmp/casdisk-bsXXXXXX";

  if (argc < 2 || stat (argv[1], &st) == -1) {
    fprintf (stderr, "usage: %s IMAGE [IMAGE2]\n", argv[0]);
    return 2;
  }
  printf ("%-6s %10s %12s %12s %8s %8s %10s %9s\n", "block", "blocks", "unique MiB",
          "stored MiB", "dedup", "compr", "index KiB", "MiB/s");
  for (uint32_t bs = CAS_MIN_BLOCK_SIZE; bs <= CAS_MAX_BLOCK_SIZE; bs *= 2) {
    struct cas_create_opts co;
    struct cas_store_stats ss;
    char cmd[256];

    if (mkdtemp (dir) == NULL)
      return 1;
    cas_create_opts_default (&co);
    co.block_size = bs;
    if (cas_store_create (dir, &co, "a", round_up (st.st_size, bs)) == -1)
      return 1;
    struct cas_store *s = cas_store_open (dir, NULL);
    if (s == NULL)
      return 1;
    const uint64_t t0 = cas_now_ns ();
    if (import (cas_disk_find (s, "a"), argv[1]) == -1)
      return 1;
    if (argc > 2) {
      struct stat st2;
      if (stat (argv[2], &st2) == -1)
        return 1;
      struct cas_disk *b = cas_disk_add (s, "b", round_up (st2.st_size, bs));
      if (b == NULL || import (b, argv[2]) == -1)
        return 1;
    }
    if (cas_store_flush (s) == -1)
      return 1;
    const double secs = (cas_now_ns () - t0) / 1e9;
    cas_store_stats (s, &ss);
    printf ("%-6u %10" PRIu64 " %12.1f %12.1f %8.2f %8.2f %10.0f %9.0f\n", bs / 1024 * 1024 == bs ? bs : bs,
            ss.nblocks, ss.unique_bytes / 1048576.0, ss.stored_bytes / 1048576.0,
            ss.unique_bytes ? (double) ss.logical_bytes / ss.unique_bytes : 1.0,
            ss.stored_bytes ? (double) ss.unique_bytes / ss.stored_bytes : 1.0,
            ss.nblocks * (double) sizeof (struct cas_block) / 1024 +
            ss.logical_bytes / bs * 8.0 / 1024,
            ss.logical_bytes / 1048576.0 / secs);
    cas_store_close (s);
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    if (system (cmd) != 0)
      return 1;
    strcpy (dir, "/tmp/casdisk-bsXXXXXX");
  }
  return 0;
}
