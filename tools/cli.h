/* What the casdisk tool's source files share: the parsed command line,
 * output helpers (output.c) and the online commands (online.c), which
 * talk to a running server through the store's control socket.
 */
#ifndef CASDISK_CLI_H
#define CASDISK_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "progress.h"

#define EXIT_USAGE 2
#define ARRAY_SIZE(a) (sizeof (a) / sizeof *(a))

extern const char prog[];                 /* "casdisk" */
/* The progress display in use, if any: log lines must not land in the
 * middle of a bar.
 */
extern struct progress *active_progress;

/* What the command line said; operands are in args[0 .. nargs-1]. */
struct cmdline {
  const char *cmd;              /* "create", "disk add" ... for messages */
  bool json, repair, now, existing, direct_io;
  const char *size, *block_size, *compression, *disk, *rate, *workers;
  const char *count, *interval;   /* top */
  const char *ceph_conf, *ceph_id, *timeout, *grace;  /* remote */
  bool dry_run;                   /* remote gc */
  int nargs;
  char **args;
};

/* casdisk.c */
int usage_error (const char *cmd, const char *fmt, ...) __attribute__((format (printf, 2, 3)));
bool parse_size_arg (const char *cmd, const char *what, const char *str,
                     uint64_t min, uint64_t max, uint64_t *out);

/* output.c */
const char *human (uint64_t bytes, char buf[32]);   /* "1.5 GiB" */
double ratio (uint64_t a, uint64_t b);              /* 1.0 when b = 0 */
void print_bytes (const char *label, uint64_t bytes);
void json_string (const char *s);
void json_key (const char *key);
void json_open (const char *key, char bracket);
void json_close (char bracket);
void json_u64 (const char *key, uint64_t v);
void json_int (const char *key, int v);
void json_ratio (const char *key, double v);
void json_bool (const char *key, bool v);
void json_str (const char *key, const char *v);

/* Shared by check and scrub: problems go to stdout as they are found. */
struct report_ctx {
  bool json;
  const char *prefix;           /* "problem", "repair" */
  struct progress prog;
};
void print_problem (void *opaque, const char *msg);
void on_progress (void *opaque, uint64_t done, uint64_t total);

/* online.c: the forms of commands that go through a server's control
 * socket FD (connected to the store c->args[0]).
 */
int online_status (const struct cmdline *c, int fd);
int online_metrics (const struct cmdline *c, int fd);
int online_compact (const struct cmdline *c, int fd);
int online_scrub (const struct cmdline *c, int fd);
int online_disk_add (const struct cmdline *c, int fd);
int online_disk_list (const struct cmdline *c, int fd);
/* top.c: the live view */
int online_top (const struct cmdline *c, int fd);
/* online_disks.c: clone, delete and snapshots on a served store */
int online_disk_clone (const struct cmdline *c, int fd);
int online_disk_delete (const struct cmdline *c, int fd);
int online_snapshot_create (const struct cmdline *c, int fd);
int online_snapshot_delete (const struct cmdline *c, int fd);
int online_snapshot_list (const struct cmdline *c, int fd);
/* remote.c: casdisk remote info|check|scrub|gc rados:POOL */
int cmd_remote_info (const struct cmdline *c);
int cmd_remote_check (const struct cmdline *c);
int cmd_remote_scrub (const struct cmdline *c);
int cmd_remote_gc (const struct cmdline *c);

#endif
