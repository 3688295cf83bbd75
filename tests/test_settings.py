"""Per-stage settings (issue 21): each settings class's fields are exactly its schema groups' parameters
(plus the shared ``seed``), defaults come from the schema, unknown or missing names fail when the object is
built, and in the stages converted so far no function below the stage entry takes the parameter dict.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

from tmeflow.params import defaults, group_properties
from tmeflow.settings import StageSettings

SHARED_FIELDS = {"seed"}
# Stages whose science functions take settings or keyword arguments; the rest still pass ``params`` down.
CONVERTED_STAGES = (
    "annotate",
    "bulk",
    "cnv",
    "communication",
    "composition",
    "deconvolve",
    "de",
    "integrate",
    "pathways",
    "qc",
    "spatial_analysis",
    "spatial_qc",
    "subcluster",
    "trajectory",
)
CONVERTED_MODULES = (*CONVERTED_STAGES, "neighbourhood_da", "spatial_cnv")
STAGE_ENTRIES = {"cli", "write_outputs"}  # besides run_<stage>: where the parameter dict is unpacked


def settings_classes() -> list[type[StageSettings]]:
    for stage in CONVERTED_STAGES:
        importlib.import_module(f"tmeflow.{stage}")
    return StageSettings.__subclasses__()


@pytest.mark.parametrize("cls", settings_classes(), ids=lambda cls: cls.__name__)
def test_fields_equal_the_schema_groups(cls):
    expected = set().union(*(group_properties(group) for group in cls.SCHEMA_GROUPS))
    names = {field.name for field in dataclasses.fields(cls)}
    assert expected <= names and names - expected <= SHARED_FIELDS, names ^ expected
    settings = cls.defaults()
    assert all(getattr(settings, name) == defaults()[name] for name in names)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1


def test_every_converted_stage_has_settings():
    names = {cls.__module__.split(".")[1] for cls in settings_classes()}
    assert set(CONVERTED_STAGES) <= names


def test_missing_parameter_fails_when_built():
    from tmeflow.deconvolve import DeconvolutionSettings

    params = defaults()
    del params["nnls_n_markers"]
    with pytest.raises(KeyError, match="nnls_n_markers"):
        DeconvolutionSettings.from_params(params)
    assert DeconvolutionSettings.defaults().replace(nnls_n_markers=7).nnls_n_markers == 7


@pytest.mark.parametrize("stage", CONVERTED_MODULES)
def test_no_function_below_the_stage_entry_takes_params(stage):
    package = importlib.import_module(f"tmeflow.{stage}")
    modules = [package] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{package.__name__}.")
    ]
    offenders = [
        f"{module.__name__}.{name}"
        for module in modules
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__
        and "params" in inspect.signature(function).parameters
        and not (name.startswith("run_") or name in STAGE_ENTRIES)
    ]
    assert offenders == []
