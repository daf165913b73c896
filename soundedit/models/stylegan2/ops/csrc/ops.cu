// soundedit StyleGAN2 ops: fused bias + leaky ReLU and upfirdn2d (forward and backward building blocks).
//
// Written for soundedit. Design:
// * One thread per output element. Grids follow the OUTPUT's memory order (NCHW or channels-last):
//   threadIdx.x runs along the fastest-varying dimension, so consecutive threads write consecutive
//   addresses, and read neighbouring input addresses whenever the input has the same layout; the
//   other coordinates come from the grid, not from dividing a linear index per element.
// * StyleGAN2's factors (up, down) = (1, 1), (2, 1), (1, 2) are compile-time template arguments.
// * Arithmetic in the accumulate type (float for half/bfloat16/float, double for double); one rounding
//   to the storage type at the end.
// * Only c10/cuda headers and the CUDA runtime are used (not ATen/cuda/CUDAContext.h, which pulls in
//   cuBLAS/cuSPARSE/cuSOLVER headers that minimal toolkits lack).
// * The per-element work is a __host__ __device__ function: the CUDA kernel and the CPU test loop run
//   the same code, so the index arithmetic is testable without a GPU.
#include "ops.h"

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

namespace sg2ops {
namespace {

constexpr int kThreads = 256;

// Floor and ceiling division for a positive divisor and a numerator of either sign (C++ rounds to 0).
// Templates, so that a compile-time divisor (1 or 2) folds into a shift.
template <typename T>
__host__ __device__ inline T floor_div(T a, T b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
template <typename T>
__host__ __device__ inline T ceil_div(T a, T b) { return -floor_div<T>(-a, b); }
__host__ __device__ inline int imax(int a, int b) { return a > b ? a : b; }
__host__ __device__ inline int imin(int a, int b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------------------------
// upfirdn2d
//
// Reference semantics (reference.py): u = x with up-1 zeros inserted after every sample (length
// H*up); p = u padded by (y0, y1) (negative pads crop); c = conv(p, k) (true convolution, "valid");
// y = c[::down]. Hence, per axis,
//     y[o] = sum_i x[i] * k[kh - 1 - (i*up - s)],   s = o*down - y0,
// over the input samples i whose upsampled position i*up lies in the filter window [s, s + kh).
// Only those ~kh/up taps are visited: the inserted zeros are never materialised.
struct UpFirDnParams {
  int n, c, in_h, in_w, out_h, out_w;
  int64_t sn, sc, sh, sw;      // input strides, in elements (any layout, even overlapping)
  int64_t on, oc, oh, ow;      // output strides (NCHW- or channels-last-contiguous)
  int up, down, kh, kw, px0, py0;
  bool flip;                   // read the filter flipped (the input gradient's filter; no flipped copy needed)
};

// One output sample. UP/DOWN > 0 are compile-time factors (StyleGAN2's 1 and 2, so the divisions
// below become shifts); 0 means "read p.up / p.down".
template <typename scalar_t, typename acc_t, int UP, int DOWN>
__host__ __device__ inline void upfirdn2d_element(const UpFirDnParams& p, const scalar_t* __restrict__ x,
                                                  const acc_t* __restrict__ k, scalar_t* __restrict__ y,
                                                  int n, int c, int oy, int ox) {
  const int up = UP > 0 ? UP : p.up;
  const int down = DOWN > 0 ? DOWN : p.down;
  // Start of the filter window in the upsampled, unpadded coordinates.
  const int sy = oy * down - p.py0;
  const int sx = ox * down - p.px0;
  // Input samples whose upsampled position lies in [s, s + k - 1], clipped to the input.
  const int iy0 = imax(ceil_div<int>(sy, up), 0);
  const int iy1 = imin(floor_div<int>(sy + p.kh - 1, up), p.in_h - 1);
  const int ix0 = imax(ceil_div<int>(sx, up), 0);
  const int ix1 = imin(floor_div<int>(sx + p.kw - 1, up), p.in_w - 1);

  const scalar_t* plane = x + n * p.sn + c * p.sc;
  acc_t acc = 0;
  for (int iy = iy0; iy <= iy1; ++iy) {
    // true convolution: tap (kh - 1 - dy, kw - 1 - dx) for offset (dy, dx) in the window; flipped: (dy, dx)
    const int dy = iy * up - sy;
    const acc_t* krow = k + (p.flip ? dy : p.kh - 1 - dy) * p.kw;
    const scalar_t* xrow = plane + iy * p.sh;
    for (int ix = ix0; ix <= ix1; ++ix) {
      const int dx = ix * up - sx;
      acc += static_cast<acc_t>(xrow[ix * p.sw]) * krow[p.flip ? dx : p.kw - 1 - dx];
    }
  }
  y[n * p.on + c * p.oc + oy * p.oh + ox * p.ow] = static_cast<scalar_t>(acc);
}

// NCHW output: threadIdx.x runs along the output row (coalesced), blockIdx.z over the N*C planes.
// Channels-last output: threadIdx.x runs along the channels (coalesced), y over columns, z over
// the N*OH rows. No per-element division: one per thread for the plane / row index.
template <typename scalar_t, typename acc_t, int UP, int DOWN>
__global__ void upfirdn2d_kernel(const UpFirDnParams p, const scalar_t* __restrict__ x,
                                 const acc_t* __restrict__ k, scalar_t* __restrict__ y, bool channels_last) {
  if (!channels_last) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= p.out_w || oy >= p.out_h) return;
    for (int plane = blockIdx.z; plane < p.n * p.c; plane += gridDim.z) {
      upfirdn2d_element<scalar_t, acc_t, UP, DOWN>(p, x, k, y, plane / p.c, plane % p.c, oy, ox);
    }
  } else {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int ox = blockIdx.y * blockDim.y + threadIdx.y;
    if (c >= p.c || ox >= p.out_w) return;
    for (int row = blockIdx.z; row < p.n * p.out_h; row += gridDim.z) {
      upfirdn2d_element<scalar_t, acc_t, UP, DOWN>(p, x, k, y, row / p.out_h, c, row % p.out_h, ox);
    }
  }
}

// Runs upfirdn2d for the given compile-time factors: the kernel on CUDA tensors, a host loop over
// the same element code on CPU tensors (the test path).
template <typename scalar_t, typename acc_t, int UP, int DOWN>
void upfirdn2d_run(const UpFirDnParams& p, const scalar_t* x, const acc_t* k, scalar_t* y, bool on_cuda,
                   bool channels_last) {
  if (!on_cuda) {
    for (int n = 0; n < p.n; ++n)
      for (int c = 0; c < p.c; ++c)
        for (int oy = 0; oy < p.out_h; ++oy)
          for (int ox = 0; ox < p.out_w; ++ox) upfirdn2d_element<scalar_t, acc_t, UP, DOWN>(p, x, k, y, n, c, oy, ox);
    return;
  }
  const dim3 block(32, 8);
  const int64_t lanes = channels_last ? p.c : p.out_w;   // along threadIdx.x
  const int64_t cols = channels_last ? p.out_w : p.out_h;  // along threadIdx.y
  const int64_t planes = channels_last ? (int64_t)p.n * p.out_h : (int64_t)p.n * p.c;
  const dim3 grid((unsigned)((lanes + block.x - 1) / block.x), (unsigned)((cols + block.y - 1) / block.y),
                  (unsigned)std::min<int64_t>(planes, 65535));
  upfirdn2d_kernel<scalar_t, acc_t, UP, DOWN><<<grid, block, 0, c10::cuda::getCurrentCUDAStream()>>>(
      p, x, k, y, channels_last);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Tiled upfirdn2d for StyleGAN2's cases: NCHW output, a K x K filter (K = 4) and factors
// (up, down) = (1, 1), (2, 1), (1, 2): blur, its gradient, 2x upsampling and its gradient
// (a 2x downsampling). One block computes a TW x TH output tile of one plane: it first copies the
// input window the tile needs (zero outside the image, so the inner loops need no clipping) and
// the filter taps into shared memory, then each thread computes TW*TH/kThreads outputs from there
// with fully unrolled K/UP x K/UP loops. The one-thread-per-output kernel above re-reads every
// input sample K*K/UP^2 times from global memory and clips each window: measured 8x off the
// bandwidth floor on an H100 (1.53 ms for blur forward + backward at 32 x 1025^2, floor 0.18 ms).
//
// The block's work is written as __host__ __device__ steps (window origin, one load, one output)
// so that the CPU test path can run the very same tiling, block by block, in a loop.
template <int UP, int DOWN, int K>
struct TileShape {
  static constexpr int TW = 64;  // output columns per tile (two warps' worth of consecutive addresses)
  static constexpr int TH = 16;  // output rows per tile
  static constexpr int TAPS = K / UP;  // input samples per output along each axis (K divisible by UP)
  // Input rows/columns the tile reads: the window start can round up by one; one spare.
  static constexpr int IH = ((TH - 1) * DOWN + K - 1) / UP + 2;
  static constexpr int IW = ((TW - 1) * DOWN + K - 1) / UP + 2;
  static_assert(K % UP == 0, "the filter length must be a multiple of the upsampling factor");
};

// First input row (column) a tile starting at output row (column) o0 reads.
template <int UP, int DOWN>
__host__ __device__ inline int tile_input_start(int o0, int pad0) {
  return ceil_div<int>(o0 * DOWN - pad0, UP);
}

// Copy element i (row-major over IH x IW) of the tile's input window, zero outside the image.
template <typename scalar_t, typename acc_t, int UP, int DOWN, int K>
__host__ __device__ inline void tile_load(const UpFirDnParams& p, const scalar_t* __restrict__ plane, acc_t* tile,
                                          int iy0, int ix0, int i) {
  using S = TileShape<UP, DOWN, K>;
  const int r = i / S::IW, c = i - (i / S::IW) * S::IW;
  const int iy = iy0 + r, ix = ix0 + c;
  const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
  tile[i] = inside ? static_cast<acc_t>(plane[iy * p.sh + ix * p.sw]) : acc_t(0);
}

// One output sample (oy, ox) from the tile whose window starts at input (iy0, ix0).
template <typename acc_t, int UP, int DOWN, int K>
__host__ __device__ inline acc_t tile_output(const UpFirDnParams& p, const acc_t* tile, const acc_t* k, int iy0,
                                             int ix0, int oy, int ox) {
  using S = TileShape<UP, DOWN, K>;
  const int sy = oy * DOWN - p.py0, sx = ox * DOWN - p.px0;  // filter window start (upsampled coordinates)
  const int fy = ceil_div<int>(sy, UP), fx = ceil_div<int>(sx, UP);  // first input sample in the window
  const int ky0 = K - 1 - (fy * UP - sy), kx0 = K - 1 - (fx * UP - sx);  // its (flipped) tap
  const acc_t* row = tile + (fy - iy0) * S::IW + (fx - ix0);
  acc_t acc = 0;
#pragma unroll
  for (int j = 0; j < S::TAPS; ++j) {
#pragma unroll
    for (int l = 0; l < S::TAPS; ++l) {
      acc += row[j * S::IW + l] * k[(ky0 - j * UP) * K + (kx0 - l * UP)];
    }
  }
  return acc;
}

template <typename scalar_t, typename acc_t, int UP, int DOWN, int K>
__global__ void __launch_bounds__(kThreads) upfirdn2d_tiled_kernel(const UpFirDnParams p,
                                                                   const scalar_t* __restrict__ x,
                                                                   const acc_t* __restrict__ k,
                                                                   scalar_t* __restrict__ y) {
  using S = TileShape<UP, DOWN, K>;
  __shared__ acc_t tile[S::IH * S::IW];
  __shared__ acc_t taps[K * K];
  const int tid = threadIdx.x;
  if (tid < K * K) taps[tid] = k[p.flip ? K * K - 1 - tid : tid];  // a 2-D flip reverses the row-major taps
  const int oy0 = blockIdx.y * S::TH, ox0 = blockIdx.x * S::TW;
  const int iy0 = tile_input_start<UP, DOWN>(oy0, p.py0), ix0 = tile_input_start<UP, DOWN>(ox0, p.px0);
  for (int plane = blockIdx.z; plane < p.n * p.c; plane += gridDim.z) {
    const int n = plane / p.c, c = plane - n * p.c;
    __syncthreads();  // the previous plane's outputs are done with the tile
    for (int i = tid; i < S::IH * S::IW; i += kThreads) {
      tile_load<scalar_t, acc_t, UP, DOWN, K>(p, x + n * p.sn + c * p.sc, tile, iy0, ix0, i);
    }
    __syncthreads();
    scalar_t* out = y + n * p.on + c * p.oc;
    for (int i = tid; i < S::TW * S::TH; i += kThreads) {
      const int oy = oy0 + i / S::TW, ox = ox0 + i % S::TW;  // consecutive threads: consecutive columns
      if (oy < p.out_h && ox < p.out_w) {
        out[oy * p.oh + ox * p.ow] = static_cast<scalar_t>(tile_output<acc_t, UP, DOWN, K>(p, tile, taps, iy0, ix0, oy, ox));
      }
    }
  }
}

// The tiled kernel on CUDA tensors; on CPU tensors the same tiles, block by block (the test path).
template <typename scalar_t, typename acc_t, int UP, int DOWN, int K>
void upfirdn2d_tiled_run(const UpFirDnParams& p, const scalar_t* x, const acc_t* k, scalar_t* y, bool on_cuda) {
  using S = TileShape<UP, DOWN, K>;
  const int tiles_x = (p.out_w + S::TW - 1) / S::TW, tiles_y = (p.out_h + S::TH - 1) / S::TH;
  if (!on_cuda) {
    std::vector<acc_t> tile(S::IH * S::IW), taps(K * K);
    for (int t = 0; t < K * K; ++t) taps[t] = k[p.flip ? K * K - 1 - t : t];  // as the block loads them
    for (int plane = 0; plane < p.n * p.c; ++plane) {
      const int n = plane / p.c, c = plane % p.c;
      for (int by = 0; by < tiles_y; ++by) {
        for (int bx = 0; bx < tiles_x; ++bx) {
          const int oy0 = by * S::TH, ox0 = bx * S::TW;
          const int iy0 = tile_input_start<UP, DOWN>(oy0, p.py0), ix0 = tile_input_start<UP, DOWN>(ox0, p.px0);
          for (int i = 0; i < S::IH * S::IW; ++i)
            tile_load<scalar_t, acc_t, UP, DOWN, K>(p, x + n * p.sn + c * p.sc, tile.data(), iy0, ix0, i);
          for (int oy = oy0; oy < std::min(oy0 + S::TH, p.out_h); ++oy)
            for (int ox = ox0; ox < std::min(ox0 + S::TW, p.out_w); ++ox)
              y[n * p.on + c * p.oc + oy * p.oh + ox * p.ow] =
                  static_cast<scalar_t>(tile_output<acc_t, UP, DOWN, K>(p, tile.data(), taps.data(), iy0, ix0, oy, ox));
        }
      }
    }
    return;
  }
  const dim3 grid((unsigned)tiles_x, (unsigned)tiles_y, (unsigned)std::min<int64_t>((int64_t)p.n * p.c, 65535));
  upfirdn2d_tiled_kernel<scalar_t, acc_t, UP, DOWN, K><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      p, x, k, y);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// bias + activation
//
// The tensor is viewed as a (rows, cols) matrix in memory order: NCHW-contiguous (N, C, ...) is
// rows = N*C planes of cols = prod(dims after C), channel = row % C; channels-last (N, H, W, C)
// and 2-D (N, C) are rows = the rest, cols = C, channel = col.

// A product rounded like a separate multiply: the noise term is added as the unfused
// `x + strength * noise` adds it (no fused multiply-add on the device).
template <typename T>
__host__ __device__ inline T mul_rn(T a, T b) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same_v<T, double>) {
    return __dmul_rn(a, b);
  } else {
    return __fmul_rn(a, b);
  }
#else
  return a * b;
#endif
}

// Optional per-pixel noise added before the bias: noise (Nn, 1, H, W) contiguous, Nn = 1 or N, times a
// one-element strength, both in x's dtype. `offset` is the noise map's offset for the row (see
// noise_offset); channels-last rows are single pixels (one noise value for all their columns).
template <typename scalar_t>
struct BiasActNoise {
  const scalar_t* noise = nullptr;
  const scalar_t* strength = nullptr;
  int64_t plane = 0;     // H * W
  bool batched = false;  // Nn == N
};

template <typename scalar_t>
__host__ __device__ inline int64_t noise_offset(const BiasActNoise<scalar_t>& nz, int64_t row, int64_t channels,
                                                bool channel_is_col) {
  if (channel_is_col) {  // rows are (n, pixel)
    return (nz.batched ? row : row % nz.plane);
  }
  return (nz.batched ? row / channels : 0) * nz.plane;  // rows are (n, c) planes; the column is the pixel
}

template <typename scalar_t, typename acc_t>
__host__ __device__ inline void bias_act_element(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                                 const BiasActNoise<scalar_t>& nz, scalar_t* __restrict__ y,
                                                 int64_t row, int64_t col, int64_t cols, int64_t row_channel,
                                                 int64_t noise_off, bool channel_is_col, acc_t pos_gain,
                                                 acc_t neg_gain) {
  const int64_t idx = row * cols + col;
  acc_t v = static_cast<acc_t>(x[idx]);
  if (nz.noise != nullptr) {  // product and sum rounded to x's dtype, as the separate multiply and add store them
    const acc_t n = static_cast<acc_t>(nz.noise[channel_is_col ? noise_off : noise_off + col]);
    const acc_t term = static_cast<acc_t>(static_cast<scalar_t>(mul_rn(static_cast<acc_t>(nz.strength[0]), n)));
    v = static_cast<acc_t>(static_cast<scalar_t>(v + term));
  }
  if (b != nullptr) v += static_cast<acc_t>(b[channel_is_col ? col : row_channel]);
  y[idx] = static_cast<scalar_t>(v * (v > acc_t(0) ? pos_gain : neg_gain));
}

template <typename scalar_t, typename acc_t>
__host__ __device__ inline void bias_act_grad_element(const scalar_t* __restrict__ g, const scalar_t* __restrict__ y,
                                                      scalar_t* __restrict__ gx, int64_t idx, acc_t pos_gain,
                                                      acc_t neg_gain) {
  const acc_t gain = static_cast<acc_t>(y[idx]) > acc_t(0) ? pos_gain : neg_gain;
  gx[idx] = static_cast<scalar_t>(static_cast<acc_t>(g[idx]) * gain);
}

template <typename scalar_t, typename acc_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                const BiasActNoise<scalar_t> nz, scalar_t* __restrict__ y, int64_t rows, int64_t cols,
                                int64_t channels, bool channel_is_col, acc_t pos_gain, acc_t neg_gain) {
  for (int64_t row = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; row < rows;
       row += (int64_t)blockDim.y * gridDim.y) {
    const int64_t row_channel = channel_is_col ? 0 : row % channels;  // once per row, not per element
    const int64_t noise_off = nz.noise != nullptr ? noise_offset(nz, row, channels, channel_is_col) : 0;
    for (int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; col < cols;
         col += (int64_t)blockDim.x * gridDim.x) {
      bias_act_element<scalar_t, acc_t>(x, b, nz, y, row, col, cols, row_channel, noise_off, channel_is_col, pos_gain,
                                        neg_gain);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void bias_act_grad_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ y,
                                     scalar_t* __restrict__ gx, int64_t total, acc_t pos_gain, acc_t neg_gain) {
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)blockDim.x * gridDim.x) {
    bias_act_grad_element<scalar_t, acc_t>(g, y, gx, idx, pos_gain, neg_gain);
  }
}

