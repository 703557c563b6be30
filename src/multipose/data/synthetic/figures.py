"""Articulated 2D figures with a hidden dense landmark set.

A figure is built in a *canonical frame* and then placed in the image by a similarity transform.

Canonical frame conventions
    * ``x`` to the image right, ``y`` down (image convention), one unit = the figure's height
      (humans: head top to heel; quadrupeds: shoulder-to-hip body length).
    * Humans are built facing the camera, so the figure's LEFT side is at ``+x``. A back view mirrors
      ``x`` after building, which puts the figure's left on the image left (as in a photo).
    * Quadrupeds are built walking towards ``+x`` with their right side towards the camera; a figure
      walking towards ``-x`` is the mirror image and shows its left side (labels follow the physics).

Every figure carries
    * ``landmarks``: name -> ``[2]`` point (dense, far more than any dataset labels);
    * ``owners``: name -> part names on whose pixels the landmark counts as *seen* (a wrist is seen on
      the forearm or the hand; anything else drawn there occludes it);
    * ``self_hidden``: landmarks hidden by the figure's own 3D geometry although no pixel covers them
      (eyes of a figure seen from the back, the far ear of a turned head, the far eye of an animal);
    * ``parts``: the drawable pieces in painter's order (back to front).

Skeleton *views* (``views.py``) pick and name landmarks; the renderer decides visibility from the
per-pixel part map, so visibility flags are honest by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Part",
    "Figure",
    "HumanStyle",
    "AnimalStyle",
    "SPECIES",
    "FACE_TEMPLATE",
    "FINGERS",
    "sample_human",
    "sample_quadruped",
]

Colour = tuple[float, float, float]  # RGB, 0..255


def _rot(v: np.ndarray, ang: float) -> np.ndarray:
    """Rotate a 2D vector by ``ang`` radians (clockwise on screen, since ``y`` points down)."""
    c, s = math.cos(ang), math.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]], dtype=np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


def _ellipse_poly(
    centre: np.ndarray,
    ax_u: np.ndarray,
    ax_v: np.ndarray,
    n: int = 28,
    start: float = 0.0,
    stop: float = 2 * math.pi,
) -> np.ndarray:
    """Polygon of the ellipse ``centre + cos(t) * ax_u + sin(t) * ax_v`` for ``t`` in ``[start, stop]``."""
    t = np.linspace(start, stop, n, endpoint=(stop - start) < 2 * math.pi - 1e-6)
    return centre[None] + np.cos(t)[:, None] * ax_u[None] + np.sin(t)[:, None] * ax_v[None]


@dataclass
class Part:
    """One drawable piece, in canonical units until :meth:`Figure.place` maps it to pixels.

    ``shape``: ``"capsule"`` (``points`` = the two axis end points, ``width`` = diameter),
    ``"poly"`` (filled polygon), ``"line"`` (open polyline of ``width``, a face detail) or
    ``"dot"`` (filled disc, ``points[0]`` centre, ``width`` diameter).
    ``label``: whether the piece owns its pixels in the part map (face details do not: they sit on
    the head and the head owns them).
    """

    name: str
    shape: str
    points: np.ndarray
    width: float
    colour: Colour
    label: bool = True
    shade: bool = True


@dataclass
class Figure:
    """A sampled figure; see the module docstring for the meaning of the fields."""

    kind: str  # "human" | "quadruped"
    category: str  # "person" or a species name
    landmarks: dict[str, np.ndarray]
    owners: dict[str, tuple[str, ...]]
    self_hidden: set[str]
    parts: list[Part]
    facing: int  # humans: +1 front view, -1 back view; quadrupeds: +1 towards +x, -1 towards -x
    face_visible: bool  # a face (eyes, nose, mouth) is drawn
    height_px: float = 0.0

    def place(self, centre: tuple[float, float], scale: float, rotation: float) -> Figure:
        """Return the figure mapped to pixels: mirror (back views / left-walking animals), rotate by
        ``rotation`` radians about the canonical origin, scale by ``scale`` px per unit, translate."""
        mirror = np.array([float(self.facing), 1.0])  # back views / animals walking to -x are mirrored
        c, s = math.cos(rotation), math.sin(rotation)
        # p -> (p * mirror) @ rot.T * scale + t, folded into one 2x2 matrix
        m = (np.array([[c, -s], [s, c]]) * mirror[None, :]).T * scale
        t = np.asarray(centre, dtype=np.float64)
        names = list(self.landmarks)
        pts = np.stack([self.landmarks[k] for k in names]) @ m + t
        parts = [
            Part(p.name, p.shape, p.points @ m + t, p.width * scale, p.colour, p.label, p.shade)
            for p in self.parts
        ]
        return Figure(
            kind=self.kind,
            category=self.category,
            landmarks=dict(zip(names, pts)),
            owners=self.owners,
            self_hidden=set(self.self_hidden),
            parts=parts,
            facing=self.facing,
            face_visible=self.face_visible,
            height_px=scale,
        )

    def extent(self, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned ``(min_xy, max_xy)`` of all drawn geometry (widths included) after rotating by
        ``rotation`` radians (and mirroring, as :meth:`place` does) — in the figure's current units."""
        pts = np.concatenate([p.points for p in self.parts])
        pad = np.concatenate(
            [np.full(len(p.points), p.width / 2 if p.shape != "poly" else 0.0) for p in self.parts]
        )
        if rotation or self.facing < 0:
            c, s = math.cos(rotation), math.sin(rotation)
            m = (np.array([[c, -s], [s, c]]) * np.array([float(self.facing), 1.0])[None, :]).T
            pts = pts @ m
        return (pts - pad[:, None]).min(0), (pts + pad[:, None]).max(0)


