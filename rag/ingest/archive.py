"""model.tar.gz members that any user can read.

SageMaker extracts model.tar.gz into /opt/ml/model keeping each member's mode, and the serving workers
drop root for an unprivileged user (RAG_WORKER_USER). A file packed from a private folder (0600, a
temporary directory's 0700) would then be unreadable to them, so every member is stored readable by all,
and folders and executables searchable/executable by all. Nothing is made writable.
"""

from __future__ import annotations

import tarfile


def readable_by_all(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A tarfile `filter=` for `TarFile.add`: adds a+r, and a+x where the owner may search/execute."""
    member.mode |= 0o444
    if member.isdir() or member.mode & 0o100:
        member.mode |= 0o111
    return member
