"""Faults of ``diagnose`` and ``compare`` (issue 19, items 8, 9 and 5): a damaged, unreadable or
empty ``metrics.jsonl`` is one line (file, line number, fix) and exit 2, never a traceback nor a
healthy verdict; ``compare`` refuses one run given twice, shows its progress, and on a full disk
says so in one line and leaves the previous compare.json / compare.md intact."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from faults import tmpfs
from test_compare import runs  # noqa: F401  (the session's tiny runs: config A seeds 0-2, config B)

from normgan.cli import main
from normgan.errors import UserError
from normgan.eval import diagnostics as dg

GOOD = [
    {"step": s, "loss/G": 1.0 + 0.1 * (s % 3), "loss/D": 0.7, "d/real_acc": 0.6, "d/fake_acc": 0.5}
    for s in range(2, 42, 2)
]


def _run(tmp_path: Path, content: bytes) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_bytes(content)
    return run


def _lines(rows) -> list[bytes]:
    return [json.dumps(r).encode() for r in rows]


def _one_line_exit_2(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    err = err.strip()
    assert err.startswith("normgan: error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


DAMAGE = {
    "non-UTF-8 bytes": (b'{"step": 8, "loss/G": "\xff\xfe"}', "not UTF-8"),
    "a JSON list": (b"[1, 2, 3]", "JSON list"),
    "a non-numeric step": (b'{"step": "eight", "loss/G": 1.0}', "non-integer step"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_metrics_line_is_one_line_naming_file_and_line(tmp_path, capsys, case):
    bad, what = DAMAGE[case]
    lines = _lines(GOOD)
    lines.insert(4, bad)  # line 5 of the file
    run = _run(tmp_path, b"\n".join(lines) + b"\n")
    rc = main(["diagnose", str(run)])
    _one_line_exit_2(rc, capsys.readouterr().err, str(run / "metrics.jsonl"), "line 5", what, "--skip-bad-lines")


def test_damaged_metrics_in_a_subprocess_never_a_traceback(tmp_path):
    lines = _lines(GOOD)
    lines[2] = b"\x80\x81garbage"
    lines[7] = b"[]"
    run = _run(tmp_path, b"\n".join(lines) + b"\n")
    p = run_cli("diagnose", run)
    _one_line_exit_2(p.returncode, p.stderr, "line 3", "2 damaged lines in all: 3, 8")
    assert p.stdout == ""


def test_skip_bad_lines_diagnoses_the_rest_with_one_warning(tmp_path, capsys):
    lines = _lines(GOOD)
    lines[2] = b"\x80\x81garbage"
    lines[7] = b'{"step": null}'
    run = _run(tmp_path, b"\n".join(lines) + b"\n")
    assert main(["diagnose", str(run), "--skip-bad-lines", "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    good = [r for i, r in enumerate(GOOD) if i not in (2, 7)]
    assert out["rows"] == len(good) == 18  # every other line was read
    assert out["first_step"] == good[0]["step"] and out["last_step"] == good[-1]["step"]
    assert [b["line"] for b in out["skipped_lines"]] == [3, 8]
    warn = cap.err.strip()
    assert len(warn.splitlines()) == 1 and "skipped 2 damaged lines" in warn and "line 3, 8" in warn
    assert "metrics.jsonl" in warn


def test_a_torn_last_line_is_not_damage(tmp_path):
    """A killed run leaves a half-written last line: read the rest silently, as before."""
    run = _run(tmp_path, b"\n".join(_lines(GOOD)) + b'\n{"step": 42, "loss/G": 0.')
    s = dg.summarize_run(run, pixels=False)
    assert s["rows"] == len(GOOD) and s["skipped_lines"] == []


def test_unreadable_metrics_is_one_line(tmp_path, capsys, monkeypatch):
    """Permission denied: as root (the tests and CI) chmod 000 still reads, so the denial is
    injected into open(); as another user the real chmod 000 is checked in a subprocess too."""
    run = _run(tmp_path, b"\n".join(_lines(GOOD)) + b"\n")
    target = str(run / "metrics.jsonl")
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if os.fspath(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    rc = main(["diagnose", str(run)])
    monkeypatch.undo()
    _one_line_exit_2(rc, capsys.readouterr().err, target, "Permission denied", "chmod u+r")
    if os.geteuid() != 0:
        os.chmod(target, 0)
        try:
            p = run_cli("diagnose", run)
        finally:
            os.chmod(target, 0o644)
        _one_line_exit_2(p.returncode, p.stderr, target, "Permission denied")


def test_a_folder_in_place_of_metrics_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "metrics.jsonl").mkdir(parents=True)
    _one_line_exit_2(main(["diagnose", str(run)]), capsys.readouterr().err, str(run / "metrics.jsonl"), "not a file")


@pytest.mark.parametrize("content", [b"", b"\n\n", b'{"step": 2, "loss'], ids=["empty", "blank", "torn"])
def test_empty_metrics_is_no_data_not_healthy(tmp_path, capsys, content):
    run = _run(tmp_path, content)
    rc = main(["diagnose", str(run)])
    cap = capsys.readouterr()
    _one_line_exit_2(rc, cap.err, "no logged rows", "nothing logged yet")
    assert "divergence: none" not in cap.out and cap.out == ""


# ------------------------------------------------------------------------------------------ compare
def test_compare_refuses_one_run_given_twice(runs, tmp_path, capsys):  # noqa: F811
    env, (a0, a1, *_rest) = runs
    link = tmp_path / "alias"
    link.symlink_to(a0, target_is_directory=True)
    for argv, needle in (([a0, a0], f"'{a0}' given twice"), ([a0, a1, link], f"'{a0}' and '{link}' given twice")):
        rc = main(["compare", *map(str, argv), "--n", "40", "--metrics", "fid", "--cache-dir", str(env["cache"])])
        _one_line_exit_2(rc, capsys.readouterr().err, needle, "two seeds")
    with pytest.raises(UserError, match="given twice"):
        from normgan.eval.compare import compare_runs

        compare_runs([a1, Path(str(a1) + "/")], n=40, metrics=("fid",), cache_dir=env["cache"])


def test_compare_shows_progress_on_stderr(runs, tmp_path, capsys):  # noqa: F811
    env, (a0, a1, *_rest) = runs
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                str(a0),
                str(a1),
                "--n",
                "40",
                "--metrics",
                "fid",
                "--cache-dir",
                str(env["cache"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err.splitlines()
    stages = [line for line in err if line.startswith("compare: ")]
    assert stages[0].startswith("compare: 2 run folders in 1 group; evaluating each at N=40")
    assert any(line.startswith(f"compare: evaluating run 1/2: {a0}") for line in stages)
    assert any(line.startswith(f"compare: evaluating run 2/2: {a1}") for line in stages)
    assert stages[-1].startswith(f"compare: writing {out / 'compare.json'}")
    order = [i for i, line in enumerate(stages) if "evaluating run" in line]
    assert order == sorted(order) and len(order) == 2


def test_compare_on_a_full_disk_keeps_the_previous_outputs(runs, tmp_path, capsys):  # noqa: F811
    """--out on a 64 KiB tmpfs: a first compare writes its outputs; the disk is then filled; the
    second compare (four runs: larger outputs) says so in one line (the path and the fix) and
    leaves the first outputs whole."""
    env, (a0, a1, b0, a2) = runs
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        out = disk / "cmp"
        args = [
            "compare",
            str(a0),
            "--n",
            "40",
            "--metrics",
            "fid",
            "--cache-dir",
            str(env["cache"]),
            "--out",
            str(out),
        ]
        assert main(args) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        assert set(before) == {"compare.json", "compare.md"}
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        capsys.readouterr()
        rc = main(args[:2] + [str(a1), str(b0), str(a2)] + args[2:])  # 4 runs: outputs over a page larger
        err = capsys.readouterr().err
        assert rc in (1, 2)
        line = [x for x in err.strip().splitlines() if not x.startswith("compare: ")]
        assert len(line) == 1 and line[0].startswith("normgan: error: cannot write '") and "Traceback" not in err
        assert str(out) in line[0] and "No space left on device" in line[0] and "free some space" in line[0]
        after = {p.name: p.read_bytes() for p in out.iterdir()}
        assert after == before  # the previous outputs, byte for byte, and no temp file left behind
        json.loads(after["compare.json"])
