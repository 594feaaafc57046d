/* Loading a store (load.c): the record callbacks that the checkpoint
 * loader (ckpt.c) and the journal replay (journal.c) call for each record,
 * and the end of loading that opening (store.c) calls after them.
 *
 * No concurrency: the store being loaded is visible to nobody, so none of
 * these takes a lock.  Each returns 0, or -1 with errno set after
 * reporting through cas_problem (or logging an allocation failure).
 */
#ifndef CAS_LOAD_H
#define CAS_LOAD_H

#include <stdbool.h>
#include <stdint.h>

struct cas_block;
struct cas_store;
struct load_history;                /* load.c */

/* Open-addressing table id -> block, alive only while loading.  The
 * blocks enter the content index only at the end (cas_load_finish): until
 * then their index node holds loaded_refs (index.h).
 */
struct cas_load {
  struct cas_block **slot;
  uint64_t mask, n;
  bool indexed;                 /* the blocks are in the index now */
  uint64_t seq;                 /* the record being replayed; 0: the checkpoint */
  struct load_history *hist;    /* where blocks lay during the journal, or NULL */
};

/* Report a problem: in check mode count it and go on (returns 0); when
 * opening for real, log it as the error and fail (returns -1, EUCLEAN).
 */
int cas_problem (struct cas_store *s, const char *fmt, ...)
  __attribute__((format (printf, 2, 3)));

/* Loading (checkpoint and journal replay share these).  No concurrency. */

/* Replay is applying the record SEQ (0: loading the checkpoint). */
void cas_load_set_seq (struct cas_load *ld, uint64_t seq);
int cas_load_block_new (struct cas_store *s, struct cas_load *ld, uint64_t id, uint64_t offset,
                        const uint8_t hash[32], uint32_t stored_len, uint32_t flags,
                        uint32_t crc, uint32_t refcount);
int cas_load_block_del (struct cas_store *s, struct cas_load *ld, uint64_t id);
int cas_load_block_move (struct cas_store *s, struct cas_load *ld, uint64_t id, uint64_t offset);
int cas_load_map_set (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                      uint64_t id, bool from_journal);
int cas_load_map_zero (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                       uint64_t count);
int cas_load_disk_add (struct cas_store *s, uint32_t id, const char *name, uint64_t size,
                       uint32_t flags);
int cas_load_patch (struct cas_store *s, struct cas_load *ld, uint32_t disk, uint64_t v,
                    uint32_t off, const uint8_t *data, uint32_t len);
int cas_load_disk_clone (struct cas_store *s, struct cas_load *ld, uint32_t id,
                         const char *name, uint64_t size, uint32_t src, uint32_t flags);
int cas_load_disk_del (struct cas_store *s, uint32_t id);

/* Steps 3 and 4 of opening, and 5 when the store is writable: recount the
 * references from the maps, put the blocks into the index, check that no
 * two share space and that the journal placed none on space still in use,
 * rebuild the allocator and tidy the data file.  Once they are in the
 * index (ld->indexed), LD's blocks belong to it, even if a later step
 * fails.
 */
int cas_load_finish (struct cas_store *s, struct cas_load *ld);
/* Free what LD holds: its blocks not yet in the index, its table and its
 * history.  LD may be freed again.
 */
void cas_load_free (struct cas_load *ld);

/* At close, with no other thread left: punch the space between the
 * blocks and the extents durable metadata may still name, and cut the
 * data file after them (the tidying of step 5, shared).
 */
int cas_tidy_at_close (struct cas_store *s);

#endif
