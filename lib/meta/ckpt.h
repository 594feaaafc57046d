/* Checkpoints (ckpt.c): the whole metadata serialised into one file,
 * parsed back through the loading callbacks of load.h.  No locks here:
 * the caller of cas_ckpt_serialize excludes writers (ckpt_lock for
 * writing and flush_lock, store.c), loading is alone.
 */
#ifndef CAS_CKPT_H
#define CAS_CKPT_H

#include <stddef.h>
#include <stdint.h>

struct cas_load;
struct cas_store;

/* Serialise the whole metadata (writers excluded by the caller). */
int cas_ckpt_serialize (struct cas_store *s, uint64_t gen, uint64_t next_seq,
                        uint8_t **buf, size_t *len);
int cas_ckpt_load (struct cas_store *s, struct cas_load *ld, const uint8_t *buf, size_t len,
                   uint64_t *gen, uint64_t *next_seq);
int cas_ckpt_write_empty (const char *dir, const uint8_t uuid[16], const char *disk,
                          uint64_t size, uint32_t block_size);

#endif
