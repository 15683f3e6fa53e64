# SPDX-License-Identifier: Apache-2.0
"""A PEP 517 backend for this pure-Python package, stdlib only.

pip builds in an isolated environment that hides the system's setuptools, and
the machines plexus runs on may not reach PyPI: this writes the wheel (and
the sdist) itself, from pyproject.toml's [project] table."""
import base64
import hashlib
import io
import pathlib
import tarfile
import tomllib
import zipfile

HERE = pathlib.Path(__file__).resolve().parent


def _project():
    with open(HERE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(p):
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}",
             f"Summary: {p.get('description', '')}",
             f"Requires-Python: {p.get('requires-python', '')}",
             f"License: {p.get('license', {}).get('text', '')}"]
    lines += [f"Requires-Dist: {d}" for d in p.get("dependencies", [])]
    body = (HERE / p["readme"]).read_text() if p.get("readme") else ""
    return "\n".join(lines) + "\nDescription-Content-Type: text/markdown\n\n" + body


def _sources():
    for path in sorted((HERE / "plexus").rglob("*.py")):
        yield path.relative_to(HERE).as_posix(), path.read_bytes()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _dist_info(p):
    return f"{p['name']}-{p['version']}.dist-info"


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    d = pathlib.Path(metadata_directory) / _dist_info(p)
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(_metadata(p))
    return d.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    name = f"{p['name']}-{p['version']}-py3-none-any.whl"
    info = _dist_info(p)
    files = list(_sources())
    files.append((f"{info}/METADATA", _metadata(p).encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: plexus build_backend\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = io.StringIO()
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.write(f"{arc},sha256={digest.decode()},{len(data)}\n")
        record.write(f"{info}/RECORD,,\n")
        z.writestr(f"{info}/RECORD", record.getvalue())
    return name


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = f"{p['name']}-{p['version']}"
    name = f"{base}.tar.gz"
    with tarfile.open(pathlib.Path(sdist_directory) / name, "w:gz") as t:
        for rel in ["pyproject.toml", "build_backend.py", "README.md"] + \
                   [a for a, _ in _sources()]:
            t.add(HERE / rel, arcname=f"{base}/{rel}")
        pkg = _metadata(p).encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(pkg)
        t.addfile(ti, io.BytesIO(pkg))
    return name
