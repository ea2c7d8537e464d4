"""HTTP API and web viewer (FastAPI)."""
