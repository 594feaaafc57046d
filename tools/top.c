/* casdisk top: a live view of a served store, refreshed every interval,
 * like `zpool iostat 1` or `vdostats`.
 *
 * Each refresh is one `status` request on the store's control socket
 * (docs/control.md): the figures are the server's counters, and rates are
 * their differences between two samples over the time between them.  The
 * first sample has nothing before it, so its rates are averages since the
 * store was opened (uptime_seconds), as iostat's first report is.
 *
 * On a terminal the screen is redrawn in place and fits its size (80x24
 * at least: the disks that do not fit are counted on one line); 'q' or
 * Ctrl-C quits.  Otherwise each sample is a block of plain lines ended by
 * a blank line, for scripts and logs; --count N stops after N samples.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "casdisk.h"
#include "cli.h"

/* One section of a status answer: the store, or a disk. */
#define MAX_KEYS 96
struct section {
  char name[CAS_DISK_NAME_MAX + 72];      /* "" for the store; disk@snap */
  size_t n;
  struct { char key[40]; double v; } kv[MAX_KEYS];
};

/* One status answer: the store first, then the disks in its order. */
struct sample {
  struct timespec t;
  size_t n, cap;
  struct section *s;
};

static struct section *
section_of (struct sample *sm, const char *name)
{
  if (sm->n && strcmp (sm->s[sm->n - 1].name, name) == 0)
    return &sm->s[sm->n - 1];
  if (sm->n == sm->cap) {
    const size_t cap = sm->cap ? 2 * sm->cap : 8;
    struct section *s = realloc (sm->s, cap * sizeof *s);
    if (s == NULL)
      return NULL;
    sm->s = s;
    sm->cap = cap;
  }
  struct section *x = &sm->s[sm->n++];
  snprintf (x->name, sizeof x->name, "%s", name);
  x->n = 0;
  return x;
}

/* "data store KEY VALUE" or "data disk NAME KEY VALUE" */
static int
on_status (void *opaque, const char *tag, const char *rest)
{
  struct sample *sm = opaque;
  char kind[8], name[sizeof sm->s->name], key[40], value[64];
  struct section *x;

  if (strcmp (tag, "data") != 0)
    return 0;
  if (sscanf (rest, "%7s", kind) != 1)
    return 0;
  if (strcmp (kind, "store") == 0) {
    if (sscanf (rest, "%*s %39s %63s", key, value) != 2)
      return 0;
    name[0] = '\0';
  }
  else if (strcmp (kind, "disk") == 0) {
    if (sscanf (rest, "%*s %135s %39s %63s", name, key, value) != 3)
      return 0;
  }
  else
    return 0;
  if ((x = section_of (sm, name)) == NULL)
    return -1;
  if (x->n < MAX_KEYS) {
    snprintf (x->kv[x->n].key, sizeof x->kv[x->n].key, "%s", key);
    x->kv[x->n].v = strtod (value, NULL);
    x->n++;
  }
  return 0;
}

static double
get (const struct section *x, const char *key)
{
  if (x)
    for (size_t i = 0; i < x->n; i++)
      if (strcmp (x->kv[i].key, key) == 0)
        return x->kv[i].v;
  return 0;
}

static const struct section *
find (const struct sample *sm, const char *name)
{
  for (size_t i = 0; i < sm->n; i++)
    if (strcmp (sm->s[i].name, name) == 0)
      return &sm->s[i];
  return NULL;
}

/* Ask the server for a sample (FD is a fresh connection, closed here). */
static int
take_sample (int fd, struct sample *sm)
{
  int r;

  sm->n = 0;
  clock_gettime (CLOCK_MONOTONIC, &sm->t);
  r = cas_control_call (fd, "status", on_status, sm);
  close (fd);
  if (r == 0 && (sm->n == 0 || sm->s[0].name[0] != '\0')) {
    fprintf (stderr, "%s top: the server's status has no store section\n", prog);
    return -1;
  }
  return r;
}

