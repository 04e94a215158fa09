"""The tool domains of toolprefs: tools, the preferences that ground them, and how users talk.

Everything here is data. A :class:`Slot` is one preference a user holds (a
seat position, a spice level, a meeting length) with the values it can take
and the phrasings in which users state it and later correct it. A
:class:`ToolDef` is one tool: the parameters a request states ("given"), the
preference slots it needs from memory, how users ask for it, and how a user
mentions the task earlier and comes back to it later ("task state").

Preference parameters are enums in the tool's JSON schema, as real booking
APIs have: a model that does not remember can only guess among the values,
one that remembers can copy the value from the statement. Statements name
their domain ("when I fly", "for takeaway") so that a retriever asked about a
flight can find them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmem.llm.tools import ToolSpec

__all__ = ["Slot", "GivenParam", "ToolDef", "SLOTS", "TOOLS", "DOMAINS", "DISTRACTORS", "REPLIES", "tool_spec"]


class Slot(BaseModel):
    """One preference: its parameter name, values, and how users state and correct it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["string", "integer"] = "string"
    values: tuple[Any, ...]
    description: str
    statements: tuple[str, ...] = Field(description="templates with {v} (and {a}, its article)")
    corrections: tuple[str, ...] = Field(
        description="templates with {v} (new) and optionally {old}; {a}, {a_old} articles"
    )

    def say(self, template: str, value: Any, old: Any = None) -> str:
        """A template filled in: ``{v}``/``{old}`` the values, ``{a}``/``{a_old}`` their articles."""
        return template.format(v=value, old=old, a=_article(value), a_old=_article(old))


