/* rados-probe: measures, against a running Ceph cluster, the ways the
 * remote tier could "create or reference" a content-addressed block
 * object atomically, and the plain object put/get beside them.
 *
 *   rados-probe [-c CONF] [-p POOL] [-n COUNT] [-s SIZE]
 *       runs every scheme COUNT times (default 1000) on SIZE-byte objects
 *       (default 64 KiB) and prints a table of median and p99 latencies
 *   rados-probe [-c CONF] [-p POOL] -w
 *       one write_full of SIZE bytes: prints how long it took to succeed
 *       or fail (a stopped OSD: the client's rados_osd_op_timeout)
 *
 * CONF defaults to $CEPH_CONF, POOL to $CEPH_POOL or "casdisk".  Each
 * scheme is run on COUNT new objects ("new"), then again on the same
 * objects ("exists": the block is there, take one more reference), then
 * its objects are removed.  A scheme whose object class is missing or
 * rejects its input is reported as not working, not measured.
 *
 * The schemes:
 *   a   write op: create(EXCLUSIVE) + write_full; on an existing object
 *       it fails with EEXIST (the data travelled for nothing)
 *   b   write op: create(EXCLUSIVE) + write_full + setxattr refs=1; on
 *       EEXIST: read refs, then cmpxattr(refs == old) + setxattr(old+1),
 *       again if another client won the race (ECANCELED)
 *   c   write op: create(EXCLUSIVE) + write_full + exec refcount.set([tag])
 *       (refcount.get in the create op fails: the class reads the xattr
 *       of an object not yet in the store, ENOENT; its row shows it);
 *       on EEXIST: exec refcount.get(tag) alone (cls_refcount keeps a set
 *       of tags, one per reference)
 *   d   exec cas.chunk_create_or_get_ref(source, data): the class creates
 *       the object or adds the reference; "exists, verify" sets
 *       FLAG_VERIFY, comparing the stored bytes with the data sent
 *   e   write op: create(EXCLUSIVE) + write_full + exec numops.add(refs, 1);
 *       on EEXIST: assert_exists + exec numops.add(refs, 1), one op
 *
 * Class inputs are Ceph's encoding, written by hand: little-endian
 * integers, strings and buffers as a 32-bit length and the bytes, and a
 * structure as ENCODE_START's version byte, compat byte and 32-bit length
 * before its fields.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>

static rados_t cluster;
static rados_ioctx_t io;
static size_t obj_size = 65536;
static int count = 1000;
static char *data;              /* obj_size bytes, varied per object */
static int failures;

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* ---- Ceph's encoding, by hand. ---- */
struct enc {
  unsigned char *buf;
  size_t len, cap;
};

static void
enc_need (struct enc *e, size_t n)
{
  if (e->len + n <= e->cap)
    return;
  e->cap = (e->len + n) * 2;
  e->buf = realloc (e->buf, e->cap);
  if (!e->buf) {
    perror ("realloc");
    exit (1);
  }
}

static void
enc_bytes (struct enc *e, const void *p, size_t n)
{
  enc_need (e, n);
  memcpy (e->buf + e->len, p, n);
  e->len += n;
}

static void
enc_u8 (struct enc *e, uint8_t v)
{
  enc_bytes (e, &v, 1);
}

static void
enc_le (struct enc *e, uint64_t v, int n)
{
  unsigned char b[8];
  for (int i = 0; i < n; i++)
    b[i] = v >> (8 * i);
  enc_bytes (e, b, n);
}

static void
enc_blob (struct enc *e, const void *p, size_t n)       /* string, bufferlist */
{
  enc_le (e, n, 4);
  enc_bytes (e, p, n);
}

static void
enc_str (struct enc *e, const char *s)
{
  enc_blob (e, s, strlen (s));
}

/* ENCODE_START(v, compat): returns where the length goes. */
static size_t
enc_start (struct enc *e, uint8_t v, uint8_t compat)
{
  enc_u8 (e, v);
  enc_u8 (e, compat);
  size_t at = e->len;
  enc_le (e, 0, 4);
  return at;
}

