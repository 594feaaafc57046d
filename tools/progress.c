/* Progress bar on a terminal, plain lines otherwise (see progress.h). */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 40
#define TTY_INTERVAL_NS  100000000u     /* 0.1 s */
#define LINE_INTERVAL_NS 1000000000u    /* 1 s */

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
progress_init (struct progress *p, const char *what, bool quiet)
{
  p->what = what;
  p->unit = "blocks";
  p->tty = isatty (STDERR_FILENO);
  p->quiet = quiet;
  p->drawn = false;
  p->last_ns = now_ns ();        /* nothing during the first interval */
  p->last_percent = -1;
}

void
progress_update (struct progress *p, uint64_t done, uint64_t total)
{
  const int percent = total ? (int) (done >= total ? 100 : done * 100 / total) : 100;
  const uint64_t now = now_ns ();

  if (p->quiet || (percent == p->last_percent && p->drawn))
    return;
  if (p->tty) {
    /* Redraw at most ten times a second; always draw 100% once a bar is up. */
    if (now - p->last_ns < TTY_INTERVAL_NS && !(percent == 100 && p->last_percent >= 0))
      return;
    const int fill = percent * BAR_WIDTH / 100;
    fprintf (stderr, "\r%s [", p->what);
    for (int i = 0; i < BAR_WIDTH; i++)
      fputc (i < fill ? '#' : '.', stderr);
    fprintf (stderr, "] %3d%% %" PRIu64 "/%" PRIu64 " %s", percent, done, total, p->unit);
    p->drawn = true;
  }
  else {
    if (percent == p->last_percent || now - p->last_ns < LINE_INTERVAL_NS)
      return;
    fprintf (stderr, "%s: %" PRIu64 "/%" PRIu64 " %s (%d%%)\n", p->what, done, total, p->unit,
             percent);
  }
  fflush (stderr);
  p->last_ns = now;
  p->last_percent = percent;
}

void
progress_interrupt (struct progress *p)
{
  if (p->drawn) {
    fputc ('\n', stderr);
    fflush (stderr);
    p->drawn = false;
  }
}

void
progress_done (struct progress *p)
{
  progress_interrupt (p);
}
