"""Find, or build once and cache, the etcd / kube-apiserver / kube-controller-manager binaries.

Resolution follows controller-runtime's envtest conventions, then the project's own cache:
1. TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBE_CONTROLLER_MANAGER (single binaries);
2. KUBEBUILDER_ASSETS (a folder with kube-apiserver, etcd and optionally kube-controller-manager);
3. the per-user cache ${XDG_CACHE_HOME:-~/.cache}/ssa-controller/envtest/<version>/.
kube-controller-manager comes from TEST_ASSET_KUBE_CONTROLLER_MANAGER or from beside the chosen
kube-apiserver, so the two never differ in version.

`install()` fills the cache when nothing is found: it builds kube-apiserver and
kube-controller-manager from Debian's `kubernetes` source package (bookworm ships v1.20.2 with its
vendored dependencies), copies Debian's etcd beside them, and moves the folder into place in one
rename. See shared/docs/control-plane.md for why each step is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VERSION = "v1.20.2"
ETCD = "etcd"
KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
ENV_VARS = {
    ETCD: "TEST_ASSET_ETCD",
    KUBE_APISERVER: "TEST_ASSET_KUBE_APISERVER",
    KUBE_CONTROLLER_MANAGER: "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
}
ASSETS_FOLDER_VAR = "KUBEBUILDER_ASSETS"

# version -> the Debian source package (with release) that builds it
SOURCE_PACKAGES = {"v1.20.2": "kubernetes/bookworm"}
GO_BIN = Path("/usr/lib/go-1.19/bin")
REFLECT2_SOURCES = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
VENDORED_REFLECT2 = Path("vendor/github.com/modern-go/reflect2")
HEARTBEAT_SECONDS = 60.0

Log = Callable[[str], None]


class AssetsError(RuntimeError):
    """The binaries cannot be found or built; str(error) is the whole message for the user."""


class MissingPrerequisite(AssetsError):
    """A build prerequisite is missing; the message names it and the package providing it."""

    def __init__(self, missing: list[str], remedy: str) -> None:
        super().__init__(
            f"cannot build the envtest binaries: missing {', '.join(missing)}. {remedy}"
        )
        self.missing = missing
        self.remedy = remedy


class BuildFailed(AssetsError):
    """The build ran and failed; the message carries the log's last lines and its path."""


@dataclass(frozen=True)
class Assets:
    """Paths of the control-plane binaries (kube_controller_manager is None when none was given)."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None

    @property
    def folder(self) -> Path:
        """kube-apiserver's folder: usable as KUBEBUILDER_ASSETS when the binaries sit together."""
        return self.kube_apiserver.parent


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssa-controller" / "envtest"


def cache_dir(version: str = DEFAULT_VERSION) -> Path:
    return cache_root() / version


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _checked(path: Path, origin: str) -> Path:
    if not _is_executable(path):
        raise AssetsError(f"{origin} names {path}, which is not an executable file")
    return path.absolute()


def _from_env_or_folder(binary: str) -> Path | None:
    """The binary named by its TEST_ASSET_* variable or found in KUBEBUILDER_ASSETS, if any."""
    var = ENV_VARS[binary]
    if os.environ.get(var):
        return _checked(Path(os.environ[var]), var)
    folder = os.environ.get(ASSETS_FOLDER_VAR)
    if folder and not Path(folder).is_dir():
        raise AssetsError(f"{ASSETS_FOLDER_VAR} names {folder}, which is not a folder")
    if folder and (Path(folder) / binary).exists():
        return _checked(Path(folder) / binary, ASSETS_FOLDER_VAR)
    return None


def _from_cache(binary: str, version: str) -> Path | None:
    path = cache_dir(version) / binary
    return path if _is_executable(path) else None


def _resolve(binary: str, version: str) -> Path | None:
    return _from_env_or_folder(binary) or _from_cache(binary, version)


def _controller_manager_for(apiserver: Path) -> Path | None:
    if os.environ.get(ENV_VARS[KUBE_CONTROLLER_MANAGER]):
        return _checked(
            Path(os.environ[ENV_VARS[KUBE_CONTROLLER_MANAGER]]), ENV_VARS[KUBE_CONTROLLER_MANAGER]
        )
    if os.environ.get(ENV_VARS[KUBE_APISERVER]):
        return None
    sibling = apiserver.parent / KUBE_CONTROLLER_MANAGER
    return sibling if _is_executable(sibling) else None


