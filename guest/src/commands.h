/* Console commands. */
#ifndef KVMPS_COMMANDS_H
#define KVMPS_COMMANDS_H

void print_info(void);            /* the "cpus:" and "memory:" lines */
void run_command(char *line);     /* line is modified (trimmed) */

#endif
