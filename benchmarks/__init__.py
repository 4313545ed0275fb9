"""marginlab's benchmarks: throughput, memory and compile time against baselines and peers.

Run ``python -m benchmarks`` from the repository root (``--help`` for options). One file per
subject, ``bench_<subject>.py``, after numpy's and scipy's ``benchmarks/`` (asv) layout; each
defines ``SUBJECT``, ``TITLE``, ``make_context(quick)`` and a list ``BENCHMARKS`` of
:class:`~benchmarks._harness.Benchmark`. ``BENCHMARKS.md`` describes the measurements, the
targets and the latest results.
"""