/* ---- Rendering ---- */

/* Rates of one section between PREV (NULL: since the store opened) and
 * CUR, over SECONDS.
 */
struct rates {
  double rmib, riops, wmib, wiops;
};

static struct rates
rates_of (const struct section *prev, const struct section *cur, double seconds)
{
  struct rates r = { 0 };

  if (seconds <= 0)
    return r;
#define D(k) ((get (cur, k) - get (prev, k)) / seconds)
  r.rmib = D ("read_bytes") / 1048576.0;
  r.riops = D ("read_requests");
  r.wmib = (D ("write_bytes") + D ("zero_bytes")) / 1048576.0;
  r.wiops = D ("write_requests") + D ("zero_requests") + D ("flush_requests");
#undef D
  return r;
}

/* Output goes to a buffer, one line at a time, each cut to the width. */
struct screen {
  bool tty;
  int rows, cols, used;
};

static void __attribute__((format (printf, 2, 3)))
line (struct screen *sc, const char *fmt, ...)
{
  char buf[512];
  va_list ap;

  if (sc->tty && sc->used >= sc->rows)
    return;
  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  if (sc->cols > 0 && (int) strlen (buf) > sc->cols)
    buf[sc->cols] = '\0';
  /* On a terminal the line break comes before a line, not after it: one
   * after the bottom row would scroll the title away.  \033[K clears the
   * rest of the old line.
   */
  if (sc->tty)
    printf ("%s%s\033[K", sc->used ? "\r\n" : "", buf);
  else
    printf ("%s\n", buf);
  sc->used++;
}

/* A short size: "1.5G", "512M", "0". */
static const char *
sz (double bytes, char buf[16])
{
  static const char units[] = "BKMGTPE";
  int u = 0;

  while (bytes >= 1023.95 && u < 6) {
    bytes /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, 16, bytes > 0 ? "%.0fB" : "0", bytes);
  else
    snprintf (buf, 16, bytes < 9.95 ? "%.1f%c" : "%.0f%c", bytes, units[u]);
  return buf;
}

/* A ratio in 6 columns: "2.31", "123.4", "3277". */
static const char *
rt (double v, char buf[16])
{
  snprintf (buf, 16, v < 100 ? "%.2f" : v < 1000 ? "%.1f" : v < 1e6 ? "%.0f" : ">1e6", v);
  return buf;
}

/* "disk-with-a-long-name" in 12 columns: "disk-with-a~" */
static const char *
short_name (const char *name, char buf[16])
{
  if (strlen (name) <= 12)
    return name;
  snprintf (buf, 16, "%.11s~", name);
  return buf;
}

static void
row (struct screen *sc, const char *name, struct rates r, const struct section *x)
{
  char b[16], n[16], d[16], z[16];

  line (sc, "%-12s %8.1f %7.0f %8.1f %7.0f %8s %6s %6s %6.0f", short_name (name, n),
        r.rmib, r.riops, r.wmib, r.wiops, sz (get (x, "logical_bytes"), b),
        rt (get (x, "dedup_ratio"), d), rt (get (x, "compression_ratio"), z),
        get (x, "read_errors") + get (x, "write_errors") + get (x, "zero_errors") +
        get (x, "flush_errors") + get (x, "extents_errors"));
}

