"""The README stays true: its spec reference is generated from the schemas, its specs parse."""
from pathlib import Path

import sweep
from sweep.cli import main
from sweep.docs import BEGIN, END, reference

ROOT = Path(__file__).resolve().parents[1]


def test_readme_spec_reference_is_current():
    text = (ROOT / "README.md").read_text()
    section = text[text.index(BEGIN): text.index(END) + len(END)]
    assert section == reference(), "regenerate it: python -m sweep.docs --write"


def test_every_experiment_spec_is_valid():
    specs = sorted((ROOT / "experiments").glob("*.toml"))
    assert specs
    for p in specs:
        sweep.parse_spec(p)


def test_readme_quickstart_matches_the_shipped_spec():
    text = (ROOT / "README.md").read_text()
    start = text.index("# experiments/quickstart.toml")
    body = text[start: text.index("```", start)]
    assert body == (ROOT / "experiments" / "quickstart.toml").read_text()


def test_every_verb_has_help_with_an_example(capsys):
    for verb in ("run", "demo", "info", "plot", "merge", "list", "report"):
        try:
            main([verb, "--help"])
        except SystemExit as e:
            assert e.code == 0
        assert "example:" in capsys.readouterr().out


def test_readme_outcome_rules_are_generated_from_the_code():
    from sweep.docs import OUTCOMES_BEGIN, OUTCOMES_END, outcome_rules

    text = (ROOT / "README.md").read_text()
    section = text[text.index(OUTCOMES_BEGIN): text.index(OUTCOMES_END) + len(OUTCOMES_END)]
    assert section == outcome_rules(), "regenerate it: python -m sweep.docs --write"


def test_submodules_are_reachable_from_the_package_like_an_eager_import():
    import subprocess
    import sys

    code = "import sweep; print(len(sweep.engine.local_devices()) > 0, sweep.io.StorageError.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["True", "StorageError"], r.stderr
