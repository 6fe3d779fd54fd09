/* Tiny assertion helpers shared by the C tests: fail loudly with the library's own message. */
#ifndef CG_TEST_CHECK_H
#define CG_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cyclegan.h"

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__,       \
                    __LINE__, #cond, cg_last_error_message());                             \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Checks a call's status, printing both statuses' names on a mismatch. */
#define CHECK_STATUS(call, want)                                                           \
    do {                                                                                   \
        cg_status got_ = (call);                                                           \
        if (got_ != (cg_status)(want)) {                                                   \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %s\n  last error: %s\n", \
                    __FILE__, __LINE__, #call, (unsigned)got_, cg_status_str(got_), #want, \
                    cg_last_error_message());                                              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* The last error message mentions `needle`. */
#define CHECK_MESSAGE(needle)                                                              \
    do {                                                                                   \
        const char *m_ = cg_last_error_message();                                          \
        if (m_ == NULL || strstr(m_, (needle)) == NULL) {                                  \
            fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n", __FILE__, \
                    __LINE__, m_ ? m_ : "(null)", (needle));                               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#endif
