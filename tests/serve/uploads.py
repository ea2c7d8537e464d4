"""Upload payloads shared by the API and browser tests."""

from pathlib import Path


def positive_png(tiny_synth: Path) -> bytes:
    """The bytes of a phantom with a pneumothorax."""
    return sorted((tiny_synth / "png_images").glob("*_1_.png"))[0].read_bytes()
