"""A synthetic e-commerce log with known ground truth: the default data of every chapter.

The model (symbols as in the code):

- users belong to one of ``n_segments`` preference segments: ``p_u = segment_centre + user_noise * e_u``,
  and drift slowly: at time ``tau`` in [0, 1] their preference is ``p_u + tau * drift_u``;
- items have a category ``c_i``, a price and a vector ``q_i = category_centre + item_noise * e_i``;
  popularity follows a Zipf law ``pi_i ~ rank_i ** -popularity`` (a long tail);
- a scenario ``s`` (shopping context) shifts preferences by ``z_s`` and by a category bias ``b[s, c]``;
- users and items arrive over time (``initial_users`` / ``initial_items`` exist at the start);
- each interaction picks item ``i`` with probability proportional to
  ``pi_i * exp(affinity / temperature)``, ``affinity = (p_u + tau drift_u + z_s) . q_i / sqrt(dim) + b[s, c_i]``,
  among items that exist at that time (sampled with ``n_candidates`` popularity-drawn candidates);
- the event is a ``"purchase"`` with probability
  ``sigmoid(affinity + purchase_bias - price_sensitivity * standardised log price)``, else a ``"view"``.

``SyntheticWorld.true_scores(users, items, timestamps, scenarios)`` returns the log choice weight
``affinity / temperature + log pi_i``: ranking items by it is the oracle upper bound.

Regenerate the sample shipped in ``data/``::

    python -m metarec_ref.data.synthetic --out data/sample_events.csv --users 50 --items 100 --interactions 1000
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SyntheticConfig:
    """Knobs of the synthetic log; defaults give a small log that builds in well under a second."""

    n_users: int = 2000
    n_items: int = 1000
    n_interactions: int = 100_000
    n_categories: int = 20
    n_scenarios: int = 4
    n_segments: int = 8
    dim: int = 16
    days: float = 180.0
    start: str = "2024-01-01"
    user_noise: float = 0.5  # individual deviation from the segment centre
    item_noise: float = 0.5  # item deviation from its category centre
    scenario_shift: float = 0.5  # scale of scenario offsets z_s and category biases b[s, c]
    drift: float = 0.5  # size of a user's preference change over the whole span
    popularity: float = 0.8  # Zipf exponent (0 = no popularity skew)
    temperature: float = 1.0  # lower = choices follow preferences more closely
    initial_users: float = 0.5  # fraction of users present at the start
    initial_items: float = 0.7  # fraction of items present at the start
    home_scenario_prob: float = 0.8  # chance an event happens in the user's home scenario
    min_events_per_user: int = 5
    activity_sigma: float = 1.0  # spread of the log-normal user activity
    n_candidates: int = 32
    purchase_bias: float = -2.0
    price_sensitivity: float = 0.5
    seed: int = 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class SyntheticWorld:
    """The latent factors behind a synthetic log (the ground truth)."""

    config: SyntheticConfig
    user_segment: np.ndarray  # (n_users,)
    user_vec: np.ndarray  # (n_users, dim)
    user_drift: np.ndarray  # (n_users, dim)
    user_arrival: np.ndarray  # (n_users,) in [0, 1]
    user_home: np.ndarray  # (n_users,) home scenario
    item_vec: np.ndarray  # (n_items, dim)
    item_category: np.ndarray  # (n_items,)
    item_price: np.ndarray  # (n_items,)
    item_log_pop: np.ndarray  # (n_items,) log pi_i
    item_arrival: np.ndarray  # (n_items,) in [0, 1]
    scenario_vec: np.ndarray  # (n_scenarios, dim)
    scenario_category_bias: np.ndarray  # (n_scenarios, n_categories)

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.config.start)

    def tau(self, timestamps) -> np.ndarray:
        """Timestamps -> position in the log's span, in [0, 1]."""
        span = pd.Timedelta(days=self.config.days).value
        ns = np.asarray(timestamps, dtype="datetime64[ns]").view(np.int64) - self.start.value
        return np.clip(ns / span, 0.0, 1.0)

    def affinity(self, user_ids, item_ids, timestamps=None, scenarios=None) -> np.ndarray:
        """Preference of users for items (broadcast), without popularity."""
        u, i = np.asarray(user_ids), np.asarray(item_ids)
        tau = np.ones(()) if timestamps is None else self.tau(timestamps)
        s = self.user_home[u] if scenarios is None else np.asarray(scenarios)
        return self.affinity_at(u, i, tau, s)

    def affinity_at(self, u: np.ndarray, i: np.ndarray, tau: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Affinity with time given as ``tau`` in [0, 1] (integer index arrays, broadcast)."""
        pref = self.user_vec[u] + np.asarray(tau)[..., None] * self.user_drift[u] + self.scenario_vec[s]
        dot = np.einsum("...d,...d->...", pref, self.item_vec[i]) / np.sqrt(self.config.dim)
        return dot + self.scenario_category_bias[s, self.item_category[i]]

    def price_z(self) -> np.ndarray:
        """Standardised log price of each item."""
        log_price = np.log(self.item_price)
        return (log_price - log_price.mean()) / log_price.std()

    def true_scores(self, user_ids, item_ids, timestamps=None, scenarios=None) -> np.ndarray:
        """Log choice weight of each (user, item) pair: the oracle ranking score.

        Arguments broadcast like numpy arrays, e.g. users ``(n, 1)`` and items ``(1, m)`` give
        ``(n, m)``. ``timestamps`` default to the end of the log, ``scenarios`` to each user's home.
        """
        aff = self.affinity(user_ids, item_ids, timestamps, scenarios)
        return aff / self.config.temperature + self.item_log_pop[np.asarray(item_ids)]

    def purchase_probability(self, user_ids, item_ids, timestamps=None, scenarios=None) -> np.ndarray:
        """Probability that an interaction with the item is a purchase."""
        aff = self.affinity(user_ids, item_ids, timestamps, scenarios)
        cfg = self.config
        z = self.price_z()[np.asarray(item_ids)]
        return _sigmoid(aff + cfg.purchase_bias - cfg.price_sensitivity * z)


@dataclass
class SyntheticLog:
    """A generated event log and the world that produced it."""

    events: pd.DataFrame
    world: SyntheticWorld

    def true_scores(self, user_ids, item_ids, timestamps=None, scenarios=None) -> np.ndarray:
        return self.world.true_scores(user_ids, item_ids, timestamps, scenarios)


def _check(config: SyntheticConfig) -> None:
    positive = ("n_users", "n_items", "n_categories", "n_scenarios", "n_segments", "dim",
                "n_candidates", "min_events_per_user")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"SyntheticConfig.{name} must be >= 1, got {getattr(config, name)}")
    if config.n_items < 2:
        raise ValueError(f"SyntheticConfig.n_items must be >= 2, got {config.n_items}")
    if config.n_interactions < config.n_users * config.min_events_per_user:
        raise ValueError(
            f"n_interactions={config.n_interactions} is below n_users * min_events_per_user = "
            f"{config.n_users * config.min_events_per_user}; raise it or lower min_events_per_user"
        )
    for name in ("initial_users", "initial_items", "home_scenario_prob"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"SyntheticConfig.{name} must be in [0, 1], got {getattr(config, name)}")
    if config.days <= 0 or config.temperature <= 0:
        raise ValueError("SyntheticConfig.days and temperature must be > 0")


def make_world(config: SyntheticConfig, rng: np.random.Generator) -> SyntheticWorld:
    """Draw the latent factors."""
    c = config
    segment_centre = rng.standard_normal((c.n_segments, c.dim))
    user_segment = rng.integers(0, c.n_segments, c.n_users)
    user_vec = segment_centre[user_segment] + c.user_noise * rng.standard_normal((c.n_users, c.dim))
    user_drift = c.drift * rng.standard_normal((c.n_users, c.dim))
    late = rng.random(c.n_users) >= c.initial_users
    user_arrival = np.where(late, rng.random(c.n_users), 0.0)
    user_home = rng.integers(0, c.n_scenarios, c.n_users)

    category_centre = rng.standard_normal((c.n_categories, c.dim))
    # Category sizes are skewed too: a few big categories, many small ones.
    category_weight = 1.0 / np.arange(1, c.n_categories + 1) ** 0.7
    item_category = rng.choice(c.n_categories, c.n_items, p=category_weight / category_weight.sum())
    item_vec = category_centre[item_category] + c.item_noise * rng.standard_normal((c.n_items, c.dim))
    category_log_price = rng.normal(2.5, 0.7, c.n_categories)
    item_price = np.maximum(np.round(np.exp(category_log_price[item_category]
                                            + 0.4 * rng.standard_normal(c.n_items)), 2), 0.01)
    rank = rng.permutation(c.n_items) + 1.0
    log_pop = -c.popularity * np.log(rank)
    item_log_pop = log_pop - np.log(np.exp(log_pop).sum())
    late_item = rng.random(c.n_items) >= c.initial_items
    item_arrival = np.where(late_item, rng.random(c.n_items), 0.0)
    item_arrival[np.argmax(log_pop)] = 0.0  # at least one item exists from the start

    scenario_vec = c.scenario_shift * rng.standard_normal((c.n_scenarios, c.dim))
    scenario_category_bias = c.scenario_shift * rng.standard_normal((c.n_scenarios, c.n_categories))
    return SyntheticWorld(c, user_segment, user_vec, user_drift, user_arrival, user_home,
                          item_vec, item_category, item_price, item_log_pop, item_arrival,
                          scenario_vec, scenario_category_bias)


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table: O(1) draws from a discrete distribution."""
    n = len(p)
    scaled = p * n / p.sum()
    accept, alias = np.ones(n), np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept, alias


def _alias_draw(table, size, rng: np.random.Generator) -> np.ndarray:
    accept, alias = table
    idx = rng.integers(0, len(accept), size)
    return np.where(rng.random(size) < accept[idx], idx, alias[idx])


def _choose_items(world: SyntheticWorld, users, tau, scenario, rng, chunk: int = 32_768) -> np.ndarray:
    """Sampling-importance-resampling from pi_i * exp(affinity / T) among existing items."""
    c = world.config
    popularity = _alias_table(np.exp(world.item_log_pop))
    initial = np.flatnonzero(world.item_arrival == 0.0)
    initial_popularity = _alias_table(np.exp(world.item_log_pop[initial]))
    user_vec = world.user_vec.astype(np.float32)
    user_drift = world.user_drift.astype(np.float32)
    item_vec = world.item_vec.astype(np.float32)
    scenario_vec = world.scenario_vec.astype(np.float32)
    bias = world.scenario_category_bias.astype(np.float32)
    chosen = np.empty(len(users), dtype=np.int64)
    for lo in range(0, len(users), chunk):
        u, t, s = users[lo:lo + chunk], tau[lo:lo + chunk], scenario[lo:lo + chunk]
        n = len(u)
        cand = _alias_draw(popularity, (n, c.n_candidates), rng)
        # One candidate from the items present at the start, so every event has a valid choice.
        fallback = initial[_alias_draw(initial_popularity, n, rng)]
        cand = np.concatenate([cand, fallback[:, None]], axis=1)
        pref = user_vec[u] + t[:, None].astype(np.float32) * user_drift[u] + scenario_vec[s]
        aff = np.einsum("nd,ncd->nc", pref, item_vec[cand]) / np.float32(np.sqrt(c.dim))
        aff += bias[s[:, None], world.item_category[cand]]
        uniform = np.clip(rng.random(aff.shape, dtype=np.float32), 1e-7, 1 - 1e-7)
        gumbel = -np.log(-np.log(uniform))
        score = aff / np.float32(c.temperature) + gumbel
        score[world.item_arrival[cand] > t[:, None]] = -np.inf
        chosen[lo:lo + n] = cand[np.arange(n), np.argmax(score, axis=1)]
    return chosen


def generate(config: SyntheticConfig | None = None, **overrides) -> SyntheticLog:
    """Generate a synthetic log: ``generate(SyntheticConfig(n_users=500))`` or ``generate(n_users=500)``.

    Columns: ``user_id``, ``item_id`` (ints), ``timestamp``, ``scenario``, ``category`` (ints),
    ``price``, ``event`` ("view" / "purchase"); sorted by timestamp. Same config, same log.
    """
    config = config or SyntheticConfig()
    if overrides:
        config = SyntheticConfig(**{**config.__dict__, **overrides})
    _check(config)
    c = config
    rng = np.random.default_rng(c.seed)
    world = make_world(c, rng)

    activity = rng.lognormal(0.0, c.activity_sigma, c.n_users) * (1.0 - world.user_arrival + 0.05)
    extra = c.n_interactions - c.n_users * c.min_events_per_user
    counts = c.min_events_per_user + rng.multinomial(extra, activity / activity.sum())
    users = np.repeat(np.arange(c.n_users), counts)
    arrival = world.user_arrival[users]
    tau = arrival + (1.0 - arrival) * rng.random(len(users))
    home = rng.random(len(users)) < c.home_scenario_prob
    scenario = np.where(home, world.user_home[users], rng.integers(0, c.n_scenarios, len(users)))
    items = _choose_items(world, users, tau, scenario, rng)
    # Purchases follow the preference at the event's own time (chunked to bound memory).
    buy = np.empty(len(users), dtype=bool)
    price_z = world.price_z()
    for lo in range(0, len(users), 262_144):
        sl = slice(lo, lo + 262_144)
        aff = world.affinity_at(users[sl], items[sl], tau[sl], scenario[sl])
        p = _sigmoid(aff + c.purchase_bias - c.price_sensitivity * price_z[items[sl]])
        buy[sl] = rng.random(len(p)) < p

    span_ns = pd.Timedelta(days=c.days).value
    ns = pd.Timestamp(c.start).value + (tau * span_ns).astype(np.int64)
    timestamp = (ns // 1_000_000_000 * 1_000_000_000).astype("datetime64[ns]")
    events = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": timestamp,
            "scenario": scenario.astype(np.int64),
            "category": world.item_category[items].astype(np.int64),
            "price": world.item_price[items],
            "event": np.where(buy, "purchase", "view"),
        }
    )
    events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return SyntheticLog(events=events, world=world)


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic log to CSV or Parquet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output .csv or .parquet path")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--interactions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    log = generate(SyntheticConfig(n_users=args.users, n_items=args.items,
                                   n_interactions=args.interactions, seed=args.seed))
    if args.out.endswith(".parquet"):
        log.events.to_parquet(args.out, index=False)
    else:
        log.events.to_csv(args.out, index=False)
    print(f"wrote {len(log.events)} events to {args.out}")


if __name__ == "__main__":
    main()


__all__ = ["SyntheticConfig", "SyntheticLog", "SyntheticWorld", "generate", "make_world"]
