"""Model code against the filesystem: secrets it must not read, files it must not write, escapes from scratch.

The gateway's files are set up so that file modes alone would let the job's uid in (world-readable, and
world-writable where a write is attempted); what keeps the job out has to be the sandbox.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import gateway
from security.attack import DENIED, MODULE_LOOP, SECRET, Attacker

pytestmark = MODULE_LOOP
ORIGINAL = "original content\n"
NO_REFER = "[Errno 18] Invalid cross-device link"  # Landlock: no right to move or link files across its rules


def write_secret_files(attacker: Attacker) -> None:
    (attacker.base / "pyuse.toml").write_text(f'[llm]\napi_key = "{SECRET}"\n')
    ssh = attacker.base / "home" / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)  # the module's tests share one gateway and its base dir
    (ssh / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n")
    for path in (ssh.parent, ssh, ssh / "id_ed25519", attacker.base / "pyuse.toml"):
        path.chmod(0o755 if path.is_dir() else 0o644)


READS: dict[str, Callable[[Attacker], str]] = {
    "config file": lambda a: repr(str(a.base / "pyuse.toml")),
    "store": lambda a: repr(str(a.data_dir / "pyuse.db")),
    "ssh key": lambda a: repr(str(a.base / "home" / ".ssh" / "id_ed25519")),
    "init's environment": lambda a: "'/proc/1/environ'",
    "own environment": lambda a: "'/proc/self/environ'",
    "zygote memory": lambda a: "f'/proc/{os.getppid()}/mem'",
    "gateway memory": lambda a: f"'/proc/{os.getpid()}/mem'",
    "shadow passwords": lambda a: "'/etc/shadow'",
    "gateway source": lambda a: repr(str(Path(gateway.__file__).parent / "config" / "loading.py")),
}


@pytest.mark.parametrize("target", READS)
async def test_reading_a_secret_is_denied(attacker, target):
    write_secret_files(attacker)
    result = await attacker.run(f"import os\nprint(open({READS[target](attacker)}, 'rb').read(4096))")
    assert result.status == "error"
    assert DENIED in result.output
    assert SECRET not in result.output and "SQLite format" not in result.output


HOST_DIRS = ("/", "/root", "/proc", "/sys/class/net", "/dev", "..")
LIST_DIRS = f"""import os
for path in {HOST_DIRS!r}:
    try:
        print(path, os.listdir(path))
    except OSError as error:
        print(path, type(error).__name__)
"""


async def test_listing_the_host_is_denied(attacker):
    result = await attacker.run(LIST_DIRS)
    assert result.output.splitlines() == [f"{path} PermissionError" for path in HOST_DIRS]


@pytest.fixture
def planted(attacker: Attacker) -> dict[str, Path]:
    """Files the job must not change, in directories whose modes would let anyone write."""
    data = attacker.data_dir
    files = {"device doc": data / "device_docs" / "custom_relay.md", "skill": data / "skills" / "lights.py",
             "config file": attacker.base / "pyuse.toml",
             "other task's scratch": data / "scratch" / "othertask" / "notes.txt"}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ORIGINAL)
        path.chmod(0o666)
    for directory in {data, data / "scratch", *(path.parent for path in files.values())}:
        directory.chmod(0o777)
    return files


@pytest.mark.parametrize("target", ["device doc", "skill", "config file", "other task's scratch"])
async def test_overwriting_a_gateway_file_is_denied(attacker, planted, target):
    result = await attacker.run(f"open({str(planted[target])!r}, 'w').write('tampered')")
    assert DENIED in result.output
    assert planted[target].read_text() == ORIGINAL


def fresh_path_in(kind: str, attacker: Attacker) -> Path:
    name = f"planted-{uuid.uuid4().hex}.py"
    data = attacker.data_dir
    directory = {"/tmp": Path("/tmp"), "data dir": data, "device docs": data / "device_docs",
                 "gateway source tree": Path(gateway.__file__).parent}
    return directory[kind] / name


@pytest.mark.parametrize("kind", ["/tmp", "data dir", "device docs", "gateway source tree"])
async def test_creating_a_file_outside_scratch_is_denied(attacker, planted, kind):
    target = fresh_path_in(kind, attacker)
    try:
        result = await attacker.run(f"open({str(target)!r}, 'w').write('import os')")
        assert DENIED in result.output
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


ESCAPES = {
    "symlink to a file": (("import os\nos.symlink({doc!r}, 'link')\n"
                           "open('link', 'w').write('tampered')"), DENIED),
    "symlink to a directory": (("import os\nos.symlink({docs!r}, 'dir')\n"
                                "open('dir/custom_relay.md', 'w').write('tampered')"), DENIED),
    "dot-dot": ("open('../../device_docs/custom_relay.md', 'w').write('tampered')", DENIED),
    "dot-dot after chdir": (("import os\nos.chdir('..')\n"
                             "open('othertask/notes.txt', 'w').write('tampered')"), DENIED),
    "hard link": ("import os\nos.link({doc!r}, 'hard')\nopen('hard', 'w').write('tampered')", NO_REFER),
    # Scratch is a tmpfs of its own: the kernel refuses the move across filesystems even before Landlock does.
    "rename into scratch": ("import os\nos.rename({doc!r}, 'stolen.md')", (DENIED, NO_REFER)),
    "unlink": ("import os\nos.unlink({doc!r})", DENIED),
}


@pytest.mark.parametrize("escape", ESCAPES)
async def test_escaping_scratch_is_denied(attacker, planted, escape):
    template, errors = ESCAPES[escape]
    doc = planted["device doc"]
    result = await attacker.run(template.format(doc=str(doc), docs=str(doc.parent)))
    assert any(error in result.output for error in ((errors,) if isinstance(errors, str) else errors)), result.output
    assert doc.read_text() == ORIGINAL and planted["other task's scratch"].read_text() == ORIGINAL


async def test_scratch_and_dev_null_stay_writable(attacker):
    """The positive control: the denials above are the sandbox's doing, not a broken job."""
    result = await attacker.run("open('notes.txt', 'w').write('kept')\nopen('/dev/null', 'w').write('gone')\n"
                                "print(open('notes.txt').read())")
    assert (result.status, result.output) == ("ok", "kept\n")


@pytest.mark.parametrize(("path", "mode"), [("/dev/tty", "r+b"), ("/dev/ptmx", "r+b"), ("/dev/kmsg", "rb"),
                                           ("/dev/shm/planted-", "wb")])
async def test_opening_a_world_accessible_device_node_is_denied(attacker, path, mode):
    target = Path(path + uuid.uuid4().hex if path.endswith("-") else path)
    try:
        result = await attacker.run(f"open({str(target)!r}, {mode!r})")
        assert DENIED in result.output
    finally:
        if target.parent == Path("/dev/shm"):
            target.unlink(missing_ok=True)
