/* SHA-256 through libcrypto's EVP interface.  EVP_Digest picks the SHA-NI
 * or AVX2 implementation at run time; fetching the algorithm once avoids a
 * provider look-up per block.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>

#include <openssl/evp.h>

#include "hash.h"
#include "log.h"
#include "util.h"

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
