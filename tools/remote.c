/* casdisk remote info|check|scrub|gc rados:POOL: the block objects of a
 * remote tier's pool (lib/remote/objects.h), walked with
 * lib/remote/pool.h.
 *
 *   info    counts: block objects, stored, unique and logical bytes,
 *           references, dedup and compression ratios, and each holder
 *   check   every object's frame header, its cls_cas references against
 *           its "ref.<holder>" omap keys, at least one holder, and
 *           references of holders that do not exist (leaks)
 *   scrub   reads every object whole: frame and data CRC, decoding, and
 *           the SHA-256 of the plain content against the object's name
 *   gc      drops the references of holders that do not exist, from
 *           objects older than the grace period
 *
 * A holder is an object name of the pool ("disk.<uuid>"); it exists when
 * an object of that name does.  There are no remote disks yet, so nothing
 * else says whether a holder still needs a block: a reference whose
 * holder object exists is never dropped.
 *
 * check, scrub and gc first list the pool's block objects (the walk, for
 * a total to show progress against), then visit each.  An object removed
 * meanwhile (by a writer or another gc) is skipped.  Any other failure of
 * the cluster (a timeout, a lost OSD) ends the command: one line, exit 1.
 * Problems are printed as they are found, on stdout, as `casdisk check`
 * prints them.
 *
 * An object's header, references and marks are read in separate round
 * trips, so a writer or a gc changing the object in between can make
 * check report a mismatch that is not there: check is for a quiet pool,
 * or a problem is confirmed by a second run.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casdisk.h"
#include "cli.h"
#include "progress.h"

#ifdef HAVE_RADOS
#include "util/compress.h"
#include "format.h"
#include "util/hash.h"
#include "util/log.h"
#include "remote/objects.h"
#include "remote/pool.h"
#endif

#define OPERAND_PREFIX "rados:"
#define GRACE_DEFAULT 3600
#define GRACE_MAX (UINT64_C(10) * 366 * 86400)
#define TIMEOUT_MAX 3600
#define TIMEOUT_ENV "CASDISK_RADOS_TIMEOUT"

/* The pool named by operand ARG ("rados:POOL"), or NULL after a usage
 * error. */
static const char *
parse_operand (const struct cmdline *c, const char *arg)
{
  const char *pool = arg + strlen (OPERAND_PREFIX);

  if (strncmp (arg, OPERAND_PREFIX, strlen (OPERAND_PREFIX)) != 0 || !*pool ||
      strlen (pool) > 255 || strpbrk (pool, " \t\n/")) {
    usage_error (c->cmd, "'%s' is not a pool: expected rados:POOL (a RADOS pool's name)", arg);
    return NULL;
  }
  return pool;
}

#ifndef HAVE_RADOS

static int
no_rados (const struct cmdline *c)
{
  fprintf (stderr, "%s %s: casdisk was built without librados: no remote tier\n", prog, c->cmd);
  return EXIT_FAILURE;
}

int cmd_remote_info (const struct cmdline *c) { return no_rados (c); }
int cmd_remote_check (const struct cmdline *c) { return no_rados (c); }
int cmd_remote_scrub (const struct cmdline *c) { return no_rados (c); }
int cmd_remote_gc (const struct cmdline *c) { return no_rados (c); }

#else

/* ---- Messages ---- */

/* While set, the engine's error lines are kept (cas_last_error) but not
 * printed: a failure that is one of check's problems is reported as one,
 * once. */
static bool quiet_errors;

static void
remote_log (bool error, const char *msg)
{
  if (error && quiet_errors)
    return;
  if (active_progress)
    progress_interrupt (active_progress);
  fprintf (stderr, "%s: %s%s\n", prog, error ? "" : "debug: ", msg);
}

/* The last engine error without its "remote rados:POOL: " prefix. */
static const char *
last_error (const char *pool)
{
  const char *m = cas_last_error ();
  char prefix[300];

  snprintf (prefix, sizeof prefix, "remote rados:%s: ", pool);
  return strncmp (m, prefix, strlen (prefix)) == 0 ? m + strlen (prefix) : m;
}

/* Print the kept error, as remote_log would have. */
static void
print_kept_error (void)
{
  if (active_progress)
    progress_interrupt (active_progress);
  fprintf (stderr, "%s: %s\n", prog, cas_last_error ());
}

/* ---- Connection ---- */

struct remote {
  const struct cmdline *c;
  const char *pool;
  char label[300];              /* "rados:POOL" */
  struct cas_rados *r;
  struct report_ctx report;     /* problems: print_problem */
  uint64_t problems;
  bool json_open;               /* the top-level JSON object is open */
};

