"""Fit and extend the affine-combining autoencoder (ACAE) of a trained checkpoint, for inspection and reuse.

    python -m multipose.acae fit ckpt_path=last.ckpt out=acae.pt [pool=2000 n_latent=32 lam=0.3 steps=10000]
    python -m multipose.acae fit ckpt_path=... out=... exclude=syn_mpii paths.data_root=/data
    python -m multipose.acae add-skeleton syn_mpii ae=acae.pt ckpt_path=... out=acae_mpii.pt n=[50,200,800]
    python -m multipose.acae add-skeleton my_set --ann train.json --img-dir images ae=... ckpt_path=... out=...

``fit`` runs every head of the checkpoint (flip test) on a pool of training instances of the data mix, fits the
AE on that pseudo-ground truth (``multipose.bridges.acae_fit``), prints the per-joint held-out reconstruction
error, and writes the AE file (``{"describe", "state_dict", "fit"}``, atomically). On the synthetic world it also
fits the oracle AE on the hidden all-skeleton ground truth of the same instances and prints how close the
pseudo-GT AE gets to it (``oracle=false`` skips that).

``add-skeleton NAME`` fits a sum-to-one, l1-regularised affine map from the AE's latents (the encoder applied to
the other heads' predictions; ``latents=projection`` for the confidence-weighted projection) to NAME's joints on
``n`` annotated training instances and writes the AE file with the map under ``extra_skeletons[NAME]``. NAME is a dataset of the data mix (its train split; its validation split is
then scored: PCKh for PCKh sets, else mean error, next to NAME's own trained head when the model has one), or a
new annotation file given by ``--ann`` (with ``--img-dir``, ``--format``, ``--skeleton``).

Options are ``key=value``; keys this tool does not know are Hydra overrides of the training config
(``data=...``, ``paths.data_root=...``), which defines the data mix, as for ``multipose.eval``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("multipose.acae")

FIT_DEFAULTS: dict[str, Any] = {
    "ckpt_path": None,
    "out": None,
    "pool": 2000,
    "n_latent": 32,
    "n_latent_sided": None,
    "lam": 0.3,
    "steps": 10000,
    "batch_size": 256,
    "seed": 0,
    "family": "human",
    "parts": ["body"],
    "merge": "none",
    "exclude": [],
    "flip_test": True,
    "min_labelled": 0.5,
    "val_fraction": 0.1,
    "oracle": True,
    "device": "cpu",
}
ADD_DEFAULTS: dict[str, Any] = {
    "ckpt_path": None,
    "ae": None,
    "out": None,
    "n": [800],
    "lam": 0.1,
    "iters": 3000,
    "latents": "encoder",
    "seed": 0,
    "flip_test": True,
    "batch_size": 64,
    "device": "cpu",
}


class CLIError(ValueError):
    """A command-line mistake (the message names the option and what to do)."""


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def _value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def split_options(tokens: Sequence[str], defaults: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``key=value`` tokens -> (this tool's options over ``defaults``, Hydra overrides for everything else)."""
    opts = dict(defaults)
    overrides = []
    for tok in tokens:
        if "=" not in tok:
            raise CLIError(f"argument {tok!r}: expected key=value (e.g. ckpt_path=last.ckpt)")
        key, raw = tok.split("=", 1)
        if key in defaults:
            opts[key] = _value(raw)
        else:
            overrides.append(tok)
    for key in ("parts", "exclude", "n"):
        if key in opts and not isinstance(opts[key], list):
            opts[key] = [] if opts[key] in (None, "") else [opts[key]]
    return opts, overrides


