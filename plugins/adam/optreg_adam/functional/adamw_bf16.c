/* AdamW / Adam with bfloat16 state (exp_avg, exp_avg_sq) under float32 params, stored by unbiased stochastic
 * rounding: one pass over the tensor, at memory bandwidth (see optreg_adam/functional/native.py).
 *
 * The same update as optreg_adam.functional.adam._adam_tensor_lowp, and the same random bits: element i of a
 * tensor draws hash(i, seed) (rounding.py's hash_bits), its low 16 bits round exp_avg and its high 16 bits
 * exp_avg_sq. Plain C, written for the compiler's vectoriser: no intrinsics, so it builds on any CPU; bfloat16
 * is the high half of a float32, so converting is a shift, and rounding adds 16 random low bits then truncates.
 * Scalars are read through pointers to torch's 0-dim tensors (float64 on CPU, computed on the device: no host
 * sync), and converted to float32 as torch's float32 ops do.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* One thread's contiguous share. 32-bit element indices: the vectoriser handles them 16 to a 512-bit register. */
static void adamw_bf16_block(float *restrict p, const float *restrict g, uint16_t *restrict m,
                             uint16_t *restrict v, uint32_t n, uint32_t first, float decay, float w1, float b2,
                             float w2, float inv_bc2_sqrt, float neg_step, float eps, float l2, float sign,
                             uint32_t seed) {
    for (uint32_t i = 0; i < n; i++) {
        float pi = p[i];
        float gi = sign * g[i] + l2 * pi;
        float mi = bits_to_float((uint32_t)m[i] << 16);
        mi = mi + (gi - mi) * w1;
        float vi = bits_to_float((uint32_t)v[i] << 16) * b2 + gi * gi * w2;
        uint32_t x = (first + i) * 0x9E3779B1u + seed; /* hash_bits: a counter-based hash of (index, seed) */
        x *= 0x7FEB352Du;
        x ^= x >> 15;
        x *= 0x846CA68Bu;
        x ^= x >> 16;
        uint32_t m_bits = (float_to_bits(mi) + (x & 0xFFFFu)) & 0xFFFF0000u;
        uint32_t v_bits = (float_to_bits(vi) + (x >> 16)) & 0xFFFF0000u;
        m[i] = (uint16_t)(m_bits >> 16);
        v[i] = (uint16_t)(v_bits >> 16);
        float update = bits_to_float(m_bits) / (sqrtf(bits_to_float(v_bits)) * inv_bc2_sqrt + eps);
        p[i] = pi * decay + update * neg_step;
    }
}

/* Every tensor of a group in one call: one parallel region over the concatenated elements (a thread's share may
 * span several tensors), so small tensors cost no thread start each. Per tensor t: data[t] pointers, sizes[t],
 * inv_bc2_sqrt[t], neg_step[t] and seeds[t] (vectors); the rest is shared by the group. keep: NULL, or a 0-dim
 * bool: false skips the step (params and state stay bit-identical). decay is applied only when decoupled; l2
 * (Adam's coupled weight decay) is 0 when decoupled. Element i of tensor t draws hash(i, seeds[t]). */
void adamw_bf16_sr(float *const *p, const float *const *g, uint16_t *const *m, uint16_t *const *v,
                   const int64_t *sizes, int64_t count, const uint8_t *keep, const double *decay, const double *w1,
                   const double *b2, double w2, const double *inv_bc2_sqrt, const double *neg_step,
                   const double *eps, const int32_t *seeds, double l2, int maximize, int decoupled, int threads) {
    if (keep != NULL && !*keep) return;
    float decay_f = decoupled ? (float)*decay : 1.0f;
    float w1_f = (float)*w1, b2_f = (float)*b2, w2_f = (float)w2, eps_f = (float)*eps, l2_f = (float)l2;
    float sign = maximize ? -1.0f : 1.0f;
    int64_t total = 0;
    for (int64_t t = 0; t < count; t++) total += sizes[t];
    if (total < 65536 || threads < 2) threads = 1; /* starting threads costs more than a small group's step */
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        int64_t id = omp_get_thread_num(), parts = omp_get_num_threads();
#else
    {
        int64_t id = 0, parts = 1;
#endif
        int64_t share = ((total + parts - 1) / parts + 63) / 64 * 64; /* cache-line aligned shares */
        int64_t lo = share * id, hi = lo + share < total ? lo + share : total;
        int64_t start = 0; /* global index of tensor t's first element */
        for (int64_t t = 0; t < count && lo < hi; start += sizes[t], t++) {
            int64_t end = start + sizes[t];
            if (end <= lo) continue;
            int64_t a = lo - start, b = (hi < end ? hi : end) - start; /* [a, b) of tensor t */
            adamw_bf16_block(p[t] + a, g[t] + a, m[t] + a, v[t] + a, (uint32_t)(b - a), (uint32_t)a, decay_f, w1_f,
                             b2_f, w2_f, (float)inv_bc2_sqrt[t], (float)neg_step[t], eps_f, l2_f, sign,
                             (uint32_t)seeds[t]);
            lo = start + b;
        }
    }
}