class GivenParam(BaseModel):
    """A parameter a request states outright (a destination, a date, a room)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["string", "integer", "date", "time"] = "string"
    description: str
    pool: tuple[Any, ...] = ()


class ToolDef(BaseModel):
    """One tool of one domain."""

    model_config = ConfigDict(frozen=True)

    name: str
    domain: str
    description: str
    given: dict[str, GivenParam]
    prefs: tuple[str, ...]
    requests: tuple[str, ...] = Field(description="templates naming every given parameter")
    state_statements: tuple[str, ...] = Field(description="the user mentions the task (given values) and breaks off")
    state_requests: tuple[str, ...] = Field(description="the later request that refers back to the task")


def _article(value: Any) -> str:
    return "an" if str(value)[:1].lower() in "aeiou" and str(value)[:1] else "a"


def _slot(
    name: str,
    kind: Literal["string", "integer"],
    values: tuple[Any, ...],
    description: str,
    statements: tuple[str, ...],
    corrections: tuple[str, ...],
) -> Slot:
    return Slot(
        name=name, kind=kind, values=values, description=description, statements=statements, corrections=corrections
    )


SLOTS: dict[str, Slot] = {
    s.name: s
    for s in [
        # -- travel
        _slot(
            "seat",
            "string",
            ("window", "aisle", "exit row"),
            "the seat the user prefers on planes",
            (
                "When I fly I always want {a} {v} seat.",
                "Please remember that on planes I sit in {a} {v} seat, nothing else.",
                "I get restless on flights unless I have {a} {v} seat.",
            ),
            (
                "Actually, I've switched to {v} seats when I fly.",
                "Update for flights: I want {a} {v} seat from now on, not {old}.",
            ),
        ),
        _slot(
            "airline",
            "string",
            ("Lufthansa", "KLM", "Air France", "Iberia", "SAS"),
            "the airline the user prefers",
            (
                "For flights I stick with {v}, I collect their miles.",
                "My airline of choice is {v}; book them whenever you can.",
            ),
            (
                "I moved my frequent flyer status to {v}, so fly me with {v} now.",
                "Forget {old}, from now on my airline is {v}.",
            ),
        ),
        _slot(
            "meal",
            "string",
            ("vegetarian", "vegan", "gluten-free", "halal", "kosher"),
            "the in-flight meal the user prefers",
            ("On flights please always order me the {v} meal.", "When I fly I only eat the {v} meal option."),
            (
                "For flights, change my meal to {v} from now on.",
                "I switched diets: my in-flight meal should be {v} now, not {old}.",
            ),
        ),
        _slot(
            "room_type",
            "string",
            ("single", "double", "suite"),
            "the hotel room type the user prefers",
            ("At hotels I always book {a} {v} room.", "For hotel stays I want {a} {v} room, please remember that."),
            (
                "For hotels I now prefer {a} {v} room.",
                "Change of habit: book me {a} {v} room at hotels, not {a_old} {old}.",
            ),
        ),
        _slot(
            "bed",
            "string",
            ("king", "queen", "twin"),
            "the hotel bed size the user prefers",
            ("In hotels I sleep best in {a} {v} bed.", "When you book a hotel, I need {a} {v} bed."),
            (
                "My back is better now, so {a} {v} bed is what I want in hotels.",
                "For hotels, switch my bed to {v} from now on.",
            ),
        ),
        # -- food
        _slot(
            "spice_level",
            "string",
            ("mild", "medium", "hot", "extra hot"),
            "how spicy the user wants food ordered",
            (
                "Whenever I order food, make the spice level {v}.",
                "For takeaway I like my food {v}, please remember that.",
            ),
            (
                "My stomach has changed: order my food {v} from now on.",
                "For food orders, switch the spice level to {v}, not {old}.",
            ),
        ),
        _slot(
            "payment_method",
            "string",
            ("credit card", "paypal", "cash", "apple pay"),
            "how the user pays for food orders",
            ("For food delivery I always pay with {v}.", "When you order takeaway for me, pay by {v}."),
            ("I now pay for food orders with {v}.", "For takeaway, use {v} from now on, not {old}."),
        ),
        _slot(
            "seating",
            "string",
            ("indoor", "outdoor", "bar"),
            "where the user likes to sit in restaurants",
            ("At restaurants I always want {v} seating.", "When you book a restaurant for me, ask for {v} seating."),
            ("These days I prefer {v} seating at restaurants.", "For restaurant bookings, switch me to {v} seating."),
        ),
        _slot(
            "cuisine",
            "string",
            ("thai", "italian", "indian", "japanese", "mexican"),
            "the cuisine the user likes when eating out",
            ("My favourite cuisine for eating out is {v}.", "When we go to a restaurant, I want {v} food."),
            (
                "I'm tired of {old}; {v} is my go-to cuisine for restaurants now.",
                "For restaurant bookings, my favourite cuisine is now {v}.",
            ),
        ),
        # -- calendar
        _slot(
            "duration_minutes",
            "integer",
            (15, 30, 45, 60, 90),
            "how long the user's meetings last, in minutes",
            ("My meetings should be {v} minutes long.", "When you schedule a meeting for me, make it {v} minutes."),
            (
                "I'm changing my meeting length to {v} minutes from now on.",
                "Meetings of {old} minutes are too much; make my meetings {v} minutes now.",
            ),
        ),
        _slot(
            "reminder_minutes",
            "integer",
            (5, 10, 15, 30, 60),
            "how many minutes before a meeting the user wants a reminder",
            ("Remind me {v} minutes before each meeting.", "For meetings I need a reminder {v} minutes ahead."),
            (
                "Change my meeting reminders to {v} minutes before.",
                "Actually, remind me {v} minutes before meetings now, not {old}.",
            ),
        ),
        _slot(
            "video_app",
            "string",
            ("zoom", "teams", "google meet"),
            "the video call app the user's meetings use",
            ("I run all my meetings on {v}.", "Put my meetings on {v}, that's what I use for video calls."),
            ("Our company moved to {v}, so my meetings are on {v} now.", "For meetings, switch from {old} to {v}."),
        ),
        _slot(
            "hours",
            "integer",
            (1, 2, 3, 4),
            "how many hours of focus time the user blocks",
            ("My focus time blocks should be {v} hours long.", "When you block focus time for me, make it {v} hours."),
            ("I'm changing my focus blocks to {v} hours.", "For focus time, make it {v} hours from now on."),
        ),
        _slot(
            "time_of_day",
            "string",
            ("morning", "afternoon", "evening"),
            "when the user likes focus time",
            ("I do my deep work in the {v}, so put focus time there.", "Focus time works best for me in the {v}."),
            (
                "These days I concentrate better in the {v}, so move my focus time there.",
                "For focus time, switch to the {v} from now on.",
            ),
        ),
        # -- smart home
        _slot(
            "temperature",
            "integer",
            (18, 19, 20, 21, 22, 23, 24),
            "the thermostat temperature the user likes, in degrees",
            ("I like my thermostat at {v} degrees.", "At home the thermostat should be set to {v} degrees."),
            (
                "It's been chilly, so set my thermostat to {v} degrees from now on.",
                "Change my thermostat preference to {v} degrees, not {old}.",
            ),
        ),
        _slot(
            "mode",
            "string",
            ("heat", "eco", "auto"),
            "the thermostat mode the user prefers",
            ("Keep my thermostat in {v} mode.", "For the heating, I always use {v} mode."),
            ("Switch my thermostat to {v} mode from now on.", "For the thermostat, use {v} mode now, not {old}."),
        ),
        _slot(
            "brightness",
            "integer",
            (20, 40, 60, 80, 100),
            "the light brightness the user likes, in percent",
            ("I like my lights at {v} percent brightness.", "When you turn on my lights, set them to {v} percent."),
            (
                "My eyes prefer {v} percent light brightness now.",
                "For my lights, change the brightness to {v} percent.",
            ),
        ),
        _slot(
            "color",
            "string",
            ("warm white", "cool white", "daylight"),
            "the light color the user likes",
            ("My lights should always be {v}.", "For home lighting I like the {v} color."),
            ("I've gone off {old}; make my lights {v} from now on.", "For my lights, switch the color to {v}."),
        ),
    ]
}

_CITIES = ("Oslo", "Lisbon", "Vienna", "Dublin", "Prague", "Madrid", "Helsinki", "Athens", "Zurich", "Warsaw")
_DISHES = ("pad thai", "margherita pizza", "chicken curry", "sushi platter", "beef burrito", "ramen", "falafel wrap")
_TITLES = ("budget review", "team sync", "project kickoff", "client call", "design review", "quarterly planning")
_ROOMS = ("living room", "bedroom", "kitchen", "office")

TOOLS: dict[str, ToolDef] = {
    t.name: t
    for t in [
        ToolDef(
            name="book_flight",
            domain="travel",
            description="book a flight (a plane ticket) to a city",
            given={
                "destination": GivenParam(description="the city to fly to", pool=_CITIES),
                "date": GivenParam(kind="date", description="the departure date, YYYY-MM-DD"),
            },
            prefs=("seat", "airline", "meal"),
            requests=(
                "Book me a flight to {destination} on {date}.",
                "I need a flight to {destination} on {date}, please book it.",
            ),
            state_statements=(
                "I have to fly to {destination} on {date} for a conference. Oh, my phone is ringing, let's "
                "sort out the booking later.",
            ),
            state_requests=("Please book the flight for the trip I mentioned earlier.",),
        ),
        ToolDef(
            name="book_hotel",
            domain="travel",
            description="book a hotel room (a stay of some nights)",
            given={
                "city": GivenParam(description="the city of the hotel", pool=_CITIES),
                "check_in": GivenParam(kind="date", description="the check-in date, YYYY-MM-DD"),
                "nights": GivenParam(kind="integer", description="number of nights", pool=(1, 2, 3, 4, 5)),
            },
            prefs=("room_type", "bed"),
            requests=(
                "Book me a hotel in {city} from {check_in} for {nights} nights.",
                "I need a hotel in {city}, checking in on {check_in}, {nights} nights.",
            ),
            state_statements=(
                "I'll need a hotel in {city} from {check_in}, {nights} nights. Sorry, I have to run, more "
                "about that later.",
            ),
            state_requests=("Go ahead and book the hotel stay I told you about.",),
        ),
        ToolDef(
            name="order_food",
            domain="food",
            description="order a dish for delivery",
            given={"dish": GivenParam(description="the dish to order", pool=_DISHES)},
            prefs=("spice_level", "payment_method"),
            requests=("Order {dish} for dinner tonight.", "Get me {dish} delivered, please."),
            state_statements=("I keep thinking about {dish} for dinner on Friday. Hold on, someone is at the door.",),
            state_requests=("It's Friday: order the dish I was craving.",),
        ),
        ToolDef(
            name="book_table",
            domain="food",
            description="reserve a table at a restaurant",
            given={
                "date": GivenParam(kind="date", description="the date, YYYY-MM-DD"),
                "time": GivenParam(kind="time", description="the time, HH:MM"),
                "party_size": GivenParam(kind="integer", description="number of people", pool=(2, 3, 4, 5, 6)),
            },
            prefs=("seating", "cuisine"),
            requests=(
                "Reserve a restaurant table for {party_size} people on {date} at {time}.",
                "Find us a restaurant: {party_size} people, {date} at {time}.",
            ),
            state_statements=(
                "Some friends want to eat out on {date} at {time}, {party_size} of us. Let me check with them "
                "and get back to you.",
            ),
            state_requests=("Everyone is in: reserve the restaurant table we talked about.",),
        ),
        ToolDef(
            name="schedule_meeting",
            domain="calendar",
            description="schedule a meeting with a title",
            given={
                "title": GivenParam(description="the meeting title", pool=_TITLES),
                "date": GivenParam(kind="date", description="the date, YYYY-MM-DD"),
            },
            prefs=("duration_minutes", "reminder_minutes", "video_app"),
            requests=(
                "Schedule a meeting called '{title}' on {date}.",
                "Put the '{title}' meeting on my calendar for {date}.",
            ),
            state_statements=(
                "I need a meeting called '{title}' on {date}. I'll confirm it later, my boss is calling.",
            ),
            state_requests=("Please schedule that meeting I mentioned earlier.",),
        ),
        ToolDef(
            name="block_focus_time",
            domain="calendar",
            description="block focus time on the calendar",
            given={"date": GivenParam(kind="date", description="the date, YYYY-MM-DD")},
            prefs=("hours", "time_of_day"),
            requests=("Block some focus time for me on {date}.", "I need focus time on {date}, put it in my calendar."),
            state_statements=("I will need focus time on {date}. Wait, let me finish this email first.",),
            state_requests=("Block the focus time I asked about earlier.",),
        ),
        ToolDef(
            name="set_thermostat",
            domain="smart home",
            description="set the thermostat (heating) of a room",
            given={"room": GivenParam(description="the room", pool=_ROOMS)},
            prefs=("temperature", "mode"),
            requests=("Set the thermostat in the {room}.", "Please adjust the heating in the {room}."),
            state_statements=("The {room} is never the right temperature. Hmm, I'll deal with it later.",),
            state_requests=("Fix the thermostat in the room I complained about.",),
        ),
        ToolDef(
            name="set_lights",
            domain="smart home",
            description="turn on the lights of a room",
            given={"room": GivenParam(description="the room", pool=_ROOMS)},
            prefs=("brightness", "color"),
            requests=("Turn on the lights in the {room}.", "Switch on the {room} lights, please."),
            state_statements=("The {room} is so dark in the evenings. Anyway, never mind for now.",),
            state_requests=("Turn on the lights in the room I said was dark.",),
        ),
    ]
}

DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(t.domain for t in TOOLS.values()))

DISTRACTORS: tuple[str, ...] = (
    # small talk
    "The weather has been so grey this week.",
    "I finally finished that mystery novel, the ending was wild.",
    "My neighbour's dog barked all night again.",
    "I started learning the guitar, my fingers hurt.",
    "We watched a documentary about octopuses yesterday.",
    "My sister is visiting next month, I need to clean the spare room.",
    "I tried a new running route along the river this morning.",
    "Work has been hectic since the reorganisation.",
    "I repotted all my plants on Sunday.",
    "Did you know the museum downtown is free on Thursdays?",
    "My laptop battery barely lasts two hours now.",
    "I think I'm finally getting the hang of sourdough.",
    "The kids have a school concert coming up.",
    "I signed up for a pottery class, wish me luck.",
    "Traffic was terrible on the way home today.",
    "I've been sleeping badly, too much coffee probably.",
    "We're thinking about painting the hallway green.",
    "My friend just got engaged, so exciting!",
    "I lost my umbrella on the bus again.",
    "I'm trying to read more books this year.",
    # near misses: the domain, but no preference
    "My colleague just came back from a trip to Japan.",
    "Airports are so crowded during school holidays.",
    "We had pizza at the office party last Friday.",
    "There's a new bakery on the corner of my street.",
    "My calendar is a mess this month.",
    "The power went out for an hour yesterday.",
    "I read that smart plugs can save energy.",
    "Hotel prices in summer are ridiculous.",
)

REPLIES: tuple[str, ...] = (
    "Got it.",
    "Noted, thanks for telling me.",
    "Okay, I'll keep that in mind.",
    "Sounds good!",
    "I see.",
    "Thanks for sharing that.",
    "Understood.",
    "Sure thing.",
)


_PATTERNS = {"date": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "time": "^[0-9]{2}:[0-9]{2}$"}


def tool_spec(tool: ToolDef) -> ToolSpec:
    """The tool as the agent sees it: given parameters first, then the preference enums."""
    props: dict[str, Any] = {}
    for name, param in tool.given.items():
        kind = "integer" if param.kind == "integer" else "string"
        props[name] = {"type": kind, "description": param.description}
        if param.kind in _PATTERNS:  # the format is part of the API; it also stops a copied memory timestamp
            props[name]["pattern"] = _PATTERNS[param.kind]
    for name in tool.prefs:
        slot = SLOTS[name]
        props[name] = {
            "type": slot.kind,
            "enum": list(slot.values),
            "description": f"{slot.description} (as the user told you)",
        }
    return ToolSpec(
        name=tool.name,
        description=tool.description,
        parameters={"type": "object", "properties": props, "required": list(props), "additionalProperties": False},
    )
