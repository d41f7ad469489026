"""Storage: one crash-safe audio file per call under data_dir/recordings/."""
