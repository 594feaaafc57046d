/* SHA-256 of a block's uncompressed content, through libcrypto (which
 * uses the CPU's SHA extensions).  Its first CAS_KEY_LEN bytes are the
 * block's key in the content index; blocks with the same key are the same
 * block only if their bytes are (index.h).
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
