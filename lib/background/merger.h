/* The merge thread (merger.c): rebuilds blocks from small writes and
 * flushes past the record limit, so that writers do not wait for either.
 * merge_lock guards merge_stop, with merge_cond (state.h).  Writers wake
 * it with cas_merger_kick, which is in meta/state.h: the data path rings
 * from below, without calling up into this module.
 */
#ifndef CAS_MERGER_H
#define CAS_MERGER_H

#include <stdbool.h>

struct cas_store;

int cas_merger_start (struct cas_store *s);
void cas_merger_stop (struct cas_store *s);

#endif
