"""The kind of machine a precision record and a remembered backend are keyed by (inference/machine.py)."""

import pytest
import torch

from pneumoscope.inference import machine


def test_the_arithmetic_names_the_vector_features_and_any_limit_on_them(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    here = machine.arithmetic(torch.device("cpu"))
    assert here.startswith("cpu") and f"torch {torch.__version__.split('+')[0]}" in here
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an AVX2 emulation rounds int8 as AVX2 does
    limited = machine.arithmetic(torch.device("cpu"))
    assert limited != here and "ONEDNN_MAX_CPU_ISA=AVX2" in limited


@pytest.mark.parametrize("name, value, key, said", [
    ("ONEDNN_MAX_CPU_ISA", "AVX2", " ONEDNN_MAX_CPU_ISA=AVX2", False), ("ONEDNN_MAX_CPU_ISA", "avx2", " ONEDNN_MAX_CPU_ISA=AVX2", False),
    ("ONEDNN_MAX_CPU_ISA", "SSE41", " ONEDNN_MAX_CPU_ISA=SSE41", False), ("ONEDNN_MAX_CPU_ISA", "AVX3", "", True),
    ("ATEN_CPU_CAPABILITY", "avx2", " ATEN_CPU_CAPABILITY=AVX2", False), ("ATEN_CPU_CAPABILITY", "fast", "", True)])
def test_an_isa_limit_the_libraries_do_not_know_is_said_not_taken_for_another_machine(monkeypatch, name, value, key, said):
    for k in machine.ISA_LIMITS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(name, value)
    assert machine.isa_limits() == key
    assert bool(machine.isa_notes()) is said and (not said or f"{name}={value!r} is not a value" in machine.isa_notes()[0])


def test_an_isa_limit_is_another_machine_for_the_remembered_choice(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    here = machine.machine_key(torch.device("cpu"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine.machine_key(torch.device("cpu")) == here.replace("|torch", " ONEDNN_MAX_CPU_ISA=AVX2|torch")