def _require(opts: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if not opts.get(key):
            raise CLIError(f"option {key}=... is required (python -m multipose.acae --help)")
    ckpt = Path(str(opts["ckpt_path"]))
    if not ckpt.is_file():
        raise CLIError(f"ckpt_path={ckpt} does not exist; pass the .ckpt file written by training")


def _load(opts: Mapping[str, Any], overrides: Sequence[str], headless: Sequence[str] = ()) -> tuple[Any, Any]:
    """(model in eval mode, DataModule of the composed data config). Every dataset of the mix needs a head except
    those in ``headless`` (a set held out of training: ``fit exclude=...``, the set ``add-skeleton`` adds)."""
    import hydra

    from multipose.predict import load_for_inference
    from multipose.utils.compose import compose_config

    cfg = compose_config("train", list(overrides))
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    model, _, _ = load_for_inference(str(opts["ckpt_path"]), device=str(opts["device"]))
    missing = [n for n in dm.dataset_names if n not in model.heads and n not in headless]
    if missing:
        raise CLIError(
            f"the data mix has datasets {missing} that {opts['ckpt_path']} has no head for (heads: "
            f"{list(model.heads)}); pass the data config the checkpoint was trained on (data=...), or name a set held "
            "out of training with exclude=[...] (fit) or as the skeleton to add (add-skeleton)"
        )
    return model, dm


def _percent(x: float) -> str:
    return f"{100 * x:6.2f}"


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------


def fit(opts: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The ``fit`` command; returns the summary written with the AE (``fit`` entry of the file)."""
    import torch

    from multipose.bridges.acae_fit import collect_pseudo_gt, fit_acae, oracle_report
    from multipose.bridges.acae_model import AffineCombiningAE, save_ae

    _require(opts, "ckpt_path", "out")
    model, dm = _load(opts, overrides, headless=list(opts.get("exclude") or []))
    unknown = [d for d in opts["exclude"] if d not in dm.dataset_names]
    if unknown:
        raise CLIError(f"exclude={opts['exclude']}: {unknown} are not datasets of the mix {dm.dataset_names}")
    skeletons = {n: s for n, s in dm.skeletons.items() if n not in opts["exclude"]}
    kw = {
        "n_latent": int(opts["n_latent"]),
        "n_latent_sided": opts["n_latent_sided"],
        "seed": int(opts["seed"]),
    }
    try:
        ae, _ = AffineCombiningAE.for_mix(
            skeletons, str(opts["family"]), tuple(opts["parts"]), str(opts["merge"]), **kw
        )
    except ValueError as err:
        raise CLIError(f"family/parts/merge/n_latent: {err}") from None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pgt = collect_pseudo_gt(
        model, dm, ae, int(opts["pool"]), int(opts["seed"]), flip_test=bool(opts["flip_test"]),
        min_labelled=float(opts["min_labelled"]),
    )  # fmt: skip
    log.info("pseudo-GT: %d poses x %d union joints from %s", *pgt.poses.shape[:2], pgt.datasets)
    fit_kw = {
        "lam": float(opts["lam"]), "steps": int(opts["steps"]), "batch_size": int(opts["batch_size"]),
        "val_fraction": float(opts["val_fraction"]), "seed": int(opts["seed"]),
        "log_every": max(1, int(opts["steps"]) // 5),
    }  # fmt: skip
    result = fit_acae(pgt.poses, pgt.weights, ae, **fit_kw)
    summary: dict[str, Any] = {
        "pool": int(pgt.poses.shape[0]),
        "datasets": pgt.datasets,
        "options": {k: v for k, v in opts.items() if k not in ("ckpt_path", "out", "device")},
        "heldout_mean": result.heldout_mean,
        "heldout_per_joint": dict(zip(ae.joint_names, result.heldout_per_joint.tolist(), strict=True)),
    }
    print(
        f"\nACAE: {ae.n_joints} joints, {ae.n_latent} latents ({ae.n_latent_sided} sided); pool {summary['pool']}"
    )
    print("held-out reconstruction error per joint (% of crop height):")
    for name, err in summary["heldout_per_joint"].items():
        print(f"  {name:32s} {_percent(err)}")
    print(f"  {'mean':32s} {_percent(result.heldout_mean)}")
    if opts["oracle"] and pgt.hidden is not None:
        oracle, _ = AffineCombiningAE.for_mix(
            skeletons, str(opts["family"]), tuple(opts["parts"]), str(opts["merge"]), **kw
        )
        fit_acae(pgt.hidden, pgt.hidden_weights, oracle, **{**fit_kw, "log_every": 0})
        val = result.val_idx
        report = oracle_report(
            {"pseudo_gt_ae": ae, "oracle_ae": oracle}, pgt.hidden[val], pgt.hidden_weights[val]
        )
        hw = pgt.hidden_weights[val] * (pgt.weights[val] > 0)
        gap = float(((pgt.poses[val] - pgt.hidden[val]).norm(dim=-1) * hw).sum() / hw.sum().clamp_min(1e-12))
        summary["oracle"] = {
            "residual_on_hidden_gt": {k: v["residual"] for k, v in report.items()},
            "pseudo_gt_error": gap,
        }
        print("oracle (held-out hidden ground truth, % of crop height):")
        print(f"  residual of the pseudo-GT AE   {_percent(report['pseudo_gt_ae']['residual'])}")
        print(f"  residual of the oracle AE      {_percent(report['oracle_ae']['residual'])}")
        print(f"  pseudo-GT error vs hidden GT   {_percent(gap)}")
    path = save_ae(opts["out"], ae, {"fit": summary})
    print(f"AE written to {path}")
    return summary


# --------------------------------------------------------------------------------------------------
# add-skeleton
# --------------------------------------------------------------------------------------------------


def _new_entry(name: str, flags: argparse.Namespace, dm: Any) -> Any:
    from multipose.data.config import parse_entry

    if flags.ann is None:
        if name not in dm.dataset_names:
            raise CLIError(
                f"add-skeleton {name}: not a dataset of the data mix ({dm.dataset_names}); give its annotations "
                "with --ann FILE --img-dir DIR --skeleton SKELETON"
            )
        return dm.dataset_entry(name), True
    if not flags.skeleton or not flags.img_dir:
        raise CLIError("--ann needs --img-dir (the images) and --skeleton (a skeleton name or YAML file)")
    split = {"ann_file": flags.ann, "img_dir": flags.img_dir}
    raw = {"format": flags.format, "skeleton": flags.skeleton, "train": split, "val": split}
    return parse_entry(name, raw, None), False


def add_skeleton(
    name: str, flags: argparse.Namespace, opts: Mapping[str, Any], overrides: Sequence[str]
) -> dict:
    """The ``add-skeleton`` command; returns ``{n: metrics}`` of the maps fitted (and scored when possible)."""
    import numpy as np
    import torch

    from multipose.bridges.acae_fit import (
        LATENT_SOURCES,
        fit_affine_map,
        mix_of_heads,
        new_skeleton_keypoints,
        run_heads,
        val_dataset,
    )
    from multipose.bridges.acae_model import AffineCombiningAE, gather_union, load_ae, save_ae
    from multipose.data.datamodule import filter_train_instances, read_split
    from multipose.inference import Predictor
    from multipose.skeletons import get_skeleton

    _require(opts, "ckpt_path", "ae", "out")
    model, dm = _load(opts, overrides, headless=[name])
    entry, in_mix = _new_entry(name, flags, dm)
    skel = get_skeleton(entry.skeleton)
    ae, extra = load_ae(opts["ae"])
    file_sets = dict(ae.meta.get("datasets") or {})
    missing = {d: s for d, s in file_sets.items() if dm.skeletons.get(d) is None or dm.skeletons[d].name != s}
    if missing:
        raise CLIError(
            f"ae={opts['ae']}: fitted for datasets {file_sets}; the mix lacks or differs on {missing}"
        )
    expect, _ = AffineCombiningAE.for_mix(
        {d: dm.skeletons[d] for d in file_sets}, ae.meta["family"], tuple(ae.meta["parts"]), ae.meta["merge"]
    )
    ae, extra = load_ae(opts["ae"], expect=expect)
    if name in ae.index_map:
        log.warning(
            "%s is part of the AE's union: its own head feeds the latents (not a held-out skeleton)", name
        )
    heads = list(ae.index_map)
    predictor = Predictor(model, mix_of_heads(dm, model), flip_test=bool(opts["flip_test"]))

    def union_latents(run: Any) -> tuple[torch.Tensor, torch.Tensor]:
        pose, w = gather_union(
            {h: run.preds[h][..., :2] for h in heads},
            {h: run.preds[h][..., 2] for h in heads},
            ae.index_map,
            ae.n_joints,
        )
        return pose, w

    # training instances of the new skeleton
    train = filter_train_instances(read_split(entry, "train", skel), name, entry.train.ann_file)
    if in_mix:
        dataset = val_dataset(dm, name, train)
    else:
        from multipose.data.dataset import TopDownDataset
        from multipose.data.transforms import TopDownTransform

        dataset = TopDownDataset(
            train, skel, TopDownTransform(dm.input_size, skel, train=False, use_udp=entry.use_udp, photometric=False),
            dm.codecs[dm.dataset_names[0]], 0, skel.num_keypoints, name=f"{name} (add-skeleton)",
        )  # fmt: skip
    n_list = sorted(int(n) for n in opts["n"])
    if not n_list or n_list[0] < 1:
        raise CLIError(f"n={opts['n']}: give one or more positive instance counts")
    order = np.random.default_rng(int(opts["seed"])).permutation(len(train))[: n_list[-1]]
    if len(order) < n_list[-1]:
        log.warning("%s has %d training instances; n is capped there", name, len(order))
    run = run_heads(predictor, dataset, heads, np.sort(order), int(opts["batch_size"]), entry.use_udp, name)
    pos = {int(i): k for k, i in enumerate(run.indices)}
    pose, w = union_latents(run)
    if opts["latents"] not in LATENT_SOURCES:
        raise CLIError(f"latents={opts['latents']}: one of {list(LATENT_SOURCES)}")
    with torch.no_grad():
        Z = ae.encode(pose) if opts["latents"] == "encoder" else ae.project_latents(pose, w)
    val_run = None
    if in_mix:
        if not dm.val_datasets:
            dm.setup("validate")
        vds = dm.val_datasets[dm.dataset_names.index(name)]
        own = [name] if name in model.heads and name not in heads else []
        val_run = run_heads(predictor, vds, heads + own, None, int(opts["batch_size"]), entry.use_udp, name)
        vpose, vw = union_latents(val_run)
    results: dict[str, Any] = {}
    maps = {}
    for n in n_list:
        rows = [pos[int(i)] for i in order[:n]]
        M = fit_affine_map(
            Z[rows], run.gt[rows, :, :2], run.gt[rows, :, 2], float(opts["lam"]), int(opts["iters"])
        )
        maps[n] = M
        results[n] = {"instances": len(rows)}
        if val_run is not None:
            with torch.no_grad():
                coords, _ = new_skeleton_keypoints(ae, M, vpose, vw, str(opts["latents"]))
            results[n].update(_score(coords, val_run, vds, skel))
    if val_run is not None and name in val_run.preds:
        results["trained_head"] = _score(val_run.preds[name][..., :2], val_run, vds, skel)
    n_max = n_list[-1]
    extra_sk = dict(extra.get("extra_skeletons") or {})
    extra_sk[name] = {
        "skeleton": skel.name,
        "keypoints": list(skel.keypoints),
        "weights": maps[n_max].float(),
        "lam": float(opts["lam"]),
        "latents": str(opts["latents"]),
        "instances": results[n_max]["instances"],
    }
    out = save_ae(opts["out"], ae, {**extra, "extra_skeletons": extra_sk})
    print(
        f"\nnew skeleton {name} ({skel.name}, {skel.num_keypoints} joints) from the latents of heads {heads}:"
    )
    for key, res in results.items():
        label = f"N={key}" if key != "trained_head" else "trained head"
        print(
            f"  {label:14s} "
            + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items())
        )
    print(f"AE with the map for {name} (N={n_max}) written to {out}")
    return results


def _score(coords: Any, run: Any, dataset: Any, skel: Any) -> dict[str, float]:
    """PCKh@0.5 (MPII total, pelvis/thorax left out) when the instances have head sizes, and the mean error in
    crop-height units on labelled joints."""
    import numpy as np

    from multipose.evaluation.pck import pckh

    gt = run.gt.numpy()
    vis = gt[..., 2] > 0
    pred = coords.detach().double().cpu().numpy()
    err = np.linalg.norm(pred - gt[..., :2], axis=-1)
    out = {"mean_error": float(err[vis].mean())}
    if run.head_size is not None:
        scale_h = run.scale[:, 1].double().numpy()[:, None, None]
        center = run.center.double().numpy()[:, None, :]
        exclude = [i for i, k in enumerate(skel.keypoints) if k in ("pelvis", "thorax")]
        img_pred, img_gt = pred * scale_h + center, gt[..., :2] * scale_h + center
        out["PCKh@0.5"] = float(pckh(img_pred, img_gt, vis, run.head_size, 0.5, exclude=exclude).total)
    return out


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from multipose.utils.cli import run_entry_point

    parser = argparse.ArgumentParser(
        prog="python -m multipose.acae",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit", help="fit the AE on a checkpoint's pseudo-ground truth")
    p_fit.add_argument(
        "options", nargs="*", help=f"key=value; keys {sorted(FIT_DEFAULTS)}, others go to Hydra"
    )
    p_add = sub.add_parser("add-skeleton", help="add a skeleton as an affine map from the latents")
    p_add.add_argument("name", help="dataset of the mix, or the name of the new skeleton's set with --ann")
    p_add.add_argument("--ann", default=None, help="annotation file of the new skeleton (its training split)")
    p_add.add_argument("--img-dir", default=None, help="image folder of --ann")
    p_add.add_argument("--format", default="coco", help="format of --ann (coco, coco_wholebody, mpii, ...)")
    p_add.add_argument("--skeleton", default=None, help="skeleton of --ann (a name or a YAML file)")
    p_add.add_argument(
        "options", nargs="*", help=f"key=value; keys {sorted(ADD_DEFAULTS)}, others go to Hydra"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "fit":
        run_entry_point(lambda: fit(*split_options(args.options, FIT_DEFAULTS)))
    else:
        run_entry_point(lambda: add_skeleton(args.name, args, *split_options(args.options, ADD_DEFAULTS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
