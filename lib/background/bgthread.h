/* The background thread (bgthread.c): once a second a round of GC,
 * flush, compaction, cut and checkpoint; and compactions on request.
 * bg_lock guards bg_stop and the compaction tickets, with bg_cond and
 * bg_done; recycle_lock is held across each round of background space
 * work (state.h).
 */
#ifndef CAS_BGTHREAD_H
#define CAS_BGTHREAD_H

#include <stdbool.h>
#include <stdint.h>

struct cas_store;

int cas_gc_start (struct cas_store *s);
void cas_gc_stop (struct cas_store *s);
/* One round of background work (recycle_lock held): GC, release, moves,
 * cut.  FORCE_COMPACT: compact even below compact_after.
 */
void cas_gc_round (struct cas_store *s, bool force_compact);

/* Ask the background thread to compact now: free the dead blocks whose
 * gc-delay has passed (never the others), move blocks from the tail at
 * recycle_rate ignoring compact_after, release and cut the file.  Waits
 * for the end, calling PROGRESS (may be NULL) about once a second with
 * the bytes moved so far; stops waiting (ECANCELED) when *CANCEL becomes
 * true, the compaction going on in the background.  Returns the bytes
 * moved, or -1 (EINVAL when the background thread is not running).
 */
int64_t cas_gc_compact_now (struct cas_store *s, const bool *cancel,
                            void (*progress) (void *opaque, uint64_t moved), void *opaque);

#endif
