"""Saving and loading fitted ``ConvexAttention`` models: one .npz file, no pickles.

``save(est, path)`` writes (``ConvexAttention.save`` and ``.load`` are thin wrappers)::

    convextx_model   0-d string array: the metadata, as JSON
    coef             coef_, the convex variable as solved
    heads_<k>        heads_[k], the recovered network's weights (e.g. heads_w1, heads_a)
    attention, active_tokens, classes
                     attention_, active_tokens_, classes_ (classification only)
    data_<field>     the predictor's fixed parts (e.g. data_gates_u1, data_Qs; the sample
                     arrays, e.g. data_X, hold zero samples)
    params_<name>_<k>
                     array parts of a hyperparameter (e.g. given gates)

The metadata: "format" ("convextx.ConvexAttention"), "format_version" (``FORMAT_VERSION``),
"convextx_version" (the writer's), "family" (the fitted family's name), "params"
(``get_params()``), "fitted" (the fitted attributes), "predictor" (``estimator.Predictor``
but its family and loss: "scalar_output", "dtype", "data"). A value in them is a JSON scalar
or one of {"array": key} (an entry of the archive), {"dict": {...}}, {"dtype": name},
{"type": name, "fields": {...}} (a value type of ``VALUE_TYPES``).

The file carries no training data: the predictor's data bundle is the family's bundle of zero
samples (``Predictor.of``). A loaded model has every hyperparameter and fitted attribute but
``program_`` and ``solve_result_`` (which hold the training data and the solve's history), and
its ``decision_function``, ``predict`` and ``predict_proba`` equal the saved model's exactly.
"""

from __future__ import annotations

import dataclasses
import json
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from sklearn.utils.validation import check_is_fitted

from convextx import _store, families
from convextx.estimator import ConvexAttention, Predictor

FORMAT = "convextx.ConvexAttention"
FORMAT_VERSION = 1
METADATA_KEY = "convextx_model"
#: fitted attributes saved (besides the predictor); their archive keys drop the trailing "_"
FITTED = (
    "coef_",
    "heads_",
    "attention_",
    "active_tokens_",
    "classes_",
    "loss_",
    "objective_",
    "gap_",
    "status_",
    "n_iter_",
    "n_features_in_",
    "n_tokens_",
)
#: dataclasses that hyperparameters and predictor data may hold, by name
VALUE_TYPES: dict[str, type] = {"Gates": families.Gates}


