"""A synthetic AU corpus with exact ground truth: rendered faces, AU timelines, label noise.

The real AU corpora (BP4D, DISFA, CASME II) are licensed and absent; this package renders a corpus
in their layouts whose ground truth is known exactly, including which labels are wrong. Entry
point: :func:`make_corpus` (``aucli synth``). Modules, bottom up: :mod:`.identity` (subjects),
:mod:`.facs` (what each AU does), :mod:`.face` (a subject's static face), :mod:`.render` (one
frame: AUs, eyes, lips, light, pose), :mod:`.scene` (background, body, occluders, camera),
:mod:`.events` (AU timelines), :mod:`.noise` (label noise with a ledger), :mod:`.writers` (file
formats), :mod:`.recording` (one recording: frames, label and part files), :mod:`.corpus` (the
whole corpus), :mod:`.contact_sheet`. Its measured properties are ``bench/benchlib/synth_gates.py``
(``python bench/synth_stats.py``).
"""

from aucli.synth.corpus import CorpusConfig, CorpusManifest, make_corpus
from aucli.synth.facs import SYNTH_AUS
from aucli.synth.noise import NOISE_PRESETS, NoiseMix

__all__ = ["CorpusConfig", "CorpusManifest", "make_corpus", "SYNTH_AUS", "NoiseMix", "NOISE_PRESETS"]
