// CBLAS through Debian's OpenBLAS (libopenblas-dev). macOS builds use Accelerate instead
// (see QuantExecutor/BLAS.swift), so this module is only imported on Linux.
#include <cblas.h>
