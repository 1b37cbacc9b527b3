"""``--conf-file agents.zoo_ppo``: the RL Zoo entry of preset ``default`` for ``--algo ppo`` (see :mod:`agents.zoo`):
``python -m rl_zoo3.train --algo ppo --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_ppo``.
"""

from agents.zoo import ENV_ID, zoo_hyperparams

hyperparams = {ENV_ID: zoo_hyperparams("ppo")}
