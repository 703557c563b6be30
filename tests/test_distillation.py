"""Knowledge-token distillation: the token backbone, stage 1 (token on a frozen teacher), stage 2 (student)."""

from __future__ import annotations

import copy

import pytest
import torch

from multipose.distillation import (
    TokenDistillLitModule,
    TokenLearningLitModule,
    build_distill_module,
)
from multipose.models.build import model_from_config
from multipose.models.knowledge_token import (
    KnowledgeTokenBackbone,
    attach_knowledge_tokens,
    load_knowledge_token,
    project_token,
    save_knowledge_token,
)

IMG = (64, 48)
HM = (16, 12)  # classic head, two deconvs: grid 4x3 -> 16x12
HEADS = {"a": {"skeleton": "coco", "num_keypoints": 17}, "b": {"skeleton": "mpii", "num_keypoints": 16}}


def tiny_config(
    embed_dim: int = 32, ffn: str = "shared", head: str = "classic", drop_path: float = 0.0
) -> dict:
    backbone = {
        "name": "vit_tiny",
        "ffn": ffn,
        "drop_path_rate": drop_path,
        "img_size": list(IMG),
        "overrides": {"embed_dim": embed_dim, "depth": 2, "num_heads": 2},
    }
    if ffn == "ps":
        backbone["part_features"] = embed_dim // 4
    head_cfg = {"type": "classic", "deconv_filters": [16, 16]} if head == "classic" else {"type": head}
    return {"backbone": backbone, "head": head_cfg, "heads": copy.deepcopy(HEADS)}


def make_batch(seed: int = 0, dataset_idx=(1, 0, 0, 1)) -> dict[str, torch.Tensor]:
    """A batch following the batch-dict contract (targets zero-padded to K_max = 17)."""
    g = torch.Generator().manual_seed(seed)
    b, kmax = len(dataset_idx), 17
    didx = torch.tensor(dataset_idx, dtype=torch.long)
    nk = torch.tensor([HEADS["ab"[int(i)]]["num_keypoints"] for i in dataset_idx])
    weight = (torch.arange(kmax)[None] < nk[:, None]).float()
    weight[0, 3] = 0.0  # one unlabelled keypoint
    return {
        "image": torch.randn(b, 3, *IMG, generator=g),
        "dataset_idx": didx,
        "heatmap": torch.rand(b, kmax, *HM, generator=g) * weight[..., None, None],
        "heatmap_weight": weight,
        "keypoints": torch.rand(b, kmax, 3, generator=g) * 40,
        "num_keypoints": nk,
        "center": torch.full((b, 2), 30.0),
        "scale": torch.full((b, 2), 60.0),
        "rotation": torch.zeros(b),
        "image_id": torch.arange(b),
        "ann_id": torch.arange(b),
        "bbox_score": torch.ones(b),
        "area": torch.full((b,), 900.0),
    }


def write_ckpt(path, model_config: dict, model: torch.nn.Module):
    """A Lightning checkpoint as written by ``multipose.train`` (config in hyper_parameters, weights under model.)."""
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "hyper_parameters": {"model_config": model_config},
            "state_dict": {f"model.{k}": v.clone() for k, v in model.state_dict().items()},
        },
        path,
    )
    return path


@pytest.fixture()
def teacher_ckpt(tmp_path):
    torch.manual_seed(1)
    cfg = tiny_config(embed_dim=32, drop_path=0.1)
    model = model_from_config(cfg)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a train-mode update would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return write_ckpt(tmp_path / "teacher.ckpt", cfg, model), cfg, model


def reference_features(backbone, token, x, task: int | None = None):
    """Direct computation: [patch + pos ; token] -> blocks -> drop the token -> last_norm -> map."""
    from multipose.models.moe import TaskRouting

    seq, (h, w) = backbone.tokens(x)
    n = seq.shape[1]
    seq = torch.cat([seq, token.expand(x.shape[0], -1, -1)], dim=1)
    routing = None
    if backbone.routed:
        counts = [0] * backbone.num_experts
        counts[task] = x.shape[0]
        routing = TaskRouting(tuple(counts))
    for blk in backbone.blocks:
        seq = blk(seq, routing)
    seq = backbone.last_norm(seq[:, :n])
    return seq.transpose(1, 2).reshape(x.shape[0], -1, h, w)


