"""tlcourse: helpers for a hands-on course on transfer learning with Keras.

The notebooks show the teaching code (freezing, ``trainable``, ``compile``,
``fit``); this package holds the plumbing: data loading, caching, the
pretrained backbones, plots and widgets.
"""

__version__ = "0.1.0"

from .config import cache_dir, datasets_dir, setup_course  # noqa: E402  (no TensorFlow import)

__all__ = ["cache_dir", "datasets_dir", "setup_course", "__version__"]