// ---------------------------------------------------------------------------------------------
// modulated weights
//
// Eager PyTorch builds a modulated convolution's per-sample weights with about seven operations
// (scale, modulate, square, sum, add eps, rsqrt, demodulate) and differentiates them with about a
// dozen more, each a kernel launch and a pass over the (N, O, I, k, k) tensor: 26 times per 1024-px
// generator step. Here the forward is one kernel and the backward two (rows, then a sum over the
// output channels; the formula is in ops.h). One block per (n, o) row of I * KK weights; arithmetic in
// the weights' dtype (float32 or float64), in the reference's order: (scale * weight) * s, then times d.

template <typename T>
__host__ __device__ inline T inv_sqrt(T x);
template <>
__host__ __device__ inline float inv_sqrt<float>(float x) { return 1.0f / sqrtf(x); }
template <>
__host__ __device__ inline double inv_sqrt<double>(double x) { return 1.0 / sqrt(x); }

// One modulated (not yet demodulated) weight: element j of the (o) weight row for the (n) styles.
template <typename T>
__host__ __device__ inline T modulated_value(const T* w_row, const T* s_row, T scale, int j, int kk) {
  return (scale * w_row[j]) * s_row[j / kk];
}

// The sum of v over the block (a power-of-two number of threads); every thread gets it.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int tid = threadIdx.x;
  scratch[tid] = v;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (tid < half) scratch[tid] += scratch[tid + half];
    __syncthreads();
  }
  const T total = scratch[0];
  __syncthreads();  // all have read it before the scratch is written again
  return total;
}

