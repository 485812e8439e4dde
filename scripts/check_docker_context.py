#!/usr/bin/env python3
"""Proves, without a Docker engine, that `docker build -f deploy/Dockerfile .` has every file
the compiler reads for the `deliberate` binary, and nothing the build does not need.

How (stdlib only, about a second):
  1. the build context: /.dockerignore, which must be an allowlist (`*`, then `!path` lines
     naming files or directories; any other form is refused, so this script never has to
     guess Docker's pattern rules);
  2. the image's source tree: the build stage's WORKDIR and COPY lines applied to that
     context, in a temp dir (a COPY source outside the context fails, as `docker build` would);
  3. what the binary needs: the compiler's dep-info, which lists every file rustc read for
     it: each module, and each file pulled in with include_bytes!/include_str!/include!
     (models/*). After `cargo build` that is the file cargo writes beside the binary
     (target/<profile>/deliberate.d, the library's files included); after `cargo test`,
     which links the binary without writing that file, it is rustc's own dep-info of the
     binary (deps/deliberate-HASH.d, HASH found by the hard link cargo made) and of the
     library it links (the newest deps/libdeliberate-HASH.rlib's). This is the compiler's
     own list, not a grep for macros, so `#[path]` modules, `concat!` paths and new embeds
     are covered; `#[cfg(test)]` embeds (tests/fixtures/) are not in a non-test build and so
     are not required. Every listed file must be in the image tree;
  4. the manifest: `cargo fetch --locked --offline` in the image tree must succeed (it
     parses Cargo.toml as `cargo build` does, so the [[bench]] files it declares must be
     there, and Cargo.lock must match it);
  5. "exactly what it needs": the checks are repeated without each `.dockerignore` entry and
     without each COPY line in turn; each removal must make them fail.

Why not build the binary from the copied context: a release build is minutes on CI's two
cores, and a `cargo check` there recompiles the dependencies with other features (about as
long). The dep-info list is what such a build would read, so checking it is as strong for the
question asked ("does the context hold every file the binary embeds") and costs a second. The
dep-info of the debug binary lists the same source files as the release one (nothing in
src/ includes files under `cfg(debug_assertions)`); it must be newer than every file it lists.

    scripts/check_docker_context.py --bin target/debug/deliberate
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]


class CheckError(Exception):
    """A finding: the context or the Dockerfile is wrong (or in a form this script refuses)."""


# ---- .dockerignore ----------------------------------------------------------------------


def read_allowlist(dockerignore: Path) -> list[str]:
    """The `!path` entries of an allowlist .dockerignore, normalised (no trailing slash)."""
    lines = [
        line.strip()
        for line in dockerignore.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if not lines or lines[0] != "*":
        raise CheckError(f"{dockerignore}: must start with `*` (an allowlist); found {lines[:1]}")
    entries = []
    for line in lines[1:]:
        if not line.startswith("!"):
            raise CheckError(f"{dockerignore}: `{line}`: only `!path` lines may follow `*`")
        path = line[1:].strip().strip("/")
        if not path or any(c in path for c in "*?[]\\") or ".." in PurePosixPath(path).parts:
            raise CheckError(f"{dockerignore}: `{line}`: only literal paths inside the context")
        entries.append(path)
    return entries


def context_files(root: Path, allowlist: list[str]) -> set[str]:
    """Every file (relative POSIX path) the allowlist lets into the build context."""
    files: set[str] = set()
    for entry in allowlist:
        path = root / entry
        if path.is_file():
            files.add(entry)
        elif path.is_dir():
            for dirpath, _dirs, names in os.walk(path):
                for name in names:
                    files.add((Path(dirpath) / name).relative_to(root).as_posix())
        # A missing entry lets nothing in; a COPY of it then fails below.
    return files


# ---- Dockerfile -------------------------------------------------------------------------


@dataclass
class Copy:
    line: int
    sources: list[str]
    dest: str  # absolute, in the image
    dest_is_dir: bool


@dataclass
class BuildStage:
    copies: list[Copy]
    workdir: str  # where `cargo build` runs


def instructions(dockerfile: Path) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(dockerfile.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def build_stage(dockerfile: Path) -> BuildStage:
    """The stage whose RUN calls `cargo build`: its COPY lines and the WORKDIR of that RUN."""
    stages: list[tuple[list[Copy], str | None]] = []
    copies: list[Copy] = []
    workdir = "/"
    for number, word, args in instructions(dockerfile):
        if word == "FROM":
            copies, workdir = [], "/"
            stages.append((copies, None))
        elif word == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / args)
        elif word == "ADD":
            raise CheckError(f"{dockerfile}:{number}: ADD is not supported here; use COPY")
        elif word == "COPY":
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            if any(f.startswith("--from") for f in flags):
                continue  # from another stage, not from the context
            paths = [w for w in words if not w.startswith("--")]
            if args.startswith("[") or len(paths) < 2:
                raise CheckError(f"{dockerfile}:{number}: COPY must be `COPY src... dest`")
            *sources, dest = paths
            for s in sources:
                if any(c in s for c in "*?[") or ".." in PurePosixPath(s).parts:
                    raise CheckError(f"{dockerfile}:{number}: `{s}`: only literal paths")
            dest_is_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
            copies.append(
                Copy(number, sources, str(PurePosixPath(workdir) / dest), dest_is_dir)
            )
        elif word == "RUN" and "cargo build" in args:
            stages[-1] = (copies, workdir)
    found = [(c, w) for c, w in stages if w is not None]
    if len(found) != 1:
        raise CheckError(f"{dockerfile}: expected one stage that runs `cargo build`, found {len(found)}")
    return BuildStage(copies=found[0][0], workdir=found[0][1])


def materialize(root: Path, context: set[str], stage: BuildStage, image: Path) -> Path:
    """Applies the COPY lines to `image` (the image's `/`); returns the build's working dir."""
    for copy in stage.copies:
        dest = image / copy.dest.lstrip("/")
        for source in copy.sources:
            source = source.strip("/").removeprefix("./")
            inside = sorted(f for f in context if f == source or f.startswith(source + "/"))
            if not inside:
                raise CheckError(
                    f"COPY at line {copy.line}: `{source}` is not in the build context "
                    "(let it in with a `!` line in .dockerignore)"
                )
            for f in inside:
                if f == source:  # a file
                    target = dest / Path(f).name if copy.dest_is_dir else dest
                else:  # a directory's contents go into dest
                    target = dest / Path(f).relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / f, target)
    return image / stage.workdir.lstrip("/")


# ---- what the binary needs --------------------------------------------------------------


def depinfo_files(depinfo: Path, root: Path) -> list[str]:
    """Files of this repository listed in a Makefile-style dep-info file, relative POSIX
    (rustc writes paths relative to the package root, cargo absolute ones)."""
    text = depinfo.read_text()
    first = text.split("\n\n", 1)[0]  # `target: deps...`; the rest are empty rules
    _, _, deps = first.partition(": ")
    paths: list[str] = []
    for token in deps.replace("\\\n", " ").replace("\\ ", "\0").split():
        path = root / Path(token.replace("\0", " "))  # an absolute token stays as it is
        try:
            paths.append(path.resolve().relative_to(root).as_posix())
        except ValueError:
            raise CheckError(f"{depinfo}: `{path}` is outside the repository") from None
    if not paths:
        raise CheckError(f"{depinfo}: lists no files")
    stale = [p for p in paths if (root / p).stat().st_mtime > depinfo.stat().st_mtime]
    if stale:
        raise CheckError(f"{depinfo} is older than {stale[:3]}: rebuild the binary first")
    return paths


def binary_depinfos(binary: Path) -> list[Path]:
    """The dep-info file(s) that together list what the compiler read for `binary`."""
    if not binary.is_file():
        raise CheckError(f"{binary}: no such binary (build it with cargo first)")
    beside = binary.with_name(binary.name + ".d")
    if beside.is_file() and beside.stat().st_mtime >= binary.stat().st_mtime:
        return [beside]
    deps = binary.parent / "deps"
    inode = binary.stat().st_ino
    linked = [p for p in deps.glob(f"{binary.name}-*") if p.suffix == "" and p.stat().st_ino == inode]
    rlibs = sorted(deps.glob(f"lib{binary.name}-*.rlib"), key=lambda p: p.stat().st_mtime)
    if len(linked) != 1 or not rlibs:
        raise CheckError(f"no dep-info for {binary}: neither {beside.name} nor its "
                         f"{deps}/{binary.name}-HASH.d and lib{binary.name}-HASH.rlib's")
    library = deps / (rlibs[-1].name.removeprefix("lib").removesuffix(".rlib") + ".d")
    return [linked[0].with_name(linked[0].name + ".d"), library]


def host_triple() -> str:
    """The host's target triple, from `rustc -vV`."""
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("host: "))


