"""greeter: a bot that welcomes people and tells them what a room is for.

A chatgate plugin written in Python, to show that a plugin need not be Rust.

Commands:
- `/hello`: the bot says `hello, <user>!` in the sender's room.
- `/about`: the sender alone is told the `about` text.

When someone leaves a room, the bot says `goodbye, <user>` there.

Lines made only of capital letters (at least 8 of them, blanks, digits and
punctuation aside) are dropped with `please do not shout`.

Settings:
- `bot`: the bot's name (default `greeter`).
- `about`: the text `/about` answers (default
  `this room is served by chatgate`).

README: build with componentize-py 0.25.1, from this directory:
`componentize-py -d ../../wit -w plugin componentize app -o greeter-py.wasm`
(`../build` does it, into ../out/).
"""

import wit_world
from wit_world import Err
from wit_world.imports import host, types

# Module state is per instance: chatgate starts every instance with `init`.
bot = "greeter"
about = "this room is served by chatgate"

SHOUT_LETTERS = 8


def is_shouting(text: str) -> bool:
    """Whether every letter is a capital and there are enough of them to
    count as shouting. Letters without case (most scripts) never shout."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= SHOUT_LETTERS and all(c.isupper() for c in letters)


class WitWorld(wit_world.WitWorld):
    def init(self, settings: list[tuple[str, str]]) -> types.Manifest:
        global bot, about
        for key, value in settings:
            if key == "bot":
                bot = value.strip()
            elif key == "about":
                about = value.strip()
            else:
                # A `result` export fails by raising Err with the error value.
                raise Err(f"unknown setting `{key}` (known: bot, about)")
        return types.Manifest(
            hooks=[types.Hook.MESSAGE, types.Hook.COMMAND, types.Hook.LEAVE],
            bots=[bot],
            tick_millis=None,
        )

    def on_join(self, request: types.JoinRequest) -> types.Admission:
        return types.Admission_Allow()

    def on_message(self, message: types.Message) -> types.Verdict:
        if is_shouting(message.text):
            return types.Verdict_Drop("please do not shout")
        return types.Verdict_Pass()

    def on_command(self, command: types.Command) -> types.Answer:
        if command.name == "about":
            return types.Answer_Handled([about])
        if command.name == "hello":
            try:
                host.say(command.room, bot, f"hello, {command.user}!")
            except Err as error:
                # A host function's `result` error arrives raised, too.
                return types.Answer_Handled([f"no greeting: {error.value}"])
            # The whole room, the sender too, sees the greeting.
            return types.Answer_Handled([])
        return types.Answer_Unknown()

    def on_leave(self, room: str, user: str) -> None:
        # Says goodbye in the room the user left (if anyone is still there
        # to hear it; the host refuses otherwise, which is fine).
        try:
            host.say(room, bot, f"goodbye, {user}")
        except Err:
            pass

    def on_tick(self, rooms: list[str]) -> None:
        pass
