/* Snapshot test workload: fill memory with a pattern, count on the console, verify the pattern. */
#ifndef KVMPS_WORKLOAD_H
#define KVMPS_WORKLOAD_H

#include "types.h"

void cmd_work(char *arg);   /* "work MiB": fill, then count until 'q'; "work verify": check the last fill; "work dirty MiB": rewrite without end */

#endif
