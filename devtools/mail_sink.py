"""A local SMTP server that keeps every message it receives in a Maildir, for `make run` and the
tests: the portal sends real mail over SMTP, and nothing leaves the machine."""
from __future__ import annotations

import mailbox
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from devtools.redis_server import free_port


class MailSink:
    """An aiosmtpd server on 127.0.0.1 writing to `directory` (a Maildir) until `stop()`."""

    def __init__(self, directory: Path | str, port: int | None = None):
        self.directory = Path(directory)
        for part in ("new", "cur", "tmp"):  # a Maildir's folders, whether or not `directory` exists
            (self.directory / part).mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._controller = Controller(Mailbox(str(self.directory)), hostname=self.host, port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[Message]:
        """Every message received so far, oldest first."""
        return read_mailbox(self.directory)

    def clear(self) -> None:
        box = mailbox.Maildir(str(self.directory))
        for key in list(box.keys()):
            box.discard(key)


def read_mailbox(directory: Path | str) -> list[Message]:
    """The messages of a Maildir, oldest first (empty when it does not exist yet)."""
    if not Path(directory, "new").exists() and not Path(directory, "cur").exists():
        return []
    box = mailbox.Maildir(str(directory), create=False)
    return sorted((box[key] for key in box.keys()), key=lambda message: message.get_date())
