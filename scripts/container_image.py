"""Build and run the project's container image (Containerfile; docs/container.md).

    python -m scripts.container_image build [--image NAME] [--base IMAGE | --base debootstrap]
    python -m scripts.container_image run [--image NAME] [--volume HOST:CONTAINER] -- CMD ...

`build` (what `make image` runs):
1. puts every wheel the image needs in `build/image/wheels`, as the host's pip resolves them
   (its index, certificates, proxy and find-links settings), for Linux and CPython 3.11 on this
   machine's architecture: torch is the CPU build where the host's pip takes that one, or the
   build on `--torch-index-url` (e.g. https://download.pytorch.org/whl/cu128 for CUDA 12.8);
2. with `--base debootstrap`, makes the offline base image `localhost/debian-py:bookworm` from
   Debian's packages (debootstrap + import; root only, reused once made);
3. builds Containerfile with docker, or podman where docker has no daemon. The image installs
   offline from the wheels, so its build needs no network and no certificates.

`run` starts a container with the flags this machine needs (host network; on podman: runc and
cgroupfs where crun or systemd cannot manage cgroups, ulimits within the host's hard limits).

Standard library only: it runs with the host's python3 before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEELS = Path("build/image/wheels")
DEFAULT_IMAGE = "dc-taxi-lakehouse:latest"
DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "localhost/debian-py:bookworm"
# The Python of both bases (python:3.11-slim, Debian bookworm's python3): the wheels' ABI.
PYTHON_VERSION = "3.11"
# Debian bookworm's glibc: the newest manylinux wheels the image can run.
GLIBC_MINOR = 36
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates,passwd"


def fail(message: str) -> SystemExit:
    return SystemExit(f"error: {message}")


def find_engine(name: str | None) -> str:
    """docker when its daemon answers, else podman; or the one named."""
    if name:
        if not shutil.which(name):
            raise fail(f"{name} not found — install it, or pass --engine docker|podman")
        return name
    if shutil.which("docker") and _quiet(["docker", "info"]):
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise fail(
        "neither a running docker nor podman found — install podman (Debian: "
        "`apt-get install podman runc`) or start Docker"
    )


def _quiet(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def engine_command(engine: str) -> list[str]:
    """The engine with the global flags this machine needs (podman only)."""
    command = [engine]
    if engine != "podman":
        return command
    if not Path("/run/systemd/system").is_dir():
        command.append("--cgroup-manager=cgroupfs")  # no systemd to ask for a cgroup
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists() and shutil.which("runc"):
        command += ["--runtime", "runc"]  # crun refuses hybrid (v1 + v2) cgroups
    return command


def ulimit_flags(engine: str) -> list[str]:
    """podman's default ulimits may exceed the host's hard limits (and runc may not raise the
    process limit to the hard one either): ask for no more than both."""
    if engine != "podman":
        return []
    flags = []
    for name, limit, most in (
        ("nofile", resource.RLIMIT_NOFILE, 65536),
        ("nproc", resource.RLIMIT_NPROC, 32768),
    ):
        hard = resource.getrlimit(limit)[1]
        value = most if hard == resource.RLIM_INFINITY else min(hard, most)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def wheel_platforms() -> list[str]:
    """pip --platform tags of the wheels the image can run (pip does not widen them itself)."""
    arch = platform.machine()
    if arch not in ("x86_64", "aarch64"):
        raise fail(f"no image for {arch}: build on x86_64 or aarch64")
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(17, GLIBC_MINOR + 1)]
    return [*tags, f"manylinux2014_{arch}"]


def build_wheels(python: str, torch_index_url: str | None) -> list[Path]:
    """The project's wheel and every wheel it needs, into WHEELS (emptied first)."""
    wheels = REPO_ROOT / WHEELS
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    pip = [python, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-qq", "--no-deps", "--wheel-dir", wheels, REPO_ROOT], check=True
    )
    for leftover in ("lib", f"bdist.linux-{platform.machine()}"):  # setuptools' in-tree build
        shutil.rmtree(REPO_ROOT / "build" / leftover, ignore_errors=True)
    project = next(wheels.glob("dc_taxi_lakehouse-*.whl"))
    download = [
        *pip,
        "download",
        "-qq",
        "--dest",
        wheels,
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
    ]
    for tag in wheel_platforms():
        download += ["--platform", tag]
    if torch_index_url:
        download += ["--extra-index-url", torch_index_url]
    subprocess.run([*download, project], check=True)
    return sorted(wheels.iterdir())


def image_exists(engine: list[str], image: str) -> bool:
    return _quiet([*engine, "image", "inspect", image])


