/* The fixture shared by the store-level unit tests: see fixture.h. */
#include <config.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include "casdisk.h"
#include "format.h"
#include "meta/state.h"
#include "util/crc32c.h"
#include "util/util.h"

#include "fixture.h"
/* ---- the shared fixture ---- */

char dir[256];           /* scratch directory of this test */
char store[300];         /* the store: DIR/s */
char errors[16384];      /* every error the engine logged */
pthread_mutex_t errors_lock = PTHREAD_MUTEX_INITIALIZER;

void
capture (bool error, const char *msg)
{
  if (!error)
    return;
  pthread_mutex_lock (&errors_lock);
  const size_t n = strlen (errors);
  snprintf (errors + n, sizeof errors - n, "%s\n", msg);
  pthread_mutex_unlock (&errors_lock);
}

void
fixture_setup (const char *name)
{
  const char *tmp = getenv ("TMPDIR");

  snprintf (dir, sizeof dir, "%s/casdisk-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
  cr_assert_not_null (mkdtemp (dir));
  snprintf (store, sizeof store, "%s/s", dir);
  errors[0] = '\0';
  cas_set_log (capture);
}

int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

void
fixture_teardown (void)
{
  nftw (dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}


void
fill_random (uint8_t *p, size_t len, uint64_t seed)
{
  uint64_t x = seed * UINT64_C(0x9e3779b97f4a7c15) + 0x1234567;

  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x >> 24;
  }
}

void
fill_text (uint8_t *p, size_t len, unsigned seed)
{
  static const char *const words[] = {
    "block ", "store ", "journal ", "checkpoint ", "the ", "of ", "zstd ", "dedup\n",
  };
  size_t i = 0;

  while (i < len) {
    seed = seed * 1103515245u + 12345u;
    const char *w = words[(seed >> 16) % 8];
    for (; *w && i < len; w++)
      p[i++] = *w;
  }
}


void
create (int level, uint64_t size)
{
  struct cas_create_opts o = { .block_size = BS, .compression_level = level };

  cr_assert_eq (cas_store_create (store, &o, "disk0", size), 0, "create: %s", errors);
}

void
create_sha256_keys (int level, uint64_t size)
{
  struct cas_create_opts o = { .block_size = BS, .compression_level = level,
                               .sha256_keys = true };

  cr_assert_eq (cas_store_create (store, &o, "disk0", size), 0, "create: %s", errors);
}

struct cas_store *
open_rw (void)
{
  struct cas_open_opts o;

  cas_open_opts_default (&o);
  o.gc_delay = 3600;
  struct cas_store *s = cas_store_open (store, &o);
  cr_assert_not_null (s, "open: %s (%s)", strerror (errno), errors);
  return s;
}

struct cas_disk *
disk0 (struct cas_store *s)
{
  struct cas_disk *d = cas_disk_find (s, "disk0");

  cr_assert_not_null (d);
  return d;
}

void
write_ok (struct cas_disk *d, const void *buf, uint32_t count, uint64_t off)
{
  cr_assert_eq (cas_disk_write (d, buf, count, off), 0, "write %" PRIu32 " at %" PRIu64 ": %s",
                count, off, errors);
}

void
read_expect (struct cas_disk *d, const void *want, uint32_t count, uint64_t off)
{
  uint8_t *got = malloc (count ? count : 1);

  cr_assert_not_null (got);
  cr_assert_eq (cas_disk_read (d, got, count, off), 0, "read %" PRIu32 " at %" PRIu64 ": %s",
                count, off, errors);
  cr_assert_arr_eq (got, want, count, "read at %" PRIu64 ": wrong data", off);
  free (got);
}

void
read_zero (struct cas_disk *d, uint32_t count, uint64_t off)
{
  uint8_t *z = calloc (1, count ? count : 1);

  read_expect (d, z, count, off);
  free (z);
}

void
close_ok (struct cas_store *s)
{
  cr_assert_eq (cas_store_close (s), 0, "close: %s", errors);
}

char reports[16384];

void
report (void *opaque, const char *problem)
{
  const size_t n = strlen (reports);
  snprintf (reports + n, sizeof reports - n, "%s\n", problem);
}

int
check (void)
{
  struct cas_check_result res;

  reports[0] = '\0';
  return cas_store_check (store, report, NULL, &res);
}

void
check_clean (void)
{
  const int r = check ();
  cr_assert_eq (r, 0, "check found %d problems:\n%s%s", r, reports, errors);
}

/* Run FN in a child process that exits without closing the store. */
void
in_crashing_child (int (*fn) (void))
{
  pid_t pid = fork ();
  int status;

  cr_assert_neq (pid, -1);
  if (pid == 0)
    _exit (fn ());
  cr_assert_eq (waitpid (pid, &status, 0), pid);
  cr_assert (WIFEXITED (status), "child died with status 0x%x", status);
  cr_assert_eq (WEXITSTATUS (status), 0, "the child failed (see its message above)");
}

void
path_of (const char *name, char *buf, size_t len)
{
  snprintf (buf, len, "%s/%s", store, name);
}

/* The newest journal.N of the store (there is one after a clean open). */
uint64_t
journal_gen (int *count)
{
  DIR *dh = opendir (store);
  struct dirent *de;
  uint64_t max = 0;

  cr_assert_not_null (dh);
  *count = 0;
  while ((de = readdir (dh)) != NULL) {
    uint64_t g;
    char tail;
    if (sscanf (de->d_name, "journal.%" SCNu64 "%c", &g, &tail) == 1) {
      (*count)++;
      if (g > max)
        max = g;
    }
  }
  closedir (dh);
  cr_assert_gt (max, 0, "no journal in the store");
  return max;
}

void
journal_path (char *buf, size_t len)
{
  int n;
  const uint64_t g = journal_gen (&n);
  char name[64];

  snprintf (name, sizeof name, "journal.%" PRIu64, g);
  path_of (name, buf, len);
}

uint8_t *
slurp (const char *path, size_t *len)
{
  struct stat st;
  const int fd = open (path, O_RDONLY);

  cr_assert_geq (fd, 0, "open %s: %s", path, strerror (errno));
  cr_assert_eq (fstat (fd, &st), 0);
  uint8_t *buf = malloc (st.st_size + 1);
  cr_assert_eq (read (fd, buf, st.st_size), st.st_size);
  close (fd);
  *len = st.st_size;
  return buf;
}

void
spit (const char *path, const void *buf, size_t len)
{
  const int fd = open (path, O_WRONLY | O_TRUNC);

  cr_assert_geq (fd, 0);
  cr_assert_eq (write (fd, buf, len), (ssize_t) len);
  close (fd);
}


