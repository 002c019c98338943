# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Hashes of files and trees: plain functions with no test-framework import, so that the
child processes that read lazy mounts (common.child_*) use the very same code."""

import hashlib
import os
import stat


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hashes(root):
    """sha256 of every regular file under root, by relative path (reads every byte)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(files):
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                out["/" + os.path.relpath(p, root)] = sha256_file(p)
    return out
