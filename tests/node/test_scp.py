"""The Storage SCP's refusals, each logged with its real reason (pynetdicom as the other side)."""

from __future__ import annotations

import logging

import pytest

from pneumoscope.node.scp import handlers, storage_ae


@pytest.fixture
def scp():
    ae = storage_ae("PTXAI", ["ORTHANC"])
    ae.maximum_associations = 1
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=handlers(lambda *a: None, "pneumoscope project", lambda *a: None))
    yield server.server_address[1]
    server.shutdown()


def _associate(port: int, calling: str):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="PTXAI")


def test_too_many_associations_is_logged_as_such(scp, caplog):
    caplog.set_level(logging.WARNING, logger="pneumoscope")
    first = _associate(scp, "ORTHANC")
    assert first.is_established
    try:
        second = _associate(scp, "ORTHANC")
        assert second.is_rejected
    finally:
        first.release()
    line = next(r.getMessage() for r in caplog.records if "refused association" in r.getMessage())
    assert "too many associations at once (local limit exceeded; at most 1)" in line and "--allow-aet" not in line


def test_an_unknown_calling_ae_is_logged_as_such(scp, caplog):
    caplog.set_level(logging.WARNING, logger="pneumoscope")
    assert _associate(scp, "STRANGER").is_rejected
    line = next(r.getMessage() for r in caplog.records if "refused association" in r.getMessage())
    assert "AE STRANGER" in line and "calling AE title not in --allow-aet" in line


def test_the_node_has_one_logger_name():
    """The CLI configured ``pneumoscope.node`` while the SCP and the worker wrote to ``pneumoscope.listen``."""
    import ast
    from pathlib import Path

    import pneumoscope
    from pneumoscope.node import LOG, scp, service

    assert scp.log.name == service.log.name == LOG == "pneumoscope.node"
    names = {node.args[0].value for path in Path(pneumoscope.__file__).parent.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", "") == "getLogger" and node.args and isinstance(node.args[0], ast.Constant)
             and str(node.args[0].value).startswith("pneumoscope")}
    assert names == set(), names  # no module spells a pneumoscope logger name but through node.LOG
