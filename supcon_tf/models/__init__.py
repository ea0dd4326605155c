"""Encoders, heads and the SupCon model."""

from supcon_tf.models.heads import LinearClassifier
from supcon_tf.models.heads import ProjectionHead
from supcon_tf.models.model import build_model
from supcon_tf.models.model import SupConModel
from supcon_tf.models.resnet import ResNet
from supcon_tf.models.resnet import SUPPORTED_DEPTHS
from supcon_tf.models.resnet import SUPPORTED_VERSIONS

__all__ = [
    "LinearClassifier",
    "ProjectionHead",
    "ResNet",
    "SUPPORTED_DEPTHS",
    "SUPPORTED_VERSIONS",
    "SupConModel",
    "build_model",
]
