"""Sampling a human figure in a random plausible pose (canonical frame, pelvis at the origin)."""

from __future__ import annotations

import math

import numpy as np

from multipose.data.synthetic.figure_record import Figure, Part
from multipose.data.synthetic.human_face import FACE_TEMPLATE, face_details
from multipose.data.synthetic.human_hand import hand_parts
from multipose.data.synthetic.styles import HumanStyle, scale_colour, tint_left
from multipose.data.synthetic.vec2d import ellipse_poly, rot, unit

__all__ = ["sample_human"]


def sample_human(rng: np.random.Generator, style: HumanStyle, back_view_prob: float = 0.2) -> Figure:
    """Sample a human in a random plausible pose (canonical frame, pelvis at the origin)."""
    U = rng.uniform
    lm: dict[str, np.ndarray] = {}
    owners: dict[str, tuple[str, ...]] = {}
    hidden: set[str] = set()
    parts_back: list[Part] = []  # arms behind the torso
    parts_legs: list[Part] = []
    parts_body: list[Part] = []
    parts_front: list[Part] = []

    def put(name: str, p: np.ndarray, own: tuple[str, ...]) -> np.ndarray:
        lm[name] = np.asarray(p, dtype=np.float64)
        owners[name] = own
        return lm[name]

    facing = -1 if U() < back_view_prob else 1
    prop = U(0.93, 1.07)  # limb length / body proportion jitter
    girth = U(0.88, 1.15)  # limb thickness jitter
    lean = math.radians(rng.normal(0.0, 6.0))
    up = rot(np.array([0.0, -1.0]), lean)
    down = -up
    left = rot(np.array([1.0, 0.0]), lean)

    torso_len = 0.30 * U(0.95, 1.05)
    hip_w = 0.083 * U(0.92, 1.1)
    sh_w = 0.118 * U(0.92, 1.1)
    pelvis = np.zeros(2)
    neck_base = pelvis + up * torso_len
    put("pelvis", pelvis + up * 0.012, ("torso",))
    put("neck_base", neck_base + up * 0.006, ("torso", "neck", "head"))
    put("thorax", neck_base - up * 0.034, ("torso",))
    put("spine_mid", pelvis + up * torso_len * 0.5, ("torso",))

    clothes_l = tint_left(style.shirt, style.left_tint)
    trousers_l = tint_left(style.trousers, style.left_tint)
    shoes_l = tint_left(style.shoes, style.left_tint)

    for side, sgn in (("l", 1.0), ("r", -1.0)):
        shirt = clothes_l if side == "l" else style.shirt
        trousers = trousers_l if side == "l" else style.trousers
        shoes = shoes_l if side == "l" else style.shoes
        # ---- hips: three definitions of the "same" joint (datasets disagree, as real ones do)
        hip = put(f"{side}_hip_joint", pelvis + left * sgn * hip_w - up * 0.012, ("torso", f"{side}_thigh"))
        put(f"{side}_hip_mid", pelvis + left * sgn * hip_w * 1.02 + up * 0.022, ("torso", f"{side}_thigh"))
        put(f"{side}_hip_high", pelvis + left * sgn * hip_w * 1.12 + up * 0.06, ("torso",))
        # ---- legs
        abd = math.radians(U(-8.0, 40.0))
        thigh_dir = rot(down, -sgn * abd)
        knee_flex = math.radians(U(0.0, 95.0) if U() < 0.6 else U(0.0, 20.0))
        shin_dir = rot(thigh_dir, sgn * knee_flex * (1 if U() < 0.5 else -1))
        thigh = 0.245 * prop * (U(0.75, 1.0) if U() < 0.3 else 1.0)
        shin = 0.235 * prop * (U(0.75, 1.0) if U() < 0.3 else 1.0)
        knee = put(f"{side}_knee", hip + thigh_dir * thigh, (f"{side}_thigh", f"{side}_shin"))
        ankle = put(f"{side}_ankle", knee + shin_dir * shin, (f"{side}_shin", f"{side}_foot"))
        foot_dir = rot(down, -sgn * math.radians(U(55.0, 105.0)))
        foot_len = 0.085 * prop * U(0.55, 1.0)
        foot_up = unit(rot(foot_dir, sgn * math.pi / 2))
        if float(foot_up @ up) < 0:
            foot_up = -foot_up
        heel = put(f"{side}_heel", ankle + down * 0.03 - foot_dir * 0.012, (f"{side}_foot",))
        big = put(f"{side}_big_toe", heel + foot_dir * foot_len + foot_up * 0.007, (f"{side}_foot",))
        small = put(
            f"{side}_small_toe", heel + foot_dir * foot_len * 0.8 - foot_up * 0.008, (f"{side}_foot",)
        )
        leg_w = 0.072 * girth
        parts_legs += [
            Part(f"{side}_thigh", "capsule", np.stack([hip, knee]), leg_w, trousers),
            Part(f"{side}_shin", "capsule", np.stack([knee, ankle]), leg_w * 0.82, trousers),
            Part(f"{side}_foot", "capsule", np.stack([heel, (big + small) / 2]), 0.042 * girth, shoes),
        ]
        # ---- arms
        sh = put(
            f"{side}_shoulder", neck_base + left * sgn * sh_w - up * 0.028, ("torso", f"{side}_upper_arm")
        )
        abd = math.radians(U(-25.0, 165.0) if U() < 0.75 else U(-10.0, 40.0))
        ua_dir = rot(down, -sgn * abd)
        flex = math.radians(U(0.0, 145.0) if U() < 0.65 else U(0.0, 25.0))
        fa_dir = rot(ua_dir, sgn * flex * (1 if U() < 0.6 else -1))
        ua = 0.165 * prop * (U(0.7, 1.0) if U() < 0.3 else 1.0)
        fa = 0.148 * prop * (U(0.7, 1.0) if U() < 0.3 else 1.0)
        elbow = put(f"{side}_elbow", sh + ua_dir * ua, (f"{side}_upper_arm", f"{side}_forearm"))
        wrist = put(f"{side}_wrist", elbow + fa_dir * fa, (f"{side}_forearm", f"{side}_hand"))
        arm_w = 0.056 * girth
        sleeve_fore = shirt if style.long_sleeves else style.skin
        arm_parts = [
            Part(f"{side}_upper_arm", "capsule", np.stack([sh, elbow]), arm_w, shirt),
            Part(f"{side}_forearm", "capsule", np.stack([elbow, wrist]), arm_w * 0.85, sleeve_fore),
        ]
        arm_parts += hand_parts(rng, side, sgn, wrist, fa_dir, prop, girth, style.skin, put)
        (parts_back if U() < 0.2 else parts_front).extend(arm_parts)

    # ---- torso polygon: shoulders -> hips, slightly widened
    lsh, rsh = lm["l_shoulder"], lm["r_shoulder"]
    lhip, rhip = lm["l_hip_joint"], lm["r_hip_joint"]
    tw = 0.03 * girth
    torso = np.stack(
        [
            lsh + left * tw * 0.6 + up * 0.02,
            lsh + left * tw - up * 0.06,
            lhip + left * tw * 0.9 - up * 0.01,
            pelvis - up * 0.045,
            rhip - left * tw * 0.9 - up * 0.01,
            rsh - left * tw - up * 0.06,
            rsh - left * tw * 0.6 + up * 0.02,
            neck_base + up * 0.01,
        ]
    )
    parts_body.append(Part("torso", "poly", torso, 0.0, style.shirt))
    # belt line: a mild cue for where the pelvis is
    parts_body.append(
        Part(
            "belt",
            "line",
            np.stack([lhip + up * 0.035 + left * tw * 0.7, rhip + up * 0.035 - left * tw * 0.7]),
            0.012,
            scale_colour(style.trousers, 0.6),
            label=False,
            shade=False,
        )
    )

    # ---- neck and head
    nk = math.radians(rng.normal(0.0, 9.0))
    vup = rot(up, nk)
    vleft = rot(left, nk)
    b = 0.066 * U(0.93, 1.08)  # head vertical radius
    a = 0.80 * b  # horizontal radius
    centre = neck_base + vup * (0.048 + b)
    put("upper_neck", neck_base + vup * 0.036, ("neck", "head"))
    put("neck_top", neck_base + vup * 0.048, ("neck", "head"))
    put("head_center", centre, ("head",))
    put("head_top", centre + vup * b * 0.96, ("head",))
    put("head_top_low", centre + vup * b * 0.78, ("head",))
    put("chin", centre - vup * b * 0.92, ("head",))
    yaw = float(np.clip(rng.normal(0.0, 0.28), -0.75, 0.75))

    def face_pt(alpha: float, y: float, depth: float) -> tuple[np.ndarray, float]:
        """Project a point on the head 'sphere'; returns (point, cos of its angle to the camera)."""
        ang = alpha + yaw
        x = a * depth * math.sin(ang) * math.sqrt(max(0.0, 1.0 - min(1.0, y * y)))
        return centre + vleft * x - vup * (y * b), math.cos(ang)

    front = facing == 1
    ang = FACE_TEMPLATE[:, 0] + yaw  # all 68 face points at once (same projection as face_pt)
    fy = FACE_TEMPLATE[:, 1]
    fx = a * FACE_TEMPLATE[:, 2] * np.sin(ang) * np.sqrt(np.clip(1.0 - fy * fy, 0.0, None))
    face = centre[None] + fx[:, None] * vleft[None] - (fy * b)[:, None] * vup[None]
    face_cz = np.cos(ang)
    for i in range(len(FACE_TEMPLATE)):
        put(f"face_{i}", face[i], ("head",))
        if not front or face_cz[i] < 0.08:
            hidden.add(f"face_{i}")
    for name, al, y, d in (
        ("l_eye", 0.42, 0.02, 1.0),
        ("r_eye", -0.42, 0.02, 1.0),
        ("nose", 0.0, 0.32, 1.18),
        ("mouth", 0.0, 0.62, 1.0),
    ):
        p, cz = face_pt(al, y, d)
        put(name, p, ("head",))
        if not front or cz < 0.08:
            hidden.add(name)
    ear_parts: list[Part] = []
    for side, al in (("l", 1.5), ("r", -1.5)):
        p, cz = face_pt(al, 0.06, 1.0)
        put(f"{side}_ear", p, (f"{side}_ear_shape", "head"))
        seen = cz > -0.2 if front else cz < 0.2
        if not seen:
            hidden.add(f"{side}_ear")
        else:
            ear_parts.append(
                Part(
                    f"{side}_ear_shape",
                    "poly",
                    ellipse_poly(p, vleft * b * 0.22, vup * b * 0.34, 14),
                    0.0,
                    style.skin,
                )
            )
    neck_w = 0.05 * girth
    head_parts: list[Part] = [
        Part("neck", "capsule", np.stack([neck_base, neck_base + vup * 0.06]), neck_w, style.skin)
    ]
    head_parts += ear_parts
    head_poly = ellipse_poly(centre, vleft * a, vup * b, 32)
    if front:
        head_parts.append(Part("head", "poly", head_poly, 0.0, style.skin))
        # hair cap over the top of the head
        cap = ellipse_poly(centre, vleft * a * 1.02, -vup * b * 1.03, 18, math.pi * 1.05, math.pi * 1.95)
        cap = np.concatenate(
            [
                cap,
                [
                    centre + vup * b * 0.34 + vleft * a * 0.72,
                    centre + vup * b * 0.5,
                    centre + vup * b * 0.34 - vleft * a * 0.72,
                ],
            ]
        )
        head_parts.append(Part("hair", "poly", cap, 0.0, style.hair, label=False))
        head_parts += face_details(lm, hidden, b, style)
    else:
        head_parts.append(Part("head", "poly", head_poly, 0.0, style.hair))

    parts = parts_back + parts_legs + parts_body + head_parts + parts_front
    # The "hair" part writes no labels; it sits on the head which owns those pixels.
    return Figure("human", "person", lm, owners, hidden, parts, facing, front)
