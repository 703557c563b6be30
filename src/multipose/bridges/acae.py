"""ACAE inside training and evaluation (Sárándi et al., WACV 2023; reference notes §2-§4, §8).

:class:`ACAEBridge` holds one affine-combining autoencoder per skeleton family with at least two skeletons in the
mix (:class:`~multipose.bridges.acae_model.AffineCombiningAE`, built by ``for_mix``), plus a second, *reference*
AE per family that only measures. Both are submodules, so they are saved in the checkpoint and load with it.

* ``on_fit_start``: the run's own AE comes from the checkpoint when it holds a fitted one (resume), else from
  ``bridge.acae.weights`` (an AE file of ``python -m multipose.acae fit``, checked against the mix), else it is fitted from the current heads' pseudo-ground truth (``multipose.bridges.acae_fit``). The
  reference AE likewise: checkpoint, ``bridge.acae.reference_weights``, or a fit on the other half of the same
  pseudo-GT pool (disjoint instances), so the measuring AE is never the regulariser itself (reference notes §8,
  "circularity").
* training (``variant: output_reg``, the variant the authors shipped): every head's joints on every sample as
  differentiable coordinates (:func:`multipose.losses.coords.heatmap_coords`, input pixels / input height =
  crop-height units), ``consistency = mean |P - W_rec P|`` with the AE frozen and no stop-gradient (MeTRAbs
  ``--regularize-to-manifold``; ``bridge.acae.stop_gradient: true`` detaches ``W_rec P`` instead), and
  ``aegt = |W_rec P - GT|`` on each sample's own labelled joints (GT read from the sample's target heatmaps).
  Weights: ``loss.acae.consistency`` and ``loss.acae.aegt``.
* validation: with ``evaluation.acae_projection: true`` the confidence-weighted projection of every head's
  prediction onto the AE's range is scored as variant ``acae`` (``val/<ds>/acae/<metric>``, and
  ``val/<ds>/cross/<head>/acae/...``); a dataset outside every AE family scores its raw prediction there.
  Label-free metrics every validation: ``val/<ds>/consistency/CHD_bc`` (bias-corrected cross-head disagreement),
  ``val/<ds>/consistency/acae_residual`` (reference AE) and ``val/<ds>/consistency/predictability``
  (:mod:`multipose.bridges.acae_metrics`).
* the oracle (synthetic world, ``bridge.acae.oracle: true``): an AE fitted once, at the first validation, on the
  hidden all-skeleton ground truth of ``fit_pool`` training instances (kept on the bridge, never in the checkpoint
  and never read by a loss); every validation then logs, on the validation instances' hidden ground truth in
  box-size units, ``val/<ds>/acae/oracle_residual`` (the oracle AE's residual), ``val/<ds>/acae/hidden_residual``
  (the run's AE's) and ``val/<ds>/acae/oracle_gap`` (their difference: how far the pseudo-GT AE is from the
  oracle). Without hidden ground truth (real data) these keys are absent.
* figures (:meth:`ACAEBridge.figures`, drawn by :mod:`multipose.bridges.acae_figures`): per family the encoder
  weight matrix (``acae_encoder_<family>``) and the latent points on a few validation crops
  (``acae_latents_<family>``), after each validation into ``pictures/`` and to TensorBoard / W&B.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from multipose.bridges.acae_metrics import bias_corrected_chd, cross_head_predictability
from multipose.bridges.base import Bridge

if TYPE_CHECKING:  # pragma: no cover
    from multipose.lit_module import PoseLitModule
    from multipose.models.pose_model import HeadOutputs

__all__ = ["ACAEBridge", "ACAEProjector", "consistency_residual", "projector_from_checkpoint"]

log = logging.getLogger(__name__)

VARIANTS = ("output_reg", "latent", "hybrid")
LOSS_TERMS = ("consistency", "aegt", "latent_gt", "teacher")


def _ae_class() -> Any:
    from multipose.bridges.acae_model import AffineCombiningAE

    return AffineCombiningAE


def union_points(
    ae: nn.Module, index: Mapping[str, Tensor], keypoints: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """``(points [B, J, 2], conf [B, J])`` in the AE's joint order from ``{head: [B, K, 3]}`` (x, y, score);
    a union joint several heads share is their confidence-weighted mean (``acae_model.gather_union``)."""
    from multipose.bridges.acae_model import gather_union

    heads = [h for h in index if h in keypoints]
    return gather_union(
        {h: keypoints[h][..., :2] for h in heads},
        {h: keypoints[h][..., 2] for h in heads},
        {h: index[h] for h in heads},
        ae.n_joints,
    )


def consistency_residual(
    heads: Mapping[str, Tensor], index: Mapping[str, Tensor], union: Tensor, w_rec: Tensor
) -> Tensor:
    """``[B, sum_h K_h', 2]``: every head's joint minus the AE reconstruction of the union pose at that joint.

    ``heads`` ``{head: [B, K_h, 2]}``, ``union [B, J, 2]`` (the heads gathered), ``w_rec [J, J]`` input-major.
    With one union joint per head joint (``merge: none``) this is ``P - W_rec P`` of the reference; joints
    outside the AE (index -1) are left out.
    """
    rec = torch.einsum("bjc,jk->bkc", union, w_rec.to(union))
    parts = []
    for h, pts in heads.items():
        idx = index[h].to(pts.device)
        keep = (idx >= 0).nonzero(as_tuple=True)[0]
        parts.append(pts[:, keep].to(union) - rec[:, idx[keep]])
    return torch.cat(parts, dim=1)


# ----------------------------------------------------------------------------------------------- AE files
def _weight_files(value: Any, families: Sequence[str], option: str) -> dict[str, str]:
    """``bridge.acae.weights`` as ``{family: path}``: a mapping, or one path when the mix has one AE family."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(families))
        if unknown:
            raise ValueError(
                f"{option} names families {unknown} that have no AE in this mix (it has {list(families)})"
            )
        return {str(k): str(v) for k, v in value.items() if v}
    if len(families) != 1:
        raise ValueError(
            f"{option}={value}: this mix has one AE per family {list(families)}; give {{family: file}}, "
            f"e.g. {option}={{{families[0]}: FILE, ...}}"
        )
    return {families[0]: str(value)}


# ----------------------------------------------------------------------------------------------- projection
class ACAEProjector:
    """Confidence-weighted projection of several heads' keypoints onto the AEs' ranges.

    ``families``: ``[(ae, {head: LongTensor[K_head] index into the AE's joints, -1 = not in the AE})]``.
    """

    def __init__(self, families: Sequence[tuple[nn.Module, Mapping[str, Tensor]]]) -> None:
        self.families = [(ae, dict(index)) for ae, index in families]

    def heads_needed(self, heads: Sequence[str]) -> list[str]:
        """``heads`` plus every head that shares an AE with one of them (the projection reads them all)."""
        out = list(heads)
        for _, index in self.families:
            if any(h in index for h in heads):
                out += [h for h in index if h not in out]
        return out

    @torch.no_grad()
    def __call__(self, keypoints: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{head: [B, K, 3]}`` (x, y, score) -> the same with ``(x, y)`` projected for every head of a family
        whose heads are all given; other heads (and joints outside the AE) are returned unchanged."""
        out = {h: np.array(k, np.float32, copy=True) for h, k in keypoints.items()}
        for ae, index in self.families:
            if not all(h in keypoints for h in index):
                continue
            points, conf = union_points(ae, index, {h: torch.as_tensor(keypoints[h]) for h in index})
            projected = ae.project(points.double(), conf.double().clamp_min(1e-6)).float().numpy()
            for h, idx in index.items():
                keep = (idx >= 0).numpy()
                out[h][:, keep, :2] = projected[:, idx[idx >= 0].numpy()]
        return out


# ----------------------------------------------------------------------------------------------- the bridge
class ACAEBridge(Bridge):
    """See the module docstring. Settings: ``bridge.acae`` (``conf/bridge/acae.yaml``)."""

    name = "acae"
    variants = ("acae", "acae_latent")

    def __init__(
        self,
        settings: Mapping[str, Any],
        loss: Mapping[str, Any],
        model_config: Mapping[str, Any],
        mix: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, loss, model_config, mix)
        s = self.settings
        variant = str(s.get("variant", "output_reg"))
        if variant not in VARIANTS:
            raise ValueError(f"bridge.acae.variant={variant!r} is unknown; choose one of {list(VARIANTS)}")
        unknown = sorted(set(self.loss_weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"loss.acae has unknown terms {unknown}; the ACAE bridge has {list(LOSS_TERMS)}")
        self.variant = variant
        self.stop_gradient = bool(s.get("stop_gradient", False))
        sa = dict(s.get("soft_argmax") or {})
        self.sa_radius, self.sa_beta = int(sa.get("radius", 3)), float(sa.get("beta", 5.0))
        heads = dict(model_config["heads"])
        skeletons = {d: str(h["skeleton"]) for d, h in heads.items()}
        self.heads = list(heads)
        cls = _ae_class()
        kw: dict[str, Any] = {"n_latent": int(s.get("n_latent", 32))}
        if s.get("n_latent_sided") is not None:
            kw["n_latent_sided"] = int(s["n_latent_sided"])
        parts = tuple(s.get("parts") or ("body",))
        merge = str(s.get("merge", "none"))
        seed = int(s.get("seed", 0))
        self.aes = nn.ModuleDict()
        self.reference = nn.ModuleDict()
        self.index: dict[str, dict[str, Tensor]] = {}
        from multipose.bridges.acae_model import mix_families

        present = mix_families(skeletons)
        for fam in s.get("families") or ("human", "animal"):
            fam = str(fam)
            if len(present.get(fam, [])) < 2:  # an AE needs two skeletons to bridge
                continue
            ae, index = cls.for_mix(skeletons, family=fam, parts=parts, merge=merge, seed=seed, **kw)
            if len(index) < 2:
                continue
            self.aes[fam] = ae
            self.reference[fam] = cls.for_mix(
                skeletons, family=fam, parts=parts, merge=merge, seed=seed + 1, **kw
            )[0]
            self.index[fam] = {d: torch.as_tensor(i, dtype=torch.long) for d, i in index.items()}
        for p in self.parameters():  # the AEs are fitted, never trained by the pose optimiser
            p.requires_grad_(False)
        # latent / hybrid: one latent-point head per family, trained with the model (multipose.bridges.acae_latent)
        self.latent_heads = nn.ModuleDict()
        if variant != "output_reg":
            from multipose.bridges.acae_latent import build_latent_head

            for fam, ae in self.aes.items():
                self.latent_heads[fam] = build_latent_head(model_config, ae.n_latent)
        self.teacher_start_step = int(s.get("teacher_start_step", 0) or 0)
        self.register_buffer("fitted", torch.zeros(len(self.aes), dtype=torch.bool))
        self.register_buffer("reference_fitted", torch.zeros(len(self.aes), dtype=torch.bool))
        self._mix = mix
        self._geometry: tuple[dict[str, Tensor], float] | None = None
        self._val: dict[str, Any] = {}
        # the oracle: {family: AE fitted on hidden GT, or None without hidden GT}; a plain dict, not a submodule,
        # so it is never part of the checkpoint
        self._oracle: dict[str, Any] = {}
        self._val_lookup: dict[str, dict[int, Any]] = {}
        self.reset_validation()

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, Any]:
        """The AEs' descriptions (joints, datasets, skeletons), checked when a checkpoint loads."""
        return {"describe": {fam: ae.describe() for fam, ae in self.aes.items()}}

    def set_extra_state(self, state: Any) -> None:
        from multipose.bridges.acae_model import check_description

        stored = dict((state or {}).get("describe", {}))
        if sorted(stored) != sorted(self.aes):
            raise ValueError(
                f"checkpoint: its ACAE families {sorted(stored)} differ from this mix's {sorted(self.aes)}"
            )
        for fam, ae in self.aes.items():
            check_description(stored[fam], ae.describe(), f"checkpoint ACAE ({fam})")

    def projector(self, reference: bool = False) -> ACAEProjector:
        aes = self.reference if reference else self.aes
        return ACAEProjector([(aes[f], self.index[f]) for f in self.aes])

    # ------------------------------------------------------------------ fitting
    def on_fit_start(self, lit: PoseLitModule) -> None:
        """Every AE from the checkpoint, else its file, else fitted from the heads: the run's AE and the reference
        AE of a family are fitted on the two disjoint halves of one pseudo-GT pool (rank 0, then broadcast)."""
        if not len(self.aes):
            log.warning("ACAE: no skeleton family has two skeletons in this mix; the bridge does nothing")
            return
        self.load_files(reference=False)
        self.load_files(reference=True)
        todo = {
            fam: [
                r for r, flags in ((False, self.fitted), (True, self.reference_fitted)) if not bool(flags[i])
            ]
            for i, fam in enumerate(self.aes)
        }
        todo = {fam: which for fam, which in todo.items() if which}
        if not todo:
            return
        trainer = getattr(lit, "_trainer", None)
        states = None
        if trainer is None or trainer.is_global_zero:
            states = {
                fam: self.fit_from_heads(
                    lit, fam, [self.reference[fam] if r else self.aes[fam] for r in which]
                )
                for fam, which in todo.items()
            }
        if trainer is not None and trainer.world_size > 1:
            states = trainer.strategy.broadcast(states, src=0)
        for i, fam in enumerate(self.aes):
            for r, state in zip(todo.get(fam, []), (states or {}).get(fam, []), strict=True):
                (self.reference if r else self.aes)[fam].load_state_dict(state)
                (self.reference_fitted if r else self.fitted)[i] = True

    def load_files(self, reference: bool) -> None:
        """Load ``bridge.acae.weights`` (or ``reference_weights``) into the AEs not fitted yet (the checkpoint's
        fitted AEs win: a resumed run keeps the AE it trained with)."""
        from multipose.bridges.acae_model import AEFileError, load_ae

        flags = self.reference_fitted if reference else self.fitted
        aes = self.reference if reference else self.aes
        option = "bridge.acae.reference_weights" if reference else "bridge.acae.weights"
        value = self.settings.get("reference_weights" if reference else "weights")
        files = _weight_files(value, list(aes), option) if value else {}
        for i, fam in enumerate(aes):
            if bool(flags[i]):
                log.info("ACAE: %s %s from the checkpoint", fam, option.split(".")[-1])
            elif fam in files:
                try:
                    loaded, _ = load_ae(files[fam], expect=aes[fam])
                except AEFileError as err:
                    meta = aes[fam].meta
                    raise AEFileError(
                        f"{option}: {err} (this run's AE: family {fam}, merge={meta.get('merge')}, "
                        f"parts={meta.get('parts')}; fit the file with the same settings)"
                    ) from None
                aes[fam].load_state_dict(loaded.state_dict())
                flags[i] = True
                log.info("ACAE: %s %s loaded from %s", fam, option.split(".")[-1], files[fam])

    def fit_from_heads(
        self, lit: PoseLitModule, family: str, templates: Sequence[nn.Module]
    ) -> list[dict[str, Tensor]]:
        """State dicts of ``templates`` (AEs of ``family`` at their initial weights) fitted on the current heads'
        pseudo-ground truth (``acae_fit.collect_pseudo_gt``: flip test, crop-height units, joints weighted by their
        heatmap peak): ``bridge.acae.fit_pool`` training instances per template, drawn with ``bridge.acae.seed``,
        template ``i`` fitted on the pool's instances ``i::len(templates)`` (disjoint)."""
        import copy

        from multipose.bridges import acae_fit

        s = self.settings
        seed, k = int(s.get("seed", 0)), len(templates)
        pool = int(s.get("fit_pool", 2000))
        pgt = acae_fit.collect_pseudo_gt(
            lit.model, lit.trainer.datamodule, templates[0], pool=pool * k, seed=seed
        )
        out = []
        for i, template in enumerate(templates):
            ae = copy.deepcopy(template)
            for p in ae.parameters():
                p.requires_grad_(True)
            result = acae_fit.fit_acae(
                pgt.poses[i::k],
                pgt.weights[i::k],
                ae,
                lam=float(s.get("l1", 0.3)),
                steps=int(s.get("fit_steps", 3000)),
                seed=seed + i,
            )
            log.info(
                "ACAE: %s %s fitted on %d pseudo-GT poses: held-out error %.4f crop heights",
                family,
                "AE" if i == 0 and template is self.aes[family] else "reference AE",
                pgt.poses[i::k].shape[0],
                result.heldout_mean,
            )
            out.append({k_: v.detach().cpu() for k_, v in result.ae.state_dict().items()})
        return out

    # ------------------------------------------------------------------ training
    def geometry(self, lit: PoseLitModule | None = None) -> tuple[dict[str, Tensor], float]:
        """``({head: codec stride (x, y)}, input height)`` from the mix description."""
        if self._geometry is None:
            from multipose.inference import MixSpec

            mix = self._mix if self._mix is not None else getattr(lit, "mix", None)
            if mix is None:
                raise RuntimeError("ACAEBridge needs the mix description (PoseLitModule(mix=...))")
            spec = MixSpec.from_dict(mix)
            strides = {d: torch.as_tensor(spec.codecs[d].stride, dtype=torch.float32) for d in spec.names}
            self._geometry = (strides, float(spec.input_size[0]))
        return self._geometry

    def head_points(
        self, lit: PoseLitModule, heatmaps: Mapping[str, Tensor], family: str
    ) -> dict[str, Tensor]:
        """``{head: [B, K, 3]}``: every head of ``family`` as differentiable points in crop-height units (input
        pixels / input height) with its heatmap peaks (detached) as the third column."""
        from multipose.losses.coords import heatmap_coords

        strides, height = self.geometry(lit)
        out = {}
        for h in self.index[family]:
            xy, peak = heatmap_coords(heatmaps[h], strides[h], self.sa_radius, self.sa_beta)
            out[h] = torch.cat([xy / height, peak[..., None].to(xy)], dim=-1)
        return out

    def training_losses(
        self, lit: PoseLitModule, batch: Mapping[str, Tensor], outputs: HeadOutputs
    ) -> dict[str, Tensor]:
        from multipose.bridges.acae_latent import VARIANT_TERMS

        w = {t: float(self.loss_weights.get(t, 0.0) or 0.0) for t in LOSS_TERMS}
        on = {t: t in VARIANT_TERMS[self.variant] and w[t] > 0 and lit.loss_on("acae", t) for t in LOSS_TERMS}
        if on["teacher"] and int(getattr(lit, "global_step", 0)) < self.teacher_start_step:
            on["teacher"] = False
        if not any(on.values()) or not len(self.aes):
            return {}
        if outputs.all is None:
            raise RuntimeError("loss.acae needs every head on every sample (model.heads_on=all)")
        if not bool(self.fitted.all()):
            raise RuntimeError("ACAE loss before the autoencoder was fitted (on_fit_start did not run)")
        totals = {t: batch["image"].new_zeros(()) for t in LOSS_TERMS if on[t]}
        for fam, ae in self.aes.items():
            kp = self.head_points(lit, outputs.all, fam)
            index = self.index[fam]
            union, _ = union_points(ae, index, kp)
            union = union.to(batch["image"].dtype)
            w_rec = ae.reconstruction_weights().detach()
            if on["consistency"]:
                target = union.detach() if self.stop_gradient else union
                res = consistency_residual({h: p[..., :2] for h, p in kp.items()}, index, target, w_rec)
                totals["consistency"] = totals["consistency"] + res.abs().mean()
            if on["aegt"]:
                rec = torch.einsum("bjc,jk->bkc", union, w_rec.to(union))
                totals["aegt"] = totals["aegt"] + self._aegt(lit, batch, outputs, fam, rec)
            if on["latent_gt"] or on["teacher"]:
                latents = self.latent_points(lit, outputs, fam)
                if on["latent_gt"]:
                    from multipose.bridges.acae_latent import decoded_joints

                    decoded = decoded_joints(latents, ae)
                    totals["latent_gt"] = totals["latent_gt"] + self._aegt(lit, batch, outputs, fam, decoded)
                if on["teacher"]:
                    from multipose.bridges.acae_latent import teacher_loss

                    totals["teacher"] = totals["teacher"] + teacher_loss(latents, union, ae)
        return {t: w[t] * v for t, v in totals.items()}

    def latent_points(self, lit: PoseLitModule, outputs: HeadOutputs, family: str) -> Tensor:
        """``[B, L, 2]`` differentiable latent points (crop-height units) of ``family``'s latent head on the batch's
        backbone features."""
        from multipose.losses.coords import heatmap_coords

        if outputs.features is None:
            raise RuntimeError(
                "bridge.acae.variant latent/hybrid needs the backbone features (HeadOutputs.features)"
            )
        strides, height = self.geometry(lit)
        stride = strides[next(iter(self.index[family]))]
        xy, _ = heatmap_coords(
            self.latent_heads[family](outputs.features), stride, self.sa_radius, self.sa_beta
        )
        return xy / height

    def _aegt(
        self, lit: PoseLitModule, batch: Mapping[str, Tensor], outputs: HeadOutputs, fam: str, rec: Tensor
    ) -> Tensor:
        """Mean L1 (crop-height units) between the reconstruction and each sample's own labelled joints; the GT
        point is the windowed soft-argmax of the sample's target heatmap (no gradient)."""
        from multipose.losses.coords import heatmap_coords

        strides, height = self.geometry(lit)
        err = rec.new_zeros(())
        count = rec.new_zeros(())
        for h, idx in self.index[fam].items():
            sel = outputs.mask(self.heads.index(h)).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            k = idx.numel()
            idx = idx.to(rec.device)
            keep = (idx >= 0).nonzero(as_tuple=True)[0]
            with torch.no_grad():
                gt, _ = heatmap_coords(batch["heatmap"][sel, :k], strides[h], self.sa_radius, self.sa_beta)
            weight = batch["heatmap_weight"][sel][:, keep].to(rec.dtype)
            diff = (rec[sel][:, idx[keep]] - gt[:, keep].to(rec.dtype) / height).abs().sum(-1)
            err = err + (diff * weight).sum()
            count = count + weight.sum()
        return err / (2.0 * count.clamp_min(1.0))

    # ------------------------------------------------------------------ validation
    def variant_names(self, lit: PoseLitModule) -> tuple[str, ...]:
        """``("acae",)`` when ``evaluation.acae_projection`` is on and the AEs are fitted; ``acae_latent`` too for
        the variants with a latent head (latent, hybrid)."""
        on = bool(lit.eval_cfg.get("acae_projection", False))
        if len(self.aes) and not bool(self.fitted.all()):
            if on or len(self.latent_heads):
                log.warning(
                    "ACAE: the autoencoder is not fitted in this checkpoint; its variants are not scored"
                )
            return ()
        return (("acae",) if on else ()) + (("acae_latent",) if len(self.latent_heads) else ())

    def reset_validation(self) -> None:
        self._val = {"offsets": {}, "residual": {}, "points": {}, "hidden": {}}

    def _family_of(self, dataset: str) -> str | None:
        return next((f for f, index in self.index.items() if dataset in index), None)

    def validation_variants(
        self, lit: PoseLitModule, batch: Mapping[str, Any], dataset: str, predictions: Mapping[str, Any]
    ) -> dict[str, dict[str, np.ndarray]]:
        kp = {h: p.keypoints for h, p in predictions.items()}
        fam = self._family_of(dataset)
        if fam is not None and bool(self.fitted.all()):
            missing = [h for h in self.index[fam] if h not in kp]
            if missing:
                extra = lit.predictor.predict_batch(batch, dataset, missing)
                kp.update({h: p.keypoints for h, p in extra.items()})
            self._collect(lit, fam, dataset, batch, kp)
        names = self.variant_names(lit)
        out: dict[str, dict[str, np.ndarray]] = {}
        if "acae" in names:
            projected = self.projector()(kp) if fam is not None else dict(kp)
            out["acae"] = {h: projected[h] for h in predictions}
        if "acae_latent" in names:
            decoded = self.latent_predictions(lit, batch, dataset) if fam is not None else {}
            out["acae_latent"] = {h: decoded.get(h, kp[h]) for h in predictions}
        return out

    @torch.no_grad()
    def latent_predictions(
        self, lit: PoseLitModule, batch: Mapping[str, Any], dataset: str
    ) -> dict[str, np.ndarray]:
        """``{head: [B, K, 3]}`` image-pixel keypoints of every head of ``dataset``'s family from the decoded latent
        head (flip-tested like the heads); scores: the decoder's absolute weights over the latents' peaks."""
        from multipose.bridges.acae_latent import decoded_joints, latent_heatmaps

        fam = self._family_of(dataset)
        ae, index = self.aes[fam], self.index[fam]
        predictor = lit.predictor
        first = next(iter(index))
        images = batch["image"]
        didx = torch.full(
            (images.shape[0],), lit.model.head_index(dataset), dtype=torch.long, device=images.device
        )
        maps = latent_heatmaps(
            self.latent_heads[fam], lit.model, images, didx, predictor.flip_test, predictor.mix.codecs[first],
            ae.latent_partners,
        )  # fmt: skip
        use_udp = predictor.mix.dataset(dataset).use_udp
        z = torch.as_tensor(
            predictor.decode(maps, first, batch["center"], batch["scale"], use_udp), dtype=torch.float64
        )
        joints = decoded_joints(z[..., :2], ae)
        reach = ae.decoder_weights().detach().abs()
        scores = z[..., 2] @ (reach / reach.sum(0, keepdim=True).clamp_min(1e-12))
        out = {}
        for h, idx in index.items():
            pts = torch.zeros(images.shape[0], idx.numel(), 3, dtype=torch.float64)
            keep = idx >= 0
            pts[:, keep, :2] = joints[:, idx[keep]]
            pts[:, keep, 2] = scores[:, idx[keep]]
            out[h] = pts.numpy().astype(np.float32)
        return out

    def _collect(
        self,
        lit: PoseLitModule,
        fam: str,
        dataset: str,
        batch: Mapping[str, Any],
        kp: Mapping[str, np.ndarray],
    ) -> None:
        """Pool one validation batch's inputs of the label-free metrics."""
        from multipose.evaluation.consistency import box_size
        from multipose.inference import MixSpec
        from multipose.skeletons import correspondence

        scale = batch["scale"]
        sizes = box_size(scale.detach().cpu().numpy() if isinstance(scale, Tensor) else np.asarray(scale))
        index = self.index[fam]
        heads = {h: np.asarray(kp[h], np.float64) for h in index}
        v = self._val
        v["points"].setdefault(dataset, []).append(({h: p[..., :2] for h, p in heads.items()}, sizes))
        if self.settings.get("oracle", True):
            hidden = self._hidden_batch(lit, fam, dataset, batch)
            if hidden is not None:
                v["hidden"].setdefault(dataset, []).append((*hidden, sizes))
        if bool(self.reference_fitted.all()):
            ref = self.reference[fam]
            union, _ = union_points(ref, index, {h: torch.as_tensor(p) for h, p in heads.items()})
            res = consistency_residual(
                {h: torch.as_tensor(p[..., :2]) for h, p in heads.items()},
                index,
                union,
                ref.reconstruction_weights().detach(),
            )
            v["residual"].setdefault(dataset, []).append(
                (res.norm(dim=-1) / torch.as_tensor(sizes)[:, None]).reshape(-1).numpy()
            )
        skeletons = MixSpec.from_dict(self._mix if self._mix is not None else lit.mix).skeletons
        own = heads[dataset][..., :2]
        for h in index:
            if h == dataset:
                continue
            pairs = correspondence(skeletons[dataset], skeletons[h])
            if pairs:
                ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
                off = (own[:, ia] - heads[h][:, ib, :2]) / sizes[:, None, None]
                v["offsets"].setdefault((dataset, h), []).append(off)

    def validation_metrics(self, lit: PoseLitModule) -> dict[str, float]:
        from multipose.evaluation.mix import _all_gather

        gathered = _all_gather(self._val)
        self.reset_validation()
        merged: dict[str, dict[Any, list]] = {"offsets": {}, "residual": {}, "points": {}, "hidden": {}}
        for part in gathered:
            for key in merged:
                for k, items in part[key].items():
                    merged[key].setdefault(k, []).extend(items)
        out: dict[str, float] = {}
        chd: dict[str, list[float]] = {}
        for (dataset, _h), items in merged["offsets"].items():
            chd.setdefault(dataset, []).append(bias_corrected_chd(np.concatenate(items)))
        for dataset, values in chd.items():
            out[f"val/{dataset}/consistency/CHD_bc"] = float(np.nanmean(values))
        for dataset, items in merged["residual"].items():
            out[f"val/{dataset}/consistency/acae_residual"] = float(np.concatenate(items).mean())
        for dataset, items in merged["points"].items():
            sizes = np.concatenate([s for _, s in items])
            heads = {h: np.concatenate([p[h] for p, _ in items]) for h in items[0][0]}
            index = self.index[self._family_of(dataset)]
            scores = [
                cross_head_predictability(heads[a][:, index[a] >= 0], heads[b][:, index[b] >= 0], sizes)
                for a in heads
                for b in heads
                if a != b
            ]
            if scores:
                out[f"val/{dataset}/consistency/predictability"] = float(np.nanmean(scores))
        for dataset, items in merged["hidden"].items():
            out.update(self._oracle_metrics(lit, dataset, items))
        return out

    # ------------------------------------------------------------------ figures
    def figures(self, lit: PoseLitModule, batch: Mapping[str, Any], crops: int = 4) -> dict[str, np.ndarray]:
        """Per family with a fitted AE: ``acae/encoder_<family>`` (the encoder weights ``[J, L]``, one row per
        union joint) and ``acae/latents_<family>`` (up to ``crops`` crops of the family's datasets with the heads'
        union joints and the latents projected from them, in crop pixels)."""
        from multipose.bridges.acae_figures import latents_image, weights_image
        from multipose.inference import MixSpec, Predictor

        if not len(self.aes) or not bool(self.fitted.all()):
            return {}
        predictor = getattr(lit, "predictor", None)
        if predictor is None:
            spec = MixSpec.from_dict(self._mix if self._mix is not None else lit.mix)
            predictor = Predictor(lit.model, spec, flip_test=bool(lit.eval_cfg.get("flip_test", True)))
        names = predictor.mix.names
        out: dict[str, np.ndarray] = {}
        for fam, ae in self.aes.items():
            out[f"acae/encoder_{fam}"] = weights_image(
                ae.encoder_weights().detach().cpu().numpy(), ae.joint_names, ae.n_latent_sided
            )
            index = self.index[fam]
            rows = [i for i, d in enumerate(batch["dataset_idx"].tolist()) if names[int(d)] in index][:crops]
            if not rows:
                continue
            images = batch["image"][rows]
            maps = predictor.heatmaps(images, list(index))
            kp = {}
            for h, hm in maps.items():  # decoded with each head's codec: input (crop) pixels
                coords, scores = predictor.mix.codecs[h].decode(hm.float().cpu())
                kp[h] = torch.cat([torch.as_tensor(coords), torch.as_tensor(scores)[..., None]], -1).double()
            pose, conf = union_points(ae, index, kp)
            latents = ae.project_latents(pose, conf.clamp_min(1e-6))
            out[f"acae/latents_{fam}"] = latents_image(
                list(images.detach().float().cpu().numpy()),
                pose.numpy(),
                conf.numpy(),
                latents.detach().numpy(),
                ae.n_latent_sided,
            )
        return out

    # ------------------------------------------------------------------ the oracle (synthetic world)
    def _hidden_batch(
        self, lit: PoseLitModule, fam: str, dataset: str, batch: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The hidden all-skeleton ground truth of a validation batch's instances in ``fam``'s union, image pixels:
        ``(poses [B, J, 2], labelled weights [B, J])``; None when an instance has none (real data)."""
        from multipose.bridges.acae_model import gather_union

        dm = getattr(getattr(lit, "_trainer", None), "datamodule", None)
        if dm is None or "ann_id" not in batch:
            return None
        if dataset not in self._val_lookup:
            self._val_lookup[dataset] = {int(i.ann_id): i for i in dm.val_instances(dataset)}
        lookup = self._val_lookup[dataset]
        ann = batch["ann_id"]
        ann = ann.detach().cpu().numpy() if isinstance(ann, Tensor) else np.asarray(ann)
        insts = [lookup.get(int(a)) for a in ann.reshape(-1)]
        skeletons = dict(self.aes[fam].meta.get("datasets") or {})
        if not skeletons or any(
            i is None or not all(s in i.extra_gt for s in skeletons.values()) for i in insts
        ):
            return None
        raw = {
            d: torch.as_tensor(np.stack([i.extra_gt[s] for i in insts]), dtype=torch.float64)
            for d, s in skeletons.items()
        }
        pose, weight = gather_union(
            {d: r[..., :2] for d, r in raw.items()},
            {d: (r[..., 2] > 0).double() for d, r in raw.items()},
            self.aes[fam].index_map,
            self.aes[fam].n_joints,
        )
        return pose.numpy(), weight.numpy()

    def oracle(self, lit: PoseLitModule, fam: str) -> nn.Module | None:
        """The oracle AE of ``fam`` (fitted at the first call on the hidden ground truth of ``bridge.acae.fit_pool``
        training instances, with the run's AE shape, initial weights, ``l1`` and seed), or None when the training
        instances have no finite hidden ground truth. Cached on the bridge, never saved."""
        if fam not in self._oracle:
            # validation runs under inference mode: the fit needs autograd (and tensors made outside that mode)
            with torch.inference_mode(False), torch.enable_grad():
                self._oracle[fam] = self._fit_oracle(lit, fam)
        return self._oracle[fam]

    def _fit_oracle(self, lit: PoseLitModule, fam: str) -> nn.Module | None:
        from multipose.bridges import acae_fit

        dm = getattr(getattr(lit, "_trainer", None), "datamodule", None)
        template = self.aes[fam]
        skeletons = dict(template.meta.get("datasets") or {})
        if dm is None or not skeletons:
            return None

        def has_hidden(inst: Any) -> bool:
            return all(s in inst.extra_gt and np.isfinite(inst.extra_gt[s]).all() for s in skeletons.values())

        s = self.settings
        seed = int(s.get("seed", 0))
        instances = {d: [i for i in acae_fit._train_instances(dm, d) if has_hidden(i)] for d in skeletons}
        instances = {d: v for d, v in instances.items() if v}
        chosen = acae_fit.select_pool(instances, int(s.get("fit_pool", 2000)), seed) if instances else {}
        pool = [instances[d][int(k)] for d, idx in chosen.items() for k in idx]
        if len(pool) < 2:
            log.info("ACAE: no hidden ground truth in the training data (%s); no oracle metrics", fam)
            return None
        poses, weights = acae_fit.hidden_union(pool, template)
        ae = type(template).from_describe(template.describe())  # like the run's AE, at its initial weights
        for p in ae.parameters():
            p.requires_grad_(True)
        steps = int(s.get("oracle_steps") or s.get("fit_steps", 3000))
        result = acae_fit.fit_acae(poses, weights, ae, lam=float(s.get("l1", 0.3)), steps=steps, seed=seed)
        for p in ae.parameters():
            p.requires_grad_(False)
        log.info(
            "ACAE: %s oracle AE fitted on the hidden ground truth of %d training instances: held-out error %.4f",
            fam,
            len(pool),
            result.heldout_mean,
        )
        return ae

    def _oracle_metrics(self, lit: PoseLitModule, dataset: str, items: list) -> dict[str, float]:
        """``acae/oracle_residual``, ``acae/hidden_residual`` and ``acae/oracle_gap`` of ``dataset`` from its pooled
        hidden ground truth ``[(poses, weights, box sizes)]`` (box-size units, labelled joints)."""
        fam = self._family_of(dataset)
        oracle = None if fam is None else self.oracle(lit, fam)
        if oracle is None:
            return {}
        P = torch.as_tensor(np.concatenate([p for p, _, _ in items]), dtype=torch.float64)
        w = torch.as_tensor(np.concatenate([q for _, q, _ in items]), dtype=torch.float64)
        size = torch.as_tensor(np.concatenate([z for _, _, z in items]), dtype=torch.float64)[:, None]

        def residual(ae: nn.Module) -> float:
            with torch.no_grad():
                dist = (P - ae(P)).norm(dim=-1) / size
            return float((dist * w).sum() / w.sum().clamp_min(1e-12))

        ours, best = residual(self.aes[fam]), residual(oracle)
        return {
            f"val/{dataset}/acae/oracle_residual": best,
            f"val/{dataset}/acae/hidden_residual": ours,
            f"val/{dataset}/acae/oracle_gap": ours - best,
        }


def projector_from_checkpoint(ckpt: str | Path, reference: bool = False) -> ACAEProjector:
    """The :class:`ACAEProjector` of a training checkpoint of a ``+bridge=acae`` run (its fitted AEs); an error
    naming the file when it has none."""
    from multipose.models.checkpoints import read_checkpoint

    raw = read_checkpoint(ckpt)
    hp = raw.get("hyper_parameters") or {}
    settings = (hp.get("bridge") or {}).get("acae")
    state = {
        k[len("bridges.acae.") :]: v
        for k, v in (raw.get("state_dict") or {}).items()
        if k.startswith("bridges.acae.")
    }
    if settings is None or not state:
        raise ValueError(
            f"{ckpt}: this checkpoint has no ACAE; --project needs a checkpoint trained with +bridge=acae"
        )
    bridge = ACAEBridge(settings, {}, hp["model_config"], hp.get("mix"))
    bridge.load_state_dict(state)
    if not bool(bridge.fitted.all()):
        raise ValueError(f"{ckpt}: the checkpoint's ACAE was never fitted; --project needs a fitted one")
    return bridge.projector(reference=reference)
