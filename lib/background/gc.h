/* The delayed GC (gc.c): kill the dead blocks whose delay has passed,
 * then settle, erase and free their space.  The pass and the releases
 * are called with recycle_lock held (the background thread's round, the
 * recycler's offline compaction, the close), so that one thread at a time
 * does background space work; a pass takes ckpt_lock for reading and
 * jlock per record (state.h).  Writers count the blocks that die with
 * cas_gc_note_dead, in meta/state.h.
 */
#ifndef CAS_GC_H
#define CAS_GC_H

#include <stdbool.h>

struct cas_store;

/* Free the space of dead blocks whose delay has passed (background thread). */
void cas_gc_pass (struct cas_store *s, bool force);
/* Make pending frees durable, wait a grace period, settle them (junk),
 * erase junk (keep_erased), flush and free the erased space.
 */
void cas_gc_release (struct cas_store *s);
/* The same after a recycler pass: its journal flush, which makes the
 * BLOCK_MOVE records durable, is named "reference" in the I/O log.
 */
void cas_gc_release_moved (struct cas_store *s);

#endif
