/* Block compression with zstd: one compression and one decompression
 * context per thread, created on first use and freed when the thread exits.
 */
#ifndef CAS_COMPRESS_H
#define CAS_COMPRESS_H

#include <stddef.h>

/* Compress SRC (LEN bytes) into DST (capacity CAP) at LEVEL (1..19).
 * Returns the compressed length, or 0 if the result would not fit in CAP
 * (the caller then stores the block raw), or -1 with errno set on error.
 */
long cas_compress (void *dst, size_t cap, const void *src, size_t len, int level)
  __attribute__((nonnull));

/* Decompress exactly OUT_LEN bytes.  Returns 0, or -1 with errno = EIO if
 * SRC is not a valid zstd frame of exactly OUT_LEN bytes.
 */
int cas_decompress (void *dst, size_t out_len, const void *src, size_t len)
  __attribute__((nonnull));

#endif
