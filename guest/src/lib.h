/* Minimal libc-style helpers and a tiny printf for the console. */
#ifndef KVMPS_LIB_H
#define KVMPS_LIB_H

#include "types.h"
#include <stdarg.h>

void *memcpy(void *dst, const void *src, usize n);
void *memset(void *dst, int c, usize n);
void *memmove(void *dst, const void *src, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, usize n);
usize strlcpy(char *dst, const char *src, usize size);

/* Parse an unsigned decimal number spanning the whole string. Returns 0 on success. */
int parse_u64(const char *s, u64 *out);

/* printf subset: %s %c %d %u %x %p with optional 'l'/'ll' and zero-pad width (e.g. %08x). */
void kvprintf(const char *fmt, va_list ap);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
