"""Inference: the predictor (the Python API), batch prediction over files, backends, export, Grad-CAM, overlays."""
