// soundedit StyleGAN2 ops: fused bias + leaky ReLU and upfirdn2d (forward and backward building blocks).
//
// Written for soundedit. Design:
// * One thread per output element, grid-stride loop. The linear index walks the OUTPUT in its memory
//   order (NCHW or channels-last), so consecutive threads write consecutive addresses, and read
//   neighbouring input addresses whenever the input has the same layout.
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

namespace sg2ops {
namespace {

constexpr int kThreads = 256;

// Floor and ceiling division for a positive divisor and a numerator of either sign (C++ rounds to 0).
__host__ __device__ inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }
__host__ __device__ inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
__host__ __device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

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
  int64_t n, c, in_h, in_w, out_h, out_w;
  int64_t sn, sc, sh, sw;  // input strides, in elements (any layout, even overlapping)
  int64_t up, down, kh, kw, px0, py0;
  bool channels_last;  // output memory order: (N, H, W, C) instead of (N, C, H, W)
};

template <typename scalar_t, typename acc_t>
__host__ __device__ inline void upfirdn2d_element(const UpFirDnParams& p, const scalar_t* __restrict__ x,
                                                  const acc_t* __restrict__ k, scalar_t* __restrict__ y,
                                                  int64_t idx) {
  int64_t rest = idx, n, c, oy, ox;
  if (p.channels_last) {
    c = rest % p.c; rest /= p.c;
    ox = rest % p.out_w; rest /= p.out_w;
    oy = rest % p.out_h; n = rest / p.out_h;
  } else {
    ox = rest % p.out_w; rest /= p.out_w;
    oy = rest % p.out_h; rest /= p.out_h;
    c = rest % p.c; n = rest / p.c;
  }
  // Start of the filter window in the upsampled, unpadded coordinates.
  const int64_t sy = oy * p.down - p.py0;
  const int64_t sx = ox * p.down - p.px0;
  // Input samples whose upsampled position lies in [s, s + k - 1], clipped to the input.
  const int64_t iy0 = imax(ceil_div(sy, p.up), 0);
  const int64_t iy1 = imin(floor_div(sy + p.kh - 1, p.up), p.in_h - 1);
  const int64_t ix0 = imax(ceil_div(sx, p.up), 0);
  const int64_t ix1 = imin(floor_div(sx + p.kw - 1, p.up), p.in_w - 1);

  const scalar_t* plane = x + n * p.sn + c * p.sc;
  acc_t acc = 0;
  for (int64_t iy = iy0; iy <= iy1; ++iy) {
    const acc_t* krow = k + (p.kh - 1 - (iy * p.up - sy)) * p.kw;  // true convolution: flipped index
    const scalar_t* xrow = plane + iy * p.sh;
    for (int64_t ix = ix0; ix <= ix1; ++ix) {
      acc += static_cast<acc_t>(xrow[ix * p.sw]) * krow[p.kw - 1 - (ix * p.up - sx)];
    }
  }
  y[idx] = static_cast<scalar_t>(acc);
}

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_kernel(const UpFirDnParams p, const scalar_t* __restrict__ x,
                                 const acc_t* __restrict__ k, scalar_t* __restrict__ y, int64_t total) {
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)blockDim.x * gridDim.x) {
    upfirdn2d_element<scalar_t, acc_t>(p, x, k, y, idx);
  }
}

// ---------------------------------------------------------------------------------------------
// bias + activation

