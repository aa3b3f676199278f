"""ViT Facemap: Vision Transformers for mouse orofacial keypoints, facial states and attention maps."""

from vit_facemap.errors import DataError

__version__ = "0.1.0"
__all__ = ["DataError", "__version__"]
