"""skbnn: scikit-learn estimators that train binary neural networks.

Weights and activations are +/-1, stored as bits; training and inference run
on XNOR/popcount kernels whose SIMD path (AVX-512 VPOPCNTDQ, AVX2, POPCNT or
portable) is chosen once at import (``SKBNN_ISA`` forces one).
"""
from ._bep import BEPClassifier
from ._bep_recurrent import BEPRecurrentClassifier
from ._config import get_config, show_config
from ._export import export_c
from ._local import LocalBinaryClassifier
from ._lowmem import LowMemBNNClassifier
from .preprocessing import MedianBinarizer, ThermometerEncoder

__version__ = "0.1.0"

__all__ = [
    "BEPClassifier",
    "BEPRecurrentClassifier",
    "LocalBinaryClassifier",
    "LowMemBNNClassifier",
    "MedianBinarizer",
    "ThermometerEncoder",
    "export_c",
    "get_config",
    "show_config",
    "__version__",
]
