/*
 * layerup/common.h - what every public header shares: the export macro.
 *
 * liblayerup.so is built with -fvisibility=hidden, so only declarations
 * marked LUP_API are exported: the documented API and nothing else.
 */
#ifndef LAYERUP_COMMON_H
#define LAYERUP_COMMON_H

#if defined(__GNUC__) || defined(__clang__)
#define LUP_API __attribute__((visibility("default")))
#else
#define LUP_API
#endif

#endif
