"""Stage 1: the U-Net, its loss and metrics, the trainer and the post-processing rule."""
