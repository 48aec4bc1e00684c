"""Synthetic cohorts: generate, verify and export shareable datasets."""
