"""``quorate certs``: a CA, node certificates that name the node (CN and SAN),
signed by that CA; one-line errors with exit code 2 for user mistakes."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

import quorate.cli.certs  # noqa: F401  (registers the sub-command)
from quorate.cli.main import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["certs", *args])
    return result.exit_code, result.output


def test_init_then_issue_names_the_node_and_chains_to_the_ca(tmp_path: Path) -> None:
    assert invoke("init", "--dir", str(tmp_path))[0] == 0
    assert invoke("issue", "3", "--dir", str(tmp_path))[0] == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "n3.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "n3"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n3"]
    cert.verify_directly_issued_by(ca)
    assert (tmp_path / "n3.key").stat().st_mode & 0o777 == 0o600


def test_missing_ca_is_a_one_line_error(tmp_path: Path) -> None:
    code, output = invoke("issue", "n1", "--dir", str(tmp_path / "none"))
    assert code == 2
    assert output.strip().count("\n") == 0 and "no cluster CA" in output


def test_existing_files_need_force(tmp_path: Path) -> None:
    assert invoke("init", "--dir", str(tmp_path))[0] == 0
    before = (tmp_path / "ca.crt").read_bytes()
    code, output = invoke("init", "--dir", str(tmp_path))
    assert code == 2 and "already exists" in output
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert invoke("init", "--dir", str(tmp_path), "--force")[0] == 0
    assert (tmp_path / "ca.crt").read_bytes() != before


def test_a_name_that_is_not_a_dns_label_is_refused(tmp_path: Path) -> None:
    invoke("init", "--dir", str(tmp_path))
    code, output = invoke("issue", "Not Valid", "--dir", str(tmp_path))
    assert code == 2 and "invalid name" in output
