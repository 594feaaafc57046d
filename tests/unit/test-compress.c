/* Unit tests for compress.c: round trips at several levels, incompressible
 * data reported as "does not fit" (0), decompression errors (EIO), and the
 * per-thread contexts under concurrency.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "util/compress.h"

#define BS 65536

static void
quiet (bool error, const char *msg)
{
}

static void
setup (void)
{
  cas_set_log (quiet);
}

TestSuite (compress, .init = setup);

static void
fill_text (uint8_t *p, size_t len, unsigned seed)
{
  static const char *const words[] = {
    "block ", "store ", "journal ", "checkpoint ", "the ", "of ", "zstd ", "dedup\n",
  };
  size_t i = 0;

  while (i < len) {
    seed = seed * 1103515245u + 12345u;
    const char *w = words[(seed >> 16) % 8];
    for (; *w && i < len; w++)
      p[i++] = *w;
  }
}

static void
fill_random (uint8_t *p, size_t len, unsigned seed)
{
  uint64_t x = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;

  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x >> 32;
  }
}

static void
round_trip (const uint8_t *src, size_t len, int level, long *clen)
{
  uint8_t *c = malloc (len + 1024), *d = malloc (len);

  cr_assert (c && d);
  const long n = cas_compress (c, len + 1024, src, len, level);
  cr_assert_gt (n, 0, "level %d: cas_compress returned %ld", level, n);
  memset (d, 0x5a, len);
  cr_assert_eq (cas_decompress (d, len, c, n), 0, "level %d", level);
  cr_assert_arr_eq (d, src, len, "level %d: round trip changed the data", level);
  *clen = n;
  free (c);
  free (d);
}

Test (compress, text_round_trip_and_shrinks)
{
  uint8_t *src = malloc (BS);
  long n1, n3, n19;

  cr_assert_not_null (src);
  fill_text (src, BS, 1);
  round_trip (src, BS, 1, &n1);
  round_trip (src, BS, 3, &n3);
  round_trip (src, BS, 19, &n19);
  cr_assert_lt (n1, BS / 2, "text compressed to %ld bytes", n1);
  cr_assert_lt (n3, BS / 2);
  cr_assert_leq (n19, n1, "level 19 (%ld) bigger than level 1 (%ld)", n19, n1);
  free (src);
}

Test (compress, zeros_compress_to_almost_nothing)
{
  uint8_t *src = calloc (1, BS);
  long n;

  cr_assert_not_null (src);
  round_trip (src, BS, 3, &n);
  cr_assert_lt (n, 64, "64 KiB of zeroes took %ld bytes", n);
  free (src);
}

Test (compress, small_and_odd_sizes)
{
  uint8_t src[4097];
  long n;

  fill_text (src, sizeof src, 5);
  round_trip (src, 1, 3, &n);
  round_trip (src, 4096, 3, &n);
  round_trip (src, 4097, 3, &n);
}

Test (compress, incompressible_does_not_fit)
{
  uint8_t *src = malloc (BS), *dst = malloc (BS);

  cr_assert (src && dst);
  fill_random (src, BS, 1);
  /* The engine asks for at least one granule of savings. */
  errno = 0;
  cr_assert_eq (cas_compress (dst, BS - 512, src, BS, 3), 0);
  cr_assert_eq (cas_compress (dst, 16, src, BS, 3), 0);
  free (src);
  free (dst);
}

Test (compress, incompressible_with_room_round_trips)
{
  uint8_t *src = malloc (BS);
  long n;

  cr_assert_not_null (src);
  fill_random (src, BS, 2);
  round_trip (src, BS, 3, &n);
  cr_assert_geq (n, BS, "random data shrank to %ld bytes?", n);
  free (src);
}

Test (compress, decompress_wrong_length_is_eio)
{
  uint8_t src[8192], c[8192 + 512], d[16384];

  fill_text (src, sizeof src, 3);
  const long n = cas_compress (c, sizeof c, src, sizeof src, 3);
  cr_assert_gt (n, 0);
  /* Asking for more than the frame holds. */
  errno = 0;
  cr_assert_eq (cas_decompress (d, sizeof d, c, n), -1);
  cr_assert_eq (errno, EIO);
  /* Asking for less. */
  errno = 0;
  cr_assert_eq (cas_decompress (d, 4096, c, n), -1);
  cr_assert_eq (errno, EIO);
  /* Exactly right still works afterwards (the context is reusable). */
  cr_assert_eq (cas_decompress (d, sizeof src, c, n), 0);
  cr_assert_arr_eq (d, src, sizeof src);
}

Test (compress, decompress_garbage_is_eio)
{
  uint8_t junk[1000], d[4096];

  fill_random (junk, sizeof junk, 9);
  errno = 0;
  cr_assert_eq (cas_decompress (d, sizeof d, junk, sizeof junk), -1);
  cr_assert_eq (errno, EIO);
}

Test (compress, decompress_truncated_or_damaged_frame_is_eio)
{
  uint8_t src[4096], c[8192], d[4096];

  fill_text (src, sizeof src, 4);
  const long n = cas_compress (c, sizeof c, src, sizeof src, 3);
  cr_assert_gt (n, 8);
  errno = 0;
  cr_assert_eq (cas_decompress (d, sizeof d, c, n - 1), -1);
  cr_assert_eq (errno, EIO);
  errno = 0;
  cr_assert_eq (cas_decompress (d, sizeof d, c, 4), -1);
  cr_assert_eq (errno, EIO);
  c[0] ^= 0xff;                 /* the magic number */
  errno = 0;
  cr_assert_eq (cas_decompress (d, sizeof d, c, n), -1);
  cr_assert_eq (errno, EIO);
}

/* Each thread compresses and decompresses its own data many times with
 * its own contexts; shared contexts would corrupt the output.
 */
#define NTHREADS 6

static void *
worker (void *arg)
{
  const unsigned t = (unsigned) (uintptr_t) arg;
  uint8_t *src = malloc (BS), *c = malloc (BS + 1024), *d = malloc (BS);
  intptr_t bad = 0;

  if (!src || !c || !d)
    bad = 1000;
  for (int i = 0; !bad && i < 30; i++) {
    fill_text (src, BS, t * 100 + i);
    const long n = cas_compress (c, BS + 1024, src, BS, 1 + (i % 5));
    if (n <= 0 || cas_decompress (d, BS, c, n) == -1 || memcmp (d, src, BS) != 0)
      bad++;
  }
  free (src);
  free (c);
  free (d);
  return (void *) bad;
}

Test (compress, concurrent_threads_own_contexts)
{
  pthread_t th[NTHREADS];

  for (unsigned t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, worker, (void *) (uintptr_t) t), 0);
  for (unsigned t = 0; t < NTHREADS; t++) {
    void *bad;
    pthread_join (th[t], &bad);
    cr_assert_eq ((intptr_t) bad, 0, "thread %u: %ld failed round trips", t, (long) (intptr_t) bad);
  }
}
