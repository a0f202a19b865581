/* A tiny test harness: CHECK records a failure with file:line and goes on;
 * check_summary prints "N passed, N failed" and gives the exit status. */
#ifndef JBX_CHECK_H
#define JBX_CHECK_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (cond) {                                                           \
      check_passed++;                                                     \
    } else {                                                              \
      check_failed++;                                                     \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, "\n");                                              \
    }                                                                     \
  } while (0)

#define CHECK_CLOSE(a, b, tol)                                                      \
  CHECK(fabs((double)(a) - (double)(b)) <= (tol) * (1.0 + fabs((double)(b))),       \
        "%.8g vs %.8g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* The error message of the last failed call must contain `part`. */
#define CHECK_ERROR_HAS(part)                                                       \
  CHECK(strstr(jbx_last_error(), (part)) != NULL, "error was '%s', wanted '%s'",    \
        jbx_last_error(), (part))

static inline int check_summary(void) {
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed ? 1 : 0;
}
#endif
