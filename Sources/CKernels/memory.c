#include "CKernels.h"

// <stdlib.h> includes glibc's <features.h>, which defines __GLIBC__: test it only after an
// include of the C library (CKernels.h includes compiler headers only, and before this
// include the tuning below was silently compiled out).
#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int qk_keep_freed_memory(void) {
#if defined(__GLIBC__)
    // glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit targets, so larger tensors (a batch-8
    // EfficientNet activation is 38.5 MB) would still be mapped and unmapped per use: serve
    // every block from the heap instead (M_MMAP_MAX 0) and never trim it.
    int ok = mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ok &= mallopt(M_MMAP_MAX, 0);
    ok &= mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
    return ok;
#else
    return 0;
#endif
}