struct ModWeightParams {
  int rows, out_ch, in_ch, kk;  // rows = N * O; a row has in_ch * kk weights
};

template <typename T>
__global__ void __launch_bounds__(kThreads) modulated_weight_kernel(const ModWeightParams p, const T* __restrict__ weight,
                                                                    const T* __restrict__ s, T* __restrict__ out,
                                                                    T* __restrict__ d, T scale, bool demodulate,
                                                                    T eps) {
  __shared__ T scratch[kThreads];
  const int len = p.in_ch * p.kk;
  for (int row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int n = row / p.out_ch, o = row - n * p.out_ch;
    const T* w_row = weight + (int64_t)o * len;
    const T* s_row = s + (int64_t)n * p.in_ch;
    T dn = T(1);
    if (demodulate) {  // the same for the whole block: the syncs in block_sum are reached by all
      T acc = 0;
      for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const T v = modulated_value(w_row, s_row, scale, j, p.kk);
        acc += v * v;
      }
      dn = inv_sqrt(block_sum(acc, scratch) + eps);
    }
    T* out_row = out + (int64_t)row * len;
    for (int j = threadIdx.x; j < len; j += blockDim.x) out_row[j] = modulated_value(w_row, s_row, scale, j, p.kk) * dn;
    if (threadIdx.x == 0) d[row] = dn;
  }
}