# ----------------------------------------------------------------------------------------------
# Styles (colours come from the dataset's visual domain)
# ----------------------------------------------------------------------------------------------


@dataclass
class HumanStyle:
    skin: Colour
    hair: Colour
    shirt: Colour
    trousers: Colour
    shoes: Colour
    long_sleeves: bool
    left_tint: float = 0.82  # left-side clothes are this much darker (mild, like real clothes)


@dataclass
class AnimalStyle:
    fur: Colour
    belly: Colour
    far_shade: float = 0.72  # far-side legs are darker (in the body's shadow)


def _scale(c: Colour, k: float) -> Colour:
    return tuple(float(min(255.0, max(0.0, v * k))) for v in c)  # type: ignore[return-value]


def _tint_left(c: Colour, k: float) -> Colour:
    """Left-side garment colour: darker by ``k`` with a slight blue cast, so sides differ mildly."""
    r, g, b = _scale(c, k)
    return (r, g, min(255.0, b + 12.0))


# ----------------------------------------------------------------------------------------------
# Face template: (azimuth alpha [rad], vertical offset y [head radii, +down], depth) per landmark.
# alpha > 0 is the figure's LEFT; iBUG-68 order (0-16 jaw from the figure's right, 17-21 right brow,
# 22-26 left brow, 27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59 outer lip,
# 60-67 inner lip).
# ----------------------------------------------------------------------------------------------


def _face_template() -> np.ndarray:
    pts: list[tuple[float, float, float]] = []
    for k in range(17):  # jaw, right -> chin -> left
        t = -1.0 + 2.0 * k / 16.0
        pts.append((1.32 * t, 0.02 + 0.88 * math.cos(t * math.pi / 2), 1.0))
    for i in range(5):  # right brow, outer -> inner
        a = -0.78 + 0.6 * i / 4
        pts.append((a, -0.24 - 0.06 * math.sin(math.pi * (i + 0.5) / 5), 1.0))
    for i in range(5):  # left brow, inner -> outer
        a = 0.18 + 0.6 * i / 4
        pts.append((a, -0.24 - 0.06 * math.sin(math.pi * (4.5 - i) / 5), 1.0))
    for i in range(4):  # nose bridge, top -> tip
        pts.append((0.0, -0.06 + 0.12 * i, 1.0 + 0.05 * i))
    for i in range(5):  # nostrils, right -> left
        a = -0.22 + 0.11 * i
        pts.append((a, 0.38 + 0.03 * (1 - abs(i - 2) / 2), 1.04))

    def eye(ca: float) -> list[tuple[float, float, float]]:
        # corner at smaller alpha, two upper-lid points, other corner, two lower-lid points; for the right
        # eye the first corner is the outer one (iBUG 36), for the left eye the inner one (iBUG 42).
        w, h, cy = 0.17, 0.06, 0.02
        seq = [(-w, 0.0), (-w / 3, -h), (w / 3, -h), (w, 0.0), (w / 3, h * 0.8), (-w / 3, h * 0.8)]
        return [(ca + dx, cy + dy, 1.0) for dx, dy in seq]

    pts += eye(-0.42)  # right eye
    pts += eye(0.42)  # left eye
    # outer lip: 48 right corner, 49-53 upper lip to 54 left corner, 55-59 lower lip back
    mw, my = 0.34, 0.62
    upper = [(-mw, 0.0), (-0.2, -0.06), (-0.08, -0.08), (0.0, -0.065), (0.08, -0.08), (0.2, -0.06), (mw, 0.0)]
    lower = [(0.2, 0.07), (0.1, 0.1), (0.0, 0.105), (-0.1, 0.1), (-0.2, 0.07)]
    pts += [(a, my + d, 1.0) for a, d in upper + lower]
    inner_u = [(-0.26, 0.0), (-0.1, -0.025), (0.0, -0.02), (0.1, -0.025), (0.26, 0.0)]
    inner_l = [(0.1, 0.03), (0.0, 0.035), (-0.1, 0.03)]
    pts += [(a, my + d, 1.0) for a, d in inner_u + inner_l]
    arr = np.array(pts, dtype=np.float64)
    assert arr.shape == (68, 3)
    return arr


