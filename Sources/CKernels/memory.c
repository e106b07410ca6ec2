#include "CKernels.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int qk_keep_freed_memory(void) {
#if defined(__GLIBC__)
    // glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit targets.
    int ok = mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ok &= mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
    return ok;
#else
    return 0;
#endif
}
