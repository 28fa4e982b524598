/*
 * libEllaFinalizerGrace.so: what .NET's finalizer frees of TorchSharp's native objects, libtorch frees 2 s later.
 *
 * TorchSharp 0.107 passes native handles of .NET objects to libtorch. An object used only as a temporary (the Scalar
 * made from every number, `x * 0.5` or `add(y)`'s implicit alpha of 1; a Tensor result passed straight on,
 * `a.add(b.mul(2))`, outside a dispose scope) is unreachable as soon as its handle has been read. A garbage collection
 * triggered by another thread while the native call still runs then lets the finalizer thread free the object under
 * libtorch's feet: a wrong number, "Expected false to be true ... toFloat", or a segmentation fault. The server hit it.
 *
 * TorchSharp's P/Invokes resolve "LibTorchSharp" to this library (Ella.Native.FinalizerGrace sets the resolver). It
 * defines only the two dispose functions and links libLibTorchSharp.so, so every other symbol is found there.
 *   - THSTorch_dispose_scalar: always queued (Scalars are never in a dispose scope; 32 bytes each).
 *   - THSTensor_dispose: queued when called on .NET's finalizer thread (registered by the managed side), freed at once
 *     otherwise: Dispose() and dispose scopes run on the thread that used the tensor, after its calls returned.
 * Queued objects are really freed (by the original functions) once they have waited GRACE_NS. libtorch reads its
 * arguments when a call starts, microseconds after the handles were read, so 2 s leave a wide margin. At most
 * RING_CAPACITY objects wait; when full, the oldest is freed early.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define GRACE_NS 2000000000ull
#define RING_CAPACITY (1u << 18)

typedef void (*dispose_fn)(void *);

static struct { void *object; dispose_fn dispose; uint64_t queued_ns; } ring[RING_CAPACITY];
static uint32_t head, count; /* oldest entry at head */
static uint64_t deferred_total, freed_total, immediate_total;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_t finalizer_thread;
static int finalizer_known;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The original function in libLibTorchSharp.so (our own dependency, so already loaded; found by its soname). */
static dispose_fn original(const char *name)
{
    void *torchsharp = dlopen("libLibTorchSharp.so", RTLD_LAZY | RTLD_NOLOAD);
    dispose_fn fn = torchsharp ? (dispose_fn)dlsym(torchsharp, name) : 0;
    if (torchsharp) dlclose(torchsharp);
    return fn;
}

static dispose_fn scalar_original, tensor_original;

static void free_oldest(void)
{
    void *object = ring[head].object;
    dispose_fn dispose = ring[head].dispose;
    head = (head + 1) % RING_CAPACITY;
    count--;
    freed_total++;
    if (dispose) dispose(object);
}

static void defer(void *object, dispose_fn dispose)
{
    uint64_t now = now_ns();
    pthread_mutex_lock(&gate);
    while (count > 0 && (count == RING_CAPACITY || now - ring[head].queued_ns >= GRACE_NS)) free_oldest();
    uint32_t tail = (head + count) % RING_CAPACITY;
    ring[tail].object = object;
    ring[tail].dispose = dispose;
    ring[tail].queued_ns = now;
    count++;
    deferred_total++;
    pthread_mutex_unlock(&gate);
}

__attribute__((visibility("default"))) void THSTorch_dispose_scalar(void *scalar)
{
    if (!scalar) return;
    defer(scalar, scalar_original);
}

__attribute__((visibility("default"))) void THSTensor_dispose(void *tensor)
{
    if (!tensor) return;
    if (finalizer_known && pthread_equal(pthread_self(), finalizer_thread))
        defer(tensor, tensor_original);
    else
    {
        __atomic_add_fetch(&immediate_total, 1, __ATOMIC_RELAXED);
        if (tensor_original) tensor_original(tensor);
    }
}

/* Resolves the original dispose functions; returns 1 when both were found (otherwise frees would be lost). The managed
 * side calls it before it routes TorchSharp's calls here, and stays off if it returns 0. */
__attribute__((visibility("default"))) int ella_grace_init(void)
{
    scalar_original = original("THSTorch_dispose_scalar");
    tensor_original = original("THSTensor_dispose");
    return scalar_original && tensor_original;
}

/* Called once from inside a .NET finalizer: the thread that runs them all. */
__attribute__((visibility("default"))) void ella_grace_register_finalizer_thread(void)
{
    pthread_mutex_lock(&gate);
    finalizer_thread = pthread_self();
    finalizer_known = 1;
    pthread_mutex_unlock(&gate);
}

/* For tests and `ella info`: objects queued so far, freed from the queue so far, waiting now, tensors freed at once,
 * the grace period, and whether the finalizer thread is known. */
__attribute__((visibility("default"))) void ella_grace_stats(uint64_t *deferred, uint64_t *freed, uint64_t *waiting, uint64_t *immediate,
                                                             uint64_t *grace_ns, int *finalizer_registered)
{
    pthread_mutex_lock(&gate);
    *deferred = deferred_total;
    *freed = freed_total;
    *waiting = count;
    *immediate = __atomic_load_n(&immediate_total, __ATOMIC_RELAXED);
    *grace_ns = GRACE_NS;
    *finalizer_registered = finalizer_known;
    pthread_mutex_unlock(&gate);
}

/* Frees everything waiting whose grace has passed (a queue that receives nothing new still drains). */
__attribute__((visibility("default"))) void ella_grace_collect(void)
{
    uint64_t now = now_ns();
    pthread_mutex_lock(&gate);
    while (count > 0 && now - ring[head].queued_ns >= GRACE_NS) free_oldest();
    pthread_mutex_unlock(&gate);
}