template <typename scalar_t, typename acc_t>
__host__ __device__ inline void bias_act_element(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                                 scalar_t* __restrict__ y, int64_t idx, int64_t channels,
                                                 int64_t inner, bool channels_last, acc_t pos_gain,
                                                 acc_t neg_gain) {
  acc_t v = static_cast<acc_t>(x[idx]);
  if (b != nullptr) {
    const int64_t c = channels_last ? idx % channels : (idx / inner) % channels;
    v += static_cast<acc_t>(b[c]);
  }
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
                                scalar_t* __restrict__ y, int64_t total, int64_t channels, int64_t inner,
                                bool channels_last, acc_t pos_gain, acc_t neg_gain) {
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)blockDim.x * gridDim.x) {
    bias_act_element<scalar_t, acc_t>(x, b, y, idx, channels, inner, channels_last, pos_gain, neg_gain);
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

// Enough blocks to fill the GPU a few times over; the grid-stride loop covers the rest.
int64_t num_blocks(int64_t total) {
  const int64_t needed = (total + kThreads - 1) / kThreads;
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return std::max<int64_t>(1, std::min<int64_t>(needed, int64_t(sms) * 32));
}

// Memory format the elementwise ops run in: NCHW-contiguous, or channels-last for 4-D tensors that
// are channels-last-dense; anything else is made contiguous first (one copy, documented fallback).
bool is_channels_last_dense(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& k, int64_t up, int64_t down, int64_t px0,
                     int64_t px1, int64_t py0, int64_t py1) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be (N, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(k.dim() == 2 && k.is_contiguous(), "upfirdn2d: kernel must be a contiguous (kh, kw) tensor");
  TORCH_CHECK(k.device() == x.device(), "upfirdn2d: kernel is on ", k.device(), ", x on ", x.device());
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(k.scalar_type() == acc_type, "upfirdn2d: kernel must be ", acc_type, " for x of type ",
              x.scalar_type(), ", got ", k.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up and down must be >= 1, got ", up, " and ", down);
  UpFirDnParams p;
  p.n = x.size(0); p.c = x.size(1); p.in_h = x.size(2); p.in_w = x.size(3);
  p.kh = k.size(0); p.kw = k.size(1);
  p.up = up; p.down = down; p.px0 = px0; p.py0 = py0;
  p.out_h = floor_div(p.in_h * up + py0 + py1 - p.kh, down) + 1;
  p.out_w = floor_div(p.in_w * up + px0 + px1 - p.kw, down) + 1;
  TORCH_CHECK(p.out_h > 0 && p.out_w > 0, "upfirdn2d: empty output (", p.out_h, " x ", p.out_w,
              ") for input ", p.in_h, " x ", p.in_w, ", kernel ", p.kh, " x ", p.kw, ", up ", up,
              ", down ", down, ", pad (", px0, ", ", px1, ", ", py0, ", ", py1, ")");
  p.sn = x.stride(0); p.sc = x.stride(1); p.sh = x.stride(2); p.sw = x.stride(3);
  p.channels_last = is_channels_last_dense(x);
  const auto format = p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty({p.n, p.c, p.out_h, p.out_w}, x.options().memory_format(format));
  const int64_t total = y.numel();
  if (total == 0) return y;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg2ops_upfirdn2d", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const acc_t* kp = k.const_data_ptr<acc_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (x.is_cuda()) {
      const c10::cuda::CUDAGuard guard(x.device());
      upfirdn2d_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          p, xp, kp, yp, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      for (int64_t idx = 0; idx < total; ++idx) upfirdn2d_element<scalar_t, acc_t>(p, xp, kp, yp, idx);
    }
  });
  return y;
}

at::Tensor bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b, double pos_gain,
                    double neg_gain) {
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
  at::Tensor y = at::empty_like(x);  // preserves the (dense) layout, so linear indices match
  const int64_t total = x.numel();
  if (total == 0) return y;
  const int64_t channels = x.size(1);
  const int64_t inner = total / (x.size(0) * channels);  // product of the dims after C (NCHW order)

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg2ops_bias_act", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? b->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const acc_t pg = static_cast<acc_t>(pos_gain), ng = static_cast<acc_t>(neg_gain);
    if (x.is_cuda()) {
      const c10::cuda::CUDAGuard guard(x.device());
      bias_act_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          xp, bp, yp, total, channels, inner, channels_last, pg, ng);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      for (int64_t idx = 0; idx < total; ++idx)
        bias_act_element<scalar_t, acc_t>(xp, bp, yp, idx, channels, inner, channels_last, pg, ng);
    }
  });
  return y;
}

at::Tensor bias_act_grad(const at::Tensor& g_in, const at::Tensor& y, double pos_gain, double neg_gain) {
  TORCH_CHECK(g_in.sizes() == y.sizes(), "bias_act_grad: gradient ", g_in.sizes(), " vs output ", y.sizes());
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

}  // namespace sg2ops