# ------------------------------------------------------------------------------------------- token backbone


def test_token_changes_features_keeps_shape_and_shares_weights():
    torch.manual_seed(0)
    model = model_from_config(tiny_config()).eval()
    plain = model.backbone
    x = torch.randn(2, 3, *IMG)
    kt = KnowledgeTokenBackbone(plain, num_tokens=2).eval()
    with torch.no_grad():
        base, out = plain(x), kt(x)
        ref = reference_features(plain, kt.knowledge_token, x)
    assert out.shape == base.shape == (2, 32, 4, 3)
    assert (out - base).abs().max() > 1e-4  # the token takes part in attention
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # token without grid position embedding
    assert kt.knowledge_token.shape == (1, 2, 32) and kt.num_tokens == 2 and kt.trainable
    assert set(kt.state_dict()) == set(plain.state_dict()) | {"knowledge_token"}
    assert kt.blocks[1].mlp.fc1.weight is plain.blocks[1].mlp.fc1.weight
    assert isinstance(kt.without_token(), KnowledgeTokenBackbone) is False
    with pytest.raises(ValueError, match="already carries knowledge tokens"):
        KnowledgeTokenBackbone(kt)
    with pytest.raises(ValueError, match="width 16 does not match the backbone width 32"):
        KnowledgeTokenBackbone(plain, token=torch.zeros(1, 16))


def test_moe_backbone_with_token_routes_and_merges():
    torch.manual_seed(0)
    model = model_from_config(tiny_config(ffn="ps")).eval()
    with torch.no_grad():  # make the experts differ so routing matters
        for blk in model.backbone.blocks:
            for p in blk.mlp.experts.parameters():
                p.normal_(0, 0.2)
    kt = attach_knowledge_tokens(model, num_tokens=1)
    assert model.backbone is kt
    x = torch.randn(4, 3, *IMG)
    didx = torch.tensor([1, 0, 1, 0])  # unsorted: the backbone sorts by task and back
    with torch.no_grad():
        out = model(x, didx)
        for i, t in enumerate(didx.tolist()):
            torch.testing.assert_close(
                out[i : i + 1],
                reference_features(kt, kt.knowledge_token, x[i : i + 1], t),
                rtol=1e-5,
                atol=1e-5,
            )
        assert (out[1] - model(x[1:2], torch.tensor([1]))[0]).abs().max() > 1e-4  # experts differ
        merged = model.merge_experts("b")
        assert isinstance(merged.backbone, KnowledgeTokenBackbone)
        torch.testing.assert_close(
            merged.backbone(x), model(x, torch.ones(4, dtype=torch.long)), rtol=1e-5, atol=1e-5
        )
    loss = model.heatmaps(x, didx)["a"].square().mean()
    loss.backward()
    assert kt.knowledge_token.grad is not None and kt.knowledge_token.grad.abs().sum() > 0


