"""Face alignment to the FFHQ crop, and the centre crop for other domains.

FFHQ's faces were cropped from 68-point dlib landmarks with one rule (NVlabs
ffhq-dataset, ``recreate_aligned_images``): an oriented square whose horizontal
axis follows the eye-to-eye vector (corrected by the eye-to-mouth vector), whose
half-size is ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`` and whose centre lies
a tenth of the way from the eyes' midpoint to the mouth's.  A generator trained
on FFHQ only knows faces placed that way, so a photo must be cropped by the same
rule before it can be inverted; the same detector (dlib's 68-point shape
predictor) keeps the crop in the training distribution.

Coordinates: landmarks are ``(x, y)`` pixel indices (pixel centres, as dlib gives
them); a quad is four ``(x, y)`` corners in that convention, ordered top-left,
bottom-left, bottom-right, top-right of the output.
"""

from __future__ import annotations

import bz2
import functools
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np

from soundedit.errors import InputError, WeightsMissingError

logger = logging.getLogger("soundedit")

#: 68-point (iBUG 300-W) index ranges used by the FFHQ rule.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH_OUTER = slice(48, 60)
N_LANDMARKS = 68

#: Faces are detected on a copy whose longer side is at most this many px.
DETECT_SIDE = 1024
#: Anti-aliasing: render at least at this multiple of the output size, then box-filter down.
_MIN_SUPERSAMPLE = 2


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for one face.

    Args:
        landmarks: ``(68, 2)`` dlib/iBUG landmark ``(x, y)`` positions in the photo.

    Returns:
        ``(4, 2)`` float64 corners: top-left, bottom-left, bottom-right, top-right.

    Raises:
        InputError: wrong shape, non-finite values or coincident eyes.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (N_LANDMARKS, 2) or not np.isfinite(lm).all():
        raise InputError(f"landmarks: expected a finite ({N_LANDMARKS}, 2) array of (x, y) points, got shape {lm.shape}")
    eye_left, eye_right = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth = lm[MOUTH_OUTER]
    mouth_mid = (mouth[0] + mouth[6]) / 2  # outer mouth corners
    eye_to_mouth = mouth_mid - eye_mid
    # Horizontal axis: the eye line plus the eye-to-mouth direction turned by -90 degrees (for an
    # upright face both point right), so neither a slanted eye line nor the mouth alone sets the roll.
    x_axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = math.hypot(*x_axis)
    if length < 1e-6:
        raise InputError("landmarks: the eyes and mouth coincide; cannot place the face crop")
    half = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    x_axis = x_axis / length * half
    y_axis = np.array([-x_axis[1], x_axis[0]])  # x turned by +90 degrees (image y points down)
    centre = eye_mid + eye_to_mouth * 0.1
    return np.stack([centre - x_axis - y_axis, centre - x_axis + y_axis,
                     centre + x_axis + y_axis, centre + x_axis - y_axis])


