/* The online forms of disk clone, disk delete and the snapshot commands:
 * requests to the server holding the store, through its control socket
 * (lib/ops/control.c runs the engine's whole-disk operations, which are safe
 * while clients read and write, and durable when the answer comes).
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casdisk.h"
#include "cli.h"

/* The "data" lines of an answer, "NAME SIZE" each (at most MAX_ROWS). */
#define MAX_ROWS 1024
struct rows {
  char name[MAX_ROWS][CAS_DISK_NAME_MAX + 1];
  uint64_t size[MAX_ROWS];
  size_t n;
};

static int
collect_rows (void *opaque, const char *tag, const char *rest)
{
  struct rows *r = opaque;
  const char *sp = strchr (rest, ' ');

  if (strcmp (tag, "data") != 0 || sp == NULL || r->n == MAX_ROWS ||
      (size_t) (sp - rest) > CAS_DISK_NAME_MAX)
    return 0;
  memcpy (r->name[r->n], rest, sp - rest);
  r->name[r->n][sp - rest] = '\0';
  r->size[r->n] = strtoull (sp + 1, NULL, 10);
  r->n++;
  return 0;
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Names go into a request line: only the characters of disk and snapshot
 * names (the server checks the rest).
 */
static bool
names_ok (const struct cmdline *c, int n)
{
  for (int i = 1; i <= n; i++)
    for (const char *p = c->args[i]; *p; p++)
      if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '@')) {
        usage_error (c->cmd, "'%s' is not a valid disk or snapshot name", c->args[i]);
        return false;
      }
  return true;
}

/* Send REQ; the answer's rows in *R.  EXIT_FAILURE if it failed (the
 * server's message has been printed).
 */
static int
call (int fd, const char *req, struct rows *r)
{
  memset (r, 0, sizeof *r);
  return cas_control_call (fd, req, collect_rows, r) == -1 ? EXIT_FAILURE : 0;
}

int
online_disk_clone (const struct cmdline *c, int fd)
{
  static struct rows r;
  char req[256], h[32];
  const double t0 = now_s ();

  if (!names_ok (c, 2))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "disk-clone src=%s dst=%s", c->args[1], c->args[2]);
  if (call (fd, req, &r) != 0)
    return EXIT_FAILURE;
  printf ("cloned disk '%s' into '%s' (%s, no data copied) in %.3f s "
          "(served: clients see it now)\n", c->args[1], c->args[2],
          human (r.n ? r.size[0] : 0, h), now_s () - t0);
  return 0;
}

int
online_disk_delete (const struct cmdline *c, int fd)
{
  static struct rows r;
  char req[256];

  if (!names_ok (c, 1))
    return EXIT_USAGE;
  if (strchr (c->args[1], '@'))
    return usage_error (c->cmd, "'%s' is a snapshot: use 'casdisk snapshot delete'", c->args[1]);
  snprintf (req, sizeof req, "disk-delete name=%s", c->args[1]);
  if (call (fd, req, &r) != 0)
    return EXIT_FAILURE;
  printf ("deleted disk '%s'; the delayed GC frees its blocks after gc-delay\n", c->args[1]);
  return 0;
}

int
online_snapshot_create (const struct cmdline *c, int fd)
{
  static struct rows r;
  char req[256];
  const double t0 = now_s ();

  if (!names_ok (c, 2))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "snapshot-create disk=%s snap=%s", c->args[1], c->args[2]);
  if (call (fd, req, &r) != 0)
    return EXIT_FAILURE;
  printf ("created snapshot '%s' (read-only export name '%s@%s') in %.3f s "
          "(served, taken at a flush point)\n", c->args[2], c->args[1], c->args[2],
          now_s () - t0);
  return 0;
}

int
online_snapshot_delete (const struct cmdline *c, int fd)
{
  static struct rows r;
  char req[256];

  if (!names_ok (c, 2))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "snapshot-delete disk=%s snap=%s", c->args[1], c->args[2]);
  if (call (fd, req, &r) != 0)
    return EXIT_FAILURE;
  printf ("deleted snapshot '%s@%s'\n", c->args[1], c->args[2]);
  return 0;
}

int
online_snapshot_list (const struct cmdline *c, int fd)
{
  static struct rows r;
  const size_t len = strlen (c->args[1]);
  char req[256], h[32];

  if (!names_ok (c, 1))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "snapshots disk=%s", c->args[1]);
  if (call (fd, req, &r) != 0)
    return EXIT_FAILURE;
  if (c->json)
    json_open (NULL, '[');
  for (size_t i = 0; i < r.n; i++) {
    const char *snap = strlen (r.name[i]) > len ? r.name[i] + len + 1 : r.name[i];
    if (c->json) {
      json_open (NULL, '{');
      json_str ("name", snap);
      json_str ("export", r.name[i]);
      json_u64 ("size", r.size[i]);
      json_close ('}');
    }
    else
      printf ("%-24s %-32s %10s\n", snap, r.name[i], human (r.size[i], h));
  }
  if (c->json)
    json_close (']');
  return 0;
}
