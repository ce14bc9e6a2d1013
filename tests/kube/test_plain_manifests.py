"""The plain manifests of k8s/, applied the way k8s/README.md says, in a namespace of their own:
the chart's dev components (PostgreSQL, Kafka, Consul, Jaeger from `make dev-images`) on
volumes of the cluster's default StorageClass, and the platform on them serving an order."""

import os
import re
import subprocess
import time
from pathlib import Path

from conftest import ROLES, customer, place_order

NAMESPACE = "agora-plain"
DEV = ["postgresql", "kafka", "consul", "jaeger"]


def readme_commands(root):
    """The shell commands of k8s/README.md's first code block, up to the port-forward (which
    the test runs itself), in the namespace of this test."""
    text = (root / "k8s" / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    commands = [c for c in commands if c and "port-forward" not in c]
    assert any("create secret" in c for c in commands) and any("apply -f k8s/" in c for c in commands), commands
    return [c.replace("namespace agora", f"namespace {NAMESPACE}").replace("-n agora ", f"-n {NAMESPACE} ")
            for c in commands]


def port_forward(cluster):
    """`kubectl port-forward svc/agora-gateway 0:80`, as the README's last command but on a
    free local port: (the process, the gateway's URL)."""
    cmd = [*cluster.e["AGORA_KUBECTL"].split(), "-n", NAMESPACE, "port-forward", "svc/agora-gateway", "0:80"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
    assert match, f"port-forward said: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
    return proc, f"http://127.0.0.1:{match.group(1)}"


def release_replicas(cluster):
    """{deployment: replicas} of the release in the cluster's namespace."""
    return {d["metadata"]["name"]: d["spec"]["replicas"]
            for d in cluster.json("get", "deployments", "-l", f"app.kubernetes.io/instance={cluster.release}")["items"]}


def scale(cluster, replicas):
    for name, count in replicas.items():
        cluster.kubectl("scale", f"deployment/{name}", f"--replicas={count}")


def test_kubectl_apply_of_k8s_serves_an_order_in_a_second_namespace(cluster):
    root = Path(cluster.e["AGORA_KUBE_CHART"]).parents[1]
    kubectl = cluster.e["AGORA_KUBECTL"]
    # A run stopped midway leaves its namespace in the cluster's state: start clean.
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", "--timeout=5m",
                    ns="default", timeout=400)
    # The node's two CPUs are what the release's pods request already; the second namespace's
    # pods get them while the release rests at zero replicas (it comes back afterwards).
    replicas = release_replicas(cluster)
    assert replicas, f"no Deployments of release {cluster.release}"
    scale(cluster, dict.fromkeys(replicas, 0))
    cluster.kubectl("wait", "--for=delete", "pod", "-l", f"app.kubernetes.io/instance={cluster.release}",
                    "--timeout=2m", timeout=180)
    began = time.monotonic()
    try:
        for command in readme_commands(root):
            # The README's kubectl is the cluster's; its rollout wait gets the time two cores need
            # to start Kafka's JVM and ten role pods.
            command = re.sub(r"^kubectl ", f"{kubectl} ", command)
            if "rollout status" in command:
                command += " --timeout=10m"
            out = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True, timeout=900,
                                 env={**os.environ, "KUBECONFIG": cluster.e["KUBECONFIG"]})
            assert out.returncode == 0, f"{command}: exit {out.returncode}\n{out.stdout}\n{out.stderr}\n" \
                + cluster.kubectl("get", "pods,pvc", "-o", "wide", ns=NAMESPACE, check=False).stdout
        for role in ROLES:
            cluster.kubectl("rollout", "status", f"deploy/agora-{role}", "--timeout=5m", ns=NAMESPACE, timeout=400)

        # The dev components run from the images made here, on claims of the default StorageClass.
        pods = cluster.json("get", "pods", ns=NAMESPACE)["items"]
        images = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p["spec"]["containers"][0]["image"]
                  for p in pods}
        for component in DEV:
            assert images.get(component, "").startswith(f"agora.local/dev/{component}:"), images
        claims = cluster.json("get", "pvc", ns=NAMESPACE)["items"]
        assert sorted(c["metadata"]["name"] for c in claims) == ["data-agora-kafka-0", "data-agora-postgresql-0"]
        for claim in claims:
            assert claim["status"]["phase"] == "Bound", claim["status"]
            assert claim["spec"]["storageClassName"] == "local-path", claim["spec"]

        forward, gateway = port_forward(cluster)
        try:
            token = customer(gateway)
            order_id, status = place_order(gateway, token)
            assert status.endswith("PAID"), f"order {order_id} ended {status}"
            print(f"\n  kubectl apply -f k8s/ in {NAMESPACE}: README's commands done and an order PAID "
                  f"{time.monotonic() - began:.0f}s after the first")
        finally:
            forward.terminate()
            forward.wait(timeout=10)
    finally:
        volumes = {pv["metadata"]["name"]: pv["spec"].get("hostPath", {}).get("path")
                   for pv in cluster.json("get", "pv")["items"]
                   if pv["spec"].get("claimRef", {}).get("namespace") == NAMESPACE}
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", "--timeout=5m",
                        ns="default", timeout=400)
        scale(cluster, replicas)
    for name in replicas:
        cluster.kubectl("rollout", "status", f"deployment/{name}", "--timeout=5m", timeout=400)
    # The claims went with the namespace, and the provisioner deleted their volumes (Delete policy).
    deadline = time.monotonic() + 120
    while True:
        left = [pv["metadata"]["name"] for pv in cluster.json("get", "pv")["items"] if pv["metadata"]["name"] in volumes]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert volumes and not left, f"volumes of {NAMESPACE} {list(volumes)}: still there {left}"
    # Each was a folder on the node, made by the provisioner's helper pod and deleted by another.
    for name, path in volumes.items():
        assert path and not os.path.exists(path), f"{name}: folder {path} outlived its volume"
