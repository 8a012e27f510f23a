"""aucli: facial Action Unit annotation workflows built on AUFormer (ECCV 2024)."""

__version__ = "0.1.0"
