/*
 * libEllaScalarGrace.so: TorchSharp's Scalar frees, held back for a grace period.
 *
 * TorchSharp 0.107 makes a Scalar (a new'd c10::Scalar behind a finalizable .NET object) for every number passed to
 * torch (`x * 0.5`, `add(y)`'s implicit alpha of 1, ...). The .NET object is unreachable as soon as its native handle
 * has been read, so a garbage collection triggered by another thread while the native call is still running can let
 * the finalizer thread free the c10::Scalar before libtorch reads it. libtorch then reads freed memory: "Expected false
 * to be true ... toFloat", a wrong value, or worse. A server under load hit it (one request in a few hundred).
 *
 * The fix: TorchSharp's P/Invokes resolve "LibTorchSharp" to this library (Ella.Native.ScalarGrace sets the resolver);
 * it defines only THSTorch_dispose_scalar and links libLibTorchSharp.so, so every other symbol is found there. A freed
 * Scalar is queued and really deleted (by the original function) once it has been queued for GRACE_NS. Every libtorch
 * function reads its Scalars when it starts, microseconds after the handle was read, so 2 s leave a margin of six
 * orders of magnitude. What it holds is bounded: at most RING_CAPACITY Scalars (48 bytes each with malloc's header);
 * when full, the oldest is freed early.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define GRACE_NS 2000000000ull
#define RING_CAPACITY (1u << 18)

typedef void (*dispose_fn)(void *);

static struct { void *scalar; uint64_t queued_ns; } ring[RING_CAPACITY];
static uint32_t head, count; /* oldest entry at head */
static uint64_t deferred_total, freed_total;
static dispose_fn original;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static dispose_fn resolve_original(void)
{
    if (!original)
    {
        /* Our own dependency, so already loaded; found by its soname. */
        void *torchsharp = dlopen("libLibTorchSharp.so", RTLD_LAZY | RTLD_NOLOAD);
        original = torchsharp ? (dispose_fn)dlsym(torchsharp, "THSTorch_dispose_scalar") : 0;
        if (torchsharp) dlclose(torchsharp);
    }
    return original;
}

static void free_oldest(void)
{
    void *scalar = ring[head].scalar;
    head = (head + 1) % RING_CAPACITY;
    count--;
    freed_total++;
    dispose_fn dispose = resolve_original();
    if (dispose) dispose(scalar);
}

__attribute__((visibility("default"))) void THSTorch_dispose_scalar(void *scalar)
{
    if (!scalar) return;
    uint64_t now = now_ns();
    pthread_mutex_lock(&gate);
    while (count > 0 && (count == RING_CAPACITY || now - ring[head].queued_ns >= GRACE_NS)) free_oldest();
    uint32_t tail = (head + count) % RING_CAPACITY;
    ring[tail].scalar = scalar;
    ring[tail].queued_ns = now;
    count++;
    deferred_total++;
    pthread_mutex_unlock(&gate);
}

/* For tests and `ella info`: Scalars queued so far, freed so far, held now; and the grace period. */
__attribute__((visibility("default"))) void ella_scalar_grace_stats(uint64_t *deferred, uint64_t *freed, uint64_t *held, uint64_t *grace_ns)
{
    pthread_mutex_lock(&gate);
    *deferred = deferred_total;
    *freed = freed_total;
    *held = count;
    *grace_ns = GRACE_NS;
    pthread_mutex_unlock(&gate);
}

/* Frees everything held whose grace has passed (a queue that no longer receives Scalars still drains). */
__attribute__((visibility("default"))) void ella_scalar_grace_collect(void)
{
    uint64_t now = now_ns();
    pthread_mutex_lock(&gate);
    while (count > 0 && now - ring[head].queued_ns >= GRACE_NS) free_oldest();
    pthread_mutex_unlock(&gate);
}
