"""What the cluster tests share: the cluster's tools and addresses (tests/kube.sh sets them
after `scripts/kube-up.sh up`), and a customer's REST calls through the gateway's NodePort."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

NEEDED = ["AGORA_KUBECTL", "KUBECONFIG", "AGORA_HELM", "AGORA_BIN", "AGORA_KUBE_GATEWAY", "AGORA_KUBE_PG",
          "AGORA_KUBE_KAFKA", "AGORA_KUBE_JAEGER", "AGORA_KUBE_NAMESPACE", "AGORA_KUBE_RELEASE", "AGORA_KUBE_CHART"]
ROLES = ["gateway", "user-service", "product-service", "order-service", "payment-service"]


def env():
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing} are not set (tests/kube.sh sets them)")
    if missing:
        pytest.skip(f"{missing} not set: run tests/kube.sh")
    return {name: os.environ[name] for name in NEEDED}


class Cluster:
    """kubectl and helm against the test cluster, in the release's namespace by default."""

    def __init__(self, e):
        self.e = e
        self.ns = e["AGORA_KUBE_NAMESPACE"]
        self.release = e["AGORA_KUBE_RELEASE"]
        self.gateway = e["AGORA_KUBE_GATEWAY"]

    def kubectl(self, *args, ns=None, check=True, input=None, timeout=300):
        cmd = [*self.e["AGORA_KUBECTL"].split(), "-n", ns or self.ns, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out

    def json(self, *args, ns=None):
        return json.loads(self.kubectl(*args, "-o", "json", ns=ns).stdout)

    def helm(self, *args, check=True, timeout=600):
        cmd = [self.e["AGORA_HELM"], *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out

    def pods(self, role, ns=None):
        """The role's running pods, not being deleted."""
        items = self.json("get", "pods", "-l", f"app.kubernetes.io/component={role}", ns=ns)["items"]
        return [p for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]

    def agora(self, *args, timeout=600):
        return subprocess.run([self.e["AGORA_BIN"], *args], capture_output=True, text=True, timeout=timeout)

    def database(self, role):
        return f"{self.e['AGORA_KUBE_PG']}/agora_{role.removesuffix('-service')}"


@pytest.fixture(scope="session")
def cluster():
    return Cluster(env())


def call(method, url, body=None, token=None, headers=None, timeout=15):
    """(status, parsed JSON or text) of one REST call."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read().decode()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read().decode()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw


def customer(gateway):
    """A new customer's token, with money in the wallet."""
    email = f"kube-{uuid.uuid4().hex[:12]}@example.com"
    status, body = call("POST", f"{gateway}/v1/users", {"email": email, "password": "correct horse battery", "name": "Kube"})
    assert status == 201, body
    status, body = call("POST", f"{gateway}/v1/auth/login", {"email": email, "password": "correct horse battery"})
    assert status == 200, body
    token = body["accessToken"] if "accessToken" in body else body["access_token"]
    status, body = call("POST", f"{gateway}/v1/wallet:topUp", {"amount": {"currencyCode": "USD", "amountMinor": "1000000"}}, token)
    assert status == 200, body
    return token


def place_order(gateway, token):
    """An order for one unit of a product in stock, followed to its end; (order id, status)."""
    status, body = call("GET", f"{gateway}/v1/products?page_size=50", token=token)
    assert status == 200, body
    product = next(p for p in body["products"] if int(p.get("stock", 0)) > 0)
    status, order = call("POST", f"{gateway}/v1/orders", {"items": [{"productId": product["id"], "quantity": 1}]},
                         token, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert status == 201, order
    deadline = time.monotonic() + 60
    while True:
        status, order = call("GET", f"{gateway}/v1/orders/{order['id']}", token=token)
        assert status == 200, order
        if not order["status"].endswith("PENDING_PAYMENT") or time.monotonic() > deadline:
            return order["id"], order["status"]
        time.sleep(0.25)
