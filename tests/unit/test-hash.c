/* Unit tests for hash.c: SHA-256 known answers (FIPS 180-2 examples),
 * the table key, hex formatting, and concurrent use; SipHash known answers
 * and the block key under each key function.
 */
#include <config.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "util/hash.h"

static void
expect_sha (const void *data, size_t len, const char *hex)
{
  struct cas_hash h;
  char out[2 * CAS_HASH_LEN + 1];

  memset (&h, 0xaa, sizeof h);
  cr_assert_eq (cas_hash_block (data, len, &h), 0);
  cas_hash_hex (&h, out);
  cr_assert_str_eq (out, hex);
}

Test (hash, abc)
{
  expect_sha ("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test (hash, empty)
{
  expect_sha ("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test (hash, two_blocks)
{
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

  expect_sha (m, strlen (m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test (hash, million_a)
{
  const size_t len = 1000000;
  char *m = malloc (len);

  cr_assert_not_null (m);
  memset (m, 'a', len);
  expect_sha (m, len, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free (m);
}

Test (hash, raw_bytes_and_key)
{
  static const uint8_t want[CAS_HASH_LEN] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
  };
  struct cas_hash h;

  cr_assert_eq (cas_hash_block ("abc", 3, &h), 0);
  cr_assert_arr_eq (h.b, want, CAS_HASH_LEN);
  /* The key is the first 8 bytes, little-endian. */
  cr_assert_eq (cas_hash_key (&h), UINT64_C(0xeacf018fbf1678ba));
}

Test (hash, hex_format)
{
  struct cas_hash h;
  char out[2 * CAS_HASH_LEN + 1];

  for (int i = 0; i < CAS_HASH_LEN; i++)
    h.b[i] = i * 8 + 7;         /* 07 0f 17 ... ff */
  memset (out, 'X', sizeof out);
  cas_hash_hex (&h, out);
  cr_assert_eq (strlen (out), 2 * CAS_HASH_LEN);
  cr_assert_eq (strncmp (out, "070f171f272f373f", 16), 0, "got %s", out);
  cr_assert_eq (strcmp (out + 60, "f7ff"), 0, "got %s", out);
}

Test (hash, one_bit_changes_the_hash)
{
  uint8_t block[4096] = { 0 };
  struct cas_hash a, b;

  cr_assert_eq (cas_hash_block (block, sizeof block, &a), 0);
  block[4095] = 1;
  cr_assert_eq (cas_hash_block (block, sizeof block, &b), 0);
  cr_assert_arr_neq (a.b, b.b, CAS_HASH_LEN);
  cr_assert_neq (cas_hash_key (&a), cas_hash_key (&b));
}

#define NTHREADS 8
static uint8_t data[NTHREADS][8192];

static void *
hash_thread (void *arg)
{
  const int t = (int) (intptr_t) arg;
  struct cas_hash *out = malloc (200 * sizeof *out);

  for (int i = 0; out && i < 200; i++)
    if (cas_hash_block (data[t], sizeof data[t], &out[i]) == -1) {
      free (out);
      return NULL;
    }
  return out;
}

Test (hash, concurrent)
{
  pthread_t th[NTHREADS];

  for (int t = 0; t < NTHREADS; t++)
    memset (data[t], 'a' + t, sizeof data[t]);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq (pthread_create (&th[t], NULL, hash_thread, (void *) (intptr_t) t), 0);
  for (int t = 0; t < NTHREADS; t++) {
    struct cas_hash *res, want;
    pthread_join (th[t], (void **) &res);
    cr_assert_not_null (res, "thread %d failed", t);
    cr_assert_eq (cas_hash_block (data[t], sizeof data[t], &want), 0);
    for (int i = 0; i < 200; i++)
      cr_assert_arr_eq (res[i].b, want.b, CAS_HASH_LEN, "thread %d item %d", t, i);
    free (res);
  }
}

/* ---- SipHash and block keys ---- */

/* The SipHash paper's test key 00 01 .. 0f and messages 00 01 .. (its
 * appendix: the empty message and the 15-byte one), SipHash-2-4.
 */
Test (siphash, reference_vectors_2_4)
{
  uint8_t k[16], m[15];

  for (int i = 0; i < 16; i++)
    k[i] = i;
  for (int i = 0; i < 15; i++)
    m[i] = i;
  cr_assert_eq (cas_siphash (k, m, 0, 2, 4), UINT64_C(0x726fdb47dd0e0e31));
  cr_assert_eq (cas_siphash (k, m, 15, 2, 4), UINT64_C(0xa129ca6149be45e5));
}

/* SipHash-1-3, the block key: CPython 3.11's hash() of a bytes object is
 * SipHash-1-3, under an all-zero key when PYTHONHASHSEED=0:
 *   PYTHONHASHSEED=0 python3 -c 'print(hash(b"hello world, a casdisk block"))'
 *   PYTHONHASHSEED=0 python3 -c 'print(hash(bytes(range(64))))'
 * (a tail of 4 bytes and none).
 */
Test (siphash, known_answers_1_3)
{
  static const uint8_t zero[16];
  const char *text = "hello world, a casdisk block";
  uint8_t m[64];

  for (int i = 0; i < 64; i++)
    m[i] = i;
  cr_assert_eq (cas_siphash (zero, text, strlen (text), 1, 3), UINT64_C(2522947171248508051));
  cr_assert_eq (cas_siphash (zero, m, 64, 1, 3), UINT64_C(8493894268803903686));
}

Test (siphash, block_key_by_function)
{
  static uint8_t block[65536];
  struct cas_keyfn a = { .fn = CAS_KEY_SIPHASH13 }, b = a, sha = { .fn = CAS_KEY_SHA256 };
  struct cas_hash h;
  uint64_t ka, kb, ks;

  for (size_t i = 0; i < sizeof block; i++)
    block[i] = i * 7 + (i >> 9);
  memset (a.secret, 1, sizeof a.secret);
  memset (b.secret, 2, sizeof b.secret);
  cr_assert_eq (cas_block_key (&a, block, sizeof block, &ka), 0);
  cr_assert_eq (ka, cas_siphash (a.secret, block, sizeof block, 1, 3));
  cr_assert_eq (cas_block_key (&b, block, sizeof block, &kb), 0);
  cr_assert_neq (ka, kb, "the secret does not change the key");
  cr_assert_eq (cas_block_key (&sha, block, sizeof block, &ks), 0);
  cr_assert_eq (cas_hash_block (block, sizeof block, &h), 0);
  cr_assert_eq (ks, cas_hash_key (&h), "SHA-256 stores keep the first 8 bytes of the SHA-256");
  block[65535] ^= 1;
  cr_assert_eq (cas_block_key (&a, block, sizeof block, &kb), 0);
  cr_assert_neq (ka, kb, "the last byte does not change the key");
}
