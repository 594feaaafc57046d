/* Logging inside the engine.  cas_error() logs one line for the user;
 * callers then return -1 with errno set.  cas_error preserves errno, so
 * "cas_error (\"pread %s: %m\", path); return -1;" is the idiom.
 */
#ifndef CAS_LOG_H
#define CAS_LOG_H

#include <stdbool.h>

void cas_error (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
void cas_debug (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
extern bool cas_debug_enabled;
/* The last message cas_error() logged in the calling thread ("" after
 * cas_clear_last_error): the control channel sends it to its client.
 */
const char *cas_last_error (void);
void cas_clear_last_error (void);

#endif
