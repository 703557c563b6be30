"""``PoseBHBridge``: PoseBH (CVPR 2025) keypoint prototypes, their losses and cross-type self-supervision inside
the training module (``+bridge=posebh``). See ``docs/posebh.md`` for the method, the schedule and the switches.

Loss terms (``train/posebh/<term>``, gated by the stage schedule with ``lit.loss_on("posebh", term)``):

* ``phm`` = alpha * sum_d MSE_w(Ĥ_d[images of d], Y_d): prototype heatmaps toward the ground truth;
* ``ppc`` = beta * sum_d CE(|cos| logits over d's prototypes, Sinkhorn target) and ``ppd`` = gamma * sum_d
  mean (1 - z_target)^2 on every pixel inside a ground-truth Gaussian window;
* ``css`` = zeta * sum_d [MSE_w(H_d, T_d) + alpha MSE_w(Ĥ_d, T_d) + beta PPC(T_d) + gamma PPD(T_d)] on the
  images of the other datasets (pseudo-labels ``T_d``, :mod:`.css`);
  (``css_confident`` / ``css_kept``: the shares of the candidate (image, keypoint) pairs that pass the confidence
  test / both tests);
* ``cps`` = delta * sum_d [beta PPC + gamma PPD + alpha MSE] on clustered prototypes (:mod:`.cps`), only with
  ``bridge.posebh.cps.enabled`` (default off); the clusters are fitted once, at the first step with the prototypes
  frozen, and stored in the buffers ``cps_prototypes`` / ``cps_owner`` / ``cps_count``.

The prototypes (buffer ``prototypes [J, M, F]``) never receive gradient: while the stage schedule does not freeze
them (``bridges.posebh.prototypes`` in a stage's ``frozen`` list) they follow an EMA of the correctly-nearest
pixel embeddings, applied after the optimiser step and averaged over the DDP ranks. The logits of a step use the
prototypes before that step's update, as released.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from multipose.bridges.base import Bridge
from multipose.bridges.posebh.css import match_distance, pseudo_labels, pseudo_targets
from multipose.bridges.posebh.embedding import KeypointEmbedding
from multipose.bridges.posebh.losses import contrastive, sample_pixels
from multipose.bridges.posebh.prototypes import (
    average_across_ranks,
    ema_update,
    init_prototypes,
    keypoint_maps,
    similarity_maps,
)
from multipose.data.codecs import UDPHeatmap
from multipose.losses import keypoint_mse

if TYPE_CHECKING:  # pragma: no cover
    from multipose.lit_module import PoseLitModule
    from multipose.models.pose_model import HeadOutputs

__all__ = ["PoseBHBridge", "DEFAULT_SETTINGS", "PAPER_WEIGHTS", "TERMS"]

log = logging.getLogger(__name__)

TERMS = ("phm", "ppc", "ppd", "css", "cps")
#: loss.posebh at the paper's (released config's) values
PAPER_WEIGHTS = {"alpha": 3.33e-6, "beta": 1.25e-7, "gamma": 1.25e-8, "zeta": 1e-3, "delta": 1e-2}
#: bridge.posebh settings and their defaults (the released ViT-B config)
DEFAULT_SETTINGS: dict[str, Any] = {
    "enabled": True,
    "dim": 64,  # F
    "prototypes_per_keypoint": 3,  # M
    "deconv_filters": [256, 256],
    "kappa": 0.05,
    "sinkhorn_iterations": 3,
    "momentum": 0.999,
    "sample_threshold": 0.0,
    "gumbel_assignment": True,
    "faithful_code": False,
    "css": {"confidence": 0.25, "match_distance": 2.1, "reference_heatmap": [64, 48]},
    "cps": {"enabled": False, "clusters": [64, 96, 128], "iterations": 500, "beta": 20.0},
    "schedule": {},  # read by the stage config (conf/bridge/posebh.yaml), not by the bridge
    "figure_projection": "tsne",  # 2-D map of the prototypes in the dashboards: tsne or pca
}


def _backbone_geometry(model_config: Mapping[str, Any]) -> tuple[int, int]:
    """(embed_dim, upsample) of the model's backbone, from the stored model description."""
    from multipose.models.heads import upsample_for_stride
    from multipose.models.registry import BACKBONES
    from multipose.models.vit import patch_geometry

    bb = dict(model_config.get("backbone") or {})
    over = dict(bb.get("overrides") or {})
    name = str(bb.get("name", "vit_tiny"))
    if "embed_dim" in over:
        dim = int(over["embed_dim"])
    elif name in BACKBONES:
        dim = BACKBONES[name].embed_dim
    else:
        raise ValueError(f"bridge.posebh: cannot tell the width of backbone {name!r}")
    stride, _ = patch_geometry(int(over.get("patch_size", 16)), int(bb.get("ratio", 1)))
    return dim, upsample_for_stride(stride)


