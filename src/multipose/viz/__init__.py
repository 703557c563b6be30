"""Pictures of a run: learning curves and validation crops with predicted skeletons (OpenCV, no matplotlib)."""

from multipose.viz.callback import PosePictures, write_png_atomic
from multipose.viz.crops import pose_tile, tile_grid, unnormalise
from multipose.viz.plot import learning_curves, line_chart

__all__ = [
    "PosePictures",
    "learning_curves",
    "line_chart",
    "pose_tile",
    "tile_grid",
    "unnormalise",
    "write_png_atomic",
]
