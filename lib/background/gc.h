/* The delayed GC (gc.c): kill the dead blocks whose delay has passed,
 * then settle, erase and free their space.  The pass and the releases
 * are called with recycle_lock held (the background thread's round, the
 * recycler's offline compaction, the close), so that one thread at a time
 * does background space work; a pass takes ckpt_lock for reading and
 * jlock per record (state.h).
 */
#ifndef CAS_GC_H
#define CAS_GC_H

#include <stdbool.h>
#include <stdint.h>

struct cas_store;

/* Free the space of dead blocks whose delay has passed (background thread). */
void cas_gc_pass (struct cas_store *s, bool force);
/* N blocks just died (refcount 0): count them in ndead, and wake the
 * background thread every CAS_GC_KICK_BYTES of them so that overwrites
 * faster than its tick meet gc-pressure at once.  Any lock may be held
 * but bg_lock (a leaf).
 */
#define CAS_GC_KICK_BYTES (UINT64_C(16) << 20)
void cas_gc_note_dead (struct cas_store *s, uint64_t n);
/* Make pending frees durable, wait a grace period, settle them (junk),
 * erase junk (keep_erased), flush and free the erased space.
 */
void cas_gc_release (struct cas_store *s);
/* The same after a recycler pass: its journal flush, which makes the
 * BLOCK_MOVE records durable, is named "reference" in the I/O log.
 */
void cas_gc_release_moved (struct cas_store *s);

#endif
