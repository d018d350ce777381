"""No pickle, no torch.load, no eval of checkpoint contents, no network unless a URL is asked for."""

from __future__ import annotations

import os
import re
import socket

import pytest

import fp8doctor
from tests.conftest import poke
from tests.helpers.repo import repo_path

PKG = repo_path("fp8doctor")
FORBIDDEN = re.compile(r"\b(import pickle|pickle\.load|torch\.load|eval\(|exec\(|marshal\.loads|yaml\.load\(|"
                       r"subprocess|os\.system|__import__\()")


def test_source_has_no_deserialisation_or_code_execution():
    hits = []
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                hits += [f"{f}: {m.group(0)}" for m in FORBIDDEN.finditer(text)]
    assert hits == []


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_local_scan_dump_fix_never_touch_the_network(v4, no_network):
    poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    assert fp8doctor.scan(v4).by_rule() == {"scale-padding-nonzero": 1}
    fp8doctor.dump(v4, fp8doctor.DumpOptions(tensors=("layers.0.attn.wq_b.scale",)))
    assert fp8doctor.fix(v4).bytes_changed == 1
    assert fp8doctor.scan(v4).findings == ()
