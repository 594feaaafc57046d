/* The control channel: a unix socket in the store directory through which
 * the casdisk tool talks to the server holding the store (nbdkit), since
 * the store's exclusive lock keeps the tool from opening it.  Both ends
 * live here; docs/control.md is the protocol.
 *
 * Server.  cas_control_start (from cas_store_start, so from nbdkit's
 * .after_fork) replaces a stale DIR/control.sock (we hold the store's
 * exclusive lock: no live server can own it), binds, makes it 0600 and
 * only then listens, so nobody connects before the mode is right.  One
 * thread accepts connections and rewrites the metrics file on time; each
 * accepted connection gets its own thread, up to CTL_MAX_CLIENTS, so a
 * long scrub or a client that stopped reading holds only its own slot:
 *
 *   accept -> SO_PEERCRED: the store's owner, our own user or root, else
 *             "error EACCES" and close
 *          -> a free slot, else "error EBUSY" and close
 *          -> connection thread: read one request line (CTL_MAX_REQUEST
 *             bytes, within CTL_REQUEST_MS), run its handler, which sends
 *             "data"/"progress"/"problem" lines, then "ok" or "error".
 *             Every send times out after CTL_SEND_S seconds; a failed send
 *             marks the connection cancelled, which stops a scrub and
 *             stops waiting for a compaction.
 *
 * cas_control_stop (cas_store_close, before the GC thread stops) cancels
 * every connection and shuts down the reading side of their sockets, so
 * blocked reads return; gives them STOP_GRACE_MS to answer "error
 * ECANCELED"; then shuts the sockets down entirely, so blocked writes
 * return too; joins all threads, removes the socket (if it is still ours)
 * and the metrics file.
 *
 * The client, and what both ends share (addresses, errno names), are in
 * control_client.c.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "background/bgthread.h"
#include "background/scrub.h"
#include "meta/state.h"
#include "ops/control.h"
#include "ops/metrics.h"
#include "util/log.h"
#include "util/util.h"

#define CTL_MAX_ARGS     8      /* KEY=VALUE arguments of a request */
#define CTL_MAX_CLIENTS  8      /* connections served at once */
#define CTL_REQUEST_MS   10000  /* to send the request line after connecting */
#define CTL_SEND_S       10     /* for each response line to be taken */
#define PROGRESS_NS      200000000u     /* progress lines at most this often */
#define STOP_GRACE_MS    1000   /* at stop, for requests to end and say so */

struct cas_control;

struct conn {
  struct cas_control *ctl;
  int fd;                       /* closed by the reaper, after the join */
  pthread_t thread;
  bool busy;                    /* ctl->lock: slot in use, thread not joined */
  bool finished;                /* atomic: the thread is done, join it */
  bool cancel;                  /* atomic: the client is gone or the server stops */
  bool dead;                    /* atomic: a send failed: send nothing more */
  uint64_t last_progress_ns;    /* connection thread only */
};

struct cas_control {
  struct cas_store *s;
  int listen_fd;
  int wake[2];                  /* a byte in wake[1] wakes the accept thread */
  struct sockaddr_un sa;        /* the socket's address as bound */
  int dir_fd;                   /* O_PATH descriptor behind sa, or -1 */
  dev_t dev;                    /* the socket file we made: removed at stop */
  ino_t ino;                    /*   only if it is still this one */
  uid_t owner;                  /* of the store (its superblock) */
  pthread_t thread;
  pthread_mutex_t lock;         /* guards stop and conns[].busy */
  bool stop;
  struct conn conns[CTL_MAX_CLIENTS];
  char *metrics_path;           /* NULL: no metrics file */
  uint64_t metrics_interval_ns;
};

/* ---- sending lines ---- */

/* Send "TAG TEXT\n" to the client.  -1 (and the connection is cancelled)
 * if it cannot be delivered within CTL_SEND_S.
 */
