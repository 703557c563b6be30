"""Top-down sample pipeline: image + one instance -> normalised input crop + keypoints in crop pixels.

Follows the ViTPose / mmpose 0.x training pipeline (``TopDownRandomShiftBboxCenter`` (optional) ->
``TopDownRandomFlip`` -> ``TopDownHalfBodyTransform`` -> ``TopDownGetRandomScaleRotation`` -> ``TopDownAffine``
-> ``ToTensor`` + ``NormalizeTensor``) with these implementation choices:

* every random draw comes from the ``numpy.random.Generator`` passed to the call (albumentations is reseeded
  from it), so the same seed gives a bit-identical sample;
* the horizontal flip is folded into the affine matrix, so the full image is warped exactly once
  (``cv2.warpAffine``, ``INTER_LINEAR``, constant black border);
* photometric augmentation (albumentations) runs on the crop after the warp, which is cheaper than on the
  full image.  ViTPose itself uses none: pass ``photometric=False`` to reproduce it exactly;
* labelled keypoints keep their label wherever they land, also outside the crop (as mmpose's
  ``TopDownAffine``); the codec decides the target weight from the Gaussian window (an edge keypoint still
  teaches while its window overlaps the heatmap).  Unlabelled keypoints (``v = 0``) get coordinates ``(0, 0)``;
* the random box-centre shift (``center_shift_prob``, ``center_shift_factor``) is mmpose's
  ``TopDownRandomShiftBboxCenter``: per sample, ``center += u * factor * scale`` with ``u ~ U(-1, 1)`` per axis
  and ``scale`` the padded box in pixels (mmpose configs: factor 0.16, prob 0.3).  ViTPose's own code applies a
  jitter of the same size once per instance, when the annotation file is loaded (``_xywh2cs``: prob 0.3,
  ``+-0.2 w, +-0.2 h`` of the raw box, fixed for the whole run); later mmpose releases draw it per sample, as
  here.  It moves box-derived centres only: an instance with its own centre/scale (MPII) keeps it, as in
  ViTPose and mmpose.  Off by default (``full_mix`` turns it on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from multipose.data.geometry import box_to_center_scale, get_warp_matrix, warp_points

__all__ = ["TopDownTransform", "IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_PHOTOMETRIC"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Default photometric augmentation: op name -> keyword arguments of the albumentations transform.
DEFAULT_PHOTOMETRIC: dict[str, dict[str, Any] | None] = {
    "color_jitter": {"p": 0.5, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
    "brightness_contrast": None,  # disabled by default (overlaps color_jitter)
    "blur": {"p": 0.1, "blur_limit": (3, 7)},
    "noise": {"p": 0.1, "std_range": (0.02, 0.08)},
}
_PHOTOMETRIC_OPS = {
    "color_jitter": "ColorJitter",
    "brightness_contrast": "RandomBrightnessContrast",
    "blur": "GaussianBlur",
    "noise": "GaussNoise",
}


def _skeleton_fields(skeleton: Any) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """Return ``(flip_indices, upper_body, lower_body)`` from a Skeleton-like object or a mapping."""

    def get(name: str, default: Any = None) -> Any:
        if isinstance(skeleton, Mapping):
            return skeleton.get(name, default)
        return getattr(skeleton, name, default)

    flip = get("flip_indices")
    if flip is None:
        raise ValueError(
            "TopDownTransform: skeleton must provide flip_indices (a Skeleton from "
            "multipose.skeletons.get_skeleton, or a mapping with flip_indices/upper_body/lower_body)"
        )
    flip = np.asarray(flip, dtype=np.int64)
    k = len(flip)
    if (
        flip.ndim != 1
        or k == 0
        or sorted(flip.tolist()) != list(range(k))
        or np.any(flip[flip] != np.arange(k))
    ):
        raise ValueError(
            f"TopDownTransform: skeleton flip_indices must be an involutive permutation, got {flip}"
        )
    upper = tuple(int(i) for i in (get("upper_body", ()) or ()))
    lower_raw = get("lower_body")
    if lower_raw is None:  # mmpose: the lower group is every joint not in the upper group
        lower = tuple(i for i in range(k) if i not in upper) if upper else ()
    else:
        lower = tuple(int(i) for i in lower_raw)
    for name, group in (("upper_body", upper), ("lower_body", lower)):
        if any(i < 0 or i >= k for i in group):
            raise ValueError(f"TopDownTransform: skeleton {name} has indices outside [0, {k}): {group}")
    return flip, upper, lower


def _build_photometric(photometric: bool | Mapping[str, Any] | None):
    """albumentations Compose from ``photometric`` (True: defaults; mapping: per-op overrides; falsy: None)."""
    if not photometric:
        return None
    ops: dict[str, Any] = {k: (dict(v) if v else None) for k, v in DEFAULT_PHOTOMETRIC.items()}
    if isinstance(photometric, Mapping):
        for name, cfg in photometric.items():
            if name not in _PHOTOMETRIC_OPS:
                raise ValueError(
                    f"TopDownTransform: unknown photometric op {name!r}; known ops: {sorted(_PHOTOMETRIC_OPS)} "
                    "(set an op to null/false to disable it, true for its defaults, or a dict of its options)"
                )
            if cfg is None or cfg is False:
                ops[name] = None
            elif cfg is True:
                ops[name] = dict(DEFAULT_PHOTOMETRIC[name] or {"p": 0.5})
            elif isinstance(cfg, Mapping):
                ops[name] = {**(DEFAULT_PHOTOMETRIC[name] or {}), **dict(cfg)}
            else:
                raise ValueError(
                    f"TopDownTransform: photometric.{name} must be a dict, true or null, got {cfg!r}"
                )
    elif photometric is not True:
        raise ValueError(
            f"TopDownTransform: photometric must be true/false or a dict of ops, got {photometric!r}"
        )

    import albumentations as A

    transforms = []
    for name, kwargs in ops.items():
        if kwargs is None:
            continue
        try:
            transforms.append(getattr(A, _PHOTOMETRIC_OPS[name])(**kwargs))
        except Exception as err:  # albumentations validates its own arguments
            raise ValueError(f"TopDownTransform: bad options for photometric.{name} {kwargs}: {err}") from err
    return A.Compose(transforms) if transforms else None


class TopDownTransform:
    """Crop one instance to the network input, with ViTPose training augmentation.

    Args:
        input_size: network input ``(H, W)``.
        skeleton: a ``Skeleton`` (or any object / mapping with ``flip_indices``, ``upper_body``,
            ``lower_body``).
        train: random augmentation on (``False``: fixed box crop, no randomness, ``rng`` not needed).
        use_udp: UDP affine (ViTPose COCO/MPII) or the classic affine (AIC, AP-10K, ... in ViTPose++).
        flip_prob: horizontal flip probability.
        half_body_prob: half-body probability (applies only with more than ``num_joints_half_body``
            labelled keypoints; set 0 for MPII as ViTPose does).
        num_joints_half_body: see above.
        scale_factor: box scale is multiplied by ``clip(N(0,1) * f + 1, 1 - f, 1 + f)``.
        rot_factor: rotation ``clip(N(0,1) * f, -2f, 2f)`` degrees, applied with probability ``rot_prob``.
        rot_prob: see above.
        padding: box padding when the instance has no centre/scale of its own.
        photometric: ``True`` (``DEFAULT_PHOTOMETRIC``), ``False``, or a dict of per-op overrides
            (ops ``color_jitter``, ``brightness_contrast``, ``blur``, ``noise``; albumentations kwargs).
        center_shift_prob: probability of the random box-centre shift (0: off, the default; ViTPose 0.3).
        center_shift_factor: its range as a fraction of the padded box size (mmpose 0.16).

    Call: ``transform(image_uint8_rgb [H, W, 3], instance, rng) -> dict`` with ``image`` float32 ``[3, H, W]``,
    ``keypoints`` float32 ``[K, 3]`` in input-crop pixels, ``center`` / ``scale`` float32 ``[2]`` (image pixels,
    after augmentation), ``rotation`` (degrees) and ``flipped`` (bool).  ``center`` is given in the flipped image
    frame when ``flipped`` (as in mmpose), so ``crop_to_image`` of a prediction is in flipped-image pixels.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        skeleton: Any,
        train: bool = True,
        use_udp: bool = True,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.3,
        num_joints_half_body: int = 8,
        scale_factor: float = 0.5,
        rot_factor: float = 40.0,
        rot_prob: float = 0.6,
        padding: float = 1.25,
        photometric: bool | Mapping[str, Any] = True,
        center_shift_prob: float = 0.0,
        center_shift_factor: float = 0.16,
    ) -> None:
        size = [int(v) for v in np.asarray(input_size).reshape(-1)]
        if len(size) != 2 or min(size) < 2:
            raise ValueError(f"TopDownTransform: input_size must be (H, W), got {input_size!r}")
        self.input_size = (size[0], size[1])
        self.flip_indices, self.upper_body, self.lower_body = _skeleton_fields(skeleton)
        self.num_keypoints = len(self.flip_indices)
        probs = (
            ("flip_prob", flip_prob),
            ("half_body_prob", half_body_prob),
            ("rot_prob", rot_prob),
            ("center_shift_prob", center_shift_prob),
        )
        for name, p in probs:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"TopDownTransform: {name} must be in [0, 1], got {p!r}")
        if not 0.0 <= scale_factor < 1.0:
            raise ValueError(f"TopDownTransform: scale_factor must be in [0, 1), got {scale_factor!r}")
        if not 0.0 <= center_shift_factor <= 1.0:
            raise ValueError(
                "TopDownTransform: center_shift_factor must be in [0, 1] (fraction of the box), "
                f"got {center_shift_factor!r}"
            )
        if rot_factor < 0 or padding <= 0:
            raise ValueError(
                f"TopDownTransform: need rot_factor >= 0 and padding > 0, got {rot_factor}, {padding}"
            )
        self.train = bool(train)
        self.use_udp = bool(use_udp)
        self.flip_prob = float(flip_prob)
        self.half_body_prob = float(half_body_prob)
        self.num_joints_half_body = int(num_joints_half_body)
        self.scale_factor = float(scale_factor)
        self.rot_factor = float(rot_factor)
        self.rot_prob = float(rot_prob)
        self.padding = float(padding)
        self.center_shift_prob = float(center_shift_prob)
        self.center_shift_factor = float(center_shift_factor)
        self.photometric = _build_photometric(photometric) if self.train else None
        self._mean = np.asarray(IMAGENET_MEAN, np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(IMAGENET_STD, np.float32) * 255.0)

    # ------------------------------------------------------------------ helpers
    def _describe(self, instance: Any) -> str:
        return (
            f"dataset {getattr(instance, 'dataset', '?')!r}, image {getattr(instance, 'image_path', '?')!r}, "
            f"ann_id {getattr(instance, 'ann_id', '?')}"
        )

    def _initial_center_scale(self, instance: Any) -> tuple[np.ndarray, np.ndarray]:
        center, scale = getattr(instance, "center", None), getattr(instance, "scale", None)
        if center is not None and scale is not None:
            c = np.asarray(center, np.float64).reshape(-1)
            s = np.asarray(scale, np.float64).reshape(-1)
            if c.shape != (2,) or s.shape != (2,) or not np.all(s > 0):
                raise ValueError(
                    f"TopDownTransform: instance center/scale must be [2] with scale > 0, got {center!r}, {scale!r} "
                    f"({self._describe(instance)})"
                )
            return c, s
        bbox = np.asarray(instance.bbox, np.float64).reshape(-1)
        if bbox.shape != (4,) or not np.all(np.isfinite(bbox)) or bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(
                f"TopDownTransform: instance bbox must be finite xywh with w, h > 0, got {bbox.tolist()} "
                f"({self._describe(instance)}); drop or fix the box in the reader"
            )
        h, w = self.input_size
        c, s = box_to_center_scale(bbox, w / h, self.padding)
        return c.astype(np.float64), s.astype(np.float64)

    def _half_body(self, kpts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        labelled = kpts[:, 2] > 0
        upper = [i for i in self.upper_body if labelled[i]]
        lower = [i for i in self.lower_body if labelled[i]]
        if rng.standard_normal() < 0.5 and len(upper) > 2:  # randn, not rand (ViTPose quirk: ~69% upper)
            chosen = upper
        elif len(lower) > 2:
            chosen = lower
        else:
            chosen = upper
        if len(chosen) < 2:
            return None
        pts = kpts[chosen, :2]
        center = pts.mean(axis=0)
        w, h = pts.max(axis=0) - pts.min(axis=0)
        aspect = self.input_size[1] / self.input_size[0]
        if w > aspect * h:
            h = w / aspect
        elif w < aspect * h:
            w = h * aspect
        if not (w > 0 and h > 0):
            return None
        return center, np.array([w, h]) * 1.5

    # ------------------------------------------------------------------ call
    def __call__(self, image: np.ndarray, instance: Any, rng: np.random.Generator | None = None) -> dict:
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            raise ValueError(
                f"TopDownTransform: image must be a uint8 RGB array [H, W, 3], got "
                f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')} ({self._describe(instance)})"
            )
        if self.train and not isinstance(rng, np.random.Generator):
            raise ValueError(
                "TopDownTransform(train=True) needs rng=numpy.random.Generator (the sample's seed)"
            )
        kpts = np.array(instance.keypoints, dtype=np.float64)
        if kpts.ndim != 2 or kpts.shape != (self.num_keypoints, 3):
            raise ValueError(
                f"TopDownTransform: instance keypoints must be [{self.num_keypoints}, 3] for this skeleton, got "
                f"shape {kpts.shape} ({self._describe(instance)})"
            )
        img_h, img_w = image.shape[:2]
        center, scale = self._initial_center_scale(instance)
        rotation = 0.0
        flipped = False

        if self.train:
            # only box-derived centres move (MPII's annotated centre/scale is used as given, as in mmpose); the
            # draw is skipped when off, so samples without the shift stay bit-identical to older runs
            from_box = getattr(instance, "center", None) is None or getattr(instance, "scale", None) is None
            if self.center_shift_prob > 0 and from_box and rng.random() < self.center_shift_prob:
                center = center + rng.uniform(-1.0, 1.0, 2) * self.center_shift_factor * scale
            if rng.random() < self.flip_prob:
                flipped = True
                kpts = kpts[self.flip_indices]
                kpts[:, 0] = img_w - 1 - kpts[:, 0]
                center = np.array([img_w - 1 - center[0], center[1]])
            if (
                self.half_body_prob > 0
                and int(np.sum(kpts[:, 2] > 0)) > self.num_joints_half_body
                and rng.random() < self.half_body_prob
            ):
                hb = self._half_body(kpts, rng)
                if hb is not None:
                    center, scale = hb
            sf, rf = self.scale_factor, self.rot_factor
            scale = scale * float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
            r = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
            rotation = r if rng.random() < self.rot_prob else 0.0

        out_h, out_w = self.input_size
        matrix = get_warp_matrix(center, scale, rotation, self.input_size, self.use_udp)
        img_matrix = matrix
        if flipped:  # warp the original image with matrix o (x -> W-1-x)
            img_matrix = matrix.copy()
            img_matrix[:, 2] += matrix[:, 0] * (img_w - 1)
            img_matrix[:, 0] = -matrix[:, 0]
        crop = cv2.warpAffine(image, img_matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)

        labelled = kpts[:, 2] > 0
        out_k = np.zeros((self.num_keypoints, 3), dtype=np.float32)
        out_k[:, :2] = warp_points(kpts[:, :2], matrix)
        out_k[:, 2] = kpts[:, 2]
        out_k[~labelled] = 0.0  # labelled keypoints keep v even outside the crop: the codec sets the weight

        if self.photometric is not None:
            self.photometric.set_random_seed(int(rng.integers(0, 2**32)))
            crop = self.photometric(image=crop)["image"]

        norm = (crop.astype(np.float32) - self._mean) * self._inv_std
        return {
            "image": np.ascontiguousarray(norm.transpose(2, 0, 1)),
            "keypoints": out_k,
            "center": np.asarray(center, np.float32),
            "scale": np.asarray(scale, np.float32),
            "rotation": float(rotation),
            "flipped": flipped,
            "matrix": img_matrix,  # original image pixels -> crop pixels (flip included)
        }
