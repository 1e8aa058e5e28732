"""``python -m runner.flower``: a real Flower federation for runner's FL experiments.

Thin wrappers over Flower's own commands (``flower-superlink``, ``flower-supernode``, ``flwr``), with
the Flower app (:mod:`runner.federated.flower`) and a dedicated Flower home (``--home``, default
``./.flower``: apps, run environments, the CLI's connection file) filled in::

    python -m runner.flower certs certs/ --nodes 2            # CA, SuperLink TLS cert, SuperNode keys
    python -m runner.flower superlink --certs certs/           # TLS + SuperNode authentication
    python -m runner.flower register --certs certs/            # allow the SuperNodes' public keys
    python -m runner.flower supernode --certs certs/ --key certs/supernode-0.key \\
        --partition-id 0 --num-partitions 2 --port 9094        # one per site (node i hosts clients k % 2 == i)
    python -m runner.flower run --certs certs/ -- experiment=fedavg_mnist dataset.num_clients=2

``run`` submits the run to the SuperLink, streams its log and exits 0 when the run folder has its
``metrics.json``. ``--insecure`` (no TLS, no node authentication) exists for loopback tests only.
The ServerApp runs ``runner.train.run`` with ``fl_backend=flower_deployment``; each SuperNode's
ClientApp builds the same config and trains only its clients (see :mod:`runner.federated.flower`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from runner.errors import UserError

DEFAULT_PORT = 9093
APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "runner-federated"
version = "1.0.0"
description = "runner's federated experiments as a Flower app (runner.federated.flower)"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "runner"

[tool.flwr.app.components]
serverapp = "runner.federated.flower:serverapp"
clientapp = "runner.federated.flower:clientapp"

[tool.flwr.app.config]
overrides = ""
root-dir = ""
data-dir = ""
output-dir = ""
"""


