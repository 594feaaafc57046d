/* Logging: one hook for errors and debug lines, stderr by default. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "casdisk.h"
#include "util/log.h"

bool cas_debug_enabled;
static cas_log_fn log_fn;
/* The last error logged by this thread (for the control channel). */
static __thread char last_error[1024];

void
cas_set_log (cas_log_fn fn)
{
  log_fn = fn;
}

void
cas_set_debug (bool on)
{
  cas_debug_enabled = on;
}

static void
vlog (bool error, const char *fmt, va_list ap)
{
  const int saved_errno = errno;
  char msg[1024];

  vsnprintf (msg, sizeof msg, fmt, ap);   /* %m uses errno: still intact */
  if (error)
    memcpy (last_error, msg, sizeof msg);
  if (log_fn)
    log_fn (error, msg);
  else
    fprintf (stderr, "casdisk: %s%s\n", error ? "" : "debug: ", msg);
  errno = saved_errno;
}

void
cas_error (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vlog (true, fmt, ap);
  va_end (ap);
}

void
cas_debug (const char *fmt, ...)
{
  va_list ap;

  if (!cas_debug_enabled)
    return;
  va_start (ap, fmt);
  vlog (false, fmt, ap);
  va_end (ap);
}

const char *
cas_last_error (void)
{
  return last_error;
}

void
cas_clear_last_error (void)
{
  last_error[0] = '\0';
}
