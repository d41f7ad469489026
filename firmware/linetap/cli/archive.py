"""``linetap archive status|verify``: the off-box copies compared with the index."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .base import Command, load_config
from .errors import EXIT_FAIL, EXIT_OK, CliError


def _archive_cfg(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    cfg = load_config(args)
    if cfg.archive is None:
        raise CliError("no [archive] in the config")
    return cfg


def cmd_archive(args: argparse.Namespace) -> int:
    from ..clock import parse_iso
    from ..index import archive as db
    from ..index.db import open_index
    cfg = _archive_cfg(args)
    index = open_index(cfg.recorder.data_dir)
    try:
        if args.action == "status":
            b = db.backlog(index)
            doc = {"remote": cfg.archive.remote, "required": cfg.archive.required, "backlog": b["count"],
                   "backlog_bytes": b["bytes"], "oldest_unarchived_ended_at": b["oldest_ended_at"],
                   "last_archived_at": db.last_archived_at(index), "archived": len(db.archived(index)),
                   "chain_seq_archived": db.chain_seq_archived(index)}
            if args.json:
                print(json.dumps(doc))
            else:
                age = "" if not b["oldest_ended_at"] else \
                    f" (oldest ended {(time.time() - parse_iso(b['oldest_ended_at'])) / 3600:.1f} h ago)"
                print(f"remote:   {doc['remote']}{' (required)' if doc['required'] else ''}\n"
                      f"archived: {doc['archived']} recording(s), last at {doc['last_archived_at'] or 'never'}\n"
                      f"backlog:  {b['count']} recording(s), {b['bytes'] / 1048576:.1f} MiB{age}\n"
                      f"chain:    {doc['chain_seq_archived']} entries on the remote")
            return EXIT_OK
        from ..archive import RcloneError
        try:
            return _verify(cfg, index, args)
        except RcloneError as e:
            raise CliError(f"archive: {e}") from None
    finally:
        index.close()


def _verify(cfg, index, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from ..archive import compare, layout
    from ..archive.rclone import Rclone, md5_file
    from ..index import archive as db
    rc = Rclone(remote=cfg.archive.remote, config=cfg.archive.rclone_config, bandwidth=cfg.archive.bandwidth)
    listing = rc.listing()
    rows = db.archived(index)
    data_dir = Path(cfg.recorder.data_dir)
    local = {}
    for r in rows:
        p = data_dir / r["path"]
        if p.is_file() and (listing.get(r["path"]) or {}).get("md5"):
            local[int(r["id"])] = md5_file(p)
    problems = compare.compare(rows, listing, local)
    segments = sorted(p for p in listing if p.startswith(layout.CHAIN_DIR + "/"))
    length, head, chain_problems = compare.check_chain(rc.read(p) for p in segments)
    problems += chain_problems
    for p in problems:
        print(p)
    print(f"{len(rows)} archived recording(s) checked, chain of {length} entries on the remote "
          f"(head {head[:16]}), {len(problems)} problem(s)")
    return EXIT_OK if not problems else EXIT_FAIL


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=("status", "verify"),
                    help="status: the backlog; verify: the remote against the index (exit 1 on a problem)")
    sp.add_argument("--json", action="store_true", help="status as one JSON object")


COMMANDS = (Command("archive", "the off-box archive: backlog, or the remote checked against the index",
                    cmd_archive, _arguments),)
