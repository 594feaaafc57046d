/* Output helpers shared by the casdisk tool's commands: sizes for humans,
 * a tiny JSON writer, problem reports and progress.
 */
#include <config.h>

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"
#include "progress.h"

/* "1.5 GiB"; exact below 1 KiB. */
const char *
human (uint64_t bytes, char buf[32])
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  double v = bytes;
  size_t u = 0;

  /* Round first, so that 1023.96 KiB reads "1.0 MiB", not "1024.0 KiB". */
  while (u + 1 < ARRAY_SIZE (units) && v >= 1023.95) {
    v /= 1024;
    u++;
  }
  snprintf (buf, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

/* ---- Output helpers ---- */

/* A ratio a/b, 1.0 when there is nothing to divide by. */
double
ratio (uint64_t a, uint64_t b)
{
  return b ? (double) a / b : 1.0;
}

/* "  label             1.5 GiB  (1610612736 bytes)" */
void
print_bytes (const char *label, uint64_t bytes)
{
  char h[32];

  printf ("  %-22s %10s  (%" PRIu64 " bytes)\n", label, human (bytes, h), bytes);
}

/* A tiny JSON writer for stdout: it tracks whether a comma is due at each
 * nesting level, and escapes strings.  Numbers are written as they are.
 */
static struct {
  int depth;
  bool first[8];                /* nothing written yet at this level */
} json;

void
json_string (const char *s)
{
  putchar ('"');
  for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf ("\\%c", *p);
    else if (*p == '\n')
      fputs ("\\n", stdout);
    else if (*p < 0x20 || *p == 0x7f)
      printf ("\\u%04x", *p);
    else
      putchar (*p);
  }
  putchar ('"');
}

/* Before a value: a comma if needed, then "KEY": if KEY is not NULL. */
void
json_key (const char *key)
{
  if (json.depth > 0 && !json.first[json.depth])
    fputs (", ", stdout);
  json.first[json.depth] = false;
  if (key) {
    json_string (key);
    fputs (": ", stdout);
  }
}

void
json_open (const char *key, char bracket)
{
  json_key (key);
  putchar (bracket);
  json.depth++;
  assert (json.depth < (int) ARRAY_SIZE (json.first));
  json.first[json.depth] = true;
}

void
json_close (char bracket)
{
  json.depth--;
  putchar (bracket);
  if (json.depth == 0)
    putchar ('\n');
}

void
json_u64 (const char *key, uint64_t v)
{
  json_key (key);
  printf ("%" PRIu64, v);
}

void
json_int (const char *key, int v)
{
  json_key (key);
  printf ("%d", v);
}

void
json_ratio (const char *key, double v)
{
  json_key (key);
  printf ("%.4f", v);
}

void
json_bool (const char *key, bool v)
{
  json_key (key);
  fputs (v ? "true" : "false", stdout);
}

void
json_str (const char *key, const char *v)
{
  json_key (key);
  json_string (v);
}


/* ---- check and scrub ---- */

void
print_problem (void *opaque, const char *msg)
{
  struct report_ctx *r = opaque;

  if (r->json)
    json_str (NULL, msg);
  else {
    progress_interrupt (&r->prog);
    printf ("%s: %s\n", r->prefix, msg);
  }
  fflush (stdout);
}

void
on_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct report_ctx *r = opaque;

  progress_update (&r->prog, done, total);
}
