"""attachd: what api/, workers/ and storage/ share: settings, errors, clamd client, CLI."""