static void
render (struct screen *sc, const char *dir, const struct sample *prev,
        const struct sample *cur, double interval)
{
  const struct section *st = &cur->s[0], *pst = prev ? &prev->s[0] : NULL;
  double secs;
  char b1[16], b2[16], b3[16], b4[16], b5[16], ts[16];
  const time_t now = time (NULL);
  struct tm tm;

  if (prev)
    secs = (cur->t.tv_sec - prev->t.tv_sec) + (cur->t.tv_nsec - prev->t.tv_nsec) / 1e9;
  else
    secs = get (st, "uptime_seconds");
  localtime_r (&now, &tm);
  strftime (ts, sizeof ts, "%H:%M:%S", &tm);
  sc->used = 0;
  if (sc->tty)
    printf ("\033[H");

  const uint64_t up = get (st, "uptime_seconds");
  line (sc, "casdisk top %s  %s  up %" PRIu64 "d%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64
        "  %s", dir, ts, up / 86400, up / 3600 % 24, up / 60 % 60, up % 60,
        prev ? "" : "(rates since open)");
  line (sc, "%-12s %8s %7s %8s %7s %8s %6s %6s %6s", "", "rd MiB/s", "rd IOPS",
        "wr MiB/s", "wr IOPS", "logical", "dedup", "compr", "errors");
  row (sc, "store", rates_of (pst, st, secs), st);

  /* The disks that fit: 9 lines are the store's. */
  const size_t ndisks = cur->n - 1;
  size_t room = ndisks;
  if (sc->tty && sc->rows > 0) {
    const int left = sc->rows - 10;
    room = left < 1 ? 0 : (size_t) left;
    if (room < ndisks && room > 0)
      room--;                   /* the "... more" line */
  }
  for (size_t i = 1; i <= ndisks && i <= room; i++) {
    const struct section *x = &cur->s[i];
    const struct section *px = prev ? find (prev, x->name) : NULL;
    row (sc, x->name, rates_of (px, x, px || !prev ? secs : get (st, "uptime_seconds")), x);
  }
  if (room < ndisks)
    line (sc, "... and %zu more disks (a taller terminal shows them)", ndisks - room);

  line (sc, "space    in use %s  junk %s  erased %s  free %s  moving %s",
        sz (get (st, "space_in_use_bytes"), b1), sz (get (st, "space_junk_bytes"), b2),
        sz (get (st, "space_erased_bytes"), b3), sz (get (st, "space_free_bytes"), b4),
        sz (get (st, "space_moving_bytes"), b5));
  line (sc, "         data file %s  on disk %s  unique %s  stored %s  journal %s",
        sz (get (st, "data_file_end_bytes"), b1), sz (get (st, "physical_allocated_bytes"), b2),
        sz (get (st, "unique_bytes"), b3), sz (get (st, "stored_bytes"), b4),
        sz (get (st, "journal_bytes"), b5));
  line (sc, "gc       %.0f dead blocks (%s) wait %.0f s  freed %.0f blocks, %.1f/s",
        get (st, "dead_blocks"), sz (get (st, "dead_bytes"), b1), get (st, "gc_delay_seconds"),
        get (st, "gc_freed_blocks"), secs > 0 ? (get (st, "gc_freed_blocks") -
                                                  get (pst, "gc_freed_blocks")) / secs : 0.0);
  line (sc, "recycler moved %s  %.1f MiB/s (limit %s/s)  erased %s  compactions %.0f",
        sz (get (st, "recycled_bytes"), b1),
        secs > 0 ? (get (st, "recycled_bytes") - get (pst, "recycled_bytes")) / secs / 1048576.0
                 : 0.0,
        sz (get (st, "recycle_rate_bytes"), b2), sz (get (st, "erased_bytes"), b3),
        get (st, "compactions"));
  if (get (st, "scrub_running") > 0) {
    const double total = get (st, "scrub_total_blocks"), done = get (st, "scrub_done_blocks");
    line (sc, "scrub    running %.0f/%.0f blocks (%.0f%%)  corrupted %.0f", done, total,
          total > 0 ? 100 * done / total : 0.0, get (st, "scrub_corrupted_blocks"));
  }
  else
    line (sc, "scrub    idle  %.0f done  corrupted %.0f", get (st, "scrubs"),
          get (st, "scrub_corrupted_blocks"));
  line (sc, "errors   %.0f failed requests  %.0f quarantined blocks  %s",
        get (st, "errors"), get (st, "quarantined_blocks"),
        get (st, "io_failed") > 0 ? "DATA FILE SYNC FAILED: no more writes" : "io ok");
  if (sc->tty) {
    line (sc, "every %g s; q quits", interval);
    printf ("\033[J");          /* clear what an earlier, longer screen left */
  }
  else
    putchar ('\n');
  fflush (stdout);
}

