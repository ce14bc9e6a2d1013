"""The binaries read exactly what the chart gives them: each role is started locally with its
Deployment's args and env and its rendered ConfigMap, the chart's hosts pointed at the test
infrastructure (PostgreSQL, Kafka, Consul, Jaeger from scripts/test.sh's AGORA_TEST_*), and
must become ready: registered in Consul, the gateway's /readyz ready, `agora check` green, an
order placed through the gateway paid, and a clean exit on SIGTERM.

The suite's infrastructure is secured, and the chart is given it as a user would give a secured
one of their own: PostgreSQL through externalPostgresql (sslmode and a CA Secret), Kafka through
externalKafka.security/sasl/tls (SASL_SSL, a password Secret and a client certificate Secret),
Consul through externalConsul.existingSecret (the ACL token) and OTLP through otlp.tls (the
collector's CA). The Secrets are declared as existing; a Secret file the Deployment mounts
stands for the local file the AGORA_TEST_* variable names. Without those variables (a
developer's plaintext infrastructure) the roles run in plaintext.

Needs AGORA_BIN (the agora binary) and the AGORA_TEST_* variables; under CI=true their absence
(the secured ones included) is a failure, elsewhere the test is skipped."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import urllib.parse
import uuid

import pytest
import yaml

from test_chart import CHART, ROOT, find, render

NEEDED = ["AGORA_BIN", "AGORA_TEST_POSTGRES_URL", "AGORA_TEST_KAFKA_BROKERS", "AGORA_TEST_CONSUL_ADDR",
          "AGORA_TEST_OTLP_ENDPOINT"]
# The secured infrastructure's settings (scripts/test.sh always sets them; a developer's
# plaintext infrastructure need not): the Kafka client's (AGORA_KAFKA_* as AGORA_TEST_KAFKA_*),
# the Consul ACL token, the OTLP receiver's CA.
SECURED = ["AGORA_TEST_KAFKA_SECURITY", "AGORA_TEST_KAFKA_SASL_MECHANISM", "AGORA_TEST_KAFKA_SASL_USERNAME",
           "AGORA_TEST_KAFKA_SASL_PASSWORD", "AGORA_TEST_KAFKA_TLS_CA", "AGORA_TEST_KAFKA_TLS_CERT",
           "AGORA_TEST_KAFKA_TLS_KEY", "AGORA_TEST_CONSUL_TOKEN", "AGORA_TEST_OTLP_CA"]
ROLES = ["user-service", "product-service", "order-service", "payment-service", "gateway"]
# The libpq parameters of a PostgreSQL URL that externalPostgresql stands for.
PG_TLS_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def needed():
    ci = os.environ.get("CI") == "true"
    missing = [name for name in NEEDED + (SECURED if ci else []) if not os.environ.get(name)]
    if missing and ci:
        pytest.fail(f"CI=true but {missing} are not set (scripts/test.sh sets them)")
    if missing:
        pytest.skip(f"{missing} not set")
    if ci:
        # The suite's infrastructure runs secured: the test must go over TLS, not fall back.
        assert "sslmode=verify-full" in os.environ["AGORA_TEST_POSTGRES_URL"], "CI's PostgreSQL takes TLS only"
        assert os.environ["AGORA_TEST_OTLP_ENDPOINT"].startswith("https://"), "CI's OTLP receiver takes TLS only"
    return {name: os.environ[name] for name in NEEDED + SECURED if os.environ.get(name)}


def secured_values(infra):
    """The chart values that point the roles at the suite's infrastructure as it runs (secured or
    not), the Secrets they name (declared as existing: {name: {key: value}}) and the local file
    each mounted Secret key stands for ({(name, key): path}). Also returns the server part of the
    PostgreSQL URL (scheme, credentials, hosts) and its query without the TLS parameters."""
    values = {
        "postgresql": {"enabled": False}, "kafka": {"enabled": False}, "consul": {"enabled": False},
        "jaeger": {"enabled": False},
        "externalKafka": {"brokers": infra["AGORA_TEST_KAFKA_BROKERS"]},
        "externalConsul": {"address": infra["AGORA_TEST_CONSUL_ADDR"]},
        "otlp": {"endpoint": infra["AGORA_TEST_OTLP_ENDPOINT"]},
    }
    secrets, files = {}, {}

    # PostgreSQL: the URL's TLS parameters become externalPostgresql, which the chart appends
    # again (with the mounted CA's path) after the URL's other parameters.
    url = urllib.parse.urlsplit(infra["AGORA_TEST_POSTGRES_URL"])
    query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    tls = dict((k, v) for k, v in query if k in PG_TLS_PARAMS)
    server = urllib.parse.urlunsplit((url.scheme, url.netloc, "", "", ""))
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k not in PG_TLS_PARAMS], safe="/",
                                  quote_via=urllib.parse.quote)
    if tls:
        assert tls.get("sslmode"), f"TLS parameters without sslmode: {sorted(tls)}"
        values["externalPostgresql"] = {"sslmode": tls["sslmode"]}
        if "sslrootcert" in tls or "sslcert" in tls:
            keys = {"caKey": "ca.crt" if "sslrootcert" in tls else "",
                    "certKey": "tls.crt" if "sslcert" in tls else "", "keyKey": "tls.key" if "sslkey" in tls else ""}
            values["externalPostgresql"]["tls"] = {"existingSecret": "test-postgresql-tls", **keys}
            for param, key in [("sslrootcert", "ca.crt"), ("sslcert", "tls.crt"), ("sslkey", "tls.key")]:
                if param in tls:
                    files[("test-postgresql-tls", key)] = tls[param]

    # Kafka: SASL_SSL with the password in a Secret, the CA and client certificate in another.
    security = infra.get("AGORA_TEST_KAFKA_SECURITY", "plaintext")
    if security != "plaintext":
        kafka = values["externalKafka"]
        kafka["security"] = security
        if security == "sasl-ssl":
            kafka["sasl"] = {"mechanism": infra.get("AGORA_TEST_KAFKA_SASL_MECHANISM", "scram-sha-512"),
                             "username": infra["AGORA_TEST_KAFKA_SASL_USERNAME"],
                             "existingSecret": "test-kafka-sasl", "passwordKey": "password"}
            secrets["test-kafka-sasl"] = {"password": infra["AGORA_TEST_KAFKA_SASL_PASSWORD"]}
        given = {key: infra[var] for key, var in [("ca.crt", "AGORA_TEST_KAFKA_TLS_CA"), ("tls.crt", "AGORA_TEST_KAFKA_TLS_CERT"),
                                                   ("tls.key", "AGORA_TEST_KAFKA_TLS_KEY")] if infra.get(var)}
        if given:
            kafka["tls"] = {"existingSecret": "test-kafka-tls", "caKey": "ca.crt" if "ca.crt" in given else "",
                            "certKey": "tls.crt" if "tls.crt" in given else "", "keyKey": "tls.key" if "tls.key" in given else ""}
            files.update({("test-kafka-tls", key): path for key, path in given.items()})

    # Consul: the ACL token from a Secret of its own.
    if infra.get("AGORA_TEST_CONSUL_TOKEN"):
        values["externalConsul"].update({"existingSecret": "test-consul-acl", "existingSecretKey": "token"})
        secrets["test-consul-acl"] = {"token": infra["AGORA_TEST_CONSUL_TOKEN"]}

    # OTLP over TLS, checked against the receiver's CA.
    if infra.get("AGORA_TEST_OTLP_CA"):
        values["otlp"]["tls"] = {"existingSecret": "test-otlp-tls", "caKey": "ca.crt"}
        files[("test-otlp-tls", "ca.crt")] = infra["AGORA_TEST_OTLP_CA"]
    return values, secrets, files, server, rest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mounted_files(deployment, files):
    """The Secret files the role's container mounts, as {path in the container: local file}: each
    item of a Secret volume is the local file `files` gives for (Secret, key)."""
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0].get("volumeMounts", [])}
    local = {}
    for volume in pod.get("volumes", []):
        if "secret" not in volume:
            continue
        mount = mounts[volume["name"]]
        assert mount.get("readOnly") is True, mount
        name = volume["secret"]["secretName"]
        for item in volume["secret"]["items"]:
            assert (name, item["key"]) in files, f"the Deployment mounts {name}/{item['key']}, which the test did not declare"
            local[f"{mount['mountPath']}/{item['path']}"] = files[(name, item["key"])]
    return local


def localize(value, local):
    """value with each mounted file's path in the container replaced by the local file: a whole
    value (AGORA_KAFKA_TLS_CA=/etc/...) as it is, a parameter of a URL's query
    (...&sslrootcert=/etc/...) percent-encoded as a URL's query wants it."""
    for path, file in local.items():
        if value == path:
            value = file
        else:
            value = re.sub(re.escape(path) + r"(?=&|$)", lambda _: urllib.parse.quote(file, safe="/"), value)
    return value


