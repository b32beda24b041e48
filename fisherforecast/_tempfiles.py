"""Temporary files of atomic saves, and the removal of those a killed writer left behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import time

__all__ = ["HOST_TAG", "STALE_AFTER_S", "clean_stale_temporaries", "pid_is_dead", "writer_tag"]

# Temporary files are named '.<target>.<pid>-<host>.<16 hex>.tmp': the writer's pid and a tag
# of its host let a later save of the same target recognise and remove those a killed writer
# left behind (see `clean_stale_temporaries`).
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
STALE_AFTER_S = 600.0  # a temporary file untouched this long is abandoned, whoever wrote it


def writer_tag():
    return f"{os.getpid()}-{HOST_TAG}"


def pid_is_dead(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return pid > 2**22  # beyond any pid: cannot be running; else another user's
    return False


def clean_stale_temporaries(folder, name):
    """Remove temporary files of target `name` in `folder` left by a killed save.

    Only files named as `fisherforecast._io` names them (never '.bak' backups, which may be the one
    copy of a file whose restore failed) are candidates, and only if their writer ran on this
    host and is dead, or they were not modified for `STALE_AFTER_S` seconds.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(?:(\d+)-([0-9a-f]{{8}})\.)?[0-9a-f]{{16}}\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            pid, host = match.groups()
            dead = pid is not None and host == HOST_TAG and pid_is_dead(int(pid))
            if dead or now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S:
                os.unlink(entry.path)