// Strides (in elements) of the incoming gradient (N, O, I, KK): the upsampling convolutions hand it
// over transposed, and reading it strided spares a copy.
struct GradStrides {
  int64_t n, o, i, t;
};

// B[row, i] (and Q[o, i] from the n = 0 rows) for input channel i of a row; returns s[n, i] * B[row, i].
template <typename T>
__host__ __device__ inline T modulated_grad_column(const ModWeightParams& p, const GradStrides& gs, const T* g_row,
                                                   const T* w_row, const T* s_row, T scale, int i, T* b_row,
                                                   T* q_row) {
  T b = 0, q = 0;
  for (int t = 0; t < p.kk; ++t) {
    const T sw = scale * w_row[i * p.kk + t];
    b += g_row[i * gs.i + t * gs.t] * sw;
    q += sw * sw;
  }
  b_row[i] = b;
  if (q_row != nullptr) q_row[i] = q;
  return s_row[i] * b;
}

// One output channel's share of dL/ds[n, i]: d[n, o] * B[n, o, i] - coef[n, o] * s[n, i] * Q[o, i].
template <typename T>
__host__ __device__ inline T modulated_grad_term(const ModWeightParams& p, const T* d, const T* B, const T* coef,
                                                 const T* Q, T s_ni, int n, int o, int i) {
  const int64_t row = (int64_t)n * p.out_ch + o;
  return d[row] * B[row * p.in_ch + i] - coef[row] * s_ni * Q[(int64_t)o * p.in_ch + i];
}

