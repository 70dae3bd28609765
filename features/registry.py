"""The model registry, for every pipeline's models. Pure (no Flink).

A registry is a directory of versions ``v0001/``, ``v0002/``, ... each holding ``model.joblib``
and ``metadata.json`` (plus the training report), and a ``current`` file naming the promoted
version. A model is any object with ``definition_hash``, ``model_version``, ``created_at``,
``sklearn_version`` and ``metadata()`` (features.scoring.RiskModel, features.iot_model...).
``load_model`` refuses a model whose feature-definition hash differs from the one the caller
computes features with (``ModelMismatchError``). ``metadata.json`` records the SHA-256 of
``model.joblib``; ``load_model`` hashes the file's bytes and refuses a mismatch before
unpickling them (``ModelIntegrityError``), so a replaced or corrupted pickle is never executed.
The hash lives beside the file: it protects against a swapped or damaged ``model.joblib``, not
against someone who can rewrite the whole version directory. ``model.joblib`` is a pickle: only
load registries you trust.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import numpy as np

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "current"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


class ModelLoadError(RuntimeError):
    """No usable model at a path: missing, unreadable or corrupt files, nothing promoted."""


class ModelMismatchError(ModelLoadError):
    """The model was trained on another feature definition than the caller computes."""


class ModelIntegrityError(ModelLoadError):
    """``model.joblib`` is not the file its metadata recorded (SHA-256 differs or is missing)."""


MODEL_SHA256 = "model_sha256"  # metadata key: hex SHA-256 of model.joblib's bytes


def _sha256_file(path: Path) -> tuple:
    """(bytes, hex sha256) of a file, read once: the bytes hashed are the bytes later unpickled."""
    import hashlib

    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _versions(registry_dir: Path) -> list:
    if not registry_dir.is_dir():
        return []
    found = []
    for p in registry_dir.iterdir():
        m = _VERSION_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p.name))
    return [name for _, name in sorted(found)]


def list_versions(registry_dir: Union[str, os.PathLike]) -> list:
    """Version names in the registry, oldest first."""
    return _versions(Path(registry_dir))


def _version_name(version: Union[str, int, os.PathLike]) -> str:
    if isinstance(version, int):
        return f"v{version:04d}"
    name = Path(str(version)).name
    if _VERSION_RE.match(name):
        return name
    if name.isdigit():
        return f"v{int(name):04d}"
    raise ValueError(f"not a model version: {version!r} (expected e.g. v0001)")


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(o, strict: bool = True):
    """numpy scalars and arrays as JSON numbers and lists (``json.dumps(default=...)``); anything
    else raises TypeError, or with ``strict=False`` becomes its str()."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if not strict:
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_model(model, registry_dir: Union[str, os.PathLike]) -> Path:
    """Write ``model`` as the registry's next version (not promoted) and return its directory.

    The version is assembled in a hidden temporary directory and renamed into place, so a
    reader never sees half a version; two concurrent savers get different versions.
    """
    import joblib
    import sklearn

    registry = Path(registry_dir)
    registry.mkdir(parents=True, exist_ok=True)
    if not model.created_at:
        model.created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model.sklearn_version = sklearn.__version__
    for _ in range(100):
        existing = _versions(registry)
        number = int(existing[-1][1:]) + 1 if existing else 1
        name = f"v{number:04d}"
        model.model_version = name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=registry))
        try:
            joblib.dump(model, tmp / MODEL_FILE)
            _write_json(tmp / METADATA_FILE, {**model.metadata(), MODEL_SHA256: _sha256_file(tmp / MODEL_FILE)[1]})
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, registry / name)
            except OSError:
                if (registry / name).exists():
                    continue  # another saver took this number; try the next
                raise
            return registry / name
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    raise ModelLoadError(f"could not allocate a new version under {registry}")


def promote(registry_dir: Union[str, os.PathLike], version: Union[str, int, os.PathLike]) -> str:
    """Point the registry's ``current`` file at ``version`` (atomically); returns its name."""
    registry = Path(registry_dir)
    name = _version_name(version)
    vdir = registry / name
    if not (vdir / MODEL_FILE).is_file() or not (vdir / METADATA_FILE).is_file():
        raise ModelLoadError(f"cannot promote {name}: {vdir} has no {MODEL_FILE} and {METADATA_FILE}")
    fd, tmp = tempfile.mkstemp(prefix=".current-", dir=registry)
    with os.fdopen(fd, "w") as f:
        f.write(name + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, registry / CURRENT_FILE)
    return name


