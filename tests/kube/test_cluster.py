"""Agora installed with Helm on a real single-node Kubernetes (scripts/kube.sh): the release is
available with its probes passing, the roles speak mutual TLS (certificates from Secrets made
with `agora certs`) with the kubelet probing the services' plaintext health ports, `helm test`
passes, an order reaches PAID with a trace from
every role's pod, NetworkPolicies are enforced, every container runs as 65532 on a read-only
root, and the release survives `helm upgrade`, pod deletions and evictions under load with
every accepted order reconciled; `helm uninstall` leaves only what it keeps by design.

tests/kube.sh brings the platform up (`scripts/kube-up.sh up`) and sets the environment; the
tests run in file order, the disruptive ones last."""

import base64
import datetime
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid

from conftest import ROLES, call, customer, place_order

BUSYBOX = "agora.local/kube/busybox:1.35"


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- Installed --------------------------------------------------------------


def test_every_deployment_is_available_with_its_probes_passing(cluster):
    for role in ROLES:
        deployment = cluster.json("get", "deployment", f"{cluster.release}-{role}")
        wanted = deployment["spec"]["replicas"]
        assert wanted >= 2, f"{role}: {wanted} replica(s); two of every role are the default"
        assert deployment["status"].get("availableReplicas") == wanted, f"{role}: {deployment['status']}"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, f"{role} has no {probe}"
        pods = cluster.pods(role)
        assert len(pods) == wanted, f"{role}: {len(pods)} running pods, {wanted} wanted"
        for pod in pods:
            ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", f"{pod['metadata']['name']} is not Ready: {ready}"
            state = pod["status"]["containerStatuses"][0]
            # Ready within the probe budget: the startup probe's window plus one readiness period.
            startup = container["startupProbe"]
            budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10) \
                + container["readinessProbe"].get("periodSeconds", 10)
            took = (stamp(ready["lastTransitionTime"]) - stamp(state["state"]["running"]["startedAt"])).total_seconds()
            assert took <= budget, f"{pod['metadata']['name']} took {took}s to be Ready (budget {budget}s)"


