"""studies: the orchestration layer, above ``smac_core`` (training, data, metrics) and
``landscape`` (reward landscapes of checkpoints), which never import it.

- ``studies.experiments``: a grid of runs from a spec, their landscapes and export, on local
  processes or a Slurm cluster (``python -m studies.experiments``);
- ``studies.quickstart``: the main job on the embedded door data (``python -m studies.quickstart``);
- ``studies.api``: the toolkit from Python (notebooks, scripts);
- ``studies.plot``: learning curves of runs (``python -m studies.plot``).
"""
