"""Every on-disk folder pneumoscope writes and reads, knowing files and nothing else.

- :mod:`.names`: every file name in a run folder, which derive from its weights, what to say of stale ones;
- :mod:`.run`: the run folder (``train-seg --out``) — config, split, history, weights, checkpoint, metrics;
- :mod:`.derived`: the files derived from the weights, stamped with their id (rule, export, precision, memo);
- :mod:`.stage2`: the stage-2 classifier's files;
- :mod:`.study`: the study folder (``run --out``);
- :mod:`.legacy`: what older versions left (recognised here; converted by :mod:`pneumoscope.upgrade`).

Which derived file to trust, which precision, which backend: decided by the modules that own those
decisions (``stage1.postprocess``, ``inference.precision``, ``inference.backend_choice``), never here.
The ``predict --out`` folder is :mod:`pneumoscope.inference.prediction_folder`: it draws the overlays it
writes, so it sits above the pictures, not down here with the plain files.
"""

from .run import Run
from .study import Study, fold_folder, fold_member, holds_a_model, resolve_run

__all__ = ["Run", "Study", "fold_folder", "fold_member", "holds_a_model", "resolve_run"]