static int __attribute__((format (printf, 3, 4)))
conn_send (struct conn *c, const char *tag, const char *fmt, ...)
{
  char line[CTL_MAX_LINE];
  va_list ap;
  int n;

  if (__atomic_load_n (&c->dead, __ATOMIC_RELAXED))
    return -1;
  n = snprintf (line, sizeof line, "%s", tag);
  if (fmt && *fmt) {
    line[n++] = ' ';
    va_start (ap, fmt);
    vsnprintf (line + n, sizeof line - n - 1, fmt, ap);
    va_end (ap);
    n = strlen (line);
  }
  /* One line each: a newline inside the text would start a new one. */
  for (char *p = line; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  line[n++] = '\n';
  if (!cas_ctl_send_all (c->fd, line, n, 0)) {
    __atomic_store_n (&c->dead, true, __ATOMIC_RELAXED);
    __atomic_store_n (&c->cancel, true, __ATOMIC_RELAXED);
    return -1;
  }
  return 0;
}

/* ---- requests ---- */

struct request {
  char *cmd;
  int nargs;
  char *key[CTL_MAX_ARGS], *val[CTL_MAX_ARGS];
};

static const char *
arg (const struct request *r, const char *key)
{
  for (int i = 0; i < r->nargs; i++)
    if (strcmp (r->key[i], key) == 0)
      return r->val[i];
  return NULL;
}

/* Fail a request: errno = ERR, and the message the client gets. */
static int __attribute__((format (printf, 2, 3)))
fail (int err, const char *fmt, ...)
{
  va_list ap;
  char msg[1024];

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  cas_error ("%s", msg);        /* becomes cas_last_error () */
  errno = err;
  return -1;
}

static int
send_data (void *opaque, const char *text)
{
  return conn_send (opaque, "data", "%s", text);
}

static int
h_status (struct conn *c, const struct request *r)
{
  return cas_live_render (c->ctl->s, CAS_LIVE_STATUS, send_data, c);
}

static int
h_metrics (struct conn *c, const struct request *r)
{
  return cas_live_render (c->ctl->s, CAS_LIVE_PROMETHEUS, send_data, c);
}

static int
h_disks (struct conn *c, const struct request *r)
{
  struct cas_store *s = c->ctl->s;
  const size_t n = cas_store_ndisks (s);

  for (size_t i = 0; i < n; i++) {
    const struct cas_disk *d = cas_store_disk (s, i);
    if (d == NULL || cas_disk_is_snapshot (d))
      continue;                 /* a deleted disk's slot; snapshots are not disks here */
    if (conn_send (c, "data", "%s %" PRIu64, cas_disk_name (d), cas_disk_size (d)) == -1)
      return -1;
  }
  return 0;
}

static int
h_disk_add (struct conn *c, const struct request *r)
{
  const char *name = arg (r, "name"), *size_str = arg (r, "size");
  uint64_t size;

  if (name == NULL || size_str == NULL)
    return fail (EINVAL, "disk-add needs name=NAME and size=SIZE");
  if (cas_parse_size (size_str, &size) == -1)
    return fail (EINVAL, "disk-add: size=%s is not a size", size_str);
  if (cas_disk_add (c->ctl->s, name, size) == NULL)
    return -1;
  return conn_send (c, "data", "%s %" PRIu64, name, size);
}

/* Whole-disk operations (lib/engine/diskops.c): each takes its own locks and
 * flushes, so it is safe while clients read and write, and durable when
 * "ok" is sent.
 */
static int
h_disk_clone (struct conn *c, const struct request *r)
{
  const char *src = arg (r, "src"), *dst = arg (r, "dst");
  struct cas_disk *d;

  if (src == NULL || dst == NULL)
    return fail (EINVAL, "disk-clone needs src=DISK and dst=NAME");
  d = cas_disk_clone (c->ctl->s, src, dst);
  if (d == NULL)
    return -1;
  return conn_send (c, "data", "%s %" PRIu64, cas_disk_name (d), cas_disk_size (d));
}

static int
h_disk_delete (struct conn *c, const struct request *r)
{
  const char *name = arg (r, "name");

  if (name == NULL)
    return fail (EINVAL, "disk-delete needs name=DISK");
  return cas_disk_delete (c->ctl->s, name);
}

static int
h_snapshot_create (struct conn *c, const struct request *r)
{
  const char *disk = arg (r, "disk"), *snap = arg (r, "snap");
  struct cas_disk *d;

  if (disk == NULL || snap == NULL)
    return fail (EINVAL, "snapshot-create needs disk=DISK and snap=NAME");
  d = cas_snapshot_create (c->ctl->s, disk, snap);
  if (d == NULL)
    return -1;
  return conn_send (c, "data", "%s %" PRIu64, cas_disk_name (d), cas_disk_size (d));
}

static int
h_snapshot_delete (struct conn *c, const struct request *r)
{
  const char *disk = arg (r, "disk"), *snap = arg (r, "snap");

  if (disk == NULL || snap == NULL)
    return fail (EINVAL, "snapshot-delete needs disk=DISK and snap=NAME");
  return cas_snapshot_delete (c->ctl->s, disk, snap);
}

static int
h_snapshots (struct conn *c, const struct request *r)
{
  struct cas_store *s = c->ctl->s;
  const char *disk = arg (r, "disk");
  const size_t n = cas_store_ndisks (s);

  if (disk == NULL)
    return fail (EINVAL, "snapshots needs disk=DISK");
  if (cas_disk_find (s, disk) == NULL)
    return fail (ENOENT, "no disk named '%s'", disk);
  for (size_t i = 0; i < n; i++) {
    const struct cas_disk *d = cas_store_disk (s, i);
    const size_t len = strlen (disk);
    if (d && cas_disk_is_snapshot (d) && strncmp (cas_disk_name (d), disk, len) == 0 &&
        cas_disk_name (d)[len] == '@' &&
        conn_send (c, "data", "%s %" PRIu64, cas_disk_name (d), cas_disk_size (d)) == -1)
      return -1;
  }
  return 0;
}

struct compact_ctx {
  struct conn *c;
  uint64_t could;               /* bytes that could move, at most */
};

static void
compact_progress (void *opaque, uint64_t moved)
{
  const struct compact_ctx *x = opaque;

  conn_send (x->c, "progress", "%" PRIu64 " %" PRIu64, moved,
             moved > x->could ? moved : x->could);
}

static int
h_compact (struct conn *c, const struct request *r)
{
  struct cas_store *s = c->ctl->s;
  struct cas_store_stats before, after;
  int64_t moved;

  if (cas_store_stats (s, &before) == -1)
    return -1;
  struct compact_ctx x = { .c = c, .could = before.free_bytes + before.pending_bytes };
  moved = cas_gc_compact_now (s, &c->cancel, compact_progress, &x);
  if (moved < 0 || cas_store_stats (s, &after) == -1)
    return -1;
  if (conn_send (c, "data", "moved_bytes %" PRId64, moved) == -1 ||
      conn_send (c, "data", "allocated_before %" PRIu64, before.physical_allocated) == -1 ||
      conn_send (c, "data", "apparent_before %" PRIu64, before.physical_apparent) == -1 ||
      conn_send (c, "data", "allocated_after %" PRIu64, after.physical_allocated) == -1 ||
      conn_send (c, "data", "apparent_after %" PRIu64, after.physical_apparent) == -1 ||
      conn_send (c, "data", "dead_blocks %" PRIu64, after.dead_blocks) == -1 ||
      conn_send (c, "data", "dead_bytes %" PRIu64, after.dead_bytes) == -1 ||
      conn_send (c, "data", "gc_delay_seconds %u", s->opts.gc_delay) == -1)
    return -1;
  return 0;
}

static void
scrub_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct conn *c = opaque;
  struct cas_store *s = c->ctl->s;
  const uint64_t now = cas_now_ns ();

  __atomic_store_n (&s->scrub_done, done, __ATOMIC_RELAXED);
  __atomic_store_n (&s->scrub_total, total, __ATOMIC_RELAXED);
  if (now - c->last_progress_ns >= PROGRESS_NS || done == total) {
    c->last_progress_ns = now;
    conn_send (c, "progress", "%" PRIu64 " %" PRIu64, done, total);
  }
}

