/* The online forms of the casdisk tool's commands: while a server
 * (nbdkit) holds a store, the tool cannot open it, and asks the server
 * through the store's control socket instead (lib/ops/control.c,
 * docs/control.md).  casdisk.c's table says which commands have an online
 * form; each function here gets the connected socket.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casdisk.h"
#include "cli.h"
#include "progress.h"

/* The "data" lines of a response. */
struct lines {
  char **v;
  size_t n, cap;
};

static int
collect (void *opaque, const char *tag, const char *rest)
{
  struct lines *l = opaque;

  if (strcmp (tag, "data") != 0)
    return 0;
  if (l->n == l->cap) {
    const size_t cap = l->cap ? 2 * l->cap : 64;
    char **v = realloc (l->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  if ((l->v[l->n] = strdup (rest)) == NULL)
    return -1;
  l->n++;
  return 0;
}

static void
lines_free (struct lines *l)
{
  for (size_t i = 0; i < l->n; i++)
    free (l->v[i]);
  free (l->v);
}

/* "KEY VALUE" lines of a result: the value of KEY, or 0. */
static uint64_t
value_of (const struct lines *l, const char *key)
{
  const size_t len = strlen (key);

  for (size_t i = 0; i < l->n; i++)
    if (strncmp (l->v[i], key, len) == 0 && l->v[i][len] == ' ')
      return strtoull (l->v[i] + len + 1, NULL, 10);
  return 0;
}

static bool
numeric (const char *v)
{
  return *v && strspn (v, "0123456789.-") == strlen (v);
}

/* ---- status ---- */

static const char *const ops[] = { "read", "write", "zero", "flush", "extents" };

/* Is KEY "OP_requests", "OP_bytes" or "OP_errors"? */
static bool
op_key (const char *key)
{
  for (size_t i = 0; i < ARRAY_SIZE (ops); i++) {
    const size_t n = strlen (ops[i]);
    if (strncmp (key, ops[i], n) == 0 && key[n] == '_' &&
        (strcmp (key + n + 1, "requests") == 0 || strcmp (key + n + 1, "bytes") == 0 ||
         strcmp (key + n + 1, "errors") == 0))
      return true;
  }
  return false;
}

/* The store's section: no disk has an empty name. */
static char store_section[] = "";

/* One parsed status line: SECTION is store_section or a disk name. */
struct fig {
  char *section, *key, *value;
};

static void
print_op_table (const struct fig *f, size_t n, const char *section)
{
  char h[32];

  printf ("  %-10s %12s %12s %8s\n", "requests", "count", "bytes", "errors");
  for (size_t o = 0; o < ARRAY_SIZE (ops); o++) {
    uint64_t v[3] = { 0 };
    static const char *const suffix[3] = { "requests", "bytes", "errors" };
    for (size_t i = 0; i < n; i++) {
      const size_t len = strlen (ops[o]);
      if (strcmp (f[i].section, section) != 0 || strncmp (f[i].key, ops[o], len) != 0 ||
          f[i].key[len] != '_')
        continue;
      for (int k = 0; k < 3; k++)
        if (strcmp (f[i].key + len + 1, suffix[k]) == 0)
          v[k] = strtoull (f[i].value, NULL, 10);
    }
    printf ("  %-10s %12" PRIu64 " %12s %8" PRIu64 "\n", ops[o], v[0],
            strcmp (ops[o], "flush") == 0 ? "-" : human (v[1], h), v[2]);
  }
}

static void
print_section_text (const struct fig *f, size_t n, const char *section)
{
  for (size_t i = 0; i < n; i++) {
    char label[64];
    const size_t klen = strlen (f[i].key);

    if (strcmp (f[i].section, section) != 0 || op_key (f[i].key))
      continue;
    snprintf (label, sizeof label, "%s", f[i].key);
    for (char *p = label; *p; p++)
      if (*p == '_')
        *p = ' ';
    if (klen > 6 && strcmp (f[i].key + klen - 6, "_bytes") == 0 && numeric (f[i].value)) {
      label[strlen (label) - 6] = '\0';
      print_bytes (label, strtoull (f[i].value, NULL, 10));
    }
    else if (klen > 6 && strcmp (f[i].key + klen - 6, "_ratio") == 0)
      printf ("  %-22s %10.2f\n", label, strtod (f[i].value, NULL));
    else
      printf ("  %-22s %10s\n", label, f[i].value);
  }
  print_op_table (f, n, section);
}

static void
json_section (const struct fig *f, size_t n, const char *section)
{
  for (size_t i = 0; i < n; i++) {
    if (strcmp (f[i].section, section) != 0)
      continue;
    if (numeric (f[i].value)) {
      json_key (f[i].key);
      fputs (f[i].value, stdout);
    }
    else
      json_str (f[i].key, f[i].value);
  }
}

int
online_status (const struct cmdline *c, int fd)
{
  struct lines l = { 0 };
  struct fig *f;
  size_t n = 0;

  if (cas_control_call (fd, "status", collect, &l) == -1) {
    lines_free (&l);
    return EXIT_FAILURE;
  }
  f = calloc (l.n ? l.n : 1, sizeof *f);
  if (f == NULL) {
    perror (prog);
    lines_free (&l);
    return EXIT_FAILURE;
  }
  /* "store KEY VALUE" or "disk NAME KEY VALUE" */
  for (size_t i = 0; i < l.n; i++) {
    char *save = NULL, *kind = strtok_r (l.v[i], " ", &save);
    struct fig x = { 0 };
    if (kind && strcmp (kind, "store") == 0)
      x.section = store_section;
    else if (kind && strcmp (kind, "disk") == 0)
      x.section = strtok_r (NULL, " ", &save);
    x.key = strtok_r (NULL, " ", &save);
    x.value = strtok_r (NULL, " ", &save);
    if (x.section && x.key && x.value)
      f[n++] = x;
  }

  if (c->json) {
    json_open (NULL, '{');
    json_open ("store", '{');
    json_str ("dir", c->args[0]);
    json_bool ("served", true);
    json_section (f, n, store_section);
    json_close ('}');
    json_open ("disks", '[');
    for (size_t i = 0; i < n; i++)
      if (strcmp (f[i].section, store_section) != 0 &&
          (i == 0 || strcmp (f[i - 1].section, f[i].section) != 0)) {
        json_open (NULL, '{');
        json_str ("name", f[i].section);
        json_section (f, n, f[i].section);
        json_close ('}');
      }
    json_close (']');
    json_close ('}');
  }
  else {
    printf ("store %s (served)\n", c->args[0]);
    print_section_text (f, n, store_section);
    for (size_t i = 0; i < n; i++)
      if (strcmp (f[i].section, store_section) != 0 &&
          (i == 0 || strcmp (f[i - 1].section, f[i].section) != 0)) {
        printf ("disk %s\n", f[i].section);
        print_section_text (f, n, f[i].section);
      }
  }
  free (f);
  lines_free (&l);
  return 0;
}

/* ---- metrics ---- */

static int
print_data (void *opaque, const char *tag, const char *rest)
{
  if (strcmp (tag, "data") == 0)
    puts (rest);
  return 0;
}

int
online_metrics (const struct cmdline *c, int fd)
{
  return cas_control_call (fd, "metrics", print_data, NULL) == -1 ? EXIT_FAILURE : 0;
}

/* ---- compact --now ---- */

struct progress_ctx {
  struct lines l;
  struct report_ctx r;
  bool mib;                     /* progress in bytes: show MiB */
};

static int
on_line (void *opaque, const char *tag, const char *rest)
{
  struct progress_ctx *p = opaque;
  uint64_t done, total;

  if (strcmp (tag, "progress") == 0 && sscanf (rest, "%" SCNu64 " %" SCNu64, &done, &total) == 2) {
    if (p->mib) {
      done >>= 20;
      total >>= 20;
    }
    progress_update (&p->r.prog, done, total);
  }
  else if (strcmp (tag, "problem") == 0)
    print_problem (&p->r, rest);
  else
    return collect (&p->l, tag, rest);
  return 0;
}

int
online_compact (const struct cmdline *c, int fd)
{
  struct progress_ctx p = { .mib = true };
  char h1[32], h2[32];
  int r;

  if (!c->now) {
    fprintf (stderr, "%s compact: %s is served by a running server, which compacts in the "
             "background once compact-after= percent of the data file is free; add --now "
             "to ask it for a compaction now\n", prog, c->args[0]);
    return EXIT_FAILURE;
  }
  progress_init (&p.r.prog, "compact", c->json);
  p.r.prog.unit = "MiB";
  active_progress = &p.r.prog;
  r = cas_control_call (fd, "compact", on_line, &p);
  progress_done (&p.r.prog);
  active_progress = NULL;
  if (r == -1) {
    lines_free (&p.l);
    return EXIT_FAILURE;
  }
  const uint64_t moved = value_of (&p.l, "moved_bytes");
  const uint64_t dead = value_of (&p.l, "dead_blocks"), dead_bytes = value_of (&p.l, "dead_bytes");
  if (c->json) {
    json_open (NULL, '{');
    json_bool ("online", true);
    for (size_t i = 0; i < p.l.n; i++) {
      char *sp = strchr (p.l.v[i], ' ');
      if (sp && numeric (sp + 1)) {
        *sp = '\0';
        json_u64 (p.l.v[i], strtoull (sp + 1, NULL, 10));
      }
    }
    json_close ('}');
  }
  else {
    printf ("%s: moved %s; allocated %s", c->args[0], human (moved, h1),
            human (value_of (&p.l, "allocated_before"), h2));
    printf (" -> %s, apparent %s", human (value_of (&p.l, "allocated_after"), h1),
            human (value_of (&p.l, "apparent_before"), h2));
    printf (" -> %s\n", human (value_of (&p.l, "apparent_after"), h1));
    if (dead)
      printf ("%s: %" PRIu64 " dead blocks (%s) wait for gc-delay (%" PRIu64 " s) before "
              "their space can be reclaimed\n", c->args[0], dead, human (dead_bytes, h1),
              value_of (&p.l, "gc_delay_seconds"));
  }
  lines_free (&p.l);
  return 0;
}

/* ---- scrub ---- */

int
online_scrub (const struct cmdline *c, int fd)
{
  struct progress_ctx p = { .r = { .json = c->json, .prefix = "problem" } };
  uint64_t rate = 0;
  char req[64];
  int r;

  if (c->rate && !parse_size_arg (c->cmd, "--rate", c->rate, 0, UINT64_MAX, &rate))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "scrub rate=%" PRIu64, rate);
  progress_init (&p.r.prog, "scrub", c->json);
  active_progress = &p.r.prog;
  if (c->json) {
    json_open (NULL, '{');
    json_open ("problems", '[');
  }
  r = cas_control_call (fd, req, on_line, &p);
  progress_done (&p.r.prog);
  active_progress = NULL;
  const uint64_t problems = value_of (&p.l, "problems");
  if (c->json) {
    json_close (']');
    json_bool ("clean", r == 0 && problems == 0);
    json_bool ("online", true);
    json_u64 ("blocks", value_of (&p.l, "blocks"));
    json_u64 ("bytes", value_of (&p.l, "bytes"));
    json_u64 ("corrupted", value_of (&p.l, "corrupted"));
    json_u64 ("already_quarantined", value_of (&p.l, "already_quarantined"));
    json_close ('}');
  }
  else if (r == 0)
    printf ("%s: %" PRIu64 " blocks, %" PRIu64 " bytes verified, %" PRIu64
            " corrupted (quarantined), %" PRIu64 " quarantined earlier: %s\n",
            c->args[0], value_of (&p.l, "blocks"), value_of (&p.l, "bytes"),
            value_of (&p.l, "corrupted"), value_of (&p.l, "already_quarantined"),
            problems == 0 ? "clean" : "PROBLEMS FOUND");
  lines_free (&p.l);
  return r == 0 && problems == 0 ? 0 : EXIT_FAILURE;
}

/* ---- disk add, disk list ---- */

int
online_disk_add (const struct cmdline *c, int fd)
{
  const char *name = c->args[1];
  struct lines l = { 0 };
  uint64_t size;
  char req[256], h[32];

  if (!cas_disk_name_valid (name))
    return usage_error (c->cmd, "'%s' is not a valid disk name", name);
  if (!parse_size_arg (c->cmd, "SIZE", c->args[2], 1, CAS_MAX_DISK_SIZE, &size))
    return EXIT_USAGE;
  snprintf (req, sizeof req, "disk-add name=%s size=%" PRIu64, name, size);
  if (cas_control_call (fd, req, collect, &l) == -1) {
    lines_free (&l);
    return EXIT_FAILURE;
  }
  lines_free (&l);
  printf ("added disk '%s' of %s (%" PRIu64 " bytes) to %s (served: clients see it now)\n",
          name, human (size, h), size, c->args[0]);
  return 0;
}

int
online_disk_list (const struct cmdline *c, int fd)
{
  struct lines l = { 0 };
  char h[32];

  if (cas_control_call (fd, "disks", collect, &l) == -1) {
    lines_free (&l);
    return EXIT_FAILURE;
  }
  if (c->json)
    json_open (NULL, '[');
  for (size_t i = 0; i < l.n; i++) {
    char *sp = strchr (l.v[i], ' ');
    if (sp == NULL)
      continue;
    *sp = '\0';
    const uint64_t size = strtoull (sp + 1, NULL, 10);
    if (c->json) {
      json_open (NULL, '{');
      json_str ("name", l.v[i]);
      json_u64 ("size", size);
      json_close ('}');
    }
    else
      printf ("%-24s %10s  (%" PRIu64 " bytes)\n", l.v[i], human (size, h), size);
  }
  if (c->json)
    json_close (']');
  lines_free (&l);
  return 0;
}