def debian_mirror() -> str:
    """The mirror apt uses here (deb822 or one-line sources), else deb.debian.org."""
    for sources in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            fields = line.split()
            if fields[:1] == ["deb"] and "security" not in line:
                return next(field for field in fields[1:] if "://" in field)
    return "http://deb.debian.org/debian"


def offline_base(engine: list[str], mirror: str | None) -> str:
    """`localhost/debian-py:bookworm` from Debian's packages only, unless it exists."""
    if image_exists(engine, OFFLINE_BASE):
        return OFFLINE_BASE
    if not shutil.which("debootstrap"):
        raise fail(
            "debootstrap not found — `apt-get install debootstrap`, or use --base "
            f"{DEFAULT_BASE} where a registry is reachable"
        )
    mirror = mirror or debian_mirror()
    (REPO_ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=REPO_ROOT / "build") as rootfs:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={DEBIAN_PACKAGES}",
                "bookworm",
                rootfs,
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (Path(rootfs) / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [*engine, "import", "-", OFFLINE_BASE],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise fail("tar of the debootstrap folder failed")
    return OFFLINE_BASE


def git_commit() -> str:
    """HEAD, marked `-dirty` when the work tree has changes; `unknown` without git."""
    if not shutil.which("git"):
        return "unknown"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return head.stdout.strip() + ("-dirty" if dirty.strip() else "")


def image_size(engine: list[str], image: str) -> int:
    found = subprocess.run(
        [*engine, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(found.stdout.strip())


def build(args: argparse.Namespace) -> None:
    engine_name = find_engine(args.engine)
    engine = engine_command(engine_name)
    base = offline_base(engine, args.mirror) if args.base == "debootstrap" else args.base
    wheels = build_wheels(args.python, args.torch_index_url)
    print(f"image: {len(wheels)} wheels in {WHEELS}", file=sys.stderr)
    subprocess.run(
        [
            *engine,
            "build",
            "--file",
            "Containerfile",
            "--tag",
            args.image,
            "--build-arg",
            f"BASE={base}",
            "--build-arg",
            f"GIT_COMMIT={git_commit()}",
            *ulimit_flags(engine_name),
            ".",
        ],
        cwd=REPO_ROOT,
        check=True,
    )
    size = image_size(engine, args.image)
    print(f"image: built {args.image} from {base} with {engine_name}: {size / 1e9:.2f} GB")


def run_command(
    engine_name: str,
    image: str,
    argv: list[str],
    volumes: list[str] = (),
    env: dict[str, str] | None = None,
    detach_as: str | None = None,
) -> list[str]:
    """`<engine> run` of `argv` in `image` with this machine's flags, the host's network;
    in the background as container `detach_as` when given."""
    command = [
        *engine_command(engine_name),
        "run",
        "--rm",
        "--network=host",
        *ulimit_flags(engine_name),
    ]
    if detach_as:
        command += ["--detach", "--name", detach_as]
    for volume in volumes:
        command += ["--volume", volume]
    for name in env or {}:
        command += ["--env", name]  # the value comes from the engine's environment: `env`
    return [*command, image, *argv]


def run(args: argparse.Namespace) -> int:
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = run_command(find_engine(args.engine), args.image, argv, args.volume)
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.container_image", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="action", required=True)
    build_parser = commands.add_parser("build", help="build the image (make image)")
    build_parser.add_argument(
        "--base",
        default=DEFAULT_BASE,
        help=f"base image, or `debootstrap` for {OFFLINE_BASE} made "
        f"offline from Debian's packages (default {DEFAULT_BASE})",
    )
    build_parser.add_argument("--mirror", help="Debian mirror for debootstrap (default: apt's)")
    build_parser.add_argument(
        "--torch-index-url", help="also look for torch here, e.g. a CUDA build's index"
    )
    build_parser.add_argument(
        "--python", default=sys.executable, help="the host Python whose pip resolves the wheels"
    )
    run_parser = commands.add_parser("run", help="run a command in the image")
    run_parser.add_argument(
        "--volume", action="append", default=[], help="HOST:CONTAINER, may repeat"
    )
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    for sub in (build_parser, run_parser):
        sub.add_argument("--image", default=DEFAULT_IMAGE, help=f"default {DEFAULT_IMAGE}")
        sub.add_argument(
            "--engine",
            choices=["docker", "podman"],
            help="default: docker if its daemon answers, else podman",
        )
    args = parser.parse_args(argv)
    if args.action == "run":
        return run(args)
    try:
        build(args)
    except subprocess.CalledProcessError as error:
        command = " ".join(str(part) for part in error.cmd[:4])
        raise fail(f"`{command} …` exited with {error.returncode} (its output is above)") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
