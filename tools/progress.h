/* Progress reporting for long commands (check, scrub), on stderr: a bar on
 * a terminal, redrawn at most ten times a second; otherwise plain lines
 * ("check: 1200/5000 blocks (24%)") at most once a second, so that logs
 * stay short.  Work that ends within a second prints nothing.
 */
#ifndef CASDISK_PROGRESS_H
#define CASDISK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
  const char *what;             /* "check", "scrub": the line's prefix */
  const char *unit;             /* what is counted: "blocks" unless set after init */
  bool tty;                     /* stderr is a terminal: draw a bar */
  bool quiet;                   /* print nothing at all */
  bool drawn;                   /* a bar is on screen, its line unfinished */
  uint64_t last_ns;             /* when we last printed (CLOCK_MONOTONIC) */
  int last_percent;             /* what we last printed, -1 = nothing yet */
};

/* Start reporting WHAT; QUIET turns every call into a no-op. */
void progress_init (struct progress *p, const char *what, bool quiet)
  __attribute__((nonnull));
/* Report DONE of TOTAL blocks. */
void progress_update (struct progress *p, uint64_t done, uint64_t total)
  __attribute__((nonnull));
/* Before printing anything else: end the bar's line (it is redrawn on the
 * next update).
 */
void progress_interrupt (struct progress *p) __attribute__((nonnull));
/* The work is over: end the bar's line. */
void progress_done (struct progress *p) __attribute__((nonnull));

#endif
