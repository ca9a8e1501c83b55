"""Draw the figures of docs/how-rrl-works.md (SVG, text kept as text, byte-stable across runs).

    .venv/bin/python docs/figures/make_figures.py        # writes docs/figures/*.svg
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent
BLUE, GREEN, RED, GREY, INK, AMBER = "#2f4a78", "#3f8f4f", "#b04040", "#c9d1dd", "#1d2330", "#c98a1a"

plt.rcParams.update({"svg.hashsalt": "openrlhf-rrl", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 10})


def token(ax, x, y, text, face, edge=INK, hatch=None, w=0.9, color="white"):
    ax.add_patch(Rectangle((x, y), w, 0.7, facecolor=face, edgecolor=edge, lw=0.8, hatch=hatch))
    ax.text(x + w / 2, y + 0.35, text, ha="center", va="center", color=color, fontsize=8.5)


def restart_figure(path: Path) -> None:
    """A failed early rollout is cut at a promising point; later the prefix is restarted n times."""
    fig, ax = plt.subplots(figsize=(10, 4.4))
    ax.set_xlim(0, 20)
    ax.set_ylim(-0.6, 9.5)
    ax.axis("off")

    ax.text(0, 9.1, "Step 40 - a fresh group of a hard prompt (success rate below --rrl_hard_threshold)",
            fontsize=11, weight="bold", color=INK)
    token(ax, 0, 7.9, "prompt", BLUE, w=2.0)
    for i, t in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"]):
        token(ax, 2.1 + i, 7.9, t, GREEN if i < 4 else RED)
    ax.text(8.4, 8.25, "reward 0: the policy could not finish", va="center", color=RED)
    ax.plot([6.05, 6.05], [7.6, 8.9], color=AMBER, lw=2.5)
    ax.text(6.15, 7.35, "cut (the scorer: step boundary, critic value, verified prefix, entropy...)",
            color=AMBER, fontsize=9)
    ax.add_patch(FancyBboxPatch((2.05, 6.25), 3.95, 0.6, boxstyle="round,pad=0.05", facecolor="#fff6e6",
                                edgecolor=AMBER))
    ax.text(4.02, 6.55, "kept: prefix s1..s4 + score", ha="center", va="center", color=INK, fontsize=9)
    ax.add_patch(FancyArrowPatch((6.2, 6.55), (9.3, 6.55), arrowstyle="-|>", mutation_scale=14, color=INK))
    ax.add_patch(FancyBboxPatch((9.4, 6.15), 4.2, 0.8, boxstyle="round,pad=0.05", facecolor=GREY, edgecolor=INK))
    ax.text(11.5, 6.55, "replay buffer", ha="center", va="center", weight="bold", color=INK)

    ax.text(0, 5.2, "Step 120 - the stronger policy restarts from the kept prefix (a restart group of n samples)",
            fontsize=11, weight="bold", color=INK)
    outcomes = [["s5'", "s6'", "EOS"], ["s5'", "x", "EOS"], ["s5'", "s6'", "EOS"], ["y", "z", "EOS"]]
    wins = [True, False, True, False]
    for row, (cont, win) in enumerate(zip(outcomes, wins)):
        y = 4.0 - row * 0.95
        token(ax, 0, y, "prompt", BLUE, w=2.0)
        for i in range(4):
            token(ax, 2.1 + i, y, f"s{i + 1}", "#e8eef7", hatch="///", color=INK)
        for i, t in enumerate(cont):
            token(ax, 6.2 + i, y, t, GREEN if win else RED)
        ax.text(9.5, y + 0.35, "reward 1" if win else "reward 0", va="center", color=GREEN if win else RED)
    ax.text(2.1, -0.35, "prefix = prompt-side context: masked from the loss (unless --rrl_train_prefix)",
            fontsize=9, color=INK)
    ax.text(11.2, 3.95, "The user's reward function sees the ORIGINAL prompt\n"
                        "and the full response (prefix + continuation).", fontsize=9, color=INK, va="center")
    ax.text(11.2, 2.65, "The n continuations form their own group: its\n"
                        "baseline gives a gradient only when outcomes are\n"
                        "mixed (here 2 of 4: rrl/informative_restart_groups).", fontsize=9, color=INK,
            va="center")
    ax.text(11.2, 1.2, "The entry records 1 restart, 4 continuations,\n"
                       "2 successes: its pass-rate estimate; all 4 won\n"
                       "-> retired 'solved', 16 tries and 0 wins -> 'dead'.", fontsize=9, color=INK, va="center")
    save(fig, path)


def box(ax, x, y, w, h, title, body, face):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.08", facecolor=face, edgecolor=INK, lw=0.9))
    ax.text(x + w / 2, y + h - 0.28, title, ha="center", va="top", weight="bold", color=INK, fontsize=10)
    ax.text(x + w / 2, y + h - 0.75, body, ha="center", va="top", color=INK, fontsize=8.5, linespacing=1.35)


def arrow(ax, a, b, text=None, rad=0.0, color=INK):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, color=color, lw=1.2,
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:  # beside the arrow's middle
        ax.text((a[0] + b[0]) / 2 + 0.2, (a[1] + b[1]) / 2, text, ha="left", va="center", fontsize=8.5, color=color)


def lifecycle_figure(path: Path) -> None:
    """How an entry enters the buffer, is replayed, updated, and leaves it."""
    fig, ax = plt.subplots(figsize=(11.7, 6.2))
    ax.set_xlim(0, 23.4)
    ax.set_ylim(0, 12.4)
    ax.axis("off")
    box(ax, 0.2, 8.6, 5.2, 3.4, "1. candidates", "fresh groups of hard prompts\n(success < hard_threshold)\n"
        "scorer: cut points + score\nwithin min/max prefix limits,\nbefore any EOS / stop token", "#e8eef7")
    box(ax, 6.3, 8.6, 5.6, 3.4, "2. admission", "best score first, at most\nadmit_per_step new entries;\n"
        "refused: empty prefix, over\nmax_prefix_tokens, stop token,\nkeys retired solved/dead/banned", "#fff6e6")
    box(ax, 12.8, 8.6, 8.9, 3.4, "3. buffer", "capacity, per_prompt_capacity\n"
        "priority = exp(score / temperature) x restart_decay^restarts\n(x10 when pinned); full: the lowest priority "
        "is\nevicted, pinned last; each entry keeps restarts,\ncontinuations, successes (a Beta posterior)", GREY)
    box(ax, 12.8, 3.9, 8.9, 3.6, "4. replay", "replay_share of the batch's groups (the LAST slots;\n"
        "schedule, start_step, auto); the policy picks entries:\npromise (priority), passrate or uncertainty\n"
        "(nearest target_pass_rate); max_restarts_per_prompt;\nn continuations at restart_temperature", "#e6f4e6")
    box(ax, 6.3, 3.9, 5.6, 3.6, "5. outcome", "restarts +1, continuations +n,\nsuccesses +wins "
        "(reward >=\nsuccess_threshold); scorer mc:\nscore = posterior pass rate;\npriority decays", "#e6f4e6")
    box(ax, 0.2, 0.3, 11.7, 2.9, "retired (rrl/retired_*)", "", "#fbe9e9")
    left = ("solved: all continuations of a restart won\ndead: retire_dead_after tries, no win\n"
            "prompt_solved: fresh groups solve it")
    right = ("evicted: lowest priority, buffer full\nbanned: a reviewer's ban, for good\n"
             "stale: prompt gone from the data")
    ax.text(0.6, 2.45, left, ha="left", va="top", color=INK, fontsize=8.5, linespacing=1.45)
    ax.text(6.5, 2.45, right, ha="left", va="top", color=INK, fontsize=8.5, linespacing=1.45)
    box(ax, 12.8, 0.3, 8.9, 2.9, "a person (rrl-inspect)", "reads the saved buffer file; pin = keep, x10,\n"
        "never retired automatically; ban = removed for good;\nwritten to rrl_review.jsonl beside the buffer file,\n"
        "applied by the training at its next step", "#f3ecf9")
    arrow(ax, (5.5, 10.3), (6.2, 10.3))
    arrow(ax, (12.0, 10.3), (12.7, 10.3))
    arrow(ax, (17.25, 8.5), (17.25, 7.6), "sample")
    arrow(ax, (12.7, 5.7), (12.0, 5.7))
    arrow(ax, (9.1, 7.6), (9.1, 8.5), "update")
    arrow(ax, (7.5, 3.8), (7.5, 3.3), color=RED)
    arrow(ax, (12.95, 8.5), (11.5, 3.3), color=RED)
    arrow(ax, (21.85, 1.75), (21.85, 10.3), color="#7a4fa0", rad=0.2)
    ax.text(22.2, 6.0, "pin / ban", fontsize=8.5, color="#7a4fa0", rotation=90, va="center")
    save(fig, path)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.svg")
    fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)
    os.replace(tmp, path)


def main() -> int:
    restart_figure(HERE / "rrl-restart.svg")
    lifecycle_figure(HERE / "buffer-lifecycle.svg")
    print(f"wrote {HERE / 'rrl-restart.svg'} and {HERE / 'buffer-lifecycle.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
