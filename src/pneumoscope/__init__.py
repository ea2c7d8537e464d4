"""pneumoscope: pneumothorax detection and segmentation in chest X-rays.

Stage 1 is a U-Net (segmentation-models-pytorch) trained with a composite
BCE + Dice + Focal loss; stage 2 classifies DenseNet features of the image and
of the predicted mask with a tuned XGBoost model.
"""

__version__ = "0.1.0"