def test_project_token():
    token = torch.randn(2, 16)
    up = project_token(token, 32, "orthogonal")
    assert up.shape == (2, 32)
    torch.testing.assert_close(up @ up.T, token @ token.T, rtol=1e-4, atol=1e-4)  # inner products kept
    torch.testing.assert_close(project_token(token, 32, "orthogonal"), up)  # fixed map (seeded)
    assert project_token(token, 8, "orthogonal").shape == (2, 8)
    assert project_token(token, 16, "none") is token
    with pytest.raises(ValueError, match="distill.projection=orthogonal"):
        project_token(token, 32, "none")
    with pytest.raises(ValueError, match="unknown"):
        project_token(token, 32, "learned")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_token_file_roundtrip(tmp_path, suffix):
    token = torch.randn(1, 3, 32)
    path = save_knowledge_token(tmp_path / f"tok{suffix}", token, {"teacher_ckpt": "t.ckpt"})
    loaded, meta = load_knowledge_token(path)
    assert torch.equal(loaded, token[0])
    assert int(meta["num_tokens"]) == 3 and int(meta["embed_dim"]) == 32 and meta["teacher_ckpt"] == "t.ckpt"
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert torch.equal(raw["knowledge_token"], token[0])
    with pytest.raises(FileNotFoundError, match="distill.token_path"):
        load_knowledge_token(tmp_path / f"missing{suffix}")
    bad = tmp_path / "bad.pt"
    torch.save({"something": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="no 'knowledge_token'"):
        load_knowledge_token(bad)


# ------------------------------------------------------------------------------------------------ stage 1


def test_stage1_only_the_token_learns(teacher_ckpt, tmp_path):
    import lightning as L

    path, cfg, teacher = teacher_ckpt
    out = tmp_path / "tok" / "knowledge_token.pt"
    module = TokenLearningLitModule(cfg, distill={"teacher_ckpt": str(path), "lr": 1e-2, "out": str(out)})
    assert module.hparams["model_config"]["backbone"]["knowledge_tokens"] == 1
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable == ["model.backbone.knowledge_token"]

    # one manual step: gradient reaches the token and nothing else
    module.train()
    assert not module.model.training and not module.model.heads["a"].training
    loss = module.training_step(make_batch(), 0)
    loss.backward()
    assert module.knowledge_token.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in module.named_parameters() if n != "model.backbone.knowledge_token")
    module.knowledge_token.grad = None

    # a short Lightning fit: the teacher (weights and BatchNorm statistics) stays bit-identical
    token0 = module.knowledge_token.detach().clone()
    loader = torch.utils.data.DataLoader([make_batch(s) for s in range(3)], batch_size=None)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 3
    state = module.model.state_dict()
    for key, value in teacher.state_dict().items():
        assert torch.equal(state[key], value), key
    assert not torch.equal(module.knowledge_token.detach(), token0)
    saved, meta = load_knowledge_token(out)
    assert torch.equal(saved, module.knowledge_token.detach()[0]) and meta["global_step"] == 3


def test_stage1_errors(teacher_ckpt, tmp_path):
    path, cfg, _ = teacher_ckpt
    with pytest.raises(FileNotFoundError, match="distill.teacher_ckpt"):
        TokenLearningLitModule(cfg, distill={"teacher_ckpt": str(tmp_path / "nope.ckpt")})
    with pytest.raises(ValueError, match="distill.teacher_ckpt is not set"):
        TokenLearningLitModule(cfg, distill={})
    other = copy.deepcopy(cfg)
    other["heads"] = {"b": other["heads"]["b"], "a": other["heads"]["a"]}  # another mix order
    with pytest.raises(ValueError, match="do not match the data mix"):
        TokenLearningLitModule(other, distill={"teacher_ckpt": str(path)})


# ------------------------------------------------------------------------------------------------ stage 2


def test_stage2_token_is_frozen_and_stored(tmp_path):
    token = torch.randn(1, 24)  # learned on a teacher of width 24; the student has 32
    tok_path = save_knowledge_token(tmp_path / "tok.pt", token)
    cfg = tiny_config(embed_dim=32)
    with pytest.raises(ValueError, match="distill.token_path=.*width 24 does not match the student width 32"):
        TokenDistillLitModule(cfg, distill={"token_path": str(tok_path)})
    module = TokenDistillLitModule(cfg, distill={"token_path": str(tok_path), "projection": "orthogonal"})
    kt = module.model.backbone
    assert isinstance(kt, KnowledgeTokenBackbone) and not kt.knowledge_token.requires_grad
    torch.testing.assert_close(kt.knowledge_token[0], project_token(token, 32, "orthogonal"))
    assert module.hparams["model_config"]["backbone"]["knowledge_tokens"] == 1
    assert "knowledge_tokens" not in cfg["backbone"]  # the caller's config is not modified

    module.train()
    loss = module.training_step(make_batch(), 0)
    loss.backward()
    assert kt.knowledge_token.grad is None
    assert kt.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the student itself trains
    before = kt.knowledge_token.detach().clone()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    opt.step()
    assert torch.equal(kt.knowledge_token.detach(), before)


