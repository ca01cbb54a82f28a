"""Picture code both the workers (verify, sanitize) and the API (renditions on demand) use:
decoding under limits, orientation, encoding with nothing but what the picture needs, scaling.
It imports Pillow (and pillow-heif) and nothing of ours but core, so either side may import it
without importing the other."""

from __future__ import annotations

import pillow_heif

# HEIC/HEIF through pillow-heif's Pillow plugin, registered once per process by importing this
# package: Image.open then reads them as format "HEIF". Thumbnails, depth maps and auxiliary
# images are never decoded (a served picture is its primary image); one decode thread, as the
# workers' prefork processes are the parallelism. libheif's own security limits stay on.
# AVIF is Pillow's own (11.3+), not pillow-heif's.
pillow_heif.register_heif_opener(
    thumbnails=False, depth_images=False, aux_images=False, decode_threads=1
)
