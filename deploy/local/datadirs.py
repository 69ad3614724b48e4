"""Where the stack's data lives when a component runs as another user (PostgreSQL under root).

Everything the stack writes lives under its home (``CHATSTACK_HOME``, ``<repo>/.stack``) except
one thing: as root, PostgreSQL runs as the ``postgres`` user, which cannot reach a home under a
private folder (any clone inside ``/root``, any ``mktemp -d``). Its data then lives in a folder of
its own under ``CHATSTACK_SYSTEM_DATA`` (``/var/lib/chatstack``), one per stack home:
``<sha256 of the home path>/postgres``, every parent world-traversable. ``owner`` in that folder
names the home and its stack id, a random value written once into the home: a home deleted and
created again at the same path gets a fresh database, not the old one (which would not match its
new Kafka). ``make clean`` removes the folder; a start removes folders whose home is gone.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from deploy.local.processes import StackError, pid_alive

DEFAULT_SYSTEM_DATA = Path("/var/lib/chatstack")
_OWNER = "owner"
_STACK_ID = "stack-id"


def stack_id(home: Path) -> str:
    """This home's random id, written on first use."""
    path = home / _STACK_ID
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(8) + "\n")
    return path.read_text().strip()


def shared_folder(home: Path, system_data: Path) -> Path:
    """The folder outside the home that holds this home's data for other users."""
    return system_data / hashlib.sha256(str(home).encode()).hexdigest()[:16]


def _owner_id(folder: Path) -> tuple[Path, str] | None:
    try:
        home_line, id_line, *_rest = (folder / _OWNER).read_text().splitlines()
    except (OSError, ValueError):
        return None
    return Path(home_line), id_line


def check_traversable(path: Path) -> None:
    """StackError unless other users may pass through ``path`` and each of its parents (o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            raise StackError(
                f"postgres: {parent} is not traversable by other users (mode "
                f"{stat.filemode(parent.stat().st_mode)}); set CHATSTACK_SYSTEM_DATA to a folder "
                "whose parents are all world-traversable"
            )


def prepare_shared_folder(home: Path, system_data: Path) -> tuple[Path, bool]:
    """Create this home's shared folder, world-traversable, owned by root.

    Returns the folder and whether stale data of an earlier home at the same path was removed.
    """
    folder = shared_folder(home, system_data)
    current = stack_id(home)
    stale = folder.exists() and _owner_id(folder) != (home, current)
    if stale:
        shutil.rmtree(folder)
    for path in (system_data, folder):
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    (folder / _OWNER).write_text(f"{home}\n{current}\n")
    return folder, stale


def remove_shared_folder(home: Path, system_data: Path) -> Path | None:
    """Delete this home's shared folder (``make clean``); return it if there was one."""
    folder = shared_folder(home, system_data)
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return folder


def prune_orphans(system_data: Path, *, in_use: Callable[[Path], bool]) -> list[Path]:
    """Delete shared folders whose home is gone (or was re-created); return what was removed.

    ``in_use`` guards a folder whose server still runs (its home was deleted under it).
    """
    removed: list[Path] = []
    if not system_data.is_dir():
        return removed
    for folder in sorted(system_data.iterdir()):
        owner = _owner_id(folder)
        if owner is None:
            continue
        id_file = owner[0] / _STACK_ID
        current = id_file.read_text().strip() if id_file.exists() else None
        if current == owner[1] or in_use(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def postmaster_running(folder: Path) -> bool:
    """True when the PostgreSQL server of a shared folder still runs (its pid is alive)."""
    try:
        pid = int((folder / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)
