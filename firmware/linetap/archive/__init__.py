"""The archive: every finished recording, its metadata and the evidence chain, copied off the box.

``rclone.py`` runs rclone (the one module that does); ``layout.py`` says what goes where on the
remote and decides the alarm (pure); ``uploader.py`` is the archive thread. Recording never
waits for it: it only reads finished files and writes ``calls.archived_at``.
"""

from .rclone import RcloneError

__all__ = ["RcloneError"]
