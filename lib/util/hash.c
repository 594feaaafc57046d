/* Block keys (hash.h): SHA-256 through libcrypto's EVP interface
 * (EVP_Digest picks the SHA-NI or AVX2 implementation at run time;
 * fetching the algorithm once avoids a provider look-up per block), and
 * SipHash, written from its specification (Aumasson and Bernstein,
 * "SipHash: a fast short-input PRF", 2012).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/hash.h"
#include "util/log.h"
#include "util/util.h"

static EVP_MD *sha256;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void
fetch (void)
{
  sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
}

int
cas_hash_block (const void *data, size_t len, struct cas_hash *out)
{
  unsigned int n = 0;

  pthread_once (&fetch_once, fetch);
  if (sha256 == NULL ||
      EVP_Digest (data, len, out->b, &n, sha256, NULL) != 1 ||
      n != CAS_HASH_LEN) {
    errno = ENOMEM;
    cas_error ("SHA-256 failed in libcrypto");
    return -1;
  }
  return 0;
}

/* ---- SipHash ---- */

/* A little-endian word: one load on little-endian machines (get_le64's
 * byte loop is not always turned into one, and this is the hot loop).
 */
static inline uint64_t
load_le64 (const uint8_t *p)
{
  uint64_t x;

  memcpy (&x, p, sizeof x);
  return le64toh (x);
}

static inline uint64_t
rotl (uint64_t x, unsigned b)
{
  return (x << b) | (x >> (64 - b));
}

/* One SipRound: four add-rotate-xor steps over the state. */
static inline void
sip_round (uint64_t v[4])
{
  v[0] += v[1]; v[1] = rotl (v[1], 13); v[1] ^= v[0]; v[0] = rotl (v[0], 32);
  v[2] += v[3]; v[3] = rotl (v[3], 16); v[3] ^= v[2];
  v[0] += v[3]; v[3] = rotl (v[3], 21); v[3] ^= v[0];
  v[2] += v[1]; v[1] = rotl (v[1], 17); v[1] ^= v[2]; v[2] = rotl (v[2], 32);
}

static inline void
sip_compress (uint64_t v[4], uint64_t m, unsigned c)
{
  v[3] ^= m;
  for (unsigned r = 0; r < c; r++)
    sip_round (v);
  v[0] ^= m;
}

/* Inlined with constant round counts, so that the rounds unroll (with
 * run-time counts and byte-by-byte loads, this took three times as long).
 */
static inline __attribute__((always_inline)) uint64_t
siphash (const uint8_t k[CAS_KEY_SECRET_LEN], const void *data, size_t len,
         unsigned c, unsigned d)
{
  const uint8_t *p = data;
  const uint64_t k0 = get_le64 (k), k1 = get_le64 (k + 8);
  /* The initial state: the key xored with "somepseudorandomlygeneratedbytes". */
  uint64_t v[4] = {
    k0 ^ UINT64_C(0x736f6d6570736575), k1 ^ UINT64_C(0x646f72616e646f6d),
    k0 ^ UINT64_C(0x6c7967656e657261), k1 ^ UINT64_C(0x7465646279746573),
  };
  size_t i;

  for (i = 0; i + 8 <= len; i += 8)
    sip_compress (v, load_le64 (p + i), c);
  /* The last word: the 0 to 7 bytes left, and the length's low byte on top. */
  uint64_t last = (uint64_t) (len & 0xff) << 56;
  for (unsigned j = 0; i + j < len; j++)
    last |= (uint64_t) p[i + j] << (8 * j);
  sip_compress (v, last, c);
  v[2] ^= 0xff;
  for (unsigned r = 0; r < d; r++)
    sip_round (v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t
cas_siphash (const uint8_t k[CAS_KEY_SECRET_LEN], const void *data, size_t len,
             unsigned c, unsigned d)
{
  if (c == 1 && d == 3)
    return siphash (k, data, len, 1, 3);
  if (c == 2 && d == 4)
    return siphash (k, data, len, 2, 4);
  return siphash (k, data, len, c, d);
}

/* ---- keys ---- */

int
cas_block_key (const struct cas_keyfn *kf, const void *data, size_t len, uint64_t *key)
{
  struct cas_hash h;

  switch (kf->fn) {
  case CAS_KEY_SIPHASH13:
    *key = siphash (kf->secret, data, len, 1, 3);
    return 0;
  case CAS_KEY_SHA256:
    if (cas_hash_block (data, len, &h) == -1)
      return -1;
    *key = cas_hash_key (&h);
    return 0;
  }
  abort ();                     /* read_superblock refuses other functions */
}

uint64_t
cas_hash_key (const struct cas_hash *h)
{
  return get_le64 (h->b);
}

void
cas_key_hex (uint64_t key, char out[2 * CAS_KEY_LEN + 1])
{
  static const char digits[] = "0123456789abcdef";

  for (int i = 0; i < CAS_KEY_LEN; i++) {
    const unsigned byte = (key >> (8 * i)) & 0xff;   /* little-endian: byte i of the hash */
    out[2 * i] = digits[byte >> 4];
    out[2 * i + 1] = digits[byte & 15];
  }
  out[2 * CAS_KEY_LEN] = '\0';
}

void
cas_hash_hex (const struct cas_hash *h, char out[2 * CAS_HASH_LEN + 1])
{
  static const char digits[] = "0123456789abcdef";

  for (int i = 0; i < CAS_HASH_LEN; i++) {
    out[2 * i] = digits[h->b[i] >> 4];
    out[2 * i + 1] = digits[h->b[i] & 15];
  }
  out[2 * CAS_HASH_LEN] = '\0';
}
