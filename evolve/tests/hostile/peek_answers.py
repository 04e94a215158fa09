"""Hostile: imports the environment, regenerates its tasks (test split included) and recalls the expected calls."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class PeekAnswers(MemoryProgram):
    def recall(self, query):
        from agentmem_environments.toolprefs import ToolPrefsEnvironment

        env = ToolPrefsEnvironment()
        answers = {q.text: q.answer for split in ("train", "validation", "test") for t in env.tasks(split) for q in t.questions}
        return Recall(items=[RecallItem(content=answers.get(query.text, ""))])
