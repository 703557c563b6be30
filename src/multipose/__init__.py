"""multipose: train one pose model on many keypoint datasets whose skeletons differ."""

from multipose.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # ${multipose.cpu_precision:} in conf/trainer/cpu.yaml

__all__ = ["__version__", "load_pose_model"]


def __getattr__(name):  # lazy: keep `import multipose` cheap
    if name == "load_pose_model":
        from multipose.models.loading import load_pose_model

        return load_pose_model
    raise AttributeError(name)
