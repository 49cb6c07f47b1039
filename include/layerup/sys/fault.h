/*
 * layerup/sys/fault.h - a fault-injecting driver for crash and I/O-error tests.
 *
 * lup_driver_fault wraps any driver and counts every operation that reaches
 * storage: the driver methods (get_content, put_content, reader, writer,
 * stat, list, move, remove, lock, unlock) and the reader/writer methods
 * (reader.read, reader.close, writer.write, writer.commit, writer.cancel,
 * writer.close, and writer.publish where the inner writer has it;
 * writer.size is a query and is not counted).  Operations are
 * numbered from 1 in the order they start.  At operation crash_at the
 * process kills itself with SIGKILL (before the operation, or after it with
 * crash_after); at operations fail_at .. fail_at + fail_count - 1 the
 * operation fails with fail_code instead of running.  A torn write (torn)
 * writes the first half of the buffer before the crash or the failure, as
 * a kill or an error in the middle of write(2) would.  delay_at stalls one
 * operation, so that a race between processes takes a chosen schedule.
 *
 * For tests only: a crash point kills the whole process.
 */
#ifndef LAYERUP_SYS_FAULT_H
#define LAYERUP_SYS_FAULT_H

#include <stdint.h>

#include "layerup/common.h"
#include "layerup/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lup_fault_options {
	unsigned version;   /* LUP_DRIVER_VERSION */
	int64_t crash_at;   /* 0: never; k: SIGKILL at operation k */
	int crash_after;    /* 1: crash once operation crash_at has run */
	int64_t fail_at;    /* 0: never; k: fail operation k (and the next) */
	int64_t fail_count; /* operations failed from fail_at; 0: all later */
	int fail_code;      /* LUP_E* for the failure; 0 means LUP_EIO */
	int fail_transient; /* mark the failure transient (retry may help) */
	int torn;           /* writer.write crashes/fails after half its bytes */
	int record;         /* keep "op path" of every operation (trace) */
	int64_t delay_at;   /* 0: never; k: sleep before operation k ... */
	int64_t delay_us;   /* ... this many microseconds (race schedules) */
} lup_fault_options;

#define LUP_FAULT_OPTIONS_INIT { LUP_DRIVER_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* Wrap inner (the new driver holds its own reference on it).  The wrapper
 * carries inner's name, so error messages read as inner's own. */
LUP_API int lup_driver_fault(lup_driver **out, lup_driver *inner,
		     const lup_fault_options *opts, lup_error *err);

/* Counters of a fault driver: operations started, failures injected.
 * -1 when d is not a fault driver. */
LUP_API int64_t lup_fault_ops(lup_driver *d);
LUP_API int64_t lup_fault_injected(lup_driver *d);

/* The recorded trace (record = 1): one "op path" string per operation,
 * operation k at index k - 1, appended to out.  LUP_EUNSUPPORTED when d is
 * not a fault driver. */
LUP_API int lup_fault_trace(lup_driver *d, lup_strlist *out, lup_error *err);

#ifdef __cplusplus
}
#endif
#endif
