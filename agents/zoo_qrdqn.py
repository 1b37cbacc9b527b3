"""``--conf-file agents.zoo_qrdqn``: the RL Zoo entry of preset ``default`` for ``--algo qrdqn`` (see :mod:`agents.zoo`):
``python -m rl_zoo3.train --algo qrdqn --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_qrdqn``.
"""

from agents.zoo import ENV_ID, zoo_hyperparams

hyperparams = {ENV_ID: zoo_hyperparams("qrdqn")}
