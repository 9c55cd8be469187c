"""Why a Docker socket cannot be used, said so that the reader knows what to change.

A connection error alone is misleading: where the host path of a socket mount does not exist,
the engine creates an empty directory there and connecting to it fails with "permission
denied", which reads like a group problem. Looking at the path itself tells the cases apart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MOUNT_ADVICE = "mount the engine's socket there (in compose, the volume marked ADAPT) or set DOCKER_HOST"


def socket_problem(url: str) -> str | None:
    """What is wrong with the unix socket `url` names, with what to do; None when nothing is
    visibly wrong (or `url` is not a unix socket), so the connection error says the rest."""
    if not url.startswith("unix://"):
        return None
    path = Path(url.removeprefix("unix://"))
    try:
        mode = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist: {MOUNT_ADVICE}"
    except PermissionError:
        return f"{path} cannot be reached: a directory above it is not searchable by uid {os.getuid()}"
    if stat.S_ISDIR(mode.st_mode):
        return (f"{path} is a directory, not a socket: the host path mounted there did not exist, so the "
                f"engine created an empty directory in its place; {MOUNT_ADVICE}")
    if not stat.S_ISSOCK(mode.st_mode):
        return f"{path} is not a socket: {MOUNT_ADVICE}"
    if not os.access(path, os.R_OK | os.W_OK):
        groups = ",".join(map(str, sorted({os.getgid(), *os.getgroups()})))
        return (f"{path}: permission denied: the socket is uid {mode.st_uid}, gid {mode.st_gid}, mode "
                f"{stat.S_IMODE(mode.st_mode):04o}, and this process is uid {os.getuid()} in groups {groups}; "
                f"start the image as root (it then joins the socket's group and drops root itself) or add "
                f"group {mode.st_gid} (compose: group_add)")
    return None
