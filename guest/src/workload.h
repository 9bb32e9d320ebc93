/* Snapshot test workload: fill memory with a pattern, count on the console, verify the pattern. */
#ifndef KVMPS_WORKLOAD_H
#define KVMPS_WORKLOAD_H

#include "types.h"

void cmd_work(char *arg);   /* "work MiB": fill, then count until 'q'; "work verify": check the last fill; "work dirty MiB": rewrite without end;
                               "work udirty MiB RATE": dirty at RATE MiB/s from ring 3 (udirty.c) */
void work_udirty(u64 mib, u64 rate_mib_s);

#endif
