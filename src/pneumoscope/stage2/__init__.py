"""Stage 2: features of image and predicted mask, tuned XGBoost classifier."""
