"""palign: keep many git branches aligned with the branches they target."""

__version__ = "0.1.0"