def test_stage2_output_distillation(teacher_ckpt, tmp_path):
    # simple head (no BatchNorm) and no drop path: student == teacher gives identical heatmaps in train mode
    cfg = tiny_config(head="simple")
    torch.manual_seed(3)
    teacher = model_from_config(cfg)
    path = write_ckpt(tmp_path / "simple_teacher.ckpt", cfg, teacher)
    module = TokenDistillLitModule(cfg, distill={"teacher_ckpt": str(path), "output_weight": 0.5})
    assert not any(n.startswith("_teacher") for n, _ in module.named_parameters())
    assert all(not k.startswith("_teacher") for k in module.state_dict())
    batch = make_batch()
    module.model.load_state_dict(teacher.state_dict())
    module.train()
    assert not module.teacher.training

    def losses():
        feats = module.model(batch["image"], batch["dataset_idx"])
        preds = {
            n: module.model.heads[n](feats[(batch["dataset_idx"] == d).nonzero(as_tuple=True)[0]])
            for d, n in enumerate(module.dataset_names)
        }
        return module.output_distill_losses(batch, preds)

    same = losses()
    assert set(same) == {"a", "b"} and all(v.item() < 1e-12 for v in same.values())  # float noise only
    with torch.no_grad():
        module.model.heads["a"].final_layer.weight.add_(0.05)
    changed = losses()
    assert changed["a"].item() > 1e-6 and changed["b"].item() < 1e-12

    # the total = GT loss + w * distillation; gradients never reach the teacher
    loss = module.training_step(batch, 0)
    gt_only = super(TokenDistillLitModule, module).training_step(batch, 0)
    share_a = float((batch["dataset_idx"] == 0).float().mean())
    torch.testing.assert_close(loss.detach(), gt_only.detach() + 0.5 * share_a * changed["a"].detach())
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())

    # output distillation needs an existing teacher; something must be distilled
    with pytest.raises(ValueError, match="distill.output_weight=0.5 needs distill.teacher_ckpt"):
        TokenDistillLitModule(cfg, distill={"output_weight": 0.5})
    with pytest.raises(FileNotFoundError, match="distill.teacher_ckpt"):
        TokenDistillLitModule(cfg, distill={"output_weight": 0.5, "teacher_ckpt": str(tmp_path / "x.ckpt")})
    with pytest.raises(ValueError, match="nothing to distil"):
        TokenDistillLitModule(cfg, distill={"output_weight": 0.0})


def test_stage2_token_and_teacher_with_moe(tmp_path):
    cfg = tiny_config(ffn="ps")
    torch.manual_seed(5)
    teacher = model_from_config(cfg)
    path = write_ckpt(tmp_path / "moe_teacher.ckpt", cfg, teacher)
    tok = save_knowledge_token(tmp_path / "tok.safetensors", torch.randn(2, 32))
    module = TokenDistillLitModule(
        cfg, distill={"token_path": str(tok), "teacher_ckpt": str(path), "output_weight": 1.0}
    )
    assert module.model.backbone.num_tokens == 2 and module.model.backbone.num_experts == 2
    module.train()
    loss = module.training_step(make_batch(dataset_idx=(1, 0, 1, 1)), 0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert module.model.backbone.knowledge_token.grad is None


# ---------------------------------------------------------------------------------------- config + factory


def test_build_distill_module_from_config(teacher_ckpt, tmp_path):
    from omegaconf import OmegaConf

    from conftest import compose
    from multipose.config_validation import ConfigError

    path, cfg, _ = teacher_ckpt
    student = compose(
        "train",
        [
            "+distill=student",
            f"distill.token_path={save_knowledge_token(tmp_path / 't.pt', torch.randn(1, 32))}",
        ],
    )
    assert student.distill.output_weight == 0.0 and student.distill.projection == "none"
    module = build_distill_module(student, cfg)
    assert type(module) is TokenDistillLitModule and module.model.backbone.num_tokens == 1

    stage1 = compose(
        "train",
        [
            "+distill=token_learning",
            f"distill.teacher_ckpt={tmp_path / 'missing.ckpt'}",
            f"distill.out={tmp_path / 'k.pt'}",
        ],
    )
    assert stage1.distill.num_tokens == 1
    with pytest.raises(FileNotFoundError, match="distill.teacher_ckpt"):
        build_distill_module(stage1, cfg)
    stage1.distill.teacher_ckpt = str(path)
    assert type(build_distill_module(stage1, cfg)) is TokenLearningLitModule
    stage1.backbone.init = str(path)
    with pytest.raises(ConfigError, match="backbone.init"):
        build_distill_module(stage1, cfg)
    bad = OmegaConf.create({"distill": {"stage": "teacher"}})
    with pytest.raises(ConfigError, match="distill.stage='teacher'"):
        build_distill_module(bad, cfg)