// Pass 1, one block per (n, o) row: B, coef = d^3 * A and Q (see ops.h).
template <typename T>
__global__ void __launch_bounds__(kThreads) modulated_weight_grad_rows_kernel(
    const ModWeightParams p, const GradStrides gs, const T* __restrict__ g, const T* __restrict__ weight,
    const T* __restrict__ s, const T* __restrict__ d, T* __restrict__ B, T* __restrict__ coef, T* __restrict__ Q,
    T scale, bool demodulate) {
  __shared__ T scratch[kThreads];
  const int len = p.in_ch * p.kk;
  for (int row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int n = row / p.out_ch, o = row - n * p.out_ch;
    const T* g_row = g + n * gs.n + o * gs.o;
    const T* w_row = weight + (int64_t)o * len;
    const T* s_row = s + (int64_t)n * p.in_ch;
    T* q_row = n == 0 ? Q + (int64_t)o * p.in_ch : nullptr;
    T acc = 0;
    for (int i = threadIdx.x; i < p.in_ch; i += blockDim.x) {
      acc += modulated_grad_column(p, gs, g_row, w_row, s_row, scale, i, B + (int64_t)row * p.in_ch, q_row);
    }
    if (demodulate) {
      const T a = block_sum(acc, scratch);
      if (threadIdx.x == 0) coef[row] = d[row] * d[row] * d[row] * a;
    } else if (threadIdx.x == 0) {
      coef[row] = T(0);
    }
  }
}

// Pass 2: dL/ds[n, i], summed over the output channels. Block (32, 8): 32 consecutive input channels
// (coalesced reads of B and Q) by 8 lanes that split the output channels, then add up in shared memory.
constexpr int kGradCols = 32, kGradLanes = 8;

template <typename T>
__global__ void __launch_bounds__(kGradCols * kGradLanes) modulated_weight_grad_finish_kernel(
    const ModWeightParams p, const T* __restrict__ s, const T* __restrict__ d, const T* __restrict__ B,
    const T* __restrict__ coef, const T* __restrict__ Q, T* __restrict__ grad_s) {
  __shared__ T partial[kGradLanes][kGradCols];
  const int n = blockIdx.x, i = blockIdx.y * kGradCols + threadIdx.x;
  T acc = 0;
  if (i < p.in_ch) {
    const T s_ni = s[(int64_t)n * p.in_ch + i];
    for (int o = threadIdx.y; o < p.out_ch; o += kGradLanes) acc += modulated_grad_term(p, d, B, coef, Q, s_ni, n, o, i);
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && i < p.in_ch) {
    T total = 0;
    for (int lane = 0; lane < kGradLanes; ++lane) total += partial[lane][threadIdx.x];
    grad_s[(int64_t)n * p.in_ch + i] = total;
  }
}

// The current device's SM count, asked of the driver once per device (it is read at every launch).
int multiprocessors() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices] = {};
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int sms = device < kMaxDevices ? cached[device].load(std::memory_order_relaxed) : 0;
  if (sms == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (device < kMaxDevices) cached[device].store(sms, std::memory_order_relaxed);
  }
  return sms;
}

// Enough blocks to fill the GPU a few times over; the grid-stride loops cover the rest.
int64_t num_blocks(int64_t total) {
  const int64_t needed = (total + kThreads - 1) / kThreads;
  return std::max<int64_t>(1, std::min<int64_t>(needed, int64_t(multiprocessors()) * 32));
}