FACE_TEMPLATE = _face_template()

# Finger names in COCO-WholeBody hand order (after the root/wrist).
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


# ----------------------------------------------------------------------------------------------
# Humans
# ----------------------------------------------------------------------------------------------


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
    up = _rot(np.array([0.0, -1.0]), lean)
    down = -up
    left = _rot(np.array([1.0, 0.0]), lean)

    torso_len = 0.30 * U(0.95, 1.05)
    hip_w = 0.083 * U(0.92, 1.1)
    sh_w = 0.118 * U(0.92, 1.1)
    pelvis = np.zeros(2)
    neck_base = pelvis + up * torso_len
    put("pelvis", pelvis + up * 0.012, ("torso",))
    put("neck_base", neck_base + up * 0.006, ("torso", "neck", "head"))
    put("thorax", neck_base - up * 0.034, ("torso",))
    put("spine_mid", pelvis + up * torso_len * 0.5, ("torso",))

    clothes_l = _tint_left(style.shirt, style.left_tint)
    trousers_l = _tint_left(style.trousers, style.left_tint)
    shoes_l = _tint_left(style.shoes, style.left_tint)

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
        thigh_dir = _rot(down, -sgn * abd)
        knee_flex = math.radians(U(0.0, 95.0) if U() < 0.6 else U(0.0, 20.0))
        shin_dir = _rot(thigh_dir, sgn * knee_flex * (1 if U() < 0.5 else -1))
        thigh = 0.245 * prop * (U(0.75, 1.0) if U() < 0.3 else 1.0)
        shin = 0.235 * prop * (U(0.75, 1.0) if U() < 0.3 else 1.0)
        knee = put(f"{side}_knee", hip + thigh_dir * thigh, (f"{side}_thigh", f"{side}_shin"))
        ankle = put(f"{side}_ankle", knee + shin_dir * shin, (f"{side}_shin", f"{side}_foot"))
        foot_dir = _rot(down, -sgn * math.radians(U(55.0, 105.0)))
        foot_len = 0.085 * prop * U(0.55, 1.0)
        foot_up = _unit(_rot(foot_dir, sgn * math.pi / 2))
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
        ua_dir = _rot(down, -sgn * abd)
        flex = math.radians(U(0.0, 145.0) if U() < 0.65 else U(0.0, 25.0))
        fa_dir = _rot(ua_dir, sgn * flex * (1 if U() < 0.6 else -1))
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
        arm_parts += _hand(rng, side, sgn, wrist, fa_dir, prop, girth, style.skin, put)
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
            _scale(style.trousers, 0.6),
            label=False,
            shade=False,
        )
    )

    # ---- neck and head
    nk = math.radians(rng.normal(0.0, 9.0))
    vup = _rot(up, nk)
    vleft = _rot(left, nk)
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
                    _ellipse_poly(p, vleft * b * 0.22, vup * b * 0.34, 14),
                    0.0,
                    style.skin,
                )
            )
    neck_w = 0.05 * girth
    head_parts: list[Part] = [
        Part("neck", "capsule", np.stack([neck_base, neck_base + vup * 0.06]), neck_w, style.skin)
    ]
    head_parts += ear_parts
    head_poly = _ellipse_poly(centre, vleft * a, vup * b, 32)
    if front:
        head_parts.append(Part("head", "poly", head_poly, 0.0, style.skin))
        # hair cap over the top of the head
        cap = _ellipse_poly(centre, vleft * a * 1.02, -vup * b * 1.03, 18, math.pi * 1.05, math.pi * 1.95)
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
        head_parts += _face_details(lm, hidden, b, style)
    else:
        head_parts.append(Part("head", "poly", head_poly, 0.0, style.hair))

    parts = parts_back + parts_legs + parts_body + head_parts + parts_front
    # The "hair" part writes no labels; it sits on the head which owns those pixels.
    return Figure("human", "person", lm, owners, hidden, parts, facing, front)


