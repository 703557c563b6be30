"""Sampling a quadruped figure (dog, horse, cat, sheep) in a random gait pose."""

from __future__ import annotations

import math

import numpy as np

from multipose.data.synthetic.figure_record import Figure, Part
from multipose.data.synthetic.styles import AnimalStyle, scale_colour
from multipose.data.synthetic.vec2d import ellipse_poly, rot, unit

__all__ = ["SPECIES", "sample_quadruped"]

# Species proportions, in body lengths (withers to tail root).
SPECIES: dict[str, dict[str, float]] = {
    "dog": {"leg": 0.62, "neck": 0.30, "head": 0.24, "tail": 0.45, "thick": 0.30, "snout": 0.55},
    "horse": {"leg": 0.95, "neck": 0.55, "head": 0.36, "tail": 0.55, "thick": 0.36, "snout": 0.75},
    "cat": {"leg": 0.50, "neck": 0.20, "head": 0.20, "tail": 0.75, "thick": 0.26, "snout": 0.25},
    "sheep": {"leg": 0.50, "neck": 0.24, "head": 0.24, "tail": 0.16, "thick": 0.45, "snout": 0.45},
}


def sample_quadruped(rng: np.random.Generator, style: AnimalStyle, species: str) -> Figure:
    """Sample a quadruped of ``species`` (a key of :data:`SPECIES`) in a random gait pose.

    Canonical frame: body centre at the origin, walking towards ``+x``, right side towards the camera
    (the near legs are the figure's right legs; mirrored figures show the left side).
    """
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r}; known: {sorted(SPECIES)}")
    U = rng.uniform
    sp = {k: v * U(0.9, 1.1) for k, v in SPECIES[species].items()}
    facing = 1 if U() < 0.5 else -1
    near, far = ("r", "l") if facing == 1 else ("l", "r")
    lm: dict[str, np.ndarray] = {}
    owners: dict[str, tuple[str, ...]] = {}
    hidden: set[str] = set()

    def put(name: str, p: np.ndarray, own: tuple[str, ...]) -> np.ndarray:
        lm[name] = np.asarray(p, dtype=np.float64)
        owners[name] = own
        return lm[name]

    tilt = math.radians(rng.normal(0.0, 7.0))
    fwd = rot(np.array([1.0, 0.0]), tilt)
    down = rot(np.array([0.0, 1.0]), tilt)
    up = -down
    th = sp["thick"]
    withers = put("withers", fwd * 0.5 - up * 0.02, ("body",))
    tail_root = put("tail_root", -fwd * 0.5 + up * 0.0 + down * 0.02, ("body", "tail"))
    put("body_center", np.zeros(2), ("body",))
    body_poly = np.concatenate(
        [
            ellipse_poly(np.zeros(2), fwd * 0.62, down * th * 0.55, 30),
        ]
    )
    chest = fwd * 0.45 + down * th * 0.25

    leg_parts: dict[str, list[Part]] = {"near": [], "far": []}
    for which, side in (("near", near), ("far", far)):
        shade = 1.0 if which == "near" else style.far_shade
        col = scale_colour(style.fur, shade)
        dx = 0.0 if which == "near" else 0.05
        own_body = ("body",) if which == "near" else ()
        L = sp["leg"]
        w = 0.085 * (th / 0.3) ** 0.5 * (1.0 if which == "near" else 0.9)
        # front leg: shoulder -> elbow -> wrist -> paw
        shoulder = put(
            f"{side}_shoulder", fwd * (0.36 + dx) + down * th * 0.12, own_body + (f"{side}_front_upper",)
        )
        swing = math.radians(U(-35.0, 35.0))
        d1 = rot(down, -swing)
        elbow = put(f"{side}_elbow", shoulder + d1 * L * 0.40, (f"{side}_front_upper", f"{side}_front_lower"))
        bend = math.radians(U(0.0, 70.0) if U() < 0.5 else U(0.0, 12.0))
        d2 = rot(d1, -bend)  # carpus folds backwards
        wrist = put(f"{side}_front_wrist", elbow + d2 * L * 0.38, (f"{side}_front_lower",))
        d3 = rot(down, -swing * 0.3)
        paw = put(f"{side}_front_paw", wrist + d3 * L * 0.22, (f"{side}_front_lower",))
        leg_parts[which] += [
            Part(f"{side}_front_upper", "capsule", np.stack([shoulder, elbow]), w * 1.25, col),
            Part(f"{side}_front_lower", "capsule", np.stack([elbow, wrist]), w * 0.85, col),
            Part(f"{side}_front_lower", "capsule", np.stack([wrist, paw]), w * 0.75, scale_colour(col, 0.8)),
        ]
        # back leg: hip -> knee (stifle, forward) -> hock (backward) -> paw
        hip = put(f"{side}_hip", -fwd * (0.36 - dx) + down * th * 0.08, own_body + (f"{side}_back_upper",))
        swing = math.radians(U(-30.0, 30.0))
        d1 = rot(down, -swing - math.radians(25.0))
        knee = put(f"{side}_knee", hip + d1 * L * 0.42, (f"{side}_back_upper", f"{side}_back_lower"))
        d2 = rot(down, -swing + math.radians(U(20.0, 50.0)))
        hock = put(f"{side}_hock", knee + d2 * L * 0.36, (f"{side}_back_lower",))
        d3 = rot(down, -swing * 0.3 - math.radians(8.0))
        bpaw = put(f"{side}_back_paw", hock + d3 * L * 0.30, (f"{side}_back_lower",))
        leg_parts[which] += [
            Part(f"{side}_back_upper", "capsule", np.stack([hip, knee]), w * 1.45, col),
            Part(f"{side}_back_lower", "capsule", np.stack([knee, hock]), w * 0.85, col),
            Part(f"{side}_back_lower", "capsule", np.stack([hock, bpaw]), w * 0.75, scale_colour(col, 0.8)),
        ]

    # neck and head
    neck_ang = math.radians(U(15.0, 70.0))
    nd = unit(rot(fwd, -neck_ang))
    neck_root = put("neck_root", withers + fwd * 0.04 + down * th * 0.15, ("body", "neck"))
    head_c = put("head_center", neck_root + nd * sp["neck"], ("head", "neck"))
    put("throat", neck_root + nd * sp["neck"] * 0.5, ("neck",))
    pitch = math.radians(U(-40.0, 40.0))
    hd = unit(rot(fwd, pitch + math.radians(20.0)))  # head points forward and a little down
    hdown = rot(hd, math.pi / 2)
    hr = sp["head"] / 2
    nose = put("nose", head_c + hd * (hr + sp["snout"] * hr * 1.1), ("head",))
    turned = U() < 0.3  # head turned towards the camera: both eyes show
    eye_near = put(f"{near}_eye", head_c + hd * hr * 0.35 - hdown * hr * 0.35, ("head",))
    eye_far = put(
        f"{far}_eye",
        head_c + hd * hr * (0.5 if turned else 0.55) - hdown * hr * (0.52 if turned else 0.42),
        ("head",),
    )
    if not turned:
        hidden.add(f"{far}_eye")
    put(f"{near}_ear", head_c - hd * hr * 0.3 - hdown * hr * 0.9, ("head", f"{near}_ear_shape"))
    put(f"{far}_ear", head_c - hd * hr * 0.05 - hdown * hr * 1.0, ("head", f"{far}_ear_shape"))
    put("chin", head_c + hd * hr * 0.6 + hdown * hr * 0.55, ("head",))

    # tail
    ta = math.radians(U(-60.0, 50.0))
    td = rot(-fwd, -ta)
    tail_mid = put("tail_mid", tail_root + td * sp["tail"] * 0.5, ("tail",))
    td2 = rot(td, math.radians(U(-40.0, 40.0)))
    tail_tip = put("tail_tip", tail_mid + td2 * sp["tail"] * 0.5, ("tail",))

    fur, belly = style.fur, style.belly
    head_poly = ellipse_poly(head_c, hd * hr * 1.05, hdown * hr * 0.85, 24)
    snout = np.stack([head_c + hd * hr * 0.3, nose])

    def ear_tri(base, k):
        return np.stack(
            [
                base - hd * hr * 0.3 + hdown * hr * 0.2,
                base - hdown * hr * 0.55 * k,
                base + hd * hr * 0.3 + hdown * hr * 0.2,
            ]
        )

    parts: list[Part] = []
    parts += leg_parts["far"]
    parts.append(
        Part(f"{far}_ear_shape", "poly", ear_tri(lm[f"{far}_ear"], 1.0), 0.0, scale_colour(fur, 0.7))
    )
    parts.append(
        Part(
            "tail",
            "line",
            np.stack([tail_root, tail_mid, tail_tip]),
            0.06 * (th / 0.3) ** 0.5,
            scale_colour(fur, 0.9),
        )
    )
    parts.append(Part("body", "poly", body_poly, 0.0, fur))
    parts.append(
        Part(
            "belly",
            "poly",
            ellipse_poly(chest * 0.2 + down * th * 0.3, fwd * 0.45, down * th * 0.17, 20),
            0.0,
            belly,
            label=False,
            shade=False,
        )
    )
    parts.append(Part("neck", "capsule", np.stack([neck_root - nd * 0.05, head_c]), th * 0.62, fur))
    parts.append(Part("head", "capsule", snout, hr * 1.05, scale_colour(fur, 1.05)))
    parts.append(Part("head", "poly", head_poly, 0.0, fur))
    parts.append(
        Part(f"{near}_ear_shape", "poly", ear_tri(lm[f"{near}_ear"], 1.1), 0.0, scale_colour(fur, 0.85))
    )
    dark = (20.0, 18.0, 16.0)
    parts.append(Part("nose_tip", "dot", nose[None], hr * 0.35, dark, label=False, shade=False))
    parts.append(Part("eye", "dot", eye_near[None], hr * 0.28, dark, label=False, shade=False))
    if turned:
        parts.append(Part("eye", "dot", eye_far[None], hr * 0.22, dark, label=False, shade=False))
    parts += leg_parts["near"]
    return Figure("quadruped", species, lm, owners, hidden, parts, facing, turned)
