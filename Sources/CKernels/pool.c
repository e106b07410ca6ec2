#include "CKernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

// A persistent pool of worker threads for `qk_parallel_run`.
//
// One job at a time (guarded by `busy`; a call that finds the pool busy runs inline). A job is
// published under `lock` by bumping `generation`; a worker that sees a new generation joins
// it (counted in `active` under the lock, so the caller never returns while a worker still
// holds the job's function and context), takes task indices from `next` until none are left,
// then leaves. Workers spin briefly on the generation before sleeping on `wake`: consecutive
// kernels start within microseconds of each other, and a futex wake-up costs more than that.

#define QK_MAX_WORKERS 63
#define QK_SPIN 20000

typedef struct {
    pthread_mutex_t busy;
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
    atomic_ulong generation;
    void (*fn)(void *, long);
    void *ctx;
    long tasks;
    int participants;
    int active;
    atomic_long next;
    atomic_long remaining;
    int workers;
} qk_pool;

static qk_pool pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/// Runs tasks of the current job until none are left.
static void drain(void (*fn)(void *, long), void *ctx, long tasks) {
    for (;;) {
        long t = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (t >= tasks) return;
        fn(ctx, t);
        atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    int index = (int)(long)arg;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < QK_SPIN && atomic_load_explicit(&pool.generation, memory_order_acquire) == seen; i++) cpu_relax();
        pthread_mutex_lock(&pool.lock);
        while (atomic_load_explicit(&pool.generation, memory_order_relaxed) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load_explicit(&pool.generation, memory_order_relaxed);
        if (index >= pool.participants || pool.fn == NULL) {
            pthread_mutex_unlock(&pool.lock);
            continue;
        }
        void (*fn)(void *, long) = pool.fn;
        void *ctx = pool.ctx;
        long tasks = pool.tasks;
        pool.active++;
        pthread_mutex_unlock(&pool.lock);
        drain(fn, ctx, tasks);
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.idle);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

static void start_pool(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus > 1 ? (int)(cpus - 1) : 0;
    if (n > QK_MAX_WORKERS) n = QK_MAX_WORKERS;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker_main, (void *)(long)i) == 0) pool.workers++;
        pthread_attr_destroy(&attr);
    }
}

void qk_parallel_run(int tasks, int threads, void (*fn)(void *ctx, long task), void *ctx) {
    if (tasks <= 0) return;
    if (tasks == 1 || threads <= 1) {
        for (long t = 0; t < tasks; t++) fn(ctx, t);
        return;
    }
    pthread_once(&pool_once, start_pool);
    if (pool.workers == 0 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (long t = 0; t < tasks; t++) fn(ctx, t);
        return;
    }
    int helpers = threads - 1 < pool.workers ? threads - 1 : pool.workers;
    if (helpers > tasks - 1) helpers = tasks - 1;
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.tasks = tasks;
    pool.participants = helpers;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.remaining, tasks, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    drain(fn, ctx, tasks);
    for (int i = 0; i < QK_SPIN && atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0; i++) cpu_relax();
    pthread_mutex_lock(&pool.lock);
    // Tasks are all taken; wait until the workers that joined have left the job.
    while (pool.active > 0 || atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0) {
        if (pool.active > 0) {
            pthread_cond_wait(&pool.idle, &pool.lock);
        } else {
            pthread_mutex_unlock(&pool.lock);
            cpu_relax();
            pthread_mutex_lock(&pool.lock);
        }
    }
    pool.fn = NULL;
    pool.ctx = NULL;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}
