"""The binaries read exactly what the chart gives them: each role is started locally with its
Deployment's args and env and its rendered ConfigMap, the chart's hosts pointed at the test
infrastructure (PostgreSQL, Kafka, Consul, Jaeger from scripts/test.sh's AGORA_TEST_*), and
must become ready: registered in Consul, the gateway's /readyz ready, `agora check` green, an
order placed through the gateway paid, and a clean exit on SIGTERM.

Needs AGORA_BIN (the agora binary) and the AGORA_TEST_* variables; under CI=true their absence
is a failure, elsewhere the test is skipped."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from test_chart import CHART, ROOT, find, render

NEEDED = ["AGORA_BIN", "AGORA_TEST_POSTGRES_URL", "AGORA_TEST_KAFKA_BROKERS", "AGORA_TEST_CONSUL_ADDR",
          "AGORA_TEST_OTLP_ENDPOINT"]
ROLES = ["user-service", "product-service", "order-service", "payment-service", "gateway"]


def needed():
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing} are not set (scripts/test.sh sets them)")
    if missing:
        pytest.skip(f"{missing} not set")
    return {name: os.environ[name] for name in NEEDED}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(objects, role, secret):
    """What the kubelet would give the role's container: the ConfigMap, then env in order, with
    secretKeyRef read from `secret`, downward-API fields filled in and $(VAR) expanded; the pod's IP
    is 127.0.0.1."""
    deployment = find(objects, "Deployment", f"t-agora-{role}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {}
    # The downward API's fields the chart reads.
    fields = {"status.podIP": "127.0.0.1", "metadata.name": f"{role}-pod", "spec.nodeName": "node",
              "metadata.namespace": "shop"}
    for source in container.get("envFrom", []):
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "t-agora", ref
            value = base64.b64decode(secret[ref["key"]]).decode()
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") in fields:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"{role}: cannot resolve {item}")
        env[item["name"]] = value
    return container["args"], env


def consul_passing(consul, service):
    with urllib.request.urlopen(f"http://{consul}/v1/health/service/{service}?passing=true", timeout=2) as reply:
        return len(json.load(reply))


def call(method, url, body=None, token=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def order_is_paid(gateway):
    email = f"chart-{uuid.uuid4().hex[:8]}@example.com"
    call("POST", f"{gateway}/v1/users", {"email": email, "password": "correct horse battery", "name": "Chart"})
    token = call("POST", f"{gateway}/v1/auth/login", {"email": email, "password": "correct horse battery"})["accessToken"]
    product = call("GET", f"{gateway}/v1/products")["products"][0]["id"]
    order = call("POST", f"{gateway}/v1/orders", {"items": [{"productId": product, "quantity": 1}]}, token)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = call("GET", f"{gateway}/v1/orders/{order['id']}", token=token)["status"]
        if status != "ORDER_STATUS_PENDING_PAYMENT":
            return status == "ORDER_STATUS_PAID"
        time.sleep(0.3)
    return False


def test_each_role_starts_from_its_rendered_deployment_and_configmap(tmp_path):
    infra = needed()
    run = uuid.uuid4().hex[:8]
    pg = infra["AGORA_TEST_POSTGRES_URL"].rsplit("/", 1)[0]
    databases = {role: f"agora_chart_{run}_{role.removesuffix('-service')}" for role in ROLES if role != "gateway"}
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "create-db", *databases.values()], check=True,
                   capture_output=True)
    ports = {role: free_port() for role in ROLES}
    args = [
        "--set", "postgresql.enabled=false", "--set", "kafka.enabled=false", "--set", "consul.enabled=false",
        "--set", "jaeger.enabled=false",
        "--set", f"externalKafka.brokers={infra['AGORA_TEST_KAFKA_BROKERS']}",
        "--set", f"externalConsul.address={infra['AGORA_TEST_CONSUL_ADDR']}",
        "--set", f"otlp.endpoint={infra['AGORA_TEST_OTLP_ENDPOINT']}",
        "--set", "jwtSecret=" + "k" * 40, "--set", "adminPassword=chart-admin-password",
    ]
    for role in ROLES:
        args += ["--set", f"roles.{role}.port={ports[role]}"]
        if role != "gateway":
            # The run's own topics and groups on the shared test broker (through extraEnv).
            args += ["--set", f"roles.{role}.extraEnv[0].name=AGORA_KAFKA_PREFIX",
                     "--set", f"roles.{role}.extraEnv[0].value=chart-{run}."]
            args += ["--set", f"roles.{role}.metricsPort={free_port()}",
                     "--set", f"roles.{role}.database.url={pg}/{databases[role]}"]
    objects = render(*args)
    secret = find(objects, "Secret", "t-agora")["data"]

    processes = {}
    try:
        for role in ROLES:
            role_args, env = process_env(objects, role, secret)
            # Each instance registers under its own name, so runs never meet in Consul.
            assert env["AGORA_ADVERTISE_ADDR"] == f"127.0.0.1:{ports[role]}"
            log = open(tmp_path / f"{role}.log", "w")
            processes[role] = subprocess.Popen([infra["AGORA_BIN"], *role_args], env={"PATH": os.environ["PATH"], **env},
                                               stdout=log, stderr=subprocess.STDOUT)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        deadline = time.monotonic() + 60
        while True:
            for role, process in processes.items():
                assert process.poll() is None, f"{role} exited:\n{(tmp_path / f'{role}.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{gateway}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the gateway never became ready"
            time.sleep(0.5)
        # Registered where the chart said, under the pod's address.
        consul = infra["AGORA_TEST_CONSUL_ADDR"]
        for role in ROLES:
            with urllib.request.urlopen(f"http://{consul}/v1/agent/service/{role}-127.0.0.1-{ports[role]}", timeout=2) as r:
                assert json.load(r)["Port"] == ports[role]
        check = subprocess.run([infra["AGORA_BIN"], "check", "--gateway", gateway], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        # An order is paid: the services share events through the chart's Kafka, the gateway
        # and user-service share the chart's JWT key, product-service seeded the catalog.
        assert order_is_paid(gateway), "the order was not paid"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {role: p.wait(timeout=30) for role, p in processes.items()}
    assert codes == {role: 0 for role in ROLES}, codes