def _flower_bin(name: str) -> str:
    """A Flower executable next to this Python (the venv's), or on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise UserError(f"{name} not found: install Flower with pip install 'runner[flower]'")
    return found


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLWR_HOME"] = str(home.resolve())
    # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) from PATH
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _tls_args(args) -> tuple[Path | None, bool]:
    if args.insecure:
        return None, True
    if args.certs is None:
        raise UserError(
            "give --certs DIR (made by `python -m runner.flower certs DIR`) or --insecure (tests only)"
        )
    certs = Path(args.certs)
    if not (certs / "ca.crt").is_file():
        raise UserError(
            f"--certs {certs}: ca.crt missing; create it with `python -m runner.flower certs {certs}`"
        )
    return certs, False


# ---- certificates and keys ------------------------------------------------------------------------
def make_certificates(folder: Path, hosts: list[str], nodes: int, days: int = 365) -> list[Path]:
    """A CA, the SuperLink's TLS certificate for ``hosts`` signed by it, and ``nodes`` SuperNode
    authentication key pairs (EC P-384, OpenSSH format, as Flower expects). Returns the files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    written = []

    def write(name: str, data: bytes, private: bool = False) -> None:
        path = folder / name
        path.write_bytes(data)
        if private:
            path.chmod(0o600)
        written.append(path)

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runner Flower CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca.key", pem_key(ca_key), private=True)
    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write("server.key", pem_key(server_key), private=True)
    write("server.pem", server.public_bytes(serialization.Encoding.PEM))

    for i in range(nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write(f"supernode-{i}.key", private, private=True)
        write(f"supernode-{i}.pub", public + b"\n")
    return written


# ---- commands -------------------------------------------------------------------------------------
def superlink_command(args) -> list[str]:
    certs, insecure = _tls_args(args)
    command = [_flower_bin("flower-superlink"), "--host", args.host, "--port", str(args.port)]
    # run the app in this environment (no per-run `uv sync`: nothing is downloaded)
    command.append("--disable-runtime-dependency-installation")
    if insecure:
        return [*command, "--insecure"]
    return [
        *command,
        "--ssl-ca-certfile",
        str(certs / "ca.crt"),
        "--ssl-certfile",
        str(certs / "server.pem"),
        "--ssl-keyfile",
        str(certs / "server.key"),
        "--enable-supernode-auth",
    ]


def supernode_command(args) -> list[str]:
    certs, insecure = _tls_args(args)
    node_config = f"partition-id={int(args.partition_id)} num-partitions={int(args.num_partitions)}"
    if args.overrides:
        node_config += f' overrides="{args.overrides}"'
    command = [
        _flower_bin("flower-supernode"),
        "--superlink",
        args.superlink,
        "--node-config",
        node_config,
        "--port",
        str(args.port),
    ]
    if insecure:
        return [*command, "--insecure"]
    key = Path(args.key or certs / f"supernode-{int(args.partition_id)}.key")
    if not key.is_file():
        raise UserError(
            f"--key {key}: the SuperNode's private key is missing (python -m runner.flower certs)"
        )
    return [*command, "--root-certificates", str(certs / "ca.crt"), "--auth-supernode-private-key", str(key)]


def write_connection(home: Path, address: str, certs: Path | None) -> str:
    """The Flower CLI's connection ``runner`` in ``<home>/config.toml``; returns its name."""
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", 'default = "runner"', "", "[superlink.runner]", f'address = "{address}"']
    if certs is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{(certs / "ca.crt").resolve()}"')
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return "runner"


def write_app(home: Path) -> Path:
    app = home / "runner-app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(APP_TOML)
    return app


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_command(args, home: Path) -> tuple[list[str], Path]:
    certs, _ = _tls_args(args)
    connection = write_connection(home, args.superlink, certs)
    app = write_app(home)
    root = Path(args.root_dir or Path.cwd()).resolve()
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    output = Path(args.output_dir or root / "logs" / "flower" / stamp).resolve()
    config = {
        "overrides": shlex.join(args.overrides),
        "root-dir": str(root),
        "data-dir": str(Path(args.data_dir).resolve()) if args.data_dir else "",
        "output-dir": str(output),
    }
    run_config = " ".join(f"{k}={_toml_string(v)}" for k, v in config.items())
    return [_flower_bin("flwr"), "run", str(app), connection, "--run-config", run_config, "--stream"], output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.flower", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def security(p) -> None:
        p.add_argument("--certs", help="folder made by `python -m runner.flower certs`")
        p.add_argument("--insecure", action="store_true", help="no TLS, no node authentication (tests only)")
        p.add_argument("--home", default=".flower", help="Flower home of this federation (default ./.flower)")

    p = sub.add_parser("certs", help="CA, SuperLink TLS certificate and SuperNode key pairs")
    p.add_argument("folder")
    p.add_argument("--nodes", type=int, default=2, help="SuperNode key pairs to make")
    p.add_argument(
        "--host", action="append", help="SuperLink host names / IPs (default: localhost, 127.0.0.1, ::1)"
    )

    p = sub.add_parser("superlink", help="start a SuperLink (flower-superlink)")
    security(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)

    p = sub.add_parser("register", help="register the SuperNodes' public keys with the SuperLink")
    security(p)
    p.add_argument("--superlink", default=f"127.0.0.1:{DEFAULT_PORT}")
    p.add_argument("keys", nargs="*", help="public keys (default: <certs>/supernode-*.pub)")

    p = sub.add_parser("supernode", help="start a SuperNode (flower-supernode) hosting runner clients")
    security(p)
    p.add_argument("--superlink", default=f"127.0.0.1:{DEFAULT_PORT}")
    p.add_argument("--partition-id", type=int, required=True)
    p.add_argument("--num-partitions", type=int, required=True)
    p.add_argument("--port", type=int, default=9094, help="this SuperNode's local ClientApp API port")
    p.add_argument("--key", help="its private key (default <certs>/supernode-<partition-id>.key)")
    p.add_argument(
        "--overrides", default="", help='config overrides of this site, e.g. "dataset.root=/data/site0"'
    )

    p = sub.add_parser("run", help="run an experiment on the federation (flwr run)")
    security(p)
    p.add_argument("--superlink", default=f"127.0.0.1:{DEFAULT_PORT}")
    p.add_argument("--root-dir", help="the server's project folder (logs/ goes there; default: cwd)")
    p.add_argument("--data-dir", help="paths.data_dir of the server")
    p.add_argument("--output-dir", help="the run folder (default <root>/logs/flower/<time>)")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="-- then runner overrides")

    args = parser.parse_args(argv)
    try:
        if args.command == "certs":
            hosts = args.host or ["localhost", "127.0.0.1", "::1"]
            for path in make_certificates(Path(args.folder), hosts, args.nodes):
                print(path)
            return 0
        home = Path(args.home)
        home.mkdir(parents=True, exist_ok=True)
        env = _env(home)
        if args.command == "superlink":
            command = superlink_command(args)
            os.execvpe(command[0], command, env)
        if args.command == "supernode":
            command = supernode_command(args)
            os.execvpe(command[0], command, env)
        if args.command == "register":
            certs, _ = _tls_args(args)
            connection = write_connection(home, args.superlink, certs)
            keys = args.keys or sorted(str(p) for p in Path(args.certs).glob("supernode-*.pub"))
            for key in keys:
                subprocess.run(
                    [_flower_bin("flwr"), "supernode", "register", key, connection], env=env, check=True
                )
            return 0
        if args.command == "run":
            args.overrides = [o for o in args.overrides if o != "--"]
            command, output = run_command(args, home)
            done = subprocess.run(command, env=env)
            if (output / "metrics.json").is_file():
                print(f"run folder: {output}")
                return 0
            print(
                f"error: the Flower run did not finish (no {output / 'metrics.json'}; flwr exit {done.returncode})",
                file=sys.stderr,
            )
            return 1
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"error: {shlex.join(err.cmd)} exited {err.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
