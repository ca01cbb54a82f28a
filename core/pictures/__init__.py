"""Picture code both the workers (sanitize) and the API (renditions on demand) use: decoding
under limits, orientation, encoding with nothing but what the picture needs, scaling. It imports
Pillow and nothing of ours but core, so either side may import it without importing the other."""
