"""An evolved-looking variant of the episodic plugin: more hits, a little recency."""

from typing import ClassVar

from pydantic import BaseModel

from agentmem.types import Query, Recall
from agentmem_episodic import EpisodicMemory, EpisodicParams


class EpisodicPlusParams(EpisodicParams):
    pass


EpisodicPlusParams.model_fields["top_k"].default = 10


class EpisodicPlus(EpisodicMemory):
    name: ClassVar[str] = "episodic-plus"
    Params: ClassVar[type[BaseModel]] = EpisodicPlusParams

    def recall(self, query: Query) -> Recall:
        got = super().recall(query)
        return got.model_copy(update={"plugin": self.name})
