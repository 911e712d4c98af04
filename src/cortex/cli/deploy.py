"""``cortex deploy render``: the Kubernetes placement of a plan, for the kustomize tree under ``deploy/``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortex.cli.common import console, example

deploy_app = typer.Typer(help="Kubernetes manifests for a plan (see deploy/ and the README).", no_args_is_help=True)


@deploy_app.command(epilog=example("cortex deploy render plans/full/plan.json --out deploy/kustomize/placement"))
def render(
    plan_json: Annotated[Path, typer.Argument(metavar="PLAN_JSON", help="The plan to place (cortex plan writes it)")],
    out: Annotated[Path, typer.Option("--out", help="Directory of the placement kustomization")] = Path(
        "deploy/kustomize/placement"
    ),
    drain_s: Annotated[int, typer.Option("--drain-s", min=0, max=3600, help="Node agents' drain time")] = 60,
) -> None:
    """Write one node agent Deployment per plan node (pinned to that Kubernetes node, with its slots, labels and
    resources), the plan's coordinator Job, and the plan as a ConfigMap, into --out; the overlays under
    deploy/kustomize include that directory."""
    from cortex.files import write_atomic
    from cortex.planner import load_plan
    from cortex.planner.manifests import placement
    from cortex.planner.manifests import render as render_plan

    plan = load_plan(plan_json)
    files = render_plan(plan, drain_s=drain_s)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomic(out / name, text)
    for node, processes in placement(plan).items():
        console.print(f"{node}: {len(processes)} processes", markup=False)
    console.print(f"wrote {', '.join(sorted(files))} to {out}", markup=False, highlight=False)