/* A number of seconds in [MIN, MAX] from STR (option or variable WHAT). */
static bool
parse_seconds (const struct cmdline *c, const char *what, const char *str, uint64_t min,
               uint64_t max, uint64_t *out)
{
  char *end;

  errno = 0;
  const unsigned long long v = strtoull (str, &end, 10);
  if (errno || end == str || *end || *str == '-' || v < min || v > max) {
    usage_error (c->cmd, "%s: '%s' is not a number of seconds (%" PRIu64 " to %" PRIu64 ")",
                 what, str, min, max);
    return false;
  }
  *out = v;
  return true;
}

/* Parse the operand and the connection's options, connect.  Returns 0,
 * or the command's exit status. */
static int
remote_start (const struct cmdline *c, struct remote *rm)
{
  struct cas_rados_opts o = { 0 };
  uint64_t timeout = CAS_RADOS_DEFAULT_TIMEOUT;
  const char *env = getenv (TIMEOUT_ENV);

  memset (rm, 0, sizeof *rm);
  rm->c = c;
  rm->report.json = c->json;
  rm->report.prefix = "problem";
  cas_set_log (remote_log);
  if (!(rm->pool = parse_operand (c, c->args[0])))
    return EXIT_USAGE;
  snprintf (rm->label, sizeof rm->label, "%s", c->args[0]);
  if (c->timeout) {
    if (!parse_seconds (c, "--timeout", c->timeout, 1, TIMEOUT_MAX, &timeout))
      return EXIT_USAGE;
  }
  else if (env && *env && !parse_seconds (c, "$" TIMEOUT_ENV, env, 1, TIMEOUT_MAX, &timeout))
    return EXIT_USAGE;
  o.pool = rm->pool;
  o.conf = c->ceph_conf;
  o.id = c->ceph_id;
  o.op_timeout_s = timeout;
  if (cas_rados_open (&o, &rm->r) == -1)
    return EXIT_FAILURE;        /* it said why, in one line */
  return 0;
}

static void
remote_end (struct remote *rm)
{
  cas_rados_close (rm->r);
  rm->r = NULL;
}

/* One problem, printed at once. */
static void problem (struct remote *rm, const char *fmt, ...) __attribute__((format (printf, 2, 3)));
static void
problem (struct remote *rm, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  rm->problems++;
  print_problem (&rm->report, msg);
}

/* The cluster failed under a command that printed part of its JSON:
 * close it, saying so. */
static int
remote_failed (struct remote *rm)
{
  if (rm->json_open) {
    json_close (']');
    json_bool ("clean", false);
    json_str ("error", last_error (rm->pool));
    json_close ('}');
  }
  return EXIT_FAILURE;
}

/* ---- Holders: a small hash table of the holders seen ---- */

struct holder {
  char *name;
  uint64_t blocks;              /* references (objects it holds) */
  uint64_t logical_bytes;       /* their plain bytes */
  int exists;                   /* -1 not asked yet, 0, 1 */
};

struct holders {
  struct holder *v;             /* in the order first seen */
  size_t n, cap;
  size_t *slot;                 /* open addressing: index in v + 1, 0 = empty */
  size_t nslots;                /* a power of two, > 2 n */
};

static uint64_t
hash_name (const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char) *s) * 1099511628211ull;
  return h;
}

/* The entry of NAME, added if new.  NULL: out of memory (logged). */
static struct holder *
holder_get (struct holders *t, const char *name)
{
  if (2 * (t->n + 1) >= t->nslots) {
    size_t ns = t->nslots ? 2 * t->nslots : 64;
    size_t *slot = calloc (ns, sizeof *slot);
    if (!slot)
      goto nomem;
    for (size_t i = 0; i < t->n; i++) {
      size_t k = hash_name (t->v[i].name) & (ns - 1);
      while (slot[k])
        k = (k + 1) & (ns - 1);
      slot[k] = i + 1;
    }
    free (t->slot);
    t->slot = slot;
    t->nslots = ns;
  }
  size_t k = hash_name (name) & (t->nslots - 1);
  for (; t->slot[k]; k = (k + 1) & (t->nslots - 1))
    if (strcmp (t->v[t->slot[k] - 1].name, name) == 0)
      return &t->v[t->slot[k] - 1];
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 16;
    struct holder *v = realloc (t->v, cap * sizeof *v);
    if (!v)
      goto nomem;
    t->v = v;
    t->cap = cap;
  }
  struct holder *h = &t->v[t->n];
  if (!(h->name = strdup (name)))
    goto nomem;
  h->blocks = h->logical_bytes = 0;
  h->exists = -1;
  t->slot[k] = ++t->n;
  return h;

 nomem:
  errno = ENOMEM;
  cas_error ("holders: %m");
  return NULL;
}

