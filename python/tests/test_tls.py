"""A server whose certificate a private CA issued (made with the openssl
CLI), reached over https: refused without that CA, accepted with
``ca_cert=`` or ``LIFTOFF_CA_CERT``; a file that is no certificate is named."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import ssl
from pathlib import Path

import pytest

import liftoff
from conftest import Proc, _clean_env


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def _private_ca(d: Path) -> None:
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=Liftoff test CA", "-days", "2")
    _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(d, "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tls.crt", "-extfile", "san.ext", "-days", "2")


def test_a_private_cas_server_needs_its_ca(liftoff_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _private_ca(tmp_path)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = Proc(
        [liftoff_bin, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", "data",
         "--tls-cert", "tls.crt", "--tls-key", "tls.key"],
        _clean_env(), tmp_path / "server.log", cwd=tmp_path,
    )
    try:
        url = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.alive(), proc.tail()
            assert time.monotonic() < deadline, proc.tail()
            time.sleep(0.05)
        key = (tmp_path / "data" / "admin.key").read_text().strip()
        monkeypatch.delenv("LIFTOFF_CA_CERT", raising=False)

        with pytest.raises(liftoff.ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
            liftoff.Client(base_url=url, api_key=key, entity="default").list_queues()
        assert liftoff.Client(base_url=url, api_key=key, entity="default",
                              ca_cert=str(tmp_path / "ca.crt")).list_queues() == []
        monkeypatch.setenv("LIFTOFF_CA_CERT", str(tmp_path / "ca.crt"))
        assert liftoff.Client(base_url=url, api_key=key, entity="default").list_queues() == []
        with pytest.raises(liftoff.ConfigurationError, match="tls.csr"):
            liftoff.Client(base_url=url, api_key=key, ca_cert=str(tmp_path / "tls.csr"))
    finally:
        proc.stop()