def test_the_roles_speak_mutual_tls_and_the_kubelet_probes_the_health_ports(cluster):
    for role in ROLES:
        deployment = cluster.json("get", "deployment", f"{cluster.release}-{role}")
        spec = deployment["spec"]["template"]["spec"]
        mounted = {v["name"]: v for v in spec["volumes"]}
        assert mounted["mtls"]["secret"]["secretName"] == f"{cluster.release}-{role}-mtls", f"{role}: {mounted}"
        if role != "gateway":
            container = spec["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["grpc"]["port"] == ports["health"], f"{role}'s {probe}: {container[probe]}"
        for pod in cluster.pods(role):
            name = pod["metadata"]["name"]
            logs = cluster.kubectl("logs", name, "-c", role).stdout
            started = [json.loads(line) for line in logs.splitlines() if "mutual TLS on for gRPC" in line]
            assert started, f"{name} does not say it speaks mutual TLS:\n{logs[-2000:]}"
            assert f"spiffe://agora.local/{role}" in json.dumps(started[0]), f"{name}: {started[0]}"


def test_helm_test_passes(cluster):
    out = cluster.helm("test", cluster.release, "-n", cluster.ns, "--timeout", "3m")
    assert re.search(r"^Phase:\s+Succeeded$", out.stdout, re.M), out.stdout


def test_an_order_reaches_paid_and_its_trace_has_spans_from_every_roles_pod(cluster):
    token = customer(cluster.gateway)
    status, body = call("GET", f"{cluster.gateway}/v1/products?page_size=50", token=token)
    assert status == 200, body
    product = next(p for p in body["products"] if int(p.get("stock", 0)) > 0)
    trace_id = uuid.uuid4().hex
    status, order = call("POST", f"{cluster.gateway}/v1/orders", {"items": [{"productId": product["id"], "quantity": 1}]},
                         token, headers={"Idempotency-Key": uuid.uuid4().hex, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    assert status == 201, order
    deadline = time.monotonic() + 60
    while order["status"].endswith("PENDING_PAYMENT") and time.monotonic() < deadline:
        time.sleep(0.25)
        status, order = call("GET", f"{cluster.gateway}/v1/orders/{order['id']}", token=token)
    assert order["status"] == "ORDER_STATUS_PAID", order

    pods = {role: {p["metadata"]["name"] for p in cluster.pods(role)} for role in ROLES}
    jaeger = cluster.e["AGORA_KUBE_JAEGER"]
    seen = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = call("GET", f"{jaeger}/api/traces/{trace_id}")
        if status == 200 and body.get("data"):
            trace = body["data"][0]
            seen = {}
            for span in trace["spans"]:
                process = trace["processes"][span["processID"]]
                tags = {t["key"]: t["value"] for t in process.get("tags", [])}
                seen.setdefault(process["serviceName"], set()).add(tags.get("k8s.pod.name"))
            if all(seen.get(role, set()) & pods[role] for role in ROLES):
                break
        time.sleep(1)
    for role in ROLES:
        assert seen.get(role, set()) & pods[role], \
            f"trace {trace_id} has no span from a {role} pod {sorted(pods[role])}; spans came from {seen}"


# --- Enforced NetworkPolicy -------------------------------------------------


def probe_from(cluster, pod, target, script, name_hint):
    """Run a busybox script in an ephemeral container in `pod`'s network (and, with `target`,
    process) namespace, as the restricted profile allows; its output."""
    name = f"probe-{name_hint}-{uuid.uuid4().hex[:6]}"
    args = ["debug", pod, f"--image={BUSYBOX}", "--image-pull-policy=Never", "--profile=restricted", "-c", name, "--quiet"]
    if target:
        args.append(f"--target={target}")
    cluster.kubectl(*args, "--", "sh", "-c", f"{CONNECTED}; {script}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = cluster.json("get", "pod", pod)["status"].get("ephemeralContainerStatuses", [])
        state = next((s["state"] for s in statuses if s["name"] == name), {})
        if "terminated" in state:
            return cluster.kubectl("logs", pod, "-c", name).stdout
        time.sleep(0.5)
    raise AssertionError(f"probe {name} in {pod} did not finish")


# busybox's nc has no -z; -e runs a program once connected, which says so on stderr.
CONNECTED = "printf '#!/bin/sh\\necho connected >&2\\n' >/tmp/connected && chmod +x /tmp/connected"


def reach(host, port):
    """A busybox line that prints HOST:PORT open or closed (a dropped SYN times out)."""
    return (f"if timeout 4 nc {host} {port} -e /tmp/connected 2>&1 | grep -q connected; "
            f"then echo {host}:{port} open; else echo {host}:{port} closed; fi")


# kube-router programs a new pod's rules a moment after the pod starts (measured: a probe at
# start got through, every probe from 3 s on was dropped), so a new pod waits before probing.
POLICY_SYNC_SECS = 6


def run_pod(cluster, name, labels, script):
    """A throwaway busybox pod with these labels; its output once it has finished."""
    script = f"sleep {POLICY_SYNC_SECS}; {script}"
    overrides = {
        "apiVersion": "v1",
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": name, "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sh", "-c", f"{CONNECTED}; {script}"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    cluster.kubectl("run", name, f"--image={BUSYBOX}", "--restart=Never", f"--labels={labels}",
                    f"--overrides={json.dumps(overrides)}")
    try:
        deadline = time.monotonic() + 90
        while cluster.json("get", "pod", name)["status"].get("phase") not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"pod {name} did not finish in 90 s"
            time.sleep(0.5)
        return cluster.kubectl("logs", name).stdout
    finally:
        cluster.kubectl("delete", "pod", name, "--wait=false", check=False)


def services(cluster):
    svc = {role: f"{cluster.release}-{role}" for role in ROLES}
    ports = {role: cluster.json("get", "service", name)["spec"]["ports"][0]["port"] for role, name in svc.items()}
    return svc, ports


def pg_address(cluster):
    host_port = cluster.e["AGORA_KUBE_PG"].split("@", 1)[1]
    return host_port.split(":")


def test_a_pod_without_a_roles_labels_reaches_no_service_port(cluster):
    svc, ports = services(cluster)
    script = "; ".join(reach(svc[role], ports[role]) for role in ROLES)
    out = run_pod(cluster, f"stranger-{uuid.uuid4().hex[:6]}", "agora.test/probe=stranger", script)
    # The gateway is open to every client (networkPolicy.gatewayFrom is empty): the stranger's
    # network works, so a closed port is the policy, not a broken pod.
    assert f"{svc['gateway']}:{ports['gateway']} open" in out, out
    for role in ROLES[1:]:
        assert f"{svc[role]}:{ports[role]} closed" in out, out


def test_a_pod_of_the_release_without_a_role_reaches_neither_postgresql_nor_a_service(cluster):
    svc, ports = services(cluster)
    host, port = pg_address(cluster)
    script = f"{reach(host, port)}; {reach(svc['product-service'], ports['product-service'])}; if nslookup {svc['gateway']}.{cluster.ns}.svc.cluster.local >/dev/null; then echo dns ok; fi"
    labels = f"app.kubernetes.io/name=agora,app.kubernetes.io/instance={cluster.release},app.kubernetes.io/component=intruder"
    out = run_pod(cluster, f"intruder-{uuid.uuid4().hex[:6]}", labels, script)
    assert f"{host}:{port} closed" in out, out
    assert f"{svc['product-service']}:{ports['product-service']} closed" in out, out
    assert "dns ok" in out, out


def test_each_role_reaches_what_it_needs_and_nothing_else(cluster):
    svc, ports = services(cluster)
    host, port = pg_address(cluster)
    gateway = cluster.pods("gateway")[0]["metadata"]["name"]
    out = probe_from(cluster, gateway, None, f"{reach(svc['product-service'], ports['product-service'])}; {reach(host, port)}", "gw")
    assert f"{svc['product-service']}:{ports['product-service']} open" in out, out
    assert f"{host}:{port} closed" in out, f"the gateway has no database, yet reaches PostgreSQL: {out}"
    order = cluster.pods("order-service")[0]["metadata"]["name"]
    out = probe_from(cluster, order, None, f"{reach(host, port)}; {reach(svc['payment-service'], ports['payment-service'])}", "order")
    assert f"{host}:{port} open" in out, out
    assert f"{svc['payment-service']}:{ports['payment-service']} closed" in out, \
        f"order-service never calls payment-service, yet reaches it: {out}"


# --- Hardened containers ----------------------------------------------------


def test_every_container_runs_as_65532_on_a_read_only_root(cluster):
    script = ("grep '^Uid:' /proc/1/status; grep '^Gid:' /proc/1/status; "
              "awk '$5 == \"/\" { print \"root mount\", $6 }' /proc/1/mountinfo; "
              "touch /proc/1/root/usr/local/bin/probe 2>&1 || true")
    for role in ROLES:
        pod = cluster.pods(role)[0]["metadata"]["name"]
        out = probe_from(cluster, pod, role, script, "sec")
        assert re.search(r"^Uid:\s+65532\s+65532\s+65532\s+65532$", out, re.M), f"{role}: {out}"
        assert re.search(r"^Gid:\s+65532\s+65532\s+65532\s+65532$", out, re.M), f"{role}: {out}"
        assert re.search(r"^root mount ro(,|$)", out, re.M), f"{role}: {out}"
        assert "Read-only file system" in out, f"{role}: {out}"


# --- Under load: upgrade, pod deletion, eviction ----------------------------


class Load:
    """`agora loadgen` from the host against the gateway's NodePort, placing orders retried
    under their idempotency key, every accepted one written down; then `agora reconcile`."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.dir = tempfile.mkdtemp(prefix=f"agora-kube-{name}-")
        self.accepted = os.path.join(self.dir, "accepted.txt")
        self.stock = os.path.join(self.dir, "stock.json")
        self.reconcile("--save-stock", self.stock, check=True)
        self.out = open(os.path.join(self.dir, "loadgen.json"), "w")
        self.err = open(os.path.join(self.dir, "loadgen.log"), "w")
        # With the admin's password the generator makes products of its own, stocked for the run.
        secret = cluster.json("get", "secret", cluster.release)["data"]
        password = base64.b64decode(secret["admin-password"]).decode()
        self.proc = subprocess.Popen(
            [cluster.e["AGORA_BIN"], "loadgen", "--gateway", cluster.gateway, "-r", "15", "-d", "1h",
             "--mix", "browse=20,product=20,order=40,read=20", "--users", "6", "--retries", "8",
             "--timeout", "10s", "--settle-timeout", "120s", "--accepted-orders", self.accepted, "--json", "--quiet"],
            stdout=self.out, stderr=self.err, env={**os.environ, "AGORA_ADMIN_PASSWORD": password})
        deadline = time.monotonic() + 90
        while not (os.path.exists(self.accepted) and os.path.getsize(self.accepted)):
            assert self.proc.poll() is None, open(self.err.name).read()
            assert time.monotonic() < deadline, "no order accepted in 90 s"
            time.sleep(0.5)

    def reconcile(self, *args, check=False):
        c = self.cluster
        out = c.agora("reconcile", "--order-db", c.database("order-service"), "--payment-db", c.database("payment-service"),
                      "--product-db", c.database("product-service"), "--user-db", c.database("user-service"), *args)
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def finish(self):
        """Stop sending, let the placed orders settle, and check every promise; the summary."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=300) == 0, open(self.err.name).read()
        self.out.close()
        self.err.close()
        summary = json.load(open(self.out.name))
        out = self.reconcile("--accepted", self.accepted, "--stock-before", self.stock,
                             "--kafka-brokers", self.cluster.e["AGORA_KUBE_KAFKA"], "--settle-secs", "180")
        assert out.returncode == 0, f"reconcile found broken promises:\n{out.stdout}\n{out.stderr}"
        codes = summary["status"]
        # A 5xx, a 429 or no answer is what a client retries (orders under their key); any
        # other failure is one no retry recovers.
        unrecoverable = {code: n for code, n in codes.items() if code[0] == "4" and code not in ("404", "429")}
        assert not unrecoverable, f"requests failed for good: {codes}; samples {summary.get('error_samples')}"
        accepted = sum(1 for line in open(self.accepted) if line.strip())
        assert accepted > 0, "no order accepted"
        retryable = sum(n for code, n in codes.items() if code[0] == "5" or not code[0].isdigit() or code == "429")
        print(f"\n  {accepted} orders accepted, answers {codes}, {retryable} retryable failures; reconcile: "
              + out.stdout.strip().splitlines()[-1])
        return summary, retryable


def wait_rolled_out(cluster):
    for role in ROLES:
        cluster.kubectl("rollout", "status", f"deployment/{cluster.release}-{role}", "--timeout=300s")


def test_helm_upgrade_under_load_loses_no_order(cluster):
    gateway = f"{cluster.release}-gateway"
    image = cluster.json("get", "deployment", gateway)["spec"]["template"]["spec"]["containers"][0]["image"]
    # Another tag of the same build (tests/kube.sh loads both), and another rate limit.
    tag = "0.0.0" if image.endswith(":0.0.0-upgrade") else "0.0.0-upgrade"
    rate = int(cluster.json("get", "configmap", gateway)["data"]["AGORA_RATE_LIMIT_PER_SECOND"]) + 50
    load = Load(cluster, "upgrade")
    time.sleep(5)
    before = {role: {p["metadata"]["name"] for p in cluster.pods(role)} for role in ROLES}
    began = time.monotonic()
    cluster.helm("upgrade", cluster.release, cluster.e["AGORA_KUBE_CHART"], "-n", cluster.ns,
                 "--reuse-values", "--set", f"image.tag={tag}", "--set", f"roles.gateway.rateLimitPerSecond={rate}",
                 "--wait", "--timeout", "5m")
    wait_rolled_out(cluster)
    print(f"\n  helm upgrade {image} -> {tag} rolled out in {time.monotonic() - began:.0f}s under load")
    time.sleep(5)
    load.finish()
    for role in ROLES:
        after = cluster.pods(role)
        assert not before[role] & {p["metadata"]["name"] for p in after}, f"{role}: pods were not replaced"
        images = {p["spec"]["containers"][0]["image"] for p in after}
        wanted = f"{image.rpartition(':')[0]}:{tag}"
        assert images == {wanted}, f"{role} runs {images}, not {wanted} (was {image})"
    assert cluster.json("get", "configmap", gateway)["data"]["AGORA_RATE_LIMIT_PER_SECOND"] == str(rate)


def evict(cluster, pod):
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": cluster.ns}})
    return cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{cluster.ns}/pods/{pod}/eviction", "-f", "-",
                           input=body, check=False)


def test_pod_deletion_and_eviction_under_load_lose_no_order_and_respect_the_budgets(cluster):
    load = Load(cluster, "disrupt")
    for role in ROLES:
        victim = cluster.pods(role)[0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", victim, "--wait=true", "--timeout=120s")
        wait_rolled_out(cluster)
        cluster.kubectl("wait", "deployment", f"{cluster.release}-{role}", "--for=condition=Available", "--timeout=120s")
    # Evictions: the first of a role's two pods may go, the second may not until its
    # replacement is ready (minAvailable 1).
    for role in ("product-service", "gateway"):
        deadline = time.monotonic() + 120
        while len(cluster.pods(role)) < 2 or cluster.json("get", "pdb", f"{cluster.release}-{role}")["status"].get("disruptionsAllowed", 0) < 1:
            assert time.monotonic() < deadline, f"{role}'s budget never allowed a disruption"
            time.sleep(1)
        first, second = [p["metadata"]["name"] for p in cluster.pods(role)[:2]]
        out = evict(cluster, first)
        assert out.returncode == 0, f"evicting {first}: {out.stderr}"
        out = evict(cluster, second)
        assert out.returncode != 0 and "disruption budget" in out.stderr.lower(), \
            f"evicting {second} right after {first} was not refused by the PodDisruptionBudget: {out.stdout} {out.stderr}"
        wait_rolled_out(cluster)
    time.sleep(5)
    load.finish()


# --- Uninstall --------------------------------------------------------------


def test_uninstall_leaves_only_what_it_keeps_and_a_reinstall_keeps_the_admin_password(cluster):
    secret = cluster.json("get", "secret", cluster.release)
    values = cluster.helm("get", "values", cluster.release, "-n", cluster.ns, "-o", "json").stdout
    values_file = os.path.join(tempfile.mkdtemp(prefix="agora-kube-values-"), "values.json")
    with open(values_file, "w") as f:
        f.write(values)
    cluster.helm("uninstall", cluster.release, "-n", cluster.ns, "--wait", "--timeout", "3m")
    kinds = "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,networkpolicies,poddisruptionbudgets,horizontalpodautoscalers,ingresses,persistentvolumeclaims,jobs"
    # The pods go after their Deployments, each once it has drained (preStop, then SIGTERM).
    deadline = time.monotonic() + 120
    while True:
        left = cluster.json("get", kinds, "-l", f"app.kubernetes.io/instance={cluster.release}")["items"]
        left = [f"{o['kind']}/{o['metadata']['name']}" for o in left]
        if left == [f"Secret/{cluster.release}"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == [f"Secret/{cluster.release}"], f"left behind after uninstall: {left} (only the generated Secret is kept)"
    cluster.helm("install", cluster.release, cluster.e["AGORA_KUBE_CHART"], "-n", cluster.ns,
                 "-f", values_file, "--wait", "--timeout", "5m")
    password = base64.b64decode(secret["data"]["admin-password"]).decode()
    # The Service's endpoints reach kube-proxy a moment after the pods are ready.
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = call("POST", f"{cluster.gateway}/v1/auth/login", {"email": "admin@agora.local", "password": password})
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway's NodePort never answered after the reinstall"
            time.sleep(0.5)
    assert status == 200, f"the kept admin password is refused after a reinstall: {status} {body}"
