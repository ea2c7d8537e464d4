"""``pneumoscope listen``: a DICOM node that receives radiographs and sends results back.

Storage SCP (:mod:`.scp`) -> spool folder (:mod:`.spool`, written before each C-STORE is
acknowledged) -> a study is predicted after a quiet period (:mod:`.service`, never inside the
C-STORE handler) -> results queued per destination -> sent with retries and back-off
(:mod:`.destinations`). Only CR/DX radiographs are predicted (:mod:`.filters`). Every part logs
to :data:`LOG` (``pneumoscope.node``).
"""

LOG = "pneumoscope.node"  # the node's one logger name (the CLI configures it; its modules write to it)
