// The training step's CUDA kernels, compiled at run time with NVRTC (gpu.rs). Each mirrors the
// host function of the same name in model.rs, in the same arithmetic order.

extern "C" __global__ void pool(const float* x, float* feat, int n, int c, int h, int w, int p) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * c * p * p) return;
    int j = idx % p;
    int i = (idx / p) % p;
    int ch = (idx / (p * p)) % c;
    int s = idx / (p * p * c);
    int r0 = i * h / p, r1 = (i + 1) * h / p;
    int c0 = j * w / p, c1 = (j + 1) * w / p;
    const float* plane = x + ((size_t)s * c + ch) * (size_t)h * w;
    float sum = 0.0f;
    for (int r = r0; r < r1; ++r) {
        for (int q = c0; q < c1; ++q) {
            sum += plane[(size_t)r * w + q];
        }
    }
    feat[idx] = sum / (float)((r1 - r0) * (c1 - c0));
}

extern "C" __global__ void bias_relu(float* z, const float* b, int n, int cols) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * cols) return;
    float t = z[idx] + b[idx % cols];
    z[idx] = t > 0.0f ? t : 0.0f;
}

extern "C" __global__ void softmax_xent(const float* logits, const float* b2,
                                        const long long* labels, int n, int k,
                                        float* dlogits, float* loss, float* correct) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n) return;
    const float* row = logits + (size_t)s * k;
    int y = (int)labels[s];
    float m = row[0] + b2[0];
    int arg = 0;
    for (int j = 1; j < k; ++j) {
        float l = row[j] + b2[j];
        if (l > m) { m = l; arg = j; }
    }
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += expf(row[j] + b2[j] - m);
    float lse = m + logf(sum);
    loss[s] = lse - (row[y] + b2[y]);
    correct[s] = arg == y ? 1.0f : 0.0f;
    float inv_n = 1.0f / (float)n;
    for (int j = 0; j < k; ++j) {
        float prob = expf(row[j] + b2[j] - m) / sum;
        float target = j == y ? 1.0f : 0.0f;
        dlogits[(size_t)s * k + j] = (prob - target) * inv_n;
    }
}

extern "C" __global__ void batch_stats(const float* loss, const float* correct, int n,
                                       double* stats) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    for (int s = 0; s < n; ++s) {
        stats[0] += (double)loss[s];
        stats[1] += (double)correct[s];
        stats[2] += 1.0;
    }
}

extern "C" __global__ void relu_backward(float* da, const float* a, int len) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    if (a[i] <= 0.0f) da[i] = 0.0f;
}

extern "C" __global__ void bias_grad(const float* dz, float* db, int n, int cols) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float sum = 0.0f;
    for (int r = 0; r < n; ++r) sum += dz[(size_t)r * cols + j];
    db[j] += sum;
}

extern "C" __global__ void sgd_momentum(float* w, float* g, float* v, int len, float lr,
                                        float momentum, float scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float vi = momentum * v[i] + scale * g[i];
    v[i] = vi;
    w[i] -= lr * vi;
    g[i] = 0.0f;
}