def warp_quad(rgb: np.ndarray, quad: np.ndarray, size: int, *, pad_blur: bool = True) -> np.ndarray:
    """Resample the square ``quad`` of ``rgb`` to a ``size`` x ``size`` image.

    Large faces are first box-shrunk by an integer factor (as FFHQ did) so the final
    resampling never skips pixels; parts of the quad outside the photo are filled by
    reflection, blurred and faded to the median colour (FFHQ's padding), so the border
    of a tight photo does not become a hard edge the generator never saw.

    Args:
        rgb: ``(H, W, 3)`` uint8 photo.
        quad: ``(4, 2)`` corners (see :func:`ffhq_quad`), pixel-centre coordinates.
        size: output side in px.
        pad_blur: blur/fade reflected padding (False: plain reflection).

    Returns:
        ``(size, size, 3)`` uint8.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    quad = np.asarray(quad, dtype=np.float64).copy()
    side = math.hypot(*(quad[3] - quad[0]))
    shrink = int(math.floor(side / size * 0.5))
    img = rgb
    if shrink > 1:
        h, w = rgb.shape[:2]
        small = Image.fromarray(rgb).resize((max(1, round(w / shrink)), max(1, round(h / shrink))), Image.BOX)
        img = np.asarray(small)
        # pixel centre i*shrink + (shrink-1)/2 of the original is centre i of the shrunk image
        quad = (quad + 0.5) * np.array([img.shape[1] / w, img.shape[0] / h]) - 0.5
        side /= shrink
    # Reflect-pad wherever the quad leaves the image, plus a margin for the bilinear taps.
    h, w = img.shape[:2]
    border = max(int(round(side * 0.1)), 3)
    lo = np.floor(quad.min(0)).astype(int) - 1
    hi = np.ceil(quad.max(0)).astype(int) + 2
    pad = (max(-lo[0], 0), max(-lo[1], 0), max(hi[0] - w, 0), max(hi[1] - h, 0))  # left, top, right, bottom
    if max(pad) > 0:
        pad = tuple(p + border if p > 0 else 0 for p in pad)
        img = _reflect_pad(img, pad, blur=pad_blur, radius=max(side * 0.02, 1.0))
        quad = quad + np.array([pad[0], pad[1]])
    h, w = img.shape[:2]
    # Output pixel (u, v) at sub-sample centres; source position in pixel-centre coordinates.
    # sub-samples no further apart than a source pixel, so the box filter below sees every pixel
    supersample = max(_MIN_SUPERSAMPLE, math.ceil(side / size))
    n = size * supersample
    s = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    tl, bl, tr = (torch.from_numpy(quad[i]) + 0.5 for i in (0, 1, 3))  # corners as edge coordinates
    gu, gv = s.view(1, n, 1), s.view(n, 1, 1)
    pos = tl + gu * (tr - tl) + gv * (bl - tl)  # (n, n, 2) edge coordinates in the (padded) photo
    grid = torch.stack([pos[..., 0] / w * 2 - 1, pos[..., 1] / h * 2 - 1], dim=-1).float().unsqueeze(0)
    src = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).float()
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = F.avg_pool2d(out, supersample)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _reflect_pad(img: np.ndarray, pad: tuple[int, int, int, int], *, blur: bool, radius: float) -> np.ndarray:
    """Reflect-pad ``img`` by (left, top, right, bottom); fade padding to a blur and the median colour."""
    from PIL import Image, ImageFilter

    left, top, right, bottom = pad
    h, w = img.shape[:2]
    # np.pad "reflect" cannot pad more than the image size minus one in one go; repeat until done.
    out = img.astype(np.float32)
    need = [left, top, right, bottom]
    while any(need):
        step = [min(p, (w if i % 2 == 0 else h) - 1) for i, p in enumerate(need)]
        out = np.pad(out, ((step[1], step[3]), (step[0], step[2]), (0, 0)), mode="reflect")
        h, w = out.shape[:2]
        need = [p - s for p, s in zip(need, step)]
    if not blur:
        return out.round().clip(0, 255).astype(np.uint8)
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    # 0 inside the photo, rising to 1 at the outer edge of the padding
    fx = np.maximum(np.maximum(left - xs, 0) / max(left, 1), np.maximum(xs - (w - 1 - right), 0) / max(right, 1))
    fy = np.maximum(np.maximum(top - ys, 0) / max(top, 1), np.maximum(ys - (h - 1 - bottom), 0) / max(bottom, 1))
    mask = np.maximum(fx, fy)[:, :, None]
    blurred = np.asarray(Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
                         .filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    out = out + (blurred - out) * np.clip(mask * 3.0, 0.0, 1.0)
    median = np.median(img.reshape(-1, 3).astype(np.float32), axis=0)
    out = out + (median - out) * np.clip(mask, 0.0, 1.0)
    return out.round().clip(0, 255).astype(np.uint8)


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centred square of ``rgb`` resized to ``size`` x ``size`` (non-face domains).

    Returns:
        ``(size, size, 3)`` uint8.
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    return np.asarray(square.resize((size, size), Image.LANCZOS))


# ------------------------------------------------------------------------------------ dlib
_INSTALL_HINT = 'pip install "soundedit[faces]" (dlib-bin and face-recognition-models)'


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise InputError(f"face alignment needs the package 'dlib-bin' (module dlib), which is not installed: "
                         f"{_INSTALL_HINT}; or skip face alignment with --no-align") from exc
    return dlib


def landmark_model_path(model: str | os.PathLike | None = None) -> Path:
    """The dlib 68-point shape predictor file.

    Args:
        model: ``None`` for the copy shipped by the PyPI package ``face-recognition-models``;
            else a path or a weights.lock name (``face-landmarks-68``); a ``.bz2`` file (as
            dlib.net publishes it) is decompressed once beside itself.

    Raises:
        InputError: the package is missing (with the install command) or the path does not exist.
        WeightsMissingError: a named file is not cached and cannot be fetched.
    """
    if model is None:
        try:
            import face_recognition_models
        except ImportError as exc:
            raise InputError("face alignment needs the landmark model of the package 'face-recognition-models', "
                             f"which is not installed: {_INSTALL_HINT}; or pass a shape_predictor_68_face_landmarks"
                             ".dat file, or skip face alignment with --no-align") from exc
        path = Path(face_recognition_models.pose_predictor_model_location())
        if not path.is_file():
            raise WeightsMissingError(f"face-recognition-models is installed but {path} is missing; reinstall it")
        return path
    from soundedit.weights import resolve

    path = resolve(model)
    if path.suffix == ".bz2":
        plain = path.with_suffix("")
        if not plain.is_file():
            from soundedit.fileio import atomic_open

            logger.info("decompressing %s", path)
            with bz2.open(path, "rb") as src, atomic_open(plain) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        path = plain
    return path


@functools.lru_cache(maxsize=2)
def _dlib_models(path: str):
    """Detector and shape predictor, loaded once per process (the predictor file is 100 MB)."""
    dlib = _import_dlib()
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise InputError(f"landmark model {path!r}: dlib cannot read it as a shape predictor ({exc})") from exc
    return dlib.get_frontal_face_detector(), predictor


def detect_landmarks(rgb: np.ndarray, *, model: str | os.PathLike | None = None, upsample: int = 1) -> list[np.ndarray]:
    """All faces' 68 landmarks, largest face first.

    Args:
        rgb: ``(H, W, 3)`` uint8 photo.
        model: landmark model (see :func:`landmark_model_path`).
        upsample: times dlib's HOG detector upsamples the photo (finds smaller faces, slower).

    Returns:
        a list of ``(68, 2)`` float64 ``(x, y)`` arrays (empty when no face is found).
    """
    detector, predictor = _dlib_models(str(landmark_model_path(model)))
    dlib = _import_dlib()
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    # Detect on a copy of at most DETECT_SIDE px (a 12 MP phone photo upsampled for the HOG detector
    # would take seconds and gigabytes); the landmarks are then fitted on the full-resolution photo.
    scale = min(1.0, DETECT_SIDE / max(img.shape[:2]))
    small = img
    if scale < 1.0:
        from PIL import Image

        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        small = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
    boxes = sorted(detector(small, upsample), key=lambda r: r.width() * r.height(), reverse=True)
    faces = []
    for box in boxes:
        if scale < 1.0:
            box = dlib.rectangle(int(box.left() / scale), int(box.top() / scale),
                                 int(box.right() / scale), int(box.bottom() / scale))
        shape = predictor(img, box)
        faces.append(np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64))
    return faces


def align_face(rgb: np.ndarray, size: int, *, landmarks: np.ndarray | None = None,
               model: str | os.PathLike | None = None, what: str = "image") -> tuple[np.ndarray, dict]:
    """Crop the (largest) face of a photo as FFHQ did, at ``size`` x ``size``.

    Args:
        rgb: ``(H, W, 3)`` uint8 photo.
        size: output side (the generator's resolution).
        landmarks: ``(68, 2)`` landmarks to use instead of detecting them.
        model: landmark model (see :func:`landmark_model_path`).
        what: the input's name for error messages.

    Returns:
        ``(aligned (size, size, 3) uint8, info)``; info holds the quad, the landmarks and the
        number of faces found.

    Raises:
        InputError: no face found (use the centre crop, ``align=False``, for non-face images).
    """
    n_faces = None
    if landmarks is None:
        faces = detect_landmarks(rgb, model=model)
        if not faces:
            raise InputError(f"{what}: expected a photo with a face to align (FFHQ crop), but dlib found no face in "
                             f"the {rgb.shape[1]}x{rgb.shape[0]} image; use --no-align (centre crop) for non-face "
                             "images, or a photo where the face is frontal and at least ~80 px wide")
        n_faces, landmarks = len(faces), faces[0]
        if n_faces > 1:
            logger.warning("%s: %d faces found; aligning the largest", what, n_faces)
    quad = ffhq_quad(landmarks)
    aligned = warp_quad(rgb, quad, size)
    info = {"mode": "face", "quad": quad.round(2).tolist(), "landmarks": np.asarray(landmarks).round(2).tolist(),
            "faces_found": n_faces}
    return aligned, info
