/* gen: deterministic test data for the guest tests.
 *
 *   gen SEED BYTES random|text
 *
 * writes BYTES bytes to stdout, the same for the same arguments on any
 * machine: "random" is incompressible (splitmix64 output), "text" is words
 * from a small vocabulary chosen by the same generator, which zstd shrinks
 * several times.  Different seeds give different data in every 4 KiB, so
 * no two files of a test share a block by accident.
 *
 * Built statically by tests/guest/build.sh and run both inside the guest
 * (to write and to re-check files) and on the host (to know the expected
 * checksums independently of the guest).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state;

static uint64_t
next (void)
{
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static const char *const words[] = {
  "block", "cluster", "granule", "journal", "checkpoint", "refcount",
  "recycler", "compaction", "discard", "virtio", "guest", "extent",
  "superblock", "inode", "bitmap", "allocator", "flush", "barrier",
  "zstd", "sha256", "store", "disk", "export", "nbdkit", "qemu", "trim",
};

int
main (int argc, char **argv)
{
  static unsigned char buf[65536];
  unsigned long long left;
  char *end;
  int text;

  if (argc != 4 || (strcmp (argv[3], "random") && strcmp (argv[3], "text"))) {
    fprintf (stderr, "usage: gen SEED BYTES random|text\n");
    return 2;
  }
  state = strtoull (argv[1], &end, 0);
  if (*end) {
    fprintf (stderr, "gen: bad seed '%s'\n", argv[1]);
    return 2;
  }
  left = strtoull (argv[2], &end, 0);
  if (*end) {
    fprintf (stderr, "gen: bad size '%s'\n", argv[2]);
    return 2;
  }
  text = strcmp (argv[3], "text") == 0;
  /* Mix the seed so that nearby seeds start far apart. */
  state = next () ^ (text ? 0x7465787400000000ULL : 0);

  while (left > 0) {
    size_t n = 0;
    if (text) {
      /* Each line starts with its seed-dependent number: unique blocks. */
      while (n < sizeof buf - 128) {
        const uint64_t r = next ();
        if ((r & 15) == 0)
          n += snprintf ((char *) buf + n, 32, "\n%016llx ", (unsigned long long) r);
        else {
          const char *w = words[(r >> 8) % (sizeof words / sizeof words[0])];
          const size_t l = strlen (w);
          memcpy (buf + n, w, l);
          buf[n + l] = ' ';
          n += l + 1;
        }
      }
    }
    else {
      for (; n + 8 <= sizeof buf; n += 8) {
        const uint64_t r = next ();
        memcpy (buf + n, &r, 8);
      }
    }
    if (n > left)
      n = left;
    if (fwrite (buf, 1, n, stdout) != n) {
      perror ("gen: write");
      return 1;
    }
    left -= n;
  }
  if (fflush (stdout) != 0) {
    perror ("gen: write");
    return 1;
  }
  return 0;
}
