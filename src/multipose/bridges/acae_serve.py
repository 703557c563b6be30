"""Serving a skeleton added with ``python -m multipose.acae add-skeleton`` as if it were a head.

The AE file of ``add-skeleton`` holds the AE (its union of heads) and, under ``extra_skeletons[NAME]``, a
sum-to-one affine map ``[L, K]`` from the AE's latents to NAME's joints. :class:`AddedSkeleton` turns the
predictions of the AE's heads on one batch of crops (image pixels, flip-tested when the predictor flip-tests, as
``add-skeleton`` ran them when it fitted the map) into NAME's keypoints: the heads' union pose and confidences
(:func:`~multipose.bridges.acae.union_points`) -> the confidence-weighted projection onto the latents -> the map
(:func:`~multipose.bridges.acae_fit.new_skeleton_keypoints`). Every map is affine and sums to one, so image pixels
serve as well as the crop-height units the map was fitted in.

:class:`~multipose.inference.Predictor` takes them as ``added={NAME: AddedSkeleton}`` and then accepts NAME in
its ``heads``; ``python -m multipose.predict CKPT INPUT --acae FILE --skeleton NAME`` is the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["AddedSkeleton", "load_added_skeletons"]


@dataclass
class AddedSkeleton:
    """One added skeleton: its ``name`` (what ``heads=[...]`` and ``--skeleton`` call it), its ``skeleton``
    (:class:`~multipose.skeletons.registry.Skeleton`), the ``ae`` whose heads (``ae.index_map``) feed it and the
    latent -> joint ``mapping [L, K]``."""

    name: str
    skeleton: Any
    ae: Any
    mapping: Tensor
    latents: str = (
        "projection"  # what the map was fitted on (new_skeleton_keypoints); files before it: projection
    )

    @property
    def heads(self) -> list[str]:
        """The heads whose predictions feed the new joints (the AE's union), in the AE's order."""
        return list(self.ae.index_map)

    @torch.no_grad()
    def __call__(self, keypoints: Mapping[str, Any]) -> np.ndarray:
        """``{head: [B, K_head, 3]}`` (x, y, score; every head of :attr:`heads`) -> ``[B, K, 3]`` float32 of the
        new skeleton: coordinates in the heads' units, scores from :func:`new_skeleton_keypoints`."""
        from multipose.bridges.acae import union_points
        from multipose.bridges.acae_fit import new_skeleton_keypoints

        missing = [h for h in self.heads if h not in keypoints]
        if missing:
            raise ValueError(f"added skeleton {self.name}: needs the predictions of heads {missing} too")
        kp = {h: torch.as_tensor(np.asarray(keypoints[h]), dtype=torch.float64) for h in self.heads}
        pose, conf = union_points(self.ae, self.ae.index_map, kp)
        coords, scores = new_skeleton_keypoints(self.ae, self.mapping, pose, conf, self.latents)
        return torch.cat([coords, scores[..., None]], dim=-1).numpy().astype(np.float32)


def load_added_skeletons(
    path: str | Path,
    names: Sequence[str] | None = None,
    mix: Any = None,
    skeletons: Mapping[str, Any] | str | None = None,
) -> dict[str, AddedSkeleton]:
    """The added skeletons ``names`` (default: all) of the AE file ``path``.

    ``mix`` (a :class:`~multipose.inference.MixSpec` or its dict): checked to have a head, with the same skeleton,
    for every dataset the AE was fitted on; an added skeleton named like one of its heads (``add-skeleton
    syn_mpii`` with a model that has a ``syn_mpii`` head) is returned as ``<name>_acae``. ``skeletons`` ``{name: skeleton name or YAML path}`` overrides the
    skeleton stored in the file (needed for a skeleton that ``add-skeleton`` read from a YAML file that is not
    registered); a plain name or path applies to the file's only added skeleton. Errors (:class:`~multipose.bridges.acae_model.AEFileError`) name the file and what to do.
    """
    from multipose.bridges.acae_model import AEFileError, load_ae
    from multipose.skeletons import get_skeleton

    ae, extra = load_ae(path)
    stored = dict(extra.get("extra_skeletons") or {})
    if not stored:
        raise AEFileError(
            f"{path}: the AE file has no added skeleton; write one with "
            "`python -m multipose.acae add-skeleton NAME ae=... out=...`"
        )
    names = list(stored) if names is None else [n if n in stored else _file_name(n) for n in names]
    unknown = [n for n in names if n not in stored]
    if unknown:
        raise AEFileError(f"{path}: no added skeleton {unknown}; the file has {sorted(stored)}")
    spec = None
    if mix is not None:
        from multipose.inference import MixSpec

        spec = MixSpec.from_dict(mix)
        want = dict(ae.meta.get("datasets") or {})
        lacking = {d: s for d, s in want.items() if d not in spec.names or spec.skeletons[d].name != str(s)}
        if lacking:
            have = {d: spec.skeletons[d].name for d in spec.names}
            raise AEFileError(
                f"{path}: the AE reads heads {want}, but the checkpoint lacks or differs on {lacking} (it has "
                f"{have}); use the checkpoint the AE was fitted with"
            )
    if isinstance(skeletons, (str, Path)):
        if len(stored) != 1:
            raise AEFileError(
                f"{path}: holds added skeletons {sorted(stored)}; a single skeleton override needs exactly one"
            )
        skeletons = {next(iter(stored)): str(skeletons)}
    out = {}
    for name in names:
        entry = stored[name]
        source = (skeletons or {}).get(name, entry.get("skeleton"))
        try:
            skel = get_skeleton(source)
        except (ValueError, OSError) as err:
            raise AEFileError(
                f"{path}: added skeleton {name}: cannot resolve its skeleton {source!r} ({err}); pass the "
                "skeleton's YAML file (--acae-skeleton / skeletons={name: FILE})"
            ) from None
        mapping = torch.as_tensor(entry["weights"], dtype=torch.float64)
        if mapping.dim() != 2 or mapping.shape[0] != ae.n_latent:
            raise AEFileError(
                f"{path}: extra_skeletons.{name}.weights has shape {tuple(mapping.shape)}; expected "
                f"[{ae.n_latent}, K] (the AE's latents x the new joints)"
            )
        names_file = list(entry.get("keypoints") or skel.keypoints)
        if mapping.shape[1] != skel.num_keypoints or names_file != list(skel.keypoints):
            raise AEFileError(
                f"{path}: added skeleton {name} maps to {mapping.shape[1]} joints {names_file[:5]}..., but "
                f"skeleton {skel.name} has {skel.num_keypoints} {list(skel.keypoints)[:5]}...; pass the "
                "skeleton it was fitted for"
            )
        key = f"{name}_acae" if spec is not None and name in spec.names else name
        from multipose.bridges.acae_fit import LATENT_SOURCES

        latents = str(entry.get("latents", "projection"))
        if latents not in LATENT_SOURCES:
            raise AEFileError(
                f"{path}: extra_skeletons.{name}.latents={latents!r}; expected one of {LATENT_SOURCES}"
            )
        out[key] = AddedSkeleton(key, skel, ae, mapping, latents)
    return out


def _file_name(name: str) -> str:
    """The file's name of an added skeleton asked for as ``<name>_acae`` (see :func:`load_added_skeletons`)."""
    return name[: -len("_acae")] if name.endswith("_acae") else name
