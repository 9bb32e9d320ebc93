/* Basic fixed-width types for the freestanding guest. */
#ifndef KVMPS_TYPES_H
#define KVMPS_TYPES_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long s64;
typedef unsigned long usize;
typedef unsigned long uptr;

#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PACKED __attribute__((packed))
#define NORETURN __attribute__((noreturn))

#endif