static void
scrub_problem (void *opaque, const char *problem)
{
  conn_send (opaque, "problem", "%s", problem);
}

static int
h_scrub (struct conn *c, const struct request *r)
{
  struct cas_store *s = c->ctl->s;
  const char *rate_str = arg (r, "rate");
  struct cas_scrub_result res;
  uint64_t rate = 0;
  int n;

  if (rate_str && cas_parse_size (rate_str, &rate) == -1)
    return fail (EINVAL, "scrub: rate=%s is not a number of bytes per second", rate_str);
  if (__atomic_exchange_n (&s->scrub_running, true, __ATOMIC_ACQ_REL))
    return fail (EBUSY, "a scrub is running already (casdisk status shows its progress)");
  __atomic_store_n (&s->scrub_done, 0, __ATOMIC_RELAXED);
  n = cas_scrub_run (s, rate, scrub_progress, scrub_problem, c, &res, &c->cancel);
  if (n >= 0) {
    __atomic_add_fetch (&s->scrubs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch (&s->scrub_corrupted, res.corrupted, __ATOMIC_RELAXED);
  }
  __atomic_store_n (&s->scrub_running, false, __ATOMIC_RELEASE);
  if (n < 0 && errno == ECANCELED && !__atomic_load_n (&c->dead, __ATOMIC_RELAXED)) {
    char why[1024];
    snprintf (why, sizeof why, "%s", cas_last_error ());
    return fail (ECANCELED, "%s: the server is stopping", why);
  }
  if (n < 0)
    return -1;
  if (conn_send (c, "data", "blocks %" PRIu64, res.blocks) == -1 ||
      conn_send (c, "data", "bytes %" PRIu64, res.bytes) == -1 ||
      conn_send (c, "data", "corrupted %" PRIu64, res.corrupted) == -1 ||
      conn_send (c, "data", "already_quarantined %" PRIu64, res.already_quarantined) == -1 ||
      conn_send (c, "data", "problems %" PRIu64, res.problems) == -1)
    return -1;
  return 0;
}

static int h_help (struct conn *c, const struct request *r);

/* The requests.  One entry each: a new online operation is one line here
 * (and one in the tool's table).
 */
static const struct handler {
  const char *name;
  const char *keys;             /* accepted arguments, space-separated */
  const char *help;
  int (*fn) (struct conn *c, const struct request *r);
} handlers[] = {
  { "help", "", "list the requests", h_help },
  { "status", "", "live figures: data store KEY VALUE, data disk NAME KEY VALUE", h_status },
  { "metrics", "", "the figures in Prometheus text format, one data line each", h_metrics },
  { "disks", "", "the disks: data NAME SIZE", h_disks },
  { "disk-add", "name size", "add an empty disk", h_disk_add },
  { "disk-clone", "src dst", "a new disk sharing every block of src (no data copied)",
    h_disk_clone },
  { "disk-delete", "name", "delete a disk; its blocks go through the delayed GC", h_disk_delete },
  { "snapshot-create", "disk snap", "a read-only copy disk@snap, taken at a flush point",
    h_snapshot_create },
  { "snapshot-delete", "disk snap", "delete the snapshot disk@snap", h_snapshot_delete },
  { "snapshots", "disk", "the snapshots of a disk: data DISK@SNAP SIZE", h_snapshots },
  { "compact", "", "compact now (compact-after ignored, gc-delay kept)", h_compact },
  { "scrub", "rate", "verify every block (rate=BYTES per second), quarantine bad ones", h_scrub },
};

static int
h_help (struct conn *c, const struct request *r)
{
  for (size_t i = 0; i < sizeof handlers / sizeof *handlers; i++)
    if (conn_send (c, "data", "%s%s%s: %s", handlers[i].name, *handlers[i].keys ? " " : "",
                   handlers[i].keys, handlers[i].help) == -1)
      return -1;
  return 0;
}

static bool
key_allowed (const char *keys, const char *key)
{
  const size_t len = strlen (key);

  for (const char *p = keys; *p; ) {
    const char *e = strchr (p, ' ');
    const size_t n = e ? (size_t) (e - p) : strlen (p);
    if (n == len && memcmp (p, key, n) == 0)
      return true;
    p += n + (e != NULL);
  }
  return false;
}

/* Split LINE (modified) into a request; -1 with the message set. */
static int
parse_request (char *line, struct request *r)
{
  char *save = NULL, *word;

  memset (r, 0, sizeof *r);
  r->cmd = strtok_r (line, " \t", &save);
  if (r->cmd == NULL)
    return fail (EINVAL, "empty request (try 'help')");
  while ((word = strtok_r (NULL, " \t", &save)) != NULL) {
    char *eq = strchr (word, '=');
    if (eq == NULL || eq == word)
      return fail (EINVAL, "argument '%s' is not KEY=VALUE", word);
    if (r->nargs == CTL_MAX_ARGS)
      return fail (E2BIG, "more than %d arguments", CTL_MAX_ARGS);
    *eq = '\0';
    r->key[r->nargs] = word;
    r->val[r->nargs++] = eq + 1;
  }
  return 0;
}

/* Read the request line within CTL_REQUEST_MS.  Returns its length, 0 if
 * the client closed without a request, -1 with the message set.
 */
static ssize_t
read_request (struct conn *c, char *buf)
{
  const uint64_t deadline = cas_now_ns () + (uint64_t) CTL_REQUEST_MS * 1000000;
  size_t len = 0;

  for (;;) {
    const uint64_t now = cas_now_ns ();
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    if (now >= deadline)
      return fail (ETIMEDOUT, "no request line within %d s", CTL_REQUEST_MS / 1000);
    const int r = poll (&p, 1, (deadline - now) / 1000000 + 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (__atomic_load_n (&c->cancel, __ATOMIC_RELAXED))
      return fail (ECANCELED, "the server is stopping");
    if (r <= 0)
      continue;
    const ssize_t n = recv (c->fd, buf + len, CTL_MAX_REQUEST - len, MSG_DONTWAIT);
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0)
      return len == 0 && n == 0 ? 0 : fail (EPROTO, "the client closed mid-request");
    char *nl = memchr (buf + len, '\n', n);
    len += n;
    if (nl) {
      *nl = '\0';
      if (nl > buf && nl[-1] == '\r')
        nl[-1] = '\0';
      return nl - buf;
    }
    if (len == CTL_MAX_REQUEST)
      return fail (E2BIG, "request longer than %d bytes", CTL_MAX_REQUEST - 1);
  }
}

static void *
conn_main (void *arg)
{
  struct conn *c = arg;
  char buf[CTL_MAX_REQUEST + 1];
  struct request req;
  ssize_t len;
  int r = -1;

  cas_clear_last_error ();
  len = read_request (c, buf);
  if (len == 0)
    goto out;                   /* connected and left: a probe */
  if (len > 0 && parse_request (buf, &req) == 0) {
    const struct handler *h = NULL;
    for (size_t i = 0; i < sizeof handlers / sizeof *handlers; i++)
      if (strcmp (handlers[i].name, req.cmd) == 0)
        h = &handlers[i];
    if (h == NULL)
      fail (ENOSYS, "unknown request '%s' (try 'help')", req.cmd);
    else {
      r = 0;
      for (int i = 0; i < req.nargs && r == 0; i++)
        if (!key_allowed (h->keys, req.key[i]))
          r = fail (EINVAL, "%s: unknown argument '%s'", h->name, req.key[i]);
      if (r == 0) {
        cas_debug ("control: %s", req.cmd);
        r = h->fn (c, &req);
      }
    }
  }
  if (r == 0)
    conn_send (c, "ok", NULL);
  else {
    const int err = errno;
    const char *msg = cas_last_error ();
    conn_send (c, "error", "%s %s", cas_ctl_errno_name (err), *msg ? msg : strerror (err));
  }
 out:
  __atomic_store_n (&c->finished, true, __ATOMIC_RELEASE);
  /* Wake the accept thread so that it joins us soon. */
  if (write (c->ctl->wake[1], "", 1) == -1) {
    /* The pipe is full: the accept thread is awake anyway. */
  }
  return NULL;
}

/* ---- the accept thread ---- */

/* Accept thread; ctl->lock NOT held.  Join finished connections. */
static void
reap (struct cas_control *ctl, bool all)
{
  for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
    struct conn *c = &ctl->conns[i];
    bool join;
    {
      SCOPED_LOCK (l, &ctl->lock);
      join = c->busy && (all || __atomic_load_n (&c->finished, __ATOMIC_ACQUIRE));
    }
    if (!join)
      continue;
    pthread_join (c->thread, NULL);
    /* Closed under the lock: cas_control_stop shuts busy sockets down. */
    SCOPED_LOCK (l, &ctl->lock);
    close (c->fd);
    c->busy = false;
  }
}