def find_assets(version: str = DEFAULT_VERSION) -> Assets | None:
    """The binaries from the environment or the cache; None when etcd or kube-apiserver is missing.

    Raises AssetsError when an environment variable names something that is not an executable.
    """
    etcd = _resolve(ETCD, version)
    apiserver = _resolve(KUBE_APISERVER, version)
    if etcd is None or apiserver is None:
        return None
    return Assets(etcd, apiserver, _controller_manager_for(apiserver))


def _user_chose_binaries() -> bool:
    return any(os.environ.get(var) for var in (*ENV_VARS.values(), ASSETS_FOLDER_VAR))


def install(version: str = DEFAULT_VERSION, log: Log = print) -> Assets:
    """Return the binaries, building them into the cache first when neither env nor cache has them.

    Binaries named by TEST_ASSET_* / KUBEBUILDER_ASSETS are used as they are, never rebuilt.
    """
    assets = find_assets(version)
    if assets is not None and (assets.kube_controller_manager or _user_chose_binaries()):
        if assets.kube_controller_manager is None:
            log(
                "note: no kube-controller-manager beside the binaries you named; "
                "set TEST_ASSET_KUBE_CONTROLLER_MANAGER to use one"
            )
        return assets
    _build_into_cache(version, log)
    found = find_assets(version)
    if found is None:
        raise AssetsError(f"the build finished but {cache_dir(version)} holds no usable binaries")
    return found


# ---------------------------------------------------------------------------------------------
# building from Debian's source package


def _check_prerequisites(version: str) -> Path:
    """Fail with one message naming every missing build prerequisite; return Debian's etcd."""
    if version not in SOURCE_PACKAGES:
        raise AssetsError(
            f"{version} cannot be built here (buildable: {', '.join(SOURCE_PACKAGES)}); "
            f"point {ASSETS_FOLDER_VAR} at a folder holding kube-apiserver and etcd {version}"
        )
    etcd = shutil.which(ETCD) or "/usr/bin/etcd"
    needs = [
        (shutil.which("apt-get") is not None, "apt-get (a Debian system)", None),
        ((GO_BIN / "go").is_file(), f"Go 1.19 ({GO_BIN / 'go'})", "golang-1.19-go"),
        (shutil.which("make") is not None, "make", "make"),
        (shutil.which("rsync") is not None, "rsync", "rsync"),
        (shutil.which("tar") is not None, "tar", "tar"),
        (_is_executable(Path(etcd)), "etcd", "etcd-server"),
        (
            (REFLECT2_SOURCES / "reflect2.go").is_file(),
            f"reflect2 v1.0.2 sources ({REFLECT2_SOURCES})",
            "golang-github-modern-go-reflect2-dev",
        ),
    ]
    missing = [what for ok, what, _ in needs if not ok]
    if missing:
        packages = [package for ok, _, package in needs if not ok and package]
        remedy = (
            f"Install with: apt-get install -y {' '.join(packages)}"
            if packages
            else "This build needs a Debian system."
        )
        raise MissingPrerequisite(missing, remedy + " (.ci/setup does this)")
    return Path(etcd)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )


def _download_source(version: str, into: Path, log: Log) -> Path:
    package = SOURCE_PACKAGES[version]
    log(f"[envtest] downloading Debian source package {package} (about 35 MB)")
    result = _run(["apt-get", "source", "--download-only", package], into)
    tarballs = sorted(into.glob("kubernetes_*.orig.tar.*"))
    if result.returncode != 0 or not tarballs:
        errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
        raise MissingPrerequisite(
            [f"the Debian source package {package} ({'; '.join(errors) or 'apt-get failed'})"],
            "Add a deb-src entry for bookworm (Types: deb-src, with the URIs and Signed-By of "
            "/etc/apt/sources.list.d/debian.sources), then run apt-get update "
            "(.ci/setup does both).",
        )
    return tarballs[0]


def _unpack(tarball: Path, tree: Path, log: Log) -> None:
    log(f"[envtest] unpacking {tarball.name}")
    tree.mkdir()
    result = _run(["tar", "-xf", str(tarball), "--strip-components=1", "-C", str(tree)], tree)
    if result.returncode != 0:
        raise BuildFailed(f"unpacking {tarball} failed: {result.stdout[-2000:]}")


