"""Reading, validating, editing and packaging BluePyOpt optimisation folders.

Django-free on purpose: views, Celery tasks, management commands, the NSG results
collector and the analysis engine all call these modules. One module per concept:

- ``archive``: safe extraction of untrusted zip and tar archives.
- ``layout``: what belongs in an optimisation folder and what never travels with it.
- ``config``: reading the four ``config/*.json`` files.
- ``optimisation``: finding, validating and loading an optimisation folder.
- ``parameters``, ``features``, ``protocols``: the three configs as display rows,
  their well-formedness checks, bounds editing and stimulus traces.
- ``naming``: ``<region>_<pyr|int>_<e-type>_<morphology>_<YYYYmmddHHMMSS>`` names.
- ``metadata``: the catalogue's ``<NAME>_meta.json``.
- ``fixes``: known fixes that let legacy models run on current BluePyOpt.
- ``package``: the deterministic run package zip sent to NSG or run locally.
- ``source``: the source files shown in the "toggle source code" panel.

Shared groundwork: ``errors`` (``BpoError``, which carries every problem found),
``numeric`` (finite numbers from JSON or form text), ``ordering`` (natural sort of names
such as ``step_-0.8``) and ``wording`` (how values are quoted in messages).
"""
