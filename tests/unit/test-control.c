/* Unit tests of the control channel (control.c) and the live figures
 * (metrics.c, counters.h): a store started in this process with its
 * control socket, asked through the client functions of casdisk.h.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "ops/control.h"
#include "fixture.h"

static void setup (void) { fixture_setup ("control"); }

TestSuite (control, .init = setup, .fini = fixture_teardown, .timeout = 60);

static char metrics_path[400];

static struct cas_store *
start (bool metrics)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  o.control = true;
  if (metrics) {
    snprintf (metrics_path, sizeof metrics_path, "%s/metrics.prom", store);
    o.metrics_file = metrics_path;
    o.metrics_interval = 1;
  }
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "open: %s", errors);
  cr_assert_eq (cas_store_start (s), 0, "start: %s", errors);
  return s;
}

static void
sock_path (char *buf, size_t len)
{
  snprintf (buf, len, "%s/%s", store, CAS_CONTROL_SOCKET);
}

/* The response, as "TAG REST\n" lines. */
struct text {
  char buf[65536];
  size_t len;
};

static int
append (void *opaque, const char *tag, const char *rest)
{
  struct text *t = opaque;
  t->len += snprintf (t->buf + t->len, sizeof t->buf - t->len, "%s %s\n", tag, rest);
  cr_assert_lt (t->len, sizeof t->buf);
  return 0;
}

/* Send REQUEST; returns the call's result, the lines in *T. */
static int
ask (const char *request, struct text *t)
{
  t->len = 0;
  t->buf[0] = '\0';
  const int fd = cas_control_connect (store);
  cr_assert_geq (fd, 0, "connect: %s (%s)", strerror (errno), errors);
  const int r = cas_control_call (fd, request, append, t);
  const int err = errno;
  close (fd);
  errno = err;
  return r;
}

/* The value of "data disk disk0 KEY V" or "data store KEY V". */
static uint64_t
figure (const struct text *t, const char *prefix, const char *key)
{
  char pat[256];
  snprintf (pat, sizeof pat, "data %s %s ", prefix, key);
  const char *p = strstr (t->buf, pat);
  cr_assert_not_null (p, "no '%s' in:\n%s", pat, t->buf);
  return strtoull (p + strlen (pat), NULL, 10);
}

Test (control, status_counts_requests_and_bytes)
{
  create (3, 64 << 20);
  struct cas_store *s = start (false);
  struct cas_disk *d = disk0 (s);
  uint8_t buf[3 * BS + 100];
  struct text t;

  fill_random (buf, sizeof buf, 1);
  write_ok (d, buf, sizeof buf, 5);
  write_ok (d, buf, 1000, 1 << 20);
  cr_assert_eq (cas_disk_read (d, buf, 777, 0), 0);
  cr_assert_eq (cas_disk_zero (d, 2 * BS, 0), 0);
  cr_assert_eq (cas_disk_flush (d), 0);
  cr_assert_eq (cas_disk_read (d, buf, 10, 64 << 20), -1);   /* beyond the end */

  struct cas_op_stats ops[CAS_OP_COUNT];
  cas_disk_op_stats (d, ops);
  cr_assert_eq (ops[CAS_OP_WRITE].requests, 2);
  cr_assert_eq (ops[CAS_OP_WRITE].bytes, sizeof buf + 1000);
  cr_assert_eq (ops[CAS_OP_READ].requests, 2);
  cr_assert_eq (ops[CAS_OP_READ].bytes, 777);
  cr_assert_eq (ops[CAS_OP_READ].errors, 1);
  cr_assert_eq (ops[CAS_OP_ZERO].bytes, 2 * BS);
  cr_assert_eq (ops[CAS_OP_FLUSH].requests, 1);

  cr_assert_eq (ask ("status", &t), 0, "status: %s", errors);
  cr_assert_eq (figure (&t, "disk disk0", "write_requests"), 2);
  cr_assert_eq (figure (&t, "disk disk0", "write_bytes"), sizeof buf + 1000);
  cr_assert_eq (figure (&t, "disk disk0", "read_errors"), 1);
  cr_assert_eq (figure (&t, "store", "read_bytes"), 777);
  cr_assert_eq (figure (&t, "store", "errors"), 1);
  cr_assert_eq (figure (&t, "store", "flush_requests"), 1);
  cr_assert_eq (figure (&t, "store", "disks"), 1);
  cr_assert_eq (figure (&t, "disk disk0", "virtual_size_bytes"), 64 << 20);
  cr_assert_eq (figure (&t, "store", "block_size_bytes"), BS);
  close_ok (s);
}

