/* Scrub (scrub.c): read back and verify every stored block and metadata
 * file of an open store, quarantining bad blocks.  Blocks are read inside
 * RCU read-side sections, with no store lock; flush_lock is held only to
 * read where the journal ends.
 */
#ifndef CAS_SCRUB_H
#define CAS_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "casdisk.h"

struct cas_store;

/* cas_store_scrub, stopping early (-1, ECANCELED) once *CANCEL (may be
 * NULL) becomes true.  PROGRESS is also called while the rate limit
 * sleeps, at least every 200 ms, repeating the last figures.
 */
int cas_scrub_run (struct cas_store *s, uint64_t rate, cas_progress_fn progress,
                   cas_report_fn fn, void *opaque, struct cas_scrub_result *res,
                   const bool *cancel);

#endif
