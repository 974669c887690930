"""dfdb: simultaneous video deflickering and deblotching with a model-based convex solver.

Headless use::

    import dfdb
    dfdb.restore("scan.mov", "restored.mov", preset="balanced")

    restorer = dfdb.Restorer(dfdb.Params.from_preset("fast"))
    for frame in restorer.process(frames):      # (T, H, W, C) float32 in [0, 1]
        ...                                      # frame.image, frame.mask, frame.stats
"""
from .api import restore
from .errors import Cancelled, DfdbError, InputError, OutputError, ParamError, ResourceError, UnsupportedError
from .frames import RestoredFrame
from .params import PRESETS, Params
from .restorer import Restorer

__version__ = "0.1.0"

__all__ = [
    "Cancelled", "DfdbError", "InputError", "OutputError", "ParamError", "PRESETS", "Params",
    "ResourceError", "RestoredFrame", "Restorer", "UnsupportedError", "__version__", "restore",
]
