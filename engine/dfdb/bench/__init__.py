"""Benchmark of dfdb: degraded test footage, quality metrics, the ffmpeg peers, and the report.

``dfdb bench`` runs it (see :mod:`dfdb.bench.cli`); :mod:`dfdb.bench.synth` makes the footage
and documents the degradation profiles.
"""
