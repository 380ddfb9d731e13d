"""`kubectl treadle submit`, `resubmit`, `stop` and `terminate`: starting and ending runs.

`submit TEMPLATE -p k=v` creates a Workflow that runs the WorkflowTemplate (its parameters
checked here against the template's, and again by the webhook); `submit --from-file` creates
the Workflow a manifest holds.  `resubmit` creates a new Workflow from another's spec.  `stop`
and `terminate` set `spec.shutdown`, which is what a GitOps user sets in the manifest.  With
`--watch` each follows the run to its end and exits non-zero unless it succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client
from lightkube.types import PatchType

from treadle.api import GROUP, VERSION, workflows
from treadle.plugin import flags, objects, view
from treadle.plugin.output import Failure
from treadle.services import kube

RESUBMITTED_FROM = f"{GROUP}/resubmitted-from"
SUBMITTED_FROM = f"{GROUP}/workflow-template"


def add_commands(commands: Any) -> None:
    submit = flags.command_parser(
        commands, "submit", help="run a WorkflowTemplate (or a manifest) as a new Workflow"
    )
    submit.add_argument("template", nargs="?", help="the WorkflowTemplate to run")
    submit.add_argument("--from-file", "-f", help="a Workflow manifest (YAML or JSON) to submit")
    submit.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (a string; KEY:=JSON for another JSON value); repeatable",
    )
    submit.add_argument("--name", help="the Workflow's name (default: a generated one)")
    submit.add_argument(
        "--generate-name",
        action="store_true",
        help="name it <template>-<random> (the default unless --name is given)",
    )
    _add_watch(submit)
    submit.set_defaults(handler=submit_workflow)

    resubmit = flags.command_parser(
        commands, "resubmit", help="run a workflow's spec again, as a new Workflow"
    )
    resubmit.add_argument("workflow")
    _add_watch(resubmit)
    resubmit.set_defaults(handler=resubmit_workflow)

    for name, mode, text in (
        ("stop", "Stop", "no new attempts; running ones finish; onExit runs (phase Stopped)"),
        (
            "terminate",
            "Terminate",
            "cancel running attempts now; onExit runs (phase Terminated)",
        ),
    ):
        ending = flags.command_parser(commands, name, help=text)
        ending.add_argument("workflow")
        _add_watch(ending)
        ending.set_defaults(handler=shut_down, mode=mode)


def _add_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="follow the run to its end; exit non-zero unless it succeeded",
    )


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`key=value` (a string) and `key:=json` pairs as params."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise Failure(f"-p {pair!r}: expected KEY=VALUE (or KEY:=JSON)")
        if key.endswith(":"):
            try:
                params[key[:-1]] = json.loads(value)
            except ValueError as error:
                raise Failure(f"-p {pair!r}: the value is not JSON ({error})") from None
        else:
            params[key] = value
    return params


def _template(client: Client, name: str) -> dict[str, Any]:
    found: dict[str, Any] = objects.get(client, kube.WorkflowTemplate, "workflow template", name)
    return found


def submit_workflow(client: Client, args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if (args.template is None) == (args.from_file is None):
        raise Failure("name a WorkflowTemplate or give --from-file, one of them")
    if args.from_file is not None:
        body = _manifest(Path(args.from_file))
        spec = dict(body.get("spec") or {})
        if params:
            spec["params"] = {**(spec.get("params") or {}), **params}
        meta = dict(body.get("metadata") or {})
        kept = ("name", "generateName", "labels", "annotations")
        metadata = {k: v for k, v in meta.items() if k in kept}
        if body["kind"] == workflows.TEMPLATE_KIND and "name" in metadata:  # a run of it
            metadata["generateName"] = f"{metadata.pop('name')}-"
        if args.name:
            metadata = {
                **{k: v for k, v in metadata.items() if k != "generateName"},
                "name": args.name,
            }
        if "name" not in metadata and "generateName" not in metadata:
            raise Failure(f"{args.from_file}: metadata.name or metadata.generateName is needed")
    else:
        template = _template(client, args.template)
        declared = (template.get("spec") or {}).get("params") or {}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise Failure(
                f"WorkflowTemplate {args.template!r} has no parameter {unknown[0]!r} "
                f"(its parameters: {known})"
            )
        spec = {"workflowTemplateRef": {"name": args.template}}
        if params:
            spec["params"] = params
        naming = {"name": args.name} if args.name else {"generateName": f"{args.template}-"}
        metadata = {**naming, "labels": {SUBMITTED_FROM: args.template}}
    created = _create(client, metadata, spec)
    return _report(client, created, "submitted", args.watch)


def _manifest(path: Path) -> dict[str, Any]:
    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise Failure(f"{path}: {error}") from None
    if not isinstance(body, dict) or body.get("kind") not in (
        workflows.KIND,
        workflows.TEMPLATE_KIND,
    ):
        raise Failure(f"{path}: not a Workflow or WorkflowTemplate manifest")
    return body


def _create(client: Client, metadata: dict[str, Any], spec: dict[str, Any]) -> Any:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": workflows.KIND,
        "metadata": metadata,
        "spec": spec,
    }
    return client.create(kube.Workflow.from_dict(body))


def resubmit_workflow(client: Client, args: argparse.Namespace) -> int:
    original = objects.get(client, kube.Workflow, "workflow", args.workflow)
    spec = {k: v for k, v in (original.get("spec") or {}).items() if k not in ("shutdown",)}
    labels = dict(original["metadata"].get("labels") or {})
    labels[RESUBMITTED_FROM] = args.workflow
    base = labels.get(SUBMITTED_FROM) or args.workflow
    metadata = {"generateName": f"{base[:52]}-", "labels": labels}
    created = _create(client, metadata, spec)
    return _report(client, created, "resubmitted", args.watch)


def shut_down(client: Client, args: argparse.Namespace) -> int:
    current = objects.get(client, kube.Workflow, "workflow", args.workflow)
    phase = (current.get("status") or {}).get("phase")
    if view.ended(current):
        raise Failure(f"workflow {args.workflow!r} has ended already ({phase})")
    client.patch(
        kube.Workflow,
        args.workflow,
        {"spec": {"shutdown": args.mode}},
        patch_type=PatchType.MERGE,
    )
    word = "stop" if args.mode == "Stop" else "termination"
    print(f"workflow.{GROUP}/{args.workflow}: {word} requested")
    if not args.watch:
        return 0
    return watch(client, args.workflow)


def _report(client: Client, created: Any, verb: str, follow: bool) -> int:
    name = created["metadata"]["name"]
    print(f"workflow.{GROUP}/{name} {verb}")
    sys.stdout.flush()
    if not follow:
        return 0
    return watch(client, name)


def watch(client: Client, name: str) -> int:
    """Follows the workflow to its end; 0 only when it succeeded."""
    first = objects.get(client, kube.Workflow, "workflow", name)
    ref = (first.get("spec") or {}).get("workflowTemplateRef") or {}
    template = None
    if ref.get("name") and not (first.get("status") or {}).get("templateSpec"):
        with contextlib.suppress(Failure):  # gone: the view waits for the run's own copy
            template = _template(client, str(ref["name"])).get("spec")
    try:
        last = view.follow(
            lambda: objects.get(client, kube.Workflow, "workflow", name), template=template
        )
    except KeyboardInterrupt:
        return 130
    return 0 if (last.get("status") or {}).get("phase") == "Succeeded" else 1
