"""The validating admission webhook: bad manifests are refused at `kubectl apply`.

The verdict is the core's, the same one the operator applies when the webhook is absent
(`phase: Invalid`).  failurePolicy is Fail: a review the webhook cannot answer (too big, too
slow, the operator away) refuses the write rather than storing an unchecked object, and the
webhook reads any body the API server can send (runner.WEBHOOK_BODY_LIMIT_BYTES).  It is not
the only guard: the rights a spec relies on are checked again, as the user who applied it,
before anything of it runs (controllers/access.py).
Updates that leave the spec alone (labels, finalizers, deletion) are never refused, so an
object admitted before the webhook existed stays editable.  Once a workflow has started, its
spec is fixed but for suspend, shutdown and activeDeadlineSeconds, as a Job's pod template is;
the operator holds the same line when the webhook is bypassed (a changed spec runs again from
the start under a new run generation, never hanging on the earlier run's records).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
from kopf._core.engines import admission as kopf_admission

from treadle.api import GROUP, VERSION, syncjobs, workflows
from treadle.api import pools as pools_api
from treadle.api.pools import DEFAULT_POOL
from treadle.core import (
    access,
    admission,
    edits,
    engine,
    pools,
    secretrefs,
    syncadmission,
    templates,
)
from treadle.runtime.offload import offload
from treadle.services import kube, pool_deployments

WEBHOOK_CONFIGURATION = GROUP
OPERATIONS: list[Any] = ["CREATE", "UPDATE"]


def _spec_unchanged(spec: kopf.Spec, old: Any) -> bool:
    return old is not None and dict(old.get("spec") or {}) == dict(spec)


async def _secrets_readable(kind: str, spec: Any, meta: kopf.Meta, userinfo: Any) -> None:
    """Refuses a spec naming a Secret the applying user may not `get` (SPEC, Deployment), or
    running `job` tasks when that user may not create Jobs in the namespace."""
    named = secretrefs.secrets_named(kind, dict(spec))
    jobs = [r for r in access.references(dict(spec)) if r.verb == "create"]
    if not (named or jobs) or not userinfo:
        return
    namespace = str(meta.get("namespace"))
    async with kube.client() as api:
        for reference in jobs[:1]:
            allowed = await kube.may(
                api,
                dict(userinfo),
                namespace=namespace,
                verb=reference.verb,
                group=reference.group,
                resource=reference.resource,
            )
            if not allowed:
                who = access.Requester(str(userinfo.get("username")))
                raise kopf.AdmissionError(access.refusal(reference, who, namespace), code=403)
        for secret, path in named:
            if not await kube.may_get_secret(api, namespace, secret, dict(userinfo)):
                raise kopf.AdmissionError(
                    f"{path}: names Secret {secret!r}, which {userinfo.get('username')!r} may "
                    f"not get in namespace {namespace!r}",
                    code=403,
                )


async def validate_workflow(spec: kopf.Spec, meta: kopf.Meta, **kwargs: Any) -> None:
    old = kwargs.get("old")
    if _spec_unchanged(spec, old):
        return
    problem = edits.edit_problem(old, dict(spec))
    if problem is not None:
        raise kopf.AdmissionError(problem, code=422)
    raw = dict(spec)
    template = await _referenced_template(raw, meta, kwargs.get("dryrun"))
    if template is syncadmission.UNCHECKED:
        if templates.ref_name(raw) is not None:
            return  # a dry run naming a template not made yet
        template = None
    context = engine.Identity.of(meta).context
    # Off the event loop: its templates are the tenant's (bounded, but not free).
    parsed, problems = await offload(admission.admit_workflow, raw, context, template)
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)
    if template is not None:  # the Secrets its template reads, this user must be able to read
        raw = templates.effective(raw, template)
    if not await _a_syncjobs_run(meta, kwargs.get("userinfo")):
        await _secrets_readable(workflows.KIND, raw, meta, kwargs.get("userinfo"))
    if parsed is not None:
        await _pools_fit(parsed, str(meta.get("namespace")), kwargs.get("memo"))


async def _referenced_template(spec: Any, meta: kopf.Meta, dryrun: Any) -> Any:
    """The spec of the WorkflowTemplate `spec` names (None: there is no such template), or
    syncadmission.UNCHECKED when it names none, or when a dry run names one not made yet (a file
    holding the template too made none: nothing to check against; applied for real, the
    template comes first and is there)."""
    name = templates.ref_name(spec) if isinstance(spec, Mapping) else None
    if name is None:
        return syncadmission.UNCHECKED
    async with kube.client() as api:
        template = await kube.template_spec(api, str(meta.get("namespace")), name)
    return syncadmission.UNCHECKED if template is None and dryrun else template


async def _a_syncjobs_run(meta: kopf.Meta, userinfo: Any) -> bool:
    """A Workflow the operator makes as a SyncJob's run: its Secrets were checked against the
    user who applied the SyncJob (and the operator itself may read none)."""
    owners = meta.get("ownerReferences") or []
    if not userinfo or not any(o.get("kind") == syncjobs.KIND for o in owners):
        return False
    async with kube.client() as api:
        return bool(userinfo.get("username")) and userinfo.get("username") == (
            await kube.own_username(api)
        )


async def _pools_fit(spec: workflows.WorkflowSpec, namespace: str, memo: Any) -> None:
    """Refuses a workflow naming a WorkerPool that does not exist, a Secret its pool does not
    mount, or a timeout longer than its pool runs an attempt.  The pools are the keeper's (the
    webhook is served by the leader, which keeps them); listed when it does not know one the
    workflow names (made a moment ago, in the same `kubectl apply`)."""
    if spec.own_workers and not any(task.worker_pool for task in spec.tasks):
        return
    keeper = getattr(memo, "pools", None)
    found = keeper.specs(namespace) if keeper is not None else {}
    named = {name for name, _ in pools.named_pools(spec, spec.worker_pool)}
    if keeper is None or not named <= found.keys():  # one made a moment ago: ask
        async with kube.client() as api:
            found = await pool_deployments.specs(api, namespace)
    chosen = pools.choose(spec, default_exists=DEFAULT_POOL in found)
    problems = pools.pool_problems(
        spec, chosen, found, secretrefs.workflow_secrets(spec), engine.DEFAULT_TIMEOUT_SECONDS
    )
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


Problems = Callable[[dict[str, Any], kopf.Meta], list[str]]


def _spec_check(name: str, kind: str, problems_of: Problems) -> Callable[..., Awaitable[None]]:
    """A webhook handler that refuses a spec with problems, or naming a Secret the applying
    user may not read; an update leaving the spec alone always passes."""

    async def validate(spec: kopf.Spec, meta: kopf.Meta, **kwargs: Any) -> None:
        if _spec_unchanged(spec, kwargs.get("old")):
            return
        problems = await offload(problems_of, dict(spec), meta)
        if problems:
            raise kopf.AdmissionError("; ".join(problems), code=422)
        await _secrets_readable(kind, spec, meta, kwargs.get("userinfo"))

    validate.__name__ = validate.__qualname__ = name
    return validate


validate_workflowtemplate = _spec_check(
    "validate_workflowtemplate",
    workflows.TEMPLATE_KIND,
    lambda spec, _meta: admission.admit_template(spec),
)
validate_workerpool = _spec_check(
    "validate_workerpool",
    pools_api.KIND,
    lambda spec, meta: admission.admit_pool(spec, str(meta.get("name") or ""))[1],
)


async def validate_syncjob(spec: kopf.Spec, meta: kopf.Meta, **kwargs: Any) -> None:
    """A SyncJob's spec, and its Workflow run's template: it exists, its parameters are
    known, and its Secrets are ones the applying user may read."""
    if _spec_unchanged(spec, kwargs.get("old")):
        return
    raw = dict(spec)
    template = await _referenced_template(raw.get("workflow"), meta, kwargs.get("dryrun"))
    problems = await offload(syncadmission.syncjob_problems, raw, template)
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)
    await _secrets_readable(syncjobs.KIND, raw, meta, kwargs.get("userinfo"))
    if isinstance(template, dict):
        await _secrets_readable(workflows.KIND, template, meta, kwargs.get("userinfo"))


async def stamp_applier(spec: kopf.Spec, patch: kopf.Patch, **kwargs: Any) -> None:
    """Records who created the object or changed its spec (core/access.py): the API server's
    policy `treadle-applied-by` checks the record is that user's; the operator asks, before
    anything of the spec runs, whether they may read what it names."""
    userinfo = kwargs.get("userinfo")
    if _spec_unchanged(spec, kwargs.get("old")) or not userinfo:
        return
    for key, value in access.stamp(dict(userinfo)).items():
        patch.metadata.annotations[key] = value


SPEC_CHANGED = {
    "name": "spec-changed",
    "expression": (
        "request.operation != 'UPDATE'"
        " || object.metadata.generation != oldObject.metadata.generation"
    ),
}
"""Only creates and spec changes are sent to the validating webhooks (the API server moves
the generation before validating admission): with failurePolicy Fail, a finalizer or label
change still goes through while no operator answers."""


def _with_match_conditions(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    webhooks: list[dict[str, Any]] = _build_webhooks(*args, **kwargs)
    for webhook in webhooks:
        if webhook["failurePolicy"] == "Fail":
            webhook["matchConditions"] = [SPEC_CHANGED]
    return webhooks


_build_webhooks = kopf_admission.build_webhooks
# kopf builds the webhook configuration and knows no matchConditions: its builder is wrapped.
kopf_admission.build_webhooks = _with_match_conditions


def register(registry: kopf.OperatorRegistry) -> None:
    """Adds the webhook handlers; only an operator that serves the webhook has them (kopf
    refuses to start with admission handlers and no server)."""
    for plural in (
        workflows.PLURAL,
        workflows.TEMPLATE_PLURAL,
        syncjobs.PLURAL,
        pools_api.PLURAL,
    ):
        kopf.on.mutate(
            GROUP,
            VERSION,
            plural,
            id=f"stamp-applier-{plural}",
            operations=OPERATIONS,
            # Ignore: a change the stamp misses while the operator is away is refused by the
            # validating webhook when it changes the spec, and is harmless when it does not.
            ignore_failures=True,
            registry=registry,
        )(stamp_applier)
    for plural, handler in (
        (workflows.PLURAL, validate_workflow),
        (workflows.TEMPLATE_PLURAL, validate_workflowtemplate),
        (syncjobs.PLURAL, validate_syncjob),
        (pools_api.PLURAL, validate_workerpool),
    ):
        kopf.on.validate(
            GROUP,
            VERSION,
            plural,
            id=handler.__name__.replace("_", "-"),
            operations=OPERATIONS,
            ignore_failures=False,
            registry=registry,
        )(handler)
