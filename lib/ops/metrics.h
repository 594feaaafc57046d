/* Live figures (metrics.c) for casdisk status and Prometheus, rendered
 * from one snapshot.  Lock-free: atomic loads and cas_store_stats' walks.
 */
#ifndef CAS_METRICS_H
#define CAS_METRICS_H

#include <stdint.h>

struct cas_store;

/* The live figures, one line at a time through LINE (without newline):
 * STATUS: "store KEY VALUE" and "disk NAME KEY VALUE" lines;
 * PROMETHEUS: the text exposition format, HELP and TYPE lines included.
 */
enum cas_live_format { CAS_LIVE_STATUS, CAS_LIVE_PROMETHEUS };
int cas_live_render (struct cas_store *s, enum cas_live_format fmt,
                     int (*line) (void *opaque, const char *text), void *opaque);
/* Write the Prometheus figures to PATH atomically (PATH.tmp, rename). */
int cas_metrics_write_file (struct cas_store *s, const char *path);

#endif
