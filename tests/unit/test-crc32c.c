/* Unit tests for crc32c.c: known vectors (RFC 3720 B.4), continuation,
 * and agreement with a bit-at-a-time reference at every length and
 * alignment (the SSE4.2 path handles 8 bytes at a time plus a tail).
 */
#include <config.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "util/crc32c.h"

/* The definition: reflected CRC-32C, one bit at a time. */
static uint32_t
crc_ref (uint32_t crc, const uint8_t *p, size_t len)
{
  crc = ~crc;
  while (len--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
  }
  return ~crc;
}

static void
fill_random (uint8_t *p, size_t len, unsigned seed)
{
  for (size_t i = 0; i < len; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = seed >> 16;
  }
}

Test (crc32c, check_value)
{
  cr_assert_eq (cas_crc32c (0, "123456789", 9), 0xE3069283u);
}

Test (crc32c, empty)
{
  cr_assert_eq (cas_crc32c (0, "", 0), 0);
  /* An empty continuation leaves the CRC unchanged. */
  cr_assert_eq (cas_crc32c (0xE3069283u, "x", 0), 0xE3069283u);
}

Test (crc32c, rfc3720_vectors)
{
  uint8_t buf[32];

  memset (buf, 0, sizeof buf);
  cr_assert_eq (cas_crc32c (0, buf, 32), 0x8A9136AAu);
  memset (buf, 0xff, sizeof buf);
  cr_assert_eq (cas_crc32c (0, buf, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; i++)
    buf[i] = i;
  cr_assert_eq (cas_crc32c (0, buf, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; i++)
    buf[i] = 31 - i;
  cr_assert_eq (cas_crc32c (0, buf, 32), 0x113FDB5Cu);
}

Test (crc32c, matches_reference_all_lengths_and_alignments)
{
  uint8_t buf[300];

  fill_random (buf, sizeof buf, 1);
  for (size_t align = 0; align < 8; align++)
    for (size_t len = 0; len + align <= 280; len++)
      cr_assert_eq (cas_crc32c (0, buf + align, len), crc_ref (0, buf + align, len),
                    "align %zu len %zu", align, len);
}

Test (crc32c, continuation_equals_one_shot)
{
  const size_t len = 65536 + 13;
  uint8_t *buf = malloc (len);

  cr_assert_not_null (buf);
  fill_random (buf, len, 7);
  const uint32_t whole = cas_crc32c (0, buf, len);
  cr_assert_eq (whole, crc_ref (0, buf, len));
  const size_t cuts[] = { 0, 1, 7, 8, 9, 4096, 65535, len };
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    const uint32_t c = cas_crc32c (cas_crc32c (0, buf, cuts[i]), buf + cuts[i], len - cuts[i]);
    cr_assert_eq (c, whole, "split at %zu", cuts[i]);
  }
  free (buf);
}

Test (crc32c, detects_every_single_bit_flip)
{
  uint8_t buf[512];

  fill_random (buf, sizeof buf, 3);
  const uint32_t good = cas_crc32c (0, buf, sizeof buf);
  for (size_t bit = 0; bit < 8 * sizeof buf; bit++) {
    buf[bit / 8] ^= 1u << (bit % 8);
    cr_assert_neq (cas_crc32c (0, buf, sizeof buf), good, "bit %zu", bit);
    buf[bit / 8] ^= 1u << (bit % 8);
  }
}

/* Concurrent first use: the table and CPU detection are set up once. */
#define NTHREADS 8
static uint8_t shared[4096];

static void *
crc_thread (void *arg)
{
  uint32_t *out = arg;

  for (int i = 0; i < 100; i++)
    out[i] = cas_crc32c (0, shared, 1 + i * 37);
  return NULL;
}

Test (crc32c, concurrent_first_use)
{
  pthread_t t[NTHREADS];
  static uint32_t res[NTHREADS][100];

  fill_random (shared, sizeof shared, 11);
  for (int i = 0; i < NTHREADS; i++)
    cr_assert_eq (pthread_create (&t[i], NULL, crc_thread, res[i]), 0);
  for (int i = 0; i < NTHREADS; i++)
    pthread_join (t[i], NULL);
  for (int i = 0; i < NTHREADS; i++)
    for (int k = 0; k < 100; k++)
      cr_assert_eq (res[i][k], crc_ref (0, shared, 1 + k * 37), "thread %d item %d", i, k);
}
