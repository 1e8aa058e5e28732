"""Offline text encoders for class-name semantics (FedSM)."""

from runner.models.text.encoders import MiniLMTextEncoder, OpenCLIPTextEncoder

__all__ = ["MiniLMTextEncoder", "OpenCLIPTextEncoder"]