def check(root: Path, allowlist: list[str], stage: BuildStage, needed: list[str]) -> None:
    """Raises CheckError unless the image tree holds `needed` and its manifest loads."""
    with tempfile.TemporaryDirectory(prefix="docker-context-") as tmp:
        workdir = materialize(root, context_files(root, allowlist), stage, Path(tmp))
        missing = [f for f in needed if not (workdir / f).is_file()]
        if missing:
            raise CheckError(
                f"the image's {stage.workdir} lacks {len(missing)} file(s) the binary is built "
                f"from: {', '.join(missing[:8])}"
            )
        manifest = workdir / "Cargo.toml"
        if not manifest.is_file():
            raise CheckError(f"the image's {stage.workdir} has no Cargo.toml")
        # `cargo fetch` parses the manifest as `cargo build` does (every declared target's
        # file must exist; `cargo metadata` does not check that) and, with --locked, fails if
        # Cargo.lock does not match it. --offline and the host target: only the local registry
        # cache, never the network.
        run = subprocess.run(
            ["cargo", "fetch", "--locked", "--offline", "--target", host_triple(),
             "--manifest-path", str(manifest)],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, CARGO_TARGET_DIR=str(Path(tmp) / "target")),
        )
        if run.returncode != 0:
            last = run.stderr.strip().splitlines()[-3:]
            raise CheckError("cargo cannot load the manifest there: " + " | ".join(last))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, required=True,
                        help="the built binary, e.g. target/debug/deliberate")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "deploy" / "Dockerfile")
    parser.add_argument("--dockerignore", type=Path, default=ROOT / ".dockerignore")
    args = parser.parse_args()
    try:
        allowlist = read_allowlist(args.dockerignore)
        stage = build_stage(args.dockerfile)
        needed = sorted({f for d in binary_depinfos(args.bin) for f in depinfo_files(d, ROOT)})
        check(ROOT, allowlist, stage, needed)
        embedded = sorted(f for f in needed if not f.endswith(".rs"))
        print(f"ok: the build context ({', '.join(allowlist)}) and the COPY lines give the "
              f"image all {len(needed)} files rustc read for the binary, embedded ones "
              f"included: {', '.join(embedded)}")
        # Exactly what it needs: dropping any entry or COPY line must break the build.
        for entry in allowlist:
            try:
                check(ROOT, [e for e in allowlist if e != entry], stage, needed)
            except CheckError as why:
                print(f"ok: needed: .dockerignore `!{entry}` ({why})")
            else:
                raise CheckError(f".dockerignore lets in `{entry}`, which the build does not need")
        for copy in stage.copies:
            fewer = BuildStage([c for c in stage.copies if c is not copy], stage.workdir)
            try:
                check(ROOT, allowlist, fewer, needed)
            except CheckError:
                print(f"ok: needed: Dockerfile line {copy.line} (COPY {' '.join(copy.sources)})")
            else:
                raise CheckError(f"Dockerfile line {copy.line} copies what the build does not need")
    except CheckError as problem:
        print(f"check_docker_context: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
