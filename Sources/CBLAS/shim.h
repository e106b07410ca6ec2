// CBLAS through Debian's OpenBLAS (libopenblas-dev). macOS builds use Accelerate instead
// (see QuantExecutor/BLAS.swift), so this module is only imported on Linux.
#include <cblas.h>

// LAPACK's Cholesky factorization and triangular inverse, which OpenBLAS implements and exports
// (column-major, 32-bit integers as in Debian's libopenblas0).
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
