// stoker: 8-bit NHWC samples -> normalised float samples (NCHW or NHWC; f32, f16 or bf16),
// optionally with gaussian noise. One thread per pixel. Compiled at run time by NVRTC with
// --fmad=false, so every multiply and add rounds on its own, as on the CPU: the result is
// bit-identical to stoker::GpuConvert::convert_sample.
//
// The same text compiles as C on the host (tests/gpu_convert.rs) with a prelude that defines
// STOKER_HOST and the STOKER_* macros below, so the arithmetic is checked without a GPU.
//
// params (read-only, 1024 + 9 floats): [0, 1024) the gaussian table, then scale[3], bias[3],
// sigma[3]. out[c] = (float)x[c] * scale[c] + bias[c], then + sigma[c] * table[(h >> 10c) & 1023]
// when noise is on, with h = hash32(j ^ keys[n]) for pixel j (row-major) of sample n.

#ifndef STOKER_HOST
typedef unsigned int stoker_u32;
typedef unsigned short stoker_u16;
typedef unsigned long long stoker_u64;
#define STOKER_FN __device__ __forceinline__
#define STOKER_KERNEL extern "C" __global__ void
#define STOKER_THREAD ((stoker_u64)blockIdx.x * (stoker_u64)blockDim.x + (stoker_u64)threadIdx.x)
#define STOKER_BITS(x) __float_as_uint(x)
STOKER_FN stoker_u16 stoker_f16(float x) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
}
#endif

// lowbias32 (Chris Wellons), as in the CPU noise.
STOKER_FN stoker_u32 stoker_hash32(stoker_u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

// Round to nearest, ties to even (NaN stays NaN, made quiet), as half::bf16::from_f32.
STOKER_FN stoker_u16 stoker_bf16(float x) {
    stoker_u32 b = STOKER_BITS(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (stoker_u16)((b >> 16) | 0x40u);
    }
    return (stoker_u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// dtype: 0 f32, 1 f16, 2 bf16. planar: 1 for NCHW. noise: 1 to add the gaussian noise.
STOKER_KERNEL stoker_convert_u8(const unsigned char *src, unsigned char *dst,
                                const stoker_u32 *keys, const float *params,
                                stoker_u64 pixels_per_sample, stoker_u64 total_pixels,
                                int channels, int planar, int dtype, int noise) {
    stoker_u64 t = STOKER_THREAD;
    if (t >= total_pixels) {
        return;
    }
    stoker_u64 n = t / pixels_per_sample;
    stoker_u64 j = t - n * pixels_per_sample;
    const unsigned char *px = src + t * (stoker_u64)channels;
    stoker_u32 h = noise ? stoker_hash32((stoker_u32)j ^ keys[n]) : 0u;
    for (int c = 0; c < channels; c++) {
        float x = (float)px[c] * params[1024 + c];
        x = x + params[1027 + c];
        if (noise) {
            float z = params[1030 + c] * params[(h >> (10 * c)) & 1023u];
            x = x + z;
        }
        stoker_u64 o = planar ? ((n * (stoker_u64)channels + (stoker_u64)c) * pixels_per_sample + j)
                              : (t * (stoker_u64)channels + (stoker_u64)c);
        if (dtype == 0) {
            ((float *)dst)[o] = x;
        } else if (dtype == 1) {
            ((stoker_u16 *)dst)[o] = stoker_f16(x);
        } else {
            ((stoker_u16 *)dst)[o] = stoker_bf16(x);
        }
    }
}
