"""``--conf-file agents.zoo_a2c``: the RL Zoo entry of preset ``default`` for ``--algo a2c`` (see :mod:`agents.zoo`):
``python -m rl_zoo3.train --algo a2c --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_a2c``.
"""

from agents.zoo import ENV_ID, zoo_hyperparams

hyperparams = {ENV_ID: zoo_hyperparams("a2c")}
