"""The application around the domain: the ``marginlab`` command (:mod:`.cli`), the validated
run configuration (:mod:`.config`, :mod:`.config_template`), the batch runner and its
checkpoint files (:mod:`.runner`, :mod:`._runfiles`), reports (:mod:`.report`), the demo
(:mod:`.demo`) and the engine's HTTP service (:mod:`.service`).

The domain (market models, books, margin methods, liquidation, backtests, the engine) lives
in :mod:`marginlab.models` and never imports this package, except lazily where the domain's
own command-line parsers hand over to it.
"""
