"""skbnn: scikit-learn estimators that train binary neural networks."""
from ._config import get_config, show_config

__version__ = "0.1.0"

__all__ = ["get_config", "show_config", "__version__"]
