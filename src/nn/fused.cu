// Fused per-pixel layers of the generator for CUDA; the CPU versions in fused.rs are the
// reference these mirror (same formulas, same order of operations).
//
// Tensors are contiguous NCHW f32; a "plane" is one (n, c) image of hw pixels.

// Index of i (possibly outside 0..n) under reflection without repeating the edge,
// mirrored as often as needed (layers::reflect_index).
__device__ __forceinline__ int reflect(int i, int n) {
    if (n == 1) return 0;
    int period = 2 * (n - 1);
    int m = i % period;
    if (m < 0) m += period;
    return m < n ? m : period - m;
}

// For element i of a planes x (h + 2 pad) x (w + 2 pad) output: its plane, and the index
// in a planes x h x w input of the pixel that reflection padding puts there.
__device__ __forceinline__ long long padded_source(long long i, int h, int w, int pad,
                                                   long long* plane) {
    int hp = h + 2 * pad, wp = w + 2 * pad;
    int ox = (int)(i % wp);
    long long r = i / wp;
    int oy = (int)(r % hp);
    *plane = r / hp;
    return (*plane * h + reflect(oy - pad, h)) * w + reflect(ox - pad, w);
}

// y: planes x (h + 2 pad) x (w + 2 pad), the reflection padding of x: planes x h x w.
extern "C" __global__ void reflect_pad_f32(const float* x, float* y, int planes, int h, int w,
                                           int pad) {
    long long total = (long long)planes * (h + 2 * pad) * (w + 2 * pad);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long p;
        y[i] = x[padded_source(i, h, w, pad, &p)];
    }
}

// One block per plane: stats[p] = mean, stats[planes + p] = biased variance, summed in
// double so a 4-megapixel plane loses nothing. blockDim.x must be a power of two <= 1024.
extern "C" __global__ void plane_stats_f32(const float* x, float* stats, int planes, int hw) {
    __shared__ double sum[1024];
    __shared__ double sq[1024];
    int p = blockIdx.x;
    const float* src = x + (long long)p * hw;
    double s = 0.0, q = 0.0;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) {
        double v = (double)src[i];
        s += v;
        q += v * v;
    }
    sum[threadIdx.x] = s;
    sq[threadIdx.x] = q;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) {
            sum[threadIdx.x] += sum[threadIdx.x + k];
            sq[threadIdx.x] += sq[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double mean = sum[0] / hw;
        double var = sq[0] / hw - mean * mean;
        stats[p] = (float)mean;
        stats[planes + p] = (float)(var > 0.0 ? var : 0.0);
    }
}

// y = relu?((x - mean) * (1 / sqrt(var + eps))) + residual?, with y reflection-padded by
// pad: y is planes x (h + 2 pad) x (w + 2 pad), x and residual planes x h x w. stats holds
// 2 x stat_planes values (means, then variances); plane p uses entry p % stat_planes, so
// one image's statistics can serve a batch. residual may be null.
extern "C" __global__ void norm_act_f32(const float* x, const float* stats, const float* residual,
                                        float* y, int planes, int stat_planes, int h, int w,
                                        int pad, int relu, float eps) {
    long long total = (long long)planes * (h + 2 * pad) * (w + 2 * pad);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long p;
        long long at = padded_source(i, h, w, pad, &p);
        int sp = (int)(p % stat_planes);
        float inv = 1.0f / sqrtf(stats[stat_planes + sp] + eps);
        float v = (x[at] - stats[sp]) * inv;
        if (relu) v = fmaxf(v, 0.0f);
        if (residual) v = residual[at] + v;
        y[i] = v;
    }
}
