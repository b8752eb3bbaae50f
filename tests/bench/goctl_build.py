"""Find, or build once and cache, the benchmark's Go yardstick (tests/bench/goctl/).

    .venv/bin/python tests/bench/goctl_build.py     # last line: the binary

Built as the envtest binaries are (ssa_controller/envtest/assets.py): inside the tree of Debian's
`kubernetes` source package for bookworm (v1.20.2, which vendors client-go and everything it
needs), vendored reflect2 swapped for Debian's v1.0.2, in GOPATH mode with Go 1.19 and
CGO_ENABLED=0: no module is downloaded. The Go files are copied in as
k8s.io/kubernetes/cmd/ssa-bench-goctl and `go build` runs under `nice -n 10`. The binary is
cached as ${XDG_CACHE_HOME:-~/.cache}/ssa-controller/bench/goctl-v1.20.2-<hash of the Go
files>, so it is rebuilt only when they change; Go's build cache sits beside it (go-build/), so a
rebuild compiles little more than the changed package.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssa_controller.envtest.assets import (  # noqa: E402  (the envtest build's own steps)
    DEFAULT_VERSION,
    GO_BIN,
    REFLECT2_SOURCES,
    AssetsError,
    MissingPrerequisite,
    _build_env,
    _download_source,
    _swap_reflect2,
    _unpack,
    cache_root,
)

SOURCE = Path(__file__).resolve().parent / "goctl"
PACKAGE = "k8s.io/kubernetes/cmd/ssa-bench-goctl"

Log = Callable[[str], None]


class GoBuildError(RuntimeError):
    """The Go yardstick cannot be found or built; str(error) is one line saying why."""


def bench_cache() -> Path:
    return cache_root().parent / "bench"


def source_hash(source: Path = SOURCE) -> str:
    """A digest of the Go files' names and contents."""
    digest = hashlib.sha256()
    for path in sorted(source.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def binary_path(source: Path = SOURCE, version: str = DEFAULT_VERSION) -> Path:
    return bench_cache() / f"goctl-{version}-{source_hash(source)}"


def _missing() -> list[str]:
    needs = [((GO_BIN / "go").is_file(), f"Go 1.19 ({GO_BIN / 'go'}: golang-1.19-go)"),
             ((REFLECT2_SOURCES / "reflect2.go").is_file(), f"reflect2 v1.0.2 sources "
              f"({REFLECT2_SOURCES}: golang-github-modern-go-reflect2-dev)"),
             (shutil.which("apt-get") is not None, "apt-get (a Debian system)")]
    return [what for ok, what in needs if not ok]


def _go_build(tree: Path, workspace: Path, output: Path, log_file: Path) -> None:
    gopath_tree = workspace / "gopath" / "src" / "k8s.io" / "kubernetes"
    gopath_tree.parent.mkdir(parents=True)
    gopath_tree.symlink_to(tree, target_is_directory=True)
    env = {**_build_env(workspace), "GOCACHE": str(bench_cache() / "go-build"),
           "PWD": str(gopath_tree)}
    with log_file.open("w") as out:
        status = subprocess.run(
            ["nice", "-n", "10", str(GO_BIN / "go"), "build", "-trimpath", "-o", str(output),
             PACKAGE],
            cwd=gopath_tree, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, check=False).returncode
    if status != 0:
        tail = " | ".join(log_file.read_text(errors="replace").splitlines()[-5:])
        raise GoBuildError(f"go build failed with status {status} (log {log_file}): {tail}")


def build(source: Path = SOURCE, version: str = DEFAULT_VERSION, log: Log = print) -> Path:
    """The cached binary for `source`, built first when there is none; raises GoBuildError."""
    target = binary_path(source, version)
    if target.is_file():
        return target
    missing = _missing()
    if missing:
        raise GoBuildError(f"cannot build the Go controller: missing {', '.join(missing)} "
                           "(.ci/setup installs them)")
    target.parent.mkdir(parents=True, exist_ok=True)
    log_file = bench_cache() / f"build-goctl-{version}.log"
    log(f"[goctl] building {target.name} from Debian's source package (full log: {log_file})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ssa-goctl-build-") as temp:
        workspace = Path(temp)
        try:
            tree = workspace / "kubernetes"
            _unpack(_download_source(version, workspace, log), tree, log)
            _swap_reflect2(tree, log)
        except MissingPrerequisite as error:
            raise GoBuildError(f"cannot build the Go controller: missing "
                               f"{', '.join(error.missing)}. {error.remedy}") from error
        except AssetsError as error:
            raise GoBuildError(f"cannot build the Go controller: {error}") from error
        package = tree / "cmd" / "ssa-bench-goctl"
        package.mkdir()
        for path in source.glob("*.go"):
            shutil.copy2(path, package / path.name)
        _go_build(tree, workspace, workspace / "ssa-bench-goctl", log_file)
        staged = target.with_name(f".{target.name}.{time.monotonic_ns()}")
        shutil.copy2(workspace / "ssa-bench-goctl", staged)
        staged.chmod(0o755)
        staged.rename(target)  # one rename: the cache never holds half a binary
    log(f"[goctl] built {target} in {(time.monotonic() - started) / 60:.1f} min")
    return target


def main() -> int:
    try:
        print(build(log=lambda line: print(line, flush=True)))
    except GoBuildError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
