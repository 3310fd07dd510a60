#!/usr/bin/env python3
"""Turns this workspace into a new service named NAME: `scripts/rename.py NAME [--dir DIR]`.

Renames, in every tracked text file and in file and directory names:

- the crates (`hexkv-core` → `NAME-core`, `hexkv_core` → `NAME_core`), the binary (`hexkv`),
- the protobuf package and its directory (`hexkv.v1`, `proto/hexkv/`),
- the environment prefix (`HEXKV_` → `NAME_`, upper case), metric names (`hexkv_*`),
- the documentation.

The on-disk format magics (`HEXKVLOG`, `HEXKVSNP`, `HEXKVEND`) are kept: they are 8-byte format
markers, not names, and keeping them keeps data directories readable. NAME must be lower case
letters and digits, starting with a letter (it becomes a crate prefix, a Rust identifier, a
protobuf package and an environment prefix). Run it on a clean checkout; then `cargo build`
regenerates Cargo.lock's entries for the renamed crates. CI runs it on a copy and tests the result.
"""

import argparse
import pathlib
import re
import subprocess
import sys

KEEP = ("HEXKVLOG", "HEXKVSNP", "HEXKVEND")
OLD = "hexkv"


def tracked_files(root):
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout
    return [root / p for p in out.decode().split("\0") if p]


def rename_text(text, new):
    placeholders = {}
    for i, token in enumerate(KEEP):
        marker = f"\0KEEP{i}\0"
        placeholders[marker] = token
        text = text.replace(token, marker)
    text = text.replace(OLD, new).replace(OLD.upper(), new.upper())
    for marker, token in placeholders.items():
        text = text.replace(marker, token)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new service's name, e.g. ledger")
    parser.add_argument("--dir", default=".", help="the workspace (default: the current directory)")
    args = parser.parse_args()
    new = args.name
    if not re.fullmatch(r"[a-z][a-z0-9]*", new) or new == OLD:
        sys.exit(f"rename: {new!r}: use lower case letters and digits, starting with a letter")
    root = pathlib.Path(args.dir).resolve()
    files = tracked_files(root)
    changed = 0
    for path in files:
        if not path.is_file() or "fuzz/corpus" in path.as_posix():
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary: left alone
        renamed = rename_text(text, new)
        if renamed != text:
            path.write_text(renamed, encoding="utf-8")
            changed += 1
    # Then the names of files and directories, deepest first.
    moved = 0
    paths = sorted(
        {p for f in files for p in [f, *f.parents] if root in p.parents and OLD in p.name},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    for path in paths:
        if path.exists():
            path.rename(path.with_name(path.name.replace(OLD, new)))
            moved += 1
    print(f"rename: {OLD} -> {new}: {changed} files edited, {moved} paths renamed")


if __name__ == "__main__":
    main()