/* Refuse a connection with one error line, without waiting for it. */
static void
refuse (int fd, const char *fmt, ...)
{
  char line[512], junk[CTL_MAX_REQUEST];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (line, sizeof line - 1, fmt, ap);
  va_end (ap);
  strcat (line, "\n");
  cas_ctl_send_all (fd, line, strlen (line), MSG_DONTWAIT);
  /* Read what the client sent already, so that closing with unread data
   * does not reset the connection before it reads our line.
   */
  while (recv (fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
    ;
  shutdown (fd, SHUT_WR);
  close (fd);
}

static void
new_connection (struct cas_control *ctl, int fd)
{
  struct ucred cred;
  socklen_t len = sizeof cred;
  struct conn *c = NULL;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
    cas_error ("control: SO_PEERCRED: %m");
    close (fd);
    return;
  }
  if (cred.uid != 0 && cred.uid != geteuid () && cred.uid != ctl->owner) {
    cas_debug ("control: refused pid %d (uid %u)", (int) cred.pid, (unsigned) cred.uid);
    refuse (fd, "error EACCES uid %u may not control this store: only its owner (uid %u) "
            "and root may", (unsigned) cred.uid, (unsigned) ctl->owner);
    return;
  }
  {
    SCOPED_LOCK (l, &ctl->lock);
    for (int i = 0; i < CTL_MAX_CLIENTS && !ctl->stop; i++)
      if (!ctl->conns[i].busy) {
        c = &ctl->conns[i];
        break;
      }
    if (c) {
      const struct timeval tv = { .tv_sec = CTL_SEND_S };
      setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      *c = (struct conn) { .ctl = ctl, .fd = fd, .busy = true };
      const int err = pthread_create (&c->thread, NULL, conn_main, c);
      if (err) {
        c->busy = false;
        c = NULL;
        errno = err;
        cas_error ("control: start a connection thread: %m");
      }
    }
  }
  if (c == NULL)
    refuse (fd, "error EBUSY the server is busy with %d control clients; try again later",
            CTL_MAX_CLIENTS);
}

static void
write_metrics (struct cas_control *ctl, uint64_t *next)
{
  const uint64_t now = cas_now_ns ();

  if (ctl->metrics_path == NULL || now < *next)
    return;
  cas_metrics_write_file (ctl->s, ctl->metrics_path);   /* logged; retried next time */
  *next = now + ctl->metrics_interval_ns;
}

static void *
accept_main (void *arg)
{
  struct cas_control *ctl = arg;
  uint64_t next_metrics = 0;

  for (;;) {
    struct pollfd p[2] = {
      { .fd = ctl->listen_fd, .events = POLLIN },
      { .fd = ctl->wake[0], .events = POLLIN },
    };
    int timeout = -1;

    write_metrics (ctl, &next_metrics);
    if (ctl->metrics_path) {
      const uint64_t now = cas_now_ns ();
      timeout = next_metrics > now ? (next_metrics - now) / 1000000 + 1 : 0;
    }
    if (poll (p, 2, timeout) == -1 && errno != EINTR) {
      cas_error ("control: poll: %m");
      break;
    }
    if (p[1].revents) {
      char junk[64];
      while (read (ctl->wake[0], junk, sizeof junk) > 0)
        ;
    }
    {
      SCOPED_LOCK (l, &ctl->lock);
      if (ctl->stop)
        break;
    }
    if (p[0].revents & POLLIN) {
      const int fd = accept4 (ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd >= 0)
        new_connection (ctl, fd);
      else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
        cas_error ("control: accept: %m");
    }
    reap (ctl, false);
  }
  return NULL;
}

/* ---- start and stop ---- */

static void
free_control (struct cas_control *ctl)
{
  if (ctl->listen_fd >= 0)
    close (ctl->listen_fd);
  for (int i = 0; i < 2; i++)
    if (ctl->wake[i] >= 0)
      close (ctl->wake[i]);
  if (ctl->dir_fd >= 0)
    close (ctl->dir_fd);
  pthread_mutex_destroy (&ctl->lock);
  free (ctl->metrics_path);
  free (ctl);
}

int
cas_control_start (struct cas_store *s)
{
  struct cas_control *ctl = calloc (1, sizeof *ctl);
  struct stat st;
  const char *path;
  int err;

  if (ctl == NULL) {
    cas_error ("control: %m");
    return -1;
  }
  ctl->s = s;
  ctl->listen_fd = ctl->wake[0] = ctl->wake[1] = ctl->dir_fd = -1;
  pthread_mutex_init (&ctl->lock, NULL);
  ctl->owner = fstat (s->sb_fd, &st) == 0 ? st.st_uid : geteuid ();
  if (s->opts.metrics_file) {
    ctl->metrics_path = strdup (s->opts.metrics_file);
    if (ctl->metrics_path == NULL) {
      cas_error ("control: %m");
      goto err;
    }
    ctl->metrics_interval_ns = (uint64_t) (s->opts.metrics_interval ? s->opts.metrics_interval
                                           : CAS_DEFAULT_METRICS_INTERVAL) * 1000000000;
  }
  if (cas_ctl_address (s->dir, &ctl->sa, &ctl->dir_fd) == -1)
    goto err;
  path = ctl->sa.sun_path;
  /* A socket file here is stale: we hold the store's exclusive lock. */
  if (lstat (path, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      errno = EEXIST;
      cas_error ("control: %s exists and is not a socket: remove it", path);
      goto err;
    }
    cas_debug ("control: replacing the stale socket %s", path);
    if (unlink (path) == -1 && errno != ENOENT) {
      cas_error ("control: remove stale %s: %m", path);
      goto err;
    }
  }
  ctl->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ctl->listen_fd == -1 ||
      bind (ctl->listen_fd, (struct sockaddr *) &ctl->sa, sizeof ctl->sa) == -1) {
    cas_error ("control: bind %s: %m", path);
    goto err;
  }
  /* Listen only once the mode is right: nobody can connect before. */
  if (chmod (path, 0600) == -1 || lstat (path, &st) == -1) {
    cas_error ("control: chmod %s: %m", path);
    unlink (path);
    goto err;
  }
  ctl->dev = st.st_dev;
  ctl->ino = st.st_ino;
  if (listen (ctl->listen_fd, 16) == -1 || pipe2 (ctl->wake, O_CLOEXEC | O_NONBLOCK) == -1) {
    cas_error ("control: listen %s: %m", path);
    unlink (path);
    goto err;
  }
  err = pthread_create (&ctl->thread, NULL, accept_main, ctl);
  if (err) {
    errno = err;
    cas_error ("control: start the server thread: %m");
    unlink (path);
    goto err;
  }
  s->control = ctl;
  cas_debug ("control: listening on %s/%s", s->dir, CAS_CONTROL_SOCKET);
  return 0;

 err:
  free_control (ctl);
  return -1;
}

