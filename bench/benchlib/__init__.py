"""What the benchmarks share, as a library: ``from benchlib import learning`` in a script of bench/.

- :mod:`benchlib.learning`: the learning checks' corpus, store, fixed-budget recipe and run folders;
- :mod:`benchlib.media`: the synthetic face video of the speed benchmarks;
- :mod:`benchlib.moke_reference`: AUFormer written literally, one module per expert (the
  efficient form's reference: ``bench/moke_overhead.py`` times it, the tests prove both agree);
- :mod:`benchlib.synth_gates`: measured properties of the synthetic corpus (``bench/synth_stats.py``).

A script run as ``python bench/NAME.py`` has bench/ first on ``sys.path``, so this package imports
like any other; the test suite adds bench/ through pytest's ``pythonpath`` setting (pyproject.toml).
Nothing here imports the tests.
"""
