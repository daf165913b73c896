// soundedit StyleGAN2 ops: declarations shared by the bindings (ops.cpp) and the kernels (ops.cu).
//
// Every function accepts CUDA tensors (the fast path) and CPU tensors. The CPU branch runs the very
// same per-element __host__ __device__ code in a plain loop: it is not a performance path (the
// PyTorch reference is used on CPU), it exists so that the kernels' index arithmetic can be tested
// on machines without a GPU.
#pragma once

#include <ATen/ATen.h>
#include <optional>
#include <vector>

namespace sg2ops {

// y = upfirdn2d(x, k): zero-insertion upsampling by `up`, padding (negative values crop), true
// convolution with the 2-D FIR filter k (kh, kw), then keeping every `down`-th sample; same factors
// on both axes. x: (N, C, H, W) of any strides; k: (kh, kw) contiguous, float32 (float64 when x is
// float64). The output has x's memory format when x is channels-last, NCHW-contiguous otherwise.
// flip_kernel: filter with k flipped on both axes (the input gradient's filter) without a copy.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& k, int64_t up, int64_t down,
                     int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip_kernel);

// y = (v + b) * (v + b > 0 ? pos_gain : neg_gain), b (C,) broadcast along dim 1 of x (N, C, ...), and
// v = x, or with noise v = x + strength * noise (StyleGAN2's noise injection, rounded to x's dtype as
// the separate add would be): noise (1 or N, 1, H, W) contiguous and strength (one element), both of
// x's dtype, x 4-D. Leaky ReLU 0.2 with gain sqrt(2): pos_gain = sqrt(2), neg_gain = 0.2 * sqrt(2);
// linear: both 1.
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& noise,
                    const std::optional<at::Tensor>& strength, double pos_gain, double neg_gain);

// dL/d(x + b) = g * (y > 0 ? pos_gain : neg_gain), from the forward's output y (valid when
// pos_gain > 0 and neg_gain >= 0, so that y > 0 exactly where x + b > 0).
at::Tensor bias_act_grad(const at::Tensor& g, const at::Tensor& y, double pos_gain, double neg_gain);

// StyleGAN2's modulated convolution weights: w[n, o, i, t] = scale * weight[o, i, t] * s[n, i], then
// (demodulate) each (n, o) row times d[n, o] = rsqrt(sum over (i, t) of w^2 + eps). weight (O, I, KK)
// and s (N, I) contiguous, float32 or float64, same dtype and device. Returns {w (N, O, I, KK), d (N, O)}
// (d is 1 without demodulation), d being what the backward needs.
std::vector<at::Tensor> modulated_weight(const at::Tensor& weight, const at::Tensor& s, double scale,
                                         bool demodulate, double eps);

// dL/ds (N, I) from g = dL/dw (N, O, I, KK, any strides): with B[n, o, i] = sum over t of g * scale *
// weight[o, i, t], coef[n, o] = d^3 * sum over i of s[n, i] * B[n, o, i] (0 without demodulation) and
// Q[o, i] = sum over t of (scale * weight[o, i, t])^2, dL/ds[n, i] = sum over o of
// (d * B - coef * s[n, i] * Q[o, i]). Two passes: rows (n, o), then columns (n, i).
at::Tensor modulated_weight_grad(const at::Tensor& g, const at::Tensor& weight, const at::Tensor& s, const at::Tensor& d,
                                 double scale, bool demodulate);

}  // namespace sg2ops
