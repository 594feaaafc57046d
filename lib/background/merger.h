/* The merge thread (merger.c): rebuilds blocks from small writes and
 * flushes past the record limit, so that writers do not wait for either.
 * merge_lock guards merge_stop, with merge_cond (state.h).
 */
#ifndef CAS_MERGER_H
#define CAS_MERGER_H

#include <stdbool.h>

struct cas_store;

int cas_merger_start (struct cas_store *s);
void cas_merger_stop (struct cas_store *s);
/* Wake the merge thread; false if it is not running (do the work). */
bool cas_merger_kick (struct cas_store *s);

#endif