def _hand(
    rng: np.random.Generator,
    side: str,
    sgn: float,
    wrist: np.ndarray,
    fa_dir: np.ndarray,
    prop: float,
    girth: float,
    skin: Colour,
    put,
) -> list[Part]:
    """Place the 21 COCO-WholeBody hand landmarks (root, then 4 per finger) and return hand parts."""
    U = rng.uniform
    d = _unit(_rot(fa_dir, math.radians(U(-30.0, 30.0))))
    lat = _rot(d, -sgn * math.pi / 2)  # lateral when the arm hangs (palms forward: thumbs out)
    if U() < 0.25:
        lat = -lat  # palm turned backwards
    L = 0.105 * prop
    put(f"{side}_hand_root", wrist, (f"{side}_forearm", f"{side}_hand"))
    curl_sign = 1 if U() < 0.5 else -1
    grip = U(0.0, 1.0) ** 2  # 0 = open hand, 1 = fist-like
    bases = {"forefinger": 0.10, "middle_finger": 0.035, "ring_finger": -0.03, "pinky_finger": -0.09}
    lengths = {"forefinger": 0.95, "middle_finger": 1.0, "ring_finger": 0.94, "pinky_finger": 0.76}
    spread = {"forefinger": 0.12, "middle_finger": 0.03, "ring_finger": -0.06, "pinky_finger": -0.16}
    palm_pts = [wrist + lat * L * 0.1, wrist - lat * L * 0.1]
    finger_parts: list[Part] = []
    hand_own = (f"{side}_hand",)
    for fname in FINGERS[1:]:
        mcp = wrist + d * L * 0.47 + lat * L * bases[fname]
        fd = _rot(d, -sgn * spread[fname] * (1 if lat @ _rot(d, -sgn * math.pi / 2) > 0 else -1))
        pts = [mcp]
        seg = [0.25, 0.16, 0.12]
        curl = math.radians(U(5.0, 30.0) + 70.0 * grip)
        for k, sl in enumerate(seg):
            fd = _rot(fd, curl_sign * curl * (0.6 if k == 0 else 1.0))
            pts.append(pts[-1] + fd * L * sl * lengths[fname])
        for k, p in enumerate(pts):
            put(f"{side}_{fname}{k + 1}", p, hand_own)
        finger_parts.append(Part(f"{side}_hand", "line", np.stack(pts), 0.017 * girth, skin, shade=False))
    # thumb: CMC near the wrist on the lateral side, then MCP, IP, tip
    td = _unit(_rot(d, 0.0) * 0.55 + lat * 0.8)
    cmc = wrist + d * L * 0.1 + lat * L * 0.12
    pts = [cmc]
    for k, sl in enumerate([0.2, 0.15, 0.13]):
        td = _rot(td, curl_sign * math.radians(U(0.0, 25.0) + 30.0 * grip) * (0.5 if k == 0 else 1.0))
        pts.append(pts[-1] + td * L * sl)
    for k, p in enumerate(pts):
        put(f"{side}_thumb{k + 1}", p, hand_own)
    finger_parts.append(Part(f"{side}_hand", "line", np.stack(pts), 0.019 * girth, skin, shade=False))
    palm_pts += [
        wrist + d * L * 0.47 + lat * L * bases["pinky_finger"] * 1.05,
        wrist + d * L * 0.47 + lat * L * bases["forefinger"] * 1.05,
    ]
    palm = np.stack([palm_pts[1], palm_pts[2], palm_pts[3], palm_pts[0]])
    return [Part(f"{side}_hand", "poly", palm, 0.0, skin)] + finger_parts