static void
holders_free (struct holders *t)
{
  for (size_t i = 0; i < t->n; i++)
    free (t->v[i].name);
  free (t->v);
  free (t->slot);
}

/* Does H's object exist?  1, 0, or -1 (logged).  Asked once per run. */
static int
holder_exists (struct remote *rm, struct holder *h)
{
  if (h->exists < 0)
    h->exists = cas_rados_pool_object_exists (rm->r, h->name);
  return h->exists;
}

static uint64_t
missing_holders (const struct holders *t)
{
  uint64_t n = 0;
  for (size_t i = 0; i < t->n; i++)
    n += t->v[i].exists == 0;
  return n;
}

static int
cmp_holder (const void *a, const void *b)
{
  return strcmp (((const struct holder *) a)->name, ((const struct holder *) b)->name);
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* ---- The list of block objects, for a total ---- */

struct blocks {
  uint8_t (*sha)[32];           /* the block objects */
  size_t n, cap;
  char **bad_names;             /* "blk.*" objects whose name is not a digest */
  size_t nbad;
  uint64_t others;              /* objects not "blk.*" */
};

static int
list_one (void *arg, const char *name, const uint8_t *sha)
{
  struct blocks *b = arg;

  if (!sha) {
    char **v = realloc (b->bad_names, (b->nbad + 1) * sizeof *v);
    if (!v || !(v[b->nbad] = strdup (name))) {
      if (v)
        b->bad_names = v;
      return -ENOMEM;
    }
    b->bad_names = v;
    b->nbad++;
    return 0;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 1024;
    uint8_t (*v)[32] = realloc (b->sha, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    b->sha = v;
    b->cap = cap;
  }
  memcpy (b->sha[b->n++], sha, 32);
  return 0;
}

static void
blocks_free (struct blocks *b)
{
  free (b->sha);
  for (size_t i = 0; i < b->nbad; i++)
    free (b->bad_names[i]);
  free (b->bad_names);
}

/* List the pool's block objects into *B.  0 or -1 (logged). */
static int
list_blocks (struct remote *rm, struct blocks *b)
{
  memset (b, 0, sizeof *b);
  int rc = cas_rados_pool_walk (rm->r, list_one, b, &b->others);
  if (rc == -ENOMEM) {
    errno = ENOMEM;
    cas_error ("remote %s: listing the block objects: %m", rm->label);
  }
  if (rc != 0) {
    blocks_free (b);
    return -1;
  }
  return 0;
}

/* ---- info ---- */

struct info {
  struct remote *rm;
  struct holders holders;
  uint64_t objects, bad_names, bad_frames, bad_refs;
  uint64_t stored, unique, refs, logical;
};

/* ---- A pass over every block object (check, scrub, gc) ---- */

/* Start pass WHAT ("remote check") over the pool's objects: progress on
 * stderr, and with --json the object and its list LIST ("problems").
 */
static void
pass_begin (struct remote *rm, const struct cmdline *c, const char *what, const char *list)
{
  progress_init (&rm->report.prog, what, c->json);
  rm->report.prog.unit = "objects";
  active_progress = &rm->report.prog;
  if (c->json) {
    json_open (NULL, '{');
    json_open (list, '[');
    rm->json_open = true;
  }
}

/* FN (X, sha) for every block object of B, with progress; stops at the
 * first that fails (returns its result).
 */
static int
pass_run (struct remote *rm, const struct blocks *b, int (*fn) (void *x, const uint8_t sha[32]),
          void *x)
{
  int rc = 0;

  for (size_t i = 0; i < b->n && rc == 0; i++) {
    rc = fn (x, b->sha[i]);
    on_progress (&rm->report, i + 1, b->n);
  }
  return rc;
}

/* End the pass: progress, B and the connection go. */
static void
pass_end (struct remote *rm, struct blocks *b)
{
  progress_done (&rm->report.prog);
  active_progress = NULL;
  blocks_free (b);
  remote_end (rm);
}

static int
info_one (void *arg, const char *name, const uint8_t *sha)
{
  struct info *x = arg;
  struct cas_rados_obj o;
  struct cas_rados_holders h;

  if (!sha) {
    x->bad_names++;
    return 0;
  }
  if (cas_rados_pool_stat_block (x->rm->r, name, &o) == -1)
    return errno == ENOENT ? 0 : -1;          /* gone since listed */
  quiet_errors = true;
  int rc = cas_rados_pool_refs (x->rm->r, sha, &h);
  quiet_errors = false;
  if (rc == -1) {
    if (errno == ENOENT)
      return 0;
    if (errno != EUCLEAN && errno != ENOTSUP) {
      print_kept_error ();
      return -1;
    }
    x->bad_refs++;
    h.n = 0;
    h.names = NULL;
  }
  x->objects++;
  x->refs += h.n;
  const uint64_t plain = o.header_ok ? o.frame.plain_len : 0;
  if (o.header_ok) {
    x->stored += o.frame.stored_len;
    x->unique += plain;
    x->logical += plain * h.n;
  }
  else
    x->bad_frames++;
  for (uint32_t i = 0; i < h.n; i++) {
    struct holder *e = holder_get (&x->holders, h.names[i]);
    if (!e) {
      cas_rados_holders_free (&h);
      return -1;
    }
    e->blocks++;
    e->logical_bytes += plain;
  }
  cas_rados_holders_free (&h);
  return 0;
}

int
cmd_remote_info (const struct cmdline *c)
{
  struct remote rm;
  struct info x = { .rm = &rm };
  uint64_t others = 0;
  int rc = remote_start (c, &rm);

  if (rc != 0)
    return rc;
  if (cas_rados_pool_walk (rm.r, info_one, &x, &others) != 0) {
    holders_free (&x.holders);
    remote_end (&rm);
    return EXIT_FAILURE;
  }
  for (size_t i = 0; i < x.holders.n; i++)
    if (holder_exists (&rm, &x.holders.v[i]) == -1) {
      holders_free (&x.holders);
      remote_end (&rm);
      return EXIT_FAILURE;
    }
  remote_end (&rm);
  qsort (x.holders.v, x.holders.n, sizeof *x.holders.v, cmp_holder);

  const double dedup = ratio (x.logical, x.unique), comp = ratio (x.unique, x.stored);
  if (c->json) {
    json_open (NULL, '{');
    json_open ("pool", '{');
    json_str ("name", rm.label);
    json_u64 ("block_objects", x.objects);
    json_u64 ("references", x.refs);
    json_u64 ("holders", x.holders.n);
    json_u64 ("missing_holders", missing_holders (&x.holders));
    json_u64 ("logical_bytes", x.logical);
    json_u64 ("unique_bytes", x.unique);
    json_u64 ("stored_bytes", x.stored);
    json_ratio ("dedup_ratio", dedup);
    json_ratio ("compression_ratio", comp);
    json_u64 ("bad_frame_headers", x.bad_frames);
    json_u64 ("undecodable_references", x.bad_refs);
    json_u64 ("bad_block_names", x.bad_names);
    json_u64 ("other_objects", others);
    json_close ('}');
    json_open ("holders", '[');
    for (size_t i = 0; i < x.holders.n; i++) {
      json_open (NULL, '{');
      json_str ("name", x.holders.v[i].name);
      json_u64 ("blocks", x.holders.v[i].blocks);
      json_u64 ("logical_bytes", x.holders.v[i].logical_bytes);
      json_bool ("exists", x.holders.v[i].exists == 1);
      json_close ('}');
    }
    json_close (']');
    json_close ('}');
  }
  else {
    printf ("pool %s\n", rm.label);
    printf ("  %-22s %10" PRIu64 "\n", "block objects", x.objects);
    printf ("  %-22s %10" PRIu64 "\n", "references", x.refs);
    printf ("  %-22s %10zu", "holders", x.holders.n);
    if (missing_holders (&x.holders))
      printf ("  (%" PRIu64 " without an object: leaks)", missing_holders (&x.holders));
    printf ("\n");
    print_bytes ("logical bytes", x.logical);
    print_bytes ("unique bytes", x.unique);
    print_bytes ("stored bytes", x.stored);
    printf ("  %-22s %10.2f\n", "dedup ratio", dedup);
    printf ("  %-22s %10.2f\n", "compression ratio", comp);
    if (x.bad_frames || x.bad_refs || x.bad_names)
      printf ("  %-22s %10" PRIu64 "  (bad frame headers %" PRIu64 ", undecodable references %"
              PRIu64 ", bad names %" PRIu64 ": run 'casdisk remote check')\n", "damaged objects",
              x.bad_frames + x.bad_refs + x.bad_names, x.bad_frames, x.bad_refs, x.bad_names);
    printf ("  %-22s %10" PRIu64 "\n", "other objects", others);
    for (size_t i = 0; i < x.holders.n; i++) {
      char hb[32];
      const struct holder *h = &x.holders.v[i];
      printf ("holder %s: %" PRIu64 " block%s, %s logical (%" PRIu64 " bytes)%s\n", h->name,
              h->blocks, h->blocks == 1 ? "" : "s", human (h->logical_bytes, hb),
              h->logical_bytes, h->exists ? "" : "; no such object: its references are leaks");
    }
  }
  holders_free (&x.holders);
  return 0;
}

/* ---- check ---- */

struct check {
  struct remote *rm;
  struct holders holders;
  uint64_t objects, refs, leaks, vanished;
};

/* Check one block object.  0, or -1: the cluster failed (printed). */
static int
check_one (void *arg, const uint8_t sha[32])
{
  struct check *x = arg;
  struct remote *rm = x->rm;
  char name[CAS_RADOS_NAME_LEN + 1];
  struct cas_rados_obj o;
  struct cas_rados_holders refs, marks;
  bool refs_ok = true;

  cas_rados_block_name (sha, name);
  if (cas_rados_pool_stat_block (rm->r, name, &o) == -1) {
    if (errno != ENOENT)
      return -1;
    x->vanished++;
    return 0;
  }
  if (!o.header_ok)
    problem (rm, "%s: bad frame: %s", name, o.problem);
  quiet_errors = true;
  int rc = cas_rados_pool_refs (rm->r, sha, &refs);
  quiet_errors = false;
  if (rc == -1) {
    if (errno == ENOENT) {
      x->vanished++;
      return 0;
    }
    if (errno != EUCLEAN && errno != ENOTSUP) {
      print_kept_error ();
      return -1;
    }
    problem (rm, "%s", last_error (rm->pool));    /* "blk...: refs: ..." */
    refs_ok = false;
    refs.n = 0;
    refs.names = NULL;
  }
  if (cas_rados_pool_marks (rm->r, name, &marks) == -1) {
    cas_rados_holders_free (&refs);
    if (errno != ENOENT)
      return -1;
    x->vanished++;
    return 0;
  }
  x->objects++;
  x->refs += refs.n;
  if (refs_ok) {
    if (refs.n == 0)
      problem (rm, "%s: no holder: cls_cas records no reference", name);
    qsort (refs.names, refs.n, sizeof *refs.names, cmp_str);
    /* marks come in key order, which is the holders' order */
    uint32_t i = 0, j = 0;
    while (i < refs.n || j < marks.n) {
      const int d = i == refs.n ? 1 : j == marks.n ? -1 : strcmp (refs.names[i], marks.names[j]);
      if (d > 0) {
        problem (rm, "%s: the mark ref.%s has no cls_cas reference of %s", name,
                 marks.names[j], marks.names[j]);
        j++;
        continue;
      }
      const char *h = refs.names[i];
      uint32_t k = 1;
      while (i + k < refs.n && strcmp (refs.names[i + k], h) == 0)
        k++;
      if (k > 1)
        problem (rm, "%s: %s holds %" PRIu32 " cls_cas references (one per holder is kept)",
                 name, h, k);
      if (d < 0)
        problem (rm, "%s: the cls_cas reference of %s has no mark ref.%s", name, h, h);
      else
        j++;
      struct holder *e = holder_get (&x->holders, h);
      if (!e) {
        cas_rados_holders_free (&refs);
        cas_rados_holders_free (&marks);
        return -1;
      }
      e->blocks++;
      const int ex = holder_exists (rm, e);
      if (ex == -1) {
        cas_rados_holders_free (&refs);
        cas_rados_holders_free (&marks);
        return -1;
      }
      if (ex == 0) {
        x->leaks += k;
        problem (rm, "%s: leaked reference: its holder %s does not exist", name, h);
      }
      i += k;
    }
  }
  cas_rados_holders_free (&refs);
  cas_rados_holders_free (&marks);
  return 0;
}

int
cmd_remote_check (const struct cmdline *c)
{
  struct remote rm;
  struct check x = { .rm = &rm };
  struct blocks b;
  int rc = remote_start (c, &rm);

  if (rc != 0)
    return rc;
  if (list_blocks (&rm, &b) == -1) {
    remote_end (&rm);
    return EXIT_FAILURE;
  }
  pass_begin (&rm, c, "remote check", "problems");
  for (size_t i = 0; i < b.nbad; i++)
    problem (&rm, "%s: not a block object's name (blk. and 64 lowercase hex digits)",
             b.bad_names[i]);
  rc = pass_run (&rm, &b, check_one, &x);
  pass_end (&rm, &b);
  if (rc != 0) {
    holders_free (&x.holders);
    return remote_failed (&rm);
  }
  const uint64_t missing = missing_holders (&x.holders);
  if (c->json) {
    json_close (']');
    json_bool ("clean", rm.problems == 0);
    json_u64 ("problem_count", rm.problems);
    json_u64 ("block_objects", x.objects);
    json_u64 ("references_checked", x.refs);
    json_u64 ("holders", x.holders.n);
    json_u64 ("missing_holders", missing);
    json_u64 ("leaked_references", x.leaks);
    json_close ('}');
  }
  else
    printf ("%s: %" PRIu64 " block objects, %" PRIu64 " references, %zu holder%s (%" PRIu64
            " missing); %" PRIu64 " problem%s (%" PRIu64 " leaked reference%s): %s\n",
            rm.label, x.objects, x.refs, x.holders.n, x.holders.n == 1 ? "" : "s", missing, rm.problems,
            rm.problems == 1 ? "" : "s", x.leaks, x.leaks == 1 ? "" : "s",
            rm.problems == 0 ? "clean" : "PROBLEMS FOUND");
  holders_free (&x.holders);
  return rm.problems == 0 ? 0 : EXIT_FAILURE;
}

/* ---- scrub ---- */

struct scrub {
  struct remote *rm;
  uint8_t *frame, *plain;
  uint64_t objects, bytes, raw, compressed, sectored, bad, vanished;
  uint64_t rate, t0;            /* --rate (0: none), and when the pass began (now_ns) */
};

static void
hex (const uint8_t *b, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Scrub one block object.  0, or -1: the cluster failed (printed). */
static int
scrub_one (struct scrub *x, const uint8_t sha[32])
{
  struct remote *rm = x->rm;
  char name[CAS_RADOS_NAME_LEN + 1], msg[160], got[65];
  struct cas_rados_frame_info fi;
  struct cas_hash h;
  const char *bad;
  const uint8_t *plain;
  size_t len;

  cas_rados_block_name (sha, name);
  quiet_errors = true;
  int rc = cas_rados_pool_read_block (rm->r, name, x->frame, CAS_RADOS_FRAME_MAX, &len, NULL);
  quiet_errors = false;
  if (rc == -1) {
    if (errno == ENOENT) {
      x->vanished++;
      return 0;
    }
    if (errno != ERANGE) {
      print_kept_error ();
      return -1;
    }
    x->objects++;
    x->bad++;
    problem (rm, "%s", last_error (rm->pool));    /* "blk...: read: N bytes, larger ..." */
    return 0;
  }
  x->objects++;
  x->bytes += len;
  if ((bad = cas_rados_frame_problem (x->frame, len, false, &fi, msg, sizeof msg))) {
    x->bad++;
    problem (rm, "%s: bad frame: %s", name, bad);
    return 0;
  }
  const uint8_t *stored = x->frame + CAS_RADOS_HDR_LEN;
  switch (fi.flags) {
  case CAS_BLK_COMPRESSED:
    x->compressed++;
    if (cas_decompress (x->plain, fi.plain_len, stored, fi.stored_len) == -1) {
      x->bad++;
      problem (rm, "%s: its %" PRIu32 " stored bytes are not a zstd frame of %" PRIu32 " bytes",
               name, fi.stored_len, fi.plain_len);
      return 0;
    }
    plain = x->plain;
    break;
  case CAS_BLK_SECTORED:
    /* The piece CRCs' seed is the writing store's block key (lib/format.h:
     * cas_piece_seed), keyed with that store's secret: not checked here.
     * The frame's data CRC, checked above, covers the same bytes. */
    x->sectored++;
    plain = stored;
    break;
  default:
    x->raw++;
    plain = stored;
    break;
  }
  if (cas_hash_block (plain, fi.plain_len, &h) == -1) {
    cas_error ("remote %s: %s: SHA-256: %m", rm->label, name);
    return -1;
  }
  if (memcmp (h.b, sha, 32) != 0) {
    x->bad++;
    hex (h.b, 32, got);
    problem (rm, "%s: the SHA-256 of its %" PRIu32 " plain bytes is %s, not its name", name,
             fi.plain_len, got);
  }
  return 0;
}

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* scrub_one, then a sleep until the bytes read so far are due at --rate. */
static int
scrub_paced (void *arg, const uint8_t sha[32])
{
  struct scrub *x = arg;
  const int rc = scrub_one (x, sha);

  if (x->rate) {
    const uint64_t due = x->t0 + (uint64_t) ((double) x->bytes * 1e9 / x->rate), now = now_ns ();
    if (due > now) {
      const uint64_t d = due - now;
      struct timespec ts = { d / 1000000000, d % 1000000000 };
      nanosleep (&ts, NULL);
    }
  }
  return rc;
}

int
cmd_remote_scrub (const struct cmdline *c)
{
  struct remote rm;
  struct scrub x = { .rm = &rm };
  struct blocks b;
  uint64_t rate = 0;
  int rc;

  if (c->rate && !parse_size_arg (c->cmd, "--rate", c->rate, 0, UINT64_MAX, &rate))
    return EXIT_USAGE;
  if ((rc = remote_start (c, &rm)) != 0)
    return rc;
  x.frame = malloc (CAS_RADOS_FRAME_MAX);
  x.plain = malloc (CAS_MAX_BLOCK_SIZE);
  if (!x.frame || !x.plain) {
    fprintf (stderr, "%s: %m\n", prog);
    free (x.frame);
    free (x.plain);
    remote_end (&rm);
    return EXIT_FAILURE;
  }
  if (list_blocks (&rm, &b) == -1) {
    free (x.frame);
    free (x.plain);
    remote_end (&rm);
    return EXIT_FAILURE;
  }
  pass_begin (&rm, c, "remote scrub", "problems");
  for (size_t i = 0; i < b.nbad; i++) {
    x.bad++;
    problem (&rm, "%s: not a block object's name (blk. and 64 lowercase hex digits)",
             b.bad_names[i]);
  }
  x.rate = rate;
  x.t0 = now_ns ();
  rc = pass_run (&rm, &b, scrub_paced, &x);
  pass_end (&rm, &b);
  free (x.frame);
  free (x.plain);
  if (rc != 0)
    return remote_failed (&rm);
  if (c->json) {
    json_close (']');
    json_bool ("clean", x.bad == 0);
    json_u64 ("block_objects", x.objects);
    json_u64 ("bytes", x.bytes);
    json_u64 ("raw", x.raw);
    json_u64 ("compressed", x.compressed);
    json_u64 ("sectored", x.sectored);
    json_bool ("piece_crcs_checked", false);
    json_u64 ("bad", x.bad);
    json_close ('}');
  }
  else {
    printf ("%s: %" PRIu64 " block objects, %" PRIu64 " bytes read (%" PRIu64 " raw, %" PRIu64
            " compressed, %" PRIu64 " sectored), %" PRIu64 " bad: %s\n", rm.label, x.objects,
            x.bytes, x.raw, x.compressed, x.sectored, x.bad, x.bad == 0 ? "clean" : "PROBLEMS FOUND");
    if (x.sectored)
      printf ("note: the piece CRCs of sectored blocks are not checked (their seed is the "
              "writing store's block key); their frame's data CRC and SHA-256 are\n");
  }
  return x.bad == 0 ? 0 : EXIT_FAILURE;
}

/* ---- gc ---- */

struct gc {
  struct remote *rm;
  struct holders holders;
  uint64_t grace;
  time_t now;
  uint64_t objects, dropped, removed, freed, kept, failed, vanished;
};

static void
gc_report (struct gc *x, const char *name, const char *holder, bool removed, uint64_t size)
{
  const bool dry = x->rm->c->dry_run;
  char hb[32];

  if (x->rm->c->json) {
    json_open (NULL, '{');
    json_str ("object", name);
    json_str ("holder", holder);
    json_bool ("removed", removed);
    json_close ('}');
  }
  else {
    if (active_progress)
      progress_interrupt (active_progress);
    printf ("%s: %s: reference of %s (no such object)", dry ? "would drop" : "dropped", name,
            holder);
    if (removed)
      printf ("; %s the object: %s freed", dry ? "would remove" : "removed", human (size, hb));
    printf ("\n");
  }
  fflush (stdout);
}

/* Collect one block object's garbage.  0, or -1: the cluster failed
 * (printed). */
static int
gc_one (void *arg, const uint8_t sha[32])
{
  struct gc *x = arg;
  struct remote *rm = x->rm;
  char name[CAS_RADOS_NAME_LEN + 1];
  struct cas_rados_obj o;
  struct cas_rados_holders refs;

  cas_rados_block_name (sha, name);
  if (cas_rados_pool_stat_block (rm->r, name, &o) == -1) {
    if (errno != ENOENT)
      return -1;
    x->vanished++;
    return 0;
  }
  quiet_errors = true;
  int rc = cas_rados_pool_refs (rm->r, sha, &refs);
  quiet_errors = false;
  if (rc == -1) {
    if (errno == ENOENT) {
      x->vanished++;
      return 0;
    }
    if (errno != EUCLEAN && errno != ENOTSUP) {
      print_kept_error ();
      return -1;
    }
    /* Not a problem list here (gc's JSON lists what it dropped): an
     * error line, and exit 1. */
    char why[512];
    snprintf (why, sizeof why, "%s", last_error (rm->pool));
    x->failed++;
    cas_error ("remote %s: not collected: %s", rm->label, why);
    return 0;
  }
  x->objects++;
  qsort (refs.names, refs.n, sizeof *refs.names, cmp_str);
  const bool young = (uint64_t) (x->now > o.mtime ? x->now - o.mtime : 0) < x->grace;
  uint32_t left = refs.n;
  for (uint32_t i = 0; i < refs.n; i++) {
    const char *h = refs.names[i];
    if (i > 0 && strcmp (h, refs.names[i - 1]) == 0)
      continue;                 /* put drops one holder's one reference */
    struct holder *e = holder_get (&x->holders, h);
    if (!e || holder_exists (rm, e) == -1) {
      cas_rados_holders_free (&refs);
      return -1;
    }
    e->blocks++;
    if (e->exists)
      continue;                 /* never the reference of a holder that exists */
    if (young) {
      x->kept++;
      continue;
    }
    bool removed = false;
    if (rm->c->dry_run)
      removed = --left == 0;
    else if (cas_rados_block_put (rm->r, sha, h, &removed) == -1) {
      if (errno == ETIMEDOUT) {
        cas_rados_holders_free (&refs);
        return -1;
      }
      x->failed++;              /* logged; ENOENT: removed meanwhile */
      continue;
    }
    x->dropped++;
    if (removed) {
      x->removed++;
      x->freed += o.size;
    }
    gc_report (x, name, h, removed, o.size);
  }
  cas_rados_holders_free (&refs);
  return 0;
}

int
cmd_remote_gc (const struct cmdline *c)
{
  struct remote rm;
  struct gc x = { .rm = &rm, .grace = GRACE_DEFAULT };
  struct blocks b;
  int rc;

  if (c->grace && !parse_seconds (c, "--grace", c->grace, 0, GRACE_MAX, &x.grace))
    return EXIT_USAGE;
  if ((rc = remote_start (c, &rm)) != 0)
    return rc;
  if (list_blocks (&rm, &b) == -1) {
    remote_end (&rm);
    return EXIT_FAILURE;
  }
  x.now = time (NULL);
  pass_begin (&rm, c, "remote gc", "dropped");
  rc = pass_run (&rm, &b, gc_one, &x);
  pass_end (&rm, &b);
  if (rc != 0) {
    holders_free (&x.holders);
    return remote_failed (&rm);
  }
  const uint64_t missing = missing_holders (&x.holders);
  char hb[32];
  if (c->json) {
    json_close (']');
    json_bool ("dry_run", c->dry_run);
    json_u64 ("grace_seconds", x.grace);
    json_u64 ("block_objects", x.objects);
    json_u64 ("holders", x.holders.n);
    json_u64 ("missing_holders", missing);
    json_u64 ("references_dropped", x.dropped);
    json_u64 ("objects_removed", x.removed);
    json_u64 ("bytes_freed", x.freed);
    json_u64 ("kept_by_grace", x.kept);
    json_u64 ("failed", x.failed);
    json_close ('}');
  }
  else
    printf ("%s: %" PRIu64 " block objects, %zu holder%s (%" PRIu64 " missing); %s %" PRIu64
            " reference%s of missing holders, %s %" PRIu64 " object%s, %s %s (%" PRIu64
            " bytes); %" PRIu64 " kept for the grace period (%" PRIu64 " s); %" PRIu64
            " failed%s\n",
            rm.label, x.objects, x.holders.n, x.holders.n == 1 ? "" : "s", missing,
            c->dry_run ? "would drop" : "dropped",
            x.dropped, x.dropped == 1 ? "" : "s", c->dry_run ? "would remove" : "removed",
            x.removed, x.removed == 1 ? "" : "s", c->dry_run ? "would free" : "freed",
            human (x.freed, hb), x.freed, x.kept, x.grace, x.failed,
            c->dry_run ? " (dry run: nothing changed)" : "");
  holders_free (&x.holders);
  return x.failed == 0 ? 0 : EXIT_FAILURE;
}

#endif /* HAVE_RADOS */
