/* The data file's transfers (store_dio.c): the reads of stored blocks in
 * direct-I/O mode (through dio.c, libaio, and bcache.c with cache=SIZE),
 * the one door for reading and writing data-file bytes in either mode
 * (cas_data_read, cas_data_write), the early writeback of buffered writes,
 * and the verdict on a stored block that fails its checks
 * (cas_stored_corrupted).  No store lock is held here but merge_lock,
 * briefly, to wake the merge thread; dio.c's context locks and bcache.c's
 * shard locks are leaves.
 */
#ifndef CAS_STORE_DIO_H
#define CAS_STORE_DIO_H

#include <stdint.h>

struct cas_block;
struct cas_disk;
struct cas_store;

/* B's stored bytes at OFFSET are wrong: quarantine B, count it, log WHAT
 * and where; returns -1 with errno = EIO.
 */
int cas_stored_corrupted (struct cas_store *s, struct cas_block *b, uint64_t offset,
                          const char *what);

/* Direct-I/O mode only (s->dio).  rcu_read_lock held.  cas_read_stored. */
int cas_dio_read_stored (struct cas_store *s, struct cas_block *b, void *out);
/* Direct-I/O mode only.  Read [OFFSET, +COUNT) of D (range checked) into
 * BUF, submitting the transfers of up to 32 blocks at once.  No lock held.
 */
int cas_dio_read_range (struct cas_disk *d, uint8_t *buf, uint32_t count, uint64_t offset);
/* Block B (may be NULL) now holds CONTENT (block_size bytes): keep it in
 * the block cache if there is one.
 */
void cas_dio_remember (struct cas_store *s, const struct cas_block *b, const void *content);
/* Read LEN bytes at OFF (granule aligned) of the data file: pread, or in
 * direct-I/O mode an aligned read through a bounce buffer.
 */
int cas_data_read (struct cas_store *s, void *buf, uint32_t len, uint64_t off);
/* Write LEN bytes at OFF (granule aligned; space the caller owns, up to
 * the end of LEN's last granule): pwrite, or in direct-I/O mode an aligned
 * write padded with zeroes to the end of its last granule.  Every write of
 * data to the data file goes through here: in direct-I/O mode a buffered
 * write would leave dirty pages that an O_DIRECT write in flight to a
 * neighbouring granule of the same page cannot drop (design.md).
 */
int cas_data_write (struct cas_store *s, const void *stored, uint32_t len, uint64_t off);
#define CAS_WB_BYTES (8u << 20)     /* buffered data written per early writeback */
void cas_writeback_note (struct cas_store *s, uint32_t len);
void cas_writeback_start (struct cas_store *s);

#endif