class _Encoder:
    """JSON of values whose arrays become archive entries (``arrays``: key -> array)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, key: str, value: Any) -> Any:
        """The JSON of ``value``; its arrays are stored under ``key`` (plus "_<part>")."""
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            return float(value)
        if isinstance(value, np.ndarray | jax.Array):
            if key in self.arrays:
                raise ValueError(f"two saved values share the archive key {key!r}")
            self.arrays[key] = np.asarray(value)
            return {"array": key}
        if isinstance(value, np.dtype) or (
            isinstance(value, type) and issubclass(value, np.generic)
        ):
            return {"dtype": np.dtype(value).name}
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self(f"{key}_{k}", v) for k, v in value.items()}}
        name = type(value).__name__
        if VALUE_TYPES.get(name) is type(value):
            fields = {
                f.name: self(f"{key}_{f.name}", getattr(value, f.name))
                for f in dataclasses.fields(value)
            }
            return {"type": name, "fields": fields}
        raise TypeError(
            f"cannot save {key} = {value!r}: a {name} is none of numbers, strings, arrays, "
            f"dtypes, dicts with string keys and {sorted(VALUE_TYPES)}"
        )


def _decode(value: Any, archive: Mapping[str, np.ndarray]) -> Any:
    """The value of the JSON ``value`` (``_Encoder``'s output) with its arrays from ``archive``;
    KeyError / TypeError / ValueError for anything else."""
    if not isinstance(value, dict):
        return value
    (tag,) = value.keys() - {"fields"}
    if tag == "array":
        if value["array"] not in archive:
            raise KeyError(f"array {value['array']!r}")
        return archive[value["array"]]
    if tag == "dict":
        return {k: _decode(v, archive) for k, v in value["dict"].items()}
    if tag == "dtype":
        return np.dtype(value["dtype"])
    if tag == "type":
        if value["type"] not in VALUE_TYPES:
            raise ValueError(f"unknown value type {value['type']!r}")
        fields = {k: _decode(v, archive) for k, v in value["fields"].items()}
        return VALUE_TYPES[value["type"]](**fields)
    raise ValueError(f"unknown value tag {tag!r}")


def save(est: ConvexAttention, path: str | Path, *, force: bool = False) -> Path:
    """Write the fitted ``est`` to the .npz file ``path`` (exactly that name; module docstring)
    through a temporary file in the same folder. FileExistsError naming ``path`` if it exists
    and not ``force``; FileNotFoundError if its folder does not exist; NotFittedError for an
    unfitted ``est``; TypeError naming a hyperparameter that cannot be saved. Returns ``path``."""
    check_is_fitted(est, "predictor_")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot save the model to {path}: it is a folder")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True to overwrite it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save the model to {path}: no folder {path.parent}")
    encode = _Encoder()
    predictor = est.predictor_
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "convextx_version": _store.package_version(),
        "family": predictor.family.name,
        "params": {k: encode(f"params_{k}", v) for k, v in est.get_params(deep=False).items()},
        "fitted": {k: encode(k.removesuffix("_"), getattr(est, k)) for k in FITTED},
        "predictor": {
            "scalar_output": predictor.scalar_output,
            "dtype": encode("dtype", predictor.dtype),
            "data": {k: encode(f"data_{k}", v) for k, v in predictor.data._asdict().items()},
        },
    }
    arrays = {METADATA_KEY: np.array(json.dumps(metadata)), **encode.arrays}
    with _store.atomic_path(path) as temporary, temporary.open("wb") as file:
        np.savez(file, **arrays)
    return path


def _metadata(path: Path, archive: np.lib.npyio.NpzFile) -> dict[str, Any]:
    """The checked metadata of an open archive; ValueError unless it is a convextx model of a
    format version this convextx reads."""
    if METADATA_KEY not in archive.files:
        raise ValueError(
            f"{path} is not a convextx model: it has no {METADATA_KEY!r} entry (it holds "
            f"{sorted(archive.files)}); write one with ConvexAttention.save or convextx solve --out"
        )
    try:
        metadata = json.loads(str(archive[METADATA_KEY]))
    except (ValueError, TypeError) as error:  # ValueError: an object array or bad JSON
        raise ValueError(f"{path} is not a convextx model: unreadable metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a convextx model: its metadata has no format {FORMAT!r}")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: format_version must be an int >= 1; got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by convextx {metadata.get('convextx_version')} in model format "
            f"version {version}; this convextx ({_store.package_version()}) reads versions up "
            f"to {FORMAT_VERSION}: upgrade convextx to load it"
        )
    return metadata


def _restore(metadata: Mapping[str, Any], archive: Mapping[str, np.ndarray], cls: type) -> Any:
    """The fitted model of checked metadata and the archive's arrays."""
    est = cls(**{k: _decode(v, archive) for k, v in metadata["params"].items()})
    fitted = {k: _decode(v, archive) for k, v in metadata["fitted"].items()}
    missing = sorted(set(FITTED) - set(fitted))
    if missing:
        raise KeyError(f"fitted attributes {missing}")
    for name, value in fitted.items():
        setattr(est, name, value)
    state = metadata["predictor"]
    data = types.SimpleNamespace(**{k: _decode(v, archive) for k, v in state["data"].items()})
    est.predictor_ = Predictor(
        families.get(metadata["family"]),
        fitted["loss_"],
        bool(state["scalar_output"]),
        _decode(state["dtype"], archive),
        data,
    )
    return est


def load(path: str | Path, cls: type[ConvexAttention] = ConvexAttention) -> ConvexAttention:
    """The model that ``save`` wrote to ``path``, as a ``cls``. FileNotFoundError if there is
    no such file; ValueError naming ``path`` if it is not an .npz archive, not a convextx
    model, a newer format version, or malformed."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError):  # not .npz, .npy, nor a pickle allowed
        raise ValueError(f"{path} is not a convextx model: not an .npz archive") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a convextx model: a single .npy array, not an .npz")
    with archive:
        metadata = _metadata(path, archive)
        try:
            return _restore(metadata, archive, cls)
        except (KeyError, TypeError, ValueError) as error:  # ValueError: e.g. an object array
            what = f"missing {error.args[0]}" if isinstance(error, KeyError) else str(error)
            raise ValueError(f"{path} is not a valid convextx model file: {what}") from error
