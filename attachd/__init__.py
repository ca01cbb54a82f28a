"""attachd: shared pieces of the upload pipeline (settings, errors, CLI) used by api/, workers/ and storage/."""
