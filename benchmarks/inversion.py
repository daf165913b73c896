"""Benchmark photo inversion: e4e encoder pass, projection step cost, alignment time.

Full-size architectures with random weights (no download): the e4e FFHQ encoder (IR-SE50 +
18 style blocks, 267 M parameters), StyleGAN2 config-f at 1024 px (256 px on a CPU) and
LPIPS-VGG with a random VGG16.  Alignment times dlib on matplotlib's sample portrait.

    python benchmarks/inversion.py              # CUDA when present, else CPU
    python benchmarks/inversion.py --steps 5    # timed projection steps

Target (issue #9): one e4e pass well under a second on a GPU.
"""

from __future__ import annotations

import argparse
import time


def _timed(fn, device, reps: int) -> float:
    import torch

    fn()  # warm-up (cuDNN autotuning, allocations)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed projection steps")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import warnings

    import torch

    from soundedit.inversion.e4e import E4E, Encoder4Editing
    from soundedit.inversion.perceptual import LPIPS
    from soundedit.inversion.project import project
    from soundedit.runtime import resolve_device
    from soundedit.testing.generators import seeded_generator

    device = resolve_device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})")

    e4e = E4E(Encoder4Editing(18), torch.zeros(18, 512)).to(device).eval()
    x = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    with torch.no_grad():
        t = _timed(lambda: e4e(x), device, 5 if device.type == "cuda" else 1)
    print(f"e4e encoder pass (batch 1, 256 px input): {t * 1000:.1f} ms")

    res = 1024 if device.type == "cuda" else 256
    G = seeded_generator(size=res, style_dim=512, n_mlp=8, channel_multiplier=2, max_channels=None).to(device)
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = LPIPS(lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)).to(device)
    with torch.no_grad():
        target = G.synthesize(G.mean_latent().view(1, -1))
    start = time.perf_counter()
    project(G, target, steps=1, perceptual=metric)  # warm-up (includes the 10k-sample W statistics)
    first = time.perf_counter() - start
    start = time.perf_counter()
    project(G, target, steps=args.steps, perceptual=metric)
    per_step = (time.perf_counter() - start - first) / max(args.steps - 1, 1)
    print(f"projection at {res} px, LPIPS-VGG + MSE: {per_step * 1000:.0f} ms/step "
          f"(500 steps ~ {per_step * 500:.0f} s; e4e+projection 100 steps ~ {per_step * 100:.0f} s)")

    import matplotlib.cbook

    from soundedit.errors import InputError
    from soundedit.inversion.align import align_face, detect_landmarks
    from soundedit.inversion.image import load_image

    try:
        rgb = load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        detect_landmarks(rgb)  # loads the 100 MB predictor once
        start = time.perf_counter()
        align_face(rgb, 1024)
        print(f"face detection + FFHQ alignment to 1024 px ({rgb.shape[1]}x{rgb.shape[0]} photo): "
              f"{(time.perf_counter() - start) * 1000:.0f} ms")
    except InputError as exc:  # dlib or its model not installed
        print(f"alignment: skipped ({exc})")


if __name__ == "__main__":
    main()