static void
enc_finish (struct enc *e, size_t at)
{
  uint32_t n = e->len - at - 4;
  for (int i = 0; i < 4; i++)
    e->buf[at + i] = n >> (8 * i);
}

/* cls_refcount_get_op { string tag; bool implicit_ref; } v1 */
static void
enc_refcount_get (struct enc *e, const char *tag)
{
  size_t at = enc_start (e, 1, 1);
  enc_str (e, tag);
  enc_u8 (e, 0);
  enc_finish (e, at);
}

/* cls_refcount_set_op { list<string> refs; } v1 */
static void
enc_refcount_set (struct enc *e, const char *tag)
{
  size_t at = enc_start (e, 1, 1);
  enc_le (e, 1, 4);
  enc_str (e, tag);
  enc_finish (e, at);
}

/* cls_refcount_read_op { bool implicit_ref; } v1 */
static void
enc_refcount_read (struct enc *e)
{
  size_t at = enc_start (e, 1, 1);
  enc_u8 (e, 0);
  enc_finish (e, at);
}

/* hobject_t v4 (compat 3): key, oid, snap, hash, max, nspace, pool. */
static void
enc_hobject (struct enc *e, const char *oid, int64_t pool)
{
  size_t at = enc_start (e, 4, 3);
  enc_str (e, "");
  enc_str (e, oid);
  enc_le (e, (uint64_t) -2, 8);         /* CEPH_NOSNAP: the head object */
  enc_le (e, 0, 4);
  enc_u8 (e, 0);
  enc_str (e, "");
  enc_le (e, (uint64_t) pool, 8);
  enc_finish (e, at);
}

/* cls_cas_chunk_create_or_get_ref_op { hobject_t source; u64 flags;
 * bufferlist data; } v1 */
static void
enc_cas_create_or_get (struct enc *e, const char *source, uint64_t flags,
                       const char *buf, size_t n)
{
  size_t at = enc_start (e, 1, 1);
  enc_hobject (e, source, rados_ioctx_get_id (io));
  enc_le (e, flags, 8);
  enc_blob (e, buf, n);
  enc_finish (e, at);
}

/* cls_cas_chunk_put_ref_op { hobject_t source; } v1 */
static void
enc_cas_put (struct enc *e, const char *source)
{
  size_t at = enc_start (e, 1, 1);
  enc_hobject (e, source, rados_ioctx_get_id (io));
  enc_finish (e, at);
}

/* numops add: string key, string difference. */
static void
enc_numops_add (struct enc *e, const char *key, const char *diff)
{
  enc_str (e, key);
  enc_str (e, diff);
}

/* ---- The operations, one object each. ---- */
static void
oid_of (char *oid, size_t n, const char *scheme, int i)
{
  snprintf (oid, n, "probe.%ld.%s.%d", (long) getpid (), scheme, i);
}

static const char *
fill (int i)                    /* a different content per object */
{
  for (size_t k = 0; k < obj_size; k += 8) {
    uint64_t v = (uint64_t) i * 0x9e3779b97f4a7c15ull ^ k;
    memcpy (data + k, &v, obj_size - k < 8 ? obj_size - k : 8);
  }
  return data;
}

static int
op_put (const char *oid, int i)
{
  return rados_write_full (io, oid, fill (i), obj_size);
}

static int
op_get (const char *oid, int i)
{
  static char *rbuf;
  if (!rbuf && !(rbuf = malloc (obj_size)))
    return -ENOMEM;
  int r = rados_read (io, oid, rbuf, obj_size, 0);
  if (r < 0)
    return r;
  if ((size_t) r != obj_size || memcmp (rbuf, fill (i), obj_size) != 0)
    return -EIO;
  return 0;
}

