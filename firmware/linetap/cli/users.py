"""``linetap user add|del|passwd|token``: the web interface's users, from the box's shell."""

from __future__ import annotations

import argparse

from .base import Command, load_config
from .errors import EXIT_OK, CliError, UsageError
from .web import _password_twice


def cmd_user(args: argparse.Namespace) -> int:
    from ..index import web as q
    from ..index.db import open_index
    from ..web import auth, passwords, service

    cfg = load_config(args)
    if not auth.USER_RE.match(args.name):
        raise UsageError(f"NAME: must match [a-z0-9_.-] (1-32 characters), not {args.name!r}")
    index = open_index(cfg.recorder.data_dir)
    try:
        if args.action == "add":
            if not args.role:
                raise UsageError("--role: required for 'user add' (admin, listener or viewer)")
            if q.user_get(index, args.name) is not None:
                raise CliError(f"user {args.name!r} already exists")
            try:
                service.add_user(index, args.name, args.role, _password_twice())
            except ValueError as e:
                raise UsageError(str(e)) from None
            print(f"user {args.name} added ({args.role})")
        elif args.action == "del":
            if not q.user_delete(index, args.name):
                raise CliError(f"no user {args.name!r}")
            print(f"user {args.name} deleted (their sessions ended)")
        elif args.action == "passwd":
            if not q.user_set_password(index, args.name, passwords.hash_password(_password_twice())):
                raise CliError(f"no user {args.name!r}")
            print(f"password of {args.name} changed (their sessions ended)")
        else:  # token
            token = auth.new_token()
            if not q.user_set_token(index, args.name, auth.digest(token)):
                raise CliError(f"no user {args.name!r}")
            print(token)  # shown once; the index keeps only its hash
    finally:
        index.close()
    return EXIT_OK


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=("add", "del", "passwd", "token"))
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--role", choices=("admin", "listener", "viewer"))


COMMANDS = (Command("user", "web users: add NAME --role R | del NAME | passwd NAME | token NAME (a new API token)",
                    cmd_user, _arguments),)
