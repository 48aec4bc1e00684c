"""Conditional generators (label map -> multi-modal MRI): networks, losses, training, synthesis."""
