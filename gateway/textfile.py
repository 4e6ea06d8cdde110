"""Reading a text file a person wrote (the config, a device doc), with a one-line reason when it cannot be read."""

from __future__ import annotations

from pathlib import Path


class UnreadableFile(ValueError):
    """Why a file cannot be read as UTF-8 text, in words that say what to do."""


def read_text(path: Path) -> str:
    """The file's text; UnreadableFile for a directory, a file this user may not read, or one not in UTF-8.
    A missing file raises FileNotFoundError as usual: what to do about it depends on who asked."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise UnreadableFile("is a directory, not a file") from None
    except PermissionError:
        raise UnreadableFile("cannot be read: permission denied for this user (check its mode and owner)") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                             "save it as UTF-8") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot be read: {exc.strerror or exc}") from None
