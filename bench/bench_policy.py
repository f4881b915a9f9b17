"""Policy decision speed: meshguard_gateway's engine next to AWS Cedar (cedarpy) and casbin.

    .venv/bin/python bench/bench_policy.py            # full run, about 1-2 minutes
    .venv/bin/python bench/bench_policy.py --quick    # smaller budgets, for a smoke run

For 10, 1,000 and 10,000 rules it builds one equivalent rule set for every engine:
allow and deny rules over ``verb:object`` actions, exact or with a trailing ``*``, some
qualified by a resource (``write:ws3/*`` matches action ``write:ws3`` on resource
``notes.txt``), deny overriding allow, default deny. (Trailing-star and exact patterns
are what casbin's ``keyMatch`` expresses exactly; Cedar gets ``==`` and ``like``.)
Before timing, every engine decides the same mixed request set (exact hits, wildcard
hits, resource-qualified hits, denies, no match) and must agree on every answer.
Then each engine decides requests from that set one at a time; we report the median
and 99th percentile of the time per decision, measured in the same process and run.
Cedar and casbin get their fastest paths: pre-parsed Cedar policy set and entities,
one casbin enforcer loaded once.

This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from meshguard_gateway.engine import Agent, Engine, Request
from meshguard_gateway.policy import parse_policies

SIZES = (10, 1_000, 10_000)
AGENT = Agent("agent_bench", "bench-agent", "verified", frozenset({"autogpt"}))


@dataclass(frozen=True)
class BenchRule:
    effect: str  # allow | deny
    patterns: tuple[str, ...]  # exact, or ending in a single '*'


@dataclass(frozen=True)
class BenchRequest:
    action: str
    resource: str | None

    @property
    def subjects(self) -> tuple[str, ...]:
        return (self.action,) if self.resource is None else (self.action, f"{self.action}/{self.resource}")


def build_rules(n: int, rng: random.Random) -> list[BenchRule]:
    """n rules: mostly exact allows, some trailing-star and resource-qualified allows, ~5% denies."""
    verbs = max(5, n // 40)
    objects = max(4, n // 20)
    rules: list[BenchRule] = []
    for i in range(n):
        v, o = f"verb{rng.randrange(verbs)}", f"obj{rng.randrange(objects)}"
        kind = rng.random()
        if kind < 0.05:
            rules.append(BenchRule("deny", (f"{v}:{o}", f"{v}:secret{i}*")))
        elif kind < 0.70:
            rules.append(BenchRule("allow", (f"{v}:{o}",)))
        elif kind < 0.85:
            rules.append(BenchRule("allow", (f"{v}:{o}*", f"{v}:tmp{i}")))
        else:
            rules.append(BenchRule("allow", (f"{v}:ws{i}/*",)))
    return rules


def build_requests(rules: list[BenchRule], count: int, rng: random.Random) -> list[BenchRequest]:
    """A mix that exercises every path: exact, prefix, resource-qualified, deny, no match."""
    out: list[BenchRequest] = []
    while len(out) < count:
        rule = rng.choice(rules)
        pattern = rng.choice(rule.patterns)
        roll = rng.random()
        if roll < 0.15:
            out.append(BenchRequest(f"nomatch{rng.randrange(10**6)}:thing", None))
        elif pattern.endswith("/*"):
            out.append(BenchRequest(pattern[:-2], f"notes/{rng.randrange(100)}.txt"))
        elif pattern.endswith("*"):
            out.append(BenchRequest(pattern[:-1] + rng.choice(["", "x", "_more"]), rng.choice([None, "r.txt"])))
        else:
            out.append(BenchRequest(pattern, rng.choice([None, "https://example.com/a"])))
    return out


# --------------------------------------------------------------------------- engines


def ours(rules: list[BenchRule], rate_limits: bool = False) -> Callable[[BenchRequest], bool]:
    doc: dict[str, Any] = {
        "name": "bench",
        "rules": [{"effect": r.effect, "actions": list(r.patterns)} for r in rules],
        "defaultEffect": "deny",
    }
    if rate_limits:  # never binding: measures the cost of counting, not of refusing
        doc["rateLimits"] = {"requestsPerMinute": 1_000_000, "requestsPerHour": 1_000_000}
    engine = Engine(parse_policies([("bench.yaml", yaml.safe_dump(doc))]))
    clock = [0.0]

    def decide(req: BenchRequest) -> bool:
        clock[0] += 0.001
        return engine.decide(Request(AGENT, req.action, req.resource), clock[0]).allowed

    return decide


def _cedar_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def cedar(rules: list[BenchRule]) -> Callable[[BenchRequest], bool]:
    import cedarpy

    texts = []
    for r in rules:
        conds = []
        for p in r.patterns:
            for field in ("a", "s"):
                if p.endswith("*"):
                    conds.append(f'context.{field} like "{_cedar_str(p[:-1]).replace("*", chr(92) + "*")}*"')
                else:
                    conds.append(f'context.{field} == "{_cedar_str(p)}"')
        verb = "permit" if r.effect == "allow" else "forbid"
        texts.append(f"{verb}(principal, action, resource) when {{ {' || '.join(conds)} }};")
    policy_set = cedarpy.PolicySet.from_str("\n".join(texts))
    entities = cedarpy.Entities.from_json_str("[]")

    def decide(req: BenchRequest) -> bool:
        subjects = req.subjects
        request = {
            "principal": 'Agent::"agent_bench"',
            "action": 'Action::"check"',
            "resource": 'Resource::"r"',
            "context": {"a": subjects[0], "s": subjects[-1]},
        }
        return cedarpy.is_authorized(request, policy_set, entities).allowed

    return decide


CASBIN_MODEL = """
[request_definition]
r = sub, act, full

