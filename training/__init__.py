"""Training and evaluation of the rrsis architectures (see training/README.md)."""
