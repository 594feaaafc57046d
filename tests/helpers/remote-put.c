/* remote-put: store a raw image file's blocks as block objects of a RADOS
 * pool for one holder, through lib/remote/objects.h, for
 * tests/test-remote-cli.sh.
 *
 *   remote-put [-c CONF] [-p POOL] [-t TIMEOUT] [-z N]... HOLDER FILE
 *
 * Every 64 KiB block of FILE (the last may be shorter) becomes the block
 * object "blk.<sha256 of its bytes>" with a raw frame (flags 0), referenced
 * by HOLDER (put_ref).  -z N: block N (from 0) is stored as one zstd frame
 * instead (CAS_BLK_COMPRESSED, level 3); it must compress.  Prints one
 * line: "remote-put: HOLDER: B blocks, C created, S stored bytes written
 * in the frames it created"; exit 0, 1 on any failure, 2 on bad usage.
 * CONF defaults to $CEPH_CONF, POOL to $CEPH_POOL or "casdisk".
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casdisk.h"
#include "util/compress.h"
#include "format.h"
#include "util/hash.h"
#include "remote/objects.h"

#define BLK 65536u
#define MAX_Z 16

static int
usage (void)
{
  fprintf (stderr, "usage: remote-put [-c CONF] [-p POOL] [-t TIMEOUT] [-z N]... HOLDER FILE\n");
  return 2;
}

int
main (int argc, char **argv)
{
  struct cas_rados_opts o = { .pool = getenv ("CEPH_POOL") };
  long z[MAX_Z];
  int nz = 0, c;

  while ((c = getopt (argc, argv, "c:p:t:z:")) != -1) {
    switch (c) {
    case 'c': o.conf = optarg; break;
    case 'p': o.pool = optarg; break;
    case 't': o.op_timeout_s = atoi (optarg); break;
    case 'z':
      if (nz == MAX_Z)
        return usage ();
      z[nz++] = atol (optarg);
      break;
    default: return usage ();
    }
  }
  if (argc - optind != 2)
    return usage ();
  if (!o.pool)
    o.pool = "casdisk";
  const char *holder = argv[optind], *file = argv[optind + 1];

  int fd = open (file, O_RDONLY);
  if (fd == -1) {
    fprintf (stderr, "remote-put: %s: %m\n", file);
    return 1;
  }
  struct cas_rados *r;
  if (cas_rados_open (&o, &r) == -1)
    return 1;

  static uint8_t plain[BLK], comp[BLK], frame[CAS_RADOS_HDR_LEN + BLK];
  uint64_t blocks = 0, created = 0, stored = 0;
  int rc = 0;
  for (;;) {                    /* bounded: the file's size */
    ssize_t n = 0, k;
    while (n < (ssize_t) BLK && (k = read (fd, plain + n, BLK - n)) > 0)
      n += k;
    if (n == 0)
      break;
    bool compress = false;
    for (int i = 0; i < nz; i++)
      compress |= z[i] == (long) blocks;
    struct cas_hash h;
    if (cas_hash_block (plain, n, &h) == -1) {
      rc = 1;
      break;
    }
    const void *data = plain;
    uint32_t len = n, flags = 0, frame_len;
    if (compress) {
      long cl = cas_compress (comp, n - 1, plain, n, 3);
      if (cl <= 0) {
        fprintf (stderr, "remote-put: block %" PRIu64 " does not compress\n", blocks);
        rc = 1;
        break;
      }
      data = comp;
      len = cl;
      flags = CAS_BLK_COMPRESSED;
    }
    bool made = false;
    if (cas_rados_frame (flags, n, data, len, frame, sizeof frame, &frame_len) == -1 ||
        cas_rados_block_put_ref (r, h.b, holder, frame, frame_len, &made) == -1) {
      rc = 1;
      break;
    }
    blocks++;
    if (made) {
      created++;
      stored += len;
    }
    if (n < (ssize_t) BLK)
      break;
  }
  close (fd);
  cas_rados_close (r);
  if (rc == 0)
    printf ("remote-put: %s: %" PRIu64 " blocks, %" PRIu64 " created, %" PRIu64
            " stored bytes written in the frames it created\n", holder, blocks, created, stored);
  return rc;
}
