/* The sum of squares of many float32 tensors, accumulated in float64, in one call: the gradient norm a skip-step
 * optimizer judges, read once at memory bandwidth (torch.linalg.vector_norm's CPU reduction runs on one thread
 * here: 1.3-1.5 ms for 10.5 M elements against 0.8 ms). Built and loaded by optreg.native (see _native.py).
 * Plain C for the compiler's vectoriser: 16 float64 partial sums. */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double block(const float *restrict x, int64_t n) {
    double partial[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) partial[k] += (double)x[i + k] * (double)x[i + k];
    double sum = 0;
    for (; i < n; i++) sum += (double)x[i] * (double)x[i];
    for (int k = 0; k < 16; k++) sum += partial[k];
    return sum;
}

/* out = sum over tensors t of sum_i data[t][i]^2. A tensor of 2**18 elements or more is split across threads. */
void sum_of_squares_f32(const float *const *data, const int64_t *sizes, int64_t count, double *out, int threads) {
    double total = 0;
    for (int64_t t = 0; t < count; t++) {
        const float *x = data[t];
        int64_t n = sizes[t];
        int use = n < 262144 || threads < 2 ? 1 : threads;
        if (use == 1) {
            total += block(x, n);
            continue;
        }
        double sum = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(use) reduction(+ : sum)
        {
            int64_t id = omp_get_thread_num(), parts = omp_get_num_threads();
#else
        {
            int64_t id = 0, parts = 1;
#endif
            int64_t share = ((n + parts - 1) / parts + 15) / 16 * 16;
            int64_t lo = share * id, hi = lo + share < n ? lo + share : n;
            if (lo < hi) sum += block(x + lo, hi - lo);
        }
        total += sum;
    }
    *out = total;
}
