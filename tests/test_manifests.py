"""Reading what repositories declare: every ecosystem's manifest, a broken one reported with its place and the
others still read; and the environment a target's tests get from the same files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cortex.repo import declared_packages
from cortex.toolset.pyenv import env_spec, uv_binary


def test_go_mod_and_cargo_lock_are_read_with_their_exact_versions(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(
        "module x\n\ngo 1.21\n\nrequire golang.org/x/net v0.7.0\n\nrequire (\n"
        "\tgolang.org/x/text v0.3.2 // indirect\n\tgithub.com/a/b v1.2.3\n)\n"
    )
    (tmp_path / "Cargo.lock").write_text(
        'version = 3\n\n[[package]]\nname = "regex"\nversion = "1.5.4"\n'
        'source = "registry+https://github.com/rust-lang/crates.io-index"\n\n'
        '[[package]]\nname = "mine"\nversion = "0.1.0"\n'  # a path crate: no source, nothing to audit
    )
    found = declared_packages(tmp_path)
    assert found.problems == []
    assert [(p["ecosystem"], p["name"], p.get("locked")) for p in found.packages] == [
        ("Go", "golang.org/x/net", "0.7.0"),
        ("Go", "golang.org/x/text", "0.3.2"),
        ("Go", "github.com/a/b", "1.2.3"),
        ("crates.io", "regex", "1.5.4"),
    ]


def test_a_broken_manifest_is_a_problem_with_its_line_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = [\n  "a==1",\n\n[tool.x]\n')
    (tmp_path / "requirements.txt").write_text("requests==2.19.0\nnot a requirement !!\nflask>=2\n")
    (tmp_path / "package.json").write_text('{"dependencies": {"lodash": "4.17.15",}}')
    found = declared_packages(tmp_path)
    assert [p["name"] for p in found.packages] == ["requests", "flask"]
    problems = {p["file"]: p for p in found.problems}
    assert set(problems) == {"pyproject.toml", "requirements.txt", "package.json"}
    assert problems["pyproject.toml"]["line"] == 6 and "not valid TOML" in problems["pyproject.toml"]["message"]
    assert problems["requirements.txt"]["line"] == 2
    assert problems["package.json"]["line"] == 1 and "not valid JSON" in problems["package.json"]["message"]


def test_the_test_environment_comes_from_the_lock_file_or_the_declared_files(tmp_path: Path) -> None:
    uv = uv_binary()
    poetry = tmp_path / "poetry"
    poetry.mkdir()
    (poetry / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["requests>=2"]\n')
    (poetry / "poetry.lock").write_text('[[package]]\nname = "requests"\nversion = "2.31.0"\n')
    spec = asyncio.run(env_spec(poetry, uv))
    assert (spec.requirements, spec.sources) == (["requests==2.31.0"], ["poetry.lock"])
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "pyproject.toml").write_text(
        '[project]\nname = "l"\ndependencies = ["flask>=2"]\n'
        '[project.optional-dependencies]\ntest = ["pytest-mock"]\ndocs = ["sphinx"]\n'
    )
    (loose / "requirements-dev.txt").write_text("-e .\nblack==24.1.0  # formatting\n")
    spec = asyncio.run(env_spec(loose, uv))
    assert spec.requirements == ["flask>=2", "pytest-mock", "black==24.1.0"]  # test extras, not docs
    assert spec.sources == ["pyproject.toml", "requirements-dev.txt"]
    assert spec.notes == ["requirements-dev.txt: option -e not followed (the target runs from its tree)"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\n")
    (broken / "requirements.txt").write_text("tabulate==0.8.9\n")
    spec = asyncio.run(env_spec(broken, uv))
    assert spec.requirements == ["tabulate==0.8.9"] and spec.notes[0].startswith("pyproject.toml left out")


def test_texts_already_read_are_parsed_instead_of_the_disk_and_a_survey_counts_the_same(tmp_path: Path) -> None:
    from cortex.repo.measures import measure

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["a==1", "b>=2"]\n')
    (tmp_path / "requirements-dev.txt").write_text("c==3\n")
    (tmp_path / "go.mod").write_bytes(b"module x\n\nrequire golang.org/x/net v0.7.0\n")
    given = {"pyproject.toml": b'[project]\nname = "x"\ndependencies = ["z==9"]\n', "go.mod": b"\xff\xfe"}
    found = declared_packages(tmp_path, {"pyproject.toml", "requirements-dev.txt", "go.mod"}, given)
    assert [p["name"] for p in found.packages] == ["z", "c"]  # pyproject from the text given, requirements from disk
    assert [p["file"] for p in found.problems] == ["go.mod"]  # not UTF-8: a problem, like a file that is not
    assert measure(tmp_path).packages == len(declared_packages(tmp_path).packages) == 4