// Memory format the elementwise ops run in: NCHW-contiguous, or channels-last for 4-D tensors that
// are channels-last-dense; anything else is made contiguous first (one copy, documented fallback).
bool is_channels_last_dense(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& k, int64_t up, int64_t down, int64_t px0,
                     int64_t px1, int64_t py0, int64_t py1, bool flip_kernel) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be (N, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(k.dim() == 2 && k.is_contiguous(), "upfirdn2d: kernel must be a contiguous (kh, kw) tensor");
  TORCH_CHECK(k.device() == x.device(), "upfirdn2d: kernel is on ", k.device(), ", x on ", x.device());
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(k.scalar_type() == acc_type, "upfirdn2d: kernel must be ", acc_type, " for x of type ",
              x.scalar_type(), ", got ", k.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up and down must be >= 1, got ", up, " and ", down);
  const int64_t out_h = floor_div<int64_t>(x.size(2) * up + py0 + py1 - k.size(0), down) + 1;
  const int64_t out_w = floor_div<int64_t>(x.size(3) * up + px0 + px1 - k.size(1), down) + 1;
  TORCH_CHECK(out_h > 0 && out_w > 0, "upfirdn2d: empty output (", out_h, " x ", out_w, ") for input ",
              x.size(2), " x ", x.size(3), ", kernel ", k.size(0), " x ", k.size(1), ", up ", up, ", down ", down,
              ", pad (", px0, ", ", px1, ", ", py0, ", ", py1, ")");
  const int64_t int_max = std::numeric_limits<int>::max();
  for (int64_t v : {x.size(0) * x.size(1), x.size(0) * out_h, x.size(2) * up, x.size(3) * up, out_h * down,
                    out_w * down, std::abs(px0) + k.size(1), std::abs(py0) + k.size(0)}) {
    TORCH_CHECK(v < int_max, "upfirdn2d: sizes beyond 32-bit coordinates are not supported");
  }
  TORCH_CHECK(out_h < 65535 * 8 && out_w < 65535 * 8, "upfirdn2d: output rows/columns beyond 524280 are not supported");
  const bool channels_last = is_channels_last_dense(x);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(format));
  if (y.numel() == 0) return y;

  UpFirDnParams p;
  p.n = (int)x.size(0); p.c = (int)x.size(1); p.in_h = (int)x.size(2); p.in_w = (int)x.size(3);
  p.out_h = (int)out_h; p.out_w = (int)out_w;
  p.sn = x.stride(0); p.sc = x.stride(1); p.sh = x.stride(2); p.sw = x.stride(3);
  p.on = y.stride(0); p.oc = y.stride(1); p.oh = y.stride(2); p.ow = y.stride(3);
  p.up = (int)up; p.down = (int)down; p.kh = (int)k.size(0); p.kw = (int)k.size(1);
  p.px0 = (int)px0; p.py0 = (int)py0; p.flip = flip_kernel;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg2ops_upfirdn2d", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const acc_t* kp = k.const_data_ptr<acc_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const bool cuda = x.is_cuda();
    const c10::cuda::OptionalCUDAGuard guard(cuda ? std::optional<c10::Device>(x.device()) : std::nullopt);
    // StyleGAN2's cases (NCHW, 4 x 4 filter) take the tiled kernel; everything else the general one.
    const bool tiled = !channels_last && p.kh == 4 && p.kw == 4 && out_h < 65535L * 16;
    if (tiled && up == 1 && down == 1) upfirdn2d_tiled_run<scalar_t, acc_t, 1, 1, 4>(p, xp, kp, yp, cuda);
    else if (tiled && up == 2 && down == 1) upfirdn2d_tiled_run<scalar_t, acc_t, 2, 1, 4>(p, xp, kp, yp, cuda);
    else if (tiled && up == 1 && down == 2) upfirdn2d_tiled_run<scalar_t, acc_t, 1, 2, 4>(p, xp, kp, yp, cuda);
    else if (up == 1 && down == 1) upfirdn2d_run<scalar_t, acc_t, 1, 1>(p, xp, kp, yp, cuda, channels_last);
    else if (up == 2 && down == 1) upfirdn2d_run<scalar_t, acc_t, 2, 1>(p, xp, kp, yp, cuda, channels_last);
    else if (up == 1 && down == 2) upfirdn2d_run<scalar_t, acc_t, 1, 2>(p, xp, kp, yp, cuda, channels_last);
    else upfirdn2d_run<scalar_t, acc_t, 0, 0>(p, xp, kp, yp, cuda, channels_last);
  });
  return y;
}

