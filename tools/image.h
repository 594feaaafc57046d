/* Raw images in and out of a disk (casdisk import, casdisk export). */
#ifndef CASDISK_IMAGE_H
#define CASDISK_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "casdisk.h"
#include "progress.h"

struct image_result {
  uint64_t size;                /* bytes of the image (import) or disk (export) */
  uint64_t data_bytes;          /* bytes written: non-zero blocks */
  uint64_t zero_bytes;          /* bytes skipped: holes and all-zero blocks */
};

/* Bytes of the regular file or block device FD (-1 with a message on error). */
int image_size (int fd, const char *path, uint64_t *size) __attribute__((nonnull));

/* Copy the image FD (SIZE bytes) into the first SIZE bytes of disk D.
 * Holes (found with SEEK_DATA/SEEK_HOLE) are not read; they and all-zero
 * blocks are not written, or, when ZERO_HOLES (D had content before),
 * zeroed (released).  BLOCK_SIZE is the store's.
 */
int image_import (struct cas_disk *d, uint32_t block_size, int fd, const char *path,
                  uint64_t size, bool zero_holes, struct progress *prog,
                  struct image_result *res)
  __attribute__((nonnull));

/* Copy disk D into FD.  A regular file is made sparse: it is cut to the
 * disk's size and only non-zero blocks are written; anything else (a
 * block device) gets every byte.
 */
int image_export (struct cas_disk *d, uint32_t block_size, int fd, const char *path,
                  struct progress *prog, struct image_result *res)
  __attribute__((nonnull));

#endif
