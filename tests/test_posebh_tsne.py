"""The exact t-SNE behind PoseBH's prototype picture (``multipose.viz.tsne``): perplexity calibration, cluster
structure, determinism, the sign-invariant geometry of ``|cos|`` and the figure options."""

from __future__ import annotations

import numpy as np
import pytest

from multipose.bridges.posebh.figures import project_2d, prototype_image
from multipose.viz.tsne import _affinities, sign_invariant_distances, squared_distances, tsne


def _clusters(k=5, per=30, dim=12, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (k, dim))
    x = np.concatenate([c + rng.normal(0.0, spread, (per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per)


def _nearest(y: np.ndarray) -> np.ndarray:
    d = squared_distances(y)
    np.fill_diagonal(d, np.inf)
    return d.argmin(1)


def test_affinities_have_the_asked_perplexity():
    x, _ = _clusters()
    p = _affinities(squared_distances(x), perplexity=20.0)
    assert np.allclose(p.sum(1), 1.0) and np.all(np.diag(p) == 0)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)
    np.testing.assert_allclose(np.exp(entropy), 20.0, rtol=1e-3)


def test_separated_clusters_stay_separated_and_a_seed_fixes_the_result():
    x, label = _clusters()
    y = tsne(x, seed=3)
    assert y.shape == (len(x), 2) and np.isfinite(y).all()
    assert (label[_nearest(y)] == label).all()  # every point's nearest neighbour is of its own cluster
    centres = np.stack([y[label == c].mean(0) for c in range(5)])
    within = max(np.linalg.norm(y[label == c] - centres[c], axis=1).max() for c in range(5))
    between = min(np.linalg.norm(centres[a] - centres[b]) for a in range(5) for b in range(a + 1, 5))
    assert between > within  # no cluster reaches into another
    assert np.array_equal(y, tsne(x, seed=3))
    assert not np.allclose(y, tsne(x, seed=4))


def test_sign_invariant_distances_make_p_and_minus_p_one_point():
    x, label = _clusters(k=3, per=20)
    parity = np.arange(len(x)) % 2
    flipped = x * np.where(parity == 0, 1.0, -1.0)[:, None]  # half of every cluster negated
    d = sign_invariant_distances(flipped)
    np.testing.assert_allclose(d, sign_invariant_distances(x), atol=1e-12)
    nearest = _nearest(tsne(distances=d, seed=0))
    assert (label[nearest] == label).all()  # the clusters, whatever the signs
    assert (parity[nearest] == parity).mean() < 0.8  # negated and kept points mix within a cluster
    plain = _nearest(tsne(flipped, seed=0))  # Euclidean: the negated half of a cluster is another cluster
    assert (parity[plain] == parity).all()


def test_tsne_rejects_bad_input_and_caps_the_perplexity_of_small_sets():
    with pytest.raises(ValueError, match="not both"):
        tsne(np.zeros((5, 2)), distances=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="square"):
        tsne(distances=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        tsne(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="at least 3"):
        tsne(np.zeros((2, 2)))
    y = tsne(np.random.default_rng(0).normal(size=(8, 3)), iterations=50)  # perplexity 30 > N: capped
    assert y.shape == (8, 2) and np.isfinite(y).all()


def test_prototype_figure_uses_tsne_by_default_and_pca_on_request():
    x, label = _clusters(k=4, per=12, dim=8)
    tags = [f"t{c}" for c in label]
    owners = ["a" if i % 2 else "b" for i in range(len(x))]
    img = prototype_image(x, tags, owners)
    assert img.shape == (480, 480, 3) and img.dtype == np.uint8 and (img != 255).any()
    assert np.array_equal(img, prototype_image(x, tags, owners))  # deterministic picture
    assert not np.array_equal(img, prototype_image(x, tags, owners, projection="pca"))
    np.testing.assert_allclose(np.abs(project_2d(x, "pca")).sum(), np.abs(project_2d(x)).sum())
    with pytest.raises(ValueError, match="figure_projection"):
        project_2d(x, "umap")
