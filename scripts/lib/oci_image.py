#!/usr/bin/env python3
"""Write a single-layer OCI image archive from a directory, with no container engine.

Usage: oci_image.py --rootfs DIR --name DOMAIN/PATH:TAG --out FILE [--entrypoint JSON] [--cmd JSON]
                    [--user UID:GID] [--env K=V]... [--expose PORT]...

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar, as
`ctr images import` and other OCI tools read it. The index names the image with the
`io.containerd.image.name` annotation. The name must be fully qualified (its first part a
domain, e.g. `agora.local/agora:0.0.0`): that is the name containerd stores and a pod's `image:`
must spell, and a domain of our own can never be mistaken for an image some registry serves.

The layer is reproducible: entries sorted, owned by root, mtime 0, so the same directory
always gives the same digest.
"""

import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def qualified(name):
    """DOMAIN/PATH:TAG checked; an unqualified or untagged name is refused, not completed."""
    repo, _, tag = name.rpartition(":")
    first = repo.split("/", 1)[0]
    if not repo or "/" in tag or "/" not in repo or not ("." in first or first == "localhost"):
        sys.exit(f"oci_image: '{name}' is not DOMAIN/PATH:TAG (e.g. agora.local/agora:0.0.0)")
    return name


def layer_entries(root):
    """Yield (archive path, filesystem path) for every entry under root, sorted, parents first."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            yield rel, dirpath
        # A link to a directory is listed among the directories but is an entry of its own.
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in sorted(filenames + links):
            path = os.path.join(dirpath, name)
            yield os.path.normpath(os.path.join(rel, name)), path


def build_layer(root):
    """The layer tar's bytes: root's tree with reproducible metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in layer_entries(root):
            info = tar.gettarinfo(path, arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = stat.S_IMODE(os.lstat(path).st_mode)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def blob(tar, data):
    """Add data as a blob; return its descriptor fields (digest, size)."""
    digest = hashlib.sha256(data).hexdigest()
    add_file(tar, f"blobs/sha256/{digest}", data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", required=True, help="directory that becomes the image's /")
    parser.add_argument("--name", required=True, help="image name, DOMAIN/PATH:TAG")
    parser.add_argument("--out", required=True, help="archive to write")
    parser.add_argument("--entrypoint", type=json.loads, help='JSON list, e.g. ["/agora"]')
    parser.add_argument("--cmd", type=json.loads, help="JSON list")
    parser.add_argument("--user", help="UID:GID the container runs as")
    parser.add_argument("--env", action="append", default=[], help="K=V, repeatable")
    parser.add_argument("--expose", action="append", default=[], help="TCP port, repeatable")
    args = parser.parse_args()

    if not os.path.isdir(args.rootfs):
        sys.exit(f"oci_image: no directory at {args.rootfs}")

    layer = build_layer(args.rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            k: v
            for k, v in {
                "Entrypoint": args.entrypoint,
                "Cmd": args.cmd,
                "User": args.user,
                "Env": args.env or None,
                "ExposedPorts": {f"{p}/tcp": {} for p in args.expose} or None,
            }.items()
            if v is not None
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"oci_image.py --rootfs {os.path.basename(args.rootfs)}"}],
    }
    name = qualified(args.name)
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as tar:
        add_file(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        layer_desc = {"mediaType": LAYER_TYPE, **blob(tar, layer)}
        config_desc = {"mediaType": CONFIG_TYPE, **blob(tar, canonical(config))}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = {"mediaType": MANIFEST_TYPE, **blob(tar, canonical(manifest))}
        manifest_desc["annotations"] = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rpartition(":")[2],
        }
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest_desc]}
        add_file(tar, "index.json", canonical(index))
    os.replace(tmp, args.out)
    print(f"{name} {layer_desc['digest']} {len(layer)} bytes -> {args.out}")


if __name__ == "__main__":
    main()
