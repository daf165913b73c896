"""The upfirdn2d cases every implementation of the op is checked on (reference, compiled, GPU).

Each case is ``(up, down, pad, kernel shape)``: StyleGAN2's blur / upsampling /
downsampling, then odd and non-square kernels, negative (cropping) pads and factors
above 2.
"""

UPFIRDN2D_CASES = [
    (1, 1, (1, 1), (4, 4)),  # StyleGAN2 blur after the transposed conv
    (2, 1, (2, 1), (4, 4)),  # ToRGB skip upsampling
    (1, 2, (1, 1), (4, 4)),  # downsampling (discriminator, encoders)
    (2, 2, (0, 0, 1, 2), (3, 3)),
    (3, 2, (-1, 2, 3, -2), (5, 2)),
    (1, 1, (0, 0), (1, 1)),
    (2, 3, (4, 0, 0, 4), (2, 5)),
]
