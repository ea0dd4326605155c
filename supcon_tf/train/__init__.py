"""Training in rooms: the plan (`plan`), what is trained and checkpointed (`state`),
the replica step (`step`), the outer loop (`loop`), evaluation (`evaluate`),
summaries and the projector (`summaries`, `projector`)."""

from supcon_tf.errors import CorruptDataError
from supcon_tf.errors import NonFiniteLossError
from supcon_tf.train.loop import Trainer
from supcon_tf.train.plan import StagePlan
from supcon_tf.train.plan import plan_stages
from supcon_tf.train.plan import untrained_classifier_reason
