#!/usr/bin/env python3
"""Writes a new service's workspace: `scripts/new-service.py NAME [--dir DIR]`.

The new workspace holds:

- the platform crates, renamed (`hexkv-platform` → `NAME-platform`, and `-auth`, `-resilience`,
  `-telemetry`, `-test-postgres`): configuration layers and reload, serving with TLS, API keys,
  limits, telemetry, health and drain — no key-value code;
- `crates/NAME`, the service, made from `examples/counters`: a skeleton domain (named counters)
  with one port, memory and PostgreSQL adapters (cargo features `memory`, `postgres`, chosen by
  `store.backend`), REST and gRPC routes with their declared access, unit tests against mockall
  mocks, the port's contract suite, and socket and binary tests; its binary is `NAME`, its
  environment prefix `NAME_` (upper case), its problem types `urn:NAME:problem:…`;
- a README with the two commands, a justfile, `.ci/run`, a Dockerfile and Kubernetes manifests
  (from `scripts/new-service/`);
- hexkv's `Cargo.lock`, updated for the new crates only, so the new service builds with the
  versions hexkv is tested with.

Then replace the skeleton's domain with yours (docs/new-service.md says which files). NAME is
lower-case letters and digits, starting with a letter. DIR defaults to `./NAME` and must not
exist or be empty.
"""

import argparse
import pathlib
import re
import shutil
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from rename import rename_text  # noqa: E402  (the same renaming as `just rename`)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "scripts" / "new-service"
OLD = "hexkv"
# The platform crates a service keeps, as they are named here.
PLATFORM = ["auth", "platform", "resilience", "telemetry", "test-postgres"]
SKELETON = "examples/counters"
SKELETON_PACKAGE = "hexkv-example-counters"


def tracked(prefix):
    """The files under `prefix` that git tracks (or every file, outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", prefix],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        files = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [p for p in (ROOT / prefix).rglob("*") if p.is_file() and "target" not in p.parts]
    return files


def copy_tree(prefix, dest, transform):
    """Copies the files under `prefix` to `dest`, text through `transform`."""
    for path in tracked(prefix):
        target = dest / path.relative_to(ROOT / prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
            continue
        target.write_text(transform(text), encoding="utf-8")
        target.chmod(path.stat().st_mode)


def skeleton_text(text, name):
    """The skeleton's text for a service called `name`: the package, binary and crate are
    `name`, the service's name in its answers is `name`, its environment prefix `NAME_`; the
    domain (counters, `/v1/counters/…`, `counters.v1`) stays, to be replaced."""
    text = text.replace(SKELETON_PACKAGE, name).replace(SKELETON_PACKAGE.replace("-", "_"), name)
    text = text.replace('pub const NAME: &str = "counters";', f'pub const NAME: &str = "{name}";')
    text = text.replace("COUNTERS_", f"{name.upper()}_")
    return rename_text(text, name)


def workspace_manifest(name, crate_dirs):
    """The new workspace's Cargo.toml: hexkv's package settings, lints and profiles, and the
    `[workspace.dependencies]` entries its crates use."""
    used = set()
    for crate in crate_dirs:
        manifest = (crate / "Cargo.toml").read_text()
        used.update(re.findall(r"^([A-Za-z0-9_-]+)(?:\.workspace\s*=|\s*=\s*\{[^}\n]*workspace\s*=\s*true)", manifest, re.M))
    sections = re.split(r"^(?=\[)", (ROOT / "Cargo.toml").read_text(), flags=re.M)
    out = [
        "[workspace]\n",
        'resolver = "3"\n',
        'members = ["crates/*"]\n',
        f"# `cargo run` at the root means the service.\ndefault-members = [\"crates/{name}\"]\n\n",
    ]
    for section in sections:
        header = section.split("\n", 1)[0].strip()
        if header == "[workspace.dependencies]":
            kept = [header + "\n"]
            for line in section.split("\n")[1:]:
                key = re.match(r"^([A-Za-z0-9_-]+)\s*=", line)
                if key and rename_text(key.group(1), name) in used:
                    kept.append(rename_text(line, name) + "\n")
            out.append("".join(kept) + "\n")
        elif header == "[workspace.package]" or header.startswith("[workspace.lints") or header.startswith("[profile"):
            # Without hexkv's comments, which speak of hexkv's measurements.
            lines = [line for line in section.split("\n") if not line.startswith("#")]
            out.append(rename_text("\n".join(lines), name))
    return "".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new service's name, e.g. orders")
    parser.add_argument("--dir", help="where to write it (default: ./NAME)")
    args = parser.parse_args()
    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9]*", name) or name in (OLD, "counters"):
        sys.exit(f"new-service: {name!r}: use lower-case letters and digits, starting with a letter (not {OLD!r} or 'counters')")
    dest = pathlib.Path(args.dir or name).resolve()
    if dest.exists() and any(dest.iterdir()):
        sys.exit(f"new-service: {dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)

    crates = []
    for part in PLATFORM:
        target = dest / "crates" / f"{name}-{part}"
        copy_tree(f"crates/{OLD}-{part}", target, lambda t: rename_text(t, name))
        crates.append(target)
    service = dest / "crates" / name
    copy_tree(SKELETON, service, lambda t: skeleton_text(t, name))
    if f'pub const NAME: &str = "{name}";' not in (service / "src" / "lib.rs").read_text():
        sys.exit("new-service: the skeleton's `pub const NAME` was not found to rename")
    crates.append(service)

    (dest / "Cargo.toml").write_text(workspace_manifest(name, crates))
    shutil.copyfile(ROOT / "Cargo.lock", dest / "Cargo.lock")
    for template in sorted(p for p in TEMPLATES.rglob("*") if p.is_file()):
        relative = template.relative_to(TEMPLATES).as_posix()
        # Dot files are kept without their dot here, so the template directory lists them.
        relative = {"gitignore": ".gitignore", "dockerignore": ".dockerignore", "ci/run": ".ci/run"}.get(relative, relative)
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = template.read_text().replace("{{name}}", name).replace("{{NAME}}", name.upper())
        target.write_text(text)
        target.chmod(template.stat().st_mode)

    # The lock file names the new crates (no download: every other package is hexkv's).
    if shutil.which("cargo"):
        subprocess.run(["cargo", "update", "--workspace", "--offline", "--quiet"], cwd=dest, check=True)
        # Renamed imports sort differently.
        subprocess.run(["cargo", "fmt", "--all"], cwd=dest, check=True)
    else:
        print("new-service: cargo not found: run `cargo update --workspace` and `cargo fmt --all` in the new workspace", file=sys.stderr)
    print(f"new-service: wrote {dest} ({len(crates)} crates). Next:\n"
          f"  cd {dest} && git init -q && cargo test --workspace\n"
          f"  then replace the skeleton's domain in crates/{name} (docs/new-service.md in hexkv)")


if __name__ == "__main__":
    main()
