"""The agora image made without Docker (scripts/image.sh) holds what the Dockerfile's image holds.

The Dockerfile's runtime stage is an empty base plus one directory, which its build stage makes
with scripts/rootfs.sh; scripts/image.sh writes the directory rootfs.sh makes as the one layer of
an OCI archive. So the two paths agree when (1) the runtime stage is exactly that, (2) the
archive's layer has the same files, links and modes as a directory rootfs.sh makes from the same
binary, and (3) the archive's config says what the runtime stage says (user, entrypoint, command,
ports). Needs AGORA_BIN (the binary to ship) and root (rootfs.sh copies system libraries; it runs
anywhere, but CI runs it as root)."""

import json
import os
import pathlib
import re
import subprocess
import tarfile
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary():
    path = os.environ.get("AGORA_BIN")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but AGORA_BIN is not set")
        pytest.skip("AGORA_BIN not set")
    return path


def runtime_stage():
    """The Dockerfile's last stage, as (instruction, arguments) pairs."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stages, current = [], None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            current = [("FROM", rest)]
            stages.append(current)
        elif current is not None and word.isupper():
            current.append((word, rest))
    return stages


def test_the_dockerfile_image_is_the_rootfs_directory_on_an_empty_base():
    stages = runtime_stage()
    build, runtime = stages[-2], stages[-1]
    assert runtime[0] == ("FROM", "scratch"), runtime
    copies = [args for word, args in runtime if word in ("COPY", "ADD", "RUN")]
    assert copies == ["--from=build /rootfs/ /"], f"the runtime stage adds more than /rootfs: {copies}"
    runs = " ".join(args for word, args in build if word == "RUN")
    assert re.search(r"bash scripts/rootfs\.sh /agora /rootfs", runs), "the build stage does not make /rootfs with scripts/rootfs.sh"


def layer_of(archive):
    """The archive's only layer, as {path: (type, mode, link target)}, and its config."""
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(outer.extractfile(f"blobs/sha256/{manifest_digest}"))
        config = json.load(outer.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
        assert len(manifest["layers"]) == 1, manifest
        layer = outer.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}")
        with tarfile.open(fileobj=layer) as inner:
            entries = {"/" + m.name: (m.type, m.mode, m.linkname) for m in inner.getmembers()}
    return entries, config, index


def tree_of(directory):
    entries = {}
    for path in sorted(pathlib.Path(directory).rglob("*")):
        st = path.lstat()
        kind = tarfile.SYMTYPE if path.is_symlink() else tarfile.DIRTYPE if path.is_dir() else tarfile.REGTYPE
        entries["/" + str(path.relative_to(directory))] = (kind, st.st_mode & 0o7777, os.readlink(path) if path.is_symlink() else "")
    return entries


def test_the_archive_holds_the_files_the_dockerfile_image_holds_and_says_what_it_says():
    agora = binary()
    tag = "0.0.0-imagetest"
    env = {**os.environ, "AGORA_IMAGE_BIN": agora}
    out = subprocess.run(["bash", str(ROOT / "scripts/image.sh"), "build", tag], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    archive = out.stdout.strip().splitlines()[-1]
    try:
        entries, config, index = layer_of(archive)
        with tempfile.TemporaryDirectory() as work:
            subprocess.run(["bash", str(ROOT / "scripts/rootfs.sh"), agora, f"{work}/fs"], check=True)
            expected = tree_of(f"{work}/fs")
        assert entries == expected, {
            "only in the archive": sorted(set(entries) - set(expected)),
            "only in the Dockerfile's rootfs": sorted(set(expected) - set(entries)),
            "different": sorted(p for p in set(entries) & set(expected) if entries[p] != expected[p]),
        }
        assert "/usr/local/bin/agora" in entries and "/etc/passwd" in entries
        assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == f"agora.local/agora:{tag}"

        runtime = dict((w, a) for w, a in runtime_stage()[-1])
        c = config["config"]
        assert c["User"] == runtime["USER"]
        assert c["Entrypoint"] == json.loads(runtime["ENTRYPOINT"])
        assert c["Cmd"] == json.loads(runtime["CMD"])
        assert sorted(c["ExposedPorts"]) == sorted(f"{p}/tcp" for p in runtime["EXPOSE"].split())
    finally:
        os.unlink(archive)


def test_the_archive_is_reproducible():
    agora = binary()
    env = {**os.environ, "AGORA_IMAGE_BIN": agora}
    digests = []
    for tag in ("0.0.0-repro-a", "0.0.0-repro-b"):
        out = subprocess.run(["bash", str(ROOT / "scripts/image.sh"), "build", tag], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        archive = out.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as outer:
            index = json.load(outer.extractfile("index.json"))
            manifest = json.load(outer.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':')[1]}"))
        digests.append(manifest["layers"][0]["digest"])
        os.unlink(archive)
    assert digests[0] == digests[1], f"the same binary gave two layers: {digests}"


def test_an_unqualified_name_is_refused_not_completed_with_some_registry(tmp_path):
    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / "file").write_text("x")
    for name in ("agora:0.0.0", "library/agora:0.0.0", "agora.local/agora"):
        out = subprocess.run(["python3", str(ROOT / "scripts/lib/oci_image.py"), "--rootfs", str(tmp_path / "fs"),
                              "--name", name, "--out", str(tmp_path / "x.tar")], capture_output=True, text=True)
        assert out.returncode != 0 and "is not DOMAIN/PATH:TAG" in out.stderr, (name, out.stderr)
        assert not (tmp_path / "x.tar").exists()
    out = subprocess.run(["python3", str(ROOT / "scripts/lib/oci_image.py"), "--rootfs", str(tmp_path / "fs"),
                          "--name", "agora.local/agora:0.0.0", "--out", str(tmp_path / "x.tar")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
