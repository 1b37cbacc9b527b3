"""``--conf-file agents.zoo_dqn``: the RL Zoo entry of preset ``default`` for ``--algo dqn`` (see :mod:`agents.zoo`):
``python -m rl_zoo3.train --algo dqn --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_dqn``.
"""

from agents.zoo import ENV_ID, zoo_hyperparams

hyperparams = {ENV_ID: zoo_hyperparams("dqn")}
