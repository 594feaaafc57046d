/* Progress reporting for long commands: a bar on a terminal (redrawn ten
 * times a second), plain lines ("scrub: 1200/5000 blocks (24%)") at most
 * once a second otherwise.  Work that ends within a second prints nothing.
 */
#ifndef CASDISK_PROGRESS_H
#define CASDISK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
  const char *what;             /* "scrub", "check" ... */
  bool tty;                     /* stderr is a terminal */
  bool quiet;
  uint64_t last_ns;             /* when we last printed */
  int last_percent;
};

void progress_init (struct progress *p, const char *what, bool quiet);
/* Report DONE of TOTAL units (blocks). */
void progress_update (struct progress *p, uint64_t done, uint64_t total);
/* Finish the line. */
void progress_done (struct progress *p);

#endif
