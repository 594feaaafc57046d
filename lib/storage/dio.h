/* Direct I/O on the data file: a second descriptor opened with O_DIRECT,
 * and batches of transfers submitted together with libaio.
 *
 * O_DIRECT wants the file offset, the length and the buffer's address
 * aligned to what the file system asks (statx STATX_DIOALIGN).  The data
 * file's unit of space is the granule (CAS_GRANULE, 512 bytes) and every
 * stored block starts on one, so direct I/O is used only where the file
 * system's offset alignment is at most a granule: then a transfer rounded
 * up to the alignment stays inside the block's own granules.
 */
#ifndef CAS_DIO_H
#define CAS_DIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cas_dio;

/* One transfer of a batch.  OFF is granule aligned; BUF comes from
 * cas_dio_alloc and holds round_up (LEN, CAS_GRANULE) bytes; LEN is what
 * matters.  A read transfers at least LEN bytes (a read ending in the
 * partial last granule of the file may stop at its end); a write writes
 * round_up (LEN, alignment) bytes of BUF, so the caller zeroes the padding.
 */
struct cas_dio_op {
  void *buf;
  uint64_t off;
  uint32_t len;
};

/* Open PATH (the data file) for direct I/O and set up the io contexts.
 * Fails (-1, errno EINVAL, logged with the numbers) when the file system
 * does not report its alignment (taken as 4096) or asks for more than a
 * granule, or refuses O_DIRECT.  Any thread; no lock.
 */
int cas_dio_open (const char *path, bool readonly, struct cas_dio **out)
  __attribute__((nonnull));
/* No transfer may be running. */
void cas_dio_close (struct cas_dio *dio);

/* The file system's offset alignment (a power of two, at most a granule). */
uint32_t cas_dio_align (const struct cas_dio *dio) __attribute__((nonnull));
/* The O_DIRECT descriptor (for messages and the I/O log; do not close). */
int cas_dio_fd (const struct cas_dio *dio) __attribute__((nonnull));

/* A buffer for transfers of up to LEN bytes, aligned for any file system
 * this module accepts (4096 bytes); its bytes are not initialised.  Free with free().  NULL on ENOMEM
 * (logged).
 */
void *cas_dio_alloc (size_t len);

/* Submit the N transfers of OPS at once and wait for all of them.  Any
 * thread; takes one io context of the pool for the duration (a leaf lock).
 * -1 with errno set and one message (WHAT names the file) if any failed;
 * the others have completed by then.
 */
int cas_dio_read (struct cas_dio *dio, const struct cas_dio_op *ops, unsigned n,
                  const char *what) __attribute__((nonnull));
int cas_dio_write (struct cas_dio *dio, const struct cas_dio_op *ops, unsigned n,
                   const char *what) __attribute__((nonnull));

#endif
