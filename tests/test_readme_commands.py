"""Every command in the README, run exactly as written from the repository root, in a subprocess."""

from __future__ import annotations

import pandas as pd
import pytest

from metarec_ref.data import find_online_retail
from metarec_ref.data.fetch import CACHE_DIR_ENV, DATA_DIR_ENV, DATA_URL_ENV, ONLINE_RETAIL_CHECKSUM
from tests.readme import (
    NO_PROXY,
    glued,
    loopback_server,
    output_notebook,
    readme_commands,
    run_command,
    zip_one,
)
from tests.unit.helpers import raw_rows

# The set-up commands: `make test` is what CI runs (.ci/run), so it cannot also run inside itself;
# `make book` executes every chapter (minutes) and builds the HTML, as `make test`'s last step does
# from the committed outputs.
NOT_RUN_HERE = {"make book", "make test"}
# Run against a web server on the loopback address that stands in for the UCI repository.
FETCH_COMMANDS = {"make data"}


def check_tour(values: dict) -> None:
    assert values["tour_k"] == 10  # -p K_SUPPORT 10 reached the chapter
    assert values["tour_auc_after"] > values["tour_auc_before"]


def check_demo(values: dict) -> None:
    # The demo shop keeps a third of its users from the start: too few new users for a temporal
    # split, so the held-out protocol is chosen and every stage runs to its verdicts.
    assert values["own_protocol"] == "held_out_users"
    assert values["own_enough"] is True
    assert values["own_comparisons"] == 6  # 3 learners x 2 metrics, Holm-corrected together
    assert values["own_n_better"] + values["own_n_worse"] <= values["own_comparisons"]
    assert not values["own_verdict_sentence"].startswith("No verdict")


def check_sample(values: dict) -> None:
    # 50 users: 5 validation and 5 test users at most, far below the minimum of 30 and 100.
    assert values["own_users"] == 50
    assert values["own_enough"] is False
    assert values["own_verdict_sentence"].startswith("No verdict")
    assert values["own_evidence_test_tasks"] < 100


CHECKS = {
    "notebooks/00_tour.ipynb": check_tour,
    "demo_results.ipynb": check_demo,
    "my_results.ipynb": check_sample,
}


def check_for(command: str):
    hits = [check for key, check in CHECKS.items() if key in command.split()]
    return hits[0] if len(hits) == 1 else None


def test_every_readme_command_is_checked_here():
    commands = readme_commands()
    assert commands, "the README holds no bash block"
    unchecked = [c for c in commands if c not in NOT_RUN_HERE | FETCH_COMMANDS and check_for(c) is None]
    assert not unchecked, f"README commands without a test: {unchecked}"
    assert FETCH_COMMANDS <= set(commands), "the README no longer shows `make data`: drop its tests"


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in readme_commands() if c not in NOT_RUN_HERE | FETCH_COMMANDS])
def test_readme_command_as_written(command):
    out = output_notebook(command)
    try:
        done = run_command(command)
        assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
        check_for(command)(glued(out))
    finally:
        out.unlink(missing_ok=True)


def fetch_env(url: str, cache) -> dict:
    """`make data` pointed at the loopback server and an empty cache, no copy in METAREC_DATA_DIR."""
    return {DATA_URL_ENV: url, CACHE_DIR_ENV: str(cache), DATA_DIR_ENV: None, **NO_PROXY}


@pytest.mark.slow
def test_make_data_reports_a_wrong_download(tmp_path):
    """A served zip that is not the real table: status 1, the expected values named, nothing kept."""
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    csv = tmp_path / "Online Retail.csv"
    raw_rows().to_csv(csv, index=False)
    zip_one(csv, site / "online+retail.zip", csv.name)
    with loopback_server(site) as url:
        done = run_command("make data", env=fetch_env(url, cache))
    assert done.returncode != 0
    assert "found 11 rows" in done.stderr and "expected 541,909 rows" in done.stderr
    assert ONLINE_RETAIL_CHECKSUM in done.stderr
    assert not [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.data
@pytest.mark.slow
def test_make_data_fetches_and_verifies_the_real_table(tmp_path):
    """The real table served as the CSV member of a zip: `make data` downloads, converts and
    verifies it with the real constants; a second run finds it and downloads nothing."""
    try:
        real = find_online_retail()
    except FileNotFoundError as err:
        pytest.skip(f"real Online Retail file not available: {err}")
    if real.suffix != ".parquet":
        pytest.skip("served from the Parquet conversion")
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    csv = tmp_path / "Online Retail.csv"
    pd.read_parquet(real).to_csv(csv, index=False)
    zip_one(csv, site / "online+retail.zip", csv.name)
    with loopback_server(site) as url:
        done = run_command("make data", env=fetch_env(url, cache))
        assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
        path = cache / "online_retail" / "online_retail.parquet"
        assert f"downloaded and verified: {path}" in done.stdout
        assert len(pd.read_parquet(path)) == 541_909
        (site / "online+retail.zip").unlink()
        again = run_command("make data", env=fetch_env(url, cache))
    assert again.returncode == 0 and f"found: {path}" in again.stdout
