"""Media input: discovery of videos, images and frame folders, and exact-index decoding."""

from aucli.media.decode import Frame, MediaInfo, file_digest, iter_frames, probe, read_image
from aucli.media.sources import DiscoveryResult, MediaSource, discover_sources

__all__ = [
    "DiscoveryResult",
    "Frame",
    "MediaInfo",
    "MediaSource",
    "discover_sources",
    "file_digest",
    "iter_frames",
    "probe",
    "read_image",
]
