"""A local model server in the Azure OpenAI chat-completions shape.

Run `python -m offline_model --port 8099` to give the app a model without any cloud account
(the deterministic `OfflineBrain`); tests drive it with a `ScriptedBrain` instead.
"""

from offline_model.brains import LABEL, OFFLINE_MODEL_NAME, Brain, OfflineBrain, ScriptedBrain
from offline_model.replies import Completion, Delayed, HttpError, Paced, Reply, ToolCallSpec
from offline_model.server import ModelServer, RecordedRequest

__all__ = [
    "LABEL",
    "OFFLINE_MODEL_NAME",
    "Brain",
    "Completion",
    "Delayed",
    "HttpError",
    "ModelServer",
    "OfflineBrain",
    "Paced",
    "RecordedRequest",
    "Reply",
    "ScriptedBrain",
    "ToolCallSpec",
]
