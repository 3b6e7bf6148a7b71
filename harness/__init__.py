"""harness: the accuracy and memory regression gate for SGLang serving quantized MoE models."""

__version__ = "0.1.0"
