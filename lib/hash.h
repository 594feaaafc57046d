/* Block identity: SHA-256 of a block's uncompressed content, through
 * libcrypto (which uses the CPU's SHA extensions).  Two blocks with the same
 * hash are the same block: a guest cannot craft a collision.
 */
#ifndef CAS_HASH_H
#define CAS_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CAS_HASH_LEN 32

struct cas_hash {
  uint8_t b[CAS_HASH_LEN];
};

/* Returns 0, or -1 with errno set (libcrypto failure: ENOMEM). */
int cas_hash_block (const void *data, size_t len, struct cas_hash *out)
  __attribute__((nonnull));

/* A well-mixed 64-bit value for hash tables (the first 8 bytes). */
uint64_t cas_hash_key (const struct cas_hash *h) __attribute__((nonnull));

/* Lower-case hex, 64 characters plus NUL. */
void cas_hash_hex (const struct cas_hash *h, char out[2 * CAS_HASH_LEN + 1])
  __attribute__((nonnull));

#endif
