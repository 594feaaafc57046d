/* A test-only journal writer: appends well-formed batches of chosen
 * records to the newest journal of a closed store (the fixture's STORE),
 * with correct CRC-32Cs, consecutive sequence numbers and BATCH framing,
 * as docs/format.md ("journal.G") and lib/format.h describe.  Nothing
 * checks that the records make sense: that is the point (test-replay.c
 * feeds replay records whose meaning contradicts the store).
 *
 *   struct jw w;
 *   jw_open (&w);                  the newest journal.G, after its last batch
 *   jw_begin (&w);                 a batch ...
 *   jw_block_del (&w, 7);          ... of records ...
 *   jw_end (&w);                   ... closed: its BATCH record is filled in
 *   jw_commit (&w);                written to the file (and freed)
 *
 * Also a reader of the store's checkpoint (jw_ckpt_read), so that a test
 * knows the ids, locations and checksums of the blocks it contradicts.
 * Every helper asserts (Criterion) on failure: call them from the test
 * process, not from a forked child.
 */
#ifndef CASDISK_TEST_JWRITER_H
#define CASDISK_TEST_JWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jw {
  char path[400];
  uint8_t *buf;                 /* the whole journal file, header included */
  size_t len, cap;
  uint64_t next_seq;            /* of the next record */
  size_t batch;                 /* offset of the open batch's BATCH record, or 0 */
  uint64_t batch_seq;           /* sequence number of its first record */
  unsigned nbatches, nrecords;  /* appended so far */
  uint64_t gen;                 /* of the journal being written */
};

void jw_open (struct jw *w);
void jw_begin (struct jw *w);
/* A raw record of any TYPE and payload (LEN <= cas_jrec_max_len (TYPE)). */
void jw_rec (struct jw *w, int type, const void *payload, uint16_t len);
void jw_end (struct jw *w);
void jw_commit (struct jw *w);
/* After jw_commit: start journal.G+1, continuing G's sequence numbers
 * (what a checkpoint interrupted before its rename leaves).
 */
void jw_next_generation (struct jw *w);

void jw_block_new (struct jw *w, uint64_t id, uint64_t offset, uint64_t key,
                   uint32_t stored_len, uint32_t flags, uint32_t crc);
void jw_block_del (struct jw *w, uint64_t id);
void jw_map_set (struct jw *w, uint32_t disk, uint64_t vblock, uint64_t id);
void jw_map_zero (struct jw *w, uint32_t disk, uint64_t first, uint64_t count);
void jw_disk_add (struct jw *w, uint32_t id, const char *name, uint64_t size);
void jw_block_move (struct jw *w, uint64_t id, uint64_t offset);
void jw_disk_clone (struct jw *w, uint32_t id, const char *name, uint64_t size,
                    uint32_t src, uint32_t flags);
void jw_disk_del (struct jw *w, uint32_t id);
void jw_patch (struct jw *w, uint32_t disk, uint64_t vblock, uint32_t off, const void *data,
               uint32_t len);

/* The store's checkpoint, decoded (only what the tests need). */
#define JW_MAX_BLOCKS 512
#define JW_MAX_DISKS  16
#define JW_MAX_VBLOCKS 256      /* per disk: the tests use small disks */
struct jw_block {
  uint64_t id, offset, key;
  uint32_t stored_len, flags, refcount, crc;
};
struct jw_disk {
  uint32_t flags;
  char name[65];
  uint64_t size;
  uint64_t map[JW_MAX_VBLOCKS]; /* block ids, 0 = zeroes */
};
struct jw_ckpt {
  uint64_t gen, next_seq, next_id;
  size_t ndisks, nblocks;
  struct jw_disk disks[JW_MAX_DISKS];
  struct jw_block blocks[JW_MAX_BLOCKS];
};
void jw_ckpt_read (struct jw_ckpt *c);
/* The store's key secret (superblock), block size, and the data file's size. */
void jw_secret (uint8_t secret[16]);
uint64_t jw_data_size (void);

#endif
