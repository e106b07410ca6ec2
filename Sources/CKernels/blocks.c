#include "CKernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// Large tensor blocks: best fit over page-granular ranges of big anonymous mappings, with
// coalescing, never unmapped. See `qk_block_alloc` in CKernels.h for why.

#define QK_PAGE 4096UL
/// Address space reserved per mapping; pages count as resident only once written.
#define QK_RESERVE (1UL << 30)

typedef struct {
    char *base;
    size_t size;
} range;

static struct {
    pthread_mutex_t lock;
    range *free;  // sorted by address, none adjacent
    long count, capacity;
    size_t mapped, in_use, high_water;
} heap = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0, 0};

static int reserve_free_slots(long n) {
    if (n <= heap.capacity) return 1;
    long cap = heap.capacity ? heap.capacity * 2 : 64;
    while (cap < n) cap *= 2;
    range *r = realloc(heap.free, (size_t)cap * sizeof(range));
    if (!r) return 0;
    heap.free = r;
    heap.capacity = cap;
    return 1;
}

/// Adds [base, base+size) to the free list, merging with its neighbours. Returns 0 when the
/// list cannot grow (the range is then lost to reuse, not to correctness).
static int insert_free(char *base, size_t size) {
    long lo = 0, hi = heap.count;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (heap.free[mid].base < base) lo = mid + 1; else hi = mid;
    }
    int joins_prev = lo > 0 && heap.free[lo - 1].base + heap.free[lo - 1].size == base;
    int joins_next = lo < heap.count && base + size == heap.free[lo].base;
    if (joins_prev && joins_next) {
        heap.free[lo - 1].size += size + heap.free[lo].size;
        memmove(heap.free + lo, heap.free + lo + 1, (size_t)(heap.count - lo - 1) * sizeof(range));
        heap.count--;
    } else if (joins_prev) {
        heap.free[lo - 1].size += size;
    } else if (joins_next) {
        heap.free[lo].base = base;
        heap.free[lo].size += size;
    } else {
        if (!reserve_free_slots(heap.count + 1)) return 0;
        memmove(heap.free + lo + 1, heap.free + lo, (size_t)(heap.count - lo) * sizeof(range));
        heap.free[lo] = (range){base, size};
        heap.count++;
    }
    return 1;
}

void *qk_block_alloc(size_t bytes) {
    size_t n = (bytes + QK_PAGE - 1) & ~(QK_PAGE - 1);
    if (n == 0) n = QK_PAGE;
    pthread_mutex_lock(&heap.lock);
    // Best fit; among equal sizes the lowest address (the list is address-ordered).
    long best = -1;
    for (long i = 0; i < heap.count; i++) {
        if (heap.free[i].size >= n && (best < 0 || heap.free[i].size < heap.free[best].size)) {
            best = i;
            if (heap.free[i].size == n) break;
        }
    }
    if (best < 0) {
        size_t want = n > QK_RESERVE ? n : QK_RESERVE;
        void *m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED && want > n) {
            want = n;  // strict overcommit: map only what is asked
            m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        if (m == MAP_FAILED || !insert_free(m, want)) {
            if (m != MAP_FAILED) munmap(m, want);
            pthread_mutex_unlock(&heap.lock);
            return NULL;
        }
        heap.mapped += want;
        for (long i = 0; i < heap.count; i++) {
            if (heap.free[i].size >= n && (best < 0 || heap.free[i].size < heap.free[best].size)) best = i;
        }
    }
    char *p = heap.free[best].base;
    heap.free[best].base += n;
    heap.free[best].size -= n;
    if (heap.free[best].size == 0) {
        memmove(heap.free + best, heap.free + best + 1, (size_t)(heap.count - best - 1) * sizeof(range));
        heap.count--;
    }
    heap.in_use += n;
    if (heap.in_use > heap.high_water) heap.high_water = heap.in_use;
    pthread_mutex_unlock(&heap.lock);
    return p;
}

void qk_block_free(void *p, size_t bytes) {
    if (!p) return;
    size_t n = (bytes + QK_PAGE - 1) & ~(QK_PAGE - 1);
    if (n == 0) n = QK_PAGE;
    pthread_mutex_lock(&heap.lock);
    heap.in_use -= n;
    if (!insert_free(p, n)) {
        // No memory for the free list: give the pages back instead of keeping them.
        madvise(p, n, MADV_DONTNEED);
    }
    pthread_mutex_unlock(&heap.lock);
}

void qk_block_release(void) {
    pthread_mutex_lock(&heap.lock);
    for (long i = 0; i < heap.count; i++) madvise(heap.free[i].base, heap.free[i].size, MADV_DONTNEED);
    pthread_mutex_unlock(&heap.lock);
}

qk_block_stats qk_block_statistics(void) {
    pthread_mutex_lock(&heap.lock);
    qk_block_stats s = {heap.mapped, heap.in_use, heap.high_water, heap.count};
    pthread_mutex_unlock(&heap.lock);
    return s;
}