void
cas_control_stop (struct cas_store *s)
{
  struct cas_control *ctl = s->control;
  struct stat st;

  if (ctl == NULL)
    return;
  /* Cancel every request; a blocked read returns at once. */
  {
    SCOPED_LOCK (l, &ctl->lock);
    ctl->stop = true;
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
      if (ctl->conns[i].busy) {
        __atomic_store_n (&ctl->conns[i].cancel, true, __ATOMIC_RELAXED);
        shutdown (ctl->conns[i].fd, SHUT_RD);
      }
  }
  if (write (ctl->wake[1], "", 1) == -1) {
    /* Full: the thread is awake anyway. */
  }
  pthread_join (ctl->thread, NULL);
  /* Give the connections a moment to tell their clients why (a scrub
   * stops within 200 ms), then cut off any still sending to a client that
   * does not read.
   */
  for (int tries = 0; tries < STOP_GRACE_MS / 20; tries++) {
    bool running = false;
    {
      SCOPED_LOCK (l, &ctl->lock);
      for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        running |= ctl->conns[i].busy && !__atomic_load_n (&ctl->conns[i].finished,
                                                           __ATOMIC_ACQUIRE);
    }
    if (!running)
      break;
    const struct timespec ts = { 0, 20000000 };
    nanosleep (&ts, NULL);
  }
  {
    SCOPED_LOCK (l, &ctl->lock);
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
      if (ctl->conns[i].busy)
        shutdown (ctl->conns[i].fd, SHUT_RDWR);
  }
  reap (ctl, true);
  /* Remove the socket if it is still the one we made. */
  if (lstat (ctl->sa.sun_path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
    unlink (ctl->sa.sun_path);
  /* Figures of a stopped server would mislead. */
  if (ctl->metrics_path)
    unlink (ctl->metrics_path);
  free_control (ctl);
  s->control = NULL;
}
