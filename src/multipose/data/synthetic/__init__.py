"""The built-in synthetic multi-skeleton world (the default dataset: no downloads needed).

Five datasets, each a different *view* (skeleton) of the same hidden dense landmarks of procedurally
drawn humans and quadrupeds, written as genuine COCO / COCO-WholeBody / MPII files::

    from multipose.data.synthetic import ensure_world, world_datasets
    root = ensure_world("data/synthetic", "default", seed=0)   # generates once, then a no-op
    for d in world_datasets("default"):
        print(d.name, d.format, d.skeleton, d.train_ann)

CLI: ``python -m multipose.data.synthetic --out DIR [--seed N] [--preset default|tiny]``.
"""

from multipose.data.synthetic.world import (
    DOMAINS,
    GENERATOR_VERSION,
    DatasetSpec,
    WorldConfig,
    WorldDataset,
    ensure_world,
    generate_world,
    world_datasets,
    world_is_current,
)

__all__ = [
    "DOMAINS",
    "GENERATOR_VERSION",
    "DatasetSpec",
    "WorldConfig",
    "WorldDataset",
    "ensure_world",
    "generate_world",
    "world_datasets",
    "world_is_current",
]
