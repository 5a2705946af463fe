"""Finding one JSON message in an agent's stream as its bytes arrive.

An agent sends a message and waits for the answer without ending the stream, so the end
of the message is where its outermost object closes. The scanner keeps its place between
reads (a message sent byte by byte costs what it costs sent at once) and refuses a message
that nests too deep or grows too large before anything parses it, so ``json.loads`` only
ever sees one complete, bounded object.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Outside strings, only these bytes change the state; inside, only a quote or a backslash.
_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_IN_STRING = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


class MessageError(ValueError):
    """A message that is not one JSON object within the limits; the text names the fault."""


class MessageScanner:
    def __init__(self, max_bytes: int, max_depth: int) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.buffer = bytearray()
        self.end: int | None = None  # where the object ends, once it has
        self._position = 0  # everything before is scanned
        self._depth = 0
        self._in_string = False

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; whether the object is now complete."""
        self.buffer += data
        if len(self.buffer) > self.max_bytes:
            raise MessageError(f"a message is limited to {self.max_bytes} bytes")
        if self.end is None:
            self._scan()
        return self.end is not None

    def message(self) -> dict[str, Any]:
        """The complete object, parsed."""
        assert self.end is not None
        try:
            value = json.loads(bytes(self.buffer[: self.end]))
        except (UnicodeDecodeError, json.JSONDecodeError) as problem:
            raise MessageError(f"a message is not valid JSON: {problem}") from None
        assert isinstance(value, dict)  # the scanner saw "{" first and its match last
        return value

    def _scan(self) -> None:
        buffer, position, size = self.buffer, self._position, len(self.buffer)
        if self._depth == 0 and not self._in_string:
            while position < size and buffer[position] in _WHITESPACE:
                position += 1
            if position < size and buffer[position] != ord("{"):
                raise MessageError("a message must be a JSON object")
        while position < size:
            if self._in_string:
                found = _IN_STRING.search(buffer, position)
                if found is None:
                    position = size
                    break
                position = found.start()
                if buffer[position] == ord("\\"):
                    if position + 1 == size:
                        break  # the escaped byte has not arrived: look at the backslash again
                    position += 2
                    continue
                self._in_string = False
                position += 1
                continue
            found = _STRUCTURAL.search(buffer, position)
            if found is None:
                position = size
                break
            position = found.start()
            byte = buffer[position]
            position += 1
            if byte == ord('"'):
                self._in_string = True
            elif byte in b"{[":
                self._depth += 1
                if self._depth > self.max_depth:
                    raise MessageError(f"a message may nest at most {self.max_depth} levels deep")
            else:
                self._depth -= 1
                if self._depth <= 0:
                    if self._depth < 0:
                        raise MessageError("a message is not valid JSON: unbalanced brackets")
                    self.end = position
                    break
        self._position = position