/* ---- The loop ---- */

static volatile sig_atomic_t stop_signal;

static void
on_signal (int sig)
{
  stop_signal = sig;
}

static struct termios saved_tio;
static bool tio_saved;

static void
restore_terminal (void)
{
  if (tio_saved)
    tcsetattr (STDIN_FILENO, TCSANOW, &saved_tio);
  tio_saved = false;
  printf ("\033[?25h\r\n");     /* the cursor back, below the screen */
  fflush (stdout);
}

int
online_top (const struct cmdline *c, int fd)
{
  struct sample a = { 0 }, b = { 0 }, *prev = NULL, *cur = &a;
  struct screen sc = { .tty = isatty (STDOUT_FILENO) };
  double interval = 1;
  unsigned long count = 0;      /* 0 = until stopped */
  int rc = 0;

  if (c->interval) {
    char *end;
    errno = 0;
    interval = strtod (c->interval, &end);
    if (errno || end == c->interval || *end || !(interval >= 0.1 && interval <= 3600))
      return usage_error (c->cmd, "--interval: '%s' is not a number of seconds (0.1 to 3600)",
                          c->interval);
  }
  if (c->count) {
    char *end;
    errno = 0;
    count = strtoul (c->count, &end, 10);
    if (errno || end == c->count || *end || count == 0 || c->count[0] == '-')
      return usage_error (c->cmd, "--count: '%s' is not a positive number", c->count);
  }

  struct sigaction sa = { .sa_handler = on_signal };
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  bool keys = sc.tty && isatty (STDIN_FILENO) && tcgetattr (STDIN_FILENO, &saved_tio) == 0;
  if (sc.tty) {
    if (keys) {
      struct termios raw = saved_tio;
      raw.c_lflag &= ~(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      tio_saved = tcsetattr (STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    printf ("\033[?25l\033[H\033[2J");   /* hide the cursor, clear */
  }

  for (unsigned long k = 0; !stop_signal; k++) {
    if (k > 0 && (fd = cas_control_connect (c->args[0])) == -1) {
      if (sc.tty)
        restore_terminal ();
      fprintf (stderr, "%s top: %s: the server went away (%s)\n", prog, c->args[0],
               strerror (errno));
      rc = EXIT_FAILURE;
      break;
    }
    if (take_sample (fd, cur) == -1) {
      rc = EXIT_FAILURE;
      break;
    }
    if (sc.tty) {
      struct winsize ws;
      sc.rows = 24;
      sc.cols = 80;
      if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        sc.rows = ws.ws_row;
        sc.cols = ws.ws_col;
      }
    }
    render (&sc, c->args[0], prev, cur, interval);
    prev = cur;
    cur = cur == &a ? &b : &a;
    if (count && k + 1 >= count)
      break;

    /* Wait out the interval; on a terminal, a 'q' ends it. */
    struct timespec t0, t1;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    for (;;) {
      clock_gettime (CLOCK_MONOTONIC, &t1);
      const double left = interval - ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
      if (left <= 0 || stop_signal)
        break;
      struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
      const int n = poll (&p, keys ? 1 : 0, (int) (left * 1000) + 1);
      if (n > 0 && (p.revents & POLLIN)) {
        char ch;
        if (read (STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
          stop_signal = -1;
      }
      else if (n > 0)
        keys = false;           /* stdin closed: go on without keys */
    }
  }
  if (sc.tty)
    restore_terminal ();
  free (a.s);
  free (b.s);
  return rc;
}
