"""The cases and tolerances every implementation of the StyleGAN2 ops is checked with
(reference, compiled on the CPU, GPU).

Each case is ``(up, down, pad, kernel shape)``: StyleGAN2's blur / upsampling /
downsampling, then odd and non-square kernels, negative (cropping) pads and factors
above 2.
"""

import torch

UPFIRDN2D_CASES = [
    (1, 1, (1, 1), (4, 4)),  # StyleGAN2 blur after the transposed conv
    (2, 1, (2, 1), (4, 4)),  # ToRGB skip upsampling
    (1, 2, (1, 1), (4, 4)),  # downsampling (discriminator, encoders)
    (2, 2, (0, 0, 1, 2), (3, 3)),
    (3, 2, (-1, 2, 3, -2), (5, 2)),
    (1, 1, (0, 0), (1, 1)),
    (2, 3, (4, 0, 0, 4), (2, 5)),
]

# Low-precision inputs are rounded first; the expectation is the float32 reference on those same
# values, rounded to the dtype: the kernels accumulate in float32 and round once, so they differ
# from it by at most ~1 unit in the last place.
KERNEL_TOLERANCE = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}