def _swap_reflect2(tree: Path, log: Log) -> None:
    """Swap vendored reflect2 v1.0.1 (breaks at run time under Go >= 1.18) for Debian's v1.0.2."""
    log("[envtest] replacing vendored github.com/modern-go/reflect2 with Debian's v1.0.2")
    target = tree / VENDORED_REFLECT2
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REFLECT2_SOURCES, target, ignore=shutil.ignore_patterns("go.mod", "go.sum"))


def _build_env(workspace: Path) -> dict[str, str]:
    # no GOROOT / GOFLAGS / GOTOOLCHAIN ... from the caller: this build wants Go 1.19 as it is
    env = {key: value for key, value in os.environ.items() if not key.startswith("GO")}
    home = workspace / "home"
    home.mkdir(exist_ok=True)
    env.update(
        PATH=f"{GO_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        GOPATH=str(workspace / "gopath"),
        HOME=str(home),
        CGO_ENABLED="0",
        GO111MODULE="off",
    )
    return env


def _heartbeat(done: threading.Event, log: Log) -> None:
    started = time.monotonic()
    while not done.wait(HEARTBEAT_SECONDS):
        log(f"[envtest]   ... still compiling ({(time.monotonic() - started) / 60:.0f} min)")


def _make(tree: Path, workspace: Path, log_file: Path, log: Log) -> None:
    """GOPATH-mode `make` of kube-apiserver and kube-controller-manager, as Debian's rules do."""
    gopath_tree = workspace / "gopath" / "src" / "k8s.io" / "kubernetes"
    gopath_tree.parent.mkdir(parents=True)
    gopath_tree.symlink_to(tree, target_is_directory=True)
    log(
        f"[envtest] compiling kube-apiserver and kube-controller-manager "
        f"(about 5 minutes on 2 cores; full log: {log_file})"
    )
    argv = ["make", f"WHAT=cmd/{KUBE_APISERVER} cmd/{KUBE_CONTROLLER_MANAGER}"]
    done = threading.Event()
    threading.Thread(target=_heartbeat, args=(done, log), daemon=True).start()
    try:
        with (
            log_file.open("w") as out,
            subprocess.Popen(
                argv,
                cwd=gopath_tree,
                env=_build_env(workspace),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            ) as proc,
        ):
            assert proc.stdout is not None
            in_header = False  # "+++ Building go targets:" is followed by indented target names
            for line in proc.stdout:
                out.write(line)
                in_header = line.startswith("+++") or (in_header and line.startswith("    "))
                if in_header:
                    log(f"[envtest]   {line.rstrip()}")
            status = proc.wait()
    finally:
        done.set()
    if status != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
        raise BuildFailed(f"make failed with status {status}; last lines of {log_file}:\n{tail}")


def _check_version(binary: Path, version: str) -> None:
    result = _run([str(binary), "--version"], binary.parent)
    if version not in result.stdout:
        raise BuildFailed(
            f"{binary} --version printed {result.stdout.strip()!r}, expected {version}"
        )


def _install_folder(binaries: list[Path], version: str, log: Log) -> Path:
    """Copy the binaries into the cache in one rename, so the cache is never half-filled."""
    final = cache_dir(version)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    for binary in binaries:
        shutil.copy2(binary, staging / binary.name)
        (staging / binary.name).chmod(0o755)
    staging.chmod(0o755)
    if final.exists():
        shutil.rmtree(final)  # incomplete, or find_assets would have used it
    try:
        staging.rename(final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not all(_is_executable(final / b.name) for b in binaries):
            raise
    log(f"[envtest] installed {', '.join(b.name for b in binaries)} into {final}")
    return final


def _build_into_cache(version: str, log: Log) -> Path:
    etcd = _check_prerequisites(version)
    log(f"[envtest] no cached binaries for {version}: building them from Debian's source package")
    log_file = cache_root() / f"build-{version}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ssa-envtest-build-") as temp:
        workspace = Path(temp)
        tarball = _download_source(version, workspace, log)
        tree = workspace / "kubernetes"
        _unpack(tarball, tree, log)
        _swap_reflect2(tree, log)
        _make(tree, workspace, log_file, log)
        built = [
            tree / "_output" / "bin" / name for name in (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER)
        ]
        for binary in built:
            _check_version(binary, version)
        folder = _install_folder([*built, etcd], version, log)
    log(f"[envtest] build finished in {(time.monotonic() - started) / 60:.1f} min")
    return folder
