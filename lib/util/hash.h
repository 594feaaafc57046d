/* The key of a block's uncompressed content in the content index: 64
 * bits of a keyed SipHash-1-3 under the store's secret (format version 4),
 * or the first 8 bytes of its SHA-256 (stores created before).  Blocks
 * with the same key are the same block only if their bytes are (index.h),
 * so the key needs no collision resistance against someone who can
 * compute it; the secret (in the superblock, never shown to a guest) keeps
 * a guest from computing it, so that it cannot pile blocks onto one key.
 * SHA-256 goes through libcrypto, which uses the CPU's SHA extensions.
 */
#ifndef CAS_HASH_H
#define CAS_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CAS_HASH_LEN 32
#define CAS_KEY_LEN 8       /* bytes of it kept: the index key, the block records' hash field */

struct cas_hash {
  uint8_t b[CAS_HASH_LEN];
};

/* Key functions (the superblock's key function field). */
enum {
  CAS_KEY_SHA256 = 0,           /* the first 8 bytes of SHA-256 (versions 1 to 3) */
  CAS_KEY_SIPHASH13 = 1,        /* SipHash-1-3 keyed with the store's secret */
};
#define CAS_KEY_SECRET_LEN 16

struct cas_keyfn {
  uint32_t fn;                  /* CAS_KEY_* */
  uint8_t secret[CAS_KEY_SECRET_LEN];
};

/* The key of DATA (LEN bytes) under KF.  Returns 0, or -1 with errno set
 * (libcrypto failure: ENOMEM).
 */
int cas_block_key (const struct cas_keyfn *kf, const void *data, size_t len, uint64_t *key)
  __attribute__((nonnull));

/* SipHash with C compression and D finalization rounds (SipHash-C-D) of
 * DATA (LEN bytes) under the 128-bit key K.
 */
uint64_t cas_siphash (const uint8_t k[CAS_KEY_SECRET_LEN], const void *data, size_t len,
                      unsigned c, unsigned d) __attribute__((nonnull (1)));

/* Returns 0, or -1 with errno set (libcrypto failure: ENOMEM). */
int cas_hash_block (const void *data, size_t len, struct cas_hash *out)
  __attribute__((nonnull));

/* The key: the first CAS_KEY_LEN bytes, little-endian. */
uint64_t cas_hash_key (const struct cas_hash *h) __attribute__((nonnull));

/* The key of a block as hex (the first 16 characters of the hash's). */
void cas_key_hex (uint64_t key, char out[2 * CAS_KEY_LEN + 1]);

/* Lower-case hex, 64 characters plus NUL. */
void cas_hash_hex (const struct cas_hash *h, char out[2 * CAS_HASH_LEN + 1])
  __attribute__((nonnull));

#endif