at::Tensor bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& noise,
                    const std::optional<at::Tensor>& strength, double pos_gain, double neg_gain) {
  TORCH_CHECK(x_in.dim() >= 2, "bias_act: x must be (N, C, ...), got ", x_in.dim(), " dims");
  const bool channels_last = is_channels_last_dense(x_in);
  const at::Tensor x = channels_last ? x_in : x_in.contiguous();
  const bool has_bias = b.has_value() && b->defined();
  if (has_bias) {
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(1) && b->is_contiguous(), "bias_act: bias must be a contiguous (",
                x.size(1), ",) tensor, got ", b->sizes());
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(),
                "bias_act: bias must match x's dtype and device");
  }
  const bool has_noise = noise.has_value() && noise->defined();
  TORCH_CHECK(has_noise == (strength.has_value() && strength->defined()), "bias_act: noise and strength go together");
  if (has_noise) {
    TORCH_CHECK(x.dim() == 4 && noise->dim() == 4 && noise->size(1) == 1 && noise->size(2) == x.size(2) &&
                    noise->size(3) == x.size(3) && (noise->size(0) == 1 || noise->size(0) == x.size(0)) &&
                    noise->is_contiguous(),
                "bias_act: noise must be a contiguous (1 or N, 1, H, W) tensor for x of sizes ", x.sizes(), ", got ",
                noise->sizes());
    TORCH_CHECK(strength->numel() == 1, "bias_act: strength must have one element, got ", strength->numel());
    for (const at::Tensor* t : {&*noise, &*strength}) {
      TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(),
                  "bias_act: noise and strength must match x's dtype and device");
    }
  }
  at::Tensor y = at::empty_like(x);  // preserves the (dense) layout, so linear indices match
  const int64_t total = x.numel();
  if (total == 0) return y;
  const int64_t channels = x.size(1);
  const int64_t inner = total / (x.size(0) * channels);  // product of the dims after C
  // (rows, cols) view of the memory (see above); 2-D input is NCHW with inner == 1: channel = col.
  const bool channel_is_col = channels_last || inner == 1;
  const int64_t cols = channel_is_col ? channels : inner;
  const int64_t rows = total / cols;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg2ops_bias_act", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? b->const_data_ptr<scalar_t>() : nullptr;
    BiasActNoise<scalar_t> nz;
    if (has_noise) {
      nz.noise = noise->const_data_ptr<scalar_t>();
      nz.strength = strength->const_data_ptr<scalar_t>();
      nz.plane = x.size(2) * x.size(3);
      nz.batched = noise->size(0) == x.size(0) && x.size(0) > 1;
    }
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const acc_t pg = static_cast<acc_t>(pos_gain), ng = static_cast<acc_t>(neg_gain);
    if (x.is_cuda()) {
      const c10::cuda::CUDAGuard guard(x.device());
      // 256 threads: as many 32-lane groups along cols as useful, the rest along rows.
      const int bx = (int)std::min<int64_t>(kThreads, (cols + 31) / 32 * 32);
      const dim3 block(bx, kThreads / bx);
      const int64_t wanted = int64_t(multiprocessors()) * 32;
      const int64_t gx = std::min<int64_t>((cols + bx - 1) / bx, wanted);
      const int64_t gy = std::min<int64_t>({(rows + block.y - 1) / block.y, std::max<int64_t>(1, wanted / gx), 65535});
      bias_act_kernel<scalar_t, acc_t><<<dim3((unsigned)gx, (unsigned)gy), block, 0, c10::cuda::getCurrentCUDAStream()>>>(
          xp, bp, nz, yp, rows, cols, channels, channel_is_col, pg, ng);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {  // test path: the same element code, in a loop
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t noise_off = has_noise ? noise_offset(nz, row, channels, channel_is_col) : 0;
        for (int64_t col = 0; col < cols; ++col)
          bias_act_element<scalar_t, acc_t>(xp, bp, nz, yp, row, col, cols, channel_is_col ? 0 : row % channels,
                                            noise_off, channel_is_col, pg, ng);
      }
    }
  });
  return y;
}

at::Tensor bias_act_grad(const at::Tensor& g_in, const at::Tensor& y, double pos_gain, double neg_gain) {
  TORCH_CHECK(g_in.sizes() == y.sizes(), "bias_act_grad: gradient ", g_in.sizes(), " vs output ", y.sizes());
  // The output's sign stands for the input's only when both gains keep it (see bias_act_grad_element).
  TORCH_CHECK(pos_gain > 0 && neg_gain >= 0, "bias_act_grad: needs pos_gain > 0 and neg_gain >= 0, got ",
              pos_gain, " and ", neg_gain);
  TORCH_CHECK(g_in.device() == y.device() && g_in.scalar_type() == y.scalar_type(),
              "bias_act_grad: gradient must match the output's dtype and device");
  // y is dense in one of the two formats (it came from bias_act); give g the same element order.
  const auto format = y.is_contiguous() ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
  TORCH_CHECK(y.is_contiguous(format), "bias_act_grad: the saved output is not dense");
  const at::Tensor g = g_in.is_contiguous(format) ? g_in : g_in.contiguous(format);
  at::Tensor gx = at::empty_like(y);
  const int64_t total = y.numel();
  if (total == 0) return gx;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "sg2ops_bias_act_grad", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    const acc_t pg = static_cast<acc_t>(pos_gain), ng = static_cast<acc_t>(neg_gain);
    if (y.is_cuda()) {
      const c10::cuda::CUDAGuard guard(y.device());
      bias_act_grad_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          gp, yp, gxp, total, pg, ng);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      for (int64_t idx = 0; idx < total; ++idx) bias_act_grad_element<scalar_t, acc_t>(gp, yp, gxp, idx, pg, ng);
    }
  });
  return gx;
}

std::vector<at::Tensor> modulated_weight(const at::Tensor& weight, const at::Tensor& s, double scale,
                                         bool demodulate, double eps) {
  TORCH_CHECK(weight.dim() == 3 && weight.is_contiguous(), "modulated_weight: weight must be a contiguous (O, I, KK) "
              "tensor, got sizes ", weight.sizes());
  TORCH_CHECK(s.dim() == 2 && s.is_contiguous() && s.size(1) == weight.size(1), "modulated_weight: styles must be a "
              "contiguous (N, ", weight.size(1), ") tensor, got sizes ", s.sizes());
  TORCH_CHECK(s.scalar_type() == weight.scalar_type() && s.device() == weight.device(),
              "modulated_weight: styles must match the weight's dtype and device");
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble,
              "modulated_weight: float32 or float64 weights expected, got ", weight.scalar_type());
  const int64_t int_max = std::numeric_limits<int>::max();
  TORCH_CHECK(s.size(0) * weight.size(0) < int_max && weight.size(1) * weight.size(2) < int_max,
              "modulated_weight: sizes beyond 32-bit indices are not supported");
  at::Tensor out = at::empty({s.size(0), weight.size(0), weight.size(1), weight.size(2)}, weight.options());
  at::Tensor d = at::empty({s.size(0), weight.size(0)}, weight.options());
  ModWeightParams p{(int)(s.size(0) * weight.size(0)), (int)weight.size(0), (int)weight.size(1), (int)weight.size(2)};
  if (out.numel() == 0) return {out, d.fill_(1)};

  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "sg2ops_modulated_weight", [&] {
    const scalar_t* wp = weight.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    scalar_t* dp = d.mutable_data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale), ep = static_cast<scalar_t>(eps);
    if (weight.is_cuda()) {
      const c10::cuda::CUDAGuard guard(weight.device());
      const unsigned grid = (unsigned)std::min<int64_t>(p.rows, 65535);
      modulated_weight_kernel<scalar_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          p, wp, sp, op, dp, sc, demodulate, ep);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {  // test path: the same per-weight code, sums in a loop
      const int len = p.in_ch * p.kk;
      for (int row = 0; row < p.rows; ++row) {
        const int n = row / p.out_ch, o = row % p.out_ch;
        const scalar_t* w_row = wp + (int64_t)o * len;
        const scalar_t* s_row = sp + (int64_t)n * p.in_ch;
        scalar_t dn = 1;
        if (demodulate) {
          scalar_t acc = 0;
          for (int j = 0; j < len; ++j) {
            const scalar_t v = modulated_value(w_row, s_row, sc, j, p.kk);
            acc += v * v;
          }
          dn = inv_sqrt(acc + ep);
        }
        for (int j = 0; j < len; ++j) op[(int64_t)row * len + j] = modulated_value(w_row, s_row, sc, j, p.kk) * dn;
        dp[row] = dn;
      }
    }
  });
  return {out, d};
}

