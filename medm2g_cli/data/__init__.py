"""Data: transforms, slicing, datasets, dataset adapters and the phantom cohort."""
