#include "CKernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// Large tensor blocks: per-thread heaps of page-granular ranges in big anonymous mappings,
// best fit with coalescing, never unmapped. See `qk_block_alloc` in CKernels.h for why.

#define QK_PAGE 4096UL
/// Address space reserved per mapping; pages count as resident only once written.
#define QK_RESERVE (1UL << 30)
#define QK_MAX_HEAPS 32
#define QK_MAX_MAPPINGS 256

typedef struct {
    char *base;
    size_t size;
} range;

typedef struct {
    range *free;  // sorted by address, none adjacent
    long count, capacity;
    int owned;    // a live thread allocates from it
} heap_t;

// One lock for everything: a batch makes a few hundred large allocations, so contention is
// negligible, and frees from any thread can find the owning heap.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static heap_t heaps[QK_MAX_HEAPS];
static int heap_count;
// Every mapping, its heap, and the end of the highest block handed out in it (pages below it
// may be resident; pages above it never were).
static struct {
    range r;
    int heap;
    char *touched;
} mappings[QK_MAX_MAPPINGS];
static int mapping_count;
static size_t mapped, in_use, high_water;

static __thread int my_heap = -1;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/// At thread exit: the heap (and its free memory) passes to the next thread that needs one.
static void disown(void *h) {
    pthread_mutex_lock(&lock);
    heaps[(long)h - 1].owned = 0;
    pthread_mutex_unlock(&lock);
}

static void make_key(void) { pthread_key_create(&exit_key, disown); }

/// The calling thread's heap (lock held). Threads get their own heap so that each heap
/// sees one thread's sequence of allocations: another thread's, at moments that vary from
/// run to run (data prefetch), would otherwise shift the layout.
static int heap_of_thread(void) {
    if (my_heap >= 0) return my_heap;
    int h = -1;
    for (int i = 0; i < heap_count; i++) if (!heaps[i].owned) { h = i; break; }
    if (h < 0 && heap_count < QK_MAX_HEAPS) h = heap_count++;
    if (h < 0) return 0;  // more threads than heaps: share the first one (still correct)
    heaps[h].owned = 1;
    my_heap = h;
    pthread_setspecific(exit_key, (void *)(long)(h + 1));
    return h;
}

static int reserve_free_slots(heap_t *hp, long n) {
    if (n <= hp->capacity) return 1;
    long cap = hp->capacity ? hp->capacity * 2 : 64;
    while (cap < n) cap *= 2;
    range *r = realloc(hp->free, (size_t)cap * sizeof(range));
    if (!r) return 0;
    hp->free = r;
    hp->capacity = cap;
    return 1;
}

/// Adds [base, base+size) to a heap's free list, merging with its neighbours. Returns 0 when
/// the list cannot grow.
static int insert_free(heap_t *hp, char *base, size_t size) {
    long lo = 0, hi = hp->count;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (hp->free[mid].base < base) lo = mid + 1; else hi = mid;
    }
    // Ranges of different mappings never merge (a mapping belongs to one heap).
    int joins_prev = lo > 0 && hp->free[lo - 1].base + hp->free[lo - 1].size == base;
    int joins_next = lo < hp->count && base + size == hp->free[lo].base;
    if (joins_prev && joins_next) {
        hp->free[lo - 1].size += size + hp->free[lo].size;
        memmove(hp->free + lo, hp->free + lo + 1, (size_t)(hp->count - lo - 1) * sizeof(range));
        hp->count--;
    } else if (joins_prev) {
        hp->free[lo - 1].size += size;
    } else if (joins_next) {
        hp->free[lo].base = base;
        hp->free[lo].size += size;
    } else {
        if (!reserve_free_slots(hp, hp->count + 1)) return 0;
        memmove(hp->free + lo + 1, hp->free + lo, (size_t)(hp->count - lo) * sizeof(range));
        hp->free[lo] = (range){base, size};
        hp->count++;
    }
    return 1;
}

static long best_fit(const heap_t *hp, size_t n) {
    // Among equal sizes the lowest address (the list is address-ordered).
    long best = -1;
    for (long i = 0; i < hp->count; i++) {
        if (hp->free[i].size >= n && (best < 0 || hp->free[i].size < hp->free[best].size)) {
            best = i;
            if (hp->free[i].size == n) break;
        }
    }
    return best;
}

static int mapping_of(const char *p) {
    for (int i = 0; i < mapping_count; i++) {
        if (p >= mappings[i].r.base && p < mappings[i].r.base + mappings[i].r.size) return i;
    }
    return -1;
}

static size_t page_round(size_t bytes) {
    size_t n = (bytes + QK_PAGE - 1) & ~(QK_PAGE - 1);
    return n ? n : QK_PAGE;
}

void *qk_block_alloc(size_t bytes) {
    size_t n = page_round(bytes);
    pthread_once(&key_once, make_key);
    pthread_mutex_lock(&lock);
    int h = heap_of_thread();
    heap_t *hp = &heaps[h];
    long best = best_fit(hp, n);
    if (best < 0) {
        size_t want = n > QK_RESERVE ? n : QK_RESERVE;
        void *m = mapping_count < QK_MAX_MAPPINGS
            ? mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) : MAP_FAILED;
        if (m == MAP_FAILED && want > n && mapping_count < QK_MAX_MAPPINGS) {
            want = n;  // strict overcommit: map only what is asked
            m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        if (m == MAP_FAILED || !insert_free(hp, m, want)) {
            if (m != MAP_FAILED) munmap(m, want);
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        mappings[mapping_count].r = (range){m, want};
        mappings[mapping_count].heap = h;
        mappings[mapping_count].touched = m;
        mapping_count++;
        mapped += want;
        best = best_fit(hp, n);
    }
    char *p = hp->free[best].base;
    hp->free[best].base += n;
    hp->free[best].size -= n;
    if (hp->free[best].size == 0) {
        memmove(hp->free + best, hp->free + best + 1, (size_t)(hp->count - best - 1) * sizeof(range));
        hp->count--;
    }
    in_use += n;
    if (in_use > high_water) high_water = in_use;
    int k = mapping_of(p);
    if (p + n > mappings[k].touched) mappings[k].touched = p + n;
    pthread_mutex_unlock(&lock);
    return p;
}

void qk_block_free(void *p, size_t bytes) {
    if (!p) return;
    size_t n = page_round(bytes);
    pthread_mutex_lock(&lock);
    in_use -= n;
    int k = mapping_of(p);
    // No memory for the free list: give the pages back instead of keeping them.
    if (k < 0 || !insert_free(&heaps[mappings[k].heap], p, n)) madvise(p, n, MADV_DONTNEED);
    pthread_mutex_unlock(&lock);
}

void qk_block_release(void) {
    pthread_mutex_lock(&lock);
    for (int h = 0; h < heap_count; h++) {
        for (long i = 0; i < heaps[h].count; i++) madvise(heaps[h].free[i].base, heaps[h].free[i].size, MADV_DONTNEED);
    }
    pthread_mutex_unlock(&lock);
}

qk_block_stats qk_block_statistics(void) {
    pthread_mutex_lock(&lock);
    size_t extent = 0;
    long ranges = 0;
    for (int i = 0; i < mapping_count; i++) extent += (size_t)(mappings[i].touched - mappings[i].r.base);
    for (int h = 0; h < heap_count; h++) ranges += heaps[h].count;
    qk_block_stats s = {mapped, in_use, high_water, extent, ranges};
    pthread_mutex_unlock(&lock);
    return s;
}
