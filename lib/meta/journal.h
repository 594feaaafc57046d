/* The write-ahead journal (journal.c): records appended in memory under
 * jlock, flushed as batches after the data file is synced, replayed at
 * open; and the one door through which the data file is synced
 * (cas_data_sync, under sync_lock) and through which a failed store
 * refuses work (io_failed).
 *
 * Locking (state.h): jlock guards the appended records (active, next_seq,
 * next_id); flush_lock the journal file and the batch being written
 * (flushing, jfd, jpos, gen); sync_lock, a leaf, each fdatasync of the
 * data file with the io_failed store that follows a failure.
 */
#ifndef CAS_JOURNAL_H
#define CAS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cas_load;
struct cas_store;

/* jlock held.  Append one record; returns its seq. */
uint64_t cas_journal_append (struct cas_store *s, int type, const void *payload, uint16_t len);
/* A PATCH record: LEN bytes of DATA at OFF within block V of disk DISK. */
uint64_t cas_journal_append_patch (struct cas_store *s, uint32_t disk, uint64_t v, uint32_t off,
                                   const void *data, uint32_t len);
/* Write and sync every appended record (after syncing the data file). */
int cas_journal_sync (struct cas_store *s);
/* Sync the data file; the only way anything syncs it while the store is
 * open.  -1 + EIO if this or any earlier sync failed (io_failed).
 */
int cas_data_sync (struct cas_store *s);
/* -1 with errno = EIO (and a message) if the store has failed. */
int cas_check_failed (struct cas_store *s, const char *op);
int cas_journal_create (struct cas_store *s, uint64_t gen, uint64_t first_seq, int *fd);
/* flush_lock held (or no concurrency).  Preallocate headroom for s->jfd. */
void cas_journal_reserve (struct cas_store *s);
/* Replay journal.GEN into the store.  *SEQ is the expected first seq on
 * entry and the next seq on return; *END the end of the valid records.
 */
int cas_journal_replay (struct cas_store *s, struct cas_load *ld, uint64_t gen,
                        uint64_t *seq, uint64_t *end, bool *torn);
bool cas_journal_exists (const struct cas_store *s, uint64_t gen);
/* True if journal.GEN has no valid header and no complete batch: the
 * remains of a journal whose creation a crash interrupted.
 */
bool cas_journal_unborn (const struct cas_store *s, uint64_t gen);
void cas_journal_path (const struct cas_store *s, uint64_t gen, char *buf, size_t len);

#endif
