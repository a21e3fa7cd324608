"""Out-of-core reading: a user sample read by DuckDB equals the in-memory log restricted to the same
users, row for row, and so builds the same tasks; the whole log's counts match pandas' on generated
logs of several shapes (panels with baskets and returns, clickstreams with text ids and epoch
times, a folder of part files)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data import Encoders, NegativeSampling, choose_protocol, load_events, to_task_batch
from metarec_ref.data.log_profile import EVENTS_PER_USER_QUANTILES, new_users_after_cuts
from metarec_ref.data.out_of_core import CUT_QUANTILES, load_user_sample

PANEL = {"household": "user_id", "product": "item_id", "day": "timestamp", "basket": "session_id",
         "qty": "quantity", "sales": "price"}
CLICKS = {"visitor": "user_id", "sku": "item_id", "ts": "timestamp", "action": "event"}
EVENT_MAP = {"view": 0, "cart": 1, "buy": 1}


def panel(seed: int, n_users: int = 120, n_items: int = 300) -> pd.DataFrame:
    """Households of very different history lengths, baskets, a few returns and duplicated lines."""
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1 / 40, size=n_users) + 1  # from 2 to a few hundred lines
    user = np.repeat(np.arange(n_users), lengths)
    n = len(user)
    basket = np.cumsum(rng.random(n) < 0.2) + user * n
    frame = pd.DataFrame({
        "household": user * 7 + 3,  # integer ids, not 0..n-1
        "product": rng.zipf(1.3, size=n) % n_items,
        "day": pd.Timestamp("2023-03-01") + pd.to_timedelta(rng.integers(0, 400, size=n), unit="D"),
        "basket": basket,
        "qty": np.where(rng.random(n) < 0.02, -1, rng.integers(1, 4, size=n)),
        "sales": rng.uniform(0.5, 20, size=n).round(2),
    })
    return pd.concat([frame, frame.iloc[::50]]).sort_values("day", kind="stable").reset_index(drop=True)


def clicks(seed: int, n_users: int = 150, n_items: int = 80) -> pd.DataFrame:
    """Text ids with leading zeros, epoch seconds, views, carts and buys; short and long sessions."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(n_users) < 0.3, rng.integers(1, 4, size=n_users),
                       rng.integers(10, 120, size=n_users))
    user = np.repeat(np.arange(n_users), lengths)
    n = len(user)
    return pd.DataFrame({
        "visitor": np.char.zfill(user.astype(str), 5),
        "sku": np.char.add("A-", (rng.integers(0, n_items, size=n)).astype(str)),
        "ts": 1_700_000_000 + rng.integers(0, 90 * 86_400, size=n),
        "action": rng.choice(["view", "cart", "buy"], size=n, p=[0.7, 0.2, 0.1]),
    })


