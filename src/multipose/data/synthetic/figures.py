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

Modules: :mod:`.figure_record` (:class:`Part`, :class:`Figure`), :mod:`.styles` (colours), :mod:`.human`
(with :mod:`.human_face` and :mod:`.human_hand`), :mod:`.quadruped`, :mod:`.vec2d` (2D helpers); this module
gathers their public names.

Skeleton *views* (``views.py``) pick and name landmarks; the renderer decides visibility from the
per-pixel part map, so visibility flags are honest by construction.
"""

from multipose.data.synthetic.figure_record import Figure, Part
from multipose.data.synthetic.human import sample_human
from multipose.data.synthetic.human_face import FACE_TEMPLATE
from multipose.data.synthetic.human_hand import FINGERS
from multipose.data.synthetic.quadruped import SPECIES, sample_quadruped
from multipose.data.synthetic.styles import AnimalStyle, HumanStyle

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