/* create(EXCLUSIVE) + write_full, and then EXTRA (or nothing). */
static int
create_op (const char *oid, int i, void (*extra) (rados_write_op_t, const char *, int, void *),
           void *arg)
{
  rados_write_op_t op = rados_create_write_op ();
  rados_write_op_create (op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
  rados_write_op_write_full (op, fill (i), obj_size);
  if (extra)
    extra (op, oid, i, arg);
  int r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  return r;
}

/* a */
static int
op_a (const char *oid, int i)
{
  return create_op (oid, i, NULL, NULL);
}

static int
op_a_exists (const char *oid, int i)
{
  int r = create_op (oid, i, NULL, NULL);
  return r == -EEXIST ? 0 : r == 0 ? -EINVAL : r;
}

/* b */
static void
extra_refs1 (rados_write_op_t op, const char *oid, int i, void *arg)
{
  rados_write_op_setxattr (op, "refs", "1", 1);
}

static int
op_b (const char *oid, int i)
{
  return create_op (oid, i, extra_refs1, NULL);
}

static int
op_b_exists (const char *oid, int i)
{
  int r = create_op (oid, i, extra_refs1, NULL);
  if (r != -EEXIST)
    return r == 0 ? -EINVAL : r;
  for (int tries = 0; tries < 100; tries++) {
    char old[32], new[32];
    r = rados_getxattr (io, oid, "refs", old, sizeof old - 1);
    if (r < 0)
      return r;
    old[r] = 0;
    snprintf (new, sizeof new, "%llu", strtoull (old, NULL, 10) + 1);
    rados_write_op_t op = rados_create_write_op ();
    rados_write_op_cmpxattr (op, "refs", LIBRADOS_CMPXATTR_OP_EQ, old, strlen (old));
    rados_write_op_setxattr (op, "refs", new, strlen (new));
    r = rados_write_op_operate (op, io, oid, NULL, 0);
    rados_release_write_op (op);
    if (r != -ECANCELED)
      return r;
  }
  return -EAGAIN;
}

/* c */
struct exec_arg {
  struct enc in;
  int prval;
};

static void
extra_refcount_get (rados_write_op_t op, const char *oid, int i, void *arg)
{
  struct exec_arg *x = arg;
  rados_write_op_exec (op, "refcount", "get", (const char *) x->in.buf, x->in.len, &x->prval);
}

/* refcount.get in the create op: the class reads the refcount xattr of
 * an object that this op has not created yet in the store. */
static int
op_c_get (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  enc_refcount_get (&x.in, "disk0");
  int r = create_op (oid, i, extra_refcount_get, &x);
  free (x.in.buf);
  return r;
}

static void
extra_refcount_set (rados_write_op_t op, const char *oid, int i, void *arg)
{
  struct exec_arg *x = arg;
  rados_write_op_exec (op, "refcount", "set", (const char *) x->in.buf, x->in.len, &x->prval);
}

/* refcount.set writes the tag set without reading it. */
static int
op_c (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  enc_refcount_set (&x.in, "disk0");
  int r = create_op (oid, i, extra_refcount_set, &x);
  free (x.in.buf);
  return r;
}

static int
op_c_exists (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  int r = create_op (oid, i, NULL, NULL);   /* the miss costs a round trip */
  if (r != -EEXIST)
    return r == 0 ? -EINVAL : r;
  enc_refcount_get (&x.in, "disk1");
  rados_write_op_t op = rados_create_write_op ();
  extra_refcount_get (op, oid, i, &x);
  r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  free (x.in.buf);
  return r;
}

/* c, without trying to create first: the reference alone. */
static int
op_c_ref (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  enc_refcount_get (&x.in, "disk2");
  rados_write_op_t op = rados_create_write_op ();
  extra_refcount_get (op, oid, i, &x);
  int r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  free (x.in.buf);
  return r;
}

/* How many tags cls_refcount holds on OID: read returns
 * cls_refcount_read_ret { list<string> refs; } v1. */
static int
refcount_tags (const char *oid)
{
  struct enc in = { 0 };
  char *out = NULL;
  size_t out_len = 0;
  enc_refcount_read (&in);
  rados_read_op_t op = rados_create_read_op ();
  int prval = 0;
  rados_read_op_exec (op, "refcount", "read", (const char *) in.buf, in.len,
                      &out, &out_len, &prval);
  int r = rados_read_op_operate (op, io, oid, 0);
  rados_release_read_op (op);
  free (in.buf);
  if (r == 0 && prval < 0)
    r = prval;
  if (r == 0 && out_len >= 10) {
    const unsigned char *u = (const unsigned char *) out;
    r = u[6] | u[7] << 8 | u[8] << 16 | (uint32_t) u[9] << 24;
  }
  else if (r == 0)
    r = -EBADMSG;
  if (out)
    rados_buffer_free (out);
  return r;
}

/* d */
static int
cas_call (const char *oid, int i, const char *source, uint64_t flags)
{
  struct enc in = { 0 };
  int prval = 0;
  enc_cas_create_or_get (&in, source, flags, fill (i), obj_size);
  rados_write_op_t op = rados_create_write_op ();
  rados_write_op_exec (op, "cas", "chunk_create_or_get_ref", (const char *) in.buf, in.len, &prval);
  int r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  free (in.buf);
  return r ? r : prval;
}

static int
op_d (const char *oid, int i)
{
  return cas_call (oid, i, "disk0", 0);
}

static int
op_d_exists (const char *oid, int i)
{
  return cas_call (oid, i, "disk1", 0);
}

static int
op_d_verify (const char *oid, int i)
{
  return cas_call (oid, i, "disk2", 1);        /* FLAG_VERIFY */
}

static int
cas_put (const char *oid, const char *source)
{
  struct enc in = { 0 };
  int prval = 0;
  enc_cas_put (&in, source);
  rados_write_op_t op = rados_create_write_op ();
  rados_write_op_exec (op, "cas", "chunk_put_ref", (const char *) in.buf, in.len, &prval);
  int r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  free (in.buf);
  return r ? r : prval;
}

/* e */
static void
extra_numops_add (rados_write_op_t op, const char *oid, int i, void *arg)
{
  struct exec_arg *x = arg;
  rados_write_op_exec (op, "numops", "add", (const char *) x->in.buf, x->in.len, &x->prval);
}

static int
op_e (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  enc_numops_add (&x.in, "refs", "1");
  int r = create_op (oid, i, extra_numops_add, &x);
  free (x.in.buf);
  return r;
}

static int
op_e_ref (const char *oid, int i)
{
  struct exec_arg x = { { 0 }, 0 };
  enc_numops_add (&x.in, "refs", "1");
  rados_write_op_t op = rados_create_write_op ();
  rados_write_op_assert_exists (op);
  extra_numops_add (op, oid, i, &x);
  int r = rados_write_op_operate (op, io, oid, NULL, 0);
  rados_release_write_op (op);
  free (x.in.buf);
  return r;
}

static int
omap_value (const char *oid, const char *key, char *val, size_t n)
{
  rados_read_op_t op = rados_create_read_op ();
  rados_omap_iter_t it;
  int prval = 0;
  char const *keys[] = { key };
  rados_read_op_omap_get_vals_by_keys (op, keys, 1, &it, &prval);
  int r = rados_read_op_operate (op, io, oid, 0);
  rados_release_read_op (op);
  if (r == 0 && prval < 0)
    r = prval;
  if (r == 0) {
    char *k, *v;
    size_t len;
    r = -ENODATA;
    if (rados_omap_get_next (it, &k, &v, &len) == 0 && k && len < n) {
      memcpy (val, v, len);
      val[len] = 0;
      r = 0;
    }
    rados_omap_get_end (it);
  }
  return r;
}

/* ---- Running and reporting. ---- */
static double *lat;

/* run LABEL SCHEME OP: COUNT times OP on the objects of SCHEME; prints a
 * table row; returns 0, or the first error (the row says it). */
static int
run (const char *label, const char *scheme, int (*op) (const char *, int))
{
  char oid[128];
  int n = 0, err = 0;
  double t0 = now ();
  for (int i = 0; i < count; i++) {
    oid_of (oid, sizeof oid, scheme, i);
    double t = now ();
    int r = op (oid, i);
    if (r < 0) {
      err = r;
      break;
    }
    lat[n++] = now () - t;
  }
  double total = now () - t0;
  if (err) {
    printf ("| %-52s | %5d | %9s | %9s | fails at op %d: %s (%d) |\n", label, n, "-", "-",
            n, strerror (-err), err);
    fflush (stdout);
    return err;
  }
  qsort (lat, n, sizeof *lat, cmp_double);
  double med = lat[n / 2], p99 = lat[(int) (n * 0.99) < n ? (int) (n * 0.99) : n - 1];
  printf ("| %-52s | %5d | %9.0f | %9.0f | ok, %.0f ops/s |\n", label, n, med * 1e6, p99 * 1e6,
          n / total);
  fflush (stdout);
  return 0;
}

static void
cleanup (const char *scheme)
{
  char oid[128];
  for (int i = 0; i < count; i++) {
    oid_of (oid, sizeof oid, scheme, i);
    rados_remove (io, oid);
  }
}

static void
note (const char *label, const char *what, int ok)
{
  printf ("|   check: %-43s | %5s | %9s | %9s | %s |\n", label, "", "", "", ok ? what : "FAILED");
  if (!ok)
    failures++;
  fflush (stdout);
}

static int
write_once (void)
{
  char oid[128];
  oid_of (oid, sizeof oid, "once", 0);
  double t = now ();
  int r = rados_write_full (io, oid, fill (0), obj_size);
  double dt = now () - t;
  if (r < 0)
    printf ("write_full %zu bytes: failed after %.2f s: %s (%d)\n", obj_size, dt, strerror (-r), r);
  else
    printf ("write_full %zu bytes: ok in %.2f s\n", obj_size, dt);
  return r < 0 ? 1 : 0;
}

int
main (int argc, char **argv)
{
  const char *conf = NULL, *pool = getenv ("CEPH_POOL");
  bool once = false;
  int c;
  while ((c = getopt (argc, argv, "c:p:n:s:w")) != -1) {
    switch (c) {
    case 'c': conf = optarg; break;
    case 'p': pool = optarg; break;
    case 'n': count = atoi (optarg); break;
    case 's': obj_size = strtoul (optarg, NULL, 0); break;
    case 'w': once = true; break;
    default:
      fprintf (stderr, "usage: %s [-c CONF] [-p POOL] [-n COUNT] [-s SIZE] [-w]\n", argv[0]);
      return 2;
    }
  }
  if (!pool)
    pool = "casdisk";
  if (count < 1 || obj_size < 8) {
    fprintf (stderr, "rados-probe: bad -n or -s\n");
    return 2;
  }
  if (!(data = malloc (obj_size)) || !(lat = malloc (count * sizeof *lat))) {
    perror ("malloc");
    return 1;
  }

  int r = rados_create2 (&cluster, "ceph", "client.admin", 0);
  if (r == 0)
    r = rados_conf_read_file (cluster, conf);   /* NULL: $CEPH_CONF */
  if (r == 0)
    r = rados_conf_parse_env (cluster, NULL);   /* $CEPH_ARGS */
  if (r < 0) {
    fprintf (stderr, "rados-probe: configuration: %s\n", strerror (-r));
    return 1;
  }
  double t = now ();
  if ((r = rados_connect (cluster)) < 0) {
    fprintf (stderr, "rados-probe: connect failed after %.1f s: %s\n", now () - t, strerror (-r));
    return 1;
  }
  if ((r = rados_ioctx_create (cluster, pool, &io)) < 0) {
    fprintf (stderr, "rados-probe: pool %s: %s\n", pool, strerror (-r));
    return 1;
  }
  if (once) {
    r = write_once ();
    rados_ioctx_destroy (io);
    rados_shutdown (cluster);
    return r;
  }

  char buf[64];
  if (rados_conf_get (cluster, "rados_osd_op_timeout", buf, sizeof buf) == 0)
    printf ("rados-probe: pool %s, %d operations each, %zu-byte objects, rados_osd_op_timeout %s\n\n",
            pool, count, obj_size, buf);
  printf ("| %-52s | %5s | %9s | %9s | %s |\n", "operation", "n", "median us", "p99 us", "result");
  printf ("|%s|------:|----------:|----------:|--------|\n",
          "------------------------------------------------------");

  char oid[128];
  if (run ("put: write_full (new object)", "put", op_put) < 0)
    failures++;
  if (run ("get: read whole object", "put", op_get) < 0)
    failures++;
  cleanup ("put");

  if (run ("a: create(EXCL) + write_full, new", "a", op_a) < 0)
    failures++;
  if (run ("a: create(EXCL) + write_full, exists -> EEXIST", "a", op_a_exists) < 0)
    failures++;
  cleanup ("a");

  if (run ("b: create(EXCL) + write_full + setxattr, new", "b", op_b) < 0)
    failures++;
  if (run ("b: exists: EEXIST, getxattr, cmpxattr+setxattr", "b", op_b_exists) < 0)
    failures++;
  else {
    char v[32];
    oid_of (oid, sizeof oid, "b", 0);
    r = rados_getxattr (io, oid, "refs", v, sizeof v - 1);
    v[r > 0 ? r : 0] = 0;
    note ("refs xattr of the first object is 2", "ok", strcmp (v, "2") == 0);
  }
  cleanup ("b");

  /* The classes may be missing: their rows say so, they do not fail. */
  if (run ("c: create(EXCL) + write_full + refcount.get, new", "c0", op_c_get) == 0)
    note ("refcount.get in the create op", "works (unexpected)", 1);
  else
    note ("ENOENT: the class reads the stored object", "as expected", 1);
  cleanup ("c0");
  if (run ("c: create(EXCL) + write_full + refcount.set, new", "c", op_c) == 0) {
    run ("c: exists: EEXIST, then refcount.get", "c", op_c_exists);
    run ("c: exists: refcount.get alone", "c", op_c_ref);
    oid_of (oid, sizeof oid, "c", 0);
    int tags = refcount_tags (oid);
    note ("refcount.read lists 3 tags", "ok", tags == 3);
  }
  cleanup ("c");

  if (run ("d: cas.chunk_create_or_get_ref, new", "d", op_d) == 0) {
    run ("d: cas.chunk_create_or_get_ref, exists", "d", op_d_exists);
    run ("d: cas.chunk_create_or_get_ref, exists, verify", "d", op_d_verify);
    /* Three references; dropping them all removes the object. */
    oid_of (oid, sizeof oid, "d", 0);
    uint64_t size;
    time_t mtime;
    bool ok = cas_put (oid, "disk0") == 0 && cas_put (oid, "disk1") == 0 &&
      rados_stat (io, oid, &size, &mtime) == 0 && size == obj_size &&
      cas_put (oid, "disk2") == 0 && rados_stat (io, oid, &size, &mtime) == -ENOENT;
    note ("3 chunk_put_ref remove the object", "ok", ok);
    /* FLAG_VERIFY refuses other bytes under the same name. */
    oid_of (oid, sizeof oid, "d", 1);
    note ("verify of other bytes: ENOMSG", "ok", cas_call (oid, 2, "disk3", 1) == -ENOMSG);
  }
  cleanup ("d");

  if (run ("e: create(EXCL) + write_full + numops.add, new", "e", op_e) == 0) {
    run ("e: exists: assert_exists + numops.add, one op", "e", op_e_ref);
    char v[32] = "";
    oid_of (oid, sizeof oid, "e", 0);
    omap_value (oid, "refs", v, sizeof v);
    note ("refs omap value of the first object is 2", "ok", strcmp (v, "2") == 0);
  }
  cleanup ("e");

  rados_ioctx_destroy (io);
  rados_shutdown (cluster);
  return failures ? 1 : 0;
}
