"""Architectures, training code and committed weights for CNN Lens."""
