"""Stage 1, real data: manifests of raw datasets, preprocessing, anatomy and the label scheme."""
