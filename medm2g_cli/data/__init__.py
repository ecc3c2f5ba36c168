"""Data: transforms (intensities, slice geometry), manifests, dataset adapters and the phantom cohort."""
