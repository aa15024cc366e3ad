"""The one `strand` command (cluster/cli.py): backup and restore keep the digest, the shell
runs on an embedded ledger, the thin fronts reach their modules.

Backup and restore through the command line: `strand digest`, `strand export` of the whole
journal, `strand restore --digest` into a new directory, `strand digest` of the copy: the
same digest at the same tip. In-process (`cli.main`), no cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster import cli
from core import Ledger


def test_backup_and_restore_keep_the_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "ledger"
    with Ledger.open(source) as ledger:
        ledger.execute_lambda(lambda tx: (tx.create_table("T"), tx.create_index("T", "k")))
        ids = [ledger.execute_lambda(lambda tx, i=i: tx.insert("T", {"k": i})) for i in range(20)]
        ledger.execute_lambda(lambda tx: tx.update("T", ids[0], {"k": -1}))
        ledger.execute_lambda(lambda tx: tx.delete("T", ids[1]))
    saved = tmp_path / "digest.json"
    assert cli.main(["digest", "--ledger", str(source), "--out", str(saved)]) == 0
    for fmt in ("ION_TEXT", "ION_BINARY"):
        backup = tmp_path / f"backup-{fmt}"
        assert cli.main(["export", "--ledger", str(source), str(backup), "--format", fmt]) == 0
        capsys.readouterr()
        copy = tmp_path / f"restored-{fmt}"
        args = ["restore", str(backup), str(copy), "--digest", str(saved), "--json"]
        assert cli.main(args) == 0
        restored = json.loads(capsys.readouterr().out)
        assert restored["verifiedAgainstSavedDigest"] is True
        again = tmp_path / f"digest-{fmt}.json"
        assert cli.main(["digest", "--ledger", str(copy), "--out", str(again)]) == 0
        assert json.loads(again.read_text()) == json.loads(saved.read_text())
        with Ledger.open(copy, create_if_missing=False) as restored_ledger:
            rows = restored_ledger.execute_statement("SELECT k FROM T")
            assert sorted(int(r["k"]) for r in rows) == [-1] + list(range(2, 20))
    # a restore refuses a digest the export does not reach, and leaves nothing behind
    other = tmp_path / "other.json"
    digest = json.loads(saved.read_text())
    digest["DigestTipAddress"]["IonText"] = digest["DigestTipAddress"]["IonText"].replace(
        "sequenceNo:", "sequenceNo:9"
    )
    other.write_text(json.dumps(digest))
    bad = tmp_path / "never"
    assert (
        cli.main(["restore", str(tmp_path / "backup-ION_TEXT"), str(bad), "--digest", str(other)])
        == 1
    )
    assert not bad.exists()


def test_shell_on_an_embedded_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "s.partiql"
    script.write_text(
        "CREATE TABLE Car;\nINSERT INTO Car VALUE {'VIN': 'X1'};\nSELECT VIN FROM Car;\n"
    )
    assert cli.main(["shell", "--data", str(tmp_path / "l"), "-f", str(script)]) == 0
    assert "X1" in capsys.readouterr().out


def test_fronts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["chaos", "--help"])
    assert done.value.code == 0
    assert "chaos" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["bench", "nothing"])  # one of the benchmarks, or usage