Test (control, errors_are_answered)
{
  create (3, 1 << 20);
  struct cas_store *s = start (false);
  struct text t;
  char big[5000];

  cr_assert_eq (ask ("frobnicate", &t), -1);
  cr_assert_eq (errno, ENOSYS);
  cr_assert_not_null (strstr (errors, "unknown request 'frobnicate'"), "%s", errors);
  cr_assert_eq (ask ("scrub rate=fast", &t), -1);
  cr_assert_eq (errno, EINVAL);
  cr_assert_eq (ask ("disk-add name=disk0 size=1M", &t), -1);
  cr_assert_eq (errno, EEXIST);
  cr_assert_eq (ask ("disk-add name=d2 size=2M", &t), 0, "%s", errors);
  cr_assert_not_null (cas_disk_find (s, "d2"));
  cr_assert_eq (ask ("disks", &t), 0);
  cr_assert_not_null (strstr (t.buf, "data d2 2097152\n"), "%s", t.buf);
  /* The client refuses what the server would. */
  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq (ask (big, &t), -1);
  cr_assert_eq (errno, EINVAL);
  close_ok (s);
}

Test (control, socket_life_cycle)
{
  char path[512];
  struct stat st;

  create (3, 1 << 20);
  sock_path (path, sizeof path);
  /* No server: ENOENT, nothing logged. */
  errors[0] = '\0';
  cr_assert_eq (cas_control_connect (store), -1);
  cr_assert_eq (errno, ENOENT);
  cr_assert_str_empty (errors);
  /* A stale socket (bound, nobody listening): ECONNREFUSED, then replaced. */
  {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const int fd = socket (AF_UNIX, SOCK_STREAM, 0);
    cr_assert_lt (strlen (path), sizeof sa.sun_path);
    memcpy (sa.sun_path, path, strlen (path) + 1);
    cr_assert_eq (bind (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    close (fd);
  }
  cr_assert_eq (cas_control_connect (store), -1);
  cr_assert_eq (errno, ECONNREFUSED);
  struct cas_store *s = start (false);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_mode & 0777, 0600);
  struct text t;
  cr_assert_eq (ask ("help", &t), 0);
  cr_assert_not_null (strstr (t.buf, "data status"), "%s", t.buf);
  close_ok (s);
  cr_assert_eq (stat (path, &st), -1, "the socket outlived the store");
  /* Not a socket: refused, the file left alone. */
  cr_assert_eq (mkdir (path, 0700), 0);
  struct cas_open_opts o;
  cas_open_opts_default (&o);
  o.control = true;
  s = cas_store_open (store, &o);
  cr_assert_not_null (s);
  cr_assert_eq (cas_store_start (s), -1);
  cr_assert_eq (errno, EEXIST);
  cr_assert_not_null (strstr (errors, "is not a socket"), "%s", errors);
  close_ok (s);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert (S_ISDIR (st.st_mode));
}

Test (control, metrics_file)
{
  struct stat st;

  create (3, 1 << 20);
  struct cas_store *s = start (true);
  /* Written at start, then every second. */
  for (int i = 0; i < 50 && stat (metrics_path, &st) == -1; i++)
    usleep (100000);
  cr_assert_eq (stat (metrics_path, &st), 0, "no metrics file: %s", errors);
  cr_assert_eq (st.st_mode & 0777, 0644);
  size_t len;
  uint8_t *text = slurp (metrics_path, &len);
  text[len] = '\0';                  /* slurp leaves room for it */
  cr_assert_not_null (strstr ((char *) text, "# TYPE casdisk_requests_total counter\n"));
  cr_assert_not_null (strstr ((char *) text,
                              "casdisk_disk_virtual_size_bytes{disk=\"disk0\"} 1048576\n"));
  free (text);
  close_ok (s);
  cr_assert_eq (stat (metrics_path, &st), -1, "the metrics file outlived the store");
}

Test (control, long_store_path)
{
  char deep[300];
  struct text t;

  /* Longer than a unix socket address: reached through /proc/self/fd. */
  const size_t n = strlen (dir);
  cr_assert_lt (n + 160, sizeof deep);
  memcpy (deep, dir, n);
  deep[n] = '/';
  memset (deep + n + 1, 'd', 150);
  deep[n + 151] = '\0';
  cr_assert_eq (mkdir (deep, 0700), 0);
  memcpy (store, deep, n + 151);
  memcpy (store + n + 151, "/s", 3);
  cr_assert_gt (strlen (store), 108);
  create (3, 1 << 20);
  struct cas_store *s = start (false);
  cr_assert_eq (ask ("status", &t), 0, "status: %s", errors);
  cr_assert_eq (figure (&t, "store", "disks"), 1);
  close_ok (s);
  char path[400];
  struct stat st;
  sock_path (path, sizeof path);
  cr_assert_eq (stat (path, &st), -1, "the socket outlived the store");
}

/* Every errno the engine's operations fail with crosses the socket by
 * name; one the protocol did not name arrived at the tool as EIO.
 */
Test (control, errno_names_round_trip)
{
  static const int errs[] = { EINVAL, ENOENT, EEXIST, EBUSY, ENOSPC, EROFS, EUCLEAN,
                              EOVERFLOW, ENOTEMPTY, EAGAIN, ETIMEDOUT };

  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    const char *name = cas_ctl_errno_name (errs[i]);
    cr_assert_neq (errs[i] != EIO && strcmp (name, "EIO") == 0, true,
                   "errno %d (%s) has no name", errs[i], strerror (errs[i]));
    cr_assert_eq (cas_ctl_errno_of (name, strlen (name)), errs[i], "%s", name);
  }
}