def current_version(registry_dir: Union[str, os.PathLike]) -> Optional[str]:
    """The promoted version's name, or None when nothing is promoted yet."""
    p = Path(registry_dir) / CURRENT_FILE
    try:
        name = p.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ModelLoadError(f"cannot read {p}: {e}") from None
    if not _VERSION_RE.match(name):
        raise ModelLoadError(f"{p} names {name!r}, which is not a version (expected e.g. v0001)")
    return name


def resolve_model_dir(path_or_registry: Union[str, os.PathLike]) -> Path:
    """A version directory itself, or the version a registry's ``current`` file names."""
    p = Path(path_or_registry)
    if (p / MODEL_FILE).exists() or _VERSION_RE.match(p.name) and not (p / CURRENT_FILE).exists():
        return p
    if not p.exists():
        raise ModelLoadError(f"no model registry at {p}")
    name = current_version(p)
    if name is None:
        versions = _versions(p)
        hint = (f"promote one of {versions} with promote()" if versions
                else "train one with `streamscore train <pipeline>`")
        raise ModelLoadError(f"registry {p} has no promoted model ({CURRENT_FILE} file missing); {hint}")
    return p / name


def read_metadata(version_dir: Union[str, os.PathLike]) -> dict:
    p = Path(version_dir) / METADATA_FILE
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"model metadata missing: {p}") from None
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model metadata unreadable: {p}: {e}") from None


def _check_hash(found: str, expected: Optional[str], where: Path, domain: str = "fraud") -> None:
    if expected is not None and found != expected:
        raise ModelMismatchError(
            f"model {where} was trained on feature definition {found}, but the features are now "
            f"computed with definition {expected}; retrain the model (`streamscore train {domain}`) "
            f"on features of the current definition")


def load_model(path_or_registry: Union[str, os.PathLike], expected_hash: Optional[str] = None,
               model_type: Optional[type] = None, domain: str = "fraud"):
    """Load a version directory, or a registry's promoted version (an instance of ``model_type``).

    Raises ``ModelMismatchError`` when ``expected_hash`` is given and differs from the model's
    feature-definition hash, ``ModelLoadError`` for anything missing or corrupt.
    """
    import joblib

    vdir = resolve_model_dir(path_or_registry)
    meta = read_metadata(vdir)
    _check_hash(meta.get("definition_hash"), expected_hash, vdir, domain)  # before unpickling anything
    mfile = vdir / MODEL_FILE
    if not mfile.is_file():
        raise ModelLoadError(f"model file missing: {mfile}")
    try:
        data, sha = _sha256_file(mfile)
    except OSError as e:
        raise ModelLoadError(f"model file unreadable: {mfile}: {e}") from None
    recorded = meta.get(MODEL_SHA256)
    if not recorded:
        raise ModelIntegrityError(f"{vdir / METADATA_FILE} records no {MODEL_SHA256}, so {mfile} cannot be "
                                  f"verified and is not loaded; save the model again with this version "
                                  f"(`streamscore train {domain}`)")
    if sha != recorded:
        raise ModelIntegrityError(f"model file {mfile} has SHA-256 {sha[:16]}..., but its {METADATA_FILE} "
                                  f"records {str(recorded)[:16]}...: the file was replaced or is corrupt, "
                                  f"and is not loaded (not unpickled)")
    try:
        model = joblib.load(io.BytesIO(data))
    except Exception as e:  # a truncated or foreign pickle raises anything
        raise ModelLoadError(f"model file corrupt or unreadable: {mfile}: {type(e).__name__}: {e}") from None
    if model_type is not None and not isinstance(model, model_type):
        raise ModelLoadError(f"{mfile} holds a {type(model).__name__}, not a {model_type.__name__}")
    if model.definition_hash != meta.get("definition_hash"):
        raise ModelLoadError(f"{mfile} and its {METADATA_FILE} disagree on the definition hash "
                             f"({model.definition_hash} vs {meta.get('definition_hash')})")
    _check_hash(model.definition_hash, expected_hash, vdir, domain)
    return model