def process_env(objects, role, secrets, files):
    """What the kubelet would give the role's container: the ConfigMap, then env in order, with
    secretKeyRef read from `secrets` ({Secret: {key: value}}), downward-API fields filled in and
    $(VAR) expanded, and the paths of mounted Secret files turned into the local files `files`
    names ({(Secret, key): path}); the pod's IP is 127.0.0.1."""
    deployment = find(objects, "Deployment", f"t-agora-{role}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    local = mounted_files(deployment, files)
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
            assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]], f"{role}: no such Secret key: {ref}"
            value = secrets[ref["name"]][ref["key"]]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") in fields:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"{role}: cannot resolve {item}")
        env[item["name"]] = value
    env = {name: localize(value, local) for name, value in env.items()}
    unmounted = {name: value for name, value in env.items() if "/etc/agora/" in value}
    assert not unmounted, f"{role}: paths no volume of the Deployment provides: {unmounted}"
    return container["args"], env


def consul_get(consul, path, token=None):
    """GET on Consul's HTTP API, with the ACL token when it has ACLs."""
    request = urllib.request.Request(f"http://{consul}{path}")
    if token:
        request.add_header("X-Consul-Token", token)
    with urllib.request.urlopen(request, timeout=2) as reply:
        return json.load(reply)


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
    values, secrets, files, pg, pg_query = secured_values(infra)
    databases = {role: f"agora_chart_{run}_{role.removesuffix('-service')}" for role in ROLES if role != "gateway"}
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "create-db", *databases.values()], check=True,
                   capture_output=True)
    ports = {role: free_port() for role in ROLES}
    values.update({"jwtSecret": "k" * 40, "adminPassword": "chart-admin-password", "roles": {}})
    for role in ROLES:
        values["roles"][role] = {"port": ports[role]}
        if role != "gateway":
            values["roles"][role].update({
                # The run's own topics and groups on the shared test broker (through extraEnv).
                "extraEnv": [{"name": "AGORA_KAFKA_PREFIX", "value": f"chart-{run}."}],
                "metricsPort": free_port(),
                # The URL as a user gives it; the chart appends the TLS parameters.
                "database": {"url": f"{pg}/{databases[role]}" + (f"?{pg_query}" if pg_query else "")},
            })
    # A values file, not --set: URLs and paths may hold what --set would split (commas).
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    objects = render("-f", str(values_file))
    secrets["t-agora"] = {k: base64.b64decode(v).decode() for k, v in find(objects, "Secret", "t-agora")["data"].items()}
    consul_token = infra.get("AGORA_TEST_CONSUL_TOKEN")

    processes = {}
    try:
        for role in ROLES:
            role_args, env = process_env(objects, role, secrets, files)
            # The secured infrastructure's settings came from the chart.
            if infra.get("AGORA_TEST_KAFKA_SECURITY", "plaintext") != "plaintext" and role != "gateway":
                assert env["AGORA_KAFKA_SECURITY"] == infra["AGORA_TEST_KAFKA_SECURITY"], env
            if "sslmode=" in infra["AGORA_TEST_POSTGRES_URL"] and role != "gateway":
                assert "sslmode=" in env["AGORA_DATABASE_URL"], role
            if consul_token:
                assert env["AGORA_CONSUL_TOKEN"] == consul_token
            if infra.get("AGORA_TEST_OTLP_CA"):
                assert env["OTEL_EXPORTER_OTLP_CERTIFICATE"] == infra["AGORA_TEST_OTLP_CA"]
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
            assert consul_get(consul, f"/v1/agent/service/{role}-127.0.0.1-{ports[role]}", consul_token)["Port"] == ports[role]
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
