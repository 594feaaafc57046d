/* Progress bar on a terminal, plain lines otherwise. */
#include <config.h>

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

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
  p->tty = isatty (2);
  p->quiet = quiet;
  p->last_ns = now_ns ();        /* nothing for the first second */
  p->last_percent = -1;
}

void
progress_update (struct progress *p, uint64_t done, uint64_t total)
{
  const int percent = total ? (int) (done * 100 / total) : 100;
  const uint64_t now = now_ns ();

  if (p->quiet || percent == p->last_percent)
    return;
  /* A terminal redraws 10 times a second; a log gets a line every 10%. */
  if (p->tty) {
    if (now - p->last_ns < 100000000 && (percent != 100 || p->last_percent < 0))
      return;
    const int width = 40, fill = percent * width / 100;
    fprintf (stderr, "\r%s [", p->what);
    for (int i = 0; i < width; i++)
      fputc (i < fill ? '#' : '.', stderr);
    fprintf (stderr, "] %3d%% %llu/%llu blocks", percent,
             (unsigned long long) done, (unsigned long long) total);
  }
  else {
    if (now - p->last_ns < 1000000000)
      return;
    fprintf (stderr, "%s: %llu/%llu blocks (%d%%)\n", p->what,
             (unsigned long long) done, (unsigned long long) total, percent);
  }
  fflush (stderr);
  p->last_ns = now;
  p->last_percent = percent;
}

void
progress_done (struct progress *p)
{
  if (!p->quiet && p->tty && p->last_percent >= 0)
    fputc ('\n', stderr);
}
