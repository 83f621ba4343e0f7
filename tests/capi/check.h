/* The check counters and CHECK macro the C API test programs share (one program per file,
 * each including this once). */
#ifndef MOELA_TEST_CHECK_H
#define MOELA_TEST_CHECK_H

#include "moela.h"

#include <stdio.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__,       \
                    __LINE__, #cond, moela_last_error());                                  \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#endif