def _face_details(lm: dict[str, np.ndarray], hidden: set[str], b: float, style: HumanStyle) -> list[Part]:
    """Eyes, brows, nose and mouth drawn on the head (no own labels; only the parts facing us)."""
    out: list[Part] = []
    dark = (25.0, 20.0, 20.0)

    def seen(*idx: int) -> bool:
        return all(f"face_{i}" not in hidden for i in idx)

    for rng_idx, eye in ((range(36, 42), "r_eye"), (range(42, 48), "l_eye")):
        idx = list(rng_idx)
        if seen(*idx):
            out.append(
                Part(
                    f"{eye}_white",
                    "poly",
                    np.stack([lm[f"face_{i}"] for i in idx]),
                    0.0,
                    (235.0, 235.0, 230.0),
                    label=False,
                    shade=False,
                )
            )
            out.append(Part(f"{eye}_pupil", "dot", lm[eye][None], b * 0.13, dark, label=False, shade=False))
    for brow in (range(17, 22), range(22, 27)):
        idx = list(brow)
        if seen(*idx):
            out.append(
                Part(
                    "brow",
                    "line",
                    np.stack([lm[f"face_{i}"] for i in idx]),
                    b * 0.07,
                    _scale(style.hair, 0.7),
                    label=False,
                    shade=False,
                )
            )
    if seen(27, 30, 31, 35):
        out.append(
            Part(
                "nose_ridge",
                "line",
                np.stack([lm["face_27"], lm["face_30"]]),
                b * 0.06,
                _scale(style.skin, 0.72),
                label=False,
                shade=False,
            )
        )
        out.append(
            Part(
                "nostrils",
                "line",
                np.stack([lm[f"face_{i}"] for i in range(31, 36)]),
                b * 0.07,
                _scale(style.skin, 0.55),
                label=False,
                shade=False,
            )
        )
    mouth = list(range(48, 60)) + [48]
    if seen(48, 51, 54, 57):
        out.append(
            Part(
                "mouth",
                "poly",
                np.stack([lm[f"face_{i}"] for i in mouth]),
                0.0,
                (165.0, 60.0, 65.0),
                label=False,
                shade=False,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------
# Quadrupeds
# ----------------------------------------------------------------------------------------------

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
    fwd = _rot(np.array([1.0, 0.0]), tilt)
    down = _rot(np.array([0.0, 1.0]), tilt)
    up = -down
    th = sp["thick"]
    withers = put("withers", fwd * 0.5 - up * 0.02, ("body",))
    tail_root = put("tail_root", -fwd * 0.5 + up * 0.0 + down * 0.02, ("body", "tail"))
    put("body_center", np.zeros(2), ("body",))
    body_poly = np.concatenate(
        [
            _ellipse_poly(np.zeros(2), fwd * 0.62, down * th * 0.55, 30),
        ]
    )
    chest = fwd * 0.45 + down * th * 0.25

    leg_parts: dict[str, list[Part]] = {"near": [], "far": []}
    for which, side in (("near", near), ("far", far)):
        shade = 1.0 if which == "near" else style.far_shade
        col = _scale(style.fur, shade)
        dx = 0.0 if which == "near" else 0.05
        own_body = ("body",) if which == "near" else ()
        L = sp["leg"]
        w = 0.085 * (th / 0.3) ** 0.5 * (1.0 if which == "near" else 0.9)
        # front leg: shoulder -> elbow -> wrist -> paw
        shoulder = put(
            f"{side}_shoulder", fwd * (0.36 + dx) + down * th * 0.12, own_body + (f"{side}_front_upper",)
        )
        swing = math.radians(U(-35.0, 35.0))
        d1 = _rot(down, -swing)
        elbow = put(f"{side}_elbow", shoulder + d1 * L * 0.40, (f"{side}_front_upper", f"{side}_front_lower"))
        bend = math.radians(U(0.0, 70.0) if U() < 0.5 else U(0.0, 12.0))
        d2 = _rot(d1, -bend)  # carpus folds backwards
        wrist = put(f"{side}_front_wrist", elbow + d2 * L * 0.38, (f"{side}_front_lower",))
        d3 = _rot(down, -swing * 0.3)
        paw = put(f"{side}_front_paw", wrist + d3 * L * 0.22, (f"{side}_front_lower",))
        leg_parts[which] += [
            Part(f"{side}_front_upper", "capsule", np.stack([shoulder, elbow]), w * 1.25, col),
            Part(f"{side}_front_lower", "capsule", np.stack([elbow, wrist]), w * 0.85, col),
            Part(f"{side}_front_lower", "capsule", np.stack([wrist, paw]), w * 0.75, _scale(col, 0.8)),
        ]
        # back leg: hip -> knee (stifle, forward) -> hock (backward) -> paw
        hip = put(f"{side}_hip", -fwd * (0.36 - dx) + down * th * 0.08, own_body + (f"{side}_back_upper",))
        swing = math.radians(U(-30.0, 30.0))
        d1 = _rot(down, -swing - math.radians(25.0))
        knee = put(f"{side}_knee", hip + d1 * L * 0.42, (f"{side}_back_upper", f"{side}_back_lower"))
        d2 = _rot(down, -swing + math.radians(U(20.0, 50.0)))
        hock = put(f"{side}_hock", knee + d2 * L * 0.36, (f"{side}_back_lower",))
        d3 = _rot(down, -swing * 0.3 - math.radians(8.0))
        bpaw = put(f"{side}_back_paw", hock + d3 * L * 0.30, (f"{side}_back_lower",))
        leg_parts[which] += [
            Part(f"{side}_back_upper", "capsule", np.stack([hip, knee]), w * 1.45, col),
            Part(f"{side}_back_lower", "capsule", np.stack([knee, hock]), w * 0.85, col),
            Part(f"{side}_back_lower", "capsule", np.stack([hock, bpaw]), w * 0.75, _scale(col, 0.8)),
        ]

    # neck and head
    neck_ang = math.radians(U(15.0, 70.0))
    nd = _unit(_rot(fwd, -neck_ang))
    neck_root = put("neck_root", withers + fwd * 0.04 + down * th * 0.15, ("body", "neck"))
    head_c = put("head_center", neck_root + nd * sp["neck"], ("head", "neck"))
    put("throat", neck_root + nd * sp["neck"] * 0.5, ("neck",))
    pitch = math.radians(U(-40.0, 40.0))
    hd = _unit(_rot(fwd, pitch + math.radians(20.0)))  # head points forward and a little down
    hdown = _rot(hd, math.pi / 2)
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
    td = _rot(-fwd, -ta)
    tail_mid = put("tail_mid", tail_root + td * sp["tail"] * 0.5, ("tail",))
    td2 = _rot(td, math.radians(U(-40.0, 40.0)))
    tail_tip = put("tail_tip", tail_mid + td2 * sp["tail"] * 0.5, ("tail",))

    fur, belly = style.fur, style.belly
    head_poly = _ellipse_poly(head_c, hd * hr * 1.05, hdown * hr * 0.85, 24)
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
    parts.append(Part(f"{far}_ear_shape", "poly", ear_tri(lm[f"{far}_ear"], 1.0), 0.0, _scale(fur, 0.7)))
    parts.append(
        Part(
            "tail",
            "line",
            np.stack([tail_root, tail_mid, tail_tip]),
            0.06 * (th / 0.3) ** 0.5,
            _scale(fur, 0.9),
        )
    )
    parts.append(Part("body", "poly", body_poly, 0.0, fur))
    parts.append(
        Part(
            "belly",
            "poly",
            _ellipse_poly(chest * 0.2 + down * th * 0.3, fwd * 0.45, down * th * 0.17, 20),
            0.0,
            belly,
            label=False,
            shade=False,
        )
    )
    parts.append(Part("neck", "capsule", np.stack([neck_root - nd * 0.05, head_c]), th * 0.62, fur))
    parts.append(Part("head", "capsule", snout, hr * 1.05, _scale(fur, 1.05)))
    parts.append(Part("head", "poly", head_poly, 0.0, fur))
    parts.append(Part(f"{near}_ear_shape", "poly", ear_tri(lm[f"{near}_ear"], 1.1), 0.0, _scale(fur, 0.85)))
    dark = (20.0, 18.0, 16.0)
    parts.append(Part("nose_tip", "dot", nose[None], hr * 0.35, dark, label=False, shade=False))
    parts.append(Part("eye", "dot", eye_near[None], hr * 0.28, dark, label=False, shade=False))
    if turned:
        parts.append(Part("eye", "dot", eye_far[None], hr * 0.22, dark, label=False, shade=False))
    parts += leg_parts["near"]
    return Figure("quadruped", species, lm, owners, hidden, parts, facing, turned)
