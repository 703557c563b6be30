"""The old import path of the comparison protocol, now the package :mod:`multipose.compare`.

Kept because the Hydra target of the batch-digest callback (:data:`multipose.compare.BATCH_DIGEST_TARGET`,
``multipose.utils.compare.BatchDigest``) is part of every comparison run's config key: runs made before the split
keep their keys and are reused. New code imports from :mod:`multipose.compare`.
"""

from multipose.compare import *  # noqa: F403
from multipose.compare import __all__  # noqa: F401
