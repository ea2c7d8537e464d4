"""Models: the U-Net of stage 1, built with segmentation-models-pytorch."""

from .unet import ENCODERS, build_model, canonical_encoder

__all__ = ["ENCODERS", "build_model", "canonical_encoder"]