class PoseBHBridge(Bridge):
    """Args: see :class:`~multipose.bridges.base.Bridge`; ``settings`` is ``bridge.posebh``
    (:data:`DEFAULT_SETTINGS`), ``loss`` is ``loss.posebh`` (``alpha``, ``beta``, ``gamma``, ``zeta``, ``delta``)."""

    name = "posebh"
    variants = ("proto",)

    def __init__(
        self,
        settings: Mapping[str, Any],
        loss: Mapping[str, Any],
        model_config: Mapping[str, Any],
        mix: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, loss, model_config, mix)
        from multipose.skeletons import get_skeleton, unified_layout

        unknown = sorted(set(self.settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ValueError(f"bridge.posebh has unknown keys {unknown}; allowed: {sorted(DEFAULT_SETTINGS)}")
        bad = sorted(set(self.loss_weights) - set(PAPER_WEIGHTS))
        if bad:
            raise ValueError(f"loss.posebh has unknown keys {bad}; allowed: {sorted(PAPER_WEIGHTS)}")
        s = {**DEFAULT_SETTINGS, **self.settings}
        s["css"] = {**DEFAULT_SETTINGS["css"], **dict(s.get("css") or {})}
        s["cps"] = {**DEFAULT_SETTINGS["cps"], **dict(s.get("cps") or {})}
        from multipose.bridges.posebh.figures import PROJECTIONS

        if s["figure_projection"] not in PROJECTIONS:
            raise ValueError(
                f"bridge.posebh.figure_projection must be one of {list(PROJECTIONS)}, got {s['figure_projection']!r}"
            )
        self.cfg = s
        self.w = {k: float(self.loss_weights.get(k, v)) for k, v in PAPER_WEIGHTS.items()}
        heads = dict(model_config["heads"])
        self.datasets = list(heads)
        layout = unified_layout({n: str(heads[n]["skeleton"]) for n in self.datasets})
        self.offsets = [layout.offsets[n] for n in self.datasets]
        self.sizes = [layout.sizes[n] for n in self.datasets]
        for n, k in zip(self.datasets, self.sizes):
            if int(heads[n]["num_keypoints"]) != k:
                raise ValueError(
                    f"bridge.posebh: head {n!r} has {heads[n]['num_keypoints']} keypoints, skeleton {k}"
                )
        self.tags = [t for n in self.datasets for t in get_skeleton(str(heads[n]["skeleton"])).semantic]
        self.skeleton_names = {n: layout.skeletons[n] for n in self.datasets}
        in_dim, up = _backbone_geometry(model_config)
        self.embed = KeypointEmbedding(in_dim, int(s["dim"]), up, s["deconv_filters"])
        self.register_buffer(
            "prototypes", init_prototypes(layout.total, int(s["prototypes_per_keypoint"]), int(s["dim"]))
        )
        self.faithful = bool(s["faithful_code"])
        self.cps_enabled = bool(s["cps"]["enabled"])
        if self.cps_enabled:
            m, dim = int(s["prototypes_per_keypoint"]), int(s["dim"])
            sizes = [int(c) for c in s["cps"]["clusters"] if 1 <= int(c) <= layout.total]
            if not sizes:
                raise ValueError(
                    f"bridge.posebh.cps.clusters={list(s['cps']['clusters'])}: every count exceeds the "
                    f"{layout.total} keypoints of this mix; give counts between 1 and {layout.total}"
                )
            self.register_buffer("cps_prototypes", torch.zeros(max(sizes), m, dim))
            self.register_buffer("cps_owner", torch.full((max(sizes),), -1, dtype=torch.long))
            self.register_buffer("cps_count", torch.zeros((), dtype=torch.long))
        self._pending: tuple[Tensor, Tensor] | None = None
        self._codecs: dict[tuple[int, int], UDPHeatmap] = {}
        self._val_counts: dict[str, np.ndarray] = {}
        self._val_gt: dict[str, dict[int, Any]] = {}

    # ------------------------------------------------------------------ helpers
    def rows(self, dataset: str) -> slice:
        """The prototype rows (unified layout) of ``dataset``'s skeleton."""
        d = self.datasets.index(dataset)
        return slice(self.offsets[d], self.offsets[d] + self.sizes[d])

    def prototypes_frozen(self, lit: PoseLitModule) -> bool:
        return self.is_frozen(lit, "prototypes")

    def prototype_maps(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(Ĥ [B, J, h, w], normalised embeddings [B, F, h, w])`` of backbone features, in fp32."""
        emb = self.embed(features)
        with torch.autocast(device_type=emb.device.type, enabled=False):
            emb = F.normalize(emb.float(), dim=1)
            return keypoint_maps(similarity_maps(emb, self.prototypes)), emb

    def _codec(self, size: tuple[int, int]) -> UDPHeatmap:
        if size not in self._codecs:  # UDP on the heatmap grid: coordinates in heatmap pixels
            self._codecs[size] = UDPHeatmap(size, size, sigma=2.0)
        return self._codecs[size]

    def _contrastive(self, pixels, labels, conf, d: int | None = None, bank: Tensor | None = None, **kw):
        """PPC / PPD (and the EMA statistics) of sampled pixels against dataset ``d``'s prototype rows (the
        ``faithful_code`` indexing applies), or against every row of ``bank`` (the CPS clusters)."""
        c = self.cfg
        if bank is None:
            protos, offset, k, faithful = self.prototypes, self.offsets[d], self.sizes[d], self.faithful
        else:
            protos, offset, k, faithful = bank, 0, bank.shape[0], False
        return contrastive(
            pixels,
            labels,
            conf,
            protos,
            offset,
            k,
            kappa=float(c["kappa"]),
            iterations=int(c["sinkhorn_iterations"]),
            faithful=faithful,
            gumbel=bool(c["gumbel_assignment"]),
            **kw,
        )

    def _pseudo_labels(self, regression: Tensor, prototype: Tensor, counts: dict[str, int] | None = None):
        """:func:`.css.pseudo_labels` with this bridge's CSS settings, the match distance scaled to the maps."""
        h, w = (int(v) for v in prototype.shape[-2:])
        c = self.cfg["css"]
        dist = match_distance(float(c["match_distance"]), (h, w), c["reference_heatmap"])
        conf = float(c["confidence"])
        return pseudo_labels(
            regression, prototype, conf, dist, self.faithful, self._codec((h, w)), counts=counts
        )

    # ------------------------------------------------------------------ training
    def training_losses(
        self, lit: PoseLitModule, batch: Mapping[str, Tensor], outputs: HeadOutputs
    ) -> dict[str, Tensor]:
        on = {t: lit.loss_on(self.name, t) for t in TERMS}
        update = self.training and not self.prototypes_frozen(lit)
        if not (on["phm"] or on["ppc"] or on["ppd"] or on["css"] or update):
            return {}
        features = getattr(outputs, "features", None)
        if features is None:
            raise RuntimeError("bridge.posebh needs the backbone features in HeadOutputs.features")
        maps, emb = self.prototype_maps(features)
        owner = outputs.owner
        zero = maps.new_zeros(())
        phm, ppc, ppd = zero, zero, zero
        j, m, f = self.prototypes.shape
        v_sum, n_sum = (maps.new_zeros(j, m, f), maps.new_zeros(j, m)) if update else (None, None)
        used, seen, entropy = 0, 0, []
        for d in range(len(self.datasets)):
            sel = (owner == d).nonzero(as_tuple=True)[0]
            if not sel.numel():
                continue
            k, off = self.sizes[d], self.offsets[d]
            target = batch["heatmap"][sel, :k].float()
            weight = batch["heatmap_weight"][sel, :k].float()
            phm = phm + keypoint_mse(maps[sel, off : off + k], target, weight)
            smp = sample_pixels(target * (weight > 0)[..., None, None], float(self.cfg["sample_threshold"]))
            if not len(smp):
                continue
            b = sel[smp.image]
            pixels = emb[b, :, smp.y, smp.x]
            nearest = maps[b, :, smp.y, smp.x].detach().argmax(1)
            res = self._contrastive(pixels, smp.label, smp.conf, d, nearest=nearest, ema=update)
            ppc, ppd = ppc + res.ppc, ppd + res.ppd
            if update:
                v_sum, n_sum = v_sum + res.v, n_sum + res.n
            used, seen = used + res.usage[0], seen + res.usage[1]
            entropy.append(res.entropy)
        if update:
            self._pending = (v_sum, n_sum)  # every rank sets it, so every rank joins the all-reduce
        anchor = sum(
            0.0 * p.sum() for p in self.embed.parameters() if p.requires_grad
        )  # DDP: no unused params
        out: dict[str, Tensor] = {}
        if on["phm"]:
            out["phm"] = self.w["alpha"] * phm + anchor
        if on["ppc"]:
            out["ppc"] = self.w["beta"] * ppc
        if on["ppd"]:
            out["ppd"] = self.w["gamma"] * ppd
        css_counts: dict[str, int] = {}
        if on["css"] and self.w["zeta"] > 0:
            out["css"] = self.w["zeta"] * self._css_loss(batch, outputs, maps, emb, css_counts)
        if self.cps_enabled and on["cps"] and self.w["delta"] > 0 and self.prototypes_frozen(lit):
            out["cps"] = self.w["delta"] * self._cps_loss(batch, owner, emb)
        if hasattr(lit, "log"):
            n = int(owner.numel())
            if seen:
                lit.log(f"train/{self.name}/proto_usage", used / seen, batch_size=n)
            if entropy:
                lit.log(f"train/{self.name}/sinkhorn_entropy", torch.stack(entropy).mean(), batch_size=n)
            if css_counts.get("candidates"):  # how far CSS's candidates got: both confident, then matched too
                for key in ("confident", "kept"):
                    share = css_counts[key] / css_counts["candidates"]
                    lit.log(f"train/{self.name}/css_{key}", share, batch_size=n)
        return out

    def _css_loss(
        self,
        batch: Mapping[str, Tensor],
        outputs: HeadOutputs,
        maps: Tensor,
        emb: Tensor,
        counts: dict[str, int] | None = None,
    ) -> Tensor:
        """The CSS sum (before zeta) of a training batch; ``counts`` collects :data:`.css.COUNT_KEYS`."""
        if outputs.all is None:
            raise RuntimeError(
                "PoseBH CSS needs every head on every sample: set model.heads_on=all (automatic when a "
                "loss.posebh weight is > 0)"
            )
        total = maps.new_zeros(())
        codec = self._codec(tuple(int(v) for v in maps.shape[-2:]))
        owner = outputs.owner
        for d, name in enumerate(self.datasets):
            others = (owner != d).nonzero(as_tuple=True)[0]
            if not others.numel() or name not in outputs.all:
                continue
            k, off = self.sizes[d], self.offsets[d]
            reg = outputs.all[name][others]
            proto = maps[others, off : off + k]
            coords, weight = self._pseudo_labels(reg, proto, counts)
            keep = np.flatnonzero(weight.max(axis=1) > 0)
            if not keep.size:
                continue
            tmaps, tweight = pseudo_targets(coords[keep], weight[keep], codec)
            idx = torch.as_tensor(keep, device=maps.device)
            target = torch.as_tensor(tmaps, device=maps.device)
            tw = torch.as_tensor(tweight, device=maps.device)
            loss = keypoint_mse(reg[idx], target, tw) + self.w["alpha"] * keypoint_mse(proto[idx], target, tw)
            smp = sample_pixels(target * tw[..., None, None], float(self.cfg["sample_threshold"]))
            if len(smp):
                b = others[idx[smp.image]]
                res = self._contrastive(emb[b, :, smp.y, smp.x], smp.label, smp.conf, d)
                loss = loss + self.w["beta"] * res.ppc + self.w["gamma"] * res.ppd
            total = total + loss
        return total

    @torch.no_grad()
    def fit_cps(self) -> int:
        """Cluster the (frozen) prototypes into the CPS buffers; returns the chosen cluster count."""
        from multipose.bridges.posebh.cps import fit_clusters

        c = self.cfg["cps"]
        protos, owner = fit_clusters(self.prototypes, c["clusters"], int(c["iterations"]), float(c["beta"]))
        n = protos.shape[0]
        self.cps_prototypes.zero_()
        self.cps_prototypes[:n] = protos
        self.cps_owner.fill_(-1)
        self.cps_owner[:n] = owner
        self.cps_count.fill_(n)
        log.info(
            "PoseBH CPS: %d clusters of the %d prototypes",
            n,
            self.prototypes.shape[0] * self.prototypes.shape[1],
        )
        return n

    def _cps_loss(self, batch: Mapping[str, Tensor], owner: Tensor, emb: Tensor) -> Tensor:
        if int(self.cps_count) == 0:
            self.fit_cps()
        n_c = int(self.cps_count)
        cp, keypoint = self.cps_prototypes[:n_c], self.cps_owner[:n_c]
        total = emb.new_zeros(())
        for d in range(len(self.datasets)):
            sel = (owner == d).nonzero(as_tuple=True)[0]
            local = keypoint - self.offsets[d]
            mine = ((local >= 0) & (local < self.sizes[d])).nonzero(as_tuple=True)[0]
            if not sel.numel() or not mine.numel():
                continue
            k = self.sizes[d]
            target = torch.zeros(sel.numel(), n_c, *emb.shape[-2:], device=emb.device)
            weight = torch.zeros(sel.numel(), n_c, device=emb.device)
            target[:, mine] = batch["heatmap"][sel, :k][:, local[mine]].float()
            weight[:, mine] = batch["heatmap_weight"][sel, :k][:, local[mine]].float()
            cmaps = keypoint_maps(similarity_maps(emb[sel], cp))
            loss = self.w["alpha"] * keypoint_mse(cmaps, target, weight)
            smp = sample_pixels(target * (weight > 0)[..., None, None], float(self.cfg["sample_threshold"]))
            if len(smp):
                res = self._contrastive(emb[sel[smp.image], :, smp.y, smp.x], smp.label, smp.conf, bank=cp)
                loss = loss + self.w["beta"] * res.ppc + self.w["gamma"] * res.ppd
            total = total + loss
        return total

    def after_training_step(
        self, lit: PoseLitModule, batch: Mapping[str, Tensor], outputs: HeadOutputs
    ) -> None:
        """EMA update of the prototypes with this step's statistics, averaged over the DDP ranks."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        new = ema_update(self.prototypes, pending[0], pending[1], float(self.cfg["momentum"]))
        self.prototypes.copy_(F.normalize(average_across_ranks(new), dim=-1))

    # ------------------------------------------------------------------ validation
    def _flip_maps(
        self, lit: PoseLitModule, images: Tensor, didx: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(features, Ĥ, Ĥ of the flipped crops or None)`` on a validation batch (image's own expert)."""
        feats = lit.model(images, didx)
        maps = self.prototype_maps(feats)[0]
        flip = getattr(lit.predictor, "flip_test", False)
        flipped = self.prototype_maps(lit.model(images.flip(-1), didx))[0] if flip else None
        return feats, maps, flipped

    def validation_variants(
        self, lit: PoseLitModule, batch: Mapping[str, Any], dataset: str, predictions: Mapping[str, Any]
    ) -> dict[str, dict[str, np.ndarray]]:
        """``proto``: every evaluated head's keypoints decoded from the prototype maps of its skeleton (flip-averaged
        like the heads), on features of the crop's own dataset's expert. Also counts the CSS pseudo-labels of the
        other skeletons against the synthetic world's hidden ground truth (validation only)."""
        images = batch["image"]
        d = self.datasets.index(dataset)
        didx = torch.full((images.shape[0],), d, dtype=torch.long, device=images.device)
        feats, maps, flipped = self._flip_maps(lit, images, didx)
        spec = lit.predictor.mix
        use_udp = spec.dataset(dataset).use_udp
        out = {}
        for head in predictions:
            hm = maps[:, self.rows(head)]
            if flipped is not None:
                back = spec.codecs[head].flip_back(
                    flipped[:, self.rows(head)], spec.skeletons[head].flip_indices
                )
                hm = 0.5 * (hm + back)
            out[head] = lit.predictor.decode(hm, head, batch["center"], batch["scale"], use_udp)
        self._count_css(lit, batch, dataset, feats, maps, [h for h in predictions if h != dataset])
        return {"proto": out}

    def _ground_truth(self, lit: PoseLitModule, dataset: str) -> dict[int, Any]:
        if dataset not in self._val_gt:
            dm = getattr(lit.trainer, "datamodule", None)
            insts = dm.val_instances(dataset) if dm is not None else []
            self._val_gt[dataset] = {int(i.ann_id): i for i in insts if i.extra_gt}
        return self._val_gt[dataset]

    def _count_css(self, lit, batch, dataset: str, feats: Tensor, maps: Tensor, heads: list[str]) -> None:
        """Pseudo-label precision / coverage on ``dataset``'s crops for every other head's skeleton: a pseudo
        keypoint is correct within 0.1 x the longer box side of the hidden ground truth (bbox PCK@0.1)."""
        from multipose.data.geometry import crop_to_image

        gt = self._ground_truth(lit, dataset)
        if not gt or not heads:
            return
        spec = lit.predictor.mix
        ann, center, scale = (
            np.asarray(batch[key].cpu() if torch.is_tensor(batch[key]) else batch[key])
            for key in ("ann_id", "center", "scale")
        )
        ann = [int(a) for a in ann]
        counts = self._val_counts.setdefault(dataset, np.zeros(4))
        for head in heads:
            reg = lit.model.heads[head](feats)
            coords, weight = self._pseudo_labels(reg, maps[:, self.rows(head)])
            xy = crop_to_image(
                coords * np.asarray(spec.codecs[head].stride, np.float32),
                center,
                scale,
                tuple(spec.input_size),
                use_udp=spec.dataset(dataset).use_udp,
            )
            sk = self.skeleton_names[head]
            for i, a in enumerate(ann):
                inst = gt.get(a)
                if inst is None or sk not in inst.extra_gt:
                    continue
                truth = inst.extra_gt[sk]
                labelled = truth[:, 2] > 0
                pseudo = (weight[i] > 0) & labelled
                size = float(max(inst.bbox[2], inst.bbox[3]))
                err = np.linalg.norm(xy[i] - truth[:, :2], axis=1)
                counts += [pseudo.sum(), (pseudo & (err <= 0.1 * size)).sum(), labelled.sum(), pseudo.sum()]

    def validation_metrics(self, lit: PoseLitModule) -> dict[str, float]:
        """``val/<ds>/css/precision``, ``val/<ds>/css/coverage`` and their totals ``val/posebh/css_*`` (summed over
        ranks); NaN where no pseudo-label / no hidden ground truth was seen."""
        table = np.stack([self._val_counts.get(n, np.zeros(4)) for n in self.datasets])
        self._val_counts = {}
        t = average_across_ranks(torch.as_tensor(table, dtype=torch.float64, device=self.prototypes.device))
        table = t.cpu().numpy()  # a mean over ranks: the ratios below are those of the sums

        def ratio(a: float, b: float) -> float:
            return float(a / b) if b > 0 else float("nan")

        out = {}
        for n, row in zip(self.datasets, table):
            if row[2] > 0:
                out[f"val/{n}/css/precision"] = ratio(row[1], row[0])
                out[f"val/{n}/css/coverage"] = ratio(row[3], row[2])
        tot = table.sum(0)
        if tot[2] > 0:
            out[f"val/{self.name}/css_precision"] = ratio(tot[1], tot[0])
            out[f"val/{self.name}/css_coverage"] = ratio(tot[3], tot[2])
        return out

    # ------------------------------------------------------------------ figures
    def prototype_table(self) -> tuple[np.ndarray, list[str], list[str]]:
        """``(prototypes [J*M, F], semantic tag per row, dataset per row)`` for a t-SNE / PCA of the prototypes."""
        j, m, f = self.prototypes.shape
        tags = [t for t in self.tags for _ in range(m)]
        owners = [n for n, k in zip(self.datasets, self.sizes) for _ in range(k * m)]
        return self.prototypes.detach().cpu().reshape(j * m, f).numpy(), tags, owners

    @torch.no_grad()
    def figures(
        self, lit: PoseLitModule, batch: Mapping[str, Any], dataset: str | None = None, crops: int = 3
    ):
        """Dashboard images (:mod:`.figures`, RGB uint8 arrays): ``posebh/similarity`` (prototype maps of a few
        crops) and ``posebh/prototypes`` (t-SNE or PCA of the prototypes coloured by semantic tag,
        ``bridge.posebh.figure_projection``)."""
        from multipose.bridges.posebh.figures import prototype_image, similarity_image

        images = batch["image"][:crops]
        if dataset is not None:
            didx = torch.full((images.shape[0],), self.datasets.index(dataset), device=images.device)
        else:
            didx = batch["dataset_idx"][:crops]
        maps = self.prototype_maps(lit.model(images, didx.long()))[0]
        names = [self.datasets[int(i)] for i in didx]
        rows = [self.rows(n) for n in names]
        return {
            f"{self.name}/similarity": similarity_image(images, maps, rows, names),
            f"{self.name}/prototypes": prototype_image(
                *self.prototype_table(), projection=str(self.cfg["figure_projection"])
            ),
        }