at::Tensor modulated_weight_grad(const at::Tensor& g, const at::Tensor& weight, const at::Tensor& s, const at::Tensor& d,
                                 double scale, bool demodulate) {
  TORCH_CHECK(weight.dim() == 3 && weight.is_contiguous() && s.dim() == 2 && s.is_contiguous() &&
                  s.size(1) == weight.size(1),
              "modulated_weight_grad: weight (O, I, KK) and styles (N, I) must be contiguous, got ", weight.sizes(),
              " and ", s.sizes());
  const int64_t n = s.size(0), o = weight.size(0), i = weight.size(1), kk = weight.size(2);
  TORCH_CHECK(g.sizes() == at::IntArrayRef({n, o, i, kk}), "modulated_weight_grad: gradient of sizes ", g.sizes(),
              " for weights (", n, ", ", o, ", ", i, ", ", kk, ")");
  TORCH_CHECK(d.sizes() == at::IntArrayRef({n, o}) && d.is_contiguous(), "modulated_weight_grad: d must be (N, O)");
  for (const at::Tensor* t : {&g, &s, &d}) {
    TORCH_CHECK(t->scalar_type() == weight.scalar_type() && t->device() == weight.device(),
                "modulated_weight_grad: all tensors must match the weight's dtype and device");
  }
  at::Tensor grad_s = at::empty({n, i}, weight.options());
  if (grad_s.numel() == 0) return grad_s;
  if (g.numel() == 0) return grad_s.zero_();  // no output channels: nothing flows back
  // B (N, O, I), coef (N, O), Q (O, I): see ops.h. Q's every entry is written, by the n = 0 rows.
  at::Tensor B = at::empty({n, o, i}, weight.options());
  at::Tensor coef = at::empty({n, o}, weight.options());
  at::Tensor Q = at::empty({o, i}, weight.options());
  const ModWeightParams p{(int)(n * o), (int)o, (int)i, (int)kk};
  const GradStrides gs{g.stride(0), g.stride(1), g.stride(2), g.stride(3)};

  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "sg2ops_modulated_weight_grad", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* wp = weight.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    scalar_t* bp = B.mutable_data_ptr<scalar_t>();
    scalar_t* cp = coef.mutable_data_ptr<scalar_t>();
    scalar_t* qp = Q.mutable_data_ptr<scalar_t>();
    scalar_t* out = grad_s.mutable_data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    if (weight.is_cuda()) {
      const c10::cuda::CUDAGuard guard(weight.device());
      const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
      modulated_weight_grad_rows_kernel<scalar_t><<<(unsigned)std::min<int64_t>(p.rows, 65535), kThreads, 0, stream>>>(
          p, gs, gp, wp, sp, dp, bp, cp, qp, sc, demodulate);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const dim3 grid((unsigned)n, (unsigned)((i + kGradCols - 1) / kGradCols));  // x: up to 2^31 - 1 items
      modulated_weight_grad_finish_kernel<scalar_t><<<grid, dim3(kGradCols, kGradLanes), 0, stream>>>(
          p, sp, dp, bp, cp, qp, out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {  // test path: the same per-column and per-term code, in loops
      for (int row = 0; row < p.rows; ++row) {
        const int nn = row / p.out_ch, oo = row % p.out_ch;
        scalar_t acc = 0;
        for (int c = 0; c < p.in_ch; ++c) {
          acc += modulated_grad_column(p, gs, gp + nn * gs.n + oo * gs.o, wp + (int64_t)oo * p.in_ch * p.kk,
                                       sp + (int64_t)nn * p.in_ch, sc, c, bp + (int64_t)row * p.in_ch,
                                       nn == 0 ? qp + (int64_t)oo * p.in_ch : nullptr);
        }
        cp[row] = demodulate ? dp[row] * dp[row] * dp[row] * acc : scalar_t(0);
      }
      for (int nn = 0; nn < n; ++nn) {
        for (int c = 0; c < p.in_ch; ++c) {
          scalar_t total = 0;
          for (int oo = 0; oo < p.out_ch; ++oo)
            total += modulated_grad_term(p, dp, bp, cp, qp, sp[(int64_t)nn * p.in_ch + c], nn, oo, c);
          out[(int64_t)nn * p.in_ch + c] = total;
        }
      }
    }
  });
  return grad_s;
}

}  // namespace sg2ops
