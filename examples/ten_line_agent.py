"""A memory-backed agent with a tool, in ten lines (runs on the embedded local model, offline)."""

from agentmem import Agent


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 23 degrees Celsius in {city}"


with Agent(memory="episodic", tools=[get_weather], user_id="ann") as agent:
    print(agent.chat("Hi! My favourite city is Paris.", thread_id="monday").text)
    print(agent.chat("What's the weather in Paris?", thread_id="friday").text)