def _read(path, columns, max_users, seed=0, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped returns and duplicates, both paths alike
        return load_user_sample(path, columns, max_users=max_users, seed=seed, memory_gb=0.5, threads=2, **kwargs)


def _in_memory(path, columns, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_events(path, columns, **kwargs)


def _restricted(events: pd.DataFrame, users) -> pd.DataFrame:
    return events[events["user_id"].isin(set(users))].reset_index(drop=True)


def _tasks(events: pd.DataFrame):
    choice = choose_protocol(events, k_support=3, n_query=4, protocol="held_out_users")
    tasks = choice.build_tasks(negatives=NegativeSampling(1, history=events), seed=0)
    return tasks, Encoders.fit(events)


CASES = [
    ("panel", panel, PANEL, {"drop_nonpositive_quantity": True}),
    ("clicks", clicks, CLICKS, {"event_map": EVENT_MAP, "timestamp_unit": "s"}),
]


@pytest.mark.parametrize(("name", "make", "columns", "options"), CASES, ids=[c[0] for c in CASES])
def test_a_sample_of_every_user_is_the_in_memory_log(tmp_path, name, make, columns, options):
    path = tmp_path / f"{name}.parquet"
    make(0).to_parquet(path, row_group_size=500)  # several row groups, as a large file has
    sample = _read(path, columns, max_users=10**6, **options)
    pd.testing.assert_frame_equal(sample.events, _in_memory(path, columns, **options), check_exact=True)


@pytest.mark.parametrize(("name", "make", "columns", "options"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_user_sample_builds_the_same_tasks_bit_for_bit(tmp_path, name, make, columns, options, seed):
    path = tmp_path / f"{name}.parquet"
    make(seed).to_parquet(path, row_group_size=700)
    sample = _read(path, columns, max_users=60, seed=seed, **options)
    users = sample.events["user_id"].unique()
    assert sample.whole.sampled_users == 60 and len(users) <= 60
    expected = _restricted(_in_memory(path, columns, **options), users)
    pd.testing.assert_frame_equal(sample.events, expected, check_exact=True)
    (ours, our_codes), (theirs, their_codes) = _tasks(sample.events), _tasks(expected)
    for part in ("train", "valid", "test"):
        assert ours[part].num_tasks > 0
        pd.testing.assert_frame_equal(ours[part].events, theirs[part].events, check_exact=True)
        pd.testing.assert_frame_equal(ours[part].keys, theirs[part].keys, check_exact=True)
    ours_batch, theirs_batch = (to_task_batch(t["train"], e, "cpu") for t, e in ((ours, our_codes),
                                                                                 (theirs, their_codes)))
    for field in ("support_x", "support_y", "support_mask", "query_x", "query_y", "query_mask"):
        a, b = getattr(ours_batch, field), getattr(theirs_batch, field)
        a, b = (a.values(), b.values()) if isinstance(a, dict) else ([a], [b])
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_same_seed_draws_the_same_users_and_another_seed_others(tmp_path):
    path = tmp_path / "panel.parquet"
    panel(3).to_parquet(path)
    first, again, other = (set(_read(path, PANEL, 40, seed=s, drop_nonpositive_quantity=True).events["user_id"])
                           for s in (5, 5, 6))
    assert first == again and first != other


def test_the_whole_logs_counts_are_pandas_counts_of_the_file(tmp_path):
    raw = panel(2)
    path = tmp_path / "panel.parquet"
    raw.to_parquet(path)
    whole = _read(path, PANEL, 30, drop_nonpositive_quantity=True).whole
    per_user = raw.groupby("household").size().to_numpy()
    assert (whole.rows, whole.users, whole.items) == (len(raw), raw["household"].nunique(), raw["product"].nunique())
    assert (whole.first, whole.last) == (raw["day"].min(), raw["day"].max())
    assert whole.sampled_rows == int(raw["household"].isin(
        set(_read(path, PANEL, 30, drop_nonpositive_quantity=True).events["user_id"].astype(int))).sum())
    for label, q in EVENTS_PER_USER_QUANTILES.items():
        assert whole.rows_per_user[label] == pytest.approx(np.quantile(per_user, q))
    expected = new_users_after_cuts(raw.rename(columns=PANEL), CUT_QUANTILES)
    pd.testing.assert_frame_equal(whole.new_users_after_cut, expected, check_dtype=False)


def test_a_folder_of_parts_reads_as_one_log_in_name_order(tmp_path):
    raw = clicks(4)
    folder = tmp_path / "clicks"
    folder.mkdir()
    single = tmp_path / "clicks.parquet"
    raw.to_parquet(single)
    for i, part in enumerate(np.array_split(np.arange(len(raw)), 3)):
        raw.iloc[part].to_parquet(folder / f"part-{i:02d}.parquet")
    options = {"event_map": EVENT_MAP, "timestamp_unit": "s"}
    from_parts, from_file = (_read(p, CLICKS, 70, seed=1, **options) for p in (folder, single))
    pd.testing.assert_frame_equal(from_parts.events, from_file.events, check_exact=True)
    assert from_parts.whole.first is None  # epoch numbers are not dates until validation reads them


def test_bad_inputs_name_the_file_and_the_fix(tmp_path):
    text = tmp_path / "export.csv"
    text.write_text("visitor,sku,ts\n1,a,2024-01-01\n")
    with pytest.raises(ValueError, match=r"export.csv is not a Parquet file.*COPY \(FROM read_csv"):
        load_user_sample(text, max_users=10)
    path = tmp_path / "log.parquet"
    clicks(0).to_parquet(path)
    with pytest.raises(ValueError, match=r"log.parquet: column 'user_id' is missing; found \['visitor'"):
        load_user_sample(path, {"sku": "item_id"}, max_users=10)
    with pytest.raises(ValueError, match="max_users must be a whole number >= 1"):
        load_user_sample(path, CLICKS, max_users=0)
    holes = clicks(0).astype({"visitor": object})
    holes.loc[::9, "visitor"] = None
    holes.to_parquet(path)
    with pytest.raises(ValueError, match=r"log.parquet: column 'user_id' \('visitor'\) has \d+ missing values"):
        load_user_sample(path, CLICKS, max_users=10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_user_sample(tmp_path / "nope.parquet", max_users=10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="a folder without .parquet files"):
        load_user_sample(empty, max_users=10)


@pytest.mark.parametrize("kind", ["date", "utc"])
def test_dates_and_zoned_times_give_the_whole_logs_span_and_cuts(tmp_path, kind):
    raw = panel(5)
    raw["day"] = raw["day"].dt.date if kind == "date" else raw["day"].dt.tz_localize("UTC")
    path = tmp_path / "panel.parquet"
    raw.to_parquet(path)
    whole = _read(path, PANEL, 50, drop_nonpositive_quantity=True).whole
    days = pd.to_datetime(raw["day"])
    assert (whole.first, whole.last) == (days.min(), days.max())
    expected = new_users_after_cuts(raw.assign(day=days).rename(columns=PANEL), CUT_QUANTILES)
    assert whole.new_users_after_cut["new_users"].tolist() == expected["new_users"].tolist()