[policy_definition]
p = sub, act, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = keyMatch(r.act, p.act) || keyMatch(r.full, p.act)
"""


def casbin_engine(rules: list[BenchRule]) -> Callable[[BenchRequest], bool]:
    import casbin

    model = casbin.model.Model()
    model.load_model_from_text(CASBIN_MODEL)
    enforcer = casbin.Enforcer(model)
    lines = [["agent", p, r.effect] for r in rules for p in r.patterns]
    enforcer.add_policies(lines)

    def decide(req: BenchRequest) -> bool:
        subjects = req.subjects
        return bool(enforcer.enforce("agent", subjects[0], subjects[-1]))

    return decide


ENGINES: dict[str, Callable[[list[BenchRule]], Callable[[BenchRequest], bool]]] = {
    "meshguard_gateway": ours,
    "meshguard_gateway + rateLimits": lambda rules: ours(rules, rate_limits=True),
    "cedarpy (Cedar)": cedar,
    "casbin": casbin_engine,
}


# --------------------------------------------------------------------------- harness


def reference(rules: list[BenchRule], req: BenchRequest) -> bool:
    """Ground truth, the slow obvious way."""

    def hit(p: str) -> bool:
        return any(s == p or (p.endswith("*") and s.startswith(p[:-1])) for s in req.subjects)

    matched = [r for r in rules if any(hit(p) for p in r.patterns)]
    return any(r.effect == "allow" for r in matched) and not any(r.effect == "deny" for r in matched)


def measure(decide: Callable[[BenchRequest], bool], requests: list[BenchRequest], budget_s: float,
            max_samples: int) -> list[float]:
    samples: list[float] = []
    gc.collect()
    deadline = time.perf_counter() + budget_s
    i = 0
    perf = time.perf_counter_ns
    while len(samples) < max_samples and (len(samples) < 30 or time.perf_counter() < deadline):
        req = requests[i % len(requests)]
        i += 1
        t0 = perf()
        decide(req)
        samples.append((perf() - t0) / 1000.0)
    return samples


def fmt(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:,.1f} ms"
    return f"{us:,.1f} µs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller time budgets")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args(argv)
    budget = 1.0 if args.quick else 5.0
    check_count = 60 if args.quick else 150

    results: dict[tuple[str, int], tuple[float, float, int]] = {}
    started = time.perf_counter()
    for n in SIZES:
        rng = random.Random(args.seed + n)
        rules = build_rules(n, rng)
        requests = build_requests(rules, 2000, rng)
        check = requests[:check_count]
        truth = [reference(rules, r) for r in check]
        allowed = sum(truth)
        print(f"{n:>6} rules: checking {len(check)} requests ({allowed} allow, {len(check) - allowed} deny) "
              "on every engine ...", file=sys.stderr)
        for name, build in ENGINES.items():
            t0 = time.perf_counter()
            decide = build(rules)
            built = time.perf_counter() - t0
            got = [decide(r) for r in check]
            wrong = [(r, t) for r, g, t in zip(check, got, truth) if g != t]
            if wrong:
                r, t = wrong[0]
                print(f"DISAGREEMENT: {name} at {n} rules on {r}: expected allowed={t}; "
                      f"{len(wrong)} of {len(check)} differ", file=sys.stderr)
                return 1
            fast = name.startswith("meshguard")
            samples = measure(decide, requests, budget, 50_000 if fast else 3_000)
            samples.sort()
            median = statistics.median(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            results[(name, n)] = (median, p99, len(samples))
            print(f"  {name:<32} built in {built:6.2f} s; {len(samples):>6} samples; median {fmt(median)}",
                  file=sys.stderr)

    print(f"\nPolicy decision time per request (median / p99), {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}, all engines in one run "
          f"({time.perf_counter() - started:.0f} s):\n")
    print("| engine | " + " | ".join(f"{n:,} rules" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for name in ENGINES:
        cells = []
        for n in SIZES:
            median, p99, _ = results[(name, n)]
            cells.append(f"{fmt(median)} / {fmt(p99)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
