"""``linetap archive verify``: the remote compared with the index (pure, on two listings).

Problems:

- ``missing``: a recording the index marks archived is not on the remote (or its sidecar is not);
- ``size`` / ``checksum``: the remote copy differs from what the index holds;
- ``chain``: the chain on the remote does not recompute (digest, link) or breaks off;
- (not a problem) recordings on the remote the index no longer has: deleted from the box after
  archiving, which is what the archive is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from ..evidence.export_verify import GENESIS, digest, link
from . import layout


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # missing | size | checksum | chain
    call_id: int | None
    detail: str

    def __str__(self) -> str:
        who = f"call {self.call_id}: " if self.call_id is not None else ""
        return f"{self.kind}: {who}{self.detail}"


def compare(archived: Iterable[dict[str, Any]], remote: dict[str, dict[str, Any]],
            local_md5: dict[int, str]) -> list[Problem]:
    """Each archived calls row ({id, path, bytes, sha256}) against the remote listing
    ({path: {size, md5}}); ``local_md5`` the MD5 of files still on the box, where the remote has MD5."""
    problems: list[Problem] = []
    for row in archived:
        cid, path = int(row["id"]), str(row["path"])
        item = remote.get(path)
        if item is None:
            problems.append(Problem("missing", cid, f"{path} is not on the remote"))
            continue
        if layout.sidecar_path(path) not in remote:
            problems.append(Problem("missing", cid, f"{layout.sidecar_path(path)} is not on the remote"))
        if row.get("bytes") is not None and item.get("size") not in (None, -1) and item["size"] != row["bytes"]:
            problems.append(Problem("size", cid, f"{path}: {item['size']} bytes on the remote, {row['bytes']} "
                                                 "in the index"))
        md5 = local_md5.get(cid)
        if md5 and item.get("md5") and item["md5"] != md5:
            problems.append(Problem("checksum", cid, f"{path}: MD5 differs from the file on the box"))
    return problems


def check_chain(segments: Iterable[bytes]) -> tuple[int, str, list[Problem]]:
    """Recompute the chain from its segments (in order): (length, head hash, problems)."""
    prev, seq, problems = GENESIS, 0, []
    for data in segments:
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                problems.append(Problem("chain", None, f"unreadable entry after seq {seq}"))
                return seq, prev, problems
            if e.get("seq") != seq + 1 or e.get("prev_hash") != prev or e.get("digest") != digest(e.get("payload")) \
                    or e.get("hash") != link(prev, e.get("digest", "")):
                problems.append(Problem("chain", e.get("call_id"), f"entry {e.get('seq')} does not follow entry {seq}"))
                return seq, prev, problems
            seq, prev = e["seq"], e["hash"]
    return seq, prev, problems
