"""Every command in the README, run exactly as written from the repository root, in a subprocess."""

from __future__ import annotations

import pytest

from tests.readme import glued, output_notebook, readme_commands, run_command

# The set-up commands: `make test` is what CI runs (.ci/run), so it cannot also run inside itself;
# `make book` executes every chapter (minutes) and builds the HTML, as `make test`'s last step does
# from the committed outputs.
NOT_RUN_HERE = {"make book", "make test"}


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
    unchecked = [c for c in commands if c not in NOT_RUN_HERE and check_for(c) is None]
    assert not unchecked, f"README commands without a test: {unchecked}"


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in readme_commands() if c not in NOT_RUN_HERE])
def test_readme_command_as_written(command):
    out = output_notebook(command)
    try:
        done = run_command(command)
        assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
        check_for(command)(glued(out))
    finally:
        out.unlink(missing_ok=True)
