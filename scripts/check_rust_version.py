#!/usr/bin/env python3
"""Fails when a dependency needs a newer Rust than Cargo.toml's
`rust-version` says: compares it with the `rust_version` of every package
in `cargo metadata` (for the host platform, with the lock file as it is).

    scripts/check_rust_version.py                  # runs cargo metadata
    scripts/check_rust_version.py --metadata FILE  # a saved metadata JSON (tests)

Run by scripts/test; exits 1 naming each package that raises the minimum.
"""
import argparse
import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in v.split("."))[:3] + (0,) * (3 - len(v.split(".")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metadata")
    args = ap.parse_args()
    if args.metadata:
        with open(args.metadata, encoding="utf-8") as f:
            meta = json.load(f)
    else:
        host = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout.splitlines()
            if line.startswith("host:")
        )
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", host],
            capture_output=True, text=True, check=True,
        ).stdout
        meta = json.loads(out)
    root_id = meta["resolve"]["root"]
    root = next(p for p in meta["packages"] if p["id"] == root_id)
    declared = root.get("rust_version")
    if not declared:
        print(f"check-rust-version: {root['name']} declares no rust-version in Cargo.toml")
        return 1
    raised = sorted(
        (p["name"], p["version"], p["rust_version"])
        for p in meta["packages"]
        if p.get("rust_version") and version(p["rust_version"]) > version(declared)
    )
    if raised:
        for name, ver, need in raised:
            print(f"check-rust-version: {name} {ver} needs Rust {need}, but Cargo.toml says rust-version = {declared}")
        print("check-rust-version: raise rust-version in Cargo.toml (and the README) or pin the dependency")
        return 1
    print(f"check-rust-version: every dependency builds with Rust {declared}, as Cargo.toml says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
